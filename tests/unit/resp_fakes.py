"""Fakes for driving a RESP `Connection` without sockets or consensus, for unit tests."""

from __future__ import annotations

import asyncio
from typing import Any

from raftcache.node.keyspace.reply import NULL_ARRAY, OK, ReplyT
from raftcache.node.proposer import QueuedCall, QueuedSets
from raftcache.node.resp.parser import ParserLimits
from raftcache.node.resp.server import Connection, RespServer
from raftcache.node.state_machine import SET_OK, Value
from raftcache.v1 import command_pb2


class FakeEngine:
    """A node whose writes commit when the test says so. As leader, writes go to `submit`
    and reads wait for `barrier` (both noted in `log`); as follower, `write`/`writes` park
    on a gate in `forwards` until the test sets it."""

    def __init__(self) -> None:
        self.leader = True
        self.data: dict[bytes, bytes] = {}
        self.log: list[str] = []
        self.submitted: list[tuple[list[bytes], int]] = []
        self.groups: list[int] = []  # the size of each QueuedSets submitted
        self.refuse: Exception | None = None  # submit raises it (an overloaded proposer)
        self.forward_replies: list[ReplyT] | None = None  # a follower's forwarded replies
        self.commit_index = 0  # what the Raft status says (WAIT's index)
        self.writes_: list[tuple[Any, asyncio.Future[Any]]] = []
        self.barriers: list[asyncio.Future[None]] = []
        self.forwarded: list[list[tuple[list[bytes], int]]] = []
        self.forwards: list[asyncio.Future[None]] = []
        self.multis: list[tuple[Any, dict[Any, int]]] = []
        self.published: list[tuple[bytes, bytes]] = []
        self.reads: list[tuple[bytes, bool]] = []
        self.local_read_error: Exception | None = None

    def is_leader(self) -> bool:
        return self.leader

    def for_user(self, name: str | None) -> FakeEngine:
        return self

    def script_user(self, argv: list[bytes]) -> str:
        return ""

    def submit(self, op: Any, waiter: Any = None, size: int = 0, weight: int = 0) -> Any:
        if self.refuse is not None:
            raise self.refuse
        future = waiter or asyncio.get_running_loop().create_future()
        if isinstance(op, QueuedSets):  # a pipeline's plain SETs: one write, a result each
            self.groups.append(len(op.argvs))
            ops = op.as_ops()
        else:
            ops = [op.as_op() if isinstance(op, QueuedCall) else op]
        for one in ops:
            call = one.data.op.call
            self.submitted.append((list(call.argv), call.db))
            self.log.append("submit " + call.argv[1].decode())
        self.writes_.append((ops if isinstance(op, QueuedSets) else ops[0], future))
        return future

    def barrier(self, waiter: Any = None) -> Any:
        future = waiter or asyncio.get_running_loop().create_future()
        self.barriers.append(future)
        self.log.append("barrier")
        return future

    def commit(self) -> None:
        """Apply every submitted write in order, then release every barrier."""
        for op, future in self.writes_:
            for one in op if isinstance(op, list) else [op]:
                argv = list(one.data.op.call.argv)
                if len(argv) > 2:
                    self.data[argv[1]] = argv[2]
            if isinstance(op, list):  # the answer set runs share (state_machine.SET_OK)
                future.set_result([SET_OK for _ in op])
            else:
                future.set_result(Value("reply", OK))
        self.writes_.clear()
        for barrier in self.barriers:
            barrier.set_result(None)
        self.barriers.clear()

    def read_local(self, argv: list[bytes], db: int, now_ms: int = 0) -> ReplyT:
        if self.local_read_error is not None:
            raise self.local_read_error
        if argv[0].lower() == b"exists":
            return int(argv[1] in self.data)
        return self.data.get(argv[1])

    def read_get(self, db: int, key: bytes) -> tuple[ReplyT, bool]:
        if self.local_read_error is not None:
            raise self.local_read_error
        return self.data.get(key), key in self.data

    async def versions(self, keys: list[bytes], db: int) -> list[int]:
        return [1 for _ in keys]

    def has_key(self, db: int, key: bytes) -> bool:
        return key in self.data

    def multi_now(self, calls: Any, watched: dict[Any, int]) -> Any:
        """As the leader: the transaction's entry queued now (noted in `log`)."""
        if not self.leader:
            return None  # multi() relays it
        self.log.append("exec")
        future = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    async def multi(self, calls: Any, watched: dict[Any, int], queued: Any = None) -> ReplyT:
        self.multis.append((calls, dict(watched)))
        return NULL_ARRAY if watched else [OK for _ in calls]

    async def publish(self, channel: bytes, message: bytes) -> int:
        self.published.append((channel, message))
        return 7

    # the follower path (Engine.write / Engine.writes)
    async def write(self, argv: list[bytes], db: int) -> ReplyT:
        return (await self.writes([(argv, db)]))[0]

    async def writes(self, calls: list[tuple[list[bytes], int]]) -> list[ReplyT]:
        if self.leader:  # as Engine.writes: the leader submits each
            futures = [self.submit(call_op(argv, db)) for argv, db in calls]
            return [(await f).data for f in futures]
        self.forwarded.append(calls)
        gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.forwards.append(gate)
        await gate
        if self.forward_replies is not None:
            return self.forward_replies
        return [OK for _ in calls]

    @property
    def view(self) -> Any:
        engine = self

        class Status:
            commit_index = engine.commit_index
            leader_commit_index = 0

        class Raft:
            def status(self) -> Any:
                return Status()

        class View:
            raft = Raft()

            def count_read(self, key: bytes, hit: bool) -> None:
                engine.reads.append((key, hit))

            def check_staleness(self, max_staleness_ms: int, bound: str, advice: str) -> None:
                """Always fresh enough."""

        return View()


def call_op(argv: list[bytes], db: int) -> command_pb2.Op:
    """A replicated op carrying one Redis call."""
    op = command_pb2.Op()
    op.data.op.call.argv.extend(argv)
    op.data.op.call.db = db
    return op


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.closed = False
        self.paused = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.out += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 5555)

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def get_write_buffer_size(self) -> int:
        return 0

    def abort(self) -> None:
        self.closed = True


class FakeStreams:
    def __init__(self) -> None:
        self.listens = 0

    def listen(self, sub: Any, channels: list[bytes], patterns: list[bytes]) -> None:
        self.listens += 1
        sub.channels.update(dict.fromkeys(channels))
        sub.patterns.update(dict.fromkeys(patterns))

    def unlisten(self, sub: Any, *_: Any) -> None:
        sub.channels.clear()
        sub.patterns.clear()

    def receivers(self, channel: bytes) -> int:
        return 7


def connect(
    engine: FakeEngine,
    streams: Any = None,
    limits: ParserLimits | None = None,
    admin: dict[bytes, Any] | None = None,
) -> tuple[Connection, FakeTransport]:
    server = RespServer(engine, streams, limits or ParserLimits(), admin or {}, None, 0)  # type: ignore[arg-type]
    conn = Connection(server, 1)
    transport = FakeTransport()
    conn.connection_made(transport)
    return conn, transport


def cmd(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%b\r\n" % (len(a), a) for a in args)


async def settle(turns: int = 20) -> None:
    """Let the event loop run `turns` times, so that ready callbacks and tasks go on."""
    for _ in range(turns):
        await asyncio.sleep(0)
