"""The challenge's limits and the one check of a config's runs against them.

Used by the driver (Optuna constraints), the tables, ``status``, the report, export and
``audit --sweep``: one rule everywhere.

**The rule for values a run did not report.** A limit is checked over the config's completed runs.
It *passes* only when every completed run reported the value and the worst is within the limit
(inclusive). It *fails* when a reported value exceeds the limit, whatever else is missing. When no
run exceeds it but some completed run (or every one) did not report the value, it is *unproven*:
not a pass. A config is feasible (a record candidate, eligible to be best) only when every limit
passes; an unproven one is shown as such and is infeasible to Optuna.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["CHALLENGE_ARTIFACT_BYTES", "CHALLENGE_EVAL_SECONDS", "CHALLENGE_TRAIN_SECONDS", "LIMIT_RULES", "LimitCheck",
           "Limits", "Outcome", "check"]

#: Parameter Golf, track 10min_16mb: artifact = script bytes + compressed model bytes.
CHALLENGE_ARTIFACT_BYTES = 16_000_000
CHALLENGE_TRAIN_SECONDS = 600.0
CHALLENGE_EVAL_SECONDS = 600.0


@dataclass(frozen=True)
class Limits:
    """Checked per run (artifact, train, eval) and enforced on it (timeout, stall)."""

    artifact_bytes: int = CHALLENGE_ARTIFACT_BYTES
    train_seconds: float = CHALLENGE_TRAIN_SECONDS
    eval_seconds: float = CHALLENGE_EVAL_SECONDS
    run_timeout_seconds: float = 1800.0
    stall_seconds: float = 600.0

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Limits:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})

    def stricter(self, other: Limits) -> Limits:
        """The tighter of two sets of checked limits (a records folder obeys the challenge's)."""
        return Limits(min(self.artifact_bytes, other.artifact_bytes), min(self.train_seconds, other.train_seconds),
                      min(self.eval_seconds, other.eval_seconds), self.run_timeout_seconds, self.stall_seconds)


class Outcome(str, enum.Enum):
    PASS = "pass"
    FAIL = "fail"
    UNPROVEN = "unproven"  # no run exceeded it, but not every completed run reported the value


#: (rule, run field, scale to the limit's unit, limit attribute, unit)
LIMIT_RULES = (("artifact_bytes", "bytes_total", 1.0, "bytes"),
               ("train_seconds", "train_time_ms", 1e-3, "s"),
               ("eval_seconds", "eval_time_ms", 1e-3, "s"))
_UNPROVEN_EXCESS = 1.0  # what Optuna is told for an unproven limit: positive, so infeasible


@dataclass(frozen=True)
class LimitCheck:
    """One rule over one config's runs: ``value`` is the worst reported (None: none reported)."""

    rule: str
    outcome: Outcome
    value: float | None
    limit: float
    message: str

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.PASS

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "outcome": self.outcome.value, "ok": self.ok, "value": self.value,
                "limit": self.limit, "message": self.message}

    def excess(self) -> float:
        """Optuna's constraint value (``<= 0`` feasible): how far the worst value is over the limit."""
        if self.rule == "all_seeds_reported":
            return 0.0 if self.ok else float(self.limit - (self.value or 0))
        over = (self.value - self.limit) if self.value is not None else 0.0
        return over if self.outcome is not Outcome.UNPROVEN else max(over, 0.0) + _UNPROVEN_EXCESS


def _get(run: Any, key: str) -> Any:
    return run.get(key) if isinstance(run, Mapping) else getattr(run, key, None)


def _state(run: Any) -> str:
    state = _get(run, "state")
    return str(state.value if isinstance(state, enum.Enum) else state)


def _seeds(seeds: Sequence[Any]) -> str:
    return ", ".join(str(s) for s in seeds)


def check(limits: Limits, runs: Sequence[Any], seeds: Sequence[int] | None = None) -> list[LimitCheck]:
    """Check one config's runs (objects or mappings with ``seed``, ``state``, ``bytes_total``,
    ``train_time_ms``, ``eval_time_ms``) against ``limits``; with ``seeds``, also that every seed
    completed. Returns the checks in the order of :data:`LIMIT_RULES`, then ``all_seeds_reported``."""
    complete = [r for r in runs if _state(r) == "complete"]
    out = []
    for rule, key, scale, unit in LIMIT_RULES:
        limit = float(getattr(limits, rule))
        measured = [(_get(r, "seed"), _get(r, key) * scale) for r in complete if _get(r, key) is not None]
        missing = sorted(_get(r, "seed") for r in complete if _get(r, key) is None)
        if not measured:
            why = "no completed run" if not complete else f"no completed run reported {key}"
            out.append(LimitCheck(rule, Outcome.UNPROVEN, None, limit,
                                  f"{rule}: unproven: {why}, so the limit of {limit:g} {unit} cannot be checked"))
            continue
        worst_seed, worst = max(measured, key=lambda sv: sv[1])
        if worst > limit:
            outcome, verb = Outcome.FAIL, "exceeds"
        else:
            outcome, verb = (Outcome.UNPROVEN, "within") if missing else (Outcome.PASS, "within")
        message = f"{rule}: max {worst:g} {unit} (seed {worst_seed}) {verb} the limit of {limit:g} {unit}"
        if missing:
            message += f"; not reported by seed(s) {_seeds(missing)}" + (
                ", so unproven" if outcome is Outcome.UNPROVEN else "")
        out.append(LimitCheck(rule, outcome, worst, limit, message))
    if seeds is not None:
        states: dict[Any, list[str]] = {}
        for r in runs:
            states.setdefault(_get(r, "seed"), []).append(_state(r))
        wanted = list(dict.fromkeys(seeds))
        problems = [f"seed {s}: " + (", ".join(states[s]) if s in states else "no run")
                    for s in wanted if "complete" not in states.get(s, [])]
        n_ok = len(wanted) - len(problems)
        message = f"all_seeds_reported: {n_ok}/{len(wanted)} seeds complete" + (
            "; " + "; ".join(problems) if problems else "")
        out.append(LimitCheck("all_seeds_reported", Outcome.FAIL if problems else Outcome.PASS, n_ok,
                              len(wanted), message))
    return out
