# Sourced by lava_env.sh and netx_env.sh: sets PY310 to a Python 3.10 interpreter (PYTHON310, then
# pyenv's 3.10.13, then python3.10 on PATH), or to "" when there is none. Lava needs 3.10 exactly.
PY310=${PYTHON310:-/root/.pyenv/versions/3.10.13/bin/python3}
if [ ! -x "$PY310" ]; then
  PY310=$(command -v python3.10 || true)
fi
if [ -n "$PY310" ] && ! "$PY310" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null; then
  PY310=""
fi
