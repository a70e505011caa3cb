"""golfsweep reference trainer for OpenAI Parameter Golf.

One self-contained file: it trains a small GPT on the challenge's token shards,
quantizes the block matrices with full-Hessian GPTQ, writes the compressed artifact
``final_model.int{GPTQ_BITS}.ptz`` and scores the *dequantized* artifact in bits per
byte of validation text (plain, sliding-window and score-first test-time training).

    torchrun --standalone --nproc_per_node=8 train_gpt.py
    DATA_PATH=./data TOKENIZER_PATH=./data/tokenizer.model python train_gpt.py   # 1 process, CPU ok

Every setting is an environment variable read in ``Hyperparameters`` (names in upper
case, e.g. ``NUM_LAYERS=2 MODEL_DIM=64``).  On CUDA it uses NCCL, bf16 autocast,
torch.compile and flash-attn when importable; on CPU gloo and fp32.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

# ----------------------------------------------------------------------------- hyperparameters


@dataclass
class Hyperparameters:
    """All knobs.  ``from_env`` reads each field from the upper-cased environment variable."""

    data_path: str = "./data"
    tokenizer_path: str = "./data/tokenizer.model"
    vocab_size: int = 1024
    seed: int = 1337
    run_id: str = "run"
    out_dir: str = "."
    # training
    iterations: int = 20000
    warmup_steps: int = 20  # steps run to prime kernels/compilation, then model and optimizers are reset
    warmdown_iters: int = 1200  # LR decays linearly to 0 over the last iterations (or the wallclock estimate)
    train_batch_tokens: int = 524288
    train_seq_len: int = 1024
    train_micro_batch_tokens: int = 65536  # per rank and forward pass; bigger batches accumulate gradients
    train_log_every: int = 200
    max_wallclock_seconds: float = 600.0  # 0 = no cap
    compile: int = 1  # torch.compile on CUDA; ignored on CPU
    # model
    num_layers: int = 9
    model_dim: int = 512
    num_heads: int = 8
    num_kv_heads: int = 4
    mlp_mult: int = 2
    qk_gain_init: float = 1.5
    logit_softcap: float = 30.0
    rope_base: float = 10000.0
    # optimizers
    matrix_lr: float = 0.04
    scalar_lr: float = 0.04
    embed_lr: float = 0.05
    muon_momentum: float = 0.95
    # evaluation
    val_batch_size: int = 524288  # tokens per evaluation forward, all ranks together
    val_loss_every: int = 0  # 0 = only at the end of training
    val_max_tokens: int = 0  # 0 = the whole validation set
    eval_seq_len: int = 0  # 0 = TRAIN_SEQ_LEN
    eval_stride: int = 0  # > 0 adds a sliding-window evaluation
    # score-first test-time training
    ttt_enabled: int = 0
    ttt_lr: float = 0.002
    ttt_epochs: int = 1
    ttt_chunk_tokens: int = 32768
    ttt_batch_seqs: int = 32  # sequences of EVAL_SEQ_LEN per TTT optimizer step, all ranks together
    # quantization
    gptq_bits: int = 6
    gptq_damp: float = 0.01
    gptq_calib_tokens: int = 131072

    @classmethod
    def from_env(cls, environ=os.environ) -> "Hyperparameters":
        values, problems = {}, []
        for f in fields(cls):
            raw = environ.get(f.name.upper())
            if raw is None:
                continue
            kind = {"int": int, "float": float, "str": str}[f.type]
            try:
                values[f.name] = kind(raw)
            except ValueError:
                problems.append(f"{f.name.upper()}={raw!r}: expected {f.type}")
        hp = cls(**values)
        problems += hp.problems()
        if problems:
            raise SystemExit("bad hyperparameters: " + "; ".join(problems))
        return hp

    def problems(self) -> list[str]:
        p = []
        positive = ("iterations", "train_seq_len", "train_batch_tokens", "num_layers", "model_dim", "num_heads",
                    "num_kv_heads", "mlp_mult", "vocab_size", "ttt_chunk_tokens", "ttt_batch_seqs",
                    "val_batch_size", "gptq_calib_tokens", "train_log_every", "train_micro_batch_tokens")
        for name in positive:
            if getattr(self, name) <= 0:
                p.append(f"{name.upper()}={getattr(self, name)}: must be > 0")
        if p:
            return p
        if self.model_dim % self.num_heads or (self.model_dim // self.num_heads) % 2:
            p.append(f"MODEL_DIM={self.model_dim}: must split into NUM_HEADS={self.num_heads} heads of even size")
        if self.num_heads % self.num_kv_heads:
            p.append(f"NUM_KV_HEADS={self.num_kv_heads}: must divide NUM_HEADS={self.num_heads}")
        if not 2 <= self.gptq_bits <= 8:
            p.append(f"GPTQ_BITS={self.gptq_bits}: must be in 2..8")
        non_negative = ("gptq_damp", "ttt_lr", "ttt_epochs", "eval_stride", "eval_seq_len", "val_max_tokens",
                        "warmup_steps", "warmdown_iters", "max_wallclock_seconds", "val_loss_every")
        for name in non_negative:
            if getattr(self, name) < 0:
                p.append(f"{name.upper()}={getattr(self, name)}: must be >= 0")
        return p

    @property
    def eval_len(self) -> int:
        return self.eval_seq_len or self.train_seq_len


# ----------------------------------------------------------------------------- distributed setup and logging


@dataclass
class Runtime:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def master(self) -> bool:
        return self.rank == 0

    def autocast(self):
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return torch.autocast("cpu", enabled=False)


def setup_runtime() -> Runtime:
    """Device and process group; DDP when torchrun set WORLD_SIZE > 1 (NCCL on CUDA, gloo on CPU)."""
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    else:
        device = torch.device("cpu")
    if world > 1:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Runtime(rank, world, local, device)


def all_reduce_sum(t: Tensor, rt: Runtime) -> Tensor:
    if rt.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


_RT: Runtime | None = None


def log0(msg: str) -> None:
    if _RT is None or _RT.master:
        print(msg, flush=True)


# ----------------------------------------------------------------------------- shard loading

SHARD_MAGIC = 20240520
SHARD_VERSION = 1
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4


def load_shard(path: str | Path) -> np.ndarray:
    """Tokens of one shard (read-only uint16 memmap).  Bad files raise SystemExit naming the file."""
    path = Path(path)
    size = path.stat().st_size
    if size < HEADER_BYTES:
        raise SystemExit(f"{path}: {size} bytes is shorter than the {HEADER_BYTES}-byte shard header")
    header = np.fromfile(path, dtype="<i4", count=HEADER_INTS)
    if header[0] != SHARD_MAGIC:
        raise SystemExit(f"{path}: bad shard magic {int(header[0])}, expected {SHARD_MAGIC}")
    if header[1] != SHARD_VERSION:
        raise SystemExit(f"{path}: unsupported shard version {int(header[1])}, expected {SHARD_VERSION}")
    n = int(header[2])
    expected = HEADER_BYTES + 2 * n
    if n < 0 or size != expected:
        raise SystemExit(f"{path}: header says {n} tokens ({expected} bytes) but the file has {size} bytes")
    return np.memmap(path, dtype="<u2", mode="r", offset=HEADER_BYTES, shape=(n,))


def shard_files(data_path: str, split: str) -> list[Path]:
    """The sorted ``fineweb_{split}_*.bin`` shards in DATA_PATH."""
    files = sorted(Path(data_path).glob(f"fineweb_{split}_*.bin"))
    if not files:
        raise SystemExit(f"DATA_PATH={data_path}: no fineweb_{split}_*.bin shards")
    return files


class TokenStream:
    """Reads the shards in order, forever, handing out contiguous runs of tokens."""

    def __init__(self, files: list[Path]):
        self.files = files
        self.file_idx = 0
        self.tokens = load_shard(files[0])
        self.pos = 0

    def take(self, n: int) -> np.ndarray:
        parts = []
        while n > 0:
            if self.pos >= len(self.tokens):
                self.file_idx = (self.file_idx + 1) % len(self.files)
                self.tokens = load_shard(self.files[self.file_idx])
                self.pos = 0
                continue
            k = min(n, len(self.tokens) - self.pos)
            parts.append(np.asarray(self.tokens[self.pos : self.pos + k]))
            self.pos += k
            n -= k
        return np.concatenate(parts).astype(np.int64)


class TrainLoader:
    """Each step every rank takes its own slice of the same contiguous run of tokens."""

    def __init__(self, files: list[Path], rt: Runtime):
        self.stream = TokenStream(files)
        self.rt = rt

    def next_batch(self, global_tokens: int, seq_len: int) -> tuple[Tensor, Tensor]:
        local = global_tokens // self.rt.world_size
        span = local + 1
        chunk = self.stream.take(span * self.rt.world_size)[self.rt.rank * span : (self.rt.rank + 1) * span]
        t = torch.from_numpy(chunk)
        x = t[:-1].reshape(-1, seq_len)
        y = t[1:].reshape(-1, seq_len)
        return x.to(self.rt.device, non_blocking=True), y.to(self.rt.device, non_blocking=True)


def load_val_tokens(data_path: str, max_tokens: int = 0) -> Tensor:
    """All validation tokens (the first ``max_tokens`` when > 0) as an int64 CPU tensor."""
    tokens = np.concatenate([np.asarray(load_shard(f)) for f in shard_files(data_path, "val")])
    if max_tokens > 0:
        tokens = tokens[:max_tokens]
    if len(tokens) < 2:
        raise SystemExit(f"DATA_PATH={data_path}: validation set has {len(tokens)} tokens, need >= 2")
    return torch.from_numpy(tokens.astype(np.int64))


# ----------------------------------------------------------------------------- tokenizer byte accounting


@dataclass
class ByteLuts:
    """Per-token byte counts for val_bpb.

    A target token contributes ``base_bytes`` plus one byte for its leading space
    ('▁') unless the previous token is a boundary (control/unknown/unused, e.g. BOS),
    where SentencePiece's decoder drops that space.  Byte-fallback tokens count one
    byte, control tokens none, so the total equals the UTF-8 length of the decoded text.
    """

    base_bytes: Tensor  # int64 [V]
    has_space: Tensor  # bool [V]
    is_boundary: Tensor  # bool [V]

    def count(self, x: Tensor, y: Tensor) -> Tensor:
        """Bytes of each target ``y`` whose previous token is ``x`` (same shape)."""
        return self.base_bytes[y] + (self.has_space[y] & ~self.is_boundary[x]).long()

    def to(self, device) -> "ByteLuts":
        return ByteLuts(self.base_bytes.to(device), self.has_space.to(device), self.is_boundary.to(device))


def build_byte_luts(sp, vocab_size: int) -> ByteLuts:
    """Byte lookup tables from a SentencePiece model (see :class:`ByteLuts`)."""
    n = sp.get_piece_size()
    base = torch.zeros(vocab_size, dtype=torch.long)
    space = torch.zeros(vocab_size, dtype=torch.bool)
    boundary = torch.ones(vocab_size, dtype=torch.bool)
    for i in range(n):
        if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i):
            continue
        boundary[i] = False
        if sp.is_byte(i):
            base[i] = 1
            continue
        piece = sp.id_to_piece(i)
        if piece.startswith("\u2581"):
            space[i] = True
            piece = piece[1:]
        base[i] = len(piece.replace("\u2581", " ").encode("utf-8"))
    return ByteLuts(base, space, boundary)


def load_tokenizer(hp: Hyperparameters):
    import sentencepiece as spm

    if not Path(hp.tokenizer_path).is_file():
        raise SystemExit(f"TOKENIZER_PATH={hp.tokenizer_path}: no such file")
    sp = spm.SentencePieceProcessor(model_file=hp.tokenizer_path)
    if sp.get_piece_size() != hp.vocab_size:
        raise SystemExit(
            f"VOCAB_SIZE={hp.vocab_size}: tokenizer {hp.tokenizer_path} has {sp.get_piece_size()} pieces"
        )
    return sp


# ----------------------------------------------------------------------------- model


def rms_norm(x: Tensor) -> Tensor:
    return F.rms_norm(x, (x.size(-1),))


class Rotary(nn.Module):
    def __init__(self, head_dim: int, base: float):
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """Rotate ``x`` of shape (B, T, H, D)."""
        t = torch.arange(x.size(1), device=x.device, dtype=torch.float32)
        freqs = torch.outer(t, self.inv_freq)
        cos = freqs.cos()[None, :, None, :].to(x.dtype)
        sin = freqs.sin()[None, :, None, :].to(x.dtype)
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat((x1 * cos + x2 * sin, x2 * cos - x1 * sin), dim=-1)


_FLASH_ATTN = None


def flash_attn_func_or_none():
    """flash-attn's kernel when it is importable (CUDA only), imported on first use."""
    global _FLASH_ATTN
    if _FLASH_ATTN is None:
        try:
            from flash_attn import flash_attn_func

            _FLASH_ATTN = flash_attn_func
        except Exception:
            _FLASH_ATTN = False
    return _FLASH_ATTN or None


