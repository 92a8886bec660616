"""Cache-aside with stampede protection on a real cluster."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from raftcache.chaos.local_cluster import LocalCluster
from raftcache.client import AsyncClient, Client
from raftcache.client.cache_aside import async_cache_aside, cache_aside, cached

from tests.integration.conftest import start_cluster

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    cluster: LocalCluster = start_cluster(Path(tmp_path_factory.mktemp("aside")))
    try:
        yield cluster.nodes[0].client_addr
    finally:
        cluster.close()


def test_only_one_of_many_concurrent_callers_recomputes_a_missing_key(seed: str) -> None:
    calls: list[int] = []
    # Two clients stand in for two processes: they share no in-process lock.
    clients = [Client(seed), Client(seed)]
    results: list[bytes] = []
    start = threading.Barrier(16)

    def compute() -> str:
        calls.append(1)
        time.sleep(0.3)  # slow query: the others arrive while it runs
        return "expensive result"

    def caller(i: int) -> None:
        start.wait()
        results.append(cache_aside(clients[i % 2], "aside:q1", compute, ttl=30))

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in clients:
        c.close()
    assert len(calls) == 1
    assert results == [b"expensive result"] * 16


class _FinishesFirst:
    """A client on which another process finishes computing `key` (stores the value and
    lets its lock go) just before this one takes the lock: after this caller read the key
    missing. CI's slow host made this interleaving happen (two computations of 16 callers)."""

    def __init__(self, client: Client, other: Client, key: bytes) -> None:
        self._client, self._other, self._key = client, other, key
        self.client_id = client.client_id

    def get(self, key: bytes) -> bytes | None:
        return self._client.get(key)

    def set(self, key: bytes, value: bytes, **kwargs: object) -> int:
        if key == self._key + b":lock":
            self._other.set(self._key, b"the other's result", ttl=30)
        return self._client.set(key, value, **kwargs)  # type: ignore[arg-type]

    def delete(self, key: bytes) -> bool:
        return self._client.delete(key)


def test_a_value_stored_just_before_the_lock_is_taken_is_not_recomputed(seed: str) -> None:
    calls: list[int] = []

    def compute() -> str:
        calls.append(1)
        return "recomputed"

    with Client(seed) as client, Client(seed) as other:
        racing = _FinishesFirst(client, other, b"aside:race")
        result = cache_aside(racing, "aside:race", compute, ttl=30)  # type: ignore[arg-type]
        assert (result, calls) == (b"the other's result", [])
        assert client.get("aside:race:lock") is None  # this caller let its lock go


def test_async_cache_aside_reads_again_once_it_holds_the_lock(seed: str) -> None:
    async def run() -> None:
        calls: list[int] = []

        async def compute() -> str:
            calls.append(1)
            return "recomputed"

        async with AsyncClient(seed) as client, AsyncClient(seed) as other:
            set_lock = client.set

            async def set_after_the_other(key: bytes, value: bytes, **kwargs: object) -> int:
                if key == b"aside:arace:lock":
                    await other.set(b"aside:arace", b"the other's result", ttl=30)
                return await set_lock(key, value, **kwargs)  # type: ignore[arg-type]

            client.set = set_after_the_other  # type: ignore[method-assign]
            result = await async_cache_aside(client, "aside:arace", compute, ttl=30)
            assert (result, calls) == (b"the other's result", [])
            assert await other.get("aside:arace:lock") is None

    asyncio.run(run())


def test_a_cached_value_expires_and_is_recomputed(seed: str) -> None:
    calls: list[int] = []
    with Client(seed) as client:

        @cached(client, ttl=0.3)
        def square(n: int) -> dict[str, int]:
            calls.append(n)
            return {"n": n, "square": n * n}

        assert square(7) == {"n": 7, "square": 49}
        assert square(7) == {"n": 7, "square": 49}
        assert square(8)["square"] == 64
        assert calls == [7, 8]
        time.sleep(0.6)
        assert square(7)["square"] == 49
        assert calls == [7, 8, 7]


def test_a_failing_computation_releases_the_lock(seed: str) -> None:
    with Client(seed) as client:

        def broken() -> str:
            raise ValueError("database down")

        with pytest.raises(ValueError):
            cache_aside(client, "aside:broken", broken, ttl=30)
        assert client.get("aside:broken:lock") is None
        assert cache_aside(client, "aside:broken", lambda: "ok now", ttl=30) == b"ok now"


def test_async_cache_aside_computes_once(seed: str) -> None:
    calls: list[int] = []

    async def main() -> list[bytes]:
        async with AsyncClient(seed) as client:

            async def compute() -> bytes:
                calls.append(1)
                await asyncio.sleep(0.2)
                return b"async result"

            return await asyncio.gather(
                *(async_cache_aside(client, "aside:async", compute, ttl=30) for _ in range(20))
            )

    assert asyncio.run(main()) == [b"async result"] * 20
    assert len(calls) == 1
