"""The leader's per-command shortcuts (node/DESIGN.md "What a Redis command costs"): a Redis
write queued as a QueuedCall and built inside its entry, the one-key checks in validate and
--max-key-bytes, and the flush that has nothing ready. Each must do exactly what the long
way did: same entry bytes, same errors in the same order, same replies in the same order."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Sequence

import pytest
from raftcache.consensus import Outcome
from raftcache.node import commands
from raftcache.node.engine import call_op
from raftcache.node.keyspace import dispatch
from raftcache.node.keyspace.blocking import is_blocking
from raftcache.node.keyspace.db import DB_PREFIX, RESERVED_KEY
from raftcache.node.keyspace.reply import CommandError
from raftcache.node.proposer import Proposer, ProposerConfig, QueuedCall, op_weight
from raftcache.node.state_machine import Value
from raftcache.v1 import command_pb2

from tests.unit.resp_fakes import FakeEngine, cmd, connect, settle
from tests.unit.test_proposer_group_wait import _Clock, _op, _turns


class _Recorder:
    """Records the entries proposed (decoded); the test commits the last one."""

    def __init__(self) -> None:
        self.entries: list[command_pb2.Command] = []
        self.callbacks: list = []

    def propose(self, data: bytes, callback) -> None:  # type: ignore[no-untyped-def]
        self.entries.append(commands.decode(data))
        self.callbacks.append(callback)

    def is_leader(self) -> bool:
        return True


# -- QueuedCall: built in the entry, byte for byte what call_op builds -------------------------


@pytest.mark.parametrize(
    ("argv", "db", "user"),
    [
        ([b"SET", b"k", b"v"], 0, ""),
        ([b"set", b"k", b"v", b"EX", b"10"], 7, ""),
        ([b"EVALSHA", b"abc", b"1", b"k"], 15, "alice"),
        ([b"raftcache.store", b"set", b"k", b"v", b"0", b"0", b""], 0, ""),
    ],
)
def test_a_redis_call_builds_what_call_op_builds(argv: list[bytes], db: int, user: str) -> None:
    built = QueuedCall(argv, db, user).as_op()
    assert built == call_op(argv, db, user)
    assert built.SerializeToString() == call_op(argv, db, user).SerializeToString()


def test_a_redis_call_weighs_what_its_op_weighs() -> None:
    for argv in ([b"SET", b"k", b"v"], [b"EVAL", b"return 1", b"0"], [b"fcall", b"f", b"0"]):
        assert op_weight(QueuedCall(argv, 0)) == op_weight(call_op(argv, 0))


def _run(body) -> None:  # type: ignore[no-untyped-def]
    asyncio.run(body())


def test_an_entry_holds_calls_and_ops_in_call_order() -> None:
    async def body() -> None:
        consensus = _Recorder()
        proposer = Proposer(consensus, _Clock(), ProposerConfig(group_wait_s=0.0))
        loop = asyncio.get_running_loop()
        writes: list[command_pb2.Op | QueuedCall] = [
            QueuedCall([b"SET", b"a", b"1"], 0),
            _op(),
            QueuedCall([b"SET", b"b", b"2"], 3, "bob"),
        ]
        futures = [loop.create_future() for _ in writes]
        for write, future in zip(writes, futures, strict=True):
            proposer.submit(write, future, 64, 1)
        await _turns()
        (entry,) = consensus.entries
        expected = [
            call_op([b"SET", b"a", b"1"], 0),
            _op(),
            call_op([b"SET", b"b", b"2"], 3, "bob"),
        ]
        assert list(entry.ops) == expected
        consensus.callbacks[0](Outcome.APPLIED, ["r0", "r1", "r2"])
        await _turns()
        assert [f.result() for f in futures] == ["r0", "r1", "r2"]

    _run(body)


def test_an_eviction_prelude_goes_first_and_sees_the_built_calls() -> None:
    seen: list[list[command_pb2.Op]] = []
    evict = command_pb2.Op()
    evict.evict.keys.append(b"victim")

    def prelude(ops: Sequence[command_pb2.Op]) -> list[command_pb2.Op]:
        seen.append(list(ops))
        return [evict]

    async def body() -> None:
        consensus = _Recorder()
        proposer = Proposer(consensus, _Clock(), ProposerConfig(group_wait_s=0.0), prelude=prelude)
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in range(2)]
        proposer.submit(QueuedCall([b"SET", b"a", b"1"], 0), futures[0], 64, 1)
        proposer.submit(QueuedCall([b"SET", b"b", b"2"], 0), futures[1], 64, 1)
        await _turns()
        (entry,) = consensus.entries
        calls = [call_op([b"SET", b"a", b"1"], 0), call_op([b"SET", b"b", b"2"], 0)]
        assert seen == [calls]
        assert list(entry.ops) == [evict, *calls]
        # the prelude's result is nobody's: each write gets its own op's result
        consensus.callbacks[0](Outcome.APPLIED, ["evicted", "ok-a", "ok-b"])
        await _turns()
        assert [f.result() for f in futures] == ["ok-a", "ok-b"]

    _run(body)


def test_calls_over_the_byte_limit_are_cut_into_entries_by_their_built_size() -> None:
    async def body() -> None:
        consensus = _Recorder()
        one = call_op([b"SET", b"k", b"v" * 100], 0).ByteSize()
        config = ProposerConfig(group_wait_s=0.0, max_batch_bytes=3 * one)
        proposer = Proposer(consensus, _Clock(), config)
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in range(5)]
        for future in futures:
            proposer.submit(QueuedCall([b"SET", b"k", b"v" * 100], 0), future)  # sizes unknown
        await _turns()
        assert [len(e.ops) for e in consensus.entries] == [3]
        consensus.callbacks[0](Outcome.APPLIED, [None] * 3)
        await _turns()
        assert [len(e.ops) for e in consensus.entries] == [3, 2]

    _run(body)


# -- validate and --max-key-bytes: the one-key shortcut and the general loop agree ------------


def test_validate_refuses_a_reserved_key_in_one_key_and_many_key_commands() -> None:
    reserved = DB_PREFIX + b"\x01k"
    for argv in (
        [b"GET", reserved],
        [b"SET", reserved, b"v"],
        [b"DEL", b"fine", reserved],
        [b"MSET", b"a", b"1", reserved, b"2"],
    ):
        with pytest.raises(CommandError) as refused:
            dispatch.validate(argv)
        assert refused.value.text == RESERVED_KEY
    # the reserved prefix as a value or a member is no key: allowed
    assert dispatch.validate([b"SET", b"k", reserved]).name == "set"
    assert dispatch.validate([b"RANDOMKEY"]).first_key == 0  # no key to check


def test_arity_is_checked_before_the_reserved_key() -> None:
    with pytest.raises(CommandError) as refused:
        dispatch.validate([b"GET", DB_PREFIX, b"extra"])
    assert "wrong number of arguments" in refused.value.text


def test_is_blocking_with_and_without_the_lowered_name() -> None:
    for argv, expected in (
        ([b"BLPOP", b"q", b"0"], True),
        ([b"xread", b"BLOCK", b"0", b"STREAMS", b"s", b"$"], True),
        ([b"XREAD", b"STREAMS", b"s", b"$"], False),
        ([b"LPOP", b"q"], False),
    ):
        assert is_blocking(argv) is expected
        assert is_blocking(argv, argv[0].lower()) is expected


@pytest.mark.parametrize(
    "argv",
    [
        [b"GET", b"k" * 9],
        [b"SET", b"k" * 9, b"v"],
        [b"DEL", b"short", b"k" * 9],
        [b"MSET", b"a", b"1", b"k" * 9, b"2"],
    ],
)
def test_a_key_over_max_key_bytes_is_refused_and_nothing_is_sent(argv: list[bytes]) -> None:
    async def body() -> None:
        engine = FakeEngine()
        conn, transport = connect(engine)
        conn.server.max_key_bytes = 8
        conn.data_received(cmd(*argv))
        await settle()
        assert transport.out == (
            b"-ERR a key is over the limit of 8 bytes (--max-key-bytes): use a shorter key\r\n"
        )
        assert engine.submitted == [] and engine.barriers == []

    _run(body)


@pytest.mark.parametrize(
    "argv",
    [[b"SET", DB_PREFIX + b"\x01k", b"v"], [b"GET", DB_PREFIX + b"\x01k"]],
)
@pytest.mark.parametrize("readonly_follower", [False, True])
def test_a_reserved_key_is_refused_before_anything_is_sent(
    argv: list[bytes], readonly_follower: bool
) -> None:
    async def body() -> None:
        engine = FakeEngine()
        engine.leader = not readonly_follower
        conn, transport = connect(engine)
        conn.readonly = readonly_follower
        conn.data_received(cmd(*argv))
        await settle()
        assert transport.out == b"-%b\r\n" % RESERVED_KEY.encode()
        assert engine.submitted == [] and engine.barriers == [] and engine.forwarded == []
        assert engine.reads == []

    _run(body)


def test_a_plain_set_in_a_transaction_is_queued() -> None:
    async def body() -> None:
        engine = FakeEngine()
        conn, transport = connect(engine)
        conn.data_received(cmd(b"MULTI") + cmd(b"SET", b"k", b"v") + cmd(b"GET", b"k"))
        await settle()
        assert transport.out == b"+OK\r\n+QUEUED\r\n+QUEUED\r\n"
        assert engine.submitted == []

    _run(body)


def test_keys_at_the_limit_pass() -> None:
    async def body() -> None:
        engine = FakeEngine()
        conn, _ = connect(engine)
        conn.server.max_key_bytes = 8
        conn.data_received(cmd(b"SET", b"k" * 8, b"a value longer than the key limit"))
        conn.data_received(cmd(b"DEL", b"a", b"k" * 8))
        await settle()
        assert [argv[0] for argv, _ in engine.submitted] == [b"SET", b"DEL"]

    _run(body)


# -- the flush with nothing ready -------------------------------------------------------------


def test_replies_wait_for_an_earlier_write_and_then_go_out_in_order() -> None:
    async def body() -> None:
        engine = FakeEngine()
        conn, transport = connect(engine)
        conn.data_received(cmd(b"SET", b"a", b"1") + cmd(b"PING"))
        await settle()
        assert transport.out == b""  # PING answered, but it is behind the SET
        conn.data_received(cmd(b"ECHO", b"x"))
        await settle()
        assert transport.out == b""
        engine.commit()
        await settle()
        assert transport.out == b"+OK\r\n+PONG\r\n$1\r\nx\r\n"

    _run(body)


def test_a_write_result_is_the_state_machine_reply() -> None:
    async def body() -> None:
        engine = FakeEngine()
        conn, transport = connect(engine)
        conn.data_received(cmd(b"INCR", b"n"))
        await settle()
        ((_, future),) = engine.writes_
        future.set_result(Value("reply", 41))
        await settle()
        assert transport.out == b":41\r\n"

    _run(body)


# -- replies settled during data_received go out with its flush, no callback each -------------


class _LoopSpy:
    """The connection's loop, noting what is scheduled with call_soon."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.soon: list[object] = []

    def call_soon(self, fn, *args):  # type: ignore[no-untyped-def]
        self.soon.append(fn)
        return self._loop.call_soon(fn, *args)

    def __getattr__(self, name: str) -> object:
        return getattr(self._loop, name)


