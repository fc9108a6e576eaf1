#!/usr/bin/env bash
# Build the documentation site (mkdocs-material + mkdocstrings, from the docstrings) into ./site,
# in strict mode (any warning fails), or serve it with live reload.
#
#   bash scripts/docs.sh          # build ./site (open site/index.html)
#   bash scripts/docs.sh serve    # http://127.0.0.1:8000, rebuilt on every edit
#
# Needs the dev extras in ./.venv: `bash scripts/setup.sh dev` (CI does this first).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/mkdocs ]; then
  echo "docs: .venv/bin/mkdocs not found; run 'bash scripts/setup.sh dev' first" >&2
  exit 1
fi
export NO_MKDOCS_2_WARNING=1
case "${1:-build}" in
  build) .venv/bin/mkdocs build --strict --site-dir site ;;
  serve) .venv/bin/mkdocs serve --strict ;;
  *) echo "usage: bash scripts/docs.sh [build|serve]" >&2; exit 2 ;;
esac
