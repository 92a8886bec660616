"""Follower -> leader forwarding of calls that only the leader can serve.

A follower that knows the leader's client address relays the call there with
the caller's remaining deadline, and relays the answer (or the status, with its
trailing metadata) back. A forwarded call is never forwarded again: a node that
receives one while not leading answers UNAVAILABLE with the leader hint.

Concurrent forwarded Get/Set/Delete/Incr/Exec calls are auto-pipelined
(raftcache.v1.pipeline): while a call to the leader is in flight, the next ones go out
together as one Batch RPC, and each caller gets the answer (or the failure) its own unary
forward would have given.

A forwarded call carries its caller's identity (node/auth.py `forward_metadata`: the user's
name and the member's proof), and the leader checks that user's permissions again. A Batch
RPC carries one identity, so each identity has its own pipeline: calls of different users
never travel in one forwarded Batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from raftcache.node import errors
from raftcache.node.requests import is_read_op
from raftcache.v1 import cache_pb2
from raftcache.v1.pipeline import (
    BATCHABLE,
    DEFAULT_MAX_INFLIGHT,
    AutoPipeline,
    PipelineStats,
)
from raftcache.v1.wire import (
    FORWARDED_METADATA_KEY,
    LEADER_METADATA_KEY,
    METHODS,
    ORIGIN_METADATA_KEY,
    never_sent,
)

_WRITES = frozenset({"Set", "Delete", "Incr", "MSet"})
_CODES = {code.value[0]: code for code in grpc.StatusCode}
_FORWARDED = ((FORWARDED_METADATA_KEY, "1"),)
_MAX_PIPELINES = 1024
"""Identities with a pipeline of their own; past this the idle ones are dropped."""
Identity = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class _Failed(Exception):
    """A forwarded call's failure: the leader's status for it, or the transport's."""

    code: grpc.StatusCode
    details: str
    trailing: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, exc: grpc.aio.AioRpcError) -> _Failed:
        trailing = tuple((str(k), str(v)) for k, v in (exc.trailing_metadata() or ()))
        return cls(exc.code(), exc.details() or "", trailing)

    @property
    def answered(self) -> bool:
        """The leader answered this itself (it carries the node's error marker)."""
        return any(key == ORIGIN_METADATA_KEY for key, _ in self.trailing)


