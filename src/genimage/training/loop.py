"""One generic trainer for every model family.

Optimizers, gradient clipping, EMA, optional bf16 autocast, periodic sample grids, a
progress bar with loss and images/s, optional TensorBoard, and atomic checkpoints that
resume bit for bit on CPU. The loop never branches on the family: the model
(:class:`~genimage.families.base.GenerativeModel`) creates its optimizers and performs one
update per batch through a :class:`~genimage.families.base.StepContext`. Distribution
(torchrun / multi-GPU, through accelerate) and gradient accumulation live in
:mod:`genimage.training.distributed`: a step of ``P`` processes with ``K`` micro-batches of
``B`` images equals a one-process step with batch ``P * K * B``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from genimage.conditioning.conditioner import Conditioner
from genimage.errors import GenimageError
from genimage.families.base import GenerativeModel, StepContext
from genimage.models.config import WEIGHTS_FILE, ModelConfig
from genimage.training import checkpoint as ckpt
from genimage.training import distributed
from genimage.training.collate import collate  # noqa: F401 (the trainer's batch builder, also imported from here)
from genimage.training.ema import EMA
from genimage.training.guard import DivergenceGuard, SkipStep, TrainingDiverged, gradient_norm, max_abs
from genimage.utils.diskspace import disk_full_as_error
from genimage.utils.weights import load_safetensors


#: Learning-rate schedules after warm-up (``TrainConfig.lr_schedule``).
LR_SCHEDULES = ("constant", "cosine", "linear")


def lr_factor(step: int, steps: int, warmup_steps: int, schedule: str, min_ratio: float = 0.0) -> float:
    """Multiplier of the peak learning rate at optimizer step ``step`` (0-based) of ``steps``:
    a linear warm-up over ``warmup_steps``, then ``schedule`` (see ``TrainConfig.lr_schedule``)
    from 1 at the end of the warm-up to ``min_ratio`` at the last step."""
    warmup = max(warmup_steps, 0)
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, max(0, step - warmup) / max(1, steps - 1 - warmup))
    decay = 0.5 * (1.0 + math.cos(math.pi * progress)) if schedule == "cosine" else 1.0 - progress
    return min_ratio + (1.0 - min_ratio) * decay


@dataclass
class TrainConfig:
    """Args:
        steps: Total optimizer steps.
        batch_size: Images per step per process and micro-batch: a step trains on
            ``batch_size * grad_accum * processes`` images.
        grad_accum: Micro-batches per optimizer step (gradient accumulation); a step with
            ``grad_accum = K`` equals one with a ``K`` times larger ``batch_size``
            (``genimage.training.distributed``; refused for families where it would not).
        lr: Peak AdamW learning rate.
        weight_decay: AdamW weight decay.
        warmup_steps: Linear learning-rate warm-up length.
        lr_schedule: After warm-up, ``constant``, or a decay over the rest of ``steps`` to
            ``min_lr_ratio * lr``: ``cosine`` (Loshchilov & Hutter 2017, "SGDR", Eq. 5 with
            one cycle) or ``linear``. A decaying schedule ties the run to its ``steps``:
            ``--resume`` must keep them.
        min_lr_ratio: Final learning rate of a decaying schedule, as a fraction of ``lr``.
        grad_clip: Max global gradient norm (0 disables clipping).
        ema_decay: EMA decay of the sampling weights.
        bf16: Run forward/backward under bfloat16 autocast (fast on CPUs with AMX).
        seed: Seed of initialisation, data order and objective noise.
        cond_drop_prob: Probability of dropping conditioning (for classifier-free guidance).
        log_every: Steps between metrics.jsonl lines / progress-bar updates.
        sample_every: Steps between sample grids (0 = only at the end).
        checkpoint_every: Steps between checkpoints (0 = only at the end).
        keep_checkpoints: Checkpoints kept on disk.
        num_sample_images: Images in each sample grid.
        tensorboard: Also write TensorBoard logs (needs the ``tensorboard`` package).
        progress: Show a progress bar.
        max_minutes: Stop (with a checkpoint and sample grid) after this many minutes of
            training in this invocation, even before ``steps`` (0 = no limit).
        compile: ``torch.compile`` the trained network (the module the EMA tracks) in place.
            On the bundled shapes UNet, batch 32, one CPU thread it saves 8-16% of a step
            (``benchmarks/train_step_profile.py --compile``: 404 -> 372 ms after 15 s of
            compiling); on a lent H100 at batch 512 a step went 92.6 -> 74.0 ms after 58 s of
            compiling (BENCHMARKS.md, "GPU run, session 8"). Compiled kernels may round
            differently from eager ones, so a run is exactly resumable only with the same
            setting.
        deterministic: On CUDA, use deterministic kernels (cuDNN's deterministic
            convolutions, no autotuning, ``torch.use_deterministic_algorithms`` with a fixed
            cuBLAS workspace), so that two runs with one seed, and a run and its ``--resume``,
            agree bit for bit. cuDNN's default weight-gradient convolutions accumulate with
            atomics: on a lent H100 two identical UNet runs differed from their second step.
            ``False`` trades that for speed. CPU runs are deterministic either way.
        max_bad_steps: A step whose loss or gradient is NaN/inf (or whose loss explodes, see
            ``explode_factor``) is skipped with a warning; this many in a row stop the run
            with a diagnostic, keeping the last good checkpoint (0 = never stop).
            See :mod:`genimage.training.guard`.
        explode_factor: A loss over this many times the median of the run's first 10 losses
            counts as a bad step, and weights that grew this many times beyond their start
            are never checkpointed (0 = only non-finite values count).
    """

    steps: int = 1000
    batch_size: int = 64
    lr: float = 3e-4
    weight_decay: float = 0.0
    warmup_steps: int = 100
    lr_schedule: str = "constant"
    min_lr_ratio: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    bf16: bool = False
    seed: int = 0
    cond_drop_prob: float = 0.1
    log_every: int = 10
    sample_every: int = 0
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    num_sample_images: int = 16
    tensorboard: bool = False
    progress: bool = True
    max_minutes: float = 0.0
    compile: bool = False
    deterministic: bool = True
    max_bad_steps: int = 5
    explode_factor: float = 1e6
    grad_accum: int = 1

    def validate(self) -> None:
        for name in ("steps", "batch_size", "grad_accum"):
            if getattr(self, name) < 1:
                raise GenimageError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise GenimageError(f"--lr must be positive, got {self.lr}")
        if not 0 <= self.ema_decay < 1:
            raise GenimageError(f"--ema-decay must be in [0, 1), got {self.ema_decay}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise GenimageError(f"--lr-schedule must be one of {' | '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise GenimageError(f"--min-lr-ratio must be in [0, 1], got {self.min_lr_ratio}")
        if not self.max_minutes >= 0:
            raise GenimageError(f"--max-minutes must be >= 0, got {self.max_minutes}")
        if not 0 <= self.cond_drop_prob <= 1:
            raise GenimageError(f"--cond-drop must be in [0, 1], got {self.cond_drop_prob}")
        if self.keep_checkpoints < 1:
            raise GenimageError(f"--keep-checkpoints must be at least 1, got {self.keep_checkpoints}")
        if self.max_bad_steps < 0:
            raise GenimageError(f"--max-bad-steps must be >= 0, got {self.max_bad_steps}")
        if not self.explode_factor >= 0:
            raise GenimageError(f"--explode-factor must be >= 0, got {self.explode_factor}")


# cuBLAS reads this when it creates its workspace, so it is set before any CUDA work; it only
# fixes the workspace's layout (8 buffers of 4 MiB), as deterministic cuBLAS needs.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def use_deterministic_cuda(on: bool) -> None:
    """Deterministic CUDA kernels on or off (``TrainConfig.deterministic``; process-wide, as
    PyTorch's switches are). Operations without a deterministic CUDA kernel warn instead of
    failing. The memory-efficient attention kernel, whose backward accumulates with atomics
    (PyTorch warned so on the lent H100), is switched off with it: attention then runs the
    flash kernel (bf16) or plain matrix products (fp32)."""
    torch.backends.cudnn.deterministic = on
    if on:
        torch.backends.cudnn.benchmark = False  # autotuning may pick a different algorithm each run
    torch.use_deterministic_algorithms(on, warn_only=True)
    torch.backends.cuda.enable_mem_efficient_sdp(not on)


#: torch.compile backend of ``TrainConfig.compile`` (tests use "eager": tracing without code generation).
COMPILE_BACKEND = "inductor"

#: ModelConfig fields that decide what training optimises: ``--resume`` must keep them (the
#: sampling defaults, class names and the free-form training record may change).
_RESUME_MODEL_KEYS = ("backbone", "backbone_config", "objective", "path", "prediction", "sigma_data", "image_size",
                      "channels", "num_classes", "text_encoder", "text_max_length", "text_layers", "family",
                      "family_config", "latent_shape")
# settings that may differ between a run and its resumption without breaking exactness
_RESUME_FREE = {"steps", "log_every", "sample_every", "checkpoint_every", "keep_checkpoints", "progress",
                "tensorboard", "num_sample_images", "max_minutes", "deterministic", "max_bad_steps",
                "explode_factor"}


class DataOrder:
    """Deterministic epoch-wise shuffled order; the position ``(epoch, offset)`` is all that
    must be checkpointed to continue exactly."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed = n, seed
        self.epoch, self.offset = 0, 0
        self._perm = self._make_perm()

    def _make_perm(self) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(self.n, generator=g)

    def take(self, k: int) -> list[int]:
        out: list[int] = []
        while len(out) < k:
            if self.offset >= self.n:
                self.epoch, self.offset = self.epoch + 1, 0
                self._perm = self._make_perm()
            m = min(k - len(out), self.n - self.offset)
            out += self._perm[self.offset:self.offset + m].tolist()
            self.offset += m
        return out

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "offset": self.offset}

    def load(self, state: dict[str, int]) -> None:
        self.epoch, self.offset = state["epoch"], state["offset"]
        self._perm = self._make_perm()


