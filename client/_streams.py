"""Server streams: a Subscription (pub/sub, at most once, one node) and a Watch (changes to
a key or prefix, resumed on another node after a break from the last revision delivered)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from raftcache.client import errors
from raftcache.client._router import Router, final_error
from raftcache.client._transport import CallFailed, Stream, Transport
from raftcache.v1 import cache_pb2
from raftcache.v1.wire import REVISION_METADATA_KEY

_KINDS = {
    cache_pb2.WatchEvent.SET: "set",
    cache_pb2.WatchEvent.DELETE: "delete",
    cache_pb2.WatchEvent.EXPIRE: "expire",
    cache_pb2.WatchEvent.EVICT: "evict",
}


@dataclass(frozen=True)
class Message:
    """One published message; `pattern` is the pattern that matched (None: a channel)."""

    channel: bytes
    data: bytes
    pattern: bytes | None


@dataclass(frozen=True)
class WatchEvent:
    """One change: kind is 'set', 'delete', 'expire' or 'evict'; `value` is a string key's
    new value on 'set' (None otherwise); `type` the key's type on 'set'."""

    kind: str
    key: bytes
    revision: int
    value: bytes | None
    type: str


class StreamOpener:
    """Starts one stream on some member, trying each in turn inside one deadline."""

    def __init__(self, router: Router, transport: Transport, timeout: float) -> None:
        self._router = router
        self._transport = transport
        self._timeout = timeout
        self._next = 0

    async def open(
        self, method: str, request: Any, *, after: str | None = None
    ) -> tuple[Stream, str, Mapping[str, str]]:
        """A started stream, its node and its initial metadata; `after` = a node that just
        failed, tried last.

        Each node keeps its own watch window (a restarted node only from its last snapshot
        on), so RevisionCompacted from one node sends the watch to the next; it is raised
        once every member said so, or when the deadline passes with no other answer."""
        deadline = self._router.deadline_in(self._timeout)
        soon = min(deadline, self._router.deadline_in(1.0))
        if after is not None:
            await self._router.refresh(soon)  # a node failed: learn who is still there
        else:
            await self._router.refresh_if_old(soon)
        last: CallFailed | None = None
        compacted: dict[str, errors.RevisionCompactedError] = {}
        attempt = 0
        while (remaining := deadline - self._router.deadline_in(0)) > 0:
            members = self._router.members
            if all(m in compacted for m in members):
                raise next(iter(compacted.values()))
            if after in members:
                self._next = members.index(after) + 1
                after = None
            address = members[self._next % len(members)]
            self._next += 1
            if address in compacted:
                continue  # it answered already: try the members that have not
            stream = self._transport.open_stream(address, method, request)
            try:
                metadata = await stream.started(min(remaining, 2.0))
                return stream, address, metadata
            except BaseException as exc:  # a refusal, or the caller cancelled (a timeout)
                stream.cancel()
                if not isinstance(exc, CallFailed):
                    raise
                failure = exc
                final = final_error(failure)
                if isinstance(final, errors.RevisionCompactedError):
                    compacted[address] = final
                elif final is not None:
                    raise final from None
                last = failure
            attempt += 1
            if attempt % len(members) == 0:
                await self._router._backoff(attempt // len(members), deadline)
        if compacted:
            raise next(iter(compacted.values()))
        detail = f"{last.code}: {last.details}" if last else "no attempt could be made"
        raise errors.UnavailableError(
            f"{method.split('/')[-1]}: no node accepted the stream within {self._timeout} s "
            f"(last: {detail})"
        )

    async def pause(self, breaks: int) -> None:
        """Back off before re-opening a stream that broke `breaks` times in a row."""
        await self._router._backoff(breaks, self._router.deadline_in(self._timeout))


class Subscription:
    """Messages published to the subscribed channels and patterns, from one node, at most
    once. `async for message in subscription`; `await subscription.aclose()` to stop.

    A break ends the iteration with UnavailableError (or SlowConsumerError when the node
    dropped a subscriber that fell behind): messages published meanwhile are lost, so
    subscribing again is the caller's decision."""

    def __init__(self, stream: Stream) -> None:
        self._stream: Stream | None = stream

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Message:
        if self._stream is None:
            raise StopAsyncIteration
        try:
            message = await self._stream.next()
        except CallFailed as failure:
            await self.aclose()
            raise (final_error(failure) or _lost(f"{failure.code}: {failure.details}")) from None
        if message is None:
            await self.aclose()
            raise _lost("the node ended the stream")
        return Message(message.channel, message.message, message.pattern or None)

    async def aclose(self) -> None:
        if self._stream is not None:
            self._stream.cancel()
            self._stream = None


def _lost(why: str) -> errors.UnavailableError:
    return errors.UnavailableError(
        f"subscription lost ({why}); subscribe again (messages published meanwhile are lost)"
    )


class Watch:
    """Changes to a key or prefix, in revision order, each delivered once. After a break it
    resumes from the last delivered revision (`revision`), on another node if need be; while
    no member answers (the whole cluster restarting, a partition) it keeps trying with
    backoff, as etcd's watch does, so iteration waits until one does or the watch is
    closed. RevisionCompactedError when no member retains that revision any more."""

    def __init__(self, opener: StreamOpener, request: cache_pb2.WatchRequest) -> None:
        self._opener = opener
        self._request = request
        self._stream: Stream | None = None
        self._address: str | None = None
        self._closed = False
        self._breaks = 0  # in a row, without an event in between
        self.revision = request.start_revision
        self.resumes = 0  # how many times the stream was re-established

    @property
    def address(self) -> str | None:
        """The node the stream is on (or was on, while resuming)."""
        return self._address

    async def start(self) -> Watch:
        await self._connect(after=None)
        return self

    def __aiter__(self) -> Watch:
        return self

    async def __anext__(self) -> WatchEvent:
        while not self._closed:
            if self._stream is None:
                await self._opener.pause(self._breaks)
                if self._closed:
                    break  # closed while pausing
                try:
                    await self._connect(after=self._address)
                except errors.UnavailableError:
                    self._breaks += 1
                    continue  # no member answered in time: keep trying until closed
                if self._closed:  # closed while connecting: nobody will read this stream
                    await self.aclose()
                    break
                self.resumes += 1
            event = await self._read()
            if event is None:
                self._breaks += 1
                continue  # broken: resume from self.revision
            self._breaks = 0
            if event.revision <= self.revision:
                continue  # already delivered before a resume
            self.revision = event.revision
            return WatchEvent(
                _KINDS.get(event.kind, str(event.kind)),
                event.key,
                event.revision,
                event.value if event.kind == cache_pb2.WatchEvent.SET and event.type == "string"
                else None,
                event.type,
            )  # fmt: skip
        raise StopAsyncIteration

    async def _connect(self, after: str | None) -> None:
        request = cache_pb2.WatchRequest()
        request.CopyFrom(self._request)
        request.start_revision = self.revision
        try:
            self._stream, self._address, metadata = await self._opener.open(
                "Cache/Watch", request, after=after
            )
        except errors.RevisionCompactedError as exc:
            raise _compacted(self.revision, str(exc)) from None
        started_after = metadata.get(REVISION_METADATA_KEY, "")
        if self.revision == 0 and started_after.isdigit():
            # "From now" becomes a fixed point, so a break before the first event resumes
            # from here instead of from a later "now" (which would skip changes).
            self.revision = int(started_after)

    async def _read(self) -> Any | None:
        """The next raw event, or None after a break that a resume can repair."""
        assert self._stream is not None
        try:
            event = await self._stream.next()
        except CallFailed as failure:
            final = final_error(failure)
            if final is not None and not isinstance(
                final, errors.SlowConsumerError | errors.RevisionCompactedError
            ):
                await self.aclose()
                raise final from None
            event = None  # a break; even RevisionCompacted: another node may still retain it
        if event is None:
            self._stream.cancel()
            self._stream = None
        return event

    async def aclose(self) -> None:
        self._closed = True
        if self._stream is not None:
            self._stream.cancel()
            self._stream = None


def _compacted(revision: int, details: str) -> errors.RevisionCompactedError:
    return errors.RevisionCompactedError(
        f"watch cannot resume after revision {revision}: the node no longer retains it "
        f"({details}); re-read the current state, then watch from now (start_revision=0)"
    )
