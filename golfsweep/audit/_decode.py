"""Read the code a wrapper script runs, without running anything but decoders on constants.

Records often ship ``exec(lzma.decompress(base64.b85decode("...")))`` or
``exec(open(<sibling file>).read())``. :func:`expand` finds such statements and splices the code
they run in their place, so the audit reads what actually executes. Only a fixed set of pure
decoders (lzma, zlib, gzip, bz2, base64/base85/hex, ``bytes.decode``) is ever called, on literal
arguments, with a cap on the decompressed size; files are read only from the script's own folder.
Every node of spliced code carries the label of where it came from, so findings can say so.
"""

from __future__ import annotations

import ast
import base64
import binascii
import bz2
import lzma
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

from golfsweep.audit._modules import SiblingImports, top_names

__all__ = ["SOURCE_ATTR", "Expansion", "expand"]

SOURCE_ATTR = "_golfsweep_source"  # set on every node of spliced code: the label of its source
MAX_DECODED = 64 * 1024 * 1024
MAX_DEPTH = 5


class _NotConstant(Exception):
    pass


@dataclass
class Expansion:
    tree: ast.Module
    sources: list[str]  # labels of spliced code, in the order found
    notes: list[str]  # what could not be read, and why


def _limited(decompressor, data: bytes) -> bytes:
    out = decompressor.decompress(data, MAX_DECODED + 1)
    if len(out) > MAX_DECODED:
        raise _NotConstant(f"decoded payload larger than {MAX_DECODED // 2**20} MiB")
    return out


def _lzma(data, format=lzma.FORMAT_AUTO, memlimit=None, filters=None):  # noqa: A002 - lzma's own names
    return _limited(lzma.LZMADecompressor(format=format, memlimit=memlimit, filters=filters), data)


def _zlib(data, wbits=zlib.MAX_WBITS, bufsize=0):
    return _limited(zlib.decompressobj(wbits), data)


def _gzip(data):
    return _limited(zlib.decompressobj(16 + zlib.MAX_WBITS), data)


def _bz2(data):
    return _limited(bz2.BZ2Decompressor(), data)


_DECODERS = {
    "lzma.decompress": (_lzma, "lzma"), "zlib.decompress": (_zlib, "zlib"), "gzip.decompress": (_gzip, "gzip"),
    "bz2.decompress": (_bz2, "bz2"),
    "base64.b85decode": (base64.b85decode, "base85"), "base64.a85decode": (base64.a85decode, "ascii85"),
    "base64.b64decode": (base64.b64decode, "base64"), "base64.standard_b64decode": (base64.b64decode, "base64"),
    "base64.urlsafe_b64decode": (base64.urlsafe_b64decode, "base64"), "base64.decodebytes": (base64.decodebytes, "base64"),
    "base64.b32decode": (base64.b32decode, "base32"), "base64.b16decode": (base64.b16decode, "hex"),
    "binascii.a2b_base64": (binascii.a2b_base64, "base64"), "binascii.unhexlify": (binascii.unhexlify, "hex"),
    "binascii.a2b_hex": (binascii.a2b_hex, "hex"), "bytes.fromhex": (bytes.fromhex, "hex"),
}
_CONSTANT_MODULES = {"lzma": lzma, "zlib": zlib}  # FORMAT_RAW, FILTER_LZMA2, MAX_WBITS ...


