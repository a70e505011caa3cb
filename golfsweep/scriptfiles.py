"""The code a run executes: the script, and the files beside it that the script runs as code.

A record's code should live in its ``train_gpt.py``, but real records also ship a loader and its
payload: ``exec(open(__file__.replace("train_gpt.py", "train_gpt_decode.py")).read())``, or
``import model`` with ``model.py`` next to the script. A run on a node gets only what golfsweep
sends it, so those files travel with the script, count as code bytes in the artifact, are kept
with the sweep and are exported with the record.

**Which files.** The script names them, so they are found from its text, not from a list of
names: every ``.py`` file beside the script that a string literal of the script names (a path
relative to the script's folder), and every module or package beside it that the script imports
(``import X`` / ``from X import ...`` with ``X.py`` or ``X/`` there: Python puts the script's
folder first on ``sys.path``, so that file is what runs). A package travels whole: its
``__init__.py`` may load what sits beside it (a compiled extension it globs for). Found ``.py``
files are read the same way, so a chain of them is followed. What the text cannot show (a name
built at run time, a data file) is listed in ``[sweep] files``.

**Which bytes count.** Code is text: the script and every support file that is UTF-8 text. A
binary file (a compiled ``.so`` a package ships as a convenience) travels with the run but is a
build product of source that counts, not code.
"""

from __future__ import annotations

import ast
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from golfsweep.errors import GolfsweepError

__all__ = ["ScriptFiles", "find_support", "support_name_problem"]

_PY_LITERAL = re.compile(r"""["']((?:\./)?[A-Za-z0-9_][A-Za-z0-9_./-]*\.py)["']""")
_IMPORT = re.compile(r"^[ \t]*(?:from[ \t]+([A-Za-z_]\w*)[\w.]*[ \t]+import|import[ \t]+([A-Za-z_]\w*))", re.M)


@dataclass(frozen=True)
class ScriptFiles:
    """The script (``name``, ``script``) and its support files (relative POSIX path, bytes)."""

    name: str
    script: bytes
    support: tuple[tuple[str, bytes], ...] = ()

    @property
    def sha256(self) -> str:
        """The identity of what runs: the script's own sha256 when it is alone (so a one-file sweep
        keeps the digest it always had), else a digest over every file's name and bytes."""
        if not self.support:
            return hashlib.sha256(self.script).hexdigest()
        h = hashlib.sha256()
        for name, data in ((self.name, self.script), *self.support):
            h.update(f"{name}\0{len(data)}\0".encode())
            h.update(data)
        return h.hexdigest()

    @property
    def code_bytes(self) -> int:
        """Bytes of code in the artifact: the script and every text file it runs (binaries travel, uncounted)."""
        return len(self.script) + sum(len(d) for _, d in self.support if is_text(d))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self.support)

    @property
    def binary_names(self) -> tuple[str, ...]:
        """Support files that are not text: shipped with each run, not counted as code."""
        return tuple(n for n, d in self.support if not is_text(d))

    def write(self, folder: Path) -> Path:
        """Write every file into ``folder`` (support files at their relative paths); returns the script's path."""
        for name, data in self.support:
            path = folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        script = folder / self.name
        script.write_bytes(self.script)
        return script

    @classmethod
    def read(cls, script: Path, listed: Sequence[str] = ()) -> ScriptFiles:
        """The script at ``script`` with the files it runs (found) and the ``listed`` ones."""
        try:
            raw = script.read_bytes()
        except OSError as exc:
            raise GolfsweepError(f"sweep.script: must be readable ({exc.strerror}), got {str(script)!r}") from None
        found = _find(script, raw)
        for name in set(listed) - set(found):
            try:
                found[name] = (script.parent / name).read_bytes()
            except OSError as exc:
                raise GolfsweepError(f"sweep.files: {name!r} must be readable ({exc.strerror})") from None
        return cls(script.name, raw, tuple(sorted(found.items())))


def is_text(data: bytes) -> bool:
    """Whether ``data`` is source text: UTF-8 without NUL bytes."""
    if b"\0" in data:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def support_name_problem(folder: Path, name: str, script_name: str) -> str | None:
    """Why ``name`` cannot be a support file of a script in ``folder`` (None when it can)."""
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts or not p.parts or name != str(p):
        return f"must be a plain path relative to the script's folder, got {name!r}"
    if name == script_name:
        return f"must not be the script itself, got {name!r}"
    target = folder / name
    if not target.is_file():
        return f"must be a file beside the script, got {name!r} (no such file in {str(folder)!r})"
    return None


def find_support(script: Path, raw: bytes) -> list[str]:
    """Relative paths of the files beside ``script`` that it (and they, in turn) run as code."""
    return sorted(_find(script, raw))


def _find(script: Path, raw: bytes) -> dict[str, bytes]:
    """The files beside ``script`` that it (and they, in turn) run as code, each read once."""
    folder = script.parent.resolve()
    found: dict[str, bytes] = {}
    todo = [raw]
    while todo:
        for rel in _named_files(folder, todo.pop().decode("utf-8", "replace")):
            if rel != script.name and rel not in found:
                found[rel] = (folder / rel).read_bytes()
                if rel.endswith(".py"):
                    todo.append(found[rel])
    return found


def _named_files(folder: Path, text: str) -> Iterable[str]:
    literals, modules = _references(text)
    for lit in literals:
        rel = lit[2:] if lit.startswith("./") else lit
        if _inside(folder, rel) and (folder / rel).is_file():
            yield rel
    for mod in modules:
        if (folder / f"{mod}.py").is_file():
            yield f"{mod}.py"
        elif (folder / mod).is_dir() and _inside(folder, mod):  # a package: all of it, caches and dotfiles aside
            yield from sorted(p.relative_to(folder).as_posix() for p in (folder / mod).rglob("*")
                              if p.is_file() and not p.is_symlink() and p.suffix != ".pyc"
                              and not any(part == "__pycache__" or part.startswith(".")
                                          for part in p.relative_to(folder).parts))


def _inside(folder: Path, rel: str) -> bool:
    try:
        return (folder / rel).resolve().is_relative_to(folder)
    except OSError:
        return False


def _references(text: str) -> tuple[set[str], set[str]]:
    """String literals naming ``.py`` files, and top-level modules imported. From the syntax tree
    when the host Python parses the text (docstrings and comments left out); from the raw text
    when it does not (newer syntax), which can only name more."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return ({m.group(1) for m in _PY_LITERAL.finditer(text)},
                {m.group(1) or m.group(2) for m in _IMPORT.finditer(text)})
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    literals: set[str] = set()
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            literals.update(m.group(1) for m in _PY_LITERAL.finditer(f'"{node.value}"'))
        elif isinstance(node, ast.Import):
            modules.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module.split(".")[0])
    return literals, modules
