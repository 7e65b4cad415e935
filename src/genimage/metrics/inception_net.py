"""genimage's own definition of the FID Inception-v3 (pool3, 2048-d features).

Standard FID (Heusel et al., 2017, "GANs Trained by a Two Time-Scale Update Rule Converge to a
Local Nash Equilibrium", Eq. 6) and KID (Binkowski et al., 2018) are computed on the pool3
features of the TensorFlow graph ``inception-2015-12-05`` -- Inception-v3 (Szegedy et al., 2016,
"Rethinking the Inception Architecture for Computer Vision", Table 1 and Figs. 5-7). pytorch-fid
ported that graph to the torchvision ``Inception3`` layout and published its weights as
``pt_inception-2015-12-05-6726825d.pth``. This module rebuilds that network without torchvision,
so that the file's ``state_dict`` loads into it key for key:

* stem: ``Conv2d_1a_3x3`` .. ``Conv2d_4a_3x3`` with two 3x3/2 max pools;
* ``Mixed_5b..5d`` ("A" blocks), ``Mixed_6a`` ("B", grid reduction), ``Mixed_6b..6e`` ("C",
  factorised 7x7), ``Mixed_7a`` ("D", grid reduction), ``Mixed_7b, 7c`` ("E", expanded 3x3);
* every convolution is ``conv (no bias) -> BatchNorm(eps=1e-3) -> ReLU`` (keys ``.conv.weight``,
  ``.bn.{weight,bias,running_mean,running_var}``);
* ``fc``: 2048 -> 1008 classes (the TF graph's label set); no auxiliary head.

The FID graph differs from torchvision's Inception-v3 in the pooling branch of the blocks,
which is what makes the features match the TensorFlow ones:

* "A", "C" and the first "E" block (``Mixed_7b``) average-pool 3x3 with padding 1 *without*
  counting the padded zeros (TensorFlow's ``SAME`` average pool, ``count_include_pad=False``);
* the last "E" block (``Mixed_7c``) max-pools there instead.

Input: 8-bit levels (floats in ``[0, 255]``), prepared in one of two ways (``INPUT_MODES``):

* ``"tensorflow"`` (default), as the TensorFlow graph itself does (TTUR's reference FID code,
  torch-fidelity / torchmetrics, StyleGAN's metrics): TensorFlow 1.x bilinear resize to 299x299
  (:func:`resize_bilinear_tf1`), then ``(x - 128) / 128``;
* ``"pytorch-fid"``, as pytorch-fid feeds its port: ``x / 255``, PyTorch's bilinear resize
  (``align_corners=False``), then ``2x - 1``.

The two agree exactly on 299x299 images up to the 127.5-vs-128 centring, and differ by a few
percent in the features of upsampled small images, so FIDs of 32-px images from the two tools
differ slightly; reports name the mode. The output is the adaptive average pool of the last
8x8x2048 map. ``benchmarks/inception_crosscheck.py`` checks both modes against pytorch-fid and
torch-fidelity on random weights (BENCHMARKS.md, "Inception cross-check").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genimage.errors import GenimageError

INPUT_SIZE = 299
INPUT_MODES = ("tensorflow", "pytorch-fid")
NUM_CLASSES = 1008
FEATURE_DIM = 2048

Kernel = int | tuple[int, int]


def resize_bilinear_tf1(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of ``(N, C, H, W)`` to ``size x size`` as TensorFlow 1.x's
    ``resize_bilinear(align_corners=False)``, the resize inside the FID Inception graph.

    Output pixel ``i`` samples the input at ``i * in / out`` (no half-pixel offset, unlike
    PyTorch's ``align_corners=False``); the right / bottom neighbour is clamped to the last
    pixel. Width is interpolated before height, each as ``a + (b - a) * w`` in float32, the
    order of TensorFlow's kernel. At ``in == out`` it is the identity.
    """
    for dim in (3, 2):
        n = x.shape[dim]
        scale = torch.tensor(n / size, dtype=torch.float32)
        src = torch.arange(size, dtype=torch.float32) * scale
        lo = src.floor().long().clamp(max=n - 1)
        hi = (lo + 1).clamp(max=n - 1)
        w = (src - lo.float()).to(x.device, x.dtype)
        shape = [1, 1, 1, 1]
        shape[dim] = size
        a, b = x.index_select(dim, lo.to(x.device)), x.index_select(dim, hi.to(x.device))
        x = a + (b - a) * w.view(shape)
    return x


