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
# shellcheck source=scripts/apt_install.sh
source "$(dirname "${BASH_SOURCE[0]}")/apt_install.sh"
apt_install ensure_chromium chromium chromium-driver
if found; then
    command -v chromium
    exit 0
fi
echo "ensure_chromium: chromium was installed but chromium or chromedriver still cannot be found" >&2
exit 1
