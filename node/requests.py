"""Validate client requests and turn them into replicated ops (leader clock stamps deadlines)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from raftcache.node.errors import InvalidInput
from raftcache.node.keyspace import dispatch
from raftcache.node.keyspace.acl import client_may_call
from raftcache.node.keyspace.db import DATABASES, DB_PREFIX
from raftcache.node.keyspace.reply import CommandError
from raftcache.node.state_machine import READ_OPS
from raftcache.v1 import cache_pb2, command_pb2
from raftcache.v1.pipeline import BATCH_MAX_BYTES, BATCH_MAX_OPS

MAX_TTL_MS = 10 * 365 * 24 * 3600 * 1000  # ten years
MAX_CLIENT_ID_BYTES = 128


@dataclass(frozen=True)
class Limits:
    """Input limits, configurable per node (--max-key-bytes, --max-value-bytes)."""

    max_key_bytes: int = 64 * 1024
    max_value_bytes: int = 4 * 1024 * 1024
    max_batch_keys: int = 10_000
    max_response_bytes: int = 16 << 20  # below gRPC's send limit, which config sets above it
    max_batch_ops: int = BATCH_MAX_OPS  # ops in one Batch request
    max_batch_bytes: int = BATCH_MAX_BYTES  # bytes of one Batch request


def check_key(key: bytes, limits: Limits, what: str = "key", reserved_ok: bool = False) -> None:
    """`reserved_ok`: the key may name a Redis database's key (compares and channels only
    read or name it; they never write it)."""
    if not key:
        raise InvalidInput(f"{what} is empty: every key needs at least one byte")
    if key.startswith(DB_PREFIX) and (not reserved_ok or is_internal_key(key)):
        raise InvalidInput(
            f"{what} starts with {DB_PREFIX!r}, a prefix reserved for the keys of Redis "
            "databases 1-15: use another key (or reach those databases over Redis)"
        )
    if len(key) > limits.max_key_bytes:
        raise InvalidInput(
            f"{what} is {len(key)} bytes, over the limit of {limits.max_key_bytes} bytes "
            "(--max-key-bytes): use a shorter key, e.g. a hash of it"
        )


def check_value(value: bytes, limits: Limits, what: str = "value") -> None:
    if len(value) > limits.max_value_bytes:
        raise InvalidInput(
            f"{what} is {len(value)} bytes, over the limit of {limits.max_value_bytes} bytes "
            "(--max-value-bytes): split it or store it elsewhere"
        )


def check_ttl(ttl_ms: int, what: str = "ttl_ms") -> None:
    if ttl_ms < 0:
        raise InvalidInput(f"{what} is {ttl_ms}: a TTL cannot be negative (0 means no expiry)")
    if ttl_ms > MAX_TTL_MS:
        raise InvalidInput(f"{what} is {ttl_ms}, over the maximum of {MAX_TTL_MS} (ten years)")


def check_consistency(consistency: int) -> None:
    if consistency not in (cache_pb2.LINEARIZABLE, cache_pb2.STALE):
        raise InvalidInput(f"unknown consistency {consistency}: use LINEARIZABLE (0) or STALE (1)")


def is_internal_key(key: bytes) -> bool:
    """A key of the nodes' own databases (users, scripts, functions: 16 and up), which no
    client may name, compare or watch."""
    n = len(DB_PREFIX)
    return key.startswith(DB_PREFIX) and len(key) > n and key[n] >= DATABASES


def check_keys(keys: Sequence[bytes], limits: Limits) -> None:
    if not keys:
        raise InvalidInput("no keys given: pass at least one key")
    if len(keys) > limits.max_batch_keys:
        raise InvalidInput(
            f"{len(keys)} keys in one request, over the limit of {limits.max_batch_keys}: "
            "split the request"
        )
    for i, key in enumerate(keys):
        check_key(key, limits, f"keys[{i}]")


def _request_id(op: command_pb2.Op, rid: cache_pb2.RequestId, present: bool) -> None:
    if not present:
        return
    if not rid.client_id or len(rid.client_id.encode()) > MAX_CLIENT_ID_BYTES:
        raise InvalidInput(
            f"request_id.client_id must be 1..{MAX_CLIENT_ID_BYTES} bytes, "
            f"got {len(rid.client_id.encode())}"
        )
    if rid.seq == 0:
        raise InvalidInput("request_id.seq must be > 0 (sequence numbers start at 1)")
    if rid.done_below > rid.seq:
        raise InvalidInput(
            f"request_id.done_below is {rid.done_below}, above its seq {rid.seq}: it names "
            "the first seq whose answer the client still waits for, this one at the latest"
        )
    op.request_id.client_id = rid.client_id
    op.request_id.seq = rid.seq
    op.request_id.done_below = rid.done_below


def _deadline(ttl_ms: int, now_ms: int) -> int:
    return now_ms + ttl_ms if ttl_ms else 0


def set_op(req: cache_pb2.SetRequest, limits: Limits, now_ms: int) -> command_pb2.Op:
    check_key(req.key, limits)
    check_value(req.value, limits)
    check_ttl(req.ttl_ms)
    if req.condition not in (cache_pb2.CONDITION_NONE, cache_pb2.IF_ABSENT, cache_pb2.IF_PRESENT):
        raise InvalidInput(
            f"unknown condition {req.condition}: use CONDITION_NONE (0), IF_ABSENT (1) "
            "or IF_PRESENT (2)"
        )
    op = command_pb2.Op()
    s = op.set
    s.key = req.key
    s.value = req.value
    s.deadline_ms = _deadline(req.ttl_ms, now_ms)
    s.condition = req.condition
    if req.HasField("expected_version"):
        s.has_expected_version = True
        s.expected_version = req.expected_version
    _request_id(op, req.request_id, req.HasField("request_id"))
    return op


def delete_op(req: cache_pb2.DeleteRequest, limits: Limits) -> command_pb2.Op:
    check_key(req.key, limits)
    op = command_pb2.Op()
    op.delete.key = req.key
    _request_id(op, req.request_id, req.HasField("request_id"))
    return op


def incr_op(req: cache_pb2.IncrRequest, limits: Limits, now_ms: int) -> command_pb2.Op:
    check_key(req.key, limits)
    check_ttl(req.ttl_ms)
    op = command_pb2.Op()
    op.incr.key = req.key
    op.incr.delta = req.delta
    op.incr.deadline_ms = _deadline(req.ttl_ms, now_ms)
    _request_id(op, req.request_id, req.HasField("request_id"))
    return op


def mset_op(req: cache_pb2.MSetRequest, limits: Limits, now_ms: int) -> command_pb2.Op:
    if not req.entries:
        raise InvalidInput("no entries given: pass at least one key/value")
    if len(req.entries) > limits.max_batch_keys:
        raise InvalidInput(
            f"{len(req.entries)} entries in one request, over the limit of "
            f"{limits.max_batch_keys}: split the request"
        )
    op = command_pb2.Op()
    for i, kv in enumerate(req.entries):
        check_key(kv.key, limits, f"entries[{i}].key")
        check_value(kv.value, limits, f"entries[{i}].value")
        check_ttl(kv.ttl_ms, f"entries[{i}].ttl_ms")
        op.mset.entries.add(key=kv.key, value=kv.value, deadline_ms=_deadline(kv.ttl_ms, now_ms))
    _request_id(op, req.request_id, req.HasField("request_id"))
    return op


# ---------------------------------------------------------------- typed values (issue 5)

MAX_SCAN_COUNT = 10_000
DEFAULT_SCAN_COUNT = 100
_ELEMENTS = {
    "hset": "fields",
    "hdel": "fields",
    "zadd": "members",
    "zrem": "members",
    "push": "values",
    "sadd": "members",
    "srem": "members",
}
_COMPARE_OPS = (
    cache_pb2.Compare.EQUAL,
    cache_pb2.Compare.NOT_EQUAL,
    cache_pb2.Compare.GREATER,
    cache_pb2.Compare.LESS,
)


def data_op_kind(op: cache_pb2.DataOp, what: str = "op") -> str:
    kind: str | None = op.WhichOneof("op")
    if kind is None:
        raise InvalidInput(f"{what} is empty: set exactly one operation (hset, zadd, ...)")
    return kind


def _check_score(score: float, what: str) -> None:
    if math.isnan(score):
        raise InvalidInput(f"{what} is NaN: scores must be numbers (infinities are allowed)")


def _check_elements(kind: str, body: Any, limits: Limits, what: str) -> None:
    name = _ELEMENTS.get(kind)
    if name is None:
        return
    items = getattr(body, name)
    if not items:
        raise InvalidInput(f"{what}.{name} is empty: {kind} needs at least one")
    if len(items) > limits.max_batch_keys:
        raise InvalidInput(
            f"{what}.{name} has {len(items)} items, over the limit of {limits.max_batch_keys}: "
            "split the request"
        )
    for i, item in enumerate(items):
        if kind == "hset":
            check_value(item.field, limits, f"{what}.fields[{i}].field")
            check_value(item.value, limits, f"{what}.fields[{i}].value")
        elif kind == "zadd":
            check_value(item.member, limits, f"{what}.members[{i}].member")
            _check_score(item.score, f"{what}.members[{i}].score")
        else:
            check_value(item, limits, f"{what}.{name}[{i}]")


def check_call(call: cache_pb2.RedisCall, limits: Limits, what: str = "call") -> None:
    """A Redis command's database, sizes, name, arity and syntax (nothing stateful)."""
    if call.db >= DATABASES:
        raise InvalidInput(f"{what}.db is {call.db}: Redis databases are 0-{DATABASES - 1}")
    if not call.argv:
        raise InvalidInput(f"{what}.argv is empty: give the command name and its arguments")
    for i, arg in enumerate(call.argv):
        check_value(arg, limits, f"{what}.argv[{i}]")
    if not client_may_call(call.argv[0]):
        raise InvalidInput(
            f"{what}.argv[0] is {call.argv[0]!r}: the nodes' own plumbing; users change only "
            "through ACL SETUSER/DELUSER or the Cluster SetUser/DeleteUsers RPCs, members "
            "through the Cluster AddMember/RemoveMember RPCs"
        )
    try:
        dispatch.validate(list(call.argv))
    except CommandError as exc:
        raise InvalidInput(exc.text) from None


