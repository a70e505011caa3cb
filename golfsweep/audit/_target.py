"""The scored distribution must not depend on the token being scored.

A score is ``-log p(y_t | x_<t)``: the target ``y_t`` may pick the entry of the distribution, never
shape it. A function that writes into something at the target's index (``mask.scatter_(-1, y, …)``,
``F.one_hot(y)``, ``m[..., y] = …``) and then feeds what it wrote into the logits of a
``cross_entropy``/``nll_loss`` whose target is ``y`` treats the true token unlike every other: the
probabilities no longer form one distribution fixed before the token is seen.

The check reads each function on its own, in source order: only what is written before the loss
line counts, so a cache updated with the target after scoring it (for later tokens) is not a leak.
Values are followed through names (assignments and in-place writes); through calls it is the
interpreter's business, not this one's.
"""

from __future__ import annotations

import ast

from golfsweep.audit._decode import SOURCE_ATTR
from golfsweep.audit._report import Finding, Rule, Severity

__all__ = ["target_leaks"]

_LOSSES = frozenset({"cross_entropy", "nll_loss"})
# Writes whose index argument picks vocabulary entries (or positions) to change.
_INDEXED_WRITES = frozenset({"scatter", "scatter_", "scatter_add", "scatter_add_", "scatter_reduce",
                             "scatter_reduce_", "index_fill", "index_fill_", "index_put", "index_put_",
                             "index_add", "index_add_", "index_copy", "index_copy_"})


def _names(node: ast.AST | None) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} if node is not None else set()


def _data(node: ast.AST | None) -> set[str]:
    """Names whose values ``node`` computes from: not the positions a subscript reads
    (``y[i, :n]`` is ``y``'s data, not ``i``'s)."""
    if node is None:
        return set()
    if isinstance(node, ast.Subscript):
        return _data(node.value)
    if isinstance(node, ast.Name):
        return {node.id}
    out: set[str] = set()
    for child in ast.iter_child_nodes(node):
        out |= _data(child)
    return out


def _call_name(call: ast.Call) -> str | None:
    f = call.func
    return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None


def _loss_args(call: ast.Call) -> tuple[ast.expr, ast.expr] | None:
    if _call_name(call) not in _LOSSES:
        return None
    kw = {k.arg: k.value for k in call.keywords if k.arg}
    scores = call.args[0] if call.args else kw.get("input")
    target = call.args[1] if len(call.args) > 1 else kw.get("target")
    return (scores, target) if scores is not None and target is not None else None


def _assigned(stmt: ast.stmt) -> set[str]:
    targets: list[ast.expr] = []
    if isinstance(stmt, ast.Assign):
        targets = stmt.targets
    elif isinstance(stmt, (ast.AugAssign, ast.AnnAssign)):
        targets = [stmt.target]
    out: set[str] = set()
    for t in targets:
        out |= _data(t)
    return out


def _indexed_by(expr: ast.AST, derived: set[str]) -> bool:
    """Whether ``expr`` writes at indices computed from ``derived`` (or one-hot encodes them)."""
    for call in (n for n in ast.walk(expr) if isinstance(n, ast.Call)):
        name = _call_name(call)
        args = list(call.args) + [k.value for k in call.keywords]
        if name in _INDEXED_WRITES and any(_names(a) & derived for a in args):
            return True
        if name == "one_hot" and call.args and _names(call.args[0]) & derived:
            return True
    return False


def _leak(body: list[ast.stmt], loss: ast.Call, scores: ast.expr, target: ast.expr,
          modules: set[str]) -> int | None:
    """The line where something fed into ``scores`` was written at the target's index, or None."""
    before = sorted((s for s in _statements(body) if s.lineno < loss.lineno), key=lambda s: s.lineno)
    derived = _data(target) - modules  # the target and what is computed from it
    shaped: dict[str, int] = {}  # names holding a write at the target's index -> its line
    for _ in range(4):  # a few rounds reach a fixed point for chains written out of order in loops
        for s in before:
            value = s.value if isinstance(s, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Expr)) else None
            if value is None:
                continue
            used = _data(value) - modules
            names = _assigned(s)
            if used & derived:
                derived |= names
            if isinstance(s, ast.Assign):
                for t in s.targets:  # ``m[..., y] = v``
                    if isinstance(t, ast.Subscript) and _names(t.slice) & derived:
                        shaped.update({n: s.lineno for n in _names(t.value) if n not in shaped})
            if _indexed_by(value, derived):
                receivers = names or ({value.func.value.id} if isinstance(value, ast.Call)
                                      and isinstance(value.func, ast.Attribute)
                                      and isinstance(value.func.value, ast.Name) else set())
                shaped.update({n: s.lineno for n in receivers if n not in shaped})
            elif used & shaped.keys():
                line = min(shaped[n] for n in used & shaped.keys())
                shaped.update({n: line for n in names if n not in shaped})
    hit = _data(scores) & shaped.keys()
    return min(shaped[n] for n in hit) if hit else None


_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)


def _statements(body: list[ast.stmt]):
    """Every statement of a function body, nested blocks included, nested functions excluded."""
    for s in body:
        yield s
        if isinstance(s, _SCOPES):
            continue
        for field in ("body", "orelse", "finalbody"):
            yield from _statements(getattr(s, field, None) or [])
        for h in getattr(s, "handlers", None) or []:
            yield from _statements(h.body)


