"""Significance against a baseline: loading baselines in every shape, the shifted one-sided tests,
bpb↔nats conversion, seeds needed, and the table output.

``tests/fixtures/records`` mimics a record pair in miniature: ``baseline_one_log`` is a baseline
folder with one run, ``candidate_logs`` a three-seed improvement on it (the situation of an early
record whose README states a one-sample t-test against "baseline − 0.005"), and
``baseline_submission.json`` a three-seed baseline in the records' ``seed_results`` shape.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from scipy import stats

from golfsweep.errors import GolfsweepError
from golfsweep.results import (
    Baseline,
    format_significance,
    load_baseline,
    load_sweep,
    significance,
    significance_of,
)
from tests.fixtures.records import sweeps

RECORDS = Path(__file__).resolve().parents[1] / "fixtures" / "records"


def _mean(xs):
    return sum(xs) / len(xs)


def _sd(xs):
    m = _mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def _candidate():
    c = load_baseline(RECORDS / "candidate_logs")
    return [r.val_loss for r in c.runs], [r.val_bpb for r in c.runs]


# --------------------------------------------------------------------------- loading

def test_number_baselines():
    b = load_baseline(1.2244)
    assert b.mean("val_bpb") == 1.2244 and b.mean("val_loss") is None and b.runs == ()
    b = load_baseline("2.0727", "val_loss")
    assert b.mean("val_loss") == 2.0727 and b.mean("val_bpb") is None


@pytest.mark.parametrize("x, metric, needle", [
    ("nope", "val_bpb", "--baseline: must be a number, a submission.json or a folder of logs"),
    ("-1", "val_bpb", "--baseline: a number must be positive and finite, got -1"),
    ("nan", "val_bpb", "--baseline: a number must be positive and finite, got nan"),
    ("1.2", "bpb", "--baseline-metric: must be one of val_bpb, val_loss, got 'bpb'"),
])
def test_bad_baselines(x, metric, needle):
    with pytest.raises(GolfsweepError) as e:
        load_baseline(x, metric)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_folder_of_logs_gives_per_seed_values_and_skips_non_logs():
    b = load_baseline(RECORDS / "candidate_logs")
    assert [r.seed for r in b.runs] == [1, 2, 3]
    assert [r.val_bpb for r in b.runs] == [1.2581, 1.259, 1.2576]
    assert all(r.val_loss is not None for r in b.runs)
    assert any("notes.txt: skipped" in n for n in b.notes)
    one = load_baseline(RECORDS / "baseline_one_log")
    assert [(r.seed, r.val_loss, r.val_bpb) for r in one.runs] == [(1337, 2.15, 1.2734)]
    assert load_baseline(RECORDS / "baseline_one_log" / "train.log").runs == one.runs


def test_empty_folder_is_an_error(tmp_path):
    with pytest.raises(GolfsweepError, match="--baseline: a folder must hold"):
        load_baseline(tmp_path)
    (tmp_path / "a.log").write_text("nothing here\n")
    with pytest.raises(GolfsweepError, match="--baseline: no log has a final val_bpb/val_loss line"):
        load_baseline(tmp_path)


@pytest.mark.parametrize("payload, seeds, bpb, loss", [
    # seed_results: seed -> {val_loss, val_bpb}
    ({"val_bpb": 1.1, "seed_results": {"1": {"val_bpb": 1.09, "val_loss": 1.9},
                                       "2": {"val_bpb": 1.11, "val_loss": 1.92}}},
     [1, 2], [1.09, 1.11], [1.9, 1.92]),
    # seeds: seed -> {...} (and no seed_results)
    ({"val_bpb": 1.1, "seeds": {"0": {"val_bpb": 1.08}, "42": {"val_bpb": 1.12}}}, [0, 42], [1.08, 1.12], [None, None]),
    # seeds: list of ids, seed_scores: values in the same order
    ({"val_bpb": 1.1, "seeds": [7, 8, 9], "seed_scores": [1.1, 1.2, 1.0]}, [7, 8, 9], [1.1, 1.2, 1.0], [None] * 3),
    # seed_results as a list of dicts carrying their seed
    ({"mean_val_bpb": 1.1, "seed_results": [{"seed": 5, "bpb": 1.1}, {"seed": 6, "bpb": 1.2}]},
     [5, 6], [1.1, 1.2], [None] * 2),
    # means only, alternative key names
    ({"mean_bpb": 1.15, "mean_val_loss": 1.95, "seeds": [1, 2]}, [], [], []),
])
def test_submission_shapes(tmp_path, payload, seeds, bpb, loss):
    p = tmp_path / "submission.json"
    p.write_text(json.dumps(payload))
    b = load_baseline(p)
    assert [r.seed for r in b.runs] == seeds
    assert [r.val_bpb for r in b.runs] == bpb
    assert [r.val_loss for r in b.runs] == loss
    if not seeds:
        assert (b.mean("val_bpb"), b.mean("val_loss")) == (1.15, 1.95)


def test_submission_without_scores_or_bad_json_is_an_error(tmp_path):
    p = tmp_path / "submission.json"
    p.write_text(json.dumps({"name": "x"}))
    with pytest.raises(GolfsweepError, match="--baseline: submission.json has no val_bpb/val_loss"):
        load_baseline(p)
    p.write_text("{not json")
    with pytest.raises(GolfsweepError, match="--baseline: must be a readable submission.json"):
        load_baseline(p)


def test_folder_without_logs_uses_its_submission(tmp_path):
    (tmp_path / "submission.json").write_text(json.dumps({"val_bpb": 1.2}))
    assert load_baseline(tmp_path).mean("val_bpb") == 1.2


# --------------------------------------------------------------------------- the tests

def test_one_sample_against_one_run_baseline_matches_the_formula():
    """Like an early record's README: one-sided one-sample t-test against (baseline − 0.005) in bpb."""
    loss, bpb = _candidate()
    s = significance_of(loss, bpb, load_baseline(RECORDS / "baseline_one_log"), unit="bpb")
    t = (1.2734 - 0.005 - _mean(bpb)) / (_sd(bpb) / math.sqrt(3))
    assert s.test == "one-sample" and s.df == 2
    assert s.t == pytest.approx(t, rel=1e-9)
    assert s.p_value == pytest.approx(stats.t.sf(t, 2), rel=1e-9)
    assert s.significant and s.seeds_needed is None
    assert s.improvement_bpb == pytest.approx(1.2734 - _mean(bpb))
    assert s.improvement_nats == pytest.approx(2.15 - _mean(loss))


