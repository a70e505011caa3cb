"""``golfsweep report``: one self-contained HTML file (inline CSS and SVG, no scripts from anywhere).

Charts are drawn here as plain SVG so the file opens offline, survives being mailed around, and a
test can find every element by its id or ``data-kind``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import html
import math
import numbers
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from golfsweep.errors import GolfsweepError
from golfsweep.storage import StoreLocation
from golfsweep.paths import atomic_write
from golfsweep.redact import Redactor
from golfsweep.results._store import RunRecord
from golfsweep.results._table import ledger_line, SweepData, load_sweep, summary_frame
from golfsweep.worker import RunState

# Grey is kept out of the palette: it marks infeasible configs.
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
            "#bcbd22", "#393b79")
_W, _H = 600, 320
_M = {"left": 70, "right": 20, "top": 24, "bottom": 52}

_CSS = """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:24px auto;max-width:1320px;
color:#1d1d1f;padding:0 16px;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;
padding-bottom:4px}.meta{color:#555;font-size:13px;margin:0 0 12px}
table{border-collapse:collapse;font-size:12px;font-variant-numeric:tabular-nums}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:right;white-space:nowrap}
th{background:#f4f4f6;position:sticky;top:0}td.l,th.l{text-align:left}
tr.infeasible td{color:#888}tr.best td{background:#eef7ee;font-weight:600}
.fail{color:#c62828;font-weight:600}.pass{color:#2e7d32}
.grid{display:flex;flex-wrap:wrap;gap:16px}figure{margin:0;border:1px solid #e3e3e6;border-radius:6px;
padding:8px;background:#fcfcfd}figcaption{font-size:13px;font-weight:600;margin:0 0 4px}
svg text{font-size:11px;fill:#333}svg .axis line,svg .axis path{stroke:#999}
svg .gridline{stroke:#eee}svg .limit{stroke:#c62828;stroke-dasharray:6 4;stroke-width:1.5}
.legend{font-size:11px;color:#333;display:flex;flex-wrap:wrap;gap:4px 12px;margin-top:4px}
.legend span::before{content:'';display:inline-block;width:10px;height:10px;margin-right:4px;
background:var(--c);vertical-align:-1px}.failures{font-size:12px}.note{color:#666;font-size:12px}
"""


def write_report(sweep_dir: str | Path | StoreLocation, out: str | Path, *, secret_env: Mapping[str, str] | None = None) -> Path:
    """Write the HTML report of a sweep directory to ``out`` and return its path.

    Secrets are masked as in ``render_report``, with the values of ``secret_env`` too.
    """
    data = load_sweep(sweep_dir)
    out = Path(out)
    if out.exists() and out.is_dir():
        raise GolfsweepError(f"--out: must be a file path, got directory {str(out)!r}")
    redactor = Redactor({**os.environ, **dict(secret_env or {})})
    atomic_write(out, render_report(data, redactor=redactor))
    os.chmod(out, 0o644)  # the temp file behind atomic_write is private; a report is meant to be shared
    return out


def render_report(data: SweepData, *, redactor: Redactor | None = None) -> str:
    """The report as one HTML string.

    Secrets (defence in depth: runs are redacted when written, see ``golfsweep.redact``): the runs'
    free text (failure reasons) is redacted before it is escaped, and the whole page after, with
    ``redactor`` (default: the secret values of this process's environment, and any value assigned
    to a secret name).
    """
    redactor = redactor if redactor is not None else Redactor(dict(os.environ))
    data = dataclasses.replace(data, runs=[r if r.reason is None else dataclasses.replace(
        r, reason=redactor.redact(r.reason)) for r in data.runs])
    return redactor.redact(_render(data))


def _render(data: SweepData) -> str:
    df = summary_frame(data)
    configs = [] if df.empty else [row for _, row in df.iterrows()]
    runs_by_trial: dict[int, list[RunRecord]] = {}
    for r in data.runs:
        runs_by_trial.setdefault(r.trial, []).append(r)
    colors = {int(row["trial"]): _PALETTE[i % len(_PALETTE)] for i, row in enumerate(configs)}
    name = html.escape(str(data.spec.get("name", "?")))
    n_runs = len(data.runs)
    n_ok = sum(r.state is RunState.COMPLETE for r in data.runs)
    best = next((row for row in configs if row["feasible"]), None)
    best_text = ("no feasible config yet" if best is None else
                 f"best feasible: trial {int(best['trial'])}, mean val_bpb {best['mean_val_bpb']:.5f}"
                 + (f" ± {best['std_val_bpb']:.5f}" if _num(best["std_val_bpb"]) else ""))
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>golfsweep report: {name}</title>", f"<style>{_CSS}</style></head><body>",
        f'<h1 id="title">Sweep {name}</h1>',
        f'<p class="meta" id="meta">{len(data.trials)} configs × {len(data.seeds)} seeds '
        f'({", ".join(map(str, data.seeds))}); {n_ok}/{n_runs} runs complete; {html.escape(best_text)}. '
        f'Limits: artifact ≤ {data.limits["artifact_bytes"]:,} bytes, train ≤ {data.limits["train_seconds"]:g} s, '
        f'eval ≤ {data.limits["eval_seconds"]:g} s. Generated {_dt.datetime.now().strftime("%Y-%m-%d %H:%M")}.</p>',
        f'<p class="meta" id="cost">{html.escape(ledger_line(data))}.</p>',
        "<h2>Configs</h2>", _summary_table(data, configs),
        _failures(data, runs_by_trial), _pruned(data, configs),
        "<h2>val_bpb per config</h2>",
        '<p class="note">Mean ± std over completed seeds (bar), each seed a dot; grey: infeasible.</p>',
        '<div class="grid">', _mean_std_chart(configs, runs_by_trial, colors), "</div>",
        "<h2>val_bpb against each knob</h2>",
        '<p class="note">One chart per parameter: each config\'s mean (ring) and its seeds (dots).</p>',
        '<div class="grid">', *[_knob_chart(data, p, configs, runs_by_trial, colors) for p in data.spec["space"]],
        "</div>",
        "<h2>Validation curves</h2>",
        '<div class="grid">', _curves_chart(configs, runs_by_trial, colors), "</div>",
        "<h2>Artifact bytes</h2>",
        '<div class="grid">', _bytes_chart(data, configs, runs_by_trial), "</div>",
        "</body></html>",
    ]
    return "\n".join(parts)


# --------------------------------------------------------------------------- table

def _summary_table(data: SweepData, configs: list) -> str:
    if not configs:
        return '<table id="summary-table"><tr><td class="l">no trials yet</td></tr></table>'
    params = data.param_names
    head = (["trial"] + params + ["n_ok/n_seeds", "mean val_bpb", "std", "min", "max", "mean val_loss",
                                  "max bytes", "max train s", "max eval s", "bytes", "train", "eval", "feasible",
                                  "GPU-hours"])
    rows = []
    best_seen = False
    for row in configs:
        cls = []
        if not row["feasible"]:
            cls.append("infeasible")
        elif not best_seen:
            cls.append("best")
            best_seen = True
        cells = [_td(int(row["trial"]))]
        cells += [_td(_fmt_param(row["params"].get(p))) for p in params]
        cells += [_td(f"{int(row['n_ok'])}/{int(row['n_seeds'])}"),
                  _td(_f(row["mean_val_bpb"], 5)), _td(_f(row["std_val_bpb"], 5)), _td(_f(row["min_val_bpb"], 5)),
                  _td(_f(row["max_val_bpb"], 5)), _td(_f(row["mean_val_loss"], 5)),
                  _td(f"{int(row['max_bytes_total']):,}" if _num(row["max_bytes_total"]) else "-"),
                  _td(_f(row["max_train_s"], 1)), _td(_f(row["max_eval_s"], 1))]
        cells += [_passfail(row[k]) for k in ("bytes_ok", "train_ok", "eval_ok")]
        verdict = "pruned" if row["pruned"] else "yes" if row["feasible"] else "no"
        cells.append(f'<td class="{"pass" if row["feasible"] else "fail"}">{verdict}</td>')
        cells.append(_td(f"{float(row['gpu_hours']):.2f}"))
        rows.append(f'<tr data-trial="{int(row["trial"])}" class="{" ".join(cls)}">{"".join(cells)}</tr>')
    ths = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    return f'<table id="summary-table"><thead><tr>{ths}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _pruned(data: SweepData, configs: list) -> str:
    """Pruned trials, apart: the values they had when they were stopped, and why."""
    pruned = [row for row in configs if row["pruned"]]
    if not pruned:
        return ""
    by_trial: dict[int, list[RunRecord]] = {}
    for r in data.runs:
        by_trial.setdefault(r.trial, []).append(r)
    items = []
    for row in pruned:
        t = int(row["trial"])
        had = ", ".join(f"seed {r.seed}: " + (f"val_bpb {r.val_bpb:.5f}" if r.val_bpb is not None else
                        f"curve {r.curve[-1][2]:.5f} at step {r.curve[-1][0]}" if r.curve else r.state.value)
                        for r in by_trial.get(t, []))
        why = f" ({html.escape(str(row['pruned_reason']))})" if row["pruned_reason"] else ""
        items.append(f"<li>trial {t}: {html.escape(had)}{why}</li>")
    return f'<h2>Pruned trials</h2><ul class="failures" id="pruned-trials">{"".join(items)}</ul>'


def _failures(data: SweepData, runs_by_trial: dict[int, list[RunRecord]]) -> str:
    failed = [r for r in data.runs if r.state.is_finished() and r.state not in (RunState.COMPLETE, RunState.PRUNED)]
    if not failed:
        return ""
    items = "".join(f"<li>trial {r.trial} seed {r.seed}: {html.escape(r.state.value)}"
                    f"{': ' + html.escape(r.reason) if r.reason else ''}</li>" for r in failed)
    return f'<h2>Failed runs</h2><ul class="failures" id="failed-runs">{items}</ul>'


def _td(v: Any) -> str:
    return f"<td>{html.escape(str(v))}</td>"


def _passfail(v: Any) -> str:
    """A limit's outcome (``golfsweep.limits``): unproven is shown as such, never as a pass."""
    return {"pass": '<td class="pass">pass</td>', "fail": '<td class="fail">FAIL</td>'}.get(
        v, '<td class="unproven">unproven</td>')


# --------------------------------------------------------------------------- charts

@dataclass
class _Axes:
    """A linear (or log-x) mapping from data to pixels inside the margins."""

    x0: float
    x1: float
    y0: float
    y1: float
    log_x: bool = False
    w: int = _W
    h: int = _H

    def px(self, x: float) -> float:
        a, b, v = (math.log10(self.x0), math.log10(self.x1), math.log10(x)) if self.log_x else (self.x0, self.x1, x)
        span = (b - a) or 1.0
        return _M["left"] + (v - a) / span * (self.w - _M["left"] - _M["right"])

    def py(self, y: float) -> float:
        span = (self.y1 - self.y0) or 1.0
        return self.h - _M["bottom"] - (y - self.y0) / span * (self.h - _M["top"] - _M["bottom"])


def _svg(kind: str, title: str, body: Sequence[str], *, extra: str = "", legend: str = "",
         w: int = _W, h: int = _H, attrs: str = "") -> str:
    t = html.escape(title)
    return (f'<figure class="chart" data-kind="{kind}"{attrs}><figcaption>{t}</figcaption>'
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" '
            f'aria-label="{t}">{"".join(body)}</svg>{legend}{extra}</figure>')


def _empty(kind: str, title: str, why: str, attrs: str = "") -> str:
    body = [f'<text x="{_W / 2}" y="{_H / 2}" text-anchor="middle" class="empty">{html.escape(why)}</text>']
    return _svg(kind, title, body, attrs=attrs)


def _axes_svg(ax: _Axes, xlabel: str, ylabel: str, *, x_ticks: Sequence[tuple[float, str]] | None = None,
              y_fmt: Callable[[float], str] | None = None) -> list[str]:
    out = ['<g class="axis">']
    left, right = _M["left"], ax.w - _M["right"]
    top, bottom = _M["top"], ax.h - _M["bottom"]
    for v in _ticks(ax.y0, ax.y1):
        y = ax.py(v)
        out.append(f'<line class="gridline" x1="{left}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{(y_fmt or _tick_label)(v)}</text>')
    ticks = x_ticks if x_ticks is not None else [(v, _tick_label(v)) for v in
                                                 (_log_ticks(ax.x0, ax.x1) if ax.log_x else _ticks(ax.x0, ax.x1))]
    for v, label in ticks:
        x = ax.px(v)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{bottom}" y2="{bottom + 4}"/>')
        out.append(f'<text x="{x:.1f}" y="{bottom + 16}" text-anchor="middle">{html.escape(label)}</text>')
    out.append(f'<path d="M{left},{top} V{bottom} H{right}" fill="none"/>')
    out.append(f'<text x="{(left + right) / 2}" y="{ax.h - 10}" text-anchor="middle">{html.escape(xlabel)}</text>')
    out.append(f'<text transform="translate(14,{(top + bottom) / 2}) rotate(-90)" text-anchor="middle">'
               f'{html.escape(ylabel)}</text>')
    out.append("</g>")
    return out


def _mean_std_chart(configs: list, runs_by_trial: dict[int, list[RunRecord]], colors: dict[int, str]) -> str:
    title = "val_bpb: mean ± std per config, seeds as dots"
    points = {int(row["trial"]): _ok_bpb(runs_by_trial.get(int(row["trial"]), [])) for row in configs}
    shown = [row for row in configs if points[int(row["trial"])]]
    if not shown:
        return _empty("mean-std", title, "no completed runs yet")
    ys = [b for row in shown for _, b in points[int(row["trial"])]]
    lo, hi = _pad(min(ys), max(ys))
    w = max(_W, _M["left"] + _M["right"] + 46 * len(shown))
    ax = _Axes(-0.5, len(shown) - 0.5, lo, hi, w=w)
    ticks = [(i, f"t{int(row['trial'])}") for i, row in enumerate(shown)]
    body = _axes_svg(ax, "config (best first)", "val_bpb", x_ticks=ticks)
    for i, row in enumerate(shown):
        t = int(row["trial"])
        c = colors[t] if row["feasible"] else "#9e9e9e"
        x = ax.px(i)
        mean, std = row["mean_val_bpb"], row["std_val_bpb"] if _num(row["std_val_bpb"]) else 0.0
        tip = (f"trial {t}: mean {mean:.5f} ± {std:.5f} over {len(points[t])} seeds; "
               f"{'feasible' if row['feasible'] else 'infeasible'}; {_params_text(row['params'])}")
        body.append(f'<g class="config" data-trial="{t}"><title>{html.escape(tip)}</title>')
        body.append(f'<rect x="{x - 9:.1f}" y="{ax.py(mean + std):.1f}" width="18" '
                    f'height="{max(ax.py(mean - std) - ax.py(mean + std), 1):.1f}" fill="{c}" fill-opacity="0.25" '
                    f'stroke="{c}"/>')
        body.append(f'<line x1="{x - 12:.1f}" x2="{x + 12:.1f}" y1="{ax.py(mean):.1f}" y2="{ax.py(mean):.1f}" '
                    f'stroke="{c}" stroke-width="2.5" class="mean"/>')
        n = len(points[t])
        for j, (seed, b) in enumerate(points[t]):
            dx = (j - (n - 1) / 2) * 5
            body.append(f'<circle class="seed" cx="{x + dx:.1f}" cy="{ax.py(b):.1f}" r="3" fill="{c}" '
                        f'stroke="#fff" stroke-width="0.8"><title>trial {t} seed {seed}: {b:.6f}</title></circle>')
        body.append("</g>")
    return _svg("mean-std", title, body, w=w)


def _knob_chart(data: SweepData, p: dict[str, Any], configs: list, runs_by_trial: dict[int, list[RunRecord]],
                colors: dict[int, str]) -> str:
    name = p["name"]
    attrs = f' data-param="{html.escape(name)}"'
    title = f"val_bpb against {name}"
    rows = [row for row in configs if name in row["params"] and _ok_bpb(runs_by_trial.get(int(row["trial"]), []))]
    if not rows:
        return _empty("knob", title, "no completed runs yet", attrs)
    categorical = p.get("type") == "categorical" or not all(
        isinstance(row["params"][name], (int, float)) and not isinstance(row["params"][name], bool) for row in rows)
    ys = [b for row in rows for _, b in _ok_bpb(runs_by_trial[int(row["trial"])])]
    lo, hi = _pad(min(ys), max(ys))
    if categorical:
        cats = [str(c) for c in p.get("choices") or []]
        cats += sorted({str(row["params"][name]) for row in rows} - set(cats))
        ax = _Axes(-0.5, len(cats) - 0.5, lo, hi)
        xpos = {c: float(i) for i, c in enumerate(cats)}
        xticks = [(i, c) for i, c in enumerate(cats)]

        def xv(v: Any) -> float:
            return xpos[str(v)]
    else:
        vals = [float(row["params"][name]) for row in rows]
        low = float(p["low"]) if _num(p.get("low")) else min(vals)
        high = float(p["high"]) if _num(p.get("high")) else max(vals)
        log_x = bool(p.get("log")) and low > 0
        low, high = min(low, *vals), max(high, *vals)
        if low == high:
            low, high = low - 1, high + 1
        ax = _Axes(low, high, lo, hi, log_x=log_x)
        xticks = None

        def xv(v: Any) -> float:
            return float(v)
    body = _axes_svg(ax, name + (" (log)" if ax.log_x else ""), "val_bpb", x_ticks=xticks)
    for row in rows:
        t = int(row["trial"])
        c = colors[t] if row["feasible"] else "#9e9e9e"
        x = ax.px(xv(row["params"][name]))
        pts = _ok_bpb(runs_by_trial[t])
        mean = row["mean_val_bpb"]
        tip = f"trial {t}: {name}={_fmt_param(row['params'][name])}, mean val_bpb {mean:.5f}"
        body.append(f'<g class="config" data-trial="{t}"><title>{html.escape(tip)}</title>')
        for seed, b in pts:
            body.append(f'<circle class="seed" cx="{x:.1f}" cy="{ax.py(b):.1f}" r="2.5" fill="{c}" '
                        f'fill-opacity="0.6"><title>seed {seed}: {b:.6f}</title></circle>')
        body.append(f'<circle class="mean" cx="{x:.1f}" cy="{ax.py(mean):.1f}" r="6" fill="none" stroke="{c}" '
                    f'stroke-width="2"/></g>')
    return _svg("knob", title, body, attrs=attrs)


def _curves_chart(configs: list, runs_by_trial: dict[int, list[RunRecord]], colors: dict[int, str]) -> str:
    title = "val_bpb over training steps (every run; colour = config)"
    series = []
    for row in configs:
        t = int(row["trial"])
        for r in runs_by_trial.get(t, []):
            pts = [(float(s), float(b)) for s, _, b in r.curve if _num(b) and math.isfinite(b)]
            if pts:
                series.append((t, r.seed, r.state, pts))
    if not series:
        return _empty("curves", title, "no validation curves recorded")
    xs = [x for *_, pts in series for x, _ in pts]
    ys = [y for *_, pts in series for _, y in pts]
    lo, hi = _pad(min(ys), max(ys))
    ax = _Axes(min(0.0, min(xs)), max(xs) or 1.0, lo, hi, w=_W + 220)
    body = _axes_svg(ax, "step", "val_bpb")
    for t, seed, state, pts in series:
        c = colors.get(t, "#777")
        d = " ".join(f"{'M' if i == 0 else 'L'}{ax.px(x):.1f},{ax.py(y):.1f}" for i, (x, y) in enumerate(pts))
        dash = "" if state is RunState.COMPLETE else ' stroke-dasharray="3 3"'
        body.append(f'<path class="curve" data-trial="{t}" data-seed="{seed}" d="{d}" fill="none" stroke="{c}" '
                    f'stroke-width="1.4" stroke-opacity="0.85"{dash}><title>trial {t} seed {seed} '
                    f'({state.value}): last {pts[-1][1]:.5f} at step {int(pts[-1][0])}</title></path>')
        for x, y in pts:
            body.append(f'<circle cx="{ax.px(x):.1f}" cy="{ax.py(y):.1f}" r="1.8" fill="{c}"/>')
    legend = _legend([(f"trial {int(row['trial'])}", colors[int(row["trial"])]) for row in configs
                      if any(s[0] == int(row["trial"]) for s in series)])
    return _svg("curves", title, body, legend=legend, w=_W + 220)


def _bytes_chart(data: SweepData, configs: list, runs_by_trial: dict[int, list[RunRecord]]) -> str:
    limit = int(data.limits["artifact_bytes"])
    title = f"artifact bytes per config (max over seeds) against the {limit:,}-byte limit"
    rows = []
    for row in configs:
        t = int(row["trial"])
        sizes = [(r.seed, r.bytes_total) for r in runs_by_trial.get(t, []) if r.bytes_total is not None]
        if sizes:
            rows.append((row, sizes))
    if not rows:
        return _empty("bytes", title, "no artifact sizes recorded")
    top = max(limit, *(b for _, s in rows for _, b in s)) * 1.06
    w = max(_W, _M["left"] + _M["right"] + 46 * len(rows))
    ax = _Axes(-0.5, len(rows) - 0.5, 0.0, top, w=w)
    body = _axes_svg(ax, "config (table order)", "bytes (MB)",
                     x_ticks=[(i, f"t{int(row['trial'])}") for i, (row, _) in enumerate(rows)],
                     y_fmt=lambda v: f"{v / 1e6:g}")
    for i, (row, sizes) in enumerate(rows):
        t = int(row["trial"])
        biggest = max(b for _, b in sizes)
        over = biggest > limit
        c = "#c62828" if over else "#4e79a7"  # one neutral colour, so only "over" reads as red
        x = ax.px(i)
        body.append(f'<rect class="bar{" over" if over else ""}" data-trial="{t}" x="{x - 14:.1f}" '
                    f'y="{ax.py(biggest):.1f}" width="28" height="{ax.py(0) - ax.py(biggest):.1f}" fill="{c}" '
                    f'fill-opacity="0.75"><title>trial {t}: max {biggest:,} bytes '
                    f'({"over" if over else "under"} the limit by {abs(biggest - limit):,}); seeds: '
                    f'{", ".join(f"{s}={b:,}" for s, b in sizes)}</title></rect>')
    y = ax.py(limit)
    body.append(f'<line class="limit" id="bytes-limit" x1="{_M["left"]}" x2="{w - _M["right"]}" y1="{y:.1f}" '
                f'y2="{y:.1f}"><title>limit {limit:,} bytes</title></line>')
    n_over = sum(max(b for _, b in sizes) > limit for _, sizes in rows)
    note = (f'<div class="note">Dashed red line: the {limit:,}-byte limit. '
            f'{n_over} config{"s" if n_over != 1 else ""} over it (red bars).</div>')
    return _svg("bytes", title, body, extra=note, w=w)


# --------------------------------------------------------------------------- helpers

def _ok_bpb(runs: Sequence[RunRecord]) -> list[tuple[int, float]]:
    return [(r.seed, r.val_bpb) for r in runs if r.state is RunState.COMPLETE and r.val_bpb is not None]


def _legend(items: Sequence[tuple[str, str]]) -> str:
    spans = "".join(f'<span style="--c:{c}">{html.escape(label)}</span>' for label, c in items)
    return f'<div class="legend">{spans}</div>'


def _pad(lo: float, hi: float) -> tuple[float, float]:
    span = hi - lo
    if span <= 0:
        span = abs(hi) * 0.01 or 1.0
    return lo - span * 0.08, hi + span * 0.08


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    span = hi - lo
    if span <= 0 or not math.isfinite(span):
        return [lo]
    raw = span / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step) * step
    out, v = [], start
    while v <= hi + step * 1e-9:
        out.append(round(v, 12))
        v += step
    return out


def _log_ticks(lo: float, hi: float) -> list[float]:
    out = []
    for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        for m in (1, 2, 5):
            v = m * 10 ** e
            if lo <= v <= hi:
                out.append(v)
    return out or [lo, hi]


def _tick_label(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e6:
        return f"{v / 1e6:g}M"
    if a >= 1e4:
        return f"{v / 1e3:g}k"
    return f"{v:.6g}"


def _num(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(float(v))


def _f(v: Any, digits: int) -> str:
    return f"{v:.{digits}f}" if _num(v) else "-"


def _fmt_param(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "-" if v is None else str(v)


def _params_text(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_fmt_param(v)}" for k, v in sorted(params.items()))
