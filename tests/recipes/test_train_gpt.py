"""The reference trainer: byte accounting, GPTQ, the artifact round trip, score-first TTT,
shard errors, and end-to-end runs on CPU (one process and torchrun with two)."""

from __future__ import annotations

import copy
import importlib.util
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm
import torch

from golfsweep.data import build_demo_data, read_shard

SCRIPT = Path(__file__).resolve().parents[2] / "golfsweep" / "recipes" / "train_gpt.py"

# Small enough for a few seconds on one CPU core, big enough to learn past unigram statistics.
TINY_ENV = {
    "NUM_LAYERS": "2", "MODEL_DIM": "64", "NUM_HEADS": "4", "NUM_KV_HEADS": "2", "MLP_MULT": "2",
    "TRAIN_SEQ_LEN": "64", "TRAIN_BATCH_TOKENS": "1024", "ITERATIONS": "300", "WARMDOWN_ITERS": "100",
    "WARMUP_STEPS": "0", "MUON_MOMENTUM": "0.8", "EMBED_LR": "0.02", "LOGIT_SOFTCAP": "0",
    "VAL_BATCH_SIZE": "8192", "VAL_MAX_TOKENS": "16384", "GPTQ_CALIB_TOKENS": "8192",
    "TRAIN_LOG_EVERY": "100", "MAX_WALLCLOCK_SECONDS": "0",
}


