"""Train a control model (ControlNet / adapter) for a frozen latent text-to-image UNet.

The base model is frozen; only the control module trains, on the base's own objective
(flow matching for the bundled ``shapes`` model): ``(model, batch) -> per-sample loss``
with the controlled denoiser as the model (Zhang et al. 2023, Eq. 3: the diffusion loss
with the control image as an extra condition; text prompts dropped with probability
``cond_drop``, their Sec. 3.3 uses 50%). Data are procedural ``builtin:shapes`` scenes: item
``step * batch + i`` of the train split, its latents from the base's autoencoder, its
caption's text states (cached per caption) and its control map
(:mod:`genimage.editing.control_maps`; with several kinds, each item draws one).

Checkpoints (:mod:`genimage.training.checkpoint`: atomic, keeping the newest two) hold the
control weights, their EMA, the AdamW state and the loss generator; resuming continues bit
for bit. The final model folder is ``OUT/model`` (``config.json`` + ``model.safetensors`` of
the EMA weights).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from genimage.errors import GenimageError


@dataclasses.dataclass
class ControlTrainConfig:
    """Args:
        base: Base model (bundled name or folder); a latent text-to-image UNet model.
        kinds: Control kinds to train on (one is drawn per item).
        variant: ``"controlnet"`` or ``"adapter"``.
        steps: Optimizer steps (total, across resumes).
        batch_size: Items per step.
        lr: AdamW learning rate (constant after ``warmup_steps``).
        warmup_steps: Linear warm-up steps.
        cond_drop: Probability of dropping an item's prompt (so guidance works with control).
        ema_decay: EMA decay of the saved weights.
        seed: Seed of data order (the dataset seed), noise and times.
        checkpoint_every: Steps between checkpoints.
        max_minutes: Stop after this many minutes (0 = no limit); ``resume`` continues.
        grad_clip: Gradient-norm clip (0 = off).
    """

    base: str
    kinds: list[str]
    variant: str = "controlnet"
    steps: int = 1000
    batch_size: int = 128
    lr: float = 5e-4
    warmup_steps: int = 50
    cond_drop: float = 0.3
    ema_decay: float = 0.999
    seed: int = 0
    checkpoint_every: int = 100
    max_minutes: float = 0.0
    grad_clip: float = 1.0

    def validate(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.checkpoint_every < 1:
            raise GenimageError("--steps, --batch-size and --checkpoint-every must be positive")
        if not self.lr > 0:
            raise GenimageError(f"--lr must be > 0, got {self.lr}")
        if not 0 <= self.cond_drop < 1:
            raise GenimageError(f"--cond-drop must be in [0, 1), got {self.cond_drop}")


class ControlData:
    """Batches of ``builtin:shapes`` train scenes with latents, text states and control maps.

    Args:
        base: The loaded base model (:class:`~genimage.models.io.LoadedModel`).
        kinds: Control kinds; item ``i`` uses ``kinds[hash(seed, i) % len(kinds)]``.
        seed: Dataset seed.
        split: Dataset split (``"train"`` for training, ``"eval"`` for benchmarks).
    """

    def __init__(self, base, kinds: list[str], seed: int = 0, split: str = "train") -> None:
        from genimage.conditioning.conditioner import Conditioner
        from genimage.data.shapes import ShapesDataset
        from genimage.latent.autoencoder import attached_autoencoder

        self.base = base
        self.kinds = list(kinds)
        self.seed = seed
        size = base.config.image_size
        self.dataset = ShapesDataset(length=2**48, image_size=size, split=split, seed=seed)
        self.autoencoder = attached_autoencoder(base.denoiser)
        if self.autoencoder is None:
            raise GenimageError("control training needs a latent base model (with its autoencoder)")
        self.conditioner = Conditioner(base.config)
        self._text: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def kind_of(self, index: int) -> str:
        return self.kinds[int(np.random.default_rng([self.seed, index, 7]).integers(len(self.kinds)))]

    def item(self, index: int) -> dict[str, Any]:
        """Item ``index``: ``{"rgb": uint8 (H, W, 3), "scene", "caption", "kind", "hint": uint8 (H, W, C)}``."""
        from genimage.editing.control_maps import scene_control

        scene, rgb = self.dataset._item(index)
        kind = self.kind_of(index)
        hint = scene_control(kind, scene, rgb, seed=index, supersample=self.dataset.supersample)
        return {"rgb": rgb, "scene": scene, "caption": scene.caption, "kind": kind, "hint": hint}

    def text(self, captions: list[str]) -> dict[str, torch.Tensor]:
        new = sorted({c for c in captions if c not in self._text})
        if new:
            enc = self.conditioner(captions=new)
            for i, c in enumerate(new):
                self._text[c] = (enc["text"][i], enc["text_mask"][i])
        return {"text": torch.stack([self._text[c][0] for c in captions]),
                "text_mask": torch.stack([self._text[c][1] for c in captions])}

    @torch.no_grad()
    def batch(self, start: int, size: int) -> dict[str, Any]:
        """Items ``start .. start + size - 1`` as ``{"image": latents, "cond", "hint": (B, C, S, S) in [0, 1]}``."""
        from genimage.data.types import image_from_uint8

        items = [self.item(start + i) for i in range(size)]
        pixels = torch.stack([image_from_uint8(it["rgb"]) for it in items])
        latents = self.autoencoder.model.encode(pixels).float()
        hint = torch.from_numpy(np.stack([it["hint"] for it in items])).permute(0, 3, 1, 2).float() / 255.0
        return {"image": latents, "cond": self.text([it["caption"] for it in items]), "hint": hint}


def _lr(step: int, cfg: ControlTrainConfig) -> float:
    return cfg.lr * min(1.0, (step + 1) / max(cfg.warmup_steps, 1))


def train_control(cfg: ControlTrainConfig, out: str | Path, *, resume: bool = False,
                  log: Callable[[str], None] = print) -> Path:
    """Train (or resume) a control model; returns the model folder ``out/model``.

    Args:
        cfg: The training settings.
        out: Run folder (``checkpoints/``, ``metrics.jsonl``, ``model/``).
        resume: Continue from the newest checkpoint in ``out``.
        log: Where progress lines go.
    """
    import json

    from genimage.models.control import ControlConfig, build_control, controlled_denoiser, save_control
    from genimage.models.io import load_model
    from genimage.objectives import OBJECTIVES
    from genimage.training.checkpoint import (find_latest_checkpoint, load_checkpoint, optimizer_from_tensors,
                                              optimizer_to_tensors, save_checkpoint)
    from genimage.training.ema import EMA

    cfg.validate()
    out = Path(out)
    base = load_model(cfg.base)
    if base.config.backbone != "unet":
        raise GenimageError(f"--family control needs a UNet base model; {cfg.base} has backbone {base.config.backbone!r}")
    if not base.config.text_encoder or not base.config.autoencoder:
        raise GenimageError(f"--family control trains on a latent text-to-image base; {cfg.base} is not one")
    from genimage.editing.control_maps import CONTROL_KINDS

    channels = CONTROL_KINDS.get(cfg.kinds[0]).channels
    ccfg = ControlConfig(kinds=list(cfg.kinds), variant=cfg.variant, hint_channels=channels,
                         hint_size=base.config.image_size, base_model=base.name, base_sha256=base.weights_sha256,
                         base_backbone_config=dict(base.config.backbone_config))
    torch.manual_seed(cfg.seed)
    module = build_control(ccfg)
    module.init_from_base(base.denoiser.network.state_dict())
    module.train().requires_grad_(True)
    opt = torch.optim.AdamW(module.parameters(), lr=cfg.lr, weight_decay=0.0)
    ema = EMA(module, cfg.ema_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    step, wall = 0, 0.0
    ckpt_root = out / "checkpoints"
    if resume:
        ckpt = find_latest_checkpoint(ckpt_root)
        if ckpt is None:
            raise GenimageError(f"--resume: no checkpoint in {ckpt_root}")
        tensors, meta = load_checkpoint(ckpt)
        state = meta["trainer.json"]
        if state["base_sha256"] != base.weights_sha256 or state["kinds"] != list(cfg.kinds):
            raise GenimageError(f"--resume: {ckpt} was trained for another base or control kinds")
        module.load_state_dict(tensors["control.safetensors"])
        optimizer_from_tensors(opt, tensors["optimizer.safetensors"], meta["optimizer.json"])
        ema.load_state_dict(tensors["ema.safetensors"], state["ema_updates"])
        gen.set_state(tensors["rng.safetensors"]["objective"])
        step, wall = int(state["step"]), float(state["wall_time_s"])
        log(f"resumed from {ckpt.name} (step {step})")
    elif find_latest_checkpoint(ckpt_root) is not None:
        raise GenimageError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    data = ControlData(base, cfg.kinds, seed=cfg.seed)
    objective = OBJECTIVES.get(base.config.objective).build(cfg.cond_drop)

    def checkpoint() -> None:
        otensors, ometa = optimizer_to_tensors(opt)
        save_checkpoint(ckpt_root, step, {
            "control.safetensors": {k: v.contiguous() for k, v in module.state_dict().items()},
            "ema.safetensors": {k: v.contiguous() for k, v in ema.state_dict().items()},
            "optimizer.safetensors": otensors,
            "rng.safetensors": {"objective": gen.get_state()},
        }, {"optimizer.json": ometa, "trainer.json": {
            "step": step, "ema_updates": ema.updates, "wall_time_s": wall, "base_sha256": base.weights_sha256,
            "kinds": list(cfg.kinds), "config": dataclasses.asdict(cfg)}})

    started = time.monotonic()
    metrics = (out / "metrics.jsonl").open("a")
    while step < cfg.steps:
        t0 = time.monotonic()
        batch = data.batch(step * cfg.batch_size, cfg.batch_size)
        model = controlled_denoiser(base.denoiser, module, batch["hint"])
        for group in opt.param_groups:
            group["lr"] = _lr(step, cfg)
        loss = objective(model, batch, gen).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(module.parameters(), cfg.grad_clip)
        if torch.isfinite(loss):
            opt.step()
            ema.update(module)
        step += 1
        wall += time.monotonic() - t0
        metrics.write(json.dumps({"step": step, "loss": float(loss.detach()), "wall_time_s": round(wall, 2)}) + "\n")
        metrics.flush()
        if step % 10 == 0 or step == cfg.steps:
            log(f"step {step}/{cfg.steps} loss {float(loss.detach()):.4f} ({wall / step:.2f} s/step)")
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            checkpoint()
        if cfg.max_minutes and time.monotonic() - started > cfg.max_minutes * 60:
            checkpoint()
            log(f"stopped after {cfg.max_minutes} min at step {step}; --resume continues")
            break
    metrics.close()
    ccfg.training = {"data": "builtin:shapes", "split": "train", "steps": step, "batch_size": cfg.batch_size,
                     "images_seen": step * cfg.batch_size, "lr": cfg.lr, "cond_drop": cfg.cond_drop,
                     "ema_decay": cfg.ema_decay, "seed": cfg.seed, "wall_time_s": round(wall, 1),
                     "hardware": "CPU fp32"}
    folder = save_control(out / "model", ccfg, ema.state_dict())
    log(f"wrote {folder}/ (control model, {step} steps)")
    return folder


def run_from_cli(*, base: str | None, control: str | None, variant: str, data: str, out: Path, resume: bool,
                 log: Callable[[str], None], **settings) -> Path:
    """``genimage train --family control``: check the options, then :func:`train_control`.

    ``settings`` are the trainer options (``None`` = this family's default)."""
    from genimage.editing.control_maps import CONTROL_KINDS

    if not base:
        raise GenimageError("--family control needs --base MODEL: the frozen model the control model is for")
    if not control:
        raise GenimageError("--family control needs --control KIND: edges, segmentation or sketch (or e.g. edges,sketch)")
    if data != "builtin:shapes":
        raise GenimageError(f"--family control trains on builtin:shapes (its exact masks and edges), got --data {data}")
    kinds = [k.strip() for k in control.split(",") if k.strip()]
    for k in kinds:
        CONTROL_KINDS.get(k)
    cfg = ControlTrainConfig(base=base, kinds=kinds, variant=variant,
                             **{k: v for k, v in settings.items() if v is not None})
    return train_control(cfg, out, resume=resume, log=log)
