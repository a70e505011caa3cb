"""Abstract values: what the audit knows about one Python value, and the identity algebra of
validation data.

Validation-derived values carry an *identity*: which part of the validation set they are, relative
to the loops that slice it. An identity is a frozenset of ``(loop, rel)`` selectors, ``rel`` being
the current chunk of that loop, an earlier one or a later one; the empty identity is the whole set.
At a loop's back edge "current" becomes "earlier", which is what lets score-first TTT come out clean
while train-then-score comes out flagged.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

CUR, PREV, NEXT = "cur", "prev", "next"
EMPTY: frozenset = frozenset()
WHOLE: frozenset = frozenset()  # identity of the whole validation set: no loop narrows it
# A pseudo-identity in a weights snapshot, ``(SELECTED, line)``: the weights were chosen by a
# validation score tested at ``line``. It is no part of the validation set: identity maps leave it.
SELECTED: frozenset = frozenset({("chosen by a validation score", "")})


class _NoConst:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NO_CONST"


NO_CONST = _NoConst()  # the value is not a known constant


@dataclass(frozen=True, slots=True)
class FuncRef:
    node: object  # ast.FunctionDef, AsyncFunctionDef or Lambda
    owner: str | None  # class that defines it, for methods
    closure: object | None  # defining frame, for nested functions

    def __hash__(self) -> int:
        return hash((id(self.node), self.owner, id(self.closure)))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FuncRef) and self.node is other.node and self.owner == other.owner \
            and self.closure is other.closure


@dataclass(frozen=True, slots=True)
class V:
    """What the audit knows about a value.

    ``val``: holds validation tokens (or paths to them); ``out``: computed by a model or loss from
    validation tokens; ``alts``: the possible identities of that validation data; ``idx``: loop
    selectors carried by index-like values; ``pend``: tentative score events whose output this value
    carries; ``train``: derived from training data; ``unk``: derived from something the audit cannot
    see; ``text``: a string or path, not tensor data; ``snap``: model weights (a state dict or what
    was computed from one), with the updates those weights had seen, as ``(identity, line)`` pairs;
    ``const``: a known constant and ``envkeys`` the unpinned environment variables it was read from.
    ``models`` names the model objects (by allocation site: ``GPT@812``, a ``deepcopy`` of one) a value
    is, or that computed it, so a gradient step updates the model it ran through and a score is
    checked against that model's updates only. ``items``/``kwitems`` keep the arguments a ``*args``/``**kwargs`` parameter packed, so a wrapper
    that forwards ``fn(*args, **kwargs)`` passes each one to its place.
    """

    val: bool = False
    out: bool = False
    alts: frozenset = EMPTY
    idx: frozenset = EMPTY
    train: bool = False
    unk: bool = False
    text: bool = False
    pend: frozenset = EMPTY
    funcs: frozenset = EMPTY
    classes: frozenset = EMPTY
    inst: frozenset = EMPTY
    lib: str | None = None
    snap: frozenset | None = None
    const: object = NO_CONST
    envkeys: frozenset = EMPTY
    models: frozenset = EMPTY  # model objects (allocation sites) this value is or was computed by
    items: tuple | None = None  # ``*args`` a function received: the values, in order
    kwitems: tuple | None = None  # ``**kwargs`` a function received: (name, value) pairs

    def plain(self) -> bool:
        return not (self.val or self.out or self.train or self.unk or self.pend or self.snap is not None)

    def known(self) -> bool:
        return self.const is not NO_CONST

    def data(self) -> V:
        """The value as data: callables, class information and constness stripped."""
        if not (self.funcs or self.classes or self.inst or self.lib or self.known()):
            return self
        return replace(self, funcs=EMPTY, classes=EMPTY, inst=EMPTY, lib=None, const=NO_CONST, envkeys=EMPTY)


CLEAN = V()
TEXT = V(text=True)
UNK = V(unk=True)
VAL_SRC = V(val=True, alts=frozenset({WHOLE}))
TRAIN_SRC = V(train=True)


def const(value: object, envkeys: frozenset = EMPTY, text: bool | None = None) -> V:
    if isinstance(value, list):
        value = tuple(value)
    try:
        hash(value)
    except TypeError:
        return CLEAN
    return V(const=value, envkeys=envkeys, text=isinstance(value, str) if text is None else text)


def join(*values: V | None) -> V:
    vs = [v for v in values if v is not None]
    if not vs:
        return CLEAN
    if len(vs) == 1:
        return vs[0]
    libs = {v.lib for v in vs}
    snaps = [v.snap for v in vs if v.snap is not None]
    consts = {_const_key(v.const) for v in vs}
    return V(
        val=any(v.val for v in vs), out=any(v.out for v in vs),
        alts=frozenset().union(*(v.alts for v in vs)), idx=frozenset().union(*(v.idx for v in vs)),
        train=any(v.train for v in vs), unk=any(v.unk for v in vs), text=any(v.text for v in vs),
        pend=frozenset().union(*(v.pend for v in vs)), funcs=frozenset().union(*(v.funcs for v in vs)),
        classes=frozenset().union(*(v.classes for v in vs)), inst=frozenset().union(*(v.inst for v in vs)),
        lib=libs.pop() if len(libs) == 1 else None,
        snap=frozenset().union(*snaps) if snaps else None,
        const=vs[0].const if len(consts) == 1 else NO_CONST,
        envkeys=frozenset().union(*(v.envkeys for v in vs)) if len(consts) == 1 else EMPTY,
        models=frozenset().union(*(v.models for v in vs)),
        items=vs[0].items if all(v.items == vs[0].items for v in vs) else None,
        kwitems=vs[0].kwitems if all(v.kwitems == vs[0].kwitems for v in vs) else None,
    )


def _const_key(c: object) -> tuple:
    return (type(c).__name__, c)  # 1 and True and 1.0 are different configurations


# --------------------------------------------------------------------------------------------- identities


def rels(ident: frozenset, loop: int) -> set[str]:
    return {r for l, r in ident if l == loop}


def loops_of(ident: frozenset) -> set[int]:
    return {l for l, _ in ident}


def overlap(a: frozenset, b: frozenset) -> bool:
    """Whether two identities may share tokens: they differ only if some loop selects disjoint chunks."""
    return all(rels(a, L) & rels(b, L) for L in loops_of(a) & loops_of(b))


def covers(s: frozenset, u: frozenset) -> bool:
    """Whether identity ``s`` contains identity ``u``."""
    return all(rels(u, L) and rels(u, L) <= rels(s, L) for L in loops_of(s))


def covered(u: frozenset, scored: Iterable[frozenset]) -> bool:
    scored = list(scored)
    if any(covers(s, u) for s in scored):
        return True
    for L in loops_of(u):  # a span over several chunks is covered if each chunk is
        rs = rels(u, L)
        if len(rs) > 1:
            rest = frozenset(s for s in u if s[0] != L)
            return all(covered(rest | {(L, r)}, scored) for r in rs)
    return False


def shift(loop: int):
    """Back edge of ``loop``: this iteration's chunk becomes an earlier one, the next one becomes current."""
    def f(ident: frozenset) -> frozenset:
        if not any(l == loop for l, _ in ident):
            return ident
        return frozenset((l, (PREV if r in (CUR, PREV) else CUR) if l == loop else r) for l, r in ident)
    return f


