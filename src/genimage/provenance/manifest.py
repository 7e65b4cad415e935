"""Signed provenance manifests in PNG, JPEG and WebP metadata, and their verification.

A manifest is a small JSON claim about one image file: who made it (genimage's version), with
what (the model's name and the sha256 of its weights), how (the generation record's parameters),
when (UTC time) and *which pixels* (the sha256 of the decoded pixels, :func:`pixels_sha256`).
It is signed with Ed25519 (RFC 8032; :mod:`genimage.provenance.keys`) over its canonical JSON
(sorted keys, no spaces, ASCII), and stored with the signature and the signer's public key:

- PNG: an ``iTXt`` chunk with keyword ``genimage-manifest``;
- JPEG: a COM segment ``genimage-manifest:<json>``;
- WebP: an XMP chunk whose ``genimage:manifest`` attribute holds the base64 JSON.

Because the hash covers decoded pixels, not file bytes, the metadata can be re-ordered or other
metadata added without breaking it, but any change to a pixel is caught. For JPEG and lossy
WebP the hash is of the pixels this Pillow/libjpeg/libwebp decodes; another decoder may round
differently (the JPEG standard allows it), which verification would report as tampered.

:func:`verify_file` answers exactly one of :data:`INTACT` (the signature holds, the pixels are
the signed ones, and the key is trusted), :data:`TAMPERED` (the pixels or the manifest changed
after signing), :data:`UNKNOWN_KEY` (signed and unchanged, but by a key not in the trusted
folder: anyone can make a key, so this proves nothing about who) or :data:`ABSENT`.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin

from genimage.errors import GenimageError
from genimage.provenance.keys import Signer, public_key_id, trusted_keys

PNG_KEY = "genimage-manifest"
JPEG_PREFIX = b"genimage-manifest:"
XMP_NS = "https://github.com/genimage/ns/manifest/1.0/"
FORMAT = "genimage.manifest/1"
FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}

INTACT, TAMPERED, UNKNOWN_KEY, ABSENT = "signed-and-intact", "tampered", "signed-by-unknown-key", "absent"
EXIT_CODES = {INTACT: 0, TAMPERED: 1, UNKNOWN_KEY: 3, ABSENT: 4}  # 2 is a usage error, as everywhere


def pixels_sha256(image: Image.Image) -> str:
    """sha256 of a decoded image: its mode, size and raw pixel bytes (``mode WxH\\n`` + bytes)."""
    h = hashlib.sha256(f"{image.mode} {image.width}x{image.height}\n".encode("ascii"))
    h.update(image.tobytes())
    return h.hexdigest()


def canonical(obj: Any) -> bytes:
    """The bytes that are signed: JSON with sorted keys, no whitespace, ASCII only."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def build_manifest(image: Image.Image, fmt: str, record: dict | None = None, created: str | None = None) -> dict:
    """The unsigned claim about ``image`` (as it decodes from the file).

    Args:
        image: The decoded pixels the file holds.
        fmt: ``PNG``, ``JPEG`` or ``WEBP``.
        record: The generation record as a dict (:meth:`GenerationRecord.to_json`), or ``None``
            for an image genimage did not make.
        created: ISO 8601 UTC time; default now.
    """
    from genimage import __version__

    record = dict(record) if record else None
    return {
        "format": FORMAT, "claim_generator": f"genimage {__version__}",
        "created": created or datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": None if record is None else {"name": record.get("model"), "sha256": record.get("model_sha256")},
        "parameters": record,
        "image": {"format": fmt, "mode": image.mode, "width": image.width, "height": image.height,
                  "pixels_sha256": pixels_sha256(image)},
    }


def sign_manifest(manifest: dict, signer: Signer) -> dict:
    """The envelope stored in the file: the manifest, its Ed25519 signature and the public key."""
    return {"manifest": manifest, "signature": {
        "alg": "Ed25519", "key_id": signer.key_id,
        "public_key": base64.b64encode(signer.public_raw).decode("ascii"),
        "value": base64.b64encode(signer.sign(canonical(manifest))).decode("ascii")}}


