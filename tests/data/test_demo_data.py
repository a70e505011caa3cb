"""The demo dataset builder and the shard helpers."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import sentencepiece as spm

from golfsweep.data import SHARD_MAGIC, build_demo_data, read_shard, write_shard
from golfsweep.errors import GolfsweepError

SMALL = dict(vocab_size=400, max_chars=200_000)


def _digests(directory) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory):
    return build_demo_data(tmp_path_factory.mktemp("demo_a"), **SMALL)


def test_layout_and_counts(small_demo):
    d = small_demo
    assert sorted(p.name for p in d.data_path.iterdir()) == [
        "fineweb_train_000000.bin", "fineweb_val_000000.bin", "tokenizer.model",
    ]
    train, val = read_shard(d.train_path), read_shard(d.val_path)
    assert train.dtype == np.uint16 and len(train) == d.n_train_tokens
    assert len(val) == d.n_val_tokens and 0 < d.n_val_tokens < d.n_train_tokens
    sp = spm.SentencePieceProcessor(model_file=str(d.tokenizer_path))
    assert sp.get_piece_size() == d.vocab_size == 400
    assert sp.is_byte(sp.piece_to_id("<0xE2>"))  # byte fallback
    # Every document starts with BOS, so both shards do.
    assert train[0] == val[0] == sp.bos_id()
    assert int(val.max()) < d.vocab_size
    assert d.env() == {"DATA_PATH": str(d.data_path), "TOKENIZER_PATH": str(d.tokenizer_path),
                       "VOCAB_SIZE": "400"}


def test_same_inputs_give_same_bytes(small_demo, tmp_path):
    again = build_demo_data(tmp_path / "b", **SMALL)
    assert _digests(again.data_path) == _digests(small_demo.data_path)


def test_seed_changes_the_split(small_demo, tmp_path):
    other = build_demo_data(tmp_path / "c", seed=1, **SMALL)
    assert _digests(other.data_path) != _digests(small_demo.data_path)


def test_user_text_file(tmp_path):
    words = " ".join(f"word{i % 97} café" for i in range(3000))
    text = "\n\n".join(f"Paragraph {i}: {words[i * 50:i * 50 + 4000]}" for i in range(60))
    src = tmp_path / "book.txt"
    src.write_text(text, encoding="utf-8")
    d = build_demo_data(tmp_path / "out", text_file=src, vocab_size=300, val_fraction=0.2)
    assert d.n_documents == 60
    sp = spm.SentencePieceProcessor(model_file=str(d.tokenizer_path))
    val = read_shard(d.val_path).tolist()
    decoded = sp.decode(val)
    assert "Paragraph" in decoded and "café" in decoded


def test_bad_arguments_are_reported_together(tmp_path):
    with pytest.raises(GolfsweepError) as err:
        build_demo_data(tmp_path, vocab_size=10, val_fraction=1.5)
    assert "val_fraction" in str(err.value) and "vocab_size" in str(err.value)
    with pytest.raises(GolfsweepError, match="missing.txt"):
        build_demo_data(tmp_path, text_file=tmp_path / "missing.txt")


def test_shard_round_trip(tmp_path):
    tokens = np.array([0, 1, 2, 65535, 7], dtype=np.int64)
    path = write_shard(tmp_path / "s.bin", tokens)
    assert path.stat().st_size == 1024 + 2 * len(tokens)
    header = np.fromfile(path, dtype="<i4", count=3)
    assert header.tolist() == [SHARD_MAGIC, 1, 5]
    np.testing.assert_array_equal(read_shard(path), tokens)


def test_shard_errors(tmp_path):
    with pytest.raises(GolfsweepError, match="uint16"):
        write_shard(tmp_path / "x.bin", [70000])
    path = write_shard(tmp_path / "s.bin", np.arange(10))
    raw = bytearray(path.read_bytes())

    bad_magic = tmp_path / "magic.bin"
    bad_magic.write_bytes(b"\x00\x00\x00\x00" + bytes(raw[4:]))
    with pytest.raises(GolfsweepError, match=r"magic.bin: bad shard magic 0"):
        read_shard(bad_magic)

    bad_version = tmp_path / "version.bin"
    bad_version.write_bytes(bytes(raw[:4]) + (7).to_bytes(4, "little") + bytes(raw[8:]))
    with pytest.raises(GolfsweepError, match="version.bin: unsupported shard version 7"):
        read_shard(bad_version)

    short = tmp_path / "short.bin"
    short.write_bytes(bytes(raw[:-4]))
    with pytest.raises(GolfsweepError, match=r"short.bin: header says 10 tokens \(1044 bytes\) but the file has 1040"):
        read_shard(short)

    tiny = tmp_path / "tiny.bin"
    tiny.write_bytes(b"abc")
    with pytest.raises(GolfsweepError, match="tiny.bin: 3 bytes is shorter than the 1024-byte shard header"):
        read_shard(tiny)
