"""Is a config a new record? Improvement over a baseline in nats and bpb, with the challenge's test.

The rule: a new record must beat the previous one by at least 0.005 nats with p < 0.01. We test
H0: improvement ≤ 0.005 against H1: improvement > 0.005, one-sided —

* Welch's t-test (unequal variances) when the baseline has at least two per-seed values: the
  config's per-seed values are shifted by +0.005 and compared with the baseline's;
* a one-sample t-test of the config's per-seed values against ``baseline mean − 0.005`` when the
  baseline is only a number (or one run).

A baseline known only in bpb is converted to nats with a val_loss/val_bpb ratio (its own when it
states both, else the config's, which assumes the same tokenizer) and the row says so.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd
from scipy import stats

from golfsweep.results._stats import mean
from golfsweep.errors import GolfsweepError
from golfsweep.results._table import SweepData, summary_frame
from golfsweep.results._baseline import Baseline, BaselineRun, finite as _finite
from golfsweep.worker import RunState

MIN_IMPROVEMENT_NATS = 0.005
ALPHA = 0.01
MAX_SEEDS = 1000
_UNITS = ("nats", "bpb")

# --------------------------------------------------------------------------- the test

@dataclass(frozen=True)
class Significance:
    """One config against the baseline. Improvements are baseline − config (positive is better)."""

    trial: int | None
    params: dict[str, Any]
    n: int
    n_baseline: int
    unit: str
    min_improvement: float
    alpha: float
    mean_val_loss: float | None
    mean_val_bpb: float | None
    baseline_val_loss: float | None
    baseline_val_bpb: float | None
    improvement_nats: float | None
    improvement_bpb: float | None
    test: str  # "welch", "one-sample" or "none"
    t: float | None
    df: float | None
    p_value: float | None
    significant: bool
    seeds_needed: int | None
    seeds_needed_text: str
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["notes"] = list(self.notes)
        return d


def significance_of(val_loss: Sequence[float | None], val_bpb: Sequence[float | None], baseline: Baseline, *,
                    unit: str = "nats", min_improvement: float = MIN_IMPROVEMENT_NATS, alpha: float = ALPHA,
                    trial: int | None = None, params: Mapping[str, Any] | None = None) -> Significance:
    """Test one config, given its per-seed values (``val_loss[i]``/``val_bpb[i]`` are seed i; None: unknown).

    ``unit="nats"`` is the challenge's rule; ``unit="bpb"`` tests ``min_improvement`` in bpb instead
    (some early records state their p-value that way).
    """
    if unit not in _UNITS:
        raise GolfsweepError(f"unit: must be one of {', '.join(_UNITS)}, got {unit!r}")
    if not (0 < alpha < 1):
        raise GolfsweepError(f"alpha: must be in (0, 1), got {alpha}")
    pairs = [(_finite(l), _finite(b)) for l, b in zip(val_loss, val_bpb)]
    pairs = [(l, b) for l, b in pairs if l is not None or b is not None]
    notes: list[str] = []
    c_loss = [l for l, _ in pairs if l is not None]
    c_bpb = [b for _, b in pairs if b is not None]
    both = [(l, b) for l, b in pairs if l is not None and b is not None]
    c_ratio = (sum(l for l, _ in both) / sum(b for _, b in both)) if both else None

    base_loss, base_bpb, base_notes = _baseline_series(baseline, c_ratio)
    cand = _candidate_series(pairs, unit, baseline.ratio, notes)
    base = base_loss if unit == "nats" else base_bpb
    notes.extend(base_notes[unit])
    if c_ratio and baseline.ratio and abs(c_ratio / baseline.ratio - 1) > 0.01:
        notes.append(f"val_loss/val_bpb differs (config {c_ratio:.4f}, baseline {baseline.ratio:.4f}): "
                     f"different tokenizers, so nats are not comparable; compare bpb")

    mean_loss, mean_bpb = mean(c_loss), mean(c_bpb)
    b_mean_loss, b_mean_bpb = mean(base_loss), mean(base_bpb)
    imp_nats = None if mean_loss is None or b_mean_loss is None else b_mean_loss - mean_loss
    if imp_nats is None and mean_bpb is not None and b_mean_loss is not None and baseline.ratio:
        imp_nats = b_mean_loss - mean_bpb * baseline.ratio
    imp_bpb = None if mean_bpb is None or b_mean_bpb is None else b_mean_bpb - mean_bpb

    common = dict(trial=trial, params=dict(params or {}), n=len(pairs), n_baseline=len(baseline.runs),
                  unit=unit, min_improvement=min_improvement, alpha=alpha, mean_val_loss=mean_loss,
                  mean_val_bpb=mean_bpb, baseline_val_loss=b_mean_loss, baseline_val_bpb=b_mean_bpb,
                  improvement_nats=imp_nats, improvement_bpb=imp_bpb)
    if cand is None or not base:
        notes.append(f"no {'val_loss' if unit == 'nats' else 'val_bpb'} to compare "
                     f"(and no val_loss/val_bpb ratio to convert with)")
        return Significance(**common, test="none", t=None, df=None, p_value=None, significant=False,
                            seeds_needed=None, seeds_needed_text="-", notes=tuple(notes))
    if len(cand) < 2:
        notes.append(f"needs at least 2 completed seeds for a t-test, has {len(cand)}")
        return Significance(**common, test="none", t=None, df=None, p_value=None, significant=False,
                            seeds_needed=None, seeds_needed_text="needs >= 2 seeds", notes=tuple(notes))

    effect = mean(base) - mean(cand) - min_improvement
    if abs(effect) < 1e-12:  # exactly at the threshold, up to float rounding
        effect = 0.0
    welch = len(base) >= 2
    if not welch and len(baseline.runs) == 1:
        notes.append("baseline has one run: one-sample test against its value")
    s_c, s_b = _sd(cand), (_sd(base) if welch else 0.0)
    if s_c == 0 and s_b == 0:
        notes.append("every seed has the same value: no spread, the t-test is undefined")
        t = df = p = None
    elif welch:
        res = stats.ttest_ind(base, [v + min_improvement for v in cand], equal_var=False, alternative="greater")
        t, p = float(res.statistic), float(res.pvalue)
        df = float(getattr(res, "df", _welch_df(s_b, len(base), s_c, len(cand))))
    else:
        res = stats.ttest_1samp(cand, popmean=base[0] - min_improvement, alternative="less")
        # Report t with the sign of the improvement, like the Welch case.
        t, p, df = -float(res.statistic), float(res.pvalue), float(len(cand) - 1)
    significant = p is not None and p < alpha and effect > 0
    if significant:
        needed, text = None, "-"
    else:
        needed, text = _seeds_needed(effect, s_c, s_b if welch else None, alpha)
    return Significance(**common, test="welch" if welch else "one-sample", t=t, df=df, p_value=p,
                        significant=significant, seeds_needed=needed, seeds_needed_text=text, notes=tuple(notes))


def significance(data: SweepData, baseline: Baseline, *, unit: str = "nats",
                 min_improvement: float = MIN_IMPROVEMENT_NATS, alpha: float = ALPHA) -> list[Significance]:
    """One :class:`Significance` per config, in the summary table's order (best first).

    Only completed seeds count; a config with failed seeds is tested on the ones that completed.
    """
    df = summary_frame(data)
    by_trial: dict[int, list] = {}
    for r in data.runs:
        if r.state is RunState.COMPLETE and (r.val_bpb is not None or r.val_loss is not None):
            by_trial.setdefault(r.trial, []).append(r)
    out = []
    for _, row in df.iterrows():
        runs = by_trial.get(int(row["trial"]), [])
        out.append(significance_of([r.val_loss for r in runs], [r.val_bpb for r in runs], baseline, unit=unit,
                                   min_improvement=min_improvement, alpha=alpha, trial=int(row["trial"]),
                                   params=row["params"]))
    return out


def format_significance(data: SweepData, baseline: Baseline, fmt: str, **kwargs: Any) -> str:
    """The summary with significance columns, as ``md``, ``csv`` or ``json``."""
    if fmt not in ("md", "csv", "json"):
        raise GolfsweepError(f"--format: must be one of md, csv, json, got {fmt!r}")
    rows = significance(data, baseline, **kwargs)
    unit = kwargs.get("unit", "nats")
    delta = kwargs.get("min_improvement", MIN_IMPROVEMENT_NATS)
    alpha = kwargs.get("alpha", ALPHA)
    rule = (f"improvement >= {delta:g} {unit}, one-sided Welch t-test (one-sample when the baseline has no "
            f"per-seed values), significant when p < {alpha:g}")
    if fmt == "json":
        return json.dumps({"baseline": baseline.to_dict(), "rule": {"min_improvement": delta, "unit": unit,
                           "alpha": alpha, "text": rule}, "configs": [r.to_dict() for r in rows]}, indent=2)
    if fmt == "csv":
        return _flat(data, rows).to_csv(index=False)
    lines = [f"baseline: {baseline.describe()}", f"rule: {rule}"]
    lines += [f"note: {n}" for n in baseline.notes]
    if not rows:
        return "\n".join(lines + ["(no trials yet)"])
    # A note every row carries (a conversion, say) is said once above the table.
    common = [n for n in rows[0].notes if all(n in r.notes for r in rows)]
    lines += [f"note: {n}" for n in common]
    flat = _flat(data, [dataclasses.replace(r, notes=tuple(n for n in r.notes if n not in common)) for r in rows])
    header = list(flat.columns)
    lines += ["", "| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for _, row in flat.iterrows():
        lines.append("| " + " | ".join(_cell(c, row[c]) for c in header) + " |")
    return "\n".join(lines)


def _flat(data: SweepData, rows: list[Significance]) -> pd.DataFrame:
    n_seeds = len(data.seeds)
    summary = summary_frame(data)
    feasible = {} if summary.empty else {int(t): bool(f) for t, f in zip(summary["trial"], summary["feasible"])}
    records = []
    for r in rows:
        rec: dict[str, Any] = {"trial": r.trial}
        for name in data.param_names:
            rec[name] = r.params.get(name)
        rec.update({
            "n_ok/n_seeds": f"{r.n}/{n_seeds}",
            "mean_val_bpb": r.mean_val_bpb,
            "mean_val_loss": r.mean_val_loss,
            "improvement_nats": r.improvement_nats,
            "improvement_bpb": r.improvement_bpb,
            "test": r.test,
            "t": r.t,
            "df": r.df,
            "p_value": r.p_value,
            "significant": "yes" if r.significant else "no",
            "seeds_needed": r.seeds_needed_text,
            "feasible": "yes" if feasible.get(r.trial) else "no",
            "notes": "; ".join(r.notes),
        })
        records.append(rec)
    return pd.DataFrame(records)


# --------------------------------------------------------------------------- helpers

def _baseline_series(b: Baseline, cand_ratio: float | None) -> tuple[list[float], list[float], dict[str, list[str]]]:
    """The baseline's per-seed values (or its one mean) in nats and bpb, converting where one is missing."""
    own = b.ratio
    ratio, whose = (own, "its own") if own else (cand_ratio, "this config's")
    notes: dict[str, list[str]] = {"nats": [], "bpb": []}
    src = list(b.runs) or [BaselineRun(None, b.stated_val_loss, b.stated_val_bpb)]
    loss, bpb = [], []
    converted = {"nats": False, "bpb": False}
    for r in src:
        if r.val_loss is not None:
            loss.append(r.val_loss)
        elif r.val_bpb is not None and ratio:
            loss.append(r.val_bpb * ratio)
            converted["nats"] = True
        if r.val_bpb is not None:
            bpb.append(r.val_bpb)
        elif r.val_loss is not None and ratio:
            bpb.append(r.val_loss / ratio)
            converted["bpb"] = True
    if converted["nats"]:
        notes["nats"].append(f"baseline val_loss converted from val_bpb x {ratio:.6f} ({whose} val_loss/val_bpb)")
    if converted["bpb"]:
        notes["bpb"].append(f"baseline val_bpb converted from val_loss / {ratio:.6f} ({whose} val_loss/val_bpb)")
    return loss, bpb, notes


