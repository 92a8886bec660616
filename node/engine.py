"""The door every client protocol goes through: replicated writes, read barriers, stale
reads and follower-to-leader forwarding, for commands of the one command table.

gRPC's servicers, the RESP front-end (node/resp) and the memcached front-end all build
the same domain ops; this module runs them. Leader writes are queued on the proposer at
once (in call order), so commands that arrive together share one log entry.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, TypeVar

import structlog
from raftcache.node import errors, status_codes
from raftcache.node.acl import SCRIPT_COMMANDS
from raftcache.node.auth import Auth
from raftcache.node.forwarding import LeaderForwarder
from raftcache.node.keyspace.db import DB_PREFIX, RESERVED_KEY, db_key
from raftcache.node.keyspace.memcached import item_view
from raftcache.node.keyspace.reply import (
    NULL_ARRAY,
    WRONGTYPE,
    CommandError,
    Error,
    ReplyT,
    from_proto,
)
from raftcache.node.proposer import Proposer, Waiter, Write
from raftcache.node.resp.errors import error_reply
from raftcache.node.servicers import NodeView
from raftcache.node.state_machine import Failure, Result, TxnOk, Value
from raftcache.v1 import cache_pb2, command_pb2

_FORWARD_SLACK_S = 1.0
_log = structlog.get_logger("raftcache.engine")
_RETRY_PAUSE_S = 0.05
_T = TypeVar("_T")

NO_LEADER_WAIT_S: Final = 1.5
"""How long a follower holds writes that find no leader (an election takes about a second
here) before answering that there is none; once it has waited that long, later writes
answer at once until a leader answers again."""
RELAY_WRITE_RETRY_S: Final = 10.0
"""How long a follower keeps sending a relayed write again (under the same request id) while
its outcome is unknown or no leader answers, before the client gets the error: a failover
takes about a second here (node/DESIGN.md "Relayed writes across a failover")."""


def set_call(data_op: cache_pb2.DataOp, argv: Sequence[bytes], db: int) -> cache_pb2.DataOp:
    """Make `data_op` the Redis command `argv` in database `db`."""
    data_op.call.argv.extend(argv)
    data_op.call.db = db
    return data_op


def call_op(argv: Sequence[bytes], db: int, user: str = "") -> command_pb2.Op:
    """A Redis command as a replicated op; a script's calls checked as `user`."""
    op = command_pb2.Op()
    set_call(op.data.op, argv, db)
    if user:
        op.data.op.call.user = user
    return op


READ_AT_CLUSTER_TIME: Final = 0
"""What reads pass as "now": the state machine then hides expired keys at its applied
cluster time (max(now, cluster time)), never at this node's wall clock. After a read
barrier that is the stamp of an entry proposed after the read began; every node reaches it
only by applying that committed entry. A leader's wall clock can run a commit latency (or
a clock skew) ahead of what is committed: a key it reported expired at its own clock could
come back on a new leader whose clock is behind (issue 16: found by the clock-skew chaos
test, tests/integration/test_expiry_reappears_under_skew.py)."""


def reply_of(result: Result) -> ReplyT:
    """The Redis reply in a state machine result (a Failure raises its domain error)."""
    if isinstance(result, Failure):
        raise status_codes.from_failure(result)
    if isinstance(result, Value) and result.kind == "reply":
        return result.data  # type: ignore[no-any-return]
    raise TypeError(f"state machine answered {result!r} to a Redis command")


