"""Choosing and sharing chaos workloads, and sorting Redis replies into outcomes (no sockets)."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from raftcache.chaos.mc_client import McFailed, McUnexpected, McUnknown, classify_server_error
from raftcache.chaos.resp_client import (
    RespFailed,
    RespUnexpected,
    RespUnknown,
    classify_error_reply,
)
from raftcache.chaos.workloads import (
    GRPC_WORKLOADS,
    REDIS_WORKLOADS,
    WORKLOADS,
    ListKeys,
    WorkloadConfig,
    assign,
    parse_workloads,
    workload_of,
)


def test_parse_workloads_presets_and_lists() -> None:
    assert parse_workloads("mix") == WORKLOADS
    assert parse_workloads("mix", redis=False, memcached=False) == GRPC_WORKLOADS
    assert parse_workloads("mix", redis=False) == (*GRPC_WORKLOADS, "mc-registers")
    assert "redis-queue" in parse_workloads("redis")
    assert parse_workloads("mix", memcached=False) == GRPC_WORKLOADS + REDIS_WORKLOADS
    assert parse_workloads("grpc") == GRPC_WORKLOADS
    assert parse_workloads("redis") == REDIS_WORKLOADS
    assert parse_workloads("memcached") == ("mc-registers",)
    assert parse_workloads(" redis-appends , counters") == ("redis-appends", "counters")
    for bad in ("", "frob", "registers,registers", "redis,counters"):
        with pytest.raises(ValueError, match="--workloads"):
            parse_workloads(bad)


def test_assign_gives_every_workload_a_worker_and_scales_registers_and_appends() -> None:
    assert Counter(assign(9, WORKLOADS)) == {
        "registers": 2,
        "redis-registers": 1,
        "redis-sets": 1,
        "redis-appends": 1,
        "redis-queue": 1,
        "mc-registers": 1,
        "counters": 1,
        "sessions": 1,
    }
    assert Counter(assign(9)) == {"registers": 7, "counters": 1, "sessions": 1}
    assert assign(3, ("counters", "sessions")) == ["counters", "sessions", "counters"]


def test_config_refuses_redis_workloads_without_redis_ports() -> None:
    with pytest.raises(ValueError, match="--redis-endpoints"):
        WorkloadConfig(("a:1",), workloads=WORKLOADS, memcached_endpoints=("a:3",))
    with pytest.raises(ValueError, match="--memcached-endpoints"):
        WorkloadConfig(("a:1",), workloads=WORKLOADS, redis_endpoints=("a:2",))
    ports = {"redis_endpoints": ("a:2",), "memcached_endpoints": ("a:3",)}
    with pytest.raises(ValueError, match="raise --workers"):
        WorkloadConfig(("a:1",), workers=4, workloads=WORKLOADS, **ports)
    with pytest.raises(ValueError, match="unknown workload"):
        WorkloadConfig(("a:1",), workloads=("frob",))
    config = WorkloadConfig(("a:1",), workloads=WORKLOADS, **ports)
    assert config.redis_register_key_names()[0] == "rr:0"
    assert config.mc_register_key_names()[0] == "mr:0"
    assert workload_of("mr:3") == "mc-registers"


def test_memcached_errors_are_classified_by_their_first_word() -> None:
    assert classify_server_error("unavailable: no leader; retry") is McFailed
    assert classify_server_error("busy: the proposer is full") is McFailed
    assert classify_server_error("outcome unknown: the leader stepped down") is McUnknown
    assert classify_server_error("object too large for cache") is McUnexpected


def test_workload_of_key_prefixes() -> None:
    keys = ["r:1", "c:0", "s:3-4", "rr:9", "rl:12", "zz:1"]
    assert [workload_of(k) for k in keys] == [
        "registers",
        "counters",
        "sessions",
        "redis-registers",
        "redis-appends",
        "other",
    ]


def test_list_keys_retire_full_lists() -> None:
    lists = ListKeys(open_lists=2, cap=3)
    rng = random.Random(1)
    assert {lists.pick(rng) for _ in range(50)} == {"rl:0", "rl:1"}
    lists.grew("rl:0", 2)
    assert lists.used() == ["rl:0", "rl:1"]
    lists.grew("rl:0", 3)
    lists.grew("rl:0", 4)  # already retired: no second replacement
    assert {lists.pick(rng) for _ in range(50)} == {"rl:1", "rl:2"}
    assert lists.used() == ["rl:0", "rl:1", "rl:2"]


@pytest.mark.parametrize(
    ("text", "outcome"),
    [
        ("CLUSTERDOWN no leader is known right now; retry", RespFailed),
        ("TRYAGAIN the node is overloaded", RespFailed),
        ("UNKNOWN outcome unknown: the write may or may not have been applied", RespUnknown),
        ("ERR internal error: KeyError", RespUnexpected),
        ("WRONGTYPE Operation against a key holding the wrong kind of value", RespUnexpected),
    ],
)
def test_error_replies_map_to_outcomes(text: str, outcome: type[Exception]) -> None:
    assert classify_error_reply(text) is outcome
