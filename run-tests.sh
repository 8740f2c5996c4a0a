#!/usr/bin/env bash
# The one test command. On a fresh machine it creates .venv (unless a virtualenv
# is active), installs the package with its test extras, then runs ruff, the
# Sphinx docs build with warnings as errors, and the whole pytest suite (browser
# tests included: Debian's chromium is installed with apt-get when missing and
# this runs as root).
# Extra arguments go to pytest (./run-tests.sh -k event).
set -euo pipefail
cd "$(dirname "$0")"

if [ -z "${VIRTUAL_ENV:-}" ]; then
    [ -x .venv/bin/python ] || python3 -m venv .venv
    # shellcheck disable=SC1091
    . .venv/bin/activate
fi

if ! command -v chromium >/dev/null 2>&1; then
    # The browser tests drive Debian's chromium (Playwright never downloads one).
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "== installing chromium (apt-get)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q chromium >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }
    fi
fi
if command -v chromium >/dev/null 2>&1; then
    export FLASK_NOTIFICATIONS_REQUIRE_BROWSER=1  # present: the browser tests must run
fi

echo "== installing .[tests]"
python -m pip install --quiet --disable-pip-version-check -e '.[tests]'

echo "== ruff"
ruff check .
ruff format --check .

echo "== docs (sphinx -W)"
sphinx-build -W --keep-going -q -b html docs docs/_build/html

echo "== pytest"
python -m pytest "$@"
