"""Calls a user writes, checked by mypy --strict (`make typecheck`), never run: the SDK's
signatures must accept them as they are."""

from __future__ import annotations

from raftcache.client import AsyncClient, Client, TlsConfig, ops


def mixed_str_and_bytes_keys(cache: Client) -> None:
    cache.hset("session:1", {"user": "ann", b"cart:42": "1"})
    cache.zadd("board", {"ann": 10, b"bob": 7.5})
    ops.hset("session:1", {b"user": b"ann", "cart:42": b"1"})
    ops.zadd("board", {b"ann": 1.0, "bob": 2})


def mappings_of_one_key_type(
    cache: Client, by_str: dict[str, str], by_bytes: dict[bytes, bytes]
) -> None:
    cache.hset("h", by_str)
    cache.hset("h", by_bytes)
    cache.mset(by_str)
    cache.mset(by_bytes)
    cache.mset([("a", "1"), (b"b", b"2")])


async def the_async_client_takes_the_same(cache: AsyncClient) -> None:
    await cache.hset("session:1", {"user": "ann", b"cart:42": "1"})
    await cache.zadd("board", {"ann": 10, b"bob": 7.5})


def clients_over_tls() -> None:
    Client("10.0.0.1:6380", tls=TlsConfig(ca_file="ca.crt"))
    AsyncClient(["a:6380", "b:6380"], tls=TlsConfig("ca.crt", "me.crt", "me.key", "cache-0"))
