"""Modules beside the script that it imports: their code is read as part of the script.

``import helpers`` or ``from ttt import run_ttt`` with ``helpers.py`` / ``ttt.py`` in the script's
folder runs that file (Python puts the script's folder first on ``sys.path``), so the audit reads it
in place of the import, as it reads ``exec(open(<sibling>).read())``. A module's code is spliced
once, at its first import, without its ``if __name__ == "__main__":`` block. Its names are bound as
Python binds them: ``from M import a as b`` assigns ``b``; ``import M as m`` turns ``m.a`` into the
module's ``a``. A module-level name the importer also binds (a function, a class, a variable) is
renamed inside the module (``ttt__main``) wherever it means the module's own binding, so each file
keeps its meaning.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

from golfsweep.audit._state import dotted

__all__ = ["SiblingImports", "top_names"]


def top_names(body: list[ast.stmt]) -> tuple[set[str], set[str]]:
    """Functions and classes, and variables, bound at the top level of ``body``."""
    defs: set[str] = set()
    variables: set[str] = set()
    for stmt in body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defs.add(stmt.name)
        elif isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            for t in targets:
                variables.update(n.id for n in ast.walk(t) if isinstance(n, ast.Name))
    return defs, variables


def _is_main_guard(stmt: ast.stmt) -> bool:
    t = stmt.test if isinstance(stmt, ast.If) else None
    return isinstance(t, ast.Compare) and isinstance(t.left, ast.Name) and t.left.id == "__name__"


def _local_names(fn: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> set[str]:
    """Names a function binds for itself (parameters, assignments, loop targets, imports, nested
    definitions), less those it declares ``global``: there a module name is shadowed."""
    a = fn.args
    names = {x.arg for x in a.posonlyargs + a.args + a.kwonlyargs} | {x.arg for x in (a.vararg, a.kwarg) if x}
    declared: set[str] = set()
    todo = list(fn.body) if isinstance(fn.body, list) else [fn.body]
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
            continue  # its own scope
        if isinstance(node, ast.Lambda):
            continue
        if isinstance(node, (ast.Global, ast.Nonlocal)):
            declared.update(node.names)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((x.asname or x.name).split(".")[0] for x in node.names)
        todo.extend(ast.iter_child_nodes(node))
    return names - declared


class _Rename(ast.NodeTransformer):
    """Rename module-level names of a module (``names``: old -> new), where they refer to the
    module's own binding: not inside a function that binds the same name for itself."""

    def __init__(self, names: dict[str, str]) -> None:
        self.names = names
        self.shadowed: list[set[str]] = []

    def _renames(self, name: str) -> bool:
        return name in self.names and not any(name in s for s in self.shadowed)

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if self._renames(node.id):
            return ast.copy_location(ast.Name(id=self.names[node.id], ctx=node.ctx), node)
        return node

    def visit_Global(self, node: ast.Global) -> ast.AST:
        node.names = [self.names[n] if self._renames(n) else n for n in node.names]
        return node

    def _function(self, node):
        if not self.shadowed and node.name in self.names:  # a module-level def or class
            node.name = self.names[node.name]
        for field in ("decorator_list", "returns"):
            value = getattr(node, field, None)
            if isinstance(value, list):
                setattr(node, field, [self.visit(v) for v in value])
            elif value is not None:
                setattr(node, field, self.visit(value))
        if isinstance(node, ast.ClassDef):
            node.bases = [self.visit(b) for b in node.bases]
            node.body = [self.visit(b) for b in node.body]
            return node
        node.args = self.visit(node.args)  # defaults are evaluated in the enclosing scope
        self.shadowed.append(_local_names(node))
        node.body = [self.visit(b) for b in node.body]
        self.shadowed.pop()
        return node

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _function

    def visit_Lambda(self, node: ast.Lambda) -> ast.AST:
        node.args = self.visit(node.args)
        self.shadowed.append(_local_names(node))
        node.body = self.visit(node.body)
        self.shadowed.pop()
        return node


class _BindAttributes(ast.NodeTransformer):
    """``m.a`` where ``m`` is an imported sibling module: the module's ``a`` as the script names it."""

    def __init__(self, aliases: dict[str, dict[str, str]]) -> None:
        self.aliases = aliases

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        names = self.aliases.get(dotted(node.value) or "", {})  # ``m.a``, or ``pkg.mod.a`` after ``import pkg.mod``
        if node.attr in names:
            return ast.copy_location(ast.Name(id=names[node.attr], ctx=node.ctx), node)
        self.generic_visit(node)
        return node


