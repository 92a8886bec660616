"""SDK routing and retries against a scripted fake transport: no sockets, a fake clock."""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import pytest
from raftcache.client import (
    AsyncClient,
    Client,
    ConditionFailedError,
    InvalidInputError,
    OutcomeUnknownError,
    OverloadedError,
    RequestTooOldError,
    RetryPolicy,
    TooLargeError,
    UnavailableError,
)
from raftcache.client._router import READ_LEADER, WRITE, Router
from raftcache.client._transport import CallFailed
from raftcache.v1 import cache_pb2, cluster_pb2

A, B, C = "10.0.0.1:6380", "10.0.0.2:6380", "10.0.0.3:6380"
CLIENT_ID = "test-client"


class FakeClock:
    """Monotonic time that only moves when the router sleeps or a scripted call takes time."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@dataclass(frozen=True)
class Call:
    address: str
    method: str
    request: Any  # a copy taken when the call was made
    timeout: float


Outcome = Any  # a response message, a CallFailed, or a callable(address, timeout) -> either


class FakeTransport:
    """Answers each method from its script in order, then with its `otherwise` outcome."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.clock = clock
        self.calls: list[Call] = []
        self.scripts: dict[str, deque[Outcome]] = {}
        self.defaults: dict[str, Outcome] = {"Cluster/Status": status(leader=A)}
        self.closed = False

    def script(self, method: str, *outcomes: Outcome) -> FakeTransport:
        self.scripts.setdefault(method, deque()).extend(outcomes)
        return self

    def otherwise(self, method: str, outcome: Outcome) -> FakeTransport:
        self.defaults[method] = outcome
        return self

    def sent(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    async def call(self, address: str, method: str, request: Any, timeout: float) -> Any:
        copy = type(request)()
        copy.CopyFrom(request)
        self.calls.append(Call(address, method, copy, timeout))
        queue = self.scripts.get(method)
        if queue:
            outcome = queue.popleft()
        elif method in self.defaults:
            outcome = self.defaults[method]
        else:
            raise AssertionError(f"unscripted call {method} to {address}")
        if callable(outcome) and not isinstance(outcome, CallFailed):
            outcome = outcome(address, timeout)
        if isinstance(outcome, CallFailed):
            raise outcome
        return outcome

    async def close(self) -> None:
        self.closed = True


def status(leader: str | None, members: tuple[str, ...] = (A, B, C)) -> cluster_pb2.StatusResponse:
    return cluster_pb2.StatusResponse(
        role=cluster_pb2.FOLLOWER,
        leader_client_addr=leader or "",
        members=[
            cluster_pb2.Member(
                id=f"n{i}", client_addr=m, raft_addr=f"raft-{i}", is_leader=m == leader
            )
            for i, m in enumerate(members)
        ],
    )


def not_leader(hint: str) -> CallFailed:
    return CallFailed("UNAVAILABLE", f"not the leader; the leader is at {hint}", "NotLeader", hint)


NO_LEADER = CallFailed("UNAVAILABLE", "no leader is known right now", "NoLeader")
REFUSED = CallFailed("UNAVAILABLE", "failed to connect to all addresses; Connection refused")
SOCKET_CLOSED = CallFailed("UNAVAILABLE", "Socket closed")  # sent, then the connection broke
NODE_OUTCOME_UNKNOWN = CallFailed("DEADLINE_EXCEEDED", "outcome unknown", "OutcomeUnknown")
TOO_STALE = CallFailed("UNAVAILABLE", "staleness over max_staleness_ms", "TooStale")
OVERLOADED = CallFailed("RESOURCE_EXHAUSTED", "write queue is full", "Overloaded")


def hangs(clock: FakeClock) -> Callable[[str, float], CallFailed]:
    """An attempt that uses up all the time it was given, then times out on our side."""

    def outcome(address: str, timeout: float) -> CallFailed:
        clock.now += timeout
        return CallFailed("DEADLINE_EXCEEDED", "Deadline Exceeded")

    return outcome


class MaxRandom(random.Random):
    """Full jitter's worst case: every draw is the top of its range."""

    def uniform(self, a: float, b: float) -> float:
        return b


def make_client(
    transport: FakeTransport,
    clock: FakeClock,
    *,
    seeds: tuple[str, ...] = (A,),
    policy: RetryPolicy | None = None,
    rng: random.Random | None = None,
    timeout: float = 5.0,
) -> AsyncClient:
    """An AsyncClient on the fake transport whose router uses the fake clock and sleep."""
    client = AsyncClient(list(seeds), transport=transport, client_id=CLIENT_ID, timeout=timeout)
    client._router = Router(
        transport,
        list(seeds),
        policy or RetryPolicy(),
        clock=clock,
        sleep=clock.sleep,
        rng=rng or random.Random(0),
    )
    return client


def run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coroutine)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake(clock: FakeClock) -> FakeTransport:
    return FakeTransport(clock)


