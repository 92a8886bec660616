"""The gRPC port's checks (node/grpc_auth.py) without a cluster: what each RPC is checked
as, prefix watches, member relays, and refusals logged once a minute per peer host."""

from __future__ import annotations

from typing import Any

import pytest
from raftcache.node import errors
from raftcache.node.acl import Acl, digest
from raftcache.node.auth import (
    AS_USER_KEY,
    AUTHORIZATION_KEY,
    FORWARD_PROOF_KEY,
    MEMBER,
    Auth,
    basic_header,
    peer_host,
)
from raftcache.node.grpc_auth import Gate, covers_prefix, data_op_argv
from raftcache.v1 import cache_pb2

USERS = (
    f"user default on #{digest(b'admin')} ~* &* +@all\n"
    "user app on nopass ~app:* %R~ro:* ~lit?:* &news.* -@all +@read +@write +@pubsub\n"
)


class Context:
    def __init__(self, metadata: list[tuple[str, str]], peer: str = "ipv4:10.0.0.7:5000"):
        self.metadata = metadata
        self._peer = peer
        self.peers_read = 0

    def invocation_metadata(self) -> list[tuple[str, str]]:
        return self.metadata

    def peer(self) -> str:
        self.peers_read += 1
        return self._peer


def gate() -> tuple[Gate, Auth]:
    auth = Auth(lambda: (USERS.encode(), b"k" * 32))
    return Gate(auth), auth


def as_app(peer: str = "ipv4:10.0.0.7:5000") -> Context:
    return Context([(AUTHORIZATION_KEY, basic_header("app", ""))], peer)


def test_typed_ops_are_checked_as_their_redis_commands() -> None:
    op = cache_pb2.DataOp
    assert data_op_argv(op(push=cache_pb2.Push(key=b"k", end=cache_pb2.RIGHT))) == [b"rpush", b"k"]
    assert data_op_argv(op(pop=cache_pb2.Pop(key=b"k"))) == [b"lpop", b"k"]
    assert data_op_argv(op(expire=cache_pb2.Expire(key=b"k"))) == [b"pexpire", b"k"]
    assert data_op_argv(op(hgetall=cache_pb2.HGetAll(key=b"k"))) == [b"hgetall", b"k"]
    assert data_op_argv(op(call=cache_pb2.RedisCall(argv=[b"GET", b"x"]))) == [b"GET", b"x"]


def test_a_prefix_watch_needs_a_pattern_covering_the_prefix() -> None:
    app = Acl.parse(USERS).users["app"]
    assert covers_prefix(app, b"app:") and covers_prefix(app, b"app:x:")
    assert covers_prefix(app, b"ro:")  # read-only patterns count
    assert not covers_prefix(app, b"ap") and not covers_prefix(app, b"")
    assert not covers_prefix(app, b"lit?:")  # a pattern with wildcards before its end
    assert covers_prefix(Acl.parse(USERS).users["default"], b"")


def test_checks_refuse_with_the_reason_and_count() -> None:
    g, auth = gate()
    ctx = as_app()
    assert g.check(ctx, "Set", cache_pb2.SetRequest(key=b"app:1")).name == "app"
    with pytest.raises(errors.PermissionDenied, match=r"one of the keys.*'other' \(user 'app'\)"):
        g.check(ctx, "Set", cache_pb2.SetRequest(key=b"other"))
    with pytest.raises(errors.PermissionDenied, match="keys"):
        g.check(ctx, "Set", cache_pb2.SetRequest(key=b"ro:1"))  # read-only keys
    g.check(ctx, "Get", cache_pb2.GetRequest(key=b"ro:1"))
    with pytest.raises(errors.PermissionDenied, match="channels"):
        g.check(ctx, "Subscribe", cache_pb2.SubscribeRequest(channels=[b"news.1", b"ops"]))
    with pytest.raises(errors.PermissionDenied, match="prefix 'ap'"):
        g.check_watch(ctx, cache_pb2.WatchRequest(key=b"ap", prefix=True))
    batch_op = cache_pb2.BatchOp(delete=cache_pb2.DeleteRequest(key=b"x"))
    assert isinstance(g.batch_refusal(ctx, g.user(ctx), batch_op), errors.PermissionDenied)
    assert auth.failures[("grpc", "perm")] == 5


