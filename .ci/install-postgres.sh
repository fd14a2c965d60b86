#!/usr/bin/env bash
# Make sure the PostgreSQL *server* binaries (initdb, pg_ctl) exist, for the tests
# marked `postgres` (see tests/postgres_cluster.py, which searches the same way).
# Debian/Ubuntu keep them off PATH, in /usr/lib/postgresql/<version>/bin.
set -euo pipefail

find_pg_ctl() {
    local bindir candidate
    if command -v pg_config >/dev/null 2>&1; then
        # libpq-dev alone ships pg_config without the server: check pg_ctl is there.
        bindir="$(pg_config --bindir 2>/dev/null || true)"
        if [[ -n "$bindir" && -x "$bindir/pg_ctl" ]]; then
            echo "$bindir/pg_ctl"
            return 0
        fi
    fi
    # Newest version first.
    for candidate in $(printf '%s\n' /usr/lib/postgresql/*/bin/pg_ctl | sort -rV); do
        if [[ -x "$candidate" ]]; then
            echo "$candidate"
            return 0
        fi
    done
    command -v pg_ctl
}

# Root (as on CI) needs no sudo; a normal user does.
sudo=()
if [[ "$(id -u)" -ne 0 ]]; then
    sudo=(sudo)
fi

packages=()
if ! find_pg_ctl >/dev/null; then
    packages+=(postgresql)
fi
# As root, the tests run the server as the `postgres` user via runuser (util-linux).
if ! command -v runuser >/dev/null 2>&1 && [[ ! -x /usr/sbin/runuser ]]; then
    packages+=(util-linux)
fi

if [[ ${#packages[@]} -eq 0 ]]; then
    echo "install-postgres: found $(find_pg_ctl)"
    exit 0
fi

"${sudo[@]}" apt-get update -qq
# `env` because sudo would drop a plain DEBIAN_FRONTEND=... prefix.
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends "${packages[@]}" >/dev/null
if ! pg_ctl="$(find_pg_ctl)"; then
    echo "install-postgres: installed ${packages[*]}, but still no pg_ctl" >&2
    exit 1
fi
echo "install-postgres: installed ${packages[*]}; pg_ctl is $pg_ctl"
