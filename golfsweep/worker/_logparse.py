"""Parse Parameter Golf training logs into a :class:`ParsedLog`.

Pure functions over text: no Ray, no torch, no file layout knowledge beyond the one
file being read.  The formats handled are the ones the challenge's ``train_gpt.py``
variants print (old ``step:N/M val_loss:X`` lines, newer ``N/M val_loss: X`` lines,
Unix-epoch timestamp prefixes, the several artifact-size line styles, and logs that
embed the training script's own source, whose f-string templates must never be
mistaken for results).

The score is chosen by what the log's lines *do*, never by what a label is called:
it is the last evaluation printed after the run's final artifact was produced
(serialization, submission-size or budget lines; "loading the artifact" in
evaluation-only runs).  See :func:`parse_log` for the details and for when the
result carries ``warnings``.  Without such an evaluation, the last in-training
validation line is used under the pseudo-label ``step_val_last``.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

from golfsweep.worker._loglines import (
    ARTIFACT_RES,
    CODE_COMPRESSED_RE,
    CODE_RE,
    ENV_SEED_RE,
    EVAL_TIME_RE,
    EXACT_SUFFIX,
    FILENAME_SEED_PATTERNS,
    METRIC_RE,
    MODEL_RE,
    PRE_LABEL_RE,
    SEED_RES,
    SIZE_RES,
    STEP_ANY_RE,
    STOP_RE,
    STOP_STEP_RE,
    TRAIN_TIME_RE,
    CurvePoint,
    MetricLine,
    clean_lines,
    point_of,
    to_ms,
)

__all__ = [
    "IMPLAUSIBLE_RATIO", "STEP_VAL_LAST", "ParsedLog", "companion_values", "parse_log", "parse_log_file",
    "seed_from_filename",
]

STEP_VAL_LAST = "step_val_last"

# A later evaluation of the same artifact whose val_bpb is more than this factor above
# the best one printed before it is a failed evaluation (e.g. a test-time-training pass
# that destroyed the model), not the artifact's score: it is skipped with a warning.
IMPLAUSIBLE_RATIO = 1.10



def seed_from_filename(name: str | os.PathLike) -> int | None:
    """Return the seed encoded in a log file's name, or ``None``.

    Recognised: ``seedN``, ``seed_N``, ``seed-N`` anywhere in the base name,
    ``…_sN.txt``/``…_sN.log`` and ``…log_N.txt`` (e.g. ``ternary_log_42.txt``).
    """
    base = os.path.basename(os.fspath(name))
    for pattern in FILENAME_SEED_PATTERNS:
        m = pattern.search(base)
        if m:
            return int(m.group(1))
    return None


@dataclass(frozen=True)
class ParsedLog:
    """Everything golfsweep reads from one training log.

    ``val_bpb``/``val_loss`` may be NaN or inf when the run diverged; deciding what
    that means is the caller's job.
    """

    metric_label: str | None
    val_bpb: float | None
    val_loss: float | None
    metric_line_no: int | None
    eval_time_ms: int | None
    bytes_total: int | None
    bytes_model: int | None
    bytes_code: int | None
    train_time_ms: int | None  # from the last ``stopping_early: wallclock_cap`` line only
    stop_step: int | None
    seed: int | None
    curve: tuple[CurvePoint, ...] = ()
    last_step_train_time_ms: int | None = None  # ``train_time:`` of the last step line
    last_step: int | None = None
    eval_times_ms: dict[str, int] = field(default_factory=dict)
    candidates: tuple[MetricLine, ...] = ()
    # When the choice is uncertain: why (each message names the lines involved), and
    # the evaluations that could have been the score instead of the chosen one.
    warnings: tuple[str, ...] = ()
    alternatives: tuple[MetricLine, ...] = ()

    # ``ParsedLog.seed_from_filename(path)``: the seed a file name attributes to a
    # run, to compare with ``seed`` (the one the log declares).
    seed_from_filename = staticmethod(seed_from_filename)

    @property
    def train_time_best_ms(self) -> int | None:
        """Train time for limit checks: the wallclock stop, else the last step line's time."""
        return self.train_time_ms if self.train_time_ms is not None else self.last_step_train_time_ms

    def to_dict(self) -> dict:
        """JSON-ready dict; ``None`` stays ``None``."""
        scalars = ("metric_label", "val_bpb", "val_loss", "metric_line_no", "eval_time_ms", "bytes_total",
                   "bytes_model", "bytes_code", "train_time_ms", "stop_step", "last_step_train_time_ms",
                   "last_step", "seed")
        return {
            **{name: getattr(self, name) for name in scalars},
            "curve": [asdict(p) for p in self.curve],
            "eval_times_ms": dict(self.eval_times_ms),
            "candidates": [asdict(c) for c in self.candidates],
            "warnings": list(self.warnings),
            "alternatives": [asdict(c) for c in self.alternatives],
        }


