"""Users and permissions on the Redis port of a real 3-node cluster (issue 14).

The cluster starts from a users file and --requirepass, as an operator would. Every case
runs through the leader and through a follower (whose writes the leader checks again).
The wording of replies and errors is Redis 7.0.15's: `EXPECTED` is checked on raftcache
and, when redis-server is installed, on real Redis too (test_expectations_hold_on_real_redis).
"""

from __future__ import annotations

import hashlib
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from raftcache.chaos.local_cluster import LocalCluster, free_port
from raftcache.node.acl import digest

from tests.integration.conftest import running_cluster

ADMIN_PW = "admin-secret"
USERS = f"""\
# what an operator's users file looks like
user default on #{digest(ADMIN_PW.encode())} ~* &* +@all
user reader on >reader-pw ~* &* -@all +@read +@connection
user app on >app-pw ~app:* &news.* -@all +@read +@write +@pubsub +@connection +@transaction
user off-user off >off-pw ~* +@all
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    tmp = tmp_path_factory.mktemp("redis-acl")
    users = tmp / "users.acl"
    users.write_text(USERS)
    ports = [free_port() for _ in range(3)]
    with running_cluster(
        tmp,
        redis_ports=ports,
        extra_args=["--users-file", str(users), "--requirepass", ADMIN_PW],
    ) as c:
        yield c


def port_of(cluster: LocalCluster, role: str) -> int:
    leader = cluster.wait_for_leader()
    index = leader if role == "leader" else (leader + 1) % 3
    return int(cluster.nodes[index].redis_addr.rpartition(":")[2])


ROLES = ["leader", "follower"]


# -- a raw RESP2 client: the exact bytes of every reply -------------------------------------


class Raw:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""

    def close(self) -> None:
        self.sock.close()

    def call(self, *argv: str | bytes) -> Any:
        parts = [a.encode() if isinstance(a, str) else a for a in argv]
        out = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
        self.sock.sendall(out)
        return self._reply()

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def _reply(self) -> Any:
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return Err(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self.buf += self.sock.recv(65536)
            data, self.buf = self.buf[:n], self.buf[n + 2 :]
            return data.decode("latin-1")
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise AssertionError(f"unexpected reply line {line!r}")


class Err(str):
    """An error reply's text."""


def raw(cluster: LocalCluster, role: str) -> Raw:
    return Raw(port_of(cluster, role))


def auth_once_applied(r: Raw, user: str, password: str, timeout: float = 5) -> None:
    """AUTH on a node that may not have applied a user made through another one yet."""
    deadline = time.monotonic() + timeout
    while r.call("AUTH", user, password) != "OK":
        assert time.monotonic() < deadline, f"the node did not apply the user {user!r}"
        time.sleep(0.05)


# -- the expectations: admin steps, then what each user may do -----------------------------

Step = tuple[tuple[str, ...], Any]

NOAUTH = Err("NOAUTH Authentication required.")
WRONGPASS = Err("WRONGPASS invalid username-password pair or user is disabled.")
NOPERM_KEY = Err("NOPERM this user has no permissions to access one of the keys used as arguments")
NOPERM_CHANNEL = Err(
    "NOPERM this user has no permissions to access one of the channels used as arguments"
)


def noperm(command: str) -> Err:
    return Err(f"NOPERM this user has no permissions to run the '{command}' command")


def modifier(rule: str, why: str) -> Err:
    return Err(f"ERR Error in ACL SETUSER modifier '{rule}': {why}")


