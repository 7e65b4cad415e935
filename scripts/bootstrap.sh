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
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_PROGRESS_BARS=1
