"""Developer check: the audit's verdict on every script of ``../shared/pg-scripts`` against its
``EXPECTED.json`` (real training scripts from the Parameter Golf repository; not part of the suite).

    python tools/check_pg_scripts.py [--shared ../shared] [-v]

Prints one line per script (OK/BAD, seconds, verdict, expected), the findings behind every wrong
verdict (all findings with -v), the median and max audit time, and ``N/M correct``. Exits 1 unless
every verdict matches.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from golfsweep.audit import AuditInputError, audit_file  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    ap.add_argument("-v", "--verbose", action="store_true", help="show findings and notes of every script")
    args = ap.parse_args()
    root = args.shared / "pg-scripts"
    expected = json.loads((root / "EXPECTED.json").read_text())
    ok, times = 0, []
    for rel, want in expected.items():
        t0 = time.perf_counter()
        try:
            report = audit_file(root / rel)
            verdict = report.verdict.value
        except AuditInputError as e:
            report, verdict = None, f"error ({e})"
        dt = time.perf_counter() - t0
        times.append(dt)
        good = verdict == want["verdict"]
        ok += good
        print(f"{'OK ' if good else 'BAD'} {dt:5.2f}s {verdict:8} expected {want['verdict']:8} {rel}")
        if report is not None and (args.verbose or not good):
            for f in report.findings:
                where = f" [{f.source}]" if f.source else ""
                print(f"      {f.severity.value} {f.rule.value} line {f.line}{where}: {f.message[:220]}")
            for n in report.notes:
                print(f"      note: {n[:220]}")
    print(f"audit time per script: median {statistics.median(times):.2f}s, max {max(times):.2f}s")
    print(f"{ok}/{len(expected)} correct")
    return 0 if ok == len(expected) else 1


if __name__ == "__main__":
    sys.exit(main())