def causal_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """q: (B, T, H, D), k/v: (B, T, Hkv, D) -> (B, T, H, D)."""
    if q.is_cuda and q.dtype in (torch.bfloat16, torch.float16):
        flash = flash_attn_func_or_none()
        if flash is not None:
            return flash(q, k, v, causal=True)
    y = F.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True,
        enable_gqa=k.size(2) != q.size(2),
    )
    return y.transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, hp: Hyperparameters):
        super().__init__()
        self.n_head, self.n_kv = hp.num_heads, hp.num_kv_heads
        self.head_dim = hp.model_dim // hp.num_heads
        kv_dim = self.n_kv * self.head_dim
        self.c_q = nn.Linear(hp.model_dim, hp.model_dim, bias=False)
        self.c_k = nn.Linear(hp.model_dim, kv_dim, bias=False)
        self.c_v = nn.Linear(hp.model_dim, kv_dim, bias=False)
        self.proj = nn.Linear(hp.model_dim, hp.model_dim, bias=False)
        # q and k are RMS-normalized, so this gain sets the attention temperature per head.
        self.q_gain = nn.Parameter(torch.full((self.n_head,), hp.qk_gain_init))
        self.rotary = Rotary(self.head_dim, hp.rope_base)

    def forward(self, x: Tensor) -> Tensor:
        B, T, C = x.shape
        q = self.c_q(x).view(B, T, self.n_head, self.head_dim)
        k = self.c_k(x).view(B, T, self.n_kv, self.head_dim)
        v = self.c_v(x).view(B, T, self.n_kv, self.head_dim)
        q = self.rotary(rms_norm(q)) * self.q_gain.to(q.dtype)[None, None, :, None]
        k = self.rotary(rms_norm(k))
        # Autocast runs rms_norm in fp32; bring q/k back to v's (bf16) dtype for flash-attn.
        y = causal_attention(q.to(v.dtype), k.to(v.dtype), v)
        return self.proj(y.reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, hp: Hyperparameters):
        super().__init__()
        self.fc = nn.Linear(hp.model_dim, hp.mlp_mult * hp.model_dim, bias=False)
        self.proj = nn.Linear(hp.mlp_mult * hp.model_dim, hp.model_dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(F.relu(self.fc(x)).square())


class Block(nn.Module):
    def __init__(self, hp: Hyperparameters):
        super().__init__()
        self.attn = Attention(hp)
        self.mlp = MLP(hp)
        self.attn_scale = nn.Parameter(torch.ones(hp.model_dim))
        self.mlp_scale = nn.Parameter(torch.ones(hp.model_dim))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn_scale.to(x.dtype) * self.attn(rms_norm(x))
        return x + self.mlp_scale.to(x.dtype) * self.mlp(rms_norm(x))


class GPT(nn.Module):
    def __init__(self, hp: Hyperparameters):
        super().__init__()
        self.softcap = hp.logit_softcap
        self.tok_emb = nn.Embedding(hp.vocab_size, hp.model_dim)
        self.blocks = nn.ModuleList(Block(hp) for _ in range(hp.num_layers))
        nn.init.normal_(self.tok_emb.weight, std=0.02)
        for block in self.blocks:
            # Residual branches start as identity maps; Muon grows them from there.
            nn.init.zeros_(block.attn.proj.weight)
            nn.init.zeros_(block.mlp.proj.weight)

    def forward(self, idx: Tensor) -> Tensor:
        """Soft-capped fp32 logits (B, T, V); the output head is the tied embedding."""
        x = rms_norm(self.tok_emb(idx))
        for block in self.blocks:
            x = block(x)
        logits = F.linear(rms_norm(x), self.tok_emb.weight.to(x.dtype)).float()
        if self.softcap > 0:
            logits = self.softcap * torch.tanh(logits / self.softcap)
        return logits

    def token_losses(self, x: Tensor, y: Tensor) -> Tensor:
        logits = self(x)
        return F.cross_entropy(logits.view(-1, logits.size(-1)), y.reshape(-1), reduction="none").view(y.shape)

    def loss(self, x: Tensor, y: Tensor) -> Tensor:
        logits = self(x)
        return F.cross_entropy(logits.view(-1, logits.size(-1)), y.reshape(-1))


# ----------------------------------------------------------------------------- optimizers

# Quintic Newton-Schulz coefficients chosen to push singular values towards 1 quickly.
NS_COEFFS = (3.4445, -4.7750, 2.0315)


def newton_schulz(g: Tensor, steps: int = 5) -> Tensor:
    """Approximately replace ``g`` by U V^T from its SVD (an orthogonalized update)."""
    a, b, c = NS_COEFFS
    x = g.bfloat16() if g.is_cuda else g.float()
    x = x / (x.norm() + 1e-7)
    tall = x.size(0) > x.size(1)
    if tall:
        x = x.T
    for _ in range(steps):
        A = x @ x.T
        x = a * x + (b * A + c * A @ A) @ x
    return x.T if tall else x


class Muon(torch.optim.Optimizer):
    """SGD with Nesterov momentum whose 2-D update is orthogonalized by Newton-Schulz.

    Every rank holds the same (all-reduced) gradients and runs the same update.
    """

    def __init__(self, params, lr: float, momentum: float, ns_steps: int = 5):
        super().__init__(params, dict(lr=lr, momentum=momentum, ns_steps=ns_steps))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            mu = group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p.grad)
                buf = state["momentum_buffer"]
                buf.mul_(mu).add_(p.grad)
                update = newton_schulz(p.grad.add(buf, alpha=mu), group["ns_steps"])
                update *= max(1.0, p.size(0) / p.size(1)) ** 0.5
                p.add_(update.to(p.dtype), alpha=-group["lr"])


