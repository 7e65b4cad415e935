"""The bundled 2-step shapes student: `genimage generate --model shapes-fast` works from the
package, in 2 network evaluations, and follows prompts far better than its teacher in 2 steps."""

import dataclasses

import torch
from typer.testing import CliRunner

from genimage.cli.main import app
from genimage.data.shapes_analyzer import score
from genimage.pipeline import Pipeline
from genimage.provenance.record import read_record

PROMPTS = ["a red circle", "a blue square above a yellow triangle", "a green triangle to the left of a red circle",
           "a yellow square below a blue circle"] * 6


def test_cli_generates_with_the_bundled_student(tmp_path):
    out = tmp_path / "a.png"
    res = CliRunner().invoke(app, ["generate", "--model", "shapes-fast", "a red circle above a blue square",
                                   "-o", str(out)])
    assert res.exit_code == 0, res.output
    record = read_record(out)
    assert (record.model, record.sampler, record.steps, record.guidance) == ("shapes-fast", "ddim", 2, 1.0)


def test_two_evaluations_and_prompt_following_against_the_teacher_in_two_steps():
    student = Pipeline.from_pretrained("shapes-fast")
    calls = []
    handle = student.loaded.denoiser.network.register_forward_hook(lambda *a: calls.append(1))
    seeds = list(range(len(PROMPTS)))
    images = student(seeds, prompts=PROMPTS)
    handle.remove()
    assert len(calls) == 2  # one batched call per step, no guidance
    teacher = Pipeline.from_pretrained("shapes")
    two = dataclasses.replace(teacher.options(), sampler="ddim", steps=2, guidance=1.0, guidance_interval=None)
    naive = teacher(seeds, prompts=PROMPTS, options=two)
    ok = sum(score(im, p).overall for im, p in zip(images, PROMPTS))
    naive_ok = sum(score(im, p).overall for im, p in zip(naive, PROMPTS))
    assert ok >= 21 and ok > naive_ok, (ok, naive_ok)  # 24 prompts
    assert torch.isfinite(images).all()
