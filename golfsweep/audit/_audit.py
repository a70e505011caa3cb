"""Entry points: read a script, expand what it wraps, interpret it, and give the verdict."""

from __future__ import annotations

from collections.abc import Mapping
from os import PathLike
from pathlib import Path

from golfsweep.audit._decode import expand
from golfsweep.audit._interp import Interp
from golfsweep.audit._report import AuditInputError, AuditReport, Severity, Verdict
from golfsweep.audit._scan import scan
from golfsweep.audit._target import target_leaks
from golfsweep.audit._syntax import ParseFailure, parse_any
from golfsweep.redact import SECRET_MASK, is_secret_name

__all__ = ["audit_file", "audit_source"]


def audit_source(source: str, path: str | PathLike | None = None, *,
                 env: Mapping[str, str] | None = None) -> AuditReport:
    """Audit the text of a training script.

    ``path`` names the script (its folder is where wrapped sibling files are read from); ``env`` pins
    environment variables the script reads, so its configuration branches are decided under them
    instead of the script's own defaults (values of secret-looking names are masked in the report).
    Raises :class:`AuditInputError` for text that is empty, binary or not Python.
    """
    name = str(path) if path is not None else "<source>"
    if "\x00" in source:
        raise AuditInputError(f"{name}: binary file (it contains NUL bytes), not a Python script")
    try:
        tree, rewritten = parse_any(source, name)
    except ParseFailure as e:
        raise AuditInputError(f"{name}: not a Python script ({e})") from None
    if not tree.body:
        raise AuditInputError(f"{name}: empty file (no Python statements to audit)")
    script = Path(path).resolve() if path is not None else None
    expansion = expand(tree, script, parse_any)

    scan_findings, unknown, notes, unknown_modules = scan(expansion.tree)
    env = dict(env or {})
    interp = Interp(expansion.tree, unknown_modules, env, script.name if script else None)
    interp.run()

    findings = scan_findings + target_leaks(expansion.tree, interp.reached, interp.visited) + interp.judge.finish()
    findings.sort(key=lambda f: (f.source or "", f.line, f.rule.value))
    unknown = unknown + expansion.notes + interp.unknown
    if any(f.severity is Severity.VIOLATION for f in findings):
        verdict = Verdict.FLAGGED
    elif unknown:
        verdict = Verdict.UNKNOWN
    else:
        verdict = Verdict.CLEAN
    notes = notes + interp.notes
    if rewritten:
        notes.append("the script uses syntax newer than this Python's parser; it was read through LibCST")
    for label in expansion.sources:
        notes.append(f"audited the code it runs: {label}")
    free = sorted(k for k in interp.switches if k not in env)
    if free:
        notes.append(f"configuration switches followed at the script's defaults: {', '.join(free)} "
                     f"(`--env KEY=VALUE` audits another configuration)")
    for line in interp.judge.never_scored:
        notes.append(f"line {line}: trains a model on validation tokens before they are scored, but those "
                     f"weights never score (a warm-up?): not a finding")
    if not interp.saw_val:
        notes.append("no validation data was recognised in the script")
    shown = tuple(sorted((k, SECRET_MASK if is_secret_name(k) else v) for k, v in env.items()))
    return AuditReport(name if path is not None else None, verdict, tuple(findings),
                       tuple(dict.fromkeys(unknown + notes)), shown, tuple(expansion.sources))


def audit_file(path: str | PathLike, *, env: Mapping[str, str] | None = None) -> AuditReport:
    """Audit a script on disk. Raises :class:`AuditInputError` when it is missing, unreadable, empty,
    binary or not Python: a file that cannot be audited is never reported clean."""
    p = Path(path)
    if not p.is_file():
        raise AuditInputError(f"{p}: not a readable file")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise AuditInputError(f"{p}: cannot read ({e.strerror or e})") from None
    if b"\x00" in data:
        raise AuditInputError(f"{p}: binary file (it contains NUL bytes), not a Python script")
    try:
        source = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise AuditInputError(f"{p}: not UTF-8 text (byte {e.start}), not a Python script") from None
    return audit_source(source, p, env=env)
