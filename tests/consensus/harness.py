"""Helpers for the consensus tests: in-process RaftNodes, log commands and cluster clients.

In-process nodes are single-member clusters (no peers): they elect themselves within
one election timeout and commit on their own, so a test controls every entry.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from pysyncobj.journal import FileJournal
from raftcache.chaos.local_cluster import LocalCluster, free_port
from raftcache.consensus import Durability, Outcome, RaftConfig, RaftNode, snapshot
from raftcache.consensus.journal import FlushedJournal
from raftcache.node import commands
from raftcache.node.replica import Replica
from raftcache.v1 import cache_pb2, cache_pb2_grpc, cluster_pb2, cluster_pb2_grpc, command_pb2

WAIT_S = 15.0
JOURNAL = "raft.journal"
DUMP = "snapshot.lmdb"


def wait_for(predicate: Callable[[], object], what: str, timeout: float = WAIT_S) -> None:
    """Poll `predicate` until it is true; fail the test with `what` if it never is."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


# ---------------------------------------------------------------- log commands


def set_op(key: bytes, value: bytes, deadline_ms: int = 0) -> command_pb2.Op:
    return command_pb2.Op(set=command_pb2.SetOp(key=key, value=value, deadline_ms=deadline_ms))


def command(*ops: command_pb2.Op, now_ms: int = 1_000) -> command_pb2.Command:
    return command_pb2.Command(now_ms=now_ms, ops=list(ops))


def value_of(key: bytes) -> bytes:
    return b"value-of-" + key


def keys(prefix: str, count: int, start: int = 0) -> list[bytes]:
    return [f"{prefix}{i:05d}".encode() for i in range(start, start + count)]


# ---------------------------------------------------------------- in-process nodes


def lone_journal_config(data_dir: Path, **overrides: Any) -> RaftConfig:
    """A single-member journal node's config on a free loopback port (it elects itself)."""
    return RaftConfig(
        self_addr=f"127.0.0.1:{free_port()}",
        peers=(),
        durability=Durability.JOURNAL,
        data_dir=data_dir,
        **overrides,
    )


@dataclass
class Proposal:
    """One proposed entry; `done` is set by the callback (on the tick thread)."""

    done: threading.Event = field(default_factory=threading.Event)
    outcome: Outcome | None = None
    result: Any = None

    def __call__(self, outcome: Outcome, result: Any) -> None:
        self.outcome, self.result = outcome, result
        self.done.set()


def propose_all(node: RaftNode, payloads: Sequence[bytes]) -> list[Proposal]:
    """Propose every payload (pipelined) and wait for all callbacks."""
    proposals = [Proposal() for _ in payloads]
    for payload, proposal in zip(payloads, proposals, strict=True):
        node.propose(payload, proposal)
    deadline = time.monotonic() + WAIT_S
    for i, proposal in enumerate(proposals):
        if not proposal.done.wait(max(deadline - time.monotonic(), 0.0)):
            raise AssertionError(f"proposal {i} of {len(proposals)} got no callback")
    return proposals


def write_keys(node: RaftNode, names: Iterable[bytes]) -> list[bytes]:
    """Set each key to value_of(key), one entry per key; returns the acknowledged keys."""
    names = list(names)
    payloads = [commands.encode(command(set_op(k, value_of(k)))) for k in names]
    proposals = propose_all(node, payloads)
    acked = [k for k, p in zip(names, proposals, strict=True) if p.outcome is Outcome.APPLIED]
    assert acked == names, [(p.outcome, p.result) for p in proposals if p.outcome]
    return acked


def journal_of(node: RaftNode) -> FlushedJournal:
    """The journal object pysyncobj writes through (private, pinned pysyncobj 0.3.17)."""
    log = node._syncobj._SyncObj__raftLog
    assert isinstance(log, FlushedJournal), type(log)
    return log


def after_next_tick(node: RaftNode) -> None:
    """Return once a whole tick has run after this call (status is refreshed every tick)."""
    before = node.status()
    wait_for(lambda: node.status() is not before, "the next tick")


