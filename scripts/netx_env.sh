#!/usr/bin/env bash
# Create the HEAVY, opt-in Python 3.10 environment with lava-dl (netx) to check that Lava's netx
# loads and runs nirdeploy's network.net export. lava-dl 0.6.0 pulls a CUDA build of torch and
# about 5.6 GB of wheels and takes minutes: it is NOT part of scripts/test.sh. Then:
#
#   bash scripts/netx_env.sh                                   # creates .venv-netx (NETX_VENV overrides)
#   NIRDEPLOY_NETX_PYTHON=.venv-netx/bin/python python -m pytest -q tests/test_loihi2_netx.py
#
# Delete the environment afterwards (rm -rf .venv-netx) to free the disk.
set -euo pipefail
cd "$(dirname "$0")/.."
NETX_VENV=${NETX_VENV:-.venv-netx}
. scripts/py310.sh
if [ -z "$PY310" ]; then
  echo "netx_env.sh: no Python 3.10 found (set PYTHON310); lava-dl needs it" >&2
  exit 1
fi
"$PY310" -m venv "$NETX_VENV"
"$NETX_VENV/bin/python" -m pip install -q --upgrade pip
"$NETX_VENV/bin/python" -m pip install -q 'lava-nc==0.10.0' 'lava-dl==0.6.0' 'numpy<2'
"$NETX_VENV/bin/python" -m pip install -q -e . 'numpy<2'
"$NETX_VENV/bin/python" -c 'import lava.lib.dl.netx; print("netx_env.sh: ready")'
