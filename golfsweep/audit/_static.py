"""Static compliance audit of Parameter Golf training scripts.

The audit is a small abstract interpreter over the script's AST. It starts at the module body
(normally ending in ``if __name__ == "__main__": main()``) and follows calls into the script's own
functions and methods, tracking for every value whether it derives from validation tokens, from
training data, or from something it cannot see. Validation-derived values also carry an *identity*:
which part of the validation set they are, relative to the loops that slice it (the current chunk,
an earlier chunk, a later chunk, or all of it).

Three kinds of event are recorded in program order:

* score: a model or loss call whose inputs include validation tokens;
* update: ``.backward()`` or ``torch.autograd.grad`` on a value computed from validation tokens;
* calibrate: a model call or Gram matrix on validation data inside quantization calibration code.

A forward pass whose output later reaches ``.backward()`` was a training forward, not a score, and
is withdrawn. The rules are then set checks: an update may only touch tokens already scored, and a
score must not touch tokens the model was already updated on. Loop bodies run twice; at the back
edge "current chunk" becomes "earlier chunk", which is what makes score-first TTT come out clean
and train-then-score, pre-quantization TTT and multi-pass rescoring come out flagged.
"""

from __future__ import annotations

import ast
import builtins
import enum
import functools
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, replace
from os import PathLike
from pathlib import Path

__all__ = ["AuditReport", "Finding", "Verdict", "audit_file", "audit_source"]


# ---------------------------------------------------------------------------------------------
# Public report types
# ---------------------------------------------------------------------------------------------


class Verdict(str, enum.Enum):
    CLEAN = "clean"
    FLAGGED = "flagged"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Finding:
    """One reason for a verdict. ``severity`` is ``"violation"`` (flags the script) or ``"warning"``."""

    rule: str
    line: int
    end_line: int | None
    message: str
    severity: str

    def to_dict(self) -> dict:
        return {"rule": self.rule, "line": self.line, "end_line": self.end_line, "message": self.message,
                "severity": self.severity}


@dataclass(frozen=True)
class AuditReport:
    """Verdict on one script: ``flagged`` if any finding is a violation, else ``unknown`` if part of
    the script could not be analysed (the notes say what), else ``clean``."""

    path: str | None
    verdict: Verdict
    findings: tuple[Finding, ...]
    notes: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"path": self.path, "verdict": self.verdict.value,
                "findings": [f.to_dict() for f in self.findings], "notes": list(self.notes)}


RULE_UPDATE_BEFORE_SCORE = "update_before_score"
RULE_RESCORE = "rescore_after_update"
RULE_VAL_CALIBRATION = "val_calibration"
RULE_NETWORK = "network"
RULE_TRAIN_IN_EVAL = "train_data_in_eval"
RULE_DYNAMIC = "dynamic_code"
RULE_UNAUDITED = "unaudited_code"


# ---------------------------------------------------------------------------------------------
# Vocabulary: how names, strings and library calls are read
# ---------------------------------------------------------------------------------------------

_VAL_WORDS = frozenset({"val", "valid", "validation", "eval", "heldout", "holdout"})
_TRAIN_WORDS = frozenset({"train", "training", "trn"})
_DATA_WORDS = {
    "tokens", "token", "tok", "toks", "data", "dataset", "ds", "set", "ids", "docs", "doc", "documents",
    "chunks", "chunk", "windows", "shards", "shard", "files", "file", "path", "paths", "pattern", "glob",
    "loader", "dl", "iter", "stream", "batches", "seqs", "sequences", "text", "corpus", "split", "x", "y",
    "inputs", "targets", "input", "target", "buf", "buffer", "arr", "array", "tensor", "dir",
}
# A name with one of these words is a setting or a statistic (val_batch_size, train_seq_len,
# val_loss), not data, whatever else it says.
_CONFIG_WORDS = {
    "len", "length", "size", "sz", "every", "interval", "freq", "stride", "steps", "step", "lr", "frac",
    "fraction", "ratio", "count", "num", "n", "max", "min", "batch", "bs", "epochs", "epoch", "dim",
    "limit", "budget", "seconds", "secs", "time", "ms", "loss", "losses", "bpb", "seed", "mode", "flag",
    "enabled", "enable", "only", "pct", "tokens_per", "frequency", "fn", "func",
}
_EVAL_FN_WORDS = {"eval", "evaluate", "evaluation", "evaluator", "score", "scoring", "scorer", "ttt",
                  "validation", "val"}
_CALIB_FN_WORDS = {"calib", "calibrate", "calibration", "gptq", "hessian", "hessians", "awq", "fisher"}

_SPLIT_VAL = {"val", "valid", "validation", "eval", "heldout", "holdout"}
_SPLIT_TRAIN = {"train", "training"}
_VAL_IN_STR = re.compile(r"(?<![a-z])(val|valid|validation|heldout|holdout)(?![a-z])")
_TRAIN_IN_STR = re.compile(r"(?<![a-z])(train|training)(?![a-z])")
_PATHISH = ("/", "\\", "*", ".bin", ".pt", ".npy", ".npz", ".txt", ".jsonl", ".parquet", "fineweb", ".arrow")

_STDLIB = set(getattr(sys, "stdlib_module_names", ())) | {"__future__"}
_KNOWN_LIBS = {
    "torch", "numpy", "sentencepiece", "zstandard", "zstd", "brotli", "lz4", "triton", "flash_attn",
    "flash_attn_interface", "einops", "tqdm", "scipy", "pandas", "safetensors", "apex", "transformer_engine",
    "xformers", "bitsandbytes", "torchao", "numba", "typing_extensions", "mamba_ssm", "causal_conv1d", "fla",
    "liger_kernel", "tiktoken", "wandb", "datasets", "transformers", "huggingface_hub", "requests", "httpx",
    "aiohttp", "urllib3", "wget", "pycurl", "paramiko", "boto3", "cupy", "jax", "kernels", "psutil",
}
_NETWORK_MODULES = ("requests", "httpx", "aiohttp", "urllib3", "urllib.request", "urllib2", "http.client",
                    "huggingface_hub", "wget", "pycurl", "ftplib", "paramiko", "boto3", "smtplib", "telnetlib",
                    "xmlrpc.client", "websocket", "websockets", "grpc", "gdown", "kagglehub")
_NETWORK_CALLS = {
    "torch.hub.load", "torch.hub.download_url_to_file", "torch.hub.load_state_dict_from_url",
    "torch.utils.model_zoo.load_url", "datasets.load_dataset", "tiktoken.get_encoding",
    "tiktoken.encoding_for_model", "socket.socket", "socket.create_connection", "socket.create_server",
    "socket.getaddrinfo", "socket.gethostbyname", "urllib.request.urlopen", "urllib.request.urlretrieve",
}
_NETWORK_CALL_SUFFIXES = (".from_pretrained", ".snapshot_download", ".hf_hub_download")
_SHELL_CALLS = {"os.system", "os.popen", "subprocess.run", "subprocess.call", "subprocess.check_call",
                "subprocess.check_output", "subprocess.Popen", "subprocess.getoutput",
                "subprocess.getstatusoutput", "asyncio.create_subprocess_exec", "asyncio.create_subprocess_shell",
                "os.execv", "os.execvp", "os.execl", "os.execlp", "os.spawnv", "os.spawnl"}
_NETWORK_COMMANDS = {"wget", "curl", "aria2c", "scp", "rsync", "ssh", "sftp", "ftp", "nc", "netcat",
                     "huggingface-cli", "gsutil", "aws", "kaggle", "gdown"}
_NETWORK_SUBCOMMANDS = {("git", "clone"), ("git", "fetch"), ("git", "pull"), ("pip", "install"),
                        ("pip3", "install"), ("uv", "pip"), ("hf", "download")}
_DYNAMIC_BUILTINS = {"exec", "eval", "compile", "__import__"}
_DYNAMIC_CALLS = {"importlib.import_module", "importlib.util.spec_from_file_location", "runpy.run_path",
                  "runpy.run_module", "marshal.loads", "types.FunctionType", "types.CodeType"}

_GRAD_OFF = {"no_grad", "inference_mode"}
_LOSS_FUNCS = {"cross_entropy", "nll_loss", "kl_div", "binary_cross_entropy",
               "binary_cross_entropy_with_logits", "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss"}
_FILE_READERS = {"numpy.fromfile", "numpy.load", "numpy.memmap", "numpy.loadtxt", "numpy.genfromtxt",
                 "torch.load", "torch.from_file", "pickle.load", "json.load", "builtins.open", "io.open",
                 "safetensors.torch.load_file", "safetensors.numpy.load_file"}
_TEXT_PREFIXES = ("os.path.", "glob.", "fnmatch.", "pathlib.", "os.listdir", "os.scandir", "os.walk",
                  "os.fspath", "os.getcwd", "builtins.str", "builtins.repr", "builtins.format", "string.")
_TEXT_KEEPING = {"builtins.sorted", "builtins.list", "builtins.tuple", "builtins.set", "builtins.reversed",
                 "builtins.iter", "builtins.next", "builtins.min", "builtins.max"}
_METADATA_ATTRS = {"shape", "device", "dtype", "ndim", "is_cuda", "requires_grad", "grad_fn", "is_leaf",
                   "itemsize", "nbytes", "layout", "names"}
_METADATA_METHODS = {"numel", "size", "dim", "nelement", "element_size", "stride", "__len__", "is_contiguous",
                     "data_ptr", "get_device", "storage_offset", "count_nonzero", "ndimension"}
_MUTATORS = {"append", "extend", "insert", "add", "update", "setdefault", "appendleft", "extendleft", "put",
             "put_nowait", "push", "copy_", "add_", "index_copy_", "index_put_", "scatter_", "scatter_add_"}
