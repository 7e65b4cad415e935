"""Objectives: per-sample losses, targets in closed form, and an exact-denoiser zero-loss check."""

import pytest
import torch
from torch import nn

from genimage.models.denoiser import Denoiser
from genimage.objectives import OBJECTIVES, drop_condition
from genimage.paths import build_path
from genimage.paths.conversions import PathCoefficients, from_x0_eps




@pytest.mark.parametrize("name", OBJECTIVES.names())
def test_losses_are_per_sample_and_differentiable(name):
    spec = OBJECTIVES.get(name)
    net = nn.Conv2d(3, 3, 1)
    model = Denoiser(_Wrap(net), build_path(spec.path), spec.prediction)
    loss = spec.build(0.0)(model, {"image": torch.rand(5, 3, 4, 4) * 2 - 1, "cond": None}, torch.Generator().manual_seed(0))
    assert loss.shape == (5,)
    assert torch.isfinite(loss).all()
    loss.mean().backward()
    assert net.weight.grad is not None and net.weight.grad.abs().sum() > 0


class _Wrap(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x, c_noise, cond=None):
        return self.net(x)


@pytest.mark.parametrize("name", OBJECTIVES.names())
def test_exact_target_gives_zero_loss(name):
    """Replaying the objective's own random draws, the exact target must give loss 0."""
    spec = OBJECTIVES.get(name)
    path = build_path(spec.path)
    x0 = torch.rand(6, 3, 4, 4, dtype=torch.float64) * 2 - 1
    objective = spec.build(0.0)

    # draw t and eps exactly as the objective will, from a cloned generator
    g = torch.Generator().manual_seed(3)
    t = objective.time_sampler(6, g, path)
    eps = torch.randn(x0.shape, generator=g).double()
    target = from_x0_eps(spec.prediction, x0, eps, PathCoefficients.at(path, t))

    class Exact(nn.Module):
        def forward(self, x, c_noise, cond=None):
            return target

    model = Denoiser(Exact(), path, spec.prediction)
    loss = objective(model, {"image": x0, "cond": None}, torch.Generator().manual_seed(3))
    assert loss.max() < 1e-12


def test_time_distributions_stay_in_path_range():
    for name in OBJECTIVES.names():
        spec = OBJECTIVES.get(name)
        path = build_path(spec.path)
        t = spec.build(0.0).time_sampler(10000, torch.Generator().manual_seed(0), path)
        assert t.min() >= path.t_min and t.max() <= path.t_max


def test_drop_condition_rate_and_semantics():
    g = torch.Generator().manual_seed(0)
    cond = {"label": torch.arange(10000) % 7, "text_mask": torch.ones(10000, 5, dtype=torch.bool)}
    out = drop_condition(cond, 0.1, g)
    dropped = out["label"] == -1
    assert 0.08 < dropped.float().mean() < 0.12
    # text is dropped for exactly the same samples, and only those
    assert torch.equal(~out["text_mask"].any(1), dropped)
    assert drop_condition(cond, 0.0, g) is cond
    assert drop_condition(None, 0.5, g) is None
