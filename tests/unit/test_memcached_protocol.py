"""The memcached front-end's parser and reply rendering without a cluster: a McConnection
on a fake engine whose writes apply memcached's table commands on a real state machine
(tests/unit/redis_harness.py) when the test commits them."""

from __future__ import annotations

import asyncio
from typing import Any

from raftcache.node import errors
from raftcache.node.keyspace.reply import OK, OOM, Error, Status
from raftcache.node.memcached.server import MAX_LINE_BYTES, McConnection, McServer
from raftcache.node.state_machine import SET_OK, Value

from tests.unit.redis_harness import Redis
from tests.unit.resp_fakes import FakeEngine, FakeTransport, settle

LIMIT = 100


class McEngine(FakeEngine):
    """FakeEngine whose commits and local reads run the real memcached table commands."""

    def __init__(self) -> None:
        super().__init__()
        self.r = Redis()

    def commit(self) -> None:
        for op, future in self.writes_:
            if isinstance(op, list):  # plain SETs (a `set K 0 0 N` goes as one): a result each
                results = [self.r(*one.data.op.call.argv) for one in op]
                future.set_result([SET_OK if r == OK else Value("reply", r) for r in results])
            else:
                future.set_result(Value("reply", self.r(*op.data.op.call.argv)))
        self.writes_.clear()
        for barrier in self.barriers:
            barrier.set_result(None)
        self.barriers.clear()

    def fail(self, error: BaseException) -> None:
        for _, future in self.writes_:
            future.set_exception(error)
        self.writes_.clear()

    def read_local(self, argv: list[bytes], db: int, now_ms: int = 0) -> Any:
        return self.r(*argv)

    def read_mc_get(self, keys: list[bytes], now_ms: int = 0) -> Any:
        return self.r(b"raftcache.mc.get", *keys)  # Engine's fast path answers the same


def connect(engine: McEngine) -> tuple[McConnection, FakeTransport]:
    conn = McConnection(McServer(engine, LIMIT), 1)  # type: ignore[arg-type]
    transport = FakeTransport()
    conn.connection_made(transport)
    return conn, transport


async def exchange(engine: McEngine, conn: McConnection, data: bytes, byte_by_byte=False) -> None:
    chunks = [data[i : i + 1] for i in range(len(data))] if byte_by_byte else [data]
    for chunk in chunks:
        conn.data_received(chunk)
    for _ in range(5):
        engine.commit()
        await settle()


def run(data: bytes, byte_by_byte: bool = False) -> tuple[bytes, McEngine, FakeTransport]:
    async def go() -> tuple[bytes, McEngine, FakeTransport]:
        engine = McEngine()
        conn, transport = connect(engine)
        await exchange(engine, conn, data, byte_by_byte)
        return bytes(transport.out), engine, transport

    return asyncio.run(go())


def test_pipelined_commands_answer_in_order_even_when_split_into_single_bytes() -> None:
    data = (
        b"set a 5 0 2\r\nhi\r\nget a b\r\nappend a 0 0 1\r\n!\r\nincr n 1\r\n"
        b"mg a v f s\r\nversion\r\nmn\r\n"
    )
    for byte_by_byte in (False, True):
        out, _, _ = run(data, byte_by_byte)
        assert out == (
            b"STORED\r\nVALUE a 5 2\r\nhi\r\nEND\r\nSTORED\r\nNOT_FOUND\r\n"
            b"VA 3 f5 s3\r\nhi!\r\nVERSION 1.6.18\r\nMN\r\n"
        )


def test_too_large_value_is_swallowed_and_the_next_command_works() -> None:
    big = b"x" * (LIMIT + 1)
    out, engine, _ = run(b"set a 0 0 %d\r\n%b\r\nget a\r\n" % (len(big), big), byte_by_byte=True)
    assert out == b"SERVER_ERROR object too large for cache\r\nEND\r\n"
    assert engine.submitted == []  # refused before proposing
    out, engine, _ = run(b"set a 0 0 %d noreply\r\n%b\r\nget a\r\n" % (len(big), big))
    assert out == b"END\r\n" and engine.submitted == []


