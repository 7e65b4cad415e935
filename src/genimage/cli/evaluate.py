"""``genimage eval``: measure models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from genimage.cli.common import handle_errors, parse_named_models
from genimage.cli.sample import GuidanceOpt, IntervalOpt, PrecisionOpt, SamplerOpt, ScheduleOpt, StepsOpt, parse_interval
from genimage.errors import GenimageError

from typer.core import TyperGroup


class _EvalGroup(TyperGroup):
    """``genimage eval MODEL ...`` is ``genimage eval model MODEL ...``; subcommands keep their names."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["model", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(help="Evaluate models: `genimage eval MODEL --data DATA` (quality report) or "
                       "`genimage eval prompts` (shapes prompt accuracy).", no_args_is_help=True,
                  add_completion=False, cls=_EvalGroup)


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
    guidance: GuidanceOpt = None, guidance_interval: IntervalOpt = None, bf16: PrecisionOpt = None,
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Write the report as JSON here", show_default="none")] = None,
    three_object_share: Annotated[float, typer.Option(help="Share of three-object prompts '<A> <rel1> <B> <rel2> <C>' (0: the one/two-object prompts; 1: three-object prompts only)")] = 0.0,
) -> None:
    """Prompt accuracy on the shapes benchmark: count, colour-shape binding, position, overall;
    separately for seen and held-out compositions, and per number of objects (each relation
    of a three-object prompt on its own)."""
    from tqdm import tqdm

    from genimage.metrics.prompt_accuracy import evaluate_prompts
    from genimage.pipeline import Pipeline

    if n < 1:
        raise GenimageError(f"-n must be at least 1, got {n}")
    pipe = Pipeline.from_pretrained(model)
    if not pipe.conditioner.uses_text:
        raise GenimageError("eval prompts needs a text-conditional model trained on builtin:shapes")
    opts = pipe.options(sampler=sampler, schedule=schedule, steps=steps, guidance=guidance, bf16=bf16,
                        guidance_interval=parse_interval(guidance_interval))
    bar = tqdm(total=2 * n, desc="eval", unit="img", disable=None)
    last = {"v": 0}

    def tick(done: int) -> None:
        bar.update(done - last["v"])
        last["v"] = done

    report = evaluate_prompts(pipe, n=n, seed=seed, options=opts, progress=tick, three_object_share=three_object_share)
    bar.close()
    report["model"] = pipe.model_ref
    report["model_sha256"] = pipe.loaded.weights_sha256
    scope = "2-object" if three_object_share == 0 else "prompts with relations"
    typer.echo(f"| split | n | overall | count | binding | position ({scope}) |")
    typer.echo("|---|---|---|---|---|---|")
    for split in ("seen", "held_out"):
        r = report[split]
        typer.echo(f"| {split} | {r['n']} | {r['overall']:.3f} | {r['count']:.3f} | {r['binding']:.3f} | "
                   f"{r['position']:.3f} (n={r['n_relations']}) |")
    _echo_by_objects(report)
    typer.echo(f"images/s (generation only): {report['images_per_s']:.1f}")
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(report, indent=2))
        typer.echo(f"report: {output}")


def _echo_by_objects(report: dict) -> None:
    """The per-object-count table of an eval-prompts report."""
    def cell(v):
        return "-" if v is None else f"{v:.3f}"

    typer.echo("\n| split | objects | n | overall | count | binding | relation 1 | relation 2 | position (all relations) |")
    typer.echo("|---|---|---|---|---|---|---|---|---|")
    for split in ("seen", "held_out"):
        for k, r in report[split]["by_objects"].items():
            typer.echo(f"| {split} | {k} | {r['n']} | {r['overall']:.3f} | {r['count']:.3f} | {r['binding']:.3f} | "
                       f"{cell(r['relation1'])} | {cell(r['relation2'])} | {cell(r['position'])} |")


