"""What an audit returns: the verdict, the findings behind it and the notes that qualify it."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from golfsweep.errors import GolfsweepError

__all__ = ["AuditInputError", "AuditReport", "Finding", "Rule", "Severity", "Verdict"]


class AuditInputError(GolfsweepError):
    """The file cannot be audited at all: missing, empty, binary, or not Python."""


class Verdict(str, enum.Enum):
    CLEAN = "clean"
    FLAGGED = "flagged"
    UNKNOWN = "unknown"

    @property
    def exit_code(self) -> int:
        """``golfsweep audit``'s exit status: 0 clean, 1 flagged, 2 unknown."""
        return {Verdict.CLEAN: 0, Verdict.FLAGGED: 1, Verdict.UNKNOWN: 2}[self]

    @staticmethod
    def worst(verdicts: list[Verdict]) -> Verdict:
        if Verdict.FLAGGED in verdicts:
            return Verdict.FLAGGED
        if Verdict.UNKNOWN in verdicts:
            return Verdict.UNKNOWN
        return Verdict.CLEAN


class Severity(str, enum.Enum):
    VIOLATION = "violation"  # flags the script
    WARNING = "warning"  # worth a reviewer's look; does not change the verdict


class Rule(str, enum.Enum):
    """The challenge rules the audit checks. Access rules (network, training data) hold on every
    branch a configuration switch could take; protocol rules on the configuration that runs."""

    UPDATE_BEFORE_SCORE = "update_before_score"
    RESCORE = "rescore_after_update"
    VAL_CALIBRATION = "val_calibration"
    SELECT_ON_VAL = "select_by_validation"
    TARGET_LEAK = "target_shapes_distribution"
    TRAIN_IN_EVAL = "train_data_in_eval"
    NETWORK = "network"
    DYNAMIC = "dynamic_code"

    @property
    def is_access(self) -> bool:
        return self in (Rule.TRAIN_IN_EVAL, Rule.NETWORK)


@dataclass(frozen=True)
class Finding:
    """One reason for a verdict.

    ``line`` is a line of ``source`` (None: the audited file itself; otherwise the label of code the
    file runs, e.g. a decoded ``exec`` payload or a sibling file). ``related`` are other lines of the
    same source tied to this finding: for an update on unscored tokens, the scoring it taints; for a
    rescoring, the update that tainted it.
    """

    rule: Rule
    line: int
    end_line: int | None
    message: str
    severity: Severity
    source: str | None = None
    related: tuple[int, ...] = ()

    def to_dict(self) -> dict:
        return {"rule": self.rule.value, "line": self.line, "end_line": self.end_line, "message": self.message,
                "severity": self.severity.value, "source": self.source, "related": list(self.related)}


@dataclass(frozen=True)
class AuditReport:
    """Verdict on one script: ``flagged`` if any finding is a violation, else ``unknown`` if part of
    the script could not be analysed (the notes say what), else ``clean``. ``env`` is the
    environment the audit decided the script's configuration branches under (secrets masked)."""

    path: str | None
    verdict: Verdict
    findings: tuple[Finding, ...]
    notes: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    sources: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {"path": self.path, "verdict": self.verdict.value,
                "findings": [f.to_dict() for f in self.findings], "notes": list(self.notes),
                "env": dict(self.env), "sources": list(self.sources)}
