"""The audit's vocabulary: how library calls, strings and identifiers are read.

Only *data* is ever classified from words here (a path with ``val`` in it, a variable holding
``train_tokens``): never whether code is training or evaluation, which the interpreter decides from
data flow and the artifact's round trip.
"""

from __future__ import annotations

import ast
import functools
import re
import sys

VAL_WORDS = frozenset({"val", "valid", "validation", "eval", "heldout", "holdout"})
TRAIN_WORDS = frozenset({"train", "training", "trn"})
DATA_WORDS = {
    "tokens", "token", "tok", "toks", "data", "dataset", "ds", "set", "ids", "docs", "doc", "documents",
    "chunks", "chunk", "windows", "shards", "shard", "files", "file", "path", "paths", "pattern", "glob",
    "loader", "dl", "iter", "stream", "batches", "seqs", "sequences", "text", "corpus", "split", "x", "y",
    "inputs", "targets", "input", "target", "buf", "buffer", "arr", "array", "tensor", "dir",
}
# A name with one of these words is a setting or a statistic (val_batch_size, train_seq_len,
# val_loss), not data, whatever else it says.
CONFIG_WORDS = {
    "len", "length", "size", "sz", "every", "interval", "freq", "stride", "steps", "step", "lr", "frac",
    "fraction", "ratio", "count", "num", "n", "max", "min", "batch", "bs", "epochs", "epoch", "dim",
    "limit", "budget", "seconds", "secs", "time", "ms", "loss", "losses", "bpb", "seed", "mode", "flag",
    "enabled", "enable", "only", "pct", "tokens_per", "frequency", "fn", "func",
}

SPLIT_VAL = {"val", "valid", "validation", "eval", "heldout", "holdout"}
SPLIT_TRAIN = {"train", "training"}
VAL_IN_STR = re.compile(r"(?<![a-z])(val|valid|validation|heldout|holdout)(?![a-z])")
TRAIN_IN_STR = re.compile(r"(?<![a-z])(train|training)(?![a-z])")
PATHISH = ("/", "\\", "*", ".bin", ".pt", ".npy", ".npz", ".txt", ".jsonl", ".parquet", "fineweb", ".arrow")

STDLIB = set(getattr(sys, "stdlib_module_names", ())) | {"__future__"}
KNOWN_LIBS = {
    "torch", "numpy", "sentencepiece", "zstandard", "zstd", "brotli", "lz4", "triton", "flash_attn",
    "flash_attn_interface", "einops", "tqdm", "scipy", "pandas", "safetensors", "apex", "transformer_engine",
    "xformers", "bitsandbytes", "torchao", "numba", "typing_extensions", "mamba_ssm", "causal_conv1d", "fla",
    "liger_kernel", "tiktoken", "wandb", "datasets", "transformers", "huggingface_hub", "requests", "httpx",
    "aiohttp", "urllib3", "wget", "pycurl", "paramiko", "boto3", "cupy", "jax", "kernels", "psutil",
}
NETWORK_MODULES = ("requests", "httpx", "aiohttp", "urllib3", "urllib.request", "urllib2", "http.client",
                    "huggingface_hub", "wget", "pycurl", "ftplib", "paramiko", "boto3", "smtplib", "telnetlib",
                    "xmlrpc.client", "websocket", "websockets", "grpc", "gdown", "kagglehub")
NETWORK_CALLS = {
    "torch.hub.load", "torch.hub.download_url_to_file", "torch.hub.load_state_dict_from_url",
    "torch.utils.model_zoo.load_url", "datasets.load_dataset", "tiktoken.get_encoding",
    "tiktoken.encoding_for_model", "socket.socket", "socket.create_connection", "socket.create_server",
    "socket.getaddrinfo", "socket.gethostbyname", "urllib.request.urlopen", "urllib.request.urlretrieve",
}
NETWORK_CALL_SUFFIXES = (".from_pretrained", ".snapshot_download", ".hf_hub_download")
# Experiment trackers: they send run data out (telemetry, nothing comes back into the model) unless
# the environment turns them off, so a warning, not a violation.
TELEMETRY_CALLS = {"wandb.init": "sends the run to wandb.ai unless WANDB_MODE=offline or disabled",
                   "mlflow.start_run": "sends the run to an MLflow server when MLFLOW_TRACKING_URI names one",
                   "comet_ml.Experiment": "sends the run to Comet unless COMET_MODE=offline",
                   "neptune.init_run": "sends the run to Neptune unless mode='offline'"}
