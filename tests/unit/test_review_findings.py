"""Review of the Redis front-end (issue 10): each test shows one finding of the review.

Each test failed when the review was written (the evidence for its finding) and passes
since the fix. The fakes are in resp_fakes, shared with test_resp_connection.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import grpc
import pytest
from raftcache.node import errors, requests
from raftcache.node import state_machine as sm_module
from raftcache.node.engine import Engine
from raftcache.node.eviction import AccessTracker, Evictor
from raftcache.node.forwarding import relayed_error
from raftcache.node.keyspace.reply import NULL_ARRAY, OK, Error, ReplyT, from_proto, to_proto
from raftcache.node.replica import Replica
from raftcache.node.resp import server as resp_server
from raftcache.node.resp.parser import ParserLimits
from raftcache.node.state_machine import Failure, StateMachine, TxnOk, Value
from raftcache.node.streams import Streams
from raftcache.v1 import cache_pb2, command_pb2

from tests.unit import resp_fakes
from tests.unit.resp_fakes import FakeEngine, FakeStreams, call_op, cmd, connect


async def settle() -> None:
    """Ten loop turns: what these findings were written against."""
    await resp_fakes.settle(10)


# -- finding 1: QUIT (or a protocol error) after a gated command hangs the connection ---------


def test_quit_after_a_gated_write_answers_everything_and_closes() -> None:
    async def run() -> None:
        engine = FakeEngine()
        conn, transport = connect(engine)
        # the SET waits for the GET's run; QUIT sets _closing, so the SET is never started
        conn.data_received(cmd(b"GET", b"k") + cmd(b"SET", b"k", b"v") + cmd(b"QUIT"))
        engine.commit()  # the GET's barrier
        await settle()
        engine.commit()  # the SET, if it was submitted
        await settle()
        assert engine.submitted == [([b"SET", b"k", b"v"], 0)]
        assert bytes(transport.out) == b"$-1\r\n+OK\r\n+OK\r\n"
        assert transport.closed

    asyncio.run(run())


def test_protocol_error_after_a_gated_write_still_answers_and_closes() -> None:
    async def run() -> None:
        engine = FakeEngine()
        conn, transport = connect(engine)
        conn.data_received(cmd(b"GET", b"k") + cmd(b"SET", b"k", b"v") + b"*1\r\n+oops\r\n")
        engine.commit()
        await settle()
        engine.commit()
        await settle()
        assert transport.closed  # before the fix: open forever, the error never sent

    asyncio.run(run())


# -- finding 2: a gated write reads conn.db when it starts, not when it was sent --------------


def test_a_gated_write_stays_in_the_database_selected_when_it_was_sent() -> None:
    async def run() -> None:
        engine = FakeEngine()
        conn, _ = connect(engine)
        conn.data_received(cmd(b"GET", b"k") + cmd(b"SET", b"k", b"v") + cmd(b"SELECT", b"1"))
        engine.commit()  # the GET answers; the SET starts now, after SELECT 1 already ran
        await settle()
        assert engine.submitted == [([b"SET", b"k", b"v"], 0)]  # before the fix: db 1

    asyncio.run(run())


# -- finding 3: a pipelined WATCH is lost for the EXEC that follows it -------------------------


def test_exec_sees_a_watch_pipelined_behind_a_pending_write() -> None:
    async def run() -> None:
        engine = FakeEngine()
        conn, transport = connect(engine)
        conn.data_received(
            cmd(b"SET", b"k", b"1")
            + cmd(b"WATCH", b"k")
            + cmd(b"MULTI")
            + cmd(b"SET", b"k", b"2")
            + cmd(b"EXEC")
        )
        engine.commit()
        await settle()
        assert engine.multis, "EXEC did not run"
        assert engine.multis[0][1] == {(0, b"k"): 1}  # before the fix: {} (no compare: lost update)
        assert bytes(transport.out).endswith(b"*-1\r\n")

    asyncio.run(run())


def test_two_pipelined_optimistic_transactions_both_send_their_watches() -> None:
    async def run() -> None:
        engine = FakeEngine()
        conn, _ = connect(engine)
        one = cmd(b"WATCH", b"k") + cmd(b"MULTI") + cmd(b"SET", b"k", b"2") + cmd(b"EXEC")
        conn.data_received(one + one)
        await settle()
        assert [watched for _, watched in engine.multis] == [{(0, b"k"): 1}, {(0, b"k"): 1}]

    asyncio.run(run())


# -- finding 4: PUBLISH inside MULTI -----------------------------------------------------------


def test_publish_inside_multi_is_an_element_of_the_exec_array() -> None:
    async def run() -> None:
        engine = FakeEngine()
        conn, transport = connect(engine, FakeStreams())
        conn.data_received(cmd(b"MULTI") + cmd(b"PUBLISH", b"ch", b"m") + cmd(b"EXEC"))
        await settle()
        # before the fix: b"+OK\r\n+QUEUED\r\n*1\r\n": an array of one with no element (desync)
        assert bytes(transport.out) == b"+OK\r\n+QUEUED\r\n*1\r\n:7\r\n"

    asyncio.run(run())


def test_publish_inside_a_discarded_multi_is_not_published() -> None:
    async def run() -> None:
        engine = FakeEngine()
        conn, _ = connect(engine)
        conn.data_received(cmd(b"MULTI") + cmd(b"PUBLISH", b"ch", b"m") + cmd(b"DISCARD"))
        await settle()
        assert engine.published == []

    asyncio.run(run())


# -- finding 5: WATCH/EXEC through a follower ------------------------------------------------


class _Proposer:
    def is_leader(self) -> bool:
        return False

    def now_ms(self) -> int:
        return 1_000_000


class _View:
    def __init__(self, replica: Replica) -> None:
        self.replica = replica

    def not_leader(self) -> errors.CacheError:
        return errors.NotLeader("not the leader", "leader:1")


class _LeaderRelay:
    """The leader's Txn servicer in one function: validate as requests.txn_op does, apply."""

    def __init__(self, leader: StateMachine) -> None:
        self.leader = leader

    async def relay(
        self, address: str, method: str, request: Any, timeout: float, identity: Any = ()
    ) -> Any:
        if method == "Exec":  # a linearizable read (WATCH's versions)
            value = self.leader.read(request.op, 1_000_000)
            assert isinstance(value, Value)
            response = cache_pb2.ExecResponse()
            to_proto(value.data, response.value.reply)
            return response
        assert method == "Txn"
        op = requests.txn_op(request, requests.Limits(), 1_000_000)  # raises InvalidInput
        command = command_pb2.Command(now_ms=1_000_000)
        command.ops.append(op)
        result = self.leader.apply(command)[0]
        assert isinstance(result, TxnOk), result
        response = cache_pb2.TxnResponse(succeeded=result.succeeded)
        for value in result.results:
            to_proto(value.data, response.results.add().reply)
        return response


