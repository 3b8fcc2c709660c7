#!/usr/bin/env bash
# Make sure headless Chromium and its WebDriver (Debian's "chromium" and "chromium-driver") are installed,
# for the browser tests in tests/e2e. Prints the chromium binary's path on stdout; apt output only on failure.
# Safe to run repeatedly.
set -euo pipefail

found() { command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; }

if found; then
    command -v chromium
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure_chromium: chromium not found and apt-get is unavailable; install chromium and chromedriver" >&2
    exit 1
fi
SUDO=()
if [[ "$(id -u)" != "0" ]]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO=(sudo -n)
    else
        echo "ensure_chromium: chromium not found and not running as root (no passwordless sudo)" >&2
        exit 1
    fi
fi
apt_log="$(mktemp -t ensure-chromium-apt.XXXXXX)"
trap 'rm -f "$apt_log"' EXIT
echo "ensure_chromium: installing chromium and chromium-driver via apt-get (once per machine)" >&2
if ! {
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold chromium chromium-driver
} >"$apt_log" 2>&1 </dev/null; then
    echo "ensure_chromium: apt-get failed, last lines of its output:" >&2
    tail -n 40 "$apt_log" >&2
    exit 1
fi
if found; then
    command -v chromium
    exit 0
fi
echo "ensure_chromium: chromium was installed but chromium or chromedriver still cannot be found" >&2
exit 1
