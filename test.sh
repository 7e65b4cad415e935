#!/usr/bin/env bash
# Runs the genimage test suite; installs what it needs into ./.venv first.
#   bash test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")"
. scripts/bootstrap.sh
# Tests use tiny tensors: one thread per process avoids OpenMP overhead and oversubscription.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
python -m pytest "$@"
