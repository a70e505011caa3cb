"""Whole-file checks, reached or not: network access, code the audit cannot see (dynamic code,
modules outside the file)."""

from __future__ import annotations

import ast

from golfsweep.audit import _vocab as vocab
from golfsweep.audit._decode import SOURCE_ATTR
from golfsweep.audit._report import Finding, Rule, Severity
from golfsweep.audit._state import dotted

__all__ = ["scan"]


def _import_aliases(tree: ast.Module) -> dict[str, str]:
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.asname:
                    aliases[a.asname] = a.name
                else:
                    aliases[a.name.split(".")[0]] = a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                if a.name != "*":
                    aliases[a.asname or a.name] = f"{node.module}.{a.name}"
    return aliases


def _qualname(node: ast.expr, aliases: dict[str, str]) -> str | None:
    name = dotted(node)
    if name is None:
        return None
    head, _, rest = name.partition(".")
    if head in aliases:
        return aliases[head] + ("." + rest if rest else "")
    return name


def _strings(node: ast.AST) -> list[str]:
    out = []
    for n in ast.walk(node):
        if isinstance(n, ast.Constant) and isinstance(n.value, str):
            out.append(n.value)
    return out


def _network_command(words: list[str]) -> str | None:
    tokens = [w.rsplit("/", 1)[-1].lower() for w in words]
    for i, t in enumerate(tokens):
        if t in vocab.NETWORK_COMMANDS:
            return t
        if i + 1 < len(tokens) and (t, tokens[i + 1]) in vocab.NETWORK_SUBCOMMANDS:
            return f"{t} {tokens[i + 1]}"
    return None


def scan(tree: ast.Module) -> tuple[list[Finding], list[str], list[str], set[str]]:
    """Network access and dynamic code anywhere in the file, reached or not."""
    findings: list[Finding] = []
    unknown: list[str] = []
    notes: list[str] = []
    aliases = _import_aliases(tree)
    defined = {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    unknown_modules: set[str] = set()
    noted: set[str] = set()

    def net(node: ast.AST, msg: str, severity: Severity = Severity.VIOLATION) -> None:
        findings.append(Finding(Rule.NETWORK, node.lineno, getattr(node, "end_lineno", None), msg, severity,
                                getattr(node, SOURCE_ATTR, None)))

    def at(node: ast.AST) -> str:
        src = getattr(node, SOURCE_ATTR, None)
        return f"{src}, line {node.lineno}" if src else f"line {node.lineno}"

    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    mods = [("." * node.level) + (node.module or "")]
                else:
                    base = node.module or ""
                    mods = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                mods = [a.name for a in node.names]
            for m in mods:
                hit = next((n for n in vocab.NETWORK_MODULES if m == n or m.startswith(n + ".")), None)
                if hit:
                    net(node, f"imports network library `{hit}`")
                    break
            for m in mods[:1] if isinstance(node, ast.ImportFrom) else mods:
                if m.startswith(".") or not vocab.module_known(m):
                    root = m if m.startswith(".") else m.split(".")[0]
                    unknown_modules.add(root.lstrip(".") or root)
                    if isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names):
                        unknown.append(f"{at(node)}: `from {m} import *` brings in names from code that is "
                                       f"not part of the audited file")
                    elif m not in noted:
                        noted.add(m)
                        notes.append(f"{at(node)}: imports `{m}`, which is not part of the audited file")
        elif isinstance(node, ast.Call):
            q = _qualname(node.func, aliases) or ""
            if isinstance(node.func, ast.Name) and node.func.id in vocab.DYNAMIC_BUILTINS and node.func.id not in defined \
                    and node.func.id not in aliases:
                unknown.append(f"{at(node)}: `{node.func.id}()` runs code the audit cannot see")
                findings.append(Finding(Rule.DYNAMIC, node.lineno, getattr(node, "end_lineno", None),
                                        f"`{node.func.id}()` runs dynamically built code", Severity.WARNING,
                                        getattr(node, SOURCE_ATTR, None)))
            elif q in vocab.DYNAMIC_CALLS:
                unknown.append(f"{at(node)}: `{q}()` loads code the audit cannot see")
                findings.append(Finding(Rule.DYNAMIC, node.lineno, getattr(node, "end_lineno", None),
                                        f"`{q}()` loads code dynamically", Severity.WARNING,
                                        getattr(node, SOURCE_ATTR, None)))
            if q in vocab.NETWORK_CALLS or q.endswith(vocab.NETWORK_CALL_SUFFIXES):
                net(node, f"`{q}()` accesses the network")
            elif q in vocab.TELEMETRY_CALLS:
                net(node, f"`{q}()` {vocab.TELEMETRY_CALLS[q]}: outbound network during the run",
                    Severity.WARNING)
            elif q in vocab.SHELL_CALLS:
                words = [w for s in _strings(node) for w in s.split()]
                cmd = _network_command(words)
                if cmd:
                    net(node, f"runs `{cmd}` in a subprocess (network download)")
                elif node.args and not isinstance(node.args[0], (ast.Constant, ast.List, ast.Tuple)):
                    net(node, f"`{q}()` runs a command the audit cannot read; check it does not access the "
                        f"network", Severity.WARNING)
    unknown_modules.discard("")
    return findings, unknown, notes, unknown_modules