def drop(loops: set[int] | frozenset):
    def f(ident: frozenset) -> frozenset:
        if not any(l in loops for l, _ in ident):
            return ident
        return frozenset(s for s in ident if s[0] not in loops)
    return f


def keep(active: set[int]):
    def f(ident: frozenset) -> frozenset:
        if all(l in active for l, _ in ident):
            return ident
        return frozenset(s for s in ident if s[0] in active)
    return f


def vmap(v: V, f) -> V:
    """Apply an identity map to everything a value holds."""
    if not v.alts and not v.idx and not v.snap:
        return v
    alts = frozenset(f(a) for a in v.alts)
    idx = f(v.idx)
    snap = frozenset((a if a == SELECTED else f(a), line) for a, line in v.snap) if v.snap else v.snap
    if alts == v.alts and idx == v.idx and snap == v.snap:
        return v
    return replace(v, alts=alts, idx=idx, snap=snap)


def narrow(ident: frozenset, sels: dict[int, set[str]]) -> frozenset:
    out = set(ident)
    for L, rs in sels.items():
        have = rels(ident, L)
        kept = (have & rs) or rs
        out = {s for s in out if s[0] != L} | {(L, r) for r in kept}
    return frozenset(out)


def sels_of(ident: frozenset) -> dict[int, set[str]]:
    out: dict[int, set[str]] = {}
    for L, r in ident:
        out.setdefault(L, set()).add(r)
    return out
