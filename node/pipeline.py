"""What every client front-end's connection shares (RESP in node/resp, memcached in
node/memcached): pipelined commands started at once, replies in request order, runs of
reads and writes that never overlap, follower write forwarding, and back-pressure.

A connection parses pipelined commands as they arrive and starts each at once, so that
commands from one pipeline and from many connections reach the proposer in the same loop
turn and share a log entry. Replies go out in request order (a queue of slots, each filled
with encoded bytes once its command answers). One rule keeps a pipeline's order visible: a
run of writes and a run of reads never overlap — when a connection switches between reading
and writing, the new run starts once the previous one has answered (so `GET; SET` never
reads the SET, and `SET; GET` always does, even through a follower).

A subclass says how a reply becomes bytes (`render`), what a local read answers
(`local_read`), and how errors are counted (`count_error`).
"""

from __future__ import annotations

import asyncio
import itertools
import ssl
import time
import weakref
from bisect import bisect_left
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, cast

import structlog
from raftcache.node import acl, errors
from raftcache.node.auth import Auth
from raftcache.node.command_stats import CommandStats
from raftcache.node.engine import READ_AT_CLUSTER_TIME, Engine, reply_of
from raftcache.node.keyspace.reply import OK, CommandError, Error, ReplyT
from raftcache.node.proposer import Callback, QueuedCall, QueuedSets, call_weight
from raftcache.node.resp.errors import error_reply
from raftcache.node.state_machine import SET_OK, Result

_log = structlog.get_logger("raftcache.frontend")

MAX_PENDING_REPLIES = 4096
"""A connection stops being read while this many replies are outstanding..."""
MAX_PENDING_BYTES = 64 << 20
"""...or while its commands in flight carry this many argument bytes."""
MAX_FORWARD_BYTES = 4 << 20
"""A follower forwards queued writes in requests of at most this many argument bytes."""
MAX_FORWARD_COMMANDS = 1000
"""...and at most this many commands."""


class Slot:
    """A reply owed: done once it holds its encoded bytes. `fmt` is what the protocol needs
    to render the reply (RESP: the protocol version in force when the command was sent;
    memcached: the command's reply form). Plain attributes, no future: a command costs no
    loop callback of its own (the connection flushes once per loop turn). `stats` is the
    command's metrics cell (None: not counted), `t0` when it started (its latency's start)."""

    __slots__ = ("data", "fmt", "run", "size", "stats", "t0")

    def __init__(self, fmt: Any, run: Run, stats: CommandStats | None = None) -> None:
        self.data: bytes | None = None
        self.fmt = fmt
        self.run = run
        self.size = 0  # argument bytes counted in the connection's pending bytes
        self.stats = stats
        self.t0 = time.perf_counter_ns() if stats is not None else 0


class Run:
    """Consecutive commands of one kind ("r", "w"; "x" runs alone): a run starts once every
    command of the runs before it has answered."""

    __slots__ = ("kind", "pending", "waiting")

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.pending = 0  # started or waiting commands not answered yet
        self.waiting: list[tuple[Callable[[Slot], None], Slot]] = []


