"""Auto-pipelining in the SDK: a Transport that sends concurrent Get/Set/Delete/Incr/Exec
calls to one node as one Cache.Batch (see raftcache.v1.pipeline for when).

It sits under the Router, so routing, retries, deadlines and outcome-unknown handling stay
per call: each call still fails with the CallFailed its unary RPC would have given (a batch
that fails in transport fails each of its calls with that failure).
"""

from __future__ import annotations

from typing import Any

import grpc
from raftcache.client._transport import CallFailed, Stream, Transport
from raftcache.v1 import cache_pb2
from raftcache.v1.pipeline import BATCHABLE, AutoPipeline, PipelineStats

_CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}


class _Sender:
    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    async def unary(self, address: str, method: str, request: Any, timeout: float | None) -> Any:
        return await self._transport.call(address, method, request, _finite(timeout))

    async def batch(
        self, address: str, request: cache_pb2.BatchRequest, timeout: float | None
    ) -> cache_pb2.BatchResponse:
        response: cache_pb2.BatchResponse = await self._transport.call(
            address, "Cache/Batch", request, _finite(timeout)
        )
        return response

    def op_error(self, error: cache_pb2.OpError) -> BaseException:
        return CallFailed(
            code=_CODE_NAMES.get(error.code, "UNKNOWN"),
            details=error.message,
            origin=error.origin or None,
            leader=error.leader or None,
        )

    def deadline_exceeded(self) -> BaseException:
        return CallFailed("DEADLINE_EXCEEDED", "Deadline Exceeded")

    def unimplemented(self, failure: BaseException) -> bool:
        return (
            isinstance(failure, CallFailed)
            and failure.code == "UNIMPLEMENTED"
            and failure.origin is None
        )


def _finite(timeout: float | None) -> float:
    return 3600.0 if timeout is None else timeout


class PipelinedTransport:
    """Wraps a Transport; batchable calls go through one AutoPipeline, the rest straight on."""

    def __init__(self, inner: Transport, max_inflight: int | None = None) -> None:
        self.inner = inner
        options = {} if max_inflight is None else {"max_inflight": max_inflight}
        self._pipeline = AutoPipeline(_Sender(inner), **options)

    @property
    def stats(self) -> PipelineStats:
        """Unary and Batch RPCs sent so far, and the calls the batches carried."""
        return self._pipeline.stats

    async def call(self, address: str, method: str, request: Any, timeout: float) -> Any:
        if method in BATCHABLE:
            return await self._pipeline.call(address, method, request, timeout)
        return await self.inner.call(address, method, request, timeout)

    def open_stream(self, address: str, method: str, request: Any) -> Stream:
        return self.inner.open_stream(address, method, request)

    async def close(self) -> None:
        await self.inner.close()
