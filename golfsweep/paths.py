"""The one place that names files in a sweep directory. Nobody else joins these paths by hand."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SweepPaths:
    """Layout of a sweep directory::

        <root>/sweep.toml            copy of the sweep file as given
        <root>/spec.json             resolved spec (secrets masked) and its fingerprint
        <root>/golfsweep.db          run store (SQLite, WAL)
        <root>/optuna.db             Optuna study (default storage)
        <root>/script/<name>         the exact script bytes every run received
        <root>/runs/<trial>-<seed>/train.log     the run's log (last attempt)
        <root>/runs/<trial>-<seed>/result.json   the run's record
        <root>/driver.log            what the driver did, with timestamps
    """

    root: Path

    @classmethod
    def of(cls, root: str | os.PathLike[str]) -> SweepPaths:
        return cls(Path(root).resolve())

    @property
    def spec_copy(self) -> Path:
        return self.root / "sweep.toml"

    @property
    def spec_json(self) -> Path:
        return self.root / "spec.json"

    @property
    def store(self) -> Path:
        return self.root / "golfsweep.db"

    @property
    def optuna_url(self) -> str:
        return f"sqlite:///{self.root / 'optuna.db'}"

    def script(self, name: str) -> Path:
        return self.root / "script" / name

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @staticmethod
    def run_name(trial: int, seed: int) -> str:
        """A run's directory name, here and in node-local work directories."""
        return f"{trial:04d}-{seed}"

    def run_dir(self, trial: int, seed: int) -> Path:
        return self.runs_dir / self.run_name(trial, seed)

    def run_log(self, trial: int, seed: int) -> Path:
        return self.run_dir(trial, seed) / "train.log"

    def run_result(self, trial: int, seed: int) -> Path:
        return self.run_dir(trial, seed) / "result.json"

    @property
    def driver_log(self) -> Path:
        return self.root / "driver.log"


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write via a temp file in the same directory and ``os.replace``: readers see old or new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
