"""The HTML report: self-contained, every chart present, and what a real browser sees (headless Chromium)."""

from __future__ import annotations

import os
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from golfsweep.errors import GolfsweepError
from golfsweep.results import load_sweep, render_report, write_report
from tests.fixtures.records import sweeps

RECORDS = Path(__file__).resolve().parents[1] / "fixtures" / "records"

CHROMIUM = "/usr/bin/chromium"
GRID = sweeps.SIZE_GRID


class _Dom(HTMLParser):
    """Every start tag as (tag, attrs) — enough to check ids, classes and data attributes."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def find(self, tag=None, class_=None, **attrs):
        """Tags named ``tag`` having class ``class_`` and exactly the given attribute values."""
        return [a for t, a in self.tags
                if (tag is None or t == tag) and (class_ is None or class_ in a.get("class", "").split())
                and all(a.get(k) == v for k, v in attrs.items())]


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory) -> Path:
    return sweeps.driver_sweep(tmp_path_factory.mktemp("report") / "sweep", GRID, trials=4)


@pytest.fixture(scope="module")
def report(sweep_dir) -> Path:
    return write_report(sweep_dir, sweep_dir.parent / "report.html")


def _check_dom(dom: _Dom) -> None:
    table = dom.find("table", id="summary-table")
    assert len(table) == 1
    assert len(dom.find("tr", **{"data-trial": "0"})) == 1
    assert len([a for a in dom.find("tr") if "data-trial" in a]) == 4
    kinds = [a["data-kind"] for a in dom.find("figure", class_="chart")]
    assert kinds.count("mean-std") == 1 and kinds.count("curves") == 1 and kinds.count("bytes") == 1
    assert sorted(a["data-param"] for a in dom.find("figure", **{"data-kind": "knob"})) == ["ARTIFACT_BYTES",
                                                                                          "KNOB_X"]
    assert len(dom.find("svg")) == 5
    assert len(dom.find("circle", class_="seed")) >= 12  # 4 configs × 3 seeds in the mean ± std chart
    assert len(dom.find("path", class_="curve")) == 12  # one curve per run
    assert len(dom.find("line", id="bytes-limit")) == 1
    assert len(dom.find("rect", class_="over")) == 2  # the two 16.5 MB configs break the limit


def test_report_is_self_contained_and_has_every_chart(report):
    text = report.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    # nothing fetched from anywhere: no external scripts, stylesheets or images
    assert "<script src" not in text and "<link" not in text and "<img" not in text
    assert "https://" not in text
    assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    _check_dom(_Dom(text))


def test_report_marks_best_and_infeasible_rows(report):
    dom = _Dom(report.read_text(encoding="utf-8"))
    rows = [a for a in dom.find("tr") if "data-trial" in a]
    assert "best" in rows[0]["class"].split()
    assert sum("infeasible" in a["class"].split() for a in rows) == 2


@pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK),
                    reason=f"{CHROMIUM} is not installed (.ci/install-chromium.sh installs it)")
def test_report_in_headless_chromium(report, tmp_path):
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    url = report.resolve().as_uri()
    dom = subprocess.run(flags + ["--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    _check_dom(_Dom(dom.stdout))
    png = tmp_path / "report.png"
    shot = subprocess.run(flags + [f"--screenshot={png}", "--window-size=1400,2400", url],
                          capture_output=True, text=True, timeout=120)
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


def test_report_of_a_sweep_without_results(tmp_path):
    root = sweeps.store_sweep(tmp_path / "s", {0: {"params": {"KNOB_X": 1.0},
                                                  "runs": {1: {"state": "failed", "reason": "exit 3: boom"}}}})
    text = render_report(load_sweep(root))
    dom = _Dom(text)
    assert len(dom.find("figure", class_="chart")) == 4  # mean-std, one knob, curves, bytes: all placeholders
    assert "no completed runs yet" in text and "exit 3: boom" in text
    assert len(dom.find("ul", id="failed-runs")) == 1


def test_report_escapes_what_it_shows(tmp_path):
    root = sweeps.store_sweep(tmp_path / "s", {0: {"params": {"KNOB_X": 1.0}, "runs": {
        1: {"val_bpb": 1.2, "val_loss": 2.0}, 2: {"state": "failed", "reason": "<script>alert(1)</script>"}}}})
    text = render_report(load_sweep(root))
    assert "<script>alert" not in text and "&lt;script&gt;" in text


def test_write_report_refuses_a_directory(tmp_path, sweep_dir):
    with pytest.raises(GolfsweepError, match="--out: must be a file path, got directory"):
        write_report(sweep_dir, tmp_path)


def test_cli_report(sweep_dir, tmp_path):
    from typer.testing import CliRunner

    from golfsweep.cli import app

    out = tmp_path / "r.html"
    res = CliRunner().invoke(app, ["report", str(sweep_dir), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert out.is_file() and "summary-table" in out.read_text(encoding="utf-8")
