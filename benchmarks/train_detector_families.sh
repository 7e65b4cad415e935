#!/usr/bin/env bash
# Tiny digits models of the families genimage has but does not bundle, for
# benchmarks/detector_generalization.py (issue 18 item 5). One thread, one after another.
#   OMP_NUM_THREADS=1 nohup nice -n 10 bash benchmarks/train_detector_families.sh /tmp/prov_runs &
# Bundled models stand in for the other two families: diffusion = `digits`,
# consistency = `digits-2step`. A run with a checkpoint is skipped.
set -euo pipefail
OUT=${1:-/tmp/prov_runs}
MIN=${MINUTES:-3}
mkdir -p "$OUT"
run() {  # name, args...
  local name=$1; shift
  if [ -e "$OUT/$name/checkpoints/latest" ]; then echo "skip $name"; return; fi
  echo "== $name $(date -u +%T)"
  genimage train --data builtin:digits --steps 1000000 --max-minutes "$MIN" --no-progress --out "$OUT/$name" "$@"
  echo "== $name done $(date -u +%T)"
}
run gan --family gan --preset tiny
run vae --family vae --preset tiny
run nf --family normalizing-flow --preset tiny
run reflow --family reflow --teacher digits --set pairs=1024 --lr 1e-4
