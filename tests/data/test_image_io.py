"""Tests for genimage.data.image_io: mode conversion, bad-file categories, tensor <-> PIL."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from genimage.data import image_io
from genimage.data.image_io import (
    BadImageError,
    convert_image,
    decode_image,
    make_grid,
    pil_to_tensor,
    resize_shorter_side,
    save_image_grid,
    tensor_to_pil,
)


def _bytes(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` but carries almost no data (a bomb stand-in)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 8)) + chunk(b"IEND", b"")


def _pixels(img: Image.Image) -> list:
    """Row-major pixel values as tuples (RGB) or ints (L)."""
    arr = np.asarray(img)
    return [tuple(int(v) for v in p) for p in arr.reshape(-1, arr.shape[-1])] if arr.ndim == 3 else arr.ravel().tolist()


def _reason(data: bytes, **kw) -> str:
    with pytest.raises(BadImageError) as info:
        decode_image(data, **kw)
    return info.value.reason


# ---------------------------------------------------------------- conversion


def test_16bit_grayscale_is_scaled_not_clamped():
    arr = np.array([[0, 257, 1000, 32768, 65535]], dtype=np.uint16)
    img, info = decode_image(_bytes(Image.fromarray(arr)))
    assert info.mode == "I;16"
    out = np.asarray(img)
    assert out.shape == (1, 5, 3)
    assert out[0, :, 0].tolist() == [0, 1, 4, 128, 255]  # round(v / 257)
    # PIL's own conversion clamps: everything >= 255 becomes white.
    assert np.asarray(Image.fromarray(arr).convert("L"))[0].tolist() == [0, 255, 255, 255, 255]


def test_32bit_int_and_float_modes():
    i_img = Image.fromarray(np.array([[0, 257, 65535]], dtype=np.int32), mode="I")
    assert np.asarray(convert_image(i_img, 1))[0].tolist() == [0, 1, 255]
    signed = Image.fromarray(np.array([[-100, 0, 155]], dtype=np.int32), mode="I")
    assert np.asarray(convert_image(signed, 1))[0].tolist() == [0, 100, 255]  # min-max range
    f_img = Image.fromarray(np.array([[0.0, 0.25, 1.0]], dtype=np.float32), mode="F")
    assert np.asarray(convert_image(f_img, 1))[0].tolist() == [0, 64, 255]


def test_transparency_is_composited_on_white():
    rgba = Image.new("RGBA", (3, 1))
    rgba.putdata([(255, 0, 0, 0), (255, 0, 0, 128), (0, 0, 255, 255)])
    out = convert_image(rgba)
    assert out.mode == "RGB"
    assert out.getpixel((0, 0)) == (255, 255, 255)
    r, g, b = out.getpixel((1, 0))
    assert r == 255 and abs(g - 127) <= 1 and abs(b - 127) <= 1
    assert out.getpixel((2, 0)) == (0, 0, 255)

    la = Image.new("LA", (2, 1))
    la.putdata([(0, 0), (0, 255)])
    assert _pixels(convert_image(la)) == [(255, 255, 255), (0, 0, 0)]


def test_palette_with_and_without_transparency():
    pal = Image.new("P", (2, 1))
    pal.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    pal.putdata([0, 1])
    assert _pixels(convert_image(pal)) == [(0, 0, 0), (10, 200, 30)]
    # Round-trip through PNG with index 0 transparent: it must come back white, not black.
    img, info = decode_image(_bytes(pal, transparency=0))
    assert info.mode == "P"
    assert _pixels(img) == [(255, 255, 255), (10, 200, 30)]


def test_cmyk_grayscale_and_one_bit():
    cmyk = Image.new("CMYK", (1, 1), (0, 255, 0, 0))  # full magenta ink
    img, info = decode_image(_bytes(cmyk, "TIFF"))
    assert info.mode == "CMYK" and img.getpixel((0, 0)) == (255, 0, 255)
    gray = Image.new("L", (2, 2), 77)
    assert convert_image(gray).getpixel((0, 0)) == (77, 77, 77)
    assert convert_image(gray, channels=1).mode == "L"
    one = Image.new("1", (2, 1))
    one.putpixel((1, 0), 1)
    assert _pixels(convert_image(one)) == [(0, 0, 0), (255, 255, 255)]
    assert convert_image(Image.new("RGB", (1, 1), (255, 0, 0)), channels=1).getpixel((0, 0)) == 76  # luma


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (4, 2), (0, 0, 255))
    img.putpixel((0, 0), (255, 0, 0))
    img.putpixel((0, 1), (255, 0, 0))  # left column red
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    out, info = decode_image(_bytes(img, exif=exif))
    assert out.size == (2, 4) and (info.width, info.height) == (2, 4)
    assert [out.getpixel((x, 0)) for x in range(2)] == [(255, 0, 0)] * 2  # left column -> top row
    assert out.getpixel((0, 3)) == (0, 0, 255)


# ---------------------------------------------------------------- bad files


def test_bad_bytes_get_the_right_reason():
    good = _bytes(Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 24, 3), dtype=np.uint8)))
    assert _reason(b"") == image_io.ZERO_BYTE
    assert _reason(b"just some text, renamed to .png\n") == image_io.NOT_AN_IMAGE
    assert _reason(good[: len(good) // 2]) == image_io.TRUNCATED
    mid = len(good) // 2
    flipped = good[:mid] + bytes(b ^ 0xFF for b in good[mid : mid + 16]) + good[mid + 16 :]
    assert _reason(flipped, verify=True) == image_io.CORRUPT
    jpeg = _bytes(Image.new("RGB", (32, 32), (1, 2, 3)), "JPEG")
    assert _reason(jpeg[: len(jpeg) // 2]) == image_io.TRUNCATED


def test_pixel_cap_and_pil_decompression_bomb():
    small = _bytes(Image.new("RGB", (40, 30)))
    assert _reason(small, max_pixels=40 * 30 - 1) == image_io.OVER_PIXEL_CAP
    decode_image(small, max_pixels=40 * 30)
    # Above our default cap (64 Mi pixels) and PIL's warning threshold (~89 M).
    assert _reason(_png_header_only(10_000, 10_000)) == image_io.OVER_PIXEL_CAP
    # Above PIL's hard limit: PIL raises DecompressionBombError even with our cap disabled.
    assert _reason(_png_header_only(20_000, 20_000), max_pixels=None) == image_io.OVER_PIXEL_CAP


def test_unreadable_path(tmp_path):
    with pytest.raises(BadImageError) as info:
        image_io.load_image(tmp_path / "does_not_exist.png")
    assert info.value.reason == image_io.UNREADABLE


def test_info_records_hash_and_mode():
    import hashlib

    data = _bytes(Image.new("LA", (5, 3)))
    img, info = decode_image(data)
    assert (info.width, info.height, info.mode, info.format) == (5, 3, "LA", "PNG")
    assert info.sha256 == hashlib.sha256(data).hexdigest() and info.num_bytes == len(data)
    assert img.mode == "RGB"


# ---------------------------------------------------------------- tensors


def test_tensor_round_trip_is_exact():
    arr = np.random.default_rng(1).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    t = pil_to_tensor(Image.fromarray(arr))
    assert t.shape == (3, 7, 5) and t.dtype == torch.float32
    assert t.min() >= -1 and t.max() <= 1
    assert np.array_equal(np.asarray(tensor_to_pil(t)), arr)
    gray = pil_to_tensor(Image.fromarray(arr[:, :, 0]))
    assert gray.shape == (1, 7, 5)
    assert tensor_to_pil(gray).mode == "L"


def test_tensor_to_pil_rounds_and_clamps():
    # (x + 1) * 127.5 = 0.4, 0.6, 254.6, and out-of-range values.
    x = torch.tensor([0.4, 0.6, 254.6, -500.0, 500.0, float("nan")]) / 127.5 - 1.0
    x[3], x[4] = -3.0, 3.0
    out = np.asarray(tensor_to_pil(x.view(1, 1, 6)))[0].tolist()
    assert out == [0, 1, 255, 0, 255, 128]
    with pytest.raises(ValueError):
        tensor_to_pil(torch.zeros(2, 4, 4))


def test_save_image_grid_layout(tmp_path):
    values = torch.linspace(-1, 0.6, 5)
    images = values.view(5, 1, 1, 1).expand(5, 3, 4, 4).clone()
    path = save_image_grid(images, tmp_path / "sub" / "grid.png", nrow=2)
    grid = np.asarray(Image.open(path))
    assert grid.shape == (3 * 6 + 2, 2 * 6 + 2, 3)  # 3 rows x 2 cols of 4px + 2px padding
    for i, v in enumerate(values.tolist()):
        r, c = divmod(i, 2)
        y, x = 2 + r * 6, 2 + c * 6
        expected = round((v + 1) * 127.5)
        assert (grid[y : y + 4, x : x + 4] == expected).all()
    assert (grid[0] == 255).all()  # white padding
    assert (grid[14:18, 8:12] == 255).all()  # empty sixth cell
    assert not list((tmp_path / "sub").glob(".*tmp"))
    assert make_grid(images).shape == (3, 2 * 6 + 2, 3 * 6 + 2)  # default: ceil(sqrt(5)) = 3 per row


def test_resize_shorter_side():
    assert resize_shorter_side(Image.new("RGB", (50, 40)), 16).size == (20, 16)
    assert resize_shorter_side(Image.new("RGB", (40, 50)), 16).size == (16, 20)
    assert resize_shorter_side(Image.new("RGB", (8, 100)), 16).size == (16, 200)
    assert resize_shorter_side(Image.new("RGB", (1000, 999)), 4).size == (4, 4)
