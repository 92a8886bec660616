"""Users and permissions on the memcached port of a real 3-node cluster (issue 14 item 3).

A connection authenticates as memcached 1.6's ASCII auth mode has it (`memcached -Y`): a
first `set <any key> 0 0 <bytes>` whose data block is `<user> <password>`. The replies
before and during authentication are compared byte for byte with a real memcached 1.6.18
started with `-Y` (when the binary is installed), through the leader and a follower; the
permissions are then exercised with pymemcache, as an application would.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from pymemcache.client.base import Client
from pymemcache.exceptions import (
    MemcacheClientError,
    MemcacheServerError,
    MemcacheUnexpectedCloseError,
)
from raftcache.chaos.local_cluster import LocalCluster, free_port
from raftcache.node.acl import digest

from tests.integration.conftest import running_cluster
from tests.integration.test_memcached_differential import normalize

pytestmark = pytest.mark.integration

ADMIN_PW = "admin-secret"
USERS = f"""\
user default on #{digest(ADMIN_PW.encode())} ~* &* +@all
user alice on >secret ~* &* +@all
user reader on >reader-pw ~* -@all +@read
user app on >app-pw ~app:* -@all +@read +@write -@dangerous
user off-user off >off-pw ~* +@all
"""
AUTHFILE = "alice:secret\n"
"""The same alice for the real memcached (-Y's file: user:password lines)."""
ROLES = ["leader", "follower"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    tmp = tmp_path_factory.mktemp("mc-auth")
    users = tmp / "users.acl"
    users.write_text(USERS)
    with running_cluster(
        tmp, extra_args=["--users-file", str(users), "--requirepass", ADMIN_PW]
    ) as c:
        yield c


def mc_port(cluster: LocalCluster, role: str) -> int:
    leader = cluster.wait_for_leader()
    index = leader if role == "leader" else (leader + 1) % 3
    return cluster.nodes[index].memcached_port


class AuthClient(Client):  # type: ignore[misc]
    """The README's recipe: pymemcache closes its connection after any error reply and opens
    a new one at the next call, so every connection it opens authenticates first
    (noreply=False: pymemcache sends `noreply` by default, and memcached answers the auth
    `set` whatever the flag says)."""

    def __init__(self, server: tuple[str, int], user: str, password: str, **kw: object) -> None:
        super().__init__(server, **kw)
        self._pair = f"{user} {password}"

    def _connect(self) -> None:
        super()._connect()
        self.set("auth", self._pair, noreply=False)


def client(cluster: LocalCluster, role: str, user: str | None, password: str = "") -> Client:
    """A pymemcache client of `user` (None: a plain client that has not authenticated)."""
    server = ("127.0.0.1", mc_port(cluster, role))
    if user is None:
        return Client(server, timeout=10, connect_timeout=10)
    c = AuthClient(server, user, password, timeout=10, connect_timeout=10)
    c.version()  # connects (and authenticates) now
    return c


def admin(cluster: LocalCluster) -> redis.Redis:
    leader = cluster.nodes[cluster.wait_for_leader()]
    return redis.Redis(port=leader.redis_port, password=ADMIN_PW, decode_responses=True)


def noperm(command: str) -> str:
    return f"NOPERM this user has no permissions to run the '{command}' command"


NOPERM_KEY = "NOPERM this user has no permissions to access one of the keys used as arguments"


def refused(call: object, text: str) -> None:
    with pytest.raises(MemcacheClientError) as info:
        call()  # type: ignore[operator]
    assert info.value.args[0] == text.encode(), info.value.args


# -- the texts, against a real memcached -Y ---------------------------------------------------

# One conversation per list: each step is sent alone and its reply read before the next (a
# real memcached 1.6.18 answers only the last of several unauthenticated commands that
# arrive in one read, a bug raftcache does not copy: tests/unit/test_memcached_auth.py; so
# a block of the wrong size, whose rest is read as a command line, is not compared here).
CONVERSATIONS = [
    ["get a", "version", "quit", "stats", "mn", "mg a v", "ms a 1", "x", "md a", "bogus", ""],
    ["add a 0 0 12", "SET a 0 0 12", "set a 0 0", "set a 0 0 x", "set a 0 0 -1", "get a"],
    ["set auth 0 0 11\nalice wrong", "get a", "set auth 0 0 11\nalice wrong", "version"],
    ["set a 0 0 12\nALICE secret", "set a 0 0 10\nbob secret", "get a"],
    ["set a 0 0 5\nalice", "set a 0 0 0\n", "set a 0 0 6\nalice ", "get a"],
    ["set auth 0 0 12\nalice secret", "flush_all", "get a", "set a 0 0 1\nx", "get a", "version"],
    ["set auth 0 0 12 noreply\nalice secret", "version"],
    ["set  anykey  7  9  16  1  2\n  alice  secret ", "version", "set auth 0 0 12\nalice secret"],
]


def converse(port: int, steps: list[str]) -> list[bytes]:
    """Each step's reply: what arrives until the server is quiet for a moment."""
    replies = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        for step in steps:
            sock.sendall(b"".join(line.encode() + b"\r\n" for line in step.split("\n")))
            out = b""
            deadline = time.monotonic() + 5
            sock.settimeout(0.15)
            while time.monotonic() < deadline:
                try:
                    chunk = sock.recv(65536)
                except TimeoutError:
                    if out.endswith(b"\r\n"):
                        break
                    continue
                if not chunk:
                    out += b"<CLOSED>"
                    break
                out += chunk
            replies.append(normalize(out))
    return replies


@pytest.fixture(scope="module")
def memcached_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    if shutil.which("memcached") is None:
        pytest.skip("the memcached binary is not installed (apt-get install -y memcached)")
    authfile = tmp_path_factory.mktemp("mc-authfile") / "authfile"
    authfile.write_text(AUTHFILE)
    port = free_port()
    args = ["memcached", "-u", "root", "-l", "127.0.0.1", "-p", str(port), "-U", "0"]
    proc = subprocess.Popen(
        [*args, "-m", "64", "-Y", str(authfile)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "memcached did not start"
                time.sleep(0.05)
        yield port
    finally:
        proc.kill()
        proc.wait()


def test_auth_replies_equal_memcached_with_an_authfile(
    memcached_auth: int, cluster: LocalCluster
) -> None:
    differences = []
    ports = [memcached_auth, *(mc_port(cluster, role) for role in ROLES)]
    # Each step waits for a quiet moment (converse): the three servers talk at once.
    with ThreadPoolExecutor(len(ports)) as pool:
        for steps in CONVERSATIONS:
            expected, *answers = pool.map(lambda port, s=steps: converse(port, s), ports)
            for role, got in zip(ROLES, answers, strict=True):
                if got != expected:
                    differences.append(
                        f"{role} {steps!r}:\n  memcached {expected}\n  raftcache {got}"
                    )
    assert not differences, "\n".join(differences)


def test_the_recorded_texts(cluster: LocalCluster) -> None:
    """What memcached 1.6.18 -Y answered when recorded (so the texts stay pinned even where
    the binary is not installed)."""
    got = converse(
        mc_port(cluster, "follower"),
        [
            *("get a", "set a 0 0 5\nalice", "set a 0 0 11\nalice wrong", "mg a", "quit"),
            *("set a 0 0 12\nalice secret", "version"),
        ],
    )
    assert got == [
        b"CLIENT_ERROR unauthenticated\r\n",
        b"CLIENT_ERROR bad authentication token format\r\n",
        b"CLIENT_ERROR authentication failure\r\n",
        b"CLIENT_ERROR unauthenticated\r\n",
        b"CLIENT_ERROR unauthenticated\r\n",  # and the connection stays open
        b"STORED\r\n",
        b"VERSION <v>\r\n",
    ]


# -- pymemcache, users and permissions -------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_unauthenticated_and_wrong_passwords_are_refused(cluster: LocalCluster, role: str) -> None:
    c = client(cluster, role, None)
    try:
        refused(lambda: c.get("k"), "unauthenticated")
        refused(lambda: c.set("k", "v", noreply=False), "bad authentication token format")
        refused(lambda: c.set("auth", "alice wrong", noreply=False), "authentication failure")
        refused(lambda: c.set("auth", "off-user off-pw", noreply=False), "authentication failure")
        refused(lambda: c.get("k"), "unauthenticated")
        assert c.set("auth", "alice secret", noreply=False) is True  # the right one still works
        assert c.set("k", "v", noreply=False) is True
        assert c.get("k") == b"v"
    finally:
        c.close()


@pytest.mark.parametrize("role", ROLES)
def test_the_default_user_authenticates_with_its_password(cluster: LocalCluster, role: str) -> None:
    c = client(cluster, role, "default", ADMIN_PW)
    try:
        assert c.set(f"d:{role}", "1", noreply=False) is True
        assert c.incr(f"d:{role}", 2) == 3
        assert c.delete(f"d:{role}", noreply=False) is True
        assert c.version() == b"1.6.18"
        assert "auth_cmds" in {k.decode() for k in c.stats()}
    finally:
        c.close()


@pytest.mark.parametrize("role", ROLES)
def test_a_read_only_user_reads_and_is_refused_writes(cluster: LocalCluster, role: str) -> None:
    writer = client(cluster, "leader", "alice", "secret")
    c = client(cluster, role, "reader", "reader-pw")
    key = f"ro:{role}"
    try:
        assert writer.set(key, "before", noreply=False) is True
        assert c.get(key) == b"before"
        refused(lambda: c.set(key, "after", noreply=False), noperm("set"))
        refused(lambda: c.delete(key, noreply=False), noperm("del"))
        refused(lambda: c.incr(key, 1), noperm("incrby"))
        refused(lambda: c.touch(key, 10, noreply=False), noperm("expire"))
        refused(lambda: c.flush_all(noreply=False), noperm("flushall"))
        c.set(key, "silent")  # pymemcache's default noreply: nothing answers, nothing changes
        assert c.get(key) == b"before"
        assert writer.get(key) == b"before"
    finally:
        writer.close()
        c.close()


@pytest.mark.parametrize("role", ROLES)
def test_a_prefix_user_touches_only_its_keys(cluster: LocalCluster, role: str) -> None:
    c = client(cluster, role, "app", "app-pw")
    try:
        assert c.set(f"app:{role}", "1", noreply=False) is True
        assert c.get(f"app:{role}") == b"1"
        assert c.incr(f"app:{role}", 1) == 2
        refused(lambda: c.set(f"other:{role}", "1", noreply=False), NOPERM_KEY)
        refused(lambda: c.get(f"other:{role}"), NOPERM_KEY)
        refused(lambda: c.get_many([f"app:{role}", f"other:{role}"]), NOPERM_KEY)
        refused(lambda: c.flush_all(noreply=False), noperm("flushall"))
        assert c.delete(f"app:{role}", noreply=False) is True
    finally:
        c.close()


def test_repeated_guesses_on_one_connection_are_slowed(cluster: LocalCluster) -> None:
    with socket.create_connection(("127.0.0.1", mc_port(cluster, "follower")), timeout=10) as s:
        reader = s.makefile("rb")
        took = []
        for _ in range(6):
            started = time.monotonic()
            s.sendall(b"set auth 0 0 11\r\nalice guess\r\n")
            assert reader.readline() == b"CLIENT_ERROR authentication failure\r\n"
            took.append(time.monotonic() - started)
        assert took[-1] >= 0.3, took  # later guesses wait (penalty doubles from 0.1 s)
        s.sendall(b"set auth 0 0 12\r\nalice secret\r\nstats\r\n")
        assert reader.readline() == b"STORED\r\n"
        stats = {}
        while (line := reader.readline()) != b"END\r\n":
            _, name, value = line.split()
            stats[name] = value
        assert int(stats[b"auth_errors"]) >= 6 and int(stats[b"auth_cmds"]) >= 7


def test_pymemcache_reconnects_after_an_error_and_must_authenticate_again(
    cluster: LocalCluster,
) -> None:
    """Why the README's recipe authenticates in `_connect`: a plain client authenticated
    once is unauthenticated again after any error reply (pymemcache closes the connection)."""
    c = client(cluster, "follower", None)
    try:
        assert c.set("auth", "reader reader-pw", noreply=False) is True
        refused(lambda: c.set("k", "v", noreply=False), noperm("set"))
        refused(lambda: c.get("k"), "unauthenticated")  # a new connection
    finally:
        c.close()
    r = client(cluster, "follower", "reader", "reader-pw")
    try:
        refused(lambda: r.set("k", "v", noreply=False), noperm("set"))
        assert r.get("no-such-key") is None  # authenticated again on its new connection
    finally:
        r.close()


def test_a_deleted_users_connection_closes(cluster: LocalCluster) -> None:
    r = admin(cluster)
    try:
        assert r.execute_command("ACL", "SETUSER", "gone", "on", ">gone-pw", "~*", "+@all")
        deadline = time.monotonic() + 10
        while True:  # the follower applies the new user shortly after the leader
            try:
                c = client(cluster, "follower", "gone", "gone-pw")
                break
            except MemcacheClientError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert c.set("gone:1", "1", noreply=False) is True
        assert r.execute_command("ACL", "DELUSER", "gone") == 1
        # closed; a reconnect (pymemcache's own, after a refused get) fails to authenticate
        closed = (MemcacheUnexpectedCloseError, ConnectionError, OSError, MemcacheClientError)
        with pytest.raises(closed):
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                with contextlib.suppress(MemcacheServerError):
                    # until the follower applies the deletion, the leader refuses the get it
                    # relays as that user ("the user 'gone' no longer exists")
                    c.get("gone:1")
                time.sleep(0.05)
        c.close()
    finally:
        r.close()
