# Sourced by setup.sh and test.sh: create ./.venv if needed, install CPU torch first (so no
# multi-GB CUDA build is pulled), then genimage with its dev extras; activate it; no downloads
# at run time.
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
. .venv/bin/activate
if ! python -c "import torch" 2>/dev/null; then
  python -m pip install -q "torch==2.13.0"
fi
python -m pip install -q -e ".[dev]"
# test-only: invisible-watermark without its declared deps (see pyproject's dev extras)
python -c "import imwatermark" 2>/dev/null || python -m pip install -q --no-deps "invisible-watermark>=0.2"
# The page's browser test drives Debian's chromium through playwright-python (from the dev
# extras; never `playwright install`). Install the browser only when missing and we are root
# with apt; on failure the test skips with its reason.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  { timeout 300 apt-get update -qq && DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq chromium; } \
    >/dev/null 2>&1 || echo "bootstrap: could not install chromium; the browser test will skip" >&2
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_PROGRESS_BARS=1
