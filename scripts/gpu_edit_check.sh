#!/usr/bin/env bash
# Editing, upscaling and the web service on CUDA (session 8), one prepared command on a lent GPU
# machine (carry [".devcarry/whl", ".devcarry/web"]: diffusers, and FastAPI with what it needs,
# as Python 3.12 wheels). Digits only: MiniLM does not travel (see gpu_suite.sh).
set -u
cd "$(dirname "$0")/.."
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
  .devcarry/whl/*.whl .devcarry/web/*.whl || exit 1
export PYTHONPATH=/tmp/site
export PYTHONPATH=$PWD/src:${PYTHONPATH:-} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
G="python3 -m genimage.cli.main"
W=$(mktemp -d)
$G sample --model digits -n 2 --label 3 --out-dir $W/s --device cuda | tail -1
python3 -c "
from PIL import Image; import numpy as np
m = np.zeros((8, 8), np.uint8); m[:, 4:] = 255; Image.fromarray(m).save('$W/mask.png')"
for args in "--strength 0.6" "--mask $W/mask.png --resample 2" "--extend 2" "--upscale 2"; do
  $G edit $W/s/0000.png --model digits --label 8 --device cuda $args -o $W/e.png | head -1
  extra=""; case "$args" in --mask*) extra="--mask $W/mask.png";; esac
  $G replay $W/e.png --init $W/s/0000.png $extra | tail -1
done
python3 - <<'PY'
import base64
from fastapi.testclient import TestClient
from genimage.serve.app import create_app
from genimage.serve.studio import Studio
c = TestClient(create_app(Studio(default_model="digits", device="cuda")))
print("health", c.get("/api/health").json())
r = c.post("/api/generate", json={"label": "5", "n": 3})
print("generate", r.status_code, [im["record"].get("device", "cpu") for im in r.json()["images"]])
png = base64.b64decode(r.json()["images"][0]["png_base64"])
r = c.post("/api/edit", files={"image": ("a.png", png, "image/png")}, data={"label": "2", "upscale": "2"})
print("edit upscale", r.status_code, r.json()["images"][0]["record"]["edit"])
PY
