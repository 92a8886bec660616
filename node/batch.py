"""Cache.Batch: many independent Get/Set/Delete/Incr/Exec ops in one RPC, each answered on
its own (the status its unary RPC would have ended with), in order; not atomic.

On the leader every write is queued on the proposer in one loop turn (so the batch's writes
share one log entry) and every LINEARIZABLE read waits on one read barrier registered in the
same turn; STALE reads are served at once after the staleness check. A follower serves the
STALE reads itself and relays the rest to the leader as one Batch (forwarding.py), keeping
each op's forwarded outcome as its unary call would. An op its caller may not run fails
alone with PERMISSION_DENIED (node/grpc_auth.py); the relayed Batch names the caller's user,
and the leader checks each op again.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from raftcache.node import errors, requests, responses, status_codes
from raftcache.node.forwarding import LeaderForwarder
from raftcache.node.keyspace.blocking import is_blocking
from raftcache.node.proposer import Callback, Proposer
from raftcache.node.state_machine import DeleteOk, IncrOk, Result, SetOk
from raftcache.v1 import cache_pb2, command_pb2

if TYPE_CHECKING:
    from raftcache.node.servicers import NodeView

_STALE_ADVICE = "read from another node or the leader"


def _set(result: Result) -> cache_pb2.BatchResult:
    return cache_pb2.BatchResult(
        set=cache_pb2.SetResponse(version=responses.expect(result, SetOk).version)
    )


def _delete(result: Result) -> cache_pb2.BatchResult:
    deleted = responses.expect(result, DeleteOk).deleted
    return cache_pb2.BatchResult(delete=cache_pb2.DeleteResponse(deleted=deleted))


def _incr(result: Result) -> cache_pb2.BatchResult:
    incr = responses.expect(result, IncrOk)
    return cache_pb2.BatchResult(
        incr=cache_pb2.IncrResponse(value=incr.value, version=incr.version)
    )


def _exec(result: Result) -> cache_pb2.BatchResult:
    return cache_pb2.BatchResult(exec=cache_pb2.ExecResponse(value=responses.value(result)))


_RESPOND: dict[str, Callable[[Result], cache_pb2.BatchResult]] = {
    "set": _set,
    "delete": _delete,
    "incr": _incr,
    "exec": _exec,
}


class _Run:
    """One batch's answers, filled in as they come; one future for all of them."""

    def __init__(self, size: int) -> None:
        self.results: list[cache_pb2.BatchResult | None] = [None] * size
        self.waiting = 0
        self._done: asyncio.Future[None] | None = None

    def fail(self, index: int, error: errors.CacheError) -> None:
        self.results[index] = cache_pb2.BatchResult(error=status_codes.op_error(error))

    def expect(self) -> None:
        self.waiting += 1

    def arrived(self) -> None:
        self.waiting -= 1
        if self.waiting == 0 and self._done is not None and not self._done.done():
            self._done.set_result(None)

    async def wait(self) -> None:
        if self.waiting:
            self._done = asyncio.get_running_loop().create_future()
            await self._done

    def write_done(
        self, index: int, kind: str, what: str, result: Any, error: BaseException | None
    ) -> None:
        """A Callback's answer for one queued write (runs on the loop)."""
        try:
            if error is not None:
                raise error
            self.results[index] = _RESPOND[kind](result)
        except errors.CacheError as exc:
            self.fail(index, _named(exc, what))
        except Exception as exc:  # never leave the batch waiting; the write may have applied
            self.fail(index, errors.OutcomeUnknown(f"{what}: {type(exc).__name__}: {exc}"))
        finally:
            self.arrived()


def _named(error: errors.CacheError, what: str) -> errors.CacheError:
    """`error` with the op's place in the batch in front of its message."""
    if isinstance(error, errors.NotLeader):
        return errors.NotLeader(f"{what}: {error}", error.leader_addr)
    return type(error)(f"{what}: {error}")