# -- leader routing and redirects ---------------------------------------------------


def test_first_call_learns_the_cluster_and_goes_to_the_leader(
    fake: FakeTransport, clock: FakeClock
) -> None:
    fake.otherwise("Cluster/Status", status(leader=B))
    fake.script("Cache/Get", cache_pb2.GetResponse(found=True, value=b"v", version=3))
    client = make_client(fake, clock, seeds=(A,))

    assert run(client.get("k")) == b"v"

    assert [(c.address, c.method) for c in fake.calls] == [
        (A, "Cluster/Status"),
        (B, "Cache/Get"),
    ]
    assert client.members == [A, B, C]
    assert client.leader == B


def test_status_refresh_skips_members_without_client_address(
    fake: FakeTransport, clock: FakeClock
) -> None:
    answer = status(leader=A, members=(A, B))
    answer.members.add(id="n9", client_addr="", raft_addr="raft-9")
    fake.otherwise("Cluster/Status", answer)
    fake.otherwise("Cache/Get", cache_pb2.GetResponse(found=False))
    client = make_client(fake, clock, seeds=(C,))

    assert run(client.get("k")) is None
    assert client.members == [A, B]
    assert client.leader == A


def test_status_is_refreshed_again_after_refresh_every_s(
    fake: FakeTransport, clock: FakeClock
) -> None:
    fake.otherwise("Cache/Get", cache_pb2.GetResponse(found=False))
    client = make_client(fake, clock, policy=RetryPolicy(refresh_every_s=30))

    async def scenario() -> None:
        await client.get("k")
        await client.get("k")
        assert len(fake.sent("Cluster/Status")) == 1
        clock.now += 31
        fake.otherwise("Cluster/Status", status(leader=C))
        await client.get("k")

    run(scenario())
    assert len(fake.sent("Cluster/Status")) == 2
    assert fake.sent("Cache/Get")[-1].address == C


def test_not_leader_redirects_to_the_hinted_node_without_sleeping(
    fake: FakeTransport, clock: FakeClock
) -> None:
    fake.script("Cache/Set", not_leader(B), cache_pb2.SetResponse(version=7))
    client = make_client(fake, clock)

    assert run(client.set("k", "v")) == 7

    assert [c.address for c in fake.sent("Cache/Set")] == [A, B]
    assert clock.sleeps == []
    assert client.leader == B


def test_a_hinted_leader_outside_the_known_members_is_adopted(
    fake: FakeTransport, clock: FakeClock
) -> None:
    d = "10.0.0.4:6380"
    fake.script("Cache/Get", not_leader(d), cache_pb2.GetResponse(found=False))
    client = make_client(fake, clock)

    run(client.get("k"))

    assert fake.sent("Cache/Get")[-1].address == d
    assert d in client.members
    assert client.leader == d


