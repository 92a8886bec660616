"""The peers section as tables (markdown, readable as text) and a bar chart (SVG).

`python -m bench.peers_report bench-results/peers.json [--svg docs/bench-peers.svg]
[--compact]` prints the table again from a saved run and writes the chart where asked.

Ratios: a row's ops/s over etcd's row of the same kind (write: put; read: linearizable
get; stale: serializable get) and client count; where etcd has two such rows (put to the
leader and to every member) the better one is the reference.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

KINDS = {
    "write": "write (etcd: put)",
    "read": "linearizable read (etcd: get)",
    "stale": "stale / replica read (etcd: serializable get)",
}
ROLES = {
    "leader": "leader",
    "followers": "followers",
    "all": "every node",
    "primary": "primary",
    "replicas": "replicas",
    "server": "server",
    "seeds": "every node as seeds",
}
COLORS = {
    ("etcd", "gRPC"): "#6b6b6b",
    ("grpc-floor", "gRPC"): "#b0b0b0",
    ("raft-floor", "RESP"): "#c8c8c8",
    ("raftcache", "gRPC"): "#1f4e9c",
    ("raftcache", "SDK"): "#2f74c0",
    ("raftcache", "RESP"): "#5b9bd5",
    ("raftcache", "memcached"): "#8fbde8",
    ("redis", "RESP"): "#c0392b",
    ("memcached", "memcached"): "#2e8b57",
}
NAMES = {
    "etcd": "etcd",
    "grpc-floor": "Python gRPC floor",
    "raft-floor": "Python Raft floor",
    "raftcache": "raftcache",
    "redis": "Redis",
    "memcached": "memcached",
}


def rows_of(section: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [r for b in section.get("systems", {}).values() for r in b.get("rows", [])]


def measured(row: Mapping[str, Any]) -> bool:
    return "ops_per_s" in row


def reference(section: Mapping[str, Any], kind: str, clients: int) -> Mapping[str, Any] | None:
    """etcd's best measured row of this kind and client count."""
    found = [
        r
        for r in rows_of(section)
        if r["system"] == "etcd" and r["kind"] == kind and r["clients"] == clients and measured(r)
    ]
    return max(found, key=lambda r: r["ops_per_s"]) if found else None


def ratio(section: Mapping[str, Any], row: Mapping[str, Any]) -> float | None:
    ref = reference(section, row["kind"], row["clients"])
    if not measured(row) or ref is None or not ref["ops_per_s"]:
        return None
    return float(row["ops_per_s"]) / float(ref["ops_per_s"])


MEMCACHED_TARGETS = (
    ("set, 64 connections ≥ 3x etcd's put, 64 clients", "write", 3.0),
    ("get (linearizable), 64 connections ≥ 3x etcd's linearizable get", "read", 3.0),
    ("stale gets (followers), 64 connections ≥ 5x etcd's serializable get", "stale", 5.0),
)
"""Issue 12's targets for raftcache's memcached port: (target, row kind, factor), each at 64
clients against etcd's best row of that kind in the same run (`reference`)."""
PEERS_TITLE = "Peers: raftcache vs etcd, Redis and memcached"
MEMCACHED_TITLE = "Memcached protocol: raftcache vs memcached 1.6 and etcd 3.4"
"""The title of a run of the `memcached` section (bench/peers_section.py: `name`)."""


def _why(row: Mapping[str, Any] | None, block: Mapping[str, Any] | None) -> str:
    """Why a row has no number: its skip reason, its failure's last line, its system's
    failure, or that it was not run."""
    if row is not None and row.get("skipped"):
        return str(row["skipped"])
    failed = (row or {}).get("failed") or (block or {}).get("error")
    if failed:
        lines = [line for line in str(failed).splitlines() if line.strip()]
        return "failed: " + (lines[-1].strip()[:200] if lines else "?")
    return "not run"


