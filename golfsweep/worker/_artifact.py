"""Artifact size: compressed model file(s) plus the script's bytes, measured on disk."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from golfsweep.worker._types import ArtifactMeasurement


def measure_artifact(run_dir: str | Path, patterns: Sequence[str], *, code_bytes: int,
                     claimed_total: int | None = None, limit: int = 16_000_000) -> ArtifactMeasurement | None:
    """Sum the files in ``run_dir`` matching ``patterns`` (non-recursive); None when none match."""
    run_dir = Path(run_dir)
    files = sorted({p for pat in patterns for p in run_dir.glob(pat) if p.is_file()})
    if not files:
        return None
    model_bytes = sum(p.stat().st_size for p in files)
    return ArtifactMeasurement(
        model_files=tuple(p.name for p in files), model_bytes=model_bytes, code_bytes=code_bytes,
        total_bytes=model_bytes + code_bytes, claimed_total_bytes=claimed_total, limit_bytes=limit,
    )
