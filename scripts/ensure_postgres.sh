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

# shellcheck source=scripts/apt_install.sh
source "$(dirname "${BASH_SOURCE[0]}")/apt_install.sh"
apt_install ensure_postgres postgresql

if bindir="$(find_bindir)"; then
    printf '%s\n' "$bindir"
    exit 0
fi
echo "ensure_postgres: postgresql was installed but initdb still cannot be found" >&2
exit 1