def test_redirects_that_go_round_in_a_circle_back_off(
    fake: FakeTransport, clock: FakeClock
) -> None:
    # During an election A may point at B while B points back at A; the router must not
    # spin between them without pausing.
    fake.otherwise("Cache/Get", lambda address, timeout: not_leader(B if address == A else A))
    client = make_client(fake, clock, timeout=1.0)

    with pytest.raises(UnavailableError):
        run(client.get("k"))

    assert clock.sleeps, "ping-pong redirects never backed off"
    assert len(fake.sent("Cache/Get")) < 500


def test_an_unreachable_leader_is_forgotten_and_relearned(
    fake: FakeTransport, clock: FakeClock
) -> None:
    fake.script("Cluster/Status", status(leader=A), status(leader=C))
    fake.script("Cache/Get", REFUSED, cache_pb2.GetResponse(found=True, value=b"x"))
    client = make_client(fake, clock)

    assert run(client.get("k")) == b"x"

    assert [c.address for c in fake.sent("Cache/Get")] == [A, C]
    assert len(clock.sleeps) == 1
    assert client.leader == C


# -- backoff --------------------------------------------------------------------------


def test_backoff_is_full_jitter_over_an_exponentially_growing_range(
    fake: FakeTransport, clock: FakeClock
) -> None:
    policy = RetryPolicy(base_s=0.01, cap_s=100.0)
    fake.script("Cache/Get", *[NO_LEADER] * 6, cache_pb2.GetResponse(found=False))
    client = make_client(fake, clock, policy=policy, rng=random.Random(0))

    run(client.get("k"))

    draws = random.Random(0)
    expected = [draws.uniform(0, 0.01 * 2**attempt) for attempt in range(1, 7)]
    assert clock.sleeps == pytest.approx(expected)
    # Full jitter: a pause anywhere from 0 up to the ceiling, not a fixed step.
    assert any(s < 0.5 * 0.01 * 2**i for i, s in enumerate(clock.sleeps, start=1))


def test_backoff_ceiling_doubles_until_the_cap(fake: FakeTransport, clock: FakeClock) -> None:
    policy = RetryPolicy(base_s=0.01, cap_s=0.05)
    fake.script("Cache/Set", *[NO_LEADER] * 5, cache_pb2.SetResponse(version=1))
    client = make_client(fake, clock, policy=policy, rng=MaxRandom())

    run(client.set("k", "v"))

    assert clock.sleeps == pytest.approx([0.02, 0.04, 0.05, 0.05, 0.05])


def test_backoff_never_sleeps_past_the_deadline(fake: FakeTransport, clock: FakeClock) -> None:
    policy = RetryPolicy(base_s=1.0, cap_s=100.0)
    fake.otherwise("Cache/Set", NO_LEADER)
    client = make_client(fake, clock, policy=policy, rng=MaxRandom(), timeout=5.0)
    start = clock.now

    with pytest.raises(UnavailableError):
        run(client.set("k", "v"))

    # Ceilings 2 s then 4 s; the second pause is cut to the 3 s that remain.
    assert clock.sleeps == pytest.approx([2.0, 3.0])
    assert clock.now == pytest.approx(start + 5.0)
    for call in fake.sent("Cache/Set"):
        assert 0 < call.timeout <= 5.0


def test_each_attempt_gets_only_the_time_left(fake: FakeTransport, clock: FakeClock) -> None:
    policy = RetryPolicy(base_s=0.5, cap_s=100.0, attempt_timeout_s=100.0)
    fake.script("Cache/Get", NO_LEADER, NO_LEADER, cache_pb2.GetResponse(found=False))
    client = make_client(fake, clock, policy=policy, rng=MaxRandom(), timeout=5.0)

    run(client.get("k"))

    assert [c.timeout for c in fake.sent("Cache/Get")] == pytest.approx([5.0, 4.0, 2.0])


