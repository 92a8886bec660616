"""Fixtures for tests that run real raftcache-node processes on loopback."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from raftcache.chaos.local_cluster import LocalCluster
from raftcache.v1 import cache_pb2_grpc, cluster_pb2_grpc

SECRET = "integration-test-secret"


class Stubs:
    """Cache and Cluster stubs on one channel to one node."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(address)
        self.cache = cache_pb2_grpc.CacheStub(self.channel)
        self.cluster = cluster_pb2_grpc.ClusterStub(self.channel)

    def close(self) -> None:
        self.channel.close()


@contextlib.contextmanager
def running_cluster(
    tmp: Path,
    size: int = 3,
    timeout: float = 60,
    configure: Callable[[LocalCluster], None] | None = None,
    **kwargs: Any,
) -> Iterator[LocalCluster]:
    """A started cluster that has a leader, closed when the block ends; `configure` may set
    per-node flags before the nodes start."""
    c = LocalCluster(size, tmp, **kwargs)
    if configure is not None:
        configure(c)
    c.start()
    try:
        c.wait_until_ready(timeout=timeout)
        yield c
    finally:
        c.close()


def start_cluster(tmp: Path, **kwargs: object) -> LocalCluster:
    cluster = LocalCluster(3, tmp, **kwargs)  # type: ignore[arg-type]
    cluster.start()
    try:
        cluster.wait_until_ready(timeout=40)
    except BaseException:
        cluster.close()
        raise
    return cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A shared 3-node cluster with an encrypted Raft port (tests must leave it whole)."""
    c = start_cluster(tmp_path_factory.mktemp("cluster"), extra_args=["--raft-secret", SECRET])
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def fresh_cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    """A 3-node cluster of its own, for tests that kill or restart nodes."""
    c = start_cluster(tmp_path)
    try:
        yield c
    finally:
        c.close()


def stubs_for(cluster: LocalCluster, i: int) -> Stubs:
    return Stubs(cluster.nodes[i].client_addr)
