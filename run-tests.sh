#!/usr/bin/env bash
# The one test command. On a fresh machine it creates .venv (unless a virtualenv
# is active), installs the package with its test extras, then runs ruff, the
# Sphinx docs build with warnings as errors, and the whole pytest suite.
# Extra arguments go to pytest (./run-tests.sh -k event).
set -euo pipefail
cd "$(dirname "$0")"

if [ -z "${VIRTUAL_ENV:-}" ]; then
    [ -x .venv/bin/python ] || python3 -m venv .venv
    # shellcheck disable=SC1091
    . .venv/bin/activate
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