def test_one_attempt_is_capped_so_a_hung_leader_cannot_take_the_whole_deadline(
    fake: FakeTransport, clock: FakeClock
) -> None:
    policy = RetryPolicy(base_s=0.01, cap_s=0.01, attempt_timeout_s=1.5)
    fake.script("Cache/Get", NO_LEADER, cache_pb2.GetResponse(found=False))
    client = make_client(fake, clock, policy=policy, timeout=10.0)

    run(client.get("k"))

    assert [c.timeout for c in fake.sent("Cache/Get")] == pytest.approx([1.5, 1.5])


# -- request ids and unknown outcomes -----------------------------------------------


def test_a_write_keeps_its_request_id_on_every_retry(fake: FakeTransport, clock: FakeClock) -> None:
    fake.script(
        "Cache/Incr",
        SOCKET_CLOSED,
        NO_LEADER,
        not_leader(B),
        NODE_OUTCOME_UNKNOWN,
        cache_pb2.IncrResponse(value=1),
    )
    client = make_client(fake, clock)

    assert run(client.incr("counter")) == 1

    ids = [(c.request.request_id.client_id, c.request.request_id.seq) for c in fake.calls
           if c.method == "Cache/Incr"]  # fmt: skip
    assert ids == [(CLIENT_ID, 1)] * 5


def test_sequence_numbers_increase_per_write_and_reads_carry_none(
    fake: FakeTransport, clock: FakeClock
) -> None:
    fake.otherwise("Cache/Set", cache_pb2.SetResponse(version=1))
    fake.otherwise("Cache/Delete", cache_pb2.DeleteResponse(deleted=True))
    fake.otherwise("Cache/Incr", cache_pb2.IncrResponse(value=1))
    fake.otherwise("Cache/MSet", cache_pb2.MSetResponse(versions=[1]))
    fake.otherwise("Cache/Get", cache_pb2.GetResponse(found=False))
    client = make_client(fake, clock)

    async def scenario() -> None:
        await client.set("a", "1")
        await client.get("a")
        await client.delete("a")
        await client.incr("b")
        await client.mset({"c": "1"})
        await client.set("d", "1")

    run(scenario())

    writes = [c for c in fake.calls if c.method not in ("Cache/Get", "Cluster/Status")]
    assert [c.request.request_id.client_id for c in writes] == [CLIENT_ID] * 5
    assert [c.request.request_id.seq for c in writes] == [1, 2, 3, 4, 5]


def test_clients_have_distinct_ids_by_default() -> None:
    assert (
        AsyncClient(A, transport=FakeTransport()).client_id
        != AsyncClient(A, transport=FakeTransport()).client_id
    )


@pytest.mark.parametrize(
    "first",
    [
        pytest.param("hang", id="our-deadline-mid-call"),
        pytest.param(NODE_OUTCOME_UNKNOWN, id="node-says-outcome-unknown"),
        pytest.param(SOCKET_CLOSED, id="connection-broke-after-send"),
    ],
)
def test_write_that_may_have_applied_ends_in_outcome_unknown(
    fake: FakeTransport, clock: FakeClock, first: Any
) -> None:
    fake.script("Cache/Set", hangs(clock) if first == "hang" else first)
    fake.otherwise("Cache/Set", NO_LEADER)  # later attempts are refused: nothing settles it
    client = make_client(fake, clock, timeout=2.0)

    with pytest.raises(OutcomeUnknownError) as raised:
        run(client.set("k", "v"))

    assert raised.value.request_id == (CLIENT_ID, 1)
    assert raised.value.retriable
    assert "same request id" in str(raised.value)


