"""Builders of typed ops and compares, for `Client.txn` (the client's methods use them too).

    from raftcache.client import ops
    result = cache.txn(
        [ops.value("stock:42", "==", "1")],                    # every compare must hold
        [ops.set("stock:42", "0"), ops.rpush("orders", "42")],  # then run these
        [ops.get("stock:42")],                                 # else these
    )
    result.succeeded, result.results                           # True, [<set answer>, 1]

Each op decodes its answer as the client method of the same name returns it.
"""

from __future__ import annotations

from typing import Any, Literal, overload

from raftcache.client._values import (
    BytesSet,
    Compare,
    FieldMap,
    Key,
    Op,
    Scored,
    ScoreMap,
    Value,
    all_bytes,
    as_any,
    as_bool,
    as_bytes_or_none,
    as_fields,
    as_first,
    as_int,
    as_int_or_none,
    as_list,
    as_members,
    as_score,
    as_score_or_none,
    as_scored,
    as_set,
    as_text,
    as_ttl,
    make_op,
    to_bytes,
    ttl_ms,
)
from raftcache.client.errors import InvalidInputError
from raftcache.v1 import cache_pb2

INF = float("inf")
_COMPARE = {
    "==": cache_pb2.Compare.EQUAL,
    "!=": cache_pb2.Compare.NOT_EQUAL,
    ">": cache_pb2.Compare.GREATER,
    "<": cache_pb2.Compare.LESS,
}
CompareOp = Literal["==", "!=", ">", "<"]


def _key(key: Key) -> bytes:
    return to_bytes(key, "key")


def _bound(value: float, exclusive: bool) -> cache_pb2.ScoreBound:
    return cache_pb2.ScoreBound(value=float(value), exclusive=exclusive)


# -- compares -------------------------------------------------------------------------


def _compare(key: Key, op: str, allowed: tuple[str, ...], **target: Any) -> Compare:
    if op not in allowed:
        raise InvalidInputError(f"compare op must be one of {', '.join(allowed)}, not {op!r}")
    return Compare(cache_pb2.Compare(key=_key(key), op=_COMPARE[op], **target))


def exists(key: Key) -> Compare:
    """Holds when key exists."""
    return _compare(key, "==", ("==",), exists=True)


def missing(key: Key) -> Compare:
    """Holds when key does not exist."""
    return _compare(key, "==", ("==",), exists=False)


def version(key: Key, op: CompareOp, number: int) -> Compare:
    """Holds when key's version compares so with number (a missing key has version 0)."""
    return _compare(key, op, tuple(_COMPARE), version=number)


def value(key: Key, op: Literal["==", "!="], data: Value) -> Compare:
    """Holds when string key's value is (or is not) data; a missing key is not equal."""
    return _compare(key, op, ("==", "!="), value=to_bytes(data, "value"))


# -- strings --------------------------------------------------------------------------


def get(key: Key) -> Op[bytes | None]:
    return make_op("get", as_bytes_or_none, key=_key(key))


def set(key: Key, data: Value, *, ttl: float | None = None) -> Op[Any]:
    return make_op("set", as_any, key=_key(key), value=to_bytes(data, "value"), ttl_ms=ttl_ms(ttl))


def delete(key: Key) -> Op[Any]:
    return make_op("delete", as_any, key=_key(key))


def incr(key: Key, delta: int = 1) -> Op[int]:
    return make_op("incr", as_int, key=_key(key), delta=delta)


# -- hashes ---------------------------------------------------------------------------


def hset(key: Key, mapping: FieldMap) -> Op[int]:
    fields = [
        cache_pb2.FieldValue(field=to_bytes(f, "field"), value=to_bytes(v, "value"))
        for f, v in mapping.items()
    ]
    return make_op("hset", as_int, key=_key(key), fields=fields)


def hget(key: Key, field: Key) -> Op[bytes | None]:
    return make_op("hget", as_bytes_or_none, key=_key(key), field=to_bytes(field, "field"))


