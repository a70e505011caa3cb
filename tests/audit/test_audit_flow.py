"""The audit follows what runs: configuration switches, exclusive branches, the artifact's round trip,
wrapped code and newer syntax. Fixtures live in tests/fixtures/audit (their docstrings say why)."""

from __future__ import annotations

import base64
import bz2
import gzip
import json
import lzma
import textwrap
import zlib
from pathlib import Path

import pytest

from golfsweep.audit import Rule, Severity, Verdict, audit_file, audit_source
from golfsweep.audit._syntax import parse_any

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "audit"


def rules(report, severity=Severity.VIOLATION) -> set[tuple[str, int]]:
    return {(f.rule.value, f.line) for f in report.findings if f.severity is severity}


def snippet(code: str, **env: str):
    return audit_source(textwrap.dedent(code), env=env)


# ------------------------------------------------------------------------------------ configuration switches


def test_a_switch_the_defaults_turn_off_does_not_flag_its_protocol_problem():
    report = audit_file(FIXTURES / "slot_off_then_ttt.py")
    assert report.verdict is Verdict.CLEAN
    warnings = [f for f in report.findings if f.severity is Severity.WARNING]
    assert warnings and all("SLOT_ENABLED" in f.message for f in warnings)
    assert any("SLOT_ENABLED" in n for n in report.notes)  # the switch followed at its default is named


def test_pinning_the_switch_on_flags_the_step_and_the_scoring_it_taints():
    report = audit_file(FIXTURES / "slot_off_then_ttt.py", env={"SLOT_ENABLED": "1"})
    assert report.verdict is Verdict.FLAGGED
    update = next(f for f in report.findings if f.rule is Rule.UPDATE_BEFORE_SCORE)
    assert update.line == 27 and 30 in update.related  # the SLOT backward, then its scoring
    assert ("rescore_after_update", 30) in rules(report)
    assert dict(report.env) == {"SLOT_ENABLED": "1"}


def test_an_access_rule_holds_behind_a_switch_and_pinning_its_default_clears_it():
    flagged = audit_file(FIXTURES / "tempscale_train_after_reload.py")
    assert flagged.verdict is Verdict.FLAGGED
    assert all("only when TEMP_SEARCH" in f.message for f in flagged.findings)
    pinned = audit_file(FIXTURES / "tempscale_train_after_reload.py", env={"TEMP_SEARCH": "0"})
    assert pinned.verdict is Verdict.CLEAN, pinned.to_dict()


ADAPT_SWITCH = """
    import os, torch, numpy as np, torch.nn.functional as F
    {reader}
    val = torch.from_numpy(np.fromfile("data/fineweb_val_0.bin", dtype=np.uint16).astype(np.int64))
    model = torch.nn.Linear(4, 4)
    if {test}:
        F.cross_entropy(model(val[:-1]), val[1:]).backward()
    with torch.no_grad():
        print(F.cross_entropy(model(val[:-1]), val[1:]).item())
"""


@pytest.mark.parametrize("reader, test", [
    ('ADAPT = int(os.environ.get("ADAPT", "0"))', "ADAPT"),
    ('ADAPT = os.getenv("ADAPT", "false").lower() in ("1", "true")', "ADAPT"),
    ('def flag(name, default):\n        return bool(int(os.environ.get(name, str(default))))\n'
     '    class Cfg:\n        adapt = flag("ADAPT", 0)\n    cfg = Cfg()', "cfg.adapt"),
    ('def env(k, d, t=str):\n        v = os.environ.get(k, str(d))\n        if t == bool: return bool(int(v))\n'
     '        return t(v)\n    ADAPT = env("ADAPT", 0, bool)', "ADAPT"),
    ('ADAPT = "ADAPT" in os.environ', "ADAPT"),
])
def test_env_defaults_decide_branches_through_helpers_and_config_classes(reader, test):
    code = ADAPT_SWITCH.format(reader=reader, test=test)
    assert snippet(code).verdict is Verdict.CLEAN
    assert snippet(code, ADAPT="1" if "in os.environ" not in reader else "").verdict is Verdict.FLAGGED


