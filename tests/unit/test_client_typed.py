"""The SDK's typed ops, txn, scan, pub/sub and watch against a fake transport: the request
each method builds, how answers decode, paging, and how a broken watch resumes."""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from raftcache.client import (
    AsyncClient,
    Client,
    ConditionFailedError,
    InvalidInputError,
    Message,
    NotFoundError,
    OutOfMemoryError,
    RaftcacheError,
    RevisionCompactedError,
    SlowConsumerError,
    UnavailableError,
    WatchEvent,
    WrongTypeError,
    ops,
)
from raftcache.client._transport import CallFailed
from raftcache.client._values import READ_OPS
from raftcache.v1 import cache_pb2

from tests.unit.test_client_routing import (
    CLIENT_ID,
    REFUSED,
    SOCKET_CLOSED,
    A,
    B,
    C,
    FakeClock,
    FakeTransport,
    make_client,
    run,
)

V = cache_pb2.Value
D = cache_pb2.DataOp


def answer(**value: Any) -> cache_pb2.ExecResponse:
    return cache_pb2.ExecResponse(value=V(**value))


def scored(*pairs: tuple[bytes, float]) -> V:
    return V(
        scored=cache_pb2.ScoredMembers(
            items=[cache_pb2.ScoredMember(member=m, score=s) for m, s in pairs]
        )
    )


def blist(*items: bytes) -> V:
    return V(list=cache_pb2.BytesList(items=list(items)))


def bound(value: float, exclusive: bool = False) -> cache_pb2.ScoreBound:
    return cache_pb2.ScoreBound(value=value, exclusive=exclusive)


class FakeStream:
    """A scripted server stream: messages in order, a CallFailed is raised where it stands,
    and the end of the script is a clean end of the stream."""

    def __init__(self, *items: Any, refuse: CallFailed | None = None, metadata: Any = None) -> None:
        self.items = deque(items)
        self.refuse = refuse
        self.metadata = metadata or {}
        self.cancelled = False

    async def started(self, timeout: float) -> Any:
        if self.refuse is not None:
            raise self.refuse
        return self.metadata

    async def next(self) -> Any | None:
        if not self.items:
            return None
        item = self.items.popleft()
        if isinstance(item, CallFailed):
            raise item
        return item

    def cancel(self) -> None:
        self.cancelled = True


