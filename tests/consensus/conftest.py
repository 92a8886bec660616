"""Fixtures for the consensus tests: in-process RaftNodes and local node processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from raftcache.chaos.local_cluster import LocalCluster

from tests.consensus.harness import ClusterClient, RaftHarness, SecretTrio


@pytest.fixture
def raft() -> Iterator[RaftHarness]:
    """Start single-member RaftNodes; every one still running is destroyed afterwards."""
    harness = RaftHarness()
    try:
        yield harness
    finally:
        harness.close()


ClusterFactory = Callable[..., tuple[LocalCluster, ClusterClient]]


@pytest.fixture
def local_cluster(tmp_path: Path) -> Iterator[ClusterFactory]:
    """Make started LocalClusters (logs under tmp_path); all are closed afterwards."""
    made: list[tuple[LocalCluster, ClusterClient]] = []

    def make(size: int = 3, extra_args: tuple[str, ...] = ()) -> tuple[LocalCluster, ClusterClient]:
        cluster = LocalCluster(size, tmp_path / f"cluster{len(made)}", extra_args=extra_args)
        client = ClusterClient(cluster)
        made.append((cluster, client))
        cluster.start()
        return cluster, client

    try:
        yield make
    finally:
        for cluster, client in made:
            client.close()
            cluster.close()


@pytest.fixture
def trio(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[SecretTrio]:
    """Three voters in this process with the test module's Raft `SECRET`."""
    nodes = SecretTrio(tmp_path, request.module.SECRET)
    try:
        yield nodes
    finally:
        nodes.close()
