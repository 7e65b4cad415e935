"""Normalizing-flow family: exact inverses, log-determinants against brute-force Jacobians,
closed-form likelihood of the identity flow, training, save/load and per-sample seeding."""

from __future__ import annotations

import contextlib
import math

import pytest
import torch

from genimage.errors import GenimageError
from genimage.families import FAMILIES
from genimage.families.base import StepContext
from genimage.families.flow_layers import (
    ActNorm,
    AffineCoupling,
    FactorOut,
    InvConv1x1,
    LogitTransform,
    Squeeze,
    TopPrior,
    glow_step,
)
from genimage.families.normalizing_flow import PRESETS, NormalizingFlowModel
from genimage.models.config import ModelConfig
from genimage.utils.weights import load_safetensors, save_safetensors

COND_DIM = 5


def make_model(image_size: int = 4, channels: int = 1, num_classes: int = 3, seed: int = 0,
               **settings) -> NormalizingFlowModel:
    torch.manual_seed(seed)
    bc = {"levels": 2, "steps_per_level": 2, "hidden": 8, "checkerboard_steps": 1, "cond_dim": COND_DIM,
          **settings, "image_size": image_size, "channels": channels, "num_classes": num_classes}
    mc = ModelConfig(backbone="normalizing-flow", backbone_config=bc, objective="", path="", prediction="",
                     image_size=image_size, channels=channels, num_classes=num_classes, family="normalizing-flow")
    return NormalizingFlowModel(mc)


