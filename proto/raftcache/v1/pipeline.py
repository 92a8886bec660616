"""Auto-pipelining, shared by the SDK and a forwarding follower: calls to one node made while
another call to it is in flight go out together as one `Cache.Batch` RPC.

- A call to a node with nothing in flight and nothing queued goes out at once as its own
  unary RPC, so a lone caller's latency does not change.
- Otherwise it queues. At the end of the event-loop turn, if fewer than `max_inflight` RPCs
  to that node are in flight (else as soon as one returns), what is queued goes out as one
  Batch per free slot: one batch, or, when two or more slots are free and each share
  would carry at least SPLIT_MIN_OPS calls, even shares in order (over the batch limits,
  the rest waits for a slot; a batch of one goes out unary again). Calls made in one loop
  turn, e.g. by the callers one batch's answer woke up, so travel together, the way
  ioredis's auto-pipelining batches one turn's commands: a batch is counted out only
  after the callers its answer woke have run.
- Every call keeps its own timeout: when it passes, that call fails with the sender's
  deadline error whatever its batch does (the batch RPC gets the longest of its calls').
- Each op's answer or error comes back to its own caller; a batch RPC that fails as a whole
  fails each of its calls with that same failure, as if each had been sent alone.
- A node that does not know Batch (UNIMPLEMENTED: nothing ran) gets its calls unary from
  then on.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Protocol

from raftcache.v1 import cache_pb2

BATCH_MAX_OPS = 1024
"""Ops a node accepts in one Batch request."""
BATCH_MAX_BYTES = 8 << 20
"""Bytes a node accepts in one Batch request (well below gRPC's message limit)."""
BATCHABLE: dict[str, str] = {
    "Cache/Get": "get",
    "Cache/Set": "set",
    "Cache/Delete": "delete",
    "Cache/Incr": "incr",
    "Cache/Exec": "exec",
}
"""Method -> the BatchOp / BatchResult field that carries its request / response."""
DEFAULT_MAX_INFLIGHT = 2
SPLIT_MIN_OPS = 16
"""A queue is split over free in-flight slots only into batches at least this large: each
Batch RPC has a fixed cost on both ends (8 or 3-4 slots of smaller batches measured no
better, node/DESIGN.md)."""
_OP_OVERHEAD = 8  # a BatchOp's tags and lengths around the request, at most


class Sender(Protocol):
    """How a pipeline sends RPCs and builds the errors its callers see."""

    async def unary(self, address: str, method: str, request: Any, timeout: float | None) -> Any:
        """One unary RPC (raises the sender's failure)."""

    async def batch(
        self, address: str, request: cache_pb2.BatchRequest, timeout: float | None
    ) -> cache_pb2.BatchResponse:
        """One Batch RPC (raises the sender's failure)."""

    def op_error(self, error: cache_pb2.OpError) -> BaseException:
        """The failure for one op the node answered with an error."""

    def deadline_exceeded(self) -> BaseException:
        """The failure for a call whose own timeout passed while its batch was in flight."""

    def unimplemented(self, failure: BaseException) -> bool:
        """True when a Batch failed because the node does not know the RPC."""


@dataclass(eq=False)
class _Call:
    method: str
    request: Any
    size: int
    future: asyncio.Future[Any]
    deadline: float | None  # loop time


@dataclass(eq=False)
class _Node:
    inflight: int = 0
    queue: list[_Call] = field(default_factory=list)
    flush_scheduled: bool = False
    batch_ok: bool = True


@dataclass
class PipelineStats:
    """What went out: unary RPCs, Batch RPCs and the ops those carried."""

    unary: int = 0
    batches: int = 0
    batched_ops: int = 0


class AutoPipeline:
    """Per-node queues of calls; one instance per client (or per forwarding node)."""

    def __init__(
        self,
        sender: Sender,
        *,
        max_inflight: int = DEFAULT_MAX_INFLIGHT,
        max_ops: int = BATCH_MAX_OPS,
        max_bytes: int = BATCH_MAX_BYTES,
    ) -> None:
        if max_inflight < 1:
            raise ValueError(f"max_inflight must be >= 1, not {max_inflight}")
        self._sender = sender
        self._max_inflight = max_inflight
        self._max_ops = max_ops
        self._max_bytes = max_bytes
        self._nodes: dict[str, _Node] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.stats = PipelineStats()

    @property
    def busy(self) -> bool:
        """Calls are in flight or queued on some node."""
        return any(node.inflight or node.queue for node in self._nodes.values())

    async def call(self, address: str, method: str, request: Any, timeout: float | None) -> Any:
        """Run one call of a BATCHABLE method on `address`; its response, or the sender's
        failure for it."""
        node = self._nodes.get(address)
        if node is None:
            node = self._nodes[address] = _Node()
        if (node.inflight == 0 and not node.queue) or not node.batch_ok:
            return await self._unary(node, address, method, request, timeout)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        size = request.ByteSize() + _OP_OVERHEAD
        deadline = None if timeout is None else loop.time() + timeout
        node.queue.append(_Call(method, request, size, future, deadline))
        self._schedule(node, address)
        if timeout is None:
            return await future
        timer = loop.call_later(timeout, self._expire, future)
        try:
            return await future
        finally:
            timer.cancel()

    async def _unary(
        self, node: _Node, address: str, method: str, request: Any, timeout: float | None
    ) -> Any:
        node.inflight += 1
        self.stats.unary += 1
        try:
            return await self._sender.unary(address, method, request, timeout)
        finally:
            self._returned(node, address)

    def _returned(self, node: _Node, address: str) -> None:
        node.inflight -= 1
        if node.queue:
            self._schedule(node, address)

    def _expire(self, future: asyncio.Future[Any]) -> None:
        if not future.done():
            future.set_exception(self._sender.deadline_exceeded())

    def _schedule(self, node: _Node, address: str) -> None:
        if not node.flush_scheduled:
            node.flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush, node, address)

    def _flush(self, node: _Node, address: str) -> None:
        node.flush_scheduled = False
        if not node.batch_ok:  # the node does not know Batch: everything queued, unary
            queued, node.queue = node.queue, []
            for call in queued:
                if not call.future.done():
                    self._spawn(self._send_one(node, address, call))
            return
        free = self._max_inflight - node.inflight  # the RPCs below count in when they start
        while node.queue and free > 0:
            calls = self._take(node, self._share(len(node.queue), free))
            free -= 1
            if len(calls) == 1:
                self._spawn(self._send_one(node, address, calls[0]))
            elif calls:
                self._spawn(self._send_batch(node, address, calls))

    def _share(self, waiting: int, free: int) -> int:
        """How many of the `waiting` calls the next RPC takes: all of them, or an even share
        over the `free` in-flight slots when each share still carries SPLIT_MIN_OPS calls.
        Filling every slot keeps the node and this process busy at once: while one batch
        is served, the answer of the other is handled and its callers' next calls queue
        (64 callers of linearizable gets: two batches of 32 in flight against one of 63
        and one unary call, 38.2-38.9k against 26.9-29.3k gets/s). Fewer, larger batches
        would leave a slot idle for the whole of the next round."""
        slots = min(free, waiting // SPLIT_MIN_OPS)
        return -(-waiting // slots) if slots > 1 else waiting

    def _take(self, node: _Node, share: int) -> list[_Call]:
        """The next calls for one RPC, at most `share` and within the batch limits
        (cancelled ones dropped). A call too large for any batch goes alone."""
        taken: list[_Call] = []
        size = 0
        used = 0
        limit = min(share, self._max_ops)
        for call in node.queue:
            if not call.future.done():
                if taken and (len(taken) >= limit or size + call.size > self._max_bytes):
                    break
                taken.append(call)
                size += call.size
            used += 1
            if size > self._max_bytes:
                break
        del node.queue[:used]
        return taken

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_one(self, node: _Node, address: str, call: _Call) -> None:
        timeout = _remaining([call])
        try:
            response = await self._unary(node, address, call.method, call.request, timeout)
        except Exception as exc:  # the sender's failure, handed to the caller
            _settle(call, None, exc)
        else:
            _settle(call, response, None)

    async def _send_batch(self, node: _Node, address: str, calls: list[_Call]) -> None:
        request = cache_pb2.BatchRequest()
        for call in calls:
            getattr(request.ops.add(), BATCHABLE[call.method]).CopyFrom(call.request)
        node.inflight += 1
        self.stats.batches += 1
        self.stats.batched_ops += len(calls)
        try:
            response = await self._sender.batch(address, request, _remaining(calls))
        except Exception as exc:
            if self._sender.unimplemented(exc):
                node.batch_ok = False  # nothing ran: each goes again, unary
                for call in calls:
                    self._spawn(self._send_one(node, address, call))
            else:
                for call in calls:
                    _settle(call, None, exc)
        else:
            self._answer(node, address, calls, response)
        finally:
            # Counted out only after the callers this answer woke have run (they run in the
            # next loop turn, before this): what they call next finds the node busy and
            # queues, so they travel together in one batch instead of the first of them
            # going out alone.
            asyncio.get_running_loop().call_soon(self._returned, node, address)

    def _answer(
        self, node: _Node, address: str, calls: list[_Call], response: cache_pb2.BatchResponse
    ) -> None:
        results = response.results
        if len(results) != len(calls):
            error = self._sender.op_error(
                cache_pb2.OpError(
                    code=13,  # INTERNAL, from no node's table: a write's outcome is unknown
                    message=f"the node answered {len(results)} results for a batch of "
                    f"{len(calls)} ops: is it running another raftcache version?",
                )
            )
            for call in calls:
                _settle(call, None, error)
            return
        for call, result in zip(calls, results, strict=True):
            kind = result.WhichOneof("result")
            if kind != "error":
                _settle(call, getattr(result, kind), None)
            elif result.error.origin == "TooLarge":
                # The batch's answer reached its size limit before this read: it was not run.
                # Alone it may fit; if not, its unary call says so.
                self._spawn(self._send_one(node, address, call))
            else:
                _settle(call, None, self._sender.op_error(result.error))


def _remaining(calls: list[_Call]) -> float | None:
    deadlines = [c.deadline for c in calls]
    if any(d is None for d in deadlines):
        return None
    latest: float = max(d for d in deadlines if d is not None)
    return max(latest - asyncio.get_running_loop().time(), 0.001)


def _settle(call: _Call, response: Any, error: BaseException | None) -> None:
    if call.future.done():
        return  # timed out or cancelled meanwhile
    if error is not None:
        call.future.set_exception(error)
    else:
        call.future.set_result(response)