def test_refusals_are_logged_once_a_minute_per_peer_host() -> None:
    g, auth = gate()
    logged: list[dict[str, Any]] = []
    import raftcache.node.auth as auth_module

    original = auth_module._log
    auth_module._log = type("L", (), {"warning": lambda self, e, **kw: logged.append(kw)})()
    try:
        for port in range(5000, 5010):  # one client reconnecting: one host
            with pytest.raises(errors.PermissionDenied):
                g.check(as_app(f"ipv4:10.0.0.7:{port}"), "Get", cache_pb2.GetRequest(key=b"x"))
        with pytest.raises(errors.PermissionDenied):
            g.check(as_app("ipv4:10.0.0.8:1"), "Get", cache_pb2.GetRequest(key=b"x"))
        with pytest.raises(errors.Unauthenticated):
            g.user(
                Context([(AUTHORIZATION_KEY, basic_header("app2", "secret-pw"))], "ipv4:9.9.9.9:1")
            )
    finally:
        auth_module._log = original
    assert auth.failures[("grpc", "perm")] == 11
    assert [entry["peer"] for entry in logged] == [
        "ipv4:10.0.0.7:5000",
        "ipv4:10.0.0.8:1",
        "ipv4:9.9.9.9:1",
    ]
    assert all("secret-pw" not in repr(entry) for entry in logged)
    assert peer_host("ipv6:[::1]:443") == "ipv6:[::1]"


def test_the_open_cluster_reads_nothing_but_the_metadata() -> None:
    g = Gate(Auth(lambda: (None, None)))
    ctx = Context([("user-agent", "grpc-python")])
    assert g.check(ctx, "Set", cache_pb2.SetRequest(key=b"k")).name == "default"
    assert ctx.peers_read == 0


def test_member_relays_run_as_the_named_user_or_as_the_member() -> None:
    g, auth = gate()
    app = g.user(as_app())
    relayed = Context([("x-raftcache-forwarded", "1"), *g.forward_metadata(app)])
    assert g.user(relayed).name == "app"
    with pytest.raises(errors.PermissionDenied):
        g.check(relayed, "Set", cache_pb2.SetRequest(key=b"other"))
    # internal commands: refused from clients, passed for a member's relay of a checked call
    internal = cache_pb2.ExecRequest()
    internal.op.call.argv.extend([b"raftcache.versions", b"other"])
    with pytest.raises(errors.PermissionDenied):
        g.check(as_app(), "Exec", internal)
    assert g.check(relayed, "Exec", internal).name == "app"
    member = Context(list(g.forward_metadata(MEMBER)))
    assert dict(member.metadata).keys() == {FORWARD_PROOF_KEY}
    assert g.user(member) is MEMBER and MEMBER.unrestricted
    forged = Context([(FORWARD_PROOF_KEY, "0" * 64), (AS_USER_KEY, "default")])
    with pytest.raises(errors.Unauthenticated):
        g.user(forged)
    assert auth.forward_metadata(None) == ((FORWARD_PROOF_KEY, auth.forward_proof()),)


def test_a_relayed_memcached_write_is_checked_again_as_its_redis_equivalent() -> None:
    """A member's relay waves internal plumbing through, but a memcached store is a SET:
    the leader refuses it for a user without write (the follower's check is not trusted)."""
    users = f"user default on #{digest(b'admin')} ~* &* +@all\nuser ro on nopass ~* -@all +@read\n"
    auth = Auth(lambda: (users.encode(), b"k" * 32))
    g = Gate(auth)
    relayed = Context([("x-raftcache-forwarded", "1"), *auth.forward_metadata("ro")])
    store = cache_pb2.ExecRequest()
    store.op.call.argv.extend([b"raftcache.mc.store", b"set", b"k", b"0", b"0", b"v"])
    with pytest.raises(errors.PermissionDenied, match="'set' command"):
        g.check(relayed, "Exec", store)
    get = cache_pb2.ExecRequest()
    get.op.call.argv.extend([b"raftcache.mc.get", b"k"])
    assert g.check(relayed, "Exec", get).name == "ro"
