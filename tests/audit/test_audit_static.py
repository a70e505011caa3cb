"""Static audit: verdicts and findings on our own fixture scripts, plus rule-level cases.

Each fixture marks the lines where a violation must be reported with ``# expect: <rule>``; the
tests read those markers, so a fixture documents its own expected findings.
"""

from __future__ import annotations

import ast
import builtins
import json
import re
import textwrap
from pathlib import Path

import pytest

from golfsweep.audit import AuditInputError, AuditReport, Finding, Rule, Severity, Verdict, audit_file, audit_source
from golfsweep.audit import _interp
from golfsweep.audit._syntax import parse_any

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "audit"

EXPECTED = {
    "plain_eval_camel.py": Verdict.CLEAN,
    "ttt_score_first_toplevel.py": Verdict.CLEAN,
    "ttt_helper_prev_block.py": Verdict.CLEAN,
    "ttt_while_cursor.py": Verdict.CLEAN,
    "gptq_calib_train.py": Verdict.CLEAN,
    "train_then_score_class.py": Verdict.FLAGGED,
    "prequant_finetune_val.py": Verdict.FLAGGED,
    "multipass_rescore.py": Verdict.FLAGGED,
    "ttt_lookahead.py": Verdict.FLAGGED,
    "gptq_calib_val.py": Verdict.FLAGGED,
    "ttt_train_replay.py": Verdict.FLAGGED,
    "network_urlretrieve.py": Verdict.FLAGGED,
    "network_subprocess.py": Verdict.FLAGGED,
    "exec_blob.py": Verdict.UNKNOWN,
    "external_logic.py": Verdict.UNKNOWN,
    # one per failure class of the name- and sequence-based audit
    "train_and_eval_gptq_train.py": Verdict.CLEAN,
    "evaluate_named_cheat.py": Verdict.FLAGGED,
    "slot_off_then_ttt.py": Verdict.CLEAN,
    "tempscale_train_after_reload.py": Verdict.FLAGGED,
    "roundtrip_fresh_pass.py": Verdict.CLEAN,
    "exclusive_modes.py": Verdict.CLEAN,
    "pep701_ttt.py": Verdict.CLEAN,
    "ttt_on_a_copy.py": Verdict.CLEAN,
    "lora_ttt_frozen_base.py": Verdict.CLEAN,
    "best_checkpoint_by_val.py": Verdict.CLEAN,
}
NOT_PYTHON = {"syntax_error.py"}  # cannot be audited at all: an error, never a verdict


def expected_violations(path: Path) -> set[tuple[str, int]]:
    out = set()
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        m = re.search(r"#\s*expect:\s*([\w, ]+)$", line)
        if m:
            out.update((rule.strip(), lineno) for rule in m.group(1).split(","))
    return out


def violations(report: AuditReport) -> set[tuple[str, int]]:
    return {(f.rule, f.line) for f in report.findings if f.severity == "violation"}


def audit_snippet(code: str) -> AuditReport:
    return audit_source(textwrap.dedent(code))


# --------------------------------------------------------------------------------------------- fixtures


def test_every_fixture_has_an_expected_verdict():
    assert set(EXPECTED) | NOT_PYTHON == {p.name for p in FIXTURES.glob("*.py")}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_verdict(name):
    report = audit_file(FIXTURES / name)
    assert report.verdict is EXPECTED[name], report.to_dict()
    assert report.path == str(FIXTURES / name)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_violations_match_markers(name):
    path = FIXTURES / name
    assert violations(audit_file(path)) == expected_violations(path)


@pytest.mark.parametrize("name", ["exec_blob.py", "external_logic.py"])
def test_unknown_verdicts_explain_themselves(name):
    report = audit_file(FIXTURES / name)
    assert report.notes, "an unknown verdict needs a note saying what could not be analysed"


def test_a_corrupt_payload_says_which_decoder_failed():
    report = audit_file(FIXTURES / "exec_blob.py")
    assert any("b85decode" in n and "line 7" in n for n in report.notes), report.notes


