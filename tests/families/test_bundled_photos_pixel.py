"""The bundled pixel-space photo model marks the initial noise of every generation by default
(Gaussian Shading over the model's keyed sign patterns, issue 18 item 1): the mark is recorded
and replayed, `genimage detect --invert photos-pixel` finds it in its images and not in the
same seeds generated with --no-noise-mark, also after JPEG quality 90, a 15-degree rotation and
a centred 30% crop (its search over rotations and crops), which --no-search scores as if unmarked."""

import io
import json

from PIL import Image
from typer.testing import CliRunner

from genimage.cli.main import app
from genimage.pipeline import Pipeline
from genimage.provenance import noise_mark as N
from genimage.provenance.record import read_record


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_photos_pixel_marks_its_noise_by_default_and_detect_finds_it(tmp_path):
    pipe = Pipeline.from_pretrained("photos-pixel")
    patterns = N.default_patterns(pipe.config)
    assert patterns > 1 and pipe.noise_mark["patterns"] == patterns  # on by default, spread over keyed patterns
    assert run("sample", "--model", "photos-pixel", "-n", "3", "--out-dir", tmp_path / "on").exit_code == 0
    res = run("sample", "--model", "photos-pixel", "-n", "3", "--no-noise-mark", "--out-dir", tmp_path / "off")
    assert res.exit_code == 0, res.output
    rec = read_record(tmp_path / "on" / "0002.png")
    assert rec.noise_mark["patterns"] == patterns and rec.noise_mark["method"] == N.METHOD
    assert read_record(tmp_path / "off" / "0002.png").noise_mark is None
    res = run("replay", tmp_path / "on" / "0002.png")
    assert res.exit_code == 0 and "bit-for-bit identical" in res.output, res.output
    jpeg = tmp_path / "on0.jpg"
    buf = io.BytesIO()
    Image.open(tmp_path / "on" / "0000.png").convert("RGB").save(buf, format="JPEG", quality=90)
    jpeg.write_bytes(buf.getvalue())
    im = Image.open(tmp_path / "on" / "0001.png").convert("RGB")
    im.rotate(15, Image.Resampling.BICUBIC).save(tmp_path / "rotated.png")
    im.crop((3, 3, 29, 29)).resize((32, 32), Image.Resampling.BICUBIC).save(tmp_path / "cropped.png")  # 34% cut
    files = [tmp_path / "on" / f"{i:04d}.png" for i in range(3)] + [jpeg, tmp_path / "rotated.png", tmp_path / "cropped.png"] + \
            [tmp_path / "off" / f"{i:04d}.png" for i in range(3)]
    res = run("detect", *files, "--invert", "photos-pixel", "--calibrate", "40", "--json")
    assert res.exit_code == 0, res.output
    marks = [json.loads(line)["marks"]["noise"] for line in res.output.splitlines()]
    assert [m["found"] for m in marks] == [True] * 6 + [False] * 3, [(m["z"], m["threshold"]) for m in marks]
    assert 12 <= marks[4]["hypothesis"]["rotation"] <= 18 and 1.12 <= marks[5]["hypothesis"]["zoom"] <= 1.28, marks[4:6]
    res = run("detect", *files[4:6], "--invert", "photos-pixel", "--calibrate", "40", "--no-search", "--json")
    assert res.exit_code == 0, res.output
    plain = [json.loads(line)["marks"]["noise"]["z"] for line in res.output.splitlines()]
    assert all(p < 6 and p < 0.3 * m["z"] for p, m in zip(plain, marks[4:6])), (plain, marks[4:6])  # as unmarked ones score
    res = run("detect", files[4], "--invert", "photos-pixel", "--calibrate", "40")
    assert "noise mark: found" in res.output and "best read as rotated" in res.output, res.output