def hgetall(key: Key) -> Op[dict[bytes, bytes]]:
    return make_op("hgetall", as_fields, key=_key(key))


def hdel(key: Key, *fields: Key) -> Op[int]:
    return make_op("hdel", as_int, key=_key(key), fields=all_bytes(fields, "field"))


def hincrby(key: Key, field: Key, delta: int = 1) -> Op[int]:
    return make_op("hincrby", as_int, key=_key(key), field=to_bytes(field, "field"), delta=delta)


def hlen(key: Key) -> Op[int]:
    return make_op("hlen", as_int, key=_key(key))


# -- sorted sets ----------------------------------------------------------------------


def zadd(key: Key, mapping: ScoreMap) -> Op[int]:
    members = [
        cache_pb2.ScoredMember(member=to_bytes(m, "member"), score=float(s))
        for m, s in mapping.items()
    ]
    return make_op("zadd", as_int, key=_key(key), members=members)


def zincrby(key: Key, member: Key, delta: float = 1.0) -> Op[float]:
    member_bytes = to_bytes(member, "member")
    return make_op("zincrby", as_score, key=_key(key), member=member_bytes, delta=float(delta))


def zscore(key: Key, member: Key) -> Op[float | None]:
    return make_op("zscore", as_score_or_none, key=_key(key), member=to_bytes(member, "member"))


def zrank(key: Key, member: Key, *, reverse: bool = False) -> Op[int | None]:
    member_bytes = to_bytes(member, "member")
    return make_op("zrank", as_int_or_none, key=_key(key), member=member_bytes, reverse=reverse)


@overload
def zrange(
    key: Key, start: int, stop: int, *, reverse: bool = ..., withscores: Literal[False] = ...
) -> Op[list[bytes]]: ...
@overload
def zrange(
    key: Key, start: int, stop: int, *, reverse: bool = ..., withscores: Literal[True]
) -> Op[Scored]: ...
def zrange(
    key: Key, start: int, stop: int, *, reverse: bool = False, withscores: bool = False
) -> Op[Any]:
    """Members by rank, start..stop inclusive (negative counts from the end)."""
    decode = as_scored if withscores else as_members
    return make_op("zrange", decode, key=_key(key), start=start, stop=stop, reverse=reverse)


@overload
def zrangebyscore(
    key: Key, min: float, max: float, *, min_exclusive: bool = ..., max_exclusive: bool = ...,
    reverse: bool = ..., offset: int = ..., limit: int | None = ...,
    withscores: Literal[False] = ...,
) -> Op[list[bytes]]: ...  # fmt: skip
@overload
def zrangebyscore(
    key: Key, min: float, max: float, *, min_exclusive: bool = ..., max_exclusive: bool = ...,
    reverse: bool = ..., offset: int = ..., limit: int | None = ..., withscores: Literal[True],
) -> Op[Scored]: ...  # fmt: skip
def zrangebyscore(
    key: Key, min: float, max: float, *, min_exclusive: bool = False,
    max_exclusive: bool = False, reverse: bool = False, offset: int = 0,
    limit: int | None = None, withscores: bool = False,
) -> Op[Any]:  # fmt: skip
    """Members with min <= score <= max (use ops.INF / -ops.INF for an open end)."""
    if offset < 0 or (limit is not None and limit <= 0):
        raise InvalidInputError("offset must be >= 0 and limit > 0 (or None for no limit)")
    return make_op(
        "zrangebyscore",
        as_scored if withscores else as_members,
        key=_key(key),
        min=_bound(min, min_exclusive),
        max=_bound(max, max_exclusive),
        reverse=reverse,
        offset=offset,
        limit=limit or 0,
    )


def zrem(key: Key, *members: Key) -> Op[int]:
    return make_op("zrem", as_int, key=_key(key), members=all_bytes(members, "member"))


