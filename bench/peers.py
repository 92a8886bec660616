"""The systems raftcache is compared with, run on loopback by the bench itself: etcd 3.4
(three members), Redis 7 (a primary and two `--replicaof` replicas, no persistence) and
memcached 1.6 (one server), all from Debian packages that are installed here if missing.

Every process is started with Popen and ended by its own PID (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
import redis
from raftcache.chaos.local_cluster import free_port

from bench.common import channel_options, key_name, log, value_bytes
from bench.loadgen import ETCD_PUT, etcd_put_request

PACKAGES = {
    "redis-server": "redis-server",
    "redis-benchmark": "redis-tools",
    "redis-cli": "redis-tools",
    "etcd": "etcd-server",
    "etcdctl": "etcd-client",
    "memcached": "memcached",
    "h2load": "nghttp2-client",
    # builds bench/mcload.c, the memcached rows' generator; gcc only Recommends the C
    # headers, which --no-install-recommends would leave out
    "gcc": "gcc libc6-dev",
}
"""Binary -> the Debian package(s) that ship it (space-separated)."""


def ensure_tools(binaries: Sequence[str]) -> None:
    """Install the Debian packages of any missing binary (apt-get; needs root)."""
    missing = sorted({p for b in binaries if shutil.which(b) is None for p in PACKAGES[b].split()})
    if not missing:
        return
    if os.geteuid() != 0:
        raise RuntimeError(
            f"missing {', '.join(missing)}: run `sudo apt-get install -y {' '.join(missing)}` "
            "and start the bench again"
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    log(f"installing {' '.join(missing)} (apt-get)")
    if subprocess.run(install, env=env, capture_output=True, check=False).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=True)
        done = subprocess.run(install, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"apt-get install {' '.join(missing)} failed:\n{done.stderr}")


def tool_version(argv: Sequence[str]) -> str:
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, check=False, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    return (
        (done.stdout or done.stderr).strip().splitlines()[0] if done.stdout or done.stderr else ""
    )


def _end(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM this one process, SIGKILL it if it does not exit in time."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


# ----------------------------------------------------------------------------- Redis


class RedisGroup:
    """redis-server primary + 2 replicas (`--replicaof`), `--save ''`, `--appendonly no`."""

    def __init__(self, base_dir: Path, replicas: int = 2) -> None:
        self.base_dir = base_dir
        self.ports: list[int] = [free_port() for _ in range(1 + replicas)]
        self.processes: list[subprocess.Popen[bytes]] = []

    @property
    def primary_port(self) -> int:
        return self.ports[0]

    @property
    def replica_ports(self) -> list[int]:
        return self.ports[1:]

    @property
    def pids(self) -> dict[str, int]:
        names = ["primary", *(f"replica-{i + 1}" for i in range(len(self.ports) - 1))]
        return {name: p.pid for name, p in zip(names, self.processes, strict=False)}

    def start(self, timeout: float = 30.0) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        for i, port in enumerate(self.ports):
            role = ["--replicaof", "127.0.0.1", str(self.primary_port)] if i else []
            argv = [
                "redis-server",
                "--port", str(port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--daemonize", "no",
                "--dir", str(self.base_dir),
                "--dbfilename", f"dump-{port}.rdb",
                "--logfile", str(self.base_dir / f"redis-{port}.log"),
                # the first sync at once: Redis 7 waits 5 s for more replicas by default,
                # which each start of a group (3 per test run) paid
                "--repl-diskless-sync-delay", "0",
                *role,
            ]  # fmt: skip
            self.processes.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(p.poll() is None for p in self.processes) and self._replicating():
                return
            time.sleep(0.2)
        raise TimeoutError(
            f"Redis replicas did not connect in {timeout} s; logs in {self.base_dir}"
        )

    def _replicating(self) -> bool:
        try:
            primary = redis.Redis(port=self.primary_port, socket_timeout=1)
            info = primary.info("replication")
            primary.close()
        except redis.RedisError:
            return False
        online = [v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)]
        return len(online) == len(self.replica_ports) and all(
            s.get("state") == "online" for s in online
        )

    def populate(self, prefix: str, count: int, value_size: int) -> None:
        client = redis.Redis(port=self.primary_port, socket_timeout=30)
        try:
            _populate_resp(client, prefix, count, value_size)
            client.wait(len(self.replica_ports), 10_000)
        finally:
            client.close()

    def close(self) -> None:
        for process in self.processes:
            _end(process)


def _populate_resp(client: redis.Redis, prefix: str, count: int, value_size: int) -> None:
    """SET key:<12 digits> for i < count (redis-benchmark's -r keyspace), 1,000 a pipeline."""
    value = value_bytes(value_size)
    for start in range(0, count, 1000):
        pipe = client.pipeline(transaction=False)
        for i in range(start, min(start + 1000, count)):
            pipe.set(f"{prefix}{i:012d}", value)
        pipe.execute()


def populate_resp(port: int, prefix: str, count: int, value_size: int) -> None:
    client = redis.Redis(port=port, socket_timeout=30)
    try:
        _populate_resp(client, prefix, count, value_size)
    finally:
        client.close()


# ----------------------------------------------------------------------------- memcached


class MemcachedServer:
    """One memcached (Debian's 1.6, threads and memory as shipped but 256 MB), TCP only."""

    def __init__(self, base_dir: Path, memory_mb: int = 256) -> None:
        self.base_dir = base_dir
        self.port = free_port()
        self.memory_mb = memory_mb
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pids(self) -> dict[str, int]:
        return {"memcached": self.process.pid} if self.process is not None else {}

    def start(self, timeout: float = 15.0) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        # memcached refuses to run as root unless told which user to become
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        argv = ["memcached", "-l", "127.0.0.1", "-p", str(self.port), "-U", "0",
                "-m", str(self.memory_mb), *user]  # fmt: skip
        log_file = open(self.base_dir / "memcached.log", "ab")  # noqa: SIM115 - the child keeps it
        self.process = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT)
        log_file.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"memcached exited; log in {self.base_dir}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"version\r\n")
                    if sock.recv(100).startswith(b"VERSION"):
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"memcached did not answer in {timeout} s; log in {self.base_dir}")

    def close(self) -> None:
        if self.process is not None:
            _end(self.process)