def _row_at_64(
    systems: Mapping[str, Any], system: str, interface: str, kind: str
) -> Mapping[str, Any] | None:
    """`system`'s first row of `kind` through `interface` at 64 clients, measured or not."""
    rows = systems.get(system, {}).get("rows", [])
    return next(
        (r for r in rows if (r["interface"], r["kind"], r["clients"]) == (interface, kind, 64)),
        None,
    )


def memcached_targets(section: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Issue 12's targets from this run's rows; None where a row is missing or failed."""
    systems = section.get("systems", {})
    out: list[dict[str, Any]] = []
    for target, kind, factor in MEMCACHED_TARGETS:
        ours = _row_at_64(systems, "raftcache", "memcached", kind)
        ref = reference(section, kind, 64)
        x = ratio(section, ours) if ours is not None else None
        out.append(
            {
                "target": target,
                "raftcache": ours["ops_per_s"] if ours is not None and measured(ours) else None,
                "why_missing": None
                if ours is not None and measured(ours)
                else _why(ours, systems.get("raftcache")),
                "reference": ref["ops_per_s"] if ref is not None else None,
                "reference_row": f"etcd {what(ref)}" if ref is not None else None,
                "reference_missing": None
                if ref is not None
                else _why(_row_at_64(systems, "etcd", "gRPC", kind), systems.get("etcd")),
                # rounded down: 2.9996 must not read as 3.000 beside "no"
                "ratio": None if x is None else math.floor(x * 1000) / 1000,
                "required": factor,
                "met": None if x is None else x >= factor,
            }
        )
    return out


def memcached_targets_table(section: Mapping[str, Any]) -> str:
    """Issue 12's targets as a markdown table (verdicts on this run's ratios, shown to three
    places so that a ratio just under its target never reads as meeting it)."""
    out = [
        "| Target (issue 12) | raftcache memcached | etcd (same run) | ratio | met |",
        "|---|---:|---:|---:|---|",
    ]
    for t in memcached_targets(section):
        ours = f"{_n(t['raftcache'])}/s" if t["raftcache"] is not None else t["why_missing"]
        ref = (
            f"{_n(t['reference'])}/s ({t['reference_row']})"
            if t["reference"] is not None
            else t["reference_missing"]
        )
        x = "—" if t["ratio"] is None else f"{t['ratio']:.3f}x"
        met = "—" if t["met"] is None else "yes" if t["met"] else "no"
        out.append(
            f"| {_cell(t['target'])} | {_cell(str(ours))} | {_cell(str(ref))} | "
            f"{x} (need {t['required']:g}x) | {met} |"
        )
    return "\n".join(out) + "\n"


def _floor3(x: float) -> float:
    return math.floor(x * 1000) / 1000


def paired_table(paired: Mapping[str, Any]) -> str:
    """Issue 12's targets measured in pairs (bench/paired.py): the verdict on the median of
    the paired ratios, every ratio and both systems' ops/s beside it."""
    if paired.get("error"):
        return f"Paired targets: FAILED: {_cell(str(paired['error'])[-300:])}\n"
    ref, ours = paired["reference"], paired["ours"]
    targets = {kind: text for text, kind, _ in MEMCACHED_TARGETS}
    out = [
        f"### The targets in pairs ({paired['reps']} repetitions, both clusters up, each pair "
        f"back to back, order alternating; the verdict is on the median of the paired ratios)",
        "",
        f"| Target (issue 12) | median of paired ratios | paired ratios | {ours} ops/s "
        f"| {ref} ops/s | met |",
        "|---|---:|---|---|---|---|",
    ]
    for cell in paired["targets"]:
        median, factor = cell.get("median_ratio"), cell.get("required")
        shown = "—" if median is None else f"{_floor3(median):.3f}x"
        need = f" (need {factor:g}x)" if factor is not None else ""
        met = "—" if cell.get("met") is None else "yes" if cell["met"] else "no"
        # each ratio rounded down, as the median: 4.99996 never reads as 5.000
        ratios = ", ".join("—" if r is None else f"{_floor3(r):.3f}" for r in cell["ratios"])
        notes = [
            f"rep {r['rep']} re-measured ({r['tries']} tries)"
            if r["settled"]
            else f"rep {r['rep']} left out (the leader kept changing, {r['tries']} tries)"
            for r in cell.get("retried", ())
        ]
        note = "; " + "; ".join(notes) if notes else ""
        out.append(
            f"| {_cell(targets.get(cell['kind'], cell['kind']))} | {shown}{need} | {ratios}{note} "
            f"| {', '.join(_n(v) for v in cell[ours])} | {', '.join(_n(v) for v in cell[ref])} "
            f"| {met} |"
        )
    return "\n".join(out) + "\n"


