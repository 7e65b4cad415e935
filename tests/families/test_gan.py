"""Tests of the ``gan`` family (StyleGAN2-style generator, residual D, R1, DiffAugment, health checks)."""

from __future__ import annotations

import contextlib
import math

import pytest
import torch

from genimage.errors import GenimageError
from genimage.families import FAMILIES
from genimage.families.base import StepContext
from genimage.families.gan import GANModel, diff_augment, gan_health, mean_pairwise_distance, mode_seeking_loss
from genimage.families.gan_networks import ModulatedConv2d
from genimage.models.config import ModelConfig
from genimage.utils.weights import load_safetensors, save_safetensors

TINY = {"z_dim": 8, "w_dim": 8, "mapping_layers": 2, "channel_base": 64, "max_channels": 16,
        "r1_gamma": 0.1, "r1_every": 2, "mixing_prob": 0.9}


def make_model(size: int = 8, channels: int = 1, num_classes: int = 10, seed: int = 0, **over) -> GANModel:
    torch.manual_seed(seed)
    bc = {**TINY, **over, "image_size": size, "channels": channels, "num_classes": num_classes}
    mc = ModelConfig(backbone="stylegan2", backbone_config=bc, objective="", path="", prediction="",
                     image_size=size, channels=channels, num_classes=num_classes, family="gan")
    return GANModel(mc)


def make_ctx(model: GANModel, opts, step: int, seed: int = 0, gen: torch.Generator | None = None) -> StepContext:
    return StepContext(optimizers=opts, generator=gen or torch.Generator().manual_seed(seed), step=step,
                       backward=lambda loss: loss.backward(),
                       clip=lambda p: torch.nn.utils.clip_grad_norm_(p, 1.0),
                       autocast=contextlib.nullcontext, cond_drop_prob=0.1)


def gens(n: int, base: int = 0) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(base + i) for i in range(n)]


def test_registered():
    spec = FAMILIES.get("gan")
    assert spec.model_cls is GANModel and "tiny" in spec.presets and "small" in spec.presets
    assert spec.train_defaults["lr"] > 0


@pytest.mark.parametrize("size,channels,num_classes", [(8, 1, 10), (8, 1, 0), (16, 3, 4), (16, 3, 0)])
def test_sample_shape_and_range(size, channels, num_classes):
    model = make_model(size, channels, num_classes)
    cond = [i % num_classes for i in range(5)] if num_classes else None
    x = model.sample(5, cond=cond, generator=torch.Generator().manual_seed(0))
    assert x.shape == (5, channels, size, size) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1 and torch.isfinite(x).all()
    assert x.std() > 0  # not constant
    # same seed -> same images; different seed -> different images
    y = model.sample(5, cond=cond, generator=torch.Generator().manual_seed(0))
    z = model.sample(5, cond=cond, generator=torch.Generator().manual_seed(1))
    assert torch.equal(x, y) and not torch.equal(x, z)