def is_read_op(op: cache_pb2.DataOp) -> bool:
    """Whether a data op only reads (served with the request's consistency, never logged)."""
    kind = op.WhichOneof("op")
    if kind == "call":
        return not dispatch.is_write(list(op.call.argv))
    return kind in READ_OPS


def check_data_op(op: cache_pb2.DataOp, limits: Limits, what: str = "op") -> str:
    """Validate one data op; returns its kind."""
    kind = data_op_kind(op, what)
    if kind == "call":
        check_call(op.call, limits, f"{what}.call")
        return kind
    body = getattr(op, kind)
    check_key(body.key, limits, f"{what}.{kind}.key")
    _check_elements(kind, body, limits, f"{what}.{kind}")
    if kind == "set":
        check_value(body.value, limits, f"{what}.set.value")
        check_ttl(body.ttl_ms, f"{what}.set.ttl_ms")
    elif kind == "expire":
        if body.ttl_ms <= 0:
            raise InvalidInput(
                f"{what}.expire.ttl_ms is {body.ttl_ms}: it must be > 0 (to remove a key now, "
                "delete it; to remove its TTL, use persist)"
            )
        check_ttl(body.ttl_ms, f"{what}.expire.ttl_ms")
    elif kind == "zincrby":
        _check_score(body.delta, f"{what}.zincrby.delta")
    elif kind in ("zrangebyscore", "zcount"):
        _check_score(body.min.value, f"{what}.{kind}.min")
        _check_score(body.max.value, f"{what}.{kind}.max")
    elif kind in ("push", "pop") and body.end not in (cache_pb2.LEFT, cache_pb2.RIGHT):
        raise InvalidInput(f"{what}.{kind}.end is {body.end}: use LEFT (0) or RIGHT (1)")
    if kind == "pop" and body.count > limits.max_batch_keys:
        raise InvalidInput(
            f"{what}.pop.count is {body.count}, over the limit of {limits.max_batch_keys}"
        )
    return kind


