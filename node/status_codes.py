"""The one table from domain errors to gRPC status codes (the SDK holds the inverse)."""

from __future__ import annotations

import asyncio
from typing import NoReturn

import grpc
from raftcache.node import errors
from raftcache.node.state_machine import ErrorCode, Failure
from raftcache.v1 import cache_pb2
from raftcache.v1.wire import LEADER_METADATA_KEY, ORIGIN_METADATA_KEY

STATUS_CODES: dict[type[errors.CacheError], grpc.StatusCode] = {
    errors.InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    errors.ConditionFailed: grpc.StatusCode.FAILED_PRECONDITION,
    errors.WrongType: grpc.StatusCode.FAILED_PRECONDITION,
    errors.NotLeader: grpc.StatusCode.UNAVAILABLE,
    errors.NoLeader: grpc.StatusCode.UNAVAILABLE,
    errors.TooStale: grpc.StatusCode.UNAVAILABLE,
    errors.Overloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.TooLarge: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.OutOfMemory: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.SlowConsumer: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.RevisionCompacted: grpc.StatusCode.OUT_OF_RANGE,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.OutcomeUnknown: grpc.StatusCode.DEADLINE_EXCEEDED,
    # Final, unlike DEADLINE_EXCEEDED: gRPC's "sequencer check failed; retry at a higher
    # level" (re-read, then decide), so no client retries the same request id until its deadline.
    errors.RequestTooOld: grpc.StatusCode.ABORTED,
}

FAILURES: dict[ErrorCode, type[errors.CacheError]] = {
    ErrorCode.CONDITION_FAILED: errors.ConditionFailed,
    ErrorCode.NOT_AN_INTEGER: errors.ConditionFailed,
    ErrorCode.OVERFLOW: errors.ConditionFailed,
    ErrorCode.REQUEST_TOO_OLD: errors.RequestTooOld,
    ErrorCode.INVALID_COMMAND: errors.InvalidInput,
    ErrorCode.WRONG_TYPE: errors.WrongType,
    ErrorCode.OUT_OF_MEMORY: errors.OutOfMemory,
}


def from_failure(failure: Failure) -> errors.CacheError:
    """The domain error for a state machine Failure result."""
    return FAILURES[failure.code](failure.message)


def op_error(error: errors.CacheError) -> cache_pb2.OpError:
    """`error` as one op's failure inside a Batch answer: what `abort` would send for it."""
    leader = error.leader_addr if isinstance(error, errors.NotLeader) else ""
    return cache_pb2.OpError(
        code=STATUS_CODES[type(error)].value[0],
        message=str(error),
        origin=type(error).__name__,
        leader=leader,
    )


async def abort(context: grpc.aio.ServicerContext, error: errors.CacheError) -> NoReturn:
    """End the RPC with the status code for `error` (and the leader hint, if any)."""
    metadata = [(ORIGIN_METADATA_KEY, type(error).__name__)]
    if isinstance(error, errors.NotLeader) and error.leader_addr:
        metadata.append((LEADER_METADATA_KEY, error.leader_addr))
    context.set_trailing_metadata(tuple(metadata))
    if isinstance(error, errors.Unauthenticated) and error.delay_s:
        await asyncio.sleep(error.delay_s)  # one connection guessing passwords: slowed down
    await context.abort(STATUS_CODES[type(error)], str(error))
    raise AssertionError("context.abort returned")  # it raises; this keeps NoReturn honest