_SINK_METHODS = {"append", "extend", "insert", "item", "tolist"}
_READ_METHODS = {"read", "read_bytes", "read_text", "readlines", "readline", "readinto"}
# Methods of tensors, arrays, lists, dicts and strings: they reshape or move data, they do not run a model.
_PASS_METHODS = {
    "to", "cuda", "cpu", "float", "half", "bfloat16", "double", "long", "int", "short", "bool", "byte", "type",
    "type_as", "view", "view_as", "reshape", "reshape_as", "flatten", "unflatten", "squeeze", "unsqueeze",
    "permute", "transpose", "t", "contiguous", "clone", "detach", "detach_", "item", "tolist", "numpy", "sum",
    "mean", "max", "min", "amax", "amin", "argmax", "argmin", "abs", "sqrt", "rsqrt", "exp", "log", "log2",
    "pow", "clamp", "clamp_", "clamp_min", "clamp_max", "round", "split", "chunk", "unfold", "narrow",
    "index_select", "gather", "scatter", "masked_fill", "masked_fill_", "repeat", "repeat_interleave",
    "expand", "expand_as", "new_zeros", "new_ones", "new_empty", "new_full", "new_tensor", "fill_", "zero_",
    "add", "sub", "mul", "mul_", "div", "div_", "sub_", "neg", "cumsum", "cumprod", "roll", "diff", "flip",
    "sort", "topk", "any", "all", "nonzero", "eq", "ne", "lt", "gt", "le", "ge", "where", "tile",
    "masked_select", "pin_memory", "share_memory_", "requires_grad_", "astype", "tobytes", "get", "items",
    "keys", "values", "pop", "popleft", "copy", "format", "join", "strip", "lstrip", "rstrip", "replace",
    "lower", "upper", "startswith", "endswith", "splitlines", "encode", "decode", "index", "count", "std",
    "var", "norm", "square", "float32", "softmax", "log_softmax", "sigmoid", "tanh", "relu", "exp_",
    "lerp_", "addcmul_", "addcdiv_", "sqrt_", "abs_", "sign", "frac", "trunc", "floor", "ceil", "bincount",
    "float_", "glob", "rglob", "iterdir", "exists", "is_file", "is_dir", "resolve", "with_suffix", "open",
    "stem", "name", "parent", "matmul", "mm", "bmm", "addmm", "addmm_", "baddbmm", "outer", "dot", "einsum",
    "triu", "tril", "fill_diagonal_", "diag", "diagonal", "inverse", "cholesky", "register_hook",
}
_COMMON_METHODS = _PASS_METHODS | _MUTATORS | _METADATA_METHODS | _SINK_METHODS | _READ_METHODS | {
    "forward", "step", "zero_grad", "state_dict", "load_state_dict", "parameters", "named_parameters",
    "modules", "children", "apply", "close", "write", "flush", "reset", "run", "next", "send", "call", "load",
    "save", "train", "eval", "backward", "register_forward_hook", "remove", "wait", "synchronize", "record",
}
_FUNC_WORDS_DATA_SOURCE = {"load", "read", "get", "build", "make", "open", "fetch"}


@functools.lru_cache(maxsize=4096)
def _words(name: str) -> tuple[str, ...]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    return tuple(w for w in re.split(r"[^a-z]+", spaced.lower()) if w)


@functools.lru_cache(maxsize=4096)
def _is_split_name(name: str, split_words: frozenset[str]) -> bool:
    """Whether an identifier names data of one split: ``val_tokens``, ``validDocs``, ``args.train_files``."""
    ws = set(_words(name))
    return bool(ws & split_words) and not (ws & _CONFIG_WORDS) and bool(ws & _DATA_WORDS)


@functools.lru_cache(maxsize=4096)
def _is_source_call(name: str, split_words: frozenset[str]) -> bool:
    """A call like ``load_validation_tokens(...)`` or ``get_val_data()``."""
    ws = set(_words(name))
    return bool(ws & split_words) and bool(ws & (_DATA_WORDS | _FUNC_WORDS_DATA_SOURCE)) \
        and not (ws & _CONFIG_WORDS) and not (ws & {"eval", "evaluate", "score", "ttt"} - split_words)


def _module_known(qual: str) -> bool:
    root = qual.split(".")[0]
    return root in _STDLIB or root in _KNOWN_LIBS


# ---------------------------------------------------------------------------------------------
# Abstract values
# ---------------------------------------------------------------------------------------------

_CUR, _PREV, _NEXT = "cur", "prev", "next"
_EMPTY: frozenset = frozenset()
_WHOLE: frozenset = frozenset()  # identity of the whole validation set: no loop narrows it


@dataclass(frozen=True, slots=True)
class _FuncRef:
    node: ast.AST  # FunctionDef, AsyncFunctionDef or Lambda
    owner: str | None  # class that defines it, for methods
    closure: object | None  # defining _Frame, for nested functions

    def __hash__(self) -> int:
        return hash((id(self.node), self.owner, id(self.closure)))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _FuncRef) and self.node is other.node and self.owner == other.owner \
            and self.closure is other.closure


@dataclass(frozen=True, slots=True)
class _V:
    """What the audit knows about a value.

    ``val``: holds validation tokens (or paths to them); ``out``: computed by a model or loss from
    validation tokens; ``alts``: the possible identities (sets of loop selectors) of that validation
    data; ``idx``: loop selectors carried by index-like values (``ci``, ``chunk_start``); ``pend``:
    tentative score events whose output this value carries.
    """

    val: bool = False
    out: bool = False
    alts: frozenset = _EMPTY
    idx: frozenset = _EMPTY
    train: bool = False
    unk: bool = False
    text: bool = False
    pend: frozenset = _EMPTY
    funcs: frozenset = _EMPTY
    classes: frozenset = _EMPTY
    inst: frozenset = _EMPTY
    lib: str | None = None

    def plain(self) -> bool:
        return not (self.val or self.out or self.train or self.unk or self.pend)

    def data(self) -> _V:
        """The value as data: callables and class information stripped."""
        if not (self.funcs or self.classes or self.inst or self.lib):
            return self
        return replace(self, funcs=_EMPTY, classes=_EMPTY, inst=_EMPTY, lib=None)


_CLEAN = _V()
_TEXT = _V(text=True)
_UNK = _V(unk=True)
_VAL_SRC = _V(val=True, alts=frozenset({_WHOLE}))
_TRAIN_SRC = _V(train=True)


def _join(*values: _V | None) -> _V:
    vs = [v for v in values if v is not None]
    if not vs:
        return _CLEAN
    if len(vs) == 1:
        return vs[0]
    libs = {v.lib for v in vs}
    return _V(
        val=any(v.val for v in vs), out=any(v.out for v in vs),
        alts=frozenset().union(*(v.alts for v in vs)), idx=frozenset().union(*(v.idx for v in vs)),
        train=any(v.train for v in vs), unk=any(v.unk for v in vs), text=any(v.text for v in vs),
        pend=frozenset().union(*(v.pend for v in vs)), funcs=frozenset().union(*(v.funcs for v in vs)),
        classes=frozenset().union(*(v.classes for v in vs)), inst=frozenset().union(*(v.inst for v in vs)),
        lib=libs.pop() if len(libs) == 1 else None,
    )


def _rels(ident: frozenset, loop: int) -> set[str]:
    return {r for l, r in ident if l == loop}


def _loops(ident: frozenset) -> set[int]:
    return {l for l, _ in ident}


def _overlap(a: frozenset, b: frozenset) -> bool:
    """Whether two identities may share tokens: they differ only if some loop selects disjoint chunks."""
    return all(_rels(a, L) & _rels(b, L) for L in _loops(a) & _loops(b))


def _covers(s: frozenset, u: frozenset) -> bool:
    """Whether identity ``s`` contains identity ``u``."""
    return all(_rels(u, L) and _rels(u, L) <= _rels(s, L) for L in _loops(s))


def _covered(u: frozenset, scored: Iterable[frozenset]) -> bool:
    scored = list(scored)
    if any(_covers(s, u) for s in scored):
        return True
    for L in _loops(u):  # a span over several chunks is covered if each chunk is
        rels = _rels(u, L)
        if len(rels) > 1:
            rest = frozenset(s for s in u if s[0] != L)
            return all(_covered(rest | {(L, r)}, scored) for r in rels)
    return False


def _shift(loop: int):
    """Back edge of ``loop``: this iteration's chunk becomes an earlier one, the next one becomes current."""
    def f(ident: frozenset) -> frozenset:
        if not any(l == loop for l, _ in ident):
            return ident
        return frozenset((l, (_PREV if r in (_CUR, _PREV) else _CUR) if l == loop else r) for l, r in ident)
    return f


def _drop(loops: set[int] | frozenset):
    def f(ident: frozenset) -> frozenset:
        if not any(l in loops for l, _ in ident):
            return ident
        return frozenset(s for s in ident if s[0] not in loops)
    return f


def _keep(active: set[int]):
    def f(ident: frozenset) -> frozenset:
        if all(l in active for l, _ in ident):
            return ident
        return frozenset(s for s in ident if s[0] in active)
    return f


def _vmap(v: _V, f) -> _V:
    if not v.alts and not v.idx:
        return v
    alts = frozenset(f(a) for a in v.alts)
    idx = f(v.idx)
    if alts == v.alts and idx == v.idx:
        return v
    return replace(v, alts=alts, idx=idx)


def _narrow(ident: frozenset, sels: dict[int, set[str]]) -> frozenset:
    out = set(ident)
    for L, rels in sels.items():
        have = _rels(ident, L)
        keep = (have & rels) or rels
        out = {s for s in out if s[0] != L} | {(L, r) for r in keep}
    return frozenset(out)


def _sels_of(ident: frozenset) -> dict[int, set[str]]:
    out: dict[int, set[str]] = {}
    for L, r in ident:
        out.setdefault(L, set()).add(r)
    return out


# ---------------------------------------------------------------------------------------------
# Interpreter state
# ---------------------------------------------------------------------------------------------


class _State:
    """Flow-sensitive facts at one program point of the current frame."""

    __slots__ = ("env", "scored", "updated", "nograd")

    def __init__(self, env: dict, scored=_EMPTY, updated=_EMPTY, nograd: bool = False) -> None:
        self.env = env
        self.scored: frozenset = scored  # {(identity, tag)}: tag None = definite, int = tentative score
        self.updated: frozenset = updated  # {identity}
        self.nograd = nograd

    def copy(self) -> _State:
        return _State(dict(self.env), self.scored, self.updated, self.nograd)

    def remap(self, f) -> None:
        self.env = {k: _vmap(v, f) for k, v in self.env.items()}
        self.scored = frozenset((f(a), t) for a, t in self.scored)
        self.updated = frozenset(f(u) for u in self.updated)


