"""Closed-loop memcached text-protocol load generator (`set k 0 0 100` / `get k`).

Debian ships no memcached load tool that fits the bench's window (memtier is not packaged;
libmemcached-tools' memaslap reports its own way), so this is respgen.py's design for the
memcached protocol: one asyncio Protocol per connection, every request pre-encoded,
replies framed by a few byte scans, the next request sent from `data_received`. It runs
in the spawned generator processes (bench/peergen.py), on the same warm-up and
measurement window as the gRPC and RESP generators, so the same client code drives the
real memcached and raftcache's memcached port.

The memcached rows now run bench/mcload.c by default (the same design in C: this costs
~14 us of CPU per request on the cores the servers share, mcload ~9); memgen is
`--memcached-generator memgen`, and its populate/version/read_value helpers serve both.

Ops: `mc_set` (ok = `STORED`), `mc_get` (ok = a `VALUE` block; `END` alone is a miss and
counts as an error `MISS`: every key read was written first). Keys: `prefix` + 12 digits
below `key_count`.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import multiprocessing.synchronize
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from multiprocessing.sharedctypes import Synchronized
from typing import Protocol, cast

from bench.common import FramedReplies, value_bytes
from bench.loadgen import LoadResult, LoadSpec, Window, start_window

ERROR_PAUSE_S = 0.002
"""After an error a connection pauses, so a server that refuses does not spin it."""
POPULATE_CHUNK = 200


def mc_key(prefix: str, i: int) -> bytes:
    return f"{prefix}{i:012d}".encode()


def set_request(key: bytes, value: bytes, flags: int = 0, exptime: int = 0) -> bytes:
    return b"set %b %d %d %d\r\n%b\r\n" % (key, flags, exptime, len(value), value)


def get_request(key: bytes) -> bytes:
    return b"get %b\r\n" % key


def reply_end(buf: bytes | bytearray, pos: int) -> int:
    """The index just past the memcached reply starting at pos, or -1 if incomplete.

    A reply is one line (`STORED`, `END`, `ERROR`, `CLIENT_ERROR ...`, ...) or `VALUE`
    blocks (a header line, the data and CRLF) closed by `END`."""
    while True:
        line = buf.find(b"\r\n", pos)
        if line < 0:
            return -1
        if not buf.startswith(b"VALUE ", pos):
            return line + 2
        header = bytes(buf[pos:line]).split()
        if len(header) < 4:
            raise ValueError(f"not a memcached VALUE line: {header!r}")
        pos = line + 2 + int(header[3]) + 2
        if pos > len(buf):
            return -1


def outcome(op: str, reply: bytes) -> str:
    """'' when the reply is what the op wants, else a short error code."""
    if op == "mc_set":
        return "" if reply == b"STORED\r\n" else _code(reply)
    if reply.startswith(b"VALUE "):
        return ""
    return "MISS" if reply == b"END\r\n" else _code(reply)


def _code(reply: bytes) -> str:
    return reply.split(b"\r\n", 1)[0].split(b" ", 1)[0].decode("latin-1", "replace") or "EMPTY"


def requests_for(spec: LoadSpec) -> list[bytes]:
    keys = [mc_key(spec.key_prefix, i) for i in range(spec.key_count)]
    if spec.op == "mc_set":
        value = value_bytes(spec.value_size, spec.seed)
        return [set_request(k, value) for k in keys]
    if spec.op == "mc_get":
        return [get_request(k) for k in keys]
    raise ValueError(f"memgen: unknown op {spec.op!r}")


class LoadClient(Protocol):
    """What the connection driver needs of a client's asyncio Protocol (respgen's _Client
    has it too)."""

    transport: asyncio.Transport | None
    finished: asyncio.Future[None]

    def start(self, window: Window) -> None: ...


class _Client(FramedReplies):
    """One memcached connection issuing requests back-to-back once started."""

    reply_end = staticmethod(reply_end)

    def __init__(
        self,
        op: str,
        requests: Sequence[bytes],
        rng: random.Random,
        result: LoadResult,
        codes: Counter[str],
    ) -> None:
        self.op = op
        self.requests = requests
        self.rng = rng
        self.result = result
        self.codes = codes
        super().__init__()
        self.transport: asyncio.Transport | None = None
        self.window: Window | None = None
        self.loop = asyncio.get_running_loop()
        self.finished: asyncio.Future[None] = self.loop.create_future()
        self.t0 = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.finished.done():
            self.finished.set_exception(ConnectionError(f"connection lost mid-run: {exc}"))

    def start(self, window: Window) -> None:
        self.window = window
        self._next()

    def _next(self) -> None:
        window = self.window
        assert window is not None and self.transport is not None
        t0 = time.perf_counter()
        if t0 >= window.end:
            if not self.finished.done():
                self.finished.set_result(None)
            return
        self.t0 = t0
        self.transport.write(self.requests[self.rng.randrange(len(self.requests))])

    def _reply(self, reply: bytes) -> None:
        t1 = time.perf_counter()
        error = outcome(self.op, reply)
        window = self.window
        assert window is not None
        if window.measure_start <= t1 < window.end:
            if error:
                self.result.errors += 1
                self.codes[error] += 1
            else:
                self.result.ops += 1
                self.result.latencies.append(t1 - self.t0)
        if error:
            self.loop.call_later(ERROR_PAUSE_S, self._next)
        else:
            self._next()


async def drive_connections(
    spec: LoadSpec,
    make_client: Callable[[random.Random, LoadResult, Counter[str]], asyncio.BaseProtocol],
    index: int,
    ready: mp.Queue[int],
    go: multiprocessing.synchronize.Event,
    start_at: Synchronized[float],
    stop: multiprocessing.synchronize.Event,
) -> LoadResult:
    """One generator process over `spec.clients` connections (client c to target c mod n):
    connect all, report ready, run the shared window, return the counts."""
    if spec.timeline:
        raise ValueError("connection generators have no timeline mode")
    result = LoadResult(index)
    codes: Counter[str] = Counter()
    loop = asyncio.get_running_loop()
    clients: list[LoadClient] = []
    try:
        for c in range(spec.clients):
            host, _, port = spec.targets[c % len(spec.targets)].rpartition(":")
            rng = random.Random(spec.seed * 100_003 + c)
            _transport, protocol = await loop.create_connection(
                lambda rng=rng: make_client(rng, result, codes),  # type: ignore[misc]
                host,
                int(port),
            )
            clients.append(cast(LoadClient, protocol))
        result.channels = len(clients)
        ready.put(index)
        window, _offset, _watcher = await start_window(spec, go, start_at, stop)
        for each in clients:
            each.start(window)
        timeout = window.end - time.perf_counter() + spec.rpc_timeout_s + 5
        await asyncio.wait_for(asyncio.gather(*(c.finished for c in clients)), timeout)
        result.error_codes = dict(codes)
    finally:
        for each in clients:
            if each.transport is not None:
                each.transport.close()
    return result


async def generate(
    spec: LoadSpec,
    index: int,
    ready: mp.Queue[int],
    go: multiprocessing.synchronize.Event,
    start_at: Synchronized[float],
    stop: multiprocessing.synchronize.Event,
) -> LoadResult:
    """One memcached generator process (ops mc_set, mc_get)."""
    requests = requests_for(spec)
    return await drive_connections(
        spec,
        lambda rng, result, codes: _Client(spec.op, requests, rng, result, codes),
        index,
        ready,
        go,
        start_at,
        stop,
    )


# ----------------------------------------------------------------------------- set-up


async def populate(addr: str, prefix: str, count: int, value_size: int) -> float:
    """set prefix<12 digits> for i < count over one connection, POPULATE_CHUNK requests per
    write; returns the seconds it took. Raises on any reply but STORED."""
    host, _, port = addr.rpartition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    value = value_bytes(value_size)
    started = time.perf_counter()
    try:
        for start in range(0, count, POPULATE_CHUNK):
            stop = min(start + POPULATE_CHUNK, count)
            chunk = (set_request(mc_key(prefix, i), value) for i in range(start, stop))
            writer.write(b"".join(chunk))
            await writer.drain()
            for i in range(start, stop):
                line = await asyncio.wait_for(reader.readline(), 30)
                if line != b"STORED\r\n":
                    raise RuntimeError(f"memcached {addr}: set of key {i} answered {line!r}")
    finally:
        writer.close()
    return time.perf_counter() - started


async def version(addr: str, timeout: float = 5.0) -> str:
    """The server's `version` answer (e.g. `1.6.18`); raises OSError/TimeoutError if none."""
    host, _, port = addr.rpartition(":")
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), timeout)
    try:
        writer.write(b"version\r\n")
        line = await asyncio.wait_for(reader.readline(), timeout)
    finally:
        writer.close()
    if not line.startswith(b"VERSION "):
        raise ConnectionError(f"{addr} answered `version` with {line!r}")
    return line[len(b"VERSION ") :].strip().decode("latin-1")


async def read_value(addr: str, key: bytes, timeout: float = 5.0) -> bytes | None:
    """One `get`: the value, or None on a miss."""
    host, _, port = addr.rpartition(":")
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), timeout)
    try:
        writer.write(get_request(key))
        buf = b""
        while (end := reply_end(buf, 0)) < 0:
            chunk = await asyncio.wait_for(reader.read(65536), timeout)
            if not chunk:
                raise ConnectionError(f"{addr} closed the connection mid-reply")
            buf += chunk
    finally:
        writer.close()
    reply = buf[:end]
    if not reply.startswith(b"VALUE "):
        return None
    header_end = reply.index(b"\r\n")
    size = int(reply[:header_end].split()[3])
    return reply[header_end + 2 : header_end + 2 + size]
