"""A RESP connection against a fake engine: reply order, read/write runs, MULTI, pub/sub mode."""

from __future__ import annotations

import asyncio
from typing import Any

from raftcache.node.keyspace.reply import OK
from raftcache.node.resp.admin import ADMIN

from tests.unit.resp_fakes import FakeEngine, FakeStreams, cmd, connect, settle


def test_a_read_before_a_write_in_one_pipeline_does_not_see_it() -> None:
    async def run() -> None:
        engine = FakeEngine()
        engine.data[b"k"] = b"old"
        conn, transport = connect(engine)
        conn.data_received(cmd(b"GET", b"k") + cmd(b"SET", b"k", b"new") + cmd(b"GET", b"k"))
        # the SET waits for the GET's run: only the barrier went out
        assert engine.log == ["barrier"]
        engine.commit()
        await settle()
        assert engine.log == ["barrier", "submit k"]
        engine.commit()
        await settle()
        assert engine.log == ["barrier", "submit k", "barrier"]
        engine.commit()
        await settle()
        assert bytes(transport.out) == b"$3\r\nold\r\n+OK\r\n$3\r\nnew\r\n"

    asyncio.run(run())


def test_pipelined_writes_are_submitted_together_and_answered_in_order() -> None:
    async def run() -> None:
        engine = FakeEngine()
        conn, transport = connect(engine)
        conn.data_received(b"".join(cmd(b"SET", b"k%d" % i, b"v") for i in range(100)))
        # all queued in the same loop turn (one log entry), as one write: a group of SETs
        assert engine.submitted == [([b"SET", b"k%d" % i, b"v"], 0) for i in range(100)]
        assert engine.groups == [100]
        engine.commit()
        await settle()
        assert bytes(transport.out) == b"+OK\r\n" * 100

    asyncio.run(run())


def test_bad_input_answers_an_error_and_keeps_the_connection() -> None:
    async def run() -> None:
        engine = FakeEngine()
        conn, transport = connect(engine)
        conn.data_received(cmd(b"SET", b"k") + cmd(b"NOPE") + cmd(b"SELECT", b"99") + cmd(b"PING"))
        await settle()
        assert bytes(transport.out) == (
            b"-ERR wrong number of arguments for 'set' command\r\n"
            b"-ERR unknown command 'NOPE', with args beginning with: \r\n"
            b"-ERR DB index is out of range\r\n+PONG\r\n"
        )
        assert not transport.closed and engine.log == []

    asyncio.run(run())


def test_protocol_error_answers_then_closes_only_after_earlier_replies() -> None:
    async def run() -> None:
        engine = FakeEngine()
        conn, transport = connect(engine)
        conn.data_received(cmd(b"SET", b"k", b"v") + b"*1\r\n+oops\r\n")
        assert not transport.closed  # the SET's reply is still owed
        engine.commit()
        await settle()
        assert bytes(transport.out) == b"+OK\r\n-ERR Protocol error: expected '$', got '+'\r\n"
        assert transport.closed

    asyncio.run(run())


def test_multi_queues_and_exec_aborts_after_a_queue_time_error() -> None:
    async def run() -> None:
        engine = FakeEngine()
        conn, transport = connect(engine)
        conn.data_received(cmd(b"MULTI") + cmd(b"SET", b"k") + cmd(b"PING") + cmd(b"EXEC"))
        await settle()
        assert bytes(transport.out) == (
            b"+OK\r\n-ERR wrong number of arguments for 'set' command\r\n+QUEUED\r\n"
            b"-EXECABORT Transaction discarded because of previous errors.\r\n"
        )
        transport.out.clear()
        conn.data_received(cmd(b"MULTI") + cmd(b"MULTI") + cmd(b"EXEC") + cmd(b"EXEC"))
        await settle()
        assert bytes(transport.out) == (
            b"+OK\r\n-ERR MULTI calls can not be nested\r\n*0\r\n-ERR EXEC without MULTI\r\n"
        )

    asyncio.run(run())


def test_watched_exec_answers_null_array_and_ping_inside_multi_is_in_the_array() -> None:
    async def run() -> None:
        engine = FakeEngine()
        conn, transport = connect(engine)
        conn.data_received(cmd(b"MULTI") + cmd(b"PING") + cmd(b"SET", b"a", b"1") + cmd(b"EXEC"))
        await settle()
        assert bytes(transport.out) == b"+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n+PONG\r\n+OK\r\n"
        transport.out.clear()
        conn.data_received(cmd(b"WATCH", b"a") + cmd(b"MULTI") + cmd(b"SET", b"a", b"2"))
        conn.data_received(cmd(b"EXEC"))
        await settle()
        assert bytes(transport.out) == b"+OK\r\n+OK\r\n+QUEUED\r\n*-1\r\n"

    asyncio.run(run())


def test_resp2_subscribed_connection_refuses_other_commands() -> None:
    async def run() -> None:
        engine = FakeEngine()
        conn, transport = connect(engine, FakeStreams())
        conn.data_received(cmd(b"SUBSCRIBE", b"ch") + cmd(b"GET", b"k") + cmd(b"PING"))
        await settle()
        assert bytes(transport.out) == (
            b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n"
            b"-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / "
            b"RESET are allowed in this context\r\n"
            b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"
        )

    asyncio.run(run())


