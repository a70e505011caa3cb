"""Live progress in the terminal: runs done / running / queued and the best feasible mean so far."""

from __future__ import annotations

from rich.console import Console
from rich.live import Live
from rich.table import Table

from golfsweep.orchestrator._outcomes import Snapshot


class TerminalProgress:
    """A live panel on a terminal; one plain line per change elsewhere (CI logs, pipes)."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._live: Live | None = None
        self._last: tuple | None = None

    def __enter__(self) -> TerminalProgress:
        if self.console.is_terminal:
            self._live = Live(console=self.console, refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)

    def __call__(self, snap: Snapshot) -> None:
        if self._live is not None:
            self._live.update(_panel(snap))
            return
        key = (snap.complete, snap.failed, snap.pruned, snap.running, snap.queued, snap.retries)
        if key != self._last:
            self._last = key
            self.console.print(_line(snap), highlight=False, soft_wrap=True)


def _best_text(snap: Snapshot) -> str:
    if not snap.best:
        return "best: -"
    b = snap.best
    std = f" ± {b['std']:.4f}" if b.get("std") is not None else ""
    params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in b["params"].items())
    return f"best: {b['objective']:.5f}{std} (trial {b['trial']}: {params})"


def _line(snap: Snapshot) -> str:
    done = snap.complete + snap.failed
    retries = f" retries {snap.retries}" if snap.retries else ""
    pruned = f" pruned {snap.pruned}" if snap.pruned else ""
    return (f"[{done}/{snap.total} runs] complete {snap.complete} failed {snap.failed}{pruned} running "
            f"{snap.running} queued {snap.queued}{retries} | {_best_text(snap)} | {snap.gpu_hours:.2f} GPU-h | "
            f"{snap.elapsed:.0f}s")


def _panel(snap: Snapshot) -> Table:
    t = Table(title="golfsweep", show_header=True, header_style="bold")
    for col in ("done", "complete", "failed", "pruned", "running", "queued", "retries", "GPU-hours", "elapsed"):
        t.add_column(col, justify="right")
    t.add_row(f"{snap.complete + snap.failed}/{snap.total}", str(snap.complete), str(snap.failed), str(snap.pruned),
              str(snap.running), str(snap.queued), str(snap.retries), f"{snap.gpu_hours:.2f}", f"{snap.elapsed:.0f}s")
    t.caption = _best_text(snap)
    return t
