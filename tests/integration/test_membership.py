"""Online membership on a real cluster: refused changes with their reasons, a 4th and 5th
member added under an SDK write load (zero failed requests, nothing lost), leadership moved
to a named member, two members removed; every action logged as an event and counted."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from raftcache.chaos.local_cluster import LocalCluster, free_port
from raftcache.client import AsyncClient, Client, ConditionFailedError, errors
from raftcache.v1 import cache_pb2, cluster_pb2

from tests.integration.conftest import Stubs, running_cluster

SCRIPT = Path(sys.executable).parent / "raftcache"


def cli(c: LocalCluster, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    endpoints = ",".join(n.client_addr for n in c.nodes if n.running)
    env = {k: v for k, v in os.environ.items() if k != "RAFTCACHE_ENDPOINTS"}
    return subprocess.run(
        [str(SCRIPT), "--endpoints", endpoints, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def started(c: LocalCluster, i: int) -> int:
    """Wait until node i's Raft port accepts connections (it was just started)."""
    host, _, port = c.nodes[i].raft_addr.rpartition(":")
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            return i
        except OSError:
            assert time.monotonic() < deadline, c.nodes[i].log_path.read_text()[-2000:]
            time.sleep(0.1)


def events_counted(c: LocalCluster, i: int) -> dict[str, float]:
    with urllib.request.urlopen(c.nodes[i].metrics_url, timeout=5) as response:
        text = response.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("raftcache_events_total{"):
            name = line.split('event="', 1)[1].split('"', 1)[0]
            out[name] = float(line.rsplit(" ", 1)[1])
    return out


def logged(c: LocalCluster, event: str) -> list[str]:
    return [n.node_id for n in c.nodes if n.log_path.exists() and event in n.log_path.read_text()]


def refused(call: object, reason: str) -> str:
    with pytest.raises(ConditionFailedError) as info:
        call()  # type: ignore[operator]
    assert reason in str(info.value), str(info.value)
    return str(info.value)


class Writer:
    """SDK writers: each sets its own keys in order and remembers what was acknowledged."""

    def __init__(self, endpoints: list[str], threads: int = 3) -> None:
        self.client = Client(endpoints, timeout=15)
        self.stop = threading.Event()
        self.acked: dict[str, str] = {}
        self.failures: list[str] = []
        self.threads = [threading.Thread(target=self._run, args=(t,)) for t in range(threads)]

    def _run(self, t: int) -> None:
        i = 0
        while not self.stop.is_set():
            key, value = f"w{t}:{i}", f"v{i}"
            try:
                self.client.set(key, value)
                self.acked[key] = value
            except errors.RaftcacheError as exc:
                self.failures.append(f"{key}: {type(exc).__name__}: {exc}")
            i += 1
            time.sleep(0.005)

    def __enter__(self) -> Writer:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)


