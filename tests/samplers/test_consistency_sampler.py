"""The consistency sampler's re-noising times (Song et al. 2023, Algorithm 1's ``tau_n``)."""

import pytest
import torch

from genimage.errors import GenimageError
from genimage.models.denoiser import Prediction
from genimage.paths import build_path
from genimage.samplers import SAMPLERS, make_schedule
from genimage.samplers.consistency import with_renoise_times
from genimage.samplers.noise import generators_for_seeds


class Recorder(torch.nn.Module):
    """A stand-in consistency model: answers ``x0 = 0.5 x`` and records the times and inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.path = build_path("linear")
        self.calls: list[tuple[float, torch.Tensor]] = []

    def forward(self, x, t, cond=None):
        self.calls.append((float(t), x.clone()))
        return Prediction(x0=0.5 * x, eps=x)


def run(steps: int, **kwargs):
    model = Recorder()
    x = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    times = make_schedule("uniform", model.path, steps)
    out = SAMPLERS.get("consistency")(model, x, times, generator=generators_for_seeds([1, 2, 3]), **kwargs)
    return model, out


def test_default_keeps_the_schedule_and_renoise_times_replace_its_interior():
    model, _ = run(2)
    assert [t for t, _ in model.calls] == pytest.approx([1.0, 0.5])
    model, _ = run(2, renoise_times=0.3)
    assert [t for t, _ in model.calls] == pytest.approx([1.0, 0.3])
    model, _ = run(3, renoise_times=[0.6, 0.2])
    assert [t for t, _ in model.calls] == pytest.approx([1.0, 0.6, 0.2])
    model, _ = run(3, renoise_times="0.6, 0.2")  # as typed on a command line
    assert [t for t, _ in model.calls] == pytest.approx([1.0, 0.6, 0.2])


def test_renoising_goes_to_the_chosen_time_with_the_same_noise():
    """The second input is ``alpha(s) x0 + sigma(s) z`` at the chosen ``s``: same draws ``z`` as
    the default schedule's, only the mixing changes."""
    m_default, out_default = run(2)
    m_chosen, out_chosen = run(2, renoise_times=0.3)
    x0 = m_default.calls[0][1] * 0.5  # first estimate, identical in both runs
    z = (m_default.calls[1][1].double() - 0.5 * x0.double()) / 0.5  # linear path: alpha = 1 - t, sigma = t
    expected = 0.7 * x0.double() + 0.3 * z
    assert torch.allclose(m_chosen.calls[1][1].double(), expected, atol=1e-5)
    assert not torch.allclose(out_default, out_chosen)


def test_none_returns_the_schedule_unchanged():
    times = torch.tensor([1.0, 0.5, 0.0], dtype=torch.float64)
    assert with_renoise_times(times, None) is times


@pytest.mark.parametrize("bad, steps, message", [
    (0.3, 3, "needs 2 time"),          # wrong count
    ([0.4, 0.3], 2, "needs 1 time"),
    ([0.2, 0.6], 3, "decrease strictly"),
    (1.0, 2, "decrease strictly"),     # not below the first time
    (0.0, 2, "decrease strictly"),     # must stay above 0
    ("x", 2, "must be numbers"),
    ([None], 2, "must be numbers"),
])
def test_bad_renoise_times_are_user_errors(bad, steps, message):
    times = make_schedule("uniform", build_path("linear"), steps)
    with pytest.raises(GenimageError, match=message):
        with_renoise_times(times, bad)