class ConvBN(nn.Module):
    """``relu(bn(conv(x)))`` with a bias-free convolution and BatchNorm eps 1e-3 (TF's value)."""

    def __init__(self, cin: int, cout: int, kernel: Kernel, padding: Kernel = 0, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def pool_branch(x: torch.Tensor, kind: str) -> torch.Tensor:
    """The pooling branch of a mixed block.

    ``"avg"``: 3x3/1 average over the valid (unpadded) pixels only; ``"max"``: 3x3/1 max;
    ``"max_s2"``: 3x3/2 max without padding (the grid-reduction blocks B and D).
    """
    if kind == "avg":
        return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    if kind == "max":
        return F.max_pool2d(x, 3, stride=1, padding=1)
    if kind == "max_s2":
        return F.max_pool2d(x, 3, stride=2)
    raise ValueError(f"unknown pool kind {kind!r}")


# One convolution of a block: (name, in channels, out channels, kernel, padding, stride).
Spec = tuple[str, int, int, Kernel, Kernel, int]


def _c(name: str, cin: int, cout: int, kernel: Kernel, padding: Kernel = 0, stride: int = 1) -> Spec:
    return (name, cin, cout, kernel, padding, stride)


class MixedBlock(nn.Module):
    """Parallel branches of ConvBN chains, concatenated on channels.

    ``paths`` lists the convolution branches in output order; each is a list of steps, a step
    being one conv, or a tuple of two convs applied to the same input and concatenated (the
    1x3 / 3x1 fork of the "E" blocks). The pooling branch comes last: ``pool_branch(x,
    pool_kind)``, followed by the 1x1 ``branch_pool`` conv when ``pool_features`` is given.
    """

    def __init__(self, paths: list[list[Spec | tuple[Spec, Spec]]], pool_kind: str,
                 pool_features: int | None = None, in_channels: int = 0) -> None:
        super().__init__()
        self.pool_kind = pool_kind
        self.paths: list[list[list[str]]] = []
        for path in paths:
            steps = []
            for step in path:
                specs = step if isinstance(step[0], tuple) else (step,)
                for name, cin, cout, kernel, padding, stride in specs:  # type: ignore[misc]
                    self.add_module(name, ConvBN(cin, cout, kernel, padding, stride))
                steps.append([s[0] for s in specs])  # type: ignore[index]
            self.paths.append(steps)
        self.branch_pool = ConvBN(in_channels, pool_features, 1) if pool_features else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = []
        for path in self.paths:
            y = x
            for names in path:
                ys = [self.get_submodule(n)(y) for n in names]
                y = ys[0] if len(ys) == 1 else torch.cat(ys, 1)
            outs.append(y)
        p = pool_branch(x, self.pool_kind)
        outs.append(self.branch_pool(p) if self.branch_pool is not None else p)
        return torch.cat(outs, 1)


def block_a(cin: int, pool_features: int) -> MixedBlock:
    """35x35 block (Szegedy et al. Fig. 5): 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1."""
    return MixedBlock([
        [_c("branch1x1", cin, 64, 1)],
        [_c("branch5x5_1", cin, 48, 1), _c("branch5x5_2", 48, 64, 5, 2)],
        [_c("branch3x3dbl_1", cin, 64, 1), _c("branch3x3dbl_2", 64, 96, 3, 1), _c("branch3x3dbl_3", 96, 96, 3, 1)],
    ], "avg", pool_features, cin)


def block_b(cin: int) -> MixedBlock:
    """35 -> 17 grid reduction: 3x3/2 | 1x1-3x3-3x3/2 | maxpool/2."""
    return MixedBlock([
        [_c("branch3x3", cin, 384, 3, 0, 2)],
        [_c("branch3x3dbl_1", cin, 64, 1), _c("branch3x3dbl_2", 64, 96, 3, 1), _c("branch3x3dbl_3", 96, 96, 3, 0, 2)],
    ], "max_s2")


def block_c(cin: int, c7: int) -> MixedBlock:
    """17x17 block with 7x7 convolutions factorised into 1x7 and 7x1 (Szegedy et al. Fig. 6)."""
    h, v = ((1, 7), (0, 3)), ((7, 1), (3, 0))
    return MixedBlock([
        [_c("branch1x1", cin, 192, 1)],
        [_c("branch7x7_1", cin, c7, 1), _c("branch7x7_2", c7, c7, *h), _c("branch7x7_3", c7, 192, *v)],
        [_c("branch7x7dbl_1", cin, c7, 1), _c("branch7x7dbl_2", c7, c7, *v), _c("branch7x7dbl_3", c7, c7, *h),
         _c("branch7x7dbl_4", c7, c7, *v), _c("branch7x7dbl_5", c7, 192, *h)],
    ], "avg", 192, cin)


def block_d(cin: int) -> MixedBlock:
    """17 -> 8 grid reduction: 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool/2."""
    return MixedBlock([
        [_c("branch3x3_1", cin, 192, 1), _c("branch3x3_2", 192, 320, 3, 0, 2)],
        [_c("branch7x7x3_1", cin, 192, 1), _c("branch7x7x3_2", 192, 192, (1, 7), (0, 3)),
         _c("branch7x7x3_3", 192, 192, (7, 1), (3, 0)), _c("branch7x7x3_4", 192, 192, 3, 0, 2)],
    ], "max_s2")


def block_e(cin: int, pool_kind: str) -> MixedBlock:
    """8x8 block with the 3x3 outputs expanded into parallel 1x3 and 3x1 (Szegedy et al. Fig. 7)."""
    h, v = ((1, 3), (0, 1)), ((3, 1), (1, 0))
    return MixedBlock([
        [_c("branch1x1", cin, 320, 1)],
        [_c("branch3x3_1", cin, 384, 1), (_c("branch3x3_2a", 384, 384, *h), _c("branch3x3_2b", 384, 384, *v))],
        [_c("branch3x3dbl_1", cin, 448, 1), _c("branch3x3dbl_2", 448, 384, 3, 1),
         (_c("branch3x3dbl_3a", 384, 384, *h), _c("branch3x3dbl_3b", 384, 384, *v))],
    ], pool_kind, 192, cin)


class FIDInceptionV3(nn.Module):
    """The FID Inception-v3; ``forward(8-bit levels)`` gives the ``(N, 2048)`` pool3 features.

    Args:
        input_mode: ``"tensorflow"`` (the graph's own resize and scaling) or ``"pytorch-fid"``.
    """

    def __init__(self, input_mode: str = "tensorflow") -> None:
        super().__init__()
        if input_mode not in INPUT_MODES:
            raise GenimageError(f"unknown Inception input mode {input_mode!r}; choose one of {', '.join(INPUT_MODES)}")
        self.input_mode = input_mode
        self.Conv2d_1a_3x3 = ConvBN(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = ConvBN(32, 32, 3)
        self.Conv2d_2b_3x3 = ConvBN(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = ConvBN(80, 192, 3)
        self.Mixed_5b = block_a(192, 32)
        self.Mixed_5c = block_a(256, 64)
        self.Mixed_5d = block_a(288, 64)
        self.Mixed_6a = block_b(288)
        self.Mixed_6b = block_c(768, 128)
        self.Mixed_6c = block_c(768, 160)
        self.Mixed_6d = block_c(768, 160)
        self.Mixed_6e = block_c(768, 192)
        self.Mixed_7a = block_d(768)
        self.Mixed_7b = block_e(1280, "avg")
        self.Mixed_7c = block_e(2048, "max")
        self.fc = nn.Linear(FEATURE_DIM, NUM_CLASSES)

    def prepare(self, levels: torch.Tensor) -> torch.Tensor:
        """8-bit levels in ``[0, 255]`` -> the ``(N, 3, 299, 299)`` network input in ``[-1, 1]``,
        by :attr:`input_mode` (module docstring)."""
        if self.input_mode == "tensorflow":
            return (resize_bilinear_tf1(levels, INPUT_SIZE) - 128) / 128
        x = F.interpolate(levels / 255, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        return 2 * x - 1

    def feature_maps(self, x: torch.Tensor) -> torch.Tensor:
        """The last ``(N, 2048, 8, 8)`` map of a prepared ``(N, 3, 299, 299)`` batch."""
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, 3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        return x

    def forward(self, levels: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` 8-bit levels (floats in ``[0, 255]``) -> ``(N, 2048)`` pool3 features."""
        return F.adaptive_avg_pool2d(self.feature_maps(self.prepare(levels)), 1).flatten(1)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """``(N, 1008)`` class logits of pool3 features (no dropout: evaluation only)."""
        return self.fc(features)


def load_fid_state_dict(net: FIDInceptionV3, state: object, source: str = "the weights file") -> FIDInceptionV3:
    """Load ``state`` (a ``state_dict``) into ``net``: strict, except that BatchNorm
    ``num_batches_tracked`` entries may be present or absent.

    Raises:
        GenimageError: ``state`` is not a dict of tensors, a key is missing or unexpected, or a
            tensor's shape differs; the message names the first few offenders.
    """
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise GenimageError(f"{source} is not an Inception state_dict (a dict of name -> tensor)")
    expected = net.state_dict()
    optional = {k for k in expected if k.endswith(".num_batches_tracked")}

    def first(names: list[str]) -> str:
        return ", ".join(names[:5]) + (f" (+{len(names) - 5} more)" if len(names) > 5 else "")

    missing = [k for k in expected if k not in state and k not in optional]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = ([f"missing {first(missing)}"] if missing else []) + ([f"unexpected {first(unexpected)}"] if unexpected else [])
        raise GenimageError(f"{source} does not fit the FID Inception-v3: {'; '.join(parts)}")
    wrong = [f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})" for k, v in expected.items()
             if k in state and state[k].shape != v.shape]
    if wrong:
        raise GenimageError(f"{source} does not fit the FID Inception-v3: shape of {first(wrong)}")
    full = {k: state.get(k, v) for k, v in expected.items()}
    net.load_state_dict(full, strict=True)
    return net


def random_fid_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A seeded random ``state_dict`` of the FID Inception layout, for checking implementations
    against each other without the real weights (tests, ``benchmarks/inception_crosscheck.py``).

    Drawn with NumPy's PCG64 in key order, so it does not depend on the torch version:
    He-normal convolutions (features stay O(1) through the 94 layers), BatchNorm affine near
    ``(1, 0)`` and running statistics near ``(0, 1)``, a small normal ``fc``.
    """
    import numpy as np

    rng = np.random.default_rng(seed)

    def uniform(lo: float, hi: float, shape: tuple[int, ...]) -> np.ndarray:
        return lo + (hi - lo) * rng.random(shape, dtype=np.float32)

    with torch.device("meta"):  # shapes only: no 24M-parameter initialisation
        layout = {k: tuple(v.shape) for k, v in FIDInceptionV3().state_dict().items()}
    state = {}
    for name, shape in layout.items():
        if name.endswith("num_batches_tracked"):
            state[name] = torch.zeros(shape, dtype=torch.long)
            continue
        if name.endswith("conv.weight"):
            value = rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / np.prod(shape[1:])))
        elif name.endswith("bn.weight"):
            value = uniform(0.8, 1.2, shape)
        elif name.endswith(("bn.bias", "bn.running_mean")):
            value = uniform(-0.1, 0.1, shape)
        elif name.endswith("bn.running_var"):
            value = uniform(0.5, 1.5, shape)
        else:  # fc.weight, fc.bias
            value = rng.standard_normal(shape, dtype=np.float32) * np.float32(0.01)
        state[name] = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
    return state
