"""``genimage compare``: one table across model families."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from genimage.cli.common import handle_errors, parse_named_models
from genimage.errors import GenimageError


@handle_errors
def compare(
    data: Annotated[str, typer.Option(help="Data every model is compared on (builtin:digits, builtin:shapes, a folder)")],
    model: Annotated[Optional[list[str]], typer.Option("--model", help="NAME=FOLDER of a trained model (repeatable)", show_default="none")] = None,
    train: Annotated[Optional[list[str]], typer.Option("--train", help="Family to train first with its tiny preset (repeatable): gan | vae | normalizing-flow | diffusion | consistency", show_default="none")] = None,
    minutes: Annotated[float, typer.Option(help="Training budget per trained family, minutes")] = 10.0,
    out: Annotated[Path, typer.Option(help="Folder for compare.md/.json/.png, sample grids and trained runs")] = Path("compare"),
    n: Annotated[int, typer.Option("-n", help="Samples per model")] = 1000,
    seed: Annotated[int, typer.Option(help="Image i uses seed SEED+i")] = 0,
    features: Annotated[Optional[str], typer.Option(help="digits | shapes | folder | inception:PATH | inception-pytorch-fid:PATH", show_default="the dataset's")] = None,
) -> None:
    """Train (or load) one model per family on the same data and print one table: Fréchet
    distance, KID, precision/recall, bits/dim where defined, network evaluations per image, images/s."""
    from genimage.evaluation.compare import compare as run_compare
    from genimage.evaluation.compare import markdown_table
    from genimage.families import FAMILIES, load_all_families

    if n < 2:
        raise GenimageError(f"-n must be at least 2, got {n}")
    load_all_families()
    models = parse_named_models(model, "--model")
    for family in train or []:
        FAMILIES.get(family)
        run = out / "runs" / family
        typer.echo(f"training {family} for {minutes:g} min -> {run}", err=True)
        models.append((family, str(train_family(family, data, run, minutes, seed=seed))))
    rows = run_compare(models, data, out, n=n, seed=seed, features=features, log=lambda m: typer.echo(m, err=True))
    from genimage.evaluation.report import default_features, load_features

    typer.echo(markdown_table(rows, load_features(features or default_features(data)).source))
    typer.echo(f"wrote {out / 'compare.md'}, {out / 'compare.json'}, {out / 'compare.png'}")


def train_family(family: str, data: str, out: Path, minutes: float, preset: str = "tiny", seed: int = 0) -> Path:
    """Train ``family``'s preset on ``data`` for ``minutes`` into ``out`` (resuming if it
    exists), exactly as ``genimage train`` with these options would."""
    from typer.testing import CliRunner

    from genimage.cli.train import train as train_command

    app = typer.Typer()  # the train command alone (importing the full app from here would be an import circle)
    app.command()(train_command)
    args = ["--family", family, "--data", data, "--out", str(out), "--steps", "10000000",
            "--max-minutes", str(minutes), "--seed", str(seed), "--no-progress", "--checkpoint-every", "1000"]
    if family == "diffusion":
        args += ["--preset", "small", "--set", "hidden=96", "--set", "depth=4", "--set", "patch_size=2"]
    elif family == "consistency":  # training without a teacher: the measured CT recipe
        args += ["--preset", "ct-tiny"]
    else:
        args += ["--preset", preset]
    if (out / "checkpoints").is_dir():
        args.append("--resume")
    res = CliRunner().invoke(app, args)
    if res.exit_code != 0:
        raise GenimageError(f"training {family} failed: {res.output.strip().splitlines()[-1] if res.output else res.exit_code}")
    return out
