"""PNG generation records and bit-exact replay."""

import pytest
import torch
from PIL import Image

from genimage.errors import GenimageError
from genimage.pipeline import Pipeline, replay
from genimage.provenance.record import read_record, save_png


def test_record_round_trip_and_replay_matches(tiny_model_dir, tmp_path):
    pipe = Pipeline.from_pretrained(tiny_model_dir)
    opts = pipe.options(sampler="ddpm", steps=3, guidance=1.5)
    seeds, labels = [10, 11, 12], [2, 1, 0]
    images = pipe(seeds, labels=labels, options=opts)
    paths = pipe.save(images, pipe.records(seeds, labels, options=opts), [tmp_path / f"{i}.png" for i in range(3)])
    rec = read_record(paths[1])
    assert (rec.seed, rec.label, rec.sampler, rec.steps, rec.guidance) == (11, 1, "ddpm", 3, 1.5)
    assert rec.model_sha256 == pipe.loaded.weights_sha256 and rec.genimage_version
    result = replay(paths[1])  # regenerated alone, compared with the image made in a batch of 3
    assert result.match and result.weights_match and result.max_abs_diff == 0


def test_replay_detects_a_changed_image(tiny_model_dir, tmp_path):
    pipe = Pipeline.from_pretrained(tiny_model_dir)
    opts = pipe.options(steps=2)
    img = pipe([3], labels=[0], options=opts)[0]
    path = pipe.save([img], pipe.records([3], [0], options=opts), [tmp_path / "a.png"])[0]
    # edit one pixel but keep the record
    info = Image.open(path).text["genimage"]
    from PIL import PngImagePlugin

    im = Image.open(path).convert("L")
    im.putpixel((0, 0), (im.getpixel((0, 0)) + 7) % 256)
    meta = PngImagePlugin.PngInfo()
    meta.add_itxt("genimage", info)
    im.save(path, pnginfo=meta)
    result = replay(path)
    assert not result.match and result.differing_pixels == 1


def test_images_without_record_are_refused(tmp_path):
    p = tmp_path / "plain.png"
    Image.new("RGB", (4, 4)).save(p)
    with pytest.raises(GenimageError, match="no genimage generation record"):
        read_record(p)
    with pytest.raises(GenimageError, match="not found"):
        read_record(tmp_path / "missing.png")
    with pytest.raises(GenimageError, match=".png"):
        from genimage.provenance.record import GenerationRecord

        save_png(torch.zeros(3, 4, 4), tmp_path / "x.jpg", GenerationRecord("m", "0", "o", "p", "s", "u", 1, 1.0, 0, 4, 4))


def test_records_store_the_device_and_replay_needs_it_or_an_explicit_one(tiny_model_dir, tmp_path):
    import dataclasses

    from genimage.provenance.record import GenerationRecord

    pipe = Pipeline.from_pretrained(tiny_model_dir, device="cpu")
    assert pipe.device == torch.device("cpu") and pipe.to("auto") is pipe
    pipe.to("cpu")
    opts = pipe.options(steps=2)
    rec = pipe.records([4], [1], options=opts)[0]
    assert rec.device == "cpu" and "device" not in rec.to_json()  # the form of records before the field
    gpu_rec = dataclasses.replace(rec, device="cuda")
    assert GenerationRecord.from_json(gpu_rec.to_json()).device == "cuda"
    path = pipe.save(pipe([4], labels=[1], options=opts), [gpu_rec], [tmp_path / "gpu.png"])[0]
    if not torch.cuda.is_available():
        with pytest.raises(GenimageError, match="was made on cuda, which this machine lacks; pass --device cpu"):
            replay(path)
    result = replay(path, device="cpu")  # (made on the CPU here, whatever the record claims)
    assert result.match