def test_a_publish_is_retried_only_with_its_request_id(
    fake: FakeTransport, clock: FakeClock
) -> None:
    fake.script("Cache/Publish", NODE_OUTCOME_UNKNOWN)
    fake.otherwise("Cache/Publish", NO_LEADER)
    client = make_client(fake, clock, timeout=2.0)

    with pytest.raises(OutcomeUnknownError) as raised:
        run(client.publish("news", "hi"))

    sent = fake.sent("Cache/Publish")
    assert len(sent) > 1  # retried: safe, because every attempt carries the same id
    assert {(c.request.request_id.client_id, c.request.request_id.seq) for c in sent} == {
        (CLIENT_ID, 1)
    }
    assert "same request id" in str(raised.value)


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(NO_LEADER, id="no-leader"),
        pytest.param(REFUSED, id="connection-refused"),
        pytest.param(CallFailed("UNAVAILABLE", "failed to connect to all addresses"), id="grpc"),
        pytest.param(not_leader(A), id="not-leader-pointing-at-itself"),
    ],
)
def test_write_refused_every_time_is_unavailable_not_unknown(
    fake: FakeTransport, clock: FakeClock, failure: CallFailed
) -> None:
    fake.otherwise("Cache/Set", failure)
    client = make_client(fake, clock, timeout=2.0)

    with pytest.raises(UnavailableError) as raised:
        run(client.set("k", "v"))

    assert "nothing was applied" in str(raised.value)
    assert len(fake.sent("Cache/Set")) > 1  # it was retried, not given up on at once


def test_overloaded_until_the_deadline_raises_overloaded(
    fake: FakeTransport, clock: FakeClock
) -> None:
    fake.otherwise("Cache/Set", OVERLOADED)
    client = make_client(fake, clock, timeout=1.0)

    with pytest.raises(OverloadedError):
        run(client.set("k", "v"))
    assert len(fake.sent("Cache/Set")) > 1


def test_overload_then_success_is_retried(fake: FakeTransport, clock: FakeClock) -> None:
    fake.script("Cache/Set", OVERLOADED, OVERLOADED, cache_pb2.SetResponse(version=2))
    client = make_client(fake, clock)

    assert run(client.set("k", "v")) == 2
    assert len(clock.sleeps) == 2


@pytest.mark.parametrize("consistency", ["linearizable", "stale"])
@pytest.mark.parametrize(
    "failure", ["hang", NODE_OUTCOME_UNKNOWN, SOCKET_CLOSED], ids=["hang", "node", "socket"]
)
def test_reads_never_raise_outcome_unknown(
    fake: FakeTransport, clock: FakeClock, consistency: str, failure: Any
) -> None:
    for method in ("Cache/Get", "Cache/MGet"):
        fake.script(method, hangs(clock) if failure == "hang" else failure)
        fake.otherwise(method, SOCKET_CLOSED)
    client = make_client(fake, clock, timeout=1.0)

    with pytest.raises(UnavailableError):
        run(client.get("k", consistency=consistency))
    with pytest.raises(UnavailableError):
        run(client.mget(["k", "j"], consistency=consistency))


# -- answers that are final ---------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "origin", "error"),
    [
        ("INVALID_ARGUMENT", "InvalidInput", InvalidInputError),
        ("FAILED_PRECONDITION", "ConditionFailed", ConditionFailedError),
        ("RESOURCE_EXHAUSTED", "TooLarge", TooLargeError),
        ("INVALID_ARGUMENT", None, InvalidInputError),  # e.g. gRPC's own message limit
    ],
)
def test_final_answers_are_raised_at_once_without_retry(
    fake: FakeTransport, clock: FakeClock, code: str, origin: str | None, error: type
) -> None:
    fake.script("Cache/Set", SOCKET_CLOSED, CallFailed(code, "what was wrong", origin))
    fake.otherwise("Cache/Set", cache_pb2.SetResponse(version=1))
    client = make_client(fake, clock)

    with pytest.raises(error, match="what was wrong") as raised:
        run(client.set("k", "v", if_absent=True))

    assert not isinstance(raised.value, OutcomeUnknownError)
    assert len(fake.sent("Cache/Set")) == 2  # the final answer ended it
    assert len(clock.sleeps) == 1  # only the pause after the broken connection


