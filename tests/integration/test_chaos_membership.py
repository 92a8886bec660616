"""A short chaos run of the membership nemesis: a follower removed, wiped and re-added
through --join, a 4th member added and one removed, leadership handed over, all while
the workloads run; every checker must pass, every replica (the re-added one included)
must converge, and the changes must really have happened."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import socket
import threading
import time
from pathlib import Path

import pytest
from raftcache.chaos import runner
from raftcache.chaos.checkers import _Bounds, _window_bounds, check_sets, check_unavailability
from raftcache.chaos.history import Op
from raftcache.client._transport import CallFailed, GrpcTransport
from raftcache.v1 import cluster_pb2

pytestmark = pytest.mark.integration


@pytest.mark.timeout(120)
def test_chaos_membership(tmp_path: Path) -> None:
    out = tmp_path / "chaos"
    code = runner.main(
        [
            "--duration", "26",
            "--interval", "2",
            "--hold", "1.5",
            # one shuffled round has each kind; the fourth fault (if it fits) starts a new one
            "--nemesis", "membership",
            "--workers", "9",
            "--check-budget", "15",
            # a newcomer whose log the leader compacted catches up from its snapshot
            "--compaction-entries", "300",
            "--out", str(out),
        ]
    )  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    failed = [v for v in summary["verdicts"] if v["valid"] is not True]
    assert code == 0, f"seed {summary['seed']}: {failed} (history in {out})"
    kinds = set(summary["fault_kinds"])
    assert {"member-cycle", "member-grow", "leader-transfer"} <= kinds, summary["fault_kinds"]
    membership = summary["membership"]
    done = [c for c in membership["changes"] if c["outcome"] == "ok"]
    # member-cycle: remove then add back the same node; member-grow: add the spare n4.
    cycle = next(f for f in summary["faults"] if f["kind"] == "member-cycle")
    cycled = cycle["target"][0]
    ops = [(c["op"], c["member"]) for c in cycle["changes"] if c["outcome"] == "ok"]
    assert ops[:2] == [("remove", cycled), ("add", cycled)], cycle["changes"]
    assert ("add", "n4") in [(c["op"], c.get("member")) for c in done], membership
    assert any(c["op"] == "transfer" for c in done), membership
    assert len(membership["members_at_end"]) == 3, membership
    # Every member converged, the wiped and re-added one included.
    verdicts = {v["name"]: v for v in summary["verdicts"]}
    converged = {s["node_id"] for s in summary["statuses"]}
    assert converged == set(membership["members_at_end"]), (converged, membership)
    assert verdicts["convergence"]["valid"] is True
    assert verdicts["logs"]["valid"] is True, verdicts["logs"]
    # The report prints each kind's longest write gap and p99 latency, and draws the faults.
    by_fault = summary["unavailability"]["by_fault"]
    assert all(by_fault[k]["p99_latency_s"] is not None for k in kinds), by_fault
    page = (out / "report.html").read_text()
    assert 'data-kind="member-cycle"' in page and "Membership changes" in page


def test_counter_bounds_match_the_plain_scan() -> None:
    """_Bounds (bisect + prefix sums, for long runs) answers exactly as _window_bounds."""
    rng = random.Random(7)
    for _ in range(200):
        ops = []
        for p in range(rng.randint(0, 25)):
            invoke = rng.uniform(0, 10)
            outcome = rng.choice(["ok", "ok", "unknown"])
            delta = rng.choice([1, 2, 3, -1])
            complete = invoke + rng.uniform(0, 3)
            ops.append(Op(p, "incr", "c:0", delta, None, invoke, complete, outcome))
        bounds = _Bounds(ops)
        for op in ops:
            plain = _window_bounds(ops, op.invoke, op.complete, exclude=op)
            assert bounds.bounds(op.invoke, op.complete, exclude=op) == plain
        for _ in range(10):
            start = rng.uniform(-1, 14)
            end = start + rng.uniform(0, 4)
            exclude = rng.choice([*ops, None])
            assert bounds.bounds(start, end, exclude) == _window_bounds(ops, start, end, exclude)


def test_latency_under_faults() -> None:
    """p99 per fault kind counts the ok ops overlapping the fault, not the calm ones."""
    ops = [Op(0, "set", "k", f"v{i}", None, i * 0.1, i * 0.1 + 0.01, "ok") for i in range(100)]
    ops.append(Op(1, "set", "k", "slow", None, 5.0, 7.5, "ok"))
    verdict = check_unavailability(ops, [{"kind": "pause", "start": 6.0, "end": 7.0}])
    pause = verdict.details["by_fault"]["pause"]
    assert pause["max_latency_s"] == pytest.approx(2.5)
    assert pause["ops"] == 1 + 10  # the slow set and the sets invoked in [6, 7)
    assert verdict.details["calm"]["max_latency_s"] == pytest.approx(0.01)
    assert verdict.details["gaps"] == [], "acked writes every 0.1 s leave no 0.5 s gap"
    # Per protocol: the SDK's writes stop for 3 s while the other door keeps writing.
    sdk = [Op(2, "set", "r:1", f"g{i}", None, i * 0.5, i * 0.5 + 0.01, "ok") for i in range(20)]
    sdk = [op for op in sdk if not 2.0 < op.invoke < 5.0]
    verdict = check_unavailability(
        [*ops, *sdk],
        [{"kind": "kill", "start": 2.5, "end": 3.0}],
        lambda key: "grpc" if key.startswith("r:") else "redis",
    )
    kill = verdict.details["by_fault"]["kill"]
    assert kill["longest_gap_s"] < 0.2
    assert kill["by_protocol"]["grpc"] == pytest.approx(3.0)
    assert verdict.details["by_protocol"]["grpc"] == pytest.approx(3.0)


def _sadd(p: int, element: str, t0: float, t1: float, outcome: str = "ok") -> Op:
    return Op(p, "sadd", "rs:0", element, 1 if outcome == "ok" else None, t0, t1, outcome)  # type: ignore[arg-type]


def _smembers(p: int, members: list[str], t0: float, t1: float) -> Op:
    return Op(p, "smembers", "rs:0", sorted(members), None, t0, t1, "ok")


def test_check_sets() -> None:
    """A grow-only set: acked adds kept, failed or foreign ones never seen, reads monotonic."""
    adds = [_sadd(0, "a", 0, 1), _sadd(1, "b", 0, 1, "unknown"), _sadd(2, "c", 2, 3, "fail")]
    good = [*adds, _smembers(3, ["a"], 1.5, 1.6), _smembers(3, ["a", "b"], 1.7, 1.8)]
    verdict = check_sets(good, {"rs:0": ["a", "b"]})
    assert verdict.valid is True, verdict.message
    assert verdict.details["adds"]["unknown_applied"] == 1
    cases = {
        "acked add lost": (good, {"rs:0": ["b"]}),
        "failed add present": (good, {"rs:0": ["a", "c"]}),
        "element never added": (good, {"rs:0": ["a", "z"]}),
        "read lacks an add acked before it began": ([*adds, _smembers(3, [], 1.5, 1.6)], None),
        "read lacks an element an earlier read saw": (
            [*adds, _smembers(3, ["a", "b"], 1.5, 1.6), _smembers(4, ["a"], 1.7, 1.8)],
            None,
        ),
        "read holds an element added after it ended": (
            [*adds, _sadd(5, "d", 4, 5), _smembers(3, ["a", "d"], 1.5, 1.6)],
            None,
        ),
    }
    for reason, (ops, final) in cases.items():
        verdict = check_sets(ops, final)
        assert verdict.valid is False and verdict.details["violations"][0]["reason"] == reason, (
            reason,
            verdict.details,
        )
    assert check_sets(good, None).valid == "unknown"


@pytest.mark.timeout(60)
def test_sdk_retries_a_down_node_at_least_every_2_s() -> None:
    """The SDK dials a node that is down (as it does a member it learned, while calls keep
    coming) at least every 2 s, so the node is usable soon after it is back: each dial is
    seen here as one accepted TCP connection, closed at once (a failed connect)."""
    listener = socket.create_server(("127.0.0.1", 0))
    address = f"127.0.0.1:{listener.getsockname()[1]}"
    dials: list[float] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = listener.accept()
                dials.append(time.monotonic())
                conn.close()

    threading.Thread(target=accept, daemon=True).start()
    status = cluster_pb2.StatusRequest()

    async def keep_calling() -> None:
        transport = GrpcTransport()
        try:
            started = time.monotonic()
            # 8 s: with its default backoff (1 s, then x1.6, jittered) gRPC passes 2 s by the
            # third or fourth redial
            while time.monotonic() - started < 8:
                with contextlib.suppress(CallFailed):
                    await transport.call(address, "Cluster/Status", status, 0.2)
                await asyncio.sleep(0.2)
        finally:
            await transport.close()

    try:
        asyncio.run(keep_calling())
    finally:
        listener.close()
    gaps = [b - a for a, b in itertools.pairwise(dials)]
    assert len(dials) >= 4 and max(gaps) < 2.0, f"dials {len(dials)}, gaps {gaps}"
