"""Users and permissions on the gRPC port of a real 3-node cluster (issue 14, item 3).

The cluster starts from a users file and --requirepass. Every case of the permission
matrix runs through the leader and through a follower: a follower forwards the call to the
leader naming the caller's user (with the members' proof), and the leader checks that user
again, so a follower never elevates. The SDK and the CLI authenticate with user/password.
"""

from __future__ import annotations

import asyncio
import functools
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from raftcache.chaos.local_cluster import LocalCluster
from raftcache.client import AuthenticationError, Client, PermissionDeniedError
from raftcache.node.auth import AS_USER_KEY, FORWARD_PROOF_KEY, basic_header
from raftcache.v1 import cache_pb2, cache_pb2_grpc, cluster_pb2, cluster_pb2_grpc

from tests.integration.conftest import running_cluster

pytestmark = pytest.mark.integration

ADMIN_PW = "admin-secret"
USERS = """\
user reader on >reader-pw ~* &* -@all +@read
user app on >app-pw ~app:* &news.* -@all +@read +@write +@pubsub
user off-user off >off-pw ~* &* +@all
"""
ROLES = ["leader", "follower"]
OK = grpc.StatusCode.OK
DENIED = grpc.StatusCode.PERMISSION_DENIED
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
SCRIPT = Path(sys.executable).parent / "raftcache"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    tmp = tmp_path_factory.mktemp("grpc-auth")
    users = tmp / "users.acl"
    users.write_text(USERS)
    with running_cluster(
        tmp, extra_args=["--users-file", str(users), "--requirepass", ADMIN_PW]
    ) as c:
        yield c


def address(cluster: LocalCluster, role: str) -> str:
    leader = cluster.wait_for_leader()
    index = leader if role == "leader" else (leader + 1) % 3
    return cluster.nodes[index].client_addr


def creds(user: str | None, password: str | None) -> list[tuple[str, str]]:
    return [] if user is None else [("authorization", basic_header(user, password or ""))]


ADMIN = ("default", ADMIN_PW)
READER = ("reader", "reader-pw")
APP = ("app", "app-pw")


class Node:
    """Blocking stubs to one node, each call with the given metadata."""

    def __init__(self, addr: str) -> None:
        self.channel = grpc.insecure_channel(addr)
        self.cache = cache_pb2_grpc.CacheStub(self.channel)
        self.cluster = cluster_pb2_grpc.ClusterStub(self.channel)

    def status(
        self, who: tuple[str, str] | None, method: str, request: Any, extra: Any = ()
    ) -> grpc.StatusCode:
        """The status code `method` ends with when called as `who`."""
        metadata = [*creds(*(who or (None, None))), *extra]
        try:
            getattr(self.cache, method)(request, metadata=metadata, timeout=10)
        except grpc.RpcError as exc:
            return exc.code()  # type: ignore[no-any-return]
        return OK

    def stream_status(self, who: tuple[str, str], method: str, request: Any) -> grpc.StatusCode:
        """How a stream starts: OK once the node sends its initial metadata."""
        call = getattr(self.cache, method)(request, metadata=creds(*who), timeout=10)
        try:
            call.initial_metadata()
            if call.done() and call.code() != OK:
                return call.code()  # type: ignore[no-any-return]
            return OK
        finally:
            call.cancel()

    def close(self) -> None:
        self.channel.close()


@pytest.fixture(params=ROLES)
def node(request: pytest.FixtureRequest, cluster: LocalCluster) -> Iterator[Node]:
    n = Node(address(cluster, request.param))
    try:
        yield n
    finally:
        n.close()


def call(argv: list[bytes]) -> cache_pb2.ExecRequest:
    request = cache_pb2.ExecRequest()
    request.op.call.argv.extend(argv)
    return request


