"""State machine results and local reads as raftcache.v1 responses, shared by the unary
servicers and Batch (node/batch.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from raftcache.node import errors, requests, status_codes
from raftcache.node.keyspace.db import db_key
from raftcache.node.keyspace.dispatch import COMMANDS
from raftcache.node.keyspace.memcached import GET_COMMAND as MC_GET
from raftcache.node.keyspace.reply import to_proto as reply_to_proto
from raftcache.node.state_machine import Entry, Failure, Result, Value
from raftcache.v1 import cache_pb2

if TYPE_CHECKING:
    from raftcache.node.servicers import NodeView

R = TypeVar("R")


def expect(result: Result, kind: type[R]) -> R:
    """`result` as a `kind`; a Failure raises its domain error."""
    if isinstance(result, Failure):
        raise status_codes.from_failure(result)
    if not isinstance(result, kind):
        raise TypeError(f"state machine answered {result!r}, expected {kind.__name__}")
    return result


def get_response(entry: Entry | None, now_ms: int) -> cache_pb2.GetResponse:
    if entry is None or not isinstance(entry.value, bytes):
        return cache_pb2.GetResponse(found=False)
    ttl = max(entry.deadline_ms - now_ms, 1) if entry.deadline_ms else 0
    return cache_pb2.GetResponse(found=True, value=entry.value, version=entry.version, ttl_ms=ttl)


def value(result: Result) -> cache_pb2.Value:
    """A data op's answer as a raftcache.v1.Value."""
    v = expect(result, Value)
    out = cache_pb2.Value()
    if v.kind == "reply":
        reply_to_proto(v.data, out.reply)
    elif v.kind == "list":
        out.list.items.extend(v.data)
    elif v.kind == "fields":
        out.fields.items.extend(cache_pb2.FieldValue(field=f, value=x) for f, x in v.data)
    elif v.kind == "scored":
        out.scored.items.extend(cache_pb2.ScoredMember(member=m, score=x) for m, x in v.data)
    else:
        setattr(out, v.kind, v.data)
    return out


def check_size(message: Any, limits: requests.Limits, advice: str) -> None:
    size = message.ByteSize()
    if size > limits.max_response_bytes:
        raise errors.TooLarge(
            f"the answer would be {size} bytes, over the response limit of "
            f"{limits.max_response_bytes} bytes: {advice}"
        )


def read_time_ms(view: NodeView) -> int:
    """When gRPC reads (unary and Batch) happen: this replica's applied cluster time, never
    its wall clock, which could hide a key that comes back on a leader whose clock is behind
    (node/engine.py READ_AT_CLUSTER_TIME)."""
    return view.replica.cluster_time_ms


def read_get(view: NodeView, key: bytes, now_ms: int) -> cache_pb2.GetResponse:
    """Get served from this node's applied state (after the barrier or staleness check)."""
    entry = view.replica.get(key, now_ms)
    if entry is not None and not isinstance(entry.value, bytes):
        raise errors.WrongType(
            f"WRONGTYPE: key {key[:64]!r} holds a {entry.value.TYPE}, but Get "
            "reads strings: use Exec with the op for that type"
        )
    view.count_read(key, entry is not None)
    return get_response(entry, now_ms)


def _count_call_read(view: NodeView, call: Any, now_ms: int) -> None:
    """A Redis read through Exec (a follower's forwarded linearizable read, or a gRPC
    caller's): a use of its first key for LRU/LFU eviction if the key exists, as a RESP
    read served here counts (node/resp/server.py, local_read); memcached's get, every key
    (node/memcached/server.py, local_read). Keyless reads count nothing."""
    argv = call.argv
    name = argv[0].lower() if argv else b""
    state = view.replica.state
    if name == MC_GET:  # memcached's get and gets: every key, a hit when it is a string
        for key in argv[1:]:
            entry = state.live(key, now_ms)
            view.count_read(key, entry is not None and isinstance(entry[0], bytes))
        return
    spec = COMMANDS.get(name)
    if spec is None or "internal" in spec.flags or not 0 < spec.first_key < len(argv):
        return  # WATCH's versions and the other plumbing are not reads of the key
    key = db_key(call.db, argv[spec.first_key])
    view.count_read(key, state.live(key, now_ms) is not None)


def read_exec(
    view: NodeView, request: cache_pb2.ExecRequest, limits: requests.Limits, now_ms: int
) -> cache_pb2.ExecResponse:
    """A read op of Exec served from this node's applied state."""
    result = view.replica.read(request.op, now_ms)
    kind = request.op.WhichOneof("op") or "get"
    if kind == "call":
        _count_call_read(view, request.op.call, now_ms)
    else:
        key = getattr(request.op, kind).key
        view.count_read(key, not (isinstance(result, Value) and result.kind == "nil"))
    response = cache_pb2.ExecResponse(value=value(result))
    check_size(response, limits, "read a smaller range (offset/limit, start/stop)")
    return response
