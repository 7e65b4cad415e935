"""The Inception option: refuses files that are not the published FID weights, and genimage's
own FID Inception-v3 has exactly the published file's keys and shapes, the FID pooling
variants, loads / runs end to end, and gives the features that torch-fidelity and pytorch-fid
give (on random weights: the real file is not available here)."""

import hashlib
from pathlib import Path

import pytest
import torch
from torch import nn

import genimage.metrics.inception as inception
from genimage.errors import GenimageError
from genimage.metrics.features import load_inception
from genimage.metrics.inception_net import (
    FIDInceptionV3, load_fid_state_dict, pool_branch, random_fid_state, resize_bilinear_tf1,
)

REFERENCE = Path(__file__).with_name("inception_reference.safetensors")


def test_published_hash_and_name_agree():
    assert inception.INCEPTION_SHA256 == "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
    assert inception.INCEPTION_FILENAME.removesuffix(".pth").endswith(inception.INCEPTION_SHA256[:8])


def test_missing_file(tmp_path):
    with pytest.raises(GenimageError, match="not found"):
        load_inception(tmp_path / inception.INCEPTION_FILENAME)


def test_wrong_file_is_refused(tmp_path):
    fake = tmp_path / inception.INCEPTION_FILENAME
    fake.write_bytes(b"\x80\x02not really inception")
    with pytest.raises(GenimageError, match="sha256"):
        load_inception(fake)


def test_right_hash_but_not_a_state_dict(tmp_path, monkeypatch):
    f = tmp_path / "weights.pth"
    f.write_bytes(b"stand-in bytes")
    monkeypatch.setattr(inception, "INCEPTION_SHA256", hashlib.sha256(b"stand-in bytes").hexdigest())
    with pytest.raises(GenimageError, match="passed the sha256 check but could not be read"):
        load_inception(f)


# --- expected layout: torchvision Inception3 names, written out independently of the module ---

def _a(cin, pool):
    return {"branch1x1": (64, cin, 1, 1), "branch5x5_1": (48, cin, 1, 1), "branch5x5_2": (64, 48, 5, 5),
            "branch3x3dbl_1": (64, cin, 1, 1), "branch3x3dbl_2": (96, 64, 3, 3), "branch3x3dbl_3": (96, 96, 3, 3),
            "branch_pool": (pool, cin, 1, 1)}


def _c(c7):
    return {"branch1x1": (192, 768, 1, 1), "branch7x7_1": (c7, 768, 1, 1), "branch7x7_2": (c7, c7, 1, 7),
            "branch7x7_3": (192, c7, 7, 1), "branch7x7dbl_1": (c7, 768, 1, 1), "branch7x7dbl_2": (c7, c7, 7, 1),
            "branch7x7dbl_3": (c7, c7, 1, 7), "branch7x7dbl_4": (c7, c7, 7, 1), "branch7x7dbl_5": (192, c7, 1, 7),
            "branch_pool": (192, 768, 1, 1)}


def _e(cin):
    return {"branch1x1": (320, cin, 1, 1), "branch3x3_1": (384, cin, 1, 1), "branch3x3_2a": (384, 384, 1, 3),
            "branch3x3_2b": (384, 384, 3, 1), "branch3x3dbl_1": (448, cin, 1, 1), "branch3x3dbl_2": (384, 448, 3, 3),
            "branch3x3dbl_3a": (384, 384, 1, 3), "branch3x3dbl_3b": (384, 384, 3, 1), "branch_pool": (192, cin, 1, 1)}


