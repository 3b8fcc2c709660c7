#!/usr/bin/env bash
# List processes left behind by e2e Airflow deployments (tests/e2e/deployment.py).
#
#   scripts/e2e_leftovers.sh          # list them; exit 1 if there are any
#   scripts/e2e_leftovers.sh --kill   # SIGTERM them, SIGKILL after 5 s; exit 0
#
# A process counts as a leftover when its environment carries AIREITER_E2E_MARKER,
# its working directory is a deployment's "proc-cwd" directory (Airflow's
# setproctitle wipes the environment of forked processes, the cwd survives), or it
# is a PostgreSQL server of a throw-away e2e cluster (/tmp/aireiter-e2e-pg-*).
# Do not use --kill while e2e tests are running: it cannot tell live runs apart.
set -euo pipefail

mode="${1:-list}"
case "$mode" in
    list | --kill) ;;
    *)
        echo "usage: $0 [--kill]" >&2
        exit 2
        ;;
esac

find_leftovers() {
    local dir pid cwd state
    for dir in /proc/[0-9]*; do
        pid="${dir#/proc/}"
        [[ "$pid" == "$$" || "$pid" == "$BASHPID" ]] && continue
        state="$(sed -e 's/^.*) //' "$dir/stat" 2>/dev/null | cut -d' ' -f1)" || continue
        [[ -z "$state" || "$state" == "Z" ]] && continue
        if { tr '\0' '\n' <"$dir/environ"; } 2>/dev/null | grep -q '^AIREITER_E2E_MARKER='; then
            echo "$pid"
            continue
        fi
        cwd="$(readlink "$dir/cwd" 2>/dev/null || true)"
        cwd="${cwd% (deleted)}"
        if [[ "$cwd" == */proc-cwd || "$cwd" == */proc-cwd/* || "$cwd" == /tmp/aireiter-e2e-pg-* ]]; then
            echo "$pid"
            continue
        fi
        if { tr '\0' ' ' <"$dir/cmdline"; } 2>/dev/null | grep -q 'aireiter-e2e-pg-'; then
            echo "$pid"
        fi
    done
}

mapfile -t pids < <(find_leftovers)
if [[ ${#pids[@]} -eq 0 ]]; then
    echo "no e2e leftovers"
    exit 0
fi

for pid in "${pids[@]}"; do
    printf '%s\t%s\n' "$pid" "$({ tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | cut -c1-150)"
done

if [[ "$mode" == "list" ]]; then
    exit 1
fi

kill -TERM "${pids[@]}" 2>/dev/null || true
for _ in $(seq 50); do
    alive=0
    for pid in "${pids[@]}"; do
        [[ -e "/proc/$pid" ]] && alive=1
    done
    [[ $alive -eq 0 ]] && break
    sleep 0.1
done
kill -KILL "${pids[@]}" 2>/dev/null || true
echo "killed ${#pids[@]} process(es)"