def build_optimizers(model: GPT, hp: Hyperparameters, rt: Runtime) -> list[torch.optim.Optimizer]:
    """Muon for the 2-D block matrices; Adam for the tied embedding and the per-channel/per-head scalars."""
    matrices = [p for n, p in model.blocks.named_parameters() if p.ndim == 2]
    scalars = [p for n, p in model.blocks.named_parameters() if p.ndim < 2]
    fused = rt.device.type == "cuda"
    opts = [
        Muon(matrices, lr=hp.matrix_lr, momentum=hp.muon_momentum),
        torch.optim.Adam(
            [dict(params=[model.tok_emb.weight], lr=hp.embed_lr), dict(params=scalars, lr=hp.scalar_lr)],
            betas=(0.9, 0.95), eps=1e-8, fused=fused,
        ),
    ]
    for opt in opts:
        for group in opt.param_groups:
            group["base_lr"] = group["lr"]
    return opts


def lr_multiplier(step: int, elapsed_ms: float, hp: Hyperparameters) -> float:
    """1 until the warmdown, then linear to 0 at the last step (or at the wallclock cap)."""
    if hp.warmdown_iters <= 0:
        return 1.0
    remaining = hp.iterations - step
    if hp.max_wallclock_seconds > 0 and step > 0:
        step_ms = elapsed_ms / step
        remaining = min(remaining, (1000 * hp.max_wallclock_seconds - elapsed_ms) / max(step_ms, 1e-9))
    return max(0.0, min(1.0, remaining / hp.warmdown_iters))


