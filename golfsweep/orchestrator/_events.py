"""What the driver records and how it stops: ``driver.log`` events and signal handling.

``driver.log`` holds one ``key=value`` line per decision (``event=run_submitted trial=3 seed=42
attempt=1``), written through Python ``logging`` with one open handler and secrets redacted. Events
worth a user's attention (a lease taken over) go to the ``golfsweep`` logger at WARNING, which the
CLI shows on the terminal as one line.

SIGTERM and SIGINT end a driver with :class:`DriverInterrupted`, raised in the driver's main loop,
instead of whatever handler the process had (Ray's dumps a stack): the driver then kills the runs in
flight with their process trees and leaves the store as it was, so ``resume`` re-runs them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from golfsweep.redact import Redactor

__all__ = ["DriverInterrupted", "DriverLog", "as_interrupt", "interrupt_on_signals"]

LOGGER = "golfsweep.driver"


class DriverInterrupted(KeyboardInterrupt):
    """The driver was told to stop (SIGTERM/SIGINT); ``signal_name`` says which."""

    def __init__(self, signal_name: str) -> None:
        self.signal_name = signal_name
        super().__init__(signal_name)


def _value(v: Any) -> str:
    text = v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)
    return text if text and not any(c in text for c in ' "=\n') else json.dumps(text)


class _Redacting(logging.Filter):
    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redactor.redact(record.getMessage())
        record.args = None
        return True


class DriverLog:
    """The driver's event log: ``event(name, **fields)`` appends one line to ``driver.log``."""

    def __init__(self, path: Path, redactor: Redactor) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handler = logging.FileHandler(path, encoding="utf-8")
        self._handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%dT%H:%M:%S"))
        self._handler.addFilter(_Redacting(redactor))
        self._redact = _Redacting(redactor)
        self._logger = logging.getLogger(f"{LOGGER}.{id(self)}")  # one per driver: tests run several
        self._logger.propagate = False
        self._logger.setLevel(logging.INFO)
        self._logger.addHandler(self._handler)

    def event(self, name: str, **fields: Any) -> None:
        parts = [f"event={name}"] + [f"{k}={_value(v)}" for k, v in fields.items() if v is not None]
        self._logger.info(" ".join(parts))

    def notice(self, name: str, message: str, **fields: Any) -> None:
        """An event the user should see now: logged, and on the ``golfsweep`` logger at WARNING."""
        self.event(name, message=message, **fields)
        record = logging.LogRecord("golfsweep", logging.WARNING, __file__, 0, message, None, None)
        self._redact.filter(record)
        logging.getLogger("golfsweep").handle(record)

    def close(self) -> None:
        self._logger.removeHandler(self._handler)
        self._handler.close()


@contextlib.contextmanager
def interrupt_on_signals() -> Iterator[None]:
    """Within the block, SIGTERM and SIGINT raise :class:`DriverInterrupted` in this (main) thread;
    the previous handlers come back after it. Outside the main thread nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        _received.append(signal.Signals(signum).name)
        raise DriverInterrupted(signal.Signals(signum).name)

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


_received: list[str] = []  # signals the handler saw (Ray may hand ours back as a bare KeyboardInterrupt)


def as_interrupt(exc: KeyboardInterrupt) -> DriverInterrupted:
    """``exc`` as a :class:`DriverInterrupted` naming the signal that caused it."""
    if isinstance(exc, DriverInterrupted):
        return exc
    return DriverInterrupted(_received[-1] if _received else "SIGINT")