# (who, method, request, expected) for each case of the matrix.
MATRIX: list[tuple[str, tuple[str, str] | None, str, Any, grpc.StatusCode]] = [
    ("admin set", ADMIN, "Set", cache_pb2.SetRequest(key=b"k", value=b"v"), OK),
    ("admin get", ADMIN, "Get", cache_pb2.GetRequest(key=b"k"), OK),
    ("no credentials", None, "Get", cache_pb2.GetRequest(key=b"k"), UNAUTHENTICATED),
    ("wrong password", ("default", "nope"), "Get", cache_pb2.GetRequest(key=b"k"), UNAUTHENTICATED),
    ("unknown user", ("ghost", "x"), "Get", cache_pb2.GetRequest(key=b"k"), UNAUTHENTICATED),
    (
        "disabled user",
        ("off-user", "off-pw"),
        "Get",
        cache_pb2.GetRequest(key=b"k"),
        UNAUTHENTICATED,
    ),
    ("reader get", READER, "Get", cache_pb2.GetRequest(key=b"k"), OK),
    ("reader mget", READER, "MGet", cache_pb2.MGetRequest(keys=[b"k", b"app:1"]), OK),
    ("reader scan", READER, "Scan", cache_pb2.ScanRequest(), OK),
    ("reader exec read", READER, "Exec", call([b"strlen", b"k"]), OK),
    ("reader set", READER, "Set", cache_pb2.SetRequest(key=b"k", value=b"v"), DENIED),
    ("reader delete", READER, "Delete", cache_pb2.DeleteRequest(key=b"k"), DENIED),
    ("reader incr", READER, "Incr", cache_pb2.IncrRequest(key=b"n", delta=1), DENIED),
    ("reader exec write", READER, "Exec", call([b"append", b"k", b"x"]), DENIED),
    ("reader publish", READER, "Publish", cache_pb2.PublishRequest(channel=b"c"), DENIED),
    (
        "reader mset",
        READER,
        "MSet",
        cache_pb2.MSetRequest(entries=[cache_pb2.KeyValue(key=b"k", value=b"v")]),
        DENIED,
    ),
    ("app set own", APP, "Set", cache_pb2.SetRequest(key=b"app:1", value=b"v"), OK),
    ("app get own", APP, "Get", cache_pb2.GetRequest(key=b"app:1"), OK),
    ("app incr own", APP, "Incr", cache_pb2.IncrRequest(key=b"app:n", delta=2), OK),
    ("app set other", APP, "Set", cache_pb2.SetRequest(key=b"k", value=b"v"), DENIED),
    ("app get other", APP, "Get", cache_pb2.GetRequest(key=b"k"), DENIED),
    ("app mget mixed", APP, "MGet", cache_pb2.MGetRequest(keys=[b"app:1", b"k"]), DENIED),
    (
        "app mset mixed",
        APP,
        "MSet",
        cache_pb2.MSetRequest(
            entries=[
                cache_pb2.KeyValue(key=b"app:2", value=b"v"),
                cache_pb2.KeyValue(key=b"k", value=b"v"),
            ]
        ),
        DENIED,
    ),
    (
        "app typed hset own",
        APP,
        "Exec",
        cache_pb2.ExecRequest(
            op=cache_pb2.DataOp(
                hset=cache_pb2.HSet(key=b"app:h", fields=[cache_pb2.FieldValue(field=b"f")])
            )
        ),
        OK,
    ),
    (
        "app typed sadd other",
        APP,
        "Exec",
        cache_pb2.ExecRequest(op=cache_pb2.DataOp(sadd=cache_pb2.SAdd(key=b"s", members=[b"m"]))),
        DENIED,
    ),
    ("app exec other", APP, "Exec", call([b"set", b"k", b"v"]), DENIED),
    ("reader exec flushall", READER, "Exec", call([b"flushall"]), DENIED),
    ("app publish own", APP, "Publish", cache_pb2.PublishRequest(channel=b"news.1"), OK),
    ("app publish other", APP, "Publish", cache_pb2.PublishRequest(channel=b"ops"), DENIED),
    (
        "app txn mixed",
        APP,
        "Txn",
        cache_pb2.TxnRequest(
            success=[
                cache_pb2.DataOp(set=cache_pb2.StrSet(key=b"app:t", value=b"v")),
                cache_pb2.DataOp(set=cache_pb2.StrSet(key=b"t", value=b"v")),
            ]
        ),
        DENIED,
    ),
    (
        "app txn compare other",
        APP,
        "Txn",
        cache_pb2.TxnRequest(
            compares=[cache_pb2.Compare(key=b"k", value=b"v")],
            success=[cache_pb2.DataOp(set=cache_pb2.StrSet(key=b"app:t", value=b"v"))],
        ),
        DENIED,
    ),
    (
        "app txn own",
        APP,
        "Txn",
        cache_pb2.TxnRequest(
            compares=[cache_pb2.Compare(key=b"app:t", version=0)],
            success=[cache_pb2.DataOp(set=cache_pb2.StrSet(key=b"app:t2", value=b"v"))],
        ),
        OK,
    ),
]


