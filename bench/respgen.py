"""Closed-loop RESP load generator for what redis-benchmark cannot send.

redis-benchmark (C) drives every RESP row it can. Two rows need a command it never
sends: `READONLY` before reading from a replica (raftcache followers serve local reads
only on a connection that asked for them), and `SET` followed by `WAIT 2` on the same
connection. This generator covers those: one asyncio Protocol per client connection,
every command pre-encoded, replies framed by a few byte scans (no reply objects), the
next request sent from `data_received` (no task or future per request). It runs in the
spawned processes of bench/loadgen.py (ops `resp_*`), with the same warm-up and
measurement window, so its numbers and CPU line up with the other generators'.

Keys are redis-benchmark's: `key:` + 12 digits below `key_count` (its `-r`), so both
tools read the same keyspace.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import multiprocessing.synchronize
import random
import time
from collections import Counter
from collections.abc import Sequence
from multiprocessing.sharedctypes import Synchronized

from bench.common import FramedReplies, value_bytes
from bench.loadgen import LoadResult, LoadSpec, Window, start_window

WAIT_REPLICAS = 2
WAIT_TIMEOUT_MS = 1000
ERROR_PAUSE_S = 0.002
"""After an error reply a client pauses, so a node that refuses does not spin it."""


def command(*args: bytes) -> bytes:
    """A RESP multibulk command."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        out.append(b"$%d\r\n%b\r\n" % (len(arg), arg))
    return b"".join(out)


def bench_key(prefix: str, i: int) -> bytes:
    """redis-benchmark's `__rand_int__` key for index i."""
    return f"{prefix}{i:012d}".encode()


def reply_end(buf: bytes | bytearray, pos: int) -> int:
    """The index just past the RESP2/RESP3 reply starting at pos, or -1 if incomplete."""
    line = buf.find(b"\r\n", pos)
    if line < 0:
        return -1
    kind = buf[pos]
    if kind in b"+-:_#,(":
        return line + 2
    if kind in b"$=!":
        length = int(buf[pos + 1 : line])
        if length < 0:
            return line + 2
        end = line + 2 + length + 2
        return end if end <= len(buf) else -1
    if kind in b"*~>%|":
        count = int(buf[pos + 1 : line])
        if kind in b"%|":
            count *= 2
        end = line + 2
        for _ in range(max(count, 0)):
            end = reply_end(buf, end)
            if end < 0:
                return -1
        return end
    raise ValueError(f"not a RESP reply: {bytes(buf[pos : pos + 40])!r}")


def requests_for(spec: LoadSpec) -> list[tuple[bytes, ...]]:
    """Every request a client may send: a tuple of commands, each sent after the previous
    one's reply (a request's latency covers them all)."""
    keys = [bench_key(spec.key_prefix, i) for i in range(spec.key_count)]
    if spec.op in ("resp_get", "resp_get_readonly"):
        return [(command(b"GET", k),) for k in keys]
    if spec.op == "resp_set_wait":
        value = value_bytes(spec.value_size, spec.seed)
        wait = command(b"WAIT", b"%d" % WAIT_REPLICAS, b"%d" % WAIT_TIMEOUT_MS)
        return [(command(b"SET", k, value), wait) for k in keys]
    raise ValueError(f"respgen: unknown op {spec.op!r}")


class _Client(FramedReplies):
    """One connection issuing requests back-to-back once started."""

    reply_end = staticmethod(reply_end)

    def __init__(
        self,
        requests: Sequence[tuple[bytes, ...]],
        rng: random.Random,
        result: LoadResult,
        codes: Counter[str],
    ) -> None:
        self.requests = requests
        self.rng = rng
        self.result = result
        self.codes = codes
        super().__init__()
        self.transport: asyncio.Transport | None = None
        self.window: Window | None = None
        self.loop = asyncio.get_running_loop()
        self.finished: asyncio.Future[None] = self.loop.create_future()
        self.handshake: asyncio.Future[bytes] | None = None
        self.request: tuple[bytes, ...] = ()
        self.step = 0
        self.t0 = 0.0
        self.error = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self.handshake is not None and not self.handshake.done():
            self.handshake.set_exception(ConnectionError(f"connection lost: {exc}"))
        if not self.finished.done():
            self.finished.set_exception(ConnectionError(f"connection lost mid-run: {exc}"))

    async def send_once(self, data: bytes) -> bytes:
        """Before the run: send one command and return its reply (e.g. READONLY)."""
        assert self.transport is not None
        self.handshake = self.loop.create_future()
        self.transport.write(data)
        reply = await self.handshake
        self.handshake = None
        return reply

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
        self.request = self.requests[self.rng.randrange(len(self.requests))]
        self.step = 0
        self.error = ""
        self.t0 = t0
        self.transport.write(self.request[0])

    def _reply(self, reply: bytes) -> None:
        if self.handshake is not None:
            self.handshake.set_result(reply)
            return
        if reply[:1] == b"-":
            self.error = reply[1:].split(b" ", 1)[0].decode("latin-1", "replace").strip()
        elif self.request[self.step].startswith(b"*3\r\n$4\r\nWAIT") and (
            int(reply[1:-2]) < WAIT_REPLICAS
        ):
            self.error = f"WAIT<{WAIT_REPLICAS}"
        self.step += 1
        if not self.error and self.step < len(self.request):
            assert self.transport is not None
            self.transport.write(self.request[self.step])
            return
        t1 = time.perf_counter()
        window = self.window
        assert window is not None
        if window.measure_start <= t1 < window.end:
            if self.error:
                self.result.errors += 1
                self.codes[self.error] += 1
            else:
                self.result.ops += 1
                self.result.latencies.append(t1 - self.t0)
        if self.error:
            self.loop.call_later(ERROR_PAUSE_S, self._next)
        else:
            self._next()


async def generate(
    spec: LoadSpec,
    index: int,
    ready: mp.Queue[int],
    go: multiprocessing.synchronize.Event,
    start_at: Synchronized[float],
    stop: multiprocessing.synchronize.Event,
) -> LoadResult:
    """One generator process: connect every client (READONLY first for
    `resp_get_readonly`), report ready, run the window, return the counts."""
    if spec.timeline:
        raise ValueError("respgen has no timeline mode")
    result = LoadResult(index)
    codes: Counter[str] = Counter()
    requests = requests_for(spec)
    loop = asyncio.get_running_loop()
    clients: list[_Client] = []
    try:
        for c in range(spec.clients):
            host, _, port = spec.targets[c % len(spec.targets)].rpartition(":")
            rng = random.Random(spec.seed * 100_003 + c)
            _transport, client = await loop.create_connection(
                lambda rng=rng: _Client(requests, rng, result, codes),  # type: ignore[misc]
                host,
                int(port),
            )
            clients.append(client)
            if spec.op == "resp_get_readonly":
                reply = await asyncio.wait_for(client.send_once(command(b"READONLY")), 10)
                if reply != b"+OK\r\n":
                    raise RuntimeError(f"READONLY answered {reply!r}")
        result.channels = len(clients)
        ready.put(index)
        window, _offset, _watcher = await start_window(spec, go, start_at, stop)
        for client in clients:
            client.start(window)
        timeout = window.end - time.perf_counter() + spec.rpc_timeout_s + 5
        await asyncio.wait_for(asyncio.gather(*(c.finished for c in clients)), timeout)
        result.error_codes = dict(codes)
    finally:
        for client in clients:
            if client.transport is not None:
                client.transport.close()
    return result
