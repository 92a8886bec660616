"""Typed ops as values: an `Op` is a DataOp plus how to read its answer, so one op runs
alone (Exec) or inside a transaction (Txn) and decodes the same way. Also the conversions
between Python values and the wire."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from raftcache.client import errors
from raftcache.v1 import cache_pb2

Key = bytes | str
Value = bytes | str


# Protocols, not Mapping[...] unions: Mapping's key type is invariant, and mypy infers a dict
# literal that mixes str and bytes keys as dict[Sequence[object], ...] against a union.
class FieldMap(Protocol):
    """Fields to values, keyed by bytes, str or both (any dict or Mapping): `hset`'s input."""

    def items(self) -> Iterable[tuple[Key, Value]]: ...


class ScoreMap(Protocol):
    """Members to scores, keyed by bytes, str or both: `zadd`'s input."""

    def items(self) -> Iterable[tuple[Key, float]]: ...


Scored = list[tuple[bytes, float]]
BytesSet = set[bytes]
T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

# DataOp fields that only read; every other op is a replicated write.
READ_OPS = frozenset(
    {
        "get", "hget", "hgetall", "hlen", "zscore", "zrank", "zrange", "zrangebyscore",
        "zcard", "zcount", "lrange", "llen", "smembers", "sismember", "scard", "ttl", "type",
    }
)  # fmt: skip


def to_bytes(value: Key | Value, what: str) -> bytes:
    """str as UTF-8, bytes as is; InvalidInputError for anything else."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    raise errors.InvalidInputError(f"{what} must be bytes or str, not {type(value).__name__}")


def all_bytes(values: Iterable[Key | Value], what: str) -> list[bytes]:
    return [to_bytes(v, what) for v in values]


def ttl_ms(ttl: float | None) -> int:
    """Seconds as whole milliseconds (at least 1); None = no expiry (0)."""
    if ttl is None:
        return 0
    if not ttl > 0:
        raise errors.InvalidInputError(
            f"ttl must be > 0 seconds (or None for no expiry), not {ttl}"
        )
    return max(1, round(ttl * 1000))


@dataclass(frozen=True)
class Op(Generic[T_co]):
    """One typed operation (build them with `raftcache.client.ops`)."""

    message: cache_pb2.DataOp
    decode: Callable[[cache_pb2.Value], T_co]

    @property
    def name(self) -> str:
        return self.message.WhichOneof("op") or ""

    @property
    def is_read(self) -> bool:
        return self.name in READ_OPS


def make_op(name: str, decode: Callable[[cache_pb2.Value], T], **fields: Any) -> Op[T]:
    """The DataOp with its `name` field set to a message built from `fields`."""
    return Op(cache_pb2.DataOp(**{name: fields}), decode)


@dataclass(frozen=True)
class Compare:
    """One condition of a transaction (build them with `raftcache.client.ops`)."""

    message: cache_pb2.Compare


@dataclass(frozen=True)
class TxnResult:
    """Whether every compare held, and the decoded answer of each op of the branch that ran."""

    succeeded: bool
    results: list[Any]


# -- answers ------------------------------------------------------------------------


def _kind(value: cache_pb2.Value, *wanted: str) -> str:
    kind = value.WhichOneof("kind")
    if kind not in wanted:
        raise errors.RaftcacheError(
            f"the node answered {kind or 'nothing'} where {' or '.join(wanted)} was expected: "
            "is the node running an older or newer raftcache than this SDK?"
        )
    return str(kind)


def as_int(value: cache_pb2.Value) -> int:
    _kind(value, "int")
    return int(value.int)


def as_bool(value: cache_pb2.Value) -> bool:
    return as_int(value) != 0


def as_int_or_none(value: cache_pb2.Value) -> int | None:
    return None if _kind(value, "int", "nil") == "nil" else int(value.int)


def as_score(value: cache_pb2.Value) -> float:
    _kind(value, "score")
    return float(value.score)


def as_score_or_none(value: cache_pb2.Value) -> float | None:
    return None if _kind(value, "score", "nil") == "nil" else float(value.score)


def as_bytes_or_none(value: cache_pb2.Value) -> bytes | None:
    return None if _kind(value, "bytes", "nil") == "nil" else bytes(value.bytes)


def as_list(value: cache_pb2.Value) -> list[bytes]:
    """A list; a missing key reads as empty."""
    return [] if _kind(value, "list", "nil") == "nil" else list(value.list.items)


def as_first(value: cache_pb2.Value) -> bytes | None:
    items = as_list(value)
    return items[0] if items else None


def as_set(value: cache_pb2.Value) -> BytesSet:
    return set(as_list(value))


def as_fields(value: cache_pb2.Value) -> dict[bytes, bytes]:
    if _kind(value, "fields", "nil") == "nil":
        return {}
    return {f.field: f.value for f in value.fields.items}


def as_scored(value: cache_pb2.Value) -> Scored:
    if _kind(value, "scored", "nil") == "nil":
        return []
    return [(m.member, m.score) for m in value.scored.items]


def as_members(value: cache_pb2.Value) -> list[bytes]:
    return [member for member, _ in as_scored(value)]


def as_text(value: cache_pb2.Value) -> str:
    _kind(value, "text")
    return str(value.text)


def as_any(value: cache_pb2.Value) -> Any:
    """Any answer as its natural Python value (for ops whose answer kind is not fixed)."""
    kind = value.WhichOneof("kind")
    if kind in (None, "nil"):
        return None
    if kind == "list":
        return list(value.list.items)
    if kind == "fields":
        return as_fields(value)
    if kind == "scored":
        return as_scored(value)
    answer: Any = getattr(value, kind)
    return answer


def as_ttl(key: bytes) -> Callable[[cache_pb2.Value], float | None]:
    """Remaining seconds; None when the key has no expiry; NotFoundError when it is missing."""

    def decode(value: cache_pb2.Value) -> float | None:
        ms = as_int(value)
        if ms == -2:
            raise errors.NotFoundError(f"ttl: key {key!r} does not exist")
        return None if ms < 0 else ms / 1000

    return decode
