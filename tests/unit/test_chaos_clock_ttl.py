"""check_ttl, its clock-skew tolerance and the node's test-only clock offset (issue 16 item 3),
and which --net mode can make which fault."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from raftcache.chaos import runner
from raftcache.chaos.checkers import check_ttl, skew_tolerance_s, ttl_of
from raftcache.chaos.history import Op
from raftcache.node import proposer

KEY = "tt:5000:1-1"  # TTL 5 s


def _set(invoke: float = 0.0, complete: float = 0.01) -> Op:
    return Op(1, "set", KEY, "v", None, invoke, complete, "ok")


def _get(invoke: float, value: str | None, complete: float | None = None) -> Op:
    return Op(
        1, "get", KEY, value, None, invoke, invoke + 0.01 if complete is None else complete, "ok"
    )


def _skew(start: float, end: float, **offsets: int) -> dict[str, Any]:
    return {"kind": "clock-skew", "start": start, "end": end, "target": [], "offsets_ms": offsets}


def test_ttl_of_reads_the_key() -> None:
    assert ttl_of("tt:4500:3-9") == 4.5
    assert ttl_of("r:1") is None and ttl_of("tt:x:1") is None


def test_on_time_expiry_passes() -> None:
    ops = [_set(), _get(1.0, "v"), _get(4.9, "v"), _get(5.05, None), _get(5.6, None)]
    verdict = check_ttl(ops)
    assert verdict.valid is True, verdict
    assert verdict.details["keys_seen_expired"] == 1


def test_a_reappearing_key_fails() -> None:
    ops = [_set(), _get(5.05, None), _get(5.5, "v")]
    verdict = check_ttl(ops, [_skew(0.0, 10.0, n1=3000, n2=-3000)])  # tolerance does not help
    assert verdict.valid is False
    assert verdict.details["violations"][0]["reason"] == "an expired key reappeared"


def test_shrink_and_stretch_beyond_the_skew_fail_and_within_it_pass() -> None:
    early = [_set(), _get(3.0, None)]  # expired after at most 3.01 s of a 5 s TTL
    late = [_set(), _get(7.0, "v"), _get(7.2, None)]  # still there 6.99 s after
    for ops in (early, late):
        assert check_ttl(ops).valid is False
        assert check_ttl(ops, [_skew(0.0, 8.0, n1=1500, n2=-1000)]).valid is True  # 2.5 s
        assert check_ttl(ops, [_skew(20.0, 30.0, n1=1500, n2=-1000)]).valid is False  # later


def test_skew_tolerance_counts_unskewed_nodes_and_the_lead_after_the_heal() -> None:
    assert skew_tolerance_s([], 0, 10) == 0
    assert skew_tolerance_s([_skew(0, 5, n1=2000, n2=-500)], 0, 10) == 2.5
    assert skew_tolerance_s([_skew(0, 5, n1=-800, n2=-500)], 0, 10) == 0.8  # 0 is an offset
    # cluster time may run 2 s ahead for 2 s after the heal at t=5
    assert skew_tolerance_s([_skew(0, 5, n1=2000)], 6.5, 20) == 2.0
    assert skew_tolerance_s([_skew(0, 5, n1=2000)], 7.5, 20) == 0


def test_keys_never_seen_expiring_are_undecided() -> None:
    assert check_ttl([_set(), _get(1.0, "v")]).valid == "unknown"


def test_skewed_wall_clock_follows_the_offset_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RAFTCACHE_TEST_CLOCK_OFFSET_FILE", raising=False)
    monkeypatch.delenv("RAFTCACHE_TEST_CLOCK_OFFSET_MS", raising=False)
    assert proposer.skewed_wall_clock() is proposer.wall_clock_ms  # unset: the plain clock
    monkeypatch.setenv("RAFTCACHE_TEST_CLOCK_OFFSET_MS", "-60000")
    assert abs(proposer.skewed_wall_clock()() - (proposer.wall_clock_ms() - 60000)) < 1000
    path = tmp_path / "offset"
    path.write_text("3600000\n")
    monkeypatch.setenv("RAFTCACHE_TEST_CLOCK_OFFSET_FILE", str(path))
    clock = proposer.skewed_wall_clock()
    assert abs(clock() - (proposer.wall_clock_ms() + 3600000)) < 1000
    path.write_text("not a number")  # a torn write keeps the last offset
    monkeypatch.setattr(proposer.time, "monotonic", lambda: 1e12)
    assert abs(clock() - (proposer.wall_clock_ms() + 3600000)) < 1000


def test_net_modes_refuse_what_they_cannot_make(capsys: pytest.CaptureFixture[str]) -> None:
    args = runner._parse(["--nemesis", "bridge-flap"])
    with pytest.raises(ValueError, match="bridge-flap needs --net netns"):
        runner._net_kinds(runner._kinds(args.nemesis), args)
    args = runner._parse(["--nemesis", "mix"])
    kinds = runner._net_kinds(runner._kinds(args.nemesis), args)
    assert "clock-skew" in kinds and "partition-one-way" not in kinds
    assert "leaving out partition-one-way needs --net netns" in capsys.readouterr().err