def test_labels_change_conditional_samples_and_bad_labels_raise():
    model = make_model()
    a = model.sample(3, cond=[0, 0, 0], generator=torch.Generator().manual_seed(0))
    b = model.sample(3, cond=[5, 5, 5], generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(a, b)
    with pytest.raises(GenimageError):
        model.sample(2, cond=[0, 10])
    with pytest.raises(GenimageError):
        make_model(num_classes=0).sample(2, cond=[0, 1])


def test_per_sample_generators_are_independent():
    model = make_model(16, 3, 4)
    cond = [0, 1, 2, 3]
    batch = model.sample(4, cond=cond, generator=gens(4))
    for i in range(4):
        single = model.sample(1, cond=[cond[i]], generator=gens(1, base=i))
        assert (batch[i : i + 1] - single).abs().max() < 1e-5
    # changing generator 0 leaves rows 1..3 alone
    other = model.sample(4, cond=cond, generator=[torch.Generator().manual_seed(99)] + gens(3, base=1))
    assert (other[1:] - batch[1:]).abs().max() < 1e-5
    assert not torch.allclose(other[0], batch[0])


def test_save_load_round_trip_bit_exact(tmp_path):
    model = make_model(8, 1, 10)
    opts = model.configure_optimizers(2e-3, 0.0)
    x = torch.rand(8, 1, 8, 8) * 2 - 1
    for step in range(2):  # make w_avg and the weights non-initial
        model.training_step({"image": x, "cond": {"label": torch.arange(8)}}, make_ctx(model, opts, step))
    path = tmp_path / "model.safetensors"
    save_safetensors({k: v.contiguous() for k, v in model.ema_module().state_dict().items()}, path)
    fresh = make_model(8, 1, 10, seed=123)
    fresh.load_sampling_state(load_safetensors(path))
    cond = list(range(6))
    for psi in (1.0, 0.5):
        a = model.sample(6, cond=cond, generator=torch.Generator().manual_seed(3), psi=psi)
        b = fresh.sample(6, cond=cond, generator=torch.Generator().manual_seed(3), psi=psi)
        assert torch.equal(a, b)
    # training state (G + D) round trip too
    path2 = tmp_path / "network.safetensors"
    save_safetensors({k: v.contiguous() for k, v in model.training_state().items()}, path2)
    fresh2 = make_model(8, 1, 10, seed=7)
    fresh2.load_training_state(load_safetensors(path2))
    xin = torch.rand(4, 1, 8, 8)
    assert torch.equal(model.discriminator(xin, torch.arange(4)), fresh2.discriminator(xin, torch.arange(4)))


def test_load_sampling_state_mismatch_raises():
    model = make_model(8, 1, 10)
    bigger = make_model(8, 1, 10, channel_base=128, max_channels=32)
    with pytest.raises((GenimageError, RuntimeError)):
        bigger.load_sampling_state(model.ema_module().state_dict())


def test_style_mix_endpoints():
    model = make_model(16, 3, 4)
    with torch.no_grad():  # give the noise inputs a visible effect, so noise equality is tested too
        for layer in model.generator.layers:
            layer.noise_strength.fill_(0.3)
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(3, 8, generator=g), torch.randn(3, 8, generator=g)
    cond = [0, 1, 2]
    seed = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    img1 = model.generate(z1, cond, seed())
    img2 = model.generate(z2, cond, seed())
    # convention: layers < crossover take z1's styles (coarse), layers >= crossover take z2's (fine)
    assert torch.equal(model.style_mix(z1, z2, 0, cond, seed()), img2)
    assert torch.equal(model.style_mix(z1, z2, model.num_ws, cond, seed()), img1)
    mid = model.style_mix(z1, z2, 2, cond, seed())
    assert not torch.allclose(mid, img1) and not torch.allclose(mid, img2)
    with pytest.raises(GenimageError):
        model.style_mix(z1, z2, model.num_ws + 1, cond)


def test_demodulated_conv_has_unit_std_per_output_channel():
    torch.manual_seed(0)
    conv = ModulatedConv2d(32, 16, 3, w_dim=8, demodulate=True)
    with torch.no_grad():
        conv.affine.weight.mul_(3.0)  # styles far from 1, so demodulation has real work to do
    x = torch.randn(8, 32, 32, 32)
    w = torch.randn(8, 8)
    with torch.no_grad():
        y = conv(x, w)
        std = y[:, :, 1:-1, 1:-1].std(dim=(2, 3))  # (sample, out channel), away from the zero padding
    assert std.shape == (8, 16)
    assert (std - 1).abs().max() < 0.1, std
    plain = ModulatedConv2d(32, 16, 3, w_dim=8, demodulate=False)
    plain.load_state_dict(conv.state_dict())
    with torch.no_grad():
        std_plain = plain(x, w)[:, :, 1:-1, 1:-1].std(dim=(2, 3))
    assert (std_plain - 1).abs().max() > 0.3  # without Eq. 3 the scale follows the styles


def test_truncation_pulls_w_to_class_average():
    model = make_model()
    g = model.generator
    with torch.no_grad():
        g.w_avg.copy_(torch.randn_like(g.w_avg))
    z = torch.randn(4, 8)
    labels = torch.tensor([0, 3, -1, 3])
    w0 = g.map(z, labels, psi=0.0)
    rows = torch.tensor([0, 3, 10, 3])
    assert (w0 - g.w_avg[rows]).abs().max() < 1e-6
    w1, wh = g.map(z, labels), g.map(z, labels, psi=0.5)
    assert (wh - 0.5 * (w1 + g.w_avg[rows])).abs().max() < 1e-5


def test_d_loss_decreases_on_fixed_batch_and_losses_finite():
    model = make_model(8, 1, 10, diffaug="")
    opts = model.configure_optimizers(2e-3, 0.0)
    real = torch.rand(16, 1, 8, 8) * 2 - 1
    labels = torch.arange(16) % 10
    losses = []
    for step in range(12):
        # the same seed every step: the same fakes, so the batch is fixed
        m = model.discriminator_step(real, labels, make_ctx(model, opts, step, seed=1))
        assert all(math.isfinite(v) for v in m.values())
        losses.append(m["d_loss"])
    assert losses[-1] < losses[0] - 0.1, losses


def test_training_step_metrics_and_updates():
    model = make_model(16, 3, 4)
    opts = model.configure_optimizers(2e-3, 0.0)
    x = torch.rand(8, 3, 16, 16) * 2 - 1
    g_before = [p.detach().clone() for p in model.generator.parameters()]
    d_before = [p.detach().clone() for p in model.discriminator.parameters()]
    gen = torch.Generator().manual_seed(0)
    for step in range(3):
        batch = {"image": x, "cond": {"label": torch.arange(8) % 4}}
        m = model.training_step(batch, make_ctx(model, opts, step, gen=gen))
    assert set(m) >= {"loss", "d_loss", "r1", "d_real", "d_fake"}
    assert all(math.isfinite(v) for v in m.values()) and m["r1"] > 0
    assert any(not torch.equal(a, b) for a, b in zip(g_before, model.generator.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(d_before, model.discriminator.parameters()))
    assert model.generator.w_avg.abs().sum() > 0
    # all parameters trainable again after the step
    assert all(p.requires_grad for p in model.parameters())


def test_mode_seeking_loss_and_step():
    z = torch.randn(8, 4)
    same = torch.zeros(8, 1, 4, 4)
    varied = torch.randn(8, 1, 4, 4)
    assert mode_seeking_loss(same, z) > 1e4  # collapsed pairs: 1 / eps
    assert mode_seeking_loss(varied, z) < 10
    model = make_model(8, 1, 10, mode_seeking=1.0)
    opts = model.configure_optimizers(2e-3, 0.0)
    m = model.training_step({"image": torch.rand(8, 1, 8, 8) * 2 - 1, "cond": {"label": torch.arange(8)}},
                            make_ctx(model, opts, 0))
    assert math.isfinite(m["mode_seeking"]) and m["mode_seeking"] > 0


def test_training_is_reproducible_from_ctx_generator():
    x = torch.rand(8, 1, 8, 8) * 2 - 1
    outs = []
    for _ in range(2):
        model = make_model(8, 1, 10)
        opts = model.configure_optimizers(2e-3, 0.0)
        gen = torch.Generator().manual_seed(4)
        for step in range(2):
            model.training_step({"image": x, "cond": {"label": torch.arange(8)}}, make_ctx(model, opts, step, gen=gen))
        outs.append(model.sample(4, generator=torch.Generator().manual_seed(0)))
    assert torch.equal(outs[0], outs[1])


def test_unconditional_training_without_cond():
    model = make_model(8, 1, 0)
    opts = model.configure_optimizers(2e-3, 0.0)
    m = model.training_step({"image": torch.rand(8, 1, 8, 8) * 2 - 1, "cond": None}, make_ctx(model, opts, 0))
    assert math.isfinite(m["loss"]) and math.isfinite(m["d_loss"])


def test_diff_augment_differentiable_and_seeded():
    x = (torch.rand(6, 3, 16, 16) * 2 - 1).requires_grad_(True)
    policy = ["color", "translation", "cutout"]
    a = diff_augment(x, policy, torch.Generator().manual_seed(0))
    b = diff_augment(x, policy, torch.Generator().manual_seed(0))
    assert a.shape == x.shape and torch.equal(a, b)
    a.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    # cutout alone zeroes exactly a quarter of the pixels of a 16x16 image when the square is inside
    c = diff_augment(torch.ones(64, 1, 16, 16), ["cutout"], torch.Generator().manual_seed(1))
    zeros = (c == 0).float().sum(dim=(1, 2, 3))
    assert zeros.max() == 64 and zeros.min() > 0
    # translation keeps the content (up to the shifted-out border): a single bright pixel moves by <= 2
    img = -torch.ones(32, 1, 16, 16)
    img[:, :, 8, 8] = 1
    t = diff_augment(img, ["translation"], torch.Generator().manual_seed(2))
    pos = (t[:, 0] == 1).nonzero()[:, 1:]
    assert len(pos) == 32 and (pos - 8).abs().max() <= 2 and (pos != 8).any()


def test_bad_config_raises():
    with pytest.raises(GenimageError, match="unknown gan config"):
        make_model(foo=1)
    with pytest.raises(GenimageError, match="power-of-two"):
        make_model(size=12)
    with pytest.raises(GenimageError, match="DiffAugment"):
        make_model(diffaug="color,rotate")


def test_gan_health_flags_collapse_not_diversity():
    g = torch.Generator().manual_seed(0)
    reals = torch.rand(64, 1, 8, 8, generator=g) * 2 - 1
    others = torch.rand(64, 1, 8, 8, generator=g) * 2 - 1
    collapsed = reals[:1].expand(64, -1, -1, -1).clone()
    ok_hist = [{"loss": 0.8, "d_loss": 1.2, "d_real": 0.3, "d_fake": -0.3, "r1": 0.1}] * 60
    assert gan_health(ok_hist, others, reals) == []
    assert gan_health(ok_hist, others) == []
    w = gan_health(ok_hist, collapsed, reals)
    assert len(w) == 1 and "mode collapse" in w[0] and "0.0000" in w[0]
    assert any("mode collapse" in s for s in gan_health(ok_hist, collapsed))
    assert mean_pairwise_distance(collapsed) == pytest.approx(0.0, abs=1e-6)
    # class coverage with a classifier that sees only one class
    one_class = lambda x: torch.nn.functional.one_hot(torch.zeros(len(x), dtype=torch.long), 10).float()  # noqa: E731
    w = gan_health(ok_hist, others, reals, classify=one_class, labels=torch.arange(64) % 10)
    assert any("1/10 classes" in s for s in w) and any("agrees" in s for s in w)
    # every class present but one image per class: flagged only by the within-class check
    labels = torch.arange(64) % 8
    per_class = others[:8][labels]
    assert gan_health(ok_hist, per_class, reals) == []
    w = gan_health(ok_hist, per_class, reals, labels=labels, real_labels=torch.arange(64) % 8)
    assert len(w) == 1 and "within classes" in w[0]
    assert gan_health(ok_hist, others, reals, labels=labels, real_labels=torch.arange(64) % 8) == []


def test_gan_health_flags_divergence():
    nan_hist = [{"loss": 0.7, "d_loss": 1.3, "d_real": 0.0, "d_fake": 0.0}] * 5 + [{"loss": float("nan"), "d_loss": 1.0,
                                                                                   "d_real": 0.0, "d_fake": 0.0}]
    assert any("non-finite" in s and "nan" in s for s in gan_health(nan_hist))
    d_wins = [{"loss": 12.0, "d_loss": 0.001, "d_real": 9.0, "d_fake": -11.0}] * 50
    w = gan_health(d_wins)
    assert any("D wins" in s and "20.00" in s for s in w)
    explode = [{"loss": 0.7, "d_loss": 1.0, "d_real": 5e3, "d_fake": 4e3}] * 20
    assert any("exploding d_real" in s for s in gan_health(explode))
    assert gan_health({"loss": 0.7, "d_loss": 1.3, "d_real": 0.1, "d_fake": -0.1}) == []