class _FlusherSpy:
    """A connection's Flusher, noting the connections left to flush on a later turn."""

    def __init__(self) -> None:
        self.owed: list[object] = []

    def owe(self, conn: object) -> None:
        self.owed.append(conn)


def test_replies_settled_while_reading_go_out_on_the_next_turn_in_one_write() -> None:
    """Reads this node answers settle inside their dispatch; the read's replies go out
    together on the next loop turn (one flush owed, not one per reply), after the loop has
    read every socket ready in this one (node/DESIGN.md "Replies of a read batch")."""

    async def body() -> None:
        engine = FakeEngine()
        engine.leader = False
        engine.data[b"k"] = b"v"
        conn, transport = connect(engine)
        conn.readonly = True  # GET answered here, settled inside its dispatch
        conn._flusher = spy = _FlusherSpy()  # type: ignore[assignment]
        writes: list[bytes] = []
        real_write = transport.write
        transport.write = lambda data: (writes.append(bytes(data)), real_write(data))[1]  # type: ignore[method-assign]
        conn.data_received(cmd(b"GET", b"k") + cmd(b"PING") + cmd(b"GET", b"k"))
        assert transport.out == b""  # not yet: the loop reads its other sockets first
        assert spy.owed == [conn] and conn._flush_scheduled is True
        conn._flush()  # what the Flusher's one callback does on the next turn
        assert writes == [b"$1\r\nv\r\n+PONG\r\n$1\r\nv\r\n"]  # one write for all three
        assert conn._flush_scheduled is False

    _run(body)


