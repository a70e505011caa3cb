"""Exporting a config as a records folder: layout, byte-identical script and logs, refusals."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from golfsweep.errors import GolfsweepError
from golfsweep.results import (
    Store,
    export_record,
    load_baseline,
    load_sweep,
    runtime_checks_for,
    summary_frame,
)
from tests.fixtures.records import sweeps

RECORDS = Path(__file__).resolve().parents[1] / "fixtures" / "records"

GRID = sweeps.SIZE_GRID


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory) -> Path:
    return sweeps.driver_sweep(tmp_path_factory.mktemp("export") / "sweep", GRID, trials=4)


def _meta(sweep_dir: Path, key: str) -> str:
    with Store(sweep_dir / "golfsweep.db", create=False) as s:
        return s.get_meta(key)


def test_export_writes_a_records_folder(sweep_dir, tmp_path):
    out = export_record(sweep_dir, 0, tmp_path / "rec", name="Fake record", author="Tester")
    assert out == tmp_path / "rec"
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "submission.json", "train_gpt.py",
                                                    "train_seed1.log", "train_seed2.log", "train_seed3.log"]
    script = (out / "train_gpt.py").read_bytes()
    assert script == (sweep_dir / "script" / "fake_train.py").read_bytes()
    assert hashlib.sha256(script).hexdigest() == _meta(sweep_dir, "script_sha256")
    for seed in (1, 2, 3):
        assert (out / f"train_seed{seed}.log").read_bytes() == (sweep_dir / "runs" / f"0000-{seed}" /
                                                               "train.log").read_bytes()

    sub = json.loads((out / "submission.json").read_text())
    row = summary_frame(load_sweep(sweep_dir)).set_index("trial").loc[0]
    assert (sub["name"], sub["author"], sub["track"], sub["non_record"]) == ("Fake record", "Tester",
                                                                            "10min_16mb", False)
    assert len(sub["date"]) == 10
    assert sub["val_bpb"] == pytest.approx(row["mean_val_bpb"], abs=1e-8)
    assert sub["val_loss"] == pytest.approx(row["mean_val_loss"], abs=1e-8)
    assert sub["val_bpb_std"] == pytest.approx(row["std_val_bpb"], abs=1e-8)
    assert sub["bytes_total"] == row["max_bytes_total"] and sub["bytes_code"] == len(script)
    assert sub["seeds"] == [1, 2, 3]
    for seed in ("1", "2", "3"):
        r = sub["seed_results"][seed]
        assert {"val_bpb", "val_loss", "bytes_total", "train_time_ms"} <= set(r) and r["state"] == "complete"
    c = sub["compliance"]
    assert c["artifact_under_16mb"] and c["train_under_600s"] and c["eval_under_600s"] and c["three_seeds"]
    assert [x["rule"] for x in c["runtime_checks"]] == ["artifact_bytes", "train_seconds", "eval_seconds",
                                                       "all_seeds_reported"]
    assert c["static_audit"]["verdict"] in ("clean", "flagged", "unknown")
    assert sub["hyperparameters"] == {"KNOB_X": "1.0", "ARTIFACT_BYTES": "15000000"}

    readme = (out / "README.md").read_text()
    assert readme.startswith("# Record: Fake record")
    assert "| Seed | val_loss (nats) | val_bpb |" in readme and "| **Mean** |" in readme
    for seed in (1, 2, 3):
        v = sub["seed_results"][str(seed)]
        assert f"| {seed} | {v['val_loss']:.8f} | {v['val_bpb']:.8f} |" in readme
    assert "KNOB_X=1.0 ARTIFACT_BYTES=15000000 SEED=1 python train_gpt.py" in readme


def test_exported_folder_reads_back_as_a_baseline(sweep_dir, tmp_path):
    out = export_record(sweep_dir, 2, tmp_path / "rec")
    from_logs = load_baseline(out)
    from_json = load_baseline(out / "submission.json")
    assert [r.seed for r in from_logs.runs] == [r.seed for r in from_json.runs] == [1, 2, 3]
    assert from_logs.values("val_bpb") == pytest.approx(from_json.values("val_bpb"))


def test_export_never_overwrites(sweep_dir, tmp_path):
    out = tmp_path / "rec"
    out.mkdir()
    with pytest.raises(GolfsweepError) as e:
        export_record(sweep_dir, 0, out)
    assert str(out) in str(e.value) and str(e.value).startswith("--out: must not exist")
    assert list(out.iterdir()) == []


def test_trial_over_a_limit_needs_non_record(sweep_dir, tmp_path):
    with pytest.raises(GolfsweepError) as e:
        export_record(sweep_dir, 1, tmp_path / "rec")
    msg = str(e.value)
    assert msg.startswith("--trial: trial 1 is not a valid record: artifact_bytes") and "--non-record" in msg
    assert list(tmp_path.iterdir()) == []  # nothing half-written
    out = export_record(sweep_dir, 1, tmp_path / "rec", non_record=True)
    sub = json.loads((out / "submission.json").read_text())
    assert sub["non_record"] is True and sub["track"] == "non_record_16mb"
    assert sub["compliance"]["artifact_under_16mb"] is False
    assert any("artifact_bytes" in r for r in sub["non_record_reasons"])
    assert (out / "README.md").read_text().startswith("# Non-record:")


def test_unknown_trial(sweep_dir, tmp_path):
    with pytest.raises(GolfsweepError, match=r"^--trial: must be one of this sweep's trials \(0-3\), got 9$"):
        export_record(sweep_dir, 9, tmp_path / "rec")


def test_changed_script_is_refused(sweep_dir, tmp_path):
    copy = tmp_path / "sweep"
    shutil.copytree(sweep_dir, copy)
    (copy / "script" / "fake_train.py").write_bytes(b"print('edited')\n")
    with pytest.raises(GolfsweepError, match=r"^script/fake_train.py: sha256 must equal the store's script_sha256"):
        export_record(copy, 0, tmp_path / "rec")
    assert not (tmp_path / "rec").exists()


def test_failed_and_missing_seeds(tmp_path):
    ok = {"val_bpb": 1.2, "val_loss": 2.0}
    root = sweeps.store_sweep(tmp_path / "s", {
        0: {"params": {"KNOB_X": 1.0}, "runs": {1: ok, 2: {"state": "failed", "reason": "exit 3: OOM"}, 3: ok}},
        1: {"params": {"KNOB_X": 2.0}, "runs": {1: ok, 2: ok}},
    })
    with pytest.raises(GolfsweepError, match=r"all_seeds_reported: 2/3 seeds complete; seed 2: failed"):
        export_record(root, 0, tmp_path / "a")
    with pytest.raises(GolfsweepError, match=r"seed 3: no run"):
        export_record(root, 1, tmp_path / "b")
    out = export_record(root, 0, tmp_path / "a", non_record=True)
    sub = json.loads((out / "submission.json").read_text())
    assert sub["seed_results"]["2"] == {**sub["seed_results"]["2"], "state": "failed", "reason": "exit 3: OOM"}
    assert sub["val_bpb"] == 1.2 and sub["compliance"]["three_seeds"] is False
    out = export_record(root, 1, tmp_path / "b", non_record=True)
    assert json.loads((out / "submission.json").read_text())["seed_results"]["3"] == {"state": "missing"}


def test_runtime_checks_for_picks_best_feasible_by_default(sweep_dir):
    d = runtime_checks_for(sweep_dir)
    best = summary_frame(load_sweep(sweep_dir)).iloc[0]
    assert d["trial"] == int(best["trial"]) and d["ok"] is True
    assert [c["rule"] for c in d["checks"]] == ["artifact_bytes", "train_seconds", "eval_seconds",
                                               "all_seeds_reported"]
    assert all({"rule", "ok", "value", "limit", "message"} <= set(c) for c in d["checks"])
    bad = runtime_checks_for(sweep_dir, 3)
    assert bad["trial"] == 3 and bad["ok"] is False
    json.dumps(bad)
    with pytest.raises(GolfsweepError, match="^--trial: must be one of"):
        runtime_checks_for(sweep_dir, 42)


def test_cli_export(sweep_dir, tmp_path):
    from typer.testing import CliRunner

    from golfsweep.cli import app

    res = CliRunner().invoke(app, ["export", str(sweep_dir), "--trial", "2", "--out", str(tmp_path / "r"),
                                   "--author", "me"])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "r" / "submission.json").read_text())["author"] == "me"


def test_export_refuses_a_script_the_audit_flags_unless_non_record(tmp_path):
    script = b"import urllib.request\nurllib.request.urlopen('http://example.com/val.bin')\n"
    root = sweeps.store_sweep(tmp_path / "sweep", {0: {"params": {"KNOB_X": 1.0}, "runs": {
        s: {"val_bpb": 1.2, "val_loss": 2.0} for s in (1, 2, 3)}}}, script=script)
    with pytest.raises(GolfsweepError, match=r"compliance audit flagged train_gpt.py \(network at line"):
        export_record(root, 0, tmp_path / "rec")
    assert not (tmp_path / "rec").exists()
    out = export_record(root, 0, tmp_path / "rec", non_record=True)
    sub = json.loads((out / "submission.json").read_text())
    assert sub["non_record"] is True and any("audit flagged" in r for r in sub["non_record_reasons"])


SWITCHED_CHEAT = b"""import os, numpy as np, torch, torch.nn.functional as F
val = torch.from_numpy(np.fromfile("data/fineweb_val_0.bin", dtype=np.uint16).astype(np.int64))
model = torch.nn.Linear(4, 4)
if float(os.environ.get("KNOB_X", "0")) >= 3:
    F.cross_entropy(model(val[:-1]), val[1:]).backward()
