"""``golfsweep export``: one config of a sweep as a records folder in the challenge's layout.

The folder holds ``submission.json``, ``train_seed<SEED>.log`` per seed, the exact script that ran
(``train_gpt.py``, byte-identical to what the runs received) and a ``README.md``. It is built in a
temporary sibling folder and renamed into place, so a failed export leaves nothing behind.

The folder is meant to be published, so no secret value may reach it. Runs are redacted when
their output is written (``golfsweep.redact``); export redacts again what it writes (a sweep
directory may predate that, or come from elsewhere) — see ``export_record``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import shutil
import tempfile
from pathlib import Path
from collections.abc import Mapping
from typing import Any

from golfsweep.results._stats import mean, sample_std
from golfsweep.errors import GolfsweepError
from golfsweep.storage import StoreLocation
from golfsweep.redact import REDACTED_META, SECRET_MASK, Redactor, is_secret_name
from golfsweep.scriptfiles import ScriptFiles
from golfsweep.results._runtime import _checked, pick_trial, record_limits, runtime_checks, trial_env
from golfsweep.results._store import RunRecord
from golfsweep.results._table import SweepData, load_sweep
from golfsweep.worker import RunState, launch_command

SCRIPT_NAME = "train_gpt.py"


def export_record(sweep_dir: str | Path | StoreLocation, trial: int, out: str | Path, *, non_record: bool = False,
                  name: str | None = None, author: str | None = None,
                  secret_env: Mapping[str, str] | None = None) -> Path:
    """Write the records folder ``out`` for ``trial`` and return its path.

    Refuses an existing ``out``, a script whose bytes no longer match the sweep's recorded sha256,
    and — unless ``non_record`` — a trial with failed or missing seeds or one that breaks a limit.

    Secrets: the sweep directory keeps no secret value (spec.json and the store show ``***``), so
    export masks what it can know: the secret values (``golfsweep.redact``) of this process's
    environment and of ``secret_env`` (e.g. the sweep file's ``[env]``), and any value assigned to
    a secret name (``HF_TOKEN=…``) whatever it is. Logs, submission.json and README.md are redacted
    with that; the script is exported byte for byte, so one holding such a value is refused. A
    sweep directory written before runs were redacted (no ``secrets_redacted`` mark in its store)
    is refused while a secret of its sweep env has no known value to mask.
    """
    known = {**os.environ, **dict(secret_env or {})}
    redactor = Redactor(known)
    data = load_sweep(sweep_dir)
    if trial is None:
        raise GolfsweepError("--trial: is required, got nothing")
    t = pick_trial(data, trial)
    out = Path(out)
    if out.exists() or out.is_symlink():
        raise GolfsweepError(f"--out: must not exist (export never overwrites), got {str(out)!r}")
    files = _verified_script(data)
    exported = dataclasses.replace(files, name=SCRIPT_NAME)  # the record's script, with the files it runs
    _check_unredacted(data, known)
    for file_name, raw in ((exported.name, exported.script), *exported.support):
        if held := redactor.names_in(raw):
            raise GolfsweepError(f"script: must not hold the value of a secret environment variable (it is exported "
                                 f"byte for byte), got {file_name} holding the value of {', '.join(held)}")
    runs = {r.seed: r for r in data.runs if r.trial == t}
    params = next(tr.params for tr in data.trials if tr.trial == t)
    checks = runtime_checks(data, t)
    reasons = [c.message for c in checks if not c.ok]
    logs: dict[int, bytes] = {}
    for seed in data.seeds:
        r = runs.get(seed)
        log, where = data.log(t, seed)
        if log is not None:
            logs[seed] = log
        elif r is not None and r.state is RunState.COMPLETE:
            reasons.append(f"seed {seed}: log {where} is missing")
    audit = _static_audit(exported, trial_env(data, t))
    if audit["verdict"] == "flagged":
        first = next((f for f in audit["findings"] if f["severity"] == "violation"), {})
        reasons.append(f"compliance audit flagged {SCRIPT_NAME}"
                       + (f" ({first.get('rule')} at line {first.get('line')})" if first else ""))
    elif audit["verdict"] == "error":
        reasons.append(audit["notes"][0])
    if reasons and not non_record:
        raise GolfsweepError(f"--trial: trial {t} is not a valid record: {'; '.join(reasons)} "
                             f"(use --non-record to export it as a non-record submission)")
    sub = _submission(data, t, params, runs, checks, audit, files.sha256, files.code_bytes,
                      non_record=bool(reasons) or non_record, reasons=reasons, name=name, author=author)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        exported.write(tmp)
        for seed, log in logs.items():  # byte for byte unless there is something to mask
            (tmp / f"train_seed{seed}.log").write_bytes(redactor.redact_bytes(log))
        (tmp / "submission.json").write_text(json.dumps(_redact_json(sub, redactor), indent=2) + "\n",
                                             encoding="utf-8")
        (tmp / "README.md").write_text(redactor.redact(_readme(data, sub, params, logs)), encoding="utf-8")
        os.chmod(tmp, 0o755)
        if out.exists():
            raise GolfsweepError(f"--out: must not exist (export never overwrites), got {str(out)!r}")
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _check_unredacted(data: SweepData, known: Mapping[str, str]) -> None:
    """Refuse an older, unredacted sweep directory whose sweep-file secrets export cannot mask."""
    with data.open_store() as store:
        if store.get_meta(REDACTED_META) is not None:
            return
    missing = sorted(k for k in data.spec.get("env", {}) if is_secret_name(k) and not known.get(k))
    if missing:
        raise GolfsweepError(
            f"sweep directory: its logs were written before golfsweep masked secret values, and export does not "
            f"know the value of {', '.join(missing)} to mask it; set it in the environment of the export "
            f"(`{missing[0]}=... golfsweep export ...`), got {data.where!r}")


def _redact_json(obj: Any, redactor: Redactor) -> Any:
    """``obj`` with every string in it (keys too) redacted; numbers and the structure untouched."""
    if isinstance(obj, str):
        return redactor.redact(obj)
    if isinstance(obj, dict):
        return {redactor.redact(k) if isinstance(k, str) else k: _redact_json(v, redactor) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_redact_json(v, redactor) for v in obj]
    return obj


def _verified_script(data: SweepData) -> ScriptFiles:
    """The script the runs received, with the files it runs: from the sweep directory's ``script/``,
    or from a server store; their sha256 must be the one the store recorded."""
    with data.open_store() as store:
        script_name = store.get_meta("script_name")
        recorded = store.get_meta("script_sha256")
        names = json.loads(store.get_meta("support_files") or "[]")
        held = store.script() if data.on_server else None
        support = store.support_files() if data.on_server else {}
    if not script_name or not recorded:
        raise GolfsweepError(f"sweep directory: store has no script_name/script_sha256, got "
                             f"{data.where!r}")
    if data.on_server:
        if held is None:
            raise GolfsweepError(f"script/{script_name}: must be in the store to export, got none in {data.where}")
        raw = held[1]
    else:
        raw, support = _read_script_file(data, script_name), {n: _read_script_file(data, n) for n in names}
    files = ScriptFiles(script_name, raw, tuple((n, support.get(n, b"")) for n in names))
    sha = files.sha256
    if sha != recorded:
        raise GolfsweepError(f"script/{script_name}: sha256 must equal the store's script_sha256 "
                             f"{recorded[:12]} (the script the runs received), got {sha[:12]}")
    return files


def _read_script_file(data: SweepData, name: str) -> bytes:
    path = data.paths.script(name)  # type: ignore[union-attr]
    try:
        return path.read_bytes()
    except OSError as exc:
        raise GolfsweepError(f"script/{name}: must be readable to export ({exc.strerror}), got {str(path)!r}") from None


def _static_audit(files: ScriptFiles, env: dict[str, str]) -> dict[str, Any]:
    """Audit the exact bytes being exported, under the configuration the trial ran (its env), with
    the files it runs beside it. A script the audit cannot read at all is reported as such (verdict
    ``error``), which export treats as not a valid record."""
    from golfsweep.audit import AuditInputError, audit_source

    try:
        source = files.script.decode("utf-8")
        with tempfile.TemporaryDirectory(prefix="golfsweep-audit-") as folder:
            path = files.write(Path(folder))
            return audit_source(source, path=path, env=env).to_dict()
    except (AuditInputError, UnicodeDecodeError) as exc:
        return {"verdict": "error", "findings": [], "notes": [f"the audit could not run: {exc}"]}


def _submission(data: SweepData, trial: int, params: dict[str, Any], runs: dict[int, RunRecord],
                checks: list[Any], audit: dict[str, Any], sha: str, code_bytes: int, *, non_record: bool,
                reasons: list[str], name: str | None, author: str | None) -> dict[str, Any]:
    ok = [runs[s] for s in data.seeds if s in runs and runs[s].state is RunState.COMPLETE
          and runs[s].val_bpb is not None]
    bpb = [r.val_bpb for r in ok]
    loss = [r.val_loss for r in ok if r.val_loss is not None]
    sizes = [r.bytes_total for r in ok if r.bytes_total is not None]
    limits = _checked(record_limits(data))
    by_rule = {c.rule: c for c in checks}
    seed_results: dict[str, Any] = {}
    for seed in data.seeds:
        r = runs.get(seed)
        if r is None:
            seed_results[str(seed)] = {"state": "missing"}
            continue
        entry = {"val_bpb": r.val_bpb, "val_loss": r.val_loss, "bytes_total": r.bytes_total,
                 "bytes_model": r.bytes_model, "bytes_code": r.bytes_code, "train_time_ms": r.train_time_ms,
                 "eval_time_ms": r.eval_time_ms, "metric_label": r.metric_label, "state": r.state.value}
        if r.state is not RunState.COMPLETE and r.reason:
            entry["reason"] = r.reason
        seed_results[str(seed)] = entry
    sweep = str(data.spec.get("name", "sweep"))
    mean_bpb, mean_loss = mean(bpb), mean(loss)
    blurb = (f"golfsweep sweep {sweep!r}, trial {trial}: {_params_text(params)}. "
             f"{len(ok)}/{len(data.seeds)}-seed mean val_bpb {_r(mean_bpb)}"
             + (f" (std {_r(sample_std(bpb))})" if len(bpb) > 1 else "") + ".")
    return {
        "name": name or f"{sweep} trial {trial}",
        "author": author or "",
        "date": _dt.date.today().isoformat(),
        "track": "non_record_16mb" if non_record else "10min_16mb",
        "non_record": non_record,
        **({"non_record_reasons": reasons} if reasons else {}),
        "blurb": blurb,
        "val_bpb": _r(mean_bpb),
        "val_bpb_std": _r(sample_std(bpb)),
        "val_loss": _r(mean_loss),
        "val_loss_std": _r(sample_std(loss)),
        "bytes_total": max(sizes) if sizes else None,
        "bytes_total_mean": round(sum(sizes) / len(sizes)) if sizes else None,
        "bytes_code": code_bytes,
        "metric_label": ok[0].metric_label if ok else None,
        "seeds": list(data.seeds),
        "seed_results": seed_results,
        "hyperparameters": trial_env(data, trial),
        "compliance": {
            "artifact_under_16mb": by_rule["artifact_bytes"].ok,
            "train_under_600s": by_rule["train_seconds"].ok,
            "eval_under_600s": by_rule["eval_seconds"].ok,
            "all_seeds_reported": by_rule["all_seeds_reported"].ok,
            "three_seeds": len(ok) >= 3,
            "limits": limits,
            "runtime_checks": [c.to_dict() for c in checks],
            "static_audit": {k: audit[k] for k in audit if k in ("verdict", "findings", "notes")},
        },
        "golfsweep": {"sweep": sweep, "trial": trial, "params": params, "script_sha256": sha,
                      "metric": data.spec.get("metric", "val_bpb")},
    }


def _readme(data: SweepData, sub: dict[str, Any], params: dict[str, Any], logs: dict[int, bytes]) -> str:
    title = sub["name"]
    kind = "Non-record" if sub["non_record"] else "Record"
    n_ok = sum(1 for v in sub["seed_results"].values() if v.get("state") == "complete")
    head = f"# {kind}: {title}"
    if sub["val_bpb"] is not None:
        head += f" — val_bpb {sub['val_bpb']:.5f} ({n_ok}-seed mean)"
    lines = [head, ""]
    summary = []
    if sub["val_bpb"] is not None:
        std = f", std {sub['val_bpb_std']:.5f}" if sub["val_bpb_std"] is not None else ""
        summary.append(f"**val_bpb: {sub['val_bpb']:.5f}** ({n_ok}-seed mean{std})")
    if sub["val_loss"] is not None:
        summary.append(f"**{sub['val_loss']:.5f} nats** (val_loss, mean)")
    if sub["bytes_total"] is not None:
        summary.append(f"**{sub['bytes_total']:,} bytes** (largest artifact)")
    lines += [" | ".join(summary), ""]
    if sub["non_record"]:
        lines += ["**Non-record submission.**" + (" Reasons:" if sub.get("non_record_reasons") else ""), ""]
        lines += [f"- {r}" for r in sub.get("non_record_reasons", [])] + [""]
    g = sub["golfsweep"]
    lines += [f"Exported by golfsweep from sweep `{g['sweep']}`, trial {g['trial']} "
              f"(script sha256 `{g['script_sha256'][:16]}…`).", ""]

    lines += ["## Results", "", "| Seed | val_loss (nats) | val_bpb | Artifact bytes | Train ms | Eval ms | State |",
              "|---:|---:|---:|---:|---:|---:|:---|"]
    for seed, r in sub["seed_results"].items():
        lines.append(f"| {seed} | {_f(r.get('val_loss'), 8)} | {_f(r.get('val_bpb'), 8)} | "
                     f"{_i(r.get('bytes_total'))} | {_i(r.get('train_time_ms'))} | {_i(r.get('eval_time_ms'))} | "
                     f"{r.get('state')}{': ' + r['reason'] if r.get('reason') else ''} |")
    lines.append(f"| **Mean** | **{_f(sub['val_loss'], 8)}** | **{_f(sub['val_bpb'], 8)}** | "
                 f"{_i(sub['bytes_total_mean'])} | | | |")
    lines.append(f"| **Std** | {_f(sub['val_loss_std'], 8)} | {_f(sub['val_bpb_std'], 8)} | | | | |")
    label = sub.get("metric_label")
    if label:
        lines += ["", f"Score line: `{label}` (the final evaluation of the compressed artifact)."]

    lines += ["", "## Configuration", "", "| Variable | Value |", "|---|---|"]
    env = sub["hyperparameters"]
    lines += [f"| `{k}` | `{v}` |" for k, v in env.items()]

    c = sub["compliance"]
    lim = c["limits"]
    lines += ["", "## Compliance", ""]
    for check in c["runtime_checks"]:
        lines.append(f"- [{'x' if check['ok'] else ' '}] {check['message']}")
    audit = c["static_audit"]
    n_findings = len(audit.get("findings", []))
    lines.append(f"- static audit of `train_gpt.py`: verdict **{audit.get('verdict')}**, {n_findings} finding(s)")
    for f in audit.get("findings", []):
        lines.append(f"  - line {f.get('line')}: [{f.get('severity')}] {f.get('rule')}: {f.get('message')}")
    lines.append(f"- limits used: artifact ≤ {lim['artifact_bytes']:,} bytes, train ≤ {lim['train_seconds']:g} s, "
                 f"eval ≤ {lim['eval_seconds']:g} s")

    launch = _launch(data)
    env_prefix = " ".join(f"{k}={v}" for k, v in env.items() if v != SECRET_MASK)
    lines += ["", "## Command", "", "```bash",
              f"{env_prefix + ' ' if env_prefix else ''}SEED={data.seeds[0]} {launch}", "```", ""]
    if any(v == SECRET_MASK for v in env.values()):
        lines += ["Variables shown as `***` were secrets in the sweep file and are not exported.", ""]
    lines += ["## Included files", "", "- `train_gpt.py` (the exact script every run received)"]
    lines += [f"- `train_seed{seed}.log`" for seed in logs]
    lines += ["- `submission.json`", ""]
    return "\n".join(lines)


def _launch(data: SweepData) -> str:
    nproc = int(data.spec.get("nproc", 1) or 1)
    mode = data.spec.get("launcher", "auto")
    if mode == "auto":
        mode = "torchrun" if nproc > 1 else "python"
    return " ".join(launch_command(mode, nproc, SCRIPT_NAME))


def _params_text(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(params.items()))




def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 8)


def _f(x: Any, digits: int) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _i(x: Any) -> str:
    return "-" if x is None else f"{int(x):,}"
