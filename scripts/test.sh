#!/usr/bin/env bash
# Set up with the dev extras, build the wheel, install it, and run the test suite and the
# doctests against the *installed* package from a temporary directory (so the source tree
# cannot shadow it). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd -P)
bash scripts/setup.sh dev
py="$repo/.venv/bin/python"

rm -rf "$repo/dist"
"$py" -m build --wheel --no-isolation --outdir "$repo/dist" "$repo" >/dev/null
"$py" -m pip install --quiet --force-reinstall --no-deps "$repo"/dist/gradkit-*.whl

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
GRADKIT_REQUIRE_INSTALLED="$repo" "$py" -m pytest -c "$repo/pyproject.toml" --rootdir "$repo" \
  -p no:cacheprovider "$repo/tests" "$@"
GRADKIT_REQUIRE_INSTALLED="$repo" "$py" -m pytest -c "$repo/pyproject.toml" --rootdir "$repo" \
  -p no:cacheprovider --doctest-modules --pyargs gradkit -q
