"""The hand-written wire contract shared by nodes and clients."""

from __future__ import annotations

import pytest
from raftcache.v1 import cache_pb2_grpc, cluster_pb2_grpc
from raftcache.v1.wire import METHODS, STREAMS, never_sent


@pytest.mark.parametrize(
    ("details", "expected"),
    [
        ("failed to connect to all addresses; last error: UNKNOWN", True),
        ("errors resolving leader.raftcache.svc:6380: Domain name not found", True),
        ("DNS resolution failed for service: nosuch:1", True),
        ("Socket closed", False),
        ("Stream removed", False),
    ],
)
def test_only_connect_and_dns_failures_count_as_never_sent(details: str, expected: bool) -> None:
    assert never_sent("UNAVAILABLE", details, answered_by_node=False) is expected
    assert never_sent("UNAVAILABLE", details, answered_by_node=True) is False
    assert never_sent("DEADLINE_EXCEEDED", details, answered_by_node=False) is False


def test_every_rpc_of_both_services_has_its_message_types() -> None:
    served = {f"Cache/{m}" for m in dir(cache_pb2_grpc.CacheServicer) if m[0].isupper()}
    served |= {"Cluster/Status"}
    assert served <= set(METHODS) | set(STREAMS)
    assert not set(METHODS) & set(STREAMS)
    for name, (request, _message) in STREAMS.items():
        service, method = name.split("/")
        stub_module = cache_pb2_grpc if service == "Cache" else cluster_pb2_grpc
        assert hasattr(getattr(stub_module, f"{service}Servicer"), method)
        assert request.DESCRIPTOR.name.endswith("Request")
    for name, (request, response) in METHODS.items():
        service, method = name.split("/")
        stub_module = cache_pb2_grpc if service == "Cache" else cluster_pb2_grpc
        assert hasattr(getattr(stub_module, f"{service}Servicer"), method)
        assert request.DESCRIPTOR.full_name.startswith("raftcache.v1.")
        assert response.DESCRIPTOR.name.endswith("Response")
