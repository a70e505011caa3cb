"""Runtime rules of the challenge, checked on a sweep's per-seed results (no database access here)."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["RuntimeCheck", "check_runtime"]

_COMPLETE = "complete"


@dataclass(frozen=True)
class RuntimeCheck:
    """The outcome of one runtime rule: ``value`` is what the runs showed, ``limit`` what the rule allows."""

    rule: str
    ok: bool
    value: object
    limit: object
    message: str


def _field(run: Any, key: str) -> Any:
    if isinstance(run, Mapping):
        return run.get(key)
    return getattr(run, key, None)


def _state(run: Any) -> str:
    state = _field(run, "state")
    if isinstance(state, enum.Enum):
        state = state.value
    return str(state) if state is not None else "unknown"


def _seed_list(seeds: Sequence[int]) -> str:
    return ", ".join(str(s) for s in seeds)


def _max_check(rule: str, complete: list[Any], key: str, scale: float, limit: float, unit: str) -> RuntimeCheck:
    """``max(key) * scale <= limit`` over completed runs; a quantity nobody reported fails the check."""
    measured = [(_field(r, "seed"), _field(r, key) * scale) for r in complete if _field(r, key) is not None]
    missing = sorted(_field(r, "seed") for r in complete if _field(r, key) is None)
    if not measured:
        return RuntimeCheck(rule, False, None, limit, f"{rule}: no completed run reported {key}, so the limit "
                            f"of {limit:g} {unit} cannot be checked")
    worst_seed, worst = max(measured, key=lambda sv: sv[1])
    ok = worst <= limit
    verb = "within" if ok else "exceeds"
    message = f"{rule}: max {worst:g} {unit} (seed {worst_seed}) {verb} the limit of {limit:g} {unit}"
    if missing:
        message += f"; not reported by seed(s) {_seed_list(missing)}"
    return RuntimeCheck(rule, ok, worst, limit, message)


def check_runtime(
    runs: Sequence[Mapping[str, Any] | Any],
    *,
    seeds: Sequence[int],
    artifact_bytes: int = 16_000_000,
    train_seconds: float = 600,
    eval_seconds: float = 600,
) -> list[RuntimeCheck]:
    """Check a sweep configuration's runs against the challenge's runtime rules.

    ``runs`` are mappings or objects with ``seed``, ``state``, ``bytes_total``, ``train_time_ms`` and
    ``eval_time_ms`` (the last may be None). Limits are checked over completed runs only; a seed that
    failed is reported by ``all_seeds_reported`` rather than hidden. A limit is inclusive (``<=``).
    Returns one check per rule, in the order artifact_bytes, train_seconds, eval_seconds,
    all_seeds_reported.
    """
    complete = [r for r in runs if _state(r) == _COMPLETE]
    checks = [
        _max_check("artifact_bytes", complete, "bytes_total", 1, artifact_bytes, "bytes"),
        _max_check("train_seconds", complete, "train_time_ms", 1e-3, train_seconds, "s"),
        _max_check("eval_seconds", complete, "eval_time_ms", 1e-3, eval_seconds, "s"),
    ]

    states: dict[int, list[str]] = {}
    for r in runs:
        states.setdefault(_field(r, "seed"), []).append(_state(r))
    wanted = list(dict.fromkeys(seeds))
    problems = []
    for seed in wanted:
        seen = states.get(seed, [])
        if _COMPLETE in seen:
            continue
        problems.append(f"seed {seed}: " + (", ".join(seen) if seen else "no run"))
    n_ok = len(wanted) - len(problems)
    if problems:
        message = f"all_seeds_reported: {n_ok}/{len(wanted)} seeds complete; " + "; ".join(problems)
    else:
        message = f"all_seeds_reported: {n_ok}/{len(wanted)} seeds complete"
    checks.append(RuntimeCheck("all_seeds_reported", not problems, n_ok, len(wanted), message))
    return checks
