"""Classifier-free guidance wrapper (genimage.conditioning.cfg)."""

import pytest
import torch
from torch import nn

from analytic import AnalyticDenoiser, Gaussian
from genimage.conditioning.cfg import CFGDenoiser, null_condition
from genimage.errors import GenimageError
from genimage.models.denoiser import Prediction, per_sample_time
from genimage.paths import build_path
from genimage.samplers import SAMPLERS, make_schedule

B, L, D = 3, 5, 4


class ToyConditionalModel(nn.Module):
    """A per-sample model whose output depends on x, t, the label and the masked text."""

    def __init__(self):
        super().__init__()
        self.path = build_path("vp-cosine")
        self.batches: list[int] = []

    def forward(self, x, t, cond=None):
        self.batches.append(x.shape[0])
        t = per_sample_time(t, x.shape[0]).to(x.dtype).view(-1, 1, 1, 1)
        shift = torch.zeros(x.shape[0], dtype=x.dtype)
        if cond is not None:
            shift = shift + 0.3 * (cond["label"].to(x.dtype) + 1.0)
            if "text" in cond:
                shift = shift + (cond["text"] * cond["text_mask"][..., None]).sum((1, 2)) / 10
        shift = shift.view(-1, 1, 1, 1)
        return Prediction(0.5 * x + shift * (1 + t), -0.25 * x + shift**2 - t)


def make_inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, 2, 4, 4, generator=g)
    cond = {
        "label": torch.tensor([0, 3, 7]),
        "text": torch.randn(B, L, D, generator=g),
        "text_mask": torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 1, 0], [1, 0, 0, 0, 0]], dtype=torch.bool),
    }
    return x, cond


def assert_pred_equal(a: Prediction, b: Prediction, **tol):
    torch.testing.assert_close(a.x0, b.x0, **tol)
    torch.testing.assert_close(a.eps, b.eps, **tol)


def test_null_condition():
    _, cond = make_inputs()
    before = {k: v.clone() for k, v in cond.items()}
    null = null_condition(cond)
    assert torch.equal(null["label"], torch.full((B,), -1)) and null["label"].dtype == cond["label"].dtype
    assert null["text_mask"].dtype == torch.bool and not null["text_mask"].any()
    assert null["text_mask"].shape == cond["text_mask"].shape
    assert torch.equal(null["text"], torch.zeros(B, L, D))
    assert all(torch.equal(cond[k], before[k]) for k in cond), "null_condition must not modify its input"


@pytest.mark.parametrize("t", [0.4, torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)])
def test_guidance_one_is_the_conditional_model(t):
    x, cond = make_inputs()
    model = ToyConditionalModel()
    guided = CFGDenoiser(model, 1.0)(x, t, cond)
    assert_pred_equal(guided, model(x, t, cond), rtol=0, atol=0)
    assert model.batches == [B, B], "guidance 1 needs no unconditional branch"


@pytest.mark.parametrize("t", [0.4, torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)])
def test_guidance_zero_is_the_unconditional_model(t):
    x, cond = make_inputs()
    model = ToyConditionalModel()
    guided = CFGDenoiser(model, 0.0)(x, t, cond)
    assert_pred_equal(guided, model(x, t, null_condition(cond)), rtol=0, atol=0)
    assert not torch.allclose(guided.x0, model(x, t, cond).x0)


@pytest.mark.parametrize("w", [3.0, 7.5, -0.5])
@pytest.mark.parametrize("t", [0.4, torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)])
def test_guided_prediction_extrapolates_from_uncond_to_cond(w, t):
    x, cond = make_inputs()
    model = ToyConditionalModel()
    guided = CFGDenoiser(model, w)(x, t, cond)
    assert model.batches == [2 * B], "both branches run as one doubled batch"
    c, u = model(x, t, cond), model(x, t, null_condition(cond))
    want = Prediction(u.x0 + w * (c.x0 - u.x0), u.eps + w * (c.eps - u.eps))
    assert_pred_equal(guided, want, rtol=1e-5, atol=1e-5)


