"""AsyncClient: the asyncio SDK. `Client` (blocking) wraps it with the same methods."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from raftcache.client import errors
from raftcache.client._router import READ_LEADER, READ_STALE, WRITE, RetryPolicy, Router
from raftcache.client._transport import CallFailed, GrpcTransport, Transport
from raftcache.v1 import cache_pb2, cluster_pb2

Key = bytes | str
Value = bytes | str
DEFAULT_TIMEOUT_S = 5.0
_CONSISTENCY = {"linearizable": cache_pb2.LINEARIZABLE, "stale": cache_pb2.STALE}


@dataclass(frozen=True)
class Item:
    """A stored value with its version and remaining time to live (None = no expiry)."""

    value: bytes
    version: int
    ttl: float | None


@dataclass(frozen=True)
class NodeStatus:
    """One node's view, from Cluster.Status."""

    node_id: str
    address: str
    role: str  # "leader", "follower", "candidate", "unknown" (did not answer: "down")
    term: int
    leader_id: str
    commit_index: int
    applied_index: int
    leader_commit_index: int
    keys: int
    digest: str


def _bytes(value: Key | Value, what: str) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    raise errors.InvalidInputError(f"{what} must be bytes or str, not {type(value).__name__}")


def _ttl_ms(ttl: float | None) -> int:
    if ttl is None:
        return 0
    if ttl <= 0:
        raise errors.InvalidInputError(
            f"ttl must be > 0 seconds (or None for no expiry), not {ttl}"
        )
    return max(1, round(ttl * 1000))


def _item(response: cache_pb2.GetResponse) -> Item | None:
    if not response.found:
        return None
    return Item(
        response.value, response.version, response.ttl_ms / 1000 if response.ttl_ms else None
    )