@pytest.mark.parametrize(
    ("who", "method", "request_", "expected"),
    [case[1:] for case in MATRIX],
    ids=[case[0] for case in MATRIX],
)
def test_permission_matrix(
    node: Node,
    who: tuple[str, str] | None,
    method: str,
    request_: Any,
    expected: grpc.StatusCode,
) -> None:
    assert node.status(who, method, request_) == expected


def test_a_refusal_says_why_in_redis_words(node: Node) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        node.cache.Set(cache_pb2.SetRequest(key=b"k", value=b"v"), metadata=creds(*APP), timeout=10)
    assert refused.value.code() == DENIED
    details = refused.value.details()
    assert "no permissions to access one of the keys" in details and "'k'" in details
    assert "(user 'app')" in details
    with pytest.raises(grpc.RpcError) as refused:
        node.cache.Set(
            cache_pb2.SetRequest(key=b"k", value=b"v"), metadata=creds(*READER), timeout=10
        )
    assert "no permissions to run the 'set' command" in refused.value.details()
    with pytest.raises(grpc.RpcError) as refused:
        node.cache.Get(cache_pb2.GetRequest(key=b"k"), timeout=10)
    assert refused.value.code() == UNAUTHENTICATED
    assert "authorization: Basic" in refused.value.details()


def test_a_batch_refuses_only_the_ops_the_user_may_not_run(node: Node) -> None:
    request = cache_pb2.BatchRequest(
        ops=[
            cache_pb2.BatchOp(set=cache_pb2.SetRequest(key=b"app:b", value=b"1")),
            cache_pb2.BatchOp(set=cache_pb2.SetRequest(key=b"b", value=b"1")),
            cache_pb2.BatchOp(get=cache_pb2.GetRequest(key=b"app:b")),
            cache_pb2.BatchOp(get=cache_pb2.GetRequest(key=b"b")),
            cache_pb2.BatchOp(exec=call([b"incr", b"app:bn"])),
        ]
    )
    response = node.cache.Batch(request, metadata=creds(*APP), timeout=10)
    kinds = [r.WhichOneof("result") for r in response.results]
    assert kinds == ["set", "error", "get", "error", "exec"]
    for i in (1, 3):
        assert response.results[i].error.code == DENIED.value[0]
        assert response.results[i].error.origin == "PermissionDenied"
    assert response.results[2].get.value == b"1"
    with pytest.raises(grpc.RpcError) as refused:
        node.cache.Batch(request, timeout=10)
    assert refused.value.code() == UNAUTHENTICATED


def test_streams_check_channels_keys_and_prefixes(node: Node) -> None:
    sub = cache_pb2.SubscribeRequest
    assert node.stream_status(APP, "Subscribe", sub(channels=[b"news.a"])) == OK
    assert node.stream_status(APP, "Subscribe", sub(channels=[b"ops"])) == DENIED
    assert node.stream_status(APP, "Subscribe", sub(patterns=[b"news.*"])) == OK  # literally
    assert node.stream_status(APP, "Subscribe", sub(patterns=[b"news.a*"])) == DENIED
    assert node.stream_status(READER, "Subscribe", sub(patterns=[b"news.*"])) == DENIED
    watch = cache_pb2.WatchRequest
    assert node.stream_status(APP, "Watch", watch(key=b"app:1")) == OK
    assert node.stream_status(APP, "Watch", watch(key=b"other")) == DENIED
    assert node.stream_status(APP, "Watch", watch(key=b"app:", prefix=True)) == OK
    assert node.stream_status(APP, "Watch", watch(key=b"app:x:", prefix=True)) == OK
    assert node.stream_status(APP, "Watch", watch(key=b"ap", prefix=True)) == DENIED
    assert node.stream_status(APP, "Watch", watch(key=b"", prefix=True)) == DENIED
    assert node.stream_status(READER, "Watch", watch(key=b"", prefix=True)) == OK
    assert node.stream_status(("off-user", "off-pw"), "Watch", watch(key=b"k")) == UNAUTHENTICATED


