#!/usr/bin/env bash
# Sets up genimage in ./.venv on a fresh machine and runs the main job: text-to-image
# generation with the bundled default model (no training needed).
#   bash setup.sh                 # -> out/demo.png and out/prompts/0000.png ...
set -euo pipefail
cd "$(dirname "$0")"
. scripts/bootstrap.sh
mkdir -p out
genimage generate "a red circle to the left of a blue square" -o out/demo.png --seed 0
printf 'a green triangle above a yellow circle\nan orange square\na purple triangle below a blue circle\n' > out/prompts.txt
genimage generate --prompts out/prompts.txt --out-dir out/prompts --seed 0
genimage replay out/demo.png
