"""Memorization: copies and near-copies of training images are flagged, fresh noise is not."""

import pytest
import torch

from genimage.data.builtin import load_builtin
from genimage.errors import GenimageError
from genimage.metrics.features import load_feature_net
from genimage.metrics.memorization import NearestTraining, memorization, nearest_training


@pytest.fixture(scope="module")
def train_images() -> torch.Tensor:
    return load_builtin("digits", split="train").images[:, None].clone()  # (1500, 1, 8, 8)


def _samples(train: torch.Tensor) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    exact = train[[10, 200, 900]]
    near = (train[[30, 400, 1200]] + 0.03 * torch.randn(3, 1, 8, 8, generator=gen)).clamp(-1, 1)
    noise = torch.rand(20, 1, 8, 8, generator=gen) * 2 - 1
    return torch.cat([exact, near, noise])


def test_nearest_training_matches_brute_force():
    gen = torch.Generator().manual_seed(1)
    q, t = torch.randn(30, 6, generator=gen), torch.randn(50, 6, generator=gen)
    nn = nearest_training(q, t, chunk=7)
    d = torch.cdist(q.double(), t.double())
    vals, ids = d.topk(2, largest=False)
    assert torch.equal(nn.index, ids)
    assert torch.allclose(nn.distance, vals, atol=1e-12)


def test_copies_flagged_noise_not_in_pixel_space(train_images):
    r = memorization(_samples(train_images), train_images, threshold=1 / 3, top=6)
    assert r["pixel"]["copies"] == [0, 1, 2, 3, 4, 5]
    assert r["pixel"]["copy_rate"] == pytest.approx(6 / 26)
    pairs = r["pixel"]["closest_pairs"]
    assert [p["train"] for p in pairs[:3]] == [10, 200, 900]  # stable sort: sample order
    assert all(p["d1"] == 0.0 and p["ratio"] == 0.0 and p["is_copy"] for p in pairs[:3])
    assert {p["train"] for p in pairs[3:6]} == {30, 400, 1200}
    assert r["features"] == "pixels only" and "feature" not in r


def test_feature_space_report(train_images):
    net = load_feature_net("digits")
    r = memorization(_samples(train_images), train_images, feature_net=net, top=3)
    assert set(r["feature"]["copies"]) >= {0, 1, 2}  # exact copies: d1 = 0 in any feature space
    assert not set(r["feature"]["copies"]) & set(range(6, 26))  # noise is no copy
    assert "genimage-digits-cnn" in r["features"]
    assert len(r["feature"]["closest_pairs"]) == 3


def test_exact_copy_of_duplicated_image_counts_as_copy():
    nn = NearestTraining(torch.tensor([[0, 1]]), torch.tensor([[0.0, 0.0]], dtype=torch.float64))
    assert nn.ratio.tolist() == [0.0]


def test_errors(train_images):
    with pytest.raises(GenimageError, match="differ in shape"):
        memorization(torch.zeros(2, 1, 16, 16), train_images)
    with pytest.raises(GenimageError, match="threshold"):
        memorization(train_images[:2], train_images, threshold=0.0)
