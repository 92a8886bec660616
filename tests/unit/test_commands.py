"""The replicated log codec: round trip, and loud refusal of anything it cannot interpret."""

from __future__ import annotations

import pytest
from google.protobuf.message import DecodeError
from raftcache.node.commands import COMMAND_FORMAT, CommandDecodeError, decode, encode
from raftcache.node.errors import CacheError
from raftcache.v1 import command_pb2


def full_command() -> command_pb2.Command:
    """A command with every op kind, a request id, time and non-ASCII bytes."""
    cmd = command_pb2.Command(now_ms=1_700_000_000_123)
    set_op = cmd.ops.add()
    set_op.set.key, set_op.set.value = b"k\x00\xff", b"v" * 300
    set_op.set.deadline_ms, set_op.set.condition = 1_700_000_060_000, 1
    set_op.set.has_expected_version, set_op.set.expected_version = True, 0
    set_op.request_id.client_id, set_op.request_id.seq = "client-é", 2**63
    cmd.ops.add().delete.key = b"gone"
    incr = cmd.ops.add().incr
    incr.key, incr.delta, incr.deadline_ms = b"n", -(2**63), 5
    cmd.ops.add().mset.entries.add(key=b"a", value=b"1", deadline_ms=0)
    announce = cmd.ops.add().announce
    announce.node_id, announce.raft_addr, announce.client_addr = "n1", "h:7380", "h:6380"
    return cmd


def test_round_trip_keeps_every_field() -> None:
    original = full_command()
    data = encode(original)
    decoded = decode(data)
    assert decoded == original
    assert decoded.format == COMMAND_FORMAT == 1
    assert [op.WhichOneof("kind") for op in decoded.ops] == [
        "set",
        "delete",
        "incr",
        "mset",
        "announce",
    ]


def test_an_empty_command_round_trips_as_a_clock_tick() -> None:
    decoded = decode(encode(command_pb2.Command(now_ms=42)))
    assert decoded.now_ms == 42
    assert list(decoded.ops) == []


def test_encode_stamps_the_current_format_over_any_other() -> None:
    cmd = command_pb2.Command(format=7, now_ms=1)
    decoded = decode(encode(cmd))
    assert decoded.format == COMMAND_FORMAT


@pytest.mark.parametrize(
    "garbage",
    [b"\xff\xff\xff\xff", b"hello world", b"\x0a\x05ab", b"\x1a\xff\xff\xff\xff\x0f"],
    ids=["invalid-tag", "text", "truncated-field", "oversized-length"],
)
def test_garbage_bytes_are_refused(garbage: bytes) -> None:
    with pytest.raises(CommandDecodeError) as exc:
        decode(garbage)
    message = str(exc.value)
    assert f"log entry of {len(garbage)} bytes is not a Command" in message
    assert isinstance(exc.value.__cause__, DecodeError)


@pytest.mark.parametrize("data", [b"", b"\x10\x02"], ids=["empty", "only-now-ms"])
def test_an_entry_without_a_format_is_refused_as_not_ours(data: bytes) -> None:
    # Parses as a Command (every proto3 field is optional) but encode() always stamps a format.
    with pytest.raises(CommandDecodeError) as exc:
        decode(data)
    message = str(exc.value)
    assert f"log entry of {len(data)} bytes has no command format" in message
    assert "corrupt" in message
    assert "--data-dir" in message


@pytest.mark.parametrize("fmt", [2, 99])
def test_a_newer_format_is_refused_with_upgrade_advice(fmt: int) -> None:
    cmd = full_command()
    cmd.format = fmt
    with pytest.raises(CommandDecodeError) as exc:
        decode(cmd.SerializeToString())
    message = str(exc.value)
    assert f"command format {fmt}" in message
    assert f"understands only {COMMAND_FORMAT}" in message
    assert "upgrade this node" in message


def test_command_decode_error_is_not_a_cache_error() -> None:
    # It must stop the node, never reach a client as a per-request failure.
    assert not issubclass(CommandDecodeError, CacheError)
