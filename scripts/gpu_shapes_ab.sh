#!/usr/bin/env bash
# One prepared run on a lent GPU machine (session 4): three trainings side by side on one GPU.
#   A  shapes text-to-image, caption states of MiniLM's last layer (the bundled model's recipe)
#   B  the same with layers 0 and -1 concatenated (--text-layers 0,-1)
#   CD unguided consistency distillation of the digits model, batch 512 (issue 6 item 5)
# The machine has no package index and no MiniLM: diffusers travels as a wheel and the caption
# states as text-cache entries (.devcarry/, built here by scripts/make_devcarry.sh, stored fp16),
# used through scripts/train_with_cached_text.py. Runs on CPU too with small settings:
#   MINUTES=0.2 LENGTH=250000 LATENTS=/work/runs/latent_cache/latents-... OUT=/tmp/o bash scripts/gpu_shapes_ab.sh
set -u
OUT=${OUT:-/tmp/gpu_out}; W=${WORK:-/tmp/gw}; MIN=${MINUTES:-5}; LEN=${LENGTH:-250000}; PY=${PYTHON:-python3}
BATCH=${BATCH:-512}; LR=${LR:-1e-3}
mkdir -p "$OUT" "$W/cache"
if ! $PY -c "import diffusers" 2>/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .devcarry/whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD/src:${PYTHONPATH:-} PYTHONUNBUFFERED=1
cp -r .devcarry/text/text-* "$W/cache/"
if [ -n "${LATENTS:-}" ]; then ln -sfn "$LATENTS" "$W/cache/"; fi
nvidia-smi -L 2>/dev/null; $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
ENTRIES=$(ls -d "$W"/cache/text-*)
SHAPES="--data builtin:shapes --length $LEN --autoencoder src/genimage/weights/shapes/autoencoder --latent-cache $W/cache
 --backbone unet --preset small --set block_out_channels=[32,64] --set attention_levels=[true,true] --set norm_num_groups=16
 --set attention_head_dim=32 --text-max-length 16 --fp32 --no-progress --guidance 3.0 --sample-steps 8 --guidance-interval 0.6,1"
TRAIN="--steps 1000000 --batch-size $BATCH --lr $LR --warmup-steps 500 --ema-decay 0.9995 --checkpoint-every 2000 --max-minutes $MIN"

# Preflight: builds the latent cache, 20 steps on the device, checkpoint, sample grid, bundle.
t0=$(date +%s)
$PY scripts/train_with_cached_text.py $ENTRIES -- $SHAPES --text-layers 0,-1 --steps 20 --batch-size $BATCH \
  --checkpoint-every 10 --out "$W/pre" > "$OUT/pre.log" 2>&1 || { tail -40 "$OUT/pre.log"; exit 1; }
$PY scripts/bundle_model.py "$W/pre/checkpoints/step-00000020" "$W/pre_bundle" || exit 1
echo "preflight ok in $(( $(date +%s) - t0 ))s"

OMP_NUM_THREADS=4 $PY scripts/train_with_cached_text.py $ENTRIES -- $SHAPES $TRAIN --out "$W/A" > "$OUT/A.log" 2>&1 &
OMP_NUM_THREADS=4 $PY scripts/train_with_cached_text.py $ENTRIES -- $SHAPES $TRAIN --text-layers 0,-1 --out "$W/B" > "$OUT/B.log" 2>&1 &
OMP_NUM_THREADS=4 $PY -m genimage.cli.main train --data builtin:digits --family consistency --teacher digits \
  --set teacher_guidance=1 --set weighting=uniform --lr 5e-5 --batch-size 512 --warmup-steps 0 --steps 1000000 \
  --max-minutes "$MIN" --checkpoint-every 2000 --fp32 --no-progress --out "$W/CD" > "$OUT/CD.log" 2>&1 &
wait
for r in A B CD; do
  latest=$(cat "$W/$r/checkpoints/latest" 2>/dev/null) || { echo "$r: no checkpoint"; tail -5 "$OUT/$r.log"; continue; }
  $PY scripts/bundle_model.py "$W/$r/checkpoints/$latest" "$W/bundle_$r" > /dev/null || continue
  cp "$W/$r/metrics.jsonl" "$W/$r/run.json" "$W/bundle_$r/"
  cp "$W/$r"/samples/*.png "$W/bundle_$r/" 2>/dev/null
  tar -cf "$OUT/$r.tar" -C "$W" "bundle_$r"
  echo "$r: $latest; $(tail -1 "$W/$r/metrics.jsonl")"
done