class Engine:
    """Runs Redis-table commands on this node, whatever its role."""

    def __init__(
        self,
        view: NodeView,
        proposer: Proposer,
        forwarder: LeaderForwarder,
        commit_timeout_s: float,
        receivers: Callable[[bytes], int],
    ) -> None:
        self.view = view
        self.proposer = proposer
        self._forwarder = forwarder
        self._timeout = commit_timeout_s + _FORWARD_SLACK_S
        self._receivers = receivers
        self.auth: Auth | None = None  # set by the server; names the user of relayed calls
        self.user: str | None = None  # the user this engine acts for (see for_user)
        self._base = self
        self._per_user: dict[str, Engine] = {}
        self._relays = _Relays()  # one per node: the per-user copies share it

    def for_user(self, name: str | None) -> Engine:
        """This engine acting for user `name`: calls it relays to the leader say so, and the
        leader checks that user's permissions again (a follower never elevates)."""
        base = self._base
        if name is None:
            return base
        engine = base._per_user.get(name)
        if engine is None:
            engine = copy.copy(base)
            engine.user = name
            if len(base._per_user) >= 4096:
                base._per_user.clear()
            base._per_user[name] = engine
        return engine

    def is_leader(self) -> bool:
        return self.proposer.is_leader()

    def now_ms(self) -> int:
        return self.proposer.now_ms()

    # -- leader fast paths: queued now, in call order --------------------------------

    def submit(self, op: Write, waiter: Waiter, size: int = 0, weight: int = 0) -> None:
        """Leader only: queue a replicated op now (see Proposer.submit)."""
        self.proposer.submit(op, waiter, size, weight)

    def barrier(self, waiter: Waiter) -> None:
        """Leader only: complete `waiter` once everything committed before now is applied."""
        self.proposer.barrier(waiter)

    def script_user(self, argv: Sequence[bytes]) -> str:
        """The user a script call runs as ("" for other commands, or no user)."""
        if self.user is None or argv[0].lower() not in SCRIPT_COMMANDS:
            return ""
        return self.user

    def read_local(self, argv: list[bytes], db: int, now_ms: int = READ_AT_CLUSTER_TIME) -> ReplyT:
        """A read-only command on this node's applied state (after a barrier or a staleness
        check), at cluster time (READ_AT_CLUSTER_TIME) or at `now_ms` if later (the time a
        leased read may run at: Proposer._answer_leased)."""
        return self.view.replica.read_call(argv, db, now_ms, self.script_user(argv))

    def read_get(self, db: int, key: bytes) -> tuple[ReplyT, bool]:
        """GET on this node's applied state (read_local's answer, and whether the key
        exists, for hit counting) without the command table: the commonest read, ~3 us
        cheaper than read_local + has_key."""
        if key[:5] == DB_PREFIX:  # Db.k's rule: no key aliases another db or the nodes' own
            return Error(RESERVED_KEY), False
        replica = self.view.replica
        with replica.lock:  # never between two ops of one entry, as read_call
            entry = replica.state.live(db_key(db, key))
        if entry is None:
            return None, False
        value = entry[0]
        return (value if isinstance(value, bytes) else Error(WRONGTYPE)), True

    def read_mc_get(self, keys: Sequence[bytes], now_ms: int = READ_AT_CLUSTER_TIME) -> ReplyT:
        """memcached's get and gets (`raftcache.mc.get KEY...`, node/keyspace/memcached.py)
        on this node's applied state without the command table, at the time read_local
        would read at: per key [value, flags, cas, ttl_s] or None, exactly as the table's
        command answers. The commonest memcached read; skipping the table saves the leader
        ~1.5 us of the ~28 us a 64-client get costs it (node/DESIGN.md)."""
        replica = self.view.replica
        out: list[ReplyT] = []
        with replica.lock:  # never between two ops of one entry, as read_call
            state = replica.state
            now = max(now_ms, state.cluster_time_ms)
            for key in keys:
                if key[:5] == DB_PREFIX:  # Db.k's rule, as the table's command applies it
                    return Error(RESERVED_KEY)
                entry = state.live(key, now)
                if entry is None or not isinstance(entry[0], bytes):
                    out.append(None)  # missing, or another type: memcached shows no hash
                else:
                    out.append(item_view(entry, now))  # type: ignore[arg-type]
        return out

    def holds_any(self, db: int, keys: Sequence[bytes]) -> bool:
        """Whether any of `keys` is live here, read under the replica's lock (never in the
        middle of an entry's apply, such as a transaction being rolled back)."""
        return any(self.live([db_key(db, k) for k in keys]))

    def live(self, internal_keys: Sequence[bytes]) -> list[bool]:
        """Whether each stored key (database-prefixed) is live here, under the lock."""
        entries = self.view.replica.get_many(internal_keys, READ_AT_CLUSTER_TIME)
        return [e is not None for e in entries]

    def lease_holds(self) -> bool:
        """Leader only: this node's applied state holds every acknowledged write."""
        return self.proposer.lease_holds()

    def has_key(self, db: int, key: bytes) -> bool:
        """Whether a live key exists here now (for hit/miss counting; no lock needed)."""
        return self.view.replica.state.get(db_key(db, key), READ_AT_CLUSTER_TIME) is not None

    async def versions(self, keys: Sequence[bytes], db: int) -> list[int]:
        """Each key's current version (0 = missing), read linearizably, for WATCH."""
        reply = await self.read([b"raftcache.versions", *keys], db)
        if isinstance(reply, Error):
            raise CommandError(str(reply))
        if not isinstance(reply, list):
            raise errors.NoLeader(f"could not read the watched keys' versions ({reply!r}); retry")
        return [int(v) for v in reply]

    # -- any node ------------------------------------------------------------------

    async def write(self, argv: list[bytes], db: int) -> ReplyT:
        if self.is_leader():
            return await self._write_here(argv, db)
        request = cache_pb2.ExecRequest()
        set_call(request.op, argv, db)

        async def here() -> ReplyT:  # this node leads now: the same id, proposed here
            return await self._write_here(argv, db, request.request_id)

        async def relay(timeout_s: float) -> ReplyT:
            response = await self._forward("Exec", request, timeout_s)
            return from_proto(response.value.reply)

        return await self._relayed_write(request.request_id, here, relay)

    async def _write_here(
        self, argv: list[bytes], db: int, rid: cache_pb2.RequestId | None = None
    ) -> ReplyT:
        """A write proposed on this node (the leader), under `rid` if given."""
        op = call_op(argv, db, self.script_user(argv))
        if rid is not None:
            _stamp(op, rid)
        return reply_of(await self.proposer.write(op))

    async def writes(self, calls: list[tuple[list[bytes], int]]) -> list[ReplyT]:
        """Several writes applied in order in one entry (a follower forwards them as one)."""
        if self.is_leader() or len(calls) == 1:
            # Each write keeps its own outcome: one refused (overloaded) must not make the
            # others that committed look refused too.
            done = await asyncio.gather(
                *(self.write(argv, db) for argv, db in calls), return_exceptions=True
            )
            return [_outcome(r) for r in done]
        replies = await self._relay_txn(calls, [])
        assert replies is not None  # no compares: the transaction always runs
        return replies

    async def relay_call(
        self,
        argv: list[bytes],
        db: int,
        timeout_s: float,
        request_id: tuple[str, int] | None = None,
    ) -> ReplyT:
        """A follower relays one call to the leader's Exec and waits up to `timeout_s` (a
        blocking pop waits as long as its own timeout), under `request_id` if given."""
        request = cache_pb2.ExecRequest()
        set_call(request.op, argv, db)
        if request_id is not None:
            request.request_id.client_id, request.request_id.seq = request_id
        response = await self._forward("Exec", request, timeout_s)
        return from_proto(response.value.reply)

    async def read(self, argv: list[bytes], db: int) -> ReplyT:
        """A linearizable read: the leader after a barrier, a follower through the leader."""
        if self.is_leader():
            await self.proposer.read_barrier()
            return self.read_local(argv, db)
        request = cache_pb2.ExecRequest(consistency=cache_pb2.LINEARIZABLE)
        set_call(request.op, argv, db)
        response = await self._forward("Exec", request)
        return from_proto(response.value.reply)

    def multi_now(
        self, calls: list[tuple[list[bytes], int]], watched: dict[tuple[int, bytes], int]
    ) -> asyncio.Future[Result] | None:
        """MULTI/EXEC on the leader: its entry queued now, in call order (as a plain write
        is), so an EXEC sent before another client's write goes into the log before it;
        `multi` awaits the result. None on a follower (`multi` relays the calls)."""
        if not self.is_leader():
            return None
        result: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self.proposer.submit(self._txn_op(calls, _compares(watched)), result)
        return result

    async def multi(
        self,
        calls: list[tuple[list[bytes], int]],
        watched: dict[tuple[int, bytes], int],
        queued: asyncio.Future[Result] | None = None,
    ) -> ReplyT:
        """MULTI/EXEC: the queued calls as one transaction entry (the one `multi_now` queued,
        if given); NULL_ARRAY when a watched key's version changed."""
        if queued is not None:
            replies = _txn_replies(await queued)
        elif self.is_leader():
            replies = await self._txn_here(calls, _compares(watched))
        else:
            replies = await self._relay_txn(calls, _compares(watched))
        return NULL_ARRAY if replies is None else replies

    def _txn_op(
        self,
        calls: list[tuple[list[bytes], int]],
        compares: list[cache_pb2.Compare],
        rid: cache_pb2.RequestId | None = None,
    ) -> command_pb2.Op:
        op = command_pb2.Op()
        if rid is not None:
            _stamp(op, rid)
        op.txn.compares.extend(compares)
        for argv, db in calls:
            set_call(op.txn.success.add().op, argv, db).call.user = self.script_user(argv)
        return op

    async def _txn_here(
        self,
        calls: list[tuple[list[bytes], int]],
        compares: list[cache_pb2.Compare],
        rid: cache_pb2.RequestId | None = None,
    ) -> list[ReplyT] | None:
        """The calls as one Txn entry proposed on this node (the leader), under `rid` if
        given; None when a compare failed."""
        return _txn_replies(await self.proposer.write(self._txn_op(calls, compares, rid)))

    async def _relay_txn(
        self, calls: list[tuple[list[bytes], int]], compares: list[cache_pb2.Compare]
    ) -> list[ReplyT] | None:
        """A follower relays calls as one Txn to the leader; None when a compare failed."""
        request = cache_pb2.TxnRequest(compares=compares)
        for argv, db in calls:
            set_call(request.success.add(), argv, db)

        async def here() -> list[ReplyT] | None:  # this node leads now: the same id, here
            return await self._txn_here(calls, compares, request.request_id)

        async def relay(timeout_s: float) -> list[ReplyT] | None:
            response = await self._forward("Txn", request, timeout_s)
            if not response.succeeded:
                return None
            return [from_proto(v.reply) for v in response.results]

        return await self._relayed_write(request.request_id, here, relay)

    async def _relayed_write(
        self,
        rid: cache_pb2.RequestId,
        here: Callable[[], Awaitable[_T]],
        relay: Callable[[float], Awaitable[_T]],
    ) -> _T:
        """A follower's write under a request id of its node's own, relayed to the leader.
        A relay that failed after the write may have reached the leader (the leader died or
        stepped down: outcome unknown) is sent again with the same id to whichever node
        leads next, this one included, until RELAY_WRITE_RETRY_S after it started: a retry
        of a write that committed is answered from the state machine's memory of that id,
        so it applies once; past that time the client hears "outcome unknown" (the truth).
        A write that finds no leader at all waits for one while this node has had none for
        less than NO_LEADER_WAIT_S (an election), then answers as before (CLUSTERDOWN on
        the Redis port), and so does every later one until a leader answers."""
        relays = self._relays
        seq = relays.open(rid)
        tries = [0]
        settled = False
        try:
            result = await self._retried(here, relay, tries)
            settled = tries[0] == 1
            return result
        except errors.CacheError as exc:
            settled = tries[0] == 1 and not isinstance(exc, errors.OutcomeUnknown)
            raise
        finally:
            relays.close(seq, settled, self._timeout)

    async def _retried(
        self,
        here: Callable[[], Awaitable[_T]],
        relay: Callable[[float], Awaitable[_T]],
        tries: list[int],
    ) -> _T:
        loop = asyncio.get_running_loop()
        give_up = loop.time() + RELAY_WRITE_RETRY_S
        unknown = False  # an attempt may have reached a leader
        relays = self._relays
        while True:
            tries[0] += 1
            try:
                if self.is_leader():
                    result = await here()
                else:
                    result = await relay(max(min(self._timeout, give_up - loop.time()), 0.5))
                relays.leaderless_since = None
                return result
            except errors.RequestTooOld:
                raise  # no retry can tell any more
            except (errors.NoLeader, errors.NotLeader, errors.OutcomeUnknown) as exc:
                now = loop.time()
                since = relays.leaderless_since
                if isinstance(exc, errors.OutcomeUnknown):
                    if not unknown:
                        _log.info(
                            "relayed write's outcome unknown; sending it again", error=str(exc)
                        )
                    unknown = True
                    relays.leaderless_since = since = None
                elif since is None:
                    relays.leaderless_since = since = now
                if unknown:
                    if now >= give_up:
                        if isinstance(exc, errors.OutcomeUnknown):
                            raise
                        raise errors.OutcomeUnknown(
                            "outcome unknown: the leader failed after this write was sent to "
                            f"it, and no leader answered its retries for {RELAY_WRITE_RETRY_S:.0f}"
                            f" s ({exc}); read the key to find out"
                        ) from exc
                elif since is not None and now >= since + NO_LEADER_WAIT_S:
                    raise
            # Soon: the retry should reach the new leader before this node's later writes
            # push its id out of the state machine's memory (1,024 per client id).
            await asyncio.sleep(_RETRY_PAUSE_S)

    async def publish(self, channel: bytes, message: bytes) -> int:
        """Replicate a pub/sub message; the receivers on the leader."""
        if self.is_leader():
            op = command_pb2.Op()
            op.publish.channel = channel
            op.publish.message = message
            result = await self.proposer.write(op)
            if isinstance(result, Failure):
                raise status_codes.from_failure(result)
            return self._receivers(channel)
        request = cache_pb2.PublishRequest(channel=channel, message=message)
        response = await self._forward("Publish", request)
        return int(response.receivers)

    async def relay_cluster(self, method: str, request: Any) -> Any:
        """A follower relays a Cluster RPC (SetUser, DeleteUsers) to the leader."""
        return await self._forward(f"Cluster/{method}", request)

    async def _forward(self, method: str, request: Any, timeout_s: float | None = None) -> Any:
        error = self.view.not_leader()
        if not isinstance(error, errors.NotLeader):
            raise error
        timeout = self._timeout if timeout_s is None else timeout_s
        identity = self.auth.forward_metadata(self.user) if self.auth is not None else ()
        return await self._forwarder.relay(error.leader_addr, method, request, timeout, identity)


