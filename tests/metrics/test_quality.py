"""evaluate_samples: one call combining FD, KID, PRDC, memorization and recognizability."""

import json

import pytest
import torch

from genimage.data.builtin import load_builtin
from genimage.errors import GenimageError
from genimage.metrics.quality import evaluate_samples


@pytest.fixture(scope="module")
def splits():
    train, test = load_builtin("digits", split="train"), load_builtin("digits", split="eval")
    return train.images[:, None].clone(), test.images[:, None].clone(), torch.as_tensor(test.labels)


def test_real_test_split_against_train(splits):
    train, test, labels = splits
    r = evaluate_samples(test, train, "digits", train_images=train, kid_subsets=20, labels=labels)
    assert "genimage-digits-cnn" in r["features"] and "not comparable" in r["features"]
    assert r["n_samples"] == 297 and r["n_reference"] == 1500 and r["kid_subset_size"] == 297
    for key in ("fd", "kid", "kid_std", "precision", "recall", "density", "coverage"):
        assert isinstance(r[key], float)
    assert r["fd"] >= 0 and r["precision"] > 0.7 and r["recall"] > 0.7
    assert r["memorization"]["pixel"]["copy_rate"] < 0.05
    assert r["recognizability"]["classes_present"] == 10
    json.dumps(r)  # the report is plain JSON


def test_noise_scores_worse_than_real(splits):
    train, test, _ = splits
    noise = torch.rand(297, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    real = evaluate_samples(test, train[:750], "digits", kid_subsets=10)
    bad = evaluate_samples(noise, train[:750], "digits", kid_subsets=10)
    assert bad["fd"] > 5 * real["fd"]
    assert bad["kid"] > 5 * real["kid"]
    # (precision alone is fooled here: noise features collapse to one point that an outlying
    # real digit's k-NN ball contains - the weakness density and coverage were made for)
    assert bad["density"] < real["density"] / 2
    assert bad["coverage"] < 0.05 < real["coverage"]
    assert bad["recall"] < 0.05 < real["recall"]
    assert bad["recognizability"]["confident_fraction"] < 0.1
    assert "memorization" not in bad


def test_copies_of_training_images_are_reported(splits):
    train, test, _ = splits
    samples = torch.cat([train[:20], test[:80]])
    r = evaluate_samples(samples, test, "digits", train_images=train[:500], kid_subsets=5)
    assert set(r["memorization"]["pixel"]["copies"]) >= set(range(20))
    assert r["memorization"]["pixel"]["copy_rate"] >= 0.2


def test_datasets_accepted_like_tensors(splits):
    train, test, _ = splits
    ds = load_builtin("digits", split="eval")
    a = evaluate_samples(ds, train[:100], "digits", kid_subsets=5)
    b = evaluate_samples(test, train[:100], "digits", kid_subsets=5)
    assert a["fd"] == b["fd"] and a["kid"] == b["kid"] and a["coverage"] == b["coverage"]


def test_errors(splits):
    train, test, _ = splits
    with pytest.raises(GenimageError, match="channel"):
        evaluate_samples(torch.zeros(4, 3, 8, 8), test, "digits")
    with pytest.raises(GenimageError, match="not found"):
        evaluate_samples(test, train, "no-such-net")
    with pytest.raises(GenimageError, match="image tensor"):
        evaluate_samples("images.png", train, "digits")


def test_precomputed_reference_features_give_the_same_report(splits):
    from genimage.metrics.features import load_feature_net

    train, test, _ = splits
    net = load_feature_net("digits")
    a = evaluate_samples(test, train[:300], net, kid_subsets=5)
    b = evaluate_samples(test, train[:300], net, kid_subsets=5, reference_features=net.features(train[:300]))
    assert {k: v for k, v in a.items() if k != "seconds"} == {k: v for k, v in b.items() if k != "seconds"}
    with pytest.raises(GenimageError, match="reference_features"):
        evaluate_samples(test, train[:300], net, reference_features=net.features(train[:200]))
