"""Training jobs run by the distributed tests, once per process under torchrun (gloo, 1 thread).

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/distributed_worker.py TASK OUT

``core``: a 6-step diffusion run (batch 8 per process, checkpoints at 3 and 6) in ``OUT/full``;
the same run stopped at step 3 and resumed in ``OUT/resumed``; a 4-step run with batch 4 and
``grad_accum=2`` in ``OUT/accum``. ``families``: 2 steps of every family in ``OUT/<family>``.
Each job checks that every rank ends with the same weights and rank 0 writes
``OUT/<job>.json`` with the loss history.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
from tiny import tiny_dataset, tiny_model_config, tiny_train_config  # noqa: E402

from genimage.models.config import ModelConfig  # noqa: E402
from genimage.training.loop import Trainer  # noqa: E402

FAMILIES = ("diffusion", "consistency", "reflow", "vae", "normalizing-flow", "gan", "autoencoder")


def family_setup(family: str):
    """``(model_config, dataset, train_config kwargs)`` of a tiny 8x8 run of ``family``."""
    from genimage.data.builtin import load_builtin
    from genimage.families import FAMILIES as REGISTRY, load_all_families

    load_all_families()
    kw = dict(num_sample_images=2, checkpoint_every=0, warmup_steps=1)
    if family == "diffusion":
        return tiny_model_config(), tiny_dataset(), kw
    if family == "consistency":  # consistency training from scratch (ECT: uniform weighting)
        mc = dataclasses.replace(tiny_model_config(), family="consistency", objective="consistency-training",
                                 sampler="consistency", steps=2, family_config={"mode": "training", "schedule": "ect"})
        return mc, tiny_dataset(), kw
    data = load_builtin("digits", length=64)
    if family == "reflow":  # the bundled digits flow as teacher, a small pair pool
        from genimage.families.teacher import student_config_from_teacher

        mc = student_config_from_teacher("digits", "reflow", {"pairs": 16, "teacher_steps": 2}, sampler="euler",
                                         steps=1, guidance=1.0)
        return mc, data, kw
    bc = {**REGISTRY.get(family).presets["tiny"], "image_size": 8, "channels": 1,
          "num_classes": 0 if family == "autoencoder" else 10}
    mc = ModelConfig(backbone=family, backbone_config=bc, objective="", path="", prediction="", image_size=8,
                     channels=1, num_classes=bc["num_classes"], family=family, training={"data": "builtin:digits"})
    return mc, data, {**kw, "grad_clip": 0.0}


def ranks_agree(trainer: Trainer) -> bool:
    """Whether every rank holds the same training state (parameters and buffers)."""
    state = trainer.model.training_state()
    flat = torch.cat([v.detach().double().flatten() for v in state.values()])
    gathered = [torch.empty_like(flat) for _ in range(trainer.acc.num_processes)]
    torch.distributed.all_gather(gathered, flat)
    return all(torch.equal(gathered[0], g) for g in gathered)


def run(out: Path, mc, data, steps: int, resume: bool = False, **kw) -> dict:
    trainer = Trainer(mc, tiny_train_config(steps, **kw), data, out, resume=resume)
    history = trainer.train()
    return {"history": history, "ranks_agree": ranks_agree(trainer), "step": trainer.step}


def main() -> None:
    task, out = sys.argv[1], Path(sys.argv[2])
    results = {}
    if task == "core":
        mc, data = tiny_model_config(), tiny_dataset()
        results["full"] = run(out / "full", mc, data, 6)
        run(out / "resumed", mc, data, 3)
        results["resumed"] = run(out / "resumed", mc, data, 6, resume=True)
        results["accum"] = run(out / "accum", mc, data, 4, batch_size=4, grad_accum=2)
    else:
        for family in FAMILIES:
            mc, data, kw = family_setup(family)
            results[family] = run(out / family, mc, data, 2, batch_size=4, **kw)
    if int(os.environ.get("RANK", "0")) == 0:
        (out / f"{task}.json").write_text(json.dumps(results))
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
