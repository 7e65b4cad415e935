"""Everything genimage can say about one image file: its invisible marks, its signed manifest,
its generation record, and the learned detector of its domain (``genimage detect``)."""

from __future__ import annotations

from pathlib import Path

from genimage.errors import GenimageError


def load_for_marks(path: str | Path):
    """Decode an image file as a ``(C, H, W)`` tensor in ``[-1, 1]``: gray files as 1 channel
    (the pattern mark is per channel), everything else as RGB."""
    from PIL import Image

    from genimage.data.image_io import BadImageError, load_image, pil_to_tensor

    try:
        with Image.open(path) as im:
            gray = im.mode in ("1", "L", "LA", "I", "I;16", "F")
    except Exception:  # noqa: BLE001 - an unreadable file is reported by load_image below
        gray = False
    try:
        img, _ = load_image(path, channels=1 if gray else 3)
    except (BadImageError, OSError) as e:
        raise GenimageError(f"cannot read {path}: {e}") from None
    return pil_to_tensor(img)


def inspect_file(path: str | Path, trusted: str | Path | None = None, key: str | None = None,
                 message: bytes | None = None) -> dict:
    """Report on one image file.

    Args:
        path: Image file (PNG, JPEG, WebP, ...).
        trusted: Folder of trusted public keys for the manifest (default: see
            :func:`genimage.provenance.keys.trusted_dir`).
        key: Watermark key (default ``$GENIMAGE_WATERMARK_KEY`` or the public key).
        message: DWT-DCT message to look for (default the key's).

    Returns:
        A JSON-ready dict: ``image``, ``size`` ``[W, H]``, ``channels``, ``marks``
        (:func:`genimage.provenance.marks.find_marks`), ``manifest``
        (:meth:`genimage.provenance.manifest.Verification.to_dict`), ``record`` (model and version,
        or ``None``) and ``detector`` (name, ``p_generated`` and ``trained_on``, what it was
        trained to tell apart, or ``None`` when no shipped detector has this image shape: it is
        chosen by shape alone, so its probability means something only for that content).
    """
    from genimage.provenance.detector import detector_for, p_generated
    from genimage.provenance.manifest import verify_file
    from genimage.provenance.marks import find_marks
    from genimage.provenance.record import read_record

    path = Path(path)
    x = load_for_marks(path)
    out: dict = {"image": str(path), "size": [int(x.shape[2]), int(x.shape[1])], "channels": int(x.shape[0])}
    out["marks"] = find_marks(x, key=key, message=message)
    out["manifest"] = verify_file(path, trusted).to_dict()
    try:
        record = read_record(path)
        out["record"] = {"model": record.model, "genimage_version": record.genimage_version, "watermark": record.watermark}
    except GenimageError:
        out["record"] = None
    det = detector_for(*x.shape)
    out["detector"] = None if det is None else {"name": det.name, "p_generated": round(float(p_generated(x[None], det)[0]), 4),
                                                "trained_on": det.config.source.split(": ", 1)[-1]}
    return out