def who(row: Mapping[str, Any]) -> str:
    return f"{NAMES.get(row['system'], row['system'])} · {row['interface']}"


def what(row: Mapping[str, Any]) -> str:
    return f"{row['label']}, {ROLES.get(row['role'], row['role'])}"


def _cell(text: str) -> str:
    """Text safe inside a markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def _n(value: Any, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:,.{digits}f}"


def _x(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}x"


def _load(row: Mapping[str, Any]) -> str:
    start, end = row.get("load_start"), row.get("load_end")
    return f"{start[0]:.2f} → {end[0]:.2f}" if start and end else "—"


def _result_cell(row: Mapping[str, Any]) -> str:
    if "skipped" in row:
        return "skipped"
    if "failed" in row:
        return "FAILED"
    return f"{_n(row['ops_per_s'])}/s, p50 {_n(row['latency_ms']['p50'], 2)} ms"


def _header(section: Mapping[str, Any], add: Callable[[str], None]) -> None:
    setup = section.get("setup", {})
    start = section.get("load_start", {}).get("loadavg")
    end = section.get("load_end", {}).get("loadavg")
    loads = (
        f"load average (1/5/15 min) {'/'.join(f'{v:.2f}' for v in start)} at the start, "
        + (f"{'/'.join(f'{v:.2f}' for v in end)} at the end" if end else "run not finished")
        if start
        else ""
    )
    commit = str(section.get("git_commit", ""))[:10]
    dirty = " (dirty)" if section.get("git_dirty") else ""
    if section.get("git_commit_at_end"):
        dirty += f", HEAD moved to {str(section['git_commit_at_end'])[:10]} during the run"
    add(
        f"Run {section.get('started', '?')}, commit {commit}{dirty}; "
        f"{section.get('machine', {}).get('cpu_count', '?')} CPUs shared by servers and "
        f"generators; {loads}. {setup.get('key_space', 0):,} keys, "
        f"{setup.get('value_bytes', 100)}-byte values, {setup.get('warmup_s')} s warm-up + "
        f"{setup.get('seconds_per_row')} s measured per row, closed loop; systems one after "
        f"the other: {', '.join(setup.get('order', []))}. Versions: "
        + "; ".join(f"{k} {v}" for k, v in section.get("versions", {}).items())
        + "."
        + _generator_note(setup.get("memcached_generator"))
    )
    add("")


MEMCACHED_GENERATOR_NOTES = {
    "mcload": "bench/mcload.c (C, epoll, one process per 64 connections)",
    "memgen": "bench/memgen.py (Python asyncio; it takes more of the shared cores)",
}


def _generator_note(generator: str | None) -> str:
    """Which generator drove the memcached rows (none: the run had no memcached rows, or
    predates the choice: memgen)."""
    if not generator:
        return ""
    return f" Memcached rows driven by {MEMCACHED_GENERATOR_NOTES.get(generator, generator)}."


def compact_table(section: Mapping[str, Any]) -> str:
    """One line per system, interface and operation; 1 and 64 clients side by side."""
    out: list[str] = []
    add = out.append
    add(
        "| System · interface | Operation (target) | 1 client | x etcd | 64 clients | x etcd "
        "| load 1-min, 1 / 64 |"
    )
    add("|---|---|---:|---:|---:|---:|---|")
    lines: dict[tuple[str, str, str, str, str], dict[int, dict[str, Any]]] = {}
    for row in rows_of(section):
        key = (row["system"], row["interface"], row["kind"], row["label"], row["role"])
        lines.setdefault(key, {})[row["clients"]] = row
    order = list(KINDS)
    notes: list[str] = []
    for key in sorted(lines, key=lambda k: (_system_rank(k[0], k[1]), order.index(k[2]))):
        by = lines[key]
        one, many = by.get(1), by.get(64)
        for pair in (one, many):
            if pair is not None and "skipped" in pair and pair["skipped"] not in notes:
                notes.append(pair["skipped"])
        first = one or many
        assert first is not None
        add(
            f"| {who(first)} | {what(first)} "
            f"| {_result_cell(one) if one else ''} | {_x(ratio(section, one)) if one else ''} "
            f"| {_result_cell(many) if many else ''} "
            f"| {_x(ratio(section, many)) if many else ''} "
            f"| {_load(one) if one else '—'} / {_load(many) if many else '—'} |"
        )
    out.append("")
    for note in notes:
        out.append(f"- skipped: {_cell(note)}")
    if notes:
        out.append("")
    return "\n".join(out)


def _system_rank(system: str, interface: str) -> int:
    keys = list(COLORS)
    return keys.index((system, interface)) if (system, interface) in keys else len(keys)


def full_table(section: Mapping[str, Any]) -> str:
    out: list[str] = []
    add = out.append
    add(
        "| System · interface | Operation (target) | Clients | ops/s | p50 ms | p99 ms | x etcd "
        "| Errors | CPU % servers / generators | other % | Load 1-min start → end |"
    )
    add("|---|---|---:|---:|---:|---:|---:|---:|---|---:|---|")
    for row in rows_of(section):
        if not measured(row):
            reason = row.get("skipped") or f"FAILED: {str(row.get('failed', ''))[-200:]}"
            add(f"| {who(row)} | {what(row)} | {row['clients']} | {_cell(reason)} "
                "| | | | | | | |")  # fmt: skip
            continue
        lat, cpu = row["latency_ms"], row["cpu"]
        gens = "+".join(f"{p:.0f}" for p in row["generator_cpu_pct"])
        bound = " (bound)" if row.get("generator_bound") else ""
        add(
            f"| {who(row)} | {what(row)} | {row['clients']} | {_n(row['ops_per_s'])} "
            f"| {_n(lat['p50'], 2)} | {_n(lat['p99'], 2)} | {_x(ratio(section, row))} "
            f"| {row['errors']} | {row['server_cpu_pct']:.0f} / {gens}{bound} "
            f"| {cpu['unaccounted_pct']:.0f} | {_load(row)} |"
        )
    add("")
    return "\n".join(out)


def markdown(section: Mapping[str, Any]) -> str:
    """The run's tables, titled by the section it was run as (`name`); issue 12's targets
    first wherever raftcache's memcached port was to be measured."""
    memcached = section.get("name") == "memcached"
    out: list[str] = [f"## {MEMCACHED_TITLE if memcached else PEERS_TITLE} (same run)", ""]
    _header(section, out.append)
    interfaces = section.get("setup", {}).get("raftcache_interfaces", [])  # the memcached
    # section's are ["memcached"]; a run saved before the setup said has its rows to show it
    if "memcached" in interfaces or any(
        r["system"] == "raftcache" and r["interface"] == "memcached" for r in rows_of(section)
    ):
        out.append(memcached_targets_table(section))
    if section.get("paired"):
        out.append(paired_table(section["paired"]))
    out.append(compact_table(section))
    out.append("### Every row")
    out.append("")
    out.append(
        "CPU % is of one core over the measured window (servers summed; each generator "
        "process); 'bound' = a generator at >= 85% of a core (the number may be the "
        "generator's, not the server's); other % = machine busy time of processes outside "
        "the bench (other users)."
    )
    out.append("")
    out.append(full_table(section))
    for name, block in section.get("systems", {}).items():
        if "error" in block:
            out.extend([f"**{name} failed**:", "", "```", block["error"], "```", ""])
        for row in block.get("rows", []):
            if row.get("variants"):
                tried = "; ".join(
                    f"{v['generator_processes']} proc: {v['ops_per_s']:,.0f}/s"
                    for v in row["variants"]
                )
                out.append(
                    f"- {who(row)} {what(row)} x {row['clients']}: generator-bound, tried {tried}"
                )
            if row.get("term_changed"):
                out.append(f"- {who(row)} {what(row)} x {row['clients']}: Raft term changed")
    out.append("")
    return "\n".join(out)


