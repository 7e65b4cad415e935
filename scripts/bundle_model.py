"""Turn a training checkpoint into a self-contained model folder (how the bundled models are made).

    python scripts/bundle_model.py runs/shapes_unet/checkpoints/step-00010000 src/genimage/weights/shapes \
        [--steps 8] [--guidance 3.0] [--guidance-interval 0.4,1] [--wall-time-s 5400] [--hardware "1x H100"]
        [--noise-mark-patterns 65536]

Copies the checkpoint's EMA weights (``model.safetensors``) and ``config.json``; a latent
model's autoencoder goes into ``DEST/autoencoder`` and the config points there (relative), so
the folder works wherever it is copied. Sampling defaults given here replace the stored ones.
``--wall-time-s`` records the total training time when the run was resumed across sessions
(the checkpoint only knows the time of its own process); ``--hardware`` records what it
was trained on, so a wall time is not read as a CPU time. ``--noise-mark-patterns M`` turns the
noise-space watermark on by default for the model's generations (``config.json``
``noise_mark``), for models where it was measured to be found at no quality cost.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from genimage.errors import GenimageError
from genimage.cli.sample import parse_interval
from genimage.models.config import ModelConfig
from genimage.models.io import WEIGHTS_FILE, save_model
from genimage.utils.weights import load_safetensors


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("dest", type=Path)
    ap.add_argument("--steps", type=int)
    ap.add_argument("--guidance", type=float)
    ap.add_argument("--guidance-interval")
    ap.add_argument("--wall-time-s", type=float)
    ap.add_argument("--hardware", help="what the model was trained on, recorded as training.hardware")
    ap.add_argument("--noise-mark-patterns", type=int,
                    help="mark the noise of the model's generations by default, over this many keyed sign patterns")
    args = ap.parse_args(argv)
    try:
        config = ModelConfig.load(args.checkpoint)
        state = load_safetensors(args.checkpoint / WEIGHTS_FILE)
        if args.steps is not None:
            config.steps = args.steps
        if args.guidance is not None:
            config.guidance = args.guidance
        if args.guidance_interval:
            config.guidance_interval = list(parse_interval(args.guidance_interval))
        if args.wall_time_s is not None:
            config.training["wall_time_s"] = args.wall_time_s
        if args.hardware:
            config.training["hardware"] = args.hardware
        if args.noise_mark_patterns is not None:
            if args.noise_mark_patterns < 1:
                raise GenimageError(f"--noise-mark-patterns must be at least 1, got {args.noise_mark_patterns}")
            config.noise_mark = {"patterns": args.noise_mark_patterns}
        if args.dest.exists():  # keep hand-written files such as MODEL_CARD.md, replace the model
            for name in ("config.json", WEIGHTS_FILE):
                (args.dest / name).unlink(missing_ok=True)
            shutil.rmtree(args.dest / "autoencoder", ignore_errors=True)
        save_model(args.dest, config, state)
    except GenimageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
