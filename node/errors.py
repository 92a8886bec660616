"""Domain errors of a node; each says whether the client may safely retry.

CacheError
├── InvalidInput        bad request; retrying the same request cannot help
├── ConditionFailed     a condition or a value's type did not hold (state-dependent)
│   └── WrongType       the key holds another type than the op works on
├── NotLeader           this node is not the leader; `leader_addr` says who is (retry there)
├── NoLeader            no leader is known right now (retry after a short wait)
├── TooStale            this replica cannot prove it is within max_staleness_ms (try another)
├── Overloaded          too many writes queued on this node (retry later)
├── OutOfMemory         a write would exceed --max-memory (noeviction, or nothing evictable)
├── SlowConsumer        a subscriber fell too far behind and was disconnected
├── RevisionCompacted   a watch asked to resume before the retained window (re-read, then watch)
├── Unauthenticated     no credentials, or wrong ones, where the users require them
├── PermissionDenied    the caller's user may not run this command or use these keys/channels
└── OutcomeUnknown      the write may or may not have applied (retry with the same request id)
    └── RequestTooOld   a retried request id has left the dedup window: its outcome can no
                        longer be settled (final: re-read the state before writing again)
"""

from __future__ import annotations


class CacheError(Exception):
    """Base of every error a node answers with."""

    retriable = False


class InvalidInput(CacheError):
    """The request is malformed or over a limit; nothing was changed."""


class ConditionFailed(CacheError):
    """A condition on the current state did not hold; nothing was changed."""


class WrongType(ConditionFailed):
    """The key holds another type (a hash, a list, ...) than the op works on."""


class NotLeader(CacheError):
    """This node cannot serve the request because another node leads."""

    retriable = True

    def __init__(self, message: str, leader_addr: str) -> None:
        super().__init__(message)
        self.leader_addr = leader_addr


class NoLeader(CacheError):
    retriable = True


class TooStale(CacheError):
    retriable = True


class Overloaded(CacheError):
    retriable = True


class TooLarge(CacheError):
    """The response would be larger than the node may send; nothing was changed."""


class OutOfMemory(CacheError):
    """The write would take the accounted memory over --max-memory; nothing was changed."""


class SlowConsumer(CacheError):
    """A stream's reader fell behind its buffer limit; it was ended to bound memory."""


class RevisionCompacted(CacheError):
    """A watch resume point is older than what this node retains."""


class Unauthenticated(CacheError):
    """The call carried no valid credentials while the default user needs a password."""

    delay_s = 0.0  # how long the answer waits (repeated wrong passwords: node/auth.py)


class PermissionDenied(CacheError):
    """The caller's user may not run the command, or touch a key or channel it names."""


class OutcomeUnknown(CacheError):
    retriable = True


class RequestTooOld(OutcomeUnknown):
    """A request id older than the results remembered for its client: it may have applied,
    and no retry can tell any more."""

    retriable = False