class AsyncClient:
    """Talks to a raftcache cluster from asyncio; use `async with AsyncClient(...)`."""

    def __init__(
        self,
        endpoints: str | Sequence[str],
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        retry: RetryPolicy | None = None,
        transport: Transport | None = None,
        client_id: str | None = None,
    ) -> None:
        seeds = [endpoints] if isinstance(endpoints, str) else list(endpoints)
        seeds = [s.strip() for seed in seeds for s in seed.split(",") if s.strip()]
        self.timeout = timeout
        self._transport = transport or GrpcTransport()
        self._router = Router(self._transport, seeds, retry or RetryPolicy())
        self.client_id = client_id or uuid.uuid4().hex
        self._seq = itertools.count(1)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._transport.close()

    @property
    def leader(self) -> str | None:
        """The leader's address as last learned (None until the first call)."""
        return self._router.leader

    @property
    def members(self) -> list[str]:
        return self._router.members

    def _rid(self) -> tuple[str, int]:
        return (self.client_id, next(self._seq))

    async def _write(self, method: str, request: Any, timeout: float | None) -> Any:
        rid = self._rid()
        request.request_id.client_id, request.request_id.seq = rid
        return await self._router.call(
            method, request, route=WRITE, timeout=timeout or self.timeout, request_id=rid
        )

    async def _read(
        self, method: str, request: Any, consistency: str, max_staleness: float | None,
        timeout: float | None,
    ) -> Any:  # fmt: skip
        if consistency not in _CONSISTENCY:
            raise errors.InvalidInputError(
                f"consistency must be 'linearizable' or 'stale', not {consistency!r}"
            )
        request.consistency = _CONSISTENCY[consistency]
        if max_staleness is not None:
            if consistency != "stale" or max_staleness <= 0:
                raise errors.InvalidInputError("max_staleness (> 0 s) applies to stale reads only")
            request.max_staleness_ms = max(1, round(max_staleness * 1000))
        route = READ_STALE if consistency == "stale" else READ_LEADER
        return await self._router.call(
            method, request, route=route, timeout=timeout or self.timeout
        )

    # -- reads ------------------------------------------------------------------

    async def get(
        self, key: Key, *, consistency: str = "linearizable", max_staleness: float | None = None,
        timeout: float | None = None,
    ) -> bytes | None:  # fmt: skip
        """The value of key, or None."""
        request = cache_pb2.GetRequest(key=_bytes(key, "key"))
        response = await self._read("Cache/Get", request, consistency, max_staleness, timeout)
        return response.value if response.found else None

    async def get_item(
        self, key: Key, *, consistency: str = "linearizable", max_staleness: float | None = None,
        timeout: float | None = None,
    ) -> Item | None:  # fmt: skip
        """Value, version and remaining TTL of key, or None."""
        request = cache_pb2.GetRequest(key=_bytes(key, "key"))
        response = await self._read("Cache/Get", request, consistency, max_staleness, timeout)
        return _item(response)

    async def mget(
        self, keys: Iterable[Key], *, consistency: str = "linearizable",
        max_staleness: float | None = None, timeout: float | None = None,
    ) -> list[bytes | None]:  # fmt: skip
        """Values of keys in order (None for a missing key)."""
        request = cache_pb2.MGetRequest(keys=[_bytes(k, "key") for k in keys])
        response = await self._read("Cache/MGet", request, consistency, max_staleness, timeout)
        return [r.value if r.found else None for r in response.results]

    # -- writes -----------------------------------------------------------------

    async def set(
        self, key: Key, value: Value, *, ttl: float | None = None, if_absent: bool = False,
        if_present: bool = False, expected_version: int | None = None,
        timeout: float | None = None,
    ) -> int:  # fmt: skip
        """Store value; returns its new version. ConditionFailedError if a condition fails."""
        if if_absent and if_present:
            raise errors.InvalidInputError("if_absent and if_present exclude each other")
        request = cache_pb2.SetRequest(
            key=_bytes(key, "key"),
            value=_bytes(value, "value"),
            ttl_ms=_ttl_ms(ttl),
            condition=cache_pb2.IF_ABSENT if if_absent else
            cache_pb2.IF_PRESENT if if_present else cache_pb2.CONDITION_NONE,
        )  # fmt: skip
        if expected_version is not None:
            request.expected_version = expected_version
        response = await self._write("Cache/Set", request, timeout)
        return int(response.version)

    async def delete(self, key: Key, *, timeout: float | None = None) -> bool:
        """Remove key; True if it existed."""
        request = cache_pb2.DeleteRequest(key=_bytes(key, "key"))
        return bool((await self._write("Cache/Delete", request, timeout)).deleted)

    async def incr(
        self, key: Key, delta: int = 1, *, ttl: float | None = None, timeout: float | None = None
    ) -> int:
        """Add delta to a decimal counter (a missing key starts at 0); returns the new value.

        Applied exactly once even when retried after a failover (request id)."""
        request = cache_pb2.IncrRequest(key=_bytes(key, "key"), delta=delta, ttl_ms=_ttl_ms(ttl))
        return int((await self._write("Cache/Incr", request, timeout)).value)

    async def mset(
        self, items: Mapping[Key, Value] | Iterable[tuple[Key, Value]], *,
        ttl: float | None = None, timeout: float | None = None,
    ) -> list[int]:  # fmt: skip
        """Store several keys atomically; returns their versions in order."""
        pairs = items.items() if isinstance(items, Mapping) else items
        ttl_ms = _ttl_ms(ttl)
        request = cache_pb2.MSetRequest(
            entries=[
                cache_pb2.KeyValue(key=_bytes(k, "key"), value=_bytes(v, "value"), ttl_ms=ttl_ms)
                for k, v in pairs
            ]
        )
        return list((await self._write("Cache/MSet", request, timeout)).versions)

    # -- cluster ----------------------------------------------------------------

    async def cluster_status(self, *, timeout: float | None = None) -> list[NodeStatus]:
        """Every member's own Status (a member that does not answer has role 'down')."""
        deadline = timeout or self.timeout
        await self._router.refresh(self._router.deadline_in(deadline))
        out = []
        for address in self._router.members:
            try:
                s = await self._transport.call(
                    address, "Cluster/Status", cluster_pb2.StatusRequest(), min(deadline, 2.0)
                )
            except CallFailed:
                out.append(NodeStatus("?", address, "down", 0, "", 0, 0, 0, 0, ""))
                continue
            out.append(
                NodeStatus(
                    node_id=s.node_id,
                    address=address,
                    role=cluster_pb2.Role.Name(s.role).lower(),
                    term=s.term,
                    leader_id=s.leader_id,
                    commit_index=s.commit_index,
                    applied_index=s.applied_index,
                    leader_commit_index=s.leader_commit_index,
                    keys=s.keys,
                    digest=s.digest,
                )
            )
        return out
