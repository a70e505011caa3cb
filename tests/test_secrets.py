"""Secret-looking environment variables reach the runs, and nothing golfsweep writes or prints shows them.

Names with a secret-looking component (``HF_TOKEN``, ``WANDB_API_KEY``, ``DB_PASSWORD``) are passed
to every run unchanged, and shown as ``***`` everywhere else: spec.json, the store, tables, status,
the dry run, driver.log, the exported record and the report. The runs' script checks each value
by its sha256 and never prints it, so the value may appear in no file of the sweep at all.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

import pytest

from golfsweep.errors import SpecError
from golfsweep.results import Store, format_status, format_table, load_sweep
from golfsweep.search_spaces import SECRET_MASK, is_secret_name, load_spec, mask_env
from golfsweep.worker import RunState
from tests.conftest import invoke_cli, run_sweep_in_process, write_sweep

INHERITED = "GOLFSWEEP_TEST_AUTH_TOKEN"  # set in the driver's environment, not in the sweep file


def _secret(name: str) -> str:
    return f"{name.lower()}-{uuid.uuid4().hex}"


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {name: _secret(name) for name in ("HF_TOKEN", "WANDB_API_KEY", "DB_PASSWORD", INHERITED)}
    monkeypatch.setenv(INHERITED, values[INHERITED])
    return values


def _checking_script(path: Path, secrets: dict[str, str]) -> Path:
    """A trainer that reports, per variable, whether it got the expected value, and never prints one."""
    digests = {k: hashlib.sha256(v.encode()).hexdigest() for k, v in secrets.items()}
    path.write_text(
        "import hashlib, os\n"
        f"EXPECTED = {digests!r}\n"
        "for name, digest in sorted(EXPECTED.items()):\n"
        "    ok = hashlib.sha256(os.environ.get(name, '').encode()).hexdigest() == digest\n"
        "    print(f'secret_ok {name} {ok}', flush=True)\n"
        "open('final_model.int6.ptz', 'wb').truncate(1000)\n"
        "print('step:100/100 val_loss:2.1000 val_bpb:1.3000 train_time:100ms', flush=True)\n"
        "print('Total submission size int6+zstd: 2000 bytes', flush=True)\n"
        "print('final_int6_zstd_roundtrip val_loss:2.0000 val_bpb:1.2000 eval_time:10ms', flush=True)\n",
        encoding="utf-8")
    return path


@pytest.fixture
def secret_sweep(tmp_path: Path, secrets: dict[str, str]):
    script = _checking_script(tmp_path / "train_gpt.py", secrets)
    in_file = {k: v for k, v in secrets.items() if k != INHERITED}
    spec_path = write_sweep(tmp_path / "spec", script=str(script), trials=2,
                            env={**in_file, "PLAIN_SETTING": "visible-value"})
    sweep_dir = tmp_path / "sweep"
    outcome = run_sweep_in_process(spec_path, sweep_dir, workdir_root=tmp_path / "work")
    return spec_path, sweep_dir, outcome


def _files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


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
    assert {"spec.json", "golfsweep.db", "driver.log", "train.log", "result.json"} <= {p.name for p in files}
    for p in files:
        raw = p.read_bytes()
        for name, value in secrets.items():
            assert value.encode() not in raw, f"{name}'s value is stored in {p.relative_to(sweep_dir)}"


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
    if not hasattr(results, "export_record"):
        pytest.skip("golfsweep.results.export_record does not exist yet")
    out = results.export_record(sweep_dir, outcome.best["trial"], tmp_path / "record", non_record=True)
    files = _files_under(Path(out))
    assert files
    for p in files:
        _assert_nowhere(p.read_text(encoding="utf-8", errors="replace"), secrets, f"export {p.name}")
    sub = json.loads((Path(out) / "submission.json").read_text())
    assert SECRET_MASK in json.dumps(sub)
    if hasattr(results, "write_report"):
        report = results.write_report(sweep_dir, tmp_path / "report.html")
        _assert_nowhere(Path(report).read_text(encoding="utf-8"), secrets, "the HTML report")


def test_a_bad_secret_value_is_not_echoed_in_the_error(tmp_path: Path):
    value = _secret("HF_TOKEN")
    spec_path = write_sweep(tmp_path, env={"HF_TOKEN": [value], "OTHER": [1]})
    with pytest.raises(SpecError) as info:
        load_spec(spec_path)
    assert value not in str(info.value)
    assert "env.HF_TOKEN" in str(info.value) and "env.OTHER" in str(info.value)
    res = invoke_cli("run", spec_path)
    assert res.exit_code == 1 and "env.HF_TOKEN" in res.stderr and value not in res.stderr