class _Relays:
    """A node's relayed writes: one client id per node process, so a retry at the next
    leader is answered, not applied again (node/DESIGN.md "Relayed writes across a
    failover")."""

    def __init__(self) -> None:
        self.client = f"relay-{os.urandom(6).hex()}"
        self._seqs = itertools.count(1)
        # seqs relayed and not over yet, oldest first (a dict keeps insertion order): each
        # request tells the leader the oldest (done_below), so the state machine forgets
        # the results below it
        self.pending: dict[int, None] = {}
        # since when relays have found no leader (None: a leader answered since)
        self.leaderless_since: float | None = None

    def open(self, rid: cache_pb2.RequestId) -> int:
        """Fill in a new request id for a relayed write; returns its seq."""
        seq = next(self._seqs)
        self.pending[seq] = None
        rid.client_id, rid.seq = self.client, seq
        rid.done_below = next(iter(self.pending))
        return seq

    def close(self, seq: int, settled: bool, grace_s: float) -> None:
        """A relay is over. Unless it was one attempt that got an answer (`settled`), an
        attempt may still be on its way to a leader (its client left, or an earlier
        attempt's outcome was unknown): its id stays pending for `grace_s`, until no
        leader can still be holding it, so its result is not forgotten before a late
        attempt arrives (which would then apply again)."""
        if settled:
            self.pending.pop(seq, None)
        else:
            asyncio.get_running_loop().call_later(grace_s, self.pending.pop, seq, None)


