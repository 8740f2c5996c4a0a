#!/usr/bin/env bash
# Runs the demo, examples/microblog, on a fresh machine: creates .venv if missing,
# installs .[demo], then starts an embedded real Redis (unless REDIS_URL is set),
# a debugging SMTP server that prints the mails, one Celery worker and the gevent
# web server on PORT (default 5000). Ctrl-C stops all.
set -euo pipefail
cd "$(dirname "$0")"

if [ -z "${VIRTUAL_ENV:-}" ]; then
    [ -x .venv/bin/python ] || python3 -m venv .venv
    # shellcheck disable=SC1091
    . .venv/bin/activate
fi
python -m pip install --quiet --disable-pip-version-check -e '.[demo]'
exec python examples/run_demo.py
