"""The Redis front-end: an asyncio Protocol per connection on the node's loop.

Pipelining, reply order, runs of reads and writes, forwarding and back-pressure are the
same for every front-end (node/pipeline.py); this module is RESP's commands and state:
databases, MULTI/EXEC, WATCH, pub/sub, client bookkeeping.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from raftcache.node import acl, errors
from raftcache.node.auth import AclLog, channels_of, penalty_s
from raftcache.node.blocking import Blocker
from raftcache.node.command_stats import ProtocolStats
from raftcache.node.engine import READ_AT_CLUSTER_TIME, Engine
from raftcache.node.keyspace import dispatch
from raftcache.node.keyspace.args import parse_int
from raftcache.node.keyspace.blocking import is_blocking, waits_on
from raftcache.node.keyspace.db import DATABASES, DB_PREFIX, db_key
from raftcache.node.keyspace.reply import (
    NULL_ARRAY,
    OK,
    QUEUED,
    CommandError,
    Error,
    Map,
    ReplyT,
    Status,
    unknown_command,
    wrong_arity,
)
from raftcache.node.pipeline import (
    MAX_FORWARD_BYTES,
    MAX_FORWARD_COMMANDS,
    FrontEndServer,
    PipelinedConnection,
    Slot,
)
from raftcache.node.resp import encoder
from raftcache.node.resp.errors import error_reply
from raftcache.node.resp.parser import Parser, ParserLimits
from raftcache.node.resp.redis_meta import META
from raftcache.node.state_machine import Result
from raftcache.v1 import cache_pb2

_log = structlog.get_logger("raftcache.resp")

REDIS_VERSION = "7.0.15"
"""The Redis version we answer as (RQ and others pick commands by it)."""

MAX_OUTPUT_BYTES = 32 << 20
"""A subscriber whose unsent output passes this is disconnected (Redis's pubsub hard limit)."""
_SUBSCRIBED_OK = frozenset(
    b"subscribe unsubscribe psubscribe punsubscribe ssubscribe sunsubscribe ping quit reset".split()
)


@dataclass
class Stats:
    """Counters for INFO (this node's connections only)."""

    started: float = field(default_factory=time.time)
    connections_received: int = 0
    commands_processed: int = 0
    error_replies: int = 0
    keyspace_hits: int = 0
    keyspace_misses: int = 0
    rejected_connections: int = 0
    error_codes: dict[str, int] = field(default_factory=dict)  # INFO errorstats
    calls: dict[bytes, int] = field(default_factory=dict)  # INFO commandstats

    def count_call(self, name: bytes, n: int = 1) -> None:
        """A command received, or `n` (at most 1,024 distinct names are counted by name)."""
        self.commands_processed += n
        if name in self.calls or len(self.calls) < 1024:
            self.calls[name] = self.calls.get(name, 0) + n

    def count_error(self, text: str) -> None:
        """An error reply: counted in total and by its code (the first word), like Redis,
        which tracks at most 128 distinct codes."""
        self.error_replies += 1
        code = text.split(" ", 1)[0]
        if code in self.error_codes or len(self.error_codes) < 128:
            self.error_codes[code] = self.error_codes.get(code, 0) + 1


def command_family(name: bytes) -> tuple[str, str]:
    """A Redis command's metrics labels: Redis's own group and read/write/other."""
    meta = META.get(name.decode("latin-1"))
    if meta is None:
        return ("unknown", "other")
    flags = meta["flags"]
    kind = "write" if "write" in flags else "read" if "readonly" in flags else "other"
    return (meta["group"], kind)


class Subscriber:
    """A connection's subscriptions, registered in node/streams.py (it calls `push`)."""

    __slots__ = ("channels", "conn", "patterns")

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.channels: dict[bytes, None] = {}
        self.patterns: dict[bytes, None] = {}

    def push(self, message: cache_pb2.PubSubMessage, size: int) -> None:
        self.conn.deliver(message)


Handler = Callable[["Connection", list[bytes]], Any]


_SILENT = -1
"""The rendering form of a reply CLIENT REPLY OFF or SKIP drops."""

MAX_MULTI_COMMANDS = 10_000
"""Commands one MULTI may queue (a transaction is one log entry)."""


class RespServer(FrontEndServer):
    """Owns the listening socket, the connections and the front-end's counters."""

    protocol = "redis"

    def __init__(
        self,
        engine: Engine,
        streams: Any,
        limits: ParserLimits,
        admin: dict[bytes, Handler],
        info: Any,
        max_staleness_ms: int,
        max_key_bytes: int = 64 << 10,
        max_txn_bytes: int = 16 << 20,
        replica_reads: bool = False,
    ) -> None:
        super().__init__()
        self.max_key_bytes = max_key_bytes
        self.max_txn_bytes = max_txn_bytes  # a MULTI's queued bytes (one log entry)
        self.engine = engine
        self.streams = streams
        self.limits = limits
        self.admin = admin
        self.info = info  # node facts for INFO, CLUSTER, SENTINEL (node/resp/admin.py)
        self.max_staleness_ms = max_staleness_ms
        # --redis-replica-reads: connections start (and RESET back) in READONLY mode
        self.replica_reads = replica_reads
        self.stats = Stats()
        self.commands = ProtocolStats("redis", command_family)  # for node/metrics.py
        self.blocker: Blocker | None = None  # the node's parked blocking pops
        self.clients: dict[int, Connection] = {}
        self.acl_log = AclLog()

    def connection(self, client_id: int) -> Connection:
        return Connection(self, client_id)


class Connection(PipelinedConnection):
    """One client: its parser, reply slots, database, MULTI queue, watches, subscriptions."""

    staleness_flag = "--redis-max-staleness-ms"
    staleness_advice = "read from the leader (READWRITE) or another replica"

    def __init__(self, server: RespServer, client_id: int) -> None:
        super().__init__(server.engine)
        self.server = server
        if server.blocker is not None:
            self.wakes = server.blocker.wrote
        self.id = client_id
        self.parser = Parser(server.limits)
        self.created = time.time()
        self.last_command = time.time()
        self.last_name = b""
        self.name = b""
        self.lib_name = b""
        self.lib_ver = b""
        self.max_staleness_ms = server.max_staleness_ms
        self.reset_state()
        # WATCHed (db, key) -> version; changed only in the connection's order (run "x")
        self.watched: dict[tuple[int, bytes], int] = {}
        self._push_backlog = 0  # bytes of pushed messages not yet written
        # the blocking command this connection waits in (CLIENT UNBLOCK resolves it early)
        self.blocked: asyncio.Future[ReplyT | None] | None = None
        self.auth_failures = 0
        self._failure_logged = False
        # While a failed AUTH waits out its penalty, later commands wait too (held here,
        # reading paused): a pipeline of guesses gets no faster than guesses one by one.
        self._holding = False
        self._held: deque[list[bytes]] = deque()

    def reset_state(self) -> None:
        self.proto = 2
        # CLIENT REPLY: ON (0), OFF (1) or SKIP (2: the next command's reply only). `silent`
        # is the command being dispatched: its reply is dropped (pushes still go out).
        self.reply_mode = 0
        self.silent = False
        self.db = 0
        self.readonly = self.server.replica_reads
        self.multi: list[tuple[list[bytes], int] | bytes] | None = None
        self.multi_error = False
        self.multi_db = 0  # the database when MULTI began (DISCARD goes back to it)
        self.multi_bytes = 0
        self.sub: Subscriber | None = None

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.server.clients[self.id] = self
        self.server.stats.connections_received += 1
        self.users_changed(self.server.auth.acl(), close_at_once=False)  # default if open

    # -- users ---------------------------------------------------------------------------

    def permitted(self, name: bytes, argv: list[bytes]) -> bool:
        """Whether this connection may run argv now; if not, its error is queued."""
        users = self.server.auth.acl()
        if users is not self._acl:
            self.users_changed(users, close_at_once=True)
            if self._closing:
                return False
        user = self.user
        if user is not None and user.unrestricted:  # the commonest case, checked first
            return True
        if name in _NO_AUTH:
            return True
        if user is None:
            error = acl.NOAUTH
        else:
            # channels_of finds none outside the pub/sub commands: not called for the rest
            channels = channels_of(argv, name) if name in acl.CHANNEL_COMMANDS else ()
            denied = user.denial(argv, channels)
            if denied is None:
                return True
            error = acl.noperm_text(denied)
            self._refused(denied, name)
        if self.multi is not None:
            self.multi_error = True
        self.reply(Error(error))
        return False

    def recheck_queued(
        self, queued: list[tuple[list[bytes], int] | bytes]
    ) -> list[tuple[list[bytes], int] | bytes]:
        """EXEC checks each queued call again, as Redis does: rules changed since it was
        queued refuse it in EXEC's array (the others still run); nothing else changes."""
        user = self.user
        if user is None or user.unrestricted:
            return queued
        out: list[tuple[list[bytes], int] | bytes] = []
        for q in queued:
            if isinstance(q, tuple):
                argv = q[0]
                denied = user.denial(argv, channels_of(argv))
                if denied is not None:
                    self._refused(denied, argv[0].lower(), context="multi")
                    q = self.encode(Error(acl.noperm_at_exec(denied)))
            out.append(q)
        return out

    def _refused(self, denied: tuple[str, str], name: bytes, context: str = "toplevel") -> None:
        """A command the user's rules refuse: counted, logged once per connection, and kept
        in ACL LOG (`context` "multi": refused at EXEC)."""
        self.server.auth.failed(
            "redis",
            "perm",
            self.user_name,
            not self._failure_logged,
            command=name.decode("latin-1"),
        )
        self._failure_logged = True
        self.server.acl_log.add(denied[0], denied[1], self.user_name, self.describe(), context)

    def describe(self) -> str:
        """This connection's CLIENT LIST line (for ACL LOG)."""
        from raftcache.node.resp.clients import client_line, info_of

        return client_line(info_of(self, time.time()))

    def check_auth(self, name: str, password: bytes) -> acl.User | None:
        """AUTH's check; a failure is counted, logged once per connection, and slows this
        connection's later failures down."""
        user = self.server.auth.acl().authenticate(name, password)
        if user is None:
            self.auth_failures += 1
            self.server.auth.failed("redis", "auth", name, not self._failure_logged)
            self._failure_logged = True
            obj = self.last_name.decode("latin-1").upper()
            self.server.acl_log.add("auth", obj, name, self.describe())
        return user

    def refuse_auth(self) -> None:
        """WRONGPASS, after this connection's penalty (brute force gets slow); nothing this
        connection sent after it runs before it is answered."""
        delay = penalty_s(self.auth_failures)
        if not delay:
            self.reply(Error(acl.WRONGPASS))
            return
        self._holding = True
        if self.multi is not None:
            # Queued in a MULTI (answered now into EXEC's array, which takes bytes only):
            # the reply goes there at once, the connection waits out the penalty all the same.
            self.reply(Error(acl.WRONGPASS))
            self._loop.call_later(delay, self._end_hold)
            return

        async def later() -> ReplyT:
            try:
                await asyncio.sleep(delay)
            finally:
                self._end_hold()
            return Error(acl.WRONGPASS)

        self.run("x", lambda slot: self._spawn(later(), slot))

    def _end_hold(self) -> None:
        self._holding = False
        self._loop.call_soon(self._release_held)

    def _release_held(self) -> None:
        held = self._held
        while held and not self._holding and not self._closing:
            self.dispatch(held.popleft())
        self.data_received(b"")  # a protocol error after them, the flush, reading again

    def _update_reading(self) -> None:
        if self._holding:  # nothing more is read until the failed AUTH answers
            if not self._reading_paused and self.transport is not None and not self._closing:
                self._reading_paused = True
                self.transport.pause_reading()
            return
        super()._update_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.server.clients.pop(self.id, None)
        self._unsubscribe_all()

    def data_received(self, data: bytes) -> None:
        parser = self.parser
        self._hold_flush()
        try:
            # Plain `SET key value` calls in a row go as one write (write_sets) while this
            # connection's state lets every one of them past dispatch's checks. The first is
            # held until the next command: whether they may be grouped is asked when a second
            # one comes, or by _write_group for a lone one (a read holding no SET pays
            # nothing for it).
            sets: list[list[bytes]] = []
            size = 0  # their argument bytes
            grouping: bool | None = None  # not asked since the last dispatch
            checked: acl.User | None = None  # a restricted user: each SET's key is checked
            max_key = self.server.max_key_bytes
            for argv in parser.parse(data):
                if self._closing:
                    break
                if self._holding or self._held:  # behind a failed AUTH's penalty
                    self._held.append(argv)
                    continue
                if (
                    len(argv) == 3
                    and argv[0] in _SET_NAMES
                    and len(key := argv[1]) <= max_key
                    and key[:5] != DB_PREFIX
                ):
                    if sets and grouping is None:
                        grouping, checked = self._grouping(sets[0])
                    if not sets or (grouping and (checked is None or checked.denial(argv) is None)):
                        more = 3 + len(key) + len(argv[2])
                        if sets and (len(sets) >= MAX_SET_GROUP or size + more > MAX_FORWARD_BYTES):
                            self._write_group(sets, size, grouping)  # never dispatches
                            sets, size = [], 0
                        sets.append(argv)
                        size += more
                        continue
                if sets:
                    self._write_group(sets, size, grouping)
                    sets, size = [], 0
                    if self._closing:  # a held SET's dispatch found its user deleted
                        break
                self.dispatch(argv)
                grouping = None
            if sets and not self._closing:
                self._write_group(sets, size, grouping)
            if parser.error is not None and not self._closing and not self._held:
                # Commands before the bad input are answered; then this connection ends.
                self.server.stats.count_error("ERR")
                self._slots.append(encoder.encoded(Error(f"ERR Protocol error: {parser.error}"), 2))
                self._closing = True
                self._close_when_flushed = True
        finally:
            self._end_read()

    def _grouping(self, first: list[bytes]) -> tuple[bool, acl.User | None]:
        """Whether plain SETs, `first` the earliest, may go as one write (write_sets) now:
        every check dispatch makes for them would pass (no MULTI, no CLIENT REPLY OFF or
        SKIP, not subscribed, a user under the node's current users who may run `first`).
        The user is returned when its rules are restricted: each later SET's key is then
        checked before it joins (User.denial's fast plan: issue 14's users cost a grouped
        SET nothing more than that check); None when anything goes."""
        user = self.user
        if not (
            user is not None
            and self.reply_mode == 0
            and self.multi is None
            and self.sub is None
            and self.server.auth.acl() is self._acl
        ):
            return False, None
        if user.unrestricted:
            return True, None
        return user.denial(first) is None, user

    def _write_group(self, sets: list[list[bytes]], size: int, grouping: bool | None) -> None:
        """Plain SETs read in a row (`size` argument bytes): counted as dispatch counts
        each, started as one write. A lone one goes the same way whenever dispatch's checks
        would all pass for it (`_grouping`, asked here unless data_received has its answer
        in `grouping`), which skips their cost and the QueuedCall's (an unpipelined SET:
        leader -4% CPU, +5% SET/s at 64 clients, node/DESIGN.md "Pipelined SETs as one
        write"); otherwise dispatch answers it. Two or more are only ever held when the
        answer was yes and each one's key passed."""
        if len(sets) == 1 and not (self._grouping(sets[0])[0] if grouping is None else grouping):
            self.dispatch(sets[0])
            return
        n = len(sets)
        self.server.stats.count_call(b"set", n)
        commands = self.server.commands
        self.cmd = cmd = commands.by_name.get(b"set") or commands.for_name(b"set")
        cmd.calls += n
        self.last_name = b"set"
        self.last_command = time.time()
        self.silent = False
        self._args_bytes = size
        self.write_sets(sets, self.db, size)

    # -- replies (PipelinedConnection's hooks) ------------------------------------------

    def slot_fmt(self) -> int:
        return _SILENT if self.silent else self.proto

    def render(self, fmt: int, reply: ReplyT) -> bytes:
        if fmt == _SILENT:
            return b""
        return encoder.encoded(reply, fmt)

    def count_error(self, reply: Error) -> None:
        self.server.stats.count_error(reply)

    def _flushed(self, empty: bool) -> None:
        if empty:
            self._push_backlog = 0

    def reply(self, reply: ReplyT) -> None:
        if isinstance(reply, Error):
            self.server.stats.count_error(reply)
            if self.cmd is not None:
                self.cmd.count_error(reply)
        if not self.silent:
            self._slots.append(encoder.encoded(reply, self.proto))

    def encode(self, reply: ReplyT) -> bytes:
        if isinstance(reply, Error):
            self.server.stats.count_error(reply)
        return encoder.encoded(reply, self.proto)

    # -- dispatch --------------------------------------------------------------------------

    def dispatch(self, argv: list[bytes]) -> None:
        """Start one command; its reply takes the next slot."""
        if not argv:
            return
        self.silent = silent = self.reply_mode != 0
        if silent and self.reply_mode == 2:
            self.reply_mode = 0  # SKIP silences one command
        self.last_command = time.time()
        self._args_bytes = sum(map(len, argv)) if len(argv) > 2 else 0
        name = argv[0].lower()
        self.server.stats.count_call(name)
        commands = self.server.commands
        self.cmd = cmd = commands.by_name.get(name) or commands.for_name(name)
        cmd.calls += 1
        self.last_name = name
        if not self.permitted(name, argv):
            return
        if self.sub is not None and self.proto == 2 and name not in _SUBSCRIBED_OK:
            self.reply(
                Error(
                    f"ERR Can't execute '{name.decode('utf-8', 'replace')}': only (P|S)SUBSCRIBE "
                    "/ (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
                )
            )
            return
        # The commonest write, and a replica's commonest read, past the checks they cannot
        # fail once the key is within --max-key-bytes and not reserved (node/DESIGN.md).
        plain_set = name == b"set" and len(argv) == 3
        if (plain_set or (name == b"get" and len(argv) == 2 and self.readonly)) and (
            self.multi is None
            and len(lane_key := argv[1]) <= self.server.max_key_bytes
            and lane_key[:5] != DB_PREFIX
        ):
            if plain_set:
                self.write(argv, self.db)
                return
            if not self.engine.is_leader():
                self.read(argv, self.db, lane_key, stale=True)  # at once if nothing is owed
                return
        local = _LOCAL.get(name)
        if local is not None and not (self.multi is not None and name == b"publish"):
            if self.multi is not None and name not in _NOT_QUEUED:
                self._queue_local(local, argv)
                return
            local(self, argv)
            return
        admin = self.server.admin.get(name)
        if admin is not None:
            if self.multi is not None:
                if name in _NO_MULTI:
                    self.multi_error = True
                    self.reply(Error("ERR Command not allowed inside a transaction"))
                    return
                self._queue_local(admin, argv)
                return
            self._run_admin(admin, argv)
            return
        try:
            if name.startswith(b"raftcache."):  # the nodes' own plumbing, never a client's
                raise CommandError(unknown_command(argv))
            spec = dispatch.validate(argv)
            self._check_sizes(spec, argv)
            if self.multi is not None:
                self._queue(argv)
                return
        except CommandError as exc:
            if self.multi is not None:
                self.multi_error = True
            self.reply(Error(exc.text))
            return
        db = self.db
        if self.server.blocker is not None and is_blocking(argv, name):
            self.run("x", lambda slot: self._start_block(argv, db, slot))
            return
        if spec.write:
            self.write(argv, db)
            return
        key = argv[spec.first_key] if 0 < spec.first_key < len(argv) else None
        self.read(argv, db, key, stale=self.readonly and not self.engine.is_leader())

    def _check_sizes(self, spec: Any, argv: list[bytes]) -> None:
        """--max-key-bytes for key arguments (values are bounded by the parser)."""
        limit = self.server.max_key_bytes
        for key in spec.keys(argv):  # a loop, not any(generator): this runs per command
            if len(key) > limit:
                raise CommandError(
                    f"ERR a key is over the limit of {limit} bytes (--max-key-bytes): "
                    "use a shorter key"
                )

    def _queue(self, argv: list[bytes]) -> None:
        """A command inside MULTI: queued for EXEC, within the transaction's bounds."""
        assert self.multi is not None
        self.multi_bytes += sum(map(len, argv))
        if len(self.multi) >= MAX_MULTI_COMMANDS or self.multi_bytes > self.server.max_txn_bytes:
            raise CommandError(
                f"ERR this transaction is over {MAX_MULTI_COMMANDS} commands or "
                f"{self.server.max_txn_bytes} bytes (it is one log entry): split it"
            )
        self.multi.append((argv, self.db))
        self.reply(QUEUED)

    def _queue_local(self, handler: Handler, argv: list[bytes]) -> None:
        """A front-end command inside MULTI: answered now, its reply placed in EXEC's array."""
        saved = self._slots
        self._slots = deque()
        try:
            result = handler(self, argv)
            if asyncio.iscoroutine(result):
                result.close()
                reply: ReplyT = Error("ERR this command is not allowed inside MULTI")
                self._slots.append(self.encode(reply))
        finally:
            captured, self._slots = self._slots, saved
        assert self.multi is not None
        self.multi.append(b"".join(x for x in captured if isinstance(x, bytes)))
        self.reply(QUEUED)

    def _run_admin(self, handler: Handler, argv: list[bytes]) -> None:
        result = handler(self, argv)
        if asyncio.iscoroutine(result):
            self.run("x", lambda slot: self._spawn(result, slot))

    # -- command paths ---------------------------------------------------------------------

    def _start_block(self, argv: list[bytes], db: int, slot: Slot) -> None:
        """A leader parks the call and proposes its first attempt in this turn; a follower
        relays it (node/blocking.py)."""
        blocker = self.server.blocker
        assert blocker is not None
        parked: Any = None
        if self.engine.is_leader():
            try:
                parked = blocker.start(argv, db)
            except errors.CacheError as exc:
                self._settle(slot, error_reply(exc))
                return
            except CommandError as exc:
                self._settle(slot, Error(exc.text))
                return
        self._spawn(self._block(argv, db, parked), slot, write=True)

    async def _block(self, argv: list[bytes], db: int, parked: Any = None) -> ReplyT:
        """A blocking pop (node/blocking.py): the reply, unless CLIENT UNBLOCK ends it first
        (then Redis's timeout reply, or its UNBLOCKED error). A leader change while blocked
        drops the connection instead of answering (as a Sentinel failover kills the old
        master's clients): redis-py, Celery and RQ reconnect and retry on a lost
        connection, but treat an error reply to BRPOP as final."""
        assert self.server.blocker is not None
        blocker = self.server.blocker
        waiting = (
            blocker.call(argv, db, engine=self.engine) if parked is None else blocker.wait(parked)
        )
        call = asyncio.ensure_future(waiting)
        self.blocked = unblocked = self._loop.create_future()
        try:
            await asyncio.wait((call, unblocked), return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.blocked = None
            if not call.done():
                call.cancel()  # the leader drops the waiter (and undoes a pop in flight)
        if call.done() and not call.cancelled():
            try:
                reply = call.result()
            except (errors.NoLeader, errors.NotLeader, errors.OutcomeUnknown):
                self._drop_for_failover()
                raise
            if isinstance(reply, Error) and str(reply).startswith(("CLUSTERDOWN", "UNKNOWN")):
                self._drop_for_failover()
            return reply
        reply = unblocked.result()
        return waits_on(argv)[2] if reply is None else reply

    def _drop_for_failover(self) -> None:
        _log.info("leader changed under a blocked client: closing its connection", client=self.addr)
        self._closing = True
        self._lost = True
        if self.transport is not None:
            self.transport.abort()

    def unblock(self, reply: ReplyT | None) -> None:
        """CLIENT UNBLOCK: end the blocking command with `reply` (None: as if timed out)."""
        if self.blocked is not None and not self.blocked.done():
            self.blocked.set_result(reply)

    def local_read(
        self, argv: list[bytes], db: int, key: bytes | None, now_ms: int = READ_AT_CLUSTER_TIME
    ) -> ReplyT:
        if key is not None and len(argv) == 2 and argv[0].lower() == b"get":
            # the commonest read, without the table (its answer does not depend on now_ms:
            # no key expires between the cluster time and a leased read's clock)
            reply, hit = self.answer_get(db, key)
        else:
            reply = self.answer_locally(argv, db, now_ms)
            if key is None:
                return reply
            hit = self.engine.has_key(db, key)
        self._count_lookup(hit)
        self.engine.view.count_read(db_key(db, key), hit)  # a hit: a use for LRU/LFU eviction
        return reply

    async def forwarded_read(self, argv: list[bytes], db: int, key: bytes | None) -> ReplyT:
        """A follower's linearizable read, answered by the leader's Exec: counted in INFO
        keyspace_hits/misses here, on the node the client asked, as a local read is (the
        leader counts the key's use for eviction: node/responses.py). A GET is a hit when
        the leader found the key; another read when the key exists in this node's state,
        which may trail the leader's by the replication lag."""
        reply = await super().forwarded_read(argv, db, key)
        if key is not None:
            if len(argv) == 2 and argv[0].lower() == b"get":
                self._count_lookup(reply is not None)  # WRONGTYPE too: the key exists
            else:
                self._count_lookup(self.engine.has_key(db, key))
        return reply

    def _count_lookup(self, hit: bool) -> None:
        """A hit when the command's (first) key exists, as Redis counts lookups."""
        stats = self.server.stats
        if hit:
            stats.keyspace_hits += 1
        else:
            stats.keyspace_misses += 1

    # -- pub/sub -----------------------------------------------------------------------------

    def deliver(self, message: cache_pb2.PubSubMessage) -> None:
        """A published message for this connection (loop thread, in publish order)."""
        if self._closing:
            return
        if self.server.auth.acl() is not self._acl and not self._still_subscribed_ok():
            return
        if message.pattern:
            items = [message.pattern, message.channel, message.message]
            frame = encoder.push(b"pmessage", items, self.proto)
        else:
            frame = encoder.push(b"message", [message.channel, message.message], self.proto)
        self._slots.append(frame)
        self._push_backlog += len(frame)
        transport = self.transport
        if transport is not None and (
            transport.get_write_buffer_size() + self._push_backlog > MAX_OUTPUT_BYTES
        ):
            # Redis's pubsub output limit: the reader is too slow; drop it without waiting to
            # flush to a peer that does not read.
            _log.warning("subscriber too slow, disconnected", client=self.addr)
            self._closing = True
            self._slots.clear()
            self._unsubscribe_all()
            transport.abort()
            return
        self._schedule_flush()

    def _still_subscribed_ok(self) -> bool:
        """The users changed while this connection listens: it keeps listening only if its
        user still exists and may still use every channel and pattern it subscribed to;
        otherwise it is disconnected (Redis kills such pub/sub clients), before the message
        is delivered."""
        self.users_changed(self.server.auth.acl(), close_at_once=True)
        user, sub = self.user, self.sub
        if self._closing or user is None or sub is None:
            return not self._closing
        allowed = all(user.may_use_channel(c) for c in sub.channels) and all(
            user.may_use_channel(p, is_pattern=True) for p in sub.patterns
        )
        if not allowed:
            _log.info("subscriber's channel permission revoked, disconnected", client=self.addr)
            self._closing = True
            self._slots.clear()
            self._unsubscribe_all()
            if self.transport is not None:
                self.transport.close()
        return allowed

    def _unsubscribe_all(self) -> None:
        if self.sub is not None:
            self.server.streams.unlisten(self.sub)
            self.sub = None


# -- connection commands ---------------------------------------------------------------------


def _arity(argv: list[bytes], n: int) -> bool:
    """True when argv has a valid arity (Redis convention), else False."""
    return len(argv) == n if n > 0 else len(argv) >= -n


def _local(name: str, arity: int) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        def checked(conn: Connection, argv: list[bytes]) -> Any:
            if not _arity(argv, arity):
                if conn.multi is not None:
                    conn.multi_error = True
                conn.reply(Error(wrong_arity(name)))
                return None
            return fn(conn, argv)

        _LOCAL[name.encode()] = checked
        return checked

    return register


_SET_NAMES = frozenset((b"SET", b"set"))
MAX_SET_GROUP = MAX_FORWARD_COMMANDS
"""At most this many pipelined SETs, and MAX_FORWARD_BYTES of their arguments, go as one
write: a follower forwards a group in one request (pipeline._take_forward_batch)."""

_LOCAL: dict[bytes, Handler] = {}
_NO_MULTI = frozenset(
    name.encode() for name, meta in META.items() if "no_multi" in meta.get("flags", ())
)
"""Commands Redis refuses inside MULTI (SAVE, SHUTDOWN, SYNC, PSYNC)."""
_NOT_QUEUED = frozenset([b"exec", b"discard", b"multi", b"watch", b"quit", b"reset", b"unwatch"])
_NO_AUTH = frozenset(
    name.encode() for name, meta in META.items() if "no_auth" in meta.get("flags", ())
)
"""Commands that run before authentication and need no permission (AUTH, HELLO, QUIT,
RESET)."""


@_local("ping", -1)
def _ping(conn: Connection, argv: list[bytes]) -> None:
    if len(argv) > 2:
        conn.reply(Error(wrong_arity("ping")))
    elif conn.sub is not None and conn.proto == 2:
        conn.reply([b"pong", argv[1] if len(argv) > 1 else b""])
    elif len(argv) == 2:
        conn.reply(argv[1])
    else:
        conn.reply(Status("PONG"))


@_local("echo", 2)
def _echo(conn: Connection, argv: list[bytes]) -> None:
    conn.reply(argv[1])


@_local("quit", -1)
def _quit(conn: Connection, argv: list[bytes]) -> None:
    conn.reply(OK)
    conn._closing = True
    conn._close_when_flushed = True


@_local("reset", 1)
def _reset(conn: Connection, argv: list[bytes]) -> None:
    conn._unsubscribe_all()
    conn.reset_state()
    conn.name = b""
    users = conn.server.auth.acl()
    if users.open:
        conn.authenticated(users.users["default"])
    else:
        conn.user, conn.user_name = None, "default"
        conn.engine = conn.server.engine

    def start(slot: Slot) -> None:  # after any WATCH still reading its versions
        conn.watched = {}
        conn._settle(slot, Status("RESET"))

    conn.run("x", start)


@_local("select", 2)
def _select(conn: Connection, argv: list[bytes]) -> None:
    try:
        db = parse_int(argv[1])
    except CommandError as exc:
        conn.reply(Error(exc.text))
        return
    if not 0 <= db < DATABASES:
        conn.reply(Error("ERR DB index is out of range"))
        return
    conn.db = db
    conn.reply(OK)


@_local("hello", -1)
def _hello(conn: Connection, argv: list[bytes]) -> None:
    proto = conn.proto
    i = 1
    if len(argv) > 1:
        try:
            proto = parse_int(argv[1], "ERR Protocol version is not an integer or out of range")
        except CommandError as exc:
            conn.reply(Error(exc.text))
            return
        if proto not in (2, 3):
            conn.reply(Error("NOPROTO unsupported protocol version"))
            return
        i = 2
    name = None
    auth: tuple[bytes, bytes] | None = None
    while i < len(argv):
        opt = argv[i].upper()
        if opt == b"AUTH" and i + 2 < len(argv):
            auth = (argv[i + 1], argv[i + 2])
            i += 3
        elif opt == b"SETNAME" and i + 1 < len(argv):
            name = argv[i + 1]
            if not _valid_name(name):
                conn.reply(Error(_BAD_NAME))
                return
            i += 2
        else:
            conn.reply(
                Error(f"ERR Syntax error in HELLO option '{argv[i].decode('utf-8', 'replace')}'")
            )
            return
    if auth is not None:
        user = conn.check_auth(auth[0].decode("latin-1"), auth[1])
        if user is None:
            conn.refuse_auth()
            return
        conn.authenticated(user)
    elif conn.user is None:
        conn.reply(Error(_HELLO_NOAUTH))
        return
    if name is not None:
        conn.name = name
    conn.proto = proto
    conn.reply(
        Map(
            [
                b"server",
                b"redis",
                b"version",
                REDIS_VERSION.encode(),
                b"proto",
                proto,
                b"id",
                conn.id,
                b"mode",
                b"standalone",
                b"role",
                b"master" if conn.engine.is_leader() else b"replica",
                b"modules",
                [],
            ]
        )
    )


_BAD_NAME = "ERR Client names cannot contain spaces, newlines or special characters."


def _valid_name(name: bytes) -> bool:
    return all(33 <= b <= 126 for b in name)


_HELLO_NOAUTH = (
    "NOAUTH HELLO must be called with the client already authenticated, otherwise the "
    "HELLO AUTH <user> <pass> option can be used to authenticate the client and "
    "select the RESP protocol version at the same time"
)


@_local("auth", -2)
def _auth(conn: Connection, argv: list[bytes]) -> None:
    if len(argv) > 3:
        conn.reply(Error("ERR syntax error"))
        return
    if len(argv) == 2:
        default = conn.server.auth.acl().users["default"]
        if default.nopass:
            conn.reply(
                Error(
                    "ERR AUTH <password> called without any password configured for the "
                    "default user. Are you sure your configuration is correct?"
                )
            )
            return
    name = argv[1].decode("latin-1") if len(argv) == 3 else "default"
    user = conn.check_auth(name, argv[-1])
    if user is None:
        conn.refuse_auth()
        return
    conn.authenticated(user)
    conn.reply(OK)


@_local("readonly", 1)
def _readonly(conn: Connection, argv: list[bytes]) -> None:
    conn.readonly = True
    conn.reply(OK)


@_local("readwrite", 1)
def _readwrite(conn: Connection, argv: list[bytes]) -> None:
    conn.readonly = False
    conn.reply(OK)


# -- transactions -------------------------------------------------------------------------


@_local("multi", 1)
def _multi(conn: Connection, argv: list[bytes]) -> None:
    if conn.multi is not None:
        conn.reply(Error("ERR MULTI calls can not be nested"))
        return
    conn.multi = []
    conn.multi_error = False
    conn.multi_db = conn.db
    conn.multi_bytes = 0
    conn.reply(OK)


# WATCH, UNWATCH, DISCARD, EXEC and RESET read or change `watched` inside a run of their
# own ("x"), so they act in the connection's order even when a WATCH before them is still
# reading its versions (a pipelined `WATCH k; MULTI; ...; EXEC` must check k).


@_local("discard", 1)
def _discard(conn: Connection, argv: list[bytes]) -> None:
    if conn.multi is None:
        conn.reply(Error("ERR DISCARD without MULTI"))
        return
    conn.multi = None
    conn.db = conn.multi_db  # a SELECT queued in the transaction never happened

    def start(slot: Slot) -> None:
        conn.watched = {}
        conn._settle(slot, OK)

    conn.run("x", start)


@_local("exec", 1)
def _exec(conn: Connection, argv: list[bytes]) -> None:
    if conn.multi is None:
        conn.reply(Error("ERR EXEC without MULTI"))
        return
    queued, failed = conn.multi, conn.multi_error
    conn.multi, conn.multi_error = None, False
    if failed:
        conn.db = conn.multi_db

        def abort(slot: Slot) -> None:
            conn.watched = {}
            conn._settle(slot, Error("EXECABORT Transaction discarded because of previous errors."))

        conn.run("x", abort)
        return
    queued = conn.recheck_queued(queued)  # the rules may have changed since MULTI

    def start(slot: Slot) -> None:
        watched, conn.watched = conn.watched, {}
        calls = [q for q in queued if isinstance(q, tuple)]
        if not calls and not watched:
            conn._settle(slot, [encoder.Raw(q) for q in queued if isinstance(q, bytes)])
            return
        try:
            now = conn.engine.multi_now(calls, watched)  # the leader queues its entry now
        except errors.CacheError as exc:
            conn._settle(slot, error_reply(exc))
            return
        conn._spawn(_exec_run(conn, queued, calls, watched, now), slot, write=True)

    conn.run("x", start)


async def _exec_run(
    conn: Connection,
    queued: list[tuple[list[bytes], int] | bytes],
    calls: list[tuple[list[bytes], int]],
    watched: dict[tuple[int, bytes], int],
    now: asyncio.Future[Result] | None,
) -> ReplyT:
    result = await conn.engine.multi(calls, watched, now)
    if result is NULL_ARRAY or not isinstance(result, list):
        return result
    replies = iter(result)
    out: list[ReplyT] = []
    for q in queued:
        if isinstance(q, bytes):
            out.append(encoder.Raw(q))
            continue
        reply = next(replies)
        if q[0][0].lower() == b"publish" and not isinstance(reply, Error):
            reply = conn.server.streams.receivers(q[0][1])  # this node's, as outside MULTI
        out.append(reply)
    return out


@_local("watch", -2)
def _watch(conn: Connection, argv: list[bytes]) -> None:
    if conn.multi is not None:
        conn.reply(Error("ERR WATCH inside MULTI is not allowed"))
        return
    keys, db = argv[1:], conn.db

    async def read() -> ReplyT:
        # Versions read like any linearizable read (a lagging follower could otherwise
        # record a version that is already gone, and EXEC would not notice a change).
        versions = await conn.engine.versions(keys, db)
        for key, version in zip(keys, versions, strict=True):
            conn.watched.setdefault((db, key), version)
        return OK

    conn.run("x", lambda slot: conn._spawn(read(), slot))


@_local("unwatch", 1)
def _unwatch(conn: Connection, argv: list[bytes]) -> None:
    def start(slot: Slot) -> None:
        conn.watched = {}
        conn._settle(slot, OK)

    conn.run("x", start)


# -- pub/sub --------------------------------------------------------------------------------


def _subscribe(conn: Connection, argv: list[bytes], pattern: bool) -> None:
    if conn.sub is None:
        conn.sub = Subscriber(conn)
    sub = conn.sub
    kind = b"psubscribe" if pattern else b"subscribe"
    for name in argv[1:]:
        names = sub.patterns if pattern else sub.channels
        if name not in names:
            conn.server.streams.listen(sub, [] if pattern else [name], [name] if pattern else [])
        conn._reply_now(
            encoder.push(kind, [name, len(sub.channels) + len(sub.patterns)], conn.proto)
        )


def _unsubscribe(conn: Connection, argv: list[bytes], pattern: bool) -> None:
    kind = b"punsubscribe" if pattern else b"unsubscribe"
    sub = conn.sub
    current = [] if sub is None else (sub.patterns if pattern else sub.channels)
    names = argv[1:] or list(current)
    if not names:
        conn._reply_now(encoder.push(kind, [None, _count(sub)], conn.proto))
    for name in names:
        if sub is not None and name in current:
            conn.server.streams.unlisten(sub, [] if pattern else [name], [name] if pattern else [])
        conn._reply_now(encoder.push(kind, [name, _count(sub)], conn.proto))
    if sub is not None and not sub.channels and not sub.patterns:
        conn.server.streams.unlisten(sub)
        conn.sub = None


def _count(sub: Subscriber | None) -> int:
    return 0 if sub is None else len(sub.channels) + len(sub.patterns)


@_local("subscribe", -2)
def _cmd_subscribe(conn: Connection, argv: list[bytes]) -> None:
    _subscribe(conn, argv, pattern=False)


@_local("psubscribe", -2)
def _cmd_psubscribe(conn: Connection, argv: list[bytes]) -> None:
    _subscribe(conn, argv, pattern=True)


@_local("unsubscribe", -1)
def _cmd_unsubscribe(conn: Connection, argv: list[bytes]) -> None:
    _unsubscribe(conn, argv, pattern=False)


@_local("punsubscribe", -1)
def _cmd_punsubscribe(conn: Connection, argv: list[bytes]) -> None:
    _unsubscribe(conn, argv, pattern=True)


@_local("publish", 3)
def _publish(conn: Connection, argv: list[bytes]) -> None:
    channel, message = argv[1], argv[2]

    def start(slot: Slot) -> None:
        conn._spawn(conn.engine.publish(channel, message), slot)

    conn.run("x", start)


@_local("pubsub", -2)
def _pubsub(conn: Connection, argv: list[bytes]) -> None:
    sub = argv[1].lower()
    streams = conn.server.streams
    if sub == b"channels" and len(argv) <= 3:
        conn.reply(streams.channel_names(argv[2] if len(argv) == 3 else None))
    elif sub == b"numsub":
        out: list[ReplyT] = []
        for channel in argv[2:]:
            out += [channel, streams.channel_subscribers(channel)]
        conn.reply(out)  # a flat array in RESP3 too, as Redis 7.0 answers
    elif sub == b"numpat" and len(argv) == 2:
        conn.reply(streams.pattern_count())
    elif sub == b"shardchannels":
        conn.reply([])  # sharded pub/sub (SSUBSCRIBE) is not served
    elif sub == b"shardnumsub":
        shard: list[ReplyT] = []
        for channel in argv[2:]:
            shard += [channel, 0]
        conn.reply(shard)
    elif sub == b"help":
        conn.reply(
            [
                b"PUBSUB <subcommand> [<arg> ...]. Subcommands are:",
                b"CHANNELS",
                b"NUMSUB",
                b"NUMPAT",
            ]
        )
    else:
        conn.reply(
            Error(
                f"ERR unknown subcommand or wrong number of arguments for "
                f"'{argv[1].decode('utf-8', 'replace')}'. Try PUBSUB HELP."
            )
        )


def unknown(conn: Connection, argv: list[bytes]) -> None:
    conn.reply(Error(unknown_command(argv)))
