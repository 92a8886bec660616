"""AsyncClient: the asyncio SDK. `Client` (blocking) wraps it with the same methods."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, Unpack

from raftcache.client import errors
from raftcache.client._pipeline import PipelinedTransport
from raftcache.client._router import (
    READ_LEADER,
    READ_STALE,
    WRITE,
    RetryPolicy,
    Router,
    final_error,
)
from raftcache.client._streams import StreamOpener, Subscription, Watch
from raftcache.client._transport import (
    CallFailed,
    GrpcTransport,
    TlsConfig,
    Transport,
    credentials_metadata,
)
from raftcache.client._typed import ReadOptions, TypedMethods
from raftcache.client._values import Compare, Key, Op, TxnResult, Value, all_bytes
from raftcache.client._values import to_bytes as _bytes
from raftcache.client._values import ttl_ms as _ttl_ms
from raftcache.node import backup_file
from raftcache.node.backup_file import BackupInfo
from raftcache.v1 import cache_pb2, cluster_pb2

T = TypeVar("T")
DEFAULT_TIMEOUT_S = 5.0
SCAN_COUNT_MAX = 10_000
_CONSISTENCY = {"linearizable": cache_pb2.LINEARIZABLE, "stale": cache_pb2.STALE}


@dataclass(frozen=True)
class Item:
    """A stored value with its version and remaining time to live (None = no expiry)."""

    value: bytes
    version: int
    ttl: float | None


@dataclass(frozen=True)
class NodeStatus:
    """One node's view, from Cluster.Status."""

    node_id: str
    address: str
    role: str  # "leader", "follower", "candidate", "unknown" (did not answer: "down")
    term: int
    leader_id: str
    commit_index: int
    applied_index: int
    leader_commit_index: int
    keys: int
    digest: str


@dataclass(frozen=True)
class MemberInfo:
    """One voter as the leader sees it (Cluster.ListMembers)."""

    node_id: str  # the raft address until the member has announced itself
    raft_addr: str
    client_addr: str
    is_leader: bool
    responsive: bool  # answered the leader within its fallback timeout
    caught_up: bool  # responsive, and lacks no entry older than 2 s
    match_index: int
    lag_entries: int
    lag_seconds: float


@dataclass(frozen=True)
class Membership:
    """The voters, the leader's commit index, and a change appended but not committed."""

    members: list[MemberInfo]
    leader_id: str
    commit_index: int
    pending_change: str  # "" when none
    read_replicas: int = 0  # read replicas (never voting) connected to the leader


def _membership(response: cluster_pb2.ListMembersResponse) -> Membership:
    return Membership(
        members=[
            MemberInfo(
                node_id=m.id,
                raft_addr=m.raft_addr,
                client_addr=m.client_addr,
                is_leader=m.is_leader,
                responsive=m.responsive,
                caught_up=m.caught_up,
                match_index=m.match_index,
                lag_entries=m.lag_entries,
                lag_seconds=m.lag_seconds,
            )
            for m in response.members
        ],
        leader_id=response.leader_id,
        commit_index=response.commit_index,
        pending_change=response.pending_change,
        read_replicas=response.read_replicas,
    )


@dataclass(frozen=True)
class UserInfo:
    """One user's rules, as ACL GETUSER shows them (passwords as SHA-256 digests)."""

    name: str
    flags: list[str]  # "on"/"off", "nopass"
    passwords: list[str]
    commands: str  # "+@all", "-@all +@read -keys"
    keys: str  # "~app:* %R~audit:*"
    channels: str  # "&news.*", "&*"


def _item(response: cache_pb2.GetResponse) -> Item | None:
    if not response.found:
        return None
    return Item(
        response.value, response.version, response.ttl_ms / 1000 if response.ttl_ms else None
    )


