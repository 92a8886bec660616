"""A fake grpc.aio ServicerContext for servicer unit tests: records what abort() was given."""

from __future__ import annotations

from typing import Any

import grpc


class Aborted(Exception):
    """Raised by FakeContext.abort, as grpc.aio's abort raises to end the call."""


class FakeContext:
    def __init__(self) -> None:
        self.code: grpc.StatusCode | None = None
        self.details = ""

    def time_remaining(self) -> float:
        return 5.0

    def set_trailing_metadata(self, _metadata: Any) -> None:
        pass

    def invocation_metadata(self) -> list[Any]:
        return []

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.code, self.details = code, details
        raise Aborted
