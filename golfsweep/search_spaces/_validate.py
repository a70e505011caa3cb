"""Checking a parsed sweep file: collect every problem, each naming the key, the rule and the value."""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Any

from golfsweep.errors import SpecError

def is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) or (isinstance(x, float) and x.is_integer())


def brief(x: Any) -> str:
    s = repr(x)
    return s if len(s) <= 60 else s[:57] + "..."


class Validator:
    """Collects problems instead of raising on the first one."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def problem(self, msg: str) -> None:
        self.problems.append(msg)

    def raise_if_any(self, source: Path | None) -> None:
        if self.problems:
            raise SpecError(self.problems, source=str(source) if source else None)

    def unknown(self, prefix: str, d: Mapping[str, Any], allowed: set[str]) -> None:
        for k in d:
            if k not in allowed:
                self.problem(f"{prefix}{k}: unknown key (allowed: {', '.join(sorted(allowed))}), got {k!r}")

    def table(self, d: Mapping[str, Any], key: str, required: bool = False) -> Mapping[str, Any]:
        val = d.get(key)
        if val is None:
            if required:
                self.problem(f"[{key}]: table is required, got nothing")
            return {}
        if not isinstance(val, Mapping):
            self.problem(f"[{key}]: must be a table, got {brief(val)}")
            return {}
        return val

    _MISSING = object()

    def _present(self, d: Mapping[str, Any], key: str, required: bool) -> Any:
        """``d``'s value for the last part of ``key``, or ``_MISSING`` (a problem when ``required``)."""
        short = key.rsplit(".", 1)[-1]
        if short not in d:
            if required:
                self.problem(f"{key}: is required, got nothing")
            return self._MISSING
        return d[short]

    def get(self, d: Mapping[str, Any], key: str, typ: type, required: bool = False, default: Any = None) -> Any:
        val = self._present(d, key, required)
        if val is self._MISSING:
            return default
        if not isinstance(val, typ) or (typ is not bool and isinstance(val, bool)):
            self.problem(f"{key}: must be a {typ.__name__}, got {type(val).__name__} {brief(val)}")
            return default
        return val

    def int_at_least(self, d: Mapping[str, Any], key: str, minimum: int, required: bool = False,
                     default: int | None = None) -> Any:
        val = self._present(d, key, required)
        if val is self._MISSING:
            return default
        if isinstance(val, bool) or not isinstance(val, int):
            self.problem(f"{key}: must be an integer, got {type(val).__name__} {brief(val)}")
            return default
        if val < minimum:
            self.problem(f"{key}: must be >= {minimum}, got {val}")
            return default
        return val

    def enum(self, d: Mapping[str, Any], key: str, enum_type: type[Enum], default: Enum) -> Any:
        short = key.rsplit(".", 1)[-1]
        if short not in d:
            return default
        try:
            return enum_type(d[short])
        except ValueError:
            options = ", ".join(e.value for e in enum_type)
            self.problem(f"{key}: must be one of {options}, got {d[short]!r}")
            return default

    def str_list(self, d: Mapping[str, Any], key: str, default: list[str]) -> Any:
        short = key.rsplit(".", 1)[-1]
        if short not in d:
            return default
        val = d[short]
        if not isinstance(val, list) or not all(isinstance(x, str) for x in val):
            self.problem(f"{key}: must be a list of strings, got {brief(val)}")
            return default
        return val
