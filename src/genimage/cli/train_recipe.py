"""``genimage train --data FOLDER``: apply the measured CPU-sized recipe (:mod:`genimage.training.recipe`).

The recipe is used for an image folder with ``--recipe auto`` (the default) when none of the
options that define a different model were given (:data:`BLOCKERS`); trainer settings the user
gave (``--steps``, ``--lr``, ...) win over the recipe's. A resumed run reuses the recipe saved
in ``OUT/recipe.json`` instead of measuring again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from genimage.errors import GenimageError

BLOCKERS = ("objective", "backbone", "preset", "set_", "path", "autoencoder", "teacher", "init_from", "lora")
"""Options that choose another model: giving any of them turns the recipe off."""

RECIPE_FILE = "recipe.json"


def given_options(ctx: Any) -> set[str]:
    """Names of the parameters the user gave on the command line (none without a context)."""
    if ctx is None:
        return set()
    return {name for name in ctx.params
            if getattr(ctx.get_parameter_source(name), "name", "DEFAULT") not in ("DEFAULT", "DEFAULT_MAP")}


def wants_recipe(mode: str, data: str, family: str, given: set[str]) -> tuple[bool, str]:
    """Whether the folder recipe applies (``given``: the options given), and a line saying why
    not when another model was asked for."""
    if mode not in ("auto", "none"):
        raise GenimageError(f"--recipe must be auto or none, got {mode!r}")
    if mode == "none":
        return False, ""
    if data.startswith("builtin:") or family != "diffusion":
        return False, ""
    blockers = [b for b in BLOCKERS if b in given]
    if blockers:
        flags = ", ".join("--" + b.rstrip("_").replace("_", "-") for b in blockers)
        return False, f"recipe: not used ({flags} given); the general defaults fill the rest"
    return True, ""


def folder_recipe(dataset_opener: Callable[..., Any], *, image_size: int | None, max_minutes: float, bf16_given: bool | None,
                  out: Path, resume: bool, echo: Callable[[str], None]):
    """Open the folder with the recipe's augmentation, choose (or reload) the recipe and print it.

    Args:
        dataset_opener: ``(image_size=..., crop=..., flip=...) -> dataset``.
        image_size: ``--image-size`` or ``None``.
        max_minutes: ``--max-minutes`` (0: plan for the default 15 minutes).
        bf16_given: ``--bf16/--fp32`` if given, else ``None`` (then bf16 is measured).
        out: The run folder (``recipe.json`` is written there).
        resume: Reuse ``out/recipe.json`` when it exists.
        echo: Where the lines go.

    Returns:
        ``(recipe, dataset)``.
    """
    import torch

    from genimage.training.recipe import Recipe, choose_recipe
    from genimage.utils.precision import resolve_bf16

    saved = Path(out) / RECIPE_FILE
    probe, probe_kw = None, None
    if resume and saved.is_file():
        recipe = Recipe.from_json(json.loads(saved.read_text()))
        echo(f"recipe: the one this run started with ({saved})")
    else:
        probe_kw = dict(image_size=image_size or 32, crop="random", flip=True)
        probe = dataset_opener(**probe_kw)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        fast_bf16 = resolve_bf16(None, device) if bf16_given is None else False
        echo("recipe: measuring candidate backbones on this machine (genimage train --recipe none turns this off)")
        recipe = choose_recipe(n_images=len(probe), channels=probe.channels, image_size=image_size,
                               budget_minutes=max_minutes or None, bf16_supported=bool(fast_bf16),
                               has_captions=bool(getattr(probe, "has_captions", False)), device=device)
        if bf16_given is not None:
            recipe.settings["bf16"] = bf16_given
            recipe.reasons["bf16"] = "as given"
        echo("recipe: a CPU-sized default for an image folder (given options win):")
    for line in recipe.lines():
        echo(line)
    s = recipe.settings
    kw = dict(image_size=s["image_size"], crop=s["crop"], flip=s["flip"])
    dataset = probe if kw == probe_kw else dataset_opener(**kw)  # a folder is scanned once when it can be
    return recipe, dataset


def save_recipe(recipe, out: Path) -> None:
    """Write ``out/recipe.json`` (atomically)."""
    from genimage.utils.atomic import atomic_write_text

    Path(out).mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(out) / RECIPE_FILE, json.dumps(recipe.to_json(), indent=2), what="recipe")