def _apply(sm: StateMachine, *argv: bytes, db: int = 0) -> ReplyT:
    command = command_pb2.Command(now_ms=1_000_000)
    command.ops.append(call_op(list(argv), db))
    result = sm.apply(command)[0]
    assert isinstance(result, Value)
    return result.data  # type: ignore[no-any-return]


def _follower_engine(follower: Replica, leader: StateMachine) -> Engine:
    return Engine(
        _View(follower),  # type: ignore[arg-type]
        _Proposer(),  # type: ignore[arg-type]
        _LeaderRelay(leader),  # type: ignore[arg-type]
        1.0,
        lambda _c: 0,
    )


def test_exec_with_watch_through_a_follower_works_in_database_1() -> None:
    async def run() -> None:
        leader, follower = StateMachine(), Replica()
        engine = _follower_engine(follower, leader)
        watched = {(1, b"k"): (await engine.versions([b"k"], 1))[0]}
        # the compare's key is \x00rcdb\x01k, which requests.check_key refuses on the leader
        reply = await engine.multi([([b"SET", b"k", b"v"], 1)], watched)
        assert reply == [OK]

    asyncio.run(run())


def test_exec_fails_when_a_key_watched_on_a_lagging_follower_is_deleted() -> None:
    async def run() -> None:
        leader, follower = StateMachine(), Replica()  # the follower has not applied SET k yet
        engine = _follower_engine(follower, leader)
        _apply(leader, b"SET", b"k", b"v1")  # committed and acknowledged before the WATCH
        watched = {(0, b"k"): (await engine.versions([b"k"], 0))[0]}  # read through the leader
        assert _apply(leader, b"GET", b"k") == b"v1"  # the client reads v1 (linearizable)
        _apply(leader, b"DEL", b"k")  # another client changes the watched key
        reply = await engine.multi([([b"SET", b"k", b"v2"], 0)], watched)
        assert reply is NULL_ARRAY  # Redis aborts; today EXEC succeeds (version 0 == 0)

    asyncio.run(run())