def _load_trainer():
    spec = importlib.util.spec_from_file_location("golfsweep_train_gpt_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


tg = _load_trainer()
CPU = tg.Runtime(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return build_demo_data(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="module")
def sp(demo):
    return spm.SentencePieceProcessor(model_file=str(demo.tokenizer_path))


def _hp(demo, **overrides):
    env = {**TINY_ENV, **demo.env(), **{k.upper(): str(v) for k, v in overrides.items()}}
    return tg.Hyperparameters.from_env(env)


@pytest.fixture(scope="module")
def trained(demo):
    """A tiny model after 40 training steps, with its hyperparameters."""
    torch.manual_seed(0)
    hp = _hp(demo, iterations=40, warmdown_iters=10)
    model = tg.GPT(hp)
    opts = tg.build_optimizers(model, hp, CPU)
    loader = tg.TrainLoader(tg.shard_files(hp.data_path, "train"), CPU)
    for step in range(hp.iterations):
        for opt in opts:
            for group in opt.param_groups:
                group["lr"] = group["base_lr"] * tg.lr_multiplier(step, 0.0, hp)
        model.loss(*loader.next_batch(hp.train_batch_tokens, hp.train_seq_len)).backward()
        for opt in opts:
            opt.step()
        model.zero_grad(set_to_none=True)
    return hp, model


def _decoded_bytes(sp, tokens) -> int:
    """UTF-8 length of the text, decoding each BOS-started document on its own."""
    tokens = np.asarray(tokens)
    starts = np.flatnonzero(tokens == sp.bos_id()).tolist()
    bounds = zip(starts, starts[1:] + [len(tokens)])
    return sum(len(sp.decode(tokens[a:b].tolist()).encode("utf-8")) for a, b in bounds)


def _unigram_bits_per_byte(tokens, total_bytes: int, vocab_size: int) -> float:
    counts = np.bincount(np.asarray(tokens[1:]), minlength=vocab_size)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum()) * (len(tokens) - 1) / total_bytes


# ----------------------------------------------------------------------------- byte accounting


def test_bpb_bytes_equal_decoded_validation_text(demo, sp):
    luts = tg.build_byte_luts(sp, demo.vocab_size)
    tokens = torch.from_numpy(read_shard(demo.val_path).astype(np.int64))
    counted = int(luts.count(tokens[:-1], tokens[1:]).sum())
    assert counted == _decoded_bytes(sp, tokens.numpy())

    # The evaluation loops count the same bytes, with plain and with sliding windows.
    hp = _hp(demo, val_max_tokens=3000)
    val = tg.load_val_tokens(hp.data_path, hp.val_max_tokens)
    model = tg.GPT(hp)
    expected = _decoded_bytes(sp, val.numpy())
    for stride in (0, 16):
        sums = tg.evaluate(model, val, hp, luts, CPU, stride=stride)
        assert sums.bytes == expected
        assert sums.tokens == len(val) - 1


def test_bpb_bytes_with_byte_fallback_and_spaces(sp, demo):
    luts = tg.build_byte_luts(sp, demo.vocab_size)
    texts = ["Ünïcödé → 日本語 😀 naïve", "  leading spaces and 123 digits", "x", "€€ end.  "]
    tokens = []
    for t in texts:
        tokens += [sp.bos_id()] + sp.encode(t)
    assert any(sp.is_byte(i) for i in tokens)
    tokens = torch.tensor(tokens)
    assert int(luts.count(tokens[:-1], tokens[1:]).sum()) == _decoded_bytes(sp, tokens.numpy())


# ----------------------------------------------------------------------------- GPTQ


def _output_error(w, w_hat, H) -> float:
    """||X W^T - X W_hat^T||_F^2 / n for inputs X with X^T X / n = H."""
    d = (w - w_hat).double()
    return float(torch.einsum("oi,ij,oj->", d, H.double(), d))


def test_gptq_beats_round_to_nearest_on_trained_layers(trained):
    hp, model = trained
    stream = tg.TokenStream(tg.shard_files(hp.data_path, "train"))
    calib = torch.from_numpy(stream.take(8192 + 1))
    heldout = torch.from_numpy(stream.take(8192 + 1))  # later training tokens, not seen by GPTQ
    H = tg.collect_hessians(model, calib, hp.train_seq_len, 32, CPU)
    H_heldout = tg.collect_hessians(model, heldout, hp.train_seq_len, 32, CPU)
    state = model.state_dict()
    assert set(H) == set(tg.quantized_names(model)) and len(H) == 6 * hp.num_layers
    for name, h in H.items():
        w = state[name]
        q, scale = tg.gptq_quantize(w, h, bits=6, damp=0.01)
        q_rtn, scale_rtn = tg.quantize_rtn(w, bits=6, scale=scale)
        assert torch.equal(scale, scale_rtn)
        assert q.dtype == torch.int8 and int(q.abs().max()) <= 31
        gptq_err = _output_error(w, tg.dequantize(q, scale), H_heldout[name])
        rtn_err = _output_error(w, tg.dequantize(q_rtn, scale), H_heldout[name])
        assert gptq_err < rtn_err, name


def test_gptq_on_a_fitted_linear_layer_and_damping_matters():
    g = torch.Generator().manual_seed(0)
    n, d_in, d_out = 4096, 64, 48
    mix = torch.randn(8, d_in, generator=g)
    make_x = lambda: torch.randn(n, 8, generator=g) @ mix + 0.05 * torch.randn(n, d_in, generator=g)  # noqa: E731
    x = make_x()
    y = x @ torch.randn(d_in, d_out, generator=g) + 0.1 * torch.randn(n, d_out, generator=g)
    layer = torch.nn.Linear(d_in, d_out, bias=False)
    opt = torch.optim.Adam(layer.parameters(), lr=0.01)
    for _ in range(300):
        opt.zero_grad()
        torch.nn.functional.mse_loss(layer(x), y).backward()
        opt.step()
    w = layer.weight.detach()
    H = x.T @ x / n
    x_test = make_x()

    def err(w_hat):
        return float((x_test @ (w - w_hat).T).norm())

    q, scale = tg.gptq_quantize(w, H, bits=6, damp=0.01)
    q_rtn, _ = tg.quantize_rtn(w, 6, scale)
    assert err(tg.dequantize(q, scale)) < 0.7 * err(tg.dequantize(q_rtn, scale))
    q_damped, _ = tg.gptq_quantize(w, H, bits=6, damp=1.0)
    assert not torch.equal(q, q_damped)
    assert err(tg.dequantize(q, scale)) != err(tg.dequantize(q_damped, scale))


# ----------------------------------------------------------------------------- artifact round trip


def test_quantize_compress_load_dequantize_round_trip(trained, tmp_path):
    hp, model = trained
    calib = tg.calibration_tokens(hp)
    H = tg.collect_hessians(model, calib, hp.train_seq_len, 32, CPU)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    payload = tg.quantize_state_dict(state, H, hp.gptq_bits, hp.gptq_damp)
    blob = tg.compress_payload(payload)
    assert blob[:4] == b"\x28\xb5\x2f\xfd"  # zstd frame
    path = tmp_path / "final_model.int6.ptz"
    tg.write_atomic(path, blob)

    restored = tg.dequantize_state_dict(tg.decompress_payload(path.read_bytes()))
    assert restored.keys() == state.keys()
    for name, w in state.items():
        entry = payload["tensors"][name]
        got = restored[name]
        assert got.shape == w.shape and got.dtype == w.dtype
        if entry["kind"] == "raw":
            assert torch.equal(got, w), name
            continue
        assert torch.equal(got, tg.dequantize(entry["q"], entry["scale"])), name
        if entry["kind"] == "int8":  # round to nearest: within half a step (+ fp16 scale rounding)
            step = entry["scale"].float()[:, None]
            assert bool(((got - w).abs() <= 0.5 * step + 1e-3 * w.abs()).all()), name
        else:
            assert float((got - w).norm() / w.norm()) < 0.05, name
    kinds = {name: e["kind"] for name, e in payload["tensors"].items()}
    assert kinds["tok_emb.weight"] == "int8"
    assert {n for n, k in kinds.items() if k == "gptq"} == set(tg.quantized_names(model))

    loaded = tg.load_artifact_model(path, hp, CPU)
    x = calib[: hp.train_seq_len][None]
    ref = tg.GPT(hp)
    ref.load_state_dict(restored)
    assert torch.equal(loaded(x), ref(x))


# ----------------------------------------------------------------------------- score-first TTT


def test_score_first_ttt_scores_before_training(trained, demo, sp):
    hp, model = trained
    luts = tg.build_byte_luts(sp, demo.vocab_size)
    for stride in (0, 16):
        hp_t = copy.copy(hp)
        hp_t.val_max_tokens, hp_t.ttt_chunk_tokens, hp_t.ttt_lr, hp_t.ttt_batch_seqs = 4096, 1024, 0.05, 4
        val = tg.load_val_tokens(hp_t.data_path, hp_t.val_max_tokens)
        events = []
        ttt = tg.eval_score_first_ttt(copy.deepcopy(model), val, hp_t, luts, CPU, stride=stride,
                                      on_event=lambda kind, a, b: events.append((kind, a, b)))
        scored_end = 0
        trains_per_chunk = []
        for kind, a, b in events:
            if kind == "score":
                assert a == scored_end  # chunks are scored in order, without gaps
                scored_end = b
                trains_per_chunk.append(0)
            else:
                assert 0 <= a < b <= scored_end  # only targets that were already scored
                trains_per_chunk[-1] += 1
        assert scored_end == len(val) - 1
        assert len(trains_per_chunk) == math.ceil((len(val) - 1) / 1024)
        # ~1024 targets = 16 sequences of 64 = 4 steps of 4 sequences; none after the last chunk.
        assert all(n >= 4 for n in trains_per_chunk[:-1]) and trains_per_chunk[-1] == 0
        plain = tg.evaluate(model, val, hp_t, luts, CPU, stride=stride)
        assert ttt.tokens == plain.tokens and ttt.bytes == plain.bytes
        assert ttt.val_bpb != plain.val_bpb  # the model did learn from scored chunks


def test_ttt_never_trains_on_an_unscored_token(demo, sp):
    """Independent of the event hook: validation tokens are all distinct (token id ==
    position), so every forward pass shows exactly which targets it saw."""
    torch.manual_seed(0)
    hp = _hp(demo, num_layers=1, model_dim=32, num_heads=2, num_kv_heads=1, eval_seq_len=32,
             ttt_chunk_tokens=128, ttt_lr=0.01, ttt_batch_seqs=2, ttt_epochs=2, val_batch_size=256)
    luts = tg.build_byte_luts(sp, demo.vocab_size)
    val = torch.arange(demo.vocab_size)
    model = tg.GPT(hp)
    calls = []
    inner = model.token_losses

    def recording(x, y):
        calls.append((torch.is_grad_enabled(), set(y.flatten().tolist())))
        return inner(x, y)

    model.token_losses = recording
    for stride in (0, 8):
        calls.clear()
        tg.eval_score_first_ttt(model, val, hp, luts, CPU, stride=stride)
        scored: set[int] = set()
        trained: set[int] = set()
        for grad, targets in calls:
            if grad:
                assert targets <= scored, sorted(targets - scored)[:5]
                trained |= targets
            else:
                scored |= targets
        assert scored == set(range(1, len(val)))
        last_chunk = set(range(1 + (len(val) - 2) // 128 * 128, len(val)))
        assert trained and not trained & last_chunk
        assert trained == set(range(1, min(last_chunk)))


def test_ttt_with_zero_lr_equals_plain_evaluation(trained, demo, sp):
    hp, model = trained
    luts = tg.build_byte_luts(sp, demo.vocab_size)
    for stride in (0, 16):
        hp_t = copy.copy(hp)
        hp_t.val_max_tokens, hp_t.ttt_chunk_tokens, hp_t.ttt_lr = 6000, 1500, 0.0
        val = tg.load_val_tokens(hp_t.data_path, hp_t.val_max_tokens)
        snapshot = copy.deepcopy(model.state_dict())
        ttt = tg.eval_score_first_ttt(model, val, hp_t, luts, CPU, stride=stride)
        plain = tg.evaluate(model, val, hp_t, luts, CPU, stride=stride)
        assert (ttt.loss, ttt.tokens, ttt.bytes) == (plain.loss, plain.tokens, plain.bytes)
        assert ttt.val_bpb == plain.val_bpb
        assert all(torch.equal(v, snapshot[k]) for k, v in model.state_dict().items())


# ----------------------------------------------------------------------------- shards and configuration


def test_shard_header_errors_name_the_file(tmp_path):
    good = np.zeros(256, dtype="<i4")
    good[:3] = [20240520, 1, 10]
    body = np.arange(10, dtype="<u2").tobytes()

    bad_magic = tmp_path / "fineweb_train_000000.bin"
    header = good.copy()
    header[0] = 1234
    bad_magic.write_bytes(header.tobytes() + body)
    with pytest.raises(SystemExit, match=r"fineweb_train_000000.bin: bad shard magic 1234, expected 20240520"):
        tg.load_shard(bad_magic)

    bad_version = tmp_path / "v.bin"
    header = good.copy()
    header[1] = 2
    bad_version.write_bytes(header.tobytes() + body)
    with pytest.raises(SystemExit, match=r"v.bin: unsupported shard version 2"):
        tg.load_shard(bad_version)

    short = tmp_path / "short.bin"
    short.write_bytes(good.tobytes() + body[:8])
    with pytest.raises(SystemExit, match=r"short.bin: header says 10 tokens \(1044 bytes\) but the file has 1032"):
        tg.load_shard(short)

    stub = tmp_path / "stub.bin"
    stub.write_bytes(b"\x00" * 100)
    with pytest.raises(SystemExit, match=r"stub.bin: 100 bytes is shorter than the 1024-byte shard header"):
        tg.load_shard(stub)

    ok = tmp_path / "ok.bin"
    ok.write_bytes(good.tobytes() + body)
    assert tg.load_shard(ok).tolist() == list(range(10))


def test_hyperparameters_from_env():
    hp = tg.Hyperparameters.from_env({"NUM_LAYERS": "3", "QK_GAIN_INIT": "2.5", "RUN_ID": "abc"})
    assert (hp.num_layers, hp.qk_gain_init, hp.run_id, hp.gptq_bits, hp.gptq_damp) == (3, 2.5, "abc", 6, 0.01)
    with pytest.raises(SystemExit) as err:
        tg.Hyperparameters.from_env({"MODEL_DIM": "abc", "GPTQ_BITS": "12", "NUM_KV_HEADS": "3"})
    message = str(err.value)
    assert "MODEL_DIM='abc': expected int" in message
    assert "GPTQ_BITS=12: must be in 2..8" in message and "NUM_KV_HEADS=3" in message


def test_qk_gain_multiplies_normalized_queries(demo):
    torch.manual_seed(0)
    model = tg.GPT(_hp(demo, num_layers=1, qk_gain_init=1.0))
    x = torch.randint(0, demo.vocab_size, (2, 16))
    torch.nn.init.normal_(model.blocks[0].attn.proj.weight, std=0.05)
    before = model(x)
    with torch.no_grad():
        model.blocks[0].attn.q_gain.fill_(4.0)
    assert not torch.allclose(before, model(x))


# ----------------------------------------------------------------------------- end to end


def _run(cmd, env_overrides, out_dir: Path, demo, timeout: float) -> str:
    env = {**os.environ, **TINY_ENV, **demo.env(), "OUT_DIR": str(out_dir), "OMP_NUM_THREADS": "1",
           **env_overrides}
    proc = subprocess.run(cmd, env=env, cwd=out_dir, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def _metric(log: str, label: str) -> tuple[float, float]:
    m = re.search(rf"^{label} val_loss:(\S+) val_bpb:(\S+)", log, re.M)
    assert m, f"no {label} line"
    return float(m.group(1)), float(m.group(2))


def test_end_to_end_cpu_run(demo, sp, tmp_path):
    extra = {"EVAL_STRIDE": "32", "TTT_ENABLED": "1", "TTT_LR": "0.05", "TTT_CHUNK_TOKENS": "2048", "SEED": "7"}
    log = _run([sys.executable, str(SCRIPT)], extra, tmp_path, demo, timeout=120)

    assert re.search(r"^seed:7$", log, re.M)
    assert re.search(r"^qk_gain_init:1.5$", log, re.M)
    assert re.search(r"^step:300/300 train_loss:\S+ train_time:\d+ms step_avg:\S+ms$", log, re.M)
    assert re.search(r"^step:300/300 val_loss:\S+ val_bpb:\S+ train_time:\d+ms step_avg:\S+ms$", log, re.M)

    ptz = tmp_path / "final_model.int6.ptz"
    assert sorted(p.name for p in tmp_path.iterdir()) == [ptz.name]
    code = SCRIPT.stat().st_size
    assert f"Serialized model int6+zstd: {ptz.stat().st_size} bytes" in log
    assert f"Code size: {code} bytes" in log
    total = int(re.search(r"^Total submission size int6\+zstd: (\d+) bytes$", log, re.M).group(1))
    assert total == ptz.stat().st_size + code

    val = read_shard(demo.val_path)[: int(TINY_ENV["VAL_MAX_TOKENS"])].astype(np.int64)
    unigram = _unigram_bits_per_byte(val, _decoded_bytes(sp, val), demo.vocab_size)
    _, bpb = _metric(log, "final_int6_zstd_roundtrip_exact")
    _, bpb_sliding = _metric(log, "final_int6_sliding_window_exact")
    _, bpb_ttt = _metric(log, "legal_ttt_exact")
    assert re.search(r"^final_int6_zstd_roundtrip val_loss:\S+ val_bpb:\S+ eval_time:\d+ms$", log, re.M)
    assert re.search(r"^legal_ttt_exact val_loss:\S+ val_bpb:\S+ eval_time:\d+ms$", log, re.M)
    assert bpb < 0.85 * unigram, (bpb, unigram)
    assert bpb_sliding < bpb  # more context per scored token
    assert bpb_ttt < bpb_sliding  # TTT scores the sliding windows of an adapting model


def test_torchrun_two_processes_with_wallclock_cap(demo, tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(SCRIPT)]
    extra = {"NUM_LAYERS": "1", "MODEL_DIM": "32", "NUM_HEADS": "2", "NUM_KV_HEADS": "1", "ITERATIONS": "100000",
             "MAX_WALLCLOCK_SECONDS": "1", "WARMUP_STEPS": "2", "VAL_MAX_TOKENS": "4096", "EVAL_STRIDE": "32",
             "TTT_ENABLED": "1", "TTT_CHUNK_TOKENS": "1024", "GPTQ_CALIB_TOKENS": "2048"}
    log = _run(cmd, extra, tmp_path, demo, timeout=120)
    assert "world_size:2" in log
    m = re.search(r"^stopping_early: wallclock_cap train_time:(\d+)ms step:(\d+)/100000$", log, re.M)
    assert m and int(m.group(1)) >= 1000 and 0 < int(m.group(2)) < 100000
    assert (tmp_path / "final_model.int6.ptz").is_file()
    for label in ("final_int6_zstd_roundtrip_exact", "final_int6_sliding_window_exact", "legal_ttt_exact"):
        loss, bpb = _metric(log, label)
        assert math.isfinite(loss) and 0 < bpb < 10
    assert log.count("Total submission size") == 1  # only rank 0 logs
