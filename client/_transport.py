"""How the SDK reaches nodes: an injectable transport, so routing and retries are
tested without sockets (tests pass a fake with the same `call`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import grpc
from raftcache.v1.wire import LEADER_METADATA_KEY, METHODS, ORIGIN_METADATA_KEY
from raftcache.v1.wire import never_sent as _never_sent


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
        return _never_sent(self.code, self.details, self.origin is not None)


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
                request_serializer=METHODS[method][0].SerializeToString,
                response_deserializer=METHODS[method][1].FromString,
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
