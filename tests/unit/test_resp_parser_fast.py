"""The RESP parser's hiredis fast path (Parser.parse) against the parser alone: for any
stream of requests, cut into reads anywhere, the same commands and the same protocol
error; and the fast path is what parses whole canonical commands."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from raftcache.node.resp import parser as parser_module
from raftcache.node.resp.parser import Parser, ParserLimits

from tests.unit.resp_fakes import cmd

LIMITS = ParserLimits(max_bulk_bytes=24, max_multibulk=6, max_inline_bytes=64, max_command_bytes=48)


ARG = st.binary(max_size=30)  # over max_bulk_bytes at times; CR and LF inside at times
ODD = st.sampled_from(
    [
        b"*0\r\n",  # an empty array: ignored
        b"*-1\r\n",  # a null array: ignored
        b"PING\r\n",  # inline
        b"set a 'b c'\n",
        b"*1\r\n+OK\r\n",  # a simple string element: Redis refuses it
        b"*1\r\n:5\r\n",
        b"*1\r\n=5\r\ntxt:a\r\n",  # RESP3 verbatim string
        b"*1\r\n,1.5\r\n",
        b"*1\r\n#t\r\n",
        b"*1\r\n_\r\n",
        b"*1\r\n*1\r\n$1\r\na\r\n",  # nested
        b"*1\r\n$03\r\nGET\r\n",  # leading zero
        b"*1\r\n$3\r\nGETX\r\n",  # bulk longer than declared
        b"*99\r\n",  # over max_multibulk
        b"*2\r\n$3\r\nGET\r\n",  # short of its arguments (waits)
        b"\r\n",
        b"*1\r\n$-1\r\n",
    ]
)
SEGMENT = st.one_of(st.lists(ARG, min_size=1, max_size=8).map(lambda argv: cmd(*argv)), ODD)


def run(stream: bytes, cuts: list[int], fast: bool) -> tuple[list[list[bytes]], str | None]:
    parser = Parser(LIMITS)
    out: list[list[bytes]] = []
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    for start, end in itertools.pairwise(points):
        data = stream[start:end]
        if fast:
            out += parser.parse(data)
        else:
            parser.feed(data)
            out += parser.commands()
        if parser.error is not None:
            break
    return out, parser.error


@settings(max_examples=400, deadline=None)
@given(st.lists(SEGMENT, max_size=12), st.lists(st.integers(min_value=0), max_size=10))
def test_the_fast_path_gives_the_parsers_commands_and_errors(
    segments: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(segments)
    assert run(stream, cuts, fast=True) == run(stream, cuts, fast=False)


def module_parses(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A list that grows by one each time the module's own parser (not hiredis) runs."""
    original = Parser._parse
    calls: list[int] = []

    def counting(self: Parser, out: list[list[bytes]]) -> None:
        calls.append(1)
        original(self, out)

    monkeypatch.setattr(Parser, "_parse", counting)
    return calls


def test_whole_canonical_commands_are_parsed_by_hiredis(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast path is taken: the module's own parser is not called for them, and a partial
    command after them still is (and completes across reads)."""
    parser = Parser(LIMITS)
    commands = [[b"SET", b"k", b"v\r\n"], [b"GET", b"k"], [b"PING"]]
    stream = b"".join(cmd(*c) for c in commands)

    calls = module_parses(monkeypatch)
    assert parser.parse(stream) == commands
    assert calls == []
    tail = cmd(b"GET", b"other")
    assert parser.parse(tail[:7]) == []  # partial: the module keeps it
    assert calls == [1]
    assert parser.parse(tail[7:]) == [[b"GET", b"other"]]
    assert parser.parse(stream) == commands  # nothing buffered again: fast once more
    assert len(calls) == 2


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"*1\r\n+OK\r\n", "expected '$', got '+'"),
        (b"*1\r\n=5\r\ntxt:a\r\n", "expected '$', got '='"),
        (b"*2\r\n$3\r\nGET\r\n*1\r\n$1\r\na\r\n", "expected '$', got '*'"),
        (b"*1\r\n$03\r\nGET\r\n", "invalid bulk length"),  # string2ll: no leading zero
        (b"*-0\r\n", "invalid multibulk length"),
        (b"*7\r\n" + b"$1\r\na\r\n" * 7, "invalid multibulk length"),
        (b"*1\r\n$25\r\n" + b"x" * 25 + b"\r\n", "invalid bulk length"),
    ],
)
def test_what_hiredis_accepts_and_redis_refuses_gets_redis_text(data: bytes, error: str) -> None:
    parser = Parser(LIMITS)
    assert parser.parse(cmd(b"PING") + data) == [[b"PING"]]
    assert parser.error == error


@pytest.mark.parametrize(
    "data",
    [
        b"*3000000000\r\n",
        b"*1\r\n$1\r\na\r\n*3000000000\r\n",
        b"*1\r\n~3000000000\r\n",
        b"*1\r\n%3000000000\r\n",
        b"*2\r\n>10000\r\n",
        b"*1\r\n|10000\r\n",
    ],
)
def test_a_huge_aggregate_header_never_reaches_hiredis(
    data: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """hiredis allocates an aggregate's list when it reads the header: `*3000000000` cost
    a 6.5 s stall when the reader was dropped. Such reads go to the module's parser."""
    fed: list[bytes] = []

    class Spy:
        def feed(self, chunk: bytes) -> None:
            fed.append(chunk)

    monkeypatch.setattr(parser_module.hiredis, "Reader", Spy)
    parser = Parser(ParserLimits())
    parser.parse(data)
    assert fed == []
    assert parser.error is not None or parser.buffered == len(data)


@pytest.mark.parametrize(
    ("argv", "fast"),
    [
        ([b"x" * 1023], True),
        ([b"x" * 1024, b"", b"y" * 1025], True),  # headers past the table are formatted
        ([b"a"] * 1023, True),
        ([b"a"] * 1500, True),
        ([b"SET", b"k", b"*9999"], True),  # four digits: not a huge header
        ([b"SET", b"k", b"value *12345"], False),  # looks like one: the module parses it
        ([b"SET", b"k", b"|99999"], False),
    ],
)
def test_canonical_commands_of_any_size_parse_alike_on_both_paths(
    argv: list[bytes], fast: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = cmd(*argv) + cmd(b"GET", b"k")
    calls = module_parses(monkeypatch)
    assert Parser(ParserLimits()).parse(stream) == [argv, [b"GET", b"k"]]
    assert calls == ([] if fast else [1])
    slow = Parser(ParserLimits())
    slow.feed(stream)
    assert slow.commands() == [argv, [b"GET", b"k"]]
