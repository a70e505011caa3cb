"""``golfsweep.limits.check``: the one check of a config's runs against the limits."""

from __future__ import annotations

import enum
from dataclasses import dataclass

import pytest

from golfsweep.limits import LimitCheck, Limits, Outcome, check

SEEDS = [1337, 42, 2025]


def run(seed, state="complete", bytes_total=15_000_000, train_time_ms=590_000.0, eval_time_ms=120_000.0):
    return {"seed": seed, "state": state, "bytes_total": bytes_total, "train_time_ms": train_time_ms,
            "eval_time_ms": eval_time_ms}


def by_rule(checks: list[LimitCheck]) -> dict[str, LimitCheck]:
    assert [c.rule for c in checks] == ["artifact_bytes", "train_seconds", "eval_seconds", "all_seeds_reported"]
    return {c.rule: c for c in checks}


def test_all_ok():
    checks = by_rule(check(Limits(), [run(s) for s in SEEDS], SEEDS))
    assert all(c.ok for c in checks.values()), checks
    assert checks["artifact_bytes"].value == 15_000_000 and checks["artifact_bytes"].limit == 16_000_000
    assert checks["train_seconds"].value == 590 and checks["train_seconds"].limit == 600
    assert checks["all_seeds_reported"].value == 3 and checks["all_seeds_reported"].limit == 3
    assert all(c.excess() <= 0 for c in checks.values())


def test_limits_are_inclusive():
    runs = [run(1, bytes_total=16_000_000, train_time_ms=600_000, eval_time_ms=600_000)]
    assert all(c.ok for c in check(Limits(), runs, [1]))


def test_artifact_too_large_names_the_seed():
    c = by_rule(check(Limits(), [run(1337), run(42, bytes_total=16_000_001), run(2025)], SEEDS))["artifact_bytes"]
    assert c.outcome is Outcome.FAIL and c.value == 16_000_001 and c.excess() == 1
    assert "seed 42" in c.message and "exceeds" in c.message


@pytest.mark.parametrize("rule, field, value, limits", [
    ("train_seconds", "train_time_ms", 612_345, Limits(train_seconds=600)),
    ("eval_seconds", "eval_time_ms", 700_000, Limits(eval_seconds=650)),
    ("artifact_bytes", "bytes_total", 9_000_000, Limits(artifact_bytes=8_000_000)),
])
def test_each_limit_fails_past_its_value(rule, field, value, limits):
    checks = by_rule(check(limits, [run(1337, **{field: value}), run(42), run(2025)], SEEDS))
    assert checks[rule].outcome is Outcome.FAIL and checks[rule].excess() > 0
    assert all(c.ok for r, c in checks.items() if r != rule)


def test_missing_seed():
    c = by_rule(check(Limits(), [run(1337), run(42)], SEEDS))["all_seeds_reported"]
    assert not c.ok and c.value == 2 and c.limit == 3
    assert "seed 2025: no run" in c.message


def test_failed_seed_is_reported_and_not_measured():
    runs = [run(1337), run(42, state="failed", bytes_total=99_000_000, train_time_ms=None), run(2025)]
    checks = by_rule(check(Limits(), runs, SEEDS))
    assert not checks["all_seeds_reported"].ok and "seed 42: failed" in checks["all_seeds_reported"].message
    assert checks["artifact_bytes"].ok, "a failed run's artifact is not part of the submission"


def test_a_retry_that_completed_counts():
    assert by_rule(check(Limits(), [run(1337), run(42, state="lost"), run(42), run(2025)], SEEDS))[
        "all_seeds_reported"].ok


def test_a_value_some_run_did_not_report_is_unproven_never_a_pass():
    some = by_rule(check(Limits(), [run(1337), run(42, eval_time_ms=None)], [1337, 42]))["eval_seconds"]
    assert some.outcome is Outcome.UNPROVEN and not some.ok and "42" in some.message
    assert some.excess() > 0  # Optuna sees it as infeasible
    none = by_rule(check(Limits(), [run(1, eval_time_ms=None)], [1]))["eval_seconds"]
    assert none.outcome is Outcome.UNPROVEN and none.value is None and "cannot be checked" in none.message


def test_a_known_failure_beats_a_missing_value():
    c = by_rule(check(Limits(), [run(1, eval_time_ms=None), run(2, eval_time_ms=601_000)], [1, 2]))["eval_seconds"]
    assert c.outcome is Outcome.FAIL


def test_no_runs_at_all():
    checks = by_rule(check(Limits(), [], [7]))
    assert not any(c.ok for c in checks.values())


class _State(str, enum.Enum):
    COMPLETE = "complete"
    FAILED = "failed"


@dataclass(frozen=True)
class _Run:
    seed: int
    state: _State
    bytes_total: int | None
    train_time_ms: float | None
    eval_time_ms: float | None


def test_dataclass_runs_with_enum_states():
    runs = [_Run(1, _State.COMPLETE, 10, 1000.0, 5.0), _Run(2, _State.FAILED, None, None, None)]
    checks = by_rule(check(Limits(), runs, [1, 2]))
    assert checks["artifact_bytes"].ok and checks["train_seconds"].ok
    assert not checks["all_seeds_reported"].ok and "seed 2: failed" in checks["all_seeds_reported"].message


def test_record_limits_are_the_stricter_of_sweep_and_challenge():
    assert Limits(artifact_bytes=20_000_000, train_seconds=300).stricter(Limits()) == Limits(
        artifact_bytes=16_000_000, train_seconds=300)
