"""A TCP proxy in front of each node's Raft port that can cut or delay the links between nodes.

pysyncobj names a peer by the address it dials, so the proxy for node X listens on
X's *advertised* Raft address and forwards to the port X really listens on
(`--raft-bind`). Only one side of a pair dials (the greater address string dials the
lesser), and on an unencrypted connection the dialer's first frame is its own
advertised address; the proxy reads that frame to learn the link (source node,
destination node) of every connection. A connection whose source it cannot identify
(an encrypted handshake, a foreign client) is still forwarded, as link (None, dest):
cuts never apply to it, latency does.

All proxies of a cluster share one asyncio loop in one daemon thread; the control
methods (partition, heal, set_latency) are thread-safe and take effect at once:
cutting a link closes its open connections and every new connection on it is
closed right after identification.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import pickletools
import random
import struct
import threading
import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

# An address frame is tens of bytes; anything much larger is not one.
_MAX_ID_FRAME = 4096
_ID_TIMEOUT_S = 2.0  # a dialer that says nothing for this long is forwarded as unknown
_CHUNK = 65536
_QUEUE_CHUNKS = 256  # per direction: bounded, so a slow side pushes back on the other
# Opcodes that a pickled plain str may consist of (any protocol); nothing that builds objects.
_STR_OPCODES = frozenset(
    {"PROTO", "FRAME", "MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT", "STOP"}
    | {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"}
)


def decode_address_frame(frame: bytes) -> str | None:
    """The str in a pysyncobj frame body (zlib + pickle of one str), or None if it is not one.

    Never unpickles: the opcodes are walked and only a lone string literal is accepted."""
    try:
        inflater = zlib.decompressobj()
        raw = inflater.decompress(frame, _MAX_ID_FRAME)
        if inflater.unconsumed_tail or not inflater.eof:
            return None
        strings: list[str] = []
        for opcode, arg, _pos in pickletools.genops(raw):
            if opcode.name not in _STR_OPCODES:
                return None
            if isinstance(arg, str) and opcode.name != "PUT":
                strings.append(arg)
    except (zlib.error, ValueError, EOFError):
        return None
    return strings[0] if len(strings) == 1 else None


def encode_address_frame(address: str) -> bytes:
    """A pysyncobj unencrypted first frame carrying `address` (for tests and fakes)."""
    import pickle  # here only: this module never unpickles

    body = zlib.compress(pickle.dumps(address), 3)
    return struct.pack("i", len(body)) + body


@dataclass(frozen=True)
class Route:
    """Node `name` is dialled at `listen` (its advertised address) and listens at `target`."""

    name: str
    listen: tuple[str, int]
    target: tuple[str, int]

    @property
    def advertised(self) -> str:
        return f"{self.listen[0]}:{self.listen[1]}"


@dataclass(frozen=True)
class Delay:
    """One-way delay added to every chunk: latency plus uniform jitter in [0, jitter]."""

    latency_s: float
    jitter_s: float = 0.0

    def __post_init__(self) -> None:
        if self.latency_s < 0 or self.jitter_s < 0:
            raise ValueError(f"latency and jitter must be >= 0 s, got {self}")


@dataclass(eq=False)  # identity: kept in a set
class _Conn:
    source: str | None
    dest: str
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for writer in self.writers:
            writer.close()


@dataclass
class ProxyStats:
    """Counters for tests and reports."""

    accepted: int = 0
    identified: int = 0
    refused: int = 0  # closed because the link was cut
    closed_by_cut: int = 0
    bytes: int = 0


class NetProxy:
    """Proxies for every route of a cluster, with thread-safe partitions and delays."""

    def __init__(self, routes: Sequence[Route], *, seed: int = 0) -> None:
        names = [r.name for r in routes]
        if len(set(names)) != len(names):
            raise ValueError(f"route names must be unique, got {names}")
        self.routes = {r.name: r for r in routes}
        self._by_address = {r.advertised: r.name for r in routes}
        self._lock = threading.Lock()
        self._cut: set[frozenset[str]] = set()
        self._delay: Delay | None = None
        self._rng = random.Random(seed)
        self._conns: set[_Conn] = set()
        self.stats = ProxyStats()
        self._loop = asyncio.new_event_loop()
        self._servers: list[asyncio.Server] = []
        self._thread = threading.Thread(target=self._loop.run_forever, name="netproxy", daemon=True)

    # -- life cycle -------------------------------------------------------------

    def start(self) -> NetProxy:
        """Listen on every route's advertised address; raises OSError naming one that is taken."""
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._listen_all(), self._loop)
        try:
            future.result(timeout=10)
        except BaseException:
            self.close()
            raise
        return self

    async def _listen_all(self) -> None:
        for route in self.routes.values():
            try:
                handler = functools.partial(self._serve, dest=route.name)
                server = await asyncio.start_server(handler, *route.listen)
            except OSError as exc:
                raise OSError(f"netproxy: cannot listen on {route.advertised} ({exc})") from exc
            self._servers.append(server)

    def close(self) -> None:
        """Stop listening and drop every connection (idempotent)."""
        if not self._thread.is_alive():
            return

        async def shutdown() -> None:
            for server in self._servers:
                server.close()
            for conn in list(self._conns):
                conn.close()
            await asyncio.sleep(0)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> NetProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- control (any thread) --------------------------------------------------------

    def partition(self, *groups: Iterable[str]) -> None:
        """Cut every link between nodes of different groups (symmetric); other cuts stay."""
        sets = [set(g) for g in groups]
        unknown = set().union(*sets) - set(self.routes)
        if unknown:
            raise ValueError(f"unknown node(s) {sorted(unknown)}; known: {sorted(self.routes)}")
        links = {
            frozenset((a, b))
            for i, ga in enumerate(sets)
            for gb in sets[i + 1 :]
            for a in ga
            for b in gb
            if a != b
        }
        with self._lock:
            self._cut |= links
        self._drop_cut_connections()

    def isolate(self, name: str) -> None:
        """Cut `name` off from every other node."""
        self.partition([name], [n for n in self.routes if n != name])

    def heal(self) -> None:
        """Restore every cut link (delays stay as they are)."""
        with self._lock:
            self._cut.clear()

    def set_delay(self, delay: Delay | None) -> None:
        """Delay every link by `delay` from now on (None: no added delay)."""
        with self._lock:
            self._delay = delay

    def is_cut(self, a: str | None, b: str) -> bool:
        with self._lock:
            return a is not None and frozenset((a, b)) in self._cut

    def links(self) -> list[tuple[str | None, str]]:
        """(source, dest) of every open proxied connection."""
        done: list[tuple[str | None, str]] = []

        async def collect() -> None:
            done.extend((c.source, c.dest) for c in self._conns)

        asyncio.run_coroutine_threadsafe(collect(), self._loop).result(timeout=5)
        return done

    def _drop_cut_connections(self) -> None:
        def drop() -> None:
            for conn in list(self._conns):
                if self.is_cut(conn.source, conn.dest):
                    self.stats.closed_by_cut += 1
                    self._conns.discard(conn)
                    conn.close()

        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(drop)

    # -- data path (loop thread) -------------------------------------------------------

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, dest: str
    ) -> None:
        self.stats.accepted += 1
        conn = _Conn(None, dest, [writer])
        self._conns.add(conn)
        try:
            head, source = await self._identify(reader)
            conn.source = source
            if source is not None:
                self.stats.identified += 1
            if self.is_cut(source, dest):
                self.stats.refused += 1
                return
            host, port = self.routes[dest].target
            up_reader, up_writer = await asyncio.open_connection(host, port)
            conn.writers.append(up_writer)
            if conn not in self._conns:  # cut while we were connecting
                return
            conn.tasks = [
                asyncio.ensure_future(self._pipe(reader, up_writer, head)),
                asyncio.ensure_future(self._pipe(up_reader, writer, b"")),
            ]
            # Either direction ending ends the connection, as a real socket would.
            await asyncio.wait(conn.tasks, return_when=asyncio.FIRST_COMPLETED)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._conns.discard(conn)
            conn.close()

    async def _identify(self, reader: asyncio.StreamReader) -> tuple[bytes, str | None]:
        """The bytes read so far and the dialer's node name, if its first frame names one."""
        head = b""
        try:
            head = await asyncio.wait_for(reader.readexactly(4), _ID_TIMEOUT_S)
            (length,) = struct.unpack("i", head)
            if not 0 < length <= _MAX_ID_FRAME:
                return head, None
            body = await asyncio.wait_for(reader.readexactly(length), _ID_TIMEOUT_S)
            head += body
        except asyncio.IncompleteReadError as exc:
            return head + exc.partial, None
        except TimeoutError:
            return head, None
        address = decode_address_frame(body)
        return head, None if address is None else self._by_address.get(address)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, first: bytes
    ) -> None:
        """Copy reader to writer, holding each chunk until its delivery time."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(_QUEUE_CHUNKS)
        sender = asyncio.ensure_future(self._send(queue, writer))
        last = 0.0
        try:
            data = first or await reader.read(_CHUNK)
            while data:
                with self._lock:
                    delay = self._delay
                    extra = 0.0 if delay is None else delay.latency_s
                    if delay is not None and delay.jitter_s:
                        extra += self._rng.uniform(0, delay.jitter_s)
                # A TCP stream stays in order: jitter never lets a chunk overtake another.
                last = max(last, time.monotonic() + extra)
                await queue.put((last, data))
                data = await reader.read(_CHUNK)
            await queue.put((last, b""))
            await sender
        except OSError:  # a reset on either side ends this direction like an EOF
            pass
        finally:
            sender.cancel()

    async def _send(
        self, queue: asyncio.Queue[tuple[float, bytes]], writer: asyncio.StreamWriter
    ) -> None:
        try:
            await self._send_loop(queue, writer)
        except OSError:
            pass
        finally:  # closing the socket also ends the other direction, which reads from it
            writer.close()

    async def _send_loop(
        self, queue: asyncio.Queue[tuple[float, bytes]], writer: asyncio.StreamWriter
    ) -> None:
        while True:
            due, data = await queue.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                writer.write_eof()
                return
            writer.write(data)
            self.stats.bytes += len(data)
            await writer.drain()
