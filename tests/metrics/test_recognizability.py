"""Recognizability: the real digits test split scores high, noise scores far lower."""

import pytest
import torch

from genimage.data.builtin import load_builtin
from genimage.errors import GenimageError
from genimage.metrics.recognizability import digits_recognizability


@pytest.fixture(scope="module")
def digits_eval():
    ds = load_builtin("digits", split="eval")
    return ds.images[:, None].clone(), torch.as_tensor(ds.labels)


def test_real_test_split_is_recognizable(digits_eval):
    x, y = digits_eval
    r = digits_recognizability(x, labels=y)
    assert r["confident_fraction"] >= 0.9
    assert r["classes_present"] == 10
    assert sum(r["class_counts"]) == round(r["confident_fraction"] * len(y))
    assert r["accuracy_vs_labels"] >= 0.97
    assert r["confident_accuracy_vs_labels"] <= r["accuracy_vs_labels"]
    assert "genimage-digits-cnn" in r["classifier"]


def test_uniform_noise_is_not(digits_eval):
    noise = torch.rand(1000, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    r = digits_recognizability(noise)
    real = digits_recognizability(digits_eval[0])
    assert r["confident_fraction"] < 0.1 < real["confident_fraction"] - 0.5
    assert "accuracy_vs_labels" not in r


def test_larger_images_are_resized():
    ds = load_builtin("digits", split="eval", image_size=16)
    x = torch.stack([ds[i]["image"] for i in range(len(ds))])
    r = digits_recognizability(x, labels=[ds[i]["label"] for i in range(len(ds))])
    assert r["accuracy_vs_labels"] >= 0.9


def test_wrong_labels_lower_accuracy(digits_eval):
    x, y = digits_eval
    assert digits_recognizability(x, labels=(y + 1) % 10)["accuracy_vs_labels"] < 0.1


def test_errors(digits_eval):
    x, y = digits_eval
    with pytest.raises(GenimageError, match="1-channel"):
        digits_recognizability(torch.zeros(2, 3, 8, 8))
    with pytest.raises(GenimageError, match="labels for"):
        digits_recognizability(x, labels=y[:5])
    with pytest.raises(GenimageError, match="threshold"):
        digits_recognizability(x, threshold=1.5)
