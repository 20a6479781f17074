#!/usr/bin/env bash
# Set up a fresh virtual environment and run the whole test suite (what CI runs).
# Installs nirdeploy with its test extras and the vendor oracles used by the differential
# tests: xylosim (C++, builds from source: needs g++ and the Python headers), Rockpool
# (AGPL-3.0; a test-only oracle, installed without its optional dependencies), sinabs, and Lava's
# fixed-point models for Loihi 2 in a Python 3.10 side environment (scripts/lava_env.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
"$PY" -m venv "$VENV"
. "$VENV/bin/activate"
python -m pip install -q --upgrade pip
python -m pip install -q -e '.[test,torch,fast]'  # pytest, lxml (JUnit schema tests), hypothesis (property-based safety tests); CPU torch, snnTorch, nir, nirtorch; numba (Loihi 2 engine)
python -m pip install -q 'xylosim==0.1.3' 'scipy' 'scikit-learn==1.9.1'  # scikit-learn: the bundled digits data set
python -m pip install -q --no-deps 'rockpool==3.1.0'
# Sinabs (Speck oracle and frontend) and Norse (frontend) go in without their dependencies: every
# sinabs requires samna (the installer stub) and 3.x pins nir<=1.0.4; Norse pulls torchvision and
# a CUDA torch. What they import at run time is pinned here.
python -m pip install -q 'matplotlib==3.11.2'
python -m pip install -q --no-deps 'norse==1.1.0' 'sinabs==3.1.3'
# N-MNIST loader: tonic without its audio stack (librosa, numba); what `import tonic` needs is pinned here
python -m pip install -q 'tqdm==4.70.1' 'requests==2.34.2'
python -m pip install -q --no-deps 'tonic==1.7.0' 'importRosbag==1.0.4'
# samna from the public index is an installer stub that must never be imported here
python -m pip uninstall -y -q samna >/dev/null 2>&1 || true
# Lava (lava-nc, Python 3.10 only) in a side environment: the Loihi 2 oracle
bash scripts/lava_env.sh
export NIRDEPLOY_REQUIRE_ORACLES=1
set +e
python -m pytest -q "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