def test_a_branch_on_launcher_variables_follows_both_arms():
    report = snippet(ADAPT_SWITCH.format(reader='RANK = int(os.environ.get("RANK", "0"))', test="RANK == 0"))
    assert report.verdict is Verdict.FLAGGED  # torchrun sets RANK: the default decides nothing


def test_exclusive_arms_of_an_unknown_condition_are_never_one_sequence():
    assert audit_file(FIXTURES / "exclusive_modes.py").verdict is Verdict.CLEAN
    same_arm = (FIXTURES / "exclusive_modes.py").read_text().replace("if not online:", "if online:")
    report = audit_source(same_arm)
    assert report.verdict is Verdict.FLAGGED  # both on the same path: the plain pass rescores


# ------------------------------------------------------------------------------------------ the round trip


def test_the_training_loop_of_a_pre_quantization_finetune_gets_its_own_finding():
    report = audit_file(FIXTURES / "prequant_finetune_val.py")
    update = next(f for f in report.findings if f.rule is Rule.UPDATE_BEFORE_SCORE)
    rescore = next(f for f in report.findings if f.rule is Rule.RESCORE)
    assert rescore.line in update.related and update.line in rescore.related
    assert "taints the scoring" in update.message


def test_weights_that_trained_on_validation_keep_it_through_the_round_trip():
    report = snippet("""
        import io, torch, numpy as np, torch.nn.functional as F
        val = torch.from_numpy(np.fromfile("data/fineweb_val_0.bin", dtype=np.uint16).astype(np.int64))
        model = torch.nn.Linear(4, 4)
        with torch.no_grad():
            F.cross_entropy(model(val[:-1]), val[1:]).item()
        F.cross_entropy(model(val[:-1]), val[1:]).backward()
        buf = io.BytesIO()
        torch.save(model.state_dict(), buf)
        model.load_state_dict(torch.load(io.BytesIO(buf.getvalue())))
        with torch.no_grad():
            print(F.cross_entropy(model(val[:-1]), val[1:]).item())
    """)
    assert report.verdict is Verdict.FLAGGED
    assert ("rescore_after_update", 12) in rules(report)


def test_an_update_belongs_to_the_model_it_ran_through():
    assert audit_file(FIXTURES / "ttt_on_a_copy.py").verdict is Verdict.CLEAN
    same_model = (FIXTURES / "ttt_on_a_copy.py").read_text().replace("copy.deepcopy(raw)", "raw")
    report = audit_source(same_model)
    assert report.verdict is Verdict.FLAGGED  # the adapted weights are the ones saved and scored
    assert {r for r, _ in rules(report)} == {"update_before_score", "rescore_after_update"}


@pytest.mark.parametrize("passes,verdict", [("2", Verdict.FLAGGED), ("1", Verdict.CLEAN), ("0", Verdict.CLEAN)])
def test_a_loop_over_a_known_range_runs_that_many_times(passes, verdict):
    # ``for epoch in range(EPOCHS)`` with one epoch is one score-first pass: no epoch comes back to
    # tokens an earlier one trained on. Zero epochs never run the body.
    text = (FIXTURES / "multipass_rescore.py").read_text()
    text = text.replace("import numpy as np\n", "import os\n\nimport numpy as np\n", 1)
    text = text.replace("def ttt_eval(model, val_tokens, passes=2):",
                        'def ttt_eval(model, val_tokens, passes=int(os.environ.get("TTT_EPOCHS", "2"))):')
    assert audit_source(text).verdict is Verdict.FLAGGED
    assert audit_source(text, env={"TTT_EPOCHS": passes}).verdict is verdict


FREEZE_LOOP = "for p in model.parameters():\n    p.requires_grad_(False)\n"