def test_a_request_id_out_of_the_dedup_window_ends_at_once_as_request_too_old(
    fake: FakeTransport, clock: FakeClock
) -> None:
    # What the node answers a retry whose id it no longer remembers (status_codes.py).
    too_old = CallFailed("ABORTED", "request id test-client/1 is older than ...", "RequestTooOld")
    fake.script("Cache/Incr", SOCKET_CLOSED, too_old)
    fake.otherwise("Cache/Incr", cache_pb2.IncrResponse(value=1))
    client = make_client(fake, clock)

    with pytest.raises(RequestTooOldError) as raised:
        run(client.incr("k"))

    assert len(fake.sent("Cache/Incr")) == 2  # not retried until the deadline
    error = raised.value
    assert isinstance(error, OutcomeUnknownError) and not error.retriable
    assert error.request_id == (CLIENT_ID, 1)
    assert "no longer remembers request id" in str(error) and "re-read" in str(error)


@pytest.mark.parametrize(
    "details",
    [
        "SERVER: Received message larger than max (20971620 vs. 17825792)",
        "CLIENT: Sent message larger than max (70000000 vs. 67108864)",
    ],
)
def test_a_write_over_grpcs_message_limit_is_too_large_not_unknown(
    fake: FakeTransport, clock: FakeClock, details: str
) -> None:
    fake.otherwise("Cache/MSet", CallFailed("RESOURCE_EXHAUSTED", details))  # no node marker
    client = make_client(fake, clock)

    with pytest.raises(TooLargeError) as raised:
        run(client.mset({"k": "v"}))

    assert len(fake.sent("Cache/MSet")) == 1
    assert "nothing was applied" in str(raised.value) and "larger than max" in str(raised.value)


def test_condition_failed_on_the_first_attempt_is_not_retried(
    fake: FakeTransport, clock: FakeClock
) -> None:
    fake.script(
        "Cache/Incr", CallFailed("FAILED_PRECONDITION", "not an integer", "ConditionFailed")
    )
    client = make_client(fake, clock)

    with pytest.raises(ConditionFailedError):
        run(client.incr("k"))
    assert len(fake.sent("Cache/Incr")) == 1
    assert clock.sleeps == []


# -- bad input never leaves the client -----------------------------------------------

BAD_INPUT: list[Any] = [
    pytest.param(lambda c: c.set("k", "v", ttl=0), id="set-ttl-zero"),
    pytest.param(lambda c: c.set("k", "v", ttl=-1.5), id="set-ttl-negative"),
    pytest.param(lambda c: c.incr("k", ttl=0), id="incr-ttl-zero"),
    pytest.param(lambda c: c.mset({"k": "v"}, ttl=-1), id="mset-ttl-negative"),
    pytest.param(lambda c: c.set("k", "v", if_absent=True, if_present=True), id="both-conditions"),
    pytest.param(lambda c: c.get("k", consistency="strong"), id="bad-consistency"),
    pytest.param(lambda c: c.mget(["k"], consistency="STALE"), id="bad-consistency-mget"),
    pytest.param(lambda c: c.get("k", max_staleness=1.0), id="max-staleness-linearizable"),
    pytest.param(lambda c: c.get("k", consistency="stale", max_staleness=0), id="max-staleness-0"),
    pytest.param(lambda c: c.get(123), id="int-key"),
    pytest.param(lambda c: c.get_item(None), id="none-key"),
    pytest.param(lambda c: c.delete(["k"]), id="list-key"),
    pytest.param(lambda c: c.set("k", 1.5), id="float-value"),
    pytest.param(lambda c: c.mget([b"a", 3]), id="mget-int-key"),
    pytest.param(lambda c: c.mset([("k", 7)]), id="mset-int-value"),
]