def _candidate_series(pairs: list[tuple[float | None, float | None]], unit: str, base_ratio: float | None,
                      notes: list[str]) -> list[float] | None:
    out = []
    converted = False
    for l, b in pairs:
        if unit == "nats":
            v = l if l is not None else (b * base_ratio if b is not None and base_ratio else None)
            converted |= l is None and v is not None
        else:
            v = b if b is not None else (l / base_ratio if l is not None and base_ratio else None)
            converted |= b is None and v is not None
        if v is None:
            return None
        out.append(v)
    if converted:
        notes.append(f"config values converted with the baseline's val_loss/val_bpb ratio {base_ratio:.6f}")
    return out


def _seeds_needed(effect: float, s_c: float, s_b: float | None, alpha: float) -> tuple[int | None, str]:
    """Smallest n (per side for Welch) at which the observed effect and spread would give p < alpha."""
    if effect <= 0:
        return None, "not reachable"
    for n in range(2, MAX_SEEDS + 1):
        if s_b is None:
            se, df = s_c / math.sqrt(n), n - 1
        else:
            se = math.sqrt((s_c ** 2 + s_b ** 2) / n)
            df = _welch_df(s_b, n, s_c, n)
        if se == 0 or effect / se > stats.t.ppf(1 - alpha, df):
            return n, f"{n} per side" if s_b is not None else str(n)
    return None, f"> {MAX_SEEDS}"


def _welch_df(s1: float, n1: int, s2: float, n2: int) -> float:
    a, b = s1 ** 2 / n1, s2 ** 2 / n2
    den = (a ** 2 / (n1 - 1) if n1 > 1 else 0) + (b ** 2 / (n2 - 1) if n2 > 1 else 0)
    return (a + b) ** 2 / den if den else float(n1 + n2 - 2)



def _sd(xs: Sequence[float]) -> float:
    if len(xs) < 2:
        return 0.0
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def _cell(col: str, v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        if col == "t":
            return f"{v:.2f}"
        if col == "df":
            return f"{v:.3g}"
        if v == 0:
            return "0"
        return f"{v:.3g}" if abs(v) < 1e-2 else f"{v:.4f}" if abs(v) < 1e3 else f"{v:.1f}"
    return str(v).replace("|", "\\|")