SHELL_CALLS = {"os.system", "os.popen", "subprocess.run", "subprocess.call", "subprocess.check_call",
                "subprocess.check_output", "subprocess.Popen", "subprocess.getoutput",
                "subprocess.getstatusoutput", "asyncio.create_subprocess_exec", "asyncio.create_subprocess_shell",
                "os.execv", "os.execvp", "os.execl", "os.execlp", "os.spawnv", "os.spawnl"}
NETWORK_COMMANDS = {"wget", "curl", "aria2c", "scp", "rsync", "ssh", "sftp", "ftp", "nc", "netcat",
                     "huggingface-cli", "gsutil", "aws", "kaggle", "gdown"}
NETWORK_SUBCOMMANDS = {("git", "clone"), ("git", "fetch"), ("git", "pull"), ("pip", "install"),
                        ("pip3", "install"), ("uv", "pip"), ("hf", "download")}
DYNAMIC_BUILTINS = {"exec", "eval", "compile", "__import__"}
DYNAMIC_CALLS = {"importlib.import_module", "importlib.util.spec_from_file_location", "runpy.run_path",
                  "runpy.run_module", "marshal.loads", "types.FunctionType", "types.CodeType"}

GRAD_OFF = {"no_grad", "inference_mode"}
LOSS_FUNCS = {"cross_entropy", "nll_loss", "kl_div", "binary_cross_entropy",
               "binary_cross_entropy_with_logits", "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss"}
FILE_READERS = {"numpy.fromfile", "numpy.load", "numpy.memmap", "numpy.loadtxt", "numpy.genfromtxt",
                 "torch.load", "torch.from_file", "pickle.load", "json.load", "builtins.open", "io.open",
                 "safetensors.torch.load_file", "safetensors.numpy.load_file"}
TEXT_PREFIXES = ("os.path.", "glob.", "fnmatch.", "pathlib.", "os.listdir", "os.scandir", "os.walk",
                  "os.fspath", "os.getcwd", "builtins.str", "builtins.repr", "builtins.format", "string.")
TEXT_KEEPING = {"builtins.sorted", "builtins.list", "builtins.tuple", "builtins.set", "builtins.reversed",
                 "builtins.iter", "builtins.next", "builtins.min", "builtins.max"}
METADATA_ATTRS = {"shape", "device", "dtype", "ndim", "is_cuda", "requires_grad", "grad_fn", "is_leaf",
                   "itemsize", "nbytes", "layout", "names"}
METADATA_METHODS = {"numel", "size", "dim", "nelement", "element_size", "stride", "__len__", "is_contiguous",
                     "data_ptr", "get_device", "storage_offset", "count_nonzero", "ndimension"}
MUTATORS = {"append", "extend", "insert", "add", "update", "setdefault", "appendleft", "extendleft", "put",
             "put_nowait", "push", "copy_", "add_", "index_copy_", "index_put_", "scatter_", "scatter_add_"}
