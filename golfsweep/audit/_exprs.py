"""Expressions: names, attributes, subscripts, operators and constant folding (a mixin of the
interpreter in :mod:`._interp`)."""

from __future__ import annotations

import ast
import builtins
import operator
from dataclasses import replace

from golfsweep.audit import _vocab as vocab
from golfsweep.audit._values import (CLEAN, CUR, EMPTY, NEXT, PREV, TEXT, TRAIN_SRC, UNK, VAL_SRC, V, const, drop,
                                     join, loops_of, narrow, sels_of, vmap)

__all__ = ["ExprMixin", "fold"]

_MAX_CONST_LEN = 10_000
_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
           ast.BitAnd: operator.and_, ast.BitOr: operator.or_, ast.BitXor: operator.xor,
           ast.LShift: operator.lshift, ast.RShift: operator.rshift}
_CMPOPS = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
           ast.Gt: operator.gt, ast.GtE: operator.ge, ast.Is: operator.is_, ast.IsNot: operator.is_not,
           ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b}


def _small(value: object) -> bool:
    return not isinstance(value, (str, bytes, tuple)) or len(value) <= _MAX_CONST_LEN


def fold(fn, *values, envkeys: frozenset = EMPTY) -> V | None:
    """``fn(*values)`` as a constant, or None when it fails or would be too large."""
    if fn is operator.pow and isinstance(values[1], (int, float)) and abs(values[1]) > 256:
        return None
    if fn is operator.mul and any(isinstance(v, (str, bytes, tuple)) for v in values) \
            and any(isinstance(v, int) and v > _MAX_CONST_LEN for v in values):
        return None
    try:
        out = fn(*values)
    except Exception:
        return None
    return const(out, envkeys) if _small(out) else None