class AsyncClient(TypedMethods):
    """Talks to a raftcache cluster from asyncio; use `async with AsyncClient(...)`."""

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
        """`auto_pipeline`: while a call to a node is in flight, concurrent get/set/delete/
        incr and typed-op calls to it queue and go out together as one Batch RPC (a lone
        call still goes out at once, unary); each keeps its own retries and deadline.
        `tls`: connect over TLS (TlsConfig: the CA, a client pair for mTLS); unused with an
        explicit `transport`. `user` and `password` (default: RAFTCACHE_USER and
        RAFTCACHE_PASSWORD; a password alone is the default user's) go with every call as
        `authorization: Basic` metadata; wrong ones raise AuthenticationError, a command the
        user may not run PermissionDeniedError (neither is retried)."""
        seeds = [endpoints] if isinstance(endpoints, str) else list(endpoints)
        seeds = [s.strip() for seed in seeds for s in seed.split(",") if s.strip()]
        self.timeout = timeout
        try:
            metadata = credentials_metadata(user, password)
        except ValueError as exc:
            raise errors.InvalidInputError(str(exc)) from None
        self._transport: Transport = transport or GrpcTransport(tls=tls, metadata=metadata)
        self.pipeline = PipelinedTransport(self._transport) if auto_pipeline else None
        self._router = Router(self.pipeline or self._transport, seeds, retry or RetryPolicy())
        self.client_id = client_id or uuid.uuid4().hex
        self._seq = itertools.count(1)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._transport.close()

    @property
    def leader(self) -> str | None:
        """The leader's address as last learned (None until the first call)."""
        return self._router.leader

    @property
    def members(self) -> list[str]:
        return self._router.members

    def _rid(self) -> tuple[str, int]:
        return (self.client_id, next(self._seq))

    async def _write(self, method: str, request: Any, timeout: float | None) -> Any:
        rid = self._rid()
        request.request_id.client_id, request.request_id.seq = rid
        return await self._router.call(
            method, request, route=WRITE, timeout=timeout or self.timeout, request_id=rid
        )

    async def _read(
        self, method: str, request: Any, consistency: str, max_staleness: float | None,
        timeout: float | None,
    ) -> Any:  # fmt: skip
        if consistency not in _CONSISTENCY:
            raise errors.InvalidInputError(
                f"consistency must be 'linearizable' or 'stale', not {consistency!r}"
            )
        request.consistency = _CONSISTENCY[consistency]
        if max_staleness is not None:
            if consistency != "stale" or max_staleness <= 0:
                raise errors.InvalidInputError("max_staleness (> 0 s) applies to stale reads only")
            request.max_staleness_ms = max(1, round(max_staleness * 1000))
        route = READ_STALE if consistency == "stale" else READ_LEADER
        return await self._router.call(
            method, request, route=route, timeout=timeout or self.timeout
        )

    # -- reads ------------------------------------------------------------------

    async def get(
        self, key: Key, *, consistency: str = "linearizable", max_staleness: float | None = None,
        timeout: float | None = None,
    ) -> bytes | None:  # fmt: skip
        """The value of key, or None."""
        request = cache_pb2.GetRequest(key=_bytes(key, "key"))
        response = await self._read("Cache/Get", request, consistency, max_staleness, timeout)
        return response.value if response.found else None

    async def get_item(
        self, key: Key, *, consistency: str = "linearizable", max_staleness: float | None = None,
        timeout: float | None = None,
    ) -> Item | None:  # fmt: skip
        """Value, version and remaining TTL of key, or None."""
        request = cache_pb2.GetRequest(key=_bytes(key, "key"))
        response = await self._read("Cache/Get", request, consistency, max_staleness, timeout)
        return _item(response)

    async def mget(
        self, keys: Iterable[Key], *, consistency: str = "linearizable",
        max_staleness: float | None = None, timeout: float | None = None,
    ) -> list[bytes | None]:  # fmt: skip
        """Values of keys in order (None for a missing key)."""
        request = cache_pb2.MGetRequest(keys=[_bytes(k, "key") for k in keys])
        response = await self._read("Cache/MGet", request, consistency, max_staleness, timeout)
        return [r.value if r.found else None for r in response.results]

    # -- writes -----------------------------------------------------------------

    async def set(
        self, key: Key, value: Value, *, ttl: float | None = None, if_absent: bool = False,
        if_present: bool = False, expected_version: int | None = None,
        timeout: float | None = None,
    ) -> int:  # fmt: skip
        """Store value; returns its new version. ConditionFailedError if a condition fails."""
        if if_absent and if_present:
            raise errors.InvalidInputError("if_absent and if_present exclude each other")
        request = cache_pb2.SetRequest(
            key=_bytes(key, "key"),
            value=_bytes(value, "value"),
            ttl_ms=_ttl_ms(ttl),
            condition=cache_pb2.IF_ABSENT if if_absent else
            cache_pb2.IF_PRESENT if if_present else cache_pb2.CONDITION_NONE,
        )  # fmt: skip
        if expected_version is not None:
            request.expected_version = expected_version
        response = await self._write("Cache/Set", request, timeout)
        return int(response.version)

    async def delete(self, key: Key, *, timeout: float | None = None) -> bool:
        """Remove key; True if it existed."""
        request = cache_pb2.DeleteRequest(key=_bytes(key, "key"))
        return bool((await self._write("Cache/Delete", request, timeout)).deleted)

    async def incr(
        self, key: Key, delta: int = 1, *, ttl: float | None = None, timeout: float | None = None
    ) -> int:
        """Add delta to a decimal counter (a missing key starts at 0); returns the new value.

        Applied exactly once even when retried after a failover (request id)."""
        request = cache_pb2.IncrRequest(key=_bytes(key, "key"), delta=delta, ttl_ms=_ttl_ms(ttl))
        return int((await self._write("Cache/Incr", request, timeout)).value)

    async def mset(
        self, items: Mapping[Key, Value] | Iterable[tuple[Key, Value]], *,
        ttl: float | None = None, timeout: float | None = None,
    ) -> list[int]:  # fmt: skip
        """Store several keys atomically; returns their versions in order."""
        pairs = items.items() if isinstance(items, Mapping) else items
        ttl_ms = _ttl_ms(ttl)
        request = cache_pb2.MSetRequest(
            entries=[
                cache_pb2.KeyValue(key=_bytes(k, "key"), value=_bytes(v, "value"), ttl_ms=ttl_ms)
                for k, v in pairs
            ]
        )
        return list((await self._write("Cache/MSet", request, timeout)).versions)

    # -- typed values, transactions, scan -----------------------------------------

    async def _run_op(
        self, op: Op[T], *, consistency: str = "linearizable", max_staleness: float | None = None,
        timeout: float | None = None,
    ) -> T:  # fmt: skip
        request = cache_pb2.ExecRequest(op=op.message)
        if op.is_read:
            response = await self._read("Cache/Exec", request, consistency, max_staleness, timeout)
        else:
            response = await self._write("Cache/Exec", request, timeout)
        return op.decode(response.value)

    async def txn(
        self, compares: Sequence[Compare], success: Sequence[Op[Any]],
        failure: Sequence[Op[Any]] = (), *, timeout: float | None = None,
    ) -> TxnResult:  # fmt: skip
        """If every compare holds run `success`, else `failure`, as one atomic write (etcd's
        Txn); the ops and compares come from `raftcache.client.ops`."""
        request = cache_pb2.TxnRequest(
            compares=[c.message for c in compares],
            success=[op.message for op in success],
            failure=[op.message for op in failure],
        )
        response = await self._write("Cache/Txn", request, timeout)
        branch = success if response.succeeded else failure
        if len(response.results) != len(branch):
            raise errors.RaftcacheError(
                f"txn: the node answered {len(response.results)} results for "
                f"{len(branch)} ops: is it running another raftcache version?"
            )
        results = [op.decode(v) for op, v in zip(branch, response.results, strict=True)]
        return TxnResult(bool(response.succeeded), results)

    async def scan_iter(
        self, prefix: Key = b"", count: int = 100, **options: Unpack[ReadOptions]
    ) -> AsyncIterator[bytes]:
        """Every key starting with prefix, each once, fetched `count` at a time; keys added
        or removed during the scan may or may not appear."""
        if not 0 < count <= SCAN_COUNT_MAX:
            raise errors.InvalidInputError(f"count must be 1..{SCAN_COUNT_MAX}, not {count}")
        request = cache_pb2.ScanRequest(prefix=_bytes(prefix, "prefix"), count=count)
        consistency = options.get("consistency", "linearizable")
        staleness, timeout = options.get("max_staleness"), options.get("timeout")
        while True:
            response = await self._read("Cache/Scan", request, consistency, staleness, timeout)
            for key in response.keys:
                yield key
            if not response.next_cursor:
                return
            request.cursor = response.next_cursor

    # -- pub/sub and watch --------------------------------------------------------

    async def publish(self, channel: Key, message: Value, *, timeout: float | None = None) -> int:
        """Send message to every current subscriber of channel on every node; returns how
        many subscribers the leader had (other nodes' are not counted)."""
        request = cache_pb2.PublishRequest(
            channel=_bytes(channel, "channel"), message=_bytes(message, "message")
        )
        # A request id makes a retry after an unknown outcome safe: at most once still holds.
        response = await self._write("Cache/Publish", request, timeout)
        return int(response.receivers)

    async def subscribe(
        self, channels: Iterable[Key] = (), patterns: Iterable[Key] = (),
        *, timeout: float | None = None,
    ) -> Subscription:  # fmt: skip
        """Subscribe on one node; returns once subscribed, so later publishes arrive.
        Patterns are globs (*, ?, [...]). See Subscription for how it ends."""
        request = cache_pb2.SubscribeRequest(
            channels=all_bytes(channels, "channel"), patterns=all_bytes(patterns, "pattern")
        )
        if not request.channels and not request.patterns:
            raise errors.InvalidInputError("subscribe needs at least one channel or pattern")
        stream, _, _ = await self._opener(timeout).open("Cache/Subscribe", request)
        return Subscription(stream)

    async def watch(
        self, key: Key, *, prefix: bool = False, start_revision: int = 0,
        timeout: float | None = None,
    ) -> Watch:  # fmt: skip
        """Changes to key (or every key starting with it), from now or after start_revision;
        returns once watching. Resumes by itself after a break (see Watch); `timeout` bounds
        each (re)connection."""
        if start_revision < 0:
            raise errors.InvalidInputError(f"start_revision must be >= 0, not {start_revision}")
        request = cache_pb2.WatchRequest(
            key=_bytes(key, "key"), prefix=prefix, start_revision=start_revision
        )
        return await Watch(self._opener(timeout), request).start()

    def _opener(self, timeout: float | None) -> StreamOpener:
        return StreamOpener(self._router, self._transport, timeout or self.timeout)

    # -- cluster ----------------------------------------------------------------

    async def backup(self, path: str, *, timeout: float | None = None) -> BackupInfo:
        """Write a linearizable point-in-time copy of the whole cache to `path`.

        The leader streams it; it is written to `path`.partial as it arrives (never held
        in memory), checked against the leader's checksum, then renamed into place.
        `timeout` bounds finding the leader, not the transfer.
        """
        stream, address, _ = await self._opener(timeout).open(
            "Cluster/Backup", cluster_pb2.BackupRequest()
        )
        out = backup_file.FileWriter(path)
        last = None
        try:
            while (chunk := await stream.next()) is not None:
                if chunk.data:
                    out.write(chunk.data)
                if chunk.checksum:
                    last = chunk
            if last is None:
                raise errors.UnavailableError(f"{address} ended the backup stream early")
            out.commit(last.checksum)
        except CallFailed as failure:
            out.abort()
            raise errors.UnavailableError(
                f"the backup stream from {address} broke ({failure.code}: {failure.details}); "
                "nothing was written: take the backup again"
            ) from None
        except backup_file.BackupFormatError as exc:
            raise errors.UnavailableError(str(exc)) from None
        except BaseException:
            stream.cancel()
            out.abort()
            raise
        return backup_file.verify(path)

    # -- users (Redis ACL rules; see the README's Security section) ----------------------

    async def set_user(self, name: str, *rules: str, timeout: float | None = None) -> None:
        """Create or change a user with ACL SETUSER rules, e.g.
        `set_user("app", "on", ">s3cret", "~app:*", "+@read", "+@write")`."""
        request = cluster_pb2.SetUserRequest(name=name, rules=rules)
        await self._router.call(
            "Cluster/SetUser", request, route=WRITE, timeout=timeout or self.timeout
        )

    async def delete_users(self, *names: str, timeout: float | None = None) -> int:
        """Delete users (their open Redis connections close); how many existed."""
        request = cluster_pb2.DeleteUsersRequest(names=names)
        response = await self._router.call(
            "Cluster/DeleteUsers", request, route=WRITE, timeout=timeout or self.timeout
        )
        return int(response.deleted)

    async def list_users(self, *, timeout: float | None = None) -> list[str]:
        """Every user as an ACL LIST line (`user NAME on #digest ~keys &channels +@cmds`)."""
        response = await self._router.call(
            "Cluster/ListUsers",
            cluster_pb2.ListUsersRequest(),
            route=READ_LEADER,
            timeout=timeout or self.timeout,
        )
        return list(response.users)

    async def get_user(self, name: str, *, timeout: float | None = None) -> UserInfo | None:
        """One user's rules, or None when there is no such user."""
        response = await self._router.call(
            "Cluster/GetUser",
            cluster_pb2.GetUserRequest(name=name),
            route=READ_LEADER,
            timeout=timeout or self.timeout,
        )
        if not response.found:
            return None
        return UserInfo(
            name,
            list(response.flags),
            list(response.passwords),
            response.commands,
            response.keys,
            response.channels,
        )

    async def whoami(self, *, timeout: float | None = None) -> str:
        """The user this client's calls run as."""
        response = await self._router.call(
            "Cluster/WhoAmI",
            cluster_pb2.WhoAmIRequest(),
            route=READ_LEADER,
            timeout=timeout or self.timeout,
        )
        return str(response.user)

    # -- membership (README "Operations": adding and removing members) ------------------

    async def _leader_call(self, method: str, request: Any, timeout: float | None) -> Any:
        """One call to the leader, never retried once it reached the leader (a membership
        change whose outcome is unknown must be re-read, not repeated blindly); redirected
        while a node answers that it does not lead."""
        budget = timeout or self.timeout
        deadline = self._router.deadline_in(budget)
        last = "no leader found"
        while True:
            remaining = deadline - self._router.deadline_in(0)
            if remaining <= 0:
                raise errors.UnavailableError(f"{method}: {last}")
            await self._router.refresh(deadline)
            leader = self._router.leader
            if leader is None:
                await asyncio.sleep(0.1)
                continue
            try:
                return await self._transport.call(leader, method, request, remaining)
            except CallFailed as failure:
                final = final_error(failure)
                if final is not None:
                    raise final from None
                if failure.origin in ("NotLeader", "NoLeader") or failure.never_sent:
                    last = failure.details
                    self._router.leader = failure.leader or None
                    await asyncio.sleep(0.1)
                    continue
                if failure.origin == "OutcomeUnknown":
                    raise errors.OutcomeUnknownError(failure.details) from None
                raise errors.OutcomeUnknownError(
                    f"{method} to {leader} failed ({failure.code}: {failure.details}); its "
                    "outcome is unknown: re-read the membership (member list)"
                ) from None

    async def membership(self, *, timeout: float | None = None) -> Membership:
        """The voters as the leader sees them, with their lag and whether they caught up."""
        response = await self._leader_call(
            "Cluster/ListMembers", cluster_pb2.ListMembersRequest(), timeout
        )
        return _membership(response)

    async def add_member(
        self, raft_addr: str, *, replaces: str = "", timeout: float | None = None
    ) -> Membership:
        """Add the running node whose Raft address is `raft_addr` (started with --join) as a
        voter; returns once the change committed. `replaces`: a member removed before (its
        id or raft address), logged as a replacement. Refused (ConditionFailedError, with
        the reason) when another change is in progress or the cluster is not healthy;
        OutcomeUnknownError when the leader changed meanwhile: re-read with membership()."""
        request = cluster_pb2.AddMemberRequest(raft_addr=raft_addr, replaces=replaces)
        response = await self._leader_call("Cluster/AddMember", request, timeout)
        return _membership(response.membership)

    async def remove_member(self, member: str, *, timeout: float | None = None) -> Membership:
        """Remove a voter (node id or raft address); refused when that would lose quorum,
        when it is the leader (transfer leadership first), or while a change is pending."""
        request = cluster_pb2.RemoveMemberRequest(member=member)
        response = await self._leader_call("Cluster/RemoveMember", request, timeout)
        return _membership(response.membership)

    async def wait_caught_up(self, member: str, *, timeout: float = 60.0) -> MemberInfo:
        """Poll membership() until `member` (id or raft address) is caught up."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            with contextlib.suppress(errors.UnavailableError):
                for m in (await self.membership(timeout=min(timeout, 5.0))).members:
                    if member in (m.node_id, m.raft_addr) and m.caught_up:
                        return m
            if loop.time() >= end:
                raise errors.UnavailableError(f"{member} did not catch up within {timeout:g} s")
            await asyncio.sleep(0.2)

    async def transfer_leadership(self, target: str = "", *, timeout: float | None = None) -> str:
        """Hand leadership to `target` (node id or raft address; "" = the most caught-up
        follower); returns the new leader's id."""
        wait = timeout or self.timeout
        request = cluster_pb2.TransferLeadershipRequest(target=target, timeout_s=wait)
        response = await self._leader_call("Cluster/TransferLeadership", request, wait + 5.0)
        self._router.leader = None  # the next call learns the new leader
        return str(response.leader_id)

    async def cluster_status(self, *, timeout: float | None = None) -> list[NodeStatus]:
        """Every member's own Status (a member that does not answer has role 'down')."""
        deadline = timeout or self.timeout
        await self._router.refresh(self._router.deadline_in(deadline))
        out = []
        for address in self._router.members:
            try:
                s = await self._transport.call(
                    address, "Cluster/Status", cluster_pb2.StatusRequest(), min(deadline, 2.0)
                )
            except CallFailed:
                out.append(NodeStatus("?", address, "down", 0, "", 0, 0, 0, 0, ""))
                continue
            out.append(
                NodeStatus(
                    node_id=s.node_id,
                    address=address,
                    role=cluster_pb2.Role.Name(s.role).lower(),
                    term=s.term,
                    leader_id=s.leader_id,
                    commit_index=s.commit_index,
                    applied_index=s.applied_index,
                    leader_commit_index=s.leader_commit_index,
                    keys=s.keys,
                    digest=s.digest,
                )
            )
        return out