def _own_nodes(body: list[ast.stmt]):
    """Every node of a function body once, the bodies of functions, classes and lambdas in it excluded."""
    stack: list[ast.AST] = list(body)
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, _SCOPES):
            stack.extend(ast.iter_child_nodes(node))


def _scores(body: list[ast.stmt]) -> bool:
    """Whether a function computes a score: a loss, or a (log-)softmax to read probabilities from."""
    return any(isinstance(c, ast.Call) and (_call_name(c) in _LOSSES or _call_name(c) in ("log_softmax", "softmax"))
               for c in _own_nodes(body))


def _masked(value: ast.expr) -> ast.expr | None:
    """``(h) & mask`` / ``(h) % buckets`` (through ``.astype(...)`` and the like): the hash ``h``."""
    while isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute):
        value = value.func.value
    if isinstance(value, ast.BinOp) and isinstance(value.op, (ast.BitAnd, ast.Mod)):
        return value.left
    return None


def _enumerates(node: ast.expr, defs: dict[str, ast.expr], depth: int = 0) -> bool:
    """Whether ``node`` walks the vocabulary (``arange``/``range``): every candidate token, not one."""
    if any(isinstance(c, ast.Call) and _call_name(c) in ("arange", "range") for c in ast.walk(node)):
        return True
    return depth < 4 and any(n in defs and _enumerates(defs[n], defs, depth + 1) for n in _data(node))


def _hashed_lookups(body: list[ast.stmt], modules: set[str]) -> list[tuple[int, ast.Subscript]]:
    """Reads of a count table at ``(h ^ t * p) & mask`` beside one at ``h & mask``, in a function that
    scores: the count of (context, t) over the count of the context is a probability for the single
    token ``t`` at each position, with no distribution over the vocabulary behind it (buckets collide,
    so the values for all possible tokens sum to more than 1). Counting updates write; they are not reads.
    Returns (line of the hashed key, the read)."""
    if not _scores(body):
        return []
    assigns = [s for s in _statements(body) if isinstance(s, ast.Assign) and len(s.targets) == 1
               and isinstance(s.targets[0], ast.Name)]
    defs = {s.targets[0].id: s.value for s in assigns}
    contexts = {ast.dump(h) for s in assigns if (h := _masked(s.value)) is not None
                and not (isinstance(h, ast.BinOp) and isinstance(h.op, ast.BitXor))}
    keys: dict[str, int] = {}
    for s in assigns:
        h = _masked(s.value)
        while isinstance(h, ast.Call) and isinstance(h.func, ast.Attribute):
            h = h.func.value
        if isinstance(h, ast.BinOp) and isinstance(h.op, ast.BitXor) and ast.dump(h.left) in contexts \
                and not _enumerates(h.right, defs):
            keys[s.targets[0].id] = s.lineno
    return sorted(((min(keys[n] for n in _data(sub.slice) & keys.keys()), sub) for sub in _own_nodes(body)
                   if isinstance(sub, ast.Subscript) and isinstance(sub.ctx, ast.Load) and _data(sub.slice) & keys.keys()),
                  key=lambda hit: hit[1].lineno)


def target_leaks(tree: ast.Module, reached: set[int] | None = None, followed: set[int] | None = None) -> list[Finding]:
    """Findings for every function of ``tree``. ``followed``: ids of the functions the interpreter ran
    (from anywhere), ``reached``: those the script's default configuration runs. A finding in a function
    followed but not reached is a warning that says so; one the interpreter never runs (a model's own
    method, called as a whole) keeps its severity."""
    findings: list[Finding] = []
    modules = {(a.asname or a.name).split(".")[0] for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
               for a in n.names}  # ``torch.cat``, ``F.one_hot``: modules, not data
    scopes = [(None, tree.body)] + [(n, n.body) for n in ast.walk(tree)
                                    if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    for fn, body in scopes:
        severity, off = Severity.VIOLATION, ""
        if fn is not None and reached is not None and followed is not None and id(fn) in followed - reached:
            severity, off = Severity.WARNING, " (in code the script's default configuration does not run)"
        for call in sorted((n for n in _own_nodes(body) if isinstance(n, ast.Call)), key=lambda c: c.lineno):
            args = _loss_args(call)
            line = _leak(body, call, *args, modules) if args is not None else None
            if line is not None:
                findings.append(Finding(
                    Rule.TARGET_LEAK, call.lineno, getattr(call, "end_lineno", None),
                    f"the distribution scored here was changed at the target token's own index at line {line}:"
                    f" a token's probability may depend only on the artifact and the tokens before it{off}",
                    severity, getattr(call, SOURCE_ATTR, None), (line,)))
        if fn is not None:
            for line, sub in _hashed_lookups(body, modules)[:1]:
                findings.append(Finding(
                    Rule.TARGET_LEAK, sub.lineno, getattr(sub, "end_lineno", None),
                    f"a table is read here at a key that hashes in the target token (line {line}): colliding "
                    f"buckets make the values read for every possible next token sum to more than 1, so the score "
                    f"is not a probability from one distribution{off}", severity,
                    getattr(sub, SOURCE_ATTR, None), (line,)))
    return findings