def perturb(module: torch.nn.Module, seed: int = 1, scale: float = 0.3) -> None:
    """Move every parameter off its (often identity) initial value."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))


def make_ctx(opts, step: int, seed: int = 0) -> StepContext:
    return StepContext(optimizers=opts, generator=torch.Generator().manual_seed(seed + step), step=step,
                       backward=lambda loss: loss.backward(),
                       clip=lambda p: torch.nn.utils.clip_grad_norm_(p, 1.0),
                       autocast=contextlib.nullcontext, cond_drop_prob=0.1)


def fixed_batch(n: int = 32):
    """A fixed 8x8 batch on the 8-bit grid: a class-dependent bar pattern plus pixel noise."""
    g = torch.Generator().manual_seed(11)
    y = torch.arange(n) % 10
    base = torch.zeros(n, 1, 8, 8)
    for i, label in enumerate(y.tolist()):
        base[i, 0, label % 8, :] = 1.0
        base[i, 0, :, (3 * label) % 8] = 1.0
    x = (base * 1.6 - 0.8 + 0.2 * torch.randn(n, 1, 8, 8, generator=g)).clamp(-1, 1)
    return torch.round((x + 1) * 127.5) / 127.5 - 1, y


def layer_cases():
    """(name, layer, input shape, uses cond); x in [-0.9, 0.9] so the logit is defined."""
    g = torch.Generator().manual_seed(3)
    return [
        ("logit", LogitTransform(), (1, 4, 4), False),
        ("actnorm", ActNorm(2), (2, 4, 4), False),
        ("invconv", InvConv1x1(4, generator=g), (4, 2, 2), False),
        ("coupling-channel", AffineCoupling(2, 6, COND_DIM, "channel", 0), (2, 4, 4), True),
        ("coupling-channel-odd", AffineCoupling(3, 6, COND_DIM, "channel", 1), (3, 2, 2), True),
        ("coupling-checker-0", AffineCoupling(1, 6, COND_DIM, "checkerboard", 0), (1, 4, 4), True),
        ("coupling-checker-1", AffineCoupling(2, 6, 0, "checkerboard", 1), (2, 4, 4), False),
        ("squeeze", Squeeze(), (1, 4, 4), False),
        ("factor-out", FactorOut(4, COND_DIM), (4, 2, 2), True),
        ("top-prior", TopPrior(4, COND_DIM), (4, 2, 2), True),
        ("glow-step", glow_step(4, 6, COND_DIM, generator=g), (4, 2, 2), True),
    ]


@pytest.mark.parametrize("case", layer_cases(), ids=lambda c: c[0])
def test_layer_inverse_and_logdet_match_bruteforce_jacobian(case):
    name, layer, shape, uses_cond = case
    perturb(layer)
    g = torch.Generator().manual_seed(7)
    x = (torch.rand((2, *shape), generator=g) * 1.8 - 0.9)
    cond = torch.randn(2, COND_DIM, generator=g) if uses_cond else None
    # exact inverse in float32
    y, logdet = layer(x, cond)
    assert y.shape == (2, *(shape if name != "squeeze" else (4, 2, 2)))
    assert logdet.shape == (2,)
    assert torch.allclose(layer.inverse(y, cond), x, atol=1e-5, rtol=0)
    # log-determinant against the brute-force Jacobian, in float64
    layer = layer.double()
    xd, cd = x.double(), (cond.double() if cond is not None else None)
    for i in range(2):
        ci = cd[i:i + 1] if cd is not None else None
        jac = torch.autograd.functional.jacobian(
            lambda v: layer(v.reshape(1, *shape), ci)[0].flatten(), xd[i].flatten())
        sign, ref = torch.linalg.slogdet(jac)
        assert sign != 0
        _, ld = layer(xd[i:i + 1], ci)
        assert abs(float(ld[0].detach()) - float(ref)) < 1e-4, name


def test_actnorm_data_init_standardises_and_is_stored():
    layer = ActNorm(3)
    x = torch.randn(16, 3, 4, 4) * torch.tensor([2.0, 0.5, 3.0])[None, :, None, None] + 1.5
    assert int(layer.initialized) == 0
    layer.init_next = True
    y, _ = layer(x)
    assert int(layer.initialized) == 1 and not layer.init_next
    assert torch.allclose(y.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(y.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4)
    assert "initialized" in layer.state_dict()


def test_invconv_starts_volume_preserving():
    layer = InvConv1x1(6, generator=torch.Generator().manual_seed(0))
    w = layer.weight()
    assert torch.allclose(w @ w.T, torch.eye(6), atol=1e-5)
    assert abs(float(layer.log_s.detach().sum())) < 1e-5


def test_whole_flow_inverse_and_logdet_match_bruteforce_jacobian():
    model = make_model(image_size=4, channels=1)
    x, labels = torch.rand(3, 1, 4, 4) * 1.8 - 0.9, torch.tensor([0, 2, -1])
    model.data_init(x, labels)
    perturb(model, scale=0.1)
    eps, logdet = model.encode(x, labels)
    assert eps.shape == (3, 16)
    assert torch.allclose(model.decode(eps, labels), x, atol=1e-5, rtol=0)
    model = model.double()
    for i in range(3):
        li = labels[i:i + 1]
        jac = torch.autograd.functional.jacobian(
            lambda v: model.encode(v.reshape(1, 1, 4, 4), li)[0].flatten(), x[i].double().flatten())
        _, ref = torch.linalg.slogdet(jac)
        with torch.no_grad():
            _, ld = model.encode(x[i:i + 1].double(), li)
        assert abs(float(ld[0]) - float(ref)) < 1e-4
    # log_prob is the change of variables with a standard normal base
    lp = model.log_prob(x.double(), labels)
    eps, logdet = model.encode(x.double(), labels)
    ref = torch.distributions.Normal(0.0, 1.0).log_prob(eps).sum(1) + logdet
    assert torch.allclose(lp, ref, atol=1e-9)


def test_two_channel_flow_round_trip():
    model = make_model(image_size=4, channels=2, num_classes=0, levels=1, checkerboard_steps=2)
    x = torch.rand(2, 2, 4, 4) * 2 - 1
    model.data_init(x)
    perturb(model, scale=0.1)
    eps, _ = model.encode(x)
    assert torch.allclose(model.decode(eps), x, atol=1e-5, rtol=0)


def test_identity_flow_log_prob_is_closed_form_normal():
    # Fresh model, no ActNorm init, [-1, 1] used directly: couplings and priors are zero-initialised
    # (identity), the 1x1 convs are rotations, so the density is N(0, I) at x.
    model = make_model(image_size=4, channels=1, num_classes=0, preprocess="none").eval()
    x = torch.randn(4, 1, 4, 4)
    ref = torch.distributions.Normal(0.0, 1.0).log_prob(x).flatten(1).sum(1)
    assert torch.allclose(model.log_prob(x), ref, atol=1e-4)
    # with the logit pre-processing: N(logit(s)) plus the logit's log-det
    model = make_model(image_size=4, channels=1, num_classes=0).eval()
    x = torch.rand(4, 1, 4, 4) * 2 - 1
    q = (x + 1 + 1 / 255) * 127.5 / 256
    s = 0.05 + 0.9 * q
    z = torch.log(s / (1 - s))
    ref = (torch.distributions.Normal(0.0, 1.0).log_prob(z)
           + math.log(127.5 / 256) + math.log(0.9) - torch.log(s * (1 - s))).flatten(1).sum(1)
    assert torch.allclose(model.log_prob(x), ref, atol=1e-4)


def test_loss_decreases_on_fixed_batch_and_bpd_is_finite():
    model = make_model(image_size=8, channels=1, num_classes=10, hidden=16, steps_per_level=1,
                       checkerboard_steps=0)
    x, y = fixed_batch(16)
    opts = model.configure_optimizers(5e-3, 0.0)
    losses = []
    for step in range(12):
        out = model.training_step({"image": x, "cond": {"label": y}}, make_ctx(opts, step))
        assert set(out) >= {"loss", "bpd"} and out["loss"] == out["bpd"]
        losses.append(out["loss"])
    assert model.initialized
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.2
    bpd = model.bits_per_dim(x, y)
    assert bpd.shape == (16,) and torch.isfinite(bpd).all() and (bpd > 0).all()
    assert torch.equal(bpd, model.bits_per_dim(x, y))  # seeded dequantisation: repeatable
    # bits_per_dim is log_prob of the dequantised data in the base-class convention
    xq = model.dequantize(x, torch.Generator().manual_seed(0))
    ref = -(model.log_prob(xq, y) - 64 * math.log(127.5)) / (64 * math.log(2))
    assert torch.allclose(bpd, ref)


def test_save_load_round_trip_is_bit_exact(tmp_path):
    model = make_model(image_size=8, channels=1, num_classes=10, hidden=8)
    x, y = fixed_batch(8)
    opts = model.configure_optimizers(1e-3, 0.0)
    for step in range(2):
        model.training_step({"image": x, "cond": {"label": y}}, make_ctx(opts, step))
    save_safetensors(model.training_state(), tmp_path / "flow.safetensors")
    other = make_model(image_size=8, channels=1, num_classes=10, hidden=8, seed=123)
    assert not other.initialized
    other.load_training_state(load_safetensors(tmp_path / "flow.safetensors"))
    assert other.initialized  # ActNorm init state survives, so training would not re-initialise
    for k, v in model.state_dict().items():
        assert torch.equal(v, other.state_dict()[k]), k
    assert torch.equal(model.log_prob(x, y), other.log_prob(x, y))
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    assert torch.equal(model.sample(4, [1, 2, 3, -1], g1), other.sample(4, [1, 2, 3, -1], g2))
    other2 = make_model(image_size=8, channels=1, num_classes=10, hidden=8, seed=5)
    other2.load_sampling_state(load_safetensors(tmp_path / "flow.safetensors"))
    assert torch.equal(model.log_prob(x, y), other2.log_prob(x, y))


def test_sampling_per_sample_generators_and_temperature():
    model = make_model(image_size=8, channels=1, num_classes=10, hidden=8)
    model.data_init(torch.rand(16, 1, 8, 8) * 2 - 1)
    perturb(model, scale=0.05)
    gens = lambda seeds: [torch.Generator().manual_seed(s) for s in seeds]  # noqa: E731
    a = model.sample(3, [1, 5, 7], gens([10, 11, 12]))
    b = model.sample(3, [2, 5, 9], gens([20, 11, 22]))
    c = model.sample(1, [5], gens([11]))
    assert a.shape == (3, 1, 8, 8) and a.dtype == torch.float32
    assert a.min() >= -1 and a.max() <= 1
    assert torch.equal(a[1], b[1]) and torch.allclose(a[1], c[0], atol=1e-6)
    assert not torch.equal(a[0], b[0])
    # one generator or none also work; temperature 0 is the decoded prior mode
    assert model.sample(2, None, torch.Generator().manual_seed(0)).shape == (2, 1, 8, 8)
    assert model.sample(2).shape == (2, 1, 8, 8)
    t0 = model.sample(2, [3, 3], gens([1, 2]), temperature=0.0)
    assert torch.allclose(t0[0], t0[1], atol=1e-6)
    with pytest.raises(GenimageError):
        model.sample(2, [1, 2], gens([1]))


def test_user_errors():
    with pytest.raises(GenimageError, match="divisible"):
        make_model(image_size=6, levels=2)
    with pytest.raises(GenimageError, match="unknown"):
        make_model(bogus=1)
    with pytest.raises(GenimageError, match="preprocess"):
        make_model(preprocess="tanh")
    model = make_model(image_size=4, num_classes=0)
    with pytest.raises(GenimageError, match="unconditional"):
        model.sample(2, [1, 2])
    cond_model = make_model(image_size=4, num_classes=3)
    with pytest.raises(GenimageError, match="labels"):
        cond_model.sample(2, [1, 3])
    with pytest.raises(GenimageError, match="temperature"):
        cond_model.sample(2, temperature=-1.0)


def test_registered_family_and_presets_build():
    spec = FAMILIES.get("normalizing-flow")
    assert spec.model_cls is NormalizingFlowModel and set(spec.presets) >= {"tiny", "small"}
    for preset, (size, ch) in {"tiny": (8, 1), "small": (32, 3)}.items():
        bc = {**PRESETS[preset], "image_size": size, "channels": ch, "num_classes": 10}
        mc = ModelConfig(backbone="normalizing-flow", backbone_config=bc, objective="", path="", prediction="",
                         image_size=size, channels=ch, num_classes=10, family="normalizing-flow")
        model = spec.model_cls(mc)
        assert model.has_likelihood and not model.likelihood_is_bound
        x = torch.rand(2, ch, size, size) * 2 - 1
        eps, _ = model.encode(x, torch.tensor([0, 1]))
        assert eps.shape == (2, ch * size * size)
        assert torch.allclose(model.decode(eps, torch.tensor([0, 1])), x, atol=1e-4)