def test_welch_shifts_the_config_by_the_threshold():
    loss, bpb = _candidate()
    base = load_baseline(RECORDS / "baseline_submission.json")
    y = base.values("val_loss")
    s = significance_of(loss, bpb, base)
    a, b = _sd(y) ** 2 / 3, _sd(loss) ** 2 / 3
    t = (_mean(y) - _mean(loss) - 0.005) / math.sqrt(a + b)
    df = (a + b) ** 2 / (a ** 2 / 2 + b ** 2 / 2)
    assert s.test == "welch"
    assert s.t == pytest.approx(t, rel=1e-9) and s.df == pytest.approx(df, rel=1e-9)
    assert s.p_value == pytest.approx(stats.t.sf(t, df), rel=1e-9)
    # improvement 0.003 nats < 0.005: never significant, and more seeds cannot help
    assert s.improvement_nats == pytest.approx(_mean(y) - _mean(loss))
    assert not s.significant and s.seeds_needed_text == "not reachable"
    # without the threshold the same data is a clear improvement in the test's direction
    assert significance_of(loss, bpb, base, min_improvement=0.0).p_value < s.p_value


def test_improvement_of_exactly_the_threshold_is_not_enough():
    base = Baseline(source="n", stated_val_loss=2.0)
    s = significance_of([1.9950, 1.9951, 1.9949], [None] * 3, base)
    assert s.improvement_nats == pytest.approx(0.005)
    assert not s.significant and s.seeds_needed_text == "not reachable"


def test_seeds_needed_is_the_smallest_n_that_would_pass():
    base = Baseline(source="n", stated_val_loss=2.0)
    losses = [1.985, 1.995, 1.984]
    s = significance_of(losses, [None] * 3, base)
    assert not s.significant and s.p_value > 0.01
    effect, sd = 2.0 - 0.005 - _mean(losses), _sd(losses)

    def passes(n):
        return effect / (sd / math.sqrt(n)) > stats.t.ppf(0.99, n - 1)

    n = s.seeds_needed
    assert n is not None and n > 3 and passes(n) and not passes(n - 1)
    assert s.seeds_needed_text == str(n)


def test_welch_seeds_needed_is_per_side():
    base = load_baseline(RECORDS / "baseline_submission.json")
    y = base.values("val_loss")
    losses = [v - 0.009 + d for v, d in zip(y, (0.004, -0.004, 0.0))]
    s = significance_of(losses, [None] * 3, base)
    assert s.test == "welch" and not s.significant
    assert s.seeds_needed_text.endswith("per side") and s.seeds_needed > 3