def test_a_syntax_error_is_an_input_error_naming_the_line():
    with pytest.raises(AuditInputError, match=r"syntax_error\.py: not a Python script \(line 4"):
        audit_file(FIXTURES / "syntax_error.py")


def test_findings_carry_call_path_for_helpers():
    report = audit_file(FIXTURES / "train_then_score_class.py")
    update = next(f for f in report.findings if f.rule == "update_before_score")
    assert "fit_chunk()" in update.message and "call path" in update.message
    assert update.end_line is not None and update.end_line >= update.line


# ------------------------------------------------------------------ renaming every identifier keeps verdicts


class _Renamer(ast.NodeTransformer):
    """Renames every identifier the script defines (functions, classes, arguments, variables and the
    attributes it assigns) to meaningless names; library names, attributes of library objects and
    string literals stay."""

    def __init__(self, tree: ast.Module) -> None:
        imported = set()
        defined = set()
        for n in ast.walk(tree):
            if isinstance(n, (ast.Import, ast.ImportFrom)):
                imported.update((a.asname or a.name).split(".")[0] for a in n.names)
            elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                defined.add(n.name)
            elif isinstance(n, ast.arg):
                defined.add(n.arg)
            elif isinstance(n, (ast.Name, ast.Attribute)) and isinstance(n.ctx, ast.Store):
                defined.add(n.id if isinstance(n, ast.Name) else n.attr)
        names = sorted(d for d in defined - imported if not d.startswith("__") and not hasattr(builtins, d))
        self.mapping = {d: f"q{i}" for i, d in enumerate(names)}

    def _map(self, name: str) -> str:
        return self.mapping.get(name, name)

    def visit_Name(self, node):
        node.id = self._map(node.id)
        return node

    def visit_arg(self, node):
        node.arg = self._map(node.arg)
        return node

    def visit_Attribute(self, node):
        self.generic_visit(node)
        node.attr = self._map(node.attr)
        return node

    def visit_keyword(self, node):
        self.generic_visit(node)
        if node.arg:
            node.arg = self._map(node.arg)
        return node

    def visit_FunctionDef(self, node):
        self.generic_visit(node)
        node.name = self._map(node.name)
        return node

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node):
        self.generic_visit(node)
        node.name = self._map(node.name)
        return node


def renamed(source: str) -> str:
    tree, _ = parse_any(source, "<fixture>")
    renamer = _Renamer(tree)
    return ast.unparse(renamer.visit(tree))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_verdict_does_not_depend_on_identifier_names(name):
    path = FIXTURES / name
    original = audit_file(path)
    report = audit_source(renamed(path.read_text()))
    assert report.verdict is original.verdict
    assert {r for r, _ in violations(report)} == {r for r, _ in violations(original)}


def test_renamer_really_renames():
    text = renamed((FIXTURES / "train_then_score_class.py").read_text())
    assert "fit_chunk" not in text and "ChunkAdapter" not in text and "fineweb_val" in text


# ------------------------------------------------------------------------------------ ordering rules


SCORE_THEN_TRAIN = """
    import numpy as np, torch
    import torch.nn.functional as F

    def run(model, opt, data):
        total = 0.0
        for piece in data.split(4097):
            {first}
            {second}
        return total

    def score(model, piece):
        with torch.no_grad():
            return F.cross_entropy(model(piece[:-1]), piece[1:], reduction="sum").item()

    def learn(model, opt, piece):
        F.cross_entropy(model(piece[:-1]), piece[1:]).backward()
        opt.step()
        opt.zero_grad()

    toks = torch.from_numpy(np.fromfile("shards/fineweb_val_000000.bin", dtype=np.uint16).astype(np.int64))
    net = torch.nn.Linear(4, 4)
    print(run(net, torch.optim.SGD(net.parameters(), lr=0.1), toks))
"""