# ----------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class Window:
    """Inputs ``tokens[start:end]`` predict ``tokens[start+1:end+1]``; targets from ``score_from`` on count.

    Positions are target indices: target ``q`` is ``tokens[q+1]`` predicted from ``tokens[:q+1]``.
    """

    start: int
    end: int
    score_from: int


def make_windows(n_targets: int, seq_len: int, stride: int = 0) -> list[Window]:
    """Windows that score every target exactly once.

    ``stride == 0``: non-overlapping windows of ``seq_len``.  ``stride > 0``: the first
    window scores its ``seq_len`` targets, each later one the next ``stride`` targets
    with up to ``seq_len`` tokens of context.
    """
    windows = []
    a = 0
    while a < n_targets:
        b = min(n_targets, a + (seq_len if stride <= 0 or a == 0 else min(stride, seq_len)))
        start = a if stride <= 0 else max(0, b - seq_len)
        windows.append(Window(start, b, a))
        a = b
    return windows


@dataclass
class EvalSums:
    loss: float = 0.0  # nats
    tokens: int = 0
    bytes: int = 0

    def add(self, other: "EvalSums") -> None:
        self.loss += other.loss
        self.tokens += other.tokens
        self.bytes += other.bytes

    @property
    def val_loss(self) -> float:
        return self.loss / max(self.tokens, 1)

    @property
    def val_bpb(self) -> float:
        return self.loss / math.log(2) / max(self.bytes, 1)