CONVS = {  # conv name -> weight shape (out, in, kh, kw); each conv also has a BatchNorm of `out` channels
    "Conv2d_1a_3x3": (32, 3, 3, 3), "Conv2d_2a_3x3": (32, 32, 3, 3), "Conv2d_2b_3x3": (64, 32, 3, 3),
    "Conv2d_3b_1x1": (80, 64, 1, 1), "Conv2d_4a_3x3": (192, 80, 3, 3),
    **{f"Mixed_5{b}.{k}": s for b, (cin, pool) in zip("bcd", [(192, 32), (256, 64), (288, 64)])
       for k, s in _a(cin, pool).items()},
    "Mixed_6a.branch3x3": (384, 288, 3, 3), "Mixed_6a.branch3x3dbl_1": (64, 288, 1, 1),
    "Mixed_6a.branch3x3dbl_2": (96, 64, 3, 3), "Mixed_6a.branch3x3dbl_3": (96, 96, 3, 3),
    **{f"Mixed_6{b}.{k}": s for b, c7 in zip("bcde", [128, 160, 160, 192]) for k, s in _c(c7).items()},
    "Mixed_7a.branch3x3_1": (192, 768, 1, 1), "Mixed_7a.branch3x3_2": (320, 192, 3, 3),
    "Mixed_7a.branch7x7x3_1": (192, 768, 1, 1), "Mixed_7a.branch7x7x3_2": (192, 192, 1, 7),
    "Mixed_7a.branch7x7x3_3": (192, 192, 7, 1), "Mixed_7a.branch7x7x3_4": (192, 192, 3, 3),
    **{f"Mixed_7{b}.{k}": s for b, cin in zip("bc", [1280, 2048]) for k, s in _e(cin).items()},
}


def expected_state_shapes() -> dict[str, tuple[int, ...]]:
    out: dict[str, tuple[int, ...]] = {}
    for name, shape in CONVS.items():
        out[f"{name}.conv.weight"] = shape
        for k in ("weight", "bias", "running_mean", "running_var"):
            out[f"{name}.bn.{k}"] = (shape[0],)
        out[f"{name}.bn.num_batches_tracked"] = ()
    out["fc.weight"], out["fc.bias"] = (1008, 2048), (1008,)
    return out


