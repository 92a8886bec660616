"""Validate client requests and turn them into replicated ops (leader clock stamps deadlines)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from raftcache.node.errors import InvalidInput
from raftcache.v1 import cache_pb2, command_pb2

MAX_TTL_MS = 10 * 365 * 24 * 3600 * 1000  # ten years
MAX_CLIENT_ID_BYTES = 128


@dataclass(frozen=True)
class Limits:
    """Input limits, configurable per node (--max-key-bytes, --max-value-bytes)."""

    max_key_bytes: int = 64 * 1024
    max_value_bytes: int = 4 * 1024 * 1024
    max_batch_keys: int = 10_000
    max_response_bytes: int = 16 << 20  # below gRPC's send limit, which config sets above it


def check_key(key: bytes, limits: Limits, what: str = "key") -> None:
    if not key:
        raise InvalidInput(f"{what} is empty: every key needs at least one byte")
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
    op.request_id.client_id = rid.client_id
    op.request_id.seq = rid.seq


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
