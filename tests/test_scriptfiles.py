"""The files a script runs beside it travel with every run, count as code, are kept and exported.

Real records ship a loader and its payload (``exec(open(__file__.replace("train_gpt.py",
"train_gpt_decode.py")).read())``) or import a module next to them; a node gets only what golfsweep
sends, so without them such a run fails and its artifact is undercounted.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from golfsweep.errors import SpecError
from golfsweep.scriptfiles import ScriptFiles, find_support
from golfsweep.results import load_sweep
from golfsweep.search_spaces import load_spec
from golfsweep.worker import RunState
from tests.conftest import assert_one_line_error, invoke_cli, run_sweep_in_process
from tests.orchestrator._sweeps import FAKE, sweep_toml

LOADER = b'exec(open(__file__.replace("train_gpt.py", "train_impl.py")).read())\n'


def _folder(tmp_path: Path, files: dict[str, str | bytes]) -> Path:
    for name, text in files.items():
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return tmp_path / "train_gpt.py"


def _found(tmp_path: Path, files: dict[str, str | bytes]) -> list[str]:
    script = _folder(tmp_path, files)
    return find_support(script, script.read_bytes())


def test_a_file_the_script_names_or_imports_beside_it_is_found(tmp_path):
    assert _found(tmp_path, {"train_gpt.py": LOADER, "train_impl.py": "x = 1\n"}) == ["train_impl.py"]
    assert _found(tmp_path / "b", {"train_gpt.py": "import helpers\nfrom quant.pack import go\nimport os\n",
                                   "helpers.py": "", "quant/__init__.py": "", "quant/pack.py": "",
                                   "quant/__pycache__/pack.cpython-311.py": ""}) == \
        ["helpers.py", "quant/__init__.py", "quant/pack.py"]


def test_an_imported_package_travels_whole_and_only_its_text_counts_as_code(tmp_path):
    so = b"\x7fELF\x02\x01\x01\0" + b"import os\n" * 3  # binary, whatever text it holds is never read
    files = {"train_gpt.py": "import fused\n", "fused/__init__.py": "import torch  # loads the .so beside it\n",
             "fused/fused_ext.cpython-311-x86_64-linux-gnu.so": so, "fused/csrc/kernel.cu": "// kernel\n",
             "fused/.build.log": "x", "fused/__pycache__/__init__.cpython-311.pyc": b"\0", "os.py": ""}
    script = _folder(tmp_path, files)
    assert find_support(script, script.read_bytes()) == \
        ["fused/__init__.py", "fused/csrc/kernel.cu", "fused/fused_ext.cpython-311-x86_64-linux-gnu.so"]
    shipped = ScriptFiles.read(script)
    assert shipped.binary_names == ("fused/fused_ext.cpython-311-x86_64-linux-gnu.so",)
    text = ("train_gpt.py", "fused/__init__.py", "fused/csrc/kernel.cu")
    assert shipped.code_bytes == sum((tmp_path / n).stat().st_size for n in text)


def test_found_files_are_read_in_turn(tmp_path):
    files = {"train_gpt.py": LOADER, "train_impl.py": "from util import f\n", "util.py": "g = open('./more.py')\n",
             "more.py": ""}
    assert _found(tmp_path, files) == ["more.py", "train_impl.py", "util.py"]


@pytest.mark.parametrize("script", [
    '"""Run notes.py first."""\nx = 1\n',  # a docstring names it
    "# see notes.py\nx = 1\n",  # a comment names it
    'exec(open("../notes.py").read())\n',  # outside the folder
    'exec(open("absent.py").read())\n',  # no such file
    'print("train_gpt.py")\n',  # the script itself
    "import json\n",  # a module that is not beside it
])
def test_what_the_script_does_not_run_beside_it_is_not_found(tmp_path, script):
    (tmp_path / "notes.py").write_text("")
    sub = tmp_path / "sub"
    assert _found(sub, {"train_gpt.py": script, "notes.py": "", "data.json": "{}"}) == []


def test_newer_syntax_is_read_from_the_text(tmp_path):
    script = 'type Vec = list[float]\nprint(f"{"nested"}")\nexec(open("train_impl.py").read())\n'
    assert _found(tmp_path, {"train_gpt.py": script, "train_impl.py": ""}) == ["train_impl.py"]


def test_the_digest_is_the_scripts_own_when_alone_and_covers_every_file_otherwise():
    alone = ScriptFiles("train_gpt.py", b"print(1)\n")
    assert alone.sha256 == hashlib.sha256(b"print(1)\n").hexdigest() and alone.code_bytes == 9
    two = ScriptFiles("train_gpt.py", LOADER, (("train_impl.py", b"x = 1\n"),))
    changed = ScriptFiles("train_gpt.py", LOADER, (("train_impl.py", b"x = 2\n"),))
    renamed = ScriptFiles("train_gpt.py", LOADER, (("train_impl2.py", b"x = 1\n"),))
    assert len({two.sha256, changed.sha256, renamed.sha256, alone.sha256}) == 4
    assert two.code_bytes == len(LOADER) + 6


# --------------------------------------------------------------------------- through a sweep

def _sweep(tmp_path: Path, extra_sweep: str = "") -> Path:
    folder = tmp_path / "src"
    _folder(folder, {"train_gpt.py": LOADER, "train_impl.py": FAKE.read_bytes(), "notes.json": "{}"})
    toml = sweep_toml(trials=1, seeds=(1, 2), extra_sweep=extra_sweep).replace(f'"{FAKE}"', '"train_gpt.py"')
    path = folder / "sweep.toml"
    path.write_text(toml)
    return path


def test_a_sweep_ships_the_files_its_script_runs_and_counts_them_as_code(tmp_path):
    sweep = _sweep(tmp_path, 'files = ["notes.json"]')
    out = tmp_path / "out"
    outcome = run_sweep_in_process(sweep, out)
    assert outcome.n_runs == 2 and outcome.n_failed == 0  # without train_impl.py beside it, every run fails
    code = sum((tmp_path / "src" / n).stat().st_size for n in ("train_gpt.py", "train_impl.py", "notes.json"))
    runs = load_sweep(out).runs
    assert all(r.state is RunState.COMPLETE and r.bytes_code == code for r in runs)
    for name in ("train_gpt.py", "train_impl.py", "notes.json"):
        assert (out / "script" / name).read_bytes() == (tmp_path / "src" / name).read_bytes()
    assert "files=" in (out / "driver.log").read_text()

    rec = tmp_path / "rec"
    res = invoke_cli("export", out, "--trial", "0", "--out", rec, "--non-record")
    assert res.exit_code == 0, res.stderr
    assert (rec / "train_impl.py").read_bytes() == (tmp_path / "src" / "train_impl.py").read_bytes()
    sub = json.loads((rec / "submission.json").read_text())
    assert sub["bytes_code"] == code

    # a changed support file is a changed script: resume refuses it, naming the files
    (tmp_path / "src" / "train_impl.py").write_bytes(FAKE.read_bytes() + b"\n# edited\n")
    again = invoke_cli("run", sweep, "--dir", out)
    assert again.exit_code != 0
    assert_one_line_error(again.stderr, "sweep.script", "train_impl.py", "changed since this sweep started")


def test_the_dry_run_names_the_files_that_travel(tmp_path):
    res = invoke_cli("run", _sweep(tmp_path), "--dry-run")
    assert res.exit_code == 0, res.stderr
    assert "code: train_gpt.py runs train_impl.py beside it" in res.stdout
    assert "not counted" not in res.stdout
    (tmp_path / "src" / "blob.so").write_bytes(b"\0\1")
    res = invoke_cli("run", _sweep(tmp_path, 'files = ["blob.so"]'), "--dry-run")
    assert res.exit_code == 0, res.stderr
    assert "; not text, so not counted: blob.so" in res.stdout


@pytest.mark.parametrize("listed,needle", [
    ("../x.py", "plain path relative"), ("/etc/passwd", "plain path relative"), ("absent.txt", "no such file"),
    ("train_gpt.py", "the script itself"),
])
def test_a_bad_listed_file_is_refused_naming_the_key_and_value(tmp_path, listed, needle):
    with pytest.raises(SpecError) as err:
        load_spec(_sweep(tmp_path, f'files = ["{listed}"]'))
    assert "sweep.files" in str(err.value) and needle in str(err.value) and listed in str(err.value)
