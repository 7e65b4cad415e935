"""Feature networks: the shipped digits (and shapes) nets load, score their test data, and
save/load round trips are bit-exact."""

import json

import pytest
import torch

from genimage.data.builtin import load_builtin
from genimage.errors import GenimageError
from genimage.metrics.features import (
    FEATURES_DIR,
    FeatureNetConfig,
    SmallCNN,
    available_feature_nets,
    load_feature_net,
    resize_images,
    save_feature_net,
)


@pytest.fixture(scope="module")
def digits_eval():
    ds = load_builtin("digits", split="eval")
    return ds.images[:, None].clone(), torch.as_tensor(ds.labels)


def test_shipped_digits_net(digits_eval):
    net = load_feature_net("digits")
    x, y = digits_eval
    assert "digits" in available_feature_nets()
    assert net.config.in_channels == 1 and net.config.image_size == 8 and net.feature_dim == 128
    assert sum(p.numel() for p in net.module.parameters()) < 100_000
    assert net.source.startswith("genimage-digits-cnn") and "not comparable to published FID" in net.source
    f = net.features(x)
    assert f.shape == (len(y), 128) and f.dtype == torch.float32 and (f >= 0).all()
    p = net.classify(x)
    assert torch.allclose(p.sum(1), torch.ones(len(y)), atol=1e-5)
    assert (p.argmax(1) == y).float().mean() >= 0.97  # test split accuracy
    assert len(net.weights_sha256) == 64


def test_shipped_digits_files():
    folder = FEATURES_DIR / "digits"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["test_accuracy"] >= 0.97 and metrics["parameters"] < 100_000
    readme = (folder / "README.md").read_text()
    assert "scripts/train_feature_nets.py" in readme and "eval split" in readme


def test_batching_and_resizing_do_not_change_features(digits_eval):
    net = load_feature_net("digits")
    x = digits_eval[0][:40]
    assert torch.allclose(net.features(x, batch_size=7), net.features(x), atol=1e-5)
    big = x.repeat_interleave(2, -1).repeat_interleave(2, -2)  # 16x16, each pixel a 2x2 block
    assert torch.equal(resize_images(big, 8), x)
    assert torch.allclose(net.features(big), net.features(x), atol=1e-5)


def test_save_load_round_trip_bit_exact(tmp_path):
    cfg = FeatureNetConfig(name="tiny", in_channels=3, image_size=8, widths=(4,), feature_dim=6, num_outputs=3,
                           multilabel=True, class_names=("a", "b", "c"), source="tiny test features")
    torch.manual_seed(0)
    module = SmallCNN(cfg).eval()
    save_feature_net(module, cfg, tmp_path / "tiny")
    net = load_feature_net(tmp_path / "tiny")
    assert net.config == cfg
    for key, value in module.state_dict().items():
        assert torch.equal(net.module.state_dict()[key], value), key
    x = torch.rand(5, 3, 8, 8) * 2 - 1
    with torch.no_grad():
        assert torch.equal(net.features(x), module.features(x))
        assert torch.equal(net.classify(x), torch.sigmoid(module(x)))


def test_user_errors(tmp_path):
    with pytest.raises(GenimageError, match="not found.*digits"):
        load_feature_net("no-such-net")
    net = load_feature_net("digits")
    with pytest.raises(GenimageError, match="channel"):
        net.features(torch.zeros(2, 3, 8, 8))
    with pytest.raises(GenimageError, match=r"\(N, C, H, W\)"):
        net.features(torch.zeros(8, 8))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(GenimageError, match="not a genimage feature-net config"):
        load_feature_net(tmp_path / "bad")


@pytest.mark.skipif("shapes" not in available_feature_nets(), reason="shapes feature net not shipped")
def test_shipped_shapes_net():
    from genimage.data.shapes import ALL_PAIRS

    net = load_feature_net("shapes")
    ds = load_builtin("shapes", split="all", seed=2, length=150)
    x = torch.stack([ds[i]["image"] for i in range(len(ds))])
    truth = torch.zeros(len(ds), len(ALL_PAIRS), dtype=torch.bool)
    for i in range(len(ds)):
        for o in ds.scene(i).objects:
            truth[i, ALL_PAIRS.index((o.colour, o.shape))] = True
    assert net.features(x).shape == (150, 128)
    p = net.classify(x)
    assert p.shape == (150, 18) and ((p >= 0) & (p <= 1)).all()
    assert ((p >= 0.5) == truth).all(1).float().mean() >= 0.9
    assert net.source.startswith("genimage-shapes-cnn")


# ------------------------------------------------------------------ the generic net and its domain check
@pytest.fixture(scope="module")
def photo_crops():
    ds = load_builtin("photos", split="eval", length=96, seed=3)
    return torch.stack([ds[i]["image"] for i in range(len(ds))])


def test_generic_net_loads_offline_and_gives_finite_features(photo_crops):
    net = load_feature_net("generic")
    assert "generic" in available_feature_nets() and net.config.in_channels == 3 and net.config.image_size == 32
    assert net.feature_dim == 256 and "not comparable to published FID" in net.source
    assert (FEATURES_DIR / "generic" / "model.safetensors").stat().st_size < 3_000_000
    f = net.features(photo_crops)
    assert f.shape == (96, 256) and torch.isfinite(f).all()
    gray = net.features(photo_crops[:4].mean(1, keepdim=True))  # 1-channel images are taken as gray
    assert gray.shape == (4, 256) and torch.isfinite(gray).all()


def test_out_of_domain_warning_fires_for_noise_not_for_photos(photo_crops):
    net = load_feature_net("generic")
    ok = net.domain_check(photo_crops, what="photos")
    assert ok["warning"] is None and ok["outside"] < 0.25
    noise = torch.rand(96, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    bad = net.domain_check(noise, what="samples")
    assert bad["outside"] > 0.9 and "outside the domain of the 'generic' features" in bad["warning"]
    assert bad["noisy"] > 0.9 and ok["noisy"] < 0.05  # the pixel statistic: this small SimCLR net maps noise near grainy photos


@pytest.mark.parametrize("name", ["digits", "shapes"])
def test_domain_nets_warn_for_noise(name):
    net = load_feature_net(name)
    c, s = net.config.in_channels, net.config.image_size
    noise = torch.rand(64, c, s, s, generator=torch.Generator().manual_seed(1)) * 2 - 1
    assert net.domain_check(noise)["warning"] is not None


def test_fit_domain_threshold_is_the_held_out_quantile():
    from genimage.metrics.features import FeatureNet, fit_domain

    g = torch.Generator().manual_seed(0)
    train, held = torch.randn(2000, 8, generator=g), torch.randn(1000, 8, generator=g)
    dom = fit_domain(train, held, quantile=0.9)
    cfg = FeatureNetConfig(name="t", in_channels=1, image_size=2, widths=(2,), feature_dim=8, num_outputs=1,
                           multilabel=False, class_names=("a",), source="test")
    net = FeatureNet(SmallCNN(cfg), cfg, domain=dom)
    assert abs(float((net.domain_distances(features=held) > dom["threshold"]).float().mean()) - 0.1) < 0.01
    assert 0.1 < net.domain_check(features=held)["outside"] < 0.22  # plus the 10% outside the norm range, overlapping
    assert net.domain_check(features=held * 4)["warning"] is not None