def test_a_step_through_a_frozen_base_model_changes_the_adapter_only():
    path = FIXTURES / "lora_ttt_frozen_base.py"
    text = path.read_text()
    assert FREEZE_LOOP in text
    report = audit_file(path)
    assert report.verdict is Verdict.CLEAN
    warm_line = next(i for i, line in enumerate(text.splitlines(), 1) if "lora=warm).backward()" in line)
    assert f"line {warm_line}: trains a model on validation tokens before they are scored, but those weights " \
           "never score (a warm-up?): not a finding" in report.notes
    # The same freeze written as a module call or an attribute assignment.
    for freeze in ("model.requires_grad_(False)\n", "for p in model.parameters():\n    p.requires_grad = False\n"):
        assert audit_source(text.replace(FREEZE_LOOP, freeze)).verdict is Verdict.CLEAN, freeze
    # A trainable base model is changed by the warm-up and the TTT steps: both are then scored.
    trainable = audit_source(text.replace(FREEZE_LOOP, FREEZE_LOOP.replace("False", "True")))
    assert trainable.verdict is Verdict.FLAGGED
    assert ("update_before_score", warm_line) in rules(trainable)
    # Freezing only some parameters (on a condition the audit cannot decide) freezes none of them.
    partial = FREEZE_LOOP.replace("    p.requires_grad_", "    if p.ndim > 1:\n        p.requires_grad_")
    assert audit_source(text.replace(FREEZE_LOOP, partial)).verdict is Verdict.FLAGGED


def test_weights_trained_on_unscored_tokens_count_once_they_score():
    text = (FIXTURES / "lora_ttt_frozen_base.py").read_text()
    warm_line = next(i for i, line in enumerate(text.splitlines(), 1) if "lora=warm).backward()" in line)
    scored = text.replace("del warm, warm_opt\n", "").replace('print("ttt", ttt(model, val))',
                                                              'print("warm", score(model, val, warm))')
    report = audit_source(scored)
    assert report.verdict is Verdict.FLAGGED
    assert ("update_before_score", warm_line) in rules(report)
    assert not any("never score" in n for n in report.notes)


def _line(text: str, fragment: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if fragment in line)


def test_weights_chosen_by_their_validation_score_are_a_warning_where_they_are_saved():
    path = FIXTURES / "best_checkpoint_by_val.py"
    text = path.read_text()
    test_line = _line(text, "if val_loss <= best:")
    saves = {_line(text, '"best_model.pt"'), _line(text, '"final_model.pt"'), _line(text, '"best_copy.pt"')}
    report = audit_file(path)
    assert report.verdict is Verdict.CLEAN  # a reviewer's question, not a disqualification
    found = [f for f in report.findings if f.rule is Rule.SELECT_ON_VAL]
    assert {f.line for f in found} == saves  # not the periodic checkpoint, not the branch that only logs
    assert all(f.severity is Severity.WARNING and f.related == (test_line,) for f in found)
    # Exporting the last weights instead: the artifact is no longer chosen by the score.
    last = audit_file(path, env={"EXPORT_BEST": "0"})
    assert {f.line for f in last.findings} == saves - {_line(text, '"final_model.pt"')}


def test_a_branch_on_anything_but_a_validation_score_chooses_nothing():
    report = snippet("""
        import numpy as np, torch
        val = torch.from_numpy(np.fromfile("data/fineweb_val_0.bin", dtype=np.uint16).astype(np.int64))
        model = torch.nn.Linear(4, 4)
        if val.numel() > 1000 and torch.cuda.is_available():  # the tokens, not a score
            torch.save(model.state_dict(), "final_model.pt")
    """)
    assert report.findings == ()


def test_calibration_on_training_data_after_saving_raw_weights_is_not_evaluation():
    assert audit_file(FIXTURES / "train_and_eval_gptq_train.py").verdict is Verdict.CLEAN


def test_a_script_that_never_reads_its_artifact_back_is_not_guessed_at():
    report = snippet("""
        import torch, numpy as np
        model = torch.nn.Linear(4, 4)
        val = np.fromfile("data/fineweb_val_0.bin", dtype=np.uint16)
        with torch.no_grad():
            model(torch.from_numpy(val[:4].astype(np.float32)))
        extra = np.fromfile("data/fineweb_train_0.bin", dtype=np.uint16)
    """)
    assert report.verdict is Verdict.CLEAN


# ------------------------------------------------------------------------------------------- wrapped code


def _lzma_raw(b: bytes) -> bytes:
    return lzma.compress(b, format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2}])