# -- finding 6: one command can buffer without bound -----------------------------------------


def test_a_huge_partial_command_is_bounded() -> None:
    async def run() -> None:
        engine = FakeEngine()
        conn, transport = connect(engine, limits=ParserLimits(max_command_bytes=1 << 20))
        # 1M arguments of up to 4 MiB each are all within the parser's per-piece limits
        chunk = b"$65536\r\n" + b"x" * 65536 + b"\r\n"
        conn.data_received(b"*1048576\r\n$3\r\nSET\r\n")
        for _ in range(64):  # 4 MiB buffered, four times the outstanding-bytes bound
            conn.data_received(chunk)
        assert transport.paused or transport.closed  # before the fix: neither; reading goes on

    asyncio.run(run())


# -- finding 7: follower batches over gRPC's message limit; its refusal taken as "unknown" -----


def test_a_follower_never_forwards_more_than_a_grpc_message_can_carry() -> None:
    async def run() -> None:
        engine = FakeEngine()
        engine.leader = False
        conn, _ = connect(engine)
        value = b"v" * (4 << 20)  # the default --max-value-bytes
        conn.data_received(b"".join(cmd(b"SET", b"k%d" % i, value) for i in range(5)))
        await settle()
        sizes = [sum(len(a) for argv, _ in batch for a in argv) for batch in engine.forwarded]
        assert max(sizes) <= 16 << 20, sizes  # before the fix: one Txn of 20 MiB, refused by gRPC

    asyncio.run(run())


def test_grpc_message_size_refusal_of_a_relayed_write_is_not_outcome_unknown() -> None:
    exc = grpc.aio.AioRpcError(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.aio.Metadata(),
        grpc.aio.Metadata(),
        details="Sent message larger than max (20971620 vs. 17825792)",
    )
    error = relayed_error(exc, "leader:1", write=True)
    assert isinstance(error, errors.TooLarge), error  # nothing was sent, nothing applied


# -- finding 8: a follower that becomes leader mid-pipeline reorders its writes ----------------


def test_writes_keep_their_order_when_the_follower_becomes_leader() -> None:
    async def run() -> None:
        engine = FakeEngine()
        engine.leader = False
        conn, _ = connect(engine)
        conn.data_received(cmd(b"RPUSH", b"l", b"1"))
        await settle()  # the first batch is in flight to the leader
        conn.data_received(cmd(b"RPUSH", b"l", b"2"))  # queued behind it
        engine.leader = True  # this node wins an election
        conn.data_received(cmd(b"RPUSH", b"l", b"3"))  # submitted at once, as leader
        engine.forwards[0].set_result(None)  # the first batch answers (say, applied)
        await settle()
        order = [argv[2] for argv, _ in engine.submitted]
        assert order == [b"2", b"3"], order  # before the fix: [b"3", b"2"]

    asyncio.run(run())


# -- finding 9: Engine.writes on a leader loses per-write outcomes ----------------------------


class _LeaderProposer:
    def __init__(self) -> None:
        self.futures: list[asyncio.Future[Any]] = []

    def is_leader(self) -> bool:
        return True

    def now_ms(self) -> int:
        return 1_000_000

    def submit(self, op: command_pb2.Op, waiter: Any, size: int = 0) -> None:
        if self.futures:
            raise errors.Overloaded("20000 writes are already queued on this node; retry")
        self.futures.append(waiter)

    async def write(self, op: command_pb2.Op) -> Any:  # as Proposer.write
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.submit(op, future)
        return await future


def test_engine_writes_reports_each_write_on_its_own() -> None:
    async def run() -> None:
        proposer = _LeaderProposer()
        engine = Engine(None, proposer, None, 1.0, lambda _c: 0)  # type: ignore[arg-type]
        task = asyncio.ensure_future(engine.writes([([b"INCR", b"a"], 0), ([b"INCR", b"b"], 0)]))
        await settle()
        proposer.futures[0].set_result(Value("reply", 1))  # the first INCR commits
        try:
            replies = await task
        except errors.Overloaded:
            replies = None  # before the fix: both INCRs answered TRYAGAIN; a retry applies a twice
        assert replies is not None and replies[0] == 1

    asyncio.run(run())


# -- finding 10: an exception on the leader's read fast path hangs the connection --------------