def test_negative_prompt_replaces_the_unconditional_branch():
    x, cond = make_inputs()
    _, other = make_inputs(seed=1)
    negative = {"label": torch.full((B,), -1), "text": other["text"], "text_mask": torch.ones(B, L, dtype=torch.bool)}
    model, w, t = ToyConditionalModel(), 4.0, 0.6
    guided = CFGDenoiser(model, w, uncond=negative)(x, t, cond)
    c, u = model(x, t, cond), model(x, t, negative)
    assert_pred_equal(guided, Prediction(u.x0 + w * (c.x0 - u.x0), u.eps + w * (c.eps - u.eps)), rtol=1e-5, atol=1e-5)
    null_guided = CFGDenoiser(model, w)(x, t, cond)
    assert not torch.allclose(guided.x0, null_guided.x0)
    # guidance 0 with a negative prompt is the negative-prompt model
    assert_pred_equal(CFGDenoiser(model, 0.0, uncond=negative)(x, t, cond), u, rtol=0, atol=0)


def test_uncond_with_different_keys_is_rejected():
    x, cond = make_inputs()
    with pytest.raises((ValueError, GenimageError)):
        CFGDenoiser(ToyConditionalModel(), 2.0, uncond={"label": torch.full((B,), -1)})(x, 0.5, cond)


def test_no_condition_means_no_guidance():
    x, _ = make_inputs()
    model = ToyConditionalModel()
    assert_pred_equal(CFGDenoiser(model, 5.0)(x, 0.5, None), model(x, 0.5, None), rtol=0, atol=0)


def test_cfg_wrapper_is_a_model_for_samplers():
    # With a model that ignores its conditioning, cond == uncond and guidance changes nothing.
    path = build_path("edm")
    model = AnalyticDenoiser(path, Gaussian())
    guided = CFGDenoiser(model, 5.0)
    assert guided.path is path
    ts = make_schedule("karras", path, 8)
    x = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 80
    cond = {"label": torch.tensor([1, 2])}
    out = SAMPLERS.get("heun")(guided, x, ts, cond=cond)
    torch.testing.assert_close(out, SAMPLERS.get("heun")(model, x, ts), rtol=1e-12, atol=1e-12)


def test_guidance_interval_guides_inside_and_runs_one_branch_outside():
    """Kynkäänniemi et al. 2024: guidance only for lo <= t <= hi, the conditional model alone elsewhere."""
    x, cond = make_inputs()
    model = ToyConditionalModel()
    limited = CFGDenoiser(model, 3.0, interval=(0.3, 0.8))
    full = CFGDenoiser(ToyConditionalModel(), 3.0)
    assert_pred_equal(limited(x, torch.tensor(0.5), cond), full(x, torch.tensor(0.5), cond), rtol=0, atol=0)
    model.batches.clear()
    outside = limited(x, torch.tensor(0.9), cond)
    assert model.batches == [B], "outside the interval only the conditional branch runs"
    assert_pred_equal(outside, model(x, torch.tensor(0.9), cond), rtol=0, atol=0)
    # per-sample times straddling the interval: guided rows inside, conditional rows outside
    t = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    mixed = limited(x, t, cond)
    guided, plain = full(x, t, cond), model(x, t, cond)
    for i, inside in enumerate([False, True, False]):
        want = guided if inside else plain
        torch.testing.assert_close(mixed.x0[i], want.x0[i], rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(mixed.eps[i], want.eps[i], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("bad", [(0.5, 0.2), (-0.1, 0.5), (0.2, 1.5), ("a", 1), (0.5,)])
def test_bad_guidance_interval_is_a_clear_error(bad):
    from genimage.generation import check_guidance_interval

    with pytest.raises(GenimageError, match="guidance interval"):
        check_guidance_interval(bad)
