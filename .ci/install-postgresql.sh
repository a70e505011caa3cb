#!/usr/bin/env bash
# Install Debian's PostgreSQL server binaries for the storage tests (tests/pg.py starts a throwaway
# server from them for tests/results/test_store_postgres.py and tests/orchestrator/test_postgres_sweep.py).
# Called from .ci/run; a no-op where they are already installed.
set -euo pipefail

newest_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }

bin=$(newest_bin)
if [ -n "$bin" ] && [ -x "$bin/pg_ctl" ] && [ -x "$bin/initdb" ]; then
    echo "postgresql: already installed ($("$bin/postgres" --version))"
    exit 0
fi
bash "$(dirname "$0")/apt-install.sh" postgresql postgresql
bin=$(newest_bin)
echo "postgresql: installed ($("$bin/postgres" --version))"