def _data_cmd(cmd: command_pb2.DataCmd, op: cache_pb2.DataOp, kind: str, now_ms: int) -> None:
    cmd.op.CopyFrom(op)
    if kind in ("set", "expire"):
        cmd.deadline_ms = _deadline(getattr(op, kind).ttl_ms, now_ms)


def exec_op(req: cache_pb2.ExecRequest, limits: Limits, now_ms: int) -> command_pb2.Op:
    """A write data op as a replicated Op, its TTL stamped into a deadline."""
    kind = check_data_op(req.op, limits)
    op = command_pb2.Op()
    _data_cmd(op.data, req.op, kind, now_ms)
    _request_id(op, req.request_id, req.HasField("request_id"))
    return op


def _check_compare(c: cache_pb2.Compare, limits: Limits, what: str) -> None:
    check_key(c.key, limits, f"{what}.key", reserved_ok=True)
    target = c.WhichOneof("target")
    if target is None:
        raise InvalidInput(f"{what} compares nothing: set exists, version or value")
    if c.op not in _COMPARE_OPS:
        raise InvalidInput(f"{what}.op is {c.op}: use EQUAL, NOT_EQUAL, GREATER or LESS")
    if target == "exists" and c.op not in (cache_pb2.Compare.EQUAL, cache_pb2.Compare.NOT_EQUAL):
        raise InvalidInput(f"{what}: exists can only be compared with EQUAL or NOT_EQUAL")
    if target == "value":
        check_value(c.value, limits, f"{what}.value")


