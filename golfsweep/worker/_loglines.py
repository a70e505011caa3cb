"""The line grammar of Parameter Golf training logs: what one line says, never what it means in the run.

Pure text functions and patterns.  :mod:`golfsweep.worker._logparse` decides, from the order of
these lines, which one is the run's score.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class CurvePoint:
    """One in-training validation line (``step:N/M val_loss:… val_bpb:…``)."""

    step: int
    total_steps: int | None
    val_loss: float
    val_bpb: float
    train_time_ms: int | None


@dataclass(frozen=True)
class MetricLine:
    """One labelled final-metric line (``<label> val_loss:… val_bpb:…``)."""

    line_no: int
    label: str
    val_loss: float
    val_bpb: float
    eval_time_ms: int | None


NUM = r"(?i:[-+]?nan|[-+]?inf(?:inity)?|[-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?)"
TIMESTAMP = re.compile(r"^\d{9,}\.\d+\s+")
# A label is space-separated words that start with a letter and contain only word
# characters, '-' and ':'.  Source-code templates fail this (quotes, parens, braces)
# and so do step lines (digits first, '/').  The lazy label lets an optional
# ``stride:N`` token sit between the label and ``val_loss``.
METRIC_RE = re.compile(
    r"^(?P<label>[A-Za-z][\w:\-]*(?: [A-Za-z][\w:\-]*)*?)"
    r"(?: stride:\d+)?"
    rf" val_loss[:=]\s*(?P<loss>{NUM}) val_bpb[:=]\s*(?P<bpb>{NUM})"
    r"(?P<rest>\s.*)?$"
)
STEP_VAL_RE = re.compile(
    r"^(?:step:\s*)?(?P<step>\d+)/(?P<total>\d+)"
    rf" val_loss:\s*(?P<loss>{NUM}) val_bpb:\s*(?P<bpb>{NUM})"
    r"(?P<rest>\s.*)?$"
)
STEP_ANY_RE = re.compile(r"^(?:step:\s*)?(?P<step>\d+)/\d+\s")
TRAIN_TIME_RE = re.compile(r"(?:^|\s)train_time:\s*(\d+(?:\.\d+)?)ms")
EVAL_TIME_RE = re.compile(r"(?:^|\s)(?:eval_time|time):\s*(\d+(?:\.\d+)?)ms")
STOP_RE = re.compile(r"^stopping_early:\s*wallclock_cap\b(?P<rest>.*)$")
STOP_STEP_RE = re.compile(r"(?:^|\s)step:\s*(\d+)")
SIZE_RES = (
    re.compile(r"^Total submission size(?: [^:]*)?:\s*(\d+) bytes"),
    re.compile(r"^budget:(\d+)/\d+"),
    re.compile(r"\|\s*Total submission:\s*(\d+) bytes"),
    # ``key:value`` byte counts: ``artifact_bytes:N``, or ``total:N`` among ``*_bytes:N`` fields
    # (``compressed_blob_bytes:… code_bytes:… total:…``); ``target_artifact_bytes`` is a limit.
    re.compile(r"(?:^|\s)(?:artifact|submission)_bytes:\s*(\d+)(?!\S)"),
    re.compile(r"^(?=.*(?:^|\s)\w+_bytes:\s*\d)(?:.*\s)?total(?:_bytes)?:\s*(\d+)(?!\S)"),
)
MODEL_RE = re.compile(r"^Serialized model (\S[^:]*):\s*(\d+) bytes")
# Lines that say the artifact exists: serialization, size and budget-check lines.
ARTIFACT_RES = SIZE_RES + (
    re.compile(r"^Serialized model\b[^:]*:\s*\d+ bytes"),
    re.compile(r"\d(?:MB|B| bytes)\b.*\b(?:FITS|OVER)\b"),
    re.compile(r"(?i)\b(?:load(?:ing|ed|s)?|using)\b.*\b(?:artifact|\S+\.ptz)\b"),  # evaluation-only runs
)
# A label that calls itself "pre-<something>" (pre-quantization, pre_ttt, prequant)
# names a state before the final one.
PRE_LABEL_RE = re.compile(r"(?i)(?:^|[\s_:\-])pre(?:[-_]|quant)")
CODE_RE = re.compile(r"^Code size:\s*(\d+) bytes")
CODE_COMPRESSED_RE = re.compile(r"^Code size \(compressed\):\s*(\d+) bytes")
# Explicit declarations the trainers print.  ``SEED=N`` (an environment assignment) is
# weaker: it also shows up in usage docstrings of embedded source, so it is only used
# when no explicit declaration exists.
SEED_RES = (
    re.compile(r"^\s*seed:\s*(\d+)\s*$"),
    re.compile(r"(?:^|\s)seed=(\d+)(?=\s|$)"),
)
ENV_SEED_RE = re.compile(r"(?<![\w])SEED=(\d+)(?!\S)")
FILENAME_SEED_PATTERNS = (
    re.compile(r"(?i)(?<![a-z])seed[_\-]?(\d+)(?!\d)"),
    re.compile(r"(?i)_s(\d+)\.(?:txt|log)$"),
    re.compile(r"(?i)(?:^|[_\-.])log_(\d+)\.(?:txt|log)$"),
)
EXACT_SUFFIX = "_exact"


def to_ms(text: str) -> int:
    """Milliseconds printed as an integer or decimal, rounded."""
    return int(round(float(text)))


def point_of(line: str) -> CurvePoint | None:
    """The in-training validation point a cleaned line prints, or None."""
    m = STEP_VAL_RE.match(line)
    if not m:
        return None
    t = TRAIN_TIME_RE.search(m.group("rest") or "")
    return CurvePoint(int(m.group("step")), int(m.group("total")), float(m.group("loss")), float(m.group("bpb")),
                      to_ms(t.group(1)) if t else None)


def curve_point(line: str) -> CurvePoint | None:
    """The in-training validation point one raw log line prints (``step:N/M val_loss:… val_bpb:…``),
    as a run prints it: what the worker streams to the driver while the run is alive."""
    return point_of(clean_lines(line.rstrip("\n"))[0])


def clean_lines(text: str) -> list[str]:
    # Split on '\n' only (str.splitlines also breaks on \x0c, \x1c, … which would
    # shift line numbers); keep only what a terminal shows after a carriage return.
    lines = []
    for raw in text.split("\n"):
        line = raw.rstrip("\r")
        if "\r" in line:
            line = line.rsplit("\r", 1)[1]
        lines.append(TIMESTAMP.sub("", line, count=1))
    return lines
