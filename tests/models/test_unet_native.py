"""genimage's own UNet computes diffusers' UNets bit for bit, with the same state-dict keys."""

from __future__ import annotations

import pytest
import torch

from genimage.models.backbones.unet import UNet, UNetConfig

CONFIGS = {
    "text (bundled shapes)": dict(image_size=8, in_channels=4, block_out_channels=(32, 64), attention_levels=(True, True),
                                  norm_num_groups=16, attention_head_dim=32, text_dim=48, max_text_len=5),
    "text, class, attention at the bottom": dict(image_size=8, in_channels=3, block_out_channels=(16, 32, 32),
                                                 layers_per_block=2, norm_num_groups=8, attention_head_dim=16,
                                                 num_classes=3, text_dim=24, max_text_len=4),
    "no text, class": dict(image_size=8, in_channels=1, block_out_channels=(16, 32), norm_num_groups=8,
                           attention_head_dim=8, num_classes=10),
    "no text, attention everywhere": dict(image_size=8, in_channels=3, block_out_channels=(16, 16, 32),
                                          layers_per_block=2, attention_levels=(True, False, True),
                                          norm_num_groups=8, attention_head_dim=8),
    "text, coordinate channels": dict(image_size=8, in_channels=4, block_out_channels=(16, 32),
                                      attention_levels=(True, True), norm_num_groups=8, attention_head_dim=16,
                                      text_dim=24, max_text_len=4, coord_channels=True),
}


def _pair(kw):
    cfg = UNetConfig(**kw)
    torch.manual_seed(0)
    ref = UNet(cfg, impl="diffusers").eval()
    with torch.no_grad():  # random (not zero-initialised) weights everywhere
        for p in ref.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
    native = UNet(cfg).eval()
    assert set(native.state_dict()) == set(ref.state_dict())
    native.load_state_dict(ref.state_dict(), strict=True)
    return cfg, ref, native


def _cond(cfg, b, g):
    cond = {}
    if cfg.num_classes:
        cond["label"] = torch.tensor([i % cfg.num_classes for i in range(b - 1)] + [-1])
    if cfg.text_dim:
        cond["text"] = torch.randn(b, cfg.max_text_len, cfg.text_dim, generator=g)
        mask = torch.ones(b, cfg.max_text_len, dtype=torch.bool)
        mask[0, 2:] = False
        mask[-1] = False  # the unconditional row
        cond["text_mask"] = mask
    return cond


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("bf16", [False, True])
def test_native_unet_matches_diffusers_bit_for_bit(name, bf16):
    cfg, ref, native = _pair(CONFIGS[name])
    g = torch.Generator().manual_seed(1)
    for b in (1, 3):
        x = torch.randn(b, cfg.in_channels, cfg.image_size, cfg.image_size, generator=g)
        c_noise = torch.rand(b, generator=g) * 3
        cond = _cond(cfg, b, g)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            want = ref(x, c_noise, cond)
            got = native(x, c_noise, cond)
        assert got.dtype == want.dtype
        assert torch.equal(got, want), (name, bf16, b, (got - want).abs().max())


def test_native_unet_gradients_match_diffusers():
    cfg, ref, native = _pair(CONFIGS["text (bundled shapes)"])
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, cfg.in_channels, 8, 8, generator=g)
    c_noise = torch.rand(2, generator=g)
    cond = _cond(cfg, 2, g)
    ref(x, c_noise, cond).square().mean().backward()
    native(x, c_noise, cond).square().mean().backward()
    ref_grads = dict(ref.named_parameters())
    for name, p in native.named_parameters():
        assert torch.equal(p.grad, ref_grads[name].grad), name


def test_building_a_native_unet_does_not_import_diffusers():
    import subprocess
    import sys

    code = ("import sys\nfrom genimage.models.backbones.unet import UNet, UNetConfig\n"
            "UNet(UNetConfig(image_size=8, in_channels=4, block_out_channels=(32, 64), norm_num_groups=16, text_dim=8))\n"
            "print('diffusers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
