"""raftcache.client: the Python SDK.

`Client` (blocking) and `AsyncClient` (asyncio) have the same methods: get, get_item,
mget, set, delete, incr, mset, cluster_status; `cache_aside` / `cached` for query
caching. Exceptions are in raftcache.client.errors (hierarchy in its docstring).
"""

from raftcache.client._async_client import AsyncClient, Item, NodeStatus
from raftcache.client._router import RetryPolicy
from raftcache.client._sync_client import Client
from raftcache.client.errors import (
    ConditionFailedError,
    InvalidInputError,
    OutcomeUnknownError,
    OverloadedError,
    RaftcacheError,
    TooLargeError,
    UnavailableError,
)

__all__ = [
    "AsyncClient",
    "Client",
    "ConditionFailedError",
    "InvalidInputError",
    "Item",
    "NodeStatus",
    "OutcomeUnknownError",
    "OverloadedError",
    "RaftcacheError",
    "RetryPolicy",
    "TooLargeError",
    "UnavailableError",
]
