"""Pub/sub and watch streams on a follower of a real 3-node cluster, through raw gRPC stubs."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine
from typing import Any

import grpc
import pytest
from raftcache.chaos.local_cluster import LocalCluster
from raftcache.v1 import cache_pb2, cache_pb2_grpc

pytestmark = pytest.mark.integration

TIMEOUT = 15.0  # generous: 2 shared cores, three node processes
Kind = cache_pb2.WatchEvent


def run(body: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(body, 4 * TIMEOUT))


def unique(name: str) -> bytes:
    return f"{name}-{uuid.uuid4().hex[:8]}".encode()


def roles(cluster: LocalCluster) -> tuple[int, int, int]:
    """(leader, follower, the other follower)."""
    leader = cluster.wait_for_leader()
    follower, other = [i for i in range(3) if i != leader]
    return leader, follower, other


async def registered(call: Any) -> None:
    """The node registered the stream once it sent the call's initial metadata."""
    try:
        await asyncio.wait_for(call.initial_metadata(), TIMEOUT)
    except TimeoutError:
        raise AssertionError(
            "no initial metadata before the first message: the servicer must send it once "
            "the stream is registered (Streams.subscribe/watch `ready`)"
        ) from None


def open_streams(cluster: LocalCluster, node: int) -> tuple[int, int]:
    """(subscribers, watchers) open on a node, as its Status reports them (blocking)."""
    status = cluster.status(node, timeout=TIMEOUT)
    assert status is not None, f"node {node} did not answer Status"
    return status.subscribers, status.watchers


async def until_closed(cluster: LocalCluster, node: int) -> None:
    """Cancelled streams are forgotten by the node (their registrations are dropped)."""
    for _ in range(int(TIMEOUT / 0.05)):
        if open_streams(cluster, node) == (0, 0):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"node {node} still reports streams: {open_streams(cluster, node)}")


async def read(call: Any, count: int) -> list[Any]:
    return [await asyncio.wait_for(call.read(), TIMEOUT) for _ in range(count)]


def test_subscriber_on_a_follower_gets_messages_from_another_node_in_order(
    cluster: LocalCluster,
) -> None:
    _, follower, other = roles(cluster)
    channel = unique("news")

    async def body() -> None:
        async with (
            grpc.aio.insecure_channel(cluster.nodes[follower].client_addr) as sub_channel,
            grpc.aio.insecure_channel(cluster.nodes[other].client_addr) as pub_channel,
        ):
            subscribe = cache_pb2_grpc.CacheStub(sub_channel).Subscribe
            exact = subscribe(cache_pb2.SubscribeRequest(channels=[channel]))
            pattern = subscribe(cache_pb2.SubscribeRequest(patterns=[channel[:-3] + b"*"]))
            await registered(exact)
            await registered(pattern)
            assert open_streams(cluster, follower) == (2, 0)
            publish = cache_pb2_grpc.CacheStub(pub_channel).Publish
            sent = [b"message %d" % i for i in range(30)]
            for message in sent:
                request = cache_pb2.PublishRequest(channel=channel, message=message)
                await publish(request, timeout=TIMEOUT)
            assert [m.message for m in await read(exact, len(sent))] == sent
            got = await read(pattern, len(sent))
            assert [m.message for m in got] == sent
            assert {(m.channel, m.pattern) for m in got} == {(channel, channel[:-3] + b"*")}
            exact.cancel()
            pattern.cancel()
            await until_closed(cluster, follower)

    run(body())


def test_publish_counts_the_leaders_subscribers_and_every_node_delivers(
    cluster: LocalCluster,
) -> None:
    """What README promises: `receivers` is the leader's count; the others hear it too."""
    leader, follower, other = roles(cluster)
    channel = unique("counted")

    async def body() -> None:
        channels = [grpc.aio.insecure_channel(node.client_addr) for node in cluster.nodes]
        try:
            calls = [
                cache_pb2_grpc.CacheStub(c).Subscribe(
                    cache_pb2.SubscribeRequest(channels=[channel])
                )
                for c in channels
            ]
            for call in calls:
                await registered(call)
            for publisher in (leader, follower):  # a follower forwards: still the leader's
                publish = cache_pb2_grpc.CacheStub(channels[publisher]).Publish
                request = cache_pb2.PublishRequest(channel=channel, message=b"hi")
                assert (await publish(request, timeout=TIMEOUT)).receivers == 1
            for call in calls:
                assert [m.message for m in await read(call, 2)] == [b"hi", b"hi"]
                call.cancel()
            await until_closed(cluster, other)
        finally:
            for c in channels:
                await c.close()

    run(body())


