"""Atomic training checkpoints that resume bit for bit.

Layout of a run folder::

    checkpoints/
      step-00000100/           one complete checkpoint (also a loadable model folder)
        config.json            ModelConfig
        model.safetensors      EMA weights (what sampling uses)
        network.safetensors    raw training weights
        optimizer.safetensors  optimizer tensors; optimizer.json holds the rest
        trainer.safetensors    RNG states (torch, objective generator, numpy)
        trainer.json           step, data position, python RNG, train config
      latest                   text file naming the newest complete checkpoint

A checkpoint is written into a hidden temporary folder, every file is fsynced, the folder
is renamed into place and the parent fsynced; only then is ``latest`` replaced (itself
atomically) and old checkpoints pruned. A kill at any instant leaves the previous
checkpoint and a valid ``latest`` (or a newer complete one) on disk.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from genimage.errors import GenimageError
from genimage.utils.atomic import atomic_write_text, fsync_path
from genimage.utils.diskspace import disk_full_error, is_disk_full
from genimage.utils.weights import load_safetensors, save_safetensors, write_json_atomic

_STEP_DIR = re.compile(r"^step-(\d{8})$")


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}"


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoint folders under ``root``, oldest first."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and _STEP_DIR.match(p.name) and (p / "trainer.json").is_file()]
    return sorted(found, key=lambda p: p.name)


def find_latest_checkpoint(root: Path) -> Path | None:
    """The checkpoint named by ``root/latest``, or the newest complete one if that is missing."""
    root = Path(root)
    pointer = root / "latest"
    if pointer.is_file():
        cand = root / pointer.read_text().strip()
        if (cand / "trainer.json").is_file():
            return cand
    found = list_checkpoints(root)
    return found[-1] if found else None


def optimizer_to_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state dict into tensors (safetensors) and JSON-able metadata."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, Any] = {"param_groups": sd["param_groups"], "state": {}}
    for idx, state in sd["state"].items():
        meta["state"][str(idx)] = {}
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"{idx}.{key}"] = value
                meta["state"][str(idx)][key] = "tensor"
            else:
                meta["state"][str(idx)][key] = value
    return tensors, meta


def optimizer_from_tensors(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    state = {}
    for idx, entries in meta["state"].items():
        state[int(idx)] = {k: (tensors[f"{idx}.{k}"] if v == "tensor" else v) for k, v in entries.items()}
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_checkpoint(root: Path, step: int, files: dict[str, dict[str, torch.Tensor]], json_files: dict[str, Any],
                    keep: int = 2) -> Path:
    """Write one checkpoint atomically.

    Args:
        root: The ``checkpoints`` folder.
        step: Training step (names the folder).
        files: ``{"model.safetensors": tensors, ...}``.
        json_files: ``{"trainer.json": obj, "config.json": obj, ...}``; ``trainer.json`` is
            written last, so its presence marks a complete checkpoint.
        keep: How many checkpoints to keep (older ones are deleted after ``latest`` moves).
    """
    root = Path(root)
    final = root / checkpoint_name(step)
    tmp = root / f".tmp-{checkpoint_name(step)}-{os.getpid()}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        for name, tensors in files.items():
            save_safetensors(tensors, tmp / name)
        ordered = sorted(json_files, key=lambda n: n == "trainer.json")
        for name in ordered:
            write_json_atomic(json_files[name], tmp / name)
        fsync_path(tmp)
    except BaseException as exc:  # a full disk, a kill (KeyboardInterrupt): leave nothing half-written behind
        shutil.rmtree(tmp, ignore_errors=True)
        if is_disk_full(exc):
            previous = find_latest_checkpoint(root)
            kept = (f"the previous checkpoint {previous.name} is intact (--resume continues from it)" if previous
                    else "no earlier checkpoint exists")
            needed = sum(t.numel() * t.element_size() for ts in files.values() for t in ts.values())
            raise disk_full_error(final, "checkpoint", needed=needed, kept=kept) from None
        raise
    if final.exists():  # re-saving the same step (e.g. final save after a periodic one)
        shutil.rmtree(final)
    os.replace(tmp, final)
    fsync_path(root)
    atomic_write_text(root / "latest", final.name + "\n", what="checkpoint pointer")
    for old in list_checkpoints(root)[:-keep] if keep > 0 else []:
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    clean_stale_temporaries(root)
    return final


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # our own leftovers (a failed save) are stale by definition
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but is not ours
        return True
    return True


_TEMP_NAME = re.compile(r"^\.(?:tmp-step-\d{8}-(\d+)|.+\.(\d+)\.[0-9a-f]{8}\.tmp)$")


def clean_stale_temporaries(root: Path) -> list[Path]:
    """Remove the temporary checkpoint folders (``.tmp-step-*``) and temporary files
    (``.NAME.PID.HEX.tmp``) that a killed or failed save left in ``root``, unless the
    process that wrote them is still alive. Returns what was removed."""
    root = Path(root)
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    for p in root.iterdir():
        m = _TEMP_NAME.match(p.name)
        if not m or _pid_alive(int(m.group(1) or m.group(2))):
            continue
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def load_checkpoint(folder: Path) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
    """Read every ``*.safetensors`` and ``*.json`` of a checkpoint folder."""
    folder = Path(folder)
    if not (folder / "trainer.json").is_file():
        raise GenimageError(f"{folder} is not a complete genimage checkpoint (trainer.json missing)")
    tensors = {p.name: load_safetensors(p) for p in sorted(folder.glob("*.safetensors"))}
    meta = {p.name: _read_json(p) for p in sorted(folder.glob("*.json"))}
    return tensors, meta


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GenimageError(f"{path} is not valid JSON ({str(exc).splitlines()[0][:120]}): the checkpoint is damaged; "
                            f"resume from another one or start again") from None


def rng_state_tensors(objective_generator: torch.Generator) -> dict[str, torch.Tensor]:
    import numpy as np

    state = {
        "torch": torch.get_rng_state(),
        "objective": objective_generator.get_state(),
        "numpy": torch.from_numpy(np.random.get_state()[1].astype("int64")),
    }
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            state[f"cuda{i}"] = s
    return state


def restore_rng_state(tensors: dict[str, torch.Tensor], numpy_meta: dict[str, Any],
                      objective_generator: torch.Generator) -> None:
    import numpy as np

    torch.set_rng_state(tensors["torch"])
    objective_generator.set_state(tensors["objective"])
    np.random.set_state((numpy_meta["kind"], tensors["numpy"].numpy().astype("uint32"), numpy_meta["pos"],
                         numpy_meta["has_gauss"], numpy_meta["cached_gaussian"]))
    if torch.cuda.is_available():
        states = [tensors[k] for k in sorted(tensors) if k.startswith("cuda")]
        if states:
            torch.cuda.set_rng_state_all(states)


def numpy_rng_meta() -> dict[str, Any]:
    import numpy as np

    kind, _, pos, has_gauss, cached = np.random.get_state()
    return {"kind": kind, "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}
