"""Blocking pops (BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP, BZPOPMIN/MAX, BZMPOP) on the
leader: clients are parked here, never in the log.

A blocking call is an ordinary replicated write of its one-attempt form
(node/keyspace/blocking.py: pop from the first key with data, else the "timed out"
reply). The leader proposes an attempt when the call arrives (unless a pop's keys are all
missing here: then it only parks) and, while it waits, again whenever a key it waits on
changes: at once when one of this leader's clients queues a write to it (`wrote`: the
attempt goes into the write's entry, after it), and on the apply thread's change events
for writes made any other way; the answer comes at apply like any write's. Clients are
served in the order they blocked: when a key changes, the attempts of every client
waiting on it are proposed in that order, in one turn, so they apply in that order; a
newcomer whose keys already have waiters queues behind them instead of trying first.

- Timeouts are the leader's timers. A timer that fires while an attempt is in flight
  waits for it: an element the attempt popped is delivered, never dropped.
- A client that goes away (or CLIENT UNBLOCK) is removed; if its attempt was in flight
  and popped elements, they are pushed back where they came from (list pops to the same
  end, sorted-set pops with their scores). Moves (BLMOVE, BRPOPLPUSH) need nothing: the
  element is in the destination list, as after any acknowledged move.
- When this node stops leading, every parked client gets a retryable error (nothing was
  popped for it); an attempt in flight ends as the proposer says (applied, refused, or
  outcome unknown).
- A follower relays the call under a request id of its own, and every attempt is proposed
  under it: the state machine remembers the attempt that took something. A relay that fails
  (the leader died, stepped down, could not be reached) is sent again with the same id to
  whichever node leads next, so a pop the old leader committed but never answered is
  answered by the retry instead of being lost (StateMachine._take_once).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections import deque

import structlog
from raftcache.node import errors
from raftcache.node.engine import Engine, call_op, reply_of
from raftcache.node.keyspace import dispatch
from raftcache.node.keyspace.blocking import (
    BLOCKING,
    TAKEN,
    TAKING,
    UNPOP,
    resolve_dollar,
    waits_on,
    with_timeout,
)
from raftcache.node.keyspace.db import DB_PREFIX, db_key
from raftcache.node.keyspace.lists import parse_lmpop
from raftcache.node.keyspace.reply import NULL_ARRAY, Error, ReplyT
from raftcache.node.proposer import Callback
from raftcache.node.resp.errors import error_reply
from raftcache.node.state_machine import Change, Event, Result, Value
from raftcache.v1 import command_pb2

_log = structlog.get_logger("raftcache.blocking")

_FOREVER_S = 365 * 86400.0
RELAY_RETRY_S = 30.0
"""How long a follower keeps sending a relayed call whose relay failed again (same request
id) while no leader answers it, before the client gets the failure."""
STREAM_GONE = "UNBLOCKED the stream key no longer exists"
STEPPED_DOWN = (
    "CLUSTERDOWN this node stopped leading while the client was blocked (nothing was "
    "popped for it): retry the command"
)


RequestId = tuple[str, int]  # (client id, seq): a relayed call's id, shared by its attempts


class _Waiter:
    __slots__ = (
        "abandoned",
        "argv",
        "db",
        "dirty",
        "expired",
        "first",
        "future",
        "handed_over",
        "inflight",
        "keys",
        "pops",
        "read_only",
        "rid",
        "seq",
        "timeout_reply",
        "timer",
    )

    def __init__(
        self, seq: int, argv: list[bytes], db: int, keys: list[bytes], rid: RequestId | None
    ) -> None:
        self.seq = seq
        self.rid = rid  # its attempts are proposed under it (None: a client of this node)
        self.handed_over = False  # abandoned, but a retry with its id came: no push-back
        self.argv = argv
        self.db = db
        self.keys = [db_key(db, k) for k in dict.fromkeys(keys)]
        self.future: asyncio.Future[ReplyT] = asyncio.get_running_loop().create_future()
        self.timeout_reply: ReplyT = NULL_ARRAY
        self.timer: asyncio.TimerHandle | None = None
        self.inflight = False  # an attempt is proposed and not applied yet
        self.dirty = False  # a key changed while the attempt was in flight: try again
        self.expired = False  # the timeout passed while an attempt was in flight
        self.abandoned = False  # the client went away while an attempt was in flight
        self.first = True  # the next attempt is the call itself (not a wake-up)
        self.read_only = not dispatch.is_write(argv)
        self.pops = argv[0].lower() in BLOCKING  # a list or sorted-set pop (not a stream read)


class Blocker:
    """The leader's parked clients, by the keys they wait on."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._by_key: dict[bytes, deque[_Waiter]] = {}
        self._seq = itertools.count()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client_id = f"relay-{uuid.uuid4().hex}"  # this process's relayed calls' ids
        self._rids = itertools.count(1)
        self._abandoned: dict[RequestId, _Waiter] = {}  # gone mid-attempt, by request id
        self._recovering: set[asyncio.Task[None]] = set()

    @property
    def blocking_keys(self) -> int:
        """Keys that calls parked on this leader wait on, its own clients' and relayed ones
        (INFO's total_blocking_keys). A call counts once `start` has proposed its first
        attempt: a write any client sends after that is ordered after the attempt."""
        return len(self._by_key)

    # -- the apply thread -----------------------------------------------------------------

    def on_events(self, events: list[Event]) -> None:
        """Change events of applied entries (tick thread): wake the keys' waiters."""
        loop = self._loop
        if loop is None or not self._by_key:
            return
        keys = {e.key for e in events if isinstance(e, Change)}
        if keys:
            loop.call_soon_threadsafe(self._changed, keys)

    def stepped_down(self) -> None:
        """This node stopped leading (tick thread)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._fail_parked)

    # -- the loop -------------------------------------------------------------------------

    async def call(
        self,
        argv: list[bytes],
        db: int,
        request_id: RequestId | None = None,
        engine: Engine | None = None,
    ) -> ReplyT:
        """A blocking call on any node: parked here on the leader, relayed by a follower
        (which waits as long as the call's timeout, plus slack) under `request_id` or an
        id of its own. `engine` is the caller's (Engine.for_user): relays name its user,
        so the leader checks the permission again."""
        if self.engine.is_leader():
            return await self.block(argv, db, request_id)
        if request_id is None and argv[0].lower() in TAKING:
            request_id = (self._client_id, next(self._rids))
        relay = engine or self.engine
        try:
            return await self._relay(argv, db, request_id, relay)
        except asyncio.CancelledError:
            if request_id is not None and argv[0].lower() in _UNDOABLE:
                self._recover_later(argv, db, request_id, relay)
            raise

    async def _relay(
        self, argv: list[bytes], db: int, request_id: RequestId | None, relay: Engine
    ) -> ReplyT:
        """Relay a call to the leader. A call with a request id whose relay fails (the
        leader died or stepped down: the attempt it had in flight may have taken an element)
        is sent again with the same id to whichever node leads next, this one included, for
        up to RELAY_RETRY_S; a later send waits only what is left of the call's timeout
        (at least one attempt, which answers what an earlier attempt took)."""
        loop = asyncio.get_running_loop()
        timeout_s = waits_on(argv)[1]
        deadline = loop.time() + timeout_s if timeout_s else None
        give_up: float | None = None
        pause = 0.05
        sent = argv
        while True:
            failure: ReplyT | errors.CacheError
            try:
                if self.engine.is_leader():  # this node won the election
                    reply = await self.block(sent, db, request_id)
                else:
                    left = _FOREVER_S if deadline is None else max(deadline - loop.time(), 0.0)
                    reply = await relay.relay_call(sent, db, left + 5.0, request_id)
                if not _failed_over(reply):
                    return reply
                failure = reply
            except (errors.NoLeader, errors.NotLeader, errors.OutcomeUnknown) as exc:
                failure = exc
            now = loop.time()
            give_up = give_up or now + RELAY_RETRY_S
            if request_id is None or now >= give_up:
                if isinstance(failure, errors.CacheError):
                    raise failure
                return failure
            _log.info("relayed blocking call failed; sending it again", error=str(failure))
            await asyncio.sleep(pause)
            pause = min(2 * pause, 0.5)
            if deadline is not None:
                sent = with_timeout(argv, deadline - loop.time())

    def _recover_later(
        self, argv: list[bytes], db: int, request_id: RequestId, relay: Engine
    ) -> None:
        task = asyncio.get_running_loop().create_task(self._recover(argv, db, request_id, relay))
        self._recovering.add(task)
        task.add_done_callback(self._recovering.discard)

    async def _recover(
        self, argv: list[bytes], db: int, request_id: RequestId, relay: Engine
    ) -> None:
        """The client of a relayed pop went away: put back what the call took, if anything.
        A live leader does that itself when the relay is cancelled, but one that died may
        have committed a take that nobody answered (and no retry will collect). Asks the
        state machine for the remembered take (raftcache.taken, which never takes), then
        undoes it (raftcache.unpop, which does nothing if the leader already did)."""
        try:
            reply = await self._write_once([TAKEN, *argv], db, request_id, relay)
            undo = None if isinstance(reply, Error) else _undo(argv, reply)
            if undo is not None:
                _log.info("client of a relayed pop went away; pushing back", command=argv[0])
                await self._write_once([UNPOP, *undo], db, request_id, relay)
        except errors.CacheError as exc:
            _log.error("could not check what a relayed pop took", error=str(exc))

    async def _write_once(
        self, argv: list[bytes], db: int, request_id: RequestId, relay: Engine
    ) -> ReplyT:
        """A write under `request_id` on whichever node leads, sent again with the same id
        when its outcome is unknown or no leader answers, for up to RELAY_RETRY_S."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + RELAY_RETRY_S
        pause = 0.05
        while True:
            try:
                if self.engine.is_leader():
                    return reply_of(await self.engine.proposer.write(_op(argv, db, request_id)))
                return await relay.relay_call(argv, db, 10.0, request_id)
            except (errors.NoLeader, errors.NotLeader, errors.OutcomeUnknown):
                if loop.time() >= give_up:
                    raise
            await asyncio.sleep(pause)
            pause = min(2 * pause, 0.5)

    async def block(
        self, argv: list[bytes], db: int, request_id: RequestId | None = None
    ) -> ReplyT:
        """Run a blocking call on the leader: its reply once an attempt pops something, or
        its timeout reply. Cancelling the awaiting task removes the client."""
        return await self.wait(self.start(argv, db, request_id))

    async def wait(self, waiter: _Waiter | ReplyT) -> ReplyT:
        """The reply of a call `start` parked (or answered at once)."""
        if not isinstance(waiter, _Waiter):
            return waiter
        try:
            return await asyncio.shield(waiter.future)
        except asyncio.CancelledError:
            self._abandon(waiter)
            raise

    def start(
        self, argv: list[bytes], db: int, request_id: RequestId | None = None
    ) -> _Waiter | ReplyT:
        """Park a call and propose its first attempt now, in the caller's turn (so it is
        ordered after the commands the client sent before it and before what any other
        client sends later, as Redis's single thread orders them); a reply at once for
        XREAD on a key of another type. The leader only (NotLeader otherwise). Attempts of
        a call with `request_id` (a follower's relay) are proposed under it."""
        keys, timeout_s, timeout_reply = waits_on(argv)
        self._loop = asyncio.get_running_loop()
        if not self.engine.is_leader():
            raise self.engine.view.not_leader()
        if argv[0].lower() == b"xread" and b"$" in argv:
            # `$`: each stream's last id now. The leader's applied state holds every XADD
            # acknowledged before this call arrived (acks are sent at apply).
            ids = self.engine.read_local([b"raftcache.streams.lastids", *keys], db)
            if not isinstance(ids, list):
                return ids  # WRONGTYPE: XREAD on a key of another type answers at once
            argv = resolve_dollar(argv, [bytes(i) for i in ids])
        rid = request_id if argv[0].lower() in TAKING else None
        waiter = _Waiter(next(self._seq), argv, db, keys, rid)
        waiter.timeout_reply = timeout_reply
        gone = self._abandoned.pop(rid, None) if rid is not None else None
        if gone is not None:
            gone.handed_over = True  # what its attempt takes is this retry's answer
        if waiter.read_only:
            # XREAD: what the leader holds now decides at once (an error, such as a key of
            # another type, answers now; nothing there parks it); data found is confirmed
            # by a read after a barrier, like any linearizable read.
            now = self.engine.read_local(argv, db)
            if isinstance(now, Error):
                return now
            if now is NULL_ARRAY:
                waiter.first = False
        queued_behind = any(self._by_key.get(k) for k in waiter.keys)
        for key in waiter.keys:
            self._by_key.setdefault(key, deque()).append(waiter)
        if timeout_s:
            waiter.timer = self._loop.call_later(timeout_s, self._expire, waiter)
        if waiter.first and self._nothing_to_take(waiter, keys):
            waiter.first = False  # parked at once, behind the others: a write wakes them
        elif queued_behind:
            self._round(waiter.keys)  # the older waiters try first; this one after them
        elif waiter.first:
            self._attempt(waiter)
        return waiter

    def _nothing_to_take(self, w: _Waiter, keys: list[bytes]) -> bool:
        """A pop by this leader's own client whose keys are all missing here: its first
        attempt could only answer "nothing yet", so it is not proposed (an entry less per
        blocking call that waits). Only while the leader's lease holds: then its applied
        state holds every write acknowledged before this call (a new leader that has not
        applied its predecessor's, or a deposed one, proposes the attempt); a write still
        in flight wakes the call when it applies, ordered after it (the two were
        concurrent). Not for relayed calls: an attempt under a retried request id collects
        what an earlier leader took for it. Not for stream reads (a missing stream is
        XREADGROUP's NOGROUP error, which only the attempt answers), nor for keys under the
        reserved prefix (the attempt answers the error)."""
        return (
            w.rid is None
            and w.pops
            and not any(k.startswith(DB_PREFIX) for k in keys)
            and self.engine.lease_holds()
            and not self.engine.holds_any(w.db, keys)
        )

    def _changed(self, keys: set[bytes]) -> None:
        watched = [k for k in keys if k in self._by_key]
        if watched:
            # A key that is gone again (what was pushed is taken, usually by the attempts
            # that rode in the push's entry) has nothing for the pops waiting on it: they
            # are not woken (N idle workers on one queue made N attempts per job, N - 1 of
            # them for nothing). Stream reads still are: a stream gone ends XREADGROUP.
            live = self.engine.live(watched)
            self._round(watched, {k for k, there in zip(watched, live, strict=True) if not there})

    def wrote(self, argv: list[bytes], db: int) -> None:
        """A client's write was just queued on this leader's proposer. If it can add
        elements that parked pops wait for (a push, ZADD, a move or store into a waited
        key), the oldest idle waiters on its keys, as many as it can add elements, try
        again in the same turn: their attempts go into the write's entry, after it, and
        are served at that entry's apply instead of a round later (Redis serves blocked
        clients inside the write that wakes them). Everything else is left to the change
        events of the apply, as for keys written any other way."""
        if not self._by_key or not argv:
            return
        name = argv[0].lower()
        feeds = _FEEDS.get(name)
        if feeds is None:
            return
        spec = dispatch.COMMANDS.get(name)
        if spec is None:
            return
        budget = max(1, (len(argv) - 2) // feeds) if feeds else 1
        for key in spec.keys(argv):
            waiting = self._by_key.get(db_key(db, key))
            if not waiting:
                continue
            for w in itertools.islice(waiting, _WROTE_SCAN):
                if budget <= 0:
                    return
                if not w.inflight and not w.future.done():
                    self._attempt(w)
                    budget -= 1

    def _round(self, keys: list[bytes], gone: set[bytes] | frozenset[bytes] = frozenset()) -> None:
        """Propose an attempt for every waiter on `keys`, oldest first (one turn, so they
        apply in that order); not for the pops on the keys in `gone` (missing here now)."""
        waiters: dict[int, _Waiter] = {}
        for key in keys:
            skip_pops = key in gone
            for w in self._by_key.get(key, ()):
                if not (skip_pops and w.pops):
                    waiters[w.seq] = w
        for seq in sorted(waiters):
            w = waiters[seq]
            if w.inflight:
                w.dirty = True
            elif not w.future.done():
                self._attempt(w)

    def _attempt(self, w: _Waiter) -> None:
        w.inflight = True
        w.dirty = False

        def applied(result: Result | None, error: BaseException | None) -> None:
            self._applied(w, result, error)

        def read(_result: None, error: BaseException | None) -> None:
            if error is not None:
                applied(None, error)
                return
            try:
                reply = self.engine.read_local(w.argv, w.db)
            except errors.CacheError as exc:
                applied(None, exc)
                return
            applied(Value("reply", reply), None)

        try:
            if w.read_only:  # XREAD: a read after a barrier, no log entry per wake-up
                self.engine.barrier(Callback(read))
            else:
                argv = w.argv
                if not w.first and argv[0].lower() in BLOCKING:
                    argv = [b"raftcache.woken", *argv]  # retyped keys are skipped at apply
                self.engine.submit(_op(argv, w.db, w.rid), Callback(applied), 64)
        except errors.CacheError as exc:
            w.inflight = False
            self._finish(w, error_reply(exc))

    def _applied(self, w: _Waiter, result: Result | None, error: BaseException | None) -> None:
        w.inflight = False
        first, w.first = w.first, False
        if error is not None:
            reply: ReplyT = (
                error_reply(error)
                if isinstance(error, errors.CacheError)
                else Error(f"UNKNOWN outcome unknown: {type(error).__name__}: {error}")
            )
            self._finish(w, reply)
            return
        try:
            reply = reply_of(result)  # type: ignore[arg-type]
        except errors.CacheError as exc:
            self._finish(w, error_reply(exc))
            return
        if not first and isinstance(reply, Error):
            reply = self._woken_error(w, str(reply))
        popped = reply is not NULL_ARRAY and reply is not None
        if w.abandoned:
            if w.rid is not None and self._abandoned.get(w.rid) is w:
                del self._abandoned[w.rid]
            if popped and not isinstance(reply, Error) and not w.handed_over:
                self._push_back(w, reply)
            self._remove(w)
            return
        if popped or isinstance(reply, Error):
            self._finish(w, reply)
        elif w.expired:
            self._finish(w, w.timeout_reply)
        elif w.dirty:
            self._attempt(w)

    def _woken_error(self, w: _Waiter, text: str) -> ReplyT:
        """What an error found by a wake-up (not by the call itself) means, as in Redis 7.0:
        a key that now holds another type keeps a pop or XREAD blocked (the timeout reply
        here: keep waiting); a blocked XREADGROUP whose stream is gone or retyped ends with
        UNBLOCKED, and one whose group was destroyed with the NOGROUP error."""
        name = w.argv[0].lower()
        if name == b"xreadgroup":
            keys = waits_on(w.argv)[0]
            gone = text.startswith("WRONGTYPE") or not all(
                self.engine.has_key(w.db, k) for k in keys
            )
            return Error(STREAM_GONE) if gone else Error(text)
        if name == b"xread" and text.startswith("WRONGTYPE"):
            return w.timeout_reply  # a stream retyped while XREAD waits: keep waiting
        return Error(text)  # pops' wake-ups skip retyped keys at apply (raftcache.woken)

    def _expire(self, w: _Waiter) -> None:
        w.timer = None
        if w.inflight:
            w.expired = True  # the attempt in flight decides
        else:
            self._finish(w, w.timeout_reply)

    def _abandon(self, w: _Waiter) -> None:
        if w.future.done() and not w.inflight:
            self._remove(w)
            return
        if w.inflight:
            w.abandoned = True  # its attempt's result is pushed back if it popped
            if w.rid is not None:
                self._abandoned[w.rid] = w  # unless a retry with its id comes first
            if w.timer is not None:
                w.timer.cancel()
            return
        self._finish(w, w.timeout_reply)

    def _finish(self, w: _Waiter, reply: ReplyT) -> None:
        self._remove(w)
        if not w.future.done():
            w.future.set_result(reply)

    def _remove(self, w: _Waiter) -> None:
        if w.timer is not None:
            w.timer.cancel()
            w.timer = None
        for key in w.keys:
            queue = self._by_key.get(key)
            if queue is None:
                continue
            with contextlib.suppress(ValueError):
                queue.remove(w)
            if not queue:
                del self._by_key[key]

    def _fail_parked(self) -> None:
        for w in {id(w): w for q in self._by_key.values() for w in q}.values():
            if not w.inflight:
                self._finish(w, Error(STEPPED_DOWN))
            else:
                w.expired = True  # the attempt's own outcome answers

    def _push_back(self, w: _Waiter, reply: ReplyT) -> None:
        """Undo an attempt whose client went away: put what it popped back (for a relayed
        call, as raftcache.unpop under its id, which also forgets the remembered take: a
        retry applied after it takes afresh)."""
        argv = _undo(w.argv, reply)
        if argv is None:
            return
        if w.rid is not None:
            argv = [UNPOP, *argv]
        _log.info("blocked client went away mid-pop; pushing back", command=w.argv[0])

        def done(_result: Result | None, error: BaseException | None) -> None:
            if error is not None:
                _log.error("could not push back a popped element", error=str(error))

        try:
            self.engine.submit(_op(argv, w.db, w.rid), Callback(done), 64)
        except errors.CacheError as exc:
            _log.error("could not push back a popped element", error=str(exc))


_FEEDS: dict[bytes, int] = {
    **dict.fromkeys((b"lpush", b"rpush", b"lpushx", b"rpushx"), 1),  # an element per argument
    b"zadd": 2,  # a member per score-member pair (its options count as a pair or two)
    **dict.fromkeys(
        (
            b"linsert",
            b"lmove",
            b"rpoplpush",
            b"zincrby",
            b"zunionstore",
            b"zinterstore",
            b"zdiffstore",
            b"zrangestore",
            b"copy",
            b"rename",
            b"renamenx",
            b"restore",
            b"sort",
            b"sort_ro",
        ),
        0,
    ),
}
"""Writes that can give a parked pop something to take, and how to count what they add:
arguments per element after the command and its key (0: one waiter at most)."""
_WROTE_SCAN = 64
"""Waiters `wrote` looks at per key (those with an attempt in flight are skipped): a hot
key's long queue costs a write no more than this."""


def _op(argv: list[bytes], db: int, rid: RequestId | None) -> command_pb2.Op:
    op = call_op(argv, db)
    if rid is not None:
        op.request_id.client_id, op.request_id.seq = rid
    return op


_UNDOABLE = frozenset((b"blpop", b"brpop", b"blmpop", b"bzpopmin", b"bzpopmax", b"bzmpop"))
"""Pops whose take is put back when the client goes away (moves keep it in the destination)."""


def _failed_over(reply: ReplyT) -> bool:
    """A reply that says the leader changed under the call (it may have taken something)."""
    return isinstance(reply, Error) and str(reply).startswith(("CLUSTERDOWN", "UNKNOWN"))


def _undo(argv: list[bytes], reply: ReplyT) -> list[bytes] | None:
    """The command that puts back what `argv`'s attempt popped (None: nothing to undo)."""
    name = argv[0].lower()
    if not isinstance(reply, list):
        return None  # BLMOVE/BRPOPLPUSH: the element is in the destination list
    if name in (b"blpop", b"brpop"):
        key, element = reply
        assert isinstance(key, bytes) and isinstance(element, bytes)
        return [b"lpush" if name == b"blpop" else b"rpush", key, element]
    if name in (b"bzpopmin", b"bzpopmax"):
        key, member, score = reply
        assert isinstance(key, bytes) and isinstance(member, bytes)
        return [b"zadd", key, repr(float(score)).encode(), member]
    if name == b"blmpop":
        key, elements = reply
        assert isinstance(key, bytes) and isinstance(elements, list)
        right = parse_lmpop(argv, 2)[1]
        # popped in order from one end: pushing back in reverse restores the list
        return [b"rpush" if right else b"lpush", key, *reversed(elements)]
    if name == b"bzmpop":
        key, pairs = reply
        assert isinstance(key, bytes) and isinstance(pairs, list)
        out: list[bytes] = [b"zadd", key]
        for member, score in pairs:
            out += [repr(float(score)).encode(), member]
        return out
    return None