ENCODINGS = {
    "lzma_raw_b85": (lambda b: base64.b85encode(_lzma_raw(b)).decode(),
                     "import lzma as L, base64 as B\nexec(L.decompress(B.b85decode({blob!r}), format=L.FORMAT_RAW, "
                     "filters=[{{'id': L.FILTER_LZMA2}}]))\n"),
    "zlib_b64": (lambda b: base64.b64encode(zlib.compress(b)).decode(),
                 "import zlib, base64\nexec(zlib.decompress(base64.b64decode({blob!r})).decode('utf-8'))\n"),
    "gzip_b85_named": (lambda b: base64.b85encode(gzip.compress(b)).decode(),
                       "import gzip\nfrom base64 import b85decode\nCODE = {blob!r}\n"
                       "exec(compile(gzip.decompress(b85decode(CODE)), 'train_gpt.py', 'exec'))\n"),
    "bz2_hex": (lambda b: bz2.compress(b).hex(), "import bz2\nexec(bz2.decompress(bytes.fromhex({blob!r})))\n"),
}


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@pytest.mark.parametrize("inner, verdict", [("ttt_score_first_toplevel.py", Verdict.CLEAN),
                                            ("train_then_score_class.py", Verdict.FLAGGED)])
def test_compressed_exec_wrappers_are_read(tmp_path, encoding, inner, verdict):
    encode, template = ENCODINGS[encoding]
    source = (FIXTURES / inner).read_bytes()
    wrapper = tmp_path / "train_gpt.py"
    wrapper.write_text(template.format(blob=encode(source)))
    report = audit_file(wrapper)
    direct = audit_file(FIXTURES / inner)
    assert report.verdict is verdict, report.to_dict()
    assert rules(report) == rules(direct)  # lines of the decoded source
    assert all(f.source and "decoded from train_gpt.py line" in f.source for f in report.findings)
    assert report.sources and any("audited the code it runs" in n for n in report.notes)


def test_nested_wrappers_are_read(tmp_path):
    inner = (FIXTURES / "train_then_score_class.py").read_bytes()
    level1 = f"import zlib\nexec(zlib.decompress({zlib.compress(inner)!r}))\n".encode()
    level2 = f"import base64\nexec(base64.b64decode({base64.b64encode(level1).decode()!r}))\n"
    (tmp_path / "train_gpt.py").write_text(level2)
    report = audit_file(tmp_path / "train_gpt.py")
    assert report.verdict is Verdict.FLAGGED and len(report.sources) == 2


@pytest.mark.parametrize("runner", [
    'exec(open(__file__.replace("train_gpt.py", "impl.py")).read())',
    "import os\nexec(open(os.path.join(os.path.dirname(__file__), 'impl.py')).read())",
    "import runpy\nrunpy.run_path('impl.py')",
])
def test_a_sibling_file_the_script_runs_is_read(tmp_path, runner):
    (tmp_path / "impl.py").write_bytes((FIXTURES / "train_then_score_class.py").read_bytes())
    (tmp_path / "train_gpt.py").write_text(runner + "\n")
    report = audit_file(tmp_path / "train_gpt.py")
    assert report.verdict is Verdict.FLAGGED
    assert all(f.source and f.source.startswith("impl.py (run by train_gpt.py line") for f in report.findings)


