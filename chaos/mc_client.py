"""A memcached client for the chaos workloads: pymemcache, one attempt per command on one
node picked at random, its outcome classified by what the node's memcached port promises:

- connecting fails, or `SERVER_ERROR unavailable: ...` / `SERVER_ERROR busy: ...` ->
  McFailed: nothing was applied;
- `SERVER_ERROR outcome unknown: ...`, or the connection breaks, closes or times out
  after the command was sent -> McUnknown: it may or may not have been applied;
- any other error -> McUnexpected: outside the port's contract (a run problem).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from pymemcache.client.base import Client
from pymemcache.exceptions import MemcacheServerError, MemcacheUnexpectedCloseError


class McFailed(Exception):
    """The command was definitely not applied."""


class McUnknown(Exception):
    """The command may or may not have been applied."""


class McUnexpected(Exception):
    """An error outside the documented ones (a bug in the front-end)."""


def classify_server_error(text: str) -> type[Exception]:
    """The outcome class of a SERVER_ERROR's text (after the `SERVER_ERROR ` word)."""
    if text.startswith(("unavailable:", "busy:")):
        return McFailed
    if text.startswith("outcome unknown"):
        return McUnknown
    return McUnexpected


class McNodes:
    """One lazily connected pymemcache client per node; each command goes to a random one."""

    def __init__(self, endpoints: Sequence[str], *, timeout_s: float, rng: random.Random) -> None:
        if not endpoints:
            raise ValueError("need at least one memcached endpoint")
        self._rng = rng
        self._clients: list[Any] = []
        for endpoint in endpoints:
            host, _, port = endpoint.rpartition(":")
            self._clients.append(
                Client(
                    (host.strip("[]"), int(port)),
                    connect_timeout=timeout_s,
                    timeout=timeout_s,
                    default_noreply=False,  # an acknowledged write must be known as one
                )
            )

    def call(self, method: str, *args: Any) -> Any:
        """`client.<method>(*args)` on a random node, failures classified (module doc)."""
        client = self._rng.choice(self._clients)
        fn: Callable[..., Any] = getattr(client, method)
        if client.sock is None:
            try:
                client._connect()
            except OSError as exc:
                client.close()
                raise McFailed(f"connect: {exc}") from None
        try:
            return fn(*args)
        except MemcacheUnexpectedCloseError:  # a SERVER_ERROR subclass: the node went away
            client.close()
            raise McUnknown(f"{method}: the connection closed before the reply") from None
        except MemcacheServerError as exc:
            raw = exc.args[0] if exc.args else b""
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            raise classify_server_error(text)(text) from None
        except (TimeoutError, OSError) as exc:
            client.close()  # the reply may be late: never read it as another command's
            raise McUnknown(f"{method}: {exc!r}") from None
        except Exception as exc:  # pymemcache's own errors: unexpected replies
            client.close()
            raise McUnexpected(f"{method}: {exc!r}") from None

    def close(self) -> None:
        for client in self._clients:
            client.close()
