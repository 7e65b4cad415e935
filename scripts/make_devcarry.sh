#!/usr/bin/env bash
# Builds .devcarry/ for scripts/gpu_shapes_ab.sh (run here, where MiniLM and the package index are):
#   .devcarry/text/text-<key>/  caption states of the 250,000 shapes captions, 16 tokens, for the last
#                               layer and for layers 0,-1, stored float16 (24 MB instead of 47)
#   .devcarry/whl/              the diffusers wheel (the GPU machine has torch but not diffusers)
#   bash scripts/make_devcarry.sh [CACHE_DIR]     # default /work/runs/latent_cache
# Add "/.devcarry/" to .git/info/exclude and pass carry=[".devcarry"] to the device run.
set -euo pipefail
CACHE=${1:-/work/runs/latent_cache}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
for layers in "" "--text-layers 0,-1"; do  # one training step builds (or finds) the text cache entry
  genimage train --data builtin:shapes --length 250000 --out "$TMP/run$RANDOM" \
    --autoencoder src/genimage/weights/shapes/autoencoder --latent-cache "$CACHE" --backbone unet \
    --text-max-length 16 $layers --steps 1 --batch-size 8 --fp32 --no-progress 2>&1 | grep "^latent cache"
done
rm -rf .devcarry && mkdir -p .devcarry/text .devcarry/whl
python - "$CACHE" <<'EOF'
import json, shutil, sys
from pathlib import Path
from safetensors.torch import load_file, save_file
for entry in Path(sys.argv[1]).glob("text-*"):
    meta = json.loads((entry / "meta.json").read_text())
    if meta.get("max_length") != 16 or meta.get("num_prompts") != 915:
        continue
    dest = Path(".devcarry/text") / entry.name
    dest.mkdir()
    tensors = {k: v.half() if v.is_floating_point() else v for k, v in load_file(entry / "text.safetensors").items()}
    save_file(tensors, dest / "text.safetensors")
    for name in ("prompts.json", "meta.json"):
        shutil.copy(entry / name, dest / name)
    print(dest, meta.get("layers"))
EOF
python -m pip download --no-deps --only-binary=:all: -d .devcarry/whl "diffusers==$(python -c 'import diffusers; print(diffusers.__version__)')" -q
du -sh .devcarry/*
