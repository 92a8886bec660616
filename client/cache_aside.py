"""Cache-aside for query caching, with stampede protection.

`cache_aside(client, key, compute, ttl)` returns the cached value, or computes it,
stores it with a TTL and returns it. When the key is missing, only ONE caller
recomputes it: callers in the same process wait on a per-key lock, and callers in
other processes see a short-lived lock key (`<key>:lock`, taken with an
if-absent set, so the cluster decides the winner) and wait for the fresh value. The
winner reads the key once more after taking the lock: the caller before it may have
stored the value and let the lock go after this one first read the key missing.
A holder that dies releases the lock when its TTL passes (`lock_ttl`). Keep
`lock_ttl` above the computation's duration: a holder whose lock expired still
deletes the lock key when it finishes, which could release another caller's lock.

`@cached(client, ttl=...)` does the same for a function, keyed by its arguments
and storing the result as JSON (pass `encode`/`decode` for other formats).
`AsyncClient` users have `async_cache_aside` and `@async_cached`.
"""

from __future__ import annotations

import asyncio
import functools
import json
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

from raftcache.client._async_client import AsyncClient
from raftcache.client._sync_client import Client
from raftcache.client.errors import ConditionFailedError

P = ParamSpec("P")
R = TypeVar("R")
_POLL_S = 0.02

_thread_locks: weakref.WeakValueDictionary[tuple[int, bytes], threading.Lock] = (
    weakref.WeakValueDictionary()
)
_guard = threading.Lock()


def _key(key: bytes | str) -> bytes:
    return key.encode() if isinstance(key, str) else key


def _thread_lock(client: object, key: bytes) -> threading.Lock:
    with _guard:
        lock = _thread_locks.get((id(client), key))
        if lock is None:
            lock = threading.Lock()
            _thread_locks[(id(client), key)] = lock
        return lock


def cache_aside(
    client: Client,
    key: bytes | str,
    compute: Callable[[], bytes | str],
    ttl: float,
    *,
    lock_ttl: float = 10.0,
    wait: float = 30.0,
) -> bytes:
    """The cached value of key, computing and storing it (TTL `ttl` s) when missing."""
    name = _key(key)
    value = client.get(name)
    if value is not None:
        return value
    with _thread_lock(client, name):
        deadline = time.monotonic() + wait
        while True:
            value = client.get(name)
            if value is not None:
                return value
            try:
                client.set(name + b":lock", client.client_id, ttl=lock_ttl, if_absent=True)
            except ConditionFailedError:
                # Another process is computing it: wait for its value or its lock to go.
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"waited {wait} s for another caller to compute {name!r}"
                    ) from None
                time.sleep(_POLL_S)
                continue
            try:
                # The caller that held the lock before may have stored the value and let
                # the lock go between our read above and our taking it: read again, now
                # that nobody else can be computing.
                value = client.get(name)
                if value is not None:
                    return value
                fresh = compute()
                client.set(name, fresh, ttl=ttl)
                return fresh.encode() if isinstance(fresh, str) else fresh
            finally:
                client.delete(name + b":lock")


_async_locks: weakref.WeakValueDictionary[tuple[int, bytes], asyncio.Lock] = (
    weakref.WeakValueDictionary()
)


async def async_cache_aside(
    client: AsyncClient,
    key: bytes | str,
    compute: Callable[[], Awaitable[bytes | str]],
    ttl: float,
    *,
    lock_ttl: float = 10.0,
    wait: float = 30.0,
) -> bytes:
    """cache_aside for AsyncClient: `compute` is a coroutine function."""
    name = _key(key)
    value = await client.get(name)
    if value is not None:
        return value
    lock = _async_locks.get((id(client), name))
    if lock is None:
        lock = asyncio.Lock()
        _async_locks[(id(client), name)] = lock
    async with lock:
        deadline = time.monotonic() + wait
        while True:
            value = await client.get(name)
            if value is not None:
                return value
            try:
                await client.set(name + b":lock", client.client_id, ttl=lock_ttl, if_absent=True)
            except ConditionFailedError:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"waited {wait} s for another caller to compute {name!r}"
                    ) from None
                await asyncio.sleep(_POLL_S)
                continue
            try:
                value = await client.get(name)  # as in cache_aside: stored before our lock
                if value is not None:
                    return value
                fresh = await compute()
                await client.set(name, fresh, ttl=ttl)
                return fresh.encode() if isinstance(fresh, str) else fresh
            finally:
                await client.delete(name + b":lock")


def _call_key(prefix: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
    return f"{prefix}:{json.dumps([args, sorted(kwargs.items())], default=repr)}".encode()


def cached(
    client: Client,
    *,
    ttl: float,
    prefix: str | None = None,
    encode: Callable[[Any], bytes | str] = json.dumps,
    decode: Callable[[bytes], Any] = json.loads,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorator: cache a function's result per arguments (JSON by default) for `ttl` s."""

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        name = prefix or f"cached:{fn.__module__}.{fn.__qualname__}"

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            key = _call_key(name, args, kwargs)
            raw = cache_aside(client, key, lambda: encode(fn(*args, **kwargs)), ttl)
            result: R = decode(raw)
            return result

        return wrapper

    return decorate


def async_cached(
    client: AsyncClient,
    *,
    ttl: float,
    prefix: str | None = None,
    encode: Callable[[Any], bytes | str] = json.dumps,
    decode: Callable[[bytes], Any] = json.loads,
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """`cached` for coroutine functions and AsyncClient."""

    def decorate(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        name = prefix or f"cached:{fn.__module__}.{fn.__qualname__}"

        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            async def compute() -> bytes | str:
                return encode(await fn(*args, **kwargs))

            raw = await async_cache_aside(client, _call_key(name, args, kwargs), compute, ttl)
            result: R = decode(raw)
            return result

        return wrapper

    return decorate