def test_bpb_only_baseline_is_converted_with_the_configs_ratio_and_says_so():
    loss, bpb = _candidate()
    ratio = sum(loss) / sum(bpb)
    s = significance_of(loss, bpb, load_baseline(1.2734))
    assert s.baseline_val_loss == pytest.approx(1.2734 * ratio)
    assert any("converted from val_bpb" in n and "this config's" in n for n in s.notes)
    assert s.test == "one-sample"


def test_baseline_with_loss_mean_and_bpb_seeds_uses_its_own_ratio(tmp_path):
    p = tmp_path / "submission.json"
    p.write_text(json.dumps({"val_loss": 2.4, "seed_results": {"1": {"val_bpb": 1.19}, "2": {"val_bpb": 1.21}}}))
    b = load_baseline(p)
    s = significance_of([2.3, 2.31, 2.29], [1.15, 1.155, 1.145], b)
    assert s.test == "welch" and s.n_baseline == 2
    assert s.baseline_val_loss == pytest.approx(2.4)
    assert any("its own" in n for n in s.notes)


def test_different_tokenizers_are_flagged():
    base = Baseline(source="x", stated_val_loss=2.77, stated_val_bpb=1.07)
    s = significance_of([2.0, 2.01, 2.02], [1.2, 1.205, 1.21], base)
    assert any("different tokenizers" in n for n in s.notes)


def test_fewer_than_two_seeds_has_no_test():
    s = significance_of([2.0], [1.2], Baseline(source="x", stated_val_bpb=1.3))
    assert s.test == "none" and s.p_value is None and not s.significant
    assert s.seeds_needed_text == "needs >= 2 seeds"


def test_no_spread_is_reported_not_crashed():
    s = significance_of([2.0, 2.0, 2.0], [1.2] * 3, Baseline(source="x", stated_val_loss=2.1))
    assert s.p_value is None and not s.significant
    assert any("no spread" in n for n in s.notes)


# --------------------------------------------------------------------------- over a sweep

def _sweep(tmp_path):
    ratio = 2.15 / 1.2734
    def runs(bpbs, **extra):
        return {seed: {"val_bpb": b, "val_loss": b * ratio, **extra.get(seed, {})} for seed, b in zip((1, 2, 3), bpbs)}
    configs = {
        0: {"params": {"KNOB_X": 1.0}, "runs": runs([1.2581, 1.2590, 1.2576])},          # clear record
        1: {"params": {"KNOB_X": 2.0}, "runs": runs([1.2720, 1.2725, 1.2718])},          # too small
        2: {"params": {"KNOB_X": 3.0}, "runs": {1: {"val_bpb": 1.25, "val_loss": 1.25 * ratio},
                                                2: {"state": "failed", "reason": "exit 3"}}},
    }
    return load_sweep(sweeps.store_sweep(tmp_path / "sweep", configs))


def test_significance_per_config_uses_completed_seeds_only(tmp_path):
    data = _sweep(tmp_path)
    rows = {r.trial: r for r in significance(data, load_baseline(RECORDS / "baseline_one_log"))}
    assert rows[0].significant and rows[0].n == 3
    assert not rows[1].significant and rows[1].seeds_needed_text == "not reachable"
    assert rows[2].n == 1 and rows[2].test == "none"


def test_format_significance_md_csv_json(tmp_path):
    data = _sweep(tmp_path)
    base = load_baseline(RECORDS / "baseline_one_log")
    md = format_significance(data, base, "md")
    assert md.startswith("baseline: ") and "rule: improvement >= 0.005 nats" in md
    header = next(line for line in md.splitlines() if line.startswith("| trial"))
    for col in ("KNOB_X", "improvement_nats", "improvement_bpb", "p_value", "significant", "seeds_needed"):
        assert col in header
    csv = format_significance(data, base, "csv").splitlines()
    assert csv[0].startswith("trial,KNOB_X,n_ok/n_seeds") and len(csv) == 4
    doc = json.loads(format_significance(data, base, "json"))
    assert doc["rule"]["min_improvement"] == 0.005 and doc["baseline"]["runs"][0]["seed"] == 1337
    assert [c["trial"] for c in doc["configs"]][:1] == [0] and doc["configs"][0]["significant"] is True
    with pytest.raises(GolfsweepError, match="--format: must be one of md, csv, json, got 'html'"):
        format_significance(data, base, "html")


def test_cli_table_with_baseline(tmp_path):
    from typer.testing import CliRunner

    from golfsweep.cli import app

    data = _sweep(tmp_path)
    res = CliRunner().invoke(app, ["table", str(data.paths.root), "--baseline", "2.2", "--baseline-metric",
                                   "val_loss", "-f", "csv"])
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[0].startswith("trial,KNOB_X")