@pytest.mark.parametrize("bad", BAD_INPUT)
def test_bad_input_raises_before_any_call(
    fake: FakeTransport, clock: FakeClock, bad: Callable[[AsyncClient], Any]
) -> None:
    fake.otherwise("Cache/Set", cache_pb2.SetResponse(version=1))
    client = make_client(fake, clock)

    with pytest.raises(InvalidInputError) as raised:
        run(bad(client))

    assert str(raised.value)
    assert fake.calls == []
    # Nothing was used up: the next write still gets sequence number 1.
    run(client.set("k", "v"))
    assert fake.sent("Cache/Set")[0].request.request_id.seq == 1


def test_no_endpoints_is_invalid_input() -> None:
    with pytest.raises(InvalidInputError, match="HOST:PORT"):
        AsyncClient([" ", ""], transport=FakeTransport())


def test_comma_separated_endpoints_are_split() -> None:
    client = AsyncClient(f"{A}, {B},", transport=FakeTransport())
    assert client.members == [A, B]


# -- stale reads ----------------------------------------------------------------------


def test_stale_reads_rotate_over_every_member(fake: FakeTransport, clock: FakeClock) -> None:
    fake.otherwise("Cache/Get", cache_pb2.GetResponse(found=False))
    client = make_client(fake, clock)

    async def scenario() -> None:
        for _ in range(6):
            await client.get("k", consistency="stale", max_staleness=0.25)

    run(scenario())

    gets = fake.sent("Cache/Get")
    addresses = [c.address for c in gets]
    assert set(addresses[:3]) == {A, B, C}
    assert addresses[3:] == addresses[:3]
    assert all(c.request.consistency == cache_pb2.STALE for c in gets)
    assert all(c.request.max_staleness_ms == 250 for c in gets)


def test_stale_read_skips_a_member_that_is_too_stale(fake: FakeTransport, clock: FakeClock) -> None:
    fake.script("Cache/Get", TOO_STALE, cache_pb2.GetResponse(found=True, value=b"v"))
    client = make_client(fake, clock)

    assert run(client.get("k", consistency="stale", max_staleness=0.2)) == b"v"

    first, second = (c.address for c in fake.sent("Cache/Get"))
    assert first != second
    assert clock.sleeps == []


def test_stale_read_tries_each_member_once_before_backing_off(
    fake: FakeTransport, clock: FakeClock
) -> None:
    fake.script("Cache/Get", TOO_STALE, TOO_STALE, TOO_STALE, cache_pb2.GetResponse(found=False))
    client = make_client(fake, clock)

    run(client.get("k", consistency="stale", max_staleness=0.2))

    addresses = [c.address for c in fake.sent("Cache/Get")]
    assert sorted(addresses[:3]) == sorted([A, B, C])
    assert len(addresses) == 4
    assert len(clock.sleeps) == 1


def test_stale_reads_do_not_ask_the_leader(fake: FakeTransport, clock: FakeClock) -> None:
    fake.otherwise("Cluster/Status", status(leader=None))  # no leader known anywhere
    fake.otherwise("Cache/Get", cache_pb2.GetResponse(found=True, value=b"v"))
    client = make_client(fake, clock)

    assert run(client.get("k", consistency="stale")) == b"v"
    assert len(fake.sent("Cluster/Status")) == 1


# -- Router directly, the blocking Client, cluster_status --------------------------------


def test_router_without_a_leader_asks_members_which_forward(clock: FakeClock) -> None:
    fake = FakeTransport(clock).otherwise("Cluster/Status", REFUSED)
    fake.script("Cache/Get", REFUSED, cache_pb2.GetResponse(found=False))
    router = Router(fake, [A, B], RetryPolicy(), clock=clock, sleep=clock.sleep,
                    rng=random.Random(0))  # fmt: skip

    run(router.call("Cache/Get", cache_pb2.GetRequest(key=b"k"), route=READ_LEADER, timeout=1))

    first, second = (c.address for c in fake.sent("Cache/Get"))
    assert {first, second} == {A, B}


def test_router_rejects_an_empty_seed_list() -> None:
    with pytest.raises(InvalidInputError):
        Router(FakeTransport(), [], RetryPolicy())


