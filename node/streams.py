"""Pub/sub fan-out and key watches, served by every node from its own applied log.

Threads: `deliver` and `restored` run on the consensus tick thread. While somebody
listens (a watcher or a subscriber on this node), or an item handed over earlier is not
drained yet, they append to a thread-safe deque and, when no drain is pending, schedule one
with `loop.call_soon_threadsafe`; subscriptions, watchers, queues and fan-out live on the
event loop thread. While nobody listens (the common case) `deliver` puts a command's
changes into the history itself, under `_lock`, and wakes nobody: waking the loop thread
for that cost a follower more than the history itself (below, `deliver`). The lock makes
the switch safe: the loop thread counts a new watcher or subscriber under it, so once
counted no change reaches the history from the tick thread any more (replay and fan-out then
see every change on the loop thread, in order), and one being appended there is complete.

Pub/sub: one delivery per matching subscription (an exact channel and each matching
pattern, as Redis does), at most once, in log order. Nothing is kept for absent subscribers.

Watch: a bounded history of recent key changes (`StreamLimits.history_*`) is kept even
when nobody watches, so a client can resume with `start_revision` after reconnecting. The
node holds every change with revision > `oldest_resumable`; a resume point below it is
`RevisionCompacted`. A replaying watcher reads the shared history (no copy) and switches to
live delivery in the same loop step in which it reaches the history's end: no gap and no
duplicate.

Slow readers: each live stream's queue is bounded in messages and bytes; past the bound the
queue is dropped and the stream ends with `SlowConsumer` when it next resumes. A replaying
watcher that falls out of the history window ends the same way.

Ready: `subscribe`/`watch` register when first iterated and then await `ready()` (for a
watch `ready(start_revision)`) if given,
before anything is yielded. The servicer is to pass `lambda: context.send_initial_metadata(())`,
so that a client knows it is subscribed once the call's initial metadata has arrived.

Restores: `restored(revision)` must be called when a snapshot replaces the state (at start-up
or sent by the leader), since the changes it skipped never reach `deliver`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import re
import threading
from bisect import bisect_right
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from operator import attrgetter, itemgetter
from typing import Any, Generic, TypeVar

from raftcache.node import errors
from raftcache.node.keyspace.db import DB_PREFIX
from raftcache.node.requests import is_internal_key
from raftcache.node.state_machine import Change, Event, Published
from raftcache.v1 import cache_pb2

T = TypeVar("T")

# Bytes charged per queued or retained item on top of its payload (object headers, deque slot).
ITEM_OVERHEAD = 64

_KINDS = {
    "set": cache_pb2.WatchEvent.SET,
    "delete": cache_pb2.WatchEvent.DELETE,
    "expire": cache_pb2.WatchEvent.EXPIRE,
    "evict": cache_pb2.WatchEvent.EVICT,
}
_REVISION = attrgetter("revision")
# A Change's key and value by position: map() over them runs in C (_retain, _evict).
_KEY = itemgetter(1)
_VALUE = itemgetter(3)
# A replaying watcher gives the loop back after scanning this many non-matching changes.
_SCAN_SLICE = 1024
CATCH_UP_S = 0.5  # how long a watch resumed ahead of a node waits for the node to get there
_CATCH_UP_POLL_S = 0.02


COMPACT_EVERY = 4096
"""Evicted history entries are dropped from the list (and freed) this many at a time."""


@dataclass(frozen=True)
class StreamLimits:
    """Bounds on stream memory and on subscribe/watch requests."""

    max_queued_messages: int = 10_000  # per stream, before SlowConsumer
    max_queued_bytes: int = 32 << 20
    history_events: int = 100_000  # retained key changes for watch resume
    history_bytes: int = 64 << 20
    max_subscriptions: int = 1_024  # channels + patterns in one Subscribe
    max_name_bytes: int = 1_024  # one channel or pattern
    max_key_bytes: int = 64 * 1024  # a watched key or prefix

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if value < 1:
                raise ValueError(f"StreamLimits.{name} must be at least 1, got {value}")


# -- glob patterns on bytes ---------------------------------------------------------------


def compile_pattern(pattern: bytes) -> Callable[[bytes], bool]:
    """A matcher for a Redis glob (*, ?, [abc], [^a-z], backslash escapes) over bytes."""
    segments: list[list[bytes]] = [[]]  # byte-class regexes, split at each '*'
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == 0x2A:  # '*'
            segments.append([])
            i += 1
        elif c == 0x3F:  # '?'
            segments[-1].append(b".")
            i += 1
        elif c == 0x5B:  # '['
            allowed, i = _parse_class(pattern, i + 1)
            segments[-1].append(_class_regex(allowed))
        else:
            if c == 0x5C and i + 1 < n:  # backslash escapes the next byte
                i += 1
            segments[-1].append(_byte_regex(pattern[i]))
            i += 1
    # Between stars every segment has a fixed length, so its leftmost occurrence is always
    # a valid choice: atomic groups forbid backtracking into it (no exponential blow-up).
    head, *middle = segments
    body = b"".join(head)
    if middle:
        *inner, last = middle
        body += b"".join(b"(?>.*?" + b"".join(seg) + b")" for seg in inner)
        body += b".*" + b"".join(last)
    regex = re.compile(b"(?s:" + body + rb")\Z")
    match = regex.match

    def matches(channel: bytes) -> bool:
        return match(channel) is not None

    return matches


def _parse_class(pattern: bytes, i: int) -> tuple[set[int], int]:
    """The byte set of a class whose body starts at i, and the index after its ']'."""
    negate = i < len(pattern) and pattern[i] == 0x5E  # '^'
    if negate:
        i += 1
    allowed: set[int] = set()
    while True:
        if i >= len(pattern):
            raise errors.InvalidInput(
                f"pattern {pattern!r} has a '[' without a closing ']': close the class, "
                "or escape a literal bracket as \\["
            )
        c = pattern[i]
        if c == 0x5D:  # ']'
            i += 1
            break
        if c == 0x5C and i + 1 < len(pattern):
            i += 1
            allowed.add(pattern[i])
            i += 1
        elif i + 2 < len(pattern) and pattern[i + 1] == 0x2D and pattern[i + 2] != 0x5D:
            lo, hi = sorted((c, pattern[i + 2]))  # Redis accepts a reversed range
            allowed.update(range(lo, hi + 1))
            i += 3
        else:
            allowed.add(c)
            i += 1
    return (set(range(256)) - allowed if negate else allowed), i


def _byte_regex(b: int) -> bytes:
    return b"\\x%02x" % b


def _class_regex(allowed: set[int]) -> bytes:
    if not allowed:
        return b"(?!)"  # an empty class matches nothing, as in Redis
    return b"[" + b"".join(_byte_regex(b) for b in sorted(allowed)) + b"]"


# -- per-stream queues ----------------------------------------------------------------------


class _Sink(Generic[T]):
    """A bounded queue feeding one stream; push runs on the loop, `get` in the stream."""

    __slots__ = ("bytes", "error", "items", "limits", "on_fail", "waiter")

    def __init__(self, limits: StreamLimits, on_fail: Callable[[_Sink[T]], None]) -> None:
        self.items: collections.deque[tuple[T, int]] = collections.deque()
        self.bytes = 0
        self.limits = limits
        self.error: errors.CacheError | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.on_fail = on_fail

    def push(self, item: T, size: int) -> None:
        if self.error is not None:
            return
        self.items.append((item, size))
        self.bytes += size
        if len(self.items) > self.limits.max_queued_messages or (
            self.bytes > self.limits.max_queued_bytes
        ):
            self.fail(self._overflow())
            return
        self._wake()

    def fail(self, error: errors.CacheError) -> None:
        if self.error is None:
            self.error = error
            self.items.clear()  # the point of failing: free the backlog now
            self.bytes = 0
            self.on_fail(self)
            self._wake()

    def _overflow(self) -> errors.CacheError:
        return errors.SlowConsumer(
            f"this stream fell behind: {len(self.items)} messages ({self.bytes} bytes) were "
            f"queued, over the limit of {self.limits.max_queued_messages} messages / "
            f"{self.limits.max_queued_bytes} bytes, so the node ended it to bound its memory; "
            "read faster or subscribe to less, then open a new stream"
        )

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def get(self) -> T:
        while not self.items:
            if self.error is not None:
                raise self.error
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        if self.error is not None:
            raise self.error
        item, size = self.items.popleft()
        self.bytes -= size
        return item


class _Watcher(_Sink[cache_pb2.WatchEvent]):
    __slots__ = ("key", "position", "prefix")

    def __init__(
        self,
        key: bytes,
        prefix: bool,
        position: int,
        limits: StreamLimits,
        on_fail: Callable[[_Sink[cache_pb2.WatchEvent]], None],
    ) -> None:
        super().__init__(limits, on_fail)
        self.key = key
        self.prefix = prefix
        self.position = position  # every change up to here was delivered or did not match

    def wants(self, key: bytes) -> bool:
        return key.startswith(self.key) if self.prefix else key == self.key

    def _overflow(self) -> errors.CacheError:
        return errors.SlowConsumer(
            f"this watch fell behind: {len(self.items)} events ({self.bytes} bytes) were "
            f"queued, over the limit of {self.limits.max_queued_messages} events / "
            f"{self.limits.max_queued_bytes} bytes, so the node ended it to bound its memory; "
            "watch again with start_revision set to the last revision you received"
        )


class _Subscriber(_Sink[cache_pb2.PubSubMessage]):
    __slots__ = ("channels", "patterns")

    def __init__(
        self,
        channels: list[bytes],
        patterns: list[bytes],
        limits: StreamLimits,
        on_fail: Callable[[_Sink[cache_pb2.PubSubMessage]], None],
    ) -> None:
        super().__init__(limits, on_fail)
        self.channels = channels
        self.patterns = patterns


class _Restored:
    """Marker in the hand-over queue: the state jumped to `revision` without events."""

    __slots__ = ("revision",)

    def __init__(self, revision: int) -> None:
        self.revision = revision


# -- streams ------------------------------------------------------------------------------


class Streams:
    """Subscriptions and watches of this node, fed from the applied log."""

    def __init__(self, revision: Callable[[], int], *, limits: StreamLimits | None = None) -> None:
        self._revision = revision
        # Whether this node's state is provably the cluster's latest (the leader under its
        # read lease, set once the Raft node exists): a watch start revision ahead of it
        # then came from no watch. Elsewhere it may be a node still catching up.
        self.current: Callable[[], bool] = lambda: True
        self._limits = limits or StreamLimits()
        self._loop = asyncio.get_running_loop()
        self.subscriber_count = 0
        self.watcher_count = 0
        # Tick thread -> loop hand-over. deque.append/popleft are atomic; `_scheduled` is True
        # from the moment a drain is scheduled until that drain starts.
        self._pending: collections.deque[list[Event] | _Restored] = collections.deque()
        self._scheduled = False
        # Guards the choice in `deliver` and, while it holds, the history (module docstring).
        self._lock = threading.Lock()
        self._in_flight = 0  # items handed over and not yet drained (under _lock)
        # Loop thread only from here to the history.
        self._channels: dict[bytes, dict[_Subscriber, None]] = {}
        self._patterns: dict[bytes, tuple[Callable[[bytes], bool], dict[_Subscriber, None]]] = {}
        self._keys: dict[bytes, dict[_Watcher, None]] = {}
        self._prefixes: dict[_Watcher, None] = {}
        self._failed: list[_Sink[cache_pb2.PubSubMessage] | _Sink[cache_pb2.WatchEvent]] = []
        # History: _hist[_head:] is retained; the change at absolute sequence number s is
        # _hist[s - _base]. The node holds every change with revision > _floor. Written by
        # the tick thread while nobody listens and nothing is in flight (`deliver`, under
        # _lock), by the loop thread otherwise; the list is read (watch) only while a
        # watcher is counted, that is while only the loop thread writes it.
        self._hist: list[Change] = []
        self._head = 0
        self._base = 0
        self._hist_bytes = 0
        self._floor = revision()
        self._last = self._floor  # revision of the last change drained
        self._epoch = 0  # bumped when a restore dropped changes this node never saw

    @property
    def oldest_resumable(self) -> int:
        """The smallest start_revision a watch on this node can resume from."""
        return self._floor

    # -- tick thread ----------------------------------------------------------------------

    def deliver(self, events: list[Event]) -> None:
        """Tick thread: hand one command's events to the subscribers and watchers; with
        nobody listening and nothing in flight, into the history here. Waking the loop thread
        for every applied entry (a `call_soon_threadsafe`, then the loop's own wake-up) was
        23% of a follower's tick-thread time under SET at 64 clients (py-spy, one entry per
        ~64 SETs), and ~1 us per SET on its loop thread."""
        if not self.subscriber_count and all(type(e) is Published for e in events):
            return  # nobody to tell, nothing to retain
        with self._lock:
            if not (self.watcher_count or self.subscriber_count or self._in_flight):
                self._retain(events)
                return
            self._in_flight += 1
        self._hand_over(events)

    def restored(self, revision: int) -> None:
        """Tick thread: the state was replaced by a snapshot at `revision` (no events)."""
        with self._lock:
            self._in_flight += 1
        self._hand_over(_Restored(revision))

    def _hand_over(self, item: list[Event] | _Restored) -> None:
        """Queue an item for the loop thread (counted in `_in_flight` by the caller)."""
        self._pending.append(item)
        if not self._scheduled:
            self._scheduled = True
            # A closed loop means the node is stopping: nobody is left to tell.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._drain)

    # -- loop thread: fan-out -------------------------------------------------------------

    def _drain(self) -> None:
        self._scheduled = False
        pending = self._pending
        # Only what is queued now: a later item scheduled a drain of its own, and a producer
        # faster than us must not keep this callback (and the whole loop) busy forever.
        taken = 0
        try:
            for _ in range(len(pending)):
                item = pending.popleft()
                taken += 1
                self._drain_one(item)
        finally:
            with self._lock:  # the tick thread may write the history again once this is 0
                self._in_flight -= taken
            if pending and not self._scheduled:  # an item raised: the rest still go, in order
                self._scheduled = True
                self._loop.call_soon(self._drain)
        if self._failed:
            for sink in self._failed:
                self._unregister(sink)
            self._failed.clear()

    def _count_listener(self, *, watchers: int = 0, subscribers: int = 0) -> None:
        """A new watcher or subscriber, counted under the lock: from here on every change
        comes through the loop (`deliver`), and one the tick thread was appending is in."""
        with self._lock:
            self.watcher_count += watchers
            self.subscriber_count += subscribers

    def _drain_one(self, item: list[Event] | _Restored) -> None:
        if isinstance(item, _Restored):
            self._restore(item.revision)
        elif not (self.watcher_count or self._channels or self._patterns):
            self._retain(item)  # nobody to tell any more: history only
        else:
            for event in item:
                if isinstance(event, Change):
                    self._change(event)
                elif self._channels or self._patterns:
                    self._publish(event)

    def _publish(self, event: Published) -> None:
        subscribers = self._channels.get(event.channel)
        size = len(event.channel) + len(event.message) + ITEM_OVERHEAD
        # Over copies: a push may unsubscribe (a RESP subscriber past its output limit, or one
        # whose channel permission was revoked, leaves at once from inside push).
        if subscribers:
            message = cache_pb2.PubSubMessage(channel=event.channel, message=event.message)
            for sub in tuple(subscribers):
                sub.push(message, size)
        for pattern, (matches, subs) in tuple(self._patterns.items()):
            if matches(event.channel):
                message = cache_pb2.PubSubMessage(
                    channel=event.channel, message=event.message, pattern=pattern
                )
                for sub in tuple(subs):
                    sub.push(message, size + len(pattern))

    def _change(self, change: Change) -> None:
        self._last = change.revision
        if is_internal_key(change.key):
            return  # users, scripts, functions: never in a client's watch (or its history)
        size = len(change.key) + len(change.value) + ITEM_OVERHEAD
        self._hist.append(change)
        self._hist_bytes += size
        self._trim()
        if not self.watcher_count:
            return
        event: cache_pb2.WatchEvent | None = None
        for watcher in self._watchers_of(change.key):
            if change.revision > watcher.position:
                if event is None:  # built once, shared by every watcher it goes to
                    event = _watch_event(change)
                watcher.position = change.revision
                watcher.push(event, size)

    def _retain(self, events: list[Event]) -> None:
        """`_change` for every change of one command's events at once, when no watcher or
        subscriber waits: into the history, then the oldest out past the limits (the same
        history as one at a time: an eviction made before a later append is made after it
        too), by count and by bytes each in one slice. Keys and sizes are gathered by map()
        over the whole command (an MSetOp's hundreds of SETs): a SET's share of a node's CPU
        for it was 10% at 16 pipelined SETs a client with a Python loop over the changes."""
        if len(events) == 1:  # most commands: one change, no lists to build
            if type(event := events[0]) is Change:
                self._change(event)  # nobody watches: history only
            return
        changes = [event for event in events if type(event) is Change]
        if not changes:
            return  # only Published: no subscriber to hand them to
        self._last = changes[-1].revision
        keys = list(map(_KEY, changes))
        if DB_PREFIX in b"".join(keys):  # maybe a key of the nodes' own databases: sift
            kept = [c for c in changes if not is_internal_key(c.key)]
            if len(kept) != len(changes):
                changes, keys = kept, list(map(_KEY, kept))
        self._hist.extend(changes)
        self._hist_bytes += (
            sum(map(len, keys)) + sum(map(len, map(_VALUE, changes))) + ITEM_OVERHEAD * len(changes)
        )
        self._trim()

    def _trim(self) -> None:
        """The oldest changes out until the history is within its limits: past the count,
        then until the bytes fit, each in one slice."""
        limits = self._limits
        over = len(self._hist) - self._head - limits.history_events
        if over > 0:
            self._evict(over)
        excess = self._hist_bytes - limits.history_bytes
        if excess > 0:
            hist, head, count = self._hist, self._head, 0
            while excess > 0:
                old = hist[head + count]
                excess -= len(old.key) + len(old.value) + ITEM_OVERHEAD
                count += 1
            self._evict(count)

    def _watchers_of(self, key: bytes) -> list[_Watcher]:
        found = [w for w in self._prefixes if key.startswith(w.key)]
        exact = self._keys.get(key)
        if exact:
            found.extend(exact)
        return found

    def _evict(self, count: int) -> None:
        """Drop the `count` oldest retained changes (at least one must be retained)."""
        head = self._head
        if count == 1:  # _change's eviction: one per change once the history is full
            old = self._hist[head]
            self._hist_bytes -= len(old.key) + len(old.value) + ITEM_OVERHEAD
            self._floor = old.revision
        else:
            gone = self._hist[head : head + count]
            self._hist_bytes -= (
                sum(map(len, map(_KEY, gone)))
                + sum(map(len, map(_VALUE, gone)))
                + ITEM_OVERHEAD * count
            )
            self._floor = gone[-1].revision
        self._head = head = head + count
        # Compact the list every COMPACT_EVERY evictions: a memmove of the retained pointers
        # (~30 us for 100k, ~25 pointers per eviction), and the evicted changes are freed in bursts
        # about as large as the allocations between them. Compacting only once half the list
        # was evicted freed ~100k changes at once, but CPython's gen-0 count cannot go
        # below zero, so the rest of that burst was lost to it: the next 50k changes
        # triggered a collection walking them all (36-61 ms each, once a second at -P16;
        # node/DESIGN.md "Gen-0 collections under steady writes").
        if head > COMPACT_EVERY:
            del self._hist[:head]
            self._base += head
            self._head = 0

    def _restore(self, revision: int) -> None:
        if revision <= self._last:
            return  # nothing was skipped
        # Changes in (_last, revision] were never seen here: nobody can resume before it.
        self._epoch += 1
        self._base += len(self._hist)
        self._hist.clear()
        self._head = 0
        self._hist_bytes = 0
        self._floor = self._last = revision
        gone = errors.RevisionCompacted(
            f"this node loaded a snapshot at revision {revision} and did not see the changes "
            "before it; re-read the key, then watch from now (start_revision 0) or from "
            f"revision {revision}"
        )
        live = [w for ws in self._keys.values() for w in ws] + list(self._prefixes)
        for watcher in live:
            if watcher.position < revision:
                watcher.fail(gone)

    def _unregister(
        self, sink: _Sink[cache_pb2.PubSubMessage] | _Sink[cache_pb2.WatchEvent]
    ) -> None:
        """Forget a stream's registrations; idempotent."""
        if isinstance(sink, _Watcher):
            self._prefixes.pop(sink, None)
            _discard(self._keys, sink.key, sink)
        else:  # a _Subscriber, or a front-end's push subscriber
            sub: Any = sink
            for channel in sub.channels:
                _discard(self._channels, channel, sub)
            for pattern in sub.patterns:
                entry = self._patterns.get(pattern)
                if entry is not None:
                    entry[1].pop(sub, None)
                    if not entry[1]:
                        del self._patterns[pattern]

    # -- loop thread: streams -------------------------------------------------------------

    def receivers(self, channel: bytes) -> int:
        """How many subscriptions on this node match `channel` (loop thread only)."""
        count = len(self._channels.get(channel, ()))
        for matches, subs in self._patterns.values():
            if matches(channel):
                count += len(subs)
        return count

    # Push subscribers: a front-end connection (RESP) whose `push(message, size)` is called
    # directly on the loop, and whose channels and patterns change over its lifetime.

    def listen(self, sub: Any, channels: list[bytes], patterns: list[bytes]) -> None:
        """Add channels and patterns to a push subscriber (registered on first use); its
        `channels` and `patterns` are dicts (insertion-ordered sets)."""
        if not sub.channels and not sub.patterns:
            self._count_listener(subscribers=1)
        for channel in channels:
            if channel not in sub.channels:
                sub.channels[channel] = None
                self._channels.setdefault(channel, {})[sub] = None
        for pattern in patterns:
            if pattern not in sub.patterns:
                sub.patterns[pattern] = None
                entry = self._patterns.setdefault(pattern, (compile_pattern(pattern), {}))
                entry[1][sub] = None

    def unlisten(
        self, sub: Any, channels: list[bytes] | None = None, patterns: list[bytes] | None = None
    ) -> None:
        """Remove channels and patterns from a push subscriber (both None: all of them)."""
        if not sub.channels and not sub.patterns:
            return
        if channels is None and patterns is None:
            self._unregister(sub)
            sub.channels.clear()
            sub.patterns.clear()
        else:
            for channel in channels or ():
                if channel in sub.channels:
                    del sub.channels[channel]
                    _discard(self._channels, channel, sub)
            for pattern in patterns or ():
                if pattern in sub.patterns:
                    del sub.patterns[pattern]
                    entry = self._patterns.get(pattern)
                    if entry is not None:
                        entry[1].pop(sub, None)
                        if not entry[1]:
                            del self._patterns[pattern]
        if not sub.channels and not sub.patterns:
            self.subscriber_count -= 1

    def channel_names(self, pattern: bytes | None) -> list[bytes]:
        """Channels with at least one subscriber on this node (PUBSUB CHANNELS)."""
        matches = compile_pattern(pattern) if pattern is not None else None
        return sorted(
            c for c, subs in self._channels.items() if subs and (not matches or matches(c))
        )

    def channel_subscribers(self, channel: bytes) -> int:
        return len(self._channels.get(channel, ()))

    def pattern_count(self) -> int:
        """Pattern subscriptions on this node (PUBSUB NUMPAT: unique patterns)."""
        return len(self._patterns)

    async def subscribe(
        self,
        request: cache_pb2.SubscribeRequest,
        ready: Callable[[], Awaitable[object]] | None = None,
    ) -> AsyncGenerator[cache_pb2.PubSubMessage, None]:
        """Messages on the requested channels/patterns published after registration."""
        channels, patterns = self._check_subscribe(request)
        sub = _Subscriber(channels, list(patterns), self._limits, self._failed.append)
        for channel in channels:
            self._channels.setdefault(channel, {})[sub] = None
        for pattern, matches in patterns.items():
            self._patterns.setdefault(pattern, (matches, {}))[1][sub] = None
        self._count_listener(subscribers=1)
        try:
            if ready is not None:
                await ready()
            while True:
                yield await sub.get()
        finally:
            self.subscriber_count -= 1
            self._unregister(sub)

    def _check_subscribe(
        self, request: cache_pb2.SubscribeRequest
    ) -> tuple[list[bytes], dict[bytes, Callable[[bytes], bool]]]:
        limits = self._limits
        names = [*request.channels, *request.patterns]
        if not names:
            raise errors.InvalidInput(
                "subscribe needs at least one channel or pattern: set channels or patterns"
            )
        if len(names) > limits.max_subscriptions:
            raise errors.InvalidInput(
                f"subscribe asked for {len(names)} channels and patterns, over the limit of "
                f"{limits.max_subscriptions}: use patterns, or split across streams"
            )
        for name in names:
            if not name:
                raise errors.InvalidInput("a channel or pattern is empty: give it a name")
            if len(name) > limits.max_name_bytes:
                raise errors.InvalidInput(
                    f"channel or pattern {name[:32]!r}... is {len(name)} bytes, over the limit "
                    f"of {limits.max_name_bytes} bytes: use a shorter name"
                )
        patterns = {p: compile_pattern(p) for p in request.patterns}
        return list(dict.fromkeys(request.channels)), patterns

    async def watch(
        self,
        request: cache_pb2.WatchRequest,
        ready: Callable[[int], Awaitable[object]] | None = None,
    ) -> AsyncGenerator[cache_pb2.WatchEvent, None]:
        """Changes to the key (or prefix) after start_revision (0: after now), in order."""
        self._count_listener(watchers=1)
        watcher: _Watcher | None = None
        try:
            start = self._check_watch(request)
            if start > self._revision():
                await self._catch_up(start)
            if start < self._floor:
                raise errors.RevisionCompacted(
                    f"start_revision {start} is older than this node retains; the oldest "
                    f"resumable revision is {self._floor}: re-read the key, then watch from "
                    "now (start_revision 0)"
                )
            watcher = _Watcher(
                request.key, request.prefix, start, self._limits, self._failed.append
            )
            cursor = self._base + bisect_right(self._hist, start, lo=self._head, key=_REVISION)
            epoch = self._epoch
            if ready is not None:
                await ready(start)
            scanned = 0
            # Replay from the shared history; no await between the last check and going live.
            while True:
                if cursor < self._base + self._head and watcher.position < self._floor:
                    raise self._lost_replay(watcher, epoch)
                cursor = max(cursor, self._base + self._head)
                if cursor >= self._base + len(self._hist):
                    break
                change = self._hist[cursor - self._base]
                cursor += 1
                watcher.position = change.revision
                if watcher.wants(change.key):
                    yield _watch_event(change)
                else:
                    scanned += 1
                    if scanned % _SCAN_SLICE == 0:
                        await asyncio.sleep(0)  # a narrow watch over a long history
            if watcher.prefix:
                self._prefixes[watcher] = None
            else:
                self._keys.setdefault(watcher.key, {})[watcher] = None
            while True:
                yield await watcher.get()
        finally:
            self.watcher_count -= 1
            if watcher is not None:
                self._unregister(watcher)

    def _check_watch(self, request: cache_pb2.WatchRequest) -> int:
        """The revision to watch after (start_revision, or now for 0); raises for bad keys.
        A start ahead of this node or behind its floor is `watch`'s to answer."""
        if not request.key and not request.prefix:
            raise errors.InvalidInput(
                "watch key is empty: give a key, or set prefix to watch every key"
            )
        if len(request.key) > self._limits.max_key_bytes:
            raise errors.InvalidInput(
                f"watch key is {len(request.key)} bytes, over the limit of "
                f"{self._limits.max_key_bytes} bytes"
            )
        if is_internal_key(request.key):
            raise errors.InvalidInput(
                "watch key names the nodes' own data (users, scripts, functions): watch keys "
                "of databases 0-15 only"
            )
        start = request.start_revision
        return max(self._revision(), self._floor) if start == 0 else start

    async def _catch_up(self, start: int) -> None:
        """A start revision ahead of this node: refused as invalid where this node's state is
        provably the cluster's latest (`current`); elsewhere it may be a revision another
        member delivered while this one restarts or catches up (a watch resumed after a
        whole-cluster restart met replaying nodes so), so wait up to CATCH_UP_S for it, then
        answer TooStale (retryable: the SDK tries the next member)."""
        deadline = self._loop.time() + CATCH_UP_S
        while True:
            # current() first: a leader current then had applied every revision any watch
            # delivered, so a start still ahead of a later read was never delivered.
            current = self.current()
            now = self._revision()
            if now >= start:
                return
            if current:
                raise errors.InvalidInput(
                    f"start_revision {start} is ahead of this node's revision {now}: pass a "
                    "revision received from a watch, or 0 to watch from now"
                )
            if self._loop.time() >= deadline:
                raise errors.TooStale(
                    f"start_revision {start} is ahead of this node's revision {now}, and this "
                    f"node, not the leader under its lease, did not reach it within "
                    f"{CATCH_UP_S:g} s (restarting or behind?): retry, or watch through "
                    "another node; the leader refuses a revision no watch delivered"
                )
            await asyncio.sleep(_CATCH_UP_POLL_S)

    def _lost_replay(self, watcher: _Watcher, epoch: int) -> errors.CacheError:
        if epoch != self._epoch:
            return errors.RevisionCompacted(
                "this node loaded a snapshot and did not see some changes after revision "
                f"{watcher.position}; re-read the key, then watch from now (start_revision 0)"
            )
        return errors.SlowConsumer(
            f"this watch was replaying from revision {watcher.position} more slowly than "
            f"changes arrived and fell out of the retained window (oldest resumable revision "
            f"is now {self._floor}); re-read the key, then watch from now (start_revision 0)"
        )


def _discard(table: dict[bytes, dict[T, None]], name: bytes, member: T) -> None:
    members = table.get(name)
    if members is not None:
        members.pop(member, None)
        if not members:
            del table[name]


def _watch_event(change: Change) -> cache_pb2.WatchEvent:
    return cache_pb2.WatchEvent(
        kind=_KINDS[change.kind],
        key=change.key,
        revision=change.revision,
        value=change.value,
        type=change.type,
    )