def test_open_streams_end_when_the_rules_take_their_rights_away(cluster: LocalCluster) -> None:
    """A Subscribe or Watch stream is one call: when the users change, the node checks its
    caller again before the next delivery; a revoked right ends it with PERMISSION_DENIED
    and the message or event is not delivered (Redis drops such subscribers too)."""
    leader, follower = Node(address(cluster, "leader")), Node(address(cluster, "follower"))
    rules = ["reset", "on", ">s-pw", "~s:*", "&s.*", "+@all"]
    try:
        leader.cluster.SetUser(
            cluster_pb2.SetUserRequest(name="streamer", rules=rules),
            metadata=creds(*ADMIN),
            timeout=10,
        )
        who = ("streamer", "s-pw")
        while follower.status(who, "Get", cache_pb2.GetRequest(key=b"s:1")) != OK:
            pass  # until the follower applied the user
        sub = follower.cache.Subscribe(
            cache_pb2.SubscribeRequest(channels=[b"s.news"]), metadata=creds(*who), timeout=30
        )
        watch = follower.cache.Watch(
            cache_pb2.WatchRequest(key=b"s:1"), metadata=creds(*who), timeout=30
        )
        sub.initial_metadata(), watch.initial_metadata()
        put = functools.partial(leader.cache.Set, metadata=creds(*ADMIN), timeout=10)
        pub = functools.partial(leader.cache.Publish, metadata=creds(*ADMIN), timeout=10)
        pub(cache_pb2.PublishRequest(channel=b"s.news", message=b"before"))
        put(cache_pb2.SetRequest(key=b"s:1", value=b"before"))
        assert next(sub).message == b"before"
        assert next(watch).value == b"before"
        leader.cluster.SetUser(
            cluster_pb2.SetUserRequest(name="streamer", rules=["resetchannels", "resetkeys"]),
            metadata=creds(*ADMIN),
            timeout=10,
        )
        while follower.status(who, "Get", cache_pb2.GetRequest(key=b"s:1")) != DENIED:
            pass  # until the follower applied the change
        pub(cache_pb2.PublishRequest(channel=b"s.news", message=b"after"))
        put(cache_pb2.SetRequest(key=b"s:1", value=b"after"))
        for stream in (sub, watch):
            with pytest.raises(grpc.RpcError) as ended:
                got = next(stream)
                pytest.fail(f"delivered after the right was revoked: {got}")
            assert ended.value.code() == DENIED
    finally:
        leader.close()
        follower.close()


def test_a_forged_relay_header_gives_nothing_more(node: Node) -> None:
    get, put = cache_pb2.GetRequest(key=b"k"), cache_pb2.SetRequest(key=b"k", value=b"v")
    forged = [(AS_USER_KEY, "default")]
    assert node.status(None, "Get", get, forged) == UNAUTHENTICATED
    assert node.status(READER, "Set", put, forged) == DENIED
    with_proof = [*forged, (FORWARD_PROOF_KEY, "0" * 64)]
    assert node.status(READER, "Set", put, with_proof) == DENIED
    assert node.status(None, "Get", get, with_proof) == UNAUTHENTICATED
    relayed = [("x-raftcache-forwarded", "1"), *forged]  # posing as a follower
    assert node.status(READER, "Set", put, relayed) == DENIED


def test_users_of_concurrent_forwarded_calls_never_mix(cluster: LocalCluster) -> None:
    """A follower auto-pipelines concurrent forwarded calls into Batch RPCs: one per user,
    so a reader's write never rides along with the admin's."""

    async def run() -> list[grpc.StatusCode]:
        async with grpc.aio.insecure_channel(address(cluster, "follower")) as channel:
            stub = cache_pb2_grpc.CacheStub(channel)

            async def put(who: tuple[str, str], i: int) -> grpc.StatusCode:
                request = cache_pb2.SetRequest(key=b"mix:%d" % i, value=b"v")
                try:
                    await stub.Set(request, metadata=creds(*who), timeout=10)
                except grpc.aio.AioRpcError as exc:
                    return exc.code()
                return OK

            return list(
                await asyncio.gather(*(put(ADMIN if i % 2 else READER, i) for i in range(200)))
            )

    codes = asyncio.run(run())
    assert codes == [OK if i % 2 else DENIED for i in range(200)]


