"""The one table from domain errors to Redis error replies."""

from __future__ import annotations

from raftcache.node import errors
from raftcache.node.keyspace.reply import OOM, WRONGTYPE, Error

# Retryable unavailability is CLUSTERDOWN: cluster-aware clients (redis-py RedisCluster,
# redis-cli -c) retry it; plain clients see a clear error instead of a hang.
_PREFIX: dict[type[errors.CacheError], str] = {
    errors.NotLeader: "CLUSTERDOWN",
    errors.NoLeader: "CLUSTERDOWN",
    errors.TooStale: "CLUSTERDOWN",
    errors.Overloaded: "TRYAGAIN",
    errors.OutcomeUnknown: "UNKNOWN",
    errors.RequestTooOld: "UNKNOWN",
    errors.InvalidInput: "ERR",
    errors.ConditionFailed: "ERR",
    errors.TooLarge: "ERR",
    errors.SlowConsumer: "ERR",
    errors.RevisionCompacted: "ERR",
    errors.Unauthenticated: "NOAUTH",
    errors.PermissionDenied: "NOPERM",
}


def error_reply(error: errors.CacheError) -> Error:
    """The Redis error for a domain error; the text says what happened and what to do."""
    if isinstance(error, errors.OutOfMemory):
        return Error(OOM)
    if isinstance(error, errors.WrongType):
        return Error(WRONGTYPE)
    text = str(error)
    if isinstance(error, errors.InvalidInput) and text[:4] in ("ERR ", "WRON", "OOM "):
        return Error(text)  # already a Redis error text (a command refused before proposing)
    prefix = _PREFIX.get(type(error), "ERR")
    if isinstance(error, errors.OutcomeUnknown) and not text.startswith("outcome unknown"):
        text = f"outcome unknown: {text}"
    return Error(f"{prefix} {text}")
