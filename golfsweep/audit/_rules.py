"""The rules: events from the interpreter in, findings out.

The interpreter reports what the script does, in program order: *score* (a model or loss call on
validation tokens), *update* (a gradient step on values computed from validation tokens),
*calibrate* (quantization statistics gathered on validation data), *read* of training data, and
the artifact's round trip: *serialize* weights, *load* weights back. The facts those events leave
behind at a program point live in a :class:`Ledger`, which the interpreter copies, joins and remaps
with the rest of its state; the :class:`Judge` holds the rules and the findings.

* An update may only use tokens already scored in the current pass (score-first).
* A score must not touch tokens the current weights were updated on (no adapt-then-rescore).
* Loading weights (a restored state dict, a deserialized artifact) starts a fresh pass: the
  scores so far no longer count and the updates are those the loaded weights had seen.
* Evaluation has begun once the artifact was written, read back and scored on validation data, or
  once the model trained on validation tokens (test-time training exists only in evaluation):
  reading training data from then on is reading it during evaluation. (Loading the in-memory
  weights into another model, e.g. for GPTQ calibration, is not reading the artifact back.)
* An update that taints a later score used tokens before the pass that reports them scored them:
  it is flagged at the update too, so a pre-quantization fine-tune on validation data is named
  where it trains, not only where its model is scored.
* Quantization calibration must not see validation data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from golfsweep.audit._report import Finding, Rule, Severity
from golfsweep.audit._values import PREV, SELECTED, V, covered, covers, overlap

__all__ = ["ANY_MODEL", "Judge", "Ledger", "Where"]

ANY_MODEL = "*"  # an update whose model the audit could not tell: it may be any model's


def _touches(entry_model: str, models: frozenset) -> bool:
    return not models or entry_model == ANY_MODEL or entry_model in models or ANY_MODEL in models


@dataclass(frozen=True)
class Where:
    """Where an event happened: a line of ``source``, the call path that reached it, and how it
    was reached: ``condition`` when only a configuration switch the defaults turn off runs it,
    ``unreached`` when nothing in the script calls it."""

    line: int
    end_line: int | None
    source: str | None
    via: str
    anchor: int  # the outermost call that led here: one training-data finding per such call
    condition: str | None = None
    unreached: bool = False


class Ledger:
    """Flow-sensitive protocol facts at one program point."""

    __slots__ = ("scored", "updated", "saved", "reloaded", "evaluating", "frozen", "selected")

    def __init__(self, scored: frozenset = frozenset(), updated: frozenset = frozenset(),
                 saved: frozenset | None = None, reloaded: bool = False, evaluating: str = "",
                 frozen: frozenset = frozenset(), selected: frozenset = frozenset()) -> None:
        self.scored = scored  # {(identity, tag)}: tag None = definite, int = tentative score
        self.updated = updated  # {(identity, line of the update, model id or ANY_MODEL)}
        self.saved = saved  # updates the serialized weights had seen; None: nothing serialized
        self.reloaded = reloaded  # serialized weights were read back
        self.evaluating = evaluating  # why evaluation is known to be under way ("" : not yet)
        self.frozen = frozen  # models whose parameters were set not to require gradients, on every path
        self.selected = selected  # {(line, model)}: the model holds weights a validation score chose at line

    def copy(self) -> Ledger:
        return Ledger(self.scored, self.updated, self.saved, self.reloaded, self.evaluating, self.frozen,
                      self.selected)

    def remap(self, f: Callable[[frozenset], frozenset]) -> None:
        self.scored = frozenset((f(a), t) for a, t in self.scored)
        self.updated = frozenset((f(a), line, m) for a, line, m in self.updated)
        if self.saved:
            self.saved = frozenset((f(a), line) for a, line in self.saved)

    def merge(self, other: Ledger) -> None:
        self.scored |= other.scored
        self.updated |= other.updated
        if other.saved is not None:
            self.saved = other.saved if self.saved is None else self.saved | other.saved
        self.reloaded = self.reloaded or other.reloaded
        self.evaluating = self.evaluating or other.evaluating  # either path may have begun it
        self.frozen &= other.frozen  # frozen only where every path froze it
        self.selected |= other.selected


class Judge:
    """Applies the rules to events and keeps the findings."""

    def __init__(self) -> None:
        self.findings: dict[tuple, Finding] = {}
        self.pending: dict[int, list[Finding]] = {}  # rescorings by tentative scores, kept until confirmed
        # Updates on unscored validation tokens of known models, reported once those weights score:
        # a throw-away adapter trained while warming a compiler up never reaches a score.
        self.unused: dict[tuple, Finding] = {}
        self.overlap_tags: set[int] = set()
        self.selecting: list[int] = []  # lines of the validation-score tests the current code runs under
        self.tags = 0
        self.events = 0  # how many events were seen: a call that saw none can be cached

    # -- reporting -------------------------------------------------------------------------------

    def _finding(self, rule: Rule, where: Where, message: str, related: Iterable[int] = ()) -> Finding:
        severity = Severity.VIOLATION
        if where.unreached:
            severity = Severity.WARNING
            message += " (in code not reached from the script's entry point)"
        elif where.condition:
            if not rule.is_access:
                severity = Severity.WARNING
            message += f" (only when {where.condition})"
        return Finding(rule, where.line, where.end_line, message + where.via, severity, where.source,
                       tuple(sorted(set(related))))

    def report(self, f: Finding, key: tuple | None = None) -> None:
        key = key or (f.rule, f.line, f.source)
        old = self.findings.get(key)
        if old is None or (old.severity is Severity.WARNING and f.severity is Severity.VIOLATION):
            self.findings[key] = f
        elif f.related and set(f.related) - set(old.related):
            self.findings[key] = Finding(old.rule, old.line, old.end_line, old.message, old.severity, old.source,
                                         tuple(sorted(set(old.related) | set(f.related))))

    # -- events ----------------------------------------------------------------------------------

    def score(self, led: Ledger, where: Where, alts: frozenset, tentative: bool, models: frozenset) -> int | None:
        """A model or loss call on validation tokens, by ``models`` (empty: unknown). Returns the tag of
        a tentative score: one made with gradients on, withdrawn if its output reaches a backward pass."""
        self.events += 1
        if led.reloaded and not led.evaluating:
            led.evaluating = f"after the artifact was read back and scored at line {where.line}"
        tag = None
        if tentative:
            self.tags += 1
            tag = self.tags
        lines = {line for _, line, m in led.updated if _touches(m, models)} if self.unused else ()
        for key in [k for k in self.unused if k[1] in lines]:
            f = self.unused.pop(key)  # these weights score now: their update on unscored tokens counts
            if tag is None:
                self.report(f)
            else:
                self.pending.setdefault(tag, []).append(f)
        for a in alts:
            sites = [line for u, line, m in led.updated if _touches(m, models) and overlap(a, u)]
            if sites:
                f = self._finding(Rule.RESCORE, where, "validation tokens are scored after the model was updated "
                                  f"on them at line {', '.join(map(str, sorted(set(sites))))} (adapt-then-evaluate "
                                  "or multi-pass rescoring)", related=sites)
                if tag is None:
                    self.report(f)
                else:
                    self.overlap_tags.add(tag)
                    self.pending.setdefault(tag, []).append(f)
                break
        definite = [a for a, t in led.scored if t is None]
        new = {(a, tag) for a in alts if not any(covers(d, a) for d in definite)}
        if new:
            led.scored = led.scored | new
        return tag

    def confirm(self, led: Ledger, pend: frozenset) -> None:
        """A tentative score whose output was accumulated is a real score (unless it rescored)."""
        tags = {t for t in pend if t not in self.overlap_tags}
        if tags and any(t in tags for _, t in led.scored):
            led.scored = frozenset((a, None if t in tags else t) for a, t in led.scored)

    def update(self, led: Ledger, where: Where, v: V, first_pass: Callable[[int], bool]) -> bool:
        """A gradient step on ``v``. Returns whether it used validation data."""
        self.events += 1
        if v.pend:  # the forward passes feeding this backward were training, not scoring
            led.scored = frozenset((a, t) for a, t in led.scored if t not in v.pend)
            for t in v.pend:
                for f in self.pending.pop(t, ()):
                    if f.rule is Rule.UPDATE_BEFORE_SCORE:  # not a score after all: unused again
                        self.unused.setdefault((f.source, f.line), f)
        if not (v.val or v.out):
            return False
        # Autograd leaves frozen parameters alone: a step through a frozen base model into an adapter
        # (LoRA, a per-document head) changes the adapter only. Only frozen models: keep them all.
        models = (v.models - led.frozen) or v.models
        scored = [a for a, _ in led.scored]
        for u in v.alts:
            # On a loop's first pass, earlier iterations are not modelled yet; pass two checks them.
            if any(r == PREV and first_pass(L) for L, r in u):
                continue
            if not covered(u, scored):
                f = self._finding(
                    Rule.UPDATE_BEFORE_SCORE, where, "the model is updated on validation tokens that have not been "
                    "scored yet (train-then-score, or fine-tuning on validation data)")
                key = (f.rule, f.line, f.source)
                if not models or key in self.findings:  # weights of unknown models: they may be any that scores
                    self.report(f)
                else:
                    self.unused.setdefault((f.source, f.line), f)
                break
        led.updated = led.updated | {(u, where.line, m) for u in v.alts for m in (models or {ANY_MODEL})}
        if not led.evaluating:
            led.evaluating = f"after the model trained on validation tokens at line {where.line}"
        return True

    def set_trainable(self, led: Ledger, models: frozenset, trainable: bool) -> None:
        """``requires_grad_(flag)`` on the parameters of ``models``."""
        self.events += 1
        led.frozen = led.frozen - models if trainable else led.frozen | models

    def calibrate(self, where: Where, what: str) -> None:
        self.events += 1
        self.report(self._finding(Rule.VAL_CALIBRATION, where, f"quantization calibration uses validation data "
                                  f"({what})"))

    def read_train(self, led: Ledger, where: Where, what: str) -> None:
        """Training data read. Reported once per statement of the outermost function that led to it
        (the call a reader can act on), naming the read itself."""
        self.events += 1
        if not led.evaluating:
            return
        if where.anchor != where.line:
            what += f", at line {where.line}"
            where = replace(where, line=where.anchor, end_line=None)
        f = self._finding(Rule.TRAIN_IN_EVAL, where, f"training data is read during evaluation, "
                          f"{led.evaluating} ({what})")
        self.report(f, key=(Rule.TRAIN_IN_EVAL, where.line, where.source, where.condition))

    def weights(self, led: Ledger, models: frozenset) -> frozenset:
        """The updates the weights of ``models`` have seen, as ``(identity, line)``: a snapshot. One taken
        under a validation-score test, or of weights such a test chose, also holds ``(SELECTED, line)``."""
        return frozenset((u, line) for u, line, m in led.updated if _touches(m, models)) \
            | {(SELECTED, line) for line, m in led.selected if _touches(m, models)} | self.chosen_now()

    def chosen_now(self) -> frozenset:
        """Snapshot entries for weights taken or put in place under validation-score tests."""
        return frozenset((SELECTED, line) for line in self.selecting)

    @staticmethod
    def split(snap: frozenset) -> tuple[frozenset, frozenset]:
        """A snapshot's updates, and the lines of the validation-score tests that chose it."""
        return (frozenset(e for e in snap if e[0] != SELECTED),
                frozenset(line for u, line in snap if u == SELECTED))

    def clone_model(self, led: Ledger, models: frozenset, new: str) -> None:
        """``deepcopy`` of a model: the copy starts with the updates its source had seen."""
        self.events += 1
        updates, chosen = self.split(self.weights(led, models))
        led.updated = led.updated | {(u, line, new) for u, line in updates}
        led.selected = led.selected | {(line, new) for line in chosen}

    def serialize(self, led: Ledger, where: Where, snap: frozenset | None) -> None:
        """Model weights written out (``torch.save``, bytes of a state dict written to a file)."""
        self.events += 1
        weights, chosen = self.split((snap if snap is not None else self.weights(led, frozenset()))
                                     | self.chosen_now())
        if chosen:  # a warning: choosing by validation score across runs is what every sweep does
            self.report(replace(self._finding(
                Rule.SELECT_ON_VAL, where, "the weights written here were chosen by their score on the validation "
                f"set at line {', '.join(map(str, sorted(chosen)))} (best-checkpoint selection on the data the "
                "record is scored on)", related=chosen), severity=Severity.WARNING))
        lines = {line for _, line in weights}
        for key in [k for k in self.unused if k[1] in lines]:
            self.report(self.unused.pop(key))  # weights trained on unscored tokens become the artifact
        led.saved = weights if led.saved is None else led.saved | weights

    def deserialize(self, led: Ledger) -> frozenset | None:
        """Bytes read back with a deserializer: if weights were serialized before, this is the artifact.
        Returns the updates those weights had seen (None: nothing was serialized)."""
        self.events += 1
        if led.saved is not None:
            led.reloaded = True
        return led.saved

    def load_weights(self, led: Ledger, snap: frozenset, models: frozenset) -> None:
        """Weights restored into ``models`` (empty: unknown, so any): a fresh pass over the validation
        set starts, and those models have seen exactly the updates the weights had."""
        self.events += 1
        led.scored = frozenset()
        snap, chosen = self.split(snap | self.chosen_now())
        kept = {e for e in led.updated if models and e[2] not in models and e[2] != ANY_MODEL}
        led.updated = frozenset(kept | {(u, line, m) for u, line in snap for m in (models or {ANY_MODEL})})
        led.selected = frozenset({e for e in led.selected if models and e[1] not in models and e[1] != ANY_MODEL}
                                 | {(line, m) for line in chosen for m in (models or {ANY_MODEL})})
        if not led.updated and not led.reloaded:  # back to weights no validation token trained: not evaluating
            led.evaluating = ""

    @property
    def never_scored(self) -> list[int]:
        """Lines of updates on unscored validation tokens whose weights never scored nor were saved."""
        return sorted({f.line for f in self.unused.values()})

    def finish(self) -> list[Finding]:
        for fs in self.pending.values():
            for f in fs:
                self.report(f)
        out = list(self.findings.values())
        taints: dict[tuple, list[Finding]] = {}
        for f in out:
            if f.rule is Rule.RESCORE:
                for line in f.related:
                    taints.setdefault((f.source, line), []).append(f)
        updates = {(f.source, f.line): f for f in out if f.rule is Rule.UPDATE_BEFORE_SCORE}
        result = [f for f in out if f.rule is not Rule.UPDATE_BEFORE_SCORE]
        for (source, line), scores in taints.items():
            lines = sorted({f.line for f in scores})
            severity = Severity.VIOLATION if any(f.severity is Severity.VIOLATION for f in scores) \
                else Severity.WARNING
            own = updates.pop((source, line), None)
            head, sep, path = own.message.partition(" [call path:") if own else (
                "the model is updated on validation tokens before the pass that reports them scored them", "", "")
            if own is not None and own.severity is Severity.VIOLATION:
                severity = Severity.VIOLATION
            result.append(Finding(Rule.UPDATE_BEFORE_SCORE, line, own.end_line if own else None,
                                  f"{head}; it taints the scoring at line {', '.join(map(str, lines))}{sep}{path}",
                                  severity, source, tuple(lines)))
        result.extend(updates.values())
        result.sort(key=lambda f: (f.source or "", f.line, f.rule.value))
        return result
