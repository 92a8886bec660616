"""report.html for a chaos run: one self-contained page of inline SVG (no JS, no libraries).

Charts share one time axis (seconds since the run began, from the history's
monotonic clock): op latency per op type (log scale; filled circle ok, cross fail,
hollow triangle unknown), ok ops per second, and a band per node showing when it
claimed leadership (from leaders.jsonl samples). Fault intervals are shaded and
labelled on every chart; availability gaps (write gaps of at least 0.5 s, from the
unavailability check) are drawn as red bars under the latency and throughput charts.
Below them: the verdict table, per fault kind the longest write gap and the p50/p99/max
latency of ok ops under it, the membership changes, and the summary numbers.
"""

from __future__ import annotations

import html
import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from raftcache.chaos.history import Op

WIDTH, LEFT, RIGHT = 1000, 60, 20
PLOT_W = WIDTH - LEFT - RIGHT
MAX_OK_POINTS = 20_000  # beyond this, ok ops are thinned evenly; unknown ones are all drawn
MAX_FAIL_POINTS = 10_000  # and so are failed ones (a 30-minute run had 113,000: an 11 MB page)
OP_COLORS = {
    "get": "#1f77b4",
    "set": "#2ca02c",
    "cas": "#9467bd",
    "incr": "#ff7f0e",
    "delete": "#8c564b",
    "append": "#e377c2",
    "read": "#17becf",
    "enqueue": "#7f7f7f",
    "dequeue": "#c7c7c7",
    "sadd": "#bcbd22",
    "smembers": "#aec7e8",
}
FAULT_COLORS = {
    "kill-leader": "#d62728",
    "kill-random": "#e377c2",
    "kill-majority": "#7f0000",
    "pause": "#bcbd22",
    "restart-all": "#8c564b",
    "partition-leader": "#17becf",
    "partition-halves": "#1f77b4",
    "latency": "#ff7f0e",
    "partition-one-way": "#9edae5",
    "bridge-flap": "#393b79",
    "loss": "#ffbb78",
    "clock-skew": "#637939",
    "member-cycle": "#9467bd",
    "member-grow": "#c5b0d5",
    "leader-transfer": "#2ca02c",
}
GAP_COLOR = "#d62728"
MAX_LABELLED_FAULTS = 30  # more faults than this: no label on the charts, a legend instead
NODE_COLORS = ("#1f77b4", "#2ca02c", "#d62728", "#9467bd", "#ff7f0e", "#17becf", "#8c564b")