class _Sender:
    """The forwarder's side of auto-pipelining: gRPC calls marked as forwarded."""

    def __init__(self, forwarder: LeaderForwarder, identity: Identity = ()) -> None:
        self._forwarder = forwarder
        self._metadata = (*_FORWARDED, *identity)

    async def unary(self, address: str, method: str, request: Any, timeout: float | None) -> Any:
        try:
            return await self._forwarder.callable(address, method)(
                request, timeout=timeout, metadata=self._metadata
            )
        except grpc.aio.AioRpcError as exc:
            raise _Failed.of(exc) from None

    async def batch(
        self, address: str, request: cache_pb2.BatchRequest, timeout: float | None
    ) -> cache_pb2.BatchResponse:
        return await self.unary(address, "Cache/Batch", request, timeout)  # type: ignore[no-any-return]

    def op_error(self, error: cache_pb2.OpError) -> BaseException:
        trailing = [(ORIGIN_METADATA_KEY, error.origin)] if error.origin else []
        if error.leader:
            trailing.append((LEADER_METADATA_KEY, error.leader))
        code = _CODES.get(error.code, grpc.StatusCode.UNKNOWN)
        return _Failed(code, error.message, tuple(trailing))

    def deadline_exceeded(self) -> BaseException:
        return _Failed(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")

    def unimplemented(self, failure: BaseException) -> bool:
        return (
            isinstance(failure, _Failed)
            and failure.code == grpc.StatusCode.UNIMPLEMENTED
            and not failure.answered
        )


class LeaderForwarder:
    """Keeps one channel per leader address it has forwarded to."""

    def __init__(
        self,
        options: list[tuple[str, Any]],
        credentials: Callable[[], grpc.ChannelCredentials] | None = None,
        auto_pipeline: bool = True,
        max_inflight: int = DEFAULT_MAX_INFLIGHT,
    ) -> None:
        """`credentials`: TLS to leaders (the current ones, read per new channel), None for
        plaintext. `max_inflight`: RPCs to one leader before further calls wait for one to
        return."""
        self._options = options
        self._credentials = credentials
        self._retired: list[grpc.aio.Channel] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._callables: dict[tuple[str, str], Any] = {}
        self._auto_pipeline = auto_pipeline
        self._max_inflight = max_inflight
        self._pipelines: dict[Identity, AutoPipeline] = {}
        self.stats = PipelineStats()
        """Unary and Batch RPCs forwarded to leaders so far (every identity's)."""
        self.pipeline = self.pipeline_for(())
        """The pipeline of calls that name no user (an open cluster's)."""

    def pipeline_for(self, identity: Identity) -> AutoPipeline | None:
        """The auto-pipeline of one caller identity (None when auto-pipelining is off)."""
        if not self._auto_pipeline:
            return None
        pipeline = self._pipelines.get(identity)
        if pipeline is None:
            if len(self._pipelines) >= _MAX_PIPELINES:
                self._pipelines = {i: p for i, p in self._pipelines.items() if p.busy or not i}
            pipeline = AutoPipeline(_Sender(self, identity), max_inflight=self._max_inflight)
            pipeline.stats = self.stats
            self._pipelines[identity] = pipeline
        return pipeline

    def _channel(self, address: str) -> grpc.aio.Channel:
        channel = self._channels.get(address)
        if channel is None:
            if self._credentials is None:
                channel = grpc.aio.insecure_channel(address, options=self._options)
            else:
                channel = grpc.aio.secure_channel(address, self._credentials(), self._options)
            self._channels[address] = channel
        return channel

    def renew_channels(self) -> None:
        """TLS material was reloaded: later calls open channels with it (a channel keeps the
        client certificate it was made with); the old ones close after a grace period, so
        calls in flight on them finish."""
        old = list(self._channels.values())
        self._channels.clear()
        self._callables.clear()
        self._retired.extend(old)

        async def retire() -> None:
            await asyncio.sleep(60)
            for channel in old:
                self._retired.remove(channel)
                await channel.close()

        if old:
            task = asyncio.get_running_loop().create_task(retire())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def callable(self, address: str, method: str) -> Any:
        """The cached unary callable for "Cache/<Method>" on `address`."""
        key = (address, method)
        call = self._callables.get(key)
        if call is None:
            request_type, response_type = METHODS[method]
            call = self._channel(address).unary_unary(
                f"/raftcache.v1.{method}",
                request_serializer=request_type.SerializeToString,
                response_deserializer=response_type.FromString,
            )
            self._callables[key] = call
        return call

    async def forward(
        self,
        address: str,
        method: str,
        request: Any,
        context: grpc.aio.ServicerContext,
        identity: Identity = (),
    ) -> Any:
        """Relay a client's call to the leader as the user `identity` names."""
        full = f"Cache/{method}"
        timeout = context.time_remaining()
        try:
            pipeline = self.pipeline_for(identity) if full in BATCHABLE else None
            if pipeline is not None:
                return await pipeline.call(address, full, request, timeout)
            self.stats.unary += 1
            return await _Sender(self, identity).unary(address, full, request, timeout)
        except _Failed as failed:
            code, details = self._outcome(address, method, request, failed)
            if failed.trailing:
                context.set_trailing_metadata(failed.trailing)
            await context.abort(code, details)

    @staticmethod
    def _outcome(
        address: str, method: str, request: Any, failed: _Failed
    ) -> tuple[grpc.StatusCode, str]:
        """The status a forwarded call ends with."""
        if (
            _may_write(method, request)
            and not failed.answered
            and not never_sent(failed.code.name, failed.details, False)
        ):
            # The leader may have received (and committed) the write before the
            # connection broke: the caller must not take this as "safe to retry".
            return grpc.StatusCode.DEADLINE_EXCEEDED, (
                f"outcome unknown: forwarding to the leader at {address} failed after "
                f"the write was sent ({failed.code.name}: {failed.details}); retry with the "
                "same request id to find out"
            )
        return failed.code, failed.details

    async def forward_batch(
        self,
        address: str,
        request: cache_pb2.BatchRequest,
        timeout: float | None,
        identity: Identity = (),
    ) -> list[cache_pb2.BatchResult]:
        """Relay a Batch's leader-only ops as one Batch (as the user `identity` names);
        every op gets the answer its own forwarded unary call would have (a broken relay:
        each op's forwarded outcome)."""
        sender = _Sender(self, identity)
        self.stats.batches += 1
        self.stats.batched_ops += len(request.ops)
        try:
            response = await sender.batch(address, request, timeout)
        except _Failed as failed:
            if sender.unimplemented(failed):  # an older leader: op by op
                return list(await asyncio.gather(*(self._forward_op(address, op, timeout, sender)
                                                   for op in request.ops)))  # fmt: skip
            return [_failed_result(address, op, failed) for op in request.ops]
        if len(response.results) != len(request.ops):
            mismatch = _Failed(
                grpc.StatusCode.INTERNAL,
                f"the leader answered {len(response.results)} results for {len(request.ops)} ops",
            )
            return [_failed_result(address, op, mismatch) for op in request.ops]
        return list(response.results)

    async def _forward_op(
        self, address: str, op: cache_pb2.BatchOp, timeout: float | None, sender: _Sender
    ) -> cache_pb2.BatchResult:
        kind = op.WhichOneof("op") or ""
        method = next(m for m, field in BATCHABLE.items() if field == kind)
        try:
            response = await sender.unary(address, method, getattr(op, kind), timeout)
        except _Failed as failed:
            return _failed_result(address, op, failed)
        result = cache_pb2.BatchResult()
        getattr(result, kind).CopyFrom(response)
        return result

    async def relay(
        self,
        address: str,
        method: str,
        request: Any,
        timeout: float,
        identity: tuple[tuple[str, str], ...] = (),
    ) -> Any:
        """Forward a call made through another front-end (RESP, memcached); a failure comes
        back as the domain error the leader answered, or OutcomeUnknown for a write whose
        connection broke after it was sent. `method` is "Method" of Cache or
        "Cluster/Method"; `identity` names the caller's user (node/auth.py)."""
        full = method if "/" in method else f"Cache/{method}"
        call = self._channel(address).unary_unary(
            f"/raftcache.v1.{full}",
            request_serializer=type(request).SerializeToString,
            response_deserializer=METHODS[full][1].FromString,
        )
        try:
            return await call(
                request, timeout=timeout, metadata=((FORWARDED_METADATA_KEY, "1"), *identity)
            )
        except grpc.aio.AioRpcError as exc:
            raise relayed_error(exc, address, _may_write(full, request)) from None

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for channel in [*self._channels.values(), *self._retired]:
            await channel.close()
        self._retired.clear()
        self._channels.clear()
        self._callables.clear()


def _failed_result(address: str, op: cache_pb2.BatchOp, failed: _Failed) -> cache_pb2.BatchResult:
    """One relayed op's failure, as its forwarded unary call would have ended."""
    kind = op.WhichOneof("op") or ""
    method = kind.capitalize()
    code, details = LeaderForwarder._outcome(address, method, getattr(op, kind, None), failed)
    trailing = dict(failed.trailing)
    return cache_pb2.BatchResult(
        error=cache_pb2.OpError(
            code=code.value[0],
            message=details,
            origin=trailing.get(ORIGIN_METADATA_KEY, ""),
            leader=trailing.get(LEADER_METADATA_KEY, ""),
        )
    )


def _may_write(method: str, request: Any) -> bool:
    method = method.removeprefix("Cache/")
    if method == "Exec":
        return not is_read_op(request.op)
    return method in _WRITES or method in (
        "Txn",
        "Publish",
        "Cluster/SetUser",
        "Cluster/DeleteUsers",
    )


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