class Flusher:
    """The connections of one event loop that owe a flush, flushed by ONE loop callback:
    an entry's answers (or a turn's leased reads) settle many connections at once, and a
    callback each cost the loop a scheduled handle per connection (node/DESIGN.md "What a
    Redis command costs")."""

    _by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Flusher] = (
        weakref.WeakKeyDictionary()
    )

    __slots__ = ("_loop", "_owing", "_scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # weakly: the registry's value must not keep its key (the loop) alive
        self._loop = weakref.ref(loop)
        self._owing: list[PipelinedConnection] = []
        self._scheduled = False

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> Flusher:
        flusher = cls._by_loop.get(loop)
        if flusher is None:
            flusher = cls._by_loop[loop] = cls(loop)
        return flusher

    def owe(self, conn: PipelinedConnection) -> None:
        """`conn` flushes on the next loop turn (unless it flushed itself by then)."""
        self._owing.append(conn)
        if not self._scheduled:
            loop = self._loop()
            if loop is None:
                return  # the loop is gone: nothing will run on it again
            self._scheduled = True
            loop.call_soon(self._run)

    def _run(self) -> None:
        self._scheduled = False
        owing, self._owing = self._owing, []
        for conn in owing:
            if not conn._flush_scheduled:
                continue  # flushed meanwhile (its data_received ended with a flush)
            try:
                conn._flush()
            except Exception:  # one connection's bug must not keep the others' replies
                _log.exception("flushing replies failed")


class FrontEndServer:
    """A front-end's listening socket and its open connections (`clients`, by id); a
    subclass says which connection class serves a client (`connection`) and its protocol's
    name (for the failure counts)."""

    protocol = ""

    def __init__(self) -> None:
        self.clients: dict[int, Any] = {}
        self.port = 0
        self._ids = itertools.count(1)
        self._servers: list[asyncio.AbstractServer] = []
        self.auth = Auth(lambda: (None, None))  # the node's users (set by the node)

    def tls_failed(self, exc: ssl.SSLError) -> None:
        """A client's TLS handshake failed on this port (plaintext, no or an untrusted
        client certificate under mTLS): counted; logged at most once per LOG_EVERY_S (the
        handshake does not know its peer)."""
        reason = getattr(exc, "reason", None) or str(exc)
        port = f"{self.protocol} TLS port"
        self.auth.failed(self.protocol, "tls", "", True, peer=port, error=reason)

    def connection(self, client_id: int) -> asyncio.Protocol:
        raise NotImplementedError

    async def start(self, address: str, ssl_context: ssl.SSLContext | None = None) -> None:
        """Listen on `address`; with `ssl_context`, TLS only (its chain may be reloaded).
        Called again, it listens on one more address (a plaintext port beside a TLS one):
        the connections of every listener share this server; `port` stays the first's."""
        host, _, port = address.rpartition(":")
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: self.connection(next(self._ids)),
            host.strip("[]"),
            int(port),
            reuse_address=True,
            backlog=1024,
            ssl=ssl_context,
        )
        if not self._servers:
            self.port = int(port)
        self._servers.append(server)

    async def stop(self) -> None:
        if not self._servers:
            return
        for server in self._servers:
            server.close()
        for conn in list(self.clients.values()):
            conn.close()
        for server in self._servers:
            await server.wait_closed()


