"""The ``genimage`` command line. Each command group lives in its own module."""

from __future__ import annotations

import typer

from genimage import __version__
from genimage.cli import data, replay, sample, train

app = typer.Typer(help=f"genimage {__version__}: train generative image models and generate images.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
app.command("train")(train.train)
app.command("sample")(sample.sample)
app.command("generate")(sample.generate)
app.command("replay")(replay.replay)
app.command("info")(replay.info)
app.add_typer(data.app, name="data")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