def test_bad_subscribe_is_invalid_argument(cluster: LocalCluster) -> None:
    async def body() -> None:
        async with grpc.aio.insecure_channel(cluster.nodes[0].client_addr) as channel:
            call = cache_pb2_grpc.CacheStub(channel).Subscribe(cache_pb2.SubscribeRequest())
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await asyncio.wait_for(call.read(), TIMEOUT)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "at least one channel or pattern" in (caught.value.details() or "")

    run(body())


def test_watch_on_a_follower_sees_changes_and_resumes_after_reconnect(
    cluster: LocalCluster,
) -> None:
    leader, follower, _ = roles(cluster)
    prefix = unique("watched") + b":"

    async def body() -> None:
        async with (
            grpc.aio.insecure_channel(cluster.nodes[follower].client_addr) as watch_channel,
            grpc.aio.insecure_channel(cluster.nodes[leader].client_addr) as write_channel,
        ):
            watch = cache_pb2_grpc.CacheStub(watch_channel).Watch
            cache = cache_pb2_grpc.CacheStub(write_channel)
            first = watch(cache_pb2.WatchRequest(key=prefix, prefix=True))
            await registered(first)
            await cache.Set(cache_pb2.SetRequest(key=prefix + b"a", value=b"1"), timeout=TIMEOUT)
            await cache.Set(cache_pb2.SetRequest(key=b"elsewhere", value=b"x"), timeout=TIMEOUT)
            await cache.Set(cache_pb2.SetRequest(key=prefix + b"b", value=b"2"), timeout=TIMEOUT)
            await cache.Delete(cache_pb2.DeleteRequest(key=prefix + b"a"), timeout=TIMEOUT)
            seen = await read(first, 3)
            assert [(e.kind, e.key, e.value) for e in seen] == [
                (Kind.SET, prefix + b"a", b"1"),
                (Kind.SET, prefix + b"b", b"2"),
                (Kind.DELETE, prefix + b"a", b""),
            ]
            assert seen[0].revision < seen[1].revision < seen[2].revision
            first.cancel()  # the client goes away after the first event ...

            # ... and changes continue while it has no stream.
            await cache.Set(cache_pb2.SetRequest(key=prefix + b"c", value=b"3"), timeout=TIMEOUT)
            again = watch(
                cache_pb2.WatchRequest(key=prefix, prefix=True, start_revision=seen[0].revision)
            )
            await registered(again)
            await cache.Set(cache_pb2.SetRequest(key=prefix + b"d", value=b"4"), timeout=TIMEOUT)
            resumed = await read(again, 4)
            assert [(e.kind, e.key) for e in resumed] == [
                (Kind.SET, prefix + b"b"),
                (Kind.DELETE, prefix + b"a"),
                (Kind.SET, prefix + b"c"),
                (Kind.SET, prefix + b"d"),
            ]
            assert [e.revision for e in resumed[:2]] == [e.revision for e in seen[1:]]
            assert resumed[1].revision < resumed[2].revision < resumed[3].revision
            again.cancel()
            await until_closed(cluster, follower)

    run(body())


def test_watch_from_a_revision_ahead_of_the_cluster(cluster: LocalCluster) -> None:
    """The leader under its lease knows the revision came from no watch: INVALID_ARGUMENT at
    once. A follower cannot tell it from one it has not applied yet: it waits a moment
    (node/streams.py CATCH_UP_S), then answers UNAVAILABLE, so the SDK tries the next."""
    leader, follower, _ = roles(cluster)

    async def ahead(node: int) -> grpc.aio.AioRpcError:
        async with grpc.aio.insecure_channel(cluster.nodes[node].client_addr) as channel:
            request = cache_pb2.WatchRequest(key=b"k", start_revision=1 << 60)
            call = cache_pb2_grpc.CacheStub(channel).Watch(request)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await asyncio.wait_for(call.read(), TIMEOUT)
            return caught.value

    async def body() -> None:
        # The leader's lease can lapse for a moment on a loaded machine (then it, too, waits
        # and answers UNAVAILABLE): it must refuse within a few tries, and never otherwise.
        for _ in range(5):
            refused = await ahead(leader)
            if refused.code() != grpc.StatusCode.UNAVAILABLE:
                break
        assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT, refused.details()
        assert "ahead of this node's revision" in (refused.details() or "")
        behind = await ahead(follower)
        assert behind.code() == grpc.StatusCode.UNAVAILABLE
        assert "did not reach it within 0.5 s" in (behind.details() or "")

    run(body())