def test_a_file_outside_the_scripts_folder_is_not_read(tmp_path):
    (tmp_path / "impl.py").write_text("print('hi')\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "train_gpt.py").write_text("exec(open('../impl.py').read())\n")
    report = audit_file(tmp_path / "sub" / "train_gpt.py")
    assert report.verdict is Verdict.UNKNOWN
    assert any("outside the script's folder" in n for n in report.notes)


# ------------------------------------------------------------------------------------------ weights put back

PERIODIC = """\
import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP


def eval_val(model, val_tokens, ttt_lr=0.0):
    opt = torch.optim.SGD(model.parameters(), lr=ttt_lr)
    total = 0.0
    for start in range(0, val_tokens.numel() - 513, 512):
        seg = val_tokens[start:start + 513]
        with torch.no_grad():
            total += F.cross_entropy(model(seg[:-1]), seg[1:], reduction="sum").item()
        F.cross_entropy(model(seg[:-1]), seg[1:]).backward()
        opt.step()
        opt.zero_grad()
    return total


def main():
    train = torch.from_numpy(np.fromfile("./data/fineweb_train_000000.bin", dtype=np.uint16).astype(np.int64))
    val_tokens = torch.from_numpy(np.fromfile("./data/fineweb_val_000000.bin", dtype=np.uint16).astype(np.int64))
    base = torch.nn.Sequential(torch.nn.Embedding(1024, 16), torch.nn.Linear(16, 1024))
    model = {wrap}
    opt = torch.optim.AdamW(model.parameters())
    for step in range(1000):
        if step % 100 == 0:  # in-training validation with TTT on a copy of the weights, then put back
            saved = {{n: p.data.clone() for n, p in base.named_parameters()}}
            print("val", eval_val(model, val_tokens, ttt_lr=1e-4))
{restore}
        x = train[step * 64:(step + 1) * 64 + 1]
        F.cross_entropy(model(x[:-1]), x[1:]).backward()
        opt.step()
        opt.zero_grad()
    print("final", eval_val(model, val_tokens, ttt_lr=1e-4))


if __name__ == "__main__":
    main()
"""
RESTORE = """\
            for n, p in base.named_parameters():
                p.data.copy_(saved[n])"""


@pytest.mark.parametrize("wrap", ["base", "DDP(base)"])
@pytest.mark.parametrize("restore,verdict", [(RESTORE, Verdict.CLEAN), ("            pass", Verdict.FLAGGED)])
def test_in_training_ttt_whose_weights_are_put_back_leaves_no_trace(wrap, restore, verdict):
    # copying saved weights into every parameter is load_state_dict; DDP(base) holds base's parameters
    report = audit_source(PERIODIC.format(wrap=wrap, restore=restore))
    assert report.verdict is verdict, report.to_dict()


def test_a_returned_tuple_keeps_its_elements_apart():
    # one file split by position into train and validation, returned together: training batches
    # drawn at random from the train part are not validation tokens
    report = snippet("""
        import random
        import sys
        import numpy as np
        import torch
        import torch.nn.functional as F

        def splits(path):
            raw = np.fromfile(path, dtype=np.uint8)
            train_tokens = torch.tensor(raw[:100000].astype(np.int64))
            val_tokens = torch.tensor(raw[100000:].astype(np.int64))
            return train_tokens, val_tokens, {"n": raw.size}

        def batch(tokens, starts):
            rows = torch.stack([tokens[s:s + 65] for s in starts])
            return rows[:, :-1], rows[:, 1:]

        def main():
            train_tokens, val_tokens, meta = splits(sys.argv[1])
            model = torch.nn.Sequential(torch.nn.Embedding(256, 16), torch.nn.Linear(16, 256))
            opt = torch.optim.AdamW(model.parameters())
            rng = random.Random(0)
            for step in range(100):
                x, y = batch(train_tokens, rng.sample(range(90000), 8))
                F.cross_entropy(model(x).flatten(0, 1), y.flatten()).backward()
                opt.step()
                opt.zero_grad()
            with torch.no_grad():
                x, y = batch(val_tokens, list(range(0, 8000, 64)))
                print("val", F.cross_entropy(model(x).flatten(0, 1), y.flatten()).item())

        main()
    """)
    assert report.verdict is Verdict.CLEAN, report.to_dict()


SETTING = """
    from dataclasses import dataclass
    import numpy as np
    import torch
    import torch.nn.functional as F

    @dataclass
    class Cfg:
        eval_batches{ann} = 4

    def train_steps(model, opt, train, {param}):
        for step in range(100):
            off = (step + {use}) * 64
            x = train[off:off + 65]
            F.cross_entropy(model(x[:-1]), x[1:]).backward()
            opt.step()
            opt.zero_grad()

    def main():
        train = torch.from_numpy(np.fromfile("./data/fineweb_train_000000.bin", dtype=np.uint16).astype(np.int64))
        val = torch.from_numpy(np.fromfile("./data/fineweb_val_000000.bin", dtype=np.uint16).astype(np.int64))
        model = torch.nn.Sequential(torch.nn.Embedding(1024, 16), torch.nn.Linear(16, 1024))
        opt = torch.optim.AdamW(model.parameters())
        train_steps(model, opt, train, {arg})
        with torch.no_grad():
            print("val", F.cross_entropy(model(val[:-1]), val[1:]).item())

    main()
"""


@pytest.mark.parametrize("ann,param,use,arg", [
    ("", "eval_batches: int", "eval_batches", "4"),  # a parameter typed as a number
    (": int", "cfg", "cfg.eval_batches", "Cfg()"),  # a class field typed as a number
])
def test_a_setting_typed_as_a_number_is_not_data_whatever_its_name(ann, param, use, arg):
    # ``eval_batches`` reads like validation data; typed ``int`` it is a count
    report = snippet(SETTING.format(ann=ann or ": int", param=param, use=use, arg=arg))
    assert report.verdict is Verdict.CLEAN, report.to_dict()


# ------------------------------------------------------------------------------------------ sibling modules

TTT_MODULE = textwrap.dedent('''\
    import torch
    import torch.nn.functional as F

    SPAN = 512


    def adapt(model, val_tokens, score_first=True):
        opt = torch.optim.SGD(model.parameters(), lr=1e-3)
        total = 0.0
        for start in range(0, val_tokens.numel() - SPAN - 1, SPAN):
            seg = val_tokens[start:start + SPAN + 1]
            if score_first:
                with torch.no_grad():
                    total += F.cross_entropy(model(seg[:-1]), seg[1:], reduction="sum").item()
            F.cross_entropy(model(seg[:-1]), seg[1:]).backward()
            opt.step()
            opt.zero_grad()
            if not score_first:
                with torch.no_grad():
                    total += F.cross_entropy(model(seg[:-1]), seg[1:], reduction="sum").item()
        return total


    def main():
        print("the module's own entry point, never run on import")
    ''')

SCRIPT = textwrap.dedent('''\
    import numpy as np
    import torch
    {imports}


    def main():
        held = torch.from_numpy(np.fromfile("./data/fineweb_val_000000.bin", dtype=np.uint16).astype(np.int64))
        lm = torch.nn.Sequential(torch.nn.Embedding(1024, 16), torch.nn.Linear(16, 1024))
        print("val_loss", {call}(lm, held, score_first={first}))


    if __name__ == "__main__":
        main()
    ''')


def _audit_folder(tmp_path, files: dict[str, str]):
    """Write ``files`` (relative path -> text) into ``tmp_path`` and audit its ``train_gpt.py``."""
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return audit_file(tmp_path / "train_gpt.py")


def test_a_call_path_names_the_module_a_call_is_in(tmp_path):
    helper = textwrap.dedent("""\
        def adapt(model, val):
            for s in range(0, 100, 10):
                model(val[s:s + 10]).sum().backward()


        def run(model, val):
            adapt(model, val)
    """)
    script = textwrap.dedent("""\
        import numpy as np, torch
        from helper import run
        val = torch.from_numpy(np.fromfile("data/fineweb_val_0.bin", dtype=np.uint16).astype(np.int64))
        model = torch.nn.Linear(4, 4)
        run(model, val)
        torch.save(model.state_dict(), "final_model.pt")
    """)
    report = _audit_folder(tmp_path, {"helper.py": helper, "train_gpt.py": script})
    [finding] = report.findings
    assert finding.rule is Rule.UPDATE_BEFORE_SCORE and finding.line == 3
    assert finding.message.endswith("[call path: run() at line 5 -> adapt() at line 7 of helper.py "
                                    "(imported by train_gpt.py line 2)]")


@pytest.mark.parametrize("first,verdict", [(True, Verdict.CLEAN), (False, Verdict.FLAGGED)])
def test_a_package_beside_the_script_is_read_with_its_relative_imports(tmp_path, first, verdict):
    files = {"tttpkg/__init__.py": "from .core import adapt\n", "tttpkg/core.py": TTT_MODULE,
             "train_gpt.py": SCRIPT.format(imports="import tttpkg", call="tttpkg.adapt", first=first)}
    report = _audit_folder(tmp_path, files)
    assert report.verdict is verdict, report.to_dict()
    assert any(s.startswith("tttpkg/__init__.py (imported by train_gpt.py line 3)") for s in report.sources)
    assert any(s.startswith("tttpkg/core.py (imported by tttpkg/__init__.py") for s in report.sources)
    assert not any("not part of the audited file" in n for n in report.notes)


def test_a_relative_path_a_package_module_runs_resolves_against_the_working_directory(tmp_path):
    # Python opens a relative path from the working directory, which is the script's folder for a run.
    files = {"tttpkg/__init__.py": 'exec(open("ttt_impl.py").read())\n', "ttt_impl.py": TTT_MODULE,
             "tttpkg/ttt_impl.py": "raise SystemExit('the wrong file')\n",
             "train_gpt.py": SCRIPT.format(imports="from tttpkg import adapt", call="adapt", first=False)}
    report = _audit_folder(tmp_path, files)
    assert report.verdict is Verdict.FLAGGED, report.to_dict()
    assert any(s.startswith("ttt_impl.py (run by tttpkg/__init__.py") for s in report.sources)


@pytest.mark.parametrize("imports,call", [
    ("import ttt", "ttt.adapt"), ("import ttt as t", "t.adapt"), ("from ttt import adapt", "adapt"),
    ("from ttt import adapt as go", "go"), ("from ttt import *", "adapt"),
])
@pytest.mark.parametrize("first,verdict", [(True, Verdict.CLEAN), (False, Verdict.FLAGGED)])
def test_a_module_beside_the_script_that_it_imports_is_read(tmp_path, imports, call, first, verdict):
    report = _audit_folder(tmp_path, {"ttt.py": TTT_MODULE,
                                      "train_gpt.py": SCRIPT.format(imports=imports, call=call, first=first)})
    assert report.verdict is verdict, report.to_dict()
    assert not any("not part of the audited file" in n for n in report.notes)
    assert any(s.startswith("ttt.py (imported by train_gpt.py line 3)") for s in report.sources)
    if verdict is Verdict.FLAGGED:  # pointing into the module, at its lines
        hits = [f for f in report.findings if f.severity is Severity.VIOLATION]
        assert hits and all(f.source.startswith("ttt.py") and 9 <= f.line <= 21 for f in hits)


@pytest.mark.parametrize("first,verdict", [(True, Verdict.CLEAN), (False, Verdict.FLAGGED)])
def test_a_module_in_a_package_beside_the_script_is_read_and_resolves_from_the_scripts_folder(
        tmp_path, first, verdict):
    # ``import pkg.ttt`` used as ``pkg.ttt.adapt``; the package module imports ``helpers`` the way
    # Python finds it: from the script's folder, which is first on sys.path
    report = _audit_folder(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/ttt.py": "from helpers import adapt as _adapt\n\n\ndef adapt(*a, **k):\n    return _adapt(*a, **k)\n",
        "helpers.py": TTT_MODULE,
        "train_gpt.py": SCRIPT.format(imports="import pkg.ttt", call="pkg.ttt.adapt", first=first)})
    assert report.verdict is verdict, report.to_dict()
    assert not any("not part of the audited file" in n for n in report.notes)


