"""Signed provenance manifests: Ed25519 over model, parameters, time and a hash of the decoded
pixels, in PNG / JPEG / WebP metadata; `genimage keys new`, `genimage sign`, `genimage verify`."""

from __future__ import annotations

import json
import stat

import numpy as np
import pytest
from PIL import Image, PngImagePlugin
from typer.testing import CliRunner

from genimage.cli.main import app
from genimage.errors import GenimageError
from genimage.pipeline import Pipeline, replay
from genimage.provenance import keys as K
from genimage.provenance import manifest as M

runner = CliRunner()


@pytest.fixture
def keydir(tmp_path, monkeypatch):
    """A fresh key folder in use (and no key from the developer's home)."""
    folder = tmp_path / "keys"
    monkeypatch.setenv(K.KEYS_DIR_ENV, str(folder))
    monkeypatch.delenv(K.SIGNING_KEY_ENV, raising=False)
    monkeypatch.delenv(K.TRUSTED_ENV, raising=False)
    K.new_keys(folder)
    return folder


def _photo(size=40, seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    smooth = np.cumsum(np.cumsum(rng.normal(size=(size, size, 3)), 0), 1)
    arr = ((smooth - smooth.min()) / np.ptp(smooth) * 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def test_keys_new_writes_private_key_owner_only_and_refuses_to_overwrite(tmp_path):
    signer, private, public = K.new_keys(tmp_path / "k")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert public.parent.name == "trusted" and public.name == f"{signer.key_id}.pub"
    assert K.load_signer(private).public_raw == K.load_public_key(public) == signer.public_raw
    with pytest.raises(GenimageError, match="already exists"):
        K.new_keys(tmp_path / "k")
    again, _, _ = K.new_keys(tmp_path / "k", force=True)
    assert again.key_id != signer.key_id and len(K.trusted_keys(tmp_path / "k" / "trusted")) == 2


@pytest.mark.parametrize("suffix,quality", [(".png", 95), (".jpg", 90), (".webp", 80), (".webp", 100)])
def test_each_format_verifies_intact_and_catches_a_changed_pixel(keydir, tmp_path, suffix, quality):
    signer = K.configured_signer()
    path = tmp_path / f"a{suffix}"
    path.write_bytes(M.encode_signed(_photo(), M.format_for(path), {"model": "m", "model_sha256": "ab" * 32},
                                     signer, quality=quality))
    result = M.verify_file(path)
    assert (result.status, result.key_id, result.exit_code) == (M.INTACT, signer.key_id, 0)
    assert result.manifest["model"] == {"name": "m", "sha256": "ab" * 32}
    assert result.manifest["image"]["format"] == M.format_for(path) and result.manifest["created"]
    # change one pixel, keep the metadata block exactly
    with Image.open(path) as im:
        im.load()
        pixels = im.convert("RGB")
    envelope = json.dumps(M.read_envelope(path))
    pixels.putpixel((3, 4), tuple((v + 40) % 256 for v in pixels.getpixel((3, 4))))
    tampered = tmp_path / f"t{suffix}"
    # re-encode with the same manifest (lossless, so only that pixel differs)
    tampered.write_bytes(M._encode(pixels, "PNG" if suffix == ".png" else "WEBP", 100, envelope, {})
                         if suffix != ".jpg" else M._encode(pixels, "JPEG", 100, envelope, {}))
    assert M.verify_file(tampered).status == M.TAMPERED


def test_edited_manifest_unknown_key_and_absent(keydir, tmp_path):
    signer = K.configured_signer()
    good = tmp_path / "g.png"
    good.write_bytes(M.encode_signed(_photo(), "PNG", {"model": "m", "model_sha256": "0" * 64}, signer))
    env = M.read_envelope(good)
    env["manifest"]["model"]["name"] = "someone-else"  # pixels untouched, claim edited
    edited = tmp_path / "e.png"
    info = PngImagePlugin.PngInfo()
    info.add_itxt(M.PNG_KEY, json.dumps(env))
    _photo().save(edited, pnginfo=info)
    r = M.verify_file(edited)
    assert r.status == M.TAMPERED and "manifest" in r.reason
    # a valid signature by a key outside the trusted folder
    other = K.Signer.generate()
    stranger = tmp_path / "s.webp"
    stranger.write_bytes(M.encode_signed(_photo(), "WEBP", None, other, quality=100))
    r = M.verify_file(stranger)
    assert (r.status, r.key_id, r.exit_code) == (M.UNKNOWN_KEY, other.key_id, 3)
    assert M.verify_file(stranger, trusted=tmp_path / "nowhere").status == M.UNKNOWN_KEY
    plain = tmp_path / "p.jpg"
    _photo().save(plain, quality=90)
    assert M.verify_file(plain).status == M.ABSENT


def test_generated_pngs_are_signed_on_save_and_still_replay(keydir, tiny_model_dir, tmp_path, monkeypatch):
    pipe = Pipeline.from_pretrained(tiny_model_dir)
    opts = pipe.options(steps=2)
    img = pipe([5], labels=[1], options=opts)
    path = pipe.save(img, pipe.records([5], [1], options=opts), [tmp_path / "a.png"])[0]
    r = M.verify_file(path)
    assert r.status == M.INTACT
    assert r.manifest["model"]["sha256"] == pipe.loaded.weights_sha256 and r.manifest["parameters"]["seed"] == 5
    assert replay(path).match
    monkeypatch.setenv(K.SIGNING_KEY_ENV, "off")
    unsigned = pipe.save(img, pipe.records([5], [1], options=opts), [tmp_path / "b.png"])[0]
    assert M.verify_file(unsigned).status == M.ABSENT
    assert np.array_equal(np.asarray(Image.open(unsigned)), np.asarray(Image.open(path)))


def test_cli_keys_sign_verify_exit_codes(tmp_path, monkeypatch):
    folder = tmp_path / "keys"
    monkeypatch.setenv(K.KEYS_DIR_ENV, str(folder))
    monkeypatch.delenv(K.SIGNING_KEY_ENV, raising=False)
    monkeypatch.delenv(K.TRUSTED_ENV, raising=False)
    res = runner.invoke(app, ["keys", "new"])
    assert res.exit_code == 0 and "key id" in res.output
    assert runner.invoke(app, ["keys", "new"]).exit_code == 2
    src = tmp_path / "src.png"
    _photo().save(src)
    assert runner.invoke(app, ["verify", str(src)]).exit_code == 4
    res = runner.invoke(app, ["sign", str(src), "-o", str(tmp_path / "out.jpg"), "--quality", "85"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["verify", str(tmp_path / "out.jpg"), "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["status"] == M.INTACT
    res = runner.invoke(app, ["verify", str(tmp_path / "out.jpg"), "--trusted", str(tmp_path)])
    assert res.exit_code == 3 and M.UNKNOWN_KEY in res.output
    res = runner.invoke(app, ["verify", str(tmp_path / "missing.png")])
    assert res.exit_code == 2 and "not found" in res.output
    monkeypatch.setenv(K.SIGNING_KEY_ENV, str(tmp_path / "no.key"))
    res = runner.invoke(app, ["sign", str(src), "-o", str(tmp_path / "x.png")])
    assert res.exit_code == 2 and "no such key file" in res.output
