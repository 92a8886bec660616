"""bench/paired.py's bookkeeping (which row runs when, the paired ratios and their median,
the verdicts) with the measuring stubbed, and its table in the memcached section's report.
tests/integration/test_bench_memcached_section.py measures real pairs."""

from __future__ import annotations

from typing import Any

import pytest

from bench import paired, peers_report, peers_section

FACTORS = {kind: factor for _, kind, factor in peers_report.MEMCACHED_TARGETS}


def _sides(leaders: list[str] | None = None) -> tuple[paired.Side, paired.Side]:
    def etcd_roles() -> paired.Roles:
        return paired.Roles({"leader": ["e:1"], "all": ["e:1", "e:2"]}, {}, "e1")

    turns = iter(leaders or [])

    def our_roles() -> paired.Roles:
        lead = next(turns, "n1")  # asked before and after each of our rows
        follower = "r:1" if lead == "n2" else "r:2"
        return paired.Roles(
            {"leader": [f"lead:{lead}"], "followers": [follower, "r:3"]}, {"leader": 1}, lead
        )

    ref = paired.Side("etcd", "gRPC", "key-", etcd_roles)
    ours = paired.Side("raftcache", "memcached", "mc:", our_roles)
    return ref, ours


RATES = {"etcd": {"write": 5000, "read": 10000, "stale": 10000},
         "raftcache": {"write": 16000, "read": 20000, "stale": 52000}}  # fmt: skip


def _stub(monkeypatch: pytest.MonkeyPatch, calls: list[tuple[str, str, list[str]]]) -> None:
    def measure(row: peers_section.Row, addrs: list[str], pids: Any, **kw: Any) -> dict[str, Any]:
        calls.append((row.system, row.kind, list(addrs)))
        assert row.clients == 64 and kw["seconds"] == 2.0
        # the reference always tries two generator processes too: never flattered
        assert kw["both"] is (row.system == "etcd")
        rate = RATES[row.system][row.kind] * (1 + 0.1 * (len(calls) % 3))
        return {"ops_per_s": rate, "errors": 0}

    monkeypatch.setattr(peers_section, "measure", measure)


def test_pairs_alternate_their_order_and_the_verdict_is_the_median_ratio(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[str, str, list[str]]] = []
    _stub(monkeypatch, calls)
    ref, ours = _sides()
    got = paired.measure_pairs(
        ref, ours, paired.ETCD_MEMCACHED_PAIRS, FACTORS, reps=3, keys=10, warmup=0.5, seconds=2.0
    )
    # each pair back to back; etcd first on even repetitions, raftcache first on odd ones
    assert [c[:2] for c in calls[:6]] == [
        ("etcd", "write"), ("raftcache", "write"), ("etcd", "read"), ("raftcache", "read"),
        ("etcd", "stale"), ("raftcache", "stale"),
    ]  # fmt: skip
    assert [c[0] for c in calls[6:8]] == ["raftcache", "etcd"]
    assert len(calls) == 18
    # the roles' addresses: etcd's serializable gets on every member, ours on the followers
    assert ("etcd", "stale", ["e:1", "e:2"]) in calls
    assert ("raftcache", "stale", ["r:2", "r:3"]) in calls
    assert ("raftcache", "write", ["lead:n1"]) in calls
    assert got["reps"] == 3 and got["reference"] == "etcd" and got["ours"] == "raftcache"
    by_kind = {t["kind"]: t for t in got["targets"]}
    for kind, t in by_kind.items():
        assert len(t["etcd"]) == len(t["raftcache"]) == len(t["ratios"]) == 3
        assert t["ratios"] == [b / a for a, b in zip(t["etcd"], t["raftcache"], strict=True)]
        assert t["median_ratio"] == sorted(t["ratios"])[1]
        assert t["required"] == FACTORS[kind] and t["met"] == (t["median_ratio"] >= FACTORS[kind])
    assert by_kind["write"]["met"] is True and by_kind["read"]["met"] is False
    assert "retried" not in by_kind["write"]


def test_a_pair_the_leader_changed_in_is_measured_again_at_the_new_leader(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[str, str, list[str]]] = []
    _stub(monkeypatch, calls)
    # our side is asked before and after its row: n1 then n2 (changed), then n2 and n2
    ref, ours = _sides(leaders=["n1", "n2", "n2", "n2"])
    got = paired.measure_pairs(
        ref, ours, paired.ETCD_MEMCACHED_PAIRS[:1], FACTORS, reps=1, keys=10, warmup=0.1,
        seconds=2.0,
    )  # fmt: skip
    (cell,) = got["targets"]
    assert cell["retried"] == [{"rep": 0, "tries": 2, "settled": True}]
    assert [c for c in calls if c[0] == "raftcache"] == [
        ("raftcache", "write", ["lead:n1"]),
        ("raftcache", "write", ["lead:n2"]),  # again, at the new leader
    ]
    # only the second try's numbers are kept (the stub's rates differ per call)
    assert cell["etcd"] == [5000.0] and cell["raftcache"] == [17600.0]
    assert cell["ratios"] == [17600.0 / 5000.0]
    assert "rep 0 re-measured (2 tries)" in peers_report.paired_table(got)


