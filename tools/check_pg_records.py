#!/usr/bin/env python
"""Check golfsweep's log parser against the Parameter Golf record logs.

Developer tool, not part of the test suite.  Every log listed in EXPECTED.json
(each folder's ``runs`` and, separately, its ``alt_groups`` runs) is parsed with the
DEFAULT label preference -- no per-folder hints -- and compared field by field with
the transcribed values.  Prints ``N/M runs match`` per field and lists mismatches.

    python tools/check_pg_records.py [--root /work/shared/pg-records] [-v]

Exit status is 0 when every compared field of every ``runs`` entry matches.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from golfsweep.worker._logparse import ParsedLog, parse_log_file, seed_from_filename  # noqa: E402

DEFAULT_ROOT = Path("/work/shared/pg-records")

# Fields of EXPECTED.json compared ("candidates" is candidate_metric_lines).
FIELDS = (
    "metric_label",
    "val_bpb",
    "val_loss",
    "bytes_total",
    "train_time_ms",
    "seed_in_log",
    "seed_in_filename",
    "eval_time_ms",
    "metric_line_no",
    "bytes_model",
    "stop_step",
    "candidates",
)
# The parser falls back to the last step line's train_time when no stopping_early
# line exists (a run that reached its iteration count); EXPECTED.json records null.
FALLBACK_FIELDS = ("train_time_ms", "stop_step")


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def _strip_stride(label: str) -> str:
    # EXPECTED's candidate labels keep a "stride:N" token that metric labels drop.
    return " ".join(tok for tok in label.split() if not tok.startswith("stride:"))


def _actual(run: dict, folder_dir: Path, parsed: ParsedLog, cache: dict) -> dict:
    def other(name: str) -> ParsedLog:
        path = folder_dir / name
        if path not in cache:
            cache[path] = parse_log_file(path)
        return cache[path]

    size_src = other(run["bytes_total_log"]) if run.get("bytes_total_log") else parsed
    time_src = other(run["train_time_log"]) if run.get("train_time_log") else parsed
    return {
        "metric_label": parsed.metric_label,
        "val_bpb": parsed.val_bpb,
        "val_loss": parsed.val_loss,
        "bytes_total": size_src.bytes_total,
        "train_time_ms": time_src.train_time_ms,
        "seed_in_log": parsed.seed,
        "seed_in_filename": seed_from_filename(run["log"]),
        "eval_time_ms": parsed.eval_time_ms,
        "metric_line_no": parsed.metric_line_no,
        "bytes_model": size_src.bytes_model,
        "stop_step": time_src.stop_step,
        "candidates": [(c.line_no, c.label, c.val_loss, c.val_bpb) for c in parsed.candidates],
    }


def _expected(run: dict) -> dict:
    exp = {f: run.get(f) for f in FIELDS if f != "candidates"}
    exp["candidates"] = [
        (c["line_no"], _strip_stride(c["label"]), c["val_loss"], c["val_bpb"])
        for c in run["candidate_metric_lines"]
    ]
    return exp


def _check_group(entries: list[tuple[str, dict, str | None]], root: Path, cache: dict):
    """Return per-field (matched, fallback-only, mismatches) over the given runs.

    Each entry is (folder key, run, label); ``label`` asks for that metric explicitly
    (alt groups report a second metric), ``None`` means the default preference.
    """
    stats = {f: [0, 0, []] for f in FIELDS}
    for folder_key, run, label in entries:
        folder_dir = root / folder_key
        path = root / run["path"]
        if label is None:
            if path not in cache:
                cache[path] = parse_log_file(path)
            parsed = cache[path]
        else:
            parsed = parse_log_file(path, metric_labels=[label])
        got = _actual(run, folder_dir, parsed, cache)
        exp = _expected(run)
        for f in FIELDS:
            if _same(got[f], exp[f]):
                stats[f][0] += 1
            elif f in FALLBACK_FIELDS and exp[f] is None and run.get("stop_line_no") is None:
                stats[f][1] += 1
                stats[f][2].append((run["path"], exp[f], got[f], "step-line fallback"))
            else:
                stats[f][2].append((run["path"], exp[f], got[f], ""))
    return stats


def _report(title: str, stats: dict, n: int, verbose: bool) -> bool:
    print(f"== {title}: {n} runs")
    ok = True
    for f, (matched, fallback, bad) in stats.items():
        note = f"  (+{fallback} differ only by the step-line fallback)" if fallback else ""
        print(f"  {f:<17} {matched}/{n} runs match{note}")
        real = [b for b in bad if not b[3]]
        ok &= not real
        for path, exp, got, why in bad if verbose or real else ():
            if f == "candidates" and not verbose:
                exp, got = f"{len(exp)} lines", f"{len(got)} lines"
            tag = f" [{why}]" if why else ""
            print(f"      {path}: expected {exp!r}, got {got!r}{tag}")
    return ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    ap.add_argument("-v", "--verbose", action="store_true", help="also list explained differences")
    args = ap.parse_args(argv)

    data = json.loads((args.root / "EXPECTED.json").read_text())
    runs: list[tuple[str, dict, str | None]] = []
    alts: list[tuple[str, dict, str | None]] = []
    seed_attr = [0, 0, []]
    for key, folder in data["folders"].items():
        runs += [(key, r, None) for r in folder["runs"]]
        for group in (folder.get("alt_groups") or {}).values():
            # An alt group is a second grouping of runs; when it reports a different
            # metric than the folder's runs, that metric is asked for by name.
            main_labels = {r["metric_label"] for r in folder["runs"]}
            label = group["metric_label"] if group["metric_label"] not in main_labels else None
            alts += [(key, r, label) for r in group["runs"]]

    cache: dict = {}
    ok = _report("runs", _check_group(runs, args.root, cache), len(runs), args.verbose)
    if alts:
        named = sum(1 for _, _, label in alts if label is not None)
        title = f"alt_groups runs ({named} parsed with their group's metric label named explicitly)"
        _report(title, _check_group(alts, args.root, cache), len(alts), args.verbose)

    # The record's attributed seed comes from the file name when it has one, else the log.
    for key, run, _ in runs:
        parsed = cache[args.root / run["path"]]
        attributed = seed_from_filename(run["log"])
        if attributed is None:
            attributed = parsed.seed
        if attributed == run["seed"]:
            seed_attr[0] += 1
        else:
            seed_attr[2].append((run["path"], run["seed"], attributed))
    print(
        "== attributed seed (file name, else log) vs record 'seed': "
        f"{seed_attr[0]}/{len(runs)} runs match"
    )
    for path, exp, got in seed_attr[2]:
        print(f"      {path}: expected {exp!r}, got {got!r}")
    # Informational: where the parser says it is unsure (does not change the exit status).
    warned = [(run["path"], w) for _, run, _ in runs for w in cache[args.root / run["path"]].warnings]
    print(f"== parser warnings: {len({p for p, _ in warned})}/{len(runs)} runs (informational)")
    for path, w in warned:
        print(f"      {path}: {w}")
    for key, run, _ in runs:
        if run["seed"] != run["seed_in_log"]:
            print(
                f"  note: {run['path']}: record seed {run['seed']} (file name)"
                f" != seed in log {run['seed_in_log']}"
            )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