class StreamingFake(FakeTransport):
    """FakeTransport that also serves scripted streams, one per open_stream call."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        super().__init__(clock)
        self.streams: deque[FakeStream] = deque()
        self.opened: list[tuple[str, str, Any]] = []

    def open_stream(self, address: str, method: str, request: Any) -> FakeStream:
        copy = type(request)()
        copy.CopyFrom(request)
        self.opened.append((address, method, copy))
        if not self.streams:
            return FakeStream(refuse=REFUSED)
        return self.streams.popleft()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake(clock: FakeClock) -> StreamingFake:
    return StreamingFake(clock)


@pytest.fixture
def client(fake: StreamingFake, clock: FakeClock) -> AsyncClient:
    return make_client(fake, clock)


def exec_requests(fake: FakeTransport) -> list[cache_pb2.ExecRequest]:
    return [c.request for c in fake.sent("Cache/Exec")]


# -- the request each method builds, and how its answer decodes --------------------------

Call = Callable[[AsyncClient], Coroutine[Any, Any, Any]]

# (method call, the DataOp it must send, the node's answer, what the method returns)
READS: list[tuple[Call, D, V, Any]] = [
    (lambda c: c.hget("h", "f"), D(hget=cache_pb2.HGet(key=b"h", field=b"f")), V(bytes=b"v"), b"v"),
    (lambda c: c.hget(b"h", b"f"), D(hget=cache_pb2.HGet(key=b"h", field=b"f")), V(nil=True), None),
    (
        lambda c: c.hgetall("h"),
        D(hgetall=cache_pb2.HGetAll(key=b"h")),
        V(fields=cache_pb2.FieldValues(items=[cache_pb2.FieldValue(field=b"a", value=b"1")])),
        {b"a": b"1"},
    ),
    (lambda c: c.hgetall("h"), D(hgetall=cache_pb2.HGetAll(key=b"h")), V(nil=True), {}),
    (lambda c: c.hlen("h"), D(hlen=cache_pb2.HLen(key=b"h")), V(int=2), 2),
    (
        lambda c: c.zscore("z", "m"),
        D(zscore=cache_pb2.ZScore(key=b"z", member=b"m")),
        V(score=1.5),
        1.5,
    ),
    (
        lambda c: c.zscore("z", "m"),
        D(zscore=cache_pb2.ZScore(key=b"z", member=b"m")),
        V(nil=True),
        None,
    ),
    (
        lambda c: c.zrank("z", "m", reverse=True),
        D(zrank=cache_pb2.ZRank(key=b"z", member=b"m", reverse=True)),
        V(int=0),
        0,
    ),
    (
        lambda c: c.zrank("z", "m"),
        D(zrank=cache_pb2.ZRank(key=b"z", member=b"m")),
        V(nil=True),
        None,
    ),
    (
        lambda c: c.zrange("z", 0, -1),
        D(zrange=cache_pb2.ZRange(key=b"z", start=0, stop=-1)),
        scored((b"a", 1.0), (b"b", 2.0)),
        [b"a", b"b"],
    ),
    (
        lambda c: c.zrange("z", -2, -1, reverse=True, withscores=True),
        D(zrange=cache_pb2.ZRange(key=b"z", start=-2, stop=-1, reverse=True)),
        scored((b"b", 2.0), (b"a", 1.0)),
        [(b"b", 2.0), (b"a", 1.0)],
    ),
    (
        lambda c: c.zrangebyscore("z", 1, math.inf, min_exclusive=True, offset=1, limit=10),
        D(
            zrangebyscore=cache_pb2.ZRangeByScore(
                key=b"z", min=bound(1, True), max=bound(math.inf), offset=1, limit=10
            )
        ),
        scored((b"c", 3.0)),
        [b"c"],
    ),
    (
        lambda c: c.zrangebyscore(
            "z", -math.inf, 5, max_exclusive=True, reverse=True, withscores=True
        ),
        D(
            zrangebyscore=cache_pb2.ZRangeByScore(
                key=b"z", min=bound(-math.inf), max=bound(5, True), reverse=True
            )
        ),
        V(nil=True),
        [],
    ),
    (lambda c: c.zcard("z"), D(zcard=cache_pb2.ZCard(key=b"z")), V(int=3), 3),
    (
        lambda c: c.zcount("z", 0, 10, max_exclusive=True),
        D(zcount=cache_pb2.ZCount(key=b"z", min=bound(0), max=bound(10, True))),
        V(int=4),
        4,
    ),
    (
        lambda c: c.lrange("l", 0, -1),
        D(lrange=cache_pb2.LRange(key=b"l", start=0, stop=-1)),
        blist(b"x", b"y"),
        [b"x", b"y"],
    ),
    (
        lambda c: c.lrange("l", 5, 9),
        D(lrange=cache_pb2.LRange(key=b"l", start=5, stop=9)),
        blist(),
        [],
    ),
    (lambda c: c.llen("l"), D(llen=cache_pb2.LLen(key=b"l")), V(int=0), 0),
    (
        lambda c: c.smembers("s"),
        D(smembers=cache_pb2.SMembers(key=b"s")),
        blist(b"a", b"b"),
        {b"a", b"b"},
    ),
    (
        lambda c: c.sismember("s", "a"),
        D(sismember=cache_pb2.SIsMember(key=b"s", member=b"a")),
        V(int=1),
        True,
    ),
    (
        lambda c: c.sismember("s", "z"),
        D(sismember=cache_pb2.SIsMember(key=b"s", member=b"z")),
        V(int=0),
        False,
    ),
    (lambda c: c.scard("s"), D(scard=cache_pb2.SCard(key=b"s")), V(int=2), 2),
    (lambda c: c.ttl("k"), D(ttl=cache_pb2.Ttl(key=b"k")), V(int=1500), 1.5),
    (lambda c: c.ttl("k"), D(ttl=cache_pb2.Ttl(key=b"k")), V(int=-1), None),
    (lambda c: c.type("k"), D(type=cache_pb2.TypeOf(key=b"k")), V(text="zset"), "zset"),
    (lambda c: c.type("k"), D(type=cache_pb2.TypeOf(key=b"k")), V(text="none"), "none"),
]

WRITES: list[tuple[Call, D, V, Any]] = [
    (
        lambda c: c.hset("h", {"a": "1", b"b": b"2"}),
        D(
            hset=cache_pb2.HSet(
                key=b"h",
                fields=[
                    cache_pb2.FieldValue(field=b"a", value=b"1"),
                    cache_pb2.FieldValue(field=b"b", value=b"2"),
                ],
            )
        ),
        V(int=2),
        2,
    ),
    (
        lambda c: c.hdel("h", "a", "b"),
        D(hdel=cache_pb2.HDel(key=b"h", fields=[b"a", b"b"])),
        V(int=1),
        1,
    ),
    (
        lambda c: c.hincrby("h", "n", -3),
        D(hincrby=cache_pb2.HIncrBy(key=b"h", field=b"n", delta=-3)),
        V(int=7),
        7,
    ),
    (
        lambda c: c.zadd("z", {"a": 1, "b": 2.5}),
        D(
            zadd=cache_pb2.ZAdd(
                key=b"z",
                members=[
                    cache_pb2.ScoredMember(member=b"a", score=1.0),
                    cache_pb2.ScoredMember(member=b"b", score=2.5),
                ],
            )
        ),
        V(int=2),
        2,
    ),
    (
        lambda c: c.zincrby("z", "a", 0.5),
        D(zincrby=cache_pb2.ZIncrBy(key=b"z", member=b"a", delta=0.5)),
        V(score=1.5),
        1.5,
    ),
    (lambda c: c.zrem("z", "a"), D(zrem=cache_pb2.ZRem(key=b"z", members=[b"a"])), V(int=1), 1),
    (
        lambda c: c.lpush("l", "a", "b"),
        D(push=cache_pb2.Push(key=b"l", values=[b"a", b"b"], end=cache_pb2.LEFT)),
        V(int=2),
        2,
    ),
    (
        lambda c: c.rpush("l", b"c"),
        D(push=cache_pb2.Push(key=b"l", values=[b"c"], end=cache_pb2.RIGHT)),
        V(int=3),
        3,
    ),
    (lambda c: c.lpop("l"), D(pop=cache_pb2.Pop(key=b"l", end=cache_pb2.LEFT)), blist(b"a"), b"a"),
    (lambda c: c.rpop("l"), D(pop=cache_pb2.Pop(key=b"l", end=cache_pb2.RIGHT)), blist(), None),
    (lambda c: c.rpop("l"), D(pop=cache_pb2.Pop(key=b"l", end=cache_pb2.RIGHT)), V(nil=True), None),
    (
        lambda c: c.lpop("l", 2),
        D(pop=cache_pb2.Pop(key=b"l", count=2, end=cache_pb2.LEFT)),
        blist(b"a", b"b"),
        [b"a", b"b"],
    ),
    (
        lambda c: c.sadd("s", "a", "b"),
        D(sadd=cache_pb2.SAdd(key=b"s", members=[b"a", b"b"])),
        V(int=2),
        2,
    ),
    (lambda c: c.srem("s", "a"), D(srem=cache_pb2.SRem(key=b"s", members=[b"a"])), V(int=0), 0),
    (
        lambda c: c.expire("k", 1.5),
        D(expire=cache_pb2.Expire(key=b"k", ttl_ms=1500)),
        V(int=1),
        True,
    ),
    (
        lambda c: c.expire("k", 10),
        D(expire=cache_pb2.Expire(key=b"k", ttl_ms=10000)),
        V(int=0),
        False,
    ),
    (lambda c: c.persist("k"), D(persist=cache_pb2.Persist(key=b"k")), V(int=1), True),
]


@pytest.mark.parametrize(("call", "op", "value", "expected"), READS)
def test_reads_send_their_op_to_the_leader_and_decode(
    client: AsyncClient, fake: StreamingFake, call: Call, op: D, value: V, expected: Any
) -> None:
    fake.script("Cache/Exec", cache_pb2.ExecResponse(value=value))

    assert run(call(client)) == expected

    (sent,) = fake.sent("Cache/Exec")
    assert sent.address == A
    assert sent.request.op == op
    assert sent.request.consistency == cache_pb2.LINEARIZABLE
    assert not sent.request.HasField("request_id")


@pytest.mark.parametrize(("call", "op", "value", "expected"), WRITES)
def test_writes_send_their_op_with_a_request_id_and_decode(
    client: AsyncClient, fake: StreamingFake, call: Call, op: D, value: V, expected: Any
) -> None:
    fake.script("Cache/Exec", cache_pb2.ExecResponse(value=value))

    assert run(call(client)) == expected

    (sent,) = exec_requests(fake)
    assert sent.op == op
    assert sent.request_id.client_id == CLIENT_ID
    assert sent.request_id.seq > 0


def test_the_read_table_covers_exactly_the_read_ops() -> None:
    """Every read op (but get, which has its own RPC) is exercised above as a read."""
    assert {op.WhichOneof("op") for _, op, _, _ in READS} | {"get"} == READ_OPS


def test_stale_reads_carry_the_staleness_bound_and_may_go_anywhere(
    client: AsyncClient, fake: StreamingFake
) -> None:
    fake.otherwise("Cache/Exec", answer(int=3))

    for _ in range(3):
        assert run(client.zcard("z", consistency="stale", max_staleness=0.25)) == 3

    sent = fake.sent("Cache/Exec")
    assert {c.address for c in sent} == {A, B, C}
    assert all(c.request.consistency == cache_pb2.STALE for c in sent)
    assert all(c.request.max_staleness_ms == 250 for c in sent)


def test_a_retried_increment_keeps_its_request_id(client: AsyncClient, fake: StreamingFake) -> None:
    fake.script("Cache/Exec", SOCKET_CLOSED, answer(score=3.0))

    assert run(client.zincrby("board", "ann", 1)) == 3.0

    first, second = exec_requests(fake)
    assert first.request_id == second.request_id
    assert first.op == second.op


def test_each_write_gets_its_own_request_id(client: AsyncClient, fake: StreamingFake) -> None:
    fake.otherwise("Cache/Exec", answer(int=1))

    run(client.hincrby("h", "f"))
    run(client.rpush("l", "x"))

    first, second = exec_requests(fake)
    assert first.request_id.seq != second.request_id.seq


def test_ttl_of_a_missing_key_raises_not_found(client: AsyncClient, fake: StreamingFake) -> None:
    fake.script("Cache/Exec", answer(int=-2))

    with pytest.raises(NotFoundError, match="does not exist"):
        run(client.ttl("gone"))


def test_an_answer_of_the_wrong_kind_is_a_clear_error(
    client: AsyncClient, fake: StreamingFake
) -> None:
    fake.script("Cache/Exec", answer(text="surprise"))

    with pytest.raises(RaftcacheError, match="answered text where int was expected"):
        run(client.hlen("h"))


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.hget(42, "f"),
        lambda c: c.hset("h", {"f": 3}),
        lambda c: c.lpush("l"),
        lambda c: c.lpop("l", 0),
        lambda c: c.expire("k", 0),
        lambda c: c.zrangebyscore("z", 0, 1, limit=0),
        lambda c: c.hget("h", "f", consistency="sometimes"),
    ],
)
def test_bad_input_fails_before_any_call(
    client: AsyncClient, fake: StreamingFake, call: Call
) -> None:
    with pytest.raises(InvalidInputError):
        run(call(client))
    assert fake.sent("Cache/Exec") == []


# -- errors the node answers -------------------------------------------------------------

WRONG_TYPE = "WRONGTYPE: key b'k' holds a list, not a hash"


@pytest.mark.parametrize(
    "failure",
    [
        CallFailed("FAILED_PRECONDITION", WRONG_TYPE, "ConditionFailed"),
        CallFailed("FAILED_PRECONDITION", "key holds a list, not a hash", "WrongType"),
    ],
)
def test_a_wrong_type_op_raises_wrong_type_at_once(
    client: AsyncClient, fake: StreamingFake, failure: CallFailed
) -> None:
    fake.script("Cache/Exec", failure)

    with pytest.raises(WrongTypeError) as raised:
        run(client.hget("k", "f"))

    assert isinstance(raised.value, ConditionFailedError)  # old handlers still catch it
    assert "list" in str(raised.value) and "hash" in str(raised.value)
    assert len(fake.sent("Cache/Exec")) == 1


def test_a_plain_failed_condition_stays_condition_failed(
    client: AsyncClient, fake: StreamingFake
) -> None:
    fake.script(
        "Cache/Exec", CallFailed("FAILED_PRECONDITION", "not an integer", "ConditionFailed")
    )

    with pytest.raises(ConditionFailedError) as raised:
        run(client.hincrby("h", "f"))
    assert not isinstance(raised.value, WrongTypeError)


def test_out_of_memory_is_final_not_retried(client: AsyncClient, fake: StreamingFake) -> None:
    fake.script(
        "Cache/Exec",
        CallFailed("RESOURCE_EXHAUSTED", "over --max-memory 1048576 bytes", "OutOfMemory"),
    )

    with pytest.raises(OutOfMemoryError, match="max-memory"):
        run(client.rpush("l", "x" * 100))
    assert len(fake.sent("Cache/Exec")) == 1


# -- transactions --------------------------------------------------------------------------


def test_txn_sends_compares_and_both_branches_and_decodes_the_success_branch(
    client: AsyncClient, fake: StreamingFake
) -> None:
    fake.script(
        "Cache/Txn",
        cache_pb2.TxnResponse(succeeded=True, results=[V(int=5), V(int=1), V(nil=True)]),
    )

    result = run(
        client.txn(
            [ops.value("stock", "==", "1"), ops.version("stock", ">", 3), ops.missing("lock")],
            [ops.incr("sold", 5), ops.sismember("s", "a"), ops.hget("h", "f")],
            [ops.get("stock")],
        )
    )

    assert result.succeeded
    assert result.results == [5, True, None]
    (sent,) = fake.sent("Cache/Txn")
    request = sent.request
    assert list(request.compares) == [
        cache_pb2.Compare(key=b"stock", op=cache_pb2.Compare.EQUAL, value=b"1"),
        cache_pb2.Compare(key=b"stock", op=cache_pb2.Compare.GREATER, version=3),
        cache_pb2.Compare(key=b"lock", op=cache_pb2.Compare.EQUAL, exists=False),
    ]
    assert [op.WhichOneof("op") for op in request.success] == ["incr", "sismember", "hget"]
    assert list(request.failure) == [D(get=cache_pb2.StrGet(key=b"stock"))]
    assert request.request_id.client_id == CLIENT_ID


def test_txn_decodes_the_failure_branch_when_a_compare_fails(
    client: AsyncClient, fake: StreamingFake
) -> None:
    fake.script("Cache/Txn", cache_pb2.TxnResponse(succeeded=False, results=[V(bytes=b"0")]))

    result = run(client.txn([ops.exists("stock")], [ops.delete("stock")], [ops.get("stock")]))

    assert (result.succeeded, result.results) == (False, [b"0"])


def test_txn_compare_ops_are_checked() -> None:
    with pytest.raises(InvalidInputError, match="compare op"):
        ops.value("k", ">", "v")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="compare op"):
        ops.version("k", "=", 1)  # type: ignore[arg-type]


# -- scan ----------------------------------------------------------------------------------


def test_scan_iter_follows_the_cursor_until_it_is_empty(
    client: AsyncClient, fake: StreamingFake
) -> None:
    fake.script(
        "Cache/Scan",
        cache_pb2.ScanResponse(keys=[b"p:1", b"p:2"], next_cursor=b"c1"),
        cache_pb2.ScanResponse(keys=[], next_cursor=b"c2"),  # a page may be empty
        cache_pb2.ScanResponse(keys=[b"p:3"], next_cursor=b""),
    )

    async def collect() -> list[bytes]:
        return [key async for key in client.scan_iter("p:", count=2)]

    assert run(collect()) == [b"p:1", b"p:2", b"p:3"]
    requests = [c.request for c in fake.sent("Cache/Scan")]
    assert [r.cursor for r in requests] == [b"", b"c1", b"c2"]
    assert all(r.prefix == b"p:" and r.count == 2 for r in requests)


def test_scan_iter_rejects_a_bad_count(client: AsyncClient) -> None:
    async def first() -> Any:
        return await anext(client.scan_iter(count=0))

    with pytest.raises(InvalidInputError, match="count"):
        run(first())


def test_blocking_scan_iter_pages_the_same_way(fake: StreamingFake) -> None:
    fake.script(
        "Cache/Scan",
        cache_pb2.ScanResponse(keys=[b"a"], next_cursor=b"x"),
        cache_pb2.ScanResponse(keys=[b"b"]),
    )
    with Client(A, transport=fake, client_id=CLIENT_ID) as client:
        assert list(client.scan_iter()) == [b"a", b"b"]


# -- publish and subscribe -------------------------------------------------------------------


def test_publish_goes_to_the_leader_and_returns_receivers(
    client: AsyncClient, fake: StreamingFake
) -> None:
    fake.script("Cache/Publish", cache_pb2.PublishResponse(receivers=3))

    assert run(client.publish("news", "hello")) == 3
    (sent,) = fake.sent("Cache/Publish")
    assert (sent.address, sent.request.channel, sent.request.message) == (A, b"news", b"hello")


def test_subscribe_tries_members_until_one_accepts(
    client: AsyncClient, fake: StreamingFake
) -> None:
    fake.streams.extend(
        [
            FakeStream(refuse=REFUSED),
            FakeStream(
                cache_pb2.PubSubMessage(channel=b"news", message=b"m1"),
                cache_pb2.PubSubMessage(channel=b"news.eu", message=b"m2", pattern=b"news.*"),
            ),
        ]
    )

    async def two() -> list[Message]:
        subscription = await client.subscribe(["news"], patterns=["news.*"])
        got = [await anext(subscription), await anext(subscription)]
        await subscription.aclose()
        return got

    assert run(two()) == [
        Message(b"news", b"m1", None),
        Message(b"news.eu", b"m2", b"news.*"),
    ]
    addresses = [address for address, _, _ in fake.opened]
    assert len(addresses) == 2 and addresses[0] != addresses[1]
    _, method, request = fake.opened[1]
    assert method == "Cache/Subscribe"
    assert (list(request.channels), list(request.patterns)) == ([b"news"], [b"news.*"])


def test_a_slow_subscriber_gets_a_typed_error(client: AsyncClient, fake: StreamingFake) -> None:
    fake.streams.append(
        FakeStream(
            cache_pb2.PubSubMessage(channel=b"c", message=b"1"),
            CallFailed("RESOURCE_EXHAUSTED", "subscriber fell behind", "SlowConsumer"),
        )
    )

    async def drain() -> list[Message]:
        subscription = await client.subscribe(["c"])
        return [m async for m in subscription]

    with pytest.raises(SlowConsumerError, match="fell behind"):
        run(drain())


def test_a_broken_subscription_says_messages_may_be_lost(
    client: AsyncClient, fake: StreamingFake
) -> None:
    fake.streams.append(FakeStream(SOCKET_CLOSED))

    async def drain() -> list[Message]:
        return [m async for m in await client.subscribe(["c"])]

    with pytest.raises(UnavailableError, match="subscribe again"):
        run(drain())


def test_subscribe_needs_a_channel_or_pattern(client: AsyncClient) -> None:
    with pytest.raises(InvalidInputError):
        run(client.subscribe())


def test_subscribe_fails_when_no_node_accepts(client: AsyncClient, fake: StreamingFake) -> None:
    with pytest.raises(UnavailableError, match="no node accepted"):
        run(client.subscribe(["c"], timeout=1.0))  # fake streams refuse when unscripted


# -- watch -----------------------------------------------------------------------------------


def event(revision: int, key: bytes = b"k", kind: int = cache_pb2.WatchEvent.SET) -> Any:
    return cache_pb2.WatchEvent(
        kind=kind, key=key, revision=revision, value=b"v%d" % revision, type="string"
    )


def take(client: AsyncClient, n: int, **watch: Any) -> list[WatchEvent]:
    async def body() -> list[WatchEvent]:
        stream = await client.watch("k", **watch)
        got = [await anext(stream) for _ in range(n)]
        await stream.aclose()
        return got

    result: list[WatchEvent] = run(body())
    return result


def test_watch_resumes_from_the_last_delivered_revision_on_another_node(
    client: AsyncClient, fake: StreamingFake
) -> None:
    fake.streams.extend(
        [
            FakeStream(event(5), event(6), SOCKET_CLOSED),
            FakeStream(refuse=REFUSED),  # the node that broke is down
            FakeStream(event(6), event(7, kind=cache_pb2.WatchEvent.DELETE)),  # 6 again
        ]
    )

    got = take(client, 3, prefix=True, start_revision=4)

    assert [(e.kind, e.revision) for e in got] == [("set", 5), ("set", 6), ("delete", 7)]
    assert got[0].value == b"v5" and got[2].value is None
    requests = [request for _, _, request in fake.opened]
    assert [r.start_revision for r in requests] == [4, 6, 6]
    assert all(r.key == b"k" and r.prefix for r in requests)
    first, *later = [address for address, _, _ in fake.opened]
    assert later[0] != first  # resumed elsewhere first


def test_watch_resumes_after_a_clean_end_and_after_a_slow_consumer_cut(
    client: AsyncClient, fake: StreamingFake
) -> None:
    fake.streams.extend(
        [
            FakeStream(event(10)),  # then the node ends the stream (e.g. shutting down)
            FakeStream(event(11), CallFailed("RESOURCE_EXHAUSTED", "behind", "SlowConsumer")),
            FakeStream(event(12)),
        ]
    )

    got = take(client, 3)

    assert [e.revision for e in got] == [10, 11, 12]
    assert [request.start_revision for _, _, request in fake.opened] == [0, 10, 11]


def test_a_watch_from_now_that_breaks_before_any_event_resumes_from_where_it_started(
    client: AsyncClient, fake: StreamingFake
) -> None:
    fake.streams.extend(
        [
            FakeStream(SOCKET_CLOSED, metadata={"x-raftcache-revision": "41"}),
            FakeStream(event(42), metadata={"x-raftcache-revision": "41"}),
        ]
    )

    got = take(client, 1)

    assert [e.revision for e in got] == [42]
    # Not "from now" again: a change made during the break would have been skipped.
    assert [request.start_revision for _, _, request in fake.opened] == [0, 41]


COMPACTED = CallFailed("OUT_OF_RANGE", "revision 8 is older than 90", "RevisionCompacted")


def test_watch_from_a_compacted_revision_raises_a_typed_error(
    client: AsyncClient, fake: StreamingFake
) -> None:
    # The node ends the stream (it loaded a snapshot); the two others do not retain 8 either.
    fake.streams.extend(
        [
            FakeStream(event(8), COMPACTED),
            FakeStream(refuse=COMPACTED),
            FakeStream(refuse=COMPACTED),
        ]
    )

    async def drain() -> list[WatchEvent]:
        return [e async for e in await client.watch("k", start_revision=7)]

    with pytest.raises(RevisionCompactedError, match=r"after revision 8.*watch from now"):
        run(drain())
    assert len({address for address, _, _ in fake.opened}) == 3


def test_watch_refused_as_too_old_by_every_member(client: AsyncClient, fake: StreamingFake) -> None:
    fake.streams.extend(FakeStream(refuse=COMPACTED) for _ in range(3))

    with pytest.raises(RevisionCompactedError, match="after revision 3"):
        run(client.watch("k", start_revision=3))
    assert len(fake.opened) == 3  # each member once, then no more


def test_a_watch_resumes_on_a_node_that_still_retains_the_revision(
    client: AsyncClient, fake: StreamingFake
) -> None:
    """A restarted node keeps changes only from its last snapshot on; the others still have
    them, so a resume it refuses goes on elsewhere."""
    fake.streams.extend(
        [
            FakeStream(event(8), SOCKET_CLOSED),  # its node restarts
            FakeStream(refuse=COMPACTED),  # the restarted node no longer has 8
            FakeStream(event(9), event(10)),  # another node does
        ]
    )

    got = take(client, 3, start_revision=7)

    assert [e.revision for e in got] == [8, 9, 10]
    assert [request.start_revision for _, _, request in fake.opened] == [7, 8, 8]


def test_blocking_watch_iterates_and_tracks_the_revision(fake: StreamingFake) -> None:
    fake.streams.append(FakeStream(event(1), event(2)))
    with Client(A, transport=fake, client_id=CLIENT_ID) as client:
        watch = client.watch("k")
        got = [next(watch).revision, next(watch).revision]
        assert watch.source.revision == 2
        watch.close()
    assert got == [1, 2]


def test_blocking_client_runs_typed_ops(fake: StreamingFake) -> None:
    fake.script("Cache/Exec", answer(int=1), cache_pb2.ExecResponse(value=blist(b"a")))
    with Client(A, transport=fake, client_id=CLIENT_ID) as client:
        assert client.sadd("s", "a") == 1
        assert client.smembers("s") == {b"a"}
        assert Client.hget.__doc__ == AsyncClient.hget.__doc__


def test_sync_client_has_every_typed_method() -> None:
    names = [
        "hset",
        "hget",
        "hgetall",
        "hdel",
        "hincrby",
        "hlen",
        "zadd",
        "zincrby",
        "zscore",
        "zrank",
        "zrange",
        "zrangebyscore",
        "zrem",
        "zcard",
        "zcount",
        "lpush",
        "rpush",
        "lpop",
        "rpop",
        "lrange",
        "llen",
        "sadd",
        "srem",
        "smembers",
        "sismember",
        "scard",
        "expire",
        "persist",
        "ttl",
        "type",
        "scan_iter",
        "txn",
        "publish",
        "subscribe",
        "watch",
    ]
    missing = [n for n in names if not callable(getattr(Client, n, None))]
    assert missing == []
    assert asyncio.iscoroutinefunction(AsyncClient.hset)


def test_a_watch_keeps_resuming_while_no_member_answers_for_longer_than_its_timeout(
    client: AsyncClient, fake: StreamingFake, clock: FakeClock
) -> None:
    """The whole cluster down past the timeout (a restart of every node) does not end the
    watch: it waits, with backoff, and resumes from the last revision once a node answers."""
    fake.streams.extend(
        [
            FakeStream(event(5), SOCKET_CLOSED),
            *(FakeStream(refuse=REFUSED) for _ in range(200)),
            FakeStream(event(6)),
        ]
    )
    began = clock.now

    async def body() -> tuple[list[WatchEvent], int]:
        stream = await client.watch("k", start_revision=4)
        got = [await anext(stream) for _ in range(2)]
        await stream.aclose()
        return got, stream.resumes

    got, resumes = run(body())
    assert [e.revision for e in got] == [5, 6]
    assert resumes == 1  # re-established once; the refused attempts are not resumes
    assert clock.now - began > client.timeout  # longer than one attempt's deadline
    assert [r.start_revision for _, _, r in fake.opened] == [4] + [5] * 201


class GatedStream(FakeStream):
    """A stream whose start waits until `gate` is set (a node slow to accept it)."""

    def __init__(self, *items: Any) -> None:
        super().__init__(*items)
        self.gate = asyncio.Event()

    async def started(self, timeout: float) -> Any:
        await self.gate.wait()
        return await super().started(timeout)


def break_then_gate(fake: StreamingFake) -> GatedStream:
    """A watch's first stream delivers revision 5 and breaks; its resume opens a stream that
    the test lets start (or not)."""
    gated = GatedStream(event(6))
    fake.streams.extend([FakeStream(event(5), SOCKET_CLOSED), gated])
    return gated


def test_closing_a_watch_while_it_resumes_ends_the_iteration(
    client: AsyncClient, fake: StreamingFake
) -> None:
    gated = break_then_gate(fake)

    async def body() -> None:
        stream = await client.watch("k", start_revision=4)
        assert (await anext(stream)).revision == 5
        pending = asyncio.ensure_future(anext(stream))  # breaks, then resumes on `gated`
        for _ in range(1000):  # until the resume has opened the gated stream
            if len(fake.opened) == 2:
                break
            await asyncio.sleep(0)
        assert len(fake.opened) == 2
        await stream.aclose()
        gated.gate.set()  # the node answers after the close
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(pending, 5.0)
        assert gated.cancelled  # nobody will read it: it is not left open

    run(body())


def test_a_resume_given_up_by_its_caller_leaves_no_stream_open(
    client: AsyncClient, fake: StreamingFake
) -> None:
    gated = break_then_gate(fake)

    async def body() -> None:
        stream = await client.watch("k", start_revision=4)
        assert (await anext(stream)).revision == 5
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(stream), 0.05)  # the caller's own timeout
        assert gated.cancelled

    run(body())


def test_backoff_after_very_many_breaks_stays_a_number(client: AsyncClient) -> None:
    """A watch keeps resuming for as long as an outage lasts: its break count is not bounded,
    and 2**1024 would not fit a float."""
    router = client._router

    async def body() -> None:
        await router._backoff(5000, router.deadline_in(0.01))

    run(body())