def test_membership_changes_under_load(tmp_path: Path) -> None:
    with running_cluster(tmp_path, metrics=True) as c:
        endpoints = [n.client_addr for n in c.nodes]
        admin = Client(endpoints, timeout=10)
        leader = c.wait_for_leader()
        leader_addr = c.nodes[leader].raft_addr
        followers = [i for i in range(3) if i != leader]
        m = admin.membership()
        assert sorted(x.raft_addr for x in m.members) == sorted(n.raft_addr for n in c.nodes)
        assert all(x.caught_up for x in m.members), m

        # -- refused, each with its reason -------------------------------------------
        refused(lambda: admin.remove_member("127.0.0.1:1"), "is not a member")
        refused(lambda: admin.remove_member(leader_addr), "transfer leadership")
        refused(lambda: admin.remove_member(c.nodes[leader].node_id), "is the leader")
        refused(lambda: admin.add_member(f"127.0.0.1:{free_port()}"), "nothing answers")
        refused(lambda: admin.add_member(c.nodes[followers[0]].raft_addr), "already a member")
        out = cli(c, "member", "remove", "127.0.0.1:1")
        assert out.returncode == 3 and "is not a member" in out.stderr, out
        # One follower down: removing the other would leave 1 of 2 voters up.
        c.kill(followers[1])
        time.sleep(1.5)
        refused(lambda: admin.remove_member(c.nodes[followers[0]].node_id), "would lose quorum")
        n4 = started(c, c.add_node())
        refused(lambda: admin.add_member(c.nodes[n4].raft_addr), "not healthy")
        c.start_node(followers[1])
        deadline = time.monotonic() + 30
        while not all(x.caught_up for x in admin.membership().members):
            assert time.monotonic() < deadline, admin.membership()
            time.sleep(0.2)

        # -- add a 4th and a 5th member under load -------------------------------------
        with Writer(endpoints) as load:
            time.sleep(1.0)
            out = cli(c, "member", "add", c.nodes[n4].raft_addr)
            assert out.returncode == 0, out
            assert "caught-up" in out.stdout and c.nodes[n4].raft_addr in out.stdout, out.stdout
            # Compact the leader's log first: the 5th member catches up from a snapshot.
            stubs = Stubs(c.nodes[leader].client_addr)
            assert stubs.cluster.Snapshot(cluster_pb2.SnapshotRequest(), timeout=5).started
            stubs.close()
            time.sleep(1.0)
            n5 = started(c, c.add_node())
            # Two adds at once: one is taken; the other is refused, as concurrent if it was
            # checked before the first committed, else as already done. (The deterministic
            # "in progress" refusals: tests/consensus/test_membership.py.)
            outcomes = asyncio.run(concurrent_changes(endpoints, c.nodes[n5].raft_addr))
            kinds = sorted(type(o).__name__ for o in outcomes)
            assert kinds == ["ConditionFailedError", "Membership"], outcomes
            reason = next(str(o) for o in outcomes if isinstance(o, Exception))
            assert "in progress" in reason or "already a member" in reason, reason
            if len(admin.membership().members) == 4:
                admin.add_member(c.nodes[n5].raft_addr)
            admin.wait_caught_up(c.nodes[n5].raft_addr, timeout=60)
            m = admin.membership()
            assert len(m.members) == 5 and all(x.caught_up for x in m.members), m

            # -- leadership to a named member, then remove two -------------------------
            out = cli(c, "leader", "transfer", c.nodes[n4].node_id)
            assert out.returncode == 0, out
            assert out.stdout.strip() == f"leader: {c.nodes[n4].node_id}", out.stdout
            assert c.wait_for_leader() == n4
            old = [i for i in range(3)]
            for i in old[:2]:
                out = cli(c, "member", "remove", c.nodes[i].node_id)
                assert out.returncode == 0, out
            time.sleep(1.0)
        assert load.failures == [], load.failures[:5]
        assert len(load.acked) > 100, len(load.acked)
        for i in old[:2]:
            c.stop(i)
        m = admin.membership()
        assert sorted(x.node_id for x in m.members) == ["n3", "n4", "n5"], m
        # Nothing lost: every acknowledged write reads back (linearizable, from the leader).
        reader = Client([c.nodes[i].client_addr for i in (2, n4, n5)], timeout=10)
        keys = sorted(load.acked)
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            values = reader.mget(chunk)
            for key, value in zip(chunk, values, strict=True):
                assert value is not None and value == load.acked[key].encode(), key
        # A 3-member cluster again: losing one more member is refused, by its reason.
        refused(lambda: admin.remove_member(c.nodes[n4].node_id), "is the leader")
        # The 5th member caught up from the leader's snapshot.
        assert "loaded snapshot" in c.nodes[n5].log_path.read_text()

        # -- restarts: the membership stored in the journal wins over --peers/--join -----
        # n3 restarts with its original --peers (which name the removed n1 and n2), n5 with
        # its --join line; both come back as members of {n3, n4, n5}.
        for i in (2, n5):
            c.stop(i)
            c.start_node(i)
            c.wait_until_ready(timeout=30)
        m = admin.membership()
        assert sorted(x.node_id for x in m.members) == ["n3", "n4", "n5"], m
        deadline = time.monotonic() + 30
        while not all(x.caught_up for x in admin.membership().members):
            assert time.monotonic() < deadline, admin.membership()
            time.sleep(0.2)
        reader.set("after-restarts", "ok")
        assert reader.get("after-restarts") == b"ok"

        # -- events: logged once by the node that did it, and counted -----------------
        def times(event: str) -> int:
            return sum(n.log_path.read_text().count(f"event_name={event} ") for n in c.nodes)

        assert times("AddCacheNodeComplete") == 2
        assert times("RemoveCacheNodeComplete") == 2
        assert times("LeaderTransferComplete") == 1
        assert logged(c, "AddCacheNodeComplete") == [c.nodes[leader].node_id]
        assert logged(c, "RemoveCacheNodeComplete") == ["n4"]
        assert logged(c, "LeaderTransferComplete") == [c.nodes[leader].node_id]
        assert "n4" in logged(c, "FailoverComplete")
        assert c.nodes[leader].node_id in logged(c, "SnapshotComplete")
        counted = events_counted(c, n4)  # n4 has run throughout
        assert counted["RemoveCacheNodeComplete"] == 2, counted
        assert counted["FailoverComplete"] == 1, counted
        assert counted["AddCacheNodeComplete"] == 0, counted
        admin.close()
        reader.close()


