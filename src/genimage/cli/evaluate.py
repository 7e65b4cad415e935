"""``genimage eval``: measure models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from genimage.cli.common import handle_errors
from genimage.cli.sample import GuidanceOpt, PrecisionOpt, SamplerOpt, ScheduleOpt, StepsOpt
from genimage.errors import GenimageError

app = typer.Typer(help="Evaluate models.", no_args_is_help=True, add_completion=False)


@app.callback()
def _eval() -> None:
    """Evaluate models."""


@app.command("prompts")
@handle_errors
def prompts(
    model: Annotated[str, typer.Option(help="Bundled model name or model/run folder")] = "shapes",
    n: Annotated[int, typer.Option("-n", help="Prompts per split (seen and held-out)")] = 500,
    seed: Annotated[int, typer.Option(help="Seed of prompts and images")] = 0,
    sampler: SamplerOpt = None, schedule: ScheduleOpt = None, steps: StepsOpt = None,
    guidance: GuidanceOpt = None, bf16: PrecisionOpt = None,
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Write the report as JSON here")] = None,
) -> None:
    """Prompt accuracy on the shapes benchmark: count, colour-shape binding, position, overall;
    separately for seen and held-out compositions."""
    from tqdm import tqdm

    from genimage.metrics.prompt_accuracy import evaluate_prompts
    from genimage.pipeline import Pipeline

    if n < 1:
        raise GenimageError(f"-n must be at least 1, got {n}")
    pipe = Pipeline.from_pretrained(model)
    if not pipe.conditioner.uses_text:
        raise GenimageError("eval prompts needs a text-conditional model trained on builtin:shapes")
    opts = pipe.options(sampler=sampler, schedule=schedule, steps=steps, guidance=guidance, bf16=bf16)
    bar = tqdm(total=2 * n, desc="eval", unit="img", disable=None)
    last = {"v": 0}

    def tick(done: int) -> None:
        bar.update(done - last["v"])
        last["v"] = done

    report = evaluate_prompts(pipe, n=n, seed=seed, options=opts, progress=tick)
    bar.close()
    report["model"] = pipe.model_ref
    report["model_sha256"] = pipe.loaded.weights_sha256
    typer.echo("| split | n | overall | count | binding | position (2-object) |")
    typer.echo("|---|---|---|---|---|---|")
    for split in ("seen", "held_out"):
        r = report[split]
        typer.echo(f"| {split} | {r['n']} | {r['overall']:.3f} | {r['count']:.3f} | {r['binding']:.3f} | "
                   f"{r['position']:.3f} (n={r['n_relations']}) |")
    typer.echo(f"images/s (generation only): {report['images_per_s']:.1f}")
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(report, indent=2))
        typer.echo(f"report: {output}")
