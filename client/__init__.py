"""raftcache.client: the Python SDK.

`Client` (blocking) and `AsyncClient` (asyncio) have the same methods: get, get_item,
mget, set, delete, incr, mset; hashes (hset, hget, hgetall, hdel, hincrby, hlen), sorted
sets (zadd, zincrby, zscore, zrank, zrange, zrangebyscore, zrem, zcard, zcount), lists
(lpush, rpush, lpop, rpop, lrange, llen), sets (sadd, srem, smembers, sismember, scard),
expiry (expire, persist, ttl), type, scan_iter, txn (ops and compares from
`raftcache.client.ops`), publish, subscribe, watch, cluster_status; users (set_user,
delete_users, list_users, get_user, whoami); `cache_aside` / `cached` for query caching.
`tls=TlsConfig(ca_file=...)` connects over TLS (mTLS with cert_file and key_file);
`user=` and `password=` (or RAFTCACHE_USER / RAFTCACHE_PASSWORD) authenticate every call
(AuthenticationError, PermissionDeniedError when refused). Exceptions are in
raftcache.client.errors (hierarchy in its docstring). Concurrent calls are auto-pipelined
into Batch RPCs (`auto_pipeline=False` turns it off; see client/_pipeline.py).
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any

    from raftcache.client import ops
    from raftcache.client._async_client import (
        AsyncClient,
        Item,
        MemberInfo,
        Membership,
        NodeStatus,
        UserInfo,
    )
    from raftcache.client._router import RetryPolicy
    from raftcache.client._streams import Message, Subscription, Watch, WatchEvent
    from raftcache.client._sync_client import BlockingIterator, Client
    from raftcache.client._transport import TlsConfig
    from raftcache.client._values import TxnResult
    from raftcache.client.errors import (
        AuthenticationError,
        ConditionFailedError,
        InvalidInputError,
        NotFoundError,
        OutcomeUnknownError,
        OutOfMemoryError,
        OverloadedError,
        PermissionDeniedError,
        RaftcacheError,
        RequestTooOldError,
        RevisionCompactedError,
        SlowConsumerError,
        TooLargeError,
        UnavailableError,
        WrongTypeError,
    )

# Loaded on first use: importing this package runs almost nothing, so the `raftcache` console
# script (client/_entry.py) handles Ctrl-C before grpc and protobuf load (~0.2 s).
_ERRORS = (
    "AuthenticationError", "PermissionDeniedError", "ConditionFailedError",
    "InvalidInputError", "NotFoundError", "OutcomeUnknownError",
    "OutOfMemoryError", "OverloadedError", "RaftcacheError", "RequestTooOldError",
    "RevisionCompactedError", "SlowConsumerError", "TooLargeError", "UnavailableError",
    "WrongTypeError",
)  # fmt: skip
_LAZY = {
    **dict.fromkeys(_ERRORS, "raftcache.client.errors"),
    "ops": "raftcache.client.ops",
    **dict.fromkeys(
        ("AsyncClient", "Item", "MemberInfo", "Membership", "NodeStatus", "UserInfo"),
        "raftcache.client._async_client",
    ),
    "RetryPolicy": "raftcache.client._router",
    **dict.fromkeys(
        ("Message", "Subscription", "Watch", "WatchEvent"), "raftcache.client._streams"
    ),
    **dict.fromkeys(("BlockingIterator", "Client"), "raftcache.client._sync_client"),
    "TxnResult": "raftcache.client._values",
    "TlsConfig": "raftcache.client._transport",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(_LAZY[name])
    value = module if name == "ops" else getattr(module, name)
    globals()[name] = value
    return value


__all__ = [
    "AsyncClient",
    "AuthenticationError",
    "BlockingIterator",
    "Client",
    "ConditionFailedError",
    "InvalidInputError",
    "Item",
    "MemberInfo",
    "Membership",
    "Message",
    "NodeStatus",
    "NotFoundError",
    "OutOfMemoryError",
    "OutcomeUnknownError",
    "OverloadedError",
    "PermissionDeniedError",
    "RaftcacheError",
    "RequestTooOldError",
    "RetryPolicy",
    "RevisionCompactedError",
    "SlowConsumerError",
    "Subscription",
    "TlsConfig",
    "TooLargeError",
    "TxnResult",
    "UnavailableError",
    "UserInfo",
    "Watch",
    "WatchEvent",
    "WrongTypeError",
    "ops",
]
