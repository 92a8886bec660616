"""The one table from domain errors to gRPC status codes."""

from __future__ import annotations

import inspect

import grpc
from raftcache.node import errors, status_codes
from raftcache.node.state_machine import ErrorCode, Failure


def test_every_domain_error_has_a_status_code() -> None:
    classes = {
        cls
        for _name, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.CacheError) and cls is not errors.CacheError
    }
    assert classes == set(status_codes.STATUS_CODES)
    assert set(ErrorCode) == set(status_codes.FAILURES)


def test_a_request_id_older_than_the_window_is_final_not_deadline_exceeded() -> None:
    error = status_codes.from_failure(Failure(ErrorCode.REQUEST_TOO_OLD, "c/1 is too old"))
    assert type(error) is errors.RequestTooOld
    assert isinstance(error, errors.OutcomeUnknown) and not error.retriable
    # DEADLINE_EXCEEDED is what clients retry with the same id until their deadline.
    assert status_codes.STATUS_CODES[errors.RequestTooOld] is grpc.StatusCode.ABORTED