def test_state_dict_matches_the_published_layout():
    net = FIDInceptionV3()
    got = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    want = expected_state_shapes()
    assert sorted(got) == sorted(want)
    assert got == want
    assert len(CONVS) == 94 and len(got) == 566
    # Float values in the file = params (conv + BN affine + fc) + BN running mean/var:
    # 21,785,568 + 2,065,392 (fc 2048*1008 + 1008) = 23,850,960 params, + 34,432 running stats = 23,885,392.
    assert sum(p.numel() for p in net.parameters()) == 23_850_960
    n_float = sum(v.numel() for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked"))
    assert n_float == 23_885_392
    # ... which as float32 is 95,541,568 bytes: the published file (95,628,359 bytes) is that plus ~87 kB of
    # pickle/zip framing for 472-566 entries, a consistency check of the layout against the file size.
    assert 0 < inception.INCEPTION_SIZE - 4 * n_float < 100_000
    assert all(isinstance(m, nn.BatchNorm2d) and m.eps == 1e-3 for n, m in net.named_modules() if n.endswith(".bn"))
    assert all(m.bias is None for m in net.modules() if isinstance(m, nn.Conv2d))


def test_fid_pooling_variants():
    ones = torch.ones(1, 1, 5, 5)
    assert torch.equal(pool_branch(ones, "avg"), ones)  # padded zeros not counted (a corner would be 4/9 otherwise)
    x = torch.arange(25.0).reshape(1, 1, 5, 5)
    assert pool_branch(x, "max")[0, 0, 0, 0] == 6 and pool_branch(x, "max").shape == x.shape
    assert pool_branch(x, "max_s2").shape == (1, 1, 2, 2)
    net = FIDInceptionV3()
    kinds = {n: getattr(net, f"Mixed_{n}").pool_kind for n in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c")}
    assert kinds == {"5b": "avg", "5c": "avg", "5d": "avg", "6a": "max_s2", "6b": "avg", "6c": "avg", "6d": "avg",
                     "6e": "avg", "7a": "max_s2", "7b": "avg", "7c": "max"}


@pytest.fixture(scope="module")
def random_net():
    """A randomly initialised net with He-normal convs (so features are O(1), not ~1e-7) and random BN stats."""
    torch.manual_seed(0)
    net = FIDInceptionV3().eval()
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return net


def test_forward_shapes_and_batch_independence(random_net):
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 255
    seen = {}

    def record(name):
        def hook(module, inputs, output):
            seen[name] = tuple(output.shape[1:])  # returns None: the output is left unchanged
        return hook

    hooks = [getattr(random_net, f"Mixed_{n}").register_forward_hook(record(n)) for n in ("5d", "6e", "7c")]
    try:
        with torch.no_grad():
            f = random_net(x)
    finally:
        for h in hooks:
            h.remove()
    with torch.no_grad():
        singles = torch.cat([random_net(x[:1]), random_net(x[1:])])
    assert seen == {"5d": (288, 35, 35), "6e": (768, 17, 17), "7c": (2048, 8, 8)}
    assert f.shape == (2, 2048) and torch.isfinite(f).all() and (f >= 0).all()
    assert f.std() > 0.01 and (f[0] - f[1]).abs().max() > 1e-3  # not collapsed
    assert torch.allclose(f, singles, atol=1e-5, rtol=0)
    assert random_net.logits(f).shape == (2, 1008)


def test_missing_num_batches_tracked_is_accepted(random_net):
    state = {k: v for k, v in random_net.state_dict().items() if not k.endswith("num_batches_tracked")}
    net = load_fid_state_dict(FIDInceptionV3(), state)
    assert torch.equal(net.Mixed_7c.branch_pool.conv.weight, random_net.Mixed_7c.branch_pool.conv.weight)
    assert torch.equal(net.Mixed_6b.branch7x7_2.bn.running_var, random_net.Mixed_6b.branch7x7_2.bn.running_var)


def test_load_state_dict_errors_name_the_keys(random_net):
    state = dict(random_net.state_dict())
    with pytest.raises(GenimageError, match="missing fc.bias"):
        load_fid_state_dict(FIDInceptionV3(), {k: v for k, v in state.items() if k != "fc.bias"})
    with pytest.raises(GenimageError, match="unexpected AuxLogits.fc.weight"):
        load_fid_state_dict(FIDInceptionV3(), {**state, "AuxLogits.fc.weight": torch.zeros(1008, 768)})
    with pytest.raises(GenimageError, match="not an Inception state_dict"):
        load_fid_state_dict(FIDInceptionV3(), {"model": state})


def _save_with_hash(state, path, monkeypatch):
    torch.save(state, path)
    monkeypatch.setattr(inception, "INCEPTION_SHA256", hashlib.sha256(path.read_bytes()).hexdigest())
    return path


def test_load_inception_end_to_end(random_net, tmp_path, monkeypatch):
    path = _save_with_hash(random_net.state_dict(), tmp_path / "w.pth", monkeypatch)
    feats = load_inception(path)
    assert isinstance(feats.net, FIDInceptionV3) and not feats.net.training
    images = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(2)) * 2 - 1
    a = feats.features(images)
    b = feats.features(images)
    assert a.shape == (1, 2048) and torch.equal(a, b)
    with torch.no_grad():  # the loaded weights (not a fresh init) produced them, from 8-bit levels
        want = random_net(((images + 1) * 127.5).round())
    assert torch.allclose(a, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("corrupt", ["rename", "shape"])
def test_load_inception_rejects_a_mismatched_file(random_net, tmp_path, monkeypatch, corrupt):
    state = dict(random_net.state_dict())
    if corrupt == "rename":
        state["Mixed_5b.branch_pool.conv.weights"] = state.pop("Mixed_5b.branch_pool.conv.weight")
        match = "missing Mixed_5b.branch_pool.conv.weight; unexpected Mixed_5b.branch_pool.conv.weights"
    else:
        state["fc.weight"] = torch.zeros(1000, 2048)
        match = r"shape of fc.weight \(1000, 2048\) \(expected \(1008, 2048\)\)"
    path = _save_with_hash(state, tmp_path / "w.pth", monkeypatch)
    with pytest.raises(GenimageError, match=match):
        load_inception(path)


def test_input_handling_quantises_to_8_bit_levels():
    class Probe(nn.Module):
        def forward(self, x):
            self.seen = x
            return x.mean((2, 3)).repeat(1, 683)[:, :2048]

    probe = Probe()
    feats = inception.InceptionFeatures(probe)
    gray = torch.linspace(-1.2, 1.2, 16).reshape(1, 1, 4, 4)
    out = feats.features(torch.cat([gray, gray]), batch_size=1)
    assert out.shape == (2, 2048)
    x = probe.seen
    assert x.shape == (1, 3, 4, 4) and x.min() == 0 and x.max() == 255
    assert torch.equal(x, x.round())
    assert torch.equal(x[:, 0], x[:, 2])
    with pytest.raises(GenimageError, match="1- or 3-channel"):
        feats.features(torch.zeros(1, 2, 4, 4))


def test_tf1_resize_samples_without_the_half_pixel_offset():
    x = torch.tensor([0.0, 10.0]).reshape(1, 1, 1, 2).expand(1, 1, 2, 2).contiguous()
    up = resize_bilinear_tf1(x, 4)  # output i samples input i * 2 / 4 = 0, .5, 1, 1.5 (clamped to the last)
    assert up.shape == (1, 1, 4, 4)
    assert torch.equal(up[0, 0, 0], torch.tensor([0.0, 5.0, 10.0, 10.0]))
    assert torch.equal(up[0, 0, :, 1], torch.full((4,), 5.0))
    torch_style = torch.nn.functional.interpolate(x, size=(4, 4), mode="bilinear", align_corners=False)
    assert torch_style[0, 0, 0, 1] == 2.5  # PyTorch's half-pixel centres: the convention that differs
    same = torch.rand(2, 3, 7, 7)
    assert torch.equal(resize_bilinear_tf1(same, 7), same)
    down = resize_bilinear_tf1(torch.arange(16.0).reshape(1, 1, 4, 4), 2)  # samples rows / cols 0 and 2
    assert torch.equal(down[0, 0], torch.tensor([[0.0, 2.0], [8.0, 10.0]]))


def test_input_modes():
    assert FIDInceptionV3().input_mode == "tensorflow"
    with pytest.raises(GenimageError, match="unknown Inception input mode 'tf2'"):
        FIDInceptionV3("tf2")
    levels = torch.full((1, 3, 299, 299), 255.0)
    assert torch.equal(FIDInceptionV3("tensorflow").prepare(levels), torch.full_like(levels, 127 / 128))
    assert torch.equal(FIDInceptionV3("pytorch-fid").prepare(levels), torch.ones_like(levels))


@pytest.fixture(scope="module")
def seeded_nets():
    state = random_fid_state(0)
    return {mode: load_fid_state_dict(FIDInceptionV3(mode), state).eval() for mode in ("tensorflow", "pytorch-fid")}


def test_random_fid_state_is_seeded():
    a, b = random_fid_state(0), random_fid_state(0)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["fc.weight"], random_fid_state(1)["fc.weight"])


@pytest.mark.parametrize("size", [8, 32, 64])
def test_features_match_torch_fidelity_and_pytorch_fid(seeded_nets, size):
    """Reference features written by benchmarks/inception_crosscheck.py with torch-fidelity 0.4.0
    and pytorch-fid 0.3.0 on random_fid_state(0); there genimage matched both bit for bit."""
    from safetensors.torch import load_file

    ref = load_file(REFERENCE)
    images = ref[f"images_{size}"]
    assert images.dtype == torch.uint8 and images.shape[1:] == (3, size, size)
    with torch.no_grad():
        tf = seeded_nets["tensorflow"](images.float())
        pf = seeded_nets["pytorch-fid"](images.float())
    for ours, want in ((tf, ref[f"torch_fidelity_{size}"]), (pf, ref[f"pytorch_fid_{size}"])):
        assert (ours - want).abs().max() <= 1e-4 * want.abs().max()
    # ... and the two conventions really differ here, so the check above can tell them apart
    assert (tf - pf).abs().max() > 1e-3 * pf.abs().max()


def test_load_inception_input_mode_and_source(random_net, tmp_path, monkeypatch):
    path = _save_with_hash(random_net.state_dict(), tmp_path / "w.pth", monkeypatch)
    tf, pf = load_inception(path), load_inception(path, input_mode="pytorch-fid")
    assert tf.net.input_mode == "tensorflow" and pf.net.input_mode == "pytorch-fid"
    assert "TensorFlow-graph resize" in tf.source and "pytorch-fid resize" in pf.source
    with pytest.raises(GenimageError, match="unknown Inception input mode"):
        load_inception(path, input_mode="bicubic")
    from genimage.evaluation.report import load_features  # the --features specs of eval / compare

    assert load_features(f"inception:{path}").net.input_mode == "tensorflow"
    assert load_features(f"inception-pytorch-fid:{path}").net.input_mode == "pytorch-fid"