class _Evaluator:
    """Evaluates the argument of an ``exec``: literals, module-level names bound to literals,
    decoder calls, and path expressions built from ``__file__``."""

    def __init__(self, aliases: dict[str, str], names: dict[str, ast.expr], script: Path | None) -> None:
        self.aliases = aliases
        self.names = names
        self.script = script
        self.steps: list[str] = []

    def qual(self, node: ast.expr) -> str | None:
        if isinstance(node, ast.Name):
            return self.aliases.get(node.id, node.id if node.id in ("bytes", "open", "str") else None)
        if isinstance(node, ast.Attribute):
            base = self.qual(node.value)
            return f"{base}.{node.attr}" if base else None
        return None

    def ev(self, node: ast.expr, depth: int = 0):
        if depth > 50:
            raise _NotConstant("expression too deep")
        if isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes, int, type(None))):
            return node.value
        if isinstance(node, (ast.List, ast.Tuple)):
            return [self.ev(e, depth + 1) for e in node.elts]
        if isinstance(node, ast.Dict) and None not in node.keys:
            return {self.ev(k, depth + 1): self.ev(v, depth + 1) for k, v in zip(node.keys, node.values)}
        if isinstance(node, ast.Name):
            if node.id == "__file__" and self.script is not None:
                return str(self.script)
            if node.id in self.names:
                return self.ev(self.names[node.id], depth + 1)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return self.ev(node.left, depth + 1) + self.ev(node.right, depth + 1)
        if isinstance(node, ast.Attribute):
            q = self.qual(node)
            mod, _, attr = (q or "").partition(".")
            if mod in _CONSTANT_MODULES and attr.isupper() and hasattr(_CONSTANT_MODULES[mod], attr):
                return getattr(_CONSTANT_MODULES[mod], attr)
        if isinstance(node, ast.Call):
            return self.call(node, depth)
        raise _NotConstant(ast.unparse(node)[:80])

    def call(self, node: ast.Call, depth: int):
        q = self.qual(node.func)
        args = [self.ev(a, depth + 1) for a in node.args]
        kwargs = {k.arg: self.ev(k.value, depth + 1) for k in node.keywords if k.arg}
        if q in _DECODERS:
            fn, label = _DECODERS[q]
            self.steps.append(label)
            try:
                return fn(*args, **kwargs)
            except _NotConstant:
                raise
            except Exception as e:  # corrupt payload: say so rather than guess
                raise _NotConstant(f"`{q}` failed: {e}") from None
        path_ops = {"os.path.join": os.path.join, "os.path.dirname": os.path.dirname,
                    "os.path.abspath": os.path.abspath, "os.path.realpath": os.path.abspath,
                    "os.path.basename": os.path.basename}
        if q in path_ops and all(isinstance(a, str) for a in args):
            return path_ops[q](*args)
        if isinstance(node.func, ast.Attribute) and q is None:
            recv = self.ev(node.func.value, depth + 1)
            name = node.func.attr
            if isinstance(recv, bytes) and name == "decode":
                return recv.decode(*args, **kwargs)
            if isinstance(recv, str) and name in ("encode", "replace", "strip"):
                return getattr(recv, name)(*args, **kwargs)
        raise _NotConstant(ast.unparse(node)[:80])


def _run_target(call: ast.Call, ev: _Evaluator) -> tuple[str, ast.expr] | None:
    """``("code", expr)`` for ``exec(expr)``/``exec(compile(expr, ...))``; ``("file", expr)`` for
    ``exec(open(expr).read())``, ``exec(Path(expr).read_text())`` and ``runpy.run_path(expr)``."""
    q = ev.qual(call.func)
    if q == "runpy.run_path" and call.args:
        return "file", call.args[0]
    if not (isinstance(call.func, ast.Name) and call.func.id == "exec" and call.args):
        return None
    arg = call.args[0]
    if isinstance(arg, ast.Call) and isinstance(arg.func, ast.Name) and arg.func.id == "compile" and arg.args:
        arg = arg.args[0]
    if isinstance(arg, ast.Call) and isinstance(arg.func, ast.Attribute) and not arg.args:
        inner = arg.func.value
        if arg.func.attr == "read" and isinstance(inner, ast.Call) and ev.qual(inner.func) in ("open", "io.open") \
                and inner.args:
            return "file", inner.args[0]
        if arg.func.attr == "read_text" and isinstance(inner, ast.Call) \
                and (ev.qual(inner.func) or "").endswith("Path") and inner.args:
            return "file", inner.args[0]
    return "code", arg


def _statement_call(stmt: ast.stmt) -> ast.Call | None:
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
        return stmt.value
    return None


