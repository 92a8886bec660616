"""RESP request parsing (limits, inline commands, protocol errors) and reply encoding."""

from __future__ import annotations

import pytest
from raftcache.node.keyspace.reply import NULL_ARRAY, Bool, Error, Map, Pairs, SetReply, Status
from raftcache.node.resp.encoder import Raw, encoded, push
from raftcache.node.resp.parser import Parser, ParserLimits, split_inline


def parse(data: bytes, limits: ParserLimits | None = None) -> tuple[list[list[bytes]], str | None]:
    parser = Parser(limits or ParserLimits())
    parser.feed(data)
    return parser.commands(), parser.error


def test_multibulk_commands_split_anywhere_are_reassembled() -> None:
    data = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n*1\r\n$4\r\nPING\r\n"
    for cut in range(1, len(data)):
        parser = Parser(ParserLimits())
        parser.feed(data[:cut])
        got = parser.commands()
        parser.feed(data[cut:])
        got += parser.commands()
        assert got == [[b"SET", b"k", b"hello"], [b"PING"]], cut
        assert parser.error is None


def test_binary_safe_arguments() -> None:
    value = bytes(range(256)) + b"\r\n"
    data = b"*2\r\n$3\r\nGET\r\n$%d\r\n%b\r\n" % (len(value), value)
    assert parse(data) == ([[b"GET", value]], None)


def test_inline_commands_with_quotes() -> None:
    assert parse(b"PING\r\nset a b\n")[0] == [[b"PING"], [b"set", b"a", b"b"]]
    assert split_inline(b'set k "a b\\x41\\n"') == [b"set", b"k", b"a bA\n"]
    assert split_inline(b"set k 'it\\'s'") == [b"set", b"k", b"it's"]
    assert parse(b"\r\n\r\nPING\r\n")[0] == [[b"PING"]]  # empty lines are ignored


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"*abc\r\n", "invalid multibulk length"),
        (b"*2000000\r\n", "invalid multibulk length"),
        (b"*1\r\n+PING\r\n", "expected '$', got '+'"),
        (b"*1\r\n$x\r\n", "invalid bulk length"),
        (b"*1\r\n$-5\r\n", "invalid bulk length"),
        (b'set k "unterminated\r\n', "unbalanced quotes in request"),
        (b'set k "a"b\r\n', "unbalanced quotes in request"),
    ],
)
def test_protocol_errors_say_what_redis_says(data: bytes, error: str) -> None:
    assert parse(data)[1] == error


def test_limits_refuse_huge_headers_without_waiting_for_the_body() -> None:
    limits = ParserLimits(max_bulk_bytes=1024, max_multibulk=8, max_inline_bytes=64)
    assert parse(b"*1\r\n$2000000000\r\n", limits)[1] == "invalid bulk length"
    assert parse(b"*9\r\n", limits)[1] == "invalid multibulk length"
    assert parse(b"x" * 100, limits)[1] == "too big inline request"
    assert parse(b"*" + b"1" * 100, limits)[1] == "too big mbulk count string"


def test_commands_before_a_protocol_error_are_returned() -> None:
    commands, error = parse(b"*1\r\n$4\r\nPING\r\n*1\r\n+X\r\n")
    assert commands == [[b"PING"]]
    assert error == "expected '$', got '+'"


def test_reply_encoding_resp2_and_resp3() -> None:
    assert encoded(b"v", 2) == b"$1\r\nv\r\n"
    assert encoded(7, 3) == b":7\r\n"
    assert encoded(None, 2) == b"$-1\r\n"
    assert encoded(None, 3) == b"_\r\n"
    assert encoded(NULL_ARRAY, 2) == b"*-1\r\n"
    assert encoded(Status("OK"), 2) == b"+OK\r\n"
    assert encoded(Error("ERR bad\r\nthing"), 2) == b"-ERR bad  thing\r\n"
    assert encoded(1.5, 2) == b"$3\r\n1.5\r\n"
    assert encoded(0.1, 2) == b"$19\r\n0.10000000000000001\r\n"  # Redis 7.0's %.17g
    assert encoded(float("inf"), 3) == b",inf\r\n"
    assert encoded(Map([b"a", 1]), 2) == b"*2\r\n$1\r\na\r\n:1\r\n"
    assert encoded(Map([b"a", 1]), 3) == b"%1\r\n$1\r\na\r\n:1\r\n"
    assert encoded(SetReply([b"m"]), 3) == b"~1\r\n$1\r\nm\r\n"
    assert encoded(Pairs([[b"m", 2.0]]), 2) == b"*2\r\n$1\r\nm\r\n$1\r\n2\r\n"
    assert encoded(Pairs([[b"m", 2.0]]), 3) == b"*1\r\n*2\r\n$1\r\nm\r\n,2\r\n"
    assert encoded(Bool(1), 3) == b"#t\r\n"
    assert encoded(Bool(0), 2) == b":0\r\n"
    assert encoded([Raw(b"+PONG\r\n"), 1], 2) == b"*2\r\n+PONG\r\n:1\r\n"


def test_push_frames() -> None:
    assert push(b"message", [b"ch", b"hi"], 2) == b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n"
    assert push(b"subscribe", [b"ch", 1], 3).startswith(b">3\r\n")
    assert push(b"unsubscribe", [None, 0], 2) == b"*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n"


def test_a_large_command_arriving_in_small_reads_counts_its_bytes_once() -> None:
    value = b"v" * (3 << 20)
    data = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$%d\r\n%b\r\n" % (len(value), value)
    parser = Parser(ParserLimits(max_bulk_bytes=4 << 20, max_command_bytes=4 << 20))
    got: list[list[bytes]] = []
    for i in range(0, len(data), 65536):  # a socket's reads
        parser.feed(data[i : i + 65536])
        got += parser.commands()
    assert parser.error is None
    assert got == [[b"SET", b"k", value]]


def test_a_command_over_the_byte_limit_is_refused() -> None:
    limits = ParserLimits(max_bulk_bytes=1 << 20, max_command_bytes=1 << 20)
    half = b"$%d\r\n%b\r\n" % (600_000, b"x" * 600_000)
    commands, error = parse(b"*3\r\n$3\r\nSET\r\n" + half + half, limits)
    assert commands == [] and error is not None and "over 1048576 bytes" in error
