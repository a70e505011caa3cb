"""Secret-looking environment variables reach the runs, and nothing golfsweep writes or prints shows them.

Names with a secret-looking component (``HF_TOKEN``, ``WANDB_API_KEY``, ``DB_PASSWORD``) are passed
to every run unchanged, and shown as ``***`` everywhere else: spec.json, the store, tables, status,
the dry run, driver.log, the exported record and the report. The runs' script checks each value
by its sha256 *and* prints its whole environment and the values themselves (bare, on stderr, in a
URL, split over two writes), so the values reach golfsweep through the run's output: they must
be masked before anything is written (``golfsweep.redact``), and appear in no file of the sweep,
of the node's run directories, of an export or of a report.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import sqlite3
import subprocess
import uuid
from pathlib import Path

import pytest

from golfsweep.errors import GolfsweepError, SpecError
from golfsweep.orchestrator import Driver, SimulatedBackend, SimulatedRun
from golfsweep.results import Store, format_status, format_table, load_sweep
from golfsweep.redact import MIN_SECRET_LENGTH, Redactor
from golfsweep.search_spaces import SECRET_MASK, is_secret_name, load_spec, mask_env
from golfsweep.worker import RunState, parse_log
from golfsweep.paths import SweepPaths
from tests.conftest import invoke_cli, run_sweep_in_process, write_sweep
from tests.fixtures.records import sweeps
from tests.orchestrator._sweeps import write_spec

INHERITED = "GOLFSWEEP_TEST_AUTH_TOKEN"  # set in the driver's environment, not in the sweep file
SHORT = ("PIN_TOKEN", "42")  # a secret too short to mask everywhere: masked next to its name only


def _secret(name: str) -> str:
    return f"{name.lower()}-{uuid.uuid4().hex}"


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {name: _secret(name) for name in ("HF_TOKEN", "WANDB_API_KEY", "DB_PASSWORD", INHERITED)}
    monkeypatch.setenv(INHERITED, values[INHERITED])
    return values


def _leaking_script(path: Path, secrets: dict[str, str]) -> Path:
    """A trainer that reports, per variable, whether it got the expected value, then prints them all.

    The script itself holds only digests and names, never a value (export refuses a script with one).
    """
    digests = {k: hashlib.sha256(v.encode()).hexdigest() for k, v in secrets.items()}
    path.write_text(
        "import hashlib, os, sys, time\n"
        f"EXPECTED = {digests!r}\n"
        "for name, digest in sorted(EXPECTED.items()):\n"
        "    ok = hashlib.sha256(os.environ.get(name, '').encode()).hexdigest() == digest\n"
        "    print(f'secret_ok {name} {ok}', flush=True)\n"
        "e = os.environ\n"
        "for k, v in sorted(e.items()):\n"  # `env`
        "    print(f'{k}={v}')\n"
        "print(dict(e), flush=True)\n"  # repr of the environment
        "for name in sorted(EXPECTED):\n"
        "    print('bare', e[name], 'end')\n"  # no name next to it
        "print('https://user:' + e['HF_TOKEN'] + '@huggingface.co/x', e['WANDB_API_KEY'] + e['DB_PASSWORD'])\n"
        f"print('to stderr', e[{INHERITED!r}], file=sys.stderr, flush=True)\n"
        "v = e['DB_PASSWORD']\n"
        "sys.stdout.write('split ' + v[:7]); sys.stdout.flush(); time.sleep(0.2)\n"  # one value, two writes
        "sys.stdout.write(v[7:] + ' done\\n'); sys.stdout.flush()\n"
        "open('final_model.int6.ptz', 'wb').truncate(1000)\n"
        "print('step:100/100 val_loss:2.1000 val_bpb:1.3000 train_time:100ms', flush=True)\n"
        "print('Total submission size int6+zstd: 2000 bytes', flush=True)\n"
        "print('final_int6_zstd_roundtrip val_loss:2.0000 val_bpb:1.2000 eval_time:10ms', flush=True)\n",
        encoding="utf-8")
    return path


@pytest.fixture
def secret_sweep(tmp_path: Path, secrets: dict[str, str]):
    script = _leaking_script(tmp_path / "train_gpt.py", secrets)
    in_file = {k: v for k, v in secrets.items() if k != INHERITED}
    spec_path = write_sweep(tmp_path / "spec", script=str(script), trials=2,
                            env={**in_file, SHORT[0]: SHORT[1], "PLAIN_SETTING": "visible-value"})
    sweep_dir = tmp_path / "sweep"
    outcome = run_sweep_in_process(spec_path, sweep_dir, workdir_root=tmp_path / "work")
    return spec_path, sweep_dir, outcome


def _files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def _assert_in_no_file(roots: list[Path], secrets: dict[str, str]) -> int:
    """``grep -r`` over ``roots``, every file (binary ones too): no secret value anywhere. Returns the file count."""
    files = [p for root in roots for p in _files_under(root)]
    for p in files:
        raw = p.read_bytes()
        for name, value in secrets.items():
            assert value.encode() not in raw, f"{name}'s value is in {p}"
    if shutil.which("grep"):  # and the real thing, as a reviewer would check it
        patterns = [a for v in secrets.values() for a in ("-e", v)]
        res = subprocess.run(["grep", "-rlaF", *patterns, *map(str, roots)], capture_output=True, text=True)
        assert res.returncode == 1 and res.stdout == "", res.stdout + res.stderr
    return len(files)


def _assert_nowhere(text: str, secrets: dict[str, str], where: str) -> None:
    for name, value in secrets.items():
        assert value not in text, f"{name}'s value shows in {where}"


def test_secret_names_are_recognised():
    for name in ("HF_TOKEN", "WANDB_API_KEY", "DB_PASSWORD", "AWS_SECRET_ACCESS_KEY", INHERITED):
        assert is_secret_name(name), name
    for name in ("TOKENIZER_PATH", "DATA_PATH", "KNOB_X", "TRAIN_BATCH_TOKENS"):
        assert not is_secret_name(name), name
    assert mask_env({"HF_TOKEN": "x", "A": "y"}) == {"HF_TOKEN": SECRET_MASK, "A": "y"}


def test_secrets_reach_every_run(secret_sweep, secrets):
    _, sweep_dir, outcome = secret_sweep
    assert outcome.n_runs == 4 and outcome.n_failed == 0
    data = load_sweep(sweep_dir)
    assert all(r.state is RunState.COMPLETE for r in data.runs)
    for r in data.runs:
        log = Path(r.log_path).read_text()
        for name in secrets:
            assert f"secret_ok {name} True" in log, (name, log)


def test_printed_secrets_are_masked_in_the_run_output(secret_sweep, secrets):
    """The trainer printed every value; the logs show ``***`` where they were and keep everything else."""
    _, sweep_dir, _ = secret_sweep
    data = load_sweep(sweep_dir)
    for r in data.runs:
        log = Path(r.log_path).read_text()
        lines = log.splitlines()
        for name in secrets:
            assert f"{name}={SECRET_MASK}" in lines and f"'{name}': '{SECRET_MASK}'" in log, name
        assert lines.count(f"bare {SECRET_MASK} end") == len(secrets)
        assert f"https://user:{SECRET_MASK}@huggingface.co/x {SECRET_MASK}" in lines  # two values: one mask
        assert f"to stderr {SECRET_MASK}" in lines and f"split {SECRET_MASK} done" in lines
        assert f"{SHORT[0]}={SECRET_MASK}" in lines  # short: masked next to its name
        assert "PLAIN_SETTING=visible-value" in lines and f"SEED={r.seed}" in lines  # the rest untouched
        assert r.val_bpb == pytest.approx(1.2) and r.metric_label is not None
        assert all(value not in "\n".join(r.log_tail) for value in secrets.values())
    note = (sweep_dir / "driver.log").read_text()
    assert f"event=short_secret key=env.{SHORT[0]} min_length={MIN_SECRET_LENGTH}" in note


def test_secrets_are_masked_in_everything_stored(secret_sweep, secrets):
    _, sweep_dir, _ = secret_sweep
    stored = json.loads((sweep_dir / "spec.json").read_text())["spec"]["env"]
    with Store(sweep_dir / "golfsweep.db", create=False) as store:
        meta = json.loads(store.get_meta("spec"))["env"]
    for env in (stored, meta):
        assert env["HF_TOKEN"] == env["WANDB_API_KEY"] == env["DB_PASSWORD"] == SECRET_MASK
        assert env["PLAIN_SETTING"] == "visible-value"  # masking is by name, not wholesale
        assert INHERITED not in env
    files = _files_under(sweep_dir)
    assert {"spec.json", "golfsweep.db", "optuna.db", "driver.log", "train.log", "result.json"} <= {
        p.name for p in files}
    # the sweep directory and the node-local run directories (the worker's own train.log)
    work = sweep_dir.parent / "work"
    assert any(p.name == "train.log" for p in _files_under(work))
    assert _assert_in_no_file([sweep_dir, work], secrets) > 10


def test_secrets_are_masked_in_what_is_printed(secret_sweep, secrets):
    spec_path, sweep_dir, _ = secret_sweep
    data = load_sweep(sweep_dir)
    for fmt in ("md", "csv", "json"):
        _assert_nowhere(format_table(data, fmt), secrets, f"the {fmt} table")
        res = invoke_cli("table", sweep_dir, "--format", fmt)
        assert res.exit_code == 0
        _assert_nowhere(res.stdout + res.stderr, secrets, f"`golfsweep table --format {fmt}`")
    _assert_nowhere(format_status(data), secrets, "status")
    res = invoke_cli("status", sweep_dir)
    assert res.exit_code == 0
    _assert_nowhere(res.stdout + res.stderr, secrets, "`golfsweep status`")

    dry = invoke_cli("run", spec_path, "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    _assert_nowhere(dry.stdout + dry.stderr, secrets, "the dry run")
    plan = [line for line in dry.stdout.splitlines() if line.startswith("trial ")]
    assert plan and all(f"HF_TOKEN={SECRET_MASK}" in line and f"DB_PASSWORD={SECRET_MASK}" in line
                        and "PLAIN_SETTING=visible-value" in line for line in plan)

    _assert_nowhere((sweep_dir / "driver.log").read_text(), secrets, "driver.log")


def test_secrets_are_masked_in_exports(secret_sweep, secrets, tmp_path: Path):
    from golfsweep import results

    _, sweep_dir, outcome = secret_sweep
    out = results.export_record(sweep_dir, outcome.best["trial"], tmp_path / "record", non_record=True)
    files = _files_under(Path(out))
    assert {p.name for p in files} >= {"submission.json", "README.md", "train_gpt.py", "train_seed1.log"}
    for p in files:
        _assert_nowhere(p.read_text(encoding="utf-8", errors="replace"), secrets, f"export {p.name}")
    sub = json.loads((Path(out) / "submission.json").read_text())
    assert SECRET_MASK in json.dumps(sub)
    report = results.write_report(sweep_dir, tmp_path / "report.html")
    _assert_nowhere(Path(report).read_text(encoding="utf-8"), secrets, "the HTML report")
    res = invoke_cli("export", sweep_dir, "--trial", outcome.best["trial"], "--out", tmp_path / "cli-record",
                     "--non-record")
    assert res.exit_code == 0, res.stderr
    res = invoke_cli("report", sweep_dir, "--out", tmp_path / "cli-report.html")
    assert res.exit_code == 0, res.stderr
    _assert_in_no_file([tmp_path / "record", tmp_path / "cli-record", tmp_path / "report.html",
                        tmp_path / "cli-report.html"], secrets)


def test_export_and_report_scrub_a_sweep_dir_written_before_redaction(secret_sweep, secrets, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch):
    """Defence in depth: values in a sweep directory's logs and store do not reach the record or report.

    Export masks the values it knows (its environment, ``secret_env``) and any assignment to a secret
    name; a directory from before redaction whose sweep-file secrets it cannot know is refused.
    """
    from golfsweep import results

    _, sweep_dir, outcome = secret_sweep
    old = tmp_path / "old-sweep"
    shutil.copytree(sweep_dir, old)
    trial = outcome.best["trial"]
    leak = "\n".join([f"HF_TOKEN={secrets['HF_TOKEN']}",  # known to export by its name only
                      f"bare {secrets[INHERITED]} and {secrets['WANDB_API_KEY']}",  # process env / secret_env
                      f"DB_PASSWORD: '{secrets['DB_PASSWORD']}'", ""])
    log = old / "runs" / f"{trial:04d}-1" / "train.log"
    log.write_text(log.read_text() + leak)
    with Store(old / "golfsweep.db", create=False) as store:  # a writable handle: create=False only checks it exists
        rec = store.run(trial, 2)
        store.put_run(dataclasses.replace(rec, state=RunState.FAILED, reason=f"boom {leak}"))
    monkeypatch.delenv("HF_TOKEN", raising=False)  # what export can know: INHERITED (env), WANDB (secret_env)
    wandb = {"WANDB_API_KEY": secrets["WANDB_API_KEY"]}
    out = results.export_record(old, trial, tmp_path / "record", non_record=True, secret_env=wandb)
    text = (out / "train_seed1.log").read_text()
    assert f"HF_TOKEN={SECRET_MASK}" in text and f"bare {SECRET_MASK} and {SECRET_MASK}" in text
    assert f"DB_PASSWORD: '{SECRET_MASK}'" in text
    assert (out / "train_seed2.log").read_bytes() == (old / "runs" / f"{trial:04d}-2" / "train.log").read_bytes()
    json.loads((out / "submission.json").read_text())  # still valid JSON
    report = results.write_report(old, tmp_path / "report.html", secret_env=wandb)
    assert "boom" in report.read_text()
    _assert_in_no_file([out, report], secrets)

    # the same directory as a sweep from before redaction: the sweep file's secrets must be known
    with sqlite3.connect(old / "golfsweep.db") as conn:
        conn.execute("DELETE FROM meta WHERE key = 'secrets_redacted'")
    with pytest.raises(GolfsweepError, match="before golfsweep masked secret values") as info:
        results.export_record(old, trial, tmp_path / "refused", non_record=True, secret_env=wandb)
    assert f"DB_PASSWORD, HF_TOKEN, {SHORT[0]}" in str(info.value)
    _assert_nowhere(str(info.value), secrets, "the refusal")
    assert not (tmp_path / "refused").exists()
    in_file = {k: v for k, v in secrets.items() if k != INHERITED}
    out = results.export_record(old, trial, tmp_path / "record2", non_record=True,
                                secret_env={**in_file, SHORT[0]: SHORT[1]})
    _assert_in_no_file([out], secrets)


def test_export_refuses_a_script_holding_a_secret_value(secret_sweep, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch):
    from golfsweep import results

    _, sweep_dir, outcome = secret_sweep
    monkeypatch.setenv("LEAKED_API_KEY", "secret_ok")  # a string the script holds
    with pytest.raises(GolfsweepError, match="holding the value of LEAKED_API_KEY") as info:
        results.export_record(sweep_dir, outcome.best["trial"], tmp_path / "record", non_record=True)
    assert "secret_ok" not in str(info.value) and not (tmp_path / "record").exists()


def test_a_bad_secret_value_is_not_echoed_in_the_error(tmp_path: Path):
    value = _secret("HF_TOKEN")
    spec_path = write_sweep(tmp_path, env={"HF_TOKEN": [value], "OTHER": [1]})
    with pytest.raises(SpecError) as info:
        load_spec(spec_path)
    assert value not in str(info.value)
    assert "env.HF_TOKEN" in str(info.value) and "env.OTHER" in str(info.value)
    res = invoke_cli("run", spec_path)
    assert res.exit_code == 1 and "env.HF_TOKEN" in res.stderr and value not in res.stderr


# --------------------------------------------------------------------------- the redactor itself

def test_redactor_masks_every_value_of_a_secret_name():
    r = Redactor({"HF_TOKEN": "hf_abcdefgh", "WANDB_API_KEY": "wandb-1234567", "KNOB_X": "hf_abcdefgh-not"})
    assert r.n_values == 2  # KNOB_X is not a secret name
    assert r.redact("a hf_abcdefgh b wandb-1234567 c hf_abcdefgh") == "a *** b *** c ***"
    assert r.redact("hf_abcdefghwandb-1234567") == "***"  # touching values: one mask, nothing between
    assert r.redact("no secret here: step:1/2 val_bpb:1.2345") == "no secret here: step:1/2 val_bpb:1.2345"
    assert r.redact("") == ""


def test_redactor_overlapping_values_leave_no_fragment():
    r = Redactor({"A_TOKEN": "abcdef12", "B_TOKEN": "ef12ghij", "C_KEY": "cdef"})  # C_KEY: short
    assert r.redact("xx abcdef12ghij yy") == "xx *** yy"  # neither "ghij" nor "abcd" is left
    assert r.redact("abcdef12abcdef12") == "***"
    r2 = Redactor({"A_TOKEN": "aaaaaa"})
    assert r2.redact("aaaaaaaa|aaaaa") == "***|aaaaa"  # overlapping occurrences of one value


def test_redactor_short_values_are_masked_only_next_to_their_name():
    r = Redactor({"PIN_TOKEN": "42", "FLAG_TOKEN": "1", "EMPTY_TOKEN": ""})
    assert r.short_names == ("FLAG_TOKEN", "PIN_TOKEN") and r.n_values == 0
    line = "step:42/100 val_loss:1.4200 val_bpb:1.0042 train_time:421ms"
    assert r.redact(line) == line  # masking "1" or "42" everywhere would destroy the metrics
    assert parse_log(r.redact(line + "\n")).curve[0].val_bpb == 1.0042
    assert r.redact("PIN_TOKEN=42 FLAG_TOKEN: 1") == "PIN_TOKEN=*** FLAG_TOKEN: ***"
    assert r.redact("{'PIN_TOKEN': '42', 'X': '42'}") == "{'PIN_TOKEN': '***', 'X': '42'}"
    assert Redactor({"A_TOKEN": "x" * MIN_SECRET_LENGTH}).redact("x" * MIN_SECRET_LENGTH) == "***"
    assert Redactor({"A_TOKEN": "x" * (MIN_SECRET_LENGTH - 1)}).short_names == ("A_TOKEN",)


def test_redactor_masks_assignments_to_secret_names_without_knowing_the_value():
    r = Redactor()
    assert r.redact("HF_TOKEN=hf_unknown KNOB_X=3") == "HF_TOKEN=*** KNOB_X=3"
    assert r.redact("environ({'HOME': '/root', 'HF_TOKEN': 'hf_x y'})") == "environ({'HOME': '/root', 'HF_TOKEN': '***'})"
    assert r.redact('{"WANDB_API_KEY": "k", "n": 1}') == '{"WANDB_API_KEY": "***", "n": 1}'
    assert r.redact("export DB_PASSWORD='a b c'; X=1") == "export DB_PASSWORD='***'; X=1"
    assert r.redact("A=HF_TOKEN=zzz") == "A=HF_TOKEN=***"  # the outer name does not hide the inner one
    assert r.redact("HF_TOKEN=*** HF_TOKEN= x") == "HF_TOKEN=*** HF_TOKEN= ***"
    for same in ("KeyError: 'HF_TOKEN'", "TOKENIZER_PATH=/data/tok.model", "hf_token=lower-case is not an env name",
                 "TRAIN_BATCH_TOKENS:524288", "PWD=/work/dir", "HF_TOKEN:"):
        assert r.redact(same) == same


def test_redactor_values_with_line_breaks_and_whitespace_count_line_by_line():
    pem = "-----BEGIN KEY-----\nMIIEowIBAAKCAQEA\nshort\n-----END KEY-----\n"
    r = Redactor({"SSH_PRIVATE_KEY": pem, "HF_TOKEN": "  hf_padded-value \n"})
    text = "dump:\n-----BEGIN KEY-----\nMIIEowIBAAKCAQEA\nshort\n-----END KEY-----\nand hf_padded-value."
    assert r.redact(text) == "dump:\n***\n***\nshort\n***\nand ***."


def test_redactor_bytes_keep_what_is_not_utf8_and_never_show_values_in_repr():
    r = Redactor({"HF_TOKEN": "hf_abcdefgh"})
    assert r.redact_bytes(b"\xff\xfe hf_abcdefgh \xff\n") == b"\xff\xfe *** \xff\n"
    raw = b"\xffplain\n"
    assert r.redact_bytes(raw) is raw
    assert "hf_abcdefgh" not in repr(r)
    assert r.contains_value(b"x hf_abcdefgh") and not r.contains_value("hf_abcdefg")
    assert r.names_in("hf_abcdefgh") == ["HF_TOKEN"] and r.names_in(b"nothing") == []


def test_secret_names_leave_the_working_directory_alone():
    assert not is_secret_name("PWD") and not is_secret_name("OLDPWD") and is_secret_name("DB_PWD")
    assert mask_env({"PWD": "/w", "DB_PWD": "x"}) == {"PWD": "/w", "DB_PWD": SECRET_MASK}


def test_the_worker_masks_secrets_it_only_finds_in_the_node_environment(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch):
    """A run's env is the node's env + the sweep env: a token only the node has is masked too, in the
    log on disk and in every field of the result (preflight reason included)."""
    from golfsweep.worker import RunSpec, execute_run

    node_secret = _secret("NODE_TOKEN")
    monkeypatch.setenv("NODE_TOKEN", node_secret)
    script = (b"import os, sys\nprint(os.environ['NODE_TOKEN'])\n"
              b"sys.stdout.write(os.environ['NODE_TOKEN'][:9]); sys.stdout.flush()\n"
              b"print(os.environ['NODE_TOKEN'][9:], 'x')\nsys.exit(3)\n")
    spec = RunSpec(sweep="s", trial=0, seed=1, params={}, env={}, script_name="t.py", script_bytes=script,
                   script_sha256=hashlib.sha256(script).hexdigest())
    res = execute_run(spec, workdir_root=tmp_path)
    assert res.state is RunState.FAILED and res.log_text.splitlines() == ["***", "*** x"]
    assert node_secret not in repr(res)
    bad = dataclasses.replace(spec, env={"DATA_PATH": f"/nonexistent/{node_secret}"})
    res = execute_run(bad, workdir_root=tmp_path)
    assert res.reason and "/nonexistent/***" in res.reason and node_secret not in res.reason
    assert node_secret not in repr(bad) and "/nonexistent" not in repr(bad)  # RunSpec's repr hides env
    _assert_in_no_file([tmp_path], {"NODE_TOKEN": node_secret})


def test_export_and_report_mask_the_sweep_files_secrets_given_on_the_command_line(tmp_path, cli):
    """An old sweep directory (run output never redacted) exports cleanly when the sweep file is given."""
    secret = "hf_OLDSWEEPsecret0123456789"
    root = sweeps.store_sweep(tmp_path / "sweep", {0: {"params": {"KNOB_X": 1.0}, "runs": {
        s: {"val_bpb": 1.2, "val_loss": 2.0} for s in (1, 2, 3)}}})
    for seed in (1, 2, 3):
        log = SweepPaths.of(root).run_log(0, seed)
        log.write_text(log.read_text() + f"env dump: {secret}\n")
    sweep_file = tmp_path / "sweep.toml"
    sweep_file.write_text(f'[sweep]\nname = "x"\n[env]\nHF_TOKEN = "{secret}"\n')
    out = tmp_path / "record"
    assert cli("export", root, "--trial", "0", "--out", out, "--non-record", "--sweep-file", sweep_file).exit_code == 0
    assert cli("report", root, "--out", tmp_path / "r.html", "--sweep-file", sweep_file).exit_code == 0
    for path in [*out.rglob("*"), tmp_path / "r.html"]:
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


class _SharedCluster(SimulatedBackend):
    shares_specs = True  # like a Ray cluster reached by address: task arguments readable cluster-wide


def _instant(spec):
    return SimulatedRun(duration_s=60, val_bpb=1.2, train_time_ms=1000, eval_time_ms=1000, bytes_total=1000)


@pytest.mark.parametrize("backend", [SimulatedBackend, _SharedCluster])
def test_a_sweep_file_secret_sent_to_a_shared_cluster_gets_one_notice(tmp_path, backend, caplog):
    secret = _secret("HF_TOKEN")
    sweep = write_spec(tmp_path, trials=1, seeds=(1,), env={"HF_TOKEN": secret, "DATA_PATH": "/data"})
    with caplog.at_level(logging.WARNING, logger="golfsweep"):
        Driver(load_spec(sweep), tmp_path / "out", backend(_instant), poll_seconds=0).run()
    notices = [r.getMessage() for r in caplog.records if r.name == "golfsweep"]
    log = (tmp_path / "out" / "driver.log").read_text()
    if backend is SimulatedBackend:  # one machine, one user: nothing to say
        assert not notices and "secret_in_task_args" not in log
        return
    assert len(notices) == 1 and notices[0].startswith("env.HF_TOKEN: ") and "nodes' environment" in notices[0]
    assert "DATA_PATH" not in notices[0] and secret not in notices[0]
    assert "event=secret_in_task_args" in log and secret not in log
