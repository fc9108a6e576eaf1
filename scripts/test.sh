#!/usr/bin/env bash
# Set up with the dev extras, build the wheel, install it, and run the test suite and the
# doctests against the *installed* package from a temporary directory (so the source tree
# cannot shadow it). Extra arguments go to pytest.
#
# The browser test of report.html (tests/test_html_report.py) drives Debian's chromium at
# /usr/bin/chromium through Playwright; when it is missing and this runs as root with apt-get,
# it is installed here (about 75 s). Elsewhere the test skips, with a warning banner.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd -P)
bash scripts/setup.sh dev

if [ -x /usr/bin/chromium ]; then
  echo "test.sh: browser test uses /usr/bin/chromium ($(/usr/bin/chromium --version 2>/dev/null || echo 'version unknown'))"
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "test.sh: /usr/bin/chromium is missing; installing Debian's chromium for the browser test:"
  echo "test.sh:   apt-get update -qq && apt-get install -y -qq chromium"
  if ! { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }; then
    echo "test.sh: ERROR: installing chromium failed (see above); the browser test of report.html needs it" >&2
    exit 1
  fi
  echo "test.sh: installed $(/usr/bin/chromium --version 2>/dev/null || echo chromium)"
else
  echo "test.sh: WARNING: /usr/bin/chromium is missing and cannot be installed here (needs root" >&2
  echo "test.sh: WARNING: and apt-get): the browser test of report.html will be SKIPPED." >&2
  echo "test.sh: WARNING: install it with 'sudo apt-get install -y chromium'." >&2
fi
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
