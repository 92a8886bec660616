"""Codec for the replicated log: one versioned protobuf `Command` per Raft entry."""

from __future__ import annotations

from google.protobuf.message import DecodeError
from raftcache.v1 import command_pb2

COMMAND_FORMAT = 1
"""The only log format this build understands; an entry with any other format stops the node."""


class CommandDecodeError(Exception):
    """A log entry that this node cannot interpret: applying past it would diverge."""


def encode(command: command_pb2.Command) -> bytes:
    """Serialize a command for the log, stamping the current format."""
    command.format = COMMAND_FORMAT
    data: bytes = command.SerializeToString()
    return data


def decode(data: bytes) -> command_pb2.Command:
    """Parse one log entry; raises CommandDecodeError for garbage or an unknown format."""
    command = command_pb2.Command()
    try:
        command.ParseFromString(data)
    except DecodeError as exc:
        raise CommandDecodeError(f"log entry of {len(data)} bytes is not a Command: {exc}") from exc
    if command.format == 0:
        # proto3 reads a missing format as 0; encode() always stamps one, so this is not ours.
        raise CommandDecodeError(
            f"log entry of {len(data)} bytes has no command format, so raftcache did not write "
            "it: the Raft log is corrupt or --data-dir holds another program's files (an "
            "upgrade will not help)"
        )
    if command.format != COMMAND_FORMAT:
        raise CommandDecodeError(
            f"log entry has command format {command.format}, this node understands only "
            f"{COMMAND_FORMAT}: upgrade this node before it applies newer entries"
        )
    return command
