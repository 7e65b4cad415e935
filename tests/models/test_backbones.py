"""Contract tests shared by every denoising backbone (genimage.models.backbones.base)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from genimage.errors import GenimageError
from genimage.models.backbones import BACKBONES, build_backbone
from genimage.nn.attention import CrossAttention, attention

B, TEXT_DIM, MAX_LEN, NUM_CLASSES = 4, 8, 5, 3

# name -> tiny config dict; "unet" with text uses UNet2DConditionModel, "unet_cls" UNet2DModel.
TINY = {
    "dit": ("dit", dict(image_size=16, patch_size=4, hidden=32, depth=2, heads=2, num_classes=NUM_CLASSES,
                        text_dim=TEXT_DIM, max_text_len=MAX_LEN)),
    "unet": ("unet", dict(image_size=16, block_out_channels=(8, 16), attention_head_dim=8, norm_num_groups=4,
                          num_classes=NUM_CLASSES, text_dim=TEXT_DIM, max_text_len=MAX_LEN)),
    "unet_cls": ("unet", dict(image_size=16, block_out_channels=(8, 16), attention_head_dim=8, norm_num_groups=4,
                              num_classes=NUM_CLASSES)),
}
ALL = list(TINY)
TEXT = ["dit", "unet"]


def make(key: str, seed: int = 0, perturb: bool = True) -> torch.nn.Module:
    """Build a tiny backbone; ``perturb`` adds noise to every weight so zero-initialised
    layers (DiT's adaLN-Zero gates and output) stop hiding the conditioning."""
    name, cfg = TINY[key]
    torch.manual_seed(seed)
    model = build_backbone(name, cfg).eval()
    if perturb:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1 * torch.randn_like(p))
    return model


