"""Runtime rules checked on a sweep's per-seed results."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from golfsweep.audit import RuntimeCheck, check_runtime

SEEDS = [1337, 42, 2025]


def run(seed, state="complete", bytes_total=15_000_000, train_time_ms=590_000.0, eval_time_ms=120_000.0):
    return {"seed": seed, "state": state, "bytes_total": bytes_total, "train_time_ms": train_time_ms,
            "eval_time_ms": eval_time_ms}


def by_rule(checks: list[RuntimeCheck]) -> dict[str, RuntimeCheck]:
    assert [c.rule for c in checks] == ["artifact_bytes", "train_seconds", "eval_seconds", "all_seeds_reported"]
    return {c.rule: c for c in checks}


def test_all_ok():
    checks = by_rule(check_runtime([run(s) for s in SEEDS], seeds=SEEDS))
    assert all(c.ok for c in checks.values()), checks
    assert checks["artifact_bytes"].value == 15_000_000 and checks["artifact_bytes"].limit == 16_000_000
    assert checks["train_seconds"].value == 590 and checks["train_seconds"].limit == 600
    assert checks["all_seeds_reported"].value == 3 and checks["all_seeds_reported"].limit == 3


def test_limits_are_inclusive():
    runs = [run(1, bytes_total=16_000_000, train_time_ms=600_000, eval_time_ms=600_000)]
    assert all(c.ok for c in check_runtime(runs, seeds=[1]))


def test_artifact_too_large_names_the_seed():
    runs = [run(1337), run(42, bytes_total=16_000_001), run(2025)]
    c = by_rule(check_runtime(runs, seeds=SEEDS))["artifact_bytes"]
    assert not c.ok and c.value == 16_000_001
    assert "seed 42" in c.message and "exceeds" in c.message


def test_time_limits_exceeded():
    runs = [run(1337, train_time_ms=612_345), run(42, eval_time_ms=700_000), run(2025)]
    checks = by_rule(check_runtime(runs, seeds=SEEDS, train_seconds=600, eval_seconds=650))
    assert not checks["train_seconds"].ok and checks["train_seconds"].value == 612.345
    assert not checks["eval_seconds"].ok and checks["eval_seconds"].limit == 650
    assert checks["artifact_bytes"].ok and checks["all_seeds_reported"].ok


def test_custom_artifact_limit():
    c = by_rule(check_runtime([run(1, bytes_total=9_000_000)], seeds=[1], artifact_bytes=8_000_000))
    assert not c["artifact_bytes"].ok


def test_missing_seed():
    c = by_rule(check_runtime([run(1337), run(42)], seeds=SEEDS))["all_seeds_reported"]
    assert not c.ok and c.value == 2 and c.limit == 3
    assert "seed 2025: no run" in c.message


def test_failed_seed_is_reported_and_not_measured():
    runs = [run(1337), run(42, state="failed", bytes_total=99_000_000, train_time_ms=None), run(2025)]
    checks = by_rule(check_runtime(runs, seeds=SEEDS))
    assert not checks["all_seeds_reported"].ok
    assert "seed 42: failed" in checks["all_seeds_reported"].message
    assert checks["artifact_bytes"].ok, "a failed run's artifact is not part of the submission"


def test_a_retry_that_completed_counts():
    runs = [run(1337), run(42, state="lost"), run(42), run(2025)]
    assert by_rule(check_runtime(runs, seeds=SEEDS))["all_seeds_reported"].ok


def test_unreported_eval_time():
    some = by_rule(check_runtime([run(1337), run(42, eval_time_ms=None)], seeds=[1337, 42]))["eval_seconds"]
    assert some.ok and "42" in some.message
    none = by_rule(check_runtime([run(1, eval_time_ms=None)], seeds=[1]))["eval_seconds"]
    assert not none.ok and none.value is None and "cannot be checked" in none.message


def test_no_runs_at_all():
    checks = by_rule(check_runtime([], seeds=[7]))
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
    runs = [_Run(1, _State.COMPLETE, 10, 1000.0, None), _Run(2, _State.FAILED, None, None, None)]
    checks = by_rule(check_runtime(runs, seeds=[1, 2]))
    assert checks["artifact_bytes"].ok and checks["train_seconds"].ok
    assert not checks["all_seeds_reported"].ok and "seed 2: failed" in checks["all_seeds_reported"].message
