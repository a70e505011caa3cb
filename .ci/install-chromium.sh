#!/usr/bin/env bash
# Install headless Chromium for the report tests (tests/results/test_report.py) when it is missing.
# Called from .ci/run; a no-op where /usr/bin/chromium already exists.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
    echo "chromium: already installed ($(/usr/bin/chromium --version 2>/dev/null || echo unknown version))"
    exit 0
fi
bash "$(dirname "$0")/apt-install.sh" chromium chromium
/usr/bin/chromium --version
