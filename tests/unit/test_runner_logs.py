"""raftcache-chaos's `logs` verdict: no node may log at CRITICAL during a run."""

from __future__ import annotations

from raftcache.chaos import runner

TRUNCATION = (
    "2026-12-04T23:08:37.150183Z [critical ] truncating already-applied log entries from "
    "index 1493 (last applied: 1620) - state machine may have diverged from other cluster "
    "members [pysyncobj.syncobj] node_id=n1 role=follower term=3"
)
HEALTHY = (
    "2026-12-04T23:08:30.000000Z [info     ] loaded snapshot at index 900 in 3 ms "
    "[raftcache.consensus] node_id=n2 role=follower term=1\n"
    "2026-12-04T23:08:31.000000Z [warning  ] failed to resolve host cache-0 [pysyncobj]\n"
)


def test_a_healthy_run_passes() -> None:
    verdict = runner._log_verdict({"n1": HEALTHY, "n2": HEALTHY, "n3": ""})
    assert verdict.name == "logs" and verdict.valid is True


def test_a_critical_line_in_any_format_fails_and_is_quoted() -> None:
    json_line = '{"event": "cannot apply a committed log entry", "level": "critical"}'
    verdict = runner._log_verdict(
        {"n1": HEALTHY + TRUNCATION + "\n", "n2": json_line, "n3": "CRITICAL:root:stopping"}
    )
    assert verdict.valid is False
    assert verdict.details["critical"] == {
        "n1": [TRUNCATION],
        "n2": [json_line],
        "n3": ["CRITICAL:root:stopping"],
    }
    assert "n1: " + TRUNCATION[:100] in verdict.message
