"""Watchers of a chaos run: SDK watches on the registers' prefix, recorded in watch.jsonl.

Each watcher is a thread with its own AsyncClient and one `watch("r:", prefix=True)` from
the moment it starts, which the SDK resumes by itself after a break (a killed, paused or
cut-off node), on another member if need be, from the last revision it delivered. Every
event it delivers is one line of watch.jsonl:

    {"watcher", "what", "time", "key", "revision", "value", "kind"}

`what` is one of:
- "start": watching; `revision` is the revision the watch started after, `value` the node;
- "event": one delivered change;
- "compacted": no member retained the revision to resume from; the watch starts again
  from now, and the changes in between are a gap the checker excuses;
- "break": the watch ended with another error (no member answered the first call within
  the timeout, or a final error such as INVALID_ARGUMENT); it is retried from the same
  revision. The SDK itself resumes through outages, so a break is worth a look;
- "end": stopped; `value` is how many times the SDK resumed the stream.

After the writers stop and the faults heal, the runner writes MARKER_KEY through the SDK
and waits until every watcher has delivered it: a watch that stalls shows as a missing
marker. checkers.check_watch then holds the records against the registers' history
(chaos/DESIGN.md "The watch checker").
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine, Sequence
from typing import Any

from raftcache.chaos.history import RecordLog
from raftcache.client import (
    AsyncClient,
    Client,
    RaftcacheError,
    RevisionCompactedError,
    Watch,
)

PREFIX = "r:"  # the SDK registers' keys (chaos/workloads.py)
MARKER_KEY = "r:~end"  # not a register key: written once, after the writers stopped
WATCH_FILE = "watch.jsonl"


class Background:
    """A daemon thread of a chaos run talking to the cluster at `endpoints` and recording to
    `log`, running `_body` until `stop()`; what ends it early is kept in `error` (the
    runner reports it; never silently lost)."""

    def __init__(self, index: int, name: str, endpoints: Sequence[str], log: RecordLog) -> None:
        self.index = index
        self.endpoints = list(endpoints)
        self.log = log
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"{name}-{index}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        try:
            self._body()
        except BaseException as exc:
            self.error = exc

    def _body(self) -> None:
        raise NotImplementedError

    async def _until_stopped(self, body: Coroutine[Any, Any, None]) -> None:
        """Run `body` (an endless loop over a stream) until stop(), then cancel it."""
        task = asyncio.create_task(body)
        while not self._stop.is_set() and not task.done():
            await asyncio.sleep(0.1)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]


def stop_all(things: Sequence[Background], what: str) -> list[str]:
    """Stop each; the errors that ended any of them early."""
    problems = []
    for thing in things:
        thing.stop()
        if thing.error is not None:
            problems.append(f"{what} {thing.index}: {thing.error!r}")
    return problems


class Watcher(Background):
    """One thread following the registers' prefix through the SDK's Watch."""

    def __init__(
        self, index: int, endpoints: Sequence[str], log: RecordLog, timeout_s: float = 3.0
    ) -> None:
        super().__init__(index, "watch", endpoints, log)
        self.timeout_s = timeout_s
        self.marker_seen = threading.Event()
        self._watch: Watch | None = None

    @property
    def address(self) -> str | None:
        """The node the watch is on now (None before it started)."""
        return None if self._watch is None else self._watch.address

    def _body(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        async with AsyncClient(self.endpoints, timeout=self.timeout_s) as client:
            await self._until_stopped(self._follow(client))

    async def _follow(self, client: AsyncClient) -> None:
        after = 0  # the last revision delivered (0: from now)
        resumes = 0
        try:
            while True:
                watch: Watch | None = None
                try:
                    watch = await client.watch(PREFIX, prefix=True, start_revision=after)
                    self._watch = watch
                    self.log.write(
                        "start", watcher=self.index, revision=watch.revision, value=watch.address
                    )
                    async for event in watch:
                        value = None if event.value is None else event.value.decode()
                        key = event.key.decode()
                        self.log.write(
                            "event", watcher=self.index, key=key, revision=event.revision,
                            value=value, kind=event.kind,
                        )  # fmt: skip
                        after = event.revision
                        if key == MARKER_KEY:
                            self.marker_seen.set()
                except RevisionCompactedError as exc:  # no member retains `after` any more
                    self.log.write("compacted", watcher=self.index, revision=after, value=str(exc))
                    after = 0
                except RaftcacheError as exc:  # the watch ended: again from where it was
                    if watch is not None:  # it may have started from now and seen nothing
                        after = max(after, watch.revision)
                    self.log.write("break", watcher=self.index, revision=after, value=repr(exc))
                    await asyncio.sleep(0.5)
                finally:
                    if watch is not None:
                        resumes += watch.resumes
                        await watch.aclose()
        finally:
            self.log.write("end", watcher=self.index, value=resumes)


def start_watchers(count: int, endpoints: Sequence[str], log: RecordLog) -> list[Watcher]:
    watchers = [Watcher(i, endpoints, log) for i in range(count)]
    for watcher in watchers:
        watcher.start()
    return watchers


def finish_watchers(
    watchers: Sequence[Watcher],
    endpoints: Sequence[str],
    marker: str | None,
    wait_s: float = 30.0,
) -> list[str]:
    """Write the end `marker` (the writers have stopped; None: the cluster did not recover,
    just stop), wait until each watcher delivered it (`wait_s` from the first attempt to
    write it), stop them all; returns the problems (a marker not written or not delivered,
    an error)."""
    problems: list[str] = []
    try:
        if watchers and marker is not None:
            problems += _await_marker(watchers, endpoints, marker, wait_s)
    finally:
        problems += stop_all(watchers, "watcher")
    return problems


def _await_marker(
    watchers: Sequence[Watcher], endpoints: Sequence[str], marker: str, wait_s: float
) -> list[str]:
    deadline = time.monotonic() + wait_s
    with Client(list(endpoints), timeout=3.0) as client:
        while True:
            try:
                client.set(MARKER_KEY, marker)
                break
            except RaftcacheError as exc:
                if time.monotonic() > deadline:
                    return [f"the watch end marker could not be written: {exc!r}"]
                time.sleep(0.5)
    return [
        f"watcher {watcher.index} did not deliver the end marker within {wait_s:g} s: its "
        "watch stalled"
        for watcher in watchers
        if not watcher.marker_seen.wait(max(deadline - time.monotonic(), 0))
    ]