def test_without_the_module_beside_it_the_audit_stays_unsure(tmp_path):
    report = _audit_folder(tmp_path, {"train_gpt.py": SCRIPT.format(imports="import ttt", call="ttt.adapt", first=False)})
    assert report.verdict is Verdict.UNKNOWN
    assert any("imports `ttt`, which is not part of the audited file" in n for n in report.notes)


@pytest.mark.parametrize("first,verdict", [(True, Verdict.CLEAN), (False, Verdict.FLAGGED)])
def test_names_both_files_bind_keep_their_own_meaning(tmp_path, first, verdict):
    # the script's SPAN and main are not the module's: the module's are renamed where they mean its own
    module = TTT_MODULE.replace("def main():", "def main(SPAN=1):\n    return SPAN")
    script = SCRIPT.format(imports="import ttt\nSPAN = 'not a number'", call="ttt.adapt", first=first)
    report = _audit_folder(tmp_path, {"ttt.py": module, "train_gpt.py": script})
    assert report.verdict is verdict, report.to_dict()
    assert not any("not part of the audited file" in n for n in report.notes)


# ------------------------------------------------------------------------------------------ newer syntax


def test_python_312_syntax_parses_with_lines_in_place():
    source = textwrap.dedent('''\
        x = f"{cfg["a"]!r:>{width}} and {b}"
        type Alias = list[int]
        def f[T](v: T) -> T:
            return v
        msg = f"""{
            value  # a comment inside a replacement field
        }"""
        try:
            pass
        except* ValueError:
            pass
        marker = 1
    ''')
    tree, rewritten = parse_any(source, "new.py")
    assert rewritten
    assert [(type(n).__name__, n.lineno) for n in tree.body] == [
        ("Assign", 1), ("Assign", 2), ("FunctionDef", 3), ("Assign", 5), ("Try", 8), ("Assign", 12)]


