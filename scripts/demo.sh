#!/usr/bin/env bash
# Set up a fresh virtual environment and run the main job on the bundled example: the NIR
# paper's Braille RNN (exported from snnTorch, trained with subtractive reset) compiled for
# Xylo Audio 2 at dt = 1e-4 s, simulated bit-accurately and compared with the float reference.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
"$PY" -m venv "$VENV"
. "$VENV/bin/activate"
python -m pip install -q --upgrade pip
python -m pip install -q .
set -x
nirdeploy inspect examples/nir-corpus/braille_noDelay_noBias_subtract.nir
nirdeploy check examples/nir-corpus/braille_noDelay_noBias_subtract.nir --target all --dt 1e-4 --reset subtract || true
nirdeploy compile examples/nir-corpus/braille_noDelay_noBias_subtract.nir --target xylo:audio2 --dt 1e-4 --reset subtract -o out/braille-xylo --force
nirdeploy simulate out/braille-xylo --input examples/braille_input.npy -o out/braille-xylo-output.npy --compare-reference --force  # a rerun replaces its own output
