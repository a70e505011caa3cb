"""One driver per sweep: a lease on the sweep, held in the sweep's store.

A driver takes the lease before anything runs and renews it (a heartbeat) while it lives. A second
``run`` or ``resume`` of a live sweep is refused in one line that names the owner; a stale lease
(its driver's process is gone on this host, or its heartbeat is old) is taken over with a notice.
The lease is a row of the store, changed only by atomic compare-and-set transactions
(``Store.take_lease``/``renew_lease``/``release_lease``), so it holds wherever the store is: the
sweep directory's SQLite file, or the sweep's schema on a PostgreSQL server, where drivers on
different machines meet.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from golfsweep.errors import GolfsweepError
from golfsweep.results import LeaseHeld, Store
from golfsweep.storage import StoreLocation

__all__ = ["SweepLease"]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


class SweepLease:
    """The lease of one driver on one sweep store (a ``StoreLocation``, or a SQLite store's path).
    ``acquire()`` then ``release()``; a daemon thread renews it every ``heartbeat_s`` seconds in between."""

    def __init__(self, store: str | Path | StoreLocation, sweep_dir: str | Path, *, heartbeat_s: float = 5.0,
                 stale_after_s: float = 60.0) -> None:
        self.store = store if isinstance(store, StoreLocation) else StoreLocation.file(store)
        self.sweep_dir = str(sweep_dir)
        self.heartbeat_s = heartbeat_s
        self.stale_after_s = stale_after_s
        self.token = uuid.uuid4().hex
        self.owner = {"host": socket.gethostname(), "pid": os.getpid(), "started_at": time.time()}
        self.lost = threading.Event()  # set if another driver took the lease from this one
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def stale(self, holder: dict[str, Any]) -> str | None:
        """Why a holder may be replaced (None: it is alive)."""
        age = time.time() - float(holder.get("heartbeat_at", 0))
        if holder.get("host") == self.owner["host"] and not _pid_alive(int(holder.get("pid", -1))):
            return f"its process {holder.get('pid')} on {holder.get('host')} is gone"
        if age > self.stale_after_s:
            return f"its heartbeat is {age:.0f} s old"
        return None

    def acquire(self) -> str | None:
        """Take the lease; returns a notice when a stale driver's lease was taken over. Raises a
        one-line ``GolfsweepError`` naming the owner when a live driver holds it."""
        with Store(self.store) as store:
            try:
                replaced = store.take_lease(self.token, self.owner, lambda holder: self.stale(holder) is not None)
            except LeaseHeld as held:
                h = held.holder
                age = time.time() - float(h.get("heartbeat_at", 0))
                raise GolfsweepError(
                    f"sweep directory: another driver runs this sweep (pid {h.get('pid')} on {h.get('host')}, "
                    f"heartbeat {age:.0f} s ago); two drivers would run the same seeds twice, so wait for it or "
                    f"stop it, got {self.sweep_dir!r}") from None
        self._thread = threading.Thread(target=self._beat, name="golfsweep-lease", daemon=True)
        self._thread.start()
        if replaced is None:
            return None
        return (f"took over the lease of a stale driver (pid {replaced.get('pid')} on {replaced.get('host')}: "
                f"{self.stale(replaced)})")

    def _beat(self) -> None:
        store = Store(self.store)
        try:
            while not self._stop.wait(self.heartbeat_s):
                try:
                    if not store.renew_lease(self.token):
                        self.lost.set()  # another driver judged this one stale and took over
                        return
                except Exception:  # a busy or briefly unreachable store: try again next beat
                    continue
        finally:
            store.close()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.heartbeat_s + 5)
        if not self.lost.is_set():
            with Store(self.store) as store:
                store.release_lease(self.token)
