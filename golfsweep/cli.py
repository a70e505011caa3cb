"""The ``golfsweep`` command: a thin shell over the library. User mistakes exit 1 with one line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from golfsweep.errors import GolfsweepError

app = typer.Typer(help="Multi-seed hyperparameter sweeps for OpenAI Parameter Golf on Ray.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
data_app = typer.Typer(help="Datasets for local sweeps.", no_args_is_help=True)
app.add_typer(data_app, name="data")


def _echo_err(msg: str) -> None:
    # One line whatever the message holds (a TOML key or a path may contain a newline).
    one_line = msg.replace("\r", "\\r").replace("\n", "\\n")
    typer.echo(f"error: {one_line}", err=True)


def _show_notices() -> None:
    """Library notices (``golfsweep`` logger, WARNING: a stale driver's lease taken over) as one line each."""
    import logging

    logger = logging.getLogger("golfsweep")
    if not any(getattr(h, "_golfsweep_cli", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("notice: %(message)s"))
        handler.setLevel(logging.WARNING)
        handler._golfsweep_cli = True  # type: ignore[attr-defined]
        logger.addHandler(handler)


def main() -> None:
    """Console entry point: domain errors become one line on stderr and exit code 1."""
    _show_notices()
    try:
        code = app(standalone_mode=False)  # a command's ``typer.Exit(n)`` comes back as n here
        if isinstance(code, int) and code:
            sys.exit(code)
    except GolfsweepError as exc:
        _echo_err(str(exc))
        sys.exit(1)
    except KeyboardInterrupt:
        _echo_err("interrupted")
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(1)
    except Exception as exc:
        if isinstance(exc, _usage_errors()):
            if hasattr(exc, "show"):
                exc.show()  # the usage line and the problem, as click prints them
            else:
                _echo_err(exc.format_message())
            sys.exit(exc.exit_code)
        raise


def _usage_errors() -> tuple[type[Exception], ...]:
    """Bad arguments or options. Recent typer raises its own vendored click's exceptions, which are
    not ``click.ClickException``, so both are caught."""
    types: list[type[Exception]] = []
    typer_exc = getattr(typer, "TyperException", None)
    if typer_exc is not None:
        types.append(typer_exc)
    try:
        import click
    except ImportError:
        pass
    else:
        types.append(click.ClickException)
    return tuple(types)


# --------------------------------------------------------------------------- sweeps

@app.command()
def run(
    sweep_file: Annotated[Path, typer.Argument(help="Sweep file (TOML).")],
    dir: Annotated[Optional[Path], typer.Option("--dir", help="Sweep directory (default: sweeps/<name>).")] = None,
    address: Annotated[Optional[str], typer.Option(help="Ray cluster address; default: start a local instance.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the planned runs with their env and exit.")] = False,
    num_cpus: Annotated[Optional[int], typer.Option(help="CPUs of the local Ray instance.")] = None,
    num_gpus: Annotated[Optional[int], typer.Option(help="Logical GPUs of the local Ray instance.")] = None,
) -> None:
    """Run a sweep: Optuna proposes configs, each runs once per seed, results go to the sweep directory."""
    from golfsweep.search_spaces import load_spec

    spec = load_spec(sweep_file)
    if dry_run:
        _print_plan(spec)
        return
    _run(spec, dir, address=address, num_cpus=num_cpus, num_gpus=num_gpus)


@app.command()
def resume(
    sweep_dir: Annotated[Path, typer.Argument(help="Sweep directory of an interrupted sweep.")],
    spec: Annotated[Optional[Path], typer.Option("--spec", help="Sweep file, if it moved.")] = None,
    address: Annotated[Optional[str], typer.Option(help="Ray cluster address.")] = None,
    num_cpus: Annotated[Optional[int], typer.Option(help="CPUs of the local Ray instance.")] = None,
    num_gpus: Annotated[Optional[int], typer.Option(help="Logical GPUs of the local Ray instance.")] = None,
) -> None:
    """Continue a sweep after a crash: completed runs are kept, runs that were in flight run again."""
    from golfsweep.orchestrator import spec_for_resume

    _run(spec_for_resume(sweep_dir, spec), sweep_dir, address=address, num_cpus=num_cpus, num_gpus=num_gpus)


def _run(spec, sweep_dir: Optional[Path], **kwargs) -> None:
    from golfsweep.orchestrator import TerminalProgress, default_sweep_dir, run_sweep
    from golfsweep.results import format_table, load_sweep
    from golfsweep.storage import StoreLocation, is_server_url

    sweep_dir = sweep_dir or default_sweep_dir(spec)
    banner = f"sweep {spec.name}: {spec.trials} trials x {len(spec.seeds)} seeds -> {sweep_dir}"
    # Read back through the sweep file's URL: the directory's recorded one has no password.
    on_server = StoreLocation.server(spec.storage_url, spec.name) if is_server_url(spec.storage_url) else None
    if on_server is not None:
        banner += f" (store: {on_server})"
    try:
        with TerminalProgress() as progress:
            outcome = run_sweep(spec, sweep_dir, progress=_after_banner(banner, progress), **kwargs)
    except KeyboardInterrupt as exc:  # SIGINT/SIGTERM: the driver has stopped its runs; one line
        why = getattr(exc, "signal_name", "SIGINT")
        _echo_err(f"interrupted ({why}); runs in flight re-run on `golfsweep resume {sweep_dir}`")
        raise typer.Exit(143 if why == "SIGTERM" else 130) from None
    typer.echo(format_table(load_sweep(on_server or outcome.sweep_dir), "md"))
    if outcome.stopped:
        typer.echo(f"stopped: {outcome.stopped}", err=True)
    if outcome.best is None:
        typer.echo("no feasible config: see `golfsweep status` for the reasons", err=True)


def _after_banner(banner: str, progress):
    """``progress``, printing ``banner`` first: a sweep refused before it starts shows only its error."""
    shown = False

    def report(snap) -> None:
        nonlocal shown
        if not shown:
            shown = True
            typer.echo(banner, err=True)
        progress(snap)

    return report


def _print_plan(spec) -> None:
    from golfsweep.orchestrator import planned_runs

    from golfsweep.search_spaces import describe_spec

    runs = planned_runs(spec)
    typer.echo("resolved sweep (value, then where it came from):")
    for line in describe_spec(spec):
        typer.echo(f"  {line}")
    from golfsweep.worker import launch_command

    cmd = " ".join(launch_command(spec.launcher_command, spec.nproc, spec.script.name))
    typer.echo(f"dry run: sweep {spec.name}: {spec.trials} trials x {len(spec.seeds)} seeds = {len(runs)} runs, "
               f"each `{cmd}` on {spec.gpus_per_run or spec.cpus_per_run} "
               f"{'GPU(s)' if spec.gpus_per_run else 'CPU(s)'} of one node")
    from golfsweep.scriptfiles import ScriptFiles

    files = ScriptFiles.read(spec.script, spec.files)
    if files.support:
        binaries = f"; not text, so not counted: {', '.join(files.binary_names)}" if files.binary_names else ""
        typer.echo(f"code: {spec.script.name} runs {', '.join(files.names)} beside it; all travel with each run "
                   f"and count in the artifact ({files.code_bytes:,} bytes of code){binaries}")
    if spec.sampler.name.value in ("tpe", "gp", "cmaes") and spec.trials > spec.sampler.n_startup_trials:
        typer.echo(f"note: configs after the first {spec.sampler.n_startup_trials} depend on results; "
                   f"shown as drawn before any result", err=False)
    for r in runs:
        env = " ".join(f"{k}={v}" for k, v in sorted(r["env"].items()))
        typer.echo(f"trial {r['trial']} seed {r['seed']}: {env}")


SWEEP_DIR_HELP = "Sweep directory (or --storage and --sweep-name instead)."
STORAGE_HELP = ("Read the sweep from this PostgreSQL server (postgresql://user@host:5432/db; the password from "
                "PGPASSWORD or ~/.pgpass), with --sweep-name, instead of a sweep directory.")
NAME_HELP = "With --storage: the sweep's name (sweep.name)."


def _sweep_source(sweep_dir: Optional[Path], storage: Optional[str], name: Optional[str]):
    """What a read command reads: a sweep directory, or a sweep on a storage server by its name."""
    if storage is None:
        if name is not None:
            raise GolfsweepError(f"--sweep-name: only with --storage (a sweep directory knows its name), got {name!r}")
        if sweep_dir is None:
            raise typer.BadParameter("missing: give a sweep directory, or --storage URL --sweep-name NAME",
                                     param_hint="SWEEP_DIR")  # a usage error, like any missing argument: exit 2
        return sweep_dir
    from golfsweep.storage import StoreLocation, is_server_url, masked_url, url_problem

    if sweep_dir is not None:
        raise GolfsweepError(f"--storage: give a sweep directory or --storage with --sweep-name, not both, got "
                             f"{str(sweep_dir)!r} and {masked_url(storage)!r}")
    problem = url_problem(storage, key="--storage")
    if problem:
        raise GolfsweepError(problem)
    if not is_server_url(storage):
        raise GolfsweepError(f"--storage: must be a postgresql:// URL (a SQLite sweep is read from its directory), "
                             f"got {masked_url(storage)!r}")
    if not name:
        raise GolfsweepError("--sweep-name: the sweep's name is needed with --storage, got nothing")
    return StoreLocation.server(storage, name, key="--storage")


@app.command()
def table(
    sweep_dir: Annotated[Optional[Path], typer.Argument(help=SWEEP_DIR_HELP, metavar="SWEEP_DIR")] = None,
    format: Annotated[str, typer.Option("--format", "-f", help="md, csv or json.")] = "md",
    baseline: Annotated[Optional[str], typer.Option(
        help="Significance vs a baseline: a number (val_bpb, or nats with --baseline-metric val_loss), "
             "a submission.json, or a folder of logs.")] = None,
    baseline_metric: Annotated[str, typer.Option(help="What a numeric --baseline is: val_bpb or val_loss.")] = "val_bpb",
    storage: Annotated[Optional[str], typer.Option("--storage", help=STORAGE_HELP)] = None,
    sweep_name: Annotated[Optional[str], typer.Option("--sweep-name", help=NAME_HELP)] = None,
) -> None:
    """One row per config: n_ok/n_seeds, mean/std/min/max val_bpb, limits, feasibility; best first."""
    from golfsweep.results import format_table, load_sweep

    if format not in ("md", "csv", "json"):
        raise GolfsweepError(f"--format: must be one of md, csv, json, got {format!r}")
    data = load_sweep(_sweep_source(sweep_dir, storage, sweep_name))
    if baseline is None:
        typer.echo(format_table(data, format))
        return
    from golfsweep.results import format_significance, load_baseline

    typer.echo(format_significance(data, load_baseline(baseline, baseline_metric), format))


@app.command()
def status(
    sweep_dir: Annotated[Optional[Path], typer.Argument(help=SWEEP_DIR_HELP, metavar="SWEEP_DIR")] = None,
    storage: Annotated[Optional[str], typer.Option("--storage", help=STORAGE_HELP)] = None,
    sweep_name: Annotated[Optional[str], typer.Option("--sweep-name", help=NAME_HELP)] = None,
) -> None:
    """Runs by state, with failure reasons."""
    from golfsweep.results import format_status, load_sweep

    typer.echo(format_status(load_sweep(_sweep_source(sweep_dir, storage, sweep_name))))


@app.command("parse-log")
def parse_log_cmd(
    logs: Annotated[list[Path], typer.Argument(help="Training logs.")],
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object per log.")] = False,
    labels: Annotated[Optional[str], typer.Option(help="Comma-separated preference of final-metric labels.")] = None,
) -> None:
    """Parse training logs: final val_bpb/val_loss, artifact bytes, train time, seed."""
    from golfsweep.worker import companion_values, parse_log_file, seed_from_filename

    prefs = [s.strip() for s in labels.split(",") if s.strip()] if labels else None
    for path in logs:
        if not path.is_file():
            raise GolfsweepError(f"LOG: must be a readable file, got {str(path)!r}")
        parsed, borrowed = companion_values(path, parse_log_file(path, prefs))
        d = {"path": str(path), **parsed.to_dict()}
        d["seed_in_filename"] = seed_from_filename(path.name)
        d.update({f"{k}_log": v for k, v in borrowed.items()})
        if json_out:
            typer.echo(json.dumps(d))
        else:
            taken = "".join(f" ({k} from {v})" for k, v in borrowed.items())
            typer.echo(f"{path}: {d['metric_label']} val_bpb={d['val_bpb']} val_loss={d['val_loss']} "
                       f"bytes_total={d['bytes_total']} train_time_ms={d['train_time_ms']} seed={d['seed']}{taken}")


# --------------------------------------------------------------------------- demo

@app.command()
def demo(
    dir: Annotated[Path, typer.Option("--dir", help="Where the demo data and sweep go.")] = Path("golfsweep-demo"),
    trials: Annotated[Optional[int], typer.Option(help="Override the number of trials.")] = None,
    num_cpus: Annotated[Optional[int], typer.Option(help="CPUs for the local Ray instance (default: all).")] = None,
) -> None:
    """The embedded default: build demo data, sweep the reference trainer on CPU, print the 3-seed table."""
    from golfsweep.demo import prepare_demo

    spec = prepare_demo(dir, trials=trials)
    _run(spec, dir / "sweep", num_cpus=num_cpus)


@data_app.command("demo")
def data_demo(
    out: Annotated[Path, typer.Option("--out", help="Output directory.")],
    text: Annotated[Optional[Path], typer.Option("--text", help="Your own UTF-8 text instead of Python's docs.")] = None,
    vocab_size: Annotated[int, typer.Option(help="SentencePiece vocabulary size.")] = 1024,
) -> None:
    """Build a small real-text dataset (challenge shard format + SentencePiece tokenizer) without network."""
    from golfsweep.data import build_demo_data

    if text is not None and not text.is_file():
        raise GolfsweepError(f"--text: must be a readable file, got {str(text)!r}")
    info = build_demo_data(out, text_file=text, vocab_size=vocab_size)
    typer.echo(f"demo data in {out}: {info.n_train_tokens} train / {info.n_val_tokens} val tokens, "
               f"tokenizer {info.tokenizer_path}")


# --------------------------------------------------------------------------- records

AUDIT_EXIT_HELP = (
    "Static compliance audit of a training script: score-first TTT (no update on unscored validation tokens, "
    "no rescoring after adaptation), no quantization calibration on validation data, no training data read "
    "during evaluation, no network access. Nothing in the script is run: wrapped code (`exec` of compressed "
    "literals, `exec(open(sibling).read())`) is decoded and read.\n\n"
    "Configuration branches are decided by the script's own env defaults, or by `--env KEY=VALUE` and the "
    "runs of `--sweep DIR`; network and training-data access are also checked behind switches the defaults "
    "turn off.\n\n"
    "Exit status: 0 clean, 1 flagged, 2 unknown (part of the script could not be analysed), 3 the audit "
    "could not run (a missing, empty, binary or non-Python file; a bad --env or --sweep). With --sweep: the "
    "worst verdict over the sweep's configurations."
)


@app.command(help=AUDIT_EXIT_HELP)
def audit(
    script: Annotated[Path, typer.Argument(help="A train_gpt.py to audit.")],
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
    env: Annotated[Optional[list[str]], typer.Option("--env", help="KEY=VALUE the script reads from its "
                                                      "environment (repeatable).")] = None,
    sweep: Annotated[Optional[Path], typer.Option(help="Audit under each configuration this sweep ran (its "
                                                  "fixed env plus each trial's), and check its runtime rules.")] = None,
    trial: Annotated[Optional[int], typer.Option(help="With --sweep: only this trial (runtime checks: default "
                                                 "best).")] = None,
) -> None:
    from golfsweep.audit import Verdict, audit_file

    try:  # anything that stops the audit from running is exit 3, never a verdict
        pinned = _env_options(env or [])
        configs: list[tuple[str, dict[str, str]]] = [("", pinned)]
        runtime = None
        if sweep is not None:
            from golfsweep.results import runtime_checks_for, sweep_configs

            configs = [(f"trial {t}", {**cfg, **pinned}) for t, cfg in sweep_configs(sweep, trial).items()]
            runtime = runtime_checks_for(sweep, trial)
        reports = [(label, audit_file(script, env=cfg)) for label, cfg in configs]
    except GolfsweepError as exc:
        _echo_err(str(exc))
        raise typer.Exit(3) from None
    verdict = Verdict.worst([r.verdict for _, r in reports])
    if json_out:
        out = reports[0][1].to_dict() if len(reports) == 1 and sweep is None else {
            "path": str(script), "verdict": verdict.value,
            "configurations": [{"label": label, **r.to_dict()} for label, r in reports]}
        if runtime is not None:
            out["runtime"] = runtime
        typer.echo(json.dumps(out, indent=2))
    else:
        seen: set[tuple] = set()
        for label, r in reports:
            head = f"[{label}] " if label else ""
            for f in r.findings:
                key = (f.source, f.line, f.rule, f.message)
                if key in seen:
                    continue
                seen.add(key)
                where = f"{script} ({f.source})" if f.source else str(script)
                typer.echo(f"{head}{where}:{f.line}: [{f.severity.value}] {f.rule.value}: {f.message}")
            for n in r.notes:
                if ("note", n) not in seen:
                    seen.add(("note", n))
                    typer.echo(f"{head}note: {n}")
            if label:
                typer.echo(f"[{label}] verdict: {r.verdict.value}")
        for c in (runtime or {}).get("checks", []):
            typer.echo(f"runtime {c['rule']}: {'ok' if c['ok'] else 'FAIL'}: {c['message']}")
        typer.echo(f"verdict: {verdict.value}")
    raise typer.Exit(verdict.exit_code)


def _env_options(items: list[str]) -> dict[str, str]:
    """``--env KEY=VALUE`` options as a dict; a malformed one is a one-line error naming it."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not key.replace("_", "a").isalnum() or key[0].isdigit():
            raise GolfsweepError(f"--env: must be KEY=VALUE with KEY a variable name, got {item!r}")
        out[key] = value
    return out


@app.command()
def export(
    trial: Annotated[int, typer.Option("--trial", help="Trial number to export.")],
    out: Annotated[Path, typer.Option("--out", help="Records folder to create (must not exist).")],
    sweep_dir: Annotated[Optional[Path], typer.Argument(help=SWEEP_DIR_HELP, metavar="SWEEP_DIR")] = None,
    non_record: Annotated[bool, typer.Option("--non-record", help="Allow a trial that breaks a limit.")] = False,
    name: Annotated[Optional[str], typer.Option(help="Submission name (default: sweep name + trial).")] = None,
    author: Annotated[Optional[str], typer.Option(help="Author for submission.json.")] = None,
    sweep_file: Annotated[Optional[Path], typer.Option("--sweep-file", help=SWEEP_FILE_HELP)] = None,
    storage: Annotated[Optional[str], typer.Option("--storage", help=STORAGE_HELP)] = None,
    sweep_name: Annotated[Optional[str], typer.Option("--sweep-name", help=NAME_HELP)] = None,
) -> None:
    """Write a records folder: submission.json, per-seed logs, the exact train_gpt.py, README.md."""
    from golfsweep.results import export_record

    folder = export_record(_sweep_source(sweep_dir, storage, sweep_name), trial, out, non_record=non_record,
                           name=name, author=author, secret_env=_sweep_file_env(sweep_file))
    typer.echo(f"wrote {folder}")


@app.command()
def report(
    sweep_dir: Annotated[Optional[Path], typer.Argument(help=SWEEP_DIR_HELP, metavar="SWEEP_DIR")] = None,
    out: Annotated[Path, typer.Option("--out", help="HTML file to write.")] = Path("report.html"),
    sweep_file: Annotated[Optional[Path], typer.Option("--sweep-file", help=SWEEP_FILE_HELP)] = None,
    storage: Annotated[Optional[str], typer.Option("--storage", help=STORAGE_HELP)] = None,
    sweep_name: Annotated[Optional[str], typer.Option("--sweep-name", help=NAME_HELP)] = None,
) -> None:
    """One self-contained HTML report: table, mean ± std with seeds, BPB vs knobs, curves, artifact bytes."""
    from golfsweep.results import write_report

    source = _sweep_source(sweep_dir, storage, sweep_name)
    typer.echo(f"wrote {write_report(source, out, secret_env=_sweep_file_env(sweep_file))}")


SWEEP_FILE_HELP = ("The sweep file: its [env] secret values are masked too (needed only for sweep directories "
                   "written before golfsweep redacted run output).")


def _sweep_file_env(path: Optional[Path]) -> dict[str, str]:
    """The ``[env]`` table of a sweep file, read without validating the rest (the script may not be here)."""
    if path is None:
        return {}
    from golfsweep.search_spaces import read_env_table

    return read_env_table(path)


if __name__ == "__main__":  # pragma: no cover
    main()