def test_a_read_with_nothing_ready_flushes_at_once_as_before() -> None:
    """A write waiting for its entry: nothing to send, so data_received's flush runs at once
    (it pauses or resumes reading) and owes the Flusher nothing."""

    async def body() -> None:
        engine = FakeEngine()
        conn, transport = connect(engine)
        conn._flusher = spy = _FlusherSpy()  # type: ignore[assignment]
        conn.data_received(cmd(b"SET", b"k", b"v") + cmd(b"PING"))
        assert spy.owed == [] and conn._flush_scheduled is False
        assert transport.out == b""  # PONG waits behind the SET's reply, in order

    _run(body)


def test_every_connection_read_in_a_turn_gets_its_replies_on_the_next() -> None:
    async def body() -> None:
        engine = FakeEngine()
        engine.leader = False
        engine.data[b"k"] = b"v"
        pairs = [connect(engine) for _ in range(3)]
        for conn, _ in pairs:
            conn.readonly = True
            conn.data_received(cmd(b"GET", b"k"))
        assert [t.out for _, t in pairs] == [b""] * 3
        await settle(2)
        assert [t.out for _, t in pairs] == [b"$1\r\nv\r\n"] * 3

    _run(body)


def test_replies_before_a_failing_command_still_go_out() -> None:
    async def body() -> None:
        engine = FakeEngine()
        conn, transport = connect(engine)
        real = conn.dispatch

        def dispatch(argv: list[bytes]) -> None:
            if argv[0] == b"BOOM":
                raise RuntimeError("a bug in dispatch")
            real(argv)

        conn.dispatch = dispatch  # type: ignore[method-assign]
        with pytest.raises(RuntimeError):
            conn.data_received(cmd(b"PING") + cmd(b"BOOM"))
        await settle(2)
        assert transport.out == b"+PONG\r\n"
        assert conn._flush_scheduled is False

    _run(body)