def _join_states(states: Iterable[_State | None]) -> _State | None:
    live = [s for s in states if s is not None]
    if not live:
        return None
    out = live[0].copy()
    for s in live[1:]:
        for k, v in s.env.items():
            out.env[k] = _join(out.env[k], v) if k in out.env else v
        out.scored = out.scored | s.scored
        out.updated = out.updated | s.updated
        out.nograd = out.nograd or s.nograd
    return out


class _LoopCtx:
    __slots__ = ("breaks", "continues")

    def __init__(self) -> None:
        self.breaks: list[_State] = []
        self.continues: list[_State] = []


class _Frame:
    def __init__(self, name: str, node: ast.AST | None, owner: str | None, closure: _Frame | None,
                 call_line: int | None, calib: bool, evalish: bool) -> None:
        self.name = name
        self.node = node
        self.owner = owner
        self.closure = closure
        self.call_line = call_line
        self.calib = calib
        self.evalish = evalish
        self.state: _State | None = None
        self.returns: list[_V] = []
        self.return_states: list[_State] = []
        self.loops: list[_LoopCtx] = []
        self.loopvars: dict[str, tuple[int, int]] = {}
        self.train_reads: list[Finding] = []
        self.direct_val_update = False
        self.mutated: set[str] = set()


@dataclass
class _Class:
    name: str
    node: ast.ClassDef
    bases: list[str]
    methods: dict[str, ast.AST]
    is_module: bool = False


class _OverBudget(Exception):
    pass


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def _decorator_names(node: ast.AST) -> list[str]:
    out = []
    for d in getattr(node, "decorator_list", []):
        target = d.func if isinstance(d, ast.Call) else d
        out.append(_dotted(target) or "")
    return out


