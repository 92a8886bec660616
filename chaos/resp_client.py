"""A Redis client for the chaos workloads: one attempt per command, its outcome classified.

redis-py's own retries would resend a write whose outcome is unknown (an RPUSH applied
twice), so every command here is one attempt on one connection to a node picked at
random, and its failure is sorted by what the node's Redis port promises:

- connecting fails, or a ``CLUSTERDOWN`` (no leader) / ``TRYAGAIN`` (overloaded) error
  reply -> RespFailed: nothing was applied;
- an ``UNKNOWN`` error reply, or the connection breaks or times out after the command
  was sent -> RespUnknown: it may or may not have been applied;
- any other error reply -> RespUnexpected: the front-end answered something its contract
  does not allow for these commands (reported as a run problem, never hidden).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.exceptions import ClusterDownError, TryAgainError
from redis.retry import Retry

# redis-py leaves these untyped; held as Any so mypy --strict accepts the calls.
_Connection: Any = redis.Connection

FAIL_CODES = frozenset({"CLUSTERDOWN", "TRYAGAIN"})
UNKNOWN_CODES = frozenset({"UNKNOWN"})


class RespFailed(Exception):
    """The command was definitely not applied."""


class RespUnknown(Exception):
    """The command may or may not have been applied."""


class RespUnexpected(Exception):
    """An error reply outside the documented ones (a bug in the front-end)."""


def classify_error_reply(text: str) -> type[Exception]:
    """The outcome class of an error reply, by its first word (its Redis error code; redis-py
    keeps it in the text unless it maps the code to an exception class of its own)."""
    code = text.split(" ", 1)[0]
    if code in FAIL_CODES:
        return RespFailed
    if code in UNKNOWN_CODES:
        return RespUnknown
    return RespUnexpected


class RespNodes:
    """One lazily opened connection per node; each command goes to a random node."""

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        protocol: int,
        timeout_s: float,
        rng: random.Random,
    ) -> None:
        if not endpoints:
            raise ValueError("need at least one Redis endpoint")
        self._rng = rng
        self._conns: list[Any] = []
        for endpoint in endpoints:
            host, _, port = endpoint.rpartition(":")
            self._conns.append(
                _Connection(
                    host=host.strip("[]"),
                    port=int(port),
                    protocol=protocol,
                    socket_timeout=timeout_s,
                    socket_connect_timeout=timeout_s,
                    retry=Retry(NoBackoff(), 0),
                    decode_responses=True,
                )
            )

    def call(self, *args: str | int) -> Any:
        """Run one command on a random node; raises RespFailed, RespUnknown or RespUnexpected."""
        conn = self._rng.choice(self._conns)
        self._connect(conn)
        try:
            conn.send_command(*args)
            reply = conn.read_response()
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            conn.disconnect()
            raise RespUnknown(f"{args[0]} on {_addr(conn)}: {exc}") from exc
        except (ClusterDownError, TryAgainError) as exc:  # redis-py strips these codes
            raise RespFailed(f"{args[0]} on {_addr(conn)}: {type(exc).__name__} {exc}") from exc
        except redis.ResponseError as exc:
            raise classify_error_reply(str(exc))(f"{args[0]} on {_addr(conn)}: {exc}") from exc
        return reply

    def _connect(self, conn: Any) -> None:
        """Connect (or reconnect a connection the server closed) before sending anything."""
        if conn._sock is not None:
            try:
                stale = conn.can_read(timeout=0)  # EOF or stray bytes: start afresh
            except (redis.ConnectionError, OSError):
                stale = True
            if stale:
                conn.disconnect()
        try:
            conn.connect()
        except (redis.RedisError, OSError) as exc:
            conn.disconnect()
            raise RespFailed(f"connecting to {_addr(conn)}: {exc}") from exc

    def close(self) -> None:
        for conn in self._conns:
            conn.disconnect()


def _addr(conn: Any) -> str:
    return f"{conn.host}:{conn.port}"