class BatchRunner:
    """Runs Batch requests on this node, whatever its role."""

    def __init__(
        self,
        view: NodeView,
        proposer: Proposer,
        forwarder: LeaderForwarder,
        limits: requests.Limits,
    ) -> None:
        self._view = view
        self._proposer = proposer
        self._forwarder = forwarder
        self._limits = limits

    async def run(
        self,
        request: cache_pb2.BatchRequest,
        forwarded: bool,
        timeout: float | None,
        refusal: Callable[[cache_pb2.BatchOp], errors.CacheError | None] | None = None,
        identity: tuple[tuple[str, str], ...] = (),
    ) -> cache_pb2.BatchResponse:
        """Every op's answer in order; InvalidInput (the whole RPC) for a batch over its
        limits. `forwarded`: another node relayed this batch (never relay it again).
        `refusal`: why the caller may not run an op (None: it may; no function: the caller
        may run everything); `identity`: what names the caller's user to the leader."""
        requests.check_batch(request, self._limits)
        self._view.batch_rpcs += 1
        self._view.batch_ops += len(request.ops)
        run = _Run(len(request.ops))
        leader = self._proposer.is_leader()
        now = self._proposer.now_ms()
        relay: list[int] = []
        linear: list[int] = []
        for i, op in enumerate(request.ops):
            kind = op.WhichOneof("op") or ""
            what = f"ops[{i}] ({kind or 'empty'})"
            try:
                if not kind:
                    raise errors.InvalidInput(
                        "the op is empty: set exactly one of get, set, delete, incr or exec"
                    )
                if refusal is not None:
                    denied = refusal(op)
                    if denied is not None:
                        raise denied
                body = getattr(op, kind)
                consistency = _read_consistency(kind, body, self._limits)
                if consistency is None:
                    write = _build_write(kind, body, self._limits, now)
                    if leader:
                        done = functools.partial(run.write_done, i, kind, what)
                        self._proposer.submit(write, Callback(done))
                        run.expect()
                    else:
                        relay.append(i)
                elif consistency == cache_pb2.LINEARIZABLE:
                    (linear if leader else relay).append(i)
                else:
                    self._view.check_staleness(
                        body.max_staleness_ms, "max_staleness_ms", _STALE_ADVICE
                    )
                    run.results[i] = self._read(kind, body, responses.read_time_ms(self._view))
            except errors.CacheError as exc:
                run.fail(i, _named(exc, what))
        if linear:
            self._barrier(run, request, linear)
        if relay:
            await self._relay(run, request, relay, forwarded, timeout, identity)
        await run.wait()
        return cache_pb2.BatchResponse(results=self._within_budget(request, run.results))

    def _read(self, kind: str, body: Any, now: int) -> cache_pb2.BatchResult:
        if kind == "get":
            return cache_pb2.BatchResult(get=responses.read_get(self._view, body.key, now))
        return cache_pb2.BatchResult(exec=responses.read_exec(self._view, body, self._limits, now))

    def _barrier(self, run: _Run, request: cache_pb2.BatchRequest, linear: list[int]) -> None:
        """One read barrier for every LINEARIZABLE read of the batch (after its writes,
        which were queued first)."""

        def served(_result: Any, error: BaseException | None) -> None:
            now = responses.read_time_ms(self._view)
            for i in linear:
                op = request.ops[i]
                kind = op.WhichOneof("op") or ""
                try:
                    if error is not None:
                        raise error
                    run.results[i] = self._read(kind, getattr(op, kind), now)
                except errors.CacheError as exc:
                    run.fail(i, _named(exc, f"ops[{i}] ({kind})"))
            run.arrived()

        try:
            self._proposer.barrier(Callback(served))
            run.expect()
        except errors.CacheError as exc:
            for i in linear:
                run.fail(i, _named(exc, f"ops[{i}] ({request.ops[i].WhichOneof('op')})"))

    async def _relay(
        self,
        run: _Run,
        request: cache_pb2.BatchRequest,
        relay: list[int],
        forwarded: bool,
        timeout: float | None,
        identity: tuple[tuple[str, str], ...],
    ) -> None:
        """A follower's leader-only ops, relayed to the leader as one Batch (as the caller's
        user)."""
        error = self._view.not_leader()
        if forwarded or not isinstance(error, errors.NotLeader):
            for i in relay:
                run.fail(i, error)
            return
        sub = cache_pb2.BatchRequest(ops=[request.ops[i] for i in relay])
        results = await self._forwarder.forward_batch(error.leader_addr, sub, timeout, identity)
        for i, result in zip(relay, results, strict=True):
            run.results[i] = result

    def _within_budget(
        self, request: cache_pb2.BatchRequest, results: list[cache_pb2.BatchResult | None]
    ) -> list[cache_pb2.BatchResult]:
        """The answers, with reads past the response limit replaced by TooLarge (they
        changed nothing: sent alone, or in a later batch, they may fit)."""
        limit = self._limits.max_response_bytes
        used = 0
        out: list[cache_pb2.BatchResult] = []
        for i, result in enumerate(results):
            assert result is not None, f"ops[{i}] was never answered"
            size = result.ByteSize()
            if used + size > limit and result.WhichOneof("result") in ("get", "exec"):
                op = request.ops[i]
                if op.WhichOneof("op") == "get" or requests.is_read_op(op.exec.op):
                    result = cache_pb2.BatchResult(
                        error=status_codes.op_error(
                            errors.TooLarge(
                                f"ops[{i}]: the batch's answers reached the response limit of "
                                f"{limit} bytes before this read, so it was not answered: "
                                "send it alone or in a smaller batch"
                            )
                        )
                    )
                    size = result.ByteSize()
            used += size
            out.append(result)
        return out


def _read_consistency(kind: str, body: Any, limits: requests.Limits) -> int | None:
    """A read op's consistency (validated with the op), or None for a write."""
    if kind == "get":
        requests.check_key(body.key, limits)
    elif kind == "exec":
        requests.data_op_kind(body.op)
        argv = body.op.call.argv
        if argv and is_blocking(list(argv)):
            raise errors.InvalidInput(
                f"{argv[0].decode(errors='replace')} blocks, and a Batch never waits: send it "
                "alone with Exec, which parks it on the leader until it can answer"
            )
        if not requests.is_read_op(body.op):
            return None
        requests.check_data_op(body.op, limits)
    else:
        return None
    requests.check_consistency(body.consistency)
    consistency: int = body.consistency
    return consistency


def _build_write(kind: str, body: Any, limits: requests.Limits, now: int) -> command_pb2.Op:
    """The replicated op for a write (validated; TTLs stamped with the leader's clock)."""
    if kind == "set":
        return requests.set_op(body, limits, now)
    if kind == "delete":
        return requests.delete_op(body, limits)
    if kind == "incr":
        return requests.incr_op(body, limits, now)
    return requests.exec_op(body, limits, now)