class SiblingImports:
    """The sibling-module imports of one file being expanded. ``read(stmt)`` returns what replaces
    an import statement (None: leave it); ``bind(tree)`` rewrites ``module.name`` afterwards."""

    def __init__(self, script: Path | None, label: str | None, taken: set[str],
                 load: Callable[[Path, str], ast.Module | None], loaded: dict[Path, dict[str, str]],
                 folder: Path | None = None) -> None:
        self.script = script
        # where imports resolve: the audited script's folder (first on sys.path), for its modules too
        self.folder = (folder or (script.parent if script else Path("."))).resolve()
        self.label = label
        self.taken = taken  # top-level names of the importer: a module's defs are renamed around them
        self.load = load  # (file, label) -> its expanded tree, or None (a note says why)
        self.loaded = loaded  # shared with nested expansions: file -> {module name: name in the script}
        self.aliases: dict[str, dict[str, str]] = {}

    def resolve(self, dotted: str, level: int = 0) -> Path | None:
        """The file ``import dotted`` reads (``level`` dots before it: relative to this module's
        package, for a module of a package beside the script), or None when it is not beside it."""
        if self.script is None:
            return None
        root = self.folder
        if level:
            root = self.script.resolve().parents[level - 1]
            if root == self.folder or not root.is_relative_to(self.folder):
                return None  # the script itself, or above its folder: not a package golfsweep can see
        base = root.joinpath(*dotted.split("."))
        for path in (base.with_suffix(".py"), base / "__init__.py"):  # a module, else a package
            if path.is_file() and path.resolve().is_relative_to(self.folder) \
                    and path.resolve() != self.script.resolve():
                return path
        return None

    def read(self, stmt: ast.stmt) -> list[ast.stmt] | None:
        if isinstance(stmt, ast.ImportFrom) and stmt.module:
            path = self.resolve(stmt.module, stmt.level)
            if path is None:
                return None
            spliced, names = self._module(path, stmt)
            if names is None:
                return None
            wanted = [(k, k) for k in names if not k.startswith("_")] if any(a.name == "*" for a in stmt.names) \
                else [(a.name, a.asname or a.name) for a in stmt.names]
            binds = [ast.Assign(targets=[ast.Name(id=bound, ctx=ast.Store())], value=ast.Name(id=names[src], ctx=ast.Load()))
                     for src, bound in wanted if src in names and names[src] != bound]
            return self._located(spliced + binds, stmt)
        if not isinstance(stmt, ast.Import):
            return None
        out: list[ast.stmt] = []
        rest: list[ast.alias] = []
        for alias in stmt.names:
            path = self.resolve(alias.name)
            spliced, names = self._module(path, stmt) if path is not None else ([], None)
            if names is None:
                rest.append(alias)
                continue
            out += spliced
            self.aliases[alias.asname or alias.name] = names
        if len(rest) == len(stmt.names):
            return None
        if rest:
            out.insert(0, ast.Import(names=rest))
        return self._located(out, stmt)

    def _module(self, path: Path, stmt: ast.stmt) -> tuple[list[ast.stmt], dict[str, str] | None]:
        if path in self.loaded:  # imported before: Python runs a module once
            return [], self.loaded[path]
        where = self.label or (self.script.name if self.script else "the script")
        shown = path.relative_to(self.folder).as_posix()
        tree = self.load(path, f"{shown} (imported by {where} line {stmt.lineno})")
        if tree is None:
            return [], None
        body = [s for s in tree.body if not _is_main_guard(s)]
        defs, variables = top_names(body)
        parts = path.relative_to(self.folder).with_suffix("").parts
        prefix = "_".join(parts[:-1] if parts[-1] == "__init__" else parts)
        renamed = {n: f"{prefix}__{n}" for n in (defs | variables) & self.taken}
        if renamed:  # the module keeps its own meaning of a name the importer also binds
            rename = _Rename(renamed)
            body = [rename.visit(s) for s in body]
        names = {n: renamed.get(n, n) for n in defs | variables}
        self.loaded[path] = names
        return body, names

    @staticmethod
    def _located(stmts: list[ast.stmt], at: ast.stmt) -> list[ast.stmt]:
        for s in stmts:
            if not hasattr(s, "lineno"):
                ast.copy_location(s, at)
                ast.fix_missing_locations(s)
        return stmts

    def bind(self, tree: ast.Module) -> None:
        if self.aliases:
            _BindAttributes(self.aliases).visit(tree)