def test_router_reports_the_last_failure(clock: FakeClock) -> None:
    fake = FakeTransport(clock).otherwise("Cache/Set", NO_LEADER)
    router = Router(fake, [A], RetryPolicy(), clock=clock, sleep=clock.sleep,
                    rng=random.Random(0))  # fmt: skip

    with pytest.raises(UnavailableError, match="no leader is known right now"):
        run(router.call("Cache/Set", cache_pb2.SetRequest(), route=WRITE, timeout=0.5))


def test_blocking_client_uses_the_same_routing() -> None:
    fake = FakeTransport()
    fake.script("Cache/Set", not_leader(B), cache_pb2.SetResponse(version=4))
    fake.script("Cache/Get", CallFailed("INVALID_ARGUMENT", "key is empty", "InvalidInput"))
    with Client(A, transport=fake, client_id=CLIENT_ID) as client:
        assert client.set("k", "v") == 4
        assert client.leader == B
        with pytest.raises(InvalidInputError, match="key is empty"):
            client.get("k")
    assert fake.closed
    assert [c.address for c in fake.sent("Cache/Set")] == [A, B]
    with pytest.raises(RuntimeError, match="closed"):
        client.get("k")


def test_cluster_status_marks_a_silent_member_down(fake: FakeTransport, clock: FakeClock) -> None:
    def answer(address: str, timeout: float) -> Any:
        if address == C:
            return REFUSED
        reply = status(leader=A)
        reply.node_id = address
        reply.role = cluster_pb2.LEADER if address == A else cluster_pb2.FOLLOWER
        return reply

    fake.otherwise("Cluster/Status", answer)
    client = make_client(fake, clock)

    nodes = run(client.cluster_status())

    assert [(n.address, n.role) for n in nodes] == [(A, "leader"), (B, "follower"), (C, "down")]


@pytest.mark.parametrize(
    ("details", "never_sent"),
    [
        ("failed to connect to all addresses; last error: UNKNOWN", True),
        ("errors resolving nosuchhost.invalid:6381: Domain name not found", True),
        ("DNS resolution failed for service: nosuch:1", True),
        ("Socket closed", False),
        ("Stream removed", False),
    ],
)
def test_only_connect_and_dns_failures_count_as_never_sent(details: str, never_sent: bool) -> None:
    assert CallFailed("UNAVAILABLE", details).never_sent is never_sent
    assert CallFailed("UNAVAILABLE", details, origin="NoLeader").never_sent is False


def test_a_member_that_knows_no_leader_does_not_hide_the_ones_that_do(
    fake: FakeTransport, clock: FakeClock
) -> None:
    """A removed or amnesiac node that knows no leader and lists itself first answered
    Status first on every refresh; the client adopted it and never asked the others (a CI
    run: "no leader found" for 30 s on a healthy cluster)."""
    removed = "10.0.0.9:6380"
    fake.otherwise(
        "Cluster/Status",
        lambda address, _t: (
            status(None, (removed, A, B, C)) if address == removed else status(leader=C)
        ),
    )
    fake.script("Cache/Get", cache_pb2.GetResponse(found=True, value=b"v"))
    client = make_client(fake, clock, seeds=(removed, A))

    assert run(client.get("k")) == b"v"

    assert [c.address for c in fake.sent("Cluster/Status")] == [removed, A]
    assert [c.address for c in fake.sent("Cache/Get")] == [C]
    assert client.leader == C


def test_with_no_leader_anywhere_the_first_answer_still_teaches_the_members(
    fake: FakeTransport, clock: FakeClock
) -> None:
    fake.otherwise("Cluster/Status", status(None, (A, B)))
    client = make_client(fake, clock, seeds=(A, C))
    run(client._router.refresh(clock() + 5))
    assert client.members == [A, B] and client.leader is None
    assert [c.address for c in fake.sent("Cluster/Status")] == [A, C]  # asked every one