def inputs(key: str, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """x, c_noise and a cond dict with one null label and one all-False text row."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, 3, 16, 16, generator=g)
    c_noise = torch.rand(B, generator=g) * 1000
    cond = {"label": torch.tensor([0, 1, 2, -1])}
    if TINY[key][1].get("text_dim"):
        lengths = torch.tensor([5, 2, 0, 3])  # row 2 is unconditional
        cond["text"] = torch.randn(B, MAX_LEN, TEXT_DIM, generator=g)
        cond["text_mask"] = torch.arange(MAX_LEN)[None] < lengths[:, None]
    return x, c_noise, cond


def test_registry_has_both_backbones():
    assert {"dit", "unet"} <= set(BACKBONES.names())


@pytest.mark.parametrize("key", ALL)
def test_output_shape_dtype_and_config_round_trip(key):
    model = make(key)
    x, c_noise, cond = inputs(key)
    out = model(x, c_noise, cond)
    assert out.shape == x.shape and out.dtype == torch.float32 and torch.isfinite(out).all()
    # config -> dict -> JSON -> build gives the same config and, with the same weights, the same output.
    name = TINY[key][0]
    cfg_dict = json.loads(json.dumps(dataclasses.asdict(model.config)))
    clone = build_backbone(name, cfg_dict).eval()
    assert clone.config == model.config
    clone.load_state_dict(model.state_dict())
    assert torch.equal(clone(x, c_noise, cond), out)


def test_dit_starts_as_the_zero_function():
    """adaLN-Zero (Peebles & Xie 2023, Sec. 3.2): zero gates and output layer at init."""
    model = make("dit", perturb=False)
    x, c_noise, cond = inputs("dit")
    assert torch.equal(model(x, c_noise, cond), torch.zeros_like(x))


@pytest.mark.parametrize("key", ALL)
def test_safetensors_round_trip_is_exact(key, tmp_path):
    model = make(key, seed=0)
    path = tmp_path / "model.safetensors"
    save_file(model.state_dict(), str(path))
    other = make(key, seed=5)
    x, c_noise, cond = inputs(key)
    assert not torch.equal(other(x, c_noise, cond), model(x, c_noise, cond))
    other.load_state_dict(load_file(str(path)))
    assert torch.equal(other(x, c_noise, cond), model(x, c_noise, cond))


@pytest.mark.parametrize("key", ALL)
def test_null_label(key):
    model = make(key)
    x, c_noise, cond = inputs(key)
    out = model(x, c_noise, cond)
    relabeled = dict(cond, label=torch.tensor([0, 1, 2, 0]))
    changed = model(x, c_noise, relabeled)
    assert torch.equal(changed[:3], out[:3])  # other samples are untouched
    assert (changed[3] - out[3]).abs().max() > 1e-4  # -1 (null) differs from class 0
    # A missing label means "no label" for every sample.
    no_label = {k: v for k, v in cond.items() if k != "label"}
    assert torch.equal(model(x, c_noise, no_label)[3], out[3])
    with pytest.raises(GenimageError, match="label"):
        model(x, c_noise, dict(cond, label=torch.tensor([0, 1, 3, -1])))


@pytest.mark.parametrize("key", TEXT)
def test_text_conditioning_and_padding(key):
    model = make(key)
    x, c_noise, cond = inputs(key)
    out = model(x, c_noise, cond)
    # The output depends on the text of real tokens ...
    other_text = dict(cond, text=cond["text"] + torch.randn_like(cond["text"]))
    changed = model(x, c_noise, other_text)
    for i in (0, 1, 3):
        assert (changed[i] - out[i]).abs().max() > 1e-4
    assert torch.equal(changed[2], out[2])  # the all-False row ignores its text entirely
    # ... but not on whatever sits behind the mask: garbage there gives identical bits.
    garbage = torch.where(cond["text_mask"][..., None], cond["text"], 1e4 * torch.randn_like(cond["text"]))
    assert torch.equal(model(x, c_noise, dict(cond, text=garbage)), out)
    # An all-False row is unconditional: same as giving no text at all (up to float summation order).
    no_text = model(x, c_noise, {"label": cond["label"]})
    torch.testing.assert_close(no_text[2], out[2], rtol=1e-5, atol=1e-5)
    assert (no_text[0] - out[0]).abs().max() > 1e-4
    # Shorter sequences are fine; longer than max_text_len is an error.
    short = model(x, c_noise, dict(cond, text=cond["text"][:, :3], text_mask=cond["text_mask"][:, :3]))
    assert torch.isfinite(short).all()
    with pytest.raises(GenimageError, match="max_text_len"):
        model(x, c_noise, dict(text=torch.zeros(B, MAX_LEN + 1, TEXT_DIM)))


@pytest.mark.parametrize("key", ALL)
def test_gradients_reach_every_parameter(key):
    """Every parameter is used: the batch holds every class, the null label and a null text row."""
    model = make(key).train()
    x, c_noise, cond = inputs(key)
    model(x, c_noise, cond).square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


@pytest.mark.parametrize("key", ALL)
def test_bf16_autocast(key):
    model = make(key)
    x, c_noise, cond = inputs(key)
    ref = model(x, c_noise, cond)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, c_noise, cond)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    rel = (out - ref).norm() / ref.norm()
    assert rel < 0.05
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(x, c_noise, cond).square().mean()
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("key", ALL)
def test_batch_invariance_fp32(key):
    """Sample i of a batch equals the same sample run alone, bit for bit (image i depends only on seed i)."""
    model = make(key)
    x, c_noise, cond = inputs(key)
    with torch.no_grad():
        full = model(x, c_noise, cond)
        for i in range(B):
            alone = model(x[i : i + 1], c_noise[i : i + 1], {k: v[i : i + 1] for k, v in cond.items()})
            assert torch.equal(alone[0], full[i]), f"sample {i}: max diff {(alone[0] - full[i]).abs().max()}"
        pair = model(x[1:3], c_noise[1:3], {k: v[1:3] for k, v in cond.items()})
        assert torch.equal(pair, full[1:3])


@pytest.mark.parametrize("key", ALL)
def test_bad_inputs_raise_concise_errors(key):
    model = make(key, perturb=False)
    x, c_noise, cond = inputs(key)
    with pytest.raises(GenimageError, match="expects input"):
        model(x[:, :2], c_noise, cond)
    with pytest.raises(GenimageError, match="c_noise"):
        model(x, c_noise[:2], cond)
    with pytest.raises(GenimageError, match="unknown conditioning"):
        model(x, c_noise, dict(cond, caption=cond["label"]))
    with pytest.raises(GenimageError, match="unknown"):
        build_backbone(TINY[key][0], dict(TINY[key][1], widht=3))


def test_conditioning_the_model_lacks_is_rejected():
    name, cfg = TINY["unet_cls"]
    model = build_backbone(name, dict(cfg, num_classes=0))
    x, c_noise, _ = inputs("unet_cls")
    with pytest.raises(GenimageError, match="num_classes=0"):
        model(x, c_noise, {"label": torch.zeros(B, dtype=torch.long)})
    with pytest.raises(GenimageError, match="text_dim=0"):
        model(x, c_noise, {"text": torch.zeros(B, 2, TEXT_DIM)})
    assert model(x, c_noise, None).shape == x.shape


def test_attention_key_mask_ignores_masked_keys():
    """Masked keys get exactly zero weight; cross-attention matches attention over the kept keys."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, 6, 4, generator=g) for _ in range(3))
    mask = torch.tensor([[True] * 3 + [False] * 3, [True] * 6])
    out = attention(q, k, v, mask)
    torch.testing.assert_close(out[:1], attention(q[:1], k[:1, :, :3], v[:1, :, :3]))
    k2 = torch.where(mask[:, None, :, None], k, torch.randn(2, 2, 6, 4, generator=g))
    assert torch.equal(attention(q, k2, v, mask), out)
    ref = torch.softmax(q @ k.transpose(-1, -2) / 2.0, -1) @ v
    torch.testing.assert_close(out[1], ref[1])
    xattn = CrossAttention(8, 5, heads=2)
    ctx = torch.randn(2, 4, 5, generator=g)
    cmask = torch.tensor([[True, True, False, False], [True, True, True, True]])
    queries = torch.randn(2, 3, 8, generator=g)
    y = xattn(queries, ctx, cmask)
    assert y.shape == (2, 3, 8)
    ctx_garbage = torch.where(cmask[..., None], ctx, 1e3 * torch.randn(2, 4, 5, generator=g))
    assert torch.equal(xattn(queries, ctx_garbage, cmask), y)
    torch.testing.assert_close(y[:1], xattn(queries[:1], ctx[:1, :2]))
