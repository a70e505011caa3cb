"""The record to beat: a number, a ``submission.json`` or a folder of training logs, read into
per-seed values (:class:`Baseline`) for the significance test (:mod:`._significance`)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from golfsweep.errors import GolfsweepError
from golfsweep.worker import parse_log_file, seed_from_filename

__all__ = ["Baseline", "BaselineRun", "finite", "load_baseline"]

_METRICS = ("val_bpb", "val_loss")
# Key names the records use for the same thing, most specific first.
_BPB_KEYS = ("val_bpb", "mean_val_bpb", "mean_bpb")
_LOSS_KEYS = ("val_loss", "mean_val_loss", "mean_val_loss_nats", "val_loss_sliding")
_SEED_BPB_KEYS = ("val_bpb", "bpb", "mean_bpb")
_SEED_LOSS_KEYS = ("val_loss", "loss", "val_loss_nats")
_PER_SEED_KEYS = ("seed_results", "seeds", "seed_scores")
_LOG_SUFFIXES = (".log", ".txt")


@dataclass(frozen=True)
class BaselineRun:
    """One seed of a baseline; either value may be unknown."""

    seed: int | None
    val_loss: float | None
    val_bpb: float | None
    source: str = ""


@dataclass(frozen=True)
class Baseline:
    """What a config is compared with: per-seed values when known, else stated means only."""

    source: str
    runs: tuple[BaselineRun, ...] = ()
    stated_val_loss: float | None = None
    stated_val_bpb: float | None = None
    notes: tuple[str, ...] = ()

    def values(self, metric: str) -> list[float]:
        return [v for v in (getattr(r, metric) for r in self.runs) if v is not None]

    def mean(self, metric: str) -> float | None:
        """Mean over the per-seed values when there are any (what the test uses), else the stated mean."""
        vals = self.values(metric)
        if vals:
            return sum(vals) / len(vals)
        return self.stated_val_loss if metric == "val_loss" else self.stated_val_bpb

    @property
    def ratio(self) -> float | None:
        """val_loss / val_bpb of the baseline itself (nats per token over bits per byte)."""
        loss, bpb = self.mean("val_loss"), self.mean("val_bpb")
        return loss / bpb if loss is not None and bpb else None

    def describe(self) -> str:
        parts = []
        for metric, unit in (("val_loss", " nats"), ("val_bpb", "")):
            m = self.mean(metric)
            if m is not None:
                n = len(self.values(metric))
                parts.append(f"mean {metric} {m:.8g}{unit} ({n} seed{'s' if n != 1 else ''})" if n
                             else f"{metric} {m:.8g}{unit} (mean only)")
        return f"{self.source}: " + ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "mean_val_loss": self.mean("val_loss"),
            "mean_val_bpb": self.mean("val_bpb"),
            "stated_val_loss": self.stated_val_loss,
            "stated_val_bpb": self.stated_val_bpb,
            "runs": [asdict(r) for r in self.runs],
            "notes": list(self.notes),
        }


def load_baseline(x: float | str | Path, metric: str = "val_bpb") -> Baseline:
    """A baseline from a number (``metric``: val_bpb, or val_loss in nats), a submission.json,
    one training log, or a folder of logs (each ``*.log``/``*.txt`` is one seed)."""
    if metric not in _METRICS:
        raise GolfsweepError(f"--baseline-metric: must be one of {', '.join(_METRICS)}, got {metric!r}")
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return _baseline_number(float(x), metric, str(x))
    path = Path(x)
    if path.is_dir():
        return _baseline_folder(path)
    if path.is_file():
        if path.suffix in _LOG_SUFFIXES:
            return _baseline_logs(str(path), [path])
        return _baseline_json(path)
    try:
        value = float(str(x))
    except ValueError:
        raise GolfsweepError(f"--baseline: must be a number, a submission.json or a folder of logs "
                             f"(no such file or folder), got {str(x)!r}") from None
    return _baseline_number(value, metric, str(x))


def _baseline_number(value: float, metric: str, text: str) -> Baseline:
    if not math.isfinite(value) or value <= 0:
        raise GolfsweepError(f"--baseline: a number must be positive and finite, got {text}")
    if metric == "val_loss":
        return Baseline(source=f"{metric}={text}", stated_val_loss=value)
    return Baseline(source=f"{metric}={text}", stated_val_bpb=value)


def _baseline_folder(path: Path) -> Baseline:
    logs = sorted(p for p in path.iterdir()
                  if p.is_file() and p.suffix in _LOG_SUFFIXES and p.name != "requirements.txt")
    if logs:
        return _baseline_logs(str(path), logs)
    jsons = sorted(path.glob("submission*.json"))
    if jsons:
        return _baseline_json(jsons[0])
    raise GolfsweepError(f"--baseline: a folder must hold *.log/*.txt training logs or a submission.json, "
                         f"got {str(path)!r}")


def _baseline_logs(source: str, logs: Sequence[Path]) -> Baseline:
    runs, notes = [], []
    for p in logs:
        parsed = parse_log_file(p)
        bpb, loss = _finite(parsed.val_bpb), _finite(parsed.val_loss)
        if bpb is None and loss is None:
            notes.append(f"{p.name}: skipped, no finite final val_bpb/val_loss")
            continue
        seed = parsed.seed if parsed.seed is not None else seed_from_filename(p.name)
        runs.append(BaselineRun(seed=seed, val_loss=loss, val_bpb=bpb, source=p.name))
    if not runs:
        raise GolfsweepError(f"--baseline: no log has a final val_bpb/val_loss line, got {source!r}")
    seeds = [r.seed for r in runs if r.seed is not None]
    dup = sorted({s for s in seeds if seeds.count(s) > 1})
    if dup:
        notes.append(f"seed(s) {', '.join(map(str, dup))} appear in more than one log; each log counts as one run")
    return Baseline(source=source, runs=tuple(runs), notes=tuple(notes))


def _baseline_json(path: Path) -> Baseline:
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GolfsweepError(f"--baseline: must be a readable submission.json ({exc}), got {str(path)!r}") from None
    if not isinstance(d, Mapping):
        raise GolfsweepError(f"--baseline: a submission.json must hold a JSON object, got {str(path)!r}")
    stated_bpb = _first_number(d, _BPB_KEYS)
    stated_loss = _first_number(d, _LOSS_KEYS)
    runs = _per_seed_runs(d)
    if stated_bpb is None and stated_loss is None and not runs:
        raise GolfsweepError(f"--baseline: submission.json has no val_bpb/val_loss (keys tried: "
                             f"{', '.join(_BPB_KEYS + _LOSS_KEYS + _PER_SEED_KEYS)}), got {str(path)!r}")
    b = Baseline(source=str(path), runs=tuple(runs), stated_val_loss=stated_loss, stated_val_bpb=stated_bpb)
    notes = []
    for metric, stated in (("val_bpb", stated_bpb), ("val_loss", stated_loss)):
        vals = b.values(metric)
        if stated is not None and vals and abs(stated - sum(vals) / len(vals)) > 5e-5:
            notes.append(f"stated {metric} {stated:.8g} differs from the mean of its per-seed values "
                         f"{sum(vals) / len(vals):.8g}; the per-seed values are used")
    return Baseline(source=b.source, runs=b.runs, stated_val_loss=stated_loss, stated_val_bpb=stated_bpb,
                    notes=tuple(notes))


def _per_seed_runs(d: Mapping[str, Any]) -> list[BaselineRun]:
    seed_ids = d.get("seeds")
    seed_ids = seed_ids if isinstance(seed_ids, list) and all(_is_int(s) for s in seed_ids) else None
    for key in _PER_SEED_KEYS:
        v = d.get(key)
        entries: list[tuple[Any, Any]] = []
        if isinstance(v, Mapping):
            entries = list(v.items())
        elif isinstance(v, list) and v and all(isinstance(e, Mapping) for e in v):
            entries = [(e.get("seed"), e) for e in v]
        elif key != "seeds" and isinstance(v, list) and v and all(_is_number(e) for e in v):
            ids = seed_ids if seed_ids is not None and len(seed_ids) == len(v) else [None] * len(v)
            entries = list(zip(ids, v))
        runs = []
        for seed, e in entries:
            if isinstance(e, Mapping):
                loss, bpb = _first_number(e, _SEED_LOSS_KEYS), _first_number(e, _SEED_BPB_KEYS)
            else:
                loss, bpb = None, _finite(e) if _is_number(e) else None
            if loss is None and bpb is None:
                continue
            runs.append(BaselineRun(seed=_as_seed(seed), val_loss=loss, val_bpb=bpb, source=key))
        if runs:
            return runs
    return []


def _finite(x: Any) -> float | None:
    if x is None or not _is_number(x):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _is_int(x: Any) -> bool:
    return (isinstance(x, int) and not isinstance(x, bool)) or (isinstance(x, str) and x.strip().isdigit())


def _as_seed(x: Any) -> int | None:
    return int(x) if _is_int(x) else None


def _first_number(d: Mapping[str, Any], keys: Sequence[str]) -> float | None:
    for k in keys:
        v = _finite(d.get(k))
        if v is not None and v > 0:
            return v
    return None


finite = _finite