def zcard(key: Key) -> Op[int]:
    return make_op("zcard", as_int, key=_key(key))


def zcount(
    key: Key, min: float, max: float, *, min_exclusive: bool = False, max_exclusive: bool = False
) -> Op[int]:
    low, high = _bound(min, min_exclusive), _bound(max, max_exclusive)
    return make_op("zcount", as_int, key=_key(key), min=low, max=high)


# -- lists ----------------------------------------------------------------------------


def _push(key: Key, values: tuple[Value, ...], end: int) -> Op[int]:
    if not values:
        raise InvalidInputError("push needs at least one value")
    return make_op("push", as_int, key=_key(key), values=all_bytes(values, "value"), end=end)


def lpush(key: Key, *values: Value) -> Op[int]:
    """Insert values at the head, one after another (the last ends up first)."""
    return _push(key, values, cache_pb2.LEFT)


def rpush(key: Key, *values: Value) -> Op[int]:
    return _push(key, values, cache_pb2.RIGHT)


def _pop(key: Key, count: int | None, end: int) -> Op[Any]:
    if count is not None and count <= 0:
        raise InvalidInputError(f"pop count must be > 0 (or None for one value), not {count}")
    decode = as_first if count is None else as_list
    return make_op("pop", decode, key=_key(key), count=count or 0, end=end)


@overload
def lpop(key: Key, count: None = ...) -> Op[bytes | None]: ...
@overload
def lpop(key: Key, count: int) -> Op[list[bytes]]: ...
def lpop(key: Key, count: int | None = None) -> Op[Any]:
    """Remove from the head: one value (or None), or a list of up to count values."""
    return _pop(key, count, cache_pb2.LEFT)


@overload
def rpop(key: Key, count: None = ...) -> Op[bytes | None]: ...
@overload
def rpop(key: Key, count: int) -> Op[list[bytes]]: ...
def rpop(key: Key, count: int | None = None) -> Op[Any]:
    return _pop(key, count, cache_pb2.RIGHT)


def lrange(key: Key, start: int, stop: int) -> Op[list[bytes]]:
    return make_op("lrange", as_list, key=_key(key), start=start, stop=stop)


def llen(key: Key) -> Op[int]:
    return make_op("llen", as_int, key=_key(key))


# -- sets -----------------------------------------------------------------------------


def sadd(key: Key, *members: Value) -> Op[int]:
    return make_op("sadd", as_int, key=_key(key), members=all_bytes(members, "member"))


def srem(key: Key, *members: Value) -> Op[int]:
    return make_op("srem", as_int, key=_key(key), members=all_bytes(members, "member"))


def smembers(key: Key) -> Op[BytesSet]:
    return make_op("smembers", as_set, key=_key(key))


def sismember(key: Key, member: Value) -> Op[bool]:
    return make_op("sismember", as_bool, key=_key(key), member=to_bytes(member, "member"))


def scard(key: Key) -> Op[int]:
    return make_op("scard", as_int, key=_key(key))


# -- any key --------------------------------------------------------------------------


def expire(key: Key, seconds: float) -> Op[bool]:
    """Set key's time to live; False when key does not exist."""
    if seconds is None:
        raise InvalidInputError("expire needs a ttl > 0 seconds; use persist to remove one")
    return make_op("expire", as_bool, key=_key(key), ttl_ms=ttl_ms(seconds))


def persist(key: Key) -> Op[bool]:
    """Remove key's time to live; False when it had none or does not exist."""
    return make_op("persist", as_bool, key=_key(key))


def ttl(key: Key) -> Op[float | None]:
    """Remaining seconds; None when key has no expiry; NotFoundError when it is missing."""
    key_bytes = _key(key)
    return make_op("ttl", as_ttl(key_bytes), key=key_bytes)


def type(key: Key) -> Op[str]:
    """'none', 'string', 'hash', 'zset', 'list' or 'set'."""
    return make_op("type", as_text, key=_key(key))
