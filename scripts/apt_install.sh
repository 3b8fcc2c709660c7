#!/usr/bin/env bash
# Sourced by scripts/ensure_*.sh: apt_install WHO PACKAGE... installs Debian packages non-interactively
# (as root, or through passwordless sudo), quietly: apt's output is shown only when it fails. Returns
# non-zero, with the reason on stderr prefixed by WHO, when apt-get is missing or cannot be run.

apt_install() {
    local who="$1"
    shift
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "$who: $* missing and apt-get is unavailable; install them manually" >&2
        return 1
    fi
    local sudo=()
    if [[ "$(id -u)" != "0" ]]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            sudo=(sudo -n)
        else
            echo "$who: $* missing and not running as root (no passwordless sudo)" >&2
            return 1
        fi
    fi
    local log
    log="$(mktemp -t "$who-apt.XXXXXX")"
    echo "$who: installing $* via apt-get (once per machine)" >&2
    local install=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@")
    if ! {
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q && "${sudo[@]}" "${install[@]}"
    } >"$log" 2>&1 </dev/null; then
        # An earlier install that was killed half-way leaves dpkg "interrupted": finish it, then try once more.
        if grep -q "dpkg was interrupted" "$log" && {
            "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive dpkg --configure -a && "${sudo[@]}" "${install[@]}"
        } >>"$log" 2>&1 </dev/null; then
            rm -f "$log"
            return 0
        fi
        echo "$who: apt-get failed, last lines of its output:" >&2
        tail -n 40 "$log" >&2
        rm -f "$log"
        return 1
    fi
    rm -f "$log"
}