def _aliases(tree: ast.Module) -> dict[str, str]:
    out: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                out[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                out[a.asname or a.name] = f"{node.module}.{a.name}"
    return out


def _module_constants(tree: ast.Module) -> dict[str, ast.expr]:
    names: dict[str, ast.expr] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            names[stmt.targets[0].id] = stmt.value
    return names


def _tag(tree: ast.Module, label: str) -> None:
    """Label every node of ``tree`` not already labelled (code spliced deeper keeps its own label)."""
    for node in ast.walk(tree):
        if not hasattr(node, SOURCE_ATTR):
            setattr(node, SOURCE_ATTR, label)


def expand(tree: ast.Module, script: Path | None, parse, label: str | None = None, depth: int = 0,
           loaded: dict[Path, dict[str, str]] | None = None, folder: Path | None = None) -> Expansion:
    """Splice into ``tree`` the code its ``exec``/``runpy`` statements run and the sibling modules it
    imports (``_modules``), recursively.

    ``parse(text, filename)`` parses decoded text (any Python version); ``label`` is the label of
    ``tree`` itself (None for the audited file); ``loaded`` the sibling modules already read;
    ``folder`` where imports resolve (the audited script's folder, also for the files it runs).
    """
    ev = _Evaluator(_aliases(tree), _module_constants(tree), script)
    sources: list[str] = []
    notes: list[str] = []
    where = f"{label}, " if label else ""
    loaded = {} if loaded is None else loaded
    folder = folder or (script.parent if script is not None else None)

    def load(path: Path, sub_label: str) -> ast.Module | None:
        """A module file (already resolved inside ``folder``) read and expanded in turn."""
        try:
            text = path.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError) as e:
            notes.append(f"{where}{sub_label}: cannot be read ({e})")
            return None
        return read_in(text, path, sub_label, f"{where}{sub_label}: ")

    def read_in(text: str, sub_script: Path | None, sub_label: str, at: str) -> ast.Module | None:
        """``text`` parsed and expanded in turn, labelled ``sub_label``; None (and a note) when it cannot be."""
        if depth >= MAX_DEPTH:
            notes.append(f"{at}code nested more than {MAX_DEPTH} levels deep")
            return None
        try:
            sub_tree, _ = parse(text, sub_label)
        except Exception as e:  # not Python: the statement stays, and with it the audit's doubt
            notes.append(f"{at}the code it runs does not parse ({e})")
            return None
        inner = expand(sub_tree, sub_script, parse, sub_label, depth + 1, loaded, folder)
        _tag(inner.tree, sub_label)
        sources.append(sub_label)
        sources.extend(inner.sources)
        notes.extend(inner.notes)
        return inner.tree

    defs, variables = top_names(tree.body)
    imports = SiblingImports(script, label, defs | variables, load, loaded, folder)

    def rewrite(body: list[ast.stmt]) -> list[ast.stmt]:
        out: list[ast.stmt] = []
        for stmt in body:
            for field in ("body", "orelse", "finalbody"):
                block = getattr(stmt, field, None)
                if isinstance(block, list) and block and isinstance(block[0], ast.stmt):
                    setattr(stmt, field, rewrite(block))
            for handler in getattr(stmt, "handlers", []) or []:
                handler.body = rewrite(handler.body)
            if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                spliced = imports.read(stmt)
            else:
                call = _statement_call(stmt)
                target = _run_target(call, ev) if call is not None else None
                spliced = _splice(stmt, target) if target is not None else None
            out.extend(spliced if spliced is not None else [stmt])
        return out

    def _splice(stmt: ast.stmt, target: tuple[str, ast.expr]) -> list[ast.stmt] | None:
        kind, expr = target
        ev.steps = []
        try:
            value = ev.ev(expr)
        except _NotConstant as e:
            if kind == "file" or ev.steps:
                notes.append(f"{where}line {stmt.lineno}: cannot read the code it runs ({e})")
            return None
        if kind == "file":
            text, sub_script = _read_sibling(value, script, folder, stmt.lineno, where, notes)
            if text is None:
                return None
            name = sub_script.relative_to(folder.resolve()).as_posix()
            sub_label = f"{name} (run by {label or (script.name if script else 'the script')} line {stmt.lineno})"
        else:
            text = value.decode("utf-8") if isinstance(value, bytes) else value
            if not isinstance(text, str):
                return None
            steps = "+".join(reversed(ev.steps)) or "literal"
            sub_label = f"code decoded from {label or (script.name if script else 'the script')} line " \
                        f"{stmt.lineno} ({steps})"
            sub_script = script
        inner = read_in(text, sub_script, sub_label, f"{where}line {stmt.lineno}: ")
        return inner.body if inner is not None else None

    tree.body = rewrite(tree.body)
    imports.bind(tree)
    return Expansion(tree, sources, notes)


def _read_sibling(value, script: Path | None, folder: Path | None, line: int, where: str,
                  notes: list[str]) -> tuple[str | None, Path | None]:
    """The text of the file ``exec(open(value).read())`` runs, and its resolved path. A relative
    path is resolved as Python does, against the working directory: a run's is the script's folder
    (``folder``), also when the call is in a module of a package below it."""
    if not isinstance(value, str) or script is None or folder is None:
        notes.append(f"{where}line {line}: runs a file the audit cannot locate")
        return None, None
    path = Path(value)
    if not path.is_absolute():
        path = folder / path
    path = path.resolve()
    if not path.is_relative_to(folder.resolve()):
        notes.append(f"{where}line {line}: runs `{value}`, outside the script's folder; not read")
        return None, None
    try:
        return path.read_bytes().decode("utf-8"), path
    except (OSError, UnicodeDecodeError) as e:
        notes.append(f"{where}line {line}: runs `{path.name}`, which cannot be read ({e})")
        return None, None
