"""The interpreter's state: abstract environments with their protocol ledger, call frames, and
what it knows of the script's classes."""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass

from golfsweep.audit._rules import Ledger
from golfsweep.audit._values import V, join, vmap

__all__ = ["ClassInfo", "ClassTable", "Frame", "LoopCtx", "State", "dotted", "fact_key", "join_states"]


def dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


class State:
    """Flow-sensitive facts at one program point of the current frame. ``facts`` are branch tests
    known on this path (``fact_key`` -> truth), so a later test of the same condition takes the arm
    this path took: ``if ttt: adapt()`` ... ``if not ttt: score()`` are never one sequence."""

    __slots__ = ("env", "led", "nograd", "facts")

    def __init__(self, env: dict, led: Ledger | None = None, nograd: bool = False,
                 facts: dict[str, bool] | None = None) -> None:
        self.env = env
        self.led = led if led is not None else Ledger()
        self.nograd = nograd
        self.facts = facts if facts is not None else {}

    def copy(self) -> State:
        return State(dict(self.env), self.led.copy(), self.nograd, dict(self.facts))

    def forget(self, name: str) -> None:
        """``name`` was assigned: tests that read it are no longer known."""
        if self.facts:
            self.facts = {k: v for k, v in self.facts.items() if name not in _FACT_NAMES.get(k, ())}

    def remap(self, f) -> None:
        self.env = {k: vmap(v, f) for k, v in self.env.items()}
        self.led.remap(f)


def join_states(states: Iterable[State | None]) -> State | None:
    live = [s for s in states if s is not None]
    if not live:
        return None
    out = live[0].copy()
    for s in live[1:]:
        for k, v in s.env.items():
            out.env[k] = join(out.env[k], v) if k in out.env else v
        out.led.merge(s.led)
        out.nograd = out.nograd or s.nograd
        out.facts = {k: v for k, v in out.facts.items() if s.facts.get(k) == v}
    return out


_FACT_NAMES: dict[str, frozenset] = {}  # fact key -> names and attributes it reads


def fact_key(test: ast.expr) -> tuple[str, bool] | None:
    """A branch test as ``(key, polarity)`` when it is a plain condition on names (``ttt``,
    ``not args.slot``, ``mode == "x"``); None for anything with calls or subscripts."""
    polarity = True
    while isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        test, polarity = test.operand, not polarity
    parts = [test] if not isinstance(test, ast.Compare) else [test.left, *test.comparators]
    if not all(isinstance(p, ast.Constant) or dotted(p) for p in parts):
        return None
    key = ast.unparse(test)
    if key not in _FACT_NAMES:
        names = set()
        for n in ast.walk(test):
            if isinstance(n, ast.Name):
                names.add(n.id)
            elif isinstance(n, ast.Attribute):
                names.add(n.attr)
        _FACT_NAMES[key] = frozenset(names)
    return key, polarity


class LoopCtx:
    __slots__ = ("breaks", "continues")

    def __init__(self) -> None:
        self.breaks: list[State] = []
        self.continues: list[State] = []


class Frame:
    def __init__(self, name: str, node: ast.AST | None, owner: str | None, closure: Frame | None,
                 call_line: int | None, calib: bool) -> None:
        self.name = name
        self.node = node
        self.owner = owner
        self.closure = closure
        self.call_line = call_line
        self.call_source: str | None = None  # label of spliced code the call is in (None: the script)
        self.calib = calib  # inside code that registers forward hooks: model calls gather statistics
        self.state: State | None = None
        self.returns: list[V] = []
        self.return_states: list[State] = []
        self.loops: list[LoopCtx] = []
        self.loopvars: dict[str, tuple[int, int]] = {}
        self.mutated: set[str] = set()


@dataclass
class ClassInfo:
    name: str
    node: ast.ClassDef
    bases: list[str]
    methods: dict[str, ast.AST]
    is_module: bool = False


class ClassTable:
    """What the interpreter knows of the script's own classes (a mixin: needs ``tree``, fills
    ``classes`` and ``methods``)."""

    def collect_classes(self) -> None:
        self.classes: dict[str, ClassInfo] = {}
        self.methods: dict[str, list[tuple[str, ast.AST]]] = {}
        self._has_update: dict[int, bool] = {}
        for node in ast.walk(self.tree):
            if isinstance(node, ast.ClassDef):
                methods = {b.name: b for b in node.body if isinstance(b, (ast.FunctionDef, ast.AsyncFunctionDef))}
                bases = [dotted(b) or "" for b in node.bases]
                self.classes[node.name] = ClassInfo(node.name, node, bases, methods)
                for m, fn in methods.items():
                    self.methods.setdefault(m, []).append((node.name, fn))
        for c in self.classes.values():
            c.is_module = self._is_module(c.name, set())

    def _is_module(self, name: str, seen: set[str]) -> bool:
        c = self.classes.get(name)
        if c is None or name in seen:
            return False
        seen.add(name)
        for b in c.bases:
            last = b.rsplit(".", 1)[-1]
            if last in ("Module", "ModuleList", "ModuleDict", "Sequential") or self._is_module(last, seen):
                return True
        return False

    def find_method(self, cls: str, name: str, seen: set[str] | None = None) -> tuple[str, ast.AST] | None:
        seen = seen or set()
        c = self.classes.get(cls)
        if c is None or cls in seen:
            return None
        seen.add(cls)
        if name in c.methods:
            return cls, c.methods[name]
        for b in c.bases:
            hit = self.find_method(b.rsplit(".", 1)[-1], name, seen)
            if hit:
                return hit
        return None

    def class_chain(self, cls: str) -> list[str]:
        """The class and its bases defined in the script, nearest first."""
        out: list[str] = []
        todo = [cls]
        while todo:
            c = todo.pop(0)
            if c in out:
                continue
            out.append(c)
            info = self.classes.get(c)
            if info is not None:
                todo.extend(b.rsplit(".", 1)[-1] for b in info.bases)
        return out

    def has_update(self, fn: ast.AST, seen: set[int] | None = None) -> bool:
        """Whether a function (or what it calls, by name) contains ``.backward()`` or ``autograd.grad``."""
        key = id(fn)
        if key in self._has_update:
            return self._has_update[key]
        seen = seen if seen is not None else set()
        if key in seen:
            return False
        seen.add(key)
        found = False
        for n in ast.walk(fn):
            if not isinstance(n, ast.Call):
                continue
            name = dotted(n.func) or ""
            if (isinstance(n.func, ast.Attribute) and n.func.attr == "backward") or name.endswith("autograd.grad"):
                found = True
                break
            callee = n.func.attr if isinstance(n.func, ast.Attribute) else name
            targets = [f for _, f in self.methods.get(callee, [])]
            targets += [top for top in self.tree.body
                        if isinstance(top, (ast.FunctionDef, ast.AsyncFunctionDef)) and top.name == callee]
            if any(self.has_update(t, seen) for t in targets if t is not fn):
                found = True
                break
        self._has_update[key] = found
        return found