# --------------------------------------------------------------------------- parsing


def parse_log(text: str, metric_labels: Sequence[str] | None = None) -> ParsedLog:
    """Parse the text of one training log.

    The score is the last evaluation printed after the final artifact was produced.
    Evaluations before it (in-training, pre-quantization, labels calling themselves
    "pre-…") are not scores.  ``X`` and ``X_exact`` printing one evaluation (equal to
    ``X``'s rounding) count once, as ``X_exact``; a line repeating the previous
    evaluation's exact values under another label is an alias of it.  Progress lines
    (``key=value`` fields as in ``ttt_sliding:done val_bpb=…``, a counter in the label)
    are not evaluations.  An evaluation over :data:`IMPLAUSIBLE_RATIO` times the best
    earlier one of the same artifact failed and is skipped.  Of several appended runs,
    the last with an evaluation after its artifact counts.  When unsure (no artifact
    line, a skipped evaluation, a non-finite score beside finite ones, training after
    the chosen line, nothing after the artifact) the choice stays deterministic and
    ``warnings`` / ``alternatives`` say so.

    ``metric_labels`` (most preferred first) forces the choice: the last line of the
    first of them that occurs wins; if none occurs the rule above applies.
    """
    lines = clean_lines(text)
    candidates: list[MetricLine] = []
    seen: dict[int, _Seen] = {}
    curve: list[tuple[int, CurvePoint]] = []
    sizes: list[tuple[int, int]] = []
    bytes_model: int | None = None
    bytes_code: int | None = None
    bytes_code_compressed: int | None = None
    stop: tuple[int | None, int | None] | None = None  # (train_time_ms, step)
    last_step_time: tuple[int, int] | None = None  # (train_time_ms, step)
    seed: int | None = None
    env_seed: int | None = None
    # Artifact phases: a phase starts at the first artifact line after training; it
    # ends at the next training line (an appended run).
    phase, in_artifact, any_artifact, last_train = 0, False, False, 0

    for idx, line in enumerate(lines):
        line_no = idx + 1
        if not line:
            continue

        point = point_of(line)
        if point is not None:
            curve.append((line_no, point))
            if point.train_time_ms is not None:
                last_step_time = (point.train_time_ms, point.step)
            in_artifact, last_train = False, line_no
            continue

        m = STEP_ANY_RE.match(line)
        if m:
            t = TRAIN_TIME_RE.search(line)
            if t:
                last_step_time = (to_ms(t.group(1)), int(m.group("step")))
            in_artifact, last_train = False, line_no
            continue

        m = METRIC_RE.match(line)
        if m and not m.group("label").startswith("step"):
            rest = m.group("rest") or ""
            t = EVAL_TIME_RE.search(rest)
            label = m.group("label")
            candidates.append(MetricLine(line_no, label, float(m.group("loss")), float(m.group("bpb")),
                                         to_ms(t.group(1)) if t else None))
            # Results print ``key:value``; ``key=value`` fields (``ttt_sliding:done
            # val_bpb=…``) or a counter in the label (``chunk:12``) mark progress lines.
            summary = "val_bpb=" in line or re.search(r":\d", label) is not None
            seen[line_no] = _Seen(phase if in_artifact else None, m.group("loss"), m.group("bpb"), summary)
            continue

        m = STOP_RE.match(line)
        if m:
            rest = m.group("rest")
            t = TRAIN_TIME_RE.search(rest)
            s = STOP_STEP_RE.search(rest)
            stop = (to_ms(t.group(1)) if t else None, int(s.group(1)) if s else None)
            in_artifact, last_train = False, line_no
            continue

        if any(r.search(line) for r in ARTIFACT_RES):
            if not in_artifact:
                phase, in_artifact, any_artifact = phase + 1, True, True

        for size_re in SIZE_RES:
            m = size_re.search(line)
            if m:
                sizes.append((line_no, int(m.group(1))))
                break

        m = MODEL_RE.match(line)
        if m:
            bytes_model = int(m.group(2))
            continue
        m = CODE_RE.match(line)
        if m:
            bytes_code = int(m.group(1))
            continue
        m = CODE_COMPRESSED_RE.match(line)
        if m:
            bytes_code_compressed = int(m.group(1))
            continue

        if seed is None and "seed" in line.lower():
            for seed_re in SEED_RES:
                m = seed_re.search(line)
                if m:
                    seed = int(m.group(1))
                    break
            if seed is None and env_seed is None:
                m = ENV_SEED_RE.search(line)
                if m:
                    env_seed = int(m.group(1))

    candidates = _fill_exact_eval_times(candidates)
    chosen, alternatives, warnings = _choose(candidates, seen, metric_labels, any_artifact)
    if chosen is not None and last_train > chosen.line_no:
        later = [c for c in candidates if c.line_no > last_train and not seen[c.line_no].summary]
        why = (f"the evaluations after them ({_fmt(*later[:3])}{', …' if len(later) > 3 else ''}) follow no"
               " artifact line, so none of them is taken as this file's score" if later
               else "the file may end with a run that printed no final evaluation")
        warnings += (f"training lines continue after the chosen {_fmt(chosen)} (last at line {last_train}): {why}",)

    if chosen is None and not curve and not candidates:
        warnings += ("no evaluation line is recognised (`<label> val_loss:… val_bpb:…` or `step:N/M val_loss:…"
                     " val_bpb:…`): the run printed none, or in a format golfsweep does not read",)

    metric_label = val_bpb = val_loss = metric_line_no = eval_time_ms = None
    if chosen is not None:
        metric_label, val_bpb, val_loss = chosen.label, chosen.val_bpb, chosen.val_loss
        metric_line_no, eval_time_ms = chosen.line_no, chosen.eval_time_ms
    elif curve:
        metric_line_no, last = curve[-1]
        metric_label, val_bpb, val_loss = STEP_VAL_LAST, last.val_bpb, last.val_loss

    # The artifact is measured after training, so for a labelled final metric the
    # size that belongs to it is the last one printed before it (files may hold
    # several appended runs); the in-training fallback takes the file's last size.
    if chosen is not None:
        before = [size for line_no, size in sizes if line_no <= chosen.line_no]
        bytes_total = before[-1] if before else None
    else:
        bytes_total = sizes[-1][1] if sizes else None

    train_time_ms, stop_step = stop if stop is not None else (None, None)
    last_train_ms, last_step = last_step_time if last_step_time is not None else (None, None)

    eval_times = {c.label: c.eval_time_ms for c in candidates if c.eval_time_ms is not None}

    return ParsedLog(
        metric_label=metric_label, val_bpb=val_bpb, val_loss=val_loss, metric_line_no=metric_line_no,
        eval_time_ms=eval_time_ms, bytes_total=bytes_total, bytes_model=bytes_model,
        bytes_code=bytes_code_compressed if bytes_code_compressed is not None else bytes_code,
        train_time_ms=train_time_ms, stop_step=stop_step, last_step_train_time_ms=last_train_ms,
        last_step=last_step, seed=seed if seed is not None else env_seed, curve=tuple(p for _, p in curve),
        eval_times_ms=eval_times, candidates=tuple(candidates), warnings=warnings, alternatives=alternatives,
    )