def _stamp(op: command_pb2.Op, rid: cache_pb2.RequestId) -> None:
    """Give a log op the request id of a relayed call (the log's own message type)."""
    op.request_id.client_id, op.request_id.seq = rid.client_id, rid.seq
    op.request_id.done_below = rid.done_below


def _outcome(result: ReplyT | BaseException) -> ReplyT:
    """A gathered write's reply: domain errors as their Redis error, anything else unknown."""
    if isinstance(result, errors.CacheError):
        return error_reply(result)
    if isinstance(result, BaseException):
        return error_reply(
            errors.OutcomeUnknown(f"the write failed inside the node ({type(result).__name__})")
        )
    return result


def _txn_replies(result: Result) -> list[ReplyT] | None:
    """A Txn entry's replies; None when a compare failed."""
    if isinstance(result, Failure):
        raise status_codes.from_failure(result)
    assert isinstance(result, TxnOk)
    return [reply_of(r) for r in result.results] if result.succeeded else None


def _compares(watched: dict[tuple[int, bytes], int]) -> list[cache_pb2.Compare]:
    """WATCH's versions as a Txn's compares (each key unchanged since it was watched)."""
    return [
        cache_pb2.Compare(key=db_key(wdb, key), op=cache_pb2.Compare.EQUAL, version=version)
        for (wdb, key), version in watched.items()
    ]
