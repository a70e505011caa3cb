"""The embedded default: demo data + the bundled demo sweep of the reference trainer, on CPU."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from golfsweep.search_spaces import SweepSpec, load_spec


def example_path(name: str) -> Path:
    """Path of a bundled example sweep file (``demo.toml``, ``h100.toml``)."""
    return Path(str(resources.files("golfsweep") / "examples" / name))


def reference_trainer() -> Path:
    return Path(str(resources.files("golfsweep") / "recipes" / "train_gpt.py"))


def prepare_demo(root: str | Path, *, trials: int | None = None) -> SweepSpec:
    """Build the demo data under ``root/data`` if missing and write ``root/demo.toml`` ready to run."""
    from golfsweep.data import build_demo_data

    root = Path(root).resolve()
    data_dir = root / "data"
    tokenizer = data_dir / "tokenizer.model"
    if not tokenizer.exists():
        build_demo_data(data_dir)
    text = example_path("demo.toml").read_text(encoding="utf-8")
    text = text.replace("@DATA_PATH@", str(data_dir)).replace("@TOKENIZER_PATH@", str(tokenizer))
    text = text.replace('script = "../recipes/train_gpt.py"   # relative to this file',
                        f'script = "{reference_trainer()}"')
    if trials is not None:
        text = text.replace("trials = 4\n", f"trials = {trials}\n", 1)
    sweep_file = root / "demo.toml"
    sweep_file.write_text(text, encoding="utf-8")
    return load_spec(sweep_file)