def parse_log_file(
    path: str | os.PathLike, metric_labels: Sequence[str] | None = None
) -> ParsedLog:
    """Read ``path`` (undecodable bytes replaced) and :func:`parse_log` it."""
    with open(path, encoding="utf-8", errors="replace", newline="") as fh:
        return parse_log(fh.read(), metric_labels)


def companion_values(path: str | os.PathLike, parsed: ParsedLog) -> tuple[ParsedLog, dict[str, str]]:
    """Fill a log's missing artifact size and train time from its seed's training log.

    Some records keep an evaluation-only log (e.g. a TTT re-run in a subfolder) beside the
    training log of the same seed; the size and train time live in the latter. A log that
    trained is never filled: another log of its seed is another run. Looks for
    other logs with the same file-name seed in the same folder and the one above it.
    Returns the filled result and, per filled field, the companion's path.
    """
    if parsed.bytes_total is not None and parsed.train_time_ms is not None:
        return parsed, {}
    if parsed.curve or parsed.last_step is not None:
        return parsed, {}  # it trained: what it lacks, its own run did not print (a stopped run)
    path = Path(path)
    seed = seed_from_filename(path.name)
    if seed is None:
        return parsed, {}
    found: dict[str, str] = {}
    changes: dict[str, int] = {}
    for folder in (path.parent, path.parent.parent):
        for other in sorted(folder.glob("*")):
            if other == path or other.suffix not in (".log", ".txt") or seed_from_filename(other.name) != seed:
                continue
            theirs = parse_log_file(other)
            for field_name in ("bytes_total", "train_time_ms"):
                if getattr(parsed, field_name) is None and field_name not in changes:
                    value = getattr(theirs, field_name)
                    if value is not None:
                        changes[field_name] = value
                        found[field_name] = str(other)
    return (replace(parsed, **changes) if changes else parsed), found