with torch.no_grad():
    print(F.cross_entropy(model(val[:-1]), val[1:]).item())
"""


@pytest.mark.parametrize("knob, refused", [(1.0, False), (3.0, True)])
def test_export_audits_the_script_as_the_trial_ran_it(tmp_path, knob, refused):
    root = sweeps.store_sweep(tmp_path / "sweep", {0: {"params": {"KNOB_X": knob}, "runs": {
        s: {"val_bpb": 1.2, "val_loss": 2.0} for s in (1, 2, 3)}}}, script=SWITCHED_CHEAT)
    if refused:
        with pytest.raises(GolfsweepError, match=r"compliance audit flagged train_gpt.py \(update_before_score"):
            export_record(root, 0, tmp_path / "rec")
    else:
        sub = json.loads((export_record(root, 0, tmp_path / "rec") / "submission.json").read_text())
        assert sub["compliance"]["static_audit"]["verdict"] == "clean"


def test_export_refuses_a_script_the_audit_cannot_read(tmp_path):
    root = sweeps.store_sweep(tmp_path / "sweep", {0: {"params": {"KNOB_X": 1.0}, "runs": {
        s: {"val_bpb": 1.2, "val_loss": 2.0} for s in (1, 2, 3)}}}, script=b"# nothing but a comment\n")
    with pytest.raises(GolfsweepError, match="the audit could not run: .*empty file"):
        export_record(root, 0, tmp_path / "rec")