@app.command("model")
@handle_errors
def model_report(
    model: Annotated[str, typer.Argument(help="Bundled model name or model/run folder (any family)")],
    data: Annotated[str, typer.Option(help="Reference/training data: builtin:digits | builtin:shapes | a folder")],
    out: Annotated[Path, typer.Option(help="Folder for report.json, report.html and figures")] = Path("eval"),
    n: Annotated[int, typer.Option("-n", help="Samples to draw")] = 1000,
    seed: Annotated[int, typer.Option(help="Image i uses seed SEED+i")] = 0,
    split: Annotated[str, typer.Option(help="Split of a built-in dataset used as reference")] = "train",
    features: Annotated[Optional[str], typer.Option(help="digits | shapes | generic | feature-net folder | inception:PATH | inception-pytorch-fid:PATH (default: the dataset's domain net; generic for folders and builtin:photos)")] = None,
    sweep: Annotated[bool, typer.Option(help="Also sweep samplers x steps (quality vs NFE plot)")] = False,
    sweep_with: Annotated[Optional[list[str]], typer.Option("--sweep-with", help="NAME=FOLDER of a few-step model (consistency, reflow) added to the sweep (repeatable)", show_default="none")] = None,
    prompts: Annotated[int, typer.Option(help="Also measure shapes prompt accuracy on this many prompts per split")] = 0,
    nproc: Annotated[int, typer.Option(help="Draw the samples in N local processes through torchrun (rank r: images r, r+N, ...; the same images as one process); rank 0 measures. Not with --sweep or --prompts")] = 1,
) -> None:
    """Quality report of a model: Fréchet distance, KID, precision/recall/density/coverage,
    bits/dim (families with a likelihood), memorization (nearest training images, copy rate),
    sample grid; optional sampler sweep and prompt accuracy. Writes OUT/report.json and OUT/report.html."""
    from genimage.cli.launch import maybe_relaunch

    extra = parse_named_models(sweep_with, "--sweep-with")
    if nproc > 1 and (sweep or extra or prompts):
        raise GenimageError("--sweep, --sweep-with and --prompts run in one process; drop them or --nproc")
    status = maybe_relaunch("eval", nproc)
    if status is not None:
        raise typer.Exit(status)
    from genimage.evaluation.report import evaluate_model
    from genimage.utils.distributed import finish_process_group, init_process_group

    share = init_process_group()
    report = evaluate_model(model, data, out, n=n, seed=seed, split=split, features=features,
                            sweep=sweep or bool(extra), sweep_with=extra, prompts=prompts,
                            log=(lambda m: typer.echo(m, err=True)) if share[0] == 0 else (lambda m: None), share=share)
    finish_process_group()
    if report is None:  # not rank 0
        return
    q = report["quality"]
    typer.echo(f"features: {report['features']} ({report['features_note']})")
    for w in report.get("domain", {}).get("warnings", []):
        typer.echo(f"warning: {w}")
    typer.echo(f"FD {q['fd']:.4f}  KID {q['kid']:.5f}±{q['kid_std']:.5f}  precision {q['precision']:.3f}  "
               f"recall {q['recall']:.3f}  density {q['density']:.3f}  coverage {q['coverage']:.3f}")
    if "bits_per_dim" in report:
        typer.echo(f"bits/dim {report['bits_per_dim']['value']:.3f}" + (" (ELBO bound)" if report["bits_per_dim"]["is_bound"] else ""))
    if "recognizability" in q:
        r = q["recognizability"]
        typer.echo(f"digits recognized {r['confident_fraction']:.3f}, classes present {r['classes_present']}")
    mem = q["memorization"]
    typer.echo("copy rate " + ", ".join(f"{s} {mem[s]['copy_rate']:.3f}" for s in ("pixel", "feature") if s in mem))
    typer.echo(f"{report['sampling']['images_per_s']} images/s, {report['sampling']['nfe_per_image']} network evaluations per image")
    typer.echo(f"report: {out / 'report.html'}")