def test_password_rotation_and_a_user_made_on_a_follower(cluster: LocalCluster) -> None:
    follower = Node(address(cluster, "follower"))
    try:
        follower.cluster.SetUser(
            cluster_pb2.SetUserRequest(
                name="rot", rules=["on", ">old-pw", ">new-pw", "~*", "&*", "+@all"]
            ),
            metadata=creds(*ADMIN),
            timeout=10,
        )
        get = cache_pb2.GetRequest(key=b"k")
        put = cache_pb2.SetRequest(key=b"rot", value=b"v")
        # made through the follower, it holds there at once
        assert follower.status(("rot", "old-pw"), "Set", put) == OK
        assert follower.status(("rot", "new-pw"), "Get", get) == OK
        follower.cluster.SetUser(
            cluster_pb2.SetUserRequest(name="rot", rules=["<old-pw"]),
            metadata=creds(*ADMIN),
            timeout=10,
        )
        assert follower.status(("rot", "old-pw"), "Get", get) == UNAUTHENTICATED
        assert follower.status(("rot", "new-pw"), "Set", put) == OK
        who = follower.cluster.WhoAmI(
            cluster_pb2.WhoAmIRequest(), metadata=creds("rot", "new-pw"), timeout=10
        )
        assert who.user == "rot"
        with pytest.raises(grpc.RpcError) as refused:
            follower.cluster.SetUser(
                cluster_pb2.SetUserRequest(name="x", rules=["on"]),
                metadata=creds(*READER),
                timeout=10,
            )
        assert refused.value.code() == DENIED
    finally:
        follower.close()


def test_the_sdk_authenticates_every_call(cluster: LocalCluster) -> None:
    endpoints = ",".join(n.client_addr for n in cluster.nodes)
    with Client(endpoints, user="app", password="app-pw", timeout=10) as app:
        app.set("app:sdk", "1")
        assert app.get("app:sdk") == b"1"
        assert app.hset("app:sdk-h", {"f": "v"}) == 1
        with pytest.raises(PermissionDeniedError, match=r"acl\|whoami"):
            app.whoami()  # as on Redis: ACL WHOAMI is not in @read or @write
        with pytest.raises(PermissionDeniedError, match="no permissions"):
            app.set("sdk", "1")
        with pytest.raises(PermissionDeniedError):
            app.get("sdk")
        with pytest.raises(PermissionDeniedError):
            app.list_users()

        async def many() -> list[Any]:  # auto-pipelined: one Batch, one refused op
            from raftcache.client import AsyncClient

            async with AsyncClient(endpoints, user="app", password="app-pw") as c:
                return await asyncio.gather(
                    *(c.set(f"app:p{i}" if i % 2 else f"p{i}", "v") for i in range(20)),
                    return_exceptions=True,
                )

        results = asyncio.run(many())
        assert all(isinstance(r, PermissionDeniedError) for r in results[::2])
        assert all(isinstance(r, int) for r in results[1::2])
    with (
        Client(endpoints, user="app", password="wrong", timeout=10) as bad,
        pytest.raises(AuthenticationError, match="invalid username-password"),
    ):
        bad.get("app:sdk")
    with Client(endpoints, timeout=10) as anonymous:
        with pytest.raises(AuthenticationError, match="authentication required"):
            anonymous.get("app:sdk")
        with pytest.raises(AuthenticationError):
            list(anonymous.watch("app:sdk"))
    with Client(endpoints, password=ADMIN_PW, timeout=10) as admin:  # the default user's
        admin.set_user("sdk-user", "on", ">sdk-pw", "~sdk:*", "+@all")
        info = admin.get_user("sdk-user")
        assert info is not None and info.keys == "~sdk:*" and "on" in info.flags
        assert any(line.startswith("user sdk-user on ") for line in admin.list_users())
        assert admin.get_user("nobody") is None
        with Client(endpoints, user="sdk-user", password="sdk-pw", timeout=10) as made:
            made.set("sdk:1", "v")
            assert made.whoami() == "sdk-user"
        assert admin.delete_users("sdk-user") == 1


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("RAFTCACHE_USER", "RAFTCACHE_PA"))
    }
    environment.update(env or {})
    return subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, env=environment, timeout=30
    )


