"""The bundled MiniLM without transformers: same tokens, same hidden states, bit for bit."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
import torch

from genimage.conditioning.text import BUNDLED_TEXT_ENCODERS, TextEncoder

PROMPTS = [
    "a red circle",
    "two blue squares to the left of a green triangle",
    "A RED Circle!!  ",
    "café naïve — résumé, 3 objects; (yes) [maybe] {no}",
    "one " * 40,  # truncated
    "x",
]


@pytest.fixture(scope="module")
def folder():
    return str(BUNDLED_TEXT_ENCODERS.get("minilm")())


@pytest.mark.parametrize("max_length,layers", [(16, (0, -1)), (32, None), (7, (2,))])
def test_native_minilm_matches_transformers(folder, max_length, layers):
    native = TextEncoder.from_name("minilm", max_length=max_length, layers=layers, cache=False)
    ref = TextEncoder.from_name(folder, max_length=max_length, layers=layers, cache=False)
    assert type(native.model).__name__ == "BertEncoder" and type(ref.model).__name__ == "BertModel"
    assert native.dim == ref.dim and native.layers == ref.layers
    for kwargs in ({"padding": "max_length", "truncation": True, "max_length": max_length, "return_tensors": "pt"},
                   {"truncation": False}):
        a, b = native.tokenizer(PROMPTS, **kwargs), ref.tokenizer(PROMPTS, **kwargs)
        for key in ("input_ids", "attention_mask"):
            want = b[key].tolist() if hasattr(b[key], "tolist") else list(b[key])
            got = a[key].tolist() if hasattr(a[key], "tolist") else list(a[key])
            assert got == [list(r) for r in want], key
    assert native.tokenizer(PROMPTS[1])["input_ids"] == list(ref.tokenizer(PROMPTS[1])["input_ids"])
    for bf16 in (False, True):
        with warnings.catch_warnings(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            warnings.simplefilter("ignore")  # the truncation warning
            got, want = native.encode(PROMPTS), ref.encode(PROMPTS)
        for key in want:
            assert torch.equal(got[key], want[key]), (key, bf16)
    # one prompt alone (no padding mask when it fills max_length) and a full batch agree too
    full = ["word " * 60]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert torch.equal(native.encode(full)["text"], ref.encode(full)["text"])


def test_native_minilm_weights_hash_is_the_package_file(folder):
    native = TextEncoder.from_name("minilm")
    ref = TextEncoder.from_name(folder)
    assert native.weights_sha256 == ref.weights_sha256


def test_loading_minilm_does_not_import_transformers():
    code = ("import sys\nfrom genimage.conditioning.text import TextEncoder\n"
            "TextEncoder.from_name('minilm').encode(['a red circle'])\nprint('transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False"
