"""The ``genimage`` command line. Each command group lives in its own module."""

from __future__ import annotations

import typer

from genimage import __version__
from genimage.cli import compare, control, data, detect, edit, evaluate, keys, replay, sample, serve, train, verify, watermark
from genimage.cli import export as export_cli

app = typer.Typer(help=f"genimage {__version__}: train generative image models and generate images.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
app.command("train")(train.train)
app.command("sample")(sample.sample)
app.command("generate")(sample.generate)
app.command("edit")(edit.edit)
app.command("control-map")(control.control_map)
app.command("replay")(replay.replay)
app.command("info")(replay.info)
app.command("compare")(compare.compare)
app.command("serve")(serve.serve)
app.command("detect")(detect.detect)
app.command("export")(export_cli.export)
app.command("verify")(verify.verify)
app.command("sign")(verify.sign)
app.add_typer(keys.app, name="keys")
app.add_typer(watermark.app, name="watermark")
app.add_typer(data.app, name="data")
app.add_typer(evaluate.app, name="eval")


def main() -> None:
    import os

    # genimage never downloads at run time; make Hugging Face libraries agree.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    app()


if __name__ == "__main__":
    main()