def test_a_violation_in_312_syntax_is_found_at_its_line():
    source = (FIXTURES / "pep701_ttt.py").read_text().replace(
        '        with torch.no_grad():\n            total += F.cross_entropy(model(piece[:-1]), piece[1:], '
        'reduction="sum").item()\n        F.cross_entropy(model(piece[:-1]), piece[1:]).backward()\n',
        '        F.cross_entropy(model(piece[:-1]), piece[1:]).backward()\n        with torch.no_grad():\n'
        '            total += F.cross_entropy(model(piece[:-1]), piece[1:], reduction="sum").item()\n')
    report = audit_source(source)
    assert report.verdict is Verdict.FLAGGED
    assert ("update_before_score", 21) in rules(report)


# ------------------------------------------------------------------------------------------------- the CLI


@pytest.mark.parametrize("name, code", [("ttt_score_first_toplevel.py", 0), ("train_then_score_class.py", 1),
                                        ("external_logic.py", 2), ("syntax_error.py", 3)])
def test_exit_status_is_the_verdict(cli, name, code):
    result = cli("audit", FIXTURES / name)
    assert result.exit_code == code, result
    assert "Traceback" not in result.stderr


def test_env_options_re_decide_the_verdict_and_json_says_so(cli):
    result = cli("audit", FIXTURES / "slot_off_then_ttt.py", "--env", "SLOT_ENABLED=1", "--json")
    assert result.exit_code == 1
    out = json.loads(result.stdout)
    assert out["verdict"] == "flagged" and out["env"] == {"SLOT_ENABLED": "1"}