def test_order_within_the_chunk_loop_decides():
    score_line, learn_line = "total += score(model, piece)", "learn(model, opt, piece)"
    clean = audit_snippet(SCORE_THEN_TRAIN.format(first=score_line, second=learn_line))
    flagged = audit_snippet(SCORE_THEN_TRAIN.format(first=learn_line, second=score_line))
    assert clean.verdict is Verdict.CLEAN, clean.to_dict()
    assert flagged.verdict is Verdict.FLAGGED
    assert {f.rule for f in flagged.findings} >= {"update_before_score", "rescore_after_update"}


def test_fine_tuning_on_validation_without_any_later_score_is_flagged():
    report = audit_snippet("""
        import torch
        tokens = torch.load("cache/fineweb_val_tokens.pt")
        model = torch.nn.Linear(8, 8)
        for i in range(100):
            model(tokens[i]).sum().backward()
        torch.save(model.state_dict(), "final_model.pt")
    """)
    assert report.verdict is Verdict.FLAGGED
    assert [f.rule for f in report.findings] == ["update_before_score"]


def test_training_on_the_previous_chunk_through_an_alias_is_clean():
    report = audit_snippet("""
        import torch, torch.nn.functional as F
        def ttt(model, opt, chunks):
            out = 0.0
            for k in range(len(chunks)):
                prev = k - 1
                if k > 0:
                    F.cross_entropy(model(chunks[prev][:-1]), chunks[prev][1:]).backward()
                    opt.step()
                with torch.inference_mode():
                    out += F.cross_entropy(model(chunks[k][:-1]), chunks[k][1:]).item()
            return out
        chunks = list(torch.load("data/fineweb_val_tokens.pt").split(1025))
        m = torch.nn.Linear(2, 2)
        ttt(m, torch.optim.SGD(m.parameters(), lr=0.1), chunks)
    """)
    assert report.verdict is Verdict.CLEAN, report.to_dict()


def test_score_and_update_from_one_forward_is_clean():
    report = audit_snippet("""
        import torch, torch.nn.functional as F
        def online(model, opt, val_tokens, span=512):
            nll_sum = 0.0
            for s in range(0, val_tokens.numel() - span, span):
                piece = val_tokens[s:s + span + 1]
                nll = F.cross_entropy(model(piece[:-1]), piece[1:], reduction="none")
                nll_sum += nll.detach().sum()
                nll.mean().backward()
                opt.step()
            return nll_sum
        m = torch.nn.Linear(2, 2)
        online(m, torch.optim.SGD(m.parameters(), lr=0.1), torch.load("data/fineweb_val.pt"))
    """)
    assert report.verdict is Verdict.CLEAN, report.to_dict()


def test_model_method_training_on_data_kept_in_an_attribute_is_flagged():
    report = audit_snippet("""
        import torch, torch.nn.functional as F
        from torch import nn
        class Adaptive(nn.Module):
            def __init__(self, buf):
                super().__init__()
                self.lin = nn.Linear(4, 4)
                self.buf = buf
                self.opt = torch.optim.SGD(self.parameters(), lr=0.1)
            def forward(self, x):
                return self.lin(x)
            def warm_up(self):
                for i in range(10):
                    F.cross_entropy(self(self.buf[i]), self.buf[i + 1]).backward()
                    self.opt.step()
        m = Adaptive(torch.load("data/fineweb_val_tokens.pt"))
        m.warm_up()
        with torch.no_grad():
            print(F.cross_entropy(m(m.buf[:-1]), m.buf[1:]))
    """)
    assert report.verdict is Verdict.FLAGGED
    assert {f.rule for f in report.findings} == {"update_before_score", "rescore_after_update"}


def test_closure_handed_to_an_optimizer_step_is_followed():
    report = audit_snippet("""
        import torch, torch.nn.functional as F
        def tune(model, tokens):
            opt = torch.optim.LBFGS(model.parameters())
            def closure():
                loss = F.cross_entropy(model(tokens[:-1]), tokens[1:])
                loss.backward()
                return loss
            for _ in range(5):
                opt.step(closure)
        model = torch.nn.Linear(2, 2)
        tune(model, torch.load("data/fineweb_val.pt"))
        torch.save(model.state_dict(), "final_model.pt")
    """)
    assert [f.rule for f in report.findings] == ["update_before_score"]