class ExprMixin:
    """Evaluates expressions to :class:`~._values.V`. Needs the interpreter's state and calls."""

    # -- names -----------------------------------------------------------------------------------

    def lookup(self, name: str, st) -> V:
        if name in st.env:
            return st.env[name]
        f = self.frame.closure
        while f is not None:
            if f.state is not None and name in f.state.env:
                return f.state.env[name]
            f = f.closure
        mod = self.module.state
        if mod is not None and mod is not st and name in mod.env:
            return mod.env[name]
        if name in self.classes:
            return V(classes=frozenset({name}))
        for top in self.tree.body:
            if isinstance(top, (ast.FunctionDef, ast.AsyncFunctionDef)) and top.name == name:
                return V(funcs=frozenset({self.funcref(top, None, None)}))
        if name == "__name__":
            return const("__main__")
        if name == "__file__":
            return const(self.script_name or "train_gpt.py")
        if hasattr(builtins, name):
            return V(lib=f"builtins.{name}")
        if name.startswith("__") and name.endswith("__"):
            return TEXT
        if self.star_modules:
            return V(lib=f"{self.star_modules[0]}.{name}")
        return UNK

    def name_source(self, name: str, v: V, scalar: bool = False) -> V:
        """A value with no traced origin, stored under a name that says which split it holds. A value
        typed or known as a number (``scalar``: annotated ``int``/``float``/``bool``, or a class field
        so annotated) is a setting, not data, whatever its name says."""
        if scalar or name in self.scalar_attrs or isinstance(v.const, (int, float)):
            return v
        if not (v.val or v.out) and vocab.is_split_name(name, vocab.VAL_WORDS):
            self.saw_val = True
            self.judge.events += 1
            v = join(v, VAL_SRC)
        if not v.train and vocab.is_split_name(name, vocab.TRAIN_WORDS):
            self.judge.events += 1
            v = join(v, TRAIN_SRC)
        return v

    # -- dispatch --------------------------------------------------------------------------------

    def ev(self, node: ast.expr | None, st) -> V:
        if node is None:
            return CLEAN
        self.tick()
        method = getattr(self, "ev_" + type(node).__name__, None)
        if method is not None:
            return method(node, st)
        out = [self.ev(c, st) for c in ast.iter_child_nodes(node) if isinstance(c, ast.expr)]
        return join(*out).data() if out else CLEAN

    def ev_Constant(self, node: ast.Constant, st) -> V:
        if isinstance(node.value, str):
            return replace(self.string_value(node.value), const=node.value)
        return const(node.value)

    def string_value(self, s: str) -> V:
        low = s.lower().strip()
        pathish = not any(c.isspace() for c in low) and any(p in low for p in vocab.PATHISH)
        v = TEXT
        if low in vocab.SPLIT_VAL or (pathish and vocab.VAL_IN_STR.search(low)):
            self.saw_val = True
            self.judge.events += 1
            v = V(val=True, alts=frozenset({frozenset()}), text=True)
        if low in vocab.SPLIT_TRAIN or (pathish and vocab.TRAIN_IN_STR.search(low)):
            self.judge.events += 1
            v = replace(v, train=True)
        return v

    def ev_JoinedStr(self, node: ast.JoinedStr, st) -> V:
        literal = "".join(v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str))
        parts = [self.ev(v.value, st) for v in node.values if isinstance(v, ast.FormattedValue)]
        lit = self.string_value(literal) if literal else TEXT
        joined = join(lit, *parts)
        return V(val=joined.val or lit.val, alts=joined.alts if joined.val else EMPTY, train=joined.train,
                 unk=joined.unk, text=True)

    def ev_FormattedValue(self, node: ast.FormattedValue, st) -> V:
        return self.ev(node.value, st)

    def ev_Name(self, node: ast.Name, st) -> V:
        return self.lookup(node.id, st)

    def ev_Attribute(self, node: ast.Attribute, st) -> V:
        return self.get_attr(self.ev(node.value, st), node.attr)

    def get_attr(self, base: V, attr: str) -> V:
        if base.lib:
            return V(lib=f"{base.lib}.{attr}")
        if attr in vocab.METADATA_ATTRS:
            return V(idx=base.idx)
        res = None
        owners = base.inst | base.classes
        for c in owners:
            for k in self.class_chain(c):
                stored = self.attrs.get((k, attr))
                if stored is not None:
                    res = join(res, stored)
                    break
            hit = self.find_method(c, attr)
            if hit is not None:  # a bound method: calling it runs the same model
                res = join(res, V(funcs=frozenset({self.funcref(hit[1], hit[0], None)}), models=base.models))
        if res is None:
            if owners:
                res = CLEAN
            else:  # a tensor or an object the audit cannot type: x.T, args.val_files, obj.data
                res = join(base.data(), self.attrs.get((None, attr)))
        elif base.idx - res.idx:  # a field of the current chunk's element belongs to that chunk
            res = replace(res, idx=res.idx | base.idx)
        return self.name_source(attr, res)

    # -- subscripts ------------------------------------------------------------------------------

    def ev_Subscript(self, node: ast.Subscript, st) -> V:
        base = self.ev(node.value, st)
        sl = node.slice
        sels: dict[int, set[str]] = {}
        if isinstance(sl, ast.Slice):
            lo, up, step = self.ev(sl.lower, st), self.ev(sl.upper, st), self.ev(sl.step, st)
            index = join(lo, up, step)
            if sl.lower is not None:
                sels = sels_of(lo.idx)
                for L, rs in sels_of(up.idx | step.idx).items():
                    sels.setdefault(L, rs)
                for L, off in self._offsets(sl.lower, scaled_only=True).items():
                    sels[L] = {PREV if off < 0 else CUR if off == 0 else NEXT}
            else:  # a prefix val[:end] covers everything before ``end``
                sels = {L: {PREV, CUR} for L in loops_of(up.idx)}
                for L, off in self._offsets(sl.upper, scaled_only=True).items() if sl.upper is not None else ():
                    sels[L] = {PREV} if off <= 0 else {PREV, CUR}
        else:
            index = self.ev(sl, st)
            if base.lib == "os.environ" and index.known():
                return self.env_read(index.const, None, has_default=False)
            if base.known() and index.known():
                hit = fold(operator.getitem, base.const, index.const, envkeys=base.envkeys | index.envkeys)
                if hit is not None:
                    return hit
            sels = sels_of(index.idx)
            for L, off in self._offsets(sl).items():
                sels[L] = {PREV if off < 0 else CUR if off == 0 else NEXT}
        sels = {L: r for L, r in sels.items() if L in self.active}
        alts = frozenset(narrow(a, sels) for a in base.alts) if (base.val or base.out) else EMPTY
        idx = base.idx | frozenset((L, r) for L, rs in sels.items() for r in rs)
        res = replace(base.data(), alts=alts, idx=idx, funcs=base.funcs, inst=base.inst, text=base.text)
        if (index.val or index.out) and not index.text and not (base.val or base.out):
            res = replace(res, out=True, alts=index.alts)  # a lookup table indexed by validation tokens
        return res

    def _offsets(self, node: ast.expr, scaled_only: bool = False) -> dict[int, int]:
        """Loop-relative position named by an index expression: ``i`` -> 0, ``i - 1`` -> -1.

        In a slice bound only a scaled shift (``(i - 1) * n``) moves to another chunk: ``s + 1`` in
        ``tokens[s + 1 : e + 1]`` is the usual one-token shift to the targets.
        """
        lv = self.frame.loopvars
        out: dict[int, int] = {}
        handled: set[int] = set()
        scaled: set[int] = set()
        if scaled_only:
            for sub in ast.walk(node):
                if isinstance(sub, ast.BinOp) and isinstance(sub.op, (ast.Mult, ast.FloorDiv)):
                    scaled.update((id(sub.left), id(sub.right)))
        for sub in ast.walk(node):
            if isinstance(sub, ast.BinOp) and isinstance(sub.op, (ast.Add, ast.Sub)) \
                    and isinstance(sub.left, ast.Name) and sub.left.id in lv \
                    and isinstance(sub.right, ast.Constant) and isinstance(sub.right.value, int) \
                    and (not scaled_only or id(sub) in scaled):
                L, off = lv[sub.left.id]
                k = sub.right.value
                out.setdefault(L, off + (k if isinstance(sub.op, ast.Add) else -k))
                handled.add(id(sub.left))
            elif isinstance(sub, ast.Name) and sub.id in lv and id(sub) not in handled:
                L, off = lv[sub.id]
                out.setdefault(L, off)
        return {L: off for L, off in out.items() if L in self.active}

    # -- operators -------------------------------------------------------------------------------

    def binop(self, op: ast.operator, left: V, right: V) -> V:
        res = join(left, right).data()
        if left.known() and right.known() and type(op) in _BINOPS:
            hit = fold(_BINOPS[type(op)], left.const, right.const, envkeys=left.envkeys | right.envkeys)
            if hit is not None:
                return replace(res, const=hit.const, envkeys=hit.envkeys, text=hit.text)
        if isinstance(op, ast.Mod) and left.text:
            return replace(res, text=True, out=False, pend=EMPTY)
        return res

    def ev_BinOp(self, node: ast.BinOp, st) -> V:
        left = self.ev(node.left, st)
        right = self.ev(node.right, st)
        if isinstance(node.op, ast.MatMult):
            self.check_gram(node, node.left, node.right, left, right, st)
        return self.binop(node.op, left, right)

    def check_gram(self, node: ast.AST, lnode: ast.expr, rnode: ast.expr, left: V, right: V, st) -> None:
        """``X.T @ X`` on validation activations is a Hessian/covariance estimate: calibration."""
        if not ((left.val or left.out) and (right.val or right.out)):
            return
        inner = None
        if isinstance(lnode, ast.Attribute) and lnode.attr in ("T", "mT", "H"):
            inner = lnode.value
        elif isinstance(lnode, ast.Call) and isinstance(lnode.func, ast.Attribute) \
                and lnode.func.attr in ("t", "transpose", "permute"):
            inner = lnode.func.value
        if (inner is not None and ast.dump(inner) == ast.dump(rnode)) or self.frame.calib:
            self.judge.calibrate(self.where(node), "second-moment statistics X^T X of validation activations")

    def ev_UnaryOp(self, node: ast.UnaryOp, st) -> V:
        v = self.ev(node.operand, st)
        if v.known():
            fn = {ast.Not: operator.not_, ast.USub: operator.neg, ast.UAdd: operator.pos,
                  ast.Invert: operator.invert}[type(node.op)]
            hit = fold(fn, v.const, envkeys=v.envkeys)
            if hit is not None:
                return hit
        return v.data()

    def ev_BoolOp(self, node: ast.BoolOp, st) -> V:
        """Short-circuits on known constants: ``a and b`` with ``a`` false is ``a``, ``b`` unread. A known
        operand that decides the result decides its truth whatever came before it (``x and False`` is
        false whatever ``x`` is), so a branch on it is decided."""
        is_and = isinstance(node.op, ast.And)
        seen: list[V] = []
        keys: frozenset = EMPTY
        for sub in node.values:
            v = self.ev(sub, st)
            seen.append(v)
            if not v.known():
                continue
            keys |= v.envkeys
            try:
                truth = bool(v.const)
            except Exception:
                continue
            if truth != is_and:  # decides the result, or at least its truth
                return replace(v, envkeys=keys)
        if all(s.known() for s in seen):
            return replace(seen[-1], envkeys=keys)
        return join(*seen)

    def ev_Compare(self, node: ast.Compare, st) -> V:
        parts = [self.ev(node.left, st)] + [self.ev(c, st) for c in node.comparators]
        idx = frozenset().union(*(p.idx for p in parts))
        result: V | None = None
        keys: frozenset = EMPTY
        for op, a, b in zip(node.ops, parts, parts[1:]):
            step = self._compare(op, a, b)
            if step is None:
                return V(idx=idx)
            keys |= step.envkeys
            result = step
            if not step.const:
                break
        return V(idx=idx, const=result.const, envkeys=keys) if result is not None else V(idx=idx)

    def _compare(self, op: ast.cmpop, a: V, b: V) -> V | None:
        if isinstance(op, (ast.In, ast.NotIn)) and b.lib == "os.environ" and a.known():
            present = self.env_read(a.const, None, has_default=False, presence=True)
            if not present.known():
                return None
            return const(present.const if isinstance(op, ast.In) else not present.const, present.envkeys)
        if a.known() and b.known():
            return fold(_CMPOPS[type(op)], a.const, b.const, envkeys=a.envkeys | b.envkeys)
        if a.lib and b.lib and isinstance(op, (ast.Eq, ast.NotEq, ast.Is, ast.IsNot)) \
                and not (a.funcs or b.funcs or a.inst or b.inst):
            same = a.lib == b.lib  # ``t == bool`` inside an env-reading helper
            return const(same if isinstance(op, (ast.Eq, ast.Is)) else not same)
        if isinstance(op, (ast.Is, ast.IsNot)) and (a.known() and a.const is None or b.known() and b.const is None):
            other = b if a.known() and a.const is None else a
            if other.funcs or other.inst or other.classes or other.lib:  # a function or object is not None
                return const(isinstance(op, ast.IsNot))
        return None

    def ev_IfExp(self, node: ast.IfExp, st) -> V:
        taken, test = self.decide(node.test, st)
        if taken is None:
            return join(self.ev(node.body, st), self.ev(node.orelse, st))
        v = self.ev(node.body if taken else node.orelse, st)
        return replace(v, envkeys=v.envkeys | test.envkeys) if v.known() else v

    def ev_Lambda(self, node: ast.Lambda, st) -> V:
        closure = None if self.frame is self.module else self.frame
        return V(funcs=frozenset({self.funcref(node, None, closure)}))

    def ev_NamedExpr(self, node: ast.NamedExpr, st) -> V:
        v = self.ev(node.value, st)
        self.assign(node.target, v, st, node.value)
        return v

    def ev_Starred(self, node: ast.Starred, st) -> V:
        return self.ev(node.value, st)

    def _ev_elts(self, elts: list[ast.expr | None], st) -> V:
        return self._joined_elts([self.ev(e, st) for e in elts if e is not None], len(elts))

    @staticmethod
    def _joined_elts(vals: list[V], n: int) -> V:
        res = join(*vals)
        if vals and all(v.known() for v in vals) and len(vals) == n:
            return const(tuple(v.const for v in vals), frozenset().union(*(v.envkeys for v in vals)))
        return res.data() if res.known() else res

    def ev_Tuple(self, node: ast.Tuple, st) -> V:
        if any(isinstance(e, ast.Starred) for e in node.elts):
            return join(*(self.ev(e, st) for e in node.elts)).data()
        vals = [self.ev(e, st) for e in node.elts]
        res = self._joined_elts(vals, len(node.elts))
        # A tuple keeps its elements apart, so ``a, b = f()`` with ``return x, y`` gets each its own.
        return res if res.known() else replace(res, items=tuple(vals))

    def ev_List(self, node: ast.List, st) -> V:
        if any(isinstance(e, ast.Starred) for e in node.elts):
            return join(*(self.ev(e, st) for e in node.elts)).data()
        return self._ev_elts(node.elts, st)

    def ev_Set(self, node: ast.Set, st) -> V:
        res = join(*(self.ev(e, st) for e in node.elts))
        return replace(res.data(), funcs=res.funcs, inst=res.inst)

    def ev_Dict(self, node: ast.Dict, st) -> V:
        """A dict holds its values: functions in a dispatch table stay callable through it."""
        keys = join(*(self.ev(e, st) for e in node.keys if e is not None))
        res = join(keys, *(self.ev(e, st) for e in node.values)) if node.keys else CLEAN
        return replace(res.data(), funcs=res.funcs, inst=res.inst, classes=res.classes)

    def ev_Yield(self, node: ast.Yield, st) -> V:
        self.frame.returns.append(self.ev(node.value, st) if node.value is not None else CLEAN)
        return CLEAN

    def ev_YieldFrom(self, node: ast.YieldFrom, st) -> V:
        self.frame.returns.append(self.ev(node.value, st))
        return CLEAN

    def ev_Await(self, node: ast.Await, st) -> V:
        return self.ev(node.value, st)

    # -- comprehensions --------------------------------------------------------------------------

    def _ev_comprehension(self, node: ast.AST, elts: list[ast.expr], st) -> V:
        s = st.copy()
        fr = self.frame
        loops: list[int] = []
        saved_loopvars = dict(fr.loopvars)
        try:
            for gen in node.generators:
                it = self.ev(gen.iter, s)
                if it.train and not it.text:
                    self.judge.read_train(s.led, self.where(gen.iter), "iterates over training data")
                L = self.loop_id(gen)
                self.active.append(L)
                loops.append(L)
                self.bind_loop_target(gen.target, [it], None, L, s)
                for cond in gen.ifs:
                    self.ev(cond, s)
            res = join(*(self.ev(e, s) for e in elts))
        finally:
            for _ in loops:
                self.active.pop()
            fr.loopvars = saved_loopvars
        dropped = drop(set(loops))
        s.remap(dropped)
        self.attrs = {k: vmap(v, dropped) for k, v in self.attrs.items()}
        st.led = s.led
        return replace(vmap(res, dropped).data(), funcs=res.funcs, inst=res.inst)

    def ev_ListComp(self, node: ast.ListComp, st) -> V:
        return self._ev_comprehension(node, [node.elt], st)

    ev_SetComp = ev_ListComp
    ev_GeneratorExp = ev_ListComp

    def ev_DictComp(self, node: ast.DictComp, st) -> V:
        return self._ev_comprehension(node, [node.key, node.value], st)

    # -- gradient mode ---------------------------------------------------------------------------

    def grad_mode(self, expr: ast.expr, st) -> bool | None:
        """``torch.no_grad()`` -> True, ``torch.enable_grad()`` -> False, anything else -> None."""
        func = expr.func if isinstance(expr, ast.Call) else expr
        if not isinstance(func, (ast.Name, ast.Attribute)):
            return None
        lib = self.peek_lib(func, st)
        if lib is None:
            return None
        short = lib.rsplit(".", 1)[-1]
        args = expr.args if isinstance(expr, ast.Call) else []
        first = args[0] if args else None
        value = first.value if isinstance(first, ast.Constant) else None
        if short in vocab.GRAD_OFF:
            return False if value is False else True
        if short == "enable_grad":
            return False
        if short == "set_grad_enabled" and isinstance(value, bool):
            return not value
        return None

    def peek_lib(self, node: ast.expr, st) -> str | None:
        """The library name of a Name/Attribute chain, without evaluating anything else."""
        if isinstance(node, ast.Name):
            return self.lookup(node.id, st).lib
        if isinstance(node, ast.Attribute):
            base = self.peek_lib(node.value, st)
            return f"{base}.{node.attr}" if base else None
        return None
