"""Parse Python source of any version up to 3.13 into this host's ``ast``, whatever the host (3.10+).

The audit interprets Python's own ``ast``. When the host parser rejects a file, LibCST (whose native
parser covers the grammar through 3.13, PEP 701 f-strings included) parses it, and the few
constructs older hosts lack are rewritten into equivalents the host can parse, line for line:

* f-strings with nested quotes, backslashes or comments in their fields (PEP 701, 3.12) become
  ``"literal {} text".format(expr, ...)``: the same literal text and the same expressions;
* ``type X = ...`` (3.12) becomes ``X = ...``; type parameters ``def f[T]()`` (3.12/3.13) are dropped;
* ``except*`` (3.11) becomes ``except``.

Every other token stays byte for byte where it was, so line numbers still point into the file.
"""

from __future__ import annotations

import ast
import functools
import sys
import warnings

__all__ = ["ParseFailure", "parse_any"]


class ParseFailure(Exception):
    """The text is not Python of any version the audit knows (message: the first error, with its line)."""


def parse_any(source: str, filename: str) -> tuple[ast.Module, bool]:
    """Parse ``source``; returns the tree and whether newer syntax had to be rewritten for this host."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)  # invalid escapes in old scripts
            return ast.parse(source, filename=filename), False
    except SyntaxError as host_error:
        first = host_error
    except ValueError as e:  # null bytes
        raise ParseFailure(str(e)) from None
    rewritten = _downlevel(source)
    if rewritten is None:
        raise ParseFailure(f"line {first.lineno}: {first.msg}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            return ast.parse(rewritten, filename=filename), True
    except SyntaxError as e:  # pragma: no cover - a construct the rewriter does not know yet
        raise ParseFailure(f"line {e.lineno}: {e.msg} (after rewriting newer syntax for Python "
                           f"{_host()})") from None


def _host() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def _downlevel(source: str) -> str | None:
    """The source with post-3.10 syntax rewritten, or None when LibCST cannot parse it either."""
    import libcst as cst

    try:
        module = cst.parse_module(source)
    except Exception:  # libcst raises ParserSyntaxError, and a few internal errors on odd input
        return None
    return module.visit(_transformer_class()()).code


@functools.cache
def _transformer_class():
    """Built on first use, so importing the audit does not import LibCST."""
    import libcst as cst

    class Downlevel(cst.CSTTransformer):
        def leave_FormattedString(self, original, updated):
            text: list[str] = []
            args: list = []
            _render(updated.parts, text, args)
            start = "".join(c for c in updated.start if c not in "fF")  # ``start`` holds the prefix too
            literal = cst.SimpleString(f"{start}{''.join(text)}{updated.end}")
            return cst.Call(func=cst.Attribute(value=literal, attr=cst.Name("format")), args=args,
                            lpar=updated.lpar, rpar=updated.rpar)

        def visit_ConcatenatedString(self, node):
            return False  # its parts are rewritten in leave_, where a Call may replace a string

        def leave_ConcatenatedString(self, original, updated):
            parts = _flatten(original)
            if not any(isinstance(p, cst.FormattedString) for p, _ in parts):
                return original
            out = parts[0][0].visit(self)
            for part, ws in parts[1:]:  # implicit concatenation becomes an explicit ``+``
                out = cst.BinaryOperation(left=out, right=part.visit(self), operator=cst.Add(
                    whitespace_before=ws, whitespace_after=cst.SimpleWhitespace(" ")))
            return out.with_changes(lpar=original.lpar or [cst.LeftParen()],
                                    rpar=original.rpar or [cst.RightParen()])

        def leave_TypeAlias(self, original, updated):
            return cst.Assign(targets=[cst.AssignTarget(target=updated.name)], value=updated.value)

        def leave_FunctionDef(self, original, updated):
            return updated.with_changes(type_parameters=None) if updated.type_parameters else updated

        def leave_ClassDef(self, original, updated):
            return updated.with_changes(type_parameters=None) if updated.type_parameters else updated

        def leave_TryStar(self, original, updated):
            handlers = [cst.ExceptHandler(body=h.body, type=h.type, name=h.name, leading_lines=h.leading_lines,
                                          whitespace_after_except=h.whitespace_after_star,
                                          whitespace_before_colon=h.whitespace_before_colon)
                        for h in updated.handlers]
            return cst.Try(body=updated.body, handlers=handlers, orelse=updated.orelse,
                           finalbody=updated.finalbody, leading_lines=updated.leading_lines,
                           whitespace_before_colon=updated.whitespace_before_colon)

    def _flatten(node) -> list:
        """A concatenation's strings in order, each with the whitespace before it."""
        if not isinstance(node, cst.ConcatenatedString):
            return [(node, None)]
        left, right = _flatten(node.left), _flatten(node.right)
        right[0] = (right[0][0], node.whitespace_between)
        return left + right

    def _render(parts, text: list[str], args: list) -> None:
        for part in parts:
            if isinstance(part, cst.FormattedStringText):
                text.append(part.value)  # ``{{``/``}}`` escapes mean the same in str.format
                continue
            expr = part.expression  # parenthesized so whitespace, newlines and comments around it stay
            expr = expr.with_changes(
                lpar=[cst.LeftParen(whitespace_after=part.whitespace_before_expression), *expr.lpar],
                rpar=[*expr.rpar, cst.RightParen(whitespace_before=part.whitespace_after_expression)])
            args.append(cst.Arg(value=expr))
            field = "{"
            if part.conversion:
                field += "!" + part.conversion
            elif part.equal is not None and part.format_spec is None:
                field += "!r"
            text.append(field)
            if part.format_spec is not None:
                text.append(":")
                _render(part.format_spec, text, args)  # nested fields number after the outer one
            text.append("}")

    return Downlevel