def txn_op(req: cache_pb2.TxnRequest, limits: Limits, now_ms: int) -> command_pb2.Op:
    total = len(req.compares) + len(req.success) + len(req.failure)
    if total > limits.max_batch_keys:
        raise InvalidInput(
            f"the transaction has {total} compares and ops, over the limit of "
            f"{limits.max_batch_keys}: split it"
        )
    op = command_pb2.Op()
    for i, c in enumerate(req.compares):
        _check_compare(c, limits, f"compares[{i}]")
        op.txn.compares.append(c)
    for branch, name in ((req.success, "success"), (req.failure, "failure")):
        for i, data_op in enumerate(branch):
            kind = check_data_op(data_op, limits, f"{name}[{i}]")
            _data_cmd(getattr(op.txn, name).add(), data_op, kind, now_ms)
    _request_id(op, req.request_id, req.HasField("request_id"))
    return op


def scan_args(req: cache_pb2.ScanRequest, limits: Limits) -> tuple[int, int]:
    """The request's (cursor bucket, count), validated."""
    cursor = req.cursor
    if cursor and not (cursor.isdigit() and len(cursor) <= 6):
        raise InvalidInput(
            f"cursor {cursor[:32]!r} is not one this node handed out: start with an empty "
            "cursor and pass back next_cursor unchanged"
        )
    if len(req.prefix) > limits.max_key_bytes:
        raise InvalidInput(f"prefix is {len(req.prefix)} bytes, longer than any key can be")
    check_consistency(req.consistency)
    count = req.count or DEFAULT_SCAN_COUNT
    if count > MAX_SCAN_COUNT:
        raise InvalidInput(f"count is {count}, over the limit of {MAX_SCAN_COUNT}")
    return int(cursor or b"0"), count


def publish_op(req: cache_pb2.PublishRequest, limits: Limits) -> command_pb2.Op:
    check_key(req.channel, limits, "channel", reserved_ok=True)
    check_value(req.message, limits, "message")
    op = command_pb2.Op()
    op.publish.channel = req.channel
    op.publish.message = req.message
    _request_id(op, req.request_id, req.HasField("request_id"))
    return op


def check_batch(req: cache_pb2.BatchRequest, limits: Limits) -> None:
    """A Batch request's size; each op is checked on its own when it runs."""
    if len(req.ops) > limits.max_batch_ops:
        raise InvalidInput(
            f"the batch has {len(req.ops)} ops, over the limit of {limits.max_batch_ops} "
            f"per Batch: split it into batches of at most {limits.max_batch_ops} ops"
        )
    size = req.ByteSize()
    if size > limits.max_batch_bytes:
        raise InvalidInput(
            f"the batch is {size} bytes, over the limit of {limits.max_batch_bytes} bytes "
            "per Batch: split it into smaller batches, and send an op that is large on its "
            "own as its unary RPC (Set, Exec)"
        )
