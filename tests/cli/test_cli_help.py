"""The CLI answers --help without the heavy libraries, and every option states its default."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import typer
from typer.testing import CliRunner

from genimage.cli.main import app

SRC = str(Path(__file__).resolve().parents[2] / "src")
HEAVY = ("torch", "diffusers", "transformers", "accelerate", "sklearn", "scipy", "matplotlib", "numpy")


def _modules_after(code: str) -> set[str]:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
                         env=env, capture_output=True, text=True, check=True).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


def test_importing_the_cli_imports_no_heavy_library():
    loaded = _modules_after("import genimage.cli.main")
    assert not [m for m in HEAVY if m in loaded]


def test_command_help_imports_no_heavy_library():
    code = ("import sys\nfrom genimage.cli.main import app\n"
            "for args in (['--help'], ['train', '--help'], ['generate', '--help'], ['edit', '--help'], "
            "['eval', 'model', '--help'], ['data', 'inspect', '--help']):\n"
            "    try:\n        app(args)\n    except SystemExit:\n        pass\n")
    loaded = _modules_after(code)
    assert not [m for m in HEAVY if m in loaded]


def test_help_lists_the_commands():
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for name in ("train", "sample", "generate", "edit", "replay", "info", "compare", "serve", "detect", "data", "eval"):
        assert name in result.output


def _options():
    def walk(cmd, path):
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                yield from walk(sub, path + [name])
        else:
            yield path, cmd

    for path, cmd in walk(typer.main.get_command(app), []):
        for p in cmd.params:
            if p.param_type_name == "option" and p.name != "help" and not p.required:
                yield " ".join(path), p


def test_every_option_shows_its_default():
    missing = []
    for path, p in _options():
        shown = isinstance(p.show_default, str) or (p.default is not None and p.show_default is not False)
        if not shown and "default" not in (p.help or "").lower():
            missing.append(f"{path} {p.opts[0]}")
        # rich markup swallows a literal "[default: ...]" in a help text: use show_default instead
        assert "[default" not in (p.help or ""), f"{path} {p.opts[0]}"
    assert not missing


def test_train_help_shows_the_family_defaults():
    result = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "250"})
    assert result.exit_code == 0
    assert "1000, or the family's" in result.output
    assert "64, or the family's" in result.output


def test_data_cli_pixel_cap_matches_the_library():
    from genimage.cli.data import DEFAULT_MAX_PIXELS
    from genimage.data.image_io import DEFAULT_MAX_PIXELS as LIBRARY

    assert DEFAULT_MAX_PIXELS == LIBRARY
