"""The detector's search over rotations, centred crops and low-pass readings of the inverted
noise (genimage.provenance.noise_sync), and the soft (linear-correlation) scoring it uses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from genimage.errors import GenimageError
from genimage.provenance import noise_mark as N
from genimage.provenance.noise_sync import IDENTITY, Hypothesis, gaussian_blur, hypotheses, synchronised, warp_back
from genimage.samplers.noise import generators_for_seeds, randn

MSG = b"gnim"


def _smooth_image(size: int = 32) -> np.ndarray:
    """A smooth RGB test image (low frequencies only, so resampling is nearly exact)."""
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.interpolate(torch.rand(1, 3, 5, 5, generator=g), size=(size, size), mode="bicubic",
                                        align_corners=True)
    return (x[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def _as_tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(a, dtype=np.float32)).permute(2, 0, 1)[None] / 255


@pytest.mark.parametrize("kind", ["rotate 15", "rotate -25", "crop 30%"])
def test_warp_back_undoes_a_pil_rotation_and_a_centred_crop(kind):
    """An image turned by PIL (counterclockwise) or centre-cropped and resized back comes back
    to the original inside the read region under the right hypothesis, and not under the
    mirrored one: the hypothesis's sign convention is PIL's."""
    a = _smooth_image()
    im = Image.fromarray(a)
    if kind.startswith("rotate"):
        deg = float(kind.split()[1])
        attacked, right, wrong = im.rotate(deg, Image.Resampling.BICUBIC), Hypothesis(rotation=deg), Hypothesis(rotation=-deg)
    else:
        keep = math.sqrt(0.7)
        c = round(32 * keep)
        o = (32 - c) // 2
        attacked = im.crop((o, o, o + c, o + c)).resize((32, 32), Image.Resampling.BICUBIC)
        right, wrong = Hypothesis(zoom=32 / c), Hypothesis(zoom=c / 32)
    x, orig = _as_tensor(np.asarray(attacked)), _as_tensor(a)
    back, read = warp_back(x, right)
    assert read.shape == (1, 1, 32, 32) and 0.4 < float(read.float().mean()) < 1.0
    err = ((back - orig).abs() * read).sum() / (read.sum() * 3)
    back_wrong, read_wrong = warp_back(x, wrong)
    err_wrong = ((back_wrong - orig).abs() * read_wrong).sum() / (read_wrong.sum() * 3)
    assert err < 0.03 and err_wrong > 2 * err, (float(err), float(err_wrong))


def test_the_default_grid_and_bad_grids():
    grid = hypotheses()
    assert grid[0] == IDENTITY and len(grid) == len(set(grid)) == 43 * 3
    assert {h.blur for h in grid} == {0.0, 0.5, 1.0}
    assert max(h.rotation for h in grid) == 30 and min(h.rotation for h in grid) == -30
    assert all(h.rotation == 0 for h in grid if h.zoom != 1) and max(h.zoom for h in grid) <= 1.5
    assert hypotheses(max_rotation=0, max_zoom=1, blurs=(0.0,)) == [IDENTITY]
    with pytest.raises(GenimageError, match="positive steps"):
        hypotheses(rotation_step=0)
    with pytest.raises(GenimageError, match="square"):
        warp_back(torch.zeros(1, 3, 8, 16), Hypothesis(rotation=5))


def test_identity_reads_everything_and_blur_keeps_the_read_region():
    x = torch.randn(2, 3, 16, 16)
    same, read = warp_back(x, IDENTITY)
    assert torch.equal(same, x) and bool(read.all())
    low, read = warp_back(x, Hypothesis(rotation=10, blur=1.0))
    assert bool((low * ~read).eq(0).all()) and float(low.std()) < float(x.std())
    assert torch.allclose(gaussian_blur(torch.ones(1, 1, 9, 9), 1.0)[0, 0, 4, 4], torch.tensor(1.0), atol=1e-6)


def test_soft_scores_are_standard_normal_without_the_mark_and_stronger_under_added_noise():
    """Linear correlation ``w . (2m - 1) / ||w||`` is N(0, 1) for noise without the mark, like
    the sign score, and reads a mark buried in heavy noise better than signs do."""
    eps = randn((400, 3, 8, 8), generators_for_seeds(range(400)))
    soft = N.score_noise(eps, "k", MSG, soft=True)["z"]
    assert abs(float(soft.mean())) < 0.2 and 0.85 < float(soft.std()) < 1.15
    marked = N.shade(eps, "k", MSG)
    noisy = marked + 2.0 * randn(marked.shape, generators_for_seeds(range(1000, 1400)))
    hard, soft = N.score_noise(noisy, "k", MSG)["z"], N.score_noise(noisy, "k", MSG, soft=True)["z"]
    assert float(soft.mean()) > 1.1 * float(hard.mean()) > 1.0


def test_search_reads_rotated_noise_that_the_plain_reading_misses():
    """Marked noise, rotated 20 degrees as an image would be: the plain reading scores it like
    unmarked noise; the search finds the rotation and a high score, over many patterns."""
    eps = randn((4, 3, 32, 32), generators_for_seeds(range(4)))
    marked = N.shade(eps, "k", MSG, patterns=300)
    rotated = torch.stack([_as_tensor_noise(Image.fromarray(m.numpy()).rotate(20, Image.Resampling.BILINEAR))
                           for m in marked.flatten(0, 1)]).reshape(marked.shape)
    plain = N.score_candidates(rotated[None], "k", MSG, patterns=300)
    grid = hypotheses(blurs=(0.0,))
    cands, read = synchronised(rotated[None], grid)
    found = N.score_candidates(cands, "k", MSG, patterns=300, read=read, soft=True)
    assert float(plain["z"].max()) < 5 and float(found["z"].min()) > 15, (plain["z"], found["z"])
    assert [grid[int(c)].rotation for c in found["candidate"]] == [20.0] * 4
    assert torch.equal(found["pattern"], N.pattern_index("k", eps, 300))


def _as_tensor_noise(im: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(im, dtype=np.float32).copy())