# ----------------------------------------------------------------------------- chart

BAR_H, BAR_GAP, GROUP_GAP = 15, 4, 14
LABEL_W, PLOT_W, WIDTH = 370, 440, 1000


def _nice_max(value: float) -> tuple[float, float]:
    """An axis end >= value and its tick step (1, 2 or 5 x a power of ten)."""
    if value <= 0:
        return 1.0, 0.25
    raw = value / 6
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    return step * math.ceil(value / step), step


def _text(x: float, y: float, body: str, **attrs: str) -> str:
    extra = "".join(f' {k.replace("_", "-")}="{v}"' for k, v in attrs.items())
    return f'<text x="{x:.1f}" y="{y:.1f}"{extra}>{escape(body)}</text>'


def _short(reason: str, limit: int = 62) -> str:
    return reason if len(reason) <= limit else reason[: limit - 1] + "…"


def svg_chart(section: Mapping[str, Any]) -> str:
    """Horizontal bars of ops/s: a panel per client count (64 first), a group per kind,
    etcd's reference as a dashed line, each bar labelled with ops/s and the ratio."""
    rows = rows_of(section)
    body: list[str] = []
    y = 92.0
    for clients in sorted({r["clients"] for r in rows}, reverse=True):
        panel = [r for r in rows if r["clients"] == clients]
        top, step = _nice_max(max((r["ops_per_s"] for r in panel if measured(r)), default=1.0))
        scale = PLOT_W / top
        body.append(_text(10, y, f"{clients} client{'s' if clients > 1 else ''}",
                          font_size="15", font_weight="bold"))  # fmt: skip
        y += 8
        height_start = y
        for kind, kind_label in KINDS.items():
            group = sorted(
                (r for r in panel if r["kind"] == kind),
                key=lambda r: _system_rank(r["system"], r["interface"]),
            )
            if not group:
                continue
            y += 14
            body.append(_text(10, y, kind_label, font_size="12", font_weight="bold",
                              fill="#333"))  # fmt: skip
            y += 6
            ref = reference(section, kind, clients)
            if ref is not None:  # under the bars and their labels
                x = LABEL_W + ref["ops_per_s"] * scale
                bottom = y + len(group) * (BAR_H + BAR_GAP)
                body.append(
                    f'<line x1="{x:.1f}" y1="{y - 3:.1f}" x2="{x:.1f}" y2="{bottom:.1f}" '
                    'stroke="#222" stroke-width="1" stroke-dasharray="3,3"/>'
                )
            for row in group:
                body.extend(_bar(section, row, y, scale))
                y += BAR_H + BAR_GAP
            y += GROUP_GAP - BAR_GAP
        ticks = [step * i for i in range(round(top / step) + 1)]
        for tick in ticks:
            x = LABEL_W + tick * scale
            body.insert(
                0,
                f'<line x1="{x:.1f}" y1="{height_start:.1f}" x2="{x:.1f}" y2="{y:.1f}" '
                'stroke="#e4e4e4" stroke-width="1"/>',
            )
            body.append(_text(x, y + 12, _tick(tick), font_size="10", fill="#666",
                              text_anchor="middle"))  # fmt: skip
        y += 40
    title = "raftcache vs etcd, Redis and memcached: ops/s, same run, same machine"
    setup = section.get("setup", {})
    start = section.get("load_start", {}).get("loadavg") or [math.nan]
    end = section.get("load_end", {}).get("loadavg") or [math.nan]
    commit = str(section.get("git_commit", ""))[:10]
    moved = section.get("git_commit_at_end")
    sub = [
        f"{section.get('started', '')}, commit {commit}"
        + (f" (HEAD moved to {moved[:10]} during the run)" if moved else "")
        + f"; load average {start[0]:.2f} at the start, {end[0]:.2f} at the end.",
        f"3-node clusters on loopback, {section.get('machine', {}).get('cpu_count', '?')} cores "
        f"shared by servers and load generators, {setup.get('value_bytes', 100)}-byte values, "
        f"{setup.get('seconds_per_row')} s per row, each system alone, one after the other.",
        "Dashed line: etcd's row of the same kind (the ratio's reference). Linear scale per panel.",
    ]
    head = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{y:.0f}" '
        f'viewBox="0 0 {WIDTH} {y:.0f}" font-family="Helvetica, Arial, sans-serif">',
        f'<rect width="{WIDTH}" height="{y:.0f}" fill="#fff"/>',
        _text(10, 22, title, font_size="17", font_weight="bold"),
        *(_text(10, 39 + 14 * i, line, font_size="11", fill="#444") for i, line in enumerate(sub)),
    ]
    return "\n".join([*head, *body, "</svg>"]) + "\n"


