"""The chaos run's pub/sub on a real 3-node cluster: a publisher through the SDK, a
subscriber through the SDK and one through the Redis port; the node the Redis subscriber
is on is SIGKILLed mid-stream, it re-subscribes elsewhere, and check_pubsub passes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from raftcache.chaos.checkers import check_pubsub
from raftcache.chaos.history import RecordLog, read_records
from raftcache.chaos.pubsub import MARKER_PREFIX, finish_pubsub, start_pubsub

from tests.integration.conftest import start_cluster

pytestmark = pytest.mark.integration


def test_pubsub_sessions_across_a_killed_node_pass_the_checker(tmp_path: Path) -> None:
    cluster = start_cluster(tmp_path / "cluster")
    endpoints = [node.client_addr for node in cluster.nodes]
    redis_endpoints = [node.redis_addr for node in cluster.nodes]
    log = RecordLog(tmp_path / "pubsub.jsonl")
    try:
        publishers, subscribers = start_pubsub(endpoints, redis_endpoints, log, 2, seed=7)
        assert [s.protocol for s in subscribers] == ["grpc", "resp"]
        assert all(s.subscribed.is_set() for s in subscribers)
        time.sleep(2.0)
        victim = redis_endpoints.index(subscribers[1].node)
        cluster.kill(victim)  # the Redis subscriber's node: its session breaks
        time.sleep(4.0)
        problems = finish_pubsub(publishers, subscribers, endpoints, log)
        assert problems == []
    finally:
        log.close()
        cluster.close()
    verdict = check_pubsub(read_records(tmp_path / "pubsub.jsonl"), MARKER_PREFIX)
    assert verdict.valid is True, verdict
    assert verdict.details["sessions"][1] >= 2, verdict.details  # re-subscribed after the kill
    assert verdict.details["published"]["ok"] > 50, verdict.details
    assert min(verdict.details["delivered"].values()) > 50, verdict.details