def rank_slice(items: list, rt: Runtime) -> list:
    n = len(items)
    return items[rt.rank * n // rt.world_size : (rt.rank + 1) * n // rt.world_size]


@torch.no_grad()
def score_windows(model: GPT, tokens: Tensor, windows: list[Window], batch_seqs: int, luts: ByteLuts,
                  rt: Runtime) -> EvalSums:
    """Summed loss/tokens/bytes over this rank's ``windows`` (not reduced across ranks)."""
    sums = EvalSums()
    was_training = model.training
    model.eval()
    i = 0
    while i < len(windows):
        length = windows[i].end - windows[i].start
        batch = [windows[i]]
        while len(batch) < batch_seqs and i + len(batch) < len(windows) and \
                windows[i + len(batch)].end - windows[i + len(batch)].start == length:
            batch.append(windows[i + len(batch)])
        i += len(batch)
        x = torch.stack([tokens[w.start : w.end] for w in batch]).to(rt.device)
        y = torch.stack([tokens[w.start + 1 : w.end + 1] for w in batch]).to(rt.device)
        offsets = torch.tensor([w.score_from - w.start for w in batch], device=rt.device)
        mask = torch.arange(length, device=rt.device)[None, :] >= offsets[:, None]
        with rt.autocast():
            nll = model.token_losses(x, y)
        sums.loss += float((nll.double() * mask).sum())
        sums.tokens += int(mask.sum())
        sums.bytes += int((luts.count(x, y) * mask).sum())
    model.train(was_training)
    return sums


def reduce_sums(sums: EvalSums, rt: Runtime) -> EvalSums:
    if not rt.distributed:
        return sums
    t = torch.tensor([sums.loss, float(sums.tokens), float(sums.bytes)], dtype=torch.float64, device=rt.device)
    all_reduce_sum(t, rt)
    return EvalSums(float(t[0]), int(t[1]), int(t[2]))


def eval_batch_seqs(hp: Hyperparameters, rt: Runtime) -> int:
    return max(1, hp.val_batch_size // (rt.world_size * hp.eval_len))


def evaluate(model: GPT, tokens: Tensor, hp: Hyperparameters, luts: ByteLuts, rt: Runtime,
             seq_len: int | None = None, stride: int = 0) -> EvalSums:
    """val_loss/val_bpb of ``model`` on ``tokens`` with plain (stride 0) or sliding windows."""
    windows = make_windows(len(tokens) - 1, seq_len or hp.eval_len, stride)
    local = score_windows(model, tokens, rank_slice(windows, rt), eval_batch_seqs(hp, rt), luts, rt)
    return reduce_sums(local, rt)


def ttt_chunks(windows: list[Window], chunk_tokens: int) -> list[list[Window]]:
    """Consecutive windows grouped by the chunk their first scored target falls in."""
    chunks: list[list[Window]] = []
    for w in windows:
        if chunks and chunks[-1][0].score_from // chunk_tokens == w.score_from // chunk_tokens:
            chunks[-1].append(w)
        else:
            chunks.append([w])
    return chunks


def eval_score_first_ttt(model: GPT, tokens: Tensor, hp: Hyperparameters, luts: ByteLuts, rt: Runtime,
                         stride: int = 0, on_event=None) -> EvalSums:
    """Legal test-time training: score each chunk first, then train on it.

    The validation targets are cut in order into chunks of about ``TTT_CHUNK_TOKENS``
    (whole evaluation windows, the same windows as :func:`evaluate`).  Each chunk is
    scored under ``torch.no_grad`` and only then used for ``TTT_EPOCHS`` epochs of
    SGD (momentum 0.9, steps of ``TTT_BATCH_SEQS`` sequences) at ``TTT_LR``; the last
    chunk is never trained on.  The result sums the pre-update scores only.
    ``on_event(kind, start, end)`` is called with ``"score"`` for each scored chunk
    and ``"train"`` for each optimizer step, with the half-open range of target
    positions involved.
    """
    seq_len = hp.eval_len
    windows = make_windows(len(tokens) - 1, seq_len, stride)
    chunks = ttt_chunks(windows, hp.ttt_chunk_tokens)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=hp.ttt_lr, momentum=0.9)
    batch_seqs = eval_batch_seqs(hp, rt)
    total = EvalSums()
    for ci, chunk in enumerate(chunks):
        lo, hi = chunk[0].score_from, chunk[-1].end
        total.add(reduce_sums(score_windows(model, tokens, rank_slice(chunk, rt), batch_seqs, luts, rt), rt))
        if on_event is not None:
            on_event("score", lo, hi)
        if ci == len(chunks) - 1:
            break
        starts = list(range(lo, hi, seq_len))
        model.train()
        for _ in range(hp.ttt_epochs):
            for b in range(0, len(starts), hp.ttt_batch_seqs):
                group = starts[b : b + hp.ttt_batch_seqs]
                n_targets = sum(min(s + seq_len, hi) - s for s in group)
                opt.zero_grad(set_to_none=False)
                local = rank_slice(group, rt)
                # Full-length sequences go in one batch; a short tail sequence on its own.
                for seqs in ([s for s in local if s + seq_len <= hi], [s for s in local if s + seq_len > hi]):
                    if not seqs:
                        continue
                    x = torch.stack([tokens[s : min(s + seq_len, hi)] for s in seqs]).to(rt.device)
                    y = torch.stack([tokens[s + 1 : min(s + seq_len, hi) + 1] for s in seqs]).to(rt.device)
                    with rt.autocast():
                        loss = model.token_losses(x, y).sum() / n_targets
                    loss.backward()
                if rt.distributed:
                    for p in params:
                        if p.grad is None:
                            p.grad = torch.zeros_like(p)
                        all_reduce_sum(p.grad, rt)
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                if on_event is not None:
                    on_event("train", group[0], min(group[-1] + seq_len, hi))
        model.eval()
    opt.zero_grad(set_to_none=True)
    return total


# ----------------------------------------------------------------------------- quantization (GPTQ) and serialization


def qmax_for(bits: int) -> int:
    return 2 ** (bits - 1) - 1


def row_scales(w: Tensor, bits: int) -> Tensor:
    """Per-row max-abs scales, rounded to fp16 (how they are stored) so codes are chosen
    against the scale that dequantization will actually use."""
    return (w.abs().amax(dim=1) / qmax_for(bits)).clamp_min(1e-6).half().float()


def quantize_rtn(w: Tensor, bits: int, scale: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Round-to-nearest symmetric quantization with per-row scales: (int8 codes, fp32 scales)."""
    w = w.float()
    scale = row_scales(w, bits) if scale is None else scale.float()
    q = torch.clamp(torch.round(w / scale[:, None]), -qmax_for(bits), qmax_for(bits))
    return q.to(torch.int8), scale


def dequantize(q: Tensor, scale: Tensor) -> Tensor:
    return q.float() * scale.float()[:, None]


def gptq_quantize(w: Tensor, H: Tensor, bits: int, damp: float = 0.01, block_size: int = 128,
                  scale: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """GPTQ: quantize ``w`` (out, in) column by column, pushing each column's rounding
    error onto the not-yet-quantized columns through the inverse Hessian.

    ``H`` (in, in) is X^T X of the layer's inputs; ``damp * mean(diag H)`` is added to
    its diagonal.  Columns go in order of decreasing ``diag H``.  Scales are per row
    (max-abs, as :func:`quantize_rtn`, unless given).  Returns (int8 codes, fp32 scales).
    """
    w = w.detach().float().clone()
    H = H.detach().float().clone().to(w.device)
    n_cols = w.size(1)
    qmax = qmax_for(bits)
    scale = row_scales(w, bits) if scale is None else scale.float()
    dead = torch.diag(H) == 0
    H[dead, dead] = 1.0
    w[:, dead] = 0.0
    H += damp * torch.diag(H).mean() * torch.eye(n_cols, device=H.device)
    perm = torch.argsort(torch.diag(H), descending=True)
    w = w[:, perm]
    H = H[perm][:, perm]
    # Upper Cholesky factor of H^-1: row i holds the error-propagation weights for column i.
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    q = torch.zeros_like(w)
    for c0 in range(0, n_cols, block_size):
        c1 = min(c0 + block_size, n_cols)
        wb = w[:, c0:c1].clone()
        err = torch.zeros_like(wb)
        Hb = Hinv[c0:c1, c0:c1]
        for j in range(c1 - c0):
            col = wb[:, j]
            qc = torch.clamp(torch.round(col / scale), -qmax, qmax)
            q[:, c0 + j] = qc
            e = (col - qc * scale) / Hb[j, j]
            wb[:, j:] -= e[:, None] * Hb[j, j:][None, :]
            err[:, j] = e
        w[:, c1:] -= err @ Hinv[c0:c1, c1:]
    q = q[:, torch.argsort(perm)]
    return q.to(torch.int8), scale


def quantized_names(model: GPT) -> list[str]:
    """Names of the block matrices that GPTQ quantizes (every nn.Linear in the blocks)."""
    return [f"blocks.{n}.weight" for n, m in model.blocks.named_modules() if isinstance(m, nn.Linear)]


@torch.no_grad()
def collect_hessians(model: GPT, tokens: Tensor, seq_len: int, batch_seqs: int, rt: Runtime) -> dict[str, Tensor]:
    """H = X^T X / n of the input X of every block linear layer, over ``tokens``."""
    hessians: dict[str, Tensor] = {}
    counts: dict[str, int] = {}
    hooks = []
    for name, module in model.blocks.named_modules():
        if isinstance(module, nn.Linear):
            key = f"blocks.{name}.weight"

            def hook(mod, inputs, key=key):
                x = inputs[0].detach().reshape(-1, inputs[0].size(-1)).float()
                if key not in hessians:
                    hessians[key] = torch.zeros(x.size(1), x.size(1), device=x.device)
                    counts[key] = 0
                hessians[key].addmm_(x.T, x)
                counts[key] += x.size(0)

            hooks.append(module.register_forward_pre_hook(hook))
    model.eval()
    n_seqs = (len(tokens) - 1) // seq_len
    x_all = tokens[: n_seqs * seq_len].view(n_seqs, seq_len)
    try:
        for b in range(0, n_seqs, batch_seqs):
            with rt.autocast():
                model(x_all[b : b + batch_seqs].to(rt.device))
    finally:
        for h in hooks:
            h.remove()
    return {k: v / counts[k] for k, v in hessians.items()}


QUANT_FORMAT = "golfsweep-gptq-v1"


def quantize_state_dict(state: dict[str, Tensor], hessians: dict[str, Tensor], bits: int,
                        damp: float) -> dict:
    """The artifact payload.

    Block matrices with a Hessian: GPTQ at ``bits`` (int8 container, fp16 per-row
    scales).  The tied embedding: int8 per-row round-to-nearest (it is also the output
    head, so it keeps 8 bits).  Everything else (gains, residual scales) is tiny and
    kept exactly in its own dtype.
    """
    tensors = {}
    for name, t in state.items():
        t = t.detach()
        if name in hessians:
            q, s = gptq_quantize(t, hessians[name], bits, damp)
            tensors[name] = {"kind": "gptq", "q": q.cpu(), "scale": s.half().cpu(), "dtype": str(t.dtype)}
        elif name == "tok_emb.weight":
            q, s = quantize_rtn(t, 8)
            tensors[name] = {"kind": "int8", "q": q.cpu(), "scale": s.half().cpu(), "dtype": str(t.dtype)}
        else:
            tensors[name] = {"kind": "raw", "value": t.cpu().clone()}
    return {"format": QUANT_FORMAT, "bits": bits, "tensors": tensors}


def dequantize_state_dict(payload: dict) -> dict[str, Tensor]:
    if payload.get("format") != QUANT_FORMAT:
        raise SystemExit(f"artifact format {payload.get('format')!r} is not {QUANT_FORMAT!r}")
    out = {}
    for name, entry in payload["tensors"].items():
        if entry["kind"] == "raw":
            out[name] = entry["value"]
        else:
            out[name] = dequantize(entry["q"], entry["scale"]).to(getattr(torch, entry["dtype"].split(".")[-1]))
    return out


def compress_payload(payload: dict) -> bytes:
    import zstandard

    buf = io.BytesIO()
    torch.save(payload, buf)
    return zstandard.ZstdCompressor(level=22).compress(buf.getvalue())


def decompress_payload(blob: bytes) -> dict:
    import zstandard

    raw = zstandard.ZstdDecompressor().decompress(blob)
    return torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)


def artifact_path(hp: Hyperparameters) -> Path:
    return Path(hp.out_dir) / f"final_model.int{hp.gptq_bits}.ptz"


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def calibration_tokens(hp: Hyperparameters) -> Tensor:
    """The first GPTQ_CALIB_TOKENS training tokens: GPTQ never sees validation data."""
    return torch.from_numpy(TokenStream(shard_files(hp.data_path, "train")).take(hp.gptq_calib_tokens + 1))


def load_artifact_model(path: Path, hp: Hyperparameters, rt: Runtime) -> GPT:
    model = GPT(hp).to(rt.device)
    model.load_state_dict(dequantize_state_dict(decompress_payload(path.read_bytes())))
    return model


# ----------------------------------------------------------------------------- training


def main() -> None:
    """Train, quantize and write the artifact, then evaluate the artifact as it will be scored."""
    global _RT
    hp = Hyperparameters.from_env()
    rt = _RT = setup_runtime()
    code_bytes = os.path.getsize(__file__)
    log0(f"script:{os.path.abspath(__file__)} size:{code_bytes} bytes")
    log0(f"device:{rt.device} world_size:{rt.world_size} torch:{torch.__version__}")
    for f in fields(hp):
        log0(f"{f.name}:{getattr(hp, f.name)}")

    torch.manual_seed(hp.seed)
    np.random.seed(hp.seed)
    local_tokens = hp.train_batch_tokens // rt.world_size
    if hp.train_batch_tokens % rt.world_size or local_tokens % hp.train_seq_len:
        raise SystemExit(
            f"TRAIN_BATCH_TOKENS={hp.train_batch_tokens}: must split into whole TRAIN_SEQ_LEN={hp.train_seq_len} "
            f"sequences on each of {rt.world_size} ranks"
        )
    sp = load_tokenizer(hp)
    luts = build_byte_luts(sp, hp.vocab_size).to(rt.device)
    val_tokens = load_val_tokens(hp.data_path, hp.val_max_tokens)
    train_files = shard_files(hp.data_path, "train")
    log0(f"train_shards:{len(train_files)} val_tokens:{len(val_tokens)}")

    base = GPT(hp).to(rt.device)
    n_params = sum(p.numel() for p in base.parameters())
    log0(f"model_params:{n_params}")
    model = base
    if rt.device.type == "cuda" and hp.compile:
        model = torch.compile(base)
    if rt.distributed:
        device_ids = [rt.local_rank] if rt.device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    opts = build_optimizers(base, hp, rt)

    accum_steps = min(local_tokens // hp.train_seq_len, math.ceil(local_tokens / hp.train_micro_batch_tokens))
    log0(f"grad_accum_steps:{accum_steps}")

    def train_step(x: Tensor, y: Tensor, mult: float) -> Tensor:
        for opt in opts:
            for group in opt.param_groups:
                group["lr"] = group["base_lr"] * mult
        total = torch.zeros((), device=rt.device)
        pieces = list(zip(x.tensor_split(accum_steps), y.tensor_split(accum_steps)))
        for i, (xb, yb) in enumerate(pieces):
            # Gradients are all-reduced once, on the last micro-batch.
            sync_ctx = model.no_sync() if rt.distributed and i < len(pieces) - 1 else contextlib.nullcontext()
            with sync_ctx, rt.autocast():
                logits = model(xb)
                loss = F.cross_entropy(logits.view(-1, logits.size(-1)), yb.reshape(-1)) * (len(xb) / len(x))
            loss.backward()
            total += loss.detach()
        for opt in opts:
            opt.step()
        base.zero_grad(set_to_none=True)
        return total

    def sync():
        if rt.device.type == "cuda":
            torch.cuda.synchronize()

    if hp.warmup_steps > 0:
        # Prime kernels and compilation, then start from the same initial state.
        saved_model = {k: v.detach().clone() for k, v in base.state_dict().items()}
        saved_opts = [opt.state_dict() for opt in opts]
        warm_loader = TrainLoader(train_files, rt)
        for _ in range(hp.warmup_steps):
            train_step(*warm_loader.next_batch(hp.train_batch_tokens, hp.train_seq_len), 1.0)
        base.load_state_dict(saved_model)
        for opt, s in zip(opts, saved_opts):
            opt.load_state_dict(s)
        log0(f"warmup_steps:{hp.warmup_steps} done (model and optimizers reset)")

    loader = TrainLoader(train_files, rt)
    train_ms = 0.0
    stop_after: int | None = None
    step = 0
    sync()
    t0 = time.perf_counter()
    while True:
        last = step == hp.iterations or (stop_after is not None and step >= stop_after)
        if step > 0 and (last or (hp.val_loss_every > 0 and step % hp.val_loss_every == 0)):
            sync()
            train_ms += 1000 * (time.perf_counter() - t0)
            s = evaluate(base, val_tokens, hp, luts, rt)
            log0(f"step:{step}/{hp.iterations} val_loss:{s.val_loss:.4f} val_bpb:{s.val_bpb:.4f} "
                 f"train_time:{train_ms:.0f}ms step_avg:{train_ms / step:.2f}ms")
            sync()
            t0 = time.perf_counter()
        if last:
            break
        x, y = loader.next_batch(hp.train_batch_tokens, hp.train_seq_len)
        elapsed = train_ms + 1000 * (time.perf_counter() - t0)
        loss = train_step(x, y, lr_multiplier(step, elapsed, hp))
        step += 1
        elapsed = train_ms + 1000 * (time.perf_counter() - t0)
        if step <= 5 or step % hp.train_log_every == 0 or step == hp.iterations:
            log0(f"step:{step}/{hp.iterations} train_loss:{float(loss):.4f} "
                 f"train_time:{elapsed:.0f}ms step_avg:{elapsed / step:.2f}ms")
        if hp.max_wallclock_seconds > 0 and stop_after is None:
            hit = torch.tensor(float(elapsed >= 1000 * hp.max_wallclock_seconds), device=rt.device)
            if rt.distributed:
                dist.all_reduce(hit, op=dist.ReduceOp.MAX)
            if hit.item() > 0:
                stop_after = step
    if stop_after is not None and stop_after < hp.iterations:
        log0(f"stopping_early: wallclock_cap train_time:{train_ms:.0f}ms step:{step}/{hp.iterations}")
    if rt.device.type == "cuda":
        log0(f"peak_memory:{torch.cuda.max_memory_allocated() // 2**20}MiB")

    # ------------------------------------------------------------------ quantize, compress, write
    path = artifact_path(hp)
    tag = f"int{hp.gptq_bits}"
    if rt.master:
        t_q = time.perf_counter()
        calib = calibration_tokens(hp)
        hessians = collect_hessians(base, calib, hp.train_seq_len, max(1, local_tokens // hp.train_seq_len), rt)
        payload = quantize_state_dict(base.state_dict(), hessians, hp.gptq_bits, hp.gptq_damp)
        blob = compress_payload(payload)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, blob)
        log0(f"gptq: {len(hessians)} matrices at {hp.gptq_bits} bits damp:{hp.gptq_damp} "
             f"calib_tokens:{len(calib) - 1} time:{1000 * (time.perf_counter() - t_q):.0f}ms")
        log0(f"Serialized model {tag}+zstd: {len(blob)} bytes")
        log0(f"Code size: {code_bytes} bytes")
        log0(f"Total submission size {tag}+zstd: {len(blob) + code_bytes} bytes")
    if rt.distributed:
        dist.barrier()

    # ------------------------------------------------------------------ evaluate the dequantized artifact
    del model, base, opts
    qmodel = load_artifact_model(path, hp, rt)

    def report(label: str, s: EvalSums, t_start: float) -> None:
        ms = 1000 * (time.perf_counter() - t_start)
        log0(f"{label} val_loss:{s.val_loss:.4f} val_bpb:{s.val_bpb:.4f} eval_time:{ms:.0f}ms")
        log0(f"{label}_exact val_loss:{s.val_loss:.8f} val_bpb:{s.val_bpb:.8f} eval_time:{ms:.0f}ms")

    t_e = time.perf_counter()
    report(f"final_{tag}_zstd_roundtrip", evaluate(qmodel, val_tokens, hp, luts, rt), t_e)
    if hp.eval_stride > 0:
        t_e = time.perf_counter()
        report(f"final_{tag}_sliding_window", evaluate(qmodel, val_tokens, hp, luts, rt, stride=hp.eval_stride), t_e)
    if hp.ttt_enabled:
        t_e = time.perf_counter()
        report("legal_ttt", eval_score_first_ttt(qmodel, val_tokens, hp, luts, rt, stride=hp.eval_stride), t_e)
    if rt.distributed:
        dist.barrier()
        dist.destroy_process_group()


def leave_after_gloo() -> None:
    """End a finished CPU (gloo) run without interpreter finalization.

    With torch 2.13 DistributedDataParallel leaves Python references to the gloo process group
    behind, so destroy_process_group cannot join gloo's worker threads. One of them may still be
    releasing the last collective's tensor (which needs the GIL) while the interpreter finalizes,
    and the process then aborts with SIGABRT ("terminate called without an active exception")
    after everything was written. Output is flushed first; nothing else is left to run.
    """
    if _RT is not None and _RT.distributed and _RT.device.type == "cpu":
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


if __name__ == "__main__":
    main()
    leave_after_gloo()
