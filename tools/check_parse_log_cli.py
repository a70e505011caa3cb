"""Check `golfsweep parse-log --json` against ../shared/pg-records/EXPECTED.json (developer tool).

    python tools/check_parse_log_cli.py [--root ../shared/pg-records]

Runs the CLI once over every log of every folder's seed group and compares the per-seed values
(metric_label, val_bpb, val_loss, bytes_total, train_time_ms, seed as printed in the log).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

FIELDS = {"metric_label": "metric_label", "val_bpb": "val_bpb", "val_loss": "val_loss",
          "bytes_total": "bytes_total", "train_time_ms": "train_time_ms", "seed": "seed_in_log"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "pg-records")
    args = ap.parse_args()
    folders = json.loads((args.root / "EXPECTED.json").read_text())["folders"]
    runs = [r for f in folders.values() for r in f["runs"]]
    paths = [str(args.root / r["path"]) for r in runs]
    out = subprocess.run([sys.executable, "-c", "from golfsweep.cli import main; main()", "parse-log", "--json",
                          *paths], capture_output=True, text=True, check=True).stdout
    got = {d["path"]: d for d in map(json.loads, out.splitlines())}
    ok_all = True
    for key, exp_key in FIELDS.items():
        bad = [(r["path"], got[p][key], r[exp_key]) for r, p in zip(runs, paths) if got[p][key] != r[exp_key]]
        ok_all &= not bad
        print(f"{key:14s} {len(runs) - len(bad)}/{len(runs)} runs match" + "".join(f"\n  {b}" for b in bad))
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
