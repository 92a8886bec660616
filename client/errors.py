"""The SDK's exceptions; each says whether retrying can help.

RaftcacheError
├── InvalidInputError     the request is malformed or over a limit (retriable: no)
├── ConditionFailedError  if-absent / if-present / expected version / not an integer
│                         did not hold; nothing changed (retriable: no)
├── TooLargeError         the answer would exceed the message limit (retriable: no)
├── UnavailableError      no leader or no member answered before the deadline;
│                         nothing was applied (retriable: yes)
├── OverloadedError       the node's queue is full; nothing was applied (retriable: yes)
└── OutcomeUnknownError   a write may or may not have been applied, and the deadline
                          passed before it could be settled (retriable: only with the
                          same request id, which `request_id` carries)
"""

from __future__ import annotations


class RaftcacheError(Exception):
    """Base of every error the SDK raises."""

    retriable = False


class InvalidInputError(RaftcacheError):
    pass


class ConditionFailedError(RaftcacheError):
    pass


class TooLargeError(RaftcacheError):
    pass


class UnavailableError(RaftcacheError):
    retriable = True


class OverloadedError(RaftcacheError):
    retriable = True


class OutcomeUnknownError(RaftcacheError):
    retriable = True

    def __init__(self, message: str, request_id: tuple[str, int] | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id