def _tick(value: float) -> str:
    return f"{value / 1000:g}k" if value >= 1000 else f"{value:g}"


def _bar(section: Mapping[str, Any], row: Mapping[str, Any], y: float, scale: float) -> list[str]:
    label = f"{who(row)}: {what(row)}"
    out = [_text(LABEL_W - 8, y + BAR_H - 3, _short(label, 60), font_size="11",
                 text_anchor="end")]  # fmt: skip
    if not measured(row):
        why = str(row.get("skipped", "")).split(":", 1)[0] or "FAILED (see peers.json)"
        out.append(_text(LABEL_W + 4, y + BAR_H - 3, f"not measured: {_short(why)}",
                         font_size="10", fill="#888", font_style="italic"))  # fmt: skip
        return out
    width = max(row["ops_per_s"] * scale, 1.0)
    color = COLORS.get((row["system"], row["interface"]), "#999")
    out.append(
        f'<rect x="{LABEL_W}" y="{y:.1f}" width="{width:.1f}" height="{BAR_H}" fill="{color}"/>'
    )
    r = ratio(section, row)
    etcd = row["system"] == "etcd"
    note = f"{row['ops_per_s']:,.0f}/s" + ("" if r is None or etcd else f"  {r:.2f}x etcd")
    if row.get("generator_bound"):
        note += "  (generator-bound)"
    out.append(_text(LABEL_W + width + 5, y + BAR_H - 3, note, font_size="11"))
    return out


# ----------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.peers_report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("json", type=Path, help="a peers.json written by the peers section")
    parser.add_argument("--svg", type=Path, help="write the bar chart here")
    parser.add_argument("--compact", action="store_true", help="print only the compact table")
    args = parser.parse_args(argv)
    section = json.loads(args.json.read_text())
    if args.svg:
        args.svg.parent.mkdir(parents=True, exist_ok=True)
        args.svg.write_text(svg_chart(section))
    sys.stdout.write(compact_table(section) if args.compact else markdown(section))
    return 0


if __name__ == "__main__":
    sys.exit(main())