def test_a_read_that_raises_answers_an_error_instead_of_hanging() -> None:
    async def run() -> None:
        engine = FakeEngine()
        engine.local_read_error = RuntimeError("a handler bug")
        conn, transport = connect(engine)
        conn.data_received(cmd(b"GET", b"k") + cmd(b"PING"))
        engine.commit()
        await settle()
        assert bytes(transport.out).startswith(b"-ERR")  # as _spawn does; before the fix: nothing

    asyncio.run(run())


# -- finding 11: every non-nil read counts as a hit and feeds the LRU tracker ghost keys --------


def test_reads_of_missing_keys_are_misses_and_do_not_touch_the_tracker() -> None:
    async def run() -> None:
        engine = FakeEngine()
        conn, _ = connect(engine)
        conn.data_received(cmd(b"EXISTS", b"nope"))
        engine.commit()
        await settle()
        assert engine.reads == [(b"nope", False)]  # before the fix: (b"nope", True)

    asyncio.run(run())


def test_ghost_keys_in_the_tracker_starve_volatile_lru_eviction() -> None:
    """What finding 11 costs (passes today: it shows the mechanism). Touching keys that do
    not exist (what `count_read(key, hit=True)` does for EXISTS/TTL/TYPE of missing keys, or
    for KEYS' pattern and SCAN's cursor) fills the tracker's LRU window with keys that are
    never removed, so volatile-lru finds no victim among them although TTL keys exist."""
    sm = StateMachine()
    sm.max_memory, sm.eviction_policy = 1, "volatile-lru"
    tracker = AccessTracker()
    tracker.follow(sm)
    for i in range(2048):
        tracker.touch(b"ghost%d" % i)
    command = command_pb2.Command(now_ms=1_000_000)
    for i in range(100):
        command.ops.append(call_op([b"SET", b"real%d" % i, b"v", b"EX", b"100"], 0))
    sm.max_memory = 0
    sm.apply(command)
    tracker.on_events(sm.take_events())
    sm.max_memory = 1
    evictor = Evictor(lambda: sm, threading.Lock(), tracker)
    assert evictor.choose(sm, 1000) == []  # nothing evictable found: writes refused with OOM


# -- finding 12: RESP3 push frames behind a pending reply are not bounded ----------------------


def test_push_frames_queued_behind_a_pending_reply_count_toward_the_output_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(resp_server, "MAX_OUTPUT_BYTES", 1 << 20)

    async def run() -> None:
        engine = FakeEngine()
        conn, transport = connect(engine, FakeStreams())
        conn.data_received(cmd(b"HELLO", b"3") + cmd(b"SUBSCRIBE", b"ch") + cmd(b"GET", b"k"))
        message = cache_pb2.PubSubMessage(channel=b"ch", message=b"m" * 65536)
        for _ in range(64):  # 4 MiB of messages while the GET waits for its barrier
            conn.deliver(message)
        assert transport.closed  # before the fix: kept in _slots, unbounded while the GET waits

    asyncio.run(run())


# -- finding 13: tasks outlive their connection ------------------------------------------------


def test_a_disconnect_cancels_the_connections_waiting_commands() -> None:
    async def run() -> None:
        engine = FakeEngine()
        conn, _ = connect(engine)

        async def forever() -> ReplyT:  # e.g. WAIT 3 0, which polls until replicas ack
            await asyncio.sleep(3600)
            return 0

        conn.server.admin = {b"wait": lambda _c, _a: forever()}
        conn.data_received(cmd(b"WAIT", b"3", b"0"))
        await settle()
        conn.connection_lost(None)
        await settle()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert not others, others

    asyncio.run(run())


# -- finding 14: HELLO/RESET re-encode replies already owed ---------------------------------


def test_replies_owed_before_hello_keep_the_protocol_they_were_asked_in() -> None:
    async def run() -> None:
        engine = FakeEngine()
        conn, transport = connect(engine)
        conn.data_received(cmd(b"GET", b"missing") + cmd(b"HELLO", b"3"))
        engine.commit()
        await settle()
        assert bytes(transport.out).startswith(
            b"$-1\r\n"
        )  # before the fix: b"_\r\n" to a RESP2 client

    asyncio.run(run())


# -- finding 15: SUBSCRIBE is quadratic in its channel count --------------------------------


class _Counted(bytes):
    """A channel name that counts equality tests (list membership is one per element)."""

    compares = 0

    def __eq__(self, other: object) -> bool:
        _Counted.compares += 1
        return bytes.__eq__(self, other)  # type: ignore[no-any-return]

    __hash__ = bytes.__hash__


