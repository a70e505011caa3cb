"""The interpreter: a small abstract interpreter over the script's AST that emits events.

It starts at the module body (normally ending in ``if __name__ == "__main__": main()``) and follows
calls into the script's own functions and methods, tracking for every value whether it derives from
validation tokens, from training data, or from something it cannot see (:mod:`._values`). What the
script does with them goes to the :class:`~._rules.Judge` as events; this module knows Python, not
the challenge's rules.

What runs is followed, not guessed: configuration read from the environment with a default
(``int(os.environ.get("TTT_ENABLED", "0"))``, also through helpers and config classes) is a constant,
so ``if`` statements on it take one arm. The arm a switch turns off is still read once, on a
throw-away copy of the state, so access rules can be checked there and protocol problems named as
warnings; its effects never reach the code after it. Branches on anything unknown (rank, CUDA) run
both arms and join. Loop bodies run twice; at the back edge "current chunk" becomes "earlier chunk".
Statements are here; expressions, calls and assignments are the mixins in :mod:`._exprs`,
:mod:`._calls` and :mod:`._assign`.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import replace

from golfsweep.audit import _vocab as vocab
from golfsweep.audit._assign import AssignMixin
from golfsweep.audit._calls import CallMixin
from golfsweep.audit._decode import SOURCE_ATTR
from golfsweep.audit._exprs import ExprMixin
from golfsweep.audit._rules import Judge, Where
from golfsweep.audit._state import ClassTable, Frame, LoopCtx, State, fact_key, join_states
from golfsweep.audit._values import CLEAN, CUR, EMPTY, V, drop, join, shift, vmap

__all__ = ["Interp"]


class OverBudget(Exception):
    pass


class Interp(ExprMixin, CallMixin, AssignMixin, ClassTable):
    MAX_DEPTH = 30
    MAX_SWITCHES = 3  # switched-off arms explored inside each other
    MAX_SPLITS = 2  # paths split on correlated unknown conditions, inside each other
    BUDGET = 500_000  # statements and expressions visited; a 3,000-line record needs about 100k

    def __init__(self, tree: ast.Module, unknown_modules: set[str], env: Mapping[str, str],
                 script_name: str | None) -> None:
        self.tree = tree
        self.unknown_modules = unknown_modules
        self.pinned = dict(env)
        self.script_name = script_name
        self.judge = Judge()
        self.module = Frame("<module>", tree, None, None, None, False)
        self.stack: list[Frame] = [self.module]
        self.active: list[int] = []
        self.loop_ids: dict[int, int] = {}
        self.loop_pass: dict[int, int] = {}
        self.attrs: dict[tuple[str | None, str], V] = {}
        self.unknown: list[str] = []
        self.notes: list[str] = []
        self.visited: set[int] = set()
        self.reached: set[int] = set()  # functions run under no switched-off condition, from the entry point
        self.reported_modules: set[str] = set()
        self.conditions: list[str] = []
        self.splits = 0
        self._correlated: dict[tuple[int, int], set[str]] = {}
        self.switches: dict[str, set[str]] = {}  # env key -> conditions it decided
        self.steps = 0
        self.root_mode = False
        self.saw_val = False
        self.inert: dict[tuple, V] = {}
        self._induction: dict[int, set[str]] = {}
        self.star_modules = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and not n.level
                             and n.module and any(a.name == "*" for a in n.names)]
        self.scalar_attrs = vocab.scalar_fields(tree)  # class fields typed as numbers: settings, not data
        self.collect_classes()

    @property
    def frame(self) -> Frame:
        return self.stack[-1]

    # -- reporting -------------------------------------------------------------------------------

    def where(self, node: ast.AST) -> Where:
        calls = [f"{f.name}() at line {f.call_line}" + (f" of {f.call_source}" if f.call_source else "")
                 for f in self.stack[1:] if f.call_line is not None]
        via = ""
        if calls:
            via = " [call path: " + " -> ".join(["..."] + calls[-3:] if len(calls) > 3 else calls) + "]"
        anchor = self.stack[2].call_line if len(self.stack) > 2 and self.stack[2].call_line else node.lineno
        return Where(node.lineno, getattr(node, "end_lineno", None), getattr(node, SOURCE_ATTR, None), via,
                     anchor, " and ".join(self.conditions) or None, self.root_mode)

    def note_unknown(self, reason: str) -> None:
        self.judge.events += 1
        if self.conditions:
            reason += f" (only when {' and '.join(self.conditions)})"
            target = self.notes
        else:
            target = self.notes if self.root_mode else self.unknown
        if reason not in target:
            target.append(reason)

    def first_pass(self, loop: int) -> bool:
        return self.loop_pass.get(loop) == 0

    # -- running ---------------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self.exec_block(self.tree.body, State({}))
            self.root_mode = bool(self.visited)
            self._run_unreached()
        except OverBudget:
            self.unknown.append("the script is too large or too deeply nested for the audit's analysis budget")
        except RecursionError:
            self.unknown.append("the script is too deeply nested for the audit to analyse")

    def _run_unreached(self) -> None:
        roots: list[tuple[ast.AST, str | None]] = []
        for top in self.tree.body:
            if isinstance(top, (ast.FunctionDef, ast.AsyncFunctionDef)):
                roots.append((top, None))
        for c in self.classes.values():
            for fn in c.methods.values():
                if not c.is_module or self.has_update(fn):
                    roots.append((fn, c.name))
        for fn, owner in roots:
            if id(fn) in self.visited:
                continue
            args = [V(inst=frozenset({owner}))] if owner else []
            self.stack = [self.module]
            self.inline(self.funcref(fn, owner, None), fn, args, {}, State({}), explicit_self=bool(owner))

    def tick(self) -> None:
        self.steps += 1
        if self.steps > self.BUDGET:
            raise OverBudget

    def exec_block(self, stmts: list[ast.stmt], st: State | None) -> State | None:
        for i, s in enumerate(stmts):
            if st is None:
                return None
            if isinstance(s, ast.If) and self.splits < self.MAX_SPLITS:
                fact = fact_key(s.test)
                if fact is not None and fact[0] not in st.facts and self._tested_again(fact[0], stmts, i) \
                        and any(self.has_update(b) for b in s.body + s.orelse):
                    taken, _ = self.decide(s.test, st)
                    if taken is None:
                        return self._split(s, fact, stmts[i + 1:], st)
            st = self.exec_stmt(s, st)
        return st

    def _tested_again(self, key: str, stmts: list[ast.stmt], i: int) -> bool:
        """Whether the rest of the block tests the same condition again (cached per block)."""
        cache_key = (id(stmts), i)
        if cache_key not in self._correlated:
            later = {fact_key(n.test)[0] for s in stmts[i + 1:] for n in ast.walk(s)
                     if isinstance(n, (ast.If, ast.IfExp, ast.While)) and fact_key(n.test) is not None}
            self._correlated[cache_key] = later
        return key in self._correlated[cache_key]

    def _split(self, s: ast.If, fact: tuple[str, bool], rest: list[ast.stmt], st: State) -> State | None:
        """An unknown condition the block tests again, with an arm that may train the model: run the
        rest once per arm, so each path sees only its own arm's effects, then join."""
        key, polarity = fact
        outs = []
        self.splits += 1
        try:
            for truth, arm in ((True, s.body), (False, s.orelse)):
                path = st.copy()
                path.facts[key] = truth == polarity
                end = self.exec_block(arm, path)
                outs.append(self.exec_block(rest, end) if end is not None else None)
        finally:
            self.splits -= 1
        return join_states(outs)

    def exec_stmt(self, s: ast.stmt, st: State) -> State | None:
        self.tick()
        fr = self.frame
        fr.state = st
        if isinstance(s, ast.Expr):
            self.ev(s.value, st)
        elif isinstance(s, ast.Assign):
            self._exec_assign(s.targets, s.value, st)
        elif isinstance(s, ast.AnnAssign):
            if s.value is not None:
                self._exec_assign([s.target], s.value, st)
        elif isinstance(s, ast.AugAssign):
            cur = self.ev(s.target, st)
            v = self.ev(s.value, st)
            self.judge.confirm(st.led, v.pend)
            self.assign(s.target, self.binop(s.op, cur, v), st, None)
        elif isinstance(s, ast.Return):
            fr.returns.append(self.ev(s.value, st) if s.value is not None else CLEAN)
            fr.return_states.append(st)
            return None
        elif isinstance(s, ast.If):
            return self.exec_branch(s.test, s.body, s.orelse, st)
        elif isinstance(s, (ast.For, ast.AsyncFor, ast.While)):
            return self.exec_loop(s, st)
        elif isinstance(s, (ast.With, ast.AsyncWith)):
            return self.exec_with(s, st)
        elif isinstance(s, ast.Try) or type(s).__name__ == "TryStar":
            return self.exec_try(s, st)
        elif isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef)):
            closure = None if fr is self.module else fr
            st.env[s.name] = V(funcs=frozenset({self.funcref(s, None, closure)}))
        elif isinstance(s, ast.ClassDef):
            self.exec_classdef(s, st)
        elif isinstance(s, ast.Import):
            for a in s.names:
                name = a.asname or a.name.split(".")[0]
                st.env[name] = V(lib=a.name if a.asname else name)
        elif isinstance(s, ast.ImportFrom):
            mod = ("." * s.level) + (s.module or "")
            for a in s.names:
                if a.name != "*":
                    st.env[a.asname or a.name] = V(lib=f"{mod}.{a.name}")
        elif isinstance(s, (ast.Break, ast.Continue)):
            if fr.loops:
                (fr.loops[-1].breaks if isinstance(s, ast.Break) else fr.loops[-1].continues).append(st)
            return None
        elif isinstance(s, ast.Raise):
            if s.exc is not None:
                self.ev(s.exc, st)
            return None
        elif isinstance(s, ast.Assert):
            return None if self.decide(s.test, st)[0] is False else st
        elif isinstance(s, ast.Delete):
            for t in s.targets:
                if isinstance(t, ast.Name):
                    st.env.pop(t.id, None)
        elif isinstance(s, ast.Match):
            self.ev(s.subject, st)
            return join_states([st] + [self.exec_block(c.body, st.copy()) for c in s.cases])
        return st

    # -- branches --------------------------------------------------------------------------------

    def decide(self, test: ast.expr, st: State) -> tuple[bool | None, V]:
        """The truth of a branch test when it is a known constant (else None), and the test's value."""
        v = self.ev(test, st)
        if not v.known():
            return None, v
        try:
            return bool(v.const), v
        except Exception:  # a constant whose truth is an error at run time
            return None, v

    def reads_score(self, test: ast.expr, st: State) -> bool:
        """Whether a branch test reads a validation score: a name bound to what a model or loss computed
        from validation tokens (``val_bpb < best``), not the tokens themselves."""
        names = {n.id for n in ast.walk(test) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
        return any((v := st.env.get(n)) is not None and v.out and not v.val for n in names)

    def exec_branch(self, test: ast.expr, body: list[ast.stmt], orelse: list[ast.stmt], st: State) -> State | None:
        taken, v = self.decide(test, st)
        fact = fact_key(test) if taken is None else None
        if fact is not None and fact[0] in st.facts:  # this path already decided the same test
            return self.exec_block(body if st.facts[fact[0]] == fact[1] else orelse, st)
        if taken is None:
            selecting = self.reads_score(test, st)
            if selecting:  # weights taken or put in place in either arm are chosen by that score
                self.judge.selecting.append(test.lineno)
            try:
                return join_states([self.exec_block(body, st.copy()), self.exec_block(orelse, st.copy())])
            finally:
                if selecting:
                    self.judge.selecting.pop()
        arm, other = (body, orelse) if taken else (orelse, body)
        keys = v.envkeys
        if other and keys:
            shown = ast.unparse(test)
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            self.explore(other, st, f"{', '.join(sorted(keys))} makes `{shown}` {'false' if taken else 'true'}",
                         keys)
        return self.exec_block(arm, st)

    def explore(self, block: list[ast.stmt], st: State, condition: str, keys: frozenset) -> None:
        """Read the arm a configuration switch turns off, on a copy; nothing it does flows on."""
        for k in keys:
            self.switches.setdefault(k, set()).add(condition)
        if len(self.conditions) >= self.MAX_SWITCHES:
            return
        fr = self.frame
        saved = (dict(self.attrs), len(fr.returns), len(fr.return_states), fr.state, dict(fr.loopvars),
                 [(len(c.breaks), len(c.continues)) for c in fr.loops])
        self.conditions.append(condition)
        first_tag = self.judge.tags
        try:
            self.exec_block(block, st.copy())
        finally:
            self.conditions.pop()
            # A forward pass there is a score or a training step depending on code after the arm,
            # which is not read on this path: its tentative scores are dropped, not guessed.
            for tag in [t for t in self.judge.pending if t > first_tag]:
                del self.judge.pending[tag]
            attrs, n_ret, n_ret_st, state, loopvars, ctx = saved
            self.attrs = attrs
            del fr.returns[n_ret:], fr.return_states[n_ret_st:]
            fr.state, fr.loopvars = state, loopvars
            for c, (nb, nc) in zip(fr.loops, ctx):
                del c.breaks[nb:], c.continues[nc:]

    # -- loops -----------------------------------------------------------------------------------

    def loop_id(self, node: ast.AST) -> int:
        return self.loop_ids.setdefault(id(node), len(self.loop_ids) + 1)

    def _induction_vars(self, node: ast.AST) -> set[str]:
        """Names advanced on every iteration (``pos += n``, ``i = i + 1``): they index the current chunk."""
        key = id(node)
        if key not in self._induction:
            names = set()
            for n in ast.walk(node):
                if isinstance(n, ast.AugAssign) and isinstance(n.target, ast.Name):
                    names.add(n.target.id)
                elif isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name):
                    if any(isinstance(x, ast.Name) and x.id == n.targets[0].id for x in ast.walk(n.value)):
                        names.add(n.targets[0].id)
            self._induction[key] = names
        return self._induction[key]

    def range_trips(self, it: ast.expr, st: State) -> int | None:
        """How many times ``for x in range(...)`` runs when its bounds are known constants (a setting
        at its default or pinned with ``--env``: ``range(args.ttt_epochs)``), else None."""
        if not (isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id == "range"
                and 1 <= len(it.args) <= 3 and not it.keywords
                and self.lookup("range", st).lib == "builtins.range"):
            return None
        bounds = [self.ev(a, st) for a in it.args]
        if not all(b.known() and isinstance(b.const, int) and not isinstance(b.const, bool) for b in bounds):
            return None
        try:
            return len(range(*(b.const for b in bounds)))
        except ValueError:  # a zero step: an error at run time
            return None

    def remap_all(self, st: State, f) -> None:
        st.remap(f)
        self.attrs = {k: vmap(v, f) for k, v in self.attrs.items()}

    def exec_loop(self, node: ast.For | ast.AsyncFor | ast.While, st: State) -> State | None:
        fr = self.frame
        L = self.loop_id(node)
        is_for = not isinstance(node, ast.While)
        if is_for and self.restores_weights(node, st):  # ``for n, p in m.named_parameters(): p.data.copy_(saved[n])``
            return st
        if is_for and self.sets_requires_grad(node, st):  # ``for p in m.parameters(): p.requires_grad_(False)``
            return st
        iters: list[V] = []
        call_name = None
        trips = self.range_trips(node.iter, st) if is_for else None
        if trips == 0:  # ``for epoch in range(0)``: the body never runs
            return self.exec_block(node.orelse, st)
        if is_for:
            it = node.iter
            if isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id in ("enumerate", "zip") \
                    and self.lookup(it.func.id, st).lib == f"builtins.{it.func.id}":
                call_name = it.func.id
                iters = [self.ev(a, st) for a in it.args]
                for k in it.keywords:
                    self.ev(k.value, st)
            else:
                iters = [self.ev(it, st)]
            for v in iters:
                if v.train and not v.text:
                    self.judge.read_train(st.led, self.where(node.iter), "iterates over training data")
        elif self.decide(node.test, st)[0] is False:
            return self.exec_block(node.orelse, st)
        induction = self._induction_vars(node)
        self.active.append(L)
        ctx = LoopCtx()
        fr.loops.append(ctx)
        entry = st
        cur = st.copy()
        ends: list[State] = []
        try:
            for pass_no in range(1 if trips == 1 else 2):  # one trip: no back edge, nothing before it
                self.loop_pass[L] = pass_no
                s = cur.copy()
                for name in induction:
                    v = s.env.get(name)
                    if v is not None and not (v.val or v.out):
                        s.env[name] = replace(v.data(), idx=frozenset(x for x in v.idx if x[0] != L) | {(L, CUR)})
                if is_for:
                    self.bind_loop_target(node.target, iters, call_name, L, s)
                else:
                    self.ev(node.test, s)
                end = join_states([self.exec_block(node.body, s)] + ctx.continues)
                ctx.continues = []
                if end is None:
                    break
                ends.append(end)
                back = end.copy()
                self.remap_all(back, shift(L))
                cur = join_states([entry, back])
        finally:
            fr.loops.pop()
            self.active.pop()
        out = join_states(([] if trips == 1 else [entry]) + ends + ctx.breaks)
        if node.orelse:
            out = self.exec_block(node.orelse, out) if out is not None else None
        if out is not None:
            self.remap_all(out, drop({L}))
        else:
            self.attrs = {k: vmap(v, drop({L})) for k, v in self.attrs.items()}
        for name in list(fr.loopvars):
            if fr.loopvars[name][0] == L:
                del fr.loopvars[name]
        return out

    def bind_loop_target(self, target: ast.expr, iters: list[V], call_name: str | None, L: int,
                         st: State) -> None:
        fr = self.frame
        index = V(idx=frozenset({(L, CUR)}))
        if call_name == "enumerate" and isinstance(target, (ast.Tuple, ast.List)) and len(target.elts) == 2:
            self.assign(target.elts[0], index, st, None)
            if isinstance(target.elts[0], ast.Name):
                fr.loopvars[target.elts[0].id] = (L, 0)
            self.assign(target.elts[1], self._elem(join(*iters), L), st, None)
            return
        if call_name == "zip" and isinstance(target, (ast.Tuple, ast.List)) and len(target.elts) == len(iters):
            for t, v in zip(target.elts, iters):
                self.assign(t, self._elem(v, L), st, None)
                if isinstance(t, ast.Name):
                    fr.loopvars[t.id] = (L, 0)
            return
        self.assign(target, self._elem(join(*iters), L), st, None)
        if isinstance(target, ast.Name):
            fr.loopvars[target.id] = (L, 0)

    @staticmethod
    def _elem(v: V, L: int) -> V:
        sel = (L, CUR)
        alts = frozenset(a | {sel} for a in v.alts) if (v.val or v.out) else EMPTY
        return replace(v.data(), alts=alts, idx=v.idx | {sel}, text=v.text, funcs=v.funcs, inst=v.inst)

    # -- with, try, class ------------------------------------------------------------------------

    def exec_with(self, s: ast.With | ast.AsyncWith, st: State) -> State | None:
        old = st.nograd
        for item in s.items:
            mode = self.grad_mode(item.context_expr, st)
            if mode is not None:
                st.nograd = mode
                continue
            v = self.ev(item.context_expr, st)
            if item.optional_vars is not None:
                self.assign(item.optional_vars, v, st, None)
        out = self.exec_block(s.body, st)
        if out is not None:
            out.nograd = old
        return out

    def exec_try(self, s: ast.AST, st: State) -> State | None:
        start = st.copy()
        body = self.exec_block(s.body, st)
        if s.orelse and body is not None:
            body = self.exec_block(s.orelse, body)
        outs = [body]
        for h in s.handlers:
            hs = join_states([start, body])
            if hs is not None and h.name:
                hs.env[h.name] = CLEAN
            outs.append(self.exec_block(h.body, hs))
        out = join_states(outs)
        if s.finalbody:
            if out is None:
                self.exec_block(s.finalbody, join_states([start, body]) or start)
                return None
            out = self.exec_block(s.finalbody, out)
        return out

    def exec_classdef(self, s: ast.ClassDef, st: State) -> None:
        name = s.name
        tmp = st.copy()
        for b in s.body:
            targets: list[ast.expr] = []
            if isinstance(b, ast.Assign):
                targets, value = b.targets, b.value
            elif isinstance(b, ast.AnnAssign) and b.value is not None:
                targets, value = [b.target], b.value
            else:
                continue
            v = self.ev(value, tmp)
            for t in targets:
                if isinstance(t, ast.Name):
                    tmp.env[t.id] = self.name_source(t.id, v)  # later class attributes may use it
                    self.store_attr(V(classes=frozenset({name})), t.id, v)
        st.env[name] = V(classes=frozenset({name}))
