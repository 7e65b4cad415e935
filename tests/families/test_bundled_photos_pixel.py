"""The bundled pixel-space photo model marks the initial noise of every generation by default
(Gaussian Shading over the model's keyed sign patterns, issue 18 item 1): the mark is recorded
and replayed, `genimage detect --invert photos-pixel` finds it in its images and not in the
same seeds generated with --no-noise-mark, also after JPEG quality 90."""

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
    files = [tmp_path / "on" / f"{i:04d}.png" for i in range(3)] + [jpeg] + \
            [tmp_path / "off" / f"{i:04d}.png" for i in range(3)]
    res = run("detect", *files, "--invert", "photos-pixel", "--calibrate", "40", "--json")
    assert res.exit_code == 0, res.output
    marks = [json.loads(line)["marks"]["noise"] for line in res.output.splitlines()]
    assert [m["found"] for m in marks] == [True] * 4 + [False] * 3, [(m["z"], m["threshold"]) for m in marks]