TARGET_SCORING = """
    import torch
    import torch.nn.functional as F


    def score(logits, targets, cache):
        {before}
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), reduction="none")
"""


@pytest.mark.parametrize("before,leaks", [
    # the true token is kept out of a mask that removes the others: the distribution depends on it
    ("keep = logits < logits.max(-1, keepdim=True).values - 2.0\n"
     "        safe = targets.clamp(min=0)\n"
     "        keep.scatter_(-1, safe.unsqueeze(-1), False)\n"
     "        logits = logits.masked_fill(keep, -1e9)", True),
    ("logits = logits + 5.0 * F.one_hot(targets, logits.size(-1))", True),
    ("bonus = torch.zeros_like(logits)\n        bonus[..., targets] = 1.0\n        logits = logits + bonus", True),
    # the target's validity masks positions, a cache is read for this token: no write at its index
    ("logits = logits + cache.log()\n        mask = targets != 0", False),
])
def test_a_distribution_changed_at_the_target_index_is_flagged(before, leaks):
    report = audit_snippet(TARGET_SCORING.format(before=before))
    found = [f for f in report.findings if f.rule == "target_shapes_distribution"]
    assert bool(found) is leaks, report.findings
    if leaks:
        assert found[0].severity == "violation" and report.verdict is Verdict.FLAGGED


def test_a_leak_inside_nested_loops_is_one_finding():
    report = audit_snippet("""
        import torch.nn.functional as F


        def score(batches):
            for logits, y in batches:
                for _ in range(2):
                    logits = logits + 5.0 * F.one_hot(y, 8)
                    loss = F.cross_entropy(logits, y)
    """)
    assert [(f.rule, f.line) for f in report.findings] == [("target_shapes_distribution", 9)]


def test_a_cache_updated_with_the_target_after_scoring_it_is_not_a_leak():
    report = audit_snippet("""
        import torch
        import torch.nn.functional as F


        def run(model, chunks, vocab):
            counts = torch.ones(vocab)
            total = 0.0
            for x, y in chunks:
                logits = model(x) + counts.log()
                total += F.cross_entropy(logits, y).item()
                counts.scatter_add_(0, y, torch.ones_like(y, dtype=torch.float))
            return total
    """)
    assert not [f for f in report.findings if f.rule == "target_shapes_distribution"]


NGRAM_SCORING = """
    import os
    import numpy as np
    import torch.nn.functional as F

    NGRAM = int(os.environ.get("NGRAM", "{ngram}"))
    PRIMES = np.array([36313, 27191, 51647], dtype=np.uint64)
    MASK = np.uint64(2**22 - 1)
    ctx_table = np.zeros(2**22, dtype=np.uint32)
    full_table = np.zeros(2**22, dtype=np.uint32)


    def score(logits, x, y, val_np, pos):
        nll = F.cross_entropy(logits, y, reduction="none").numpy()
        ctx_hash = val_np[pos - 1].astype(np.uint64) * PRIMES[0]
        ctx_key = (ctx_hash & MASK).astype(np.int64)
        {extra}
        full_key = ((ctx_hash ^ (nxt * PRIMES[1])) & MASK).astype(np.int64)
        {use}
        return nll


    def evaluate(model, batches, val_np):
        total = 0.0
        for x, y, pos in batches:
            total += score(model(x), x, y, val_np, pos).sum() if NGRAM else F.cross_entropy(model(x), y).item()
        return total


    print(evaluate(None, [], np.zeros(4, dtype=np.uint16)))
"""
READ = ("p = np.minimum(full_table[full_key], ctx_table[ctx_key]) / np.maximum(ctx_table[ctx_key], 1)\n"
        "        nll = -np.log(0.7 * np.exp(-nll) + 0.3 * p)")
