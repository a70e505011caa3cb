"""Demo dataset for trying golfsweep without the FineWeb shards; shard read/write helpers.

Usage::

    from golfsweep.data import build_demo_data

    demo = build_demo_data("golfsweep-demo/data")   # ~2M characters, a few seconds
    env = demo.env()  # {"DATA_PATH": ..., "TOKENIZER_PATH": ..., "VOCAB_SIZE": "1024"}

The text is English that ships with Python (pydoc topics and standard-library
docstrings) or, with ``text_file=``, your own.  ``out_dir`` receives
``fineweb_train_000000.bin``, ``fineweb_val_000000.bin`` (challenge shard format) and
``tokenizer.model`` (SentencePiece BPE with byte fallback); the same inputs give
byte-identical files (the default text comes from the running Python, so "the same
inputs" includes its version).  Uses sentencepiece and numpy only.
"""

from golfsweep.data._demo import DemoData, build_demo_data, demo_documents
from golfsweep.data._shards import SHARD_HEADER_BYTES, SHARD_MAGIC, SHARD_VERSION, read_shard, write_shard

__all__ = [
    "SHARD_HEADER_BYTES", "SHARD_MAGIC", "SHARD_VERSION", "DemoData", "build_demo_data", "demo_documents",
    "read_shard", "write_shard",
]