class Trainer:
    """Trains ``model_config`` (any family) on ``dataset`` into ``out_dir``.

    Args:
        model_config: What to build (family, backbone, objective, conditioning).
        train_config: How to train.
        dataset: Items ``{"image": (C, H, W) in [-1, 1], "label"?, "caption"?}``.
        out_dir: Run folder (``checkpoints/``, ``samples/``, ``metrics.jsonl``).
        resume: Continue from the latest checkpoint in ``out_dir``.
        init_from: A fresh run starts from this model's sampling (EMA) weights instead of its
            family's initialisation (fine-tuning); ignored when resuming.
        accelerator: Optional ``accelerate.Accelerator``; one is created if omitted.
    """

    def __init__(self, model_config: ModelConfig, train_config: TrainConfig, dataset, out_dir: str | Path,
                 resume: bool = False, accelerator=None, init_from: str | Path | None = None) -> None:
        from accelerate import Accelerator

        from genimage.families import FAMILIES, load_all_families

        train_config.validate()
        load_all_families()
        self.mc, self.tc = model_config, train_config
        self.family = FAMILIES.get(model_config.family)
        self.dataset = dataset
        if len(dataset) == 0:
            raise GenimageError("the dataset is empty; nothing to train on")
        self.out = Path(out_dir)
        # Precision is handled by our own autocast (below), not accelerate's global state, so
        # runs with different precisions can share one process.
        self.acc = accelerator or Accelerator(cpu=not torch.cuda.is_available())
        if self.acc.device.type == "cuda":
            use_deterministic_cuda(train_config.deterministic)
        ckpt_root = self.out / "checkpoints"
        for folder in (ckpt_root, self.out, self.out / "samples"):  # left by a write that was killed or hit a full disk
            ckpt.clean_stale_temporaries(folder)
        latest = ckpt.find_latest_checkpoint(ckpt_root)
        if resume and latest is None:  # killed before its first checkpoint: nothing to continue
            import sys

            print(f"--resume: {ckpt_root} holds no checkpoint yet (the run stopped before its first one); "
                  "starting the run from step 0", file=sys.stderr)
            resume = False
            self._truncate_metrics(0)
        self.resumed = resume
        self.guard = DivergenceGuard(train_config.max_bad_steps, train_config.explode_factor)
        torch.manual_seed(train_config.seed)
        self.model: GenerativeModel = self.family.model_cls(model_config)
        self.model.to(self.acc.device)
        if not resume:
            self.model.init_for_training()
            if init_from is not None:
                self._init_from(init_from)
        if train_config.compile:  # in place: parameter names and checkpoints stay those of the eager module
            self.model.ema_module().compile(backend=COMPILE_BACKEND)
        self.optimizers = self.model.configure_optimizers(train_config.lr, train_config.weight_decay)
        self.ema = EMA(self.model.ema_module(), train_config.ema_decay)
        distributed.check_grad_accum(self.model, train_config.grad_accum)
        # one objective generator on every rank: each takes its rows of the global batch's draws
        self.generator = torch.Generator().manual_seed(train_config.seed * 7919 + 1)
        self.stop_requested = False  # set (e.g. by a signal handler) to stop all ranks at the next step
        self.order = DataOrder(len(dataset), train_config.seed)
        self.conditioner = Conditioner(model_config)
        self.step = 0
        self.wall_time = 0.0
        self.history: list[float] = []
        self.recent_metrics: list[tuple[int, dict[str, float]]] = []
        if resume:
            self._load(latest)
        elif latest is not None:
            raise GenimageError(f"{self.out} already holds checkpoints; pass --resume to continue or choose another --out")
        self._start_scale = max_abs(self.model.training_state().values())

    @property
    def network(self) -> torch.nn.Module:
        """The module whose EMA is used for sampling (the backbone for diffusion models)."""
        return self.model.ema_module()

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    # ------------------------------------------------------------------ state
    def _init_from(self, name: str | Path) -> None:
        """Load the sampling weights of model ``name`` (bundled name, model, run or checkpoint
        folder) into the network; its architecture must be this run's. Only the sampled
        network is loaded (a GAN's discriminator starts fresh); optimizer state starts fresh."""
        from genimage.models.io import resolve_model_folder

        folder = resolve_model_folder(name)
        other = ModelConfig.load(folder)

        def arch(config: dict) -> dict:
            # A longer text window (--text-max-length) adds no weights to a UNet; where it does
            # (a DiT's text position table), the weights' shapes differ and loading says so.
            return {k: v for k, v in config.items() if k != "max_text_len"}

        if (other.backbone, arch(other.backbone_config)) != (self.mc.backbone, arch(self.mc.backbone_config)):
            raise GenimageError(f"--init-from {name}: its network ({other.backbone} {other.backbone_config}) is not "
                                f"this run's ({self.mc.backbone} {self.mc.backbone_config}); fine-tuning needs the "
                                "same architecture (same --backbone, --preset and --set)")
        try:
            self.model.load_sampling_state(load_safetensors(folder / WEIGHTS_FILE))
        except GenimageError as exc:
            raise GenimageError(f"--init-from {name}: {exc} (fine-tuning needs the same architecture; "
                                "a DiT also the same --text-max-length)") from None

    def _load(self, folder: Path) -> None:
        tensors, meta = ckpt.load_checkpoint(folder)
        state = meta["trainer.json"]
        distributed.check_resume_world(state, self.acc.num_processes)
        saved_tc = {**dataclasses.asdict(TrainConfig()), **state["train_config"]}  # settings added later: defaults
        free = _RESUME_FREE - ({"steps"} if saved_tc["lr_schedule"] != "constant" else set())  # a decay spans steps
        old = {k: v for k, v in saved_tc.items() if k not in free}
        new = {k: v for k, v in dataclasses.asdict(self.tc).items() if k not in free}
        if old != new:
            diff = {k: (old.get(k), new.get(k)) for k in set(old) | set(new) if old.get(k) != new.get(k)}
            raise GenimageError(f"--resume with different training settings {diff}; use the original ones")
        saved_config = ModelConfig.from_dict(meta["config.json"])
        saved, current = saved_config.to_dict(), self.mc.to_dict()
        changed = {k: (saved.get(k), current.get(k)) for k in _RESUME_MODEL_KEYS if saved.get(k) != current.get(k)}
        if changed:
            raise GenimageError(f"--resume with a different model configuration than the checkpoint's {changed} "
                                "(checkpoint, now); pass the original options or start a new --out")
        if "init_from" in saved_config.training:  # provenance of a fine-tuned run survives resumes
            self.mc.training.setdefault("init_from", saved_config.training["init_from"])
        self.model.load_training_state(tensors["network.safetensors"])
        self.ema.load_state_dict(tensors["model.safetensors"], state["ema_updates"])
        for name, opt in self.optimizers.items():
            stem = _optimizer_stem(name, len(self.optimizers))
            ckpt.optimizer_from_tensors(opt, tensors[f"{stem}.safetensors"], meta[f"{stem}.json"])
        ckpt.restore_rng_state(tensors["trainer.safetensors"], state["numpy_rng"], self.generator)
        self.order.load(state["data_position"])
        self.step = state["step"]
        self.wall_time = state.get("wall_time_s", 0.0)
        self.history = list(state.get("loss_history", []))
        self.guard.load(state)
        self._truncate_metrics(self.step)

    def _truncate_metrics(self, step: int) -> None:
        path = self.out / "metrics.jsonl"
        if path.is_file():
            keep = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln).get("step", 0) <= step]
            path.write_text("".join(ln + "\n" for ln in keep))

    def model_config_snapshot(self) -> ModelConfig:
        mc = dataclasses.replace(self.mc)
        mc.training = {**self.mc.training, "steps": self.step, "batch_size": self.tc.batch_size,
                       "images_seen": self.step * self.global_batch,
                       "wall_time_s": round(self.wall_time, 1), "bf16": self.tc.bf16, "seed": self.tc.seed,
                       "lr": self.tc.lr, "ema_decay": self.tc.ema_decay}
        return mc

    def save(self) -> Path | None:
        """Write a checkpoint (main process only)."""
        self.acc.wait_for_everyone()
        if not self.acc.is_main_process:
            return None
        problem = self.guard.weights_problem([*self.ema.state_dict().values(), *self.model.training_state().values()],
                                             self._start_scale)
        if problem:
            raise self._diverged(f"{problem} at step {self.step}, so no checkpoint was written")
        files = {"model.safetensors": self.ema.state_dict(), "network.safetensors": self.model.training_state(),
                 "trainer.safetensors": ckpt.rng_state_tensors(self.generator)}
        json_files: dict[str, Any] = {}
        for name, opt in self.optimizers.items():
            stem = _optimizer_stem(name, len(self.optimizers))
            files[f"{stem}.safetensors"], json_files[f"{stem}.json"] = ckpt.optimizer_to_tensors(opt)
        state = {
            "step": self.step,
            "data_position": self.order.state(),
            "ema_updates": self.ema.updates,
            "numpy_rng": ckpt.numpy_rng_meta(),
            "train_config": dataclasses.asdict(self.tc),
            "wall_time_s": self.wall_time,
            "loss_history": self.history,
            **self.guard.state(),
            "world_size": self.acc.num_processes,
        }
        json_files["config.json"] = {**self.model_config_snapshot().to_dict(), "format": "genimage-model-1"}
        json_files["trainer.json"] = state
        return ckpt.save_checkpoint(self.out / "checkpoints", self.step, files=files, json_files=json_files,
                                    keep=self.tc.keep_checkpoints)

    # ------------------------------------------------------------------ loop
    def _lr(self, step: int) -> float:
        tc = self.tc
        return tc.lr * lr_factor(step, tc.steps, tc.warmup_steps, tc.lr_schedule, tc.min_lr_ratio)

    @property
    def global_batch(self) -> int:
        """Images per optimizer step over all processes and micro-batches."""
        return self.tc.batch_size * self.tc.grad_accum * self.acc.num_processes

    def _next_batch(self) -> dict[str, Any]:
        return self._batch_from(self.order.take(self.tc.batch_size))

    def _batch_from(self, idx: list[int]) -> dict[str, Any]:
        if hasattr(self.dataset, "set_epoch"):  # random crops/flips drawn per (seed, epoch, index)
            self.dataset.set_epoch(self.order.epoch)
        batch = collate([self.dataset[i] for i in idx], self.conditioner)
        dev = self.acc.device
        batch["image"] = batch["image"].to(dev)
        if batch["cond"] is not None:
            batch["cond"] = {k: v.to(dev) for k, v in batch["cond"].items()}
        return batch

    def _context(self) -> StepContext:
        import contextlib

        def backward(loss: torch.Tensor) -> None:
            # one process: a non-finite loss skips the step before its backward pass; several: the
            # gradient check in clip sees it on every process after distributed.sharded_step's all-reduce
            if self.acc.num_processes == 1 and not bool(torch.isfinite(loss.detach()).all()):
                raise SkipStep(f"the loss is {float(loss.detach().float().sum())}")
            self.acc.backward(loss)

        def clip(parameters) -> None:
            parameters = list(parameters)
            if self.tc.grad_clip > 0:
                norm = torch.nn.utils.clip_grad_norm_(parameters, self.tc.grad_clip)
            else:
                norm = gradient_norm(parameters)
            if not bool(torch.isfinite(norm)):  # before the optimizer step: this update is skipped
                raise SkipStep(f"the gradient norm is {float(norm)}")

        def autocast():
            if not self.tc.bf16:
                return contextlib.nullcontext()
            return torch.autocast(self.acc.device.type, dtype=torch.bfloat16)

        return StepContext(optimizers=self.optimizers, generator=self.generator, step=self.step, backward=backward,
                           clip=clip, autocast=autocast, cond_drop_prob=self.tc.cond_drop_prob)

    def train_step(self) -> float | None:
        """One update; returns the step's loss (other metrics in :attr:`last_metrics`), or
        ``None`` when the step was skipped as bad (:mod:`genimage.training.guard`)."""
        lr = self._lr(self.step)
        for opt in self.optimizers.values():
            for group in opt.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)
        self.model.train()
        try:
            if self.global_batch > self.tc.batch_size:  # several processes or micro-batches
                metrics = distributed.sharded_step(self)
            else:
                metrics = self.model.training_step(self._next_batch(), self._context())
            value = float(metrics["loss"])
            problem = self.guard.loss_problem(value, self.history)
        except SkipStep as exc:
            problem = str(exc)
        if self.acc.num_processes > 1:  # every process skips the same steps (losses differ between them)
            flag = torch.tensor([1.0 if problem else 0.0], device=self.acc.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            if flag.item() and not problem:
                problem = "another process had a bad step"
        if problem:
            self._bad_step(problem)
            return None
        self.guard.record_good()
        self.ema.update(self.model.ema_module())
        self.step += 1
        self.history.append(value)
        self.last_metrics = metrics
        self.recent_metrics.append((self.step, {k: float(v) for k, v in metrics.items()}))
        del self.recent_metrics[:-200]
        return value

    def _bad_step(self, problem: str) -> None:
        """Count a skipped step, warn, and stop the run after ``max_bad_steps`` in a row."""
        stop = self.guard.record_bad()
        self._warn(f"step {self.step} skipped: {problem} ({self.guard.bad_in_a_row} in a row, "
                   f"{self.guard.bad_total} in the run)")
        if stop:
            raise self._diverged(f"{self.guard.bad_in_a_row} steps in a row were bad (the last: {problem}) "
                                 f"at step {self.step}")

    def _diverged(self, what: str) -> TrainingDiverged:
        latest = ckpt.find_latest_checkpoint(self.out / "checkpoints")
        kept = f"the last good checkpoint {latest} stays latest" if latest else "no checkpoint was written"
        return TrainingDiverged(f"training diverged: {what}; {kept}; lower --lr (now {self.tc.lr:g}), "
                                "clip gradients (--grad-clip) or check the data")

    def _warn(self, line: str) -> None:
        import sys

        print(f"warning: {line}", file=sys.stderr)
        if self.acc.is_main_process:
            self.out.mkdir(parents=True, exist_ok=True)
            with disk_full_as_error(self.out / "warnings.txt", "warnings log"), open(self.out / "warnings.txt", "a") as f:
                f.write(f"warning: {line}\n")

    def train(self) -> list[float]:
        """Run until ``train_config.steps``; returns the per-step loss history (all steps)."""
        from tqdm import tqdm

        tc = self.tc
        self.out.mkdir(parents=True, exist_ok=True)
        writer = self._tensorboard() if tc.tensorboard and self.acc.is_main_process else None
        bar = tqdm(total=tc.steps, initial=self.step, disable=not (tc.progress and self.acc.is_main_process),
                   desc="train", unit="step", dynamic_ncols=True)
        window: list[float] = []
        extras: dict[str, list[float]] = {}
        t_window = time.perf_counter()
        budget = self._budget()  # --max-minutes: whole steps only, the final grid's time kept free
        while self.step < tc.steps:
            if distributed.any_rank(self.stop_requested or not budget.can_start_step(), self.acc.num_processes,
                                    self.acc.device):
                break
            t0 = time.perf_counter()
            loss = self.train_step()
            self.wall_time += time.perf_counter() - t0
            budget.observe(time.perf_counter() - t0)
            if loss is None:  # skipped as bad: no step was made
                continue
            window.append(loss)
            for k, v in self.last_metrics.items():
                if k != "loss":
                    extras.setdefault(k, []).append(float(v))
            bar.update(1)
            out_of_time = not budget.can_start_step()
            if self.step % tc.log_every == 0 or self.step == tc.steps or (out_of_time and window):
                elapsed = time.perf_counter() - t_window
                ips = len(window) * self.global_batch / max(elapsed, 1e-9)
                mean_loss = sum(window) / len(window)
                bar.set_postfix(loss=f"{mean_loss:.4f}", img_s=f"{ips:.0f}")
                record = {"step": self.step, "loss": mean_loss, "lr": self._lr(self.step - 1),
                          "images_per_s": ips, "wall_time_s": round(self.wall_time, 2)}
                record.update({k: sum(v) / len(v) for k, v in extras.items()})
                self._log(record, writer)
                window, extras, t_window = [], {}, time.perf_counter()
            if tc.sample_every and self.step % tc.sample_every == 0:
                self.sample_grid()
            if tc.checkpoint_every and self.step % tc.checkpoint_every == 0 and self.step < tc.steps:
                self.save()
        bar.close()
        self.save()
        if self.acc.is_main_process and budget.can_sample_grid():
            self.sample_grid()
        elif self.acc.is_main_process:
            print(f"final sample grid skipped: it would not fit in --max-minutes {tc.max_minutes:g}", file=sys.stderr)
        if writer is not None:
            writer.close()
        self.acc.wait_for_everyone()
        return self.history

    #: Estimated seconds of one step (set from :func:`genimage.training.estimate.estimate_training`
    #: before :meth:`train`); ``None``: the first step is measured, not predicted.
    step_seconds_hint: float | None = None

    def _budget(self):
        from genimage.training.estimate import Budget, grid_seconds_estimate

        grid_factor = grid_seconds_estimate(1.0, self.tc.batch_size, self.tc.num_sample_images, self.mc.steps)
        return Budget(self.tc.max_minutes, self.step_seconds_hint, grid_factor)

    def _log(self, record: dict[str, Any], writer) -> None:
        if not self.acc.is_main_process:
            return
        with disk_full_as_error(self.out / "metrics.jsonl", "training log"), open(self.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        if writer is not None:
            for k, v in record.items():
                if k != "step" and isinstance(v, (int, float)) and math.isfinite(v):
                    writer.add_scalar(f"train/{k}", v, record["step"])

    def _tensorboard(self):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except Exception:
            raise GenimageError("--tensorboard needs the tensorboard package: pip install tensorboard") from None
        return SummaryWriter(str(self.out / "tensorboard"))

    def sampling_model(self) -> GenerativeModel:
        """A fresh copy of the model holding the EMA weights, in eval mode (global RNG untouched);
        it shares the trainer's conditioner, so a text encoder is not loaded again per grid."""
        with torch.random.fork_rng(devices=[]):
            model = self.family.model_cls(self.mc)
        model.load_sampling_state(self.ema.state_dict())
        if hasattr(model, "share_conditioner"):
            model.share_conditioner(self.conditioner)
        return model.to(self.acc.device).eval()

    def sample_grid(self) -> Path | None:
        """Sample a grid with the EMA weights (own seeds; training RNG untouched)."""
        if not self.acc.is_main_process:
            return None
        from genimage.data.image_io import save_image_grid
        from genimage.samplers.noise import generators_for_seeds

        model = self.sampling_model()
        n = self.tc.num_sample_images
        cond = None
        if self.conditioner.uses_text:
            cond = [self.dataset[i % len(self.dataset)].get("caption", "") for i in range(n)]
        elif self.mc.num_classes:
            cond = [i % self.mc.num_classes for i in range(n)]
        with torch.no_grad():
            if hasattr(model, "training_grid"):  # a conditional model (superres): shown on real training items
                reals = torch.stack([self.dataset[i]["image"] for i in range(min(max(n // 3, 1), len(self.dataset)))])
                images = model.training_grid(reals, generators_for_seeds(list(range(len(reals)))))
            else:
                images = model.sample(n, cond, generators_for_seeds(list(range(n))))
        path = self.out / "samples" / f"step-{self.step:08d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image_grid(images.float().cpu(), path)
        self.check_health(model)
        return path

    def check_health(self, model: GenerativeModel, n: int = 200) -> list[str]:
        """Ask the model for divergence / mode-collapse warnings on fresh samples and a real
        batch; print them with their numbers and append them to ``warnings.txt``."""
        if type(model).health_warnings is GenerativeModel.health_warnings:
            return []
        from genimage.samplers.noise import generators_for_seeds

        k = self.mc.num_classes
        labels = torch.arange(n) % k if k else None
        with torch.no_grad():
            samples = model.sample(n, labels, generators_for_seeds(list(range(10_000, 10_000 + n)))).float().cpu()
        idx = list(range(min(n, len(self.dataset))))
        reals = torch.stack([self.dataset[i]["image"] for i in idx])
        real_labels = torch.tensor([self.dataset[i].get("label", -1) for i in idx]) if k else None
        classify = None
        if self.mc.training.get("data") == "builtin:digits":
            from genimage.metrics.features import load_feature_net, resize_images

            net = load_feature_net("digits")
            classify = lambda x: net.classify(resize_images(x, 8))  # noqa: E731
        recent = [{"step": s} | m for s, m in self.recent_metrics]
        warnings = model.health_warnings(recent, samples, labels, reals, real_labels, classify)
        if warnings:
            import sys

            lines = [f"step {self.step}: warning: {w}" for w in warnings]
            print("\n".join(lines), file=sys.stderr)
            with open(self.out / "warnings.txt", "a") as f:
                f.write("\n".join(lines) + "\n")
        return warnings


def _optimizer_stem(name: str, count: int) -> str:
    """File stem of an optimizer's state: ``optimizer`` for a single one (the layout of
    every diffusion checkpoint), ``optimizer-NAME`` when a family has several (GAN)."""
    return "optimizer" if count == 1 else f"optimizer-{name}"