COUNT = "np.add.at(ctx_table, ctx_key, 1)\n        np.add.at(full_table, full_key, 1)"


@pytest.mark.parametrize("extra,use,ngram,severity", [
    ("nxt = val_np[pos].astype(np.uint64)", READ, "1", "violation"),  # the scored token hashed into the key
    ("nxt = val_np[pos].astype(np.uint64)", READ, "0", "warning"),  # the same, off by default
    ("nxt = val_np[pos].astype(np.uint64)", COUNT, "1", None),  # counting after scoring only writes
    ("nxt = np.arange(1024, dtype=np.uint64)[:, None]", READ, "1", None),  # every candidate: a distribution
])
def test_a_count_table_read_at_a_key_that_hashes_in_the_scored_token(extra, use, ngram, severity):
    report = audit_snippet(NGRAM_SCORING.format(extra=extra, use=use, ngram=ngram))
    found = [f for f in report.findings if f.rule == "target_shapes_distribution"]
    assert [f.severity for f in found] == ([severity] if severity else []), report.findings
    if severity == "warning":
        assert "default configuration does not run" in found[0].message and report.verdict is Verdict.CLEAN


def test_an_experiment_tracker_is_a_network_warning_not_a_violation():
    report = audit_snippet("""
        import os
        try:
            import wandb
        except ImportError:
            wandb = None
        if wandb is not None and os.environ.get("WANDB_MODE") != "disabled":
            wandb.init(project="golf")
    """)
    [f] = report.findings
    assert (f.rule, f.severity, report.verdict) == ("network", "warning", Verdict.CLEAN)
    assert "WANDB_MODE=offline" in f.message


def test_violation_in_unreached_code_is_only_a_warning():
    report = audit_snippet("""
        import torch
        def unused_cheat(model, val_tokens):
            for i in range(10):
                model(val_tokens[i]).sum().backward()
        @torch.no_grad()
        def score(model, val_tokens):
            return model(val_tokens).sum()
        print(score(torch.nn.Linear(2, 2), torch.load("data/fineweb_val.pt")))
    """)
    assert report.verdict is Verdict.CLEAN
    assert [(f.rule, f.severity) for f in report.findings] == [("update_before_score", "warning")]


def test_gram_matrix_of_validation_activations_is_calibration():
    report = audit_snippet("""
        import torch
        val_tokens = torch.load("data/fineweb_val.pt")
        model = torch.nn.Embedding(1024, 8)
        with torch.no_grad():
            acts = model(val_tokens[:4096])
            H = acts.T @ acts
    """)
    assert report.verdict is Verdict.FLAGGED
    assert [f.rule for f in report.findings] == ["val_calibration"]


def test_reading_train_shards_in_a_function_named_evaluate_proves_nothing():
    # No artifact round trip and no validation update: nothing says evaluation has begun, whatever the name.
    report = audit_snippet("""
        import numpy as np, torch
        @torch.no_grad()
        def evaluate(model, val_tokens):
            bonus = np.fromfile("data/fineweb_train_000001.bin", dtype=np.uint16)
            return model(val_tokens).sum()
        print(evaluate(torch.nn.Linear(2, 2), torch.load("data/fineweb_val.pt")))
    """)
    assert report.verdict is Verdict.CLEAN, report.to_dict()


# --------------------------------------------------------------------------------- network and dynamic code


@pytest.mark.parametrize("code", [
    "import requests\nrequests.get('https://example.org/data.bin')",
    "from huggingface_hub import hf_hub_download\nhf_hub_download('org/repo', 'x.bin')",
    "import datasets\nds = datasets.load_dataset('HuggingFaceFW/fineweb')",
    "import torch\nm = torch.hub.load('org/repo', 'model')",
    "import os\nos.system('wget -q https://example.org/x.bin')",
    "import subprocess\nsubprocess.check_call('git clone https://example.org/r.git', shell=True)",
    "import socket\ns = socket.create_connection(('example.org', 80))",
    "from urllib import request\nrequest.urlopen('https://example.org')",
])
def test_network_access_is_flagged(code):
    report = audit_source(code)
    assert report.verdict is Verdict.FLAGGED
    assert {f.rule for f in report.findings} == {"network"}