# Run as an admin on a fresh server, in order (users named t-*).
EXPECTED: list[Step] = [
    (("ACL", "SETUSER", "t-bad", "foo"), modifier("foo", "Syntax error")),
    (
        ("ACL", "SETUSER", "t-bad", "+@nosuch"),
        modifier("+@nosuch", "Unknown command or category name in ACL"),
    ),
    (
        ("ACL", "SETUSER", "t-bad", "+nosuchcmd"),
        modifier("+nosuchcmd", "Unknown command or category name in ACL"),
    ),
    (
        ("ACL", "SETUSER", "t-bad", "#abc"),
        modifier(
            "#abc",
            "The password hash must be exactly 64 characters and contain only lowercase "
            "hexadecimal characters",
        ),
    ),
    (
        ("ACL", "SETUSER", "t-bad", "~a", "allkeys", "%R~b"),
        modifier(
            "%R~b",
            "Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and does "
            "not have any effect. Try 'resetkeys' to start with an empty list of patterns",
        ),
    ),
    (("ACL", "SETUSER", "a b"), Err("ERR Usernames can't contain spaces or null characters")),
    (("ACL", "GETUSER", "t-bad"), None),  # a refused SETUSER creates nothing
    (("ACL", "SETUSER", "t-one", "on", ">p1", "~k:*", "+get"), "OK"),
    (
        ("ACL", "SETUSER", "t-one", "<nope"),
        modifier("<nope", "The password you are trying to remove from the user does not exist"),
    ),
    (("ACL", "SETUSER", "t-one", "+@read", "-get", "&ch"), "OK"),
    (
        ("ACL", "DRYRUN", "t-one", "get", "k:1"),
        "This user has no permissions to run the 'get' command",
    ),
    (
        ("ACL", "DRYRUN", "t-one", "strlen", "x"),
        "This user has no permissions to access the 'x' key",
    ),
    (("ACL", "DRYRUN", "t-one", "strlen", "k:1"), "OK"),
    (("ACL", "DRYRUN", "t-one", "nosuch"), Err("ERR Command 'nosuch' not found")),
    (("ACL", "DRYRUN", "nobody", "get", "x"), Err("ERR User 'nobody' not found")),
    (("ACL", "SETUSER", "t-rw", "on", "nopass", "%R~r:*", "%W~w:*", "+@all"), "OK"),
    (("ACL", "DRYRUN", "t-rw", "copy", "r:1", "w:1"), "OK"),
    (
        ("ACL", "DRYRUN", "t-rw", "copy", "w:1", "r:1"),
        "This user has no permissions to access the 'w:1' key",
    ),
    (
        ("ACL", "DRYRUN", "t-rw", "publish", "c", "m"),
        "This user has no permissions to access the 'c' channel",
    ),
    (("ACL", "DRYRUN", "t-rw", "set", "w:1", "v"), "OK"),  # SET's key flags vary: GET reads
    (
        ("ACL", "DRYRUN", "t-rw", "set", "w:1", "v", "GET"),
        "This user has no permissions to access the 'w:1' key",
    ),
    (("ACL", "DELUSER", "default"), Err("ERR The 'default' user cannot be removed")),
    (("ACL", "DELUSER", "t-one", "t-rw", "t-none"), 2),
    (("ACL", "GETUSER", "t-one"), None),
    (("ACL", "CAT", "nosuch"), Err("ERR Unknown category 'nosuch'")),
    (
        ("ACL", "GENPASS", "0"),
        Err(
            "ERR ACL GENPASS argument must be the number of bits for the output password, a "
            "positive number up to 4096"
        ),
    ),
    (("ACL", "WHOAMI"), "default"),
    (("ACL", "WHOAMI", "x"), Err("ERR wrong number of arguments for 'acl|whoami' command")),
    (("AUTH", "nobody", "x"), WRONGPASS),
    (("AUTH", "a", "b", "c"), Err("ERR syntax error")),
]


def run_expected(r: Raw) -> list[str]:
    wrong = []
    for argv, want in EXPECTED:
        got = r.call(*argv)
        if got != want or type(got) is not type(want):
            wrong.append(f"{' '.join(argv)}: got {got!r}, want {want!r}")
    return wrong


@pytest.mark.parametrize("role", ROLES)
def test_acl_commands_answer_as_redis_does(cluster: LocalCluster, role: str) -> None:
    r = raw(cluster, role)
    try:
        assert r.call("AUTH", ADMIN_PW) == "OK"
        wrong = run_expected(r)
        assert not wrong, "\n".join(wrong)
    finally:
        r.close()


