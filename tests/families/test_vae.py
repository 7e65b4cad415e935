"""The ``vae`` and ``autoencoder`` families (genimage.families.vae) on tiny configs."""

from __future__ import annotations

import contextlib
import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from genimage.errors import GenimageError
from genimage.families import FAMILIES
from genimage.families.base import StepContext
from genimage.families.vae import KLAutoencoder, VAE, discretized_logistic_log_prob
from genimage.models.config import ModelConfig
from genimage.utils.weights import load_safetensors, save_safetensors

TINY = {"base_channels": 8, "channel_mult": [1, 2], "num_res_blocks": 1, "groups": 4, "downsample": 2,
        "cond_dim": 8}


def make(family: str, size: int = 8, channels: int = 1, num_classes: int = 0, **over) -> VAE | KLAutoencoder:
    bc = {**TINY, **over, "image_size": size, "channels": channels, "num_classes": num_classes}
    if family == "vae":
        bc.setdefault("latent", "flat")
        bc.setdefault("latent_dim", 4)
    else:
        bc.setdefault("latent", "spatial")
        bc.setdefault("latent_channels", 2)
    mc = ModelConfig(backbone="conv", backbone_config=bc, objective="", path="", prediction="", image_size=size,
                     channels=channels, num_classes=num_classes, family=family)
    torch.manual_seed(0)
    return FAMILIES.get(family).model_cls(mc)


def images(n: int = 4, channels: int = 1, size: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 256, (n, channels, size, size), generator=g).float() / 127.5 - 1.0)


def ctx_for(model, step: int, opts, seed: int = 0) -> StepContext:
    return StepContext(optimizers=opts, generator=torch.Generator().manual_seed(seed + step), step=step,
                       backward=lambda loss: loss.backward(),
                       clip=lambda p: torch.nn.utils.clip_grad_norm_(p, 1.0), autocast=contextlib.nullcontext,
                       cond_drop_prob=0.1)


def test_registered_with_presets():
    assert {"tiny", "small"} <= set(FAMILIES.get("vae").presets)
    assert {"tiny", "f4", "f8"} <= set(FAMILIES.get("autoencoder").presets)
    assert FAMILIES.get("vae").model_cls is VAE and FAMILIES.get("autoencoder").model_cls is KLAutoencoder


