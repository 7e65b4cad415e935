"""Shared CLI helpers: user errors become one line and exit code 2."""

from __future__ import annotations

import functools
import json
from typing import Any, Callable

import typer

from genimage.errors import GenimageError


def handle_errors(fn: Callable) -> Callable:
    """Print ``error: <message>`` for :class:`GenimageError` and exit 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except GenimageError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None

    return wrapper


def parse_key_values(pairs: list[str] | None, flag: str) -> dict[str, Any]:
    """``["k=v", ...]`` -> dict; values parsed as JSON when possible."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise GenimageError(f"{flag} expects KEY=VALUE, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def parse_named_models(items: list[str] | None, flag: str) -> list[tuple[str, str]]:
    """``["name=folder", ...]`` -> ``[(name, folder), ...]`` (order kept)."""
    out = []
    for item in items or []:
        name, sep, folder = item.partition("=")
        if not sep or not name or not folder:
            raise GenimageError(f"{flag} expects NAME=FOLDER, got {item!r}")
        out.append((name, folder))
    return out


def echo_json(title: str, obj: Any) -> None:
    typer.echo(f"{title}: {json.dumps(obj, sort_keys=True)}")