def _own_nodes(fn: ast.AST) -> Iterable[ast.AST]:
    """Nodes of a function body, not descending into nested functions, classes or lambdas."""
    stack = list(fn.body) if isinstance(fn.body, list) else [fn.body]
    while stack:
        n = stack.pop()
        yield n
        for c in ast.iter_child_nodes(n):
            if not isinstance(c, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
                stack.append(c)


# ---------------------------------------------------------------------------------------------
# The interpreter
# ---------------------------------------------------------------------------------------------


class _Interp:
    MAX_DEPTH = 30
    BUDGET = 500_000  # statements and expressions visited; a 1000-line trainer needs about 20k

    def __init__(self, tree: ast.Module, unknown_modules: set[str]) -> None:
        self.tree = tree
        self.unknown_modules = unknown_modules
        self.module = _Frame("<module>", tree, None, None, None, False, False)
        self.stack: list[_Frame] = [self.module]
        self.active: list[int] = []
        self.loop_ids: dict[int, int] = {}
        self.classes: dict[str, _Class] = {}
        self.methods: dict[str, list[tuple[str, ast.AST]]] = {}
        self.attrs: dict[tuple[str | None, str], _V] = {}
        self.findings: dict[tuple[str, int], Finding] = {}
        self.pending: dict[int, list[Finding]] = {}
        self.unknown: list[str] = []
        self.notes: list[str] = []
        self.visited: set[int] = set()
        self.reported_modules: set[str] = set()
        self.steps = 0
        self.tags = 0
        self.overlap_tags: set[int] = set()
        self.root_mode = False
        self.saw_val = False
        self.eval_updates_unknown = 0
        self.inert: dict[tuple, _V] = {}
        self.interesting = 0
        self._has_update: dict[int, bool] = {}
        self._induction: dict[int, set[str]] = {}
        self.loop_pass: dict[int, int] = {}
        self.star_modules = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and not n.level
                             and n.module and any(a.name == "*" for a in n.names)]
        self._collect_classes()

    # -- setup ---------------------------------------------------------------------------------

    def _collect_classes(self) -> None:
        for node in ast.walk(self.tree):
            if isinstance(node, ast.ClassDef):
                methods = {b.name: b for b in node.body if isinstance(b, (ast.FunctionDef, ast.AsyncFunctionDef))}
                bases = [_dotted(b) or "" for b in node.bases]
                self.classes[node.name] = _Class(node.name, node, bases, methods)
                for m, fn in methods.items():
                    self.methods.setdefault(m, []).append((node.name, fn))
        for c in self.classes.values():
            c.is_module = self._is_module(c.name, set())

    def _is_module(self, name: str, seen: set[str]) -> bool:
        c = self.classes.get(name)
        if c is None or name in seen:
            return False
        seen.add(name)
        for b in c.bases:
            last = b.rsplit(".", 1)[-1]
            if last in ("Module", "ModuleList", "ModuleDict", "Sequential") or self._is_module(last, seen):
                return True
        return False

    def _find_method(self, cls: str, name: str, seen: set[str] | None = None) -> tuple[str, ast.AST] | None:
        seen = seen or set()
        c = self.classes.get(cls)
        if c is None or cls in seen:
            return None
        seen.add(cls)
        if name in c.methods:
            return cls, c.methods[name]
        for b in c.bases:
            hit = self._find_method(b.rsplit(".", 1)[-1], name, seen)
            if hit:
                return hit
        return None

    def _class_chain(self, cls: str) -> list[str]:
        """The class and its bases defined in the script, nearest first."""
        out: list[str] = []
        todo = [cls]
        while todo:
            c = todo.pop(0)
            if c in out:
                continue
            out.append(c)
            info = self.classes.get(c)
            if info is not None:
                todo.extend(b.rsplit(".", 1)[-1] for b in info.bases)
        return out

    def has_update(self, fn: ast.AST, seen: set[int] | None = None) -> bool:
        """Whether a function (or what it calls, by name) contains ``.backward()`` or ``autograd.grad``."""
        key = id(fn)
        if key in self._has_update:
            return self._has_update[key]
        seen = seen if seen is not None else set()
        if key in seen:
            return False
        seen.add(key)
        found = False
        for n in ast.walk(fn):
            if not isinstance(n, ast.Call):
                continue
            name = _dotted(n.func) or ""
            if (isinstance(n.func, ast.Attribute) and n.func.attr == "backward") or name.endswith("autograd.grad"):
                found = True
                break
            callee = n.func.attr if isinstance(n.func, ast.Attribute) else name
            targets = [f for _, f in self.methods.get(callee, [])]
            for top in self.tree.body:
                if isinstance(top, (ast.FunctionDef, ast.AsyncFunctionDef)) and top.name == callee:
                    targets.append(top)
            if any(self.has_update(t, seen) for t in targets if t is not fn):
                found = True
                break
        self._has_update[key] = found
        return found

    @property
    def frame(self) -> _Frame:
        return self.stack[-1]

    # -- reporting -----------------------------------------------------------------------------

    def _via(self) -> str:
        calls = [f"{f.name}() at line {f.call_line}" for f in self.stack[1:] if f.call_line is not None]
        if not calls:
            return ""
        if len(calls) > 3:
            calls = ["..."] + calls[-3:]
        return " [call path: " + " -> ".join(calls) + "]"

    def _finding(self, rule: str, node: ast.AST, message: str, severity: str = "violation") -> Finding:
        if self.root_mode:
            severity = "warning"
            message += " (in code not reached from the script's entry point)"
        return Finding(rule, node.lineno, getattr(node, "end_lineno", None), message + self._via(), severity)

    def _report(self, f: Finding) -> None:
        self.interesting += 1
        key = (f.rule, f.line)
        old = self.findings.get(key)
        if old is None or (old.severity == "warning" and f.severity == "violation"):
            self.findings[key] = f

    def _unknown(self, reason: str) -> None:
        self.interesting += 1
        target = self.notes if self.root_mode else self.unknown
        if reason not in target:
            target.append(reason)

    # -- events --------------------------------------------------------------------------------

    def _score(self, node: ast.AST, alts: frozenset, st: _State) -> int | None:
        """A model or loss call on validation tokens. Returns the tag of a tentative score."""
        self.interesting += 1
        tag = None
        if not st.nograd:
            self.tags += 1
            tag = self.tags
        for a in alts:
            if any(_overlap(a, u) for u in st.updated):
                f = self._finding(RULE_RESCORE, node, "validation tokens are scored after the model was "
                                  "updated on them (adapt-then-evaluate or multi-pass rescoring)")
                if tag is None:
                    self._report(f)
                else:
                    self.overlap_tags.add(tag)
                    self.pending.setdefault(tag, []).append(f)
                break
        definite = [a for a, t in st.scored if t is None]
        new = {(a, tag) for a in alts if not any(_covers(d, a) for d in definite)}
        if new:
            st.scored = st.scored | new
        return tag

    def _confirm(self, v: _V, st: _State) -> None:
        """A tentative score whose output was accumulated is a real score (unless it rescored)."""
        tags = {t for t in v.pend if t not in self.overlap_tags}
        if tags and any(t in tags for _, t in st.scored):
            st.scored = frozenset((a, None if t in tags else t) for a, t in st.scored)

    def _update(self, v: _V, node: ast.AST, st: _State) -> None:
        self.interesting += 1
        if v.pend:  # the forward passes feeding this backward were training, not scoring
            st.scored = frozenset((a, t) for a, t in st.scored if t not in v.pend)
            for t in v.pend:
                self.pending.pop(t, None)
        if v.val or v.out:
            self.frame.direct_val_update = True
            scored = [a for a, _ in st.scored]
            for u in v.alts:
                # On a loop's first pass, earlier iterations are not modelled yet; pass two checks them.
                if any(r == _PREV and self.loop_pass.get(L) == 0 for L, r in u):
                    continue
                if not _covered(u, scored):
                    self._report(self._finding(
                        RULE_UPDATE_BEFORE_SCORE, node, "the model is updated on validation tokens that have "
                        "not been scored yet (train-then-score or fine-tuning on validation data)"))
                    break
            st.updated = st.updated | v.alts
        elif v.unk:
            self._unknown(f"line {node.lineno}: gradient step on data whose origin the audit cannot trace")
        elif any(f.evalish for f in self.stack):
            self.eval_updates_unknown += 1

    def _calibrate(self, node: ast.AST, what: str) -> None:
        self._report(self._finding(RULE_VAL_CALIBRATION, node, f"quantization calibration uses validation "
                                   f"data ({what})"))

    def _train_read(self, node: ast.AST, what: str) -> None:
        self.interesting += 1
        self.frame.train_reads.append(self._finding(RULE_TRAIN_IN_EVAL, node, f"training data is read during "
                                                    f"evaluation ({what})"))

    # -- running -------------------------------------------------------------------------------

    def run(self) -> None:
        st = _State({})
        try:
            self.exec_block(self.tree.body, st)
            reached_any = bool(self.visited)
            self.root_mode = reached_any
            self._run_unreached()
        except _OverBudget:
            self.unknown.append("the script is too large or too deeply nested for the audit's analysis budget")
        except RecursionError:
            self.unknown.append("the script is too deeply nested for the audit to analyse")
        for fs in self.pending.values():
            for f in fs:
                self._report(f)
        if not self.saw_val and self.eval_updates_unknown:
            self.unknown.append("evaluation code takes gradient steps, but the audit could not identify the "
                                "validation data, so it cannot check their order")

    def _run_unreached(self) -> None:
        roots: list[tuple[ast.AST, str | None]] = []
        for top in self.tree.body:
            if isinstance(top, (ast.FunctionDef, ast.AsyncFunctionDef)):
                roots.append((top, None))
        for c in self.classes.values():
            for fn in c.methods.values():
                if not c.is_module or self.has_update(fn):
                    roots.append((fn, c.name))
        for fn, owner in roots:
            if id(fn) in self.visited:
                continue
            st = _State({}, nograd=False)
            args = [_V(inst=frozenset({owner}))] if owner else []
            self.stack = [self.module]
            self._inline(_FuncRef(fn, owner, None), fn, args, {}, st, explicit_self=bool(owner))

    def _tick(self) -> None:
        self.steps += 1
        if self.steps > self.BUDGET:
            raise _OverBudget

    def exec_block(self, stmts: list[ast.stmt], st: _State | None) -> _State | None:
        for s in stmts:
            if st is None:
                return None
            st = self.exec_stmt(s, st)
        return st

    def exec_stmt(self, s: ast.stmt, st: _State) -> _State | None:
        self._tick()
        fr = self.frame
        fr.state = st
        if isinstance(s, ast.Expr):
            self.ev(s.value, st)
        elif isinstance(s, ast.Assign):
            self._exec_assign(s.targets, s.value, st)
        elif isinstance(s, ast.AnnAssign):
            if s.value is not None:
                self._exec_assign([s.target], s.value, st)
        elif isinstance(s, ast.AugAssign):
            cur = self.ev(s.target, st)
            v = self.ev(s.value, st)
            self._confirm(v, st)
            self.assign(s.target, _join(cur, v).data(), st, None)
        elif isinstance(s, ast.Return):
            fr.returns.append(self.ev(s.value, st) if s.value is not None else _CLEAN)
            fr.return_states.append(st)
            return None
        elif isinstance(s, ast.If):
            self.ev(s.test, st)
            return _join_states([self.exec_block(s.body, st.copy()), self.exec_block(s.orelse, st.copy())])
        elif isinstance(s, (ast.For, ast.AsyncFor, ast.While)):
            return self.exec_loop(s, st)
        elif isinstance(s, (ast.With, ast.AsyncWith)):
            return self.exec_with(s, st)
        elif isinstance(s, ast.Try) or type(s).__name__ == "TryStar":
            return self.exec_try(s, st)
        elif isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef)):
            closure = None if fr is self.module else fr
            st.env[s.name] = _V(funcs=frozenset({_FuncRef(s, None, closure)}))
        elif isinstance(s, ast.ClassDef):
            self.exec_classdef(s, st)
        elif isinstance(s, ast.Import):
            for a in s.names:
                if a.asname:
                    st.env[a.asname] = _V(lib=a.name)
                else:
                    root = a.name.split(".")[0]
                    st.env[root] = _V(lib=root)
        elif isinstance(s, ast.ImportFrom):
            mod = ("." * s.level) + (s.module or "")
            for a in s.names:
                if a.name != "*":
                    st.env[a.asname or a.name] = _V(lib=f"{mod}.{a.name}")
        elif isinstance(s, ast.Break):
            if fr.loops:
                fr.loops[-1].breaks.append(st)
            return None
        elif isinstance(s, ast.Continue):
            if fr.loops:
                fr.loops[-1].continues.append(st)
            return None
        elif isinstance(s, ast.Raise):
            if s.exc is not None:
                self.ev(s.exc, st)
            return None
        elif isinstance(s, ast.Assert):
            self.ev(s.test, st)
        elif isinstance(s, ast.Delete):
            for t in s.targets:
                if isinstance(t, ast.Name):
                    st.env.pop(t.id, None)
        elif isinstance(s, ast.Match):
            self.ev(s.subject, st)
            return _join_states([st] + [self.exec_block(c.body, st.copy()) for c in s.cases])
        return st

    def _exec_assign(self, targets: list[ast.expr], value: ast.expr, st: _State) -> None:
        if isinstance(value, (ast.Tuple, ast.List)) and not any(isinstance(e, ast.Starred) for e in value.elts) \
                and len(targets) == 1 and isinstance(targets[0], (ast.Tuple, ast.List)) \
                and len(targets[0].elts) == len(value.elts):
            parts = [self.ev(e, st) for e in value.elts]
            for t, e, v in zip(targets[0].elts, value.elts, parts):
                self.assign(t, v, st, e)
            return
        v = self.ev(value, st)
        for t in targets:
            self.assign(t, v, st, value)

    def assign(self, target: ast.expr, v: _V, st: _State, value_node: ast.expr | None) -> None:
        fr = self.frame
        if isinstance(target, ast.Name):
            st.env[target.id] = self._name_source(target.id, v)
            alias = self._loop_alias(value_node)
            if alias is not None:
                fr.loopvars[target.id] = alias
            else:
                fr.loopvars.pop(target.id, None)
        elif isinstance(target, (ast.Tuple, ast.List)):
            for e in target.elts:
                self.assign(e, v, st, None)
        elif isinstance(target, ast.Starred):
            self.assign(target.value, v, st, None)
        elif isinstance(target, ast.Attribute):
            base = self.ev(target.value, st)
            self._store_attr(base, target.attr, v)
        elif isinstance(target, ast.Subscript):
            self.ev(target.slice, st)
            self._mutate(target.value, v.data(), st)

    def _store_attr(self, base: _V, attr: str, v: _V) -> None:
        v = self._name_source(attr, v)
        if not v.plain() or v.inst or v.funcs:
            self.interesting += 1
        for c in base.inst | base.classes:
            old = self.attrs.get((c, attr))
            self.attrs[(c, attr)] = _join(old, v) if old is not None else v
        old = self.attrs.get((None, attr))
        self.attrs[(None, attr)] = _join(old, v) if old is not None else v

    def _mutate(self, target: ast.expr, v: _V, st: _State) -> None:
        """``xs.append(v)``, ``buf[i] = v``: the container now also holds ``v``."""
        if v.plain() and not v.alts:
            return
        if isinstance(target, ast.Name):
            cur = self.lookup(target.id, st)
            st.env[target.id] = _join(cur, v)
            self.frame.mutated.add(target.id)
        elif isinstance(target, ast.Attribute):
            self._store_attr(self.ev(target.value, st), target.attr, v)
        elif isinstance(target, ast.Subscript):
            self._mutate(target.value, v, st)

    def _name_source(self, name: str, v: _V) -> _V:
        if not (v.val or v.out) and _is_split_name(name, _VAL_WORDS):
            self.saw_val = True
            self.interesting += 1
            v = _join(v, _VAL_SRC)
        if not v.train and _is_split_name(name, _TRAIN_WORDS):
            self.interesting += 1
            v = _join(v, _TRAIN_SRC)
        return v

    def _loop_alias(self, node: ast.expr | None) -> tuple[int, int] | None:
        """``j = i - 1`` inside ``for i in ...``: ``j`` names the previous iteration's index."""
        lv = self.frame.loopvars
        if isinstance(node, ast.Name) and node.id in lv:
            return lv[node.id]
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)) \
                and isinstance(node.left, ast.Name) and node.left.id in lv \
                and isinstance(node.right, ast.Constant) and isinstance(node.right.value, int):
            L, off = lv[node.left.id]
            k = node.right.value
            return L, off + (k if isinstance(node.op, ast.Add) else -k)
        return None

    # -- compound statements --------------------------------------------------------------------

    def _loop_id(self, node: ast.AST) -> int:
        return self.loop_ids.setdefault(id(node), len(self.loop_ids) + 1)

    def _induction_vars(self, node: ast.AST) -> set[str]:
        """Names advanced on every iteration (``pos += n``, ``i = i + 1``): they index the current chunk."""
        key = id(node)
        if key not in self._induction:
            names = set()
            for n in ast.walk(node):
                if isinstance(n, ast.AugAssign) and isinstance(n.target, ast.Name):
                    names.add(n.target.id)
                elif isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name):
                    if any(isinstance(x, ast.Name) and x.id == n.targets[0].id for x in ast.walk(n.value)):
                        names.add(n.targets[0].id)
            self._induction[key] = names
        return self._induction[key]

    def _remap_all(self, st: _State, f) -> None:
        st.remap(f)
        self.attrs = {k: _vmap(v, f) for k, v in self.attrs.items()}

    def exec_loop(self, node: ast.For | ast.AsyncFor | ast.While, st: _State) -> _State | None:
        fr = self.frame
        L = self._loop_id(node)
        is_for = not isinstance(node, ast.While)
        iters: list[_V] = []
        call_name = None
        if is_for:
            it = node.iter
            if isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id in ("enumerate", "zip") \
                    and self.lookup(it.func.id, st).lib == f"builtins.{it.func.id}":
                call_name = it.func.id
                iters = [self.ev(a, st) for a in it.args]
                for k in it.keywords:
                    self.ev(k.value, st)
            else:
                iters = [self.ev(it, st)]
            for v in iters:
                if v.train and not v.text:
                    self._train_read(node.iter, "iterates over training data")
        else:
            self.ev(node.test, st)
        induction = self._induction_vars(node)
        self.active.append(L)
        ctx = _LoopCtx()
        fr.loops.append(ctx)
        entry = st
        cur = st.copy()
        ends: list[_State] = []
        try:
            for pass_no in range(2):
                self.loop_pass[L] = pass_no
                s = cur.copy()
                for name in induction:
                    v = s.env.get(name)
                    if v is not None and not (v.val or v.out):
                        s.env[name] = replace(v, idx=frozenset(x for x in v.idx if x[0] != L) | {(L, _CUR)})
                if is_for:
                    self._bind_loop_target(node.target, iters, call_name, L, s)
                else:
                    self.ev(node.test, s)
                end = _join_states([self.exec_block(node.body, s)] + ctx.continues)
                ctx.continues = []
                if end is None:
                    break
                ends.append(end)
                back = end.copy()
                self._remap_all(back, _shift(L))
                cur = _join_states([entry, back])
        finally:
            fr.loops.pop()
            self.active.pop()
        out = _join_states([entry] + ends + ctx.breaks)
        if node.orelse:
            out = self.exec_block(node.orelse, out) if out is not None else None
        if out is not None:
            self._remap_all(out, _drop({L}))
        else:
            self.attrs = {k: _vmap(v, _drop({L})) for k, v in self.attrs.items()}
        for name in list(fr.loopvars):
            if fr.loopvars[name][0] == L:
                del fr.loopvars[name]
        return out

    def _bind_loop_target(self, target: ast.expr, iters: list[_V], call_name: str | None, L: int,
                          st: _State) -> None:
        fr = self.frame
        index = _V(idx=frozenset({(L, _CUR)}))
        if call_name == "enumerate" and isinstance(target, (ast.Tuple, ast.List)) and len(target.elts) == 2:
            self.assign(target.elts[0], index, st, None)
            if isinstance(target.elts[0], ast.Name):
                fr.loopvars[target.elts[0].id] = (L, 0)
            self.assign(target.elts[1], self._elem(_join(*iters), L), st, None)
            return
        if call_name == "zip" and isinstance(target, (ast.Tuple, ast.List)) and len(target.elts) == len(iters):
            for t, v in zip(target.elts, iters):
                self.assign(t, self._elem(v, L), st, None)
                if isinstance(t, ast.Name):
                    fr.loopvars[t.id] = (L, 0)
            return
        self.assign(target, self._elem(_join(*iters), L), st, None)
        if isinstance(target, ast.Name):
            fr.loopvars[target.id] = (L, 0)

    @staticmethod
    def _elem(v: _V, L: int) -> _V:
        sel = (L, _CUR)
        alts = frozenset(a | {sel} for a in v.alts) if (v.val or v.out) else _EMPTY
        return replace(v, alts=alts, idx=v.idx | {sel}, lib=None, classes=_EMPTY)

    def _grad_mode(self, expr: ast.expr, st: _State) -> bool | None:
        """``torch.no_grad()`` -> True, ``torch.enable_grad()`` -> False, anything else -> None."""
        func = expr.func if isinstance(expr, ast.Call) else expr
        if not isinstance(func, (ast.Name, ast.Attribute)):
            return None
        lib = self._peek_lib(func, st)
        if lib is None:
            return None
        short = lib.rsplit(".", 1)[-1]
        args = expr.args if isinstance(expr, ast.Call) else []
        first = args[0] if args else None
        const = first.value if isinstance(first, ast.Constant) else None
        if short in _GRAD_OFF:
            return False if const is False else True
        if short == "enable_grad":
            return False
        if short == "set_grad_enabled" and isinstance(const, bool):
            return not const
        return None

    def _peek_lib(self, node: ast.expr, st: _State) -> str | None:
        """The library name of a Name/Attribute chain, without evaluating anything else."""
        if isinstance(node, ast.Name):
            return self.lookup(node.id, st).lib
        if isinstance(node, ast.Attribute):
            base = self._peek_lib(node.value, st)
            return f"{base}.{node.attr}" if base else None
        return None

    def exec_with(self, s: ast.With | ast.AsyncWith, st: _State) -> _State | None:
        old = st.nograd
        for item in s.items:
            mode = self._grad_mode(item.context_expr, st)
            if mode is not None:
                st.nograd = mode
                continue
            v = self.ev(item.context_expr, st)
            if item.optional_vars is not None:
                self.assign(item.optional_vars, v, st, None)
        out = self.exec_block(s.body, st)
        if out is not None:
            out.nograd = old
        return out

    def exec_try(self, s: ast.AST, st: _State) -> _State | None:
        start = st.copy()
        body = self.exec_block(s.body, st)
        outs = []
        if s.orelse and body is not None:
            body = self.exec_block(s.orelse, body)
        outs.append(body)
        for h in s.handlers:
            hs = _join_states([start, body])
            if hs is not None and h.name:
                hs.env[h.name] = _CLEAN
            outs.append(self.exec_block(h.body, hs))
        out = _join_states(outs)
        if s.finalbody:
            if out is None:
                self.exec_block(s.finalbody, _join_states([start, body]) or start)
                return None
            out = self.exec_block(s.finalbody, out)
        return out

    def exec_classdef(self, s: ast.ClassDef, st: _State) -> None:
        name = s.name
        tmp = st.copy()
        for b in s.body:
            targets: list[ast.expr] = []
            if isinstance(b, ast.Assign):
                targets, value = b.targets, b.value
            elif isinstance(b, ast.AnnAssign) and b.value is not None:
                targets, value = [b.target], b.value
            else:
                continue
            v = self.ev(value, tmp)
            for t in targets:
                if isinstance(t, ast.Name):
                    tmp.env[t.id] = self._name_source(t.id, v)  # later class attributes may use it
                    self._store_attr(_V(classes=frozenset({name})), t.id, v)
        st.env[name] = _V(classes=frozenset({name}))

    # -- expressions -----------------------------------------------------------------------------

    def lookup(self, name: str, st: _State) -> _V:
        if name in st.env:
            return st.env[name]
        f = self.frame.closure
        while f is not None:
            if f.state is not None and name in f.state.env:
                return f.state.env[name]
            f = f.closure
        mod = self.module.state
        if mod is not None and mod is not st and name in mod.env:
            return mod.env[name]
        if name in self.classes:
            return _V(classes=frozenset({name}))
        for top in self.tree.body:
            if isinstance(top, (ast.FunctionDef, ast.AsyncFunctionDef)) and top.name == name:
                return _V(funcs=frozenset({_FuncRef(top, None, None)}))
        if hasattr(builtins, name):
            return _V(lib=f"builtins.{name}")
        if name.startswith("__") and name.endswith("__"):
            return _TEXT  # __file__, __name__, ...
        if self.star_modules:
            return _V(lib=f"{self.star_modules[0]}.{name}")
        return _UNK

    def ev(self, node: ast.expr | None, st: _State) -> _V:
        if node is None:
            return _CLEAN
        self._tick()
        method = getattr(self, "ev_" + type(node).__name__, None)
        if method is not None:
            return method(node, st)
        out = [self.ev(c, st) for c in ast.iter_child_nodes(node) if isinstance(c, ast.expr)]
        return _join(*out).data() if out else _CLEAN

    def ev_Constant(self, node: ast.Constant, st: _State) -> _V:
        if isinstance(node.value, str):
            return self._string_value(node.value)
        return _CLEAN

    def _string_value(self, s: str) -> _V:
        low = s.lower().strip()
        pathish = not any(c.isspace() for c in low) and any(p in low for p in _PATHISH)
        v = _TEXT
        if low in _SPLIT_VAL or (pathish and _VAL_IN_STR.search(low)):
            self.saw_val = True
            self.interesting += 1
            v = _V(val=True, alts=frozenset({_WHOLE}), text=True)
        if low in _SPLIT_TRAIN or (pathish and _TRAIN_IN_STR.search(low)):
            self.interesting += 1
            v = replace(v, train=True)
        return v

    def ev_JoinedStr(self, node: ast.JoinedStr, st: _State) -> _V:
        literal = "".join(v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str))
        parts = [self.ev(v.value, st) for v in node.values if isinstance(v, ast.FormattedValue)]
        lit = self._string_value(literal) if literal else _TEXT
        joined = _join(lit, *parts)
        return _V(val=joined.val or lit.val, alts=joined.alts if joined.val else _EMPTY, train=joined.train,
                  unk=joined.unk, text=True)

    def ev_FormattedValue(self, node: ast.FormattedValue, st: _State) -> _V:
        return self.ev(node.value, st)

    def ev_Name(self, node: ast.Name, st: _State) -> _V:
        return self.lookup(node.id, st)

    def ev_Attribute(self, node: ast.Attribute, st: _State) -> _V:
        base = self.ev(node.value, st)
        return self._get_attr(base, node.attr)

    def _get_attr(self, base: _V, attr: str) -> _V:
        if base.lib:
            return _V(lib=f"{base.lib}.{attr}")
        if attr in _METADATA_ATTRS:
            return _V(idx=base.idx)
        res = None
        owners = base.inst | base.classes
        for c in owners:
            for k in self._class_chain(c):
                stored = self.attrs.get((k, attr))
                if stored is not None:
                    res = _join(res, stored)
                    break
            hit = self._find_method(c, attr)
            if hit is not None:
                res = _join(res, _V(funcs=frozenset({_FuncRef(hit[1], hit[0], None)})))
        if res is None:
            if owners:
                res = _CLEAN
            else:  # a tensor or an object the audit cannot type: x.T, args.val_files, obj.data
                res = _join(base.data(), self.attrs.get((None, attr)))
        elif base.idx - res.idx:  # a field of the current chunk's element belongs to that chunk
            res = replace(res, idx=res.idx | base.idx)
        return self._name_source(attr, res)

    def ev_Subscript(self, node: ast.Subscript, st: _State) -> _V:
        base = self.ev(node.value, st)
        sl = node.slice
        sels: dict[int, set[str]] = {}
        if isinstance(sl, ast.Slice):
            lo, up, step = self.ev(sl.lower, st), self.ev(sl.upper, st), self.ev(sl.step, st)
            index = _join(lo, up, step)
            if sl.lower is not None:
                sels = _sels_of(lo.idx)
                for L, rels in _sels_of(up.idx | step.idx).items():
                    sels.setdefault(L, rels)
                for L, off in self._offsets(sl.lower, scaled_only=True).items():
                    sels[L] = {_PREV if off < 0 else _CUR if off == 0 else _NEXT}
            else:  # a prefix val[:end] covers everything before ``end``
                sels = {L: {_PREV, _CUR} for L in _loops(up.idx)}
                for L, off in self._offsets(sl.upper, scaled_only=True).items() if sl.upper is not None else ():
                    sels[L] = {_PREV} if off <= 0 else {_PREV, _CUR}
        else:
            index = self.ev(sl, st)
            sels = _sels_of(index.idx)
            for L, off in self._offsets(sl).items():
                sels[L] = {_PREV if off < 0 else _CUR if off == 0 else _NEXT}
        sels = {L: r for L, r in sels.items() if L in self.active}
        alts = frozenset(_narrow(a, sels) for a in base.alts) if (base.val or base.out) else _EMPTY
        idx = base.idx | frozenset((L, r) for L, rs in sels.items() for r in rs)
        res = replace(base, alts=alts, idx=idx, lib=None, classes=_EMPTY)
        if (index.val or index.out) and not index.text and not (base.val or base.out):
            res = replace(res, out=True, alts=index.alts)  # a lookup table indexed by validation tokens
        return res

    def _offsets(self, node: ast.expr, scaled_only: bool = False) -> dict[int, int]:
        """Loop-relative position named by an index expression: ``i`` -> 0, ``i - 1`` -> -1.

        In a slice bound only a scaled shift (``(i - 1) * n``) moves to another chunk: ``s + 1`` in
        ``tokens[s + 1 : e + 1]`` is the usual one-token shift to the targets.
        """
        lv = self.frame.loopvars
        out: dict[int, int] = {}
        handled: set[int] = set()
        scaled: set[int] = set()
        if scaled_only:
            for sub in ast.walk(node):
                if isinstance(sub, ast.BinOp) and isinstance(sub.op, (ast.Mult, ast.FloorDiv)):
                    scaled.update((id(sub.left), id(sub.right)))
        for sub in ast.walk(node):
            if isinstance(sub, ast.BinOp) and isinstance(sub.op, (ast.Add, ast.Sub)) \
                    and isinstance(sub.left, ast.Name) and sub.left.id in lv \
                    and isinstance(sub.right, ast.Constant) and isinstance(sub.right.value, int) \
                    and (not scaled_only or id(sub) in scaled):
                L, off = lv[sub.left.id]
                k = sub.right.value
                out.setdefault(L, off + (k if isinstance(sub.op, ast.Add) else -k))
                handled.add(id(sub.left))
            elif isinstance(sub, ast.Name) and sub.id in lv and id(sub) not in handled:
                L, off = lv[sub.id]
                out.setdefault(L, off)
        return {L: off for L, off in out.items() if L in self.active}

    def ev_BinOp(self, node: ast.BinOp, st: _State) -> _V:
        left = self.ev(node.left, st)
        right = self.ev(node.right, st)
        if isinstance(node.op, ast.MatMult):
            self._check_gram(node, node.left, node.right, left, right)
        res = _join(left, right).data()
        if isinstance(node.op, ast.Mod) and left.text:
            return replace(res, text=True, out=False, pend=_EMPTY)
        return res

    def _check_gram(self, node: ast.AST, lnode: ast.expr, rnode: ast.expr, left: _V, right: _V) -> None:
        """``X.T @ X`` on validation activations is a Hessian/covariance estimate: calibration."""
        if not ((left.val or left.out) and (right.val or right.out)):
            return
        inner = None
        if isinstance(lnode, ast.Attribute) and lnode.attr in ("T", "mT", "H"):
            inner = lnode.value
        elif isinstance(lnode, ast.Call) and isinstance(lnode.func, ast.Attribute) \
                and lnode.func.attr in ("t", "transpose", "permute"):
            inner = lnode.func.value
        if (inner is not None and ast.dump(inner) == ast.dump(rnode)) or self.frame.calib:
            self._calibrate(node, "second-moment statistics X^T X of validation activations")

    def ev_UnaryOp(self, node: ast.UnaryOp, st: _State) -> _V:
        return self.ev(node.operand, st).data()

    def ev_BoolOp(self, node: ast.BoolOp, st: _State) -> _V:
        return _join(*(self.ev(v, st) for v in node.values))

    def ev_Compare(self, node: ast.Compare, st: _State) -> _V:
        parts = [self.ev(node.left, st)] + [self.ev(c, st) for c in node.comparators]
        return _V(idx=frozenset().union(*(p.idx for p in parts)))

    def ev_IfExp(self, node: ast.IfExp, st: _State) -> _V:
        self.ev(node.test, st)
        return _join(self.ev(node.body, st), self.ev(node.orelse, st))

    def ev_Lambda(self, node: ast.Lambda, st: _State) -> _V:
        closure = None if self.frame is self.module else self.frame
        return _V(funcs=frozenset({_FuncRef(node, None, closure)}))

    def ev_NamedExpr(self, node: ast.NamedExpr, st: _State) -> _V:
        v = self.ev(node.value, st)
        self.assign(node.target, v, st, node.value)
        return v

    def ev_Starred(self, node: ast.Starred, st: _State) -> _V:
        return self.ev(node.value, st)

    def _ev_elts(self, elts: list[ast.expr | None], st: _State) -> _V:
        return _join(*(self.ev(e, st) for e in elts if e is not None))

    def ev_Tuple(self, node: ast.Tuple, st: _State) -> _V:
        return self._ev_elts(node.elts, st)

    ev_List = ev_Tuple
    ev_Set = ev_Tuple

    def ev_Dict(self, node: ast.Dict, st: _State) -> _V:
        return _join(self._ev_elts(node.keys, st), self._ev_elts(node.values, st))

    def ev_Yield(self, node: ast.Yield, st: _State) -> _V:
        self.frame.returns.append(self.ev(node.value, st) if node.value is not None else _CLEAN)
        return _CLEAN

    def ev_YieldFrom(self, node: ast.YieldFrom, st: _State) -> _V:
        self.frame.returns.append(self.ev(node.value, st))
        return _CLEAN

    def ev_Await(self, node: ast.Await, st: _State) -> _V:
        return self.ev(node.value, st)

    def _ev_comprehension(self, node: ast.AST, elts: list[ast.expr], st: _State) -> _V:
        s = st.copy()
        fr = self.frame
        loops: list[int] = []
        saved_loopvars = dict(fr.loopvars)
        try:
            for gen in node.generators:
                it = self.ev(gen.iter, s)
                if it.train and not it.text:
                    self._train_read(gen.iter, "iterates over training data")
                L = self._loop_id(gen)
                self.active.append(L)
                loops.append(L)
                self._bind_loop_target(gen.target, [it], None, L, s)
                for cond in gen.ifs:
                    self.ev(cond, s)
            res = _join(*(self.ev(e, s) for e in elts))
        finally:
            for _ in loops:
                self.active.pop()
            fr.loopvars = saved_loopvars
        dropped = _drop(set(loops))
        s.remap(dropped)
        self.attrs = {k: _vmap(v, dropped) for k, v in self.attrs.items()}
        st.scored, st.updated = s.scored, s.updated
        return replace(_vmap(res, dropped), lib=None, classes=_EMPTY)

    def ev_ListComp(self, node: ast.ListComp, st: _State) -> _V:
        return self._ev_comprehension(node, [node.elt], st)

    ev_SetComp = ev_ListComp
    ev_GeneratorExp = ev_ListComp

    def ev_DictComp(self, node: ast.DictComp, st: _State) -> _V:
        return self._ev_comprehension(node, [node.key, node.value], st)

    # -- calls ---------------------------------------------------------------------------------

    def _ev_args(self, node: ast.Call, st: _State) -> tuple[list[_V], dict[str | None, _V]]:
        args = [self.ev(a, st) for a in node.args]
        kwargs: dict[str | None, _V] = {}
        for k in node.keywords:
            v = self.ev(k.value, st)
            kwargs[k.arg] = _join(kwargs[k.arg], v) if k.arg in kwargs else v
        return args, kwargs

    def _arg_nodes(self, node: ast.Call) -> list[ast.expr]:
        return list(node.args) + [k.value for k in node.keywords]

    def ev_Call(self, node: ast.Call, st: _State) -> _V:
        func = node.func
        if isinstance(func, ast.Attribute):
            recv = self.ev(func.value, st)
            if func.attr == "backward" and not recv.lib:
                self._ev_args(node, st)
                self._update(recv, node, st)
                return _CLEAN
            return self._method_call(node, func, recv, st)
        fv = self.ev(func, st)
        args, kwargs = self._ev_args(node, st)
        return self._invoke(node, fv, args, kwargs, st)

    def _method_call(self, node: ast.Call, func: ast.Attribute, recv: _V, st: _State) -> _V:
        attr = func.attr
        if recv.lib:
            args, kwargs = self._ev_args(node, st)
            return self._lib_call(node, f"{recv.lib}.{attr}", args, kwargs, st)
        if attr in ("eval", "train") and not node.args:
            return _CLEAN
        # a method of one of the script's classes
        targets = self._resolve_method(recv, attr)
        if targets:
            args, kwargs = self._ev_args(node, st)
            res = None
            for owner, fn in targets:
                cls = self.classes.get(owner)
                if cls is not None and cls.is_module and not self.has_update(fn):
                    res = _join(res, self._opaque(node, args, kwargs, st))
                    continue
                self_val = recv if (recv.inst or recv.classes) else _V(inst=frozenset({owner}))
                res = _join(res, self._inline(_FuncRef(fn, owner, None), node, [self_val] + args, kwargs, st,
                                              explicit_self=True))
            return res
        held = self._get_attr(recv, attr)
        if held.funcs or held.classes or held.inst:
            args, kwargs = self._ev_args(node, st)
            return self._invoke(node, held, args, kwargs, st)
        args, kwargs = self._ev_args(node, st)
        everything = [recv] + args + list(kwargs.values())
        ran = self._run_callbacks(node, everything, st)  # opt.step(closure), pool.map(fn, xs)
        if ran is not None:
            return ran
        if attr in _MUTATORS:
            added = _join(*args, *kwargs.values()).data()
            self._confirm(added, st)
            self._mutate(func.value, added, st)
            return _join(recv, added).data() if attr.endswith("_") else _CLEAN
        if attr in _METADATA_METHODS:
            return _V(idx=_join(*everything).idx)
        if attr in _SINK_METHODS:
            self._confirm(recv, st)
        if recv.train and not recv.text and attr not in ("format", "join"):
            self._train_read(node, f"`.{attr}()` on training data")
        if attr in ("addmm_", "addmm", "baddbmm", "addr_") and len(node.args) >= 2:
            self._check_gram(node, node.args[-2], node.args[-1], args[-2], args[-1])
        if attr in _READ_METHODS:
            return replace(_join(*everything).data(), text=False)
        if attr in _PASS_METHODS or not any((a.val or a.out) and not a.text for a in args + list(kwargs.values())):
            res = _join(*everything).data()
            if recv.text and attr in ("glob", "rglob", "iterdir", "resolve", "with_suffix", "format", "join",
                                       "replace", "strip", "lower", "upper"):
                return replace(res, text=True)
            return replace(res, text=False) if not recv.text else res
        return self._opaque(node, args, kwargs, st)

    def _run_callbacks(self, node: ast.Call, values: list[_V], st: _State) -> _V | None:
        """Functions handed to a call the audit cannot see into are assumed to run there, on the
        call's other arguments."""
        callbacks = [f for v in values for f in v.funcs]
        if not callbacks:
            return None
        data = [v.data() for v in values if not v.funcs]
        res = None
        for ref in callbacks:
            res = _join(res, self._inline(ref, node, [_join(*data)] if data else [], {}, st))
        return res

    def _resolve_method(self, recv: _V, attr: str) -> list[tuple[str, ast.AST]]:
        owners = recv.inst | recv.classes
        if owners:
            hits = [self._find_method(c, attr) for c in owners]
            return [h for h in hits if h is not None]
        # Receiver of unknown type: only a method name no library type also has can identify the class
        # (``x.to(device)`` must not become a call to the script's own ``Luts.to``).
        if attr in _COMMON_METHODS or attr.startswith("__") or not recv.plain() or recv.text:
            return []
        cands = self.methods.get(attr, [])
        return list(cands) if len(cands) == 1 else []

    def _invoke(self, node: ast.Call, fv: _V, args: list[_V], kwargs: dict, st: _State) -> _V:
        res: _V | None = None
        for ref in fv.funcs:
            res = _join(res, self._inline(ref, node, args, kwargs, st))
        for cname in fv.classes:
            res = _join(res, self._construct(cname, node, args, kwargs, st))
        if fv.lib:
            res = _join(res, self._lib_call(node, fv.lib, args, kwargs, st))
        for cname in fv.inst:
            cls = self.classes.get(cname)
            hit = self._find_method(cname, "__call__")
            if cls is not None and hit is not None and (not cls.is_module or self.has_update(hit[1])):
                res = _join(res, self._inline(_FuncRef(hit[1], hit[0], None), node, [fv] + args, kwargs, st,
                                              explicit_self=True))
        if res is None:
            if fv.unk and not fv.inst:
                name = _dotted(node.func) or "<expression>"
                self._unknown(f"line {node.lineno}: calls `{name}`, which is not defined in the script")
                return _join(_UNK, *args, *kwargs.values()).data()
            res = self._opaque(node, args, kwargs, st)
        return res

    def _opaque(self, node: ast.Call, args: list[_V], kwargs: dict, st: _State) -> _V:
        """A call the audit treats as running a model (or a loss) on its inputs."""
        vals = [v for v in args + list(kwargs.values()) if not v.text]
        data = [v for v in vals if v.val or v.out]
        res = _V(out=bool(data), alts=frozenset().union(*(v.alts for v in data)) if data else _EMPTY,
                 train=any(v.train for v in vals), unk=any(v.unk for v in vals),
                 pend=frozenset().union(*(v.pend for v in vals)) if vals else _EMPTY,
                 idx=frozenset().union(*(v.idx for v in vals)) if vals else _EMPTY)
        const_nodes = {id(n) for n in self._arg_nodes(node) if isinstance(n, ast.Constant)}
        if any(v.train for v, n in zip(args + list(kwargs.values()), self._arg_nodes(node))
               if not v.text and id(n) not in const_nodes):
            self._train_read(node, "a model call on training data")
        if self.frame.calib:
            if data:
                self._calibrate(node, "a forward pass over validation data")
            return res
        content = [v for v in vals if v.val]
        if content:
            alts = frozenset().union(*(v.alts for v in content))
            tag = self._score(node, alts, st)
            if tag is not None:
                res = replace(res, pend=res.pend | {tag})
        return res

    def _construct(self, cname: str, node: ast.Call, args: list[_V], kwargs: dict, st: _State) -> _V:
        inst = _V(inst=frozenset({cname}))
        cls = self.classes.get(cname)
        if cls is None:
            return inst
        hit = self._find_method(cname, "__init__")
        if hit is not None:
            # A model's constructor only matters when one of its methods trains on what it stores.
            if not cls.is_module or any(self.has_update(fn) for fn in cls.methods.values()):
                self._inline(_FuncRef(hit[1], hit[0], None), node, [inst] + args, kwargs, st, explicit_self=True)
        else:  # dataclass / NamedTuple: fields in declaration order
            fields = [b.target.id for b in cls.node.body
                      if isinstance(b, ast.AnnAssign) and isinstance(b.target, ast.Name)]
            for name, v in zip(fields, args):
                self._store_attr(inst, name, v)
            for k, v in kwargs.items():
                if k is not None:
                    self._store_attr(inst, k, v)
        return inst

    def _lib_call(self, node: ast.Call, qual: str, args: list[_V], kwargs: dict, st: _State) -> _V:
        root = qual.lstrip(".").split(".")[0]
        if qual.startswith(".") or root in self.unknown_modules:
            if root not in self.reported_modules:
                self.reported_modules.add(root)
                self._unknown(f"line {node.lineno}: calls `{qual.lstrip('.')}` from module `{root}`, whose code "
                              f"is not part of the audited file")
            return _join(_UNK, *args, *kwargs.values()).data()
        short = qual.rsplit(".", 1)[-1]
        everything = args + list(kwargs.values())
        if qual.endswith("autograd.grad") or qual.endswith("autograd.backward"):
            target = args[0] if args else kwargs.get("outputs", kwargs.get("tensors", _CLEAN))
            self._update(target, node, st)
            return _CLEAN
        if short == "set_grad_enabled" and node.args and isinstance(node.args[0], ast.Constant):
            st.nograd = not bool(node.args[0].value)
            return _CLEAN
        if short in _LOSS_FUNCS and root == "torch" or qual.startswith("torch.nn.functional.") \
                and short in _LOSS_FUNCS:
            return self._opaque(node, args, kwargs, st)
        if short in ("matmul", "mm") and root == "torch" and len(node.args) == 2:
            self._check_gram(node, node.args[0], node.args[1], args[0], args[1])
        if qual in ("builtins.len", "builtins.isinstance", "builtins.hasattr", "builtins.print", "builtins.id",
                    "builtins.type", "builtins.callable", "builtins.issubclass", "builtins.getattr"):
            return _V(idx=_join(*everything).idx) if short == "len" else _CLEAN
        if qual == "builtins.range":
            if len(args) >= 2 and args[0].idx:
                return _V(idx=args[0].idx)
            return _V(idx=_join(*everything).idx)
        if qual == "builtins.super":
            owner = self.frame.owner
            cls = self.classes.get(owner) if owner else None
            bases = frozenset(b.rsplit(".", 1)[-1] for b in cls.bases if b.rsplit(".", 1)[-1] in self.classes) \
                if cls else _EMPTY
            return _V(inst=bases)
        if qual in _FILE_READERS:
            if any(v.train for v in everything):
                self._train_read(node, f"`{short}()` on a training-data path")
            return replace(_join(*everything).data(), text=False)
        if qual == "builtins.next" and args and args[0].train and not args[0].text:
            self._train_read(node, "`next()` on a training-data iterator")
        res = _join(*everything)
        ran = self._run_callbacks(node, everything, st)  # map(f, xs), checkpoint(fn, x)
        if ran is not None:
            res = _join(res, ran)
        res = replace(res, lib=None, classes=_EMPTY)
        if qual.startswith(_TEXT_PREFIXES):
            res = replace(res, text=True, out=False, pend=_EMPTY)
        elif qual not in _TEXT_KEEPING:
            res = replace(res, text=False)
        if not (res.val or res.out) and _is_source_call(short, _VAL_WORDS):
            self.saw_val = True
            res = _join(res, _VAL_SRC)
        if not res.train and _is_source_call(short, _TRAIN_WORDS):
            res = _join(res, _TRAIN_SRC)
        return res

    # -- inlining the script's own functions ------------------------------------------------------

    def _inline(self, ref: _FuncRef, node: ast.Call | ast.AST, args: list[_V], kwargs: dict, st: _State,
                explicit_self: bool = False) -> _V:
        fn = ref.node
        fn_name = getattr(fn, "name", "<lambda>")
        if any(f.node is fn for f in self.stack) or len(self.stack) > self.MAX_DEPTH:
            return _join(*args, *kwargs.values()).data()
        self.visited.add(id(fn))
        decos = _decorator_names(fn)
        is_static = any(d.endswith("staticmethod") for d in decos)
        is_classmethod = any(d.endswith("classmethod") for d in decos)
        owner_words = set(_words(ref.owner)) if ref.owner else set()
        name_words = set(_words(fn_name)) | owner_words
        parent = self.frame
        calib = parent.calib or bool(name_words & _CALIB_FN_WORDS) or any(
            isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
            and n.func.attr in ("register_forward_hook", "register_forward_pre_hook") for n in _own_nodes(fn))
        evalish = bool(name_words & _EVAL_FN_WORDS) or {"test", "time"} <= name_words
        nograd = st.nograd
        for d in fn.decorator_list if hasattr(fn, "decorator_list") else []:
            mode = self._grad_mode(d, st)
            if mode is not None:
                nograd = mode

        # arguments
        if ref.owner and not is_static and not explicit_self:
            args = [_V(classes=frozenset({ref.owner})) if is_classmethod else _V(inst=frozenset({ref.owner}))] + args
        elif ref.owner and is_classmethod and explicit_self and args:
            args = [_V(classes=args[0].inst | args[0].classes)] + args[1:]
        elif ref.owner and is_static and explicit_self:
            args = args[1:]
        env = self._bind(fn, args, kwargs, node)

        key = None
        if all(v.plain() and not v.alts and not v.idx for v in env.values()):
            key = (id(fn), ref.owner, calib, nograd,
                   tuple(sorted((k, v) for k, v in env.items() if v.inst or v.funcs or v.classes)))
            if key in self.inert:
                return self.inert[key]
        before = self.interesting

        frame = _Frame(f"{ref.owner}.{fn_name}" if ref.owner else fn_name, fn, ref.owner, ref.closure,
                       getattr(node, "lineno", None), calib, evalish)
        inner = _State(env, st.scored, st.updated, nograd)
        self.stack.append(frame)
        try:
            if isinstance(fn, ast.Lambda):
                frame.returns.append(self.ev(fn.body, inner))
                end = inner
            else:
                end = self.exec_block(fn.body, inner)
        finally:
            self.stack.pop()
        final = _join_states([end] + frame.return_states)
        if final is not None:
            st.scored, st.updated = final.scored, final.updated
            for p, a in zip(self._param_names(fn), self._arg_nodes(node) if isinstance(node, ast.Call) else []):
                if p in frame.mutated and isinstance(a, ast.Name) and p in final.env:
                    st.env[a.id] = _join(self.lookup(a.id, st), final.env[p].data())
        if frame.evalish or frame.direct_val_update:
            for f in frame.train_reads:
                self._report(f)
        else:
            parent.train_reads.extend(frame.train_reads)
        res = _join(*frame.returns) if frame.returns else _CLEAN
        res = _vmap(res, _keep(set(self.active)))
        if not (res.val or res.out) and _is_source_call(fn_name, _VAL_WORDS):
            self.saw_val = True
            res = _join(res, _VAL_SRC)
        if not res.train and _is_source_call(fn_name, _TRAIN_WORDS):
            res = _join(res, _TRAIN_SRC)
        if key is not None and self.interesting == before and res.plain():
            self.inert[key] = res
        return res

    @staticmethod
    def _param_names(fn: ast.AST) -> list[str]:
        a = fn.args
        return [p.arg for p in a.posonlyargs + a.args]

    def _bind(self, fn: ast.AST, args: list[_V], kwargs: dict, node: ast.AST) -> dict[str, _V]:
        a = fn.args
        positional = a.posonlyargs + a.args
        env: dict[str, _V] = {}
        defaults = [None] * (len(positional) - len(a.defaults)) + list(a.defaults)
        extra = list(kwargs.items())
        for i, p in enumerate(positional):
            if i < len(args):
                v = args[i]
            elif p.arg in kwargs:
                v = kwargs[p.arg]
            elif defaults[i] is not None:
                v = self._default(defaults[i])
            else:
                v = _CLEAN
            env[p.arg] = self._name_source(p.arg, v)
        for p, d in zip(a.kwonlyargs, a.kw_defaults):
            v = kwargs[p.arg] if p.arg in kwargs else (self._default(d) if d is not None else _CLEAN)
            env[p.arg] = self._name_source(p.arg, v)
        named = {p.arg for p in positional + a.kwonlyargs}
        if a.vararg:
            env[a.vararg.arg] = _join(*args[len(positional):])
        if a.kwarg:
            env[a.kwarg.arg] = _join(*(v for k, v in extra if k not in named))
        return env

    def _default(self, node: ast.expr) -> _V:
        if isinstance(node, ast.Constant):
            return self._string_value(node.value) if isinstance(node.value, str) else _CLEAN
        mod = self.module.state
        return self.ev(node, mod.copy()) if mod is not None else _CLEAN


