"""Assignment, and weights put back: how values reach names, attributes and containers.

A mixin of the interpreter (:mod:`._interp`). ``a, b = f()`` with ``return x, y`` gives each
name its own element. Copying saved weights back into every parameter of a model
(``for n, p in m.named_parameters(): p.data.copy_(saved[n])``) is ``load_state_dict``: the
model has seen exactly the updates those weights had, and a fresh pass starts.
"""

from __future__ import annotations

import ast
from dataclasses import replace

from golfsweep.audit._state import State
from golfsweep.audit._values import EMPTY, NO_CONST, V, const, join

__all__ = ["AssignMixin"]


class AssignMixin:
    def _exec_assign(self, targets: list[ast.expr], value: ast.expr, st: State) -> None:
        if isinstance(value, (ast.Tuple, ast.List)) and not any(isinstance(e, ast.Starred) for e in value.elts) \
                and len(targets) == 1 and isinstance(targets[0], (ast.Tuple, ast.List)) \
                and len(targets[0].elts) == len(value.elts):
            parts = [self.ev(e, st) for e in value.elts]
            for t, e, v in zip(targets[0].elts, value.elts, parts):
                self.assign(t, v, st, e)
            return
        v = self.ev(value, st)
        for t in targets:
            self.assign(t, v, st, value)

    def assign(self, target: ast.expr, v: V, st: State, value_node: ast.expr | None) -> None:
        fr = self.frame
        if v.snap is not None and self.judge.selecting:  # weights kept because of a validation score
            v = replace(v, snap=v.snap | self.judge.chosen_now())
        if isinstance(target, ast.Name):
            st.forget(target.id)
            st.env[target.id] = self.name_source(target.id, v)
            alias = self._loop_alias(value_node)
            if alias is not None:
                fr.loopvars[target.id] = alias
            else:
                fr.loopvars.pop(target.id, None)
        elif isinstance(target, (ast.Tuple, ast.List)):
            items = v.const if v.known() and isinstance(v.const, tuple) and len(v.const) == len(target.elts) else None
            parts = v.items if v.items is not None and len(v.items) == len(target.elts) and items is None else None
            rest = replace(v, const=NO_CONST, envkeys=EMPTY, items=None)
            for i, e in enumerate(target.elts):
                part = const(items[i], v.envkeys) if items is not None else parts[i] if parts is not None else rest
                self.assign(e, part, st, None)
        elif isinstance(target, ast.Starred):
            self.assign(target.value, v.data(), st, None)
        elif isinstance(target, ast.Attribute):
            st.forget(target.attr)
            base = self.ev(target.value, st)
            if target.attr == "requires_grad" and base.models:
                self.set_requires_grad(base, v, st)
            self.store_attr(base, target.attr, v)
        elif isinstance(target, ast.Subscript):
            self.ev(target.slice, st)
            self.mutate(target.value, v.data(), st)

    def store_attr(self, base: V, attr: str, v: V) -> None:
        v = self.name_source(attr, v)
        if not v.plain() or v.inst or v.funcs:
            self.judge.events += 1
        for c in base.inst | base.classes:
            old = self.attrs.get((c, attr))
            self.attrs[(c, attr)] = join(old, v) if old is not None else v
        old = self.attrs.get((None, attr))
        self.attrs[(None, attr)] = join(old, v) if old is not None else v

    def mutate(self, target: ast.expr, v: V, st: State) -> None:
        """``xs.append(v)``, ``buf[i] = v``: the container now also holds ``v``."""
        if v.plain() and not v.alts:
            return
        if isinstance(target, ast.Name):
            st.env[target.id] = join(self.lookup(target.id, st), v).data()
            self.frame.mutated.add(target.id)
        elif isinstance(target, ast.Attribute):
            self.store_attr(self.ev(target.value, st), target.attr, v)
        elif isinstance(target, ast.Subscript):
            self.mutate(target.value, v, st)

    def _loop_alias(self, node: ast.expr | None) -> tuple[int, int] | None:
        """``j = i - 1`` inside ``for i in ...``: ``j`` names the previous iteration's index."""
        lv = self.frame.loopvars
        if isinstance(node, ast.Name) and node.id in lv:
            return lv[node.id]
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)) \
                and isinstance(node.left, ast.Name) and node.left.id in lv \
                and isinstance(node.right, ast.Constant) and isinstance(node.right.value, int):
            L, off = lv[node.left.id]
            k = node.right.value
            return L, off + (k if isinstance(node.op, ast.Add) else -k)
        return None

    def restores_weights(self, loop: ast.For | ast.AsyncFor, st) -> bool:
        """A loop over a model's parameters whose one statement copies saved weights into each: the
        model's weights put back, done at the loop (a loop the audit could also enter zero times
        would otherwise keep the weights it had before)."""
        it, body = loop.iter, loop.body
        if not (isinstance(it, ast.Call) and isinstance(it.func, ast.Attribute) and not it.args
                and it.func.attr in ("parameters", "named_parameters") and len(body) == 1 and not loop.orelse):
            return False
        stmt = body[0]
        guard = stmt.test if isinstance(stmt, ast.If) and len(stmt.body) == 1 and not stmt.orelse else None
        if guard is not None:  # ``if n in saved: p.copy_(saved[n])``
            stmt = stmt.body[0]
        call = stmt.value if isinstance(stmt, ast.Expr) else None
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "copy_"
                and len(call.args) == 1):
            return False
        model = self.ev(it.func.value, st)
        if not model.models:
            return False
        inner = st.copy()
        self.assign(loop.target, replace(model.data(), snap=None), inner, None)
        saved = self.saved_weights(call.args[0], inner)
        if saved is None:
            return False
        if guard is not None:
            self.ev(guard, inner)
        self.judge.load_weights(st.led, saved, model.models)
        return True

    def sets_requires_grad(self, loop: ast.For | ast.AsyncFor, st) -> bool:
        """``for p in m.parameters(): p.requires_grad_(flag)`` (or ``p.requires_grad = flag``) with no
        other statement: every parameter of the model frozen or unfrozen, done at the loop. A model has
        parameters, so the loop's zero-iteration path the audit would join in does not exist."""
        it, body = loop.iter, loop.body
        if not (isinstance(it, ast.Call) and isinstance(it.func, ast.Attribute) and not it.args
                and it.func.attr == "parameters" and len(body) == 1 and not loop.orelse
                and isinstance(loop.target, ast.Name)):
            return False
        stmt, name = body[0], loop.target.id
        flag = None
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
            call = stmt.value
            if isinstance(call.func, ast.Attribute) and call.func.attr == "requires_grad_" \
                    and isinstance(call.func.value, ast.Name) and call.func.value.id == name and not call.keywords:
                flag = call.args[0] if call.args else ast.Constant(True)
        elif isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            t = stmt.targets[0]
            if isinstance(t, ast.Attribute) and t.attr == "requires_grad" and isinstance(t.value, ast.Name) \
                    and t.value.id == name:
                flag = stmt.value
        if flag is None or len(getattr(stmt.value, "args", ())) > 1:
            return False
        model = self.ev(it.func.value, st)
        if not model.models:
            return False
        self.set_requires_grad(model, self.ev(flag, st), st)
        return True

    def set_requires_grad(self, params: V, flag: V, st) -> None:
        """``p.requires_grad_(flag)`` / ``p.requires_grad = flag`` on parameters of known models. A flag
        that is not a known constant counts as True: the models are never taken as frozen on a guess."""
        trainable = flag.const if flag.known() and isinstance(flag.const, bool) else True
        self.judge.set_trainable(st.led, params.models, trainable)

    def saved_weights(self, src: ast.expr, st) -> frozenset | None:
        """The updates of the stored weights ``src`` holds (a name or an entry of a container holding a
        snapshot, not a value computed now), or None: copying them into a parameter puts those weights
        back rather than training."""
        if not isinstance(src, (ast.Name, ast.Subscript)):
            return None
        v = self.ev(src, st)
        return v.snap if v.snap is not None and not (v.val or v.out or v.pend) else None
