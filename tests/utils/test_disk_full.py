"""A full disk (ENOSPC) during a checkpoint, a manifest, a latent cache entry and a PNG write:
the previous file stays intact, no temporary is left, the error is one line naming the path
and the space, and the run resumes once space is free."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest
import torch
from tiny import tiny_dataset, tiny_model_config, tiny_train_config, train_tiny
from typer.testing import CliRunner

import genimage.utils.weights as weights_mod
from genimage.cli.main import app
from genimage.training import checkpoint as ckpt
from genimage.training.loop import Trainer
from genimage.utils.diskspace import DiskFullError, disk_full_error
from genimage.utils.weights import sha256_file

runner = CliRunner()


def _os_error(filename):
    return OSError(errno.ENOSPC, "No space left on device", filename)


def _rust_error(filename):  # what safetensors' serializer really raises on a full tmpfs
    from safetensors import SafetensorError

    return SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")


def _full_disk_save_file(real, error=_os_error):
    """safetensors' save_file that writes half the file, then finds the disk full."""
    def save_file(tensors, filename, metadata=None):
        real(tensors, filename, metadata=metadata)
        with open(filename, "r+b") as f:
            f.truncate(os.path.getsize(filename) // 2)
        raise error(filename)
    return save_file


def _temporaries(folder):
    return [p for p in folder.rglob(".*") if p.name.endswith(".tmp") or p.name.startswith(".tmp-")]


@pytest.mark.parametrize("error", [_os_error, _rust_error])
def test_full_disk_during_a_checkpoint_keeps_the_previous_one_and_resumes(tmp_path, monkeypatch, error):
    run = tmp_path / "b"
    train_tiny(run, steps=3)
    before = {p.name: sha256_file(p) for p in (run / "checkpoints" / "step-00000003").iterdir()}
    monkeypatch.setattr(weights_mod, "save_file", _full_disk_save_file(weights_mod.save_file, error))
    trainer = Trainer(tiny_model_config(), tiny_train_config(6), tiny_dataset(), run, resume=True)
    with pytest.raises(DiskFullError) as info:
        trainer.train()
    msg = str(info.value)
    assert "\n" not in msg and "step-00000006" in msg and "free there" in msg and "needs about" in msg
    assert "step-00000003 is intact" in msg and info.value.needed > 0
    monkeypatch.undo()
    assert ckpt.find_latest_checkpoint(run / "checkpoints").name == "step-00000003"
    assert {p.name: sha256_file(p) for p in (run / "checkpoints" / "step-00000003").iterdir()} == before
    assert not _temporaries(run)
    resumed = Trainer(tiny_model_config(), tiny_train_config(6), tiny_dataset(), run, resume=True)
    resumed.train()
    straight, _ = train_tiny(tmp_path / "a", steps=6)
    a, b = straight.model.training_state(), resumed.model.training_state()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_full_disk_is_one_error_line_from_the_cli(tmp_path, monkeypatch):
    monkeypatch.setattr(weights_mod, "save_file", _full_disk_save_file(weights_mod.save_file))
    out = tmp_path / "run"
    res = runner.invoke(app, ["train", "--data", "builtin:digits", "--preset", "tiny", "--steps", "2", "--batch-size",
                              "4", "--checkpoint-every", "1", "--no-progress", "--out", str(out)])
    assert res.exit_code == 2, res.output
    errors = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "no space left" in errors[0] and "Traceback" not in res.output
    assert not _temporaries(out)


def test_stale_temporaries_of_a_dead_process_are_cleaned_at_the_next_start(tmp_path):
    train_tiny(tmp_path, steps=3)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    root = tmp_path / "checkpoints"
    (root / f".tmp-step-00000006-{dead}").mkdir()
    (root / f".tmp-step-00000006-{dead}" / "model.safetensors").write_bytes(b"x" * 100)
    (root / f".latest.{dead}.0123abcd.tmp").write_text("step-00000006\n")
    (tmp_path / f".run.json.{dead}.89abcdef.tmp").write_text("{")
    live = root / f".tmp-step-00000009-{os.getppid()}"  # a living writer's folder is left alone
    live.mkdir()
    Trainer(tiny_model_config(), tiny_train_config(6), tiny_dataset(), tmp_path, resume=True)
    assert _temporaries(tmp_path) == [live]


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_full_disk_during_a_manifest_write_keeps_the_old_manifest(tmp_path, monkeypatch):
    from genimage.data.manifest import write_manifest

    path = tmp_path / "dataset_manifest.json"
    write_manifest(tiny_dataset(), path)
    old = path.read_bytes()
    monkeypatch.setattr(os, "fsync", _enospc)
    with pytest.raises(DiskFullError, match=f"no space left .*{path.name}"):
        write_manifest(tiny_dataset(n=24), path)
    monkeypatch.undo()
    assert path.read_bytes() == old and not _temporaries(tmp_path)


def test_full_disk_during_a_png_write_keeps_the_old_png(tiny_model_dir, tmp_path, monkeypatch):
    from genimage.pipeline import Pipeline

    pipe = Pipeline.from_pretrained(tiny_model_dir)
    images = pipe([1], options=pipe.options(steps=2))
    records = pipe.records([1], options=pipe.options(steps=2))
    path = tmp_path / "0000.png"
    pipe.save(images, records, [path])
    old = path.read_bytes()
    real = type(path).write_bytes

    def write_bytes(self, data):
        if self.name.endswith(".tmp"):
            real(self, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real(self, data)

    monkeypatch.setattr(type(path), "write_bytes", write_bytes)
    with pytest.raises(DiskFullError, match="0000.png"):
        pipe.save(images, records, [path])
    monkeypatch.undo()
    assert path.read_bytes() == old and not _temporaries(tmp_path)


def test_full_disk_during_a_latent_cache_write_keeps_the_old_entry(tmp_path, monkeypatch):
    from genimage.latent.cache import _write_entry

    folder = tmp_path / "entry"
    _write_entry(folder, "k", torch.zeros(4, 2, 2, 2), None, None, {"key": "k", "num_items": 4})
    old = {p.name: p.read_bytes() for p in folder.iterdir()}
    monkeypatch.setattr(weights_mod, "save_file", _full_disk_save_file(weights_mod.save_file))
    with pytest.raises(DiskFullError, match="latent cache entry .*entry"):
        _write_entry(folder, "k", torch.ones(4, 2, 2, 2), None, None, {"key": "k", "num_items": 4})
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == old and not _temporaries(tmp_path)


def test_a_full_training_log_is_one_error_line(tmp_path, monkeypatch):
    import builtins

    real_open = builtins.open

    def full_open(file, mode="r", *a, **k):
        if str(file).endswith("metrics.jsonl") and "a" in mode:
            raise OSError(errno.ENOSPC, "No space left on device", str(file))
        return real_open(file, mode, *a, **k)

    monkeypatch.setattr(builtins, "open", full_open)
    with pytest.raises(DiskFullError, match="training log .*metrics.jsonl"):
        train_tiny(tmp_path, steps=3)


def test_the_message_names_free_and_needed_space(tmp_path):
    err = disk_full_error(tmp_path / "x" / "y.bin", "weights file", needed=3 * 2**20)
    assert "weights file" in str(err) and "3.0 MiB" in str(err) and err.free is not None and err.free > 0