@pytest.mark.parametrize("code", [
    "import socket\nprint(socket.gethostname())",
    "import urllib.parse\nprint(urllib.parse.quote('a b'))",
    "import subprocess\nsubprocess.run(['nvidia-smi'], check=False)",
])
def test_harmless_neighbours_of_network_calls_are_clean(code):
    assert audit_source(code).verdict is Verdict.CLEAN


@pytest.mark.parametrize("code", [
    "eval(open('more_code.py').read())",
    "import importlib\nmod = importlib.import_module('golf_' + 'impl')\nmod.main()",
    "from .helpers import train\ntrain()",
    "from my_private_lib import *\nrun_everything()",
])
def test_code_the_audit_cannot_see_gives_unknown(code):
    report = audit_source(code)
    assert report.verdict is Verdict.UNKNOWN
    assert report.notes


def test_model_eval_method_is_not_dynamic_code():
    assert audit_source("import torch\nm = torch.nn.Linear(2, 2)\nm.eval()\n").verdict is Verdict.CLEAN


def test_untraceable_data_in_a_gradient_step_gives_unknown():
    report = audit_snippet("""
        import torch
        def adapt(model):
            loss = model(mystery_batch()).sum()
            loss.backward()
        adapt(torch.nn.Linear(2, 2))
    """)
    assert report.verdict is Verdict.UNKNOWN
    assert any("mystery_batch" in n for n in report.notes)


def test_running_out_of_analysis_budget_gives_unknown(monkeypatch):
    monkeypatch.setattr(_interp.Interp, "BUDGET", 50)
    report = audit_file(FIXTURES / "ttt_score_first_toplevel.py")
    assert report.verdict is Verdict.UNKNOWN
    assert any("budget" in n for n in report.notes)


# ------------------------------------------------------------------------------------------ report shape


def test_report_to_dict_is_json_ready():
    report = audit_file(FIXTURES / "prequant_finetune_val.py")
    d = report.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert set(d) == {"path", "verdict", "findings", "notes", "env", "sources"}
    assert d["verdict"] == "flagged"
    assert set(d["findings"][0]) == {"rule", "line", "end_line", "message", "severity", "source", "related"}
    lines = [f["line"] for f in d["findings"]]
    assert lines == sorted(lines)


def test_report_types_are_frozen():
    report = audit_source("x = 1\n")
    assert report.verdict is Verdict.CLEAN and report.path is None
    with pytest.raises(AttributeError):
        report.verdict = Verdict.FLAGGED  # type: ignore[misc]
    with pytest.raises(AttributeError):
        Finding(Rule.NETWORK, 1, None, "m", Severity.WARNING).line = 2  # type: ignore[misc]
    assert Verdict("unknown") is Verdict.UNKNOWN and Verdict.CLEAN == "clean"


@pytest.mark.parametrize("content, message", [
    (b"", "empty file"),
    (b"   \n\n# only a comment\n", "empty file"),
    (b"\x7fELF\x02\x01\x00\x00binary", "binary file"),
    (b"\xff\xfe garbage \xfa", "not UTF-8"),
    (b"# Title\n\nSome *markdown* text that isn't Python.\n", "not a Python script"),
    (b"#!/bin/sh\nset -e\nfor f in *.bin; do echo $f; done\n", "not a Python script"),
])
def test_files_that_cannot_be_audited_are_errors_never_clean(tmp_path, content, message):
    path = tmp_path / "train_gpt.py"
    path.write_bytes(content)
    with pytest.raises(AuditInputError, match=message):
        audit_file(path)


def test_a_missing_file_is_an_error(tmp_path):
    with pytest.raises(AuditInputError, match="not a readable file"):
        audit_file(tmp_path / "nope.py")
