"""Good images mixed with bad ones (known kinds and a few the loader was not written for):
every good one used, every known-bad one reported with its reason, the others reported or
used, nothing crashes (500 + 500 with memory: scripts/reliability_bad_images.py)."""

from __future__ import annotations

from bad_images import KNOWN_BAD, UNKNOWN, make_mix

from genimage.data.folder import ImageFolderDataset


def test_a_mix_of_good_and_bad_images(tmp_path):
    good, bad = make_mix(tmp_path / "mix", 18, 18)
    ds = ImageFolderDataset(tmp_path / "mix", image_size=8)
    used = {r.path for r in ds.records}
    reported = {b.path: b.reason for b in ds.bad_files}
    assert good <= used and not good & set(reported)
    for path, kind in bad.items():
        if kind in KNOWN_BAD:
            assert reported.get(path) == KNOWN_BAD[kind], (path, kind)
        else:
            assert kind in UNKNOWN and (path in reported) != (path in used), (path, kind)
    items = [ds[i] for i in range(len(ds))]
    assert all(it["image"].shape == (3, 8, 8) and it["image"].abs().max() <= 1 for it in items)
    assert {bad[p] for p in used - good} <= {"animated-gif", "strip"}  # decodable: first frame / a thin strip


def test_a_thin_strip_is_cut_from_the_source_not_resized_whole(tmp_path):
    """A 1 x 60000 strip yields the crop that resizing it whole and cropping would (up to
    resampling alignment), without building a 32 x 1.9M pixel intermediate."""
    import numpy as np
    import torch
    from PIL import Image

    from genimage.data.image_io import pil_to_tensor, resize_shorter_side

    rng = np.random.default_rng(0)
    strip = Image.fromarray(np.repeat(rng.integers(0, 256, (1, 3000), dtype=np.uint8), 2, axis=0))  # 2 x 3000
    strip.convert("RGB").save(tmp_path / "strip.png")
    ds = ImageFolderDataset(tmp_path, image_size=8)
    item = ds[0]["image"]
    full = resize_shorter_side(strip.convert("RGB"), 8)
    x = (full.width - 8) // 2
    expected = pil_to_tensor(full.crop((x, 0, x + 8, 8)))
    assert item.shape == (3, 8, 8) and (item - expected).abs().max() < 0.15
    assert torch.isfinite(item).all()