SINK_METHODS = {"append", "extend", "insert", "item", "tolist"}
READ_METHODS = {"read", "read_bytes", "read_text", "readlines", "readline", "readinto"}
# Methods of tensors, arrays, lists, dicts and strings: they reshape or move data, they do not run a model.
PASS_METHODS = {
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
COMMON_METHODS = PASS_METHODS | MUTATORS | METADATA_METHODS | SINK_METHODS | READ_METHODS | {
    "forward", "step", "zero_grad", "state_dict", "load_state_dict", "parameters", "named_parameters",
    "modules", "children", "apply", "close", "write", "flush", "reset", "run", "next", "send", "call", "load",
    "save", "train", "eval", "backward", "register_forward_hook", "remove", "wait", "synchronize", "record",
}
FUNC_WORDS_DATA_SOURCE = {"load", "read", "get", "build", "make", "open", "fetch"}


@functools.lru_cache(maxsize=4096)
def words(name: str) -> tuple[str, ...]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    return tuple(w for w in re.split(r"[^a-z]+", spaced.lower()) if w)


@functools.lru_cache(maxsize=4096)
def is_split_name(name: str, split_words: frozenset[str]) -> bool:
    """Whether an identifier names data of one split: ``val_tokens``, ``validDocs``, ``args.train_files``."""
    ws = set(words(name))
    return bool(ws & split_words) and not (ws & CONFIG_WORDS) and bool(ws & DATA_WORDS)


@functools.lru_cache(maxsize=4096)
def is_source_call(name: str, split_words: frozenset[str]) -> bool:
    """A call like ``load_validation_tokens(...)`` or ``get_val_data()``."""
    ws = set(words(name))
    return bool(ws & split_words) and bool(ws & (DATA_WORDS | FUNC_WORDS_DATA_SOURCE)) \
        and not (ws & CONFIG_WORDS) and not (ws & {"eval", "evaluate", "score", "ttt"} - split_words)


SCALAR_TYPES = frozenset({"int", "float", "bool"})


def is_scalar_annotation(node) -> bool:
    """``int``, ``float``, ``bool`` (or ``Optional``/``| None`` of one): a setting or a count, never
    token data, whatever its name says (``eval_batches: int``)."""
    if isinstance(node, ast.Name):
        return node.id in SCALAR_TYPES
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value.replace(" ", "") in SCALAR_TYPES | {f"{t}|None" for t in SCALAR_TYPES}
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        parts = [node.left, node.right]
        none = [x for x in parts if isinstance(x, ast.Constant) and x.value is None]
        return len(none) == 1 and is_scalar_annotation(next(x for x in parts if x not in none))
    if isinstance(node, ast.Subscript) and isinstance(node.value, (ast.Name, ast.Attribute)):
        name = node.value.id if isinstance(node.value, ast.Name) else node.value.attr
        return name == "Optional" and is_scalar_annotation(node.slice)
    return False


def scalar_fields(tree) -> frozenset[str]:
    """Fields declared with a number type, in a class body (``eval_batches: int = 8``) or on ``self``
    (``self.n: int = 0``): settings and counts, never token data, whatever their names say."""
    fields = [b for c in ast.walk(tree) if isinstance(c, ast.ClassDef) for b in c.body if isinstance(b, ast.AnnAssign)]
    fields += [b for b in ast.walk(tree) if isinstance(b, ast.AnnAssign) and isinstance(b.target, ast.Attribute)]
    return frozenset(b.target.id if isinstance(b.target, ast.Name) else b.target.attr for b in fields
                     if isinstance(b.target, (ast.Name, ast.Attribute)) and is_scalar_annotation(b.annotation))


def module_known(qual: str) -> bool:
    root = qual.split(".")[0]
    return root in STDLIB or root in KNOWN_LIBS


# Set by the launcher (torchrun, SLURM, Ray), not by the run's configuration: a branch on them is
# decided at run time, so the audit follows both arms.
LAUNCHER_ENV = frozenset({
    "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "ROLE_RANK", "ROLE_WORLD_SIZE",
    "MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "CUDA_VISIBLE_DEVICES", "SLURM_PROCID", "SLURM_LOCALID",
    "SLURM_NTASKS", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "TORCHELASTIC_RUN_ID", "HOSTNAME",
})
# Writing model weights out: the artifact exists from here on.
SERIALIZERS = {"torch.save", "safetensors.torch.save_file", "safetensors.torch.save", "numpy.save", "numpy.savez",
               "numpy.savez_compressed", "pickle.dump", "pickle.dumps"}
# Reading weights (or any bytes) back in.
DESERIALIZERS = {"torch.load", "safetensors.torch.load_file", "safetensors.torch.load", "numpy.load", "pickle.load",
                 "pickle.loads"}
# Constant-foldable builtins and methods, applied to known constants only.
CONST_BUILTINS = {"int", "float", "bool", "str", "len", "min", "max", "abs", "round", "tuple", "list", "sorted",
                  "any", "all", "repr"}
CONST_STR_METHODS = {"lower", "upper", "strip", "lstrip", "rstrip", "split", "replace", "startswith", "endswith",
                     "isdigit", "casefold", "title", "join", "count", "find", "rsplit", "removeprefix",
                     "removesuffix", "zfill", "get"}
# ``torch.nn`` classes that are losses, not models.
LOSS_MODULES = {"CrossEntropyLoss", "NLLLoss", "MSELoss", "L1Loss", "KLDivLoss", "BCELoss", "BCEWithLogitsLoss",
                "SmoothL1Loss", "HuberLoss"}
# Methods that return the module they are called on (``model.to(device)``).
SAME_OBJECT_METHODS = {"to", "cuda", "cpu", "float", "half", "bfloat16", "double", "requires_grad_", "share_memory",
                       "train", "eval", "apply"}
