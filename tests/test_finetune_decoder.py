"""scripts/finetune_decoder.py: only the decoder changes, so the latents (and a diffusion model
on them) stay valid; the swap refuses an autoencoder whose encoder differs."""

import importlib.util
import json
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
BUNDLED_AE = ROOT / "src/genimage/weights/shapes/autoencoder"


def _script():
    spec = importlib.util.spec_from_file_location("finetune_decoder", ROOT / "scripts/finetune_decoder.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_decoder_only_finetune_and_swap(tmp_path, capsys):
    from genimage.latent.autoencoder import load_autoencoder
    from genimage.pipeline import Pipeline

    mod = _script()
    out = tmp_path / "dec"
    assert mod.main(["train", "--autoencoder", str(BUNDLED_AE), "--out", str(out), "--minutes", "0.02",
                     "--batch", "8"]) == 0
    old, new = load_autoencoder(BUNDLED_AE), load_autoencoder(out)
    enc_old, enc_new = old.model.ae.encoder.state_dict(), new.model.ae.encoder.state_dict()
    assert all(torch.equal(enc_old[k], enc_new[k]) for k in enc_old)  # the latent space is kept
    dec_old, dec_new = old.model.ae.decoder.state_dict(), new.model.ae.decoder.state_dict()
    assert any(not torch.equal(dec_old[k], dec_new[k]) for k in dec_old)  # the decoder was trained
    assert json.loads((out / "config.json").read_text())["training"]["decoder_finetuned_from"] == old.sha256

    swapped = tmp_path / "shapes_dec"
    assert mod.main(["swap", "--model", "shapes", "--autoencoder", str(out), "--out", str(swapped)]) == 0
    pipe = Pipeline.from_pretrained(swapped)
    base = Pipeline.from_pretrained("shapes")
    assert pipe.loaded.weights_sha256 == base.loaded.weights_sha256  # the same diffusion weights
    image = pipe([0], prompts=["a red circle"])
    assert image.shape == (1, 3, 32, 32) and torch.isfinite(image).all()

    capsys.readouterr()
    photo_ae = ROOT / "src/genimage/weights/photo-autoencoder"
    assert mod.main(["swap", "--model", "shapes", "--autoencoder", str(photo_ae),
                     "--out", str(tmp_path / "bad")]) == 2
    assert "encoder is not" in capsys.readouterr().err and not (tmp_path / "bad").exists()
