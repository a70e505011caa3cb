"""Compliance audit of Parameter Golf scripts: a static AST audit of a train_gpt.py and runtime-rule
checks on a sweep's per-seed results. No ray, no torch."""

from golfsweep.audit._runtime import RuntimeCheck, check_runtime
from golfsweep.audit._static import AuditReport, Finding, Verdict, audit_file, audit_source

__all__ = ["AuditReport", "Finding", "RuntimeCheck", "Verdict", "audit_file", "audit_source", "check_runtime"]
