"""Follower -> leader forwarding of calls that only the leader can serve.

A follower that knows the leader's client address relays the call there with
the caller's remaining deadline, and relays the answer (or the status, with its
trailing metadata) back. A forwarded call is never forwarded again: a node that
receives one while not leading answers UNAVAILABLE with the leader hint.
"""

from __future__ import annotations

from typing import Any

import grpc
from raftcache.node import errors
from raftcache.node.requests import is_read_op
from raftcache.v1.wire import (
    FORWARDED_METADATA_KEY,
    LEADER_METADATA_KEY,
    METHODS,
    ORIGIN_METADATA_KEY,
    never_sent,
)

_WRITES = frozenset({"Set", "Delete", "Incr", "MSet"})


class LeaderForwarder:
    """Keeps one channel per leader address it has forwarded to."""

    def __init__(self, options: list[tuple[str, Any]]) -> None:
        self._options = options
        self._channels: dict[str, grpc.aio.Channel] = {}

    def _channel(self, address: str) -> grpc.aio.Channel:
        channel = self._channels.get(address)
        if channel is None:
            channel = grpc.aio.insecure_channel(address, options=self._options)
            self._channels[address] = channel
        return channel

    async def forward(
        self, address: str, method: str, request: Any, context: grpc.aio.ServicerContext
    ) -> Any:
        call = self._channel(address).unary_unary(
            f"/raftcache.v1.Cache/{method}",
            request_serializer=type(request).SerializeToString,
            response_deserializer=METHODS[f"Cache/{method}"][1].FromString,
        )
        try:
            return await call(
                request,
                timeout=context.time_remaining(),
                metadata=((FORWARDED_METADATA_KEY, "1"),),
            )
        except grpc.aio.AioRpcError as exc:
            trailing = tuple(exc.trailing_metadata() or ())
            code, details = exc.code(), exc.details() or ""
            answered = any(key == ORIGIN_METADATA_KEY for key, _ in trailing)
            write = _may_write(method, request)
            if write and not answered and not never_sent(code.name, details, False):
                # The leader may have received (and committed) the write before the
                # connection broke: the caller must not take this as "safe to retry".
                code = grpc.StatusCode.DEADLINE_EXCEEDED
                details = (
                    f"outcome unknown: forwarding to the leader at {address} failed after "
                    f"the write was sent ({exc.code().name}: {details}); retry with the "
                    "same request id to find out"
                )
            if trailing:
                context.set_trailing_metadata(trailing)
            await context.abort(code, details)

    async def relay(self, address: str, method: str, request: Any, timeout: float) -> Any:
        """Forward a call made through another front-end (RESP, memcached); a failure comes
        back as the domain error the leader answered, or OutcomeUnknown for a write whose
        connection broke after it was sent."""
        call = self._channel(address).unary_unary(
            f"/raftcache.v1.Cache/{method}",
            request_serializer=type(request).SerializeToString,
            response_deserializer=METHODS[f"Cache/{method}"][1].FromString,
        )
        try:
            return await call(request, timeout=timeout, metadata=((FORWARDED_METADATA_KEY, "1"),))
        except grpc.aio.AioRpcError as exc:
            raise relayed_error(exc, address, _may_write(method, request)) from None

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()


def _may_write(method: str, request: Any) -> bool:
    if method == "Exec":
        return not is_read_op(request.op)
    return method in _WRITES or method in ("Txn", "Publish")


def relayed_error(exc: grpc.aio.AioRpcError, address: str, write: bool) -> errors.CacheError:
    """The domain error for a failed forwarded call."""
    trailing = dict(exc.trailing_metadata() or ())
    details = exc.details() or ""
    origin = trailing.get(ORIGIN_METADATA_KEY)
    if origin == "NotLeader":
        return errors.NotLeader(details, str(trailing.get(LEADER_METADATA_KEY, "")))
    if (
        exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        and not origin
        and "message larger than max" in details.lower()
    ):
        # gRPC refused the message itself (either side): nothing reached the state machine.
        return errors.TooLarge(
            f"the request to the leader at {address} is larger than a gRPC message may be "
            f"({details}); nothing was applied: send fewer or smaller commands at once"
        )
    cls = getattr(errors, str(origin), None) if origin else None
    if isinstance(cls, type) and issubclass(cls, errors.CacheError) and cls is not errors.NotLeader:
        return cls(details)
    if write and not never_sent(exc.code().name, details, False):
        return errors.OutcomeUnknown(
            f"outcome unknown: forwarding to the leader at {address} failed after the write "
            f"was sent ({exc.code().name}: {details}); read the key to find out"
        )
    return errors.NoLeader(
        f"the leader at {address} could not be reached ({exc.code().name}: {details}); retry"
    )
