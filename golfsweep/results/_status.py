"""``golfsweep status``: runs grouped by state, with failure reasons and the parser's doubts."""

from __future__ import annotations

from golfsweep.results._table import SweepData, ledger_line
from golfsweep.worker._types import RunState


def format_status(data: SweepData) -> str:
    expected = len(data.trials) * len(data.seeds)
    counts = {s: 0 for s in RunState}
    for r in data.runs:
        counts[r.state] += 1
    queued = expected - len(data.runs) + counts[RunState.QUEUED]
    lines = [f"sweep {data.spec['name']}: {len(data.trials)}/{data.spec['trials']} trials asked, "
             f"{len(data.seeds)} seeds each"]
    summary = [f"{s.value} {counts[s]}" for s in RunState if s is not RunState.QUEUED and counts[s]]
    lines.append("runs: " + ", ".join([f"queued {queued}"] + summary))
    params = {t.trial: t.params for t in data.trials}
    for state in RunState:
        group = [r for r in data.runs if r.state is state]
        if not group:
            continue
        lines.append(f"[{state.value}]")
        for r in group:
            where = f" node={r.node_id[:12]}" if r.node_id else ""
            metric = f" val_bpb={r.val_bpb:.6f}" if r.val_bpb is not None else ""
            why = f" reason: {r.reason}" if r.reason else ""
            lines.append(f"  trial {r.trial} seed {r.seed} attempt {r.attempt}{where}{metric}"
                         f" params={params.get(r.trial, {})}{why}")
            lines.extend(f"    unsure: {w}" for w in r.warnings)  # the log parser's doubts about the score
    lines.append(ledger_line(data))
    return "\n".join(lines)
