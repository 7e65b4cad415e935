#!/usr/bin/env bash
# Runs the genimage test suite; installs what it needs into ./.venv first.
#   bash test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")"
. scripts/bootstrap.sh
# The page's browser test drives Debian's chromium through playwright-python (from the dev
# extras; never `playwright install`). Install the browser only when missing and we are root
# with apt; test.sh only, not setup.sh;
# on failure the test skips with its reason.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  { timeout 300 apt-get update -qq && DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq chromium; } \
    >/dev/null 2>&1 || echo "test.sh: could not install chromium; the browser test will skip" >&2
fi
# Tests use tiny tensors: one thread per process avoids OpenMP overhead and oversubscription.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
python -m pytest "$@"