def _xmp(envelope_json: str) -> bytes:
    b64 = base64.b64encode(envelope_json.encode("utf-8")).decode("ascii")
    return (f'<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
            f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
            f'<rdf:Description rdf:about="" xmlns:genimage="{XMP_NS}" genimage:manifest="{b64}"/>'
            f'</rdf:RDF></x:xmpmeta><?xpacket end="w"?>').encode("utf-8")


def _encode(image: Image.Image, fmt: str, quality: int, envelope: str | None, png_text: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    if fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        for k, v in png_text.items():
            info.add_itxt(k, v)
        if envelope is not None:
            info.add_itxt(PNG_KEY, envelope)
        image.save(buf, format="PNG", pnginfo=info)
    elif fmt == "JPEG":
        kw = {"comment": JPEG_PREFIX + envelope.encode("utf-8")} if envelope is not None else {}
        image.convert("RGB" if image.mode not in ("L", "RGB") else image.mode).save(buf, format="JPEG", quality=quality, **kw)
    elif fmt == "WEBP":
        kw = {"xmp": _xmp(envelope)} if envelope is not None else {}
        lossless = quality >= 100
        image.save(buf, format="WEBP", lossless=lossless, quality=100 if lossless else quality, **kw)
    else:
        raise GenimageError(f"cannot write {fmt} images; use .png, .jpg or .webp")
    return buf.getvalue()


def _decode(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return im.copy() if im.mode in ("L", "RGB", "RGBA") else im.convert("RGBA" if "A" in im.mode else "RGB")


def format_for(path: str | Path) -> str:
    """``PNG``/``JPEG``/``WEBP`` from a file name's suffix."""
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise GenimageError(f"{path}: signed images are written as .png, .jpg/.jpeg or .webp")
    return fmt


def encode_signed(image: Image.Image, fmt: str, record: dict | None, signer: Signer | None, *,
                  quality: int = 95, png_text: dict[str, str] | None = None, created: str | None = None) -> bytes:
    """The bytes of ``image`` as a ``fmt`` file carrying a signed manifest (none if ``signer`` is None).

    For lossy formats the image is encoded once, decoded, and the manifest names those decoded
    pixels; the file is then encoded again with the manifest, and the pixels are checked equal
    (metadata does not change what an encoder produces; this makes sure).

    Args:
        image: PIL image (``L``, ``RGB`` or ``RGBA``).
        fmt: ``PNG``, ``JPEG`` or ``WEBP``.
        record: Generation record dict for the manifest's parameters, or ``None``.
        signer: Private key, or ``None`` to write no manifest.
        quality: JPEG/WebP quality 1..100 (WebP 100 = lossless); default 95. PNG ignores it.
        png_text: Other ``iTXt`` chunks for a PNG (the generation record).
        created: Manifest time (ISO 8601); default now.
    """
    png_text = png_text or {}
    if signer is None:
        return _encode(image, fmt, quality, None, png_text)
    lossless = fmt == "PNG" or (fmt == "WEBP" and quality >= 100)
    pixels = image if lossless and image.mode in ("L", "RGB", "RGBA") else _decode(_encode(image, fmt, quality, None, {}))
    envelope = json.dumps(sign_manifest(build_manifest(pixels, fmt, record, created), signer), sort_keys=True)
    data = _encode(image, fmt, quality, envelope, png_text)
    if pixels_sha256(_decode(data)) != pixels_sha256(pixels):
        raise GenimageError(f"the {fmt} encoder changed the pixels when the manifest was added; cannot sign this file")
    return data


def read_envelope(path: str | Path) -> dict | None:
    """The signed manifest envelope a file carries, or ``None``. Raises for unreadable files."""
    path = Path(path)
    if not path.is_file():
        raise GenimageError(f"image not found: {path}")
    try:
        with Image.open(path) as im:
            info, text = dict(im.info), dict(getattr(im, "text", {}) or {})
    except Exception as exc:  # noqa: BLE001
        raise GenimageError(f"{path} is not a readable image: {exc}") from None
    raw = None
    if PNG_KEY in text:
        raw = text[PNG_KEY]
    elif isinstance(info.get("comment"), bytes) and info["comment"].startswith(JPEG_PREFIX):
        raw = info["comment"][len(JPEG_PREFIX):].decode("utf-8", "replace")
    elif info.get("xmp"):
        xmp = info["xmp"] if isinstance(info["xmp"], str) else info["xmp"].decode("utf-8", "replace")
        m = re.search(r'genimage:manifest="([A-Za-z0-9+/=]+)"', xmp)
        if m:
            raw = base64.b64decode(m.group(1)).decode("utf-8", "replace")
    if raw is None:
        return None
    try:
        env = json.loads(raw)
        if not isinstance(env, dict):
            raise ValueError("not an object")
        return env
    except ValueError:
        return {"damaged": raw}


@dataclass
class Verification:
    """Outcome of :func:`verify_file`.

    Attributes:
        status: One of :data:`INTACT`, :data:`TAMPERED`, :data:`UNKNOWN_KEY`, :data:`ABSENT`.
        reason: One line saying why.
        key_id: The signer's key id (when the manifest names one).
        manifest: The manifest (when one was found and parsed).
    """

    status: str
    reason: str
    key_id: str | None = None
    manifest: dict | None = field(default=None, repr=False)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]

    def to_dict(self) -> dict:
        return {"status": self.status, "reason": self.reason, "key_id": self.key_id,
                "model": (self.manifest or {}).get("model"), "created": (self.manifest or {}).get("created")}


def verify_file(path: str | Path, trusted: str | Path | None = None) -> Verification:
    """Check the signed manifest of an image file (module docstring for the four answers).

    Args:
        path: PNG, JPEG or WebP file.
        trusted: Folder of trusted ``*.pub`` keys; default :func:`genimage.provenance.keys.trusted_dir`.
    """
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    env = read_envelope(path)
    if env is None:
        return Verification(ABSENT, "no genimage manifest in the file's metadata")
    if "damaged" in env:
        return Verification(TAMPERED, "the manifest is not valid JSON")
    try:
        manifest, sig = env["manifest"], env["signature"]
        public = base64.b64decode(sig["public_key"], validate=True)
        value = base64.b64decode(sig["value"], validate=True)
        kid = public_key_id(public)
        Ed25519PublicKey.from_public_bytes(public).verify(value, canonical(manifest))
    except InvalidSignature:
        return Verification(TAMPERED, "the signature does not match the manifest (the manifest was edited)",
                            public_key_id(public), manifest if isinstance(manifest, dict) else None)
    except (KeyError, TypeError, ValueError) as exc:
        return Verification(TAMPERED, f"the manifest is malformed ({type(exc).__name__}: {exc})")
    try:
        with Image.open(path) as im:
            im.load()
            pixels = im.copy() if im.mode in ("L", "RGB", "RGBA") else im.convert("RGBA" if "A" in im.mode else "RGB")
    except Exception as exc:  # noqa: BLE001
        raise GenimageError(f"{path}: cannot decode the pixels: {exc}") from None
    signed = (manifest.get("image") or {}).get("pixels_sha256")
    if pixels_sha256(pixels) != signed:
        return Verification(TAMPERED, "the pixels differ from the signed ones", kid, manifest)
    if kid not in trusted_keys(trusted):
        return Verification(UNKNOWN_KEY, f"signed and unchanged, but key {kid} is not in the trusted folder", kid, manifest)
    return Verification(INTACT, f"signed by trusted key {kid}; pixels unchanged", kid, manifest)