def test_a_pair_that_never_settles_is_left_out_of_the_median(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _stub(monkeypatch, [])
    flapping = [lead for _ in range(paired.ATTEMPTS) for lead in ("n1", "n2")]
    ref, ours = _sides(leaders=flapping)
    got = paired.measure_pairs(
        ref, ours, paired.ETCD_MEMCACHED_PAIRS[:1], FACTORS, reps=2, keys=10, warmup=0.1,
        seconds=2.0,
    )  # fmt: skip
    (cell,) = got["targets"]
    assert cell["retried"] == [{"rep": 0, "tries": paired.ATTEMPTS, "settled": False}]
    assert cell["ratios"][0] is None and cell["ratios"][1] is not None
    assert cell["median_ratio"] == cell["ratios"][1]  # the settled pair alone
    assert "rep 0 left out (the leader kept changing, 3 tries)" in peers_report.paired_table(got)


def test_roles_not_as_prepared_do_not_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """A follower started with stale reads leading (its gets would be local): the pair is
    measured again and, if that stays so, left out."""
    _stub(monkeypatch, [])
    ref, _ = _sides()
    moved = paired.Roles({"leader": ["r:2"], "followers": ["r:1", "r:3"]}, {}, "n2", False)
    ours = paired.Side("raftcache", "memcached", "mc:", lambda: moved)
    got = paired.measure_pairs(
        ref, ours, paired.ETCD_MEMCACHED_PAIRS[1:2], FACTORS, reps=1, keys=1, warmup=0,
        seconds=2.0,
    )  # fmt: skip
    (cell,) = got["targets"]
    assert cell["ratios"] == [None] and cell["median_ratio"] is None and cell["met"] is None
    assert cell["retried"] == [{"rep": 0, "tries": paired.ATTEMPTS, "settled": False}]


def test_the_verdict_is_on_exact_ratios_not_rounded_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    def measure(row: peers_section.Row, addrs: list[str], pids: Any, **kw: Any) -> dict[str, Any]:
        return {"ops_per_s": 10000.0 if row.system == "etcd" else 29999.6, "errors": 0}

    monkeypatch.setattr(peers_section, "measure", measure)
    ref, ours = _sides()
    got = paired.measure_pairs(
        ref, ours, paired.ETCD_MEMCACHED_PAIRS[:1], FACTORS, reps=1, keys=1, warmup=0,
        seconds=1,
    )  # fmt: skip
    (cell,) = got["targets"]
    assert cell["met"] is False  # 2.99996 is not 3
    assert "| 2.999x (need 3x) |" in peers_report.paired_table(got)


def test_no_repetitions_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    ref, ours = _sides()
    with pytest.raises(ValueError, match="at least 1 repetition, not 0"):
        paired.measure_pairs(ref, ours, (), FACTORS, reps=0, keys=1, warmup=0, seconds=1)


def test_the_report_shows_the_paired_verdicts_under_the_one_pass_table() -> None:
    pairs = {
        "reps": 2,
        "clients": 64,
        "reference": "etcd",
        "ours": "raftcache",
        "targets": [
            {"kind": "write", "etcd": [5000.0, 5100.0], "raftcache": [16000.0, 15000.0],
             "ratios": [3.2, 2.9412], "errors": 0, "median_ratio": 3.0706, "required": 3.0,
             "met": True},
            {"kind": "stale", "etcd": [10000.0, 9000.0], "raftcache": [49999.0, 45000.0],
             "ratios": [4.9999, 5.0], "errors": 0, "median_ratio": 4.99995, "required": 5.0,
             "met": False},
        ],
    }  # fmt: skip
    section = {"name": "memcached", "setup": {"raftcache_interfaces": ["memcached"]},
               "systems": {}, "paired": pairs}  # fmt: skip
    text = peers_report.markdown(section)
    assert text.index("| Target (issue 12) | raftcache memcached |") < text.index(
        "### The targets in pairs (2 repetitions"
    )
    assert (
        "| set, 64 connections ≥ 3x etcd's put, 64 clients | 3.070x (need 3x) | 3.200, 2.941 "
        "| 16,000, 15,000 | 5,000, 5,100 | yes |"
    ) in text
    # rounded down, the median and each ratio: 4.99995 never reads as 5.000 beside "no"
    assert "| 4.999x (need 5x) | 4.999, 5.000 | 49,999, 45,000 | 10,000, 9,000 | no |" in text
    failed = peers_report.markdown({**section, "paired": {"error": "Traceback...\nboom"}})
    assert "Paired targets: FAILED: Traceback... boom" in failed
