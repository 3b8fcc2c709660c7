#!/usr/bin/env bash
# Make sure the PostgreSQL server binaries (initdb, pg_ctl, postgres, psql) are
# available, installing Debian's "postgresql" package when they are not.
#
# On success the script prints exactly one line on stdout: the directory that
# holds the server binaries (for example /usr/lib/postgresql/15/bin).
# Everything else goes to stderr, and apt output is only shown on failure.
#
# Safe to run repeatedly; it never starts, stops or touches a cluster.
set -euo pipefail

find_bindir() {
    local candidate best=""
    # Prefer Debian's versioned layout, highest major version first.
    for candidate in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4,4 -n -r); do
        if [[ -x "$candidate/initdb" && -x "$candidate/pg_ctl" ]]; then
            best="$candidate"
            break
        fi
    done
    if [[ -z "$best" ]] && command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        best="$(dirname "$(readlink -f "$(command -v initdb)")")"
    fi
    [[ -n "$best" ]] && printf '%s\n' "$best"
}

if bindir="$(find_bindir)"; then
    printf '%s\n' "$bindir"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure_postgres: initdb not found and apt-get is unavailable; install PostgreSQL manually" >&2
    exit 1
fi

SUDO=()
if [[ "$(id -u)" != "0" ]]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO=(sudo -n)
    else
        echo "ensure_postgres: initdb not found and not running as root (no passwordless sudo)" >&2
        exit 1
    fi
fi

apt_log="$(mktemp -t ensure-postgres-apt.XXXXXX)"
trap 'rm -f "$apt_log"' EXIT

echo "ensure_postgres: installing postgresql via apt-get (this happens once per machine)" >&2
export DEBIAN_FRONTEND=noninteractive
if ! {
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold postgresql
} >"$apt_log" 2>&1 </dev/null; then
    echo "ensure_postgres: apt-get failed, last lines of its output:" >&2
    tail -n 40 "$apt_log" >&2
    exit 1
fi

if bindir="$(find_bindir)"; then
    printf '%s\n' "$bindir"
    exit 0
fi
echo "ensure_postgres: postgresql was installed but initdb still cannot be found" >&2
exit 1
