"""``genimage train``: train a model on a built-in dataset or an image folder."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from genimage.cli.common import echo_json, handle_errors, parse_key_values
from genimage.errors import GenimageError


def ckpt_folder(out: Path) -> Path | None:
    """The newest checkpoint of run folder ``out``."""
    from genimage.training.checkpoint import find_latest_checkpoint

    return find_latest_checkpoint(out / "checkpoints")


def parse_text_layers(value: str | None) -> tuple[int, ...] | None:
    """``--text-layers "0,-1"`` -> ``(0, -1)``; ``None`` stays ``None`` (the last layer)."""
    if value is None:
        return None
    from genimage.conditioning.text import check_text_layers

    try:
        layers = [int(v) for v in value.split(",")]
    except ValueError:
        raise GenimageError(f"--text-layers takes comma-separated integers such as 0,-1, got {value!r}") from None
    return check_text_layers(layers, None)


@handle_errors
def train(
    data: Annotated[str, typer.Option(help="builtin:digits | builtin:shapes | builtin:photos | an image folder")],
    out: Annotated[Path, typer.Option(help="Run folder (checkpoints, samples, metrics)")],
    family: Annotated[str, typer.Option(help="Model family: diffusion | consistency | reflow | gan | vae | normalizing-flow | autoencoder | superres (x F upscaler conditioned on the low-resolution image; --set factor=4) | control (a ControlNet for --base)")] = "diffusion",
    teacher: Annotated[Optional[str], typer.Option(help="Teacher model (bundled name or folder) for --family consistency (distillation) or reflow", show_default="none")] = None,
    objective: Annotated[str, typer.Option(help="Diffusion objective: ddpm-eps | ddpm-v | edm | flow-matching | rectified-flow")] = "flow-matching",
    backbone: Annotated[str, typer.Option(help="dit | unet")] = "dit",
    preset: Annotated[str, typer.Option(help="Architecture size: tiny | small | base (diffusion); ct-tiny (a whole recipe for --family consistency without --teacher); the family's presets otherwise")] = "small",
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Backbone config override KEY=VALUE, or a family setting for --family consistency/reflow (e.g. segments=2, intervals=6, teacher_substeps=3, grid=uniform, weighting=uniform, teacher_guidance=1) (repeatable)", show_default="none")] = None,
    cond: Annotated[str, typer.Option(help="auto | label | text | none")] = "auto",
    path: Annotated[Optional[str], typer.Option(help="Noise path override (vp-cosine, vp-linear, edm, linear)", show_default="the objective's")] = None,
    image_size: Annotated[Optional[int], typer.Option(help="Training image side in pixels", show_default="the dataset's: 8 digits, 32 shapes, photos and folders")] = None,
    length: Annotated[Optional[int], typer.Option(help="Number of items for procedural datasets", show_default="the dataset's")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Optimizer steps", show_default="1000, or the family's")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Images per step", show_default="64, or the family's")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Peak learning rate (AdamW)", show_default="3e-4, or the family's")] = None,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay")] = 0.0,
    warmup_steps: Annotated[Optional[int], typer.Option(help="Learning-rate warm-up steps", show_default="100, or the family's")] = None,
    lr_schedule: Annotated[str, typer.Option(help="Learning rate after warm-up: constant | cosine | linear (decays over --steps to --min-lr-ratio x --lr; --resume keeps --steps)")] = "constant",
    min_lr_ratio: Annotated[float, typer.Option(help="Final learning rate of a cosine/linear --lr-schedule, as a fraction of --lr")] = 0.0,
    grad_clip: Annotated[Optional[float], typer.Option(help="Gradient-norm clip (0 = off)", show_default="1.0, or the family's")] = None,
    ema_decay: Annotated[Optional[float], typer.Option(help="EMA decay", show_default="0.999, or the family's")] = None,
    bf16: Annotated[Optional[bool], typer.Option("--bf16/--fp32", help="bfloat16 autocast; default: auto (bf16 only on GPUs and CPUs with AMX/AVX512-BF16)")] = None,
    cond_drop: Annotated[Optional[float], typer.Option(help="Conditioning dropout for classifier-free guidance", show_default="0.1, or the preset's")] = None,
    seed: Annotated[int, typer.Option(help="Seed for init, data order and noise")] = 0,
    sample_every: Annotated[int, typer.Option(help="Steps between sample grids (0 = end only)")] = 0,
    checkpoint_every: Annotated[int, typer.Option(help="Steps between checkpoints")] = 500,
    keep_checkpoints: Annotated[int, typer.Option(help="Checkpoints kept on disk (the newest; at least 1)")] = 2,
    sampler: Annotated[str, typer.Option(help="Default sampler stored with the model")] = "euler",
    sample_steps: Annotated[int, typer.Option(help="Default sampling steps stored with the model")] = 16,
    guidance: Annotated[float, typer.Option(help="Default guidance stored with the model")] = 1.0,
    guidance_interval: Annotated[Optional[str], typer.Option(help="Default guidance interval LO,HI stored with the model (path times; see generate --help)", show_default="none: everywhere")] = None,
    text_max_length: Annotated[int, typer.Option(help="Text tokens kept per caption (text conditioning)")] = 32,
    text_encoder: Annotated[str, typer.Option(help="Frozen text encoder for text conditioning: minilm (bundled) or a local CLIP / T5 / BERT-like transformers folder")] = "minilm",
    text_layers: Annotated[Optional[str], typer.Option(help="Text-encoder hidden layers whose states are concatenated, e.g. 0,-1 (0 = embeddings, -1 = last)", show_default="the last")] = None,
    on_bad_file: Annotated[str, typer.Option(help="skip | fail (image folders)")] = "skip",
    resume: Annotated[bool, typer.Option(help="Continue from the latest checkpoint in --out")] = False,
    init_from: Annotated[Optional[str], typer.Option(help="Fine-tune: start a new run from this model's weights (bundled name, model, run or checkpoint folder; same architecture) with fresh optimizer and step count", show_default="none")] = None,
    lora: Annotated[Optional[int], typer.Option(help="Train a LoRA of this rank on the --init-from model's UNet (a genimage text UNet or an imported Stable Diffusion model) instead of a model; writes --out/pytorch_lora_weights.safetensors (diffusers' LoRA layout) for generate --lora (defaults there: --steps 100, --lr 1e-4, --batch-size 4)", show_default="none: train a model")] = None,
    tensorboard: Annotated[bool, typer.Option(help="Write TensorBoard logs")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar")] = True,
    compile_: Annotated[bool, typer.Option("--compile/--no-compile", help="torch.compile the network (faster steps after a compile of seconds to minutes; resume with the same setting)")] = False,
    deterministic: Annotated[bool, typer.Option("--deterministic/--nondeterministic", help="on CUDA: deterministic kernels, so runs and --resume replay bit for bit (default); --nondeterministic is faster there. CPU runs are deterministic either way")] = True,
    max_minutes: Annotated[float, typer.Option(help="Stop after this many minutes of training (0 = no limit); --resume continues")] = 0.0,
    max_bad_steps: Annotated[int, typer.Option(help="Steps with a NaN/inf or exploding loss or gradient are skipped with a warning; this many in a row stop the run, keeping the last good checkpoint (0 = never stop)")] = 5,
    autoencoder: Annotated[Optional[str], typer.Option(help="Train in this autoencoder's latent space (a --family autoencoder model/run folder; latent diffusion)", show_default="none: pixel space")] = None,
    latent_cache: Annotated[Optional[Path], typer.Option(help="Folder of the latent/text caches for --autoencoder", show_default="~/.cache/genimage/latents")] = None,
    estimate: Annotated[bool, typer.Option("--estimate/--no-estimate", help="Before training, measure warm-up steps (on copies; the run is unchanged) and print seconds/step, images/s, peak memory and the time the steps need")] = True,
    ignore_memory: Annotated[bool, typer.Option("--ignore-memory", help="Train even when the estimated peak memory exceeds the available memory")] = False,
    grad_accum: Annotated[int, typer.Option(help="Micro-batches per optimizer step (gradient accumulation): equals a --grad-accum times larger --batch-size")] = 1,
    nproc: Annotated[int, typer.Option(help="Data-parallel processes on this machine, through torchrun (one CPU thread each unless OMP_NUM_THREADS is set); a step then trains on nproc x grad-accum x batch-size images, the same as one process with that batch")] = 1,
    recipe_mode: Annotated[str, typer.Option("--recipe", help="auto: for an image folder with no --backbone/--preset/--objective/--set/--autoencoder, measure and print a CPU-sized recipe (latent space through the bundled photo autoencoder, backbone, steps for the --max-minutes budget or 15 min, lr, warm-up, EMA, augmentation); none: the general defaults")] = "auto",
    flip: Annotated[Optional[bool], typer.Option("--flip/--no-flip", help="Random horizontal flips of folder images", show_default="on with the folder recipe, else off")] = None,
    random_crop: Annotated[Optional[bool], typer.Option("--random-crop/--center-crop", help="Random or centre square crop of folder images", show_default="random with the folder recipe, else centre")] = None,
    base: Annotated[Optional[str], typer.Option(help="--family control: the frozen base model (bundled name or folder) the control model is for", show_default="none")] = None,
    control: Annotated[Optional[str], typer.Option(help="--family control: control kind(s), comma-separated: edges | segmentation | sketch (e.g. edges,sketch)", show_default="none")] = None,
    control_variant: Annotated[str, typer.Option(help="--family control: controlnet (trainable encoder copy) | adapter (control-image encoder only)")] = "controlnet",
    ctx: typer.Context = None,
) -> None:
    """Train a model of any family on a dataset. Resumable bit for bit with --resume."""
    if lora is not None:
        if nproc > 1:
            raise GenimageError("--lora trains in one process; drop --nproc")
        from genimage.interop.lora import train_lora

        if not init_from:
            raise GenimageError("--lora needs --init-from MODEL: the base model whose UNet the LoRA adapts")
        folder = train_lora(init_from, data, out, rank=lora, steps=steps or 100, lr=lr or 1e-4,
                            batch_size=batch_size or 4, seed=seed, progress=progress)
        typer.echo(f"wrote {folder}/ (LoRA rank {lora}; apply with --lora {folder})")
        return
    if family == "control":
        from genimage.training.control import run_from_cli

        run_from_cli(base=base, control=control, variant=control_variant, data=data, out=out, steps=steps,
                     batch_size=batch_size, lr=lr, warmup_steps=warmup_steps, cond_drop=cond_drop,
                     ema_decay=ema_decay, seed=seed, checkpoint_every=checkpoint_every, max_minutes=max_minutes,
                     grad_clip=grad_clip, resume=resume, log=typer.echo)
        return
    from genimage.cli.launch import maybe_relaunch

    status = maybe_relaunch("train", nproc)
    if status is not None:
        raise typer.Exit(status)
    from genimage.utils.distributed import env_world

    rank, world, _ = env_world()
    main_rank = rank == 0
    if world > 1:  # the process group now, so that rank 0 can build shared caches first
        import torch
        from accelerate import PartialState

        PartialState(cpu=not torch.cuda.is_available())
    from genimage.data.source import open_dataset
    from genimage.models.config import ModelConfig
    from genimage.models.presets import backbone_config
    from genimage.objectives import OBJECTIVES
    from genimage.paths import PATHS
    from genimage.samplers import SAMPLERS
    from genimage.training.loop import Trainer, TrainConfig

    from genimage.families import FAMILIES, load_all_families

    load_all_families()
    fam = FAMILIES.get(family)
    from genimage.cli.train_recipe import folder_recipe, given_options, save_recipe, wants_recipe

    given_opts = given_options(ctx)
    use_recipe, why_not = wants_recipe(recipe_mode, data, family, given_opts)
    if why_not and main_rank:
        typer.echo(why_not, err=True)
    layers = parse_text_layers(text_layers)
    live_text = None
    if text_encoder != "minilm" and Path(text_encoder).expanduser().is_dir():  # recorded so the model loads from anywhere
        text_encoder = str(Path(text_encoder).expanduser().resolve())
    if family in ("diffusion", "consistency", "superres"):
        spec = OBJECTIVES.get(objective)
        SAMPLERS.get(sampler)
        if path is not None:
            PATHS.get(path)
    if cond not in ("auto", "label", "text", "none"):
        raise GenimageError(f"--cond must be auto, label, text or none, got {cond!r}")
    options = {"length": length} if length is not None else {}
    if not data.startswith("builtin:"):
        options = {"on_bad_file": on_bad_file, **({} if flip is None else {"flip": flip}),
                   **({} if random_crop is None else {"crop": "random" if random_crop else "center"})}
    elif flip is not None or random_crop is not None:
        raise GenimageError("--flip and --random-crop are for image folders; built-in datasets have their own options")
    recipe = None
    if use_recipe:  # measured CPU-sized defaults; what the user gave wins
        recipe, dataset = folder_recipe(lambda **kw: open_dataset(data, seed=seed, **{**kw, **options}),
                                        image_size=image_size, max_minutes=max_minutes, bf16_given=bf16, out=out,
                                        resume=resume, echo=lambda m: typer.echo(m, err=True) if main_rank else None)
        r = recipe.settings
        backbone, autoencoder, image_size = r["backbone"], r["autoencoder"], r["image_size"]
        cond = cond if "cond" in given_opts else r["cond"]
        steps, batch_size, lr, warmup_steps, ema_decay, bf16 = (
            v if v is not None else r[k] for v, k in ((steps, "steps"), (batch_size, "batch_size"), (lr, "lr"),
                                                      (warmup_steps, "warmup_steps"), (ema_decay, "ema_decay"), (bf16, "bf16")))
        lr_schedule, min_lr_ratio, checkpoint_every, max_minutes = (
            v if k in given_opts else r[k] for v, k in ((lr_schedule, "lr_schedule"), (min_lr_ratio, "min_lr_ratio"),
                                                        (checkpoint_every, "checkpoint_every"), (max_minutes, "max_minutes")))
    else:
        dataset = open_dataset(data, image_size=image_size, seed=seed, **options)
    if cond == "auto":
        cond = "label" if dataset.num_classes else "text" if dataset.has_captions and "text" in fam.conditioning else "none"
    if cond == "label" and not dataset.num_classes:
        raise GenimageError(f"--cond label: {data} has no class labels")
    if cond == "text" and not dataset.has_captions:
        raise GenimageError(f"--cond text: {data} has no captions")
    if cond not in fam.conditioning:
        raise GenimageError(f"--family {family} supports conditioning {' | '.join(fam.conditioning)}, not {cond!r}")
    num_classes = dataset.num_classes if cond == "label" else 0
    latent = None
    if autoencoder is not None:
        if family != "diffusion":
            raise GenimageError(f"--autoencoder trains --family diffusion (any --objective) on latents, not {family}")
        from genimage.latent.training import prepare_latent_training

        import contextlib

        first = PartialState().main_process_first() if world > 1 else contextlib.nullcontext()
        with first:  # rank 0 writes the caches; the others then read them
            from genimage.data.views import AugmentedViews

            views = recipe.settings.get("views", 1) if recipe is not None else 1
            latent = prepare_latent_training(autoencoder, AugmentedViews(dataset, views) if views > 1 else dataset, out, text_encoder=text_encoder if cond == "text" else None,
                                             text_max_length=text_max_length, text_layers=layers, cache_dir=latent_cache,
                                             progress=progress and main_rank)
        if main_rank:
            typer.echo(f"latent cache {'hit' if latent.cache.hit else 'written'}: {latent.cache.folder} "
                       f"({len(latent.dataset)} latents of shape {latent.latent_shape}, {latent.cache.seconds:.1f}s)"
                       + ("" if latent.text is None else
                          f"; caption states {'hit' if latent.text_hit else 'written'} ({len(latent.text)} prompts)"),
                       err=True)
    geometry = latent.dataset if latent is not None else dataset  # what the backbone sees
    overrides = parse_key_values(set_, "--set")
    if recipe is not None:
        overrides = {**recipe.settings["set"], **overrides}
    common = dict(image_size=dataset.image_size, channels=dataset.channels, num_classes=num_classes,
                  class_names=dataset.class_names if num_classes else None, family=family,
                  training={"data": data, **(latent.training_record() if latent is not None else {})},
                  **(latent.model_fields() if latent is not None else {}))
    students = ("consistency", "reflow")  # families trained against a --teacher
    family_keys = {"mode", "intervals", "intervals_start", "intervals_end", "double_every", "distill", "pairs", "pair_seed",
                   "teacher_steps", "teacher_guidance", "teacher_sampler", "schedule", "weighting", "total_steps",
                   "p_mean", "p_std", "segments", "teacher_solver", "teacher_substeps", "grid"}
    if teacher is not None and family not in students:
        raise GenimageError(f"--teacher is for --family consistency or reflow, not {family}")
    if family == "reflow" and teacher is None:
        raise GenimageError("--family reflow needs --teacher MODEL (the flow whose paths it straightens)")
    if family in students:
        family_config = {k: overrides.pop(k) for k in list(overrides) if k in family_keys}
    recipe_train: dict = {}  # trainer settings of a whole CT recipe (--preset ct-tiny)
    if teacher is not None:
        from genimage.families.teacher import student_config_from_teacher

        if overrides:
            raise GenimageError(f"--set {sorted(overrides)}: a distilled student keeps its teacher's architecture; "
                                f"family settings are {sorted(family_keys)}")
        if family == "consistency":  # Alg. 1's 2 steps, or a multistep model's S DDIM steps
            from genimage.families.consistency import sampling_defaults

            sampling = sampling_defaults({"teacher": teacher, **family_config})
        else:
            sampling = dict(sampler="euler", schedule="uniform", guidance=1.0,
                            steps=1 if family_config.get("distill") else 4)
        mc = student_config_from_teacher(teacher, family, family_config, **sampling)
        if (mc.num_classes > 0) != (num_classes > 0) or (mc.image_size, mc.channels) != (dataset.image_size, dataset.channels):
            raise GenimageError(f"teacher {teacher!r} ({mc.image_size}px, {mc.channels} channels, {mc.num_classes} classes) "
                                f"does not match --data {data} ({dataset.image_size}px, {dataset.channels} channels, "
                                f"{num_classes} classes)")
        mc.training["data"] = data
        if mc.autoencoder:
            raise GenimageError(f"teacher {teacher!r} is a latent model; distilling latent models is not supported")
    elif family == "consistency" and preset in fam.presets:  # a whole CT recipe (backbone, schedule, trainer)
        from genimage.families.consistency import ct_preset_model_config, ct_preset_train_settings

        if cond == "text":
            raise GenimageError(f"--preset {preset} is class-conditional or unconditional; use --cond label or none")
        mc = ct_preset_model_config(preset, image_size=dataset.image_size, channels=dataset.channels,
                                    num_classes=num_classes, class_names=common["class_names"], overrides=overrides,
                                    family_config=family_config, training=common["training"])
        recipe_train = ct_preset_train_settings(preset)
    elif family == "superres":  # a conditional denoiser: --objective and --path apply (genimage.families.superres)
        from genimage.families.superres import superres_model_config

        mc = superres_model_config(preset, image_size=dataset.image_size, channels=dataset.channels,
                                   objective=objective, path=path, overrides=overrides, sampler=sampler,
                                   steps=sample_steps, training=common["training"])
    elif family in ("diffusion", "consistency"):
        text_dim, text_len = 0, text_max_length
        if cond == "text":  # the backbone's text width is the encoder's (times the concatenated layers)
            if latent is not None and latent.text is not None:
                text_dim = latent.text.dim
            else:
                from genimage.conditioning.text import TextEncoder

                live_text = TextEncoder.from_name(text_encoder, max_length=text_max_length, layers=layers)
                text_dim = live_text.dim
        bcfg = backbone_config(backbone, preset, image_size=geometry.image_size, channels=geometry.channels,
                               num_classes=num_classes, text_dim=text_dim, max_text_len=text_len, overrides=overrides)
        mc = ModelConfig(backbone=backbone, backbone_config=bcfg, objective=objective, path=path or spec.path,
                         prediction=spec.prediction, text_encoder=text_encoder if cond == "text" else None,
                         text_max_length=text_len, text_layers=list(layers) if layers and cond == "text" else None,
                         sampler=sampler, schedule="uniform", steps=sample_steps,
                         guidance=guidance, **common)
        if guidance_interval is not None:
            from genimage.cli.sample import parse_interval

            mc.guidance_interval = list(parse_interval(guidance_interval))
        if family == "consistency":  # consistency training from scratch: linear path, velocity network
            from genimage.families.consistency import as_training_config

            mc = as_training_config(mc, family_config)
    else:
        if preset not in fam.presets:
            raise GenimageError(f"--family {family} has presets {' | '.join(sorted(fam.presets))}, not {preset!r}")
        bcfg = {**fam.presets[preset], "image_size": dataset.image_size, "channels": dataset.channels,
                "num_classes": num_classes}
        unknown = set(overrides) - set(bcfg)
        if unknown:
            raise GenimageError(f"--set: unknown {family} settings {sorted(unknown)}; known: {sorted(bcfg)}")
        bcfg.update(overrides)
        mc = ModelConfig(backbone=family, backbone_config=bcfg, objective="", path="", prediction="",
                         steps=fam.train_defaults.get("sample_steps", 1), **common)
    defaults = {"steps": 1000, "batch_size": 64, "lr": 3e-4, "warmup_steps": 100, "ema_decay": 0.999, "grad_clip": 1.0,
                "cond_drop_prob": 0.1, **{k: v for k, v in fam.train_defaults.items() if k != "sample_steps"},
                **recipe_train}
    given = {"steps": steps, "batch_size": batch_size, "lr": lr, "warmup_steps": warmup_steps, "ema_decay": ema_decay,
             "grad_clip": grad_clip, "cond_drop_prob": cond_drop}
    steps, batch_size, lr, warmup_steps, ema_decay, grad_clip, cond_drop = (
        given[k] if given[k] is not None else defaults[k]
        for k in ("steps", "batch_size", "lr", "warmup_steps", "ema_decay", "grad_clip", "cond_drop_prob"))
    from genimage.utils.precision import resolve_bf16

    import torch

    bf16 = resolve_bf16(bf16, "cuda" if torch.cuda.is_available() else "cpu")  # the trainer's device
    tc = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, weight_decay=weight_decay, warmup_steps=warmup_steps,
                     lr_schedule=lr_schedule, min_lr_ratio=min_lr_ratio, grad_clip=grad_clip, ema_decay=ema_decay,
                     bf16=bf16, seed=seed, cond_drop_prob=cond_drop,
                     sample_every=sample_every, checkpoint_every=checkpoint_every, tensorboard=tensorboard,
                     progress=progress, max_minutes=max_minutes, compile=compile_,
                     deterministic=deterministic, max_bad_steps=max_bad_steps,
                     keep_checkpoints=keep_checkpoints, grad_accum=grad_accum)
    if init_from is not None and not resume:
        mc.training["init_from"] = str(init_from)
    if main_rank:
        echo_json("model", mc.to_dict())
        echo_json("training", {**dataclasses.asdict(tc), **({"processes": world} if world > 1 else {})})
    trainer = Trainer(mc, tc, latent.dataset if latent is not None else dataset, out, resume=resume, init_from=init_from)
    if latent is not None:
        latent.install_text_cache(trainer.conditioner)
    elif live_text is not None:  # loaded above for its width; the conditioner need not load it again
        trainer.conditioner._text_encoder = live_text
    out.mkdir(parents=True, exist_ok=True)
    if main_rank:  # the run's records: one writer
        from genimage.utils.atomic import atomic_write_text

        if recipe is not None:
            save_recipe(recipe, out)
        atomic_write_text(out / "run.json", json.dumps({"model": mc.to_dict(), "training": dataclasses.asdict(tc)},
                                                       indent=2), what="run record")
        from genimage.data.manifest import write_manifest

        write_manifest(dataset, out / "dataset_manifest.json")
        if getattr(dataset, "bad_files", None):
            dataset.write_bad_files_report(out / "bad_files.tsv")
            typer.echo(f"skipped {len(dataset.bad_files)} bad files (listed in {out / 'bad_files.tsv'})", err=True)
        typer.echo(f"parameters: {trainer.parameter_count():,}; "
                   f"starting at step {trainer.step} of {steps}" + (f" ({world} processes)" if world > 1 else ""))
        if estimate and not compile_ and world == 1:
            from genimage.training.estimate import estimate_and_check

            estimate_and_check(trainer, steps, max_minutes, ignore_memory, typer.echo)
    import signal

    def _stop(signum, frame):  # SIGTERM (kill, job schedulers) ends the run like Ctrl-C: checkpoint first
        raise KeyboardInterrupt

    def _stop_together(signum, frame):  # several processes: all stop after the same step, then checkpoint
        trainer.stop_requested = True

    handler = _stop_together if world > 1 else _stop
    previous = signal.signal(signal.SIGTERM, handler)
    previous_int = signal.signal(signal.SIGINT, handler) if world > 1 else None
    try:
        trainer.train()
        if trainer.stop_requested and trainer.step < steps:
            if main_rank:
                folder = ckpt_folder(out)
                typer.echo(f"\ninterrupted at step {trainer.step}; checkpoint saved to {folder}; continue with --resume",
                           err=True)
            raise typer.Exit(130)
    except KeyboardInterrupt:
        folder = trainer.save()
        typer.echo(f"\ninterrupted at step {trainer.step}; checkpoint saved to {folder}; continue with --resume", err=True)
        raise typer.Exit(130)
    finally:
        signal.signal(signal.SIGTERM, previous)
        if previous_int is not None:
            signal.signal(signal.SIGINT, previous_int)
        if world > 1 and torch.distributed.is_initialized():  # train() ended with a barrier
            torch.distributed.destroy_process_group()
    if not main_rank:
        return
    typer.echo(f"done: {trainer.step} steps in {trainer.wall_time:.0f}s; model: {out} (use --model {out})")
