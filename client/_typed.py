"""AsyncClient's methods for hashes, sorted sets, lists, sets and expiry: each builds one op
(raftcache.client.ops) and runs it. Reads take `consistency`, `max_staleness` and `timeout`
like `get`; writes take `timeout`. Every write carries a request id, so a retried hincrby,
zincrby, push or pop is applied at most once."""

from __future__ import annotations

from typing import Literal, TypedDict, TypeVar, Unpack, overload

from raftcache.client import ops
from raftcache.client._values import BytesSet, FieldMap, Key, Op, Scored, ScoreMap, Value

T = TypeVar("T")


class ReadOptions(TypedDict, total=False):
    """How a read is served: consistency 'linearizable' (default) or 'stale'."""

    consistency: str
    max_staleness: float | None
    timeout: float | None


class TypedMethods:
    async def _run_op(
        self, op: Op[T], *, consistency: str = "linearizable", max_staleness: float | None = None,
        timeout: float | None = None,
    ) -> T:  # fmt: skip
        raise NotImplementedError

    # -- hashes -------------------------------------------------------------------

    async def hset(self, key: Key, mapping: FieldMap, *, timeout: float | None = None) -> int:
        """Set fields of the hash at key; returns how many fields are new."""
        return await self._run_op(ops.hset(key, mapping), timeout=timeout)

    async def hget(self, key: Key, field: Key, **options: Unpack[ReadOptions]) -> bytes | None:
        """A field's value, or None when the field or the key is missing."""
        return await self._run_op(ops.hget(key, field), **options)

    async def hgetall(self, key: Key, **options: Unpack[ReadOptions]) -> dict[bytes, bytes]:
        """Every field and value ({} for a missing key)."""
        return await self._run_op(ops.hgetall(key), **options)

    async def hdel(self, key: Key, *fields: Key, timeout: float | None = None) -> int:
        """Remove fields; returns how many existed."""
        return await self._run_op(ops.hdel(key, *fields), timeout=timeout)

    async def hincrby(
        self, key: Key, field: Key, delta: int = 1, *, timeout: float | None = None
    ) -> int:
        """Add delta to an integer field (a missing field starts at 0); the new value."""
        return await self._run_op(ops.hincrby(key, field, delta), timeout=timeout)

    async def hlen(self, key: Key, **options: Unpack[ReadOptions]) -> int:
        """How many fields (0 for a missing key)."""
        return await self._run_op(ops.hlen(key), **options)

    # -- sorted sets ----------------------------------------------------------------

    async def zadd(self, key: Key, mapping: ScoreMap, *, timeout: float | None = None) -> int:
        """Add members with scores (updating existing ones); returns how many are new."""
        return await self._run_op(ops.zadd(key, mapping), timeout=timeout)

    async def zincrby(
        self, key: Key, member: Key, delta: float = 1.0, *, timeout: float | None = None
    ) -> float:
        """Add delta to member's score (a new member starts at 0); the new score."""
        return await self._run_op(ops.zincrby(key, member, delta), timeout=timeout)

    async def zscore(self, key: Key, member: Key, **options: Unpack[ReadOptions]) -> float | None:
        """member's score, or None."""
        return await self._run_op(ops.zscore(key, member), **options)

    async def zrank(
        self, key: Key, member: Key, *, reverse: bool = False, **options: Unpack[ReadOptions]
    ) -> int | None:
        """member's 0-based rank by ascending score (reverse: descending), or None."""
        return await self._run_op(ops.zrank(key, member, reverse=reverse), **options)

    @overload
    async def zrange(
        self, key: Key, start: int, stop: int, *, reverse: bool = ...,
        withscores: Literal[False] = ..., **options: Unpack[ReadOptions],
    ) -> list[bytes]: ...  # fmt: skip
    @overload
    async def zrange(
        self, key: Key, start: int, stop: int, *, reverse: bool = ...,
        withscores: Literal[True], **options: Unpack[ReadOptions],
    ) -> Scored: ...  # fmt: skip
    async def zrange(
        self, key: Key, start: int, stop: int, *, reverse: bool = False,
        withscores: bool = False, **options: Unpack[ReadOptions],
    ) -> list[bytes] | Scored:  # fmt: skip
        """Members ranked start..stop inclusive (-1 = last); withscores: (member, score)."""
        scored = await self._run_op(
            ops.zrange(key, start, stop, reverse=reverse, withscores=True), **options
        )
        return scored if withscores else [member for member, _ in scored]

    @overload
    async def zrangebyscore(
        self, key: Key, min: float, max: float, *, min_exclusive: bool = ...,
        max_exclusive: bool = ..., reverse: bool = ..., offset: int = ...,
        limit: int | None = ..., withscores: Literal[False] = ..., **options: Unpack[ReadOptions],
    ) -> list[bytes]: ...  # fmt: skip
    @overload
    async def zrangebyscore(
        self, key: Key, min: float, max: float, *, min_exclusive: bool = ...,
        max_exclusive: bool = ..., reverse: bool = ..., offset: int = ...,
        limit: int | None = ..., withscores: Literal[True], **options: Unpack[ReadOptions],
    ) -> Scored: ...  # fmt: skip
    async def zrangebyscore(
        self, key: Key, min: float, max: float, *, min_exclusive: bool = False,
        max_exclusive: bool = False, reverse: bool = False, offset: int = 0,
        limit: int | None = None, withscores: bool = False, **options: Unpack[ReadOptions],
    ) -> list[bytes] | Scored:  # fmt: skip
        """Members with min <= score <= max (math.inf for an open end), lowest first
        (reverse: highest first), skipping offset and returning at most limit."""
        op = ops.zrangebyscore(
            key, min, max, min_exclusive=min_exclusive, max_exclusive=max_exclusive,
            reverse=reverse, offset=offset, limit=limit, withscores=True,
        )  # fmt: skip
        scored = await self._run_op(op, **options)
        return scored if withscores else [member for member, _ in scored]

    async def zrem(self, key: Key, *members: Key, timeout: float | None = None) -> int:
        """Remove members; returns how many existed."""
        return await self._run_op(ops.zrem(key, *members), timeout=timeout)

    async def zcard(self, key: Key, **options: Unpack[ReadOptions]) -> int:
        """How many members."""
        return await self._run_op(ops.zcard(key), **options)

    async def zcount(
        self, key: Key, min: float, max: float, *, min_exclusive: bool = False,
        max_exclusive: bool = False, **options: Unpack[ReadOptions],
    ) -> int:  # fmt: skip
        """How many members have min <= score <= max."""
        op = ops.zcount(key, min, max, min_exclusive=min_exclusive, max_exclusive=max_exclusive)
        return await self._run_op(op, **options)

    # -- lists --------------------------------------------------------------------

    async def lpush(self, key: Key, *values: Value, timeout: float | None = None) -> int:
        """Insert values at the head, one after another; returns the new length."""
        return await self._run_op(ops.lpush(key, *values), timeout=timeout)

    async def rpush(self, key: Key, *values: Value, timeout: float | None = None) -> int:
        """Append values at the tail; returns the new length."""
        return await self._run_op(ops.rpush(key, *values), timeout=timeout)

    @overload
    async def lpop(self, key: Key, count: None = ..., *, timeout: float | None = ...) -> bytes | None: ...  # fmt: skip  # noqa: E501
    @overload
    async def lpop(self, key: Key, count: int, *, timeout: float | None = ...) -> list[bytes]: ...
    async def lpop(
        self, key: Key, count: int | None = None, *, timeout: float | None = None
    ) -> bytes | list[bytes] | None:
        """Remove from the head: one value (None if empty), or a list of up to count."""
        return await self._run_op(ops.lpop(key, count), timeout=timeout)

    @overload
    async def rpop(self, key: Key, count: None = ..., *, timeout: float | None = ...) -> bytes | None: ...  # fmt: skip  # noqa: E501
    @overload
    async def rpop(self, key: Key, count: int, *, timeout: float | None = ...) -> list[bytes]: ...
    async def rpop(
        self, key: Key, count: int | None = None, *, timeout: float | None = None
    ) -> bytes | list[bytes] | None:
        """Remove from the tail: one value (None if empty), or a list of up to count."""
        return await self._run_op(ops.rpop(key, count), timeout=timeout)

    async def lrange(
        self, key: Key, start: int, stop: int, **options: Unpack[ReadOptions]
    ) -> list[bytes]:
        """Values at indexes start..stop inclusive (-1 = last)."""
        return await self._run_op(ops.lrange(key, start, stop), **options)

    async def llen(self, key: Key, **options: Unpack[ReadOptions]) -> int:
        """The list's length (0 for a missing key)."""
        return await self._run_op(ops.llen(key), **options)

    # -- sets ---------------------------------------------------------------------

    async def sadd(self, key: Key, *members: Value, timeout: float | None = None) -> int:
        """Add members; returns how many are new."""
        return await self._run_op(ops.sadd(key, *members), timeout=timeout)

    async def srem(self, key: Key, *members: Value, timeout: float | None = None) -> int:
        """Remove members; returns how many existed."""
        return await self._run_op(ops.srem(key, *members), timeout=timeout)

    async def smembers(self, key: Key, **options: Unpack[ReadOptions]) -> BytesSet:
        """Every member (an empty set for a missing key)."""
        return await self._run_op(ops.smembers(key), **options)

    async def sismember(self, key: Key, member: Value, **options: Unpack[ReadOptions]) -> bool:
        """Whether member is in the set."""
        return await self._run_op(ops.sismember(key, member), **options)

    async def scard(self, key: Key, **options: Unpack[ReadOptions]) -> int:
        """How many members."""
        return await self._run_op(ops.scard(key), **options)

    # -- any key ------------------------------------------------------------------

    async def expire(self, key: Key, ttl: float, *, timeout: float | None = None) -> bool:
        """Expire key after ttl seconds (any type); False when key does not exist."""
        return await self._run_op(ops.expire(key, ttl), timeout=timeout)

    async def persist(self, key: Key, *, timeout: float | None = None) -> bool:
        """Remove key's expiry; False when it had none or does not exist."""
        return await self._run_op(ops.persist(key), timeout=timeout)

    async def ttl(self, key: Key, **options: Unpack[ReadOptions]) -> float | None:
        """Remaining seconds to live; None when key never expires; NotFoundError when key
        does not exist (as `get_item(key).ttl`, but telling missing apart)."""
        return await self._run_op(ops.ttl(key), **options)

    async def type(self, key: Key, **options: Unpack[ReadOptions]) -> str:
        """'none' (missing), 'string', 'hash', 'zset', 'list' or 'set'."""
        return await self._run_op(ops.type(key), **options)