BAD = "CLIENT_ERROR bad command line format"
REFUSED = {
    b"set a 0 0\r\n": "ERROR",  # and no data block is read
    b"set a x 0 1\r\n": BAD,
    b"set a 0 0 1\r\nxyz\r\n": "CLIENT_ERROR bad data chunk\r\nERROR",
    b"set " + b"k" * 251 + b" 0 0 1\r\n": BAD,
    b"set a\x01 0 0 1\r\n": BAD,
    b"cas a 0 0 1 x\r\n": BAD,
    b"incr a x\r\n": "CLIENT_ERROR invalid numeric delta argument",
    b"touch a x\r\n": "CLIENT_ERROR invalid exptime argument",
    b"delete a b\r\n": BAD + ".  Usage: delete <key> [noreply]",
    b"flush_all x\r\n": "CLIENT_ERROR invalid exptime argument",
    b"ms a 1 Tx\r\nx\r\n": "CLIENT_ERROR bad token in command line format",
    b"ms a 1 MX\r\nx\r\n": "CLIENT_ERROR invalid mode for ms M token",
    b"md a Cx\r\n": "CLIENT_ERROR invalid or duplicate flag",
    b"ma a Dx\r\n": "CLIENT_ERROR invalid or duplicate flag",
    b"mg a N30\r\n": "CLIENT_ERROR mg's N (vivify on miss) flag is not supported by raftcache: "
    "use ms with ME (add) to claim a missing key",
    b"md a I\r\n": "CLIENT_ERROR the I (invalidate) flag is not supported by raftcache: "
    "delete the key instead",
    b"mg YQ= b\r\n": "CLIENT_ERROR error decoding key",
}


def test_refused_commands_answer_exactly_and_propose_nothing() -> None:
    for data, reply in REFUSED.items():
        out, engine, transport = run(data + b"mn\r\n")
        assert out == reply.encode() + b"\r\nMN\r\n", data
        assert engine.submitted == [] and not transport.closed


def test_noreply_silences_replies_and_errors() -> None:
    out, engine, _ = run(
        b"set a 0 0 1 noreply\r\n1\r\nincr a 1 noreply\r\nincr a x noreply\r\n"
        b"touch a x noreply\r\ndelete zz noreply\r\nset a x 0 1 noreply\r\nget a\r\n"
    )
    assert out == b"VALUE a 0 1\r\n2\r\nEND\r\n"  # the bad "set" line has no data block
    assert len(engine.submitted) == 3


STORE = b"raftcache.mc.store"


def test_a_plain_set_goes_as_a_plain_SET_and_every_other_store_as_a_store() -> None:
    """`set K 0 0 N` stores what `SET K V` stores, so it is proposed as one (the RESP port's
    fast write); flags, an expiry, noreply or another mode keep the memcached store."""
    out, engine, _ = run(
        b"set a 0 0 2\r\nhi\r\nset b 5 0 1\r\nx\r\nset c 0 60 1\r\ny\r\n"
        b"set d 0 0 1 noreply\r\nz\r\nadd e 0 0 1\r\nw\r\nset f 00 0 1\r\nv\r\n"
        b"gets a\r\nget b c d e f\r\n"
    )
    assert engine.submitted == [
        ([b"SET", b"a", b"hi"], 0),
        ([STORE, b"set", b"b", b"x", b"5", b"0", b""], 0),
        ([STORE, b"set", b"c", b"y", b"0", b"60", b""], 0),
        ([STORE, b"set", b"d", b"z", b"0", b"0", b""], 0),
        ([STORE, b"add", b"e", b"w", b"0", b"0", b""], 0),
        ([STORE, b"set", b"f", b"v", b"0", b"0", b""], 0),  # "00": not the plain spelling
    ]
    stored, gets, rest = out.split(b"\r\n", 5)[:5], out.split(b"\r\n")[5], out.split(b"\r\n")[6:]
    assert stored == [b"STORED"] * 5  # d said noreply
    assert gets.startswith(b"VALUE a 0 2 ") and int(gets.split()[-1]) > 0  # its CAS unique
    assert b"\r\n".join(rest) == (
        b"hi\r\nEND\r\nVALUE b 5 1\r\nx\r\nVALUE c 0 1\r\ny\r\nVALUE d 0 1\r\nz\r\n"
        b"VALUE e 0 1\r\nw\r\nVALUE f 0 1\r\nv\r\nEND\r\n"
    )


class OomEngine(McEngine):
    """Every write is refused as the state machine refuses one over --max-memory."""

    def commit(self) -> None:
        refused = Value("reply", Error(OOM))
        for op, future in self.writes_:
            future.set_result([refused] * len(op) if isinstance(op, list) else refused)
        self.writes_.clear()


def test_a_plain_set_refused_over_memory_answers_as_a_store_does() -> None:
    async def go() -> None:
        engine = OomEngine()
        conn, transport = connect(engine)
        # the plain set (a SET) and a store with flags (the table call): the same line
        await exchange(engine, conn, b"set a 0 0 1\r\nx\r\nset b 5 0 1\r\ny\r\nmn\r\n")
        assert [argv[0] for argv, _ in engine.submitted] == [b"SET", STORE]
        line = b"SERVER_ERROR out of memory storing object\r\n"
        assert bytes(transport.out) == line * 2 + b"MN\r\n"

    asyncio.run(go())


