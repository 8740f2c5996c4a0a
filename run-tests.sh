#!/usr/bin/env bash
# The one test command. On a fresh machine it creates .venv (unless a virtualenv
# is active), installs the package with its test extras, then runs ruff, the
# Sphinx docs build with warnings as errors, and the whole pytest suite (browser
# and PostgreSQL tests included: Debian's chromium and postgresql are installed
# with apt-get when missing and this runs as root).
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
if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    # The inbox tests run on PostgreSQL too (their fixture starts its own cluster).
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "== installing postgresql (apt-get)"
        apt-get install -y -q postgresql >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null && apt-get install -y -q postgresql >/dev/null; }
    fi
fi
if ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    export FLASK_NOTIFICATIONS_REQUIRE_POSTGRES=1  # present: the PostgreSQL tests must run
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
