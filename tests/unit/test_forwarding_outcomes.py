"""A follower's relay of a leader-only call: which failures may have applied."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from raftcache.node.forwarding import LeaderForwarder
from raftcache.v1 import cache_pb2

from tests.unit.grpc_fakes import Aborted, FakeContext


def broken_forwarder() -> LeaderForwarder:
    """A forwarder whose leader connection breaks after the request was sent."""
    forwarder = LeaderForwarder([])

    class Channel:
        def unary_unary(self, *_args: Any, **_kwargs: Any) -> Any:
            async def call(*_a: Any, **_k: Any) -> Any:
                raise grpc.aio.AioRpcError(
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.aio.Metadata(),
                    grpc.aio.Metadata(),
                    details="Socket closed",
                )

            return call

    forwarder._channel = lambda _address: Channel()  # type: ignore[method-assign,assignment,return-value]
    return forwarder


def forward(method: str, request: Any) -> FakeContext:
    context = FakeContext()

    async def run() -> None:
        with pytest.raises(Aborted):
            await broken_forwarder().forward("leader:1", method, request, context)  # type: ignore[arg-type]

    asyncio.run(run())
    return context


def test_a_broken_forward_of_an_exec_or_txn_write_is_outcome_unknown() -> None:
    write = cache_pb2.ExecRequest()
    write.op.call.argv.extend([b"INCR", b"k"])
    txn = cache_pb2.TxnRequest()
    publish = cache_pb2.PublishRequest(channel=b"c", message=b"m")
    for method, request in (("Exec", write), ("Txn", txn), ("Publish", publish)):
        context = forward(method, request)
        assert context.code == grpc.StatusCode.DEADLINE_EXCEEDED, method
        assert "outcome unknown" in context.details


def test_a_broken_forward_of_a_read_stays_retryable() -> None:
    read = cache_pb2.ExecRequest()
    read.op.call.argv.extend([b"GET", b"k"])
    assert forward("Exec", read).code == grpc.StatusCode.UNAVAILABLE
    assert forward("Get", cache_pb2.GetRequest(key=b"k")).code == grpc.StatusCode.UNAVAILABLE