def _fill_exact_eval_times(candidates: list[MetricLine]) -> list[MetricLine]:
    # ``X_exact`` lines repeat ``X`` at full precision without the timing, which is on
    # the ``X`` line printed just before.
    out: list[MetricLine] = []
    for c in candidates:
        prev = out[-1] if out else None
        if (
            c.eval_time_ms is None
            and c.label.endswith(EXACT_SUFFIX)
            and prev is not None
            and prev.line_no == c.line_no - 1
            and prev.label == c.label[: -len(EXACT_SUFFIX)]
            and prev.eval_time_ms is not None
        ):
            c = MetricLine(c.line_no, c.label, c.val_loss, c.val_bpb, prev.eval_time_ms)
        out.append(c)
    return out


class _Seen(NamedTuple):
    """What a metric line's text says beyond its :class:`MetricLine`."""

    phase: int | None  # the artifact phase it was printed in; None: before the artifact
    loss_text: str
    bpb_text: str
    summary: bool  # a progress/summary line, not an evaluation result


def _fmt(*cs: MetricLine) -> str:
    return ", ".join(f"{c.label!r} (line {c.line_no}, val_bpb {c.val_bpb})" for c in cs)


def _agrees(exact: float, shown: str) -> bool:
    """Whether ``exact`` rounds to the value printed as ``shown``."""
    value = float(shown)
    if not (math.isfinite(exact) and math.isfinite(value)):
        return not math.isfinite(exact) and not math.isfinite(value)
    decimals = shown.partition(".")[2]
    return abs(exact - value) <= 0.5 * 10.0 ** -(len(decimals) if decimals.isdigit() else 0) + 1e-12


