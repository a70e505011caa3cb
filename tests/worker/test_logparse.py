"""Tests for the training-log parser, on small hand-written logs in the real formats."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from golfsweep.worker._loglines import METRIC_RE, CurvePoint, MetricLine
from golfsweep.worker._logparse import (
    IMPLAUSIBLE_RATIO,
    ParsedLog,
    parse_log,
    parse_log_file,
    seed_from_filename,
)

LOGS = Path(__file__).resolve().parents[1] / "fixtures" / "logs"


def _parse(name: str, **kwargs) -> ParsedLog:
    return parse_log_file(LOGS / name, **kwargs)


def test_int8_baseline_log():
    p = _parse("int8_baseline.log")
    assert p.metric_label == "final_int8_zlib_roundtrip_exact"
    assert (p.val_loss, p.val_bpb) == (2.07269931, 1.22436570)
    assert p.metric_line_no == 28
    assert p.eval_time_ms == 1401  # from the non-_exact companion line
    assert p.bytes_total == 15863489
    assert p.bytes_model == 15815847
    assert p.bytes_code == 47642
    assert (p.train_time_ms, p.stop_step) == (600031, 13765)
    assert p.seed == 1337
    assert p.curve == (
        CurvePoint(0, 20000, 6.9370, 4.1085, 0),
        CurvePoint(5000, 20000, 2.1654, 1.2825, 217940),
        CurvePoint(10000, 20000, 2.0918, 1.2389, 435871),
        CurvePoint(13765, 20000, 2.0605, 1.2204, 600031),
    )
    assert p.candidates == (
        MetricLine(27, "final_int8_zlib_roundtrip", 2.0727, 1.2244, 1401),
        MetricLine(28, "final_int8_zlib_roundtrip_exact", 2.07269931, 1.22436570, 1401),
    )
    assert p.eval_times_ms == {
        "final_int8_zlib_roundtrip": 1401,
        "final_int8_zlib_roundtrip_exact": 1401,
    }


def test_phased_ttt_log_with_spaced_values():
    p = _parse("phased_ttt.log")
    assert p.metric_label == "quantized_ttt_phased"
    assert (p.val_loss, p.val_bpb) == (2.77115720, 1.07280131)
    assert p.metric_line_no == 34
    assert p.eval_time_ms == 329031
    assert p.bytes_total == 15979958
    assert p.bytes_model == 15951321
    assert p.bytes_code == 28637  # the compressed code size is what the total counts
    assert (p.train_time_ms, p.stop_step) == (596148, 4971)
    assert p.seed == 42
    assert [(c.step, c.total_steps, c.val_bpb, c.train_time_ms) for c in p.curve] == [
        (0, 20000, 3.4871, None),
        (4000, 20000, 1.1105, None),
        (4971, 20000, 1.0731, None),
    ]
    # ttp: progress lines are not metric lines
    assert [c.label for c in p.candidates] == [
        "diagnostic pre-quantization post-ema",
        "diagnostic quantized",
        "quantized_ttt_phased",
    ]


def test_timestamped_lines():
    p = _parse("timestamped.log")
    assert p.metric_label == "quantized_ttt_phased"
    assert (p.val_loss, p.val_bpb) == (2.76951521, 1.07216564)
    assert p.metric_line_no == 20
    assert p.eval_time_ms == 500104
    assert p.bytes_total == 15996697
    assert p.bytes_model == 15968098
    assert p.bytes_code == 28599
    assert (p.train_time_ms, p.stop_step) == (587091, 4832)
    assert p.seed == 7
    assert p.curve[-1] == CurvePoint(4832, 20000, 2.7711, 1.0728, None)


def test_source_templates_are_ignored_and_last_appended_run_wins():
    p = _parse("with_source.log")
    assert p.metric_label == "legal_ttt_exact"
    assert (p.val_loss, p.val_bpb) == (1.88981234, 1.11923345)
    assert p.metric_line_no == 51
    assert p.eval_time_ms == 410268
    # the size line after the metric does not belong to it
    assert p.bytes_total == 15701234
    assert p.bytes_model == 15640000
    assert (p.train_time_ms, p.stop_step) == (600044, 7101)
    # the explicit seed line wins over SEED=999 in the embedded docstring
    assert p.seed == 2025
    assert [c.line_no for c in p.candidates] == [31, 32, 33, 34, 42, 43, 44, 45, 49, 50, 51]
    labels = {c.label for c in p.candidates}
    assert labels == {
        "final_int6_roundtrip",
        "final_int6_roundtrip_exact",
        "final_int6_sliding_window",  # the stride:64 token is not part of the label
        "final_int6_sliding_window_exact",
        "ttt_sliding:done",
        "legal_ttt",
        "legal_ttt_exact",
    }
    done = next(c for c in p.candidates if c.label == "ttt_sliding:done")
    assert (done.val_loss, done.val_bpb, done.eval_time_ms) == (1.889812, 1.119233, None)
    assert len(p.curve) == 4


def test_sliding_window_is_preferred_when_no_ttt():
    text = (LOGS / "with_source.log").read_text()
    head = "\n".join(text.split("\n")[:45])  # stop after the second run's sliding-window line
    p = parse_log(head)
    assert p.metric_label == "final_int6_sliding_window_exact"
    assert (p.val_bpb, p.metric_line_no, p.eval_time_ms) == (1.12095002, 45, 74001)


def test_truncated_log_falls_back_to_last_in_training_validation():
    p = _parse("truncated.log")
    assert p.metric_label == "step_val_last"
    assert (p.val_loss, p.val_bpb) == (2.3017, 1.3632)
    assert p.metric_line_no == 6
    assert p.eval_time_ms is None
    assert p.bytes_total is None and p.bytes_model is None and p.bytes_code is None
    # no stopping_early line: the last step line's train_time
    assert (p.train_time_ms, p.stop_step) == (None, None)  # no wallclock stop
    assert (p.train_time_best_ms, p.last_step) == (241415, 1200)
    assert p.seed == 42  # seed=42 in the key=value dump
    assert p.candidates == ()
    assert p.eval_times_ms == {}


def test_nan_and_inf_values_parse():
    p = _parse("nan.log")
    assert p.metric_label == "final_int8_zlib_roundtrip_exact"
    assert math.isnan(p.val_loss)
    assert p.val_bpb == math.inf
    assert p.eval_time_ms == 1398
    assert p.bytes_total == 48846
    assert (p.train_time_ms, p.stop_step) == (None, None)  # no wallclock stop
    assert (p.train_time_best_ms, p.last_step) == (20080, 500)
    assert p.seed == 3
    assert math.isnan(p.curve[-1].val_bpb)
    assert p.curve[0].val_bpb == 4.1083


def test_budget_line_and_time_field_and_stop_without_step():
    p = _parse("xnor_budget.log")
    assert p.metric_label == "final_sliding"
    assert (p.val_loss, p.val_bpb) == (2.7923, 1.5561)
    assert p.eval_time_ms == 428012  # "time:428012ms" after the parenthesised settings
    assert p.bytes_total == 15959813  # "budget:16.00MB" is not a size
    assert p.bytes_model is None
    assert (p.train_time_ms, p.stop_step) == (598686, None)
    assert p.seed == 7
    assert p.eval_times_ms == {"final_sliding": 428012}


def test_pipe_total_submission_and_run_to_completion():
    p = _parse("no_stop.log")
    assert p.metric_label == "final_INT7_zlib_roundtrip"
    assert (p.val_loss, p.val_bpb, p.metric_line_no) == (2.0784, 1.2353, 7)
    assert p.bytes_total == 15441941
    assert p.bytes_model is None  # only "Serialized model <kind>:" counts
    assert (p.train_time_ms, p.stop_step) == (None, None)  # no wallclock stop
    assert (p.train_time_best_ms, p.last_step) == (96562184, 60000)
    assert p.seed == 5


def test_metric_labels_preference_overrides_default():
    p = _parse("xnor_budget.log", metric_labels=["final_xnor_roundtrip"])
    assert (p.metric_label, p.val_bpb, p.metric_line_no, p.eval_time_ms) == (
        "final_xnor_roundtrip",
        1.5907,
        7,
        None,
    )
    prefs = ["final_int6_roundtrip_exact", "legal_ttt_exact"]
    p = _parse("with_source.log", metric_labels=prefs)
    assert (p.metric_label, p.val_bpb, p.metric_line_no) == (
        "final_int6_roundtrip_exact",
        1.1443,
        43,
    )
    assert p.bytes_total == 15701234


def test_metric_labels_absent_fall_back_to_default_then_step_line():
    p = _parse("int8_baseline.log", metric_labels=["quantized_ttt_phased"])
    assert p.metric_label == "final_int8_zlib_roundtrip_exact"
    p = _parse("truncated.log", metric_labels=["legal_ttt_exact"])
    assert p.metric_label == "step_val_last"


def test_unseen_label_without_artifact_line_is_chosen_but_flagged():
    text = "seed:1\nsome_new_eval val_loss:1.5 val_bpb:0.9 eval_time:12ms\n"
    p = parse_log(text)
    assert (p.metric_label, p.val_bpb, p.metric_line_no) == ("some_new_eval", 0.9, 2)
    assert p.candidates == (MetricLine(2, "some_new_eval", 1.5, 0.9, 12),)
    assert len(p.warnings) == 1 and "no artifact line" in p.warnings[0]
    assert "'some_new_eval' (line 2, val_bpb 0.9)" in p.warnings[0]
    assert p.alternatives == ()
    forced = parse_log(text, metric_labels=["some_new_eval"])
    assert forced.val_bpb == 0.9 and forced.warnings == ()


def test_empty_log():
    p = parse_log("")
    assert p.metric_label is None
    assert p.seed is None and p.train_time_ms is None and p.curve == ()


def test_file_reading_replaces_bad_bytes_and_crlf(tmp_path):
    path = tmp_path / "train_seed9.log"
    path.write_bytes(
        b"seed:9\r\n\xff\xfe garbage\r\n"
        b"final_int8_zlib_roundtrip_exact val_loss:2.5 val_bpb:1.25\r\n"
    )
    p = parse_log_file(path)
    assert (p.metric_label, p.val_bpb, p.metric_line_no, p.seed) == (
        "final_int8_zlib_roundtrip_exact",
        1.25,
        3,
        9,
    )
    assert ParsedLog.seed_from_filename(path) == 9


@pytest.mark.parametrize(
    ("name", "seed"),
    [
        ("train_seed42.log", 42),
        ("logs/train_seed0.log", 0),
        ("seed_1234.log", 1234),
        ("log_10mins_seed-7.txt", 7),
        ("train_seed42_pr1851_original.log", 42),
        ("run_s314.txt", 314),
        ("ternary_log_1337.txt", 1337),
        ("train.log", None),
        ("train0.txt", None),
        ("train_log_bpe_10min.txt", None),
    ],
)
def test_seed_from_filename(name, seed):
    assert seed_from_filename(name) == seed


def test_to_dict_is_json_ready():
    d = _parse("int8_baseline.log").to_dict()
    for key in (
        "metric_label", "val_bpb", "val_loss", "bytes_total", "bytes_model", "train_time_ms",
        "eval_time_ms", "seed", "stop_step", "metric_line_no", "curve", "eval_times_ms",
        "candidates",
    ):
        assert key in d
    assert d["curve"][0] == {
        "step": 0, "total_steps": 20000, "val_loss": 6.937, "val_bpb": 4.1085, "train_time_ms": 0
    }
    assert d["candidates"][1]["label"] == "final_int8_zlib_roundtrip_exact"
    assert json.loads(json.dumps(d)) == d
    assert _parse("truncated.log").to_dict()["bytes_total"] is None


def test_eval_only_log_borrows_size_and_train_time_from_its_seeds_training_log(tmp_path):
    from golfsweep.worker import companion_values, parse_log_file

    (tmp_path / "train_seed42.log").write_text(
        "seed:42\nstopping_early: wallclock_cap train_time:599556ms step:4971/20000\n"
        "Total submission size int6+brotli: 15939508 bytes\n"
        "quantized val_loss:2.80 val_bpb:1.0841 eval_time:7000ms\n")
    (tmp_path / "train_seed7.log").write_text("Total submission size int6+brotli: 1 bytes\n")
    (tmp_path / "ttt").mkdir()
    ttt = tmp_path / "ttt" / "seed_42.log"
    ttt.write_text("seed:42\nquantized_ttt_phased val_loss:2.79 val_bpb:1.0801 eval_time:366525ms\n")
    parsed, borrowed = companion_values(ttt, parse_log_file(ttt))
    assert parsed.val_bpb == 1.0801  # the score stays this log's own
    assert (parsed.bytes_total, parsed.train_time_ms) == (15939508, 599556)
    assert borrowed == {"bytes_total": str(tmp_path / "train_seed42.log"),
                        "train_time_ms": str(tmp_path / "train_seed42.log")}


def test_a_log_that_trained_never_borrows_another_logs_values(tmp_path):
    from golfsweep.worker import companion_values, parse_log_file

    (tmp_path / "run_seed42.log").write_text(
        "step:2000/20000 val_loss:2.20 val_bpb:1.30 train_time:180000ms\n"
        "stopping_early: wallclock_cap train_time:599968ms step:6000/20000\n"
        "Total submission size: 15875110 bytes\nfinal_q val_loss:2.1 val_bpb:1.25 eval_time:9000ms\n")
    stopped = tmp_path / "run_seed42_b.log"  # the same seed run again and cut off: a different run
    stopped.write_text("step:2000/20000 val_loss:2.16 val_bpb:1.2789 train_time:180830ms\nConnection closed.\n")
    parsed, borrowed = companion_values(stopped, parse_log_file(stopped))
    assert (parsed.metric_label, parsed.val_bpb) == ("step_val_last", 1.2789)
    assert (parsed.bytes_total, parsed.train_time_ms, borrowed) == (None, None, {})


def test_byte_counts_printed_as_key_value_fields_are_the_artifact_size():
    p = parse_log(
        "step:900/900 val_loss:3.31 val_bpb:1.30 train_time:590000ms\n"
        "final_fp val_loss:3.3052 val_bpb:1.2941 eval_time:7768ms\n"
        "baseline_bytes:92586152 stored_bytes:23229780\n"
        "compressed_blob_bytes:15741311 code_bytes:59488 total:15800799\n"
        "target_artifact_bytes:16000000 headroom:199201\n"
        "final_quant val_loss:3.3128 val_bpb:1.2970 eval_time:7345ms artifact_bytes:15800799\n")
    assert (p.metric_label, p.val_bpb, p.bytes_total, p.warnings) == ("final_quant", 1.297, 15800799, ())
    assert parse_log("tokens_seen:123 total:4096\nx val_loss:1 val_bpb:1\n").bytes_total is None  # not bytes


def test_an_evaluation_only_run_using_a_checkpoint_scores_that_artifact():
    p = parse_log("seed: 1337\nfinal_fp val_loss:2.5 val_bpb:1.20\n"
                  "eval_only:using quantized checkpoint from /ckpt/seed0/final_model.int6.ptz\n"
                  "final_q val_loss:2.6 val_bpb:1.21\n")
    assert (p.metric_label, p.val_bpb, p.warnings) == ("final_q", 1.21, ())


def test_a_log_with_no_evaluation_in_any_known_form_says_so():
    p = parse_log("Artifact: 15,188,240 bytes (14.48 MB)\nQuantized BPB (no XSA): 1.027163\n")
    assert p.val_bpb is None
    assert len(p.warnings) == 1 and p.warnings[0].startswith("no evaluation line is recognised")


# --------------------------------------------------------------------------- choosing by protocol


def _rename_labels(text: str) -> str:
    """Give every final-metric label a name never seen before (keeping ``_exact`` pairs)."""
    names: dict[str, str] = {}
    out = []
    for line in text.split("\n"):
        m = METRIC_RE.match(line)
        if m and not line.startswith("step"):
            label = m.group("label")
            base, exact = (label[:-6], "_exact") if label.endswith("_exact") else (label, "")
            new = names.setdefault(base, f"zz{len(names)}q")
            line = new + exact + line[len(label):]
        out.append(line)
    return "\n".join(out)


@pytest.mark.parametrize(
    "name", ["int8_baseline.log", "phased_ttt.log", "timestamped.log", "with_source.log", "xnor_budget.log",
             "no_stop.log", "ttt_unfamiliar_label.log", "unseen_roundtrip_label.log", "failed_ttt.log"]
)
def test_choice_does_not_depend_on_label_names(name):
    text = (LOGS / name).read_text()
    p, q = parse_log(text), parse_log(_rename_labels(text))
    assert q.metric_line_no == p.metric_line_no and q.val_bpb == p.val_bpb
    assert len(q.warnings) == len(p.warnings)


def test_unfamiliar_ttt_label_after_familiar_diagnostic_quantized_wins():
    # the log family: the final score-first TTT line has a label never seen before
    p = _parse("ttt_unfamiliar_label.log")
    assert (p.metric_label, p.metric_line_no) == ("score_first_ttt_eval", 25)
    assert (p.val_loss, p.val_bpb, p.eval_time_ms) == (2.76880123, 1.07190011, 331017)
    assert p.bytes_total == 15968700
    assert p.warnings == () and p.alternatives == ()
    # the progress summary (val_bpb=…) and the diagnostic lines stay candidates
    assert [c.label for c in p.candidates] == [
        "diagnostic pre-quantization post-ema", "diagnostic quantized", "ttt_scorefirst:done",
        "score_first_ttt_eval",
    ]


def test_unseen_roundtrip_label_and_exact_companion():
    p = _parse("unseen_roundtrip_label.log")
    assert (p.metric_label, p.metric_line_no) == ("final_int4_lzma_roundtrip_exact", 12)
    assert (p.val_loss, p.val_bpb) == (1.97118765, 1.16745678)
    assert p.eval_time_ms == 7012  # from the rounded companion line
    assert p.bytes_total == 15661234
    assert p.warnings == ()


def test_exact_line_wins_over_its_rounded_companion_printed_after_it():
    p = _parse("exact_before_rounded.log")
    assert (p.metric_label, p.metric_line_no, p.val_bpb) == ("chunked_eval_exact", 6, 1.36945678)
    assert p.warnings == ()


def test_rounded_companion_with_another_value_is_a_separate_evaluation_and_flagged():
    text = (
        "Total submission size int8+zlib: 100 bytes\n"
        "final_q val_loss:2.0727 val_bpb:1.2244 eval_time:1401ms\n"
        "final_q_exact val_loss:2.07269931 val_bpb:1.23436570\n"
    )
    p = parse_log(text)
    assert (p.metric_label, p.val_bpb) == ("final_q_exact", 1.2343657)  # position decides
    assert len(p.warnings) == 1 and "does not match its rounded companion" in p.warnings[0]
    assert "'final_q' (line 2, val_bpb 1.2244)" in p.warnings[0]


def test_pre_quantization_evaluation_before_the_artifact_is_not_the_score():
    p = _parse("crashed_after_serialization.log")
    # the only labelled evaluation precedes the artifact lines: not a score
    assert (p.metric_label, p.val_bpb, p.metric_line_no) == ("step_val_last", 1.2201, 3)
    assert p.alternatives == (MetricLine(5, "ema_weights", 2.041, 1.2088, 1999),)
    assert len(p.warnings) == 1
    assert "no evaluation is printed after the artifact" in p.warnings[0]
    assert "'ema_weights' (line 5, val_bpb 1.2088)" in p.warnings[0]
    # a forced label still wins
    assert parse_log_file(LOGS / "crashed_after_serialization.log", ["ema_weights"]).val_bpb == 1.2088


def test_pre_named_evaluation_after_the_artifact_is_not_the_score():
    text = (
        "Total submission size int6+brotli: 100 bytes\n"
        "quantized val_loss:2.84 val_bpb:1.10 eval_time:8000ms\n"
        "pre_ttt_reference val_loss:2.81 val_bpb:1.08 eval_time:6000ms\n"
    )
    p = parse_log(text)
    assert (p.metric_label, p.val_bpb) == ("quantized", 1.10)


def test_ambiguous_log_without_artifact_line_warns_and_names_alternatives():
    p = _parse("ambiguous_no_artifact.log")
    assert (p.metric_label, p.val_bpb, p.metric_line_no) == ("sliding_eval", 1.1851, 4)
    assert p.alternatives == (MetricLine(3, "roundtrip_eval", 2.053, 1.2159, 1900),)
    assert len(p.warnings) == 1
    w = p.warnings[0]
    assert "no artifact line" in w
    assert "'sliding_eval' (line 4, val_bpb 1.1851)" in w and "'roundtrip_eval' (line 3, val_bpb 1.2159)" in w
    assert p.to_dict()["warnings"] == [w]
    assert p.to_dict()["alternatives"] == [
        {"line_no": 3, "label": "roundtrip_eval", "val_loss": 2.053, "val_bpb": 1.2159, "eval_time_ms": 1900}
    ]


def test_failed_evaluation_far_above_an_earlier_one_is_skipped_and_flagged():
    p = _parse("failed_ttt.log")
    assert (p.metric_label, p.metric_line_no, p.val_bpb) == ("final_int6_sliding_window", 7, 1.08938974)
    assert [(c.label, c.line_no) for c in p.alternatives] == [("ttt_eval", 12)]
    assert len(p.warnings) == 1 and "'ttt_eval' (line 12, val_bpb 1.401032)" in p.warnings[0]
    assert 1.401032 > 1.08938974 * IMPLAUSIBLE_RATIO
    # a worse, but plausible, TTT result is the score: the swept knob must move the number
    text = (LOGS / "failed_ttt.log").read_text().replace("val_bpb:1.40103200", "val_bpb:1.11103200")
    p = parse_log(text)
    assert (p.metric_label, p.val_bpb, p.warnings) == ("ttt_eval", 1.111032, ())


def test_non_finite_last_evaluation_is_reported_with_the_finite_alternative():
    text = (
        "Total submission size int6+brotli: 100 bytes\n"
        "final_sw val_loss:2.50 val_bpb:1.09 eval_time:7000ms\n"
        "final_ttt val_loss:nan val_bpb:nan eval_time:9000ms\n"
    )
    p = parse_log(text)
    assert p.metric_label == "final_ttt" and math.isnan(p.val_bpb)
    assert [c.label for c in p.alternatives] == ["final_sw"]
    assert len(p.warnings) == 1 and "not finite" in p.warnings[0]


def test_alias_reprinting_the_previous_evaluation_keeps_the_first_label():
    text = (
        "Total submission size int6+lzma: 100 bytes\n"
        "final_int6_roundtrip_exact val_loss:1.91694484 val_bpb:1.13532271\n"
        "final_int6_sliding_window_exact val_loss:1.87728338 val_bpb:1.11183590\n"
        "final_int8_zlib_roundtrip_exact val_loss:1.87728338 val_bpb:1.11183590\n"
    )
    p = parse_log(text)
    assert (p.metric_label, p.metric_line_no, p.warnings) == ("final_int6_sliding_window_exact", 3, ())


def test_training_after_the_chosen_evaluation_is_flagged():
    text = (LOGS / "int8_baseline.log").read_text() + "step:0/20000 val_loss:6.9 val_bpb:4.1 train_time:0ms\n"
    p = parse_log(text)
    assert (p.metric_label, p.metric_line_no) == ("final_int8_zlib_roundtrip_exact", 28)
    assert len(p.warnings) == 1 and "training lines continue" in p.warnings[0]
    assert "may end with a run that printed no final evaluation" in p.warnings[0]
    # An appended summary of another seed prints its result after its training line, with no artifact.
    q = parse_log(text + "final_q_exact val_loss:1.9 val_bpb:1.14\n")
    assert (q.metric_label, q.metric_line_no) == ("final_int8_zlib_roundtrip_exact", 28)
    assert "'final_q_exact' (line 30, val_bpb 1.14)) follow no artifact line, so none of them is taken" \
        in q.warnings[0]


def test_metric_labels_override_wins_over_the_protocol():
    p = _parse("ttt_unfamiliar_label.log", metric_labels=["diagnostic quantized"])
    assert (p.metric_label, p.val_bpb, p.metric_line_no) == ("diagnostic quantized", 1.08512345, 19)
    assert p.warnings == ()
    # the first preferred label that occurs wins, even a pre-artifact one
    prefs = ["no_such_label", "diagnostic pre-quantization post-ema", "score_first_ttt_eval"]
    p = _parse("ttt_unfamiliar_label.log", metric_labels=prefs)
    assert (p.metric_label, p.metric_line_no) == ("diagnostic pre-quantization post-ema", 14)
    p = _parse("failed_ttt.log", metric_labels=["ttt_eval"])
    assert (p.metric_label, p.val_bpb) == ("ttt_eval", 1.401032)
    # none occurs: the protocol decides, and says the preference was not found
    p = _parse("ttt_unfamiliar_label.log", metric_labels=["no_such_label"])
    assert p.metric_label == "score_first_ttt_eval"
    assert len(p.warnings) == 1 and "no_such_label" in p.warnings[0]


@pytest.mark.parametrize(
    "artifact_line",
    [
        "TTT_EVAL_ONLY=1 - skipping training, loading saved artifact for TTT eval",  # evaluation-only run
        "loaded final_model.int6.ptz",
        "  INT4+fp8+brotli: 15.67MB model + 0.077MB code = 15.75/16.00MB FITS",  # budget check
    ],
)
def test_other_artifact_line_styles_mark_the_artifact(artifact_line):
    text = f"seed:3\n{artifact_line}\nfinal_eval_q val_loss:2.3 val_bpb:1.06 eval_time:400000ms\n"
    p = parse_log(text)
    assert (p.metric_label, p.warnings) == ("final_eval_q", ())