class PipelinedConnection(asyncio.Protocol):
    """One client connection of a front-end (see the module docstring)."""

    max_staleness_ms = 0
    """The bound on local (stale) reads; a subclass sets it from its front-end's flag."""
    staleness_flag = ""
    """The flag that sets it, named in TooStale errors..."""
    staleness_advice = "read from the leader or another replica"
    """...with where else to read."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # who this connection is (node/auth.py): None until it authenticates, when the
        # default user needs a password; the users it was checked against, to notice changes
        self.user: acl.User | None = None
        self.user_name = "default"
        self._acl: acl.Acl | None = None
        self.transport: asyncio.Transport | None = None
        self.addr = ""
        self.laddr = ""
        self.last_write_index = 0  # a log index at or after this connection's last write
        self._slots: deque[Slot | bytes] = deque()
        self._flush_scheduled = False
        self._loop = asyncio.get_running_loop()
        self._flusher = Flusher.of(self._loop)
        self._reading_paused = False
        self._writing_paused = False
        self._closing = False
        self._close_when_flushed = False
        # runs of reads and runs of writes, oldest first; only the first has started
        self._runs: deque[Run] = deque()
        self._advancing = False
        # follower writes waiting to be forwarded (one request per batch): (argvs, db, slot,
        # grouped): one write, or a group of plain SETs answered in one slot (write_sets)
        self._forward_queue: list[tuple[list[list[bytes]], int, Slot, bool]] = []
        self._forwarding = False
        self._pending_bytes = 0  # argument bytes of large commands still in flight
        self._grouped = 0  # replies owed beyond their slots (a group's one slot for many)
        self._args_bytes = 0  # of the command being dispatched
        self._lost = False  # the peer is gone: start nothing more
        self._tasks: set[asyncio.Task[None]] = set()
        # the metrics cell of the command being dispatched (set by the protocol's dispatch)
        self.cmd: CommandStats | None = None
        # told of each write this leader queues (RESP: the blocked pops' Blocker.wrote)
        self.wakes: Callable[[list[bytes], int], None] | None = None

    # -- what a protocol provides --------------------------------------------------------

    def slot_fmt(self) -> Any:
        """The rendering form of the command being dispatched (stored in its slot)."""
        raise NotImplementedError

    def render(self, fmt: Any, reply: ReplyT) -> bytes:
        """A reply as this protocol's bytes."""
        raise NotImplementedError

    def count_error(self, reply: Error) -> None:
        """An error reply is about to be sent (for the front-end's statistics)."""

    def local_read(
        self, argv: list[bytes], db: int, key: bytes | None, now_ms: int = READ_AT_CLUSTER_TIME
    ) -> ReplyT:
        """A read-only command answered from this node's applied state (at `now_ms` if
        later than its cluster time: a leased read's clock)."""
        return self.answer_locally(argv, db, now_ms)

    # -- asyncio.Protocol --------------------------------------------------------------

    # -- users (node/auth.py) ---------------------------------------------------------------

    def authenticated(self, user: acl.User) -> None:
        """From now on this connection runs as `user`; its relayed calls name it."""
        self.user, self.user_name = user, user.name
        self.engine = self.engine.for_user(user.name)

    def users_changed(self, users: acl.Acl, close_at_once: bool) -> None:
        """The users changed: this connection's user gets its new rules; a deleted user's
        connection closes (as Redis does: at once, or after its pending replies); a default
        user without a password lets an unauthenticated connection in."""
        self._acl = users
        if self.user is not None:
            user = users.users.get(self.user_name)
            if user is None:
                self._closing = True
                self._close_when_flushed = True
                if close_at_once and self.transport is not None:
                    self.transport.close()
                return
            self.authenticated(user)
        elif users.open:
            self.authenticated(users.users["default"])

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername") or ("?", 0)
        sock = transport.get_extra_info("sockname") or ("?", 0)
        self.addr = f"{peer[0]}:{peer[1]}"
        self.laddr = f"{sock[0]}:{sock[1]}"

    def connection_lost(self, exc: Exception | None) -> None:
        # Writes already queued stay queued: the cluster applies them (or not) as for any
        # client that went away; nothing waits for this connection any more.
        self._closing = True
        self._lost = True
        self._slots.clear()
        self._runs.clear()
        for task in self._tasks:
            task.cancel()

    def pause_writing(self) -> None:
        self._writing_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._update_reading()

    def close(self) -> None:
        self._closing = True
        if self.transport is not None:
            self.transport.close()

    # -- replies -------------------------------------------------------------------------

    def _reply_now(self, data: bytes) -> None:
        self._slots.append(data)

    def _hold_flush(self) -> None:
        """The caller flushes when done (data_received, after its commands ran): replies
        settled meanwhile go out with that flush, without a loop callback each (a read
        answered from this node settles inside its dispatch)."""
        self._flush_scheduled = True

    def _end_read(self) -> None:
        """The end of data_received. Replies ready now (reads this node answered) go out on
        the next loop turn, with every other connection's, once the loop has read all the
        sockets ready in this one: each epoll wake-up then carries more requests, as the
        leased reads' replies do (node/DESIGN.md "Replies of a read batch"). Nothing ready
        (a write waiting for its entry) or a connection closing: flush now, which pauses or
        resumes reading as before."""
        slots = self._slots
        if (
            slots
            and not self._closing
            and (isinstance(head := slots[0], bytes) or head.data is not None)
        ):
            self._flush_scheduled = False
            self._schedule_flush()
            return
        self._flush()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._flusher.owe(self)

    def _flush(self) -> None:
        self._flush_scheduled = False
        slots = self._slots
        if slots and isinstance(head := slots[0], Slot) and head.data is None:
            # the oldest reply owed is not ready: nothing can go out yet (every write's
            # data_received ends here before its entry commits)
            self._update_reading()
            return
        out: bytes | bytearray = b""
        if len(slots) == 1:  # one reply owed (a client waiting for each answer): no copy
            head = slots.popleft()
            out = head if isinstance(head, bytes) else head.data  # type: ignore[assignment]
        elif slots:
            out = bytearray()
            while slots:
                head = slots[0]
                if isinstance(head, bytes):
                    out += head
                elif head.data is not None:
                    out += head.data
                else:
                    break
                slots.popleft()
        self._flushed(not slots)
        transport = self.transport
        if out and transport is not None and not transport.is_closing():
            transport.write(out if type(out) is bytes else bytes(out))
        if self._close_when_flushed and not slots and transport is not None:
            transport.close()
            return
        self._update_reading()

    def _flushed(self, empty: bool) -> None:
        """Called by each flush (empty: every owed reply went out)."""

    def _update_reading(self) -> None:
        if self.transport is None or self._closing:
            return
        busy = (
            self._writing_paused
            or len(self._slots) + self._grouped > MAX_PENDING_REPLIES
            or self._pending_bytes > MAX_PENDING_BYTES
        )
        if busy and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()
        elif (
            self._reading_paused
            and len(self._slots) + self._grouped < MAX_PENDING_REPLIES // 2
            and self._pending_bytes < MAX_PENDING_BYTES // 2
        ):
            self._reading_paused = False
            self.transport.resume_reading()

    def _settle(self, slot: Slot, reply: ReplyT) -> None:
        """A command answered: its slot is filled, its run counts down, output is flushed
        once this loop turn is done."""
        if slot.data is not None:
            return
        self._count(slot.stats, slot.t0, reply)
        self._fill(slot, self.render(slot.fmt, reply))

    def _settle_sets(
        self, slot: Slot, replies: list[ReplyT] | None, n: int, sent: bool = True
    ) -> None:
        """A group of `n` SETs answered (write_sets): their replies (None: all OK) fill its
        one slot, each counted as its command's would be. Once `sent` (not refused before
        it was queued), the log position reached is remembered for WAIT, as for one
        write."""
        if slot.data is not None:
            return
        if sent:
            self._wrote()
        self._grouped -= n - 1
        stats, t0, fmt = slot.stats, slot.t0, slot.fmt
        ok = self.render(fmt, OK)
        parts: list[bytes] = []
        oks = n if replies is None else 0
        for reply in replies or ():
            if reply is OK:
                oks += 1
                parts.append(ok)
            else:
                self._count(stats, t0, reply)
                parts.append(self.render(fmt, reply))
        if oks:
            self._count(stats, t0, OK, oks)
        self._fill(slot, ok * n if oks == n else b"".join(parts))

    def _fill(self, slot: Slot, data: bytes) -> None:
        """A slot's reply bytes are in: its run counts down, output is flushed once this
        loop turn is done."""
        slot.data = data
        if slot.size:
            self._pending_bytes -= slot.size
        run = slot.run
        run.pending -= 1
        if not run.pending and len(self._runs) > 1 and run is self._runs[0]:
            self._advance()
        self._schedule_flush()

    def _count(self, stats: CommandStats | None, t0: int, reply: ReplyT, n: int = 1) -> None:
        """An answered command's error and latency counters (`t0`: when it started), or those
        of `n` commands that answered `reply` together (a group of SETs)."""
        if isinstance(reply, Error):
            self.count_error(reply)
            if stats is not None:
                stats.count_error(reply)
        if stats is not None:  # Durations.observe_ns inlined: this runs for every command
            latency = stats.latency
            ns = time.perf_counter_ns() - t0
            latency.counts[bisect_left(latency.bounds_ns, ns)] += n
            latency.sum_ns += ns * n

    def _advance(self) -> None:
        """Start the next runs whose predecessors have all answered."""
        if self._advancing:
            return  # a command started below answered at once: the loop below goes on
        self._advancing = True
        try:
            runs = self._runs
            while len(runs) > 1 and not runs[0].pending:
                runs.popleft()
                head = runs[0]
                waiting, head.waiting = head.waiting, []
                if self._lost:
                    continue
                for start, slot in waiting:
                    start(slot)
        finally:
            self._advancing = False

    def _settle_write(self, slot: Slot, reply: ReplyT) -> None:
        """A write's reply; remembers the log position it reached, for WAIT."""
        self._wrote()
        self._settle(slot, reply)

    def _wrote(self) -> None:
        """A write of this connection answered: the log position it reached, for WAIT."""
        status = self.engine.view.raft.status()
        self.last_write_index = max(status.commit_index, status.leader_commit_index)

    # -- starting commands -------------------------------------------------------------------

    def run(self, kind: str, start: Callable[[Slot], None], counted: int = 0) -> None:
        """Start a read ("r") or write ("w") command once the previous run of the other kind
        has answered (module docstring). "x" (EXEC, PUBLISH, WATCH...: not queued on the
        proposer in this turn) runs alone: after everything before it, before everything
        after it. `counted`: argument bytes counted in the pending bytes whatever their
        size (a group of SETs, whose one slot stands for many replies)."""
        runs = self._runs
        tail = runs[-1] if runs else None
        if tail is None or tail.kind != kind or kind == "x":
            if tail is not None and not tail.pending and len(runs) == 1:
                runs.clear()  # everything before has answered
            tail = Run(kind)
            runs.append(tail)
        slot = Slot(self.slot_fmt(), tail, self.cmd)
        self._slots.append(slot)
        tail.pending += 1
        if counted or self._args_bytes > 4096:  # only large commands are worth the bookkeeping
            slot.size = counted or self._args_bytes
            self._pending_bytes += slot.size
        if tail is runs[0]:
            start(slot)
        else:
            tail.waiting.append((start, slot))

    def _spawn(self, coro: Awaitable[ReplyT], slot: Slot, write: bool = False) -> None:
        """Run a command's coroutine; its reply (or error) settles the slot. A task still
        running when the peer goes away is cancelled."""

        async def runner() -> None:
            try:
                reply = await coro
            except errors.CacheError as exc:
                reply = error_reply(exc)
            except CommandError as exc:
                reply = Error(exc.text)
            except Exception as exc:  # a bug must answer, not hang the pipeline
                _log.exception("command failed")
                reply = internal_error(exc, write)
            if write:
                self._settle_write(slot, reply)
            else:
                self._settle(slot, reply)

        self._track(runner())

    def _track(self, coro: Any) -> None:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- command paths ---------------------------------------------------------------------

    def write(self, argv: list[bytes], db: int) -> None:
        """Start a replicated write (in the connection's order)."""
        self.run("w", lambda slot: self._write(argv, db, slot))

    def write_sets(self, argvs: list[list[bytes]], db: int, size: int) -> None:
        """Start plain `SET key value` calls (one or more, `size` argument bytes, in the
        connection's order) as ONE write whose ONE slot holds their replies (node/DESIGN.md
        "Pipelined SETs as one write"). The caller counted them and checked what dispatch
        checks for a plain SET."""
        self._grouped += len(argvs) - 1
        self.run("w", lambda slot: self._write_sets(argvs, db, slot), counted=size)

    def _write_sets(self, argvs: list[list[bytes]], db: int, slot: Slot) -> None:
        engine = self.engine
        if engine.is_leader() and not self._forwarding:  # as _write
            n = len(argvs)

            def done(results: list[Result] | None, error: BaseException | None) -> None:
                if results is None:
                    self._settle_sets(slot, [write_reply(None, error)] * n, n)
                elif results.count(SET_OK) == n:  # identity first: the shared answer
                    self._settle_sets(slot, None, n)
                else:
                    self._settle_sets(slot, [write_reply(r, None) for r in results], n)

            try:
                engine.submit(QueuedSets(argvs, db, slot.size), Callback(done), slot.size, n)
            except errors.CacheError as exc:  # refused: nothing was queued (as in _write)
                self._settle_sets(slot, [error_reply(exc)] * n, n, sent=False)
            return
        self._forward(argvs, db, slot, True)

    def read(self, argv: list[bytes], db: int, key: bytes | None, stale: bool) -> None:
        """Start a read: linearizable, or from this node within the staleness bound."""
        if stale:
            if self._read_now(argv, db, key):
                return
            self.run("r", lambda slot: self._stale_read(argv, db, key, slot))
        else:
            self.run("r", lambda slot: self._read(argv, db, key, slot))

    def _write(self, argv: list[bytes], db: int, slot: Slot) -> None:
        engine = self.engine
        # While earlier writes are still being forwarded (this node was a follower), later
        # ones queue behind them, or they could commit first once this node leads.
        if engine.is_leader() and not self._forwarding:

            def done(result: Result | None, error: BaseException | None) -> None:
                self._settle_write(slot, write_reply(result, error))

            try:
                call = QueuedCall(argv, db, engine.script_user(argv))  # built in the entry
                engine.submit(call, Callback(done), self._args_bytes or 64, call_weight(argv))
            except errors.CacheError as exc:
                self._settle(slot, error_reply(exc))
                return
            if self.wakes is not None:
                self.wakes(argv, db)
            return
        self._forward([argv], db, slot, False)

    def _forward(self, argvs: list[list[bytes]], db: int, slot: Slot, grouped: bool) -> None:
        self._forward_queue.append((argvs, db, slot, grouped))
        if not self._forwarding:
            self._forwarding = True
            self._track(self._forward_writes())

    async def _forward_writes(self) -> None:
        """A follower forwards queued writes in order, as few requests as possible."""
        try:
            while self._forward_queue:
                batch = self._take_forward_batch()
                calls = [(argv, db) for argvs, db, _, _ in batch for argv in argvs]
                try:
                    if len(calls) == 1:
                        replies = [await self.engine.write(*calls[0])]
                    else:
                        replies = await self.engine.writes(calls)
                except errors.CacheError as exc:
                    replies = [error_reply(exc)] * len(calls)
                except Exception as exc:
                    _log.exception("forwarding failed")
                    replies = [internal_error(exc, write=True)] * len(calls)
                if len(replies) != len(calls):  # a bug must answer, not hang the pipeline
                    bug = ValueError(f"{len(calls)} writes forwarded, {len(replies)} replies")
                    replies = [internal_error(bug, write=True)] * len(calls)
                at = 0
                for argvs, _, slot, grouped in batch:
                    if grouped:
                        self._settle_sets(slot, replies[at : at + len(argvs)], len(argvs))
                    else:
                        self._settle_write(slot, replies[at])
                    at += len(argvs)
        finally:
            self._forwarding = False

    def _take_forward_batch(self) -> list[tuple[list[list[bytes]], int, Slot, bool]]:
        """The next writes to forward in one request: at most MAX_FORWARD_COMMANDS, and no
        more argument bytes than MAX_FORWARD_BYTES (a single larger write, or group, goes
        alone)."""
        queue = self._forward_queue
        size = 0
        commands = 0
        count = 0
        for argvs, _db, _slot, _grouped in queue[:MAX_FORWARD_COMMANDS]:
            size += sum(len(arg) for argv in argvs for arg in argv)
            commands += len(argvs)
            if count and (size > MAX_FORWARD_BYTES or commands > MAX_FORWARD_COMMANDS):
                break
            count += 1
        batch, self._forward_queue = queue[:count], queue[count:]
        return batch

    def _read(self, argv: list[bytes], db: int, key: bytes | None, slot: Slot) -> None:
        engine = self.engine
        if engine.is_leader():

            def done(result: int | None, error: BaseException | None) -> None:
                if error is None:
                    reply = self.local_read(argv, db, key, result or READ_AT_CLUSTER_TIME)
                elif isinstance(error, errors.CacheError):
                    reply = error_reply(error)
                else:
                    reply = internal_error(error, write=False)
                self._settle(slot, reply)

            try:
                engine.barrier(Callback(done))
            except errors.CacheError as exc:
                self._settle(slot, error_reply(exc))
            return
        self._spawn(self.forwarded_read(argv, db, key), slot)

    async def forwarded_read(self, argv: list[bytes], db: int, key: bytes | None) -> ReplyT:
        """A linearizable read a follower asks the leader for."""
        return await self.engine.read(argv, db)

    def _read_now(self, argv: list[bytes], db: int, key: bytes | None) -> bool:
        """A read from this node answered at once when nothing before it is owed and this
        node is within the staleness bound: its reply is queued as bytes, with no slot, run
        or callback (the commonest request of a read replica). False: `run` it (a write
        before it still owed, or the bound's error to answer)."""
        runs = self._runs
        if runs and (len(runs) > 1 or runs[0].pending):
            return False
        try:
            self.engine.view.check_staleness(
                self.max_staleness_ms, self.staleness_flag, self.staleness_advice
            )
        except errors.CacheError:
            return False
        t0 = time.perf_counter_ns()
        reply = self.local_read(argv, db, key)
        self._count(self.cmd, t0, reply)
        self._slots.append(self.render(self.slot_fmt(), reply))
        return True

    def _stale_read(self, argv: list[bytes], db: int, key: bytes | None, slot: Slot) -> None:
        try:
            self.engine.view.check_staleness(
                self.max_staleness_ms,
                self.staleness_flag,
                self.staleness_advice,
            )
        except errors.CacheError as exc:
            self._settle(slot, error_reply(exc))
            return
        self._settle(slot, self.local_read(argv, db, key))

    def answer_locally(
        self, argv: list[bytes], db: int, now_ms: int = READ_AT_CLUSTER_TIME
    ) -> ReplyT:
        """A read on this node's applied state; errors and bugs become error replies."""
        try:
            return self.engine.read_local(argv, db, now_ms)
        except Exception as exc:
            return self._read_failed(exc, argv[0])

    def answer_get(self, db: int, key: bytes) -> tuple[ReplyT, bool]:
        """GET on this node's applied state and whether the key exists (Engine.read_get);
        errors and bugs become error replies, as in answer_locally."""
        try:
            return self.engine.read_get(db, key)
        except Exception as exc:
            return self._read_failed(exc, b"get"), False

    def _read_failed(self, exc: Exception, name: bytes) -> ReplyT:
        if isinstance(exc, errors.CacheError):
            return error_reply(exc)
        # a bug must answer, not hang the pipeline
        _log.exception("read failed", command=name.decode("latin-1"), exc_info=exc)
        return internal_error(exc, write=False)


def internal_error(exc: BaseException, write: bool) -> Error:
    """A bug's answer: a write that may have been sent is of unknown outcome."""
    what = f"{type(exc).__name__}: {exc}"
    if write:
        return error_reply(errors.OutcomeUnknown(f"an internal error after sending ({what})"))
    return Error(f"ERR internal error: {what}")


def write_reply(result: Result | None, error: BaseException | None) -> ReplyT:
    """A replicated write's reply from its proposal's outcome."""
    if error is not None:
        if isinstance(error, errors.CacheError):
            return error_reply(error)
        return internal_error(error, write=True)
    try:
        return reply_of(result)  # type: ignore[arg-type]
    except errors.CacheError as failure:
        return error_reply(failure)
    except Exception as bug:
        return internal_error(bug, write=True)
