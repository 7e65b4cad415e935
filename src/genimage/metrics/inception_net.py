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

Input, as pytorch-fid feeds it for FID: images in ``[0, 1]`` are resized bilinearly to 299x299
(``align_corners=False``) and scaled to ``[-1, 1]``; the output is the adaptive average pool of
the last 8x8x2048 map.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genimage.errors import GenimageError

INPUT_SIZE = 299
NUM_CLASSES = 1008
FEATURE_DIM = 2048

Kernel = int | tuple[int, int]


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
    """The FID Inception-v3; ``forward(images in [0, 1])`` gives the ``(N, 2048)`` pool3 features."""

    def __init__(self) -> None:
        super().__init__()
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

    @staticmethod
    def prepare(images: torch.Tensor) -> torch.Tensor:
        """``[0, 1]`` images -> bilinear 299x299 (``align_corners=False``) -> ``[-1, 1]``."""
        x = F.interpolate(images, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
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

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` images in ``[0, 1]`` -> ``(N, 2048)`` pool3 features."""
        return F.adaptive_avg_pool2d(self.feature_maps(self.prepare(images)), 1).flatten(1)

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
