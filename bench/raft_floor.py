"""The floor of a Raft-replicated Redis SET in Python on this machine: three processes, each
a uvloop RESP server (hiredis) over a pysyncobj SyncObj whose one replicated method stores
a batch of SETs in a dict, with nothing else: no journal, no typed values, no users, no
sessions, no leases, no metrics, no digest.

`python -m bench.raft_floor SELF_RAFT PEER_RAFT,PEER_RAFT REDIS_PORT`. It is built the way
a raftcache node is, with everything that is not the write path taken out:
- the event loop thread parses requests and queues SETs; at the end of each loop turn the
  queue is proposed as ONE replicated call (group commit), one entry in flight at a time,
  and a new entry waits until every open connection has a SET queued, or `GROUP_WAIT_S`
  after its first SET (the shape raftcache's proposer converged on);
- pysyncobj's own tick thread replicates and applies; the apply callback hands the
  replies back to the loop (`call_soon_threadsafe`), which writes them;
- frames under 64 KiB are sent as stored zlib blocks, as raftcache's are
  (consensus/peer_guard.py), instead of pysyncobj's zlib level 3 (54-67 us per frame);
- GET answers from the local dict (no linearizability: this server measures writes).

The peers section drives its leader with the same generator and client counts as etcd's
put and raftcache's RESP SET rows. It is a reference point, not a proven bound: what this
minimal design (one entry in flight, no journal) reaches with CPython 3.11, pysyncobj and
uvloop on this machine's cores. raftcache's write path does all of this and more, so the
distance between the two rows is what raftcache's own per-write work costs; a design with
several entries in flight could go past it.
"""

from __future__ import annotations

import asyncio
import sys
import zlib
from typing import Any

import hiredis
import uvloop
from pysyncobj import SyncObj, SyncObjConf, replicated, tcp_connection

GROUP_WAIT_S = 0.002
"""How long a partial batch waits for the rest of the connections before it is proposed."""
STORED_FROM = 64 * 1024
"""Frames under this size are sent as stored (uncompressed) zlib blocks."""

_OK = b"+OK\r\n"


class _StoredZlib:
    """pysyncobj's tcp_connection calls zlib.compress(data, 3) on every frame: small frames
    go out as stored blocks instead (any zlib.decompress reads them)."""

    @staticmethod
    def compress(data: bytes, level: int = -1) -> bytes:
        if len(data) >= STORED_FROM:
            return zlib.compress(data, 1)
        packer = zlib.compressobj(0, zlib.DEFLATED, 9, 1)
        return packer.compress(data) + packer.flush()

    decompress = staticmethod(zlib.decompress)


tcp_connection.zlib = _StoredZlib  # type: ignore[attr-defined]


class Store(SyncObj):  # type: ignore[misc]
    def __init__(self, self_addr: str, peers: list[str]) -> None:
        conf = SyncObjConf(
            autoTick=True,
            autoTickPeriod=0.01,
            appendEntriesUseBatch=False,
            appendEntriesPeriod=0.05,
            commandsWaitLeader=False,
            sendBufferSize=1 << 21,
            recvBufferSize=1 << 21,
            logCompactionMinEntries=1 << 30,
            logCompactionMinTime=1 << 30,
        )
        super().__init__(self_addr, peers, conf)
        self.data: dict[bytes, bytes] = {}

    @replicated  # type: ignore[misc]
    def put_many(self, items: list[tuple[bytes, bytes]]) -> int:
        data = self.data
        for key, value in items:
            data[key] = value
        return len(items)


class Front:
    """The loop side: connections, the queue of SETs, one entry in flight."""

    def __init__(self, store: Store, loop: asyncio.AbstractEventLoop) -> None:
        self.store = store
        self.loop = loop
        self.connections = 0
        self.queue: list[tuple[bytes, bytes]] = []
        self.waiting: list[tuple[Conn, int]] = []  # who gets how many replies from the queue
        self.in_flight = 0  # connections whose SETs are in the entry in flight
        self.scheduled = False
        self.timer: asyncio.TimerHandle | None = None

    def queued(self, conn: Conn, items: list[tuple[bytes, bytes]]) -> None:
        self.queue += items
        self.waiting.append((conn, len(items)))
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self.maybe_propose)

    def maybe_propose(self) -> None:
        self.scheduled = False
        if self.in_flight or not self.queue:
            return
        if len(self.waiting) < self.connections:  # the others' SETs may be on their way
            if self.timer is None:
                self.timer = self.loop.call_later(GROUP_WAIT_S, self.propose)
            return
        self.propose()

    def propose(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.in_flight or not self.queue:
            return
        items, waiting = self.queue, self.waiting
        self.queue, self.waiting = [], []
        self.in_flight = len(waiting)

        def applied(result: Any, error: Any) -> None:  # pysyncobj's tick thread
            self.loop.call_soon_threadsafe(self.answer, waiting, error)

        self.store.put_many(items, callback=applied)

    def answer(self, waiting: list[tuple[Conn, int]], error: Any) -> None:
        self.in_flight = 0
        reply = _OK if not error else b"-CLUSTERDOWN not committed\r\n"
        for conn, count in waiting:
            conn.transport.write(reply * count)
        self.maybe_propose()


class Conn(asyncio.Protocol):
    def __init__(self, front: Front) -> None:
        self.front = front
        self.reader = hiredis.Reader()
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.front.connections += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.front.connections -= 1

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        sets: list[tuple[bytes, bytes]] = []
        out: list[bytes] = []
        while (cmd := self.reader.gets()) is not False:
            name = cmd[0].lower()
            if name == b"set" and len(cmd) == 3:
                sets.append((cmd[1], cmd[2]))
            else:  # a floor: SETs and other commands on one connection are not ordered
                out.append(self._other(name, cmd))
        if out:
            self.transport.write(b"".join(out))
        if sets:
            self.front.queued(self, sets)

    def _other(self, name: bytes, cmd: list[bytes]) -> bytes:
        if name == b"get" and len(cmd) == 2:
            value = self.front.store.data.get(cmd[1])
            return b"$-1\r\n" if value is None else b"$%d\r\n%s\r\n" % (len(value), value)
        if name == b"role":  # the bench finds the leader with it
            return b"+master\r\n" if self.front.store._isLeader() else b"+slave\r\n"
        if name == b"ping":
            return b"+PONG\r\n"
        if name == b"client":  # redis-py's CLIENT SETINFO on connect
            return _OK
        # HELLO among them: redis-py then falls back to RESP2, which is what this speaks
        return b"-ERR unknown command (the raft floor serves SET, GET, PING and ROLE)\r\n"


async def serve(self_addr: str, peers: list[str], port: int) -> None:
    loop = asyncio.get_running_loop()
    store = Store(self_addr, peers)
    front = Front(store, loop)
    server = await loop.create_server(lambda: Conn(front), "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    self_addr, peers, port = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3])
    uvloop.run(serve(self_addr, peers, port))


if __name__ == "__main__":
    main()