def test_a_follower_forwards_a_plain_set_as_a_SET_and_renders_the_leaders_answer() -> None:
    async def go() -> None:
        engine = McEngine()
        engine.leader = False
        conn, transport = connect(engine)
        conn.data_received(b"set a 0 0 1\r\nx\r\nset b 0 0 1\r\ny\r\nmn\r\n")
        await settle()
        # both in one relay (a follower batches its writes), each as the SET it amounts to
        assert engine.forwarded == [[([b"SET", b"a", b"x"], 0), ([b"SET", b"b", b"y"], 0)]]
        engine.forward_replies = [
            Status("OK"),  # the leader's reply: equal to OK, not the OK object itself
            Error("CLUSTERDOWN no leader is known right now"),
        ]
        engine.forwards.pop(0).set_result(None)
        await settle()
        assert bytes(transport.out) == (
            b"STORED\r\nSERVER_ERROR unavailable: no leader is known right now\r\nMN\r\n"
        )

    asyncio.run(go())


def test_a_plain_set_over_the_key_limit_keeps_the_memcached_store() -> None:
    async def go() -> None:
        engine = McEngine()
        conn = McConnection(McServer(engine, LIMIT, max_key_bytes=3), 1)  # type: ignore[arg-type]
        transport = FakeTransport()
        conn.connection_made(transport)
        await exchange(engine, conn, b"set abc 0 0 1\r\nx\r\nset abcd 0 0 1\r\ny\r\n")
        assert [argv[0] for argv, _ in engine.submitted] == [b"SET", STORE]

    asyncio.run(go())


def test_a_failed_commit_answers_server_error_unless_noreply() -> None:
    async def go() -> None:
        engine = McEngine()
        conn, transport = connect(engine)
        conn.data_received(b"set a 0 0 1\r\nx\r\nset b 0 0 1 noreply\r\ny\r\nmn\r\n")
        engine.fail(errors.NoLeader("no leader is known right now", ""))
        await settle()
        out = bytes(transport.out)
        assert out.startswith(b"SERVER_ERROR ") and out.endswith(b"\r\nMN\r\n")
        assert out.count(b"\r\n") == 2, out

    asyncio.run(go())


def test_a_line_too_long_answers_and_closes() -> None:
    out, engine, transport = run(b"get " + b"k" * (MAX_LINE_BYTES + 10))
    assert out == b"CLIENT_ERROR line too long\r\n" and transport.closed
    assert engine.submitted == []


def test_quit_closes_after_earlier_replies() -> None:
    out, _, transport = run(b"set a 0 0 1\r\nx\r\nquit\r\nget a\r\n")
    assert out == b"STORED\r\n" and transport.closed


def test_unknown_and_empty_commands_answer_error() -> None:
    out, _, transport = run(b"bogus\r\n\r\nGET a\r\nmn\r\n")
    assert out == b"ERROR\r\nERROR\r\nERROR\r\nMN\r\n" and not transport.closed


def test_get_gets_and_gat_count_each_key_and_render_every_hit() -> None:
    async def go() -> tuple[bytes, dict[str, int]]:
        engine = McEngine()
        conn, transport = connect(engine)
        await exchange(engine, conn, b"set a 5 0 2\r\nhi\r\nset b 0 0 0\r\n\r\n")
        transport.out.clear()
        await exchange(engine, conn, b"get a x b y\r\ngets b a\r\ngat 100 a z\r\nget q\r\n")
        return bytes(transport.out), conn.stats.counts

    out, counts = asyncio.run(go())
    cas_b, cas_a = (int(line.split()[4]) for line in out.split(b"\r\n") if line.count(b" ") == 4)
    assert out == (
        b"VALUE a 5 2\r\nhi\r\nVALUE b 0 0\r\n\r\nEND\r\n"
        b"VALUE b 0 0 %d\r\n\r\nVALUE a 5 2 %d\r\nhi\r\nEND\r\n"
        b"VALUE a 5 2\r\nhi\r\nEND\r\n"
        b"END\r\n" % (cas_b, cas_a)
    )
    assert cas_b > cas_a > 0  # b was written after a
    assert (counts["get_hits"], counts["get_misses"]) == (4, 3)
    assert (counts["touch_hits"], counts["touch_misses"]) == (1, 1)