def test_the_cli_takes_user_and_password(cluster: LocalCluster) -> None:
    endpoints = ["--endpoints", ",".join(n.client_addr for n in cluster.nodes)]
    app = ["--user", "app", "--password", "app-pw"]
    done = run_cli(*endpoints, *app, "set", "app:cli", "v")
    assert done.returncode == 0, done.stderr
    assert run_cli("get", "app:cli", *endpoints, *app).stdout == "v\n"  # options after too
    refused = run_cli(*endpoints, *app, "set", "cli", "v")
    assert refused.returncode == 8
    assert "no permissions to run" in refused.stderr or "no permissions to access" in refused.stderr
    anonymous = run_cli(*endpoints, "get", "app:cli")
    assert anonymous.returncode == 8 and "authentication required" in anonymous.stderr
    env = {"RAFTCACHE_USER": "app", "RAFTCACHE_PASSWORD": "app-pw"}
    assert run_cli(*endpoints, "get", "app:cli", env=env).stdout == "v\n"
    admin_env = {"RAFTCACHE_PASSWORD": ADMIN_PW}
    assert run_cli(*endpoints, "acl", "whoami", env=admin_env).stdout == "default\n"
    made = run_cli(
        *endpoints, "acl", "setuser", "cli-user", "on", ">cli-pw", "~cli:*", "-@all", "+get",
        "+set", env=admin_env,
    )  # fmt: skip
    assert made.returncode == 0 and made.stdout == "OK\n", made.stderr
    shown = run_cli(*endpoints, "--json", "acl", "getuser", "cli-user", env=admin_env)
    assert '"keys": "~cli:*"' in shown.stdout
    assert "user cli-user on" in run_cli(*endpoints, "acl", "list", env=admin_env).stdout
    as_made = ["--user", "cli-user", "--password", "cli-pw"]
    assert run_cli(*endpoints, *as_made, "set", "cli:1", "v").returncode == 0
    assert run_cli(*endpoints, *as_made, "del", "cli:1").returncode == 8
    assert run_cli(*endpoints, "acl", "deluser", "cli-user", env=admin_env).stdout == "1\n"
    missing = run_cli(*endpoints, "acl", "getuser", "cli-user", env=admin_env)
    assert missing.returncode == 1 and missing.stdout == "(nil)\n"
    assert run_cli(*endpoints, "acl", "getuser", env=admin_env).returncode == 2


def test_backup_needs_every_key_readable_and_snapshot_admin(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    endpoints = ",".join(n.client_addr for n in cluster.nodes)
    with Client(endpoints, user="reader", password="reader-pw", timeout=10) as reader:
        info = reader.backup(str(tmp_path / "ok.rcbak"))  # ~* -@all +@read: the backup user
        assert info.key_count >= 1
    with (
        Client(endpoints, user="app", password="app-pw", timeout=10) as app,
        pytest.raises(PermissionDeniedError, match="read every key"),
    ):
        app.backup(str(tmp_path / "no.rcbak"))
    assert not (tmp_path / "no.rcbak").exists()
    node = Node(address(cluster, "leader"))
    try:
        for who, expected in ((ADMIN, OK), (READER, DENIED), (None, UNAUTHENTICATED)):
            try:
                node.cluster.Snapshot(
                    cluster_pb2.SnapshotRequest(),
                    metadata=creds(*(who or (None, None))),
                    timeout=10,
                )
                code = OK
            except grpc.RpcError as exc:
                code = exc.code()
            assert code == expected, who
    finally:
        node.close()


def test_membership_calls_are_admin_commands(cluster: LocalCluster) -> None:
    """ListMembers is CLUSTER NODES; AddMember, RemoveMember and TransferLeadership are the
    @admin CLUSTER MEET, FORGET and FAILOVER. Nothing here changes the membership: the
    admin's changes are refused for their own reasons once past the check."""
    node = Node(address(cluster, "leader"))
    calls = {
        "ListMembers": (cluster_pb2.ListMembersRequest(), OK),
        "RemoveMember": (
            cluster_pb2.RemoveMemberRequest(member="127.0.0.1:1"),
            grpc.StatusCode.FAILED_PRECONDITION,  # not a member
        ),
        "AddMember": (
            cluster_pb2.AddMemberRequest(raft_addr=cluster.nodes[0].raft_addr),
            grpc.StatusCode.FAILED_PRECONDITION,  # already a member
        ),
        "TransferLeadership": (
            cluster_pb2.TransferLeadershipRequest(target="127.0.0.1:1"),
            grpc.StatusCode.FAILED_PRECONDITION,  # not a member
        ),
    }
    try:
        for method, (request, admin_code) in calls.items():
            for who, expected in (
                (ADMIN, admin_code),
                (READER, DENIED),
                (APP, DENIED),
                (None, UNAUTHENTICATED),
            ):
                try:
                    getattr(node.cluster, method)(
                        request, metadata=creds(*(who or (None, None))), timeout=10
                    )
                    code = OK
                except grpc.RpcError as exc:
                    code = exc.code()
                assert code == expected, (method, who)
    finally:
        node.close()