def _evaluations(
    candidates: Sequence[MetricLine], seen: dict[int, _Seen], warnings: list[str]
) -> list[MetricLine]:
    """The distinct evaluations among ``candidates``, in file order."""
    out: list[MetricLine] = []
    for c in candidates:
        if seen[c.line_no].summary or PRE_LABEL_RE.search(c.label):
            continue
        prev = out[-1] if out and seen[out[-1].line_no].phase == seen[c.line_no].phase else None
        if prev and prev.label != c.label and (prev.val_loss, prev.val_bpb) == (c.val_loss, c.val_bpb):
            continue  # the same values reprinted under a second label: an alias
        pair = [(r, e) for r, e in ((prev, c), (c, prev)) if prev and e.label == r.label + EXACT_SUFFIX]
        if pair:
            rounded, exact = pair[0]
            if _agrees(exact.val_loss, seen[rounded.line_no].loss_text) and _agrees(
                exact.val_bpb, seen[rounded.line_no].bpb_text
            ):
                out[-1] = exact  # one evaluation, printed rounded and exact
                continue
            warnings.append(f"{_fmt(exact)} does not match its rounded companion {_fmt(rounded)}")
        out.append(c)
    return out


def _choose(
    candidates: Sequence[MetricLine],
    seen: dict[int, _Seen],
    metric_labels: Sequence[str] | None,
    any_artifact: bool,
) -> tuple[MetricLine | None, tuple[MetricLine, ...], tuple[str, ...]]:
    """Return (chosen line or None, alternatives, warnings); see :func:`parse_log`."""
    warnings: list[str] = []
    if metric_labels:
        last_by_label = {c.label: c for c in candidates}
        for label in metric_labels:
            if label in last_by_label:
                return last_by_label[label], (), ()
        warnings.append(f"none of metric_labels {list(metric_labels)} occurs; chose by the log's protocol")
    evals = _evaluations(candidates, seen, warnings)
    phases = [seen[c.line_no].phase for c in evals if seen[c.line_no].phase is not None]
    if not phases and any_artifact:
        if evals:
            warnings.append(f"no evaluation is printed after the artifact (serialization/size) lines; those"
                            f" before it are not scores: {_fmt(*evals)}")
        return None, tuple(evals), tuple(warnings)
    pool = [c for c in evals if seen[c.line_no].phase == phases[-1]] if phases else evals
    if not pool:
        return None, (), tuple(warnings)

    chosen, best, alternatives = pool[0], pool[0], []
    for c in pool:
        finite = math.isfinite(c.val_bpb) and math.isfinite(best.val_bpb)
        if finite and c.val_bpb > best.val_bpb * IMPLAUSIBLE_RATIO:
            alternatives.append(c)
            warnings.append(f"{_fmt(c)} is over {IMPLAUSIBLE_RATIO:g}x the earlier {_fmt(best)} of the same"
                            " artifact: taken as a failed evaluation, not the score")
            continue
        chosen = c
        if math.isfinite(c.val_bpb) and not c.val_bpb >= best.val_bpb:
            best = c
    others = [c for c in pool if c is not chosen and c not in alternatives]
    if not phases:
        alternatives += others
        warnings.append(f"no artifact line (serialization/size) precedes the evaluations, so the final"
                        f" artifact's evaluations cannot be told apart; chose the last, {_fmt(chosen)};"
                        f" alternatives: {_fmt(*others) or 'none'}")
    elif not math.isfinite(chosen.val_bpb) and any(math.isfinite(c.val_bpb) for c in others):
        finite = [c for c in others if math.isfinite(c.val_bpb)]
        alternatives += finite
        warnings.append(f"the chosen {_fmt(chosen)} is not finite; finite evaluations: {_fmt(*finite)}")
    return chosen, tuple(alternatives), tuple(warnings)
