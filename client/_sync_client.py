"""Client: the blocking SDK, the same methods as AsyncClient run on a private event loop."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar, Unpack

from raftcache.client._async_client import (
    DEFAULT_TIMEOUT_S,
    AsyncClient,
    Item,
    MemberInfo,
    Membership,
    NodeStatus,
    UserInfo,
)
from raftcache.client._pipeline import PipelinedTransport
from raftcache.client._router import RetryPolicy
from raftcache.client._streams import Message, WatchEvent
from raftcache.client._transport import TlsConfig, Transport
from raftcache.client._typed import ReadOptions
from raftcache.client._values import Key
from raftcache.node.backup_file import BackupInfo

T = TypeVar("T")
P = ParamSpec("P")


class BlockingIterator(Iterator[T]):
    """A blocking view of one of the client's async iterators (scan, subscribe, watch);
    `close()` it, or use it as a context manager, to stop early."""

    def __init__(self, source: Any, run: Callable[[Coroutine[Any, Any, Any]], Any]) -> None:
        self._source = source
        self._run = run
        self._done = False

    def __next__(self) -> T:
        if self._done:
            raise StopIteration
        try:
            item: T = self._run(self._source.__anext__())
        except StopAsyncIteration:
            self._done = True
            raise StopIteration from None
        return item

    def __enter__(self) -> BlockingIterator[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if not self._done:
            self._done = True
            self._run(self._source.aclose())

    @property
    def source(self) -> Any:
        """The async iterator underneath (e.g. a Watch, for its `revision`)."""
        return self._source


def _blocking(
    method: Callable[Concatenate[AsyncClient, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[Client, P], T]:
    """The blocking twin of an AsyncClient method: same parameters, same docstring."""

    def call(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._run(method(self._async, *args, **kwargs))

    call.__name__ = method.__name__
    call.__qualname__ = f"Client.{method.__name__}"
    call.__doc__ = method.__doc__
    return call


def _run_forever(loop: asyncio.AbstractEventLoop) -> None:
    """The client's loop thread. It blocks SIGINT (threads started from it inherit that), so
    the kernel hands Ctrl-C to the main thread: one taken by another thread does not wake the
    main thread from waiting on a call's result, which then waited out the call's deadline."""
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    loop.run_forever()


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
        auto_pipeline: bool = True,
        tls: TlsConfig | None = None,
        user: str | None = None,
        password: str | None = None,
    ) -> None:
        """See AsyncClient (`user`/`password`: credentials sent with every call): concurrent
        calls from several threads are auto-pipelined too."""
        self._async = AsyncClient(
            endpoints,
            timeout=timeout,
            retry=retry,
            transport=transport,
            client_id=client_id,
            auto_pipeline=auto_pipeline,
            tls=tls,
            user=user,
            password=password,
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=_run_forever, args=(self._loop,), name="raftcache-client", daemon=True
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
    def pipeline(self) -> PipelinedTransport | None:
        """The auto-pipelining transport (its `stats`), or None when switched off."""
        return self._async.pipeline

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

    def set_user(self, name: str, *rules: str, **kwargs: Any) -> None:
        """Create or change a user with ACL SETUSER rules (see AsyncClient.set_user)."""
        self._run(self._async.set_user(name, *rules, **kwargs))

    def delete_users(self, *names: str, **kwargs: Any) -> int:
        return self._run(self._async.delete_users(*names, **kwargs))

    def list_users(self, **kwargs: Any) -> list[str]:
        return self._run(self._async.list_users(**kwargs))

    def get_user(self, name: str, **kwargs: Any) -> UserInfo | None:
        return self._run(self._async.get_user(name, **kwargs))

    def whoami(self, **kwargs: Any) -> str:
        return self._run(self._async.whoami(**kwargs))

    def cluster_status(self, **kwargs: Any) -> list[NodeStatus]:
        return self._run(self._async.cluster_status(**kwargs))

    def backup(self, path: str, **kwargs: Any) -> BackupInfo:
        return self._run(self._async.backup(path, **kwargs))

    def membership(self, **kwargs: Any) -> Membership:
        return self._run(self._async.membership(**kwargs))

    def add_member(self, raft_addr: str, **kwargs: Any) -> Membership:
        return self._run(self._async.add_member(raft_addr, **kwargs))

    def remove_member(self, member: str, **kwargs: Any) -> Membership:
        return self._run(self._async.remove_member(member, **kwargs))

    def wait_caught_up(self, member: str, **kwargs: Any) -> MemberInfo:
        return self._run(self._async.wait_caught_up(member, **kwargs))

    def transfer_leadership(self, target: str = "", **kwargs: Any) -> str:
        return self._run(self._async.transfer_leadership(target, **kwargs))

    # Typed values, transactions, pub/sub: see the AsyncClient methods of the same name.
    hset = _blocking(AsyncClient.hset)
    hget = _blocking(AsyncClient.hget)
    hgetall = _blocking(AsyncClient.hgetall)
    hdel = _blocking(AsyncClient.hdel)
    hincrby = _blocking(AsyncClient.hincrby)
    hlen = _blocking(AsyncClient.hlen)
    zadd = _blocking(AsyncClient.zadd)
    zincrby = _blocking(AsyncClient.zincrby)
    zscore = _blocking(AsyncClient.zscore)
    zrank = _blocking(AsyncClient.zrank)
    zrange = _blocking(AsyncClient.zrange)
    zrangebyscore = _blocking(AsyncClient.zrangebyscore)
    zrem = _blocking(AsyncClient.zrem)
    zcard = _blocking(AsyncClient.zcard)
    zcount = _blocking(AsyncClient.zcount)
    lpush = _blocking(AsyncClient.lpush)
    rpush = _blocking(AsyncClient.rpush)
    lpop = _blocking(AsyncClient.lpop)
    rpop = _blocking(AsyncClient.rpop)
    lrange = _blocking(AsyncClient.lrange)
    llen = _blocking(AsyncClient.llen)
    sadd = _blocking(AsyncClient.sadd)
    srem = _blocking(AsyncClient.srem)
    smembers = _blocking(AsyncClient.smembers)
    sismember = _blocking(AsyncClient.sismember)
    scard = _blocking(AsyncClient.scard)
    expire = _blocking(AsyncClient.expire)
    persist = _blocking(AsyncClient.persist)
    ttl = _blocking(AsyncClient.ttl)
    txn = _blocking(AsyncClient.txn)
    publish = _blocking(AsyncClient.publish)

    def scan_iter(
        self, prefix: Key = b"", count: int = 100, **options: Unpack[ReadOptions]
    ) -> BlockingIterator[bytes]:
        """See AsyncClient.scan_iter."""
        return BlockingIterator(self._async.scan_iter(prefix, count, **options), self._run)

    def subscribe(
        self, channels: Iterable[Key] = (), patterns: Iterable[Key] = (),
        *, timeout: float | None = None,
    ) -> BlockingIterator[Message]:  # fmt: skip
        """See AsyncClient.subscribe; iterate the result, `close()` it when done."""
        subscription = self._run(self._async.subscribe(channels, patterns, timeout=timeout))
        return BlockingIterator(subscription, self._run)

    def watch(
        self, key: Key, *, prefix: bool = False, start_revision: int = 0,
        timeout: float | None = None,
    ) -> BlockingIterator[WatchEvent]:  # fmt: skip
        """See AsyncClient.watch; iterate the result, `close()` it when done."""
        watch = self._async.watch(
            key, prefix=prefix, start_revision=start_revision, timeout=timeout
        )
        return BlockingIterator(self._run(watch), self._run)

    type = _blocking(AsyncClient.type)  # last: the name shadows the builtin in this class
