"""A bad sweep file is one line naming the key, the rule and the value, before anything starts;
every problem of a file is listed at once. Plus the spec's own small API."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from golfsweep.errors import SpecError
from golfsweep.search_spaces import load_spec, read_env_table
from tests.conftest import DELETE, assert_one_line_error, fill_tmp as _fill, fill_tmp_any as _fill_any, invoke_cli, write_sweep

# --------------------------------------------------------------------------- configuration problems


@dataclass(frozen=True)
class Bad:
    """One bad sweep file: how to write it, and what the one-line error must contain.

    ``{tmp}`` in ``text``, override strings and needles stands for the test's tmp_path.
    """

    id: str
    overrides: dict[str, Any] = field(default_factory=dict)
    needles: tuple[str, ...] = ()
    text: str | None = None
    raw: bytes | None = None  # exact file bytes (encoding problems)
    path: str | None = None  # pass this path instead of writing a file
    prefix: str = ""  # raw TOML before the tables (top-level scalars)


def _float_param(**kw: Any) -> dict[str, Any]:
    return {"KNOB_X": {"type": "float", "low": 0.0, "high": 4.0, **kw}}


BAD_SPECS = [
    # TOML itself
    Bad("toml-syntax", text='[sweep\nname = "x"\n', needles=("TOML syntax", "line 1")),
    Bad("toml-duplicate-key", text='[sweep]\nname = "a"\nname = "b"\n', needles=("TOML syntax", "line 3")),
    Bad("file-missing", path="{tmp}/nope.toml", needles=("sweep file", "{tmp}/nope.toml")),
    Bad("file-is-directory", path="{tmp}", needles=("sweep file", "directory", "{tmp}")),
    Bad("file-not-utf8", raw=b'[sweep]\nname = "\xff\xfe"\n', needles=("sweep file", "UTF-8")),
    # unknown keys, everywhere
    Bad("unknown-top-level-table", {"bogus": {"a": 1}}, needles=("bogus", "unknown key")),
    Bad("unknown-sweep-key", {"sweep": {"epochs": 3}}, needles=("sweep.epochs", "unknown key", "'epochs'")),
    Bad("unknown-param-key", {"space": _float_param(lo=1.0)}, needles=("space.KNOB_X.lo", "unknown key")),
    Bad("unknown-limits-key", {"limits": {"gpu_hours": 3}}, needles=("limits.gpu_hours", "unknown key")),
    Bad("unknown-sampler-key", {"sampler": {"temperature": 1}}, needles=("sampler.temperature", "unknown key")),
    Bad("unknown-storage-key", {"storage": {"uri": "sqlite:///x.db"}}, needles=("storage.uri", "unknown key")),
    Bad("key-with-newline", {"sweep": {"bad\nkey": 1}}, needles=("unknown key", "bad\\nkey")),
    # [sweep]
    Bad("no-sweep-table", {"sweep": DELETE}, needles=("[sweep]", "required")),
    Bad("missing-name", {"name": DELETE}, needles=("sweep.name", "required", "got nothing")),
    Bad("bad-name", {"name": "my sweep"}, needles=("sweep.name", "'my sweep'")),
    Bad("missing-script", {"script": "nope.py"}, needles=("sweep.script", "must exist", "'nope.py'")),
    Bad("script-is-directory", {"script": "{tmp}"}, needles=("sweep.script", "directory", "{tmp}")),
    Bad("trials-wrong-type", {"trials": "ten"}, needles=("sweep.trials", "integer", "'ten'")),
    Bad("trials-zero", {"trials": 0}, needles=("sweep.trials", ">= 1", "got 0")),
    Bad("seeds-wrong-type", {"seeds": "1,2"}, needles=("sweep.seeds", "'1,2'")),
    Bad("seeds-empty", {"seeds": []}, needles=("sweep.seeds", "at least one", "[]")),
    Bad("seed-not-integer", {"seeds": [1, 2.5]}, needles=("sweep.seeds", "integer", "2.5")),
    Bad("seed-negative", {"seeds": [1, -3]}, needles=("sweep.seeds", "non-negative", "-3")),
    Bad("seeds-duplicate", {"seeds": [1, 2, 1]}, needles=("sweep.seeds", "distinct", "duplicate 1")),
    Bad("gpus-negative", {"gpus_per_run": -1}, needles=("sweep.gpus_per_run", ">= 0", "-1")),
    Bad("bad-metric", {"metric": "accuracy"}, needles=("sweep.metric", "'accuracy'")),
    Bad("bad-direction", {"direction": "up"}, needles=("sweep.direction", "'up'")),
    Bad("bad-launcher", {"launcher": "mpirun"}, needles=("sweep.launcher", "'mpirun'")),
    Bad("python-launcher-nproc-2", {"nproc": 2}, needles=("sweep.launcher", "nproc=2")),
    Bad("artifact-glob-empty", {"artifact_glob": []}, needles=("sweep.artifact_glob", "[]")),
    Bad("metric-labels-not-strings", {"metric_labels": [1]}, needles=("sweep.metric_labels", "[1]")),
    # [space]
    Bad("low-greater-than-high", {"space": _float_param(low=4.0, high=1.0)},
        needles=("space.KNOB_X", "low < high", "low=4.0 high=1.0")),
    Bad("low-equals-high", {"space": _float_param(low=2.0, high=2.0)},
        needles=("space.KNOB_X", "low < high", "low=2.0 high=2.0")),
    Bad("log-zero-low", {"space": _float_param(low=0.0, high=1.0, log=True)},
        needles=("space.KNOB_X.log", "low > 0", "low=0.0")),
    Bad("log-negative-low", {"space": _float_param(low=-1.0, high=1.0, log=True)},
        needles=("space.KNOB_X.log", "low > 0", "low=-1.0")),
    Bad("log-not-bool", {"space": _float_param(log="yes")}, needles=("space.KNOB_X.log", "'yes'")),
    Bad("step-negative", {"space": _float_param(step=-0.5)}, needles=("space.KNOB_X.step", "-0.5")),
    Bad("step-with-log", {"space": _float_param(low=0.1, log=True, step=0.1)},
        needles=("space.KNOB_X.step", "log", "step=0.1")),
    Bad("bound-nan", {"space": _float_param(low=float("nan"))}, needles=("space.KNOB_X.low", "nan")),
    Bad("bound-string", {"space": _float_param(high="4")}, needles=("space.KNOB_X.high", "'4'")),
    Bad("bound-missing", {"space": {"KNOB_X": {"type": "float", "low": 0.0}}},
        needles=("space.KNOB_X.high", "required", "got nothing")),
    Bad("int-param-float-bound", {"space": {"N": {"type": "int", "low": 0.5, "high": 3}}},
        needles=("space.N.low", "integer", "0.5")),
    Bad("unknown-param-type", {"space": {"B": {"type": "bool", "choices": [True, False]}}},
        needles=("space.B.type", "'bool'")),
    Bad("param-type-missing", {"space": {"KNOB_X": {"low": 0.0, "high": 1.0}}},
        needles=("space.KNOB_X.type", "required")),
    Bad("param-not-a-table", {"space": {"KNOB_X": 3}}, needles=("space.KNOB_X", "table", "3")),
    Bad("categorical-empty", {"space": {"C": {"type": "categorical", "choices": []}}},
        needles=("space.C.choices", "empty", "[]")),
    Bad("categorical-duplicate", {"space": {"C": {"type": "categorical", "choices": ["a", "a"]}}},
        needles=("space.C.choices", "distinct", "['a', 'a']")),
    Bad("categorical-with-bounds", {"space": {"C": {"type": "categorical", "choices": ["a"], "low": 1}}},
        needles=("space.C.low", "categorical", "1")),
    Bad("unknown-builtin", {"space": {"P": {"builtin": "lr"}}}, needles=("space.P.builtin", "'lr'")),
    Bad("param-env-invalid-name", {"space": _float_param(env="1X")}, needles=("space.KNOB_X.env", "'1X'")),
    Bad("param-env-also-fixed", {"env": {"KNOB_X": "1"}}, needles=("space.KNOB_X.env", "fixed", "'KNOB_X'")),
    Bad("two-params-one-env", {"space": {**_float_param(env="X"), "Y": {"type": "int", "low": 0, "high": 2,
                                                                        "env": "X"}}},
        needles=("space.Y.env", "already set", "'X'")),
    *[Bad(f"param-onto-{name}", {"space": _float_param(env=name)}, needles=("space.KNOB_X.env", f"'{name}'"))
      for name in ("SEED", "RANK", "WORLD_SIZE", "LOCAL_RANK", "RUN_ID")],
    Bad("param-named-SEED", {"space": {"SEED": {"type": "int", "low": 0, "high": 9}}},
        needles=("space.SEED.env", "'SEED'")),
    # [env]
    Bad("env-invalid-name", {"env": {"BAD-NAME": "1"}}, needles=("env.BAD-NAME", "'BAD-NAME'")),
    Bad("env-fixes-reserved", {"env": {"WORLD_SIZE": "8"}}, needles=("env.WORLD_SIZE", "'WORLD_SIZE'")),
    Bad("env-value-list", {"env": {"LAYERS": [1, 2]}}, needles=("env.LAYERS", "[1, 2]")),
    # [limits], [sampler], [storage]
    Bad("limit-negative", {"limits": {"run_timeout_seconds": -5}},
        needles=("limits.run_timeout_seconds", "positive", "-5")),
    Bad("limit-zero", {"limits": {"stall_seconds": 0}}, needles=("limits.stall_seconds", "positive", "got 0")),
    Bad("limit-bool", {"limits": {"train_seconds": True}}, needles=("limits.train_seconds", "True")),
    Bad("limit-fractional-bytes", {"limits": {"artifact_bytes": 1.5}},
        needles=("limits.artifact_bytes", "integer", "1.5")),
    Bad("limits-not-a-table", {"limits": DELETE}, prefix="limits = 5\n", needles=("[limits]", "table", "5")),
    Bad("sampler-unknown", {"sampler": {"name": "bayes"}}, needles=("sampler.name", "'bayes'")),
    Bad("cmaes-categorical", {"sampler": {"name": "cmaes"},
                              "space": {"C": {"type": "categorical", "choices": ["a", "b"]}}},
        needles=("sampler.name", "cmaes", "categorical")),
    Bad("storage-url-no-scheme", {"storage": {"url": "optuna.db"}}, needles=("storage.url", "'optuna.db'")),
    Bad("storage-url-unknown-scheme", {"storage": {"url": "nosuchdb://host/db"}},
        needles=("storage.url", "postgresql or sqlite", "nosuchdb://")),
    Bad("storage-url-other-postgres-driver", {"storage": {"url": "postgresql+psycopg2://host/db"}},
        needles=("storage.url", "psycopg 3", "postgresql+psycopg2://")),
    Bad("storage-url-port-not-a-number", {"storage": {"url": "postgresql://u@host:port/db"}},
        needles=("storage.url", "port must be a number", "'postgresql://u@host:port/db'")),
    Bad("autoscale-negative", {"cost": {"autoscale_runs": -1}}, needles=("cost.autoscale_runs", ">= 0", "-1")),
    Bad("autoscale-fraction", {"cost": {"autoscale_runs": 1.5}},
        needles=("cost.autoscale_runs", "integer", "1.5")),
    # checked on the driver's machine before anything starts (local instance)
    Bad("data-path-missing", {"env": {"DATA_PATH": "{tmp}/no-such-data"}},
        needles=("env.DATA_PATH", "must exist", "{tmp}/no-such-data")),
    Bad("tokenizer-path-missing", {"env": {"TOKENIZER_PATH": "{tmp}/tok.model"}},
        needles=("env.TOKENIZER_PATH", "{tmp}/tok.model")),
    Bad("gpus-on-local-instance", {"gpus_per_run": 8},
        needles=("sweep.gpus_per_run", "--num-gpus", "gpus_per_run=8")),
]

def _write_bad(case: Bad, tmp: Path) -> Path:
    if case.path is not None:
        return Path(_fill(case.path, tmp))
    if case.raw is not None:
        p = tmp / "sweep.toml"
        p.write_bytes(case.raw)
        return p
    if case.text is not None:
        return write_sweep(tmp, text=_fill(case.text, tmp))
    return write_sweep(tmp, prefix=case.prefix, **_fill_any(case.overrides, tmp))


def test_at_least_thirty_distinct_bad_specs():
    ids = [b.id for b in BAD_SPECS]
    assert len(ids) == len(set(ids))
    assert len(ids) >= 30


@pytest.mark.parametrize("case", BAD_SPECS, ids=lambda c: c.id)
def test_bad_sweep_file_is_one_line_error_before_anything_starts(case: Bad, tmp_path: Path):
    spec_path = _write_bad(case, tmp_path)
    sweep_dir = tmp_path / "sweep-dir"
    res = invoke_cli("run", spec_path, "--dir", sweep_dir)
    assert res.exit_code != 0
    assert_one_line_error(res.stderr, *(_fill(n, tmp_path) for n in case.needles))
    assert "Traceback" not in res.stdout
    assert not sweep_dir.exists(), "a configuration error must not create the sweep directory"


def test_dry_run_refuses_bad_spec_too(tmp_path: Path):
    spec_path = write_sweep(tmp_path, trials=0)
    res = invoke_cli("run", spec_path, "--dry-run")
    assert res.exit_code == 1
    assert_one_line_error(res.stderr, "sweep.trials", "got 0")
    assert res.stdout == ""


def test_every_problem_in_one_file_is_listed_at_once(tmp_path: Path):
    spec_path = write_sweep(
        tmp_path, trials=0, seeds=[3, 3], sweep={"epochs": 1}, env={"RANK": "0"},
        space={"KNOB_X": {"type": "float", "low": 5.0, "high": 1.0},
               "LR": {"type": "float", "low": -1.0, "high": 1.0, "log": True},
               "C": {"type": "categorical", "choices": []}},
        limits={"stall_seconds": -1})
    with pytest.raises(SpecError) as info:
        load_spec(spec_path)
    problems = info.value.problems
    keys = ["sweep.epochs", "sweep.trials", "sweep.seeds", "env.RANK", "space.KNOB_X", "space.LR.log",
            "space.C.choices", "limits.stall_seconds"]
    for key in keys:
        assert any(p.startswith(key) for p in problems), (key, problems)
    assert len(problems) == len(keys)
    line = assert_one_line_error(invoke_cli("run", spec_path).stderr, f"{len(keys)} problems", *keys)
    assert "low=5.0 high=1.0" in line and "duplicate 3" in line and "low=-1.0" in line


# --------------------------------------------------------------------------- the spec's API


def test_env_names_and_launcher_follow_the_sweep_file(tmp_path: Path):
    spec = load_spec(write_sweep(tmp_path, sweep={"nproc": 2, "launcher": "auto"}, space={"KNOB_X": {"type": "float", "low": 0.0,
                                                                                  "high": 1.0, "env": "X_ENV"}}))
    assert spec.env_names == [("KNOB_X", "X_ENV")]
    assert spec.launcher_command == "torchrun"


@pytest.mark.parametrize("text, expected", [
    ('[sweep]\nname = "x"\n[env]\nHF_TOKEN = "abc"\nN = 3\n', {"HF_TOKEN": "abc", "N": "3"}),
    ('[sweep]\nname = "x"\n', {}),
])
def test_the_env_table_reads_without_validating_the_rest(tmp_path: Path, text: str, expected: dict):
    path = tmp_path / "sweep.toml"
    path.write_text(text)  # no script, no seeds: still readable for its secrets
    assert read_env_table(path) == expected


def test_a_bad_env_table_is_one_problem(tmp_path: Path):
    path = tmp_path / "sweep.toml"
    path.write_text('env = "not a table"\n')
    with pytest.raises(SpecError, match="env: must be a table"):
        read_env_table(path)
