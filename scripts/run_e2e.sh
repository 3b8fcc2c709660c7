#!/usr/bin/env bash
# Run the end-to-end tests (real Airflow deployment on a private PostgreSQL).
#
#   scripts/run_e2e.sh [extra pytest args]
#
# PYTHON selects the interpreter (default: .venv/bin/python of the repository).
# Afterwards it checks that no e2e process was left behind.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
python="${PYTHON:-$repo/.venv/bin/python}"

"$repo/scripts/ensure_postgres.sh" >/dev/null
if ! "$python" -c 'import psycopg2, asyncpg' 2>/dev/null; then
    echo "run_e2e: the e2e tests need psycopg2-binary and asyncpg in $python" >&2
    exit 1
fi

status=0
"$python" -m pytest tests/e2e -m e2e "$@" </dev/null || status=$?
if ! "$repo/scripts/e2e_leftovers.sh"; then
    echo "run_e2e: processes were left behind by the e2e tests (see above)" >&2
    [[ $status -eq 0 ]] && status=1
fi
exit "$status"