def test_memcached_replies_go_out_together_on_the_next_turn() -> None:
    from tests.unit.test_memcached_protocol import McEngine
    from tests.unit.test_memcached_protocol import connect as mc_connect

    async def body() -> None:
        engine = McEngine()
        engine.r(b"SET", b"k", b"v")
        engine.leader = False
        conn, transport = mc_connect(engine)
        conn.server.stale_reads_ms = 1000  # gets answered here, settled inside their dispatch
        conn._flusher = spy = _FlusherSpy()  # type: ignore[assignment]
        conn.data_received(b"get k\r\nversion\r\nget k\r\n")
        assert spy.owed == [conn] and transport.out == b""
        conn._flush()
        assert transport.out.count(b"VALUE k 0 1\r\nv\r\nEND\r\n") == 2
        assert transport.out.count(b"VERSION ") == 1
        assert conn._flush_scheduled is False

    _run(body)


def test_one_entry_settling_many_connections_schedules_one_flush_for_all() -> None:
    from raftcache.node.pipeline import Flusher

    async def body() -> None:
        engine = FakeEngine()
        pairs = [connect(engine) for _ in range(3)]
        loop = asyncio.get_running_loop()
        flusher = Flusher.of(loop)
        assert all(conn._flusher is flusher for conn, _ in pairs)
        for i, (conn, _) in enumerate(pairs):
            conn.data_received(cmd(b"SET", b"k%d" % i, b"v"))
        spy = _LoopSpy(loop)
        flusher._loop = weakref.ref(spy)  # type: ignore[assignment]
        try:
            engine.commit()  # the entry's answers settle all three connections
            assert spy.soon == [flusher._run]  # one callback, not one per connection
            assert all(t.out == b"" for _, t in pairs)
            await settle(2)
            assert [t.out for _, t in pairs] == [b"+OK\r\n"] * 3
        finally:
            flusher._loop = weakref.ref(loop)

    _run(body)


