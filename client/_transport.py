"""How the SDK reaches nodes: an injectable transport, so routing and retries are
tested without sockets (tests pass a fake with the same `call`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import grpc
from raftcache.v1 import cache_pb2, cluster_pb2

# gRPC's wording for failures before a request left the client (connect, DNS).
_NEVER_SENT = ("failed to connect", "connection refused", "dns resolution failed", "resolving")

LEADER_METADATA_KEY = "x-raftcache-leader"
ORIGIN_METADATA_KEY = "x-raftcache-error"

REQUESTS: dict[str, Any] = {
    "Cache/Get": cache_pb2.GetRequest,
    "Cache/Set": cache_pb2.SetRequest,
    "Cache/Delete": cache_pb2.DeleteRequest,
    "Cache/Incr": cache_pb2.IncrRequest,
    "Cache/MGet": cache_pb2.MGetRequest,
    "Cache/MSet": cache_pb2.MSetRequest,
    "Cluster/Status": cluster_pb2.StatusRequest,
}
RESPONSES: dict[str, Any] = {
    "Cache/Get": cache_pb2.GetResponse,
    "Cache/Set": cache_pb2.SetResponse,
    "Cache/Delete": cache_pb2.DeleteResponse,
    "Cache/Incr": cache_pb2.IncrResponse,
    "Cache/MGet": cache_pb2.MGetResponse,
    "Cache/MSet": cache_pb2.MSetResponse,
    "Cluster/Status": cluster_pb2.StatusResponse,
}


@dataclass(frozen=True)
class CallFailed(Exception):
    """One attempt failed. `origin` is the node's own error class name when the node
    answered (absent for transport failures); `leader` is the node's leader hint."""

    code: str  # grpc.StatusCode name, e.g. "UNAVAILABLE"
    details: str
    origin: str | None = None
    leader: str | None = None

    @property
    def never_sent(self) -> bool:
        """True when the request surely did not reach a node (connect or DNS failure)."""
        text = self.details.lower()
        return (
            self.code == "UNAVAILABLE"
            and self.origin is None
            and any(sign in text for sign in _NEVER_SENT)
        )


class Transport(Protocol):
    async def call(self, address: str, method: str, request: Any, timeout: float) -> Any:
        """Send one unary call; raise CallFailed for any non-OK status."""

    async def close(self) -> None: ...


class GrpcTransport:
    """grpc.aio channels, one per node address."""

    def __init__(self, options: list[tuple[str, Any]] | None = None) -> None:
        self._options = options or [
            ("grpc.max_receive_message_length", 64 << 20),
            ("grpc.max_send_message_length", 64 << 20),
        ]
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._calls: dict[tuple[str, str], Any] = {}

    def _callable(self, address: str, method: str) -> Any:
        key = (address, method)
        call = self._calls.get(key)
        if call is None:
            channel = self._channels.get(address)
            if channel is None:
                channel = grpc.aio.insecure_channel(address, options=self._options)
                self._channels[address] = channel
            call = channel.unary_unary(
                f"/raftcache.v1.{method}",
                request_serializer=REQUESTS[method].SerializeToString,
                response_deserializer=RESPONSES[method].FromString,
            )
            self._calls[key] = call
        return call

    async def call(self, address: str, method: str, request: Any, timeout: float) -> Any:
        try:
            return await self._callable(address, method)(request, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            trailing = dict(exc.trailing_metadata() or ())
            raise CallFailed(
                code=exc.code().name,
                details=exc.details() or "",
                origin=trailing.get(ORIGIN_METADATA_KEY),
                leader=trailing.get(LEADER_METADATA_KEY),
            ) from None

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
        self._calls.clear()
