#!/usr/bin/env bash
# Set up gradkit in ./.venv with the given extras (default: bench).
#
#   bash scripts/setup.sh          # the library + `gradkit bench`
#   bash scripts/setup.sh dev      # + test tools and test-only reference packages
#
# - Inside an active virtualenv ($VIRTUAL_ENV), installs there and links ./.venv to it.
# - Installs torch==2.13.0 (the CPU build on the project's machines) only when no torch is
#   importable: an already-installed torch is left alone. Uses pip and venv, not uv (uv ignores
#   the local wheel and downloads a multi-GB CUDA build).
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-bench}"

if [ -n "${VIRTUAL_ENV:-}" ] && [ ! -e .venv ]; then
  ln -s "$VIRTUAL_ENV" .venv
elif [ ! -x .venv/bin/python ]; then
  "${PYTHON:-python3}" -m venv .venv
fi
py=.venv/bin/python

if "$py" -c "import torch" 2>/dev/null; then
  echo "setup: using the installed torch $("$py" -c 'import torch; print(torch.__version__)')"
else
  "$py" -m pip install --quiet "torch==2.13.0"
fi
"$py" -m pip install --quiet --upgrade "pip>=23"
"$py" -m pip install --quiet ".[${extras}]"
echo "setup: gradkit installed in $(cd .venv && pwd -P) with extras [${extras}]"
