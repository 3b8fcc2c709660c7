#!/usr/bin/env bash
# Make sure Debian's redis-server is installed, for the distributed end-to-end test (the CeleryExecutor's
# broker, started by the test itself on a free loopback port without persistence). Prints the binary's
# path on stdout; apt output only on failure. Safe to run repeatedly. Installing the package may start
# Debian's own redis service on port 6379; the tests never use it.
set -euo pipefail

found() { command -v redis-server >/dev/null 2>&1; }

if found; then
    command -v redis-server
    exit 0
fi
# shellcheck source=scripts/apt_install.sh
source "$(dirname "${BASH_SOURCE[0]}")/apt_install.sh"
apt_install ensure_redis redis-server
if found; then
    command -v redis-server
    exit 0
fi
echo "ensure_redis: redis-server was installed but cannot be found" >&2
exit 1
