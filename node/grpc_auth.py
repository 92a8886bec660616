"""Who a gRPC call is and whether it may run: each Cache RPC is checked as the Redis command
it amounts to, with the users and rules of node/acl.py (one model for every port).

| RPC        | checked as                                                            |
|------------|-----------------------------------------------------------------------|
| Get        | `GET key`                                                             |
| Set        | `SET key value`                                                       |
| Delete     | `DEL key`                                                             |
| Incr       | `INCRBY key 1`                                                        |
| MGet       | `MGET key...`                                                         |
| MSet       | `MSET key value...`                                                   |
| Exec       | its call's argv; a typed op as its Redis command (`hset key`, ...)    |
| Txn        | each op as Exec; each compare as `EXISTS key` (`GET key` for a value) |
| Scan       | `SCAN 0` (like Redis, the key patterns do not filter SCAN)            |
| Batch      | each op as its own RPC; a refused op fails alone (PERMISSION_DENIED)  |
| Publish    | `PUBLISH channel message` (the channel must match a `&` pattern)      |
| Subscribe  | `SUBSCRIBE channel...`; patterns as `PSUBSCRIBE pattern...`           |
| Watch      | a key: `GET key`; a prefix: see `covers_prefix`                       |

Cluster.Snapshot is checked as `BGSAVE`; Cluster.Backup, which reads every key, needs
`SCAN` and read access to every key (`~*` or `%R~*`: e.g. `~* -@all +@read`).

A call a member relays names its user with the member's proof (node/auth.py): it is checked
as that user again on the leader, except for raftcache's internal commands
(`raftcache.versions`, `raftcache.mc.*`, ...), which only members send for commands their
front-end already checked.

The open cluster (the default user needs no password and may do everything) costs one scan
of the call's metadata and one attribute test per call: `Gate.check` builds no argv then.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final

from raftcache.node import acl, errors
from raftcache.node.auth import FORWARD_PROOF_KEY, MEMBER, Auth, channels_of
from raftcache.node.keyspace.db import key_db
from raftcache.v1 import cache_pb2

Check = tuple[list[bytes], list[tuple[bytes, bool]]]
"""One Redis-equivalent argv to check, with its (channel, is_pattern) pairs."""

_TYPED: Final = {
    "get": b"get",
    "set": b"set",
    "delete": b"del",
    "incr": b"incrby",
    "expire": b"pexpire",
    "ttl": b"pttl",
    "type": b"type",
}
"""Typed data ops whose Redis command has another name (the rest share theirs)."""
_GLOB_SPECIALS: Final = frozenset(b"*?[\\")


def data_op_argv(op: cache_pb2.DataOp) -> list[bytes]:
    """The Redis command a data op amounts to, as far as the checks look at it (its name,
    its key; the other arguments do not change what is checked)."""
    kind = op.WhichOneof("op")
    if kind == "call":
        return list(op.call.argv)
    if kind is None:
        return [b"get", b""]  # refused as invalid input anyway
    body = getattr(op, kind)
    if kind in ("push", "pop"):
        side = b"l" if body.end == cache_pb2.LEFT else b"r"
        return [side + kind.encode(), body.key]
    return [_TYPED.get(kind) or kind.encode(), body.key]


def _compare_argv(compare: cache_pb2.Compare) -> list[bytes]:
    _, key = key_db(compare.key)  # a relayed Redis WATCH compares a database's key
    return [b"get" if compare.WhichOneof("target") == "value" else b"exists", key]


def _plain(argv: list[bytes]) -> Iterator[Check]:
    yield argv, []


def _txn(request: cache_pb2.TxnRequest) -> Iterator[Check]:
    for compare in request.compares:
        yield _compare_argv(compare), []
    for op in (*request.success, *request.failure):
        yield data_op_argv(op), []


def _mset(request: cache_pb2.MSetRequest) -> Iterator[Check]:
    argv = [b"mset"]
    for entry in request.entries:
        argv += (entry.key, b"")
    yield argv, []


def _publish(request: cache_pb2.PublishRequest) -> Iterator[Check]:
    argv = [b"publish", request.channel, request.message]
    yield argv, channels_of(argv)


def _subscribe(request: cache_pb2.SubscribeRequest) -> Iterator[Check]:
    if request.channels or not request.patterns:
        argv = [b"subscribe", *request.channels]
        yield argv, channels_of(argv)
    if request.patterns:
        argv = [b"psubscribe", *request.patterns]
        yield argv, channels_of(argv)


CHECKS: Final[dict[str, Callable[[Any], Iterator[Check]]]] = {
    "Get": lambda r: _plain([b"get", r.key]),
    "Set": lambda r: _plain([b"set", r.key, r.value]),
    "Delete": lambda r: _plain([b"del", r.key]),
    "Incr": lambda r: _plain([b"incrby", r.key, b"1"]),
    "MGet": lambda r: _plain([b"mget", *r.keys]),
    "MSet": _mset,
    "Exec": lambda r: _plain(data_op_argv(r.op)),
    "Txn": _txn,
    "Scan": lambda r: _plain([b"scan", b"0"]),
    "Publish": _publish,
    "Subscribe": _subscribe,
}
"""The Redis commands each Cache RPC is checked as (Watch and Batch: see Gate)."""
BATCH_METHODS: Final = {
    "get": "Get",
    "set": "Set",
    "delete": "Delete",
    "incr": "Incr",
    "exec": "Exec",
}


def covers_prefix(user: acl.User, prefix: bytes) -> bool:
    """Whether `user` may read every key that starts with `prefix` (a prefix Watch): one of
    its read patterns is a literal followed by a single trailing `*` (`~app:*`, `~*`) and
    the prefix starts with that literal. Other patterns (`~app:?x`, `~*:cfg`) never cover a
    prefix, even where they would match every key that exists now."""
    if user.allkeys:
        return True
    for flags, pattern in user.keys:
        if not flags & acl.READ or not pattern.endswith(b"*"):
            continue
        literal = pattern[:-1]
        if prefix.startswith(literal) and not _GLOB_SPECIALS.intersection(literal):
            return True
    return False


class Gate:
    """Identifies gRPC callers and checks their permissions (one per node)."""

    def __init__(self, auth: Auth | None, cn_as_user: bool = False) -> None:
        """`auth` None: no users at all, every call is the default user's (unit tests).
        `cn_as_user`: --tls-client-cn-as-user (a client certificate's CN names the user when
        the call carries no Basic credentials)."""
        self.auth = auth
        self.cn_as_user = cn_as_user

    def user(self, context: Any) -> acl.User:
        """The calling user; Unauthenticated (counted, logged) when it cannot be told."""
        auth = self.auth
        if auth is None:
            return _UNRESTRICTED
        cn = peer_cn(context) if self.cn_as_user else None
        return auth.identify(context.invocation_metadata(), cn, peer=_Peer(context))

    def users(self) -> object:
        """The users as this node applied them now (compare with `is`: a stream checks its
        caller again when they changed)."""
        return None if self.auth is None else self.auth.acl()

    def check(self, context: Any, method: str, request: Any) -> acl.User:
        """The calling user, if it may run `method` with `request`; else Unauthenticated or
        PermissionDenied."""
        user = self.user(context)
        if not user.unrestricted:
            for argv, channels in CHECKS[method](request):
                denied = self.refusal(context, user, argv, channels)
                if denied is not None:
                    raise denied
        return user

    def check_watch(self, context: Any, request: cache_pb2.WatchRequest) -> acl.User:
        user = self.user(context)
        if user.unrestricted:
            return user
        if not request.prefix:
            denied = self.refusal(context, user, [b"get", request.key], [])
            if denied is not None:
                raise denied
            return user
        if not user.may_run("get", [b"get"]):
            raise self._refuse(context, user, ("command", "get"))
        if not covers_prefix(user, request.key):
            shown = request.key.decode("utf-8", "replace")
            self._count(context, user, "prefix " + shown)
            raise errors.PermissionDenied(
                f"this user has no permissions to watch every key under the prefix {shown!r}: "
                f"a prefix watch needs a read key pattern '~{shown}*' (or one for a shorter "
                f"prefix of it, or '~*') (user '{user.name}')"
            )
        return user

    def check_argv(self, context: Any, argv: list[bytes]) -> acl.User:
        """The calling user, if it may run the Redis command argv."""
        user = self.user(context)
        denied = self.refusal(context, user, argv)
        if denied is not None:
            raise denied
        return user

    def check_backup(self, context: Any) -> acl.User:
        """A backup reads every key: SCAN, with read access to all keys."""
        user = self.check_argv(context, [b"scan", b"0"])
        if not covers_prefix(user, b""):
            self._count(context, user, "backup")
            raise errors.PermissionDenied(
                "this user has no permissions to read every key, which a backup does: it "
                f"needs a read key pattern '~*' or '%R~*' (user '{user.name}')"
            )
        return user

    def refusal(
        self,
        context: Any,
        user: acl.User,
        argv: Sequence[bytes],
        channels: Sequence[tuple[bytes, bool]] = (),
    ) -> errors.PermissionDenied | None:
        """None if `user` may run argv, else the error to answer (counted and logged)."""
        denied = user.denial(argv, channels)
        if denied is None:
            return None
        if (
            denied[0] == "command"
            and denied[1].startswith("raftcache.")
            and self._relayed_by_member(context)
        ):
            # An internal command a member's front-end checked already (WATCH's versions,
            # a relayed pop's recovery). Memcached's raftcache.mc.* calls are denied as
            # their Redis equivalents ("set"), so the leader re-checks those fully.
            return None
        return self._refuse(context, user, denied)

    def batch_refusal(
        self, context: Any, user: acl.User, op: cache_pb2.BatchOp
    ) -> errors.PermissionDenied | None:
        """One Batch op's refusal, as its own RPC would be refused; None when allowed (or
        when the op is empty: the batch refuses that as invalid input)."""
        kind = op.WhichOneof("op")
        if kind is None:
            return None
        for argv, channels in CHECKS[BATCH_METHODS[kind]](getattr(op, kind)):
            denied = self.refusal(context, user, argv, channels)
            if denied is not None:
                return denied
        return None

    def forward_metadata(self, user: acl.User) -> tuple[tuple[str, str], ...]:
        """What a call relayed to the leader carries to name `user`."""
        if self.auth is None:
            return ()
        return self.auth.forward_metadata(None if user is MEMBER else user.name)

    def _relayed_by_member(self, context: Any) -> bool:
        auth = self.auth
        if auth is None:
            return False
        for key, value in context.invocation_metadata() or ():
            if key == FORWARD_PROOF_KEY:
                proof = value if isinstance(value, str) else value.decode("latin-1")
                return auth.verify_forward_proof(proof)
        return False

    def _refuse(
        self, context: Any, user: acl.User, denied: tuple[str, str]
    ) -> errors.PermissionDenied:
        self._count(context, user, f"{denied[0]} {denied[1]}")
        text = acl.noperm_text(denied).removeprefix("NOPERM ")
        if denied[0] != "command":  # unlike Redis's reply, name what was refused
            text += f": {denied[1]!r}"
        return errors.PermissionDenied(f"{text} (user '{user.name}')")

    def _count(self, context: Any, user: acl.User, what: str) -> None:
        if self.auth is not None:
            self.auth.failed("grpc", "perm", user.name, True, peer=_Peer(context), denied=what)


class _Peer:
    """The peer of a call, read only when a failure is logged (str())."""

    __slots__ = ("_context",)

    def __init__(self, context: Any) -> None:
        self._context = context

    def __str__(self) -> str:
        try:
            return str(self._context.peer() or "?")
        except Exception:
            return "?"


def peer_cn(context: Any) -> str | None:
    """The common name of the client certificate (mTLS), or None."""
    try:
        names = context.auth_context().get("x509_common_name")
    except Exception:
        return None
    return names[0].decode("utf-8", "replace") if names else None


_UNRESTRICTED: Final = acl.User(
    "default",
    enabled=True,
    nopass=True,
    keys=[(acl.READ | acl.WRITE, b"*")],
    allchannels=True,
    command_rules=["+@all"],
)
