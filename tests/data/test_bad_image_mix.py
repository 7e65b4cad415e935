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
