"""Secrets: which environment variables are secret, and the one place that masks their values in text.

No golfsweep imports: the worker (on the nodes), the driver, ``search_spaces`` (spec display) and
``results`` (export, report) all use it.

The rule
--------
* **Secret names.** A name is secret when one of its components (split on ``_`` and non-word
  characters, case-insensitive) is one of ``_SECRET_PARTS``: ``HF_TOKEN``, ``WANDB_API_KEY``,
  ``DB_PASSWORD``, ``AWS_SECRET_ACCESS_KEY``; and ``PGPASSWORD`` (libpq's, for a ``[storage]``
  server). ``TOKENIZER_PATH`` and ``TRAIN_BATCH_TOKENS`` are not, and neither are the shell's
  ``PWD``/``OLDPWD`` (directories, present in every environment).
* **Secret values.** The values of the secret names in the environment a run receives: the node's
  own environment merged with the sweep's ``[env]`` (``worker.run_env``), so a token a node passes
  in is covered as well as one from the sweep file. Surrounding whitespace is ignored, and a value
  with line breaks counts line by line (text is redacted line by line as it is written).
* **Long values** — at least ``MIN_SECRET_LENGTH`` (6) characters — are replaced by ``***``
  wherever they occur; overlapping or touching occurrences (of one value or of several) become a
  single ``***``, so no fragment of either value is left.
* **Short values** (``1``, ``true``, ``ab``) are not masked everywhere: ``1`` is in every metric
  line and masking it would destroy the log. They are masked where they are assigned to their
  name (next rule), which is how an environment dump prints them. The driver notes any short
  secret of the sweep file in ``driver.log``.
* **Assignments.** Whatever the values are, the value assigned to an upper-case secret name —
  ``HF_TOKEN=…``, ``HF_TOKEN: …``, ``'HF_TOKEN': '…'``, ``"HF_TOKEN": "…"`` — is replaced by ``***``
  (up to the closing quote, or else up to whitespace or one of ``,;)]}``). This needs no known
  value, so a log written before this module existed, or a secret the trainer found elsewhere, is
  masked too when it is printed with its name.
* **URL credentials.** The password of a URL written with one — ``postgresql://user:PASSWORD@host``,
  ``https://user:TOKEN@host`` — is replaced by ``***`` wherever such a URL occurs
  (``mask_url_credentials``; ``golfsweep.storage`` masks the storage URL with it).

Out of scope: a value that appears transformed — url-encoded, base64, hashed, escaped by
``repr``/JSON (a value holding a quote or backslash), split across lines or interleaved with
other output — and a short value printed without its name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

SECRET_MASK = "***"
#: Store meta key set by a driver whose every run output went through the redactor (absent: an older sweep).
REDACTED_META = "secrets_redacted"
#: Values shorter than this are masked only where they are assigned to their name (see the module doc).
MIN_SECRET_LENGTH = 6

# Whole name components only: HF_TOKEN and WANDB_API_KEY are secrets, TOKENIZER_PATH and
# TRAIN_BATCH_TOKENS are not.
_SECRET_PARTS = frozenset({"TOKEN", "KEY", "APIKEY", "SECRET", "PASSWORD", "PASSWD", "PASS", "PWD",
                           "CREDENTIAL", "CREDENTIALS", "AUTH", "PRIVATE", "SIGNATURE", "COOKIE"})
_NOT_SECRET = frozenset({"PWD", "OLDPWD"})  # the shell's working directories
_SECRET_WHOLE = frozenset({"PGPASSWORD"})  # libpq's password (golfsweep's [storage] server): no component matches

# An upper-case name followed by an assignment (the name is not consumed past the lookahead, so
# ``A=HF_TOKEN=x`` still finds HF_TOKEN), and the assigned value that follows it.
_ASSIGNED_NAME = re.compile(r"(?<![A-Za-z0-9_])[A-Z_][A-Z0-9_]*(?=['\"]?[ \t]*[=:])")
# scheme://user:PASSWORD@ (the password: up to the ``@``, without whitespace or ``/``).
_URL_PASSWORD = re.compile(r"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]*://[^\s/:@]*:(?P<pw>[^\s/@]+)@")
_ASSIGNED_VALUE = re.compile(r"""['"]?[ \t]*[=:][ \t]*(?:(['"])(?P<q>[^\n]*?)\1|['"]?(?P<u>[^\s'",;)\]}]+))""")


def is_secret_name(name: str) -> bool:
    """True for names with a secret-looking component (``HF_TOKEN``, ``AWS_SECRET_ACCESS_KEY``)."""
    upper = name.upper()
    if upper in _NOT_SECRET:
        return False
    if upper in _SECRET_WHOLE:
        return True
    return any(part in _SECRET_PARTS for part in re.split(r"[_\W]+", upper) if part)


def mask_url_credentials(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@`` URL in it as ``***``."""
    if "://" not in text:
        return text
    return _URL_PASSWORD.sub(lambda m: m.group()[:m.start("pw") - m.start()] + SECRET_MASK + "@", text)


def mask_env(env: Mapping[str, Any]) -> dict[str, Any]:
    """Copy of ``env`` with the values of secret-looking names replaced by ``***``."""
    return {k: (SECRET_MASK if is_secret_name(k) else v) for k, v in env.items()}


class Redactor:
    """Masks the secret values of an environment (and any assignment to a secret name) in text.

    ``Redactor(env)`` takes the whole environment a run receives and picks the secret names itself;
    ``Redactor()`` masks assignments only. See the module docstring for the rule.
    """

    def __init__(self, env: Mapping[str, Any] | None = None) -> None:
        values: dict[str, set[str]] = {}  # value -> the names that hold it
        short: set[str] = set()
        for name, value in (env or {}).items():
            if not isinstance(value, str) or not is_secret_name(str(name)):
                continue
            lines = [line.strip() for line in value.splitlines()]
            long = [line for line in lines if len(line) >= MIN_SECRET_LENGTH]
            for line in long:
                values.setdefault(line, set()).add(str(name))
            if any(lines) and not long:
                short.add(str(name))
        self._values = tuple(sorted(values, key=len, reverse=True))
        self._names = values
        #: Secret names whose value is too short to be masked everywhere (masked only next to the name).
        self.short_names = tuple(sorted(short))

    def __repr__(self) -> str:  # never the values themselves
        return f"Redactor({len(self._values)} values, short={list(self.short_names)})"

    @property
    def n_values(self) -> int:
        return len(self._values)

    def contains_value(self, text: str | bytes) -> bool:
        """Whether a known (long) secret value occurs in ``text``."""
        return bool(self.names_in(text))

    def names_in(self, text: str | bytes) -> list[str]:
        """The secret names whose (long) value occurs in ``text``, sorted."""
        found: set[str] = set()
        for v in self._values:
            if (v.encode("utf-8") if isinstance(text, bytes) else v) in text:
                found |= self._names[v]
        return sorted(found)

    def redact(self, text: str) -> str:
        """``text`` with every secret value, and every value assigned to a secret name, as ``***``."""
        spans = list(self._value_spans(text))
        if "=" in text or ":" in text:
            spans.extend(_assignment_spans(text))
        if "://" in text:
            spans.extend(m.span("pw") for m in _URL_PASSWORD.finditer(text) if m.group("pw") != SECRET_MASK)
        if not spans:
            return text
        out: list[str] = []
        pos = 0
        for start, end in _merged(spans):
            out.append(text[pos:start])
            out.append(SECRET_MASK)
            pos = end
        out.append(text[pos:])
        return "".join(out)

    def redact_bytes(self, data: bytes) -> bytes:
        """``redact`` for raw output: bytes that are not UTF-8 pass through unchanged."""
        text = data.decode("utf-8", errors="surrogateescape")
        redacted = self.redact(text)
        return data if redacted == text else redacted.encode("utf-8", errors="surrogateescape")

    def _value_spans(self, text: str) -> Iterable[tuple[int, int]]:
        for value in self._values:
            i = text.find(value)
            while i != -1:
                yield i, i + len(value)
                i = text.find(value, i + 1)  # overlapping occurrences too


def _assignment_spans(text: str) -> Iterable[tuple[int, int]]:
    for m in _ASSIGNED_NAME.finditer(text):
        if not is_secret_name(m.group()):
            continue
        v = _ASSIGNED_VALUE.match(text, m.end())
        if v is None:
            continue
        group = "q" if v.group("q") is not None else "u"
        start, end = v.span(group)
        if end > start and text[start:end] != SECRET_MASK:
            yield start, end


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, with overlapping or touching spans joined."""
    out: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if out and start <= out[-1][1]:
            if end > out[-1][1]:
                out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out