def test_a_connection_that_fails_to_flush_does_not_hold_back_the_others() -> None:
    async def body() -> None:
        engine = FakeEngine()
        (bad, _), (good, transport) = connect(engine), connect(engine)
        bad.data_received(cmd(b"SET", b"a", b"1"))
        good.data_received(cmd(b"SET", b"b", b"2"))

        def broken() -> None:
            raise RuntimeError("a bug in one connection's flush")

        bad._flush = broken  # type: ignore[method-assign]
        engine.commit()
        await settle(2)
        assert transport.out == b"+OK\r\n"

    _run(body)


# -- memcached's key rule, checked by one regex instead of a loop over the key's bytes --------


def test_the_memcached_key_rule_holds_for_every_byte() -> None:
    from raftcache.node.memcached.server import MAX_KEY_BYTES, _key

    for byte in range(256):
        key = b"k" + bytes([byte]) + b"k"
        if byte < 33 or byte == 127:
            with pytest.raises(CommandError):
                _key(key)
        else:
            assert _key(key) == key
    assert _key(b"k" * MAX_KEY_BYTES) == b"k" * MAX_KEY_BYTES
    with pytest.raises(CommandError):
        _key(b"k" * (MAX_KEY_BYTES + 1))
    with pytest.raises(CommandError):
        _key(b"\x00")  # a bad byte alone, first or last
    with pytest.raises(CommandError):
        _key(b"key\x7f")


def test_the_flusher_registry_does_not_keep_loops_alive() -> None:
    from raftcache.node.pipeline import Flusher

    async def body() -> None:
        engine = FakeEngine()
        conn, _ = connect(engine)
        conn.data_received(cmd(b"SET", b"k", b"v"))
        engine.commit()  # owes a flush when the loop ends
        assert Flusher.of(asyncio.get_running_loop()) is conn._flusher

    before = len(Flusher._by_loop)
    for _ in range(3):
        _run(body)
    gc.collect()
    assert len(Flusher._by_loop) <= before


# -- a queued call that cannot be built fails its entry, not the loop --------------------------


def test_a_call_that_cannot_be_built_fails_its_entry_and_the_reads_still_go() -> None:
    async def body() -> None:
        consensus = _Recorder()
        proposer = Proposer(consensus, _Clock(), ProposerConfig(group_wait_s=0.0))
        loop = asyncio.get_running_loop()
        good, bad, read = loop.create_future(), loop.create_future(), loop.create_future()
        proposer.submit(QueuedCall([b"SET", b"a", b"1"], 0), good, 64, 1)
        proposer.submit(QueuedCall([b"SET", "not bytes", b"1"], 0), bad, 64, 1)  # type: ignore[list-item]
        proposer.barrier(read)
        await _turns()
        assert bad.done() and isinstance(bad.exception(), TypeError)
        assert good.done() and isinstance(good.exception(), TypeError)  # same entry
        (entry,) = consensus.entries  # the read's barrier, alone
        assert list(entry.ops) == []
        consensus.callbacks[0](Outcome.APPLIED, [])
        await _turns()
        assert read.done() and read.exception() is None
        proposer.submit(QueuedCall([b"SET", b"c", b"3"], 0), loop.create_future(), 64, 1)
        await _turns()
        assert [len(e.ops) for e in consensus.entries] == [0, 1]  # the proposer goes on

    _run(body)


def test_a_call_measured_for_the_limits_is_built_once() -> None:
    call = QueuedCall([b"SET", b"k", b"v"], 2)
    first = call.as_op()
    assert call.as_op() is first and first == call_op([b"SET", b"k", b"v"], 2)


def test_keys_beyond_the_arguments_and_the_order_of_syntax_and_size_errors() -> None:
    async def body() -> None:
        engine = FakeEngine()
        conn, transport = connect(engine)
        conn.server.max_key_bytes = 8
        # a syntax error (the command's own check) comes before the key's size
        conn.data_received(cmd(b"SET", b"k" * 9, b"v", b"NOSUCHOPTION"))
        await settle()
        assert transport.out == b"-ERR syntax error\r\n"
        assert engine.submitted == []

    _run(body)
    # XINFO HELP: its key position (2) is past the arguments: nothing to check
    assert dispatch.validate([b"XINFO", b"HELP"]).first_key == 2