@pytest.fixture(scope="module")
def real_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server is not installed: cannot cross-check the expectations")
    port = free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=tmp_path_factory.mktemp("real-redis"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                Raw(port).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def test_expectations_hold_on_real_redis(real_redis: int) -> None:
    r = Raw(real_redis)
    try:
        assert r.call("ACL", "SETUSER", "default", "resetpass", f">{ADMIN_PW}") == "OK"
        assert r.call("AUTH", ADMIN_PW) == "OK"
        wrong = run_expected(r)
        assert not wrong, "\n".join(wrong)
    finally:
        r.close()


# -- authentication ---------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_a_connection_must_authenticate_first(cluster: LocalCluster, role: str) -> None:
    r = raw(cluster, role)
    try:
        assert r.call("GET", "k") == NOAUTH
        assert r.call("SET", "k", "v") == NOAUTH
        assert r.call("PING") == NOAUTH
        assert r.call("HELLO", "3") == Err(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the "
            "HELLO AUTH <user> <pass> option can be used to authenticate the client and select "
            "the RESP protocol version at the same time"
        )
        assert r.call("AUTH", "wrong") == WRONGPASS
        assert r.call("AUTH", "off-user", "off-pw") == WRONGPASS  # disabled
        assert r.call("HELLO", "2", "AUTH", "app", "bad") == WRONGPASS
        assert r.call("GET", "k") == NOAUTH  # nothing changed
        hello = r.call("HELLO", "2", "AUTH", "app", "app-pw")
        assert isinstance(hello, list) and hello[:2] == ["server", "redis"]
        assert r.call("ACL", "WHOAMI") == noperm("acl|whoami")
        assert r.call("CLIENT", "ID") >= 1
        assert r.call("AUTH", "default", ADMIN_PW) == "OK"
        assert r.call("ACL", "WHOAMI") == "default"
        assert r.call("RESET") == "RESET"  # back to an unauthenticated default connection
        assert r.call("GET", "k") == NOAUTH
    finally:
        r.close()


def test_redis_py_and_redis_cli_authenticate(cluster: LocalCluster) -> None:
    port = port_of(cluster, "follower")
    client = redis.Redis(port=port, username="app", password="app-pw", decode_responses=True)
    assert client.set("app:cli", "1") is True
    assert client.get("app:cli") == "1"
    with pytest.raises(redis.exceptions.NoPermissionError):
        client.set("other", "1")
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis(port=port, username="app", password="nope").ping()
    cli = shutil.which("redis-cli")
    if cli is None:
        pytest.skip("redis-cli is not installed (Debian redis-tools)")
    out = subprocess.run(
        [cli, "-p", str(port), "--user", "app", "--pass", "app-pw", "--no-auth-warning",
         "GET", "app:cli"],
        capture_output=True, text=True, timeout=10, check=True,
    )  # fmt: skip
    assert out.stdout.strip() == "1"


# -- permissions --------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_a_read_only_user_reads_and_is_refused_writes(cluster: LocalCluster, role: str) -> None:
    admin, r = raw(cluster, role), raw(cluster, role)
    try:
        assert admin.call("AUTH", ADMIN_PW) == "OK"
        assert admin.call("SET", f"ro:{role}", "v") == "OK"
        assert r.call("AUTH", "reader", "reader-pw") == "OK"
        assert r.call("GET", f"ro:{role}") == "v"
        assert r.call("SET", f"ro:{role}", "x") == noperm("set")
        assert r.call("DEL", f"ro:{role}") == noperm("del")
        assert r.call("FLUSHALL") == noperm("flushall")
        assert r.call("ACL", "SETUSER", "reader", "+@all") == noperm("acl|setuser")
        assert r.call("EVAL", "return 1", "0") == noperm("eval")
        assert admin.call("GET", f"ro:{role}") == "v"  # nothing changed
    finally:
        admin.close()
        r.close()


@pytest.mark.parametrize("role", ROLES)
def test_a_prefix_user_touches_only_its_keys_and_channels(cluster: LocalCluster, role: str) -> None:
    r = raw(cluster, role)
    try:
        assert r.call("AUTH", "app", "app-pw") == "OK"
        assert r.call("SET", f"app:{role}", "1") == "OK"
        assert r.call("INCR", f"app:{role}") == 2
        assert r.call("MSET", f"app:{role}:a", "1", "other", "2") == NOPERM_KEY
        assert r.call("GET", "other") == NOPERM_KEY
        assert r.call("PUBLISH", "news.sport", "goal") == 0
        assert r.call("PUBLISH", "weather", "rain") == NOPERM_CHANNEL
        assert r.call("MULTI") == "OK"
        assert r.call("SET", f"app:{role}:t", "1") == "QUEUED"
        assert r.call("SET", "other", "1") == NOPERM_KEY
        assert r.call("EXEC") == Err("EXECABORT Transaction discarded because of previous errors.")
        assert r.call("EXISTS", f"app:{role}:t") == 0  # the transaction did not run
    finally:
        r.close()


@pytest.mark.parametrize("role", ROLES)
def test_a_password_rotates_with_two_passwords(cluster: LocalCluster, role: str) -> None:
    user = f"rot-{role}"
    admin = raw(cluster, role)
    try:
        assert admin.call("AUTH", ADMIN_PW) == "OK"
        assert admin.call("ACL", "SETUSER", user, "on", ">old", "~*", "+@all") == "OK"
        assert admin.call("ACL", "SETUSER", user, ">new") == "OK"
        for password in ("old", "new"):
            r = raw(cluster, role)
            assert r.call("AUTH", user, password) == "OK", password
            r.close()
        assert admin.call("ACL", "SETUSER", user, "<old") == "OK"
        r = raw(cluster, role)
        assert r.call("AUTH", user, "old") == WRONGPASS
        assert r.call("AUTH", user, "new") == "OK"
        r.close()
        listed = [line for line in admin.call("ACL", "LIST") if line.startswith(f"user {user} ")]
        assert listed == [f"user {user} on #{digest(b'new')} ~* resetchannels +@all"]
        assert "new" not in admin.call("ACL", "GETUSER", user)[3]  # only the digest is kept
    finally:
        admin.close()


def test_a_change_made_on_a_follower_holds_at_once_on_every_node(cluster: LocalCluster) -> None:
    admin = raw(cluster, "follower")
    try:
        assert admin.call("AUTH", ADMIN_PW) == "OK"
        assert admin.call("ACL", "SETUSER", "fresh", "on", ">fresh-pw", "~f:*", "+get") == "OK"
        r = raw(cluster, "follower")  # the same node, right away
        assert r.call("AUTH", "fresh", "fresh-pw") == "OK"
        assert r.call("GET", "f:1") is None
        r.close()
        leader = raw(cluster, "leader")
        assert leader.call("AUTH", "fresh", "fresh-pw") == "OK"
        leader.close()
        cluster.wait_converged(timeout=20)
    finally:
        admin.close()


def test_users_change_for_connections_already_open(cluster: LocalCluster) -> None:
    admin, r = raw(cluster, "leader"), raw(cluster, "follower")
    try:
        assert admin.call("AUTH", ADMIN_PW) == "OK"
        assert admin.call("ACL", "SETUSER", "live", "on", ">pw", "~*", "+@all") == "OK"
        auth_once_applied(r, "live", "pw")  # made on the leader: the follower applies it soon
        assert r.call("SET", "live:1", "1") == "OK"
        assert admin.call("ACL", "SETUSER", "live", "-set") == "OK"
        deadline = time.monotonic() + 5
        while r.call("SET", "live:1", "2") != noperm("set"):
            assert time.monotonic() < deadline, "the follower did not apply the new rules"
            time.sleep(0.05)
        assert admin.call("ACL", "DELUSER", "live") == 1
        with pytest.raises((ConnectionError, OSError)):  # a deleted user's connections close
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                r.call("GET", "live:1")
                time.sleep(0.05)
    finally:
        admin.close()
        r.close()


EXEC_NOPERM_KEY = Err(
    "NOPERM ACLs rules changed between the moment the transaction was accumulated and the "
    "EXEC call. This command is no longer allowed for the following reason: no permission "
    "to touch the specified keys"
)


def exec_after_the_rules_change(admin: Raw, r: Raw, probe: Raw | None) -> Any:
    """Queue SET mx:1, GET mx:2, PING, SET mx:3 as `mx`; take mx:2 and mx:3 away; EXEC.
    `probe`: another connection of `mx` on r's node, to wait until that node applied it.
    The password is new on every call: an earlier call's `mx` (keys ~mx:1 only) must not let
    AUTH through on a follower that has not applied this call's rules yet."""
    password = f"pw-{uuid.uuid4().hex}"
    assert (
        admin.call("ACL", "SETUSER", "mx", "reset", "on", f">{password}", "~mx:*", "+@all") == "OK"
    )
    assert admin.call("DEL", "mx:1", "mx:3") in (0, 1, 2)
    auth_once_applied(r, "mx", password)
    if probe is not None:
        auth_once_applied(probe, "mx", password)
    assert r.call("MULTI") == "OK"
    assert [r.call(*c) for c in (("SET", "mx:1", "a"), ("GET", "mx:2"), ("PING",))] == [
        "QUEUED"
    ] * 3
    assert r.call("SET", "mx:3", "c") == "QUEUED"
    assert admin.call("ACL", "SETUSER", "mx", "resetkeys", "~mx:1") == "OK"
    deadline = time.monotonic() + 5
    while probe is not None and probe.call("GET", "mx:2") != NOPERM_KEY:
        assert time.monotonic() < deadline, "the node did not apply the new rules"
        time.sleep(0.05)
    return r.call("EXEC")


EXEC_EXPECTED = ["OK", EXEC_NOPERM_KEY, "PONG", EXEC_NOPERM_KEY]


@pytest.mark.parametrize("role", ROLES)
def test_exec_checks_queued_commands_against_the_rules_of_its_time(
    cluster: LocalCluster, role: str
) -> None:
    admin, r = raw(cluster, "leader"), raw(cluster, role)
    probe = raw(cluster, role) if role == "follower" else None
    try:
        assert admin.call("AUTH", ADMIN_PW) == "OK"
        assert exec_after_the_rules_change(admin, r, probe) == EXEC_EXPECTED
        assert admin.call("GET", "mx:1") == "a"
        assert admin.call("GET", "mx:3") is None  # the refused write did not happen
        entry = dict(zip(*[iter(r.call("ACL", "LOG", "1")[0])] * 2, strict=True))
        assert (entry["reason"], entry["context"], entry["object"]) == ("key", "multi", "mx:3")
    finally:
        for c in (admin, r, probe):
            if c is not None:
                c.close()


def test_exec_rechecks_as_real_redis_does(real_redis: int) -> None:
    admin, r = Raw(real_redis), Raw(real_redis)
    try:
        admin.call("AUTH", ADMIN_PW)  # an error while the module's first test has not run
        assert admin.call("ACL", "SETUSER", "default", "resetpass", f">{ADMIN_PW}") == "OK"
        assert admin.call("AUTH", ADMIN_PW) == "OK"
        assert exec_after_the_rules_change(admin, r, None) == EXEC_EXPECTED
        assert admin.call("GET", "mx:3") is None
        log = admin.call("ACL", "LOG", "1")
        entry = dict(zip(*[iter(log[0])] * 2, strict=True))
        assert (entry["reason"], entry["context"], entry["object"]) == ("key", "multi", "mx:3")
    finally:
        admin.close()
        r.close()


def test_refusals_are_logged_counted_and_slowed(cluster: LocalCluster) -> None:
    admin, r = raw(cluster, "leader"), raw(cluster, "leader")
    try:
        assert admin.call("AUTH", ADMIN_PW) == "OK"
        assert admin.call("ACL", "LOG", "RESET") == "OK"
        assert r.call("AUTH", "reader", "reader-pw") == "OK"
        assert r.call("SET", "k", "v") == noperm("set")
        assert r.call("AUTH", "reader", "guess") == WRONGPASS
        log = admin.call("ACL", "LOG")
        entries = [dict(zip(e[::2], e[1::2], strict=True)) for e in log]
        assert [(e["reason"], e["object"], e["username"]) for e in entries[:2]] == [
            ("auth", "AUTH", "reader"),
            ("command", "set", "reader"),
        ]
        assert "user=reader" in entries[1]["client-info"]
        took = []
        for _ in range(6):
            started = time.monotonic()
            assert r.call("AUTH", "reader", "guess") == WRONGPASS
            took.append(time.monotonic() - started)
        assert took[-1] >= 0.3, took  # later guesses wait (penalty doubles from 0.1 s)
        assert r.call("AUTH", "reader", "reader-pw") == "OK"  # the right one still works
    finally:
        admin.close()
        r.close()


def test_pipelined_guesses_wait_like_guesses_one_by_one(cluster: LocalCluster) -> None:
    """After a penalised WRONGPASS nothing else the connection sent runs until it is
    answered: a pipeline of guesses (the right one last, then CLIENT SETNAME and a write) is
    as slow as the guesses sent one by one, and nothing after the right one shows early."""
    admin, r = raw(cluster, "leader"), raw(cluster, "leader")
    try:
        assert admin.call("AUTH", ADMIN_PW) == "OK"
        assert admin.call("DEL", "guessed") in (0, 1)
        for _ in range(4):  # past the free failures: the next ones are penalised
            assert r.call("AUTH", "reader", "guess") == WRONGPASS
        pipeline = [("AUTH", "reader", f"guess{i}") for i in range(3)]
        pipeline += [("AUTH", ADMIN_PW), ("CLIENT", "SETNAME", "guessed"), ("SET", "guessed", "1")]
        started = time.monotonic()
        for argv in pipeline:
            parts = [a.encode() for a in argv]
            r.sock.sendall(
                b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
            )
        time.sleep(0.5)  # the first penalised guess waits >= 0.2 s, the next >= 0.4 s
        assert admin.call("GET", "guessed") is None  # the pipelined write has not run yet
        # nor has a command the front-end answers itself (it would tell the guess was right)
        assert "name=guessed " not in admin.call("CLIENT", "LIST")
        replies = [r._reply() for _ in pipeline]
        took = time.monotonic() - started
        assert replies == [WRONGPASS] * 3 + ["OK", "OK", "OK"]
        assert took >= 0.2 + 0.4 + 0.8, took  # the penalties add up, as one by one
        assert admin.call("GET", "guessed") == "1"
    finally:
        admin.close()
        r.close()


def test_a_penalised_auth_queued_in_multi_keeps_exec_whole(cluster: LocalCluster) -> None:
    """A wrong AUTH queued in a MULTI after the free failures: EXEC's array still holds
    one reply per queued command (its WRONGPASS first), and the connection waited."""
    r = raw(cluster, "leader")
    try:
        for _ in range(4):  # past the free failures
            assert r.call("AUTH", "reader", "guess") == WRONGPASS
        assert r.call("AUTH", ADMIN_PW) == "OK"
        assert r.call("MULTI") == "OK"
        assert r.call("AUTH", "reader", "guess") == "QUEUED"
        started = time.monotonic()
        assert r.call("SET", "multi-auth", "1") == "QUEUED"  # answered after the penalty
        assert time.monotonic() - started >= 0.15
        assert r.call("EXEC") == [WRONGPASS, "OK"]
        assert r.call("GET", "multi-auth") == "1"  # still the admin: the guess changed nothing
    finally:
        r.close()


def test_internal_acl_commands_cannot_be_sent_by_clients(cluster: LocalCluster) -> None:
    r = raw(cluster, "leader")
    try:
        assert r.call("AUTH", ADMIN_PW) == "OK"
        reply = r.call("raftcache.acl.setuser", "k" * 32, "evil", "on", "nopass", "+@all")
        assert isinstance(reply, Err) and reply.startswith("ERR unknown command")
        assert r.call("ACL", "GETUSER", "evil") is None
    finally:
        r.close()


def test_users_survive_a_restart_of_every_node(cluster: LocalCluster, tmp_path: Path) -> None:
    admin = raw(cluster, "leader")
    assert admin.call("AUTH", ADMIN_PW) == "OK"
    assert admin.call("ACL", "SETUSER", "durable", "on", ">d-pw", "~*", "+@read") == "OK"
    admin.close()
    for i in range(3):
        cluster.kill(i)
    for i in range(3):
        cluster.start_node(i)
    cluster.wait_until_ready(timeout=40)
    for role in ROLES:
        r = raw(cluster, role)
        assert r.call("AUTH", "durable", "d-pw") == "OK"
        assert r.call("GET", "nothing") is None
        assert r.call("SET", "x", "1") == noperm("set")
        r.close()


def test_a_pop_blocked_through_a_follower_keeps_its_user(cluster: LocalCluster) -> None:
    """The follower relays the blocked call to the leader as the caller's user: the leader's
    check passes for the user's own keys (and would refuse others)."""
    admin, r = raw(cluster, "leader"), raw(cluster, "follower")
    try:
        assert admin.call("AUTH", ADMIN_PW) == "OK"
        assert admin.call("ACL", "SETUSER", "q", "on", ">q-pw", "~q:*", "+@list") == "OK"
        auth_once_applied(r, "q", "q-pw")  # made on the leader: the follower applies it soon
        assert r.call("BLPOP", "other", "0.1") == NOPERM_KEY
        pusher = threading.Timer(0.5, lambda: admin.call("RPUSH", "q:jobs", "job-1"))
        pusher.start()
        assert r.call("BLPOP", "q:jobs", "10") == ["q:jobs", "job-1"]
        pusher.join()
    finally:
        admin.close()
        r.close()


@pytest.mark.parametrize("role", ROLES)
def test_a_script_runs_as_its_callers_user(cluster: LocalCluster, role: str) -> None:
    """redis.call inside EVAL/EVALSHA/EVAL_RO is checked against the caller's user, at apply,
    on every replica alike (Redis 7.0's texts)."""
    admin, r = raw(cluster, "leader"), raw(cluster, role)
    user = f"scripter-{role}"
    try:
        assert admin.call("AUTH", ADMIN_PW) == "OK"
        rules = ["on", ">s-pw", "~s:*", "&c", "+@scripting", "+get", "+set", "+publish"]
        assert admin.call("ACL", "SETUSER", user, *rules) == "OK"
        auth_once_applied(r, user, "s-pw")
        assert r.call("EVAL", "return redis.call('set', KEYS[1], 'v')", "1", "s:1") == "OK"
        assert r.call("EVAL", "return redis.call('get', 's:1')", "0") == "v"
        body = f"local r = redis.call('set', 'other-{role}', 'v') return r"
        refused_key = r.call("EVAL", body, "0")
        sha = hashlib.sha1(body.encode()).hexdigest()
        assert refused_key == (
            "ERR The user executing the script can't access at least one of the keys "
            f"mentioned in the command arguments script: {sha}, on @user_script:1."
        )
        refused_cmd = r.call("EVAL", "return redis.pcall('del', 's:1')['err']", "0")
        assert refused_cmd == (
            "ERR The user executing the script can't run this command or subcommand"
        )
        refused_channel = r.call("EVAL", "return redis.pcall('publish', 'd', 'm')['err']", "0")
        assert refused_channel == (
            "ERR The user executing the script can't publish to the channel mentioned in the "
            "command"
        )
        assert r.call("EVAL_RO", "return redis.pcall('get', 'x')['err']", "0").startswith(
            "ERR The user executing the script can't access"
        )
        assert admin.call("EXISTS", f"other-{role}") == 0  # nothing written
        assert admin.call("EVAL", body, "0") == "OK"  # the admin may
        cluster.wait_converged(timeout=20)  # every replica applied the same checks
    finally:
        admin.close()
        r.close()


def test_a_subscriber_whose_channel_is_revoked_gets_nothing_more(cluster: LocalCluster) -> None:
    """As Redis kills pub/sub clients whose channel permission goes: the next message for a
    revoked subscriber closes its connection instead of reaching it."""
    admin, sub = raw(cluster, "leader"), raw(cluster, "follower")
    watcher = raw(cluster, "follower")  # an admin on the subscriber's node
    try:
        assert admin.call("AUTH", ADMIN_PW) == "OK"
        assert watcher.call("AUTH", ADMIN_PW) == "OK"
        rules = ["on", ">l-pw", "&alerts.*", "+@pubsub", "+@connection"]
        assert admin.call("ACL", "SETUSER", "listener", *rules) == "OK"
        auth_once_applied(sub, "listener", "l-pw")
        assert sub.call("SUBSCRIBE", "alerts.fire") == ["subscribe", "alerts.fire", 1]
        admin.call("PUBLISH", "alerts.fire", "one")  # (counts the leader's receivers only)
        assert sub._reply() == ["message", "alerts.fire", "one"]
        assert admin.call("ACL", "SETUSER", "listener", "resetchannels", "&other") == "OK"
        deadline = time.monotonic() + 5
        while not any(
            u.startswith("user listener ") and "&other" in u for u in watcher.call("ACL", "LIST")
        ):
            assert time.monotonic() < deadline, "the follower did not apply the new channels"
            time.sleep(0.05)
        admin.call("PUBLISH", "alerts.fire", "two")
        with pytest.raises((ConnectionError, OSError)):
            sub._reply()  # closed: "two" never arrives
    finally:
        admin.close()
        sub.close()
        watcher.close()


def test_internal_keys_cannot_be_watched_and_internal_commands_are_refused(
    cluster: LocalCluster,
) -> None:
    """The users entry (password digests) and the forwarding key never reach a client: a
    Watch on them is refused; raftcache's own commands are unknown on the Redis port."""
    import grpc
    from raftcache.node.auth import basic_header
    from raftcache.v1 import cache_pb2, cache_pb2_grpc

    leader = cluster.wait_for_leader()
    channel = grpc.insecure_channel(cluster.nodes[leader].client_addr)
    stub = cache_pb2_grpc.CacheStub(channel)
    creds = (("authorization", basic_header("default", ADMIN_PW)),)
    for key in (b"\x00rcdb\xfdusers", b"\x00rcdb\xfdforward-key"):
        with pytest.raises(grpc.RpcError) as refused:
            next(iter(stub.Watch(cache_pb2.WatchRequest(key=key), metadata=creds, timeout=5)))
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "nodes' own data" in (refused.value.details() or "")
    channel.close()
    r = raw(cluster, "leader")
    try:
        assert r.call("AUTH", ADMIN_PW) == "OK"
        reply = r.call("raftcache.woken", "BLPOP", "app:q", "0")
        assert isinstance(reply, Err) and reply.startswith("ERR unknown command 'raftcache.woken'")
    finally:
        r.close()


def test_a_user_with_a_non_ascii_name_and_password_works_on_every_port(
    cluster: LocalCluster,
) -> None:
    """One byte encoding everywhere: a name and password made over gRPC (UTF-8 strings)
    work over RESP (bytes), and the other way round."""
    from raftcache.client import Client

    leader = cluster.wait_for_leader()
    addr = cluster.nodes[leader].client_addr
    with Client([addr], user="default", password=ADMIN_PW) as admin:
        admin.set_user("café", "on", ">pässwort", "~*", "+@all")
        assert "café" in " ".join(admin.list_users())
    r = raw(cluster, "leader")
    try:
        assert r.call("AUTH", "café", "pässwort") == "OK"
        assert r.call("ACL", "WHOAMI") == "café".encode().decode("latin-1")
        assert r.call("ACL", "SETUSER", "naïve", "on", ">mötley", "~*", "+@all") == "OK"
    finally:
        r.close()
    with Client([addr], user="naïve", password="mötley") as c:
        assert c.whoami() == "naïve"
