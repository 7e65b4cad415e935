"""Data-parallel training (torchrun, 2 CPU processes, gloo) and gradient accumulation equal one
process with the global batch (genimage.training.distributed).

Tolerance: the two runs add the same numbers in another order (a mean over 16 samples against
the mean of two means over 8, and the ranks' gradient sum), so fp32 losses and weights agree
to about 1e-7 relative here; the tests allow 1e-5 (relative on losses, absolute on weights of
magnitude < 1) over 4-6 steps.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from distributed_worker import family_setup
from tiny import tiny_dataset, tiny_model_config, tiny_train_config

from genimage.errors import GenimageError
from genimage.training import checkpoint as ckpt
from genimage.training.distributed import ShardedDraws
from genimage.utils.distributed import strip_nproc, torchrun_command
from genimage.training.loop import Trainer
from genimage.utils.weights import load_safetensors

WORKER = Path(__file__).resolve().parents[1] / "distributed_worker.py"
RTOL = ATOL = 1e-5


def _torchrun(task: str, out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(WORKER), task,
           str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-4000:]
    return json.loads((out / f"{task}.json").read_text())


@pytest.fixture(scope="module")
def core(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist_core")
    return out, _torchrun("core", out)


@pytest.fixture(scope="module")
def families(tmp_path_factory):
    return _torchrun("families", tmp_path_factory.mktemp("dist_families"))


def _final_network(run: Path) -> dict[str, torch.Tensor]:
    return load_safetensors(ckpt.find_latest_checkpoint(run / "checkpoints") / "network.safetensors")


def _close(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(math.isclose(x, y, rel_tol=RTOL) for x, y in zip(a, b))


def test_two_processes_train_like_one_process_with_the_global_batch(core, tmp_path):
    out, results = core
    one = Trainer(tiny_model_config(), tiny_train_config(6, batch_size=16), tiny_dataset(), tmp_path / "one")
    history = one.train()
    assert results["full"]["ranks_agree"]
    assert _close(results["full"]["history"], history), (results["full"]["history"], history)
    two, ref = _final_network(out / "full"), one.model.training_state()
    assert two.keys() == ref.keys()
    assert max(float((two[k] - ref[k]).abs().max()) for k in ref) < ATOL
    # 2 x 4 images with grad_accum 2 in 2 processes: the same 16 images a step
    assert results["accum"]["ranks_agree"] and _close(results["accum"]["history"], history[:4])


def test_a_stopped_and_resumed_distributed_run_ends_bit_identical(core):
    out, results = core
    assert results["resumed"]["history"] == results["full"]["history"]
    a = ckpt.find_latest_checkpoint(out / "full" / "checkpoints")
    b = ckpt.find_latest_checkpoint(out / "resumed" / "checkpoints")
    for name in ("network.safetensors", "model.safetensors", "optimizer.safetensors", "trainer.safetensors"):
        ta, tb = load_safetensors(a / name), load_safetensors(b / name)
        assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta), name


def test_only_one_writer_leaves_complete_checkpoints_and_one_log(core):
    out, _ = core
    root = out / "full" / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step-00000003", "step-00000006"]  # no temp folders
    assert json.loads((root / "step-00000006" / "trainer.json").read_text())["world_size"] == 2
    steps = [json.loads(ln)["step"] for ln in (out / "full" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [3, 6]  # logged once, by rank 0
    with pytest.raises(GenimageError, match="written by 2"):  # the global batch would change
        Trainer(tiny_model_config(), tiny_train_config(8), tiny_dataset(), out / "full", resume=True)


def test_grad_accum_equals_a_larger_batch_in_one_process(tmp_path):
    big = Trainer(tiny_model_config(), tiny_train_config(4, batch_size=16), tiny_dataset(), tmp_path / "big")
    accum = Trainer(tiny_model_config(), tiny_train_config(4, batch_size=4, grad_accum=4), tiny_dataset(),
                    tmp_path / "accum")
    assert accum.global_batch == 16
    assert _close(accum.train(), big.train())
    a, b = accum.model.training_state(), big.model.training_state()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < ATOL
    assert accum.model_config_snapshot().training["images_seen"] == 64


def test_grad_accum_is_refused_where_it_would_change_the_update(tmp_path):
    import dataclasses

    gan, data, kw = family_setup("gan")
    with pytest.raises(GenimageError, match="--grad-accum 2 with --family gan: a GAN step"):
        Trainer(gan, tiny_train_config(2, grad_accum=2, **kw), data, tmp_path / "gan")
    ict = dataclasses.replace(tiny_model_config(), family="consistency", objective="consistency-training",
                              sampler="consistency", family_config={"mode": "training", "schedule": "ict"})
    with pytest.raises(GenimageError, match="weighting=uniform"):
        Trainer(ict, tiny_train_config(2, grad_accum=2), tiny_dataset(), tmp_path / "ict")
    with pytest.raises(GenimageError, match="--grad-accum must be at least 1"):
        tiny_train_config(2, grad_accum=0).validate()


# families whose loss is a mean of per-sample terms: 2 processes x 4 = 1 process x 8 (the others
# use batch statistics: GAN minibatch-stddev, the flow's data-dependent ActNorm init, the
# autoencoder's latent scale; they train, and every rank holds the same weights)
EXACT = ("diffusion", "consistency", "reflow", "vae")


def test_every_family_trains_in_two_processes(families, tmp_path):
    for family, result in families.items():
        assert result["step"] == 2 and result["ranks_agree"], family
        assert all(math.isfinite(v) for v in result["history"]), family
    for family in EXACT:
        mc, data, kw = family_setup(family)
        history = Trainer(mc, tiny_train_config(2, batch_size=8, **kw), data, tmp_path / family).train()
        assert _close(families[family]["history"], history), (family, families[family]["history"], history)


def test_sharded_draws_are_the_rows_of_the_global_batchs_draw():
    def draws(gen, n):  # as a family draws for a batch of n
        return [torch.randn((n, 2), generator=gen), torch.rand(n, generator=gen, dtype=torch.float64),
                torch.randint(0, 9, (n, 1), generator=gen), torch.multinomial(torch.ones(5), n, True, generator=gen),
                torch.rand((), generator=gen)]

    full = draws(torch.Generator().manual_seed(3), 6)
    gen = torch.Generator().manual_seed(3)
    mode = ShardedDraws(gen, local_batch=2, shards=3)
    for j in range(3):
        with mode.shard(j, replay=j > 0):
            part = draws(gen, 2)
        for f, p in zip(full[:4], part[:4]):
            assert torch.equal(f[2 * j:2 * j + 2], p)
        assert torch.equal(full[4], part[4])  # not batched: the same coin for every shard
    once = torch.Generator().manual_seed(3)
    draws(once, 6)
    assert torch.equal(gen.get_state(), once.get_state())  # the generator advanced once, as for one batch
    with pytest.raises(GenimageError, match="not supported"), mode.shard(0, replay=False):
        torch.empty(2).normal_(generator=gen)


def test_launch_command_keeps_the_arguments_minus_nproc():
    argv = ["--data", "builtin:digits", "--nproc", "2", "--steps", "3", "--nproc=4"]
    assert strip_nproc(argv) == ["--data", "builtin:digits", "--steps", "3"]
    assert torchrun_command(2, "train", ["--steps", "3"], "py") == [
        "py", "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "genimage.cli.main", "train",
        "--steps", "3"]