async def concurrent_changes(endpoints: list[str], newcomer: str) -> list[object]:
    async with AsyncClient(endpoints, timeout=10) as a, AsyncClient(endpoints, timeout=10) as b:
        await a.membership()
        await b.membership()
        results = await asyncio.gather(
            a.add_member(newcomer), b.add_member(newcomer), return_exceptions=True
        )
    return list(results)


def test_a_read_replica_follows_serves_stale_reads_and_never_votes(tmp_path: Path) -> None:
    with running_cluster(tmp_path, metrics=True) as c:
        endpoints = [n.client_addr for n in c.nodes]
        admin = Client(endpoints, timeout=10)
        admin.set("before", "1")
        r = c.add_node(extra_args=["--read-replica=true"])  # no member add: it joins freely
        # Raw stubs: an SDK client would spread stale reads over every member it learns.
        replica = Stubs(c.nodes[r].client_addr)

        def stale(key: str) -> bytes | None:
            try:
                got = replica.cache.Get(
                    cache_pb2.GetRequest(key=key.encode(), consistency=cache_pb2.STALE),
                    timeout=5,
                )
            except grpc.RpcError:
                return None
            return got.value if got.found else None

        deadline = time.monotonic() + 30
        while admin.membership().read_replicas != 1:
            assert time.monotonic() < deadline, c.nodes[r].log_path.read_text()[-3000:]
            time.sleep(0.2)
        admin.set("after", "2")
        deadline = time.monotonic() + 10
        while stale("after") != b"2":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert stale("before") == b"1"
        # It compacts its own log like any node (its snapshot names only the voters).
        stubs = Stubs(c.nodes[r].client_addr)
        assert stubs.cluster.Snapshot(cluster_pb2.SnapshotRequest(), timeout=5).started
        stubs.close()
        deadline = time.monotonic() + 10
        while not (c.nodes[r].data_dir / "snapshot.lmdb").exists():
            assert time.monotonic() < deadline, c.nodes[r].log_path.read_text()[-3000:]
            time.sleep(0.1)
        # forwarded to the leader
        replica.cache.Set(
            cache_pb2.SetRequest(key=b"written-through-the-replica", value=b"3"), timeout=10
        )
        assert admin.get("written-through-the-replica") == b"3"
        # A restart loads its snapshot and journal and follows again.
        c.stop(r)
        admin.set("while-it-was-down", "4")
        c.start_node(r)
        deadline = time.monotonic() + 20
        while True:
            if stale("while-it-was-down") == b"4":
                break
            assert time.monotonic() < deadline, c.nodes[r].log_path.read_text()[-3000:]
            time.sleep(0.2)
        assert stale("written-through-the-replica") == b"3"
        # Not a member: three voters, it counts for no quorum, and it cannot be added as one
        # (it listens on no Raft port).
        m = admin.membership()
        assert len(m.members) == 3 and c.nodes[r].raft_addr not in {x.raft_addr for x in m.members}
        refused(lambda: admin.add_member(c.nodes[r].raft_addr), "nothing answers")
        deadline = time.monotonic() + 10
        while admin.membership().read_replicas != 1:  # it re-dials the voters after a restart
            assert time.monotonic() < deadline
            time.sleep(0.2)
        out = cli(c, "member", "list")
        assert "read replicas connected to the leader: 1" in out.stdout, out
        # Two of three voters gone: the last voter and the replica elect nobody.
        leader = c.wait_for_leader()
        others = [i for i in range(3) if i != leader]
        c.kill(others[0])
        c.kill(others[1])
        time.sleep(3.0)  # the leader steps down (check-quorum); nobody can win
        assert all(
            s is None or s.role != cluster_pb2.LEADER for s in (c.status(i) for i in (leader, r))
        )
        status = c.status(r)
        assert status is not None and status.role == cluster_pb2.FOLLOWER
        # Removed freely: stopping it is all it takes.
        c.start_node(others[0])
        c.start_node(others[1])
        c.wait_for_leader(timeout=30)
        c.stop(r)
        assert "Traceback" not in c.nodes[r].log_path.read_text()
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(errors.UnavailableError):
                if admin.membership().read_replicas == 0:
                    break
            assert time.monotonic() < deadline
            time.sleep(0.2)
        admin.close()
        replica.close()