# ---------------------------------------------------------------------------------------------
# Whole-file checks: network access, dynamic code, imports the audit cannot see into
# ---------------------------------------------------------------------------------------------


def _import_aliases(tree: ast.Module) -> dict[str, str]:
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.asname:
                    aliases[a.asname] = a.name
                else:
                    aliases[a.name.split(".")[0]] = a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                if a.name != "*":
                    aliases[a.asname or a.name] = f"{node.module}.{a.name}"
    return aliases


def _qualname(node: ast.expr, aliases: dict[str, str]) -> str | None:
    dotted = _dotted(node)
    if dotted is None:
        return None
    head, _, rest = dotted.partition(".")
    if head in aliases:
        return aliases[head] + ("." + rest if rest else "")
    return dotted


def _strings(node: ast.AST) -> list[str]:
    out = []
    for n in ast.walk(node):
        if isinstance(n, ast.Constant) and isinstance(n.value, str):
            out.append(n.value)
    return out


def _network_command(words: list[str]) -> str | None:
    tokens = [w.rsplit("/", 1)[-1].lower() for w in words]
    for i, t in enumerate(tokens):
        if t in _NETWORK_COMMANDS:
            return t
        if i + 1 < len(tokens) and (t, tokens[i + 1]) in _NETWORK_SUBCOMMANDS:
            return f"{t} {tokens[i + 1]}"
    return None


