"""Compliance audit of Parameter Golf scripts: a static audit of a train_gpt.py (no code of the
script is ever run) and runtime-rule checks on a sweep's per-seed results. No ray, no torch.

Layout: :mod:`._syntax` and :mod:`._decode` turn a file into one AST (newer syntax, wrapped code);
:mod:`._interp` (with :mod:`._exprs`, :mod:`._calls`, :mod:`._state`, :mod:`._values`) interprets it
and emits events; :mod:`._rules` judges them; :mod:`._scan` checks the whole file for network access;
:mod:`._report` holds what comes back.
"""

from golfsweep.audit._audit import audit_file, audit_source
from golfsweep.audit._report import AuditInputError, AuditReport, Finding, Rule, Severity, Verdict
from golfsweep.audit._runtime import RuntimeCheck, check_runtime

__all__ = ["AuditInputError", "AuditReport", "Finding", "Rule", "RuntimeCheck", "Severity", "Verdict",
           "audit_file", "audit_source", "check_runtime"]
