"""report.html from a small hand-made run: valid SVG with faults, leaders and verdicts."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from raftcache.chaos import report
from raftcache.chaos.history import Op

SVG = "{http://www.w3.org/2000/svg}"


def _ops() -> list[Op]:
    ops = []
    for i in range(40):
        t = 100.0 + i * 0.25
        outcome = "ok" if i % 10 else ("fail" if i % 20 else "unknown")
        ops.append(Op(i % 3, "set", f"r:{i % 4}", f"v{i}", None, t, t + 0.002 * (i + 1), outcome))
        ops.append(Op(5, "get", "r:1", None, None, t, t + 0.001, "ok"))
    return ops


FAULTS: list[dict[str, Any]] = [
    {"kind": "partition-leader", "start": 102.0, "end": 104.0, "target": ["n1"]},
    {"kind": "latency", "start": 106.0, "end": None, "target": ["n1", "n2", "n3"]},
]
LEADERS: list[dict[str, Any]] = [
    {"t": 100.0 + k * 0.5, "nodes": {
        "n1": {"role": "leader" if k < 6 else "follower", "term": 1 if k < 6 else 2},
        "n2": {"role": "follower" if k < 6 else "leader", "term": 1 if k < 6 else 2},
        "n3": {"role": "down" if k == 3 else "follower", "term": None if k == 3 else 1},
    }}
    for k in range(20)
]  # fmt: skip
SUMMARY: dict[str, Any] = {
    "seed": 42,
    "elapsed_s": 10.0,
    "ops": {"registers": {"ok": 76, "fail": 2, "unknown": 2}},
    "fault_kinds": {"partition-leader": 1, "latency": 1},
    "unavailability": {"by_fault": {"partition-leader": {"longest_gap_s": 1.5}}},
    "verdicts": [
        {"name": "linearizable_registers", "valid": True, "message": "4 key(s) <ok>"},
        {"name": "counters", "valid": False, "message": "c:1 over by 1"},
        {"name": "no_lost_writes", "valid": "unknown", "message": "budget"},
    ],
}


def _svgs(page: str) -> list[ET.Element]:
    return [ET.fromstring(m) for m in re.findall(r"<svg\b.*?</svg>", page, flags=re.S)]


def test_report_has_valid_svg_charts_with_faults_and_leaders(tmp_path: Path) -> None:
    path = report.write_report(tmp_path, SUMMARY, _ops(), FAULTS, LEADERS)
    assert path == tmp_path / "report.html"
    page = path.read_text()
    assert "<script" not in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    latency, throughput, leaders = _svgs(page)

    for svg in (latency, throughput, leaders):
        shaded = [r for r in svg.iter(f"{SVG}rect") if r.get("class") == "fault"]
        assert [r.get("data-kind") for r in shaded] == ["partition-leader", "latency"]
        labels = [t.text for t in svg.iter(f"{SVG}text") if t.get("class") == "fault-label"]
        assert labels == ["partition-leader n1", "latency n1,n2,n3"]
    # the open-ended fault runs to the end of the chart
    open_fault = next(r for r in latency.iter(f"{SVG}rect") if r.get("data-kind") == "latency")
    assert float(open_fault.get("x", 0)) + float(open_fault.get("width", 0)) > 900

    # 80 ops: 76 ok circles, 2 crosses for fail, 2 triangles for unknown
    assert len(list(latency.iter(f"{SVG}circle"))) == 76
    assert len(list(latency.iter(f"{SVG}path"))) == 4
    assert len(list(throughput.iter(f"{SVG}polyline"))) == 2

    bands = [r for r in leaders.iter(f"{SVG}rect") if r.get("class") == "leader-band"]
    titles = {r.findtext(f"{SVG}title") for r in bands}
    assert "n1 leader term 1" in titles and "n2 leader term 2" in titles
    assert "n3 down term None" in titles
    assert not any(t and t.startswith("n3 leader") for t in titles)


def test_verdicts_are_in_a_table_and_text_is_escaped() -> None:
    page = report.render_html(SUMMARY, _ops(), FAULTS, LEADERS)
    assert '<td class="PASS">PASS</td>' in page
    assert '<td class="FAIL">FAIL</td>' in page
    assert '<td class="UNKNOWN">UNKNOWN</td>' in page
    assert "4 key(s) &lt;ok&gt;" in page
    assert "longest write gap, partition-leader</td><td>1.50 s" in page


def test_empty_run_still_renders(tmp_path: Path) -> None:
    page = report.render_html({"seed": 1}, [], [], [])
    assert len(_svgs(page)) == 3
    assert "no leader samples recorded" in page
    assert report.read_leaders(tmp_path / "missing.jsonl") == []
    (tmp_path / "leaders.jsonl").write_text(json.dumps(LEADERS[0]) + "\n\n")
    assert report.read_leaders(tmp_path / "leaders.jsonl") == [LEADERS[0]]


def test_many_ok_ops_are_thinned_but_failures_all_drawn() -> None:
    ops = [
        Op(0, "get", "r:0", None, None, i * 0.001, i * 0.001 + 0.01, "ok") for i in range(50_000)
    ]
    ops.append(Op(0, "set", "r:0", "x", None, 10.0, 12.0, "unknown"))
    latency = _svgs(report.render_html({}, ops, [], []))[0]
    circles = len(list(latency.iter(f"{SVG}circle")))
    assert 0 < circles <= report.MAX_OK_POINTS
    assert len(list(latency.iter(f"{SVG}path"))) == 1