@pytest.mark.parametrize("factor", [1, 2, 4, 8])
def test_shapes_for_each_downsampling_factor(factor):
    mult = [1, 2, 2, 2][: int(math.log2(factor)) + 1]
    ae = make("autoencoder", downsample=factor, channel_mult=mult, latent_channels=3)
    x = images(2)
    z = ae.encode(x)
    assert ae.latent_shape == (3, 8 // factor, 8 // factor)
    assert z.shape == (2, *ae.latent_shape)
    assert ae.decode(z).shape == x.shape
    vae = make("vae", downsample=factor, channel_mult=mult, latent="spatial", latent_channels=2)
    mean, logvar = vae.encode(x)
    assert mean.shape == logvar.shape == (2, 2, 8 // factor, 8 // factor)
    assert vae.decode(mean).shape == x.shape


def test_vae_encode_decode_shapes_flat_and_rgb():
    vae = make("vae", size=8, channels=3, latent_dim=5)
    x = images(3, channels=3)
    mean, logvar = vae.encode(x)
    assert mean.shape == logvar.shape == (3, 5) and vae.latent_shape == (5,)
    out = vae.decode(mean)
    assert out.shape == (3, 3, 8, 8) and out.min() >= -1 and out.max() <= 1
    with pytest.raises(GenimageError):
        vae.decode(torch.zeros(3, 6))
    with pytest.raises(GenimageError):
        vae.encode(images(2, channels=1))


def test_discretized_logistic_sums_to_one():
    levels = torch.arange(256).float() / 127.5 - 1.0
    for mean, log_scale in [(0.1, -3.0), (-0.97, -5.0), (0.999, -1.0), (0.3, -7.0)]:
        lp = discretized_logistic_log_prob(levels, torch.tensor(mean), torch.tensor(log_scale))
        assert torch.isfinite(lp).all()
        assert torch.exp(lp.double()).sum().item() == pytest.approx(1.0, abs=1e-5)


def test_elbo_equals_reconstruction_minus_closed_form_kl():
    vae = make("vae", latent_dim=3)
    x = images(3)
    elbo = vae.elbo(x, generator=torch.Generator().manual_seed(7))
    # the same posterior sample, drawn independently
    eps = torch.randn((3, 1, 3), generator=torch.Generator().manual_seed(7))[:, 0]
    with torch.no_grad():
        mean, logvar = vae.encode(x)
        std = torch.exp(0.5 * logvar)
        mu, log_scale = vae.decoder_params(mean + std * eps)
    mu, s = mu.double(), torch.exp(log_scale.double())
    xd = x.double()
    h = 1.0 / 255.0
    upper = torch.where(xd > 1 - h, torch.ones_like(xd), torch.sigmoid((xd + h - mu) / s))
    lower = torch.where(xd < -1 + h, torch.zeros_like(xd), torch.sigmoid((xd - h - mu) / s))
    rec_nll = -torch.log(upper - lower).flatten(1).sum(1)
    kl = kl_divergence(Normal(mean.double(), std.double()), Normal(0.0, 1.0)).sum(1)
    torch.testing.assert_close(elbo.detach().double(), -(rec_nll + kl), rtol=1e-5, atol=1e-3)


def test_log_prob_and_bits_per_dim_are_consistent_and_finite():
    vae = make("vae")
    x = images(4)
    elbo = vae.elbo(x, generator=torch.Generator().manual_seed(1))
    lp = vae.log_prob(x, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(lp, elbo + 64 * math.log(127.5))
    torch.manual_seed(3)
    bpd = vae.bits_per_dim(x)
    expected = -vae.elbo(x, generator=torch.Generator().manual_seed(0)) / (64 * math.log(2.0))
    assert torch.isfinite(bpd).all() and bpd.shape == (4,)
    torch.testing.assert_close(bpd, expected, rtol=1e-5, atol=1e-5)
    torch.manual_seed(4)  # the global RNG does not change the number: reports are reproducible
    assert torch.equal(vae.bits_per_dim(x), bpd)
    other = vae.bits_per_dim(x, generator=torch.Generator().manual_seed(5))
    assert not torch.equal(other, bpd)  # the posterior draw is random, seeded by the generator
    assert VAE.has_likelihood and VAE.likelihood_is_bound


def test_importance_weighted_bound_is_tighter():
    vae = make("vae")
    x = images(4)
    with torch.no_grad():
        g = torch.Generator().manual_seed(0)
        elbo = torch.stack([vae.elbo(x, generator=g) for _ in range(20)]).mean(0)
        iwae = vae.log_prob(x, k=64, generator=g) - 64 * math.log(127.5)
    assert torch.isfinite(iwae).all()
    assert (iwae >= elbo - 1e-3).all()
    with pytest.raises(GenimageError):
        vae.elbo(x, k=0)


def _train(model, x, steps: int, cond=None, lr: float = 3e-3) -> list[float]:
    opts = model.configure_optimizers(lr, 0.0)
    return [model.training_step({"image": x, "cond": cond}, ctx_for(model, i, opts))["loss"] for i in range(steps)]


def test_vae_loss_decreases_on_fixed_batch():
    vae = make("vae")
    x = images(8)
    losses = _train(vae, x, 25)
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.1


def test_vae_warmup_and_free_bits_change_only_the_loss():
    vae = make("vae", kl_warmup_steps=10, free_bits=0.5)
    x = images(4)
    opts = vae.configure_optimizers(1e-3, 0.0)
    m = vae.training_step({"image": x, "cond": None}, ctx_for(vae, 0, opts))
    assert m["beta"] == pytest.approx(0.1)
    assert math.isfinite(m["bpd"])


def test_autoencoder_loss_decreases_on_fixed_batch():
    ae = make("autoencoder")
    x = images(8)
    losses = _train(ae, x, 25)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.02


def test_autoencoder_gan_step_updates_discriminator():
    ae = make("autoencoder", discriminator=True, disc_start=1, disc_width=8, disc_layers=2)
    x = images(4)
    opts = ae.configure_optimizers(1e-3, 0.0)
    assert set(opts) == {"main", "disc"}
    before = [p.detach().clone() for p in ae.disc.parameters()]
    m0 = ae.training_step({"image": x, "cond": None}, ctx_for(ae, 0, opts))
    assert "d_loss" not in m0  # before disc_start
    assert all(torch.equal(a, b) for a, b in zip(before, ae.disc.parameters()))
    m1 = ae.training_step({"image": x, "cond": None}, ctx_for(ae, 1, opts))
    assert math.isfinite(m1["d_loss"]) and math.isfinite(m1["g_loss"]) and m1["disc_weight"] >= 0
    assert any(not torch.equal(a, b) for a, b in zip(before, ae.disc.parameters()))


def test_vae_save_load_round_trip_bit_exact(tmp_path):
    vae = make("vae", num_classes=3)
    _train(vae, images(4), 2, cond={"label": torch.tensor([0, 1, 2, -1])})
    save_safetensors(vae.ema_module().state_dict(), tmp_path / "model.safetensors")
    other = make("vae", num_classes=3)
    other.load_sampling_state(load_safetensors(tmp_path / "model.safetensors"))
    gens = lambda: [torch.Generator().manual_seed(i) for i in range(3)]  # noqa: E731
    assert torch.equal(vae.sample(3, [0, 1, 2], gens()), other.sample(3, [0, 1, 2], gens()))
    x = images(2)
    assert torch.equal(vae.encode(x)[0], other.encode(x)[0])


def test_autoencoder_save_load_round_trip_bit_exact(tmp_path):
    ae = make("autoencoder")
    _train(ae, images(4), 2)
    assert ae.scale_factor != 1.0  # the running estimate was updated by training
    save_safetensors(ae.ema_module().state_dict(), tmp_path / "model.safetensors")
    other = make("autoencoder")
    other.load_sampling_state(load_safetensors(tmp_path / "model.safetensors"))
    assert other.scale_factor == ae.scale_factor
    x = images(3)
    assert torch.equal(ae.encode(x), other.encode(x))
    assert torch.equal(ae.reconstruct(x), other.reconstruct(x))
    with pytest.raises(GenimageError):
        make("autoencoder", latent_channels=3).load_sampling_state(load_safetensors(tmp_path / "model.safetensors"))


def test_interpolation_endpoints_decode_posterior_means():
    vae = make("vae", latent_dim=4)
    xa, xb = images(1, seed=1)[0], images(1, seed=2)[0]
    for mode in ("slerp", "linear"):
        seq = vae.interpolate(xa, xb, steps=5, mode=mode)
        assert seq.shape == (5, 1, 8, 8)
        with torch.no_grad():
            ends = vae.decode(torch.cat([vae.encode(xa[None])[0], vae.encode(xb[None])[0]]))
        torch.testing.assert_close(seq[0], ends[0], rtol=0, atol=1e-6)
        torch.testing.assert_close(seq[-1], ends[1], rtol=0, atol=1e-6)
        assert not torch.allclose(seq[2], seq[0])
    with pytest.raises(GenimageError):
        vae.interpolate(xa, xb, steps=1)


def test_per_sample_generators():
    for model in (make("vae"), make("autoencoder")):
        a = model.sample(3, None, [torch.Generator().manual_seed(s) for s in (10, 11, 12)])
        b = model.sample(3, None, [torch.Generator().manual_seed(s) for s in (99, 11, 98)])
        assert a.shape == (3, 1, 8, 8) and a.dtype == torch.float32
        assert a.min() >= -1 and a.max() <= 1
        torch.testing.assert_close(a[1], b[1], rtol=0, atol=1e-6)
        assert not torch.allclose(a[0], b[0])
        one = model.sample(2, None, torch.Generator().manual_seed(0))
        assert one.shape == (2, 1, 8, 8)
        with pytest.raises(GenimageError):
            model.sample(2, None, [torch.Generator()])


def test_class_conditional_vae_labels():
    vae = make("vae", num_classes=4)
    _train(vae, images(4), 2, cond={"label": torch.tensor([0, 1, 2, 3])})  # zero-init blocks ignore labels at init
    out = vae.sample(4, [0, 1, 2, 3], torch.Generator().manual_seed(0))
    same_z = vae.sample(4, [3, 3, 3, 3], torch.Generator().manual_seed(0))
    assert out.shape == (4, 1, 8, 8) and not torch.allclose(out[0], same_z[0])
    assert torch.isfinite(vae.bits_per_dim(images(4), cond=[0, 1, 2, -1])).all()
    with pytest.raises(GenimageError):
        vae.sample(2, [0, 4])
    with pytest.raises(GenimageError):
        make("vae").sample(2, [0, 1])


def test_autoencoder_scale_factor_gives_unit_std_latents():
    ae = make("autoencoder")
    x = images(16)
    raw_std = float(ae.encode(x).detach().std())
    factor = ae.calibrate(x)
    assert factor == pytest.approx(1.0 / raw_std, rel=1e-4)
    assert float(ae.encode(x).detach().std()) == pytest.approx(1.0, abs=1e-4)
    # the same through an iterable of batches, and through a first training step
    assert ae.calibrate([{"image": x[:8]}, x[8:]]) == pytest.approx(factor, rel=1e-5)
    fresh = make("autoencoder")
    opts = fresh.configure_optimizers(1e-3, 0.0)
    with torch.no_grad():
        expected = 1.0 / float(fresh.ae.encoder(x)[0].var()) ** 0.5
    fresh.training_step({"image": x, "cond": None}, ctx_for(fresh, 0, opts))
    assert fresh.scale_factor == pytest.approx(expected, rel=1e-4)


def test_autoencoder_sampled_latents_and_psnr():
    ae = make("autoencoder")
    x = images(4)
    z_mean = ae.encode(x)
    z1 = ae.encode(x, generator=torch.Generator().manual_seed(0), sample=True)
    z2 = ae.encode(x, generator=torch.Generator().manual_seed(0), sample=True)
    assert torch.equal(z1, z2) and not torch.equal(z1, z_mean)
    with torch.no_grad():
        rec = ae.decode(z_mean)
    mse = ((rec - x) / 2).square().flatten(1).mean(1)
    assert ae.reconstruction_psnr(x, batch_size=3) == pytest.approx(float((-10 * torch.log10(mse)).mean()), rel=1e-5)
    with pytest.raises(GenimageError):
        ae.decode(torch.zeros(1, 2, 8, 8))


@pytest.mark.parametrize("over", [
    {"downsample": 3}, {"downsample": 4, "channel_mult": [1, 2]}, {"unknown_key": 1}, {"groups": 3},
    {"latent": "flat"}, {"kl_weight": -1.0},
])
def test_bad_settings_raise_genimage_error(over):
    with pytest.raises(GenimageError):
        make("autoencoder", **over)


def test_bad_vae_settings_raise_genimage_error():
    with pytest.raises(GenimageError):
        make("vae", decoder_scale="huge")
    with pytest.raises(GenimageError):
        make("vae", size=12, downsample=8, channel_mult=[1, 1, 1, 1])


def test_pixel_scale_decoder():
    vae = make("vae", decoder_scale="pixel")
    x = images(4)
    assert torch.isfinite(vae.bits_per_dim(x)).all()
    assert vae.sample(2).shape == (2, 1, 8, 8)
