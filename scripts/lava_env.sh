#!/usr/bin/env bash
# Create the Python 3.10 side environment with Intel's Lava for the Loihi 2 oracle tests and the
# Lava path (nirdeploy_targets.loihi2.lava). Lava (lava-nc) requires Python >=3.10,<3.11 and
# numpy<2, so it cannot live in the main .venv. It installs in about a minute (~300 MB, no torch).
# nirdeploy itself is installed into it (editable) so that compiled folders can be read there.
#
#   bash scripts/lava_env.sh            # creates .venv-lava (LAVA_VENV overrides the path)
#
# Without a Python 3.10 it says so and exits 0: the oracle tests then skip with that reason,
# or fail when NIRDEPLOY_REQUIRE_ORACLES=1 (CI).
set -euo pipefail
cd "$(dirname "$0")/.."
LAVA_VENV=${LAVA_VENV:-.venv-lava}
. scripts/py310.sh
if [ -z "$PY310" ]; then
  echo "lava_env.sh: no Python 3.10 found (set PYTHON310=/path/to/python3.10); Lava needs it. Skipping." >&2
  exit 0
fi
if [ -x "$LAVA_VENV/bin/python" ] && "$LAVA_VENV/bin/python" -c 'import lava.proc.lif.process, nirdeploy_targets.loihi2.config' 2>/dev/null; then
  echo "lava_env.sh: $LAVA_VENV is ready" >&2
  exit 0
fi
"$PY310" -m venv "$LAVA_VENV"
"$LAVA_VENV/bin/python" -m pip install -q --upgrade pip
"$LAVA_VENV/bin/python" -m pip install -q 'lava-nc==0.10.0' 'numpy<2'
"$LAVA_VENV/bin/python" -m pip install -q -e . 'numpy<2'
"$LAVA_VENV/bin/python" -c 'import lava.proc.lif.process, nirdeploy_targets.loihi2.config; print("lava_env.sh: ready")'