def _scan(tree: ast.Module) -> tuple[list[Finding], list[str], list[str], set[str]]:
    """Network access and dynamic code anywhere in the file, reached or not."""
    findings: list[Finding] = []
    unknown: list[str] = []
    notes: list[str] = []
    aliases = _import_aliases(tree)
    defined = {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    unknown_modules: set[str] = set()
    noted: set[str] = set()

    def net(node: ast.AST, msg: str, severity: str = "violation") -> None:
        findings.append(Finding(RULE_NETWORK, node.lineno, getattr(node, "end_lineno", None), msg, severity))

    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    mods = [("." * node.level) + (node.module or "")]
                else:
                    base = node.module or ""
                    mods = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                mods = [a.name for a in node.names]
            for m in mods:
                hit = next((n for n in _NETWORK_MODULES if m == n or m.startswith(n + ".")), None)
                if hit:
                    net(node, f"imports network library `{hit}`")
                    break
            for m in mods[:1] if isinstance(node, ast.ImportFrom) else mods:
                if m.startswith(".") or not _module_known(m):
                    root = m if m.startswith(".") else m.split(".")[0]
                    unknown_modules.add(root.lstrip(".") or root)
                    if isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names):
                        unknown.append(f"line {node.lineno}: `from {m} import *` brings in names from code that is "
                                       f"not part of the audited file")
                    elif m not in noted:
                        noted.add(m)
                        notes.append(f"line {node.lineno}: imports `{m}`, which is not part of the audited file")
        elif isinstance(node, ast.Call):
            q = _qualname(node.func, aliases) or ""
            if isinstance(node.func, ast.Name) and node.func.id in _DYNAMIC_BUILTINS and node.func.id not in defined \
                    and node.func.id not in aliases:
                unknown.append(f"line {node.lineno}: `{node.func.id}()` runs code the audit cannot see")
                findings.append(Finding(RULE_DYNAMIC, node.lineno, getattr(node, "end_lineno", None),
                                        f"`{node.func.id}()` runs dynamically built code", "warning"))
            elif q in _DYNAMIC_CALLS:
                unknown.append(f"line {node.lineno}: `{q}()` loads code the audit cannot see")
                findings.append(Finding(RULE_DYNAMIC, node.lineno, getattr(node, "end_lineno", None),
                                        f"`{q}()` loads code dynamically", "warning"))
            if q in _NETWORK_CALLS or q.endswith(_NETWORK_CALL_SUFFIXES):
                net(node, f"`{q}()` accesses the network")
            elif q in _SHELL_CALLS:
                words = [w for s in _strings(node) for w in s.split()]
                cmd = _network_command(words)
                if cmd:
                    net(node, f"runs `{cmd}` in a subprocess (network download)")
                elif node.args and not isinstance(node.args[0], (ast.Constant, ast.List, ast.Tuple)):
                    net(node, f"`{q}()` runs a command the audit cannot read; check it does not access the "
                        f"network", "warning")
    unknown_modules.discard("")
    return findings, unknown, notes, unknown_modules


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------