def take_snapshot(node: RaftNode) -> snapshot.RaftMeta:
    """Force a compaction, wait until it finished and the log was truncated; its meta."""
    taken = node.snapshots_taken
    wait_for(node.force_snapshot, "no snapshot in progress")
    wait_for(lambda: node.snapshots_taken > taken, "the forced snapshot")
    after_next_tick(node)
    return snapshot.read_raft_meta(node._syncobj.conf.fullDumpFile)


def read_journal(path: Path) -> list[tuple[bytes, int, int]]:
    journal = FileJournal(str(path))
    try:
        return [journal[i] for i in range(len(journal))]
    finally:
        journal._destroy()


def copy_dir(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


class RaftHarness:
    """Starts single-member RaftNodes in this process and destroys them at the end."""

    def __init__(self) -> None:
        self._nodes: list[RaftNode] = []

    def start(
        self, data_dir: Path, addr: str | None = None, durability: Durability = Durability.JOURNAL
    ) -> tuple[RaftNode, Replica]:
        replica = Replica()
        config = RaftConfig(
            self_addr=addr or f"127.0.0.1:{free_port()}",
            peers=(),
            durability=durability,
            data_dir=data_dir if durability is Durability.JOURNAL else None,
        )
        node = RaftNode(config, replica)
        self._nodes.append(node)
        wait_for(node.is_leader, "the single node to elect itself")
        return node, replica

    def stop(self, node: RaftNode) -> None:
        self._nodes.remove(node)
        node.destroy()

    def close(self) -> None:
        while self._nodes:
            self._nodes.pop().destroy()


def wait_applied_all(node: RaftNode) -> None:
    """Wait until everything in the journal (including the new term's no-op) is applied."""

    def caught_up() -> bool:
        status = node.status()
        journal = journal_of(node)
        return status.applied_index >= journal[len(journal) - 1][1] and status.applied_index > 0

    wait_for(caught_up, "the restarted node to apply its whole journal")


def missing_keys(replica: Replica, names: Iterable[bytes]) -> list[bytes]:
    """Keys that are absent or hold the wrong value."""
    out = []
    for k in names:
        entry = replica.get(k, 0)
        if entry is None or entry.value != value_of(k):
            out.append(k)
    return out


# ---------------------------------------------------------------- node processes


class ClusterClient:
    """gRPC stubs for a LocalCluster's nodes; closes its channels on close()."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self._channels: dict[int, grpc.Channel] = {}

    def _channel(self, i: int) -> grpc.Channel:
        if i not in self._channels:
            self._channels[i] = grpc.insecure_channel(self.cluster.nodes[i].client_addr)
        return self._channels[i]

    def cache(self, i: int) -> cache_pb2_grpc.CacheStub:
        return cache_pb2_grpc.CacheStub(self._channel(i))

    def control(self, i: int) -> cluster_pb2_grpc.ClusterStub:
        return cluster_pb2_grpc.ClusterStub(self._channel(i))

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()

    def set_keys(self, i: int, names: Sequence[bytes], in_flight: int = 64) -> None:
        """Set every key to value_of(key) through node i, retrying Sets that fail.

        A retried Set may apply twice: harmless, the value is the same. Retrying keeps
        the tests independent of elections caused by a busy machine.
        """
        stub = self.cache(i)
        pending = list(names)
        for attempt in range(20):
            failed: list[bytes] = []
            for start in range(0, len(pending), in_flight):
                chunk = pending[start : start + in_flight]
                futures = [
                    stub.Set.future(cache_pb2.SetRequest(key=k, value=value_of(k)), timeout=10)
                    for k in chunk
                ]
                for k, future in zip(chunk, futures, strict=True):
                    try:
                        future.result()
                    except grpc.RpcError:
                        failed.append(k)
            if not failed:
                return
            pending = failed
            time.sleep(0.1 * (attempt + 1))
        raise AssertionError(f"{len(pending)} Sets through node {i} kept failing")

    def stale_missing(self, i: int, names: Iterable[bytes]) -> list[bytes]:
        """Keys node i does not serve (with the right value) to a STALE Get."""
        stub = self.cache(i)
        out = []
        for k in names:
            got = stub.Get(cache_pb2.GetRequest(key=k, consistency=cache_pb2.STALE), timeout=5)
            if not got.found or got.value != value_of(k):
                out.append(k)
        return out

    def status(self, i: int) -> cluster_pb2.StatusResponse:
        status = self.cluster.status(i, timeout=5)
        assert status is not None, f"{self.cluster.nodes[i].node_id} does not answer Status"
        return status

    def compact(self, nodes: Iterable[int], min_index: int) -> dict[int, snapshot.RaftMeta]:
        """Ask `nodes` to snapshot until each one's snapshot file covers `min_index`."""
        pending = set(nodes)
        metas: dict[int, snapshot.RaftMeta] = {}
        deadline = time.monotonic() + WAIT_S
        while pending:
            for i in sorted(pending):
                path = self.cluster.nodes[i].data_dir / DUMP
                if path.exists():
                    meta = snapshot.read_raft_meta(str(path))
                    if meta.last.index >= min_index:
                        metas[i] = meta
                        pending.discard(i)
                        continue
                self.control(i).Snapshot(cluster_pb2.SnapshotRequest(), timeout=5)
            if pending and time.monotonic() > deadline:
                raise AssertionError(f"nodes {sorted(pending)} did not snapshot past {min_index}")
            time.sleep(0.05)
        return metas


def wait_digest(client: ClusterClient, nodes: Iterable[int], digest: str) -> None:
    """Wait until every node in `nodes` reports state digest `digest`."""
    nodes = list(nodes)

    def reached() -> bool:
        statuses = [client.cluster.status(i) for i in nodes]
        return all(s is not None and s.digest == digest for s in statuses)

    wait_for(reached, f"nodes {nodes} to reach digest {digest}", timeout=30)


def log_text(cluster: LocalCluster, i: int) -> str:
    return cluster.nodes[i].log_path.read_text(errors="replace")


def secret_config(
    addr: str, peers: tuple[str, ...], data_dir: Path | None, secret: str | None
) -> RaftConfig:
    """One voter of a Raft-port test: journal durability with a data dir (else memory),
    the Raft secret given, and timeouts that keep a busy host from causing elections (three
    tick threads share one process's GIL)."""
    return RaftConfig(
        self_addr=addr,
        peers=peers,
        durability=Durability.JOURNAL if data_dir else Durability.MEMORY,
        data_dir=data_dir,
        secret=secret,
        election_timeout_min=1.0,
        election_timeout_max=2.0,
        connection_timeout=2.0,
        leader_fallback_timeout=6.0,
    )


class SecretTrio:
    """Three voters with a Raft secret in this process, each with its own Replica and a
    recorded on_fatal."""

    def __init__(self, base: Path, secret: str) -> None:
        # Sorted: pysyncobj's greater address dials the smaller, so addrs[2] dials addrs[0].
        self.addrs = sorted(f"127.0.0.1:{free_port()}" for _ in range(3))
        self.replicas = [Replica() for _ in range(3)]
        self.fatal: list[list[BaseException]] = [[], [], []]
        self.nodes = [
            RaftNode(
                secret_config(a, tuple(p for p in self.addrs if p != a), base / f"n{i}", secret),
                self.replicas[i],
                on_fatal=self.fatal[i].append,
            )
            for i, a in enumerate(self.addrs)
        ]

    def leader(self) -> RaftNode:
        wait_for(lambda: sum(n.is_leader() for n in self.nodes) == 1, "one leader")
        return next(n for n in self.nodes if n.is_leader())

    def converge(self, names: list[bytes]) -> None:
        """Every replica ends with every key and the same state; nothing stopped a node."""
        wait_for(
            lambda: all(not missing_keys(r, names) for r in self.replicas), "every key everywhere"
        )
        wait_for(lambda: len({r.digest() for r in self.replicas}) == 1, "equal replicas")
        assert self.fatal == [[], [], []]

    def close(self) -> None:
        for node in self.nodes:
            node.destroy()