def test_a_write_after_exec_waits_for_the_transaction() -> None:
    async def run() -> None:
        engine = FakeEngine()
        order: list[str] = []

        async def multi(calls: Any, watched: Any, queued: Any = None) -> Any:
            order.append("exec")
            return [OK for _ in calls]

        engine.multi = multi  # type: ignore[method-assign]
        conn, transport = connect(engine)
        conn.data_received(
            cmd(b"MULTI") + cmd(b"SET", b"a", b"1") + cmd(b"EXEC") + cmd(b"SET", b"a", b"2")
        )
        assert engine.log == ["exec"]  # the SET after EXEC is not queued before the transaction
        await settle()
        assert order == ["exec"] and engine.log == ["exec", "submit a"]
        engine.commit()
        await settle()
        assert bytes(transport.out) == b"+OK\r\n+QUEUED\r\n*1\r\n+OK\r\n+OK\r\n"

    asyncio.run(run())


def test_exec_on_the_leader_is_queued_before_a_write_another_client_sends_after_it() -> None:
    async def run() -> None:
        engine = FakeEngine()
        first, _ = connect(engine)
        second, _ = connect(engine)
        first.data_received(cmd(b"MULTI") + cmd(b"GET", b"k") + cmd(b"EXEC"))
        second.data_received(cmd(b"LPUSH", b"k", b"v"))
        assert engine.log == ["exec", "submit k"]  # the log order is the arrival order

    asyncio.run(run())


def test_reading_pauses_while_too_many_bytes_or_replies_are_outstanding() -> None:
    async def run() -> None:
        engine = FakeEngine()
        conn, transport = connect(engine)
        value = b"v" * (4 << 20)
        conn.data_received(b"".join(cmd(b"SET", b"k%d" % i, value) for i in range(10)))
        assert not transport.paused  # 40 MiB in flight
        conn.data_received(b"".join(cmd(b"SET", b"j%d" % i, value) for i in range(10)))
        assert transport.paused  # 80 MiB in flight: over the 64 MiB bound
        engine.commit()
        await settle()
        assert not transport.paused and bytes(transport.out) == b"+OK\r\n" * 20
        conn.data_received(b"".join(cmd(b"SET", b"k", b"v") for _ in range(5000)))
        assert transport.paused  # over 4,096 replies owed
        engine.commit()
        await settle()
        assert not transport.paused

    asyncio.run(run())


def test_save_inside_multi_is_refused_and_aborts_the_transaction() -> None:
    async def run() -> None:
        engine = FakeEngine()
        conn, transport = connect(engine)
        conn.server.admin = {b"save": lambda c, argv: c.reply(OK)}
        conn.data_received(cmd(b"MULTI") + cmd(b"SAVE") + cmd(b"EXEC"))
        await settle()
        assert bytes(transport.out) == (
            b"+OK\r\n-ERR Command not allowed inside a transaction\r\n"
            b"-EXECABORT Transaction discarded because of previous errors.\r\n"
        )

    asyncio.run(run())


def test_client_reply_off_skip_and_on_silence_replies_in_order() -> None:
    async def run() -> None:
        engine = FakeEngine()
        conn, transport = connect(engine, admin=ADMIN)
        conn.data_received(
            cmd(b"CLIENT", b"REPLY", b"SKIP")
            + cmd(b"SET", b"k", b"v")  # skipped
            + cmd(b"PING", b"one")  # answered
            + cmd(b"CLIENT", b"REPLY", b"OFF")
            + cmd(b"GET", b"k")
            + cmd(b"NOPE")  # errors are silenced too
            + cmd(b"CLIENT", b"REPLY", b"ON")
            + cmd(b"PING", b"two")
        )
        for _ in range(3):
            engine.commit()
            await settle()
        assert bytes(transport.out) == b"$3\r\none\r\n+OK\r\n$3\r\ntwo\r\n"
        assert engine.data[b"k"] == b"v"  # a silenced write still ran
        # SKIP while OFF is ignored (Redis): both PINGs stay silent until ON
        conn.data_received(
            cmd(b"CLIENT", b"REPLY", b"OFF")
            + cmd(b"CLIENT", b"REPLY", b"SKIP")
            + cmd(b"PING", b"a")
            + cmd(b"PING", b"b")
            + cmd(b"CLIENT", b"REPLY", b"ON")
        )
        await settle()
        assert bytes(transport.out).endswith(b"$3\r\ntwo\r\n+OK\r\n")
        # inside MULTI it is refused in EXEC's array, and silences nothing
        conn.data_received(
            cmd(b"MULTI") + cmd(b"CLIENT", b"REPLY", b"OFF") + cmd(b"EXEC") + cmd(b"PING")
        )
        await settle()
        assert bytes(transport.out).endswith(
            b"+OK\r\n+QUEUED\r\n"
            b"*1\r\n-ERR CLIENT REPLY inside MULTI is not supported: send it before MULTI\r\n"
            b"+PONG\r\n"
        )
        conn.data_received(cmd(b"CLIENT", b"REPLY", b"MAYBE"))
        await settle()
        assert bytes(transport.out).endswith(b"-ERR syntax error\r\n")

    asyncio.run(run())


def test_client_reply_off_still_delivers_subscribe_confirmations() -> None:
    async def run() -> None:
        engine = FakeEngine()
        conn, transport = connect(engine, streams=FakeStreams(), admin=ADMIN)
        conn.data_received(cmd(b"CLIENT", b"REPLY", b"OFF") + cmd(b"SUBSCRIBE", b"ch"))
        await settle()
        assert bytes(transport.out) == b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n"
        conn.data_received(cmd(b"RESET"))  # RESET turns replies back on
        await settle()
        assert bytes(transport.out).endswith(b"+RESET\r\n")

    asyncio.run(run())
