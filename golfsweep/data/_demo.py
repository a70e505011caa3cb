"""Build a small, deterministic demo dataset in the Parameter Golf layout."""

from __future__ import annotations

import ast
import inspect
import io
import itertools
import os
import re
import sysconfig
import textwrap
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from golfsweep.data._shards import write_shard
from golfsweep.errors import GolfsweepError

__all__ = ["DemoData", "build_demo_data", "demo_documents"]

TRAIN_SHARD = "fineweb_train_000000.bin"
VAL_SHARD = "fineweb_val_000000.bin"
TOKENIZER_FILE = "tokenizer.model"

# Standard-library parts left out of the demo text: tests, GUI and vendored code, and
# directories that differ between installations.
_SKIP_DIRS = frozenset(
    {"test", "tests", "idlelib", "lib2to3", "site-packages", "dist-packages", "__pycache__",
     "turtledemo", "ensurepip", "tkinter", "pydoc_data"}
)
# Longer lines are wrapped before training the tokenizer: SentencePiece skips
# sentences above 4192 bytes, and a character is at most 4 bytes.
_MAX_TRAIN_LINE_CHARS = 1000


@dataclass(frozen=True)
class DemoData:
    """Where a built demo dataset lives and how big it is.

    ``data_path`` is the directory to pass as ``DATA_PATH`` (it holds
    ``fineweb_train_000000.bin``, ``fineweb_val_000000.bin`` and ``tokenizer.model``);
    ``tokenizer_path`` is the ``TOKENIZER_PATH``.  Token counts include the BOS token
    that starts every document.
    """

    data_path: Path
    tokenizer_path: Path
    vocab_size: int
    n_train_tokens: int
    n_val_tokens: int
    n_documents: int
    n_chars: int

    @property
    def train_path(self) -> Path:
        return self.data_path / TRAIN_SHARD

    @property
    def val_path(self) -> Path:
        return self.data_path / VAL_SHARD

    def env(self) -> dict[str, str]:
        """The trainer environment variables that point at this dataset."""
        return {
            "DATA_PATH": str(self.data_path),
            "TOKENIZER_PATH": str(self.tokenizer_path),
            "VOCAB_SIZE": str(self.vocab_size),
        }


def _stdlib_docstrings() -> Iterator[str]:
    """One document per standard-library module: its docstrings in source order."""
    root = Path(sysconfig.get_paths()["stdlib"])
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("config-"))
        for name in sorted(filenames):
            if not name.endswith(".py"):
                continue
            try:
                source = (Path(dirpath) / name).read_text(encoding="utf-8")
                tree = ast.parse(source)
            except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
                continue
            parts = []
            for node in ast.walk(tree):
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                    text = ast.get_docstring(node, clean=True)
                    if text and len(text) >= 40:
                        parts.append(text)
            if parts:
                yield "\n\n".join(parts)


def demo_documents(text_file: str | os.PathLike | None = None, max_chars: int | None = None) -> list[str]:
    """The documents of the demo corpus, in a fixed order.

    Without ``text_file``: the pydoc topic texts (sorted by topic) followed by the
    standard library's docstrings (one document per module, modules in sorted path
    order) of the running Python.  With ``text_file``: its paragraphs (separated by
    blank lines).  ``max_chars`` stops adding documents once that many characters are
    collected.
    """
    if text_file is not None:
        path = Path(text_file)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise GolfsweepError(f"text_file {path}: cannot read as UTF-8 text ({exc})") from exc
        docs: Iterable[str] = [inspect.cleandoc(p) for p in re.split(r"\n\s*\n", text) if p.strip()]
    else:
        from pydoc_data.topics import topics

        docs = itertools.chain((topics[k].strip() for k in sorted(topics) if topics[k].strip()),
                               _stdlib_docstrings())
    kept, total = [], 0
    for d in docs:
        if max_chars is not None and total >= max_chars:
            break
        kept.append(d)
        total += len(d)
    return kept