# ----------------------------------------------------------------------------- etcd


class EtcdCluster:
    """Three etcd members on loopback (v3 API on the client ports, fsync as shipped)."""

    def __init__(self, base_dir: Path, size: int = 3) -> None:
        self.base_dir = base_dir
        self.names = [f"e{i + 1}" for i in range(size)]
        self.client_ports = [free_port() for _ in range(size)]
        self.peer_ports = [free_port() for _ in range(size)]
        self.processes: list[subprocess.Popen[bytes]] = []

    @property
    def endpoints(self) -> list[str]:
        return [f"127.0.0.1:{p}" for p in self.client_ports]

    @property
    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in zip(self.names, self.processes, strict=False)}

    def start(self, timeout: float = 60.0) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        initial = ",".join(
            f"{n}=http://127.0.0.1:{p}" for n, p in zip(self.names, self.peer_ports, strict=True)
        )
        token = f"bench-{os.getpid()}-{time.time_ns()}"
        for name, client, peer in zip(self.names, self.client_ports, self.peer_ports, strict=True):
            argv = [
                "etcd",
                "--name", name,
                "--data-dir", str(self.base_dir / name),
                "--listen-client-urls", f"http://127.0.0.1:{client}",
                "--advertise-client-urls", f"http://127.0.0.1:{client}",
                "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-cluster", initial,
                "--initial-cluster-token", token,
                "--initial-cluster-state", "new",
                "--logger", "zap",
                "--log-level", "warn",
            ]  # fmt: skip
            log_file = open(self.base_dir / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it
            self.processes.append(subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT))
            log_file.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.processes):
                raise RuntimeError(f"an etcd member exited; logs in {self.base_dir}")
            if self._healthy():
                return
            time.sleep(0.3)
        raise TimeoutError(f"etcd not healthy in {timeout} s; logs in {self.base_dir}")

    def _etcdctl(self, *args: str, endpoints: Sequence[str] | None = None) -> str:
        argv = ["etcdctl", "--endpoints", ",".join(endpoints or self.endpoints), *args]
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
            env=dict(os.environ, ETCDCTL_API="3"),
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")
        return done.stdout

    def _healthy(self) -> bool:
        try:
            self._etcdctl("endpoint", "health")
        except (RuntimeError, subprocess.TimeoutExpired):
            return False
        return True

    def status(self) -> list[dict[str, Any]]:
        return list(json.loads(self._etcdctl("endpoint", "status", "-w", "json")))

    def leader_endpoint(self) -> str:
        for item in self.status():
            status = item["Status"]
            if status["leader"] == status["header"]["member_id"]:
                return str(item["Endpoint"])
        raise RuntimeError("no etcd member says it leads")

    def leader_name(self) -> str:
        leader = self.leader_endpoint()
        return self.names[self.endpoints.index(leader)]

    def compact_and_defrag(self) -> int:
        """Compact to the current revision and defragment every member (etcd's reads slow
        down after a heavy write phase otherwise); returns the revision."""
        revision = max(int(s["Status"]["header"]["revision"]) for s in self.status())
        self._etcdctl("compact", str(revision), "--physical")
        self._etcdctl("defrag")
        return revision

    def populate(self, prefix: str, count: int, value_size: int) -> float:
        return asyncio.run(_etcd_populate(self.endpoints, prefix, count, value_size))

    def close(self) -> None:
        for process in self.processes:
            _end(process)


async def _etcd_populate(endpoints: Sequence[str], prefix: str, count: int, size: int) -> float:
    """Put prefix0000000.. from 32 concurrent callers; returns the seconds it took."""
    value = value_bytes(size)
    channels = [grpc.aio.insecure_channel(e, options=channel_options(True)) for e in endpoints]
    puts = [c.unary_unary(ETCD_PUT) for c in channels]
    next_key = 0
    started = time.perf_counter()

    async def worker(w: int) -> None:
        nonlocal next_key
        while next_key < count:
            i, next_key = next_key, next_key + 1
            await puts[w % len(puts)](etcd_put_request(key_name(prefix, i), value), timeout=30)

    try:
        await asyncio.gather(*(worker(w) for w in range(32)))
    finally:
        for channel in channels:
            await channel.close()
    return time.perf_counter() - started
