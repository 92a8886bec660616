"""Backup under write load from a real 3-node cluster, restored into a new 3-node cluster."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from pathlib import Path

import redis
from raftcache.chaos.local_cluster import LocalCluster, free_port
from raftcache.node import backup_file

from tests.integration.conftest import running_cluster

SCRIPT = Path(sys.executable).parent / "raftcache"
DEADLINE_MS = 4_102_444_800_000  # 2100-01-01: far enough to outlive the test


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, timeout=60, check=False
    )


def mc(port: int, line: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(line)
        out = b""
        while not out.endswith((b"END\r\n", b"STORED\r\n")):
            chunk = s.recv(65536)
            assert chunk, out
            out += chunk
        return out


def load(r: redis.Redis, port: int) -> None:
    r.set("s", "string value")
    r.set("ttl", "expires", pxat=DEADLINE_MS)
    r.hset("h", mapping={"f1": "v1", "f2": "v2"})
    r.rpush("l", "a", "b", "c")
    r.sadd("set", "x", "y")
    r.zadd("z", {"m1": 1.5, "m2": 2.5})
    r.pexpireat("h", DEADLINE_MS - 1000)
    assert mc(port, b"set mc 4242 0 3\r\nabc\r\n") == b"STORED\r\n"
    r.mset({f"bulk:{i:05d}": f"value-{i}" for i in range(5000)})


def check(r: redis.Redis, port: int) -> None:
    assert r.get("s") == b"string value"
    assert r.pexpiretime("ttl") == DEADLINE_MS
    assert r.pexpiretime("h") == DEADLINE_MS - 1000
    assert r.hgetall("h") == {b"f1": b"v1", b"f2": b"v2"}
    assert r.lrange("l", 0, -1) == [b"a", b"b", b"c"]
    assert r.smembers("set") == {b"x", b"y"}
    assert r.zrange("z", 0, -1, withscores=True) == [(b"m1", 1.5), (b"m2", 2.5)]
    assert [r.type(k) for k in ("s", "h", "l", "set", "z")] == [
        b"string", b"hash", b"list", b"set", b"zset"
    ]  # fmt: skip
    assert mc(port, b"get mc\r\n") == b"VALUE mc 4242 3\r\nabc\r\nEND\r\n"
    assert r.get("bulk:04999") == b"value-4999"


def test_backup_under_load_restores_into_a_new_cluster(tmp_path: Path) -> None:
    file = tmp_path / "cache.rcbak"
    with running_cluster(tmp_path / "old") as old:
        leader = old.nodes[old.wait_for_leader()]
        r = redis.Redis(port=leader.redis_port)
        load(r, leader.memcached_port)
        acked: list[int] = []
        stop = threading.Event()

        def writer() -> None:  # one writer: key i is written only after i-1 was acknowledged
            w = redis.Redis(port=leader.redis_port)
            i = 0
            while not stop.is_set():
                w.set(f"load:{i:06d}", str(i))
                acked.append(i)
                i += 1

        thread = threading.Thread(target=writer)
        thread.start()
        try:
            while len(acked) < 200:
                stop.wait(0.05)
            before = len(acked)
            endpoints = ",".join(n.client_addr for n in old.nodes)
            taken = cli("--endpoints", endpoints, "backup", str(file))
            after = len(acked)
        finally:
            stop.set()
            thread.join()
        assert taken.returncode == 0, taken.stderr
        old_id = old.status(0).cluster_id
    info = backup_file.verify(str(file))
    assert info.cluster_id == old_id and info.applied_index > 0
    with backup_file.reader(str(file)) as (_h, _m, items):
        loaded = sorted(int(k[5:]) for k, _v in items if k.startswith(b"load:"))
    # A linearizable cut of one sequential writer: a prefix, holding every write acknowledged
    # before the backup started and none that began after it ended.
    assert loaded == list(range(len(loaded)))
    assert before <= len(loaded) <= after + 1
    assert info.key_count == 5007 + len(loaded)

    inspected = cli("backup", "--inspect", str(file))
    assert inspected.returncode == 0, inspected.stderr
    assert f"keys: {info.key_count}" in inspected.stdout
    assert f"cluster_id: {old_id}" in inspected.stdout
    assert f"applied_index: {info.applied_index}" in inspected.stdout
    assert "(verified)" in inspected.stdout

    with running_cluster(tmp_path / "new", extra_args=["--restore-from", str(file)]) as new:
        statuses = new.wait_converged()
        assert len({s.digest for s in statuses}) == 1
        assert len({s.cluster_id for s in statuses}) == 1
        assert statuses[0].cluster_id not in ("", old_id)
        leader = new.nodes[new.wait_for_leader()]
        r = redis.Redis(port=leader.redis_port)
        check(r, leader.memcached_port)
        assert r.get(f"load:{loaded[-1]:06d}") == str(loaded[-1]).encode()
        assert r.get(f"load:{len(loaded):06d}") is None
        # A restart keeps the restored state (journal + the seed kept in the data dir).
        new.restart(0)
        new.wait_until_ready()
        follower = new.nodes[0]
        assert redis.Redis(port=follower.redis_port).get("s") == b"string value"
        new.wait_converged()
        # The data dir of this cluster is refused when restoring another backup into it.
        other = LocalCluster(1, tmp_path / "other")
        other.nodes[0].data_dir = new.nodes[1].data_dir
        refused = subprocess.run(
            [*other.command(0), "--restore-from", str(file)],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert refused.returncode == 1
        assert "already holds cluster" in refused.stderr


def test_a_corrupt_or_truncated_backup_is_refused_before_anything_starts(tmp_path: Path) -> None:
    good = tmp_path / "good.rcbak"
    with running_cluster(tmp_path / "old", size=1) as old:
        r = redis.Redis(port=old.nodes[0].redis_port)
        r.mset({f"k{i}": "v" for i in range(100)})
        assert cli("--endpoints", old.nodes[0].client_addr, "backup", str(good)).returncode == 0
    raw = good.read_bytes()
    damaged = bytearray(raw)
    damaged[len(raw) // 2] ^= 0x01
    cases = {"corrupt.rcbak": bytes(damaged), "truncated.rcbak": raw[:-100]}
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        inspected = cli("backup", "--inspect", str(path))
        assert inspected.returncode == 2 and "raftcache: error:" in inspected.stderr
        c = LocalCluster(1, tmp_path / f"new-{name}")
        port = c.nodes[0].client_port
        result = subprocess.run(
            [*c.command(0), "--restore-from", str(path)],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert result.returncode == 1, result.stderr
        assert "--restore-from" in result.stderr and "nothing was started" in result.stderr
        assert ("checksum" in result.stderr) or ("truncated" in result.stderr)
        assert not c.nodes[0].data_dir.exists()
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # the port was never taken
    assert free_port()