@pytest.mark.parametrize("args, needle", [
    (["--env", "NOVALUE"], "--env: must be KEY=VALUE"),
    (["--env", "1X=2"], "--env: must be KEY=VALUE"),
])
def test_bad_env_options_are_one_line_errors(cli, args, needle):
    from tests.conftest import assert_one_line_error

    result = cli("audit", FIXTURES / "ttt_score_first_toplevel.py", *args)
    assert result.exit_code == 3
    assert_one_line_error(result.stderr, needle)


@pytest.mark.parametrize("content", [b"", b"\x00\x01binary", b"not python at all: {"])
def test_files_that_cannot_be_audited_exit_3_with_one_line(cli, tmp_path, content):
    from tests.conftest import assert_one_line_error

    path = tmp_path / "train_gpt.py"
    path.write_bytes(content)
    result = cli("audit", path)
    assert result.exit_code == 3
    assert_one_line_error(result.stderr, "train_gpt.py")


def test_secret_values_given_with_env_are_masked_in_the_report(cli):
    result = cli("audit", FIXTURES / "ttt_score_first_toplevel.py", "--env", "HF_TOKEN=hf_abcdefgh123", "--json")
    assert result.exit_code == 0
    assert "hf_abcdefgh123" not in result.stdout
    assert json.loads(result.stdout)["env"] == {"HF_TOKEN": "***"}