def audit_source(source: str, path: str | None = None) -> AuditReport:
    """Audit the text of a training script; ``path`` is only recorded in the report."""
    try:
        tree = ast.parse(source, filename=path or "<source>")
    except SyntaxError as e:
        return AuditReport(path, Verdict.UNKNOWN, (), (f"syntax error at line {e.lineno}: {e.msg}; the script "
                                                       f"cannot be analysed",))
    except ValueError as e:  # e.g. null bytes
        return AuditReport(path, Verdict.UNKNOWN, (), (f"the script cannot be parsed: {e}",))

    scan_findings, unknown, notes, unknown_modules = _scan(tree)
    interp = _Interp(tree, unknown_modules)
    interp.run()

    findings = scan_findings + list(interp.findings.values())
    unknown = unknown + interp.unknown
    notes = notes + interp.notes
    findings.sort(key=lambda f: (f.line, f.rule))
    if any(f.severity == "violation" for f in findings):
        verdict = Verdict.FLAGGED
    elif unknown:
        verdict = Verdict.UNKNOWN
    else:
        verdict = Verdict.CLEAN
    if not interp.saw_val:
        notes.append("no validation data was recognised in the script")
    all_notes = tuple(dict.fromkeys(unknown + notes))
    return AuditReport(path, verdict, tuple(findings), all_notes)


def audit_file(path: str | PathLike) -> AuditReport:
    """Audit a script on disk. Unreadable or unparsable files give verdict ``unknown``, never an exception."""
    p = Path(path)
    try:
        source = p.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        return AuditReport(str(p), Verdict.UNKNOWN, (), (f"cannot read the script: {e}",))
    return audit_source(source, str(p))
