"""The SDK's exceptions; each says whether retrying can help.

RaftcacheError
├── InvalidInputError      the request is malformed or over a limit (retriable: no)
├── ConditionFailedError   if-absent / if-present / expected version / not an integer
│   │                      did not hold; nothing changed (retriable: no)
│   └── WrongTypeError     the key holds another type than the op needs, e.g. HGET on a
│                          list; the message names both (retriable: no)
├── NotFoundError          the key does not exist (ttl of a missing key) (retriable: no)
├── TooLargeError          the request or the answer is over the message size limit;
│                          nothing was applied (retriable: no)
├── OutOfMemoryError       the write would exceed the cluster's --max-memory and nothing can
│                          be evicted; nothing changed (retriable: no, until keys go)
├── RevisionCompactedError a watch asked to resume from a revision the node no longer
│                          retains: re-read the state, then watch from now (retriable: no)
├── SlowConsumerError      a subscriber fell too far behind and the node ended it; messages
│                          in between are lost (retriable: yes, by subscribing again)
├── UnavailableError       no leader or no member answered before the deadline;
│                          nothing was applied (retriable: yes)
├── OverloadedError        the node's queue is full; nothing was applied (retriable: yes)
├── AuthenticationError    the call's credentials (user=/password=, RAFTCACHE_USER /
│                          RAFTCACHE_PASSWORD) are wrong, the user is off or deleted, or
│                          the cluster needs credentials and none were given (retriable: no)
├── PermissionDeniedError  the user may not run the command or touch a key or channel it
│                          names (its ACL rules); nothing was applied (retriable: no)
└── OutcomeUnknownError    a write may or may not have been applied, and the deadline
    │                      passed before it could be settled (retriable: only with the
    │                      same request id, which `request_id` carries)
    └── RequestTooOldError the cluster no longer remembers `request_id` (it has left the
                           dedup window), so no retry can settle the outcome; raised at
                           once: re-read the state before writing again (retriable: no)
"""

from __future__ import annotations


class RaftcacheError(Exception):
    """Base of every error the SDK raises."""

    retriable = False


class InvalidInputError(RaftcacheError):
    pass


class ConditionFailedError(RaftcacheError):
    pass


class WrongTypeError(ConditionFailedError):
    pass


class NotFoundError(RaftcacheError):
    pass


class TooLargeError(RaftcacheError):
    pass


class OutOfMemoryError(RaftcacheError):
    pass


class RevisionCompactedError(RaftcacheError):
    pass


class SlowConsumerError(RaftcacheError):
    retriable = True


class UnavailableError(RaftcacheError):
    retriable = True


class OverloadedError(RaftcacheError):
    retriable = True


class AuthenticationError(RaftcacheError):
    pass


class PermissionDeniedError(RaftcacheError):
    pass


class OutcomeUnknownError(RaftcacheError):
    retriable = True

    def __init__(self, message: str, request_id: tuple[str, int] | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id


class RequestTooOldError(OutcomeUnknownError):
    retriable = False