def test_subscribing_many_channels_in_one_command_is_linear() -> None:
    async def run() -> None:
        engine = FakeEngine()
        streams = Streams(lambda: 0)
        conn, _ = connect(engine, streams)
        n = 1000
        argv: list[bytes] = [b"SUBSCRIBE"] + [_Counted(b"channel:%d" % i) for i in range(n)]
        _Counted.compares = 0
        conn.dispatch(argv)
        # today ~n*n (list membership twice per channel): 20,000 channels stalled the node's
        # loop (gRPC and every RESP connection) for 14 s on this machine; 1M are allowed
        assert _Counted.compares < 10 * n, _Counted.compares

    asyncio.run(run())


# -- finding 16: SELECT (and other connection commands) inside MULTI act at queue time --------


def test_select_inside_a_discarded_multi_leaves_the_database_unchanged() -> None:
    async def run() -> None:
        engine = FakeEngine()
        conn, _ = connect(engine)
        conn.data_received(
            cmd(b"MULTI") + cmd(b"SELECT", b"1") + cmd(b"DISCARD") + cmd(b"SET", b"k", b"v")
        )
        await settle()
        assert engine.submitted == [([b"SET", b"k", b"v"], 0)]  # before the fix: db 1

    asyncio.run(run())


# -- finding 17: the Txn undo log copies whole containers even when nothing can fail ----------


def test_a_transaction_of_redis_commands_only_copies_no_container(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sm = StateMachine()
    _apply(sm, b"SADD", b"big", *[b"m%d" % i for i in range(1000)])
    copied: list[Any] = []
    real = sm_module._copied

    def spy(entry: Any) -> Any:
        copied.append(entry)
        return real(entry)

    monkeypatch.setattr(sm_module, "_copied", spy)
    command = command_pb2.Command(now_ms=1_000_000)
    txn = command.ops.add().txn
    for argv in ([b"DEL", b"big"], [b"SET", b"x", b"1"]):
        txn.success.add().op.call.argv.extend(argv)
    result = sm.apply(command)[0]
    assert isinstance(result, TxnOk) and not isinstance(result, Failure)
    # Redis calls answer errors as replies: such a Txn can never roll back, yet every
    # touched container is copied (DEL of a 1M-member set copies it on every replica)
    assert copied == []


# -- finding 18: the outcome-unknown text says it twice -------------------------------------


def test_outcome_unknown_text_is_not_doubled() -> None:
    reply = resp_errors_reply(
        errors.OutcomeUnknown("outcome unknown: forwarding to the leader at x failed")
    )
    assert reply.count("outcome unknown") == 1, reply


def resp_errors_reply(error: errors.CacheError) -> Error:
    from raftcache.node.resp.errors import error_reply

    return error_reply(error)


def test_reply_round_trip_sanity() -> None:
    """The proto form used by forwarding keeps every reply type (passes: checked, no finding)."""
    from raftcache.node.keyspace.reply import Bool, Map, Pairs, SetReply, Status

    replies: list[ReplyT] = [
        b"x",
        1,
        None,
        NULL_ARRAY,
        Status("OK"),
        Error("ERR x"),
        1.5,
        Bool(1),
        Map([b"a", 1]),
        SetReply([b"a"]),
        Pairs([[b"a", 1.0]]),
    ]
    for reply in replies:
        back = from_proto(to_proto(reply))
        assert back == reply and type(back) is type(reply), reply


# -- finding 19: commands with a numkeys argument escape the reserved-prefix guard -----------


def test_database_0_cannot_pop_a_list_of_database_5_through_lmpop() -> None:
    sm = StateMachine()
    _apply(sm, b"RPUSH", b"jobs", b"secret", db=5)
    internal = b"\x00rcdb\x05jobs"
    reply = _apply(sm, b"LMPOP", b"1", internal, b"LEFT")  # database 0 (the gRPC keyspace)
    assert isinstance(reply, Error), (
        reply
    )  # before the fix: [internal, [b"secret"]], popped from db 5
    assert _apply(sm, b"LLEN", b"jobs", db=5) == 1


def test_database_0_cannot_read_a_set_of_database_5_through_sintercard() -> None:
    sm = StateMachine()
    _apply(sm, b"SADD", b"members", b"a", b"b", db=5)
    reply = _apply(sm, b"SINTERCARD", b"1", b"\x00rcdb\x05members")
    assert isinstance(reply, Error), reply  # before the fix: 2