def _train_tokenizer(docs: list[str], vocab_size: int, seed: int) -> bytes:
    import sentencepiece as spm

    lines = []
    for d in docs:
        for line in d.splitlines():
            line = line.strip()
            if len(line) > _MAX_TRAIN_LINE_CHARS:
                lines += textwrap.wrap(line, _MAX_TRAIN_LINE_CHARS)
            elif line:
                lines.append(line)
    if hasattr(spm, "set_random_generator_seed"):
        spm.set_random_generator_seed(seed)
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines),
            model_writer=model,
            model_type="bpe",
            vocab_size=vocab_size,
            byte_fallback=True,
            character_coverage=0.9995,
            split_digits=True,
            num_threads=1,
            input_sentence_size=0,
            shuffle_input_sentence=False,
            unk_id=0,
            bos_id=1,
            eos_id=2,
            pad_id=-1,
            hard_vocab_limit=True,
            minloglevel=2,
        )
    except RuntimeError as exc:
        raise GolfsweepError(
            f"vocab_size={vocab_size}: SentencePiece could not train on {len(lines)} lines ({exc})"
        ) from exc
    return model.getvalue()


def _encode(sp, docs: list[str]) -> np.ndarray:
    bos = sp.bos_id()
    pieces = sp.encode(docs)
    out = np.empty(sum(len(p) + 1 for p in pieces), dtype=np.uint16)
    i = 0
    for ids in pieces:
        out[i] = bos
        out[i + 1 : i + 1 + len(ids)] = ids
        i += len(ids) + 1
    return out


def build_demo_data(
    out_dir: str | os.PathLike,
    text_file: str | os.PathLike | None = None,
    vocab_size: int = 1024,
    val_fraction: float = 0.1,
    seed: int = 0,
    max_chars: int | None = None,
) -> DemoData:
    """Build the demo dataset into ``out_dir`` and return where it is.

    The documents (see :func:`demo_documents`) are shuffled with ``seed``; the first
    ones, about ``val_fraction`` of the characters, become the validation split and
    the rest the training split.  A SentencePiece BPE tokenizer with ``vocab_size``
    pieces and byte fallback is trained on the training split only, single-threaded
    and in a fixed order, so the same inputs give byte-identical files.  Every
    document is encoded as BOS followed by its tokens.  Existing files of the same
    names are replaced.
    """
    problems = []
    if not 0.0 < val_fraction < 1.0:
        problems.append(f"val_fraction: must be in (0, 1), got {val_fraction}")
    if not 256 + 8 <= vocab_size <= 65536:
        problems.append(f"vocab_size: must be in 264..65536 (256 byte pieces + specials), got {vocab_size}")
    if max_chars is not None and max_chars <= 0:
        problems.append(f"max_chars: must be positive, got {max_chars}")
    if problems:
        raise GolfsweepError("; ".join(problems))

    docs = demo_documents(text_file, max_chars)
    if len(docs) < 2:
        raise GolfsweepError(f"need at least 2 documents (paragraphs) for a train/val split, got {len(docs)}")
    order = np.random.default_rng(seed).permutation(len(docs))
    n_chars = sum(len(d) for d in docs)
    val_docs, train_docs, val_chars = [], [], 0
    for i in order:
        if val_chars < val_fraction * n_chars and len(val_docs) < len(docs) - 1:
            val_docs.append(docs[i])
            val_chars += len(docs[i])
        else:
            train_docs.append(docs[i])

    import sentencepiece as spm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model_bytes = _train_tokenizer(train_docs, vocab_size, seed)
    sp = spm.SentencePieceProcessor(model_proto=model_bytes)
    train_tokens = _encode(sp, train_docs)
    val_tokens = _encode(sp, val_docs)

    tok_path = out / TOKENIZER_FILE
    tmp = tok_path.with_name(tok_path.name + ".tmp")
    tmp.write_bytes(model_bytes)
    os.replace(tmp, tok_path)
    write_shard(out / TRAIN_SHARD, train_tokens)
    write_shard(out / VAL_SHARD, val_tokens)
    return DemoData(
        data_path=out,
        tokenizer_path=tok_path,
        vocab_size=vocab_size,
        n_train_tokens=int(train_tokens.size),
        n_val_tokens=int(val_tokens.size),
        n_documents=len(docs),
        n_chars=n_chars,
    )
