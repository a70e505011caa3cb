"""Read and write token shards in the Parameter Golf format.

A shard is a 1024-byte header of 256 little-endian int32 (``[0]`` magic 20240520,
``[1]`` version 1, ``[2]`` token count, the rest zero) followed by the tokens as
little-endian uint16.  ``golfsweep/recipes/train_gpt.py`` has its own reader (it may
import nothing from golfsweep); these helpers are for the demo builder and tests.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from golfsweep.errors import GolfsweepError

__all__ = ["SHARD_HEADER_BYTES", "SHARD_MAGIC", "SHARD_VERSION", "read_shard", "write_shard"]

SHARD_MAGIC = 20240520
SHARD_VERSION = 1
_HEADER_INTS = 256
SHARD_HEADER_BYTES = _HEADER_INTS * 4


def write_shard(path: str | os.PathLike, tokens) -> Path:
    """Write ``tokens`` (any integer array-like, values in 0..65535) as one shard.

    The file is written to a temporary name and renamed, so a reader never sees half
    a shard.  Returns the path.
    """
    path = Path(path)
    arr = np.asarray(tokens)
    if arr.ndim != 1:
        raise GolfsweepError(f"write_shard {path}: tokens must be 1-D, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise GolfsweepError(f"write_shard {path}: tokens must be integers, got dtype {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() > 0xFFFF):
        raise GolfsweepError(
            f"write_shard {path}: tokens must fit uint16 (0..65535), got range {arr.min()}..{arr.max()}"
        )
    header = np.zeros(_HEADER_INTS, dtype="<i4")
    header[0] = SHARD_MAGIC
    header[1] = SHARD_VERSION
    header[2] = arr.size
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(header.tobytes())
        f.write(arr.astype("<u2", copy=False).tobytes())
    os.replace(tmp, path)
    return path


def read_shard(path: str | os.PathLike) -> np.ndarray:
    """Return the tokens of one shard as a ``uint16`` array.

    Raises :class:`GolfsweepError` naming the file when the header is not a shard
    header or the file size disagrees with the token count in it.
    """
    path = Path(path)
    size = path.stat().st_size
    if size < SHARD_HEADER_BYTES:
        raise GolfsweepError(
            f"{path}: {size} bytes is shorter than the {SHARD_HEADER_BYTES}-byte shard header"
        )
    header = np.fromfile(path, dtype="<i4", count=_HEADER_INTS)
    if header[0] != SHARD_MAGIC:
        raise GolfsweepError(f"{path}: bad shard magic {int(header[0])}, expected {SHARD_MAGIC}")
    if header[1] != SHARD_VERSION:
        raise GolfsweepError(f"{path}: unsupported shard version {int(header[1])}, expected {SHARD_VERSION}")
    n = int(header[2])
    expected = SHARD_HEADER_BYTES + 2 * n
    if n < 0 or size != expected:
        raise GolfsweepError(
            f"{path}: header says {n} tokens ({expected} bytes) but the file has {size} bytes"
        )
    return np.fromfile(path, dtype="<u2", count=n, offset=SHARD_HEADER_BYTES).astype(np.uint16, copy=False)
