"""raftcache.client: the Python SDK.

`Client` (blocking) and `AsyncClient` (asyncio) have the same methods: get, get_item,
mget, set, delete, incr, mset; hashes (hset, hget, hgetall, hdel, hincrby, hlen), sorted
sets (zadd, zincrby, zscore, zrank, zrange, zrangebyscore, zrem, zcard, zcount), lists
(lpush, rpush, lpop, rpop, lrange, llen), sets (sadd, srem, smembers, sismember, scard),
expiry (expire, persist, ttl), type, scan_iter, txn (ops and compares from
`raftcache.client.ops`), publish, subscribe, watch, cluster_status; `cache_aside` /
`cached` for query caching. Exceptions are in raftcache.client.errors (hierarchy in its
docstring).
"""

from raftcache.client import ops
from raftcache.client._async_client import AsyncClient, Item, NodeStatus
from raftcache.client._router import RetryPolicy
from raftcache.client._streams import Message, Subscription, Watch, WatchEvent
from raftcache.client._sync_client import BlockingIterator, Client
from raftcache.client._values import TxnResult
from raftcache.client.errors import (
    ConditionFailedError,
    InvalidInputError,
    NotFoundError,
    OutcomeUnknownError,
    OutOfMemoryError,
    OverloadedError,
    RaftcacheError,
    RequestTooOldError,
    RevisionCompactedError,
    SlowConsumerError,
    TooLargeError,
    UnavailableError,
    WrongTypeError,
)

__all__ = [
    "AsyncClient",
    "BlockingIterator",
    "Client",
    "ConditionFailedError",
    "InvalidInputError",
    "Item",
    "Message",
    "NodeStatus",
    "NotFoundError",
    "OutOfMemoryError",
    "OutcomeUnknownError",
    "OverloadedError",
    "RaftcacheError",
    "RequestTooOldError",
    "RetryPolicy",
    "RevisionCompactedError",
    "SlowConsumerError",
    "Subscription",
    "TooLargeError",
    "TxnResult",
    "UnavailableError",
    "Watch",
    "WatchEvent",
    "WrongTypeError",
    "ops",
]