def read_leaders(path: Path) -> list[dict[str, Any]]:
    """The samples of a leaders.jsonl file ([] if it does not exist)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_report(
    out: Path,
    summary: Mapping[str, Any],
    ops: Sequence[Op],
    faults: Sequence[Mapping[str, Any]],
    leaders: Sequence[Mapping[str, Any]],
) -> Path:
    """Write out/report.html and return its path."""
    path = out / "report.html"
    path.write_text(render_html(summary, ops, faults, leaders), encoding="utf-8")
    return path


class _Axis:
    """Maps monotonic seconds to x pixels across the run."""

    def __init__(self, t0: float, t1: float) -> None:
        self.t0, self.span = t0, max(t1 - t0, 1e-9)

    def x(self, t: float) -> float:
        return LEFT + (t - self.t0) / self.span * PLOT_W


def _time_range(
    ops: Sequence[Op], faults: Sequence[Mapping[str, Any]], leaders: Sequence[Mapping[str, Any]]
) -> tuple[float, float]:
    times = [o.invoke for o in ops] + [o.complete for o in ops]
    times += [float(f["start"]) for f in faults]
    times += [float(f["end"]) for f in faults if f.get("end") is not None]
    times += [float(s["t"]) for s in leaders]
    return (min(times), max(times)) if times else (0.0, 1.0)


def render_html(
    summary: Mapping[str, Any],
    ops: Sequence[Op],
    faults: Sequence[Mapping[str, Any]],
    leaders: Sequence[Mapping[str, Any]],
) -> str:
    """The whole page as a string."""
    axis = _Axis(*_time_range(ops, faults, leaders))
    gaps = ((summary.get("unavailability") or {}).get("gaps")) or []
    title = f"raftcache-chaos seed {summary.get('seed', '?')}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"/>',
        f"<title>{_e(title)}</title>",
        "<style>body{font-family:sans-serif;margin:20px;max-width:1040px}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;"
        "text-align:left;vertical-align:top}.PASS{color:#2ca02c}.FAIL{color:#d62728}"
        ".UNKNOWN{color:#ff7f0e}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        _verdict_table(summary),
        fault_legend(faults),
        "<h2>Latency</h2>",
        latency_svg(ops, faults, axis, gaps),
        "<h2>Throughput (ok ops per second)</h2>",
        throughput_svg(ops, faults, axis, gaps),
        "<h2>Leader (who claimed leadership when)</h2>",
        leader_svg(leaders, faults, axis),
        _fault_numbers(summary),
        _membership_table(summary),
        _numbers(summary),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


# -- charts ---------------------------------------------------------------------------


def latency_svg(
    ops: Sequence[Op],
    faults: Sequence[Mapping[str, Any]],
    axis: _Axis,
    gaps: Sequence[Sequence[float]] = (),
) -> str:
    """Scatter of op latency (ms, log scale) against invoke time; write gaps as red bars."""
    height, top, bottom = 360, 20, 30
    latencies = [max((o.complete - o.invoke) * 1000, 0.1) for o in ops]
    lo = 10 ** math.floor(math.log10(min(latencies, default=1.0)))
    hi = 10 ** math.ceil(math.log10(max(latencies, default=1000.0) * 1.0001))
    hi = max(hi, lo * 10)
    span = math.log10(hi) - math.log10(lo)

    def y(ms: float) -> float:
        return top + (1 - (math.log10(ms) - math.log10(lo)) / span) * (height - top - bottom)

    body = _fault_shading(faults, axis, top, height - bottom)
    decade = lo
    while decade <= hi:
        yy = y(decade)
        body.append(_line(LEFT, yy, WIDTH - RIGHT, yy, "#eee"))
        body.append(_text(LEFT - 4, yy + 4, _ms_label(decade), anchor="end"))
        decade *= 10
    ok_indices = [i for i, o in enumerate(ops) if o.outcome == "ok"]
    step = max(1, math.ceil(len(ok_indices) / MAX_OK_POINTS))
    fail_indices = [i for i, o in enumerate(ops) if o.outcome == "fail"]
    fail_step = max(1, math.ceil(len(fail_indices) / MAX_FAIL_POINTS))
    keep = set(ok_indices[::step]) | set(fail_indices[::fail_step])
    keep |= {i for i, o in enumerate(ops) if o.outcome == "unknown"}
    for i in sorted(keep):
        op = ops[i]
        body.append(_marker(axis.x(op.invoke), y(latencies[i]), op.op, op.outcome))
    body += _gap_bars(gaps, axis, height - bottom)
    body += _time_ticks(axis, height - bottom)
    body.append(_legend_ops(top))
    thinned = [f"1 in {n} {what} ops" for n, what in ((step, "ok"), (fail_step, "failed")) if n > 1]
    note = f" ({', '.join(thinned)} drawn)" if thinned else ""
    return _svg(height, body, f"op latency by invoke time{note}")


def throughput_svg(
    ops: Sequence[Op],
    faults: Sequence[Mapping[str, Any]],
    axis: _Axis,
    gaps: Sequence[Sequence[float]] = (),
) -> str:
    """Acknowledged ops per one-second bucket, and failed or unknown ones in red; write
    gaps as red bars on the time axis."""
    height, top, bottom = 220, 20, 30
    seconds = math.ceil(axis.span)
    ok: Counter[int] = Counter()
    bad: Counter[int] = Counter()
    for op in ops:
        bucket = int(op.complete - axis.t0)
        (ok if op.outcome == "ok" else bad)[bucket] += 1
    peak = max([*ok.values(), *bad.values(), 1])

    def y(n: float) -> float:
        return top + (1 - n / peak) * (height - top - bottom)

    body = _fault_shading(faults, axis, top, height - bottom)
    for frac in (0.0, 0.5, 1.0):
        yy = y(peak * frac)
        body.append(_line(LEFT, yy, WIDTH - RIGHT, yy, "#eee"))
        body.append(_text(LEFT - 4, yy + 4, f"{peak * frac:.0f}", anchor="end"))
    for counts, color in ((ok, "#2ca02c"), (bad, "#d62728")):
        points = " ".join(
            f"{axis.x(axis.t0 + s + 0.5):.1f},{y(counts.get(s, 0)):.1f}" for s in range(seconds)
        )
        if points:
            body.append(f'<polyline fill="none" stroke="{color}" points="{points}"/>')
    body.append(
        _text(
            WIDTH - RIGHT,
            top - 6,
            "green: ok/s   red: fail+unknown/s   bars under the axis: write gaps >= 0.5 s",
            anchor="end",
        )
    )
    body += _gap_bars(gaps, axis, height - bottom)
    body += _time_ticks(axis, height - bottom)
    return _svg(height, body, "ops per second")


def leader_svg(
    leaders: Sequence[Mapping[str, Any]], faults: Sequence[Mapping[str, Any]], axis: _Axis
) -> str:
    """One band per node: coloured while it claims to lead, grey while it does not answer."""
    names = sorted({name for s in leaders for name in s["nodes"]})
    row, top, bottom = 24, 38, 30  # top: room for three rows of fault labels
    height = top + row * max(len(names), 1) + bottom
    body = _fault_shading(faults, axis, top, height - bottom, label_y=12)
    for r, name in enumerate(names):
        yy = top + r * row
        body.append(_text(LEFT - 4, yy + row / 2 + 4, name, anchor="end"))
        color = NODE_COLORS[r % len(NODE_COLORS)]
        for a, b in zip(leaders, [*leaders[1:], None], strict=True):
            state = a["nodes"].get(name, {})
            end = float(b["t"]) if b is not None else float(a["t"]) + 0.3
            x0, x1 = axis.x(float(a["t"])), axis.x(end)
            fill = {"leader": color, "candidate": "#f5deb3", "down": "#bbb"}.get(
                str(state.get("role")), ""
            )
            if fill:
                label = f"{name} {state.get('role')} term {state.get('term', '?')}"
                body.append(
                    f'<rect class="leader-band" x="{x0:.1f}" y="{yy + 2}" '
                    f'width="{max(x1 - x0, 0.5):.1f}" height="{row - 4}" fill="{fill}">'
                    f"<title>{_e(label)}</title></rect>"
                )
    if not names:
        body.append(_text(LEFT + 10, top + 16, "no leader samples recorded", anchor="start"))
    body.append(
        _text(WIDTH - RIGHT, height - 4, "coloured: leader, tan: candidate, grey: down", "end")
    )
    body += _time_ticks(axis, height - bottom)
    return _svg(height, body, "leader timeline")


# -- SVG pieces -------------------------------------------------------------------------


def _svg(height: int, body: Sequence[str], label: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{_e(label)}" '
        'font-family="sans-serif" font-size="11">' + "".join(body) + "</svg>"
    )


def _fault_shading(
    faults: Sequence[Mapping[str, Any]],
    axis: _Axis,
    top: float,
    bottom: float,
    label_y: float | None = None,
) -> list[str]:
    out = []
    for i, fault in enumerate(faults):
        kind = str(fault["kind"])
        start = float(fault["start"])
        end = float(fault["end"]) if fault.get("end") is not None else axis.t0 + axis.span
        x0, x1 = axis.x(start), axis.x(end)
        color = FAULT_COLORS.get(kind, "#888")
        target = ",".join(str(t) for t in fault.get("target", []))
        out.append(
            f'<rect class="fault" data-kind="{_e(kind)}" x="{x0:.1f}" y="{top}" '
            f'width="{max(x1 - x0, 1):.1f}" height="{bottom - top}" fill="{color}" '
            f'fill-opacity="0.15"><title>{_e(kind)} {_e(target)}</title></rect>'
        )
        if len(faults) > MAX_LABELLED_FAULTS:
            continue  # a long run: the colour legend above the charts names the kinds
        # Three staggered rows, so the labels of close faults do not overprint.
        y = (top + 10 if label_y is None else label_y) + (i % 3) * 11
        out.append(_text(x0 + 2, y, f"{kind} {target}", anchor="start", cls="fault-label"))
    return out


def _gap_bars(gaps: Sequence[Sequence[float]], axis: _Axis, y: float) -> list[str]:
    """One dark red bar per availability gap (no acked write from a to b), in a strip just
    under the time axis (the ticks' labels sit below it)."""
    out = []
    for a, b in gaps:
        x0, x1 = axis.x(float(a)), axis.x(float(b))
        out.append(
            f'<rect class="gap" x="{x0:.1f}" y="{y + 1:.1f}" width="{max(x1 - x0, 2):.1f}" '
            f'height="5" fill="{GAP_COLOR}" stroke="#7f0000" stroke-width="0.5">'
            f"<title>write gap {float(b) - float(a):.2f} s</title></rect>"
        )
    return out


def fault_legend(faults: Sequence[Mapping[str, Any]]) -> str:
    """The colour of each fault kind in the run, with how often it occurred."""
    kinds = Counter(str(f["kind"]) for f in faults)
    items = [
        f'<span style="display:inline-block;margin-right:12px"><span style="display:inline-'
        f"block;width:12px;height:12px;background:{FAULT_COLORS.get(k, '#888')};opacity:0.5;"
        f'vertical-align:middle"></span> {_e(k)} x{n}</span>'
        for k, n in sorted(kinds.items())
    ]
    gap = (
        f'<span style="display:inline-block;width:12px;height:5px;background:{GAP_COLOR};'
        'vertical-align:middle"></span> write gap &gt;= 0.5 s (under the time axis)'
    )
    return f'<p class="fault-legend">{"".join(items)}{gap}</p>' if items else ""


def _marker(x: float, y: float, op: str, outcome: str) -> str:
    color = OP_COLORS.get(op, "#333")
    if outcome == "ok":
        return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="1.6" fill="{color}"/>'
    if outcome == "fail":
        d = 3
        return (
            f'<path d="M{x - d:.1f},{y - d:.1f}L{x + d:.1f},{y + d:.1f}'
            f'M{x - d:.1f},{y + d:.1f}L{x + d:.1f},{y - d:.1f}" stroke="{color}"/>'
        )
    return (
        f'<path d="M{x:.1f},{y - 4:.1f}L{x + 4:.1f},{y + 3:.1f}L{x - 4:.1f},{y + 3:.1f}Z" '
        f'fill="none" stroke="{color}"/>'
    )


def _legend_ops(top: float) -> str:
    items = [f'<tspan fill="{c}">{op}</tspan>' for op, c in OP_COLORS.items()]
    return (
        f'<text x="{WIDTH - RIGHT}" y="{top - 6}" text-anchor="end">'
        + " ".join(items)
        + "   ● ok  ✕ fail  △ unknown</text>"
    )


def _time_ticks(axis: _Axis, y: float) -> list[str]:
    step = next((s for s in (1, 2, 5, 10, 20, 30, 60, 120, 300) if axis.span / s <= 12), 600)
    out = [_line(LEFT, y, WIDTH - RIGHT, y, "#444")]
    t = 0
    while t <= axis.span:
        x = axis.x(axis.t0 + t)
        out.append(_line(x, y, x, y + 4, "#444"))
        out.append(_text(x, y + 15, f"{t} s", anchor="middle"))
        t += step
    return out


def _line(x0: float, y0: float, x1: float, y1: float, color: str) -> str:
    return f'<line x1="{x0:.1f}" y1="{y0:.1f}" x2="{x1:.1f}" y2="{y1:.1f}" stroke="{color}"/>'


def _text(x: float, y: float, text: str, anchor: str = "start", cls: str = "") -> str:
    klass = f' class="{cls}"' if cls else ""
    return f'<text{klass} x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}">{_e(text)}</text>'


def _ms_label(ms: float) -> str:
    return f"{ms / 1000:g} s" if ms >= 1000 else f"{ms:g} ms"


def _e(text: str) -> str:
    return html.escape(text, quote=True)


# -- tables -------------------------------------------------------------------------------


def _verdict_table(summary: Mapping[str, Any]) -> str:
    rows = []
    for v in summary.get("verdicts", []):
        mark = {True: "PASS", False: "FAIL"}.get(v["valid"], "UNKNOWN")
        rows.append(
            f'<tr><td>{_e(str(v["name"]))}</td><td class="{mark}">{mark}</td>'
            f"<td>{_e(str(v.get('message', '')))}</td></tr>"
        )
    return (
        "<h2>Verdicts</h2><table><tr><th>check</th><th>verdict</th><th>details</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _ms(seconds: Any) -> str:
    return "-" if seconds is None else f"{float(seconds) * 1000:.0f} ms"


def _fault_numbers(summary: Mapping[str, Any]) -> str:
    """Per fault kind: occurrences, the longest write gap, latency of ok ops under it."""
    unavailability = summary.get("unavailability") or {}
    by_fault = unavailability.get("by_fault", {})
    if not by_fault:
        return ""
    rows = []
    for kind, g in sorted(by_fault.items()):
        per = ", ".join(f"{p} {float(v):.2f} s" for p, v in g.get("by_protocol", {}).items())
        rows.append(
            f"<tr><td>{_e(kind)}</td><td>{g.get('occurrences', '')}</td>"
            f"<td>{float(g['longest_gap_s']):.2f} s</td><td>{_e(per)}</td>"
            f"<td>{_ms(g.get('p50_latency_s'))}</td>"
            f"<td>{_ms(g.get('p99_latency_s'))}</td><td>{_ms(g.get('max_latency_s'))}</td>"
            f"<td>{g.get('ops', '')}</td></tr>"
        )
    for label, key in (("under any fault", "under_faults"), ("calm (no fault)", "calm")):
        stats = unavailability.get(key) or {}
        if stats:
            rows.append(
                f"<tr><td>{label}</td><td></td><td></td><td></td>"
                f"<td>{_ms(stats.get('p50_latency_s'))}</td>"
                f"<td>{_ms(stats.get('p99_latency_s'))}</td>"
                f"<td>{_ms(stats.get('max_latency_s'))}</td><td>{stats.get('ops', '')}</td></tr>"
            )
    return (
        "<h2>Per fault kind</h2><table><tr><th>fault</th><th>times</th>"
        "<th>longest write gap</th><th>per protocol</th><th>p50</th><th>p99</th><th>max</th>"
        "<th>ok ops under it</th>"
        "</tr>" + "".join(rows) + "</table>"
    )


def _membership_table(summary: Mapping[str, Any]) -> str:
    """Every membership or leadership change the nemesis tried, and how it ended."""
    membership = summary.get("membership") or {}
    changes = membership.get("changes") or []
    if not changes:
        return ""
    rows = [
        f"<tr><td>{_e(str(c.get('op')))}</td><td>{_e(str(c.get('member', '')))}</td>"
        f"<td>{_e(str(c.get('outcome')))}</td>"
        f"<td>{_e(str(c.get('reason', c.get('leader', '')))[:200])}</td></tr>"
        for c in changes
    ]
    members = ", ".join(str(m) for m in membership.get("members_at_end", []))
    return (
        f"<h2>Membership changes</h2><p>members at the end: {_e(members)}</p>"
        "<table><tr><th>op</th><th>member</th><th>outcome</th><th>reason / new leader</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _numbers(summary: Mapping[str, Any]) -> str:
    rows = [f"<tr><td>elapsed</td><td>{_e(str(summary.get('elapsed_s', '?')))} s</td></tr>"]
    if summary.get("network"):
        rows.append(f"<tr><td>network</td><td>{_e(str(summary['network']))}</td></tr>")
    for workload, counts in summary.get("ops", {}).items():
        text = ", ".join(f"{k} {n}" for k, n in sorted(counts.items()))
        rows.append(f"<tr><td>{_e(workload)}</td><td>{_e(text)}</td></tr>")
    kinds = summary.get("fault_kinds", {})
    text = ", ".join(f"{k} x{n}" for k, n in sorted(kinds.items())) or "none"
    rows.append(f"<tr><td>faults</td><td>{_e(text)}</td></tr>")
    gaps = (summary.get("unavailability") or {}).get("by_fault", {})
    for kind, gap in sorted(gaps.items()):
        rows.append(
            f"<tr><td>longest write gap, {_e(kind)}</td>"
            f"<td>{float(gap['longest_gap_s']):.2f} s</td></tr>"
        )
    return "<h2>Numbers</h2><table>" + "".join(rows) + "</table>"
