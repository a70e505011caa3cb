"""Static compliance audit of Parameter Golf scripts: no code of the script is ever run (runtime
limits are ``golfsweep.limits``). No ray, no torch.

Layout: :mod:`._syntax` and :mod:`._decode` turn a file into one AST (newer syntax, wrapped code);
:mod:`._interp` (with :mod:`._exprs`, :mod:`._calls`, :mod:`._state`, :mod:`._values`) interprets it
and emits events; :mod:`._rules` judges them; :mod:`._scan` checks the whole file for network access;
:mod:`._report` holds what comes back.
"""

from golfsweep.audit._audit import audit_file, audit_source
from golfsweep.audit._report import AuditInputError, AuditReport, Finding, Rule, Severity, Verdict

__all__ = ["AuditInputError", "AuditReport", "Finding", "Rule", "Severity", "Verdict", "audit_file",
           "audit_source"]
