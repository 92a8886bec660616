"""Client: the blocking SDK, the same methods as AsyncClient run on a private event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

from raftcache.client._async_client import DEFAULT_TIMEOUT_S, AsyncClient, Item, NodeStatus
from raftcache.client._router import RetryPolicy
from raftcache.client._transport import Transport

T = TypeVar("T")


class Client:
    """Thread-safe blocking client; use `with Client("127.0.0.1:6381") as c: ...`."""

    def __init__(
        self,
        endpoints: str | Sequence[str],
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        retry: RetryPolicy | None = None,
        transport: Transport | None = None,
        client_id: str | None = None,
    ) -> None:
        self._async = AsyncClient(
            endpoints, timeout=timeout, retry=retry, transport=transport, client_id=client_id
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="raftcache-client", daemon=True
        )
        self._thread.start()
        self._closed = False

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if self._closed:
            coroutine.close()
            raise RuntimeError("this Client is closed")
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # e.g. Ctrl-C: do not leave the call running on our loop
            raise

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._run(self._async.close())
        self._closed = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    @property
    def client_id(self) -> str:
        return self._async.client_id

    @property
    def leader(self) -> str | None:
        return self._async.leader

    @property
    def members(self) -> list[str]:
        return self._async.members

    def get(self, key: bytes | str, **kwargs: Any) -> bytes | None:
        """See AsyncClient.get."""
        return self._run(self._async.get(key, **kwargs))

    def get_item(self, key: bytes | str, **kwargs: Any) -> Item | None:
        return self._run(self._async.get_item(key, **kwargs))

    def mget(self, keys: Any, **kwargs: Any) -> list[bytes | None]:
        return self._run(self._async.mget(keys, **kwargs))

    def set(self, key: bytes | str, value: bytes | str, **kwargs: Any) -> int:
        """See AsyncClient.set."""
        return self._run(self._async.set(key, value, **kwargs))

    def delete(self, key: bytes | str, **kwargs: Any) -> bool:
        return self._run(self._async.delete(key, **kwargs))

    def incr(self, key: bytes | str, delta: int = 1, **kwargs: Any) -> int:
        return self._run(self._async.incr(key, delta, **kwargs))

    def mset(self, items: Any, **kwargs: Any) -> list[int]:
        return self._run(self._async.mset(items, **kwargs))

    def cluster_status(self, **kwargs: Any) -> list[NodeStatus]:
        return self._run(self._async.cluster_status(**kwargs))
