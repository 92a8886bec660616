"""Pub/sub under faults: a publisher through the SDK and subscribers through the SDK and
the Redis port, recorded in pubsub.jsonl and checked by checkers.check_pubsub.

Pub/sub is at most once: a subscription lives on one node and sees what that node applies
while it is connected; one that breaks is re-made (a new "session") and the messages in
between are lost. What still must hold, and is checked:
- no message delivered that was never published, or whose publish failed;
- within a session, nothing twice, and one publisher's acknowledged messages in the order
  they were acknowledged (the publisher waits for each);
- every session, on any node, sees the messages it shares with any other in the same order
  (each node delivers in log order);
- after the faults heal, every subscriber receives an end marker (none is stuck).

Records (one JSON line each): {"what": "publish", "publisher", "channel", "message",
"invoke", "complete", "outcome"}; {"what": "subscribed" | "break", "subscriber", "session",
"time", ...}; {"what": "message", "subscriber", "session", "channel", "message", "time"}.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import threading
import time
from collections.abc import Sequence
from typing import Any

from raftcache.chaos.history import RecordLog
from raftcache.chaos.watch import Background, stop_all
from raftcache.client import (
    AsyncClient,
    Client,
    OutcomeUnknownError,
    OverloadedError,
    RaftcacheError,
    UnavailableError,
)

CHANNELS = ("ps:0", "ps:1", "ps:2")
MARKER_PREFIX = "end-"
PUBSUB_FILE = "pubsub.jsonl"


class Publisher(Background):
    """Publishes "<index>-<n>" to the channels in turn, one at a time, each recorded."""

    def __init__(
        self, index: int, endpoints: Sequence[str], log: RecordLog, think_s: float = 0.02
    ) -> None:
        super().__init__(index, "publish", endpoints, log)
        self.think_s = think_s

    def _body(self) -> None:
        with Client(self.endpoints, timeout=3.0) as client:
            for n in itertools.count():
                if self._stop.is_set():
                    return
                publish(client, self.log, CHANNELS[n % len(CHANNELS)], f"{self.index}-{n}")
                self._stop.wait(self.think_s)


def publish(client: Client, log: RecordLog, channel: str, message: str, who: int = 0) -> str:
    """One recorded publish; returns its outcome (ok, fail or unknown)."""
    invoke = log.clock()
    try:
        client.publish(channel, message)
        outcome = "ok"
    except OutcomeUnknownError:
        outcome = "unknown"
    except (UnavailableError, OverloadedError):
        outcome = "fail"
    log.write(
        "publish", publisher=who, channel=channel, message=message, invoke=invoke,
        complete=log.clock(), outcome=outcome,
    )  # fmt: skip
    return outcome


class Subscriber(Background):
    """Subscribed to every channel, through the SDK (`resp` None) or the Redis port (a
    node picked at random for each session); re-subscribes after a break."""

    def __init__(
        self,
        index: int,
        endpoints: Sequence[str],
        log: RecordLog,
        resp: Sequence[str] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(index, "subscribe", endpoints, log)
        self.resp = list(resp) if resp else None
        self.marker_seen = threading.Event()
        self.subscribed = threading.Event()  # a session is open now
        self.node = ""  # the Redis port of the latest session ("sdk" through the SDK)
        self._rng = random.Random(f"{seed}-sub-{index}")
        self._session = 0

    @property
    def protocol(self) -> str:
        return "grpc" if self.resp is None else "resp"

    def _body(self) -> None:
        if self.resp is None:
            asyncio.run(self._sdk())
        else:
            self._redis(self.resp)

    def _got(self, channel: str, message: str) -> None:
        self.log.write(
            "message", subscriber=self.index, session=self._session, channel=channel,
            message=message,
        )  # fmt: skip
        if message.startswith(MARKER_PREFIX):
            self.marker_seen.set()

    def _opened(self, node: str) -> None:
        self.node = node
        self._session += 1
        self.log.write("subscribed", subscriber=self.index, session=self._session, value=node)
        self.subscribed.set()

    def _broke(self, why: str) -> None:
        self.subscribed.clear()
        self.log.write("break", subscriber=self.index, session=self._session, value=why)

    async def _sdk(self) -> None:
        async with AsyncClient(self.endpoints, timeout=3.0) as client:
            await self._until_stopped(self._follow(client))

    async def _follow(self, client: AsyncClient) -> None:
        while True:
            try:
                subscription = await client.subscribe(CHANNELS)
            except RaftcacheError as exc:
                self._broke(repr(exc))
                await asyncio.sleep(0.3)
                continue
            self._opened("sdk")
            try:
                async for message in subscription:
                    self._got(message.channel.decode(), message.data.decode())
                self._broke("ended")
            except RaftcacheError as exc:
                self._broke(repr(exc))
                await asyncio.sleep(0.3)
            finally:
                await subscription.aclose()

    def _redis(self, endpoints: Sequence[str]) -> None:
        import redis  # redis-py: the test extra, as for the redis-* workloads
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        connection: Any = redis.Connection  # untyped in redis-py (as in resp_client.py)

        while not self._stop.is_set():
            host, _, port = self._rng.choice(endpoints).rpartition(":")
            conn: Any = connection(
                host=host.strip("[]"), port=int(port), protocol=2, socket_timeout=3.0,
                socket_connect_timeout=3.0, retry=Retry(NoBackoff(), 0), decode_responses=True,
            )  # fmt: skip
            try:
                conn.connect()
                conn.send_command("SUBSCRIBE", *CHANNELS)
                for _ in CHANNELS:
                    conn.read_response()  # ["subscribe", channel, count]
                self._opened(f"{host}:{port}")
                while not self._stop.is_set():
                    if not conn.can_read(timeout=0.3):
                        continue
                    kind, channel, data = conn.read_response()
                    if kind == "message":
                        self._got(channel, data)
            except (redis.RedisError, OSError, ValueError) as exc:
                self._broke(repr(exc))
                time.sleep(0.3)
            finally:
                conn.disconnect()


def start_pubsub(
    endpoints: Sequence[str],
    redis_endpoints: Sequence[str],
    log: RecordLog,
    subscribers: int,
    seed: int,
) -> tuple[list[Publisher], list[Subscriber]]:
    """`subscribers` subscribers (through the SDK and the Redis port in turn, the SDK only
    without Redis ports), waited for until subscribed, then one publisher."""
    subs = [
        Subscriber(i, endpoints, log, redis_endpoints if i % 2 and redis_endpoints else None, seed)
        for i in range(subscribers)
    ]
    for sub in subs:
        sub.start()
    deadline = time.monotonic() + 30.0
    for sub in subs:
        sub.subscribed.wait(max(deadline - time.monotonic(), 0))
    publishers = [Publisher(0, endpoints, log)] if subs else []
    for publisher in publishers:
        publisher.start()
    return publishers, subs


def finish_pubsub(
    publishers: Sequence[Publisher],
    subscribers: Sequence[Subscriber],
    endpoints: Sequence[str],
    log: RecordLog,
    markers: bool = True,
    wait_s: float = 30.0,
) -> list[str]:
    """Stop publishing; then (`markers`: the cluster recovered) publish end markers every
    0.5 s, as a subscriber may be re-subscribing, until every subscriber got one; stop
    them. Returns the problems."""
    problems: list[str] = []
    try:
        problems += stop_all(publishers, "publisher")
        if subscribers and markers:
            problems += _await_markers(subscribers, endpoints, log, wait_s)
    finally:
        problems += stop_all(subscribers, "subscriber")
    return problems


def _await_markers(
    subscribers: Sequence[Subscriber], endpoints: Sequence[str], log: RecordLog, wait_s: float
) -> list[str]:
    deadline = time.monotonic() + wait_s
    sent = itertools.count()
    with Client(list(endpoints), timeout=3.0) as client:
        while True:
            if all(s.marker_seen.is_set() for s in subscribers):
                return []
            if time.monotonic() > deadline:
                stuck = [s.index for s in subscribers if not s.marker_seen.is_set()]
                return [
                    f"subscriber(s) {stuck} received no end marker within {wait_s:g} s "
                    "after the faults healed: stuck"
                ]
            with contextlib.suppress(RaftcacheError):
                publish(client, log, CHANNELS[0], f"{MARKER_PREFIX}{next(sent)}", who=-1)
            time.sleep(0.5)
