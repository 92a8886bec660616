"""The memcached port's authentication (memcached 1.6's ASCII auth, `memcached -Y`) and its
permissions (each command checked as its Redis equivalent), on a McConnection over a fake
engine (tests/unit/test_memcached_protocol.py) with real users (node/acl.py).

The replies before authentication are memcached 1.6.18's, recorded from `memcached -Y`
(tests/integration/test_memcached_differential.py compares them with the real one)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from raftcache.node import acl
from raftcache.node.auth import Auth
from raftcache.node.keyspace.memcached import redis_equivalents
from raftcache.node.memcached import server as mc_server
from raftcache.node.memcached.server import (
    MAX_AUTH_BLOCK_BYTES,
    MAX_AUTH_LINE_BYTES,
    McConnection,
    McServer,
)

from tests.unit.resp_fakes import FakeTransport, settle
from tests.unit.test_memcached_protocol import LIMIT, McEngine

USERS = f"""\
user default on >admin-pw ~* &* +@all
user reader on >reader-pw ~* -@all +@read
user app on >app-pw ~app:* -@all +@read +@write -@dangerous
user spaced on #{acl.digest(b"two words")} ~* +@all
user off-user off >off-pw ~* +@all
"""
UNAUTH = b"CLIENT_ERROR unauthenticated\r\n"
FAILURE = b"CLIENT_ERROR authentication failure\r\n"
BAD_TOKEN = b"CLIENT_ERROR bad authentication token format\r\n"


def stored(text: str) -> bytes:
    """Users as the replicated entry holds them (ACL LIST lines, passwords hashed)."""
    return acl.Acl.parse(text).text().encode("latin-1")


class Users:
    """The node's replicated users, changeable by a test."""

    def __init__(self, text: str | None = USERS) -> None:
        self.raw = stored(text) if text is not None else None

    def set(self, text: str) -> None:
        self.raw = stored(text)

    def read(self) -> tuple[bytes | None, bytes | None]:
        return self.raw, b"forward-key"


class UserEngine(McEngine):
    """Notes which user each engine the connection takes acts for."""

    def __init__(self) -> None:
        super().__init__()
        self.users_asked: list[str | None] = []

    def for_user(self, name: str | None) -> UserEngine:
        self.users_asked.append(name)
        return self


class Conn:
    def __init__(self, users: Users | None = None) -> None:
        self.users = users or Users()
        self.engine = UserEngine()
        self.server = McServer(self.engine, LIMIT)  # type: ignore[arg-type]
        self.server.auth = self.auth = Auth(self.users.read)
        self.conn = McConnection(self.server, 1)
        self.transport = FakeTransport()
        self.conn.connection_made(self.transport)

    async def send(self, data: bytes) -> bytes:
        """Send data; return what was answered since the last call."""
        before = len(self.transport.out)
        self.conn.data_received(data)
        for _ in range(5):
            self.engine.commit()
            await settle()
        return bytes(self.transport.out[before:])


def run(test: Any) -> None:
    async def go() -> None:
        await test(Conn())

    asyncio.run(go())


def auth_block(user: str, password: str, command: str = "set auth 0 0") -> bytes:
    block = f"{user} {password}".encode()
    return f"{command} {len(block)}\r\n".encode() + block + b"\r\n"


# -- before authenticating -------------------------------------------------------------------


def test_every_command_but_the_auth_set_answers_unauthenticated() -> None:
    async def test(c: Conn) -> None:
        for line in (
            b"get a",
            b"version",
            b"stats",
            b"quit",  # not even quit closes the connection (memcached 1.6.18)
            b"mn",
            b"mg a v",
            b"ms a 1",
            b"x",  # ms's data line is a command of its own
            b"md a",
            b"bogus",
            b"",
            b"add a 0 0 12",
            b"SET a 0 0 12",
            b"setx a 0 0 12",
            b"set a 0 0",
            b"set a 0 0 x",
            b"set a 0 0 -1",
            b"config get cluster",
        ):
            assert await c.send(line + b"\r\n") == UNAUTH, line
        assert not c.transport.closed and c.engine.submitted == []
        assert c.conn.user is None

    run(test)


def test_the_auth_set_answers_stored_and_the_connection_is_that_user() -> None:
    async def test(c: Conn) -> None:
        assert await c.send(auth_block("reader", "reader-pw")) == b"STORED\r\n"
        assert c.conn.user is not None and c.conn.user_name == "reader"
        assert c.engine.users_asked[-1] == "reader"  # relayed calls name the user
        assert c.engine.submitted == []  # nothing was stored
        assert await c.send(b"get auth\r\nversion\r\n") == b"END\r\nVERSION 1.6.18\r\n"
        assert c.server.stats.counts["auth_cmds"] == 1

    run(test)


def test_the_key_flags_exptime_and_noreply_do_not_matter() -> None:
    async def test(c: Conn) -> None:
        block = b"reader reader-pw"
        line = b"set  anything  x  y  %d 1 2 noreply\r\n" % len(block)
        assert await c.send(line + block + b"\r\n") == b"STORED\r\n"

    run(test)


def test_the_pair_may_be_spaced_and_the_password_may_hold_spaces() -> None:
    async def test(c: Conn) -> None:
        assert await c.send(auth_block("  reader ", "  reader-pw  ")) == b"STORED\r\n"

    run(test)
    run(lambda c: _expect(c, auth_block("spaced", "two words"), b"STORED\r\n"))
    # memcached 1.6.18 reads the second word only; raftcache takes the rest of the block
    run(lambda c: _expect(c, auth_block("reader", "reader-pw extra"), FAILURE))


async def _expect(c: Conn, data: bytes, reply: bytes) -> None:
    assert await c.send(data) == reply


def test_a_wrong_pair_fails_and_the_connection_may_try_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(mc_server, "penalty_s", lambda failures: 0.0)  # (tested below)

    async def test(c: Conn) -> None:
        for user, password in (
            ("reader", "wrong"),
            ("nobody", "reader-pw"),
            ("off-user", "off-pw"),  # a disabled user
            ("READER", "reader-pw"),
        ):
            assert await c.send(auth_block(user, password)) == FAILURE, user
            assert await c.send(b"get a\r\n") == UNAUTH
        assert c.auth.failures[("memcached", "auth")] == 4
        assert c.server.stats.counts["auth_errors"] == 4
        assert not c.transport.closed

    run(test)


def test_malformed_auth_blocks() -> None:
    async def test(c: Conn) -> None:
        assert await c.send(b"set a 0 0 5\r\nalice\r\n") == BAD_TOKEN
        assert await c.send(b"set a 0 0 6\r\nalice \r\n") == BAD_TOKEN
        assert await c.send(b"set a 0 0 0\r\n\r\n") == BAD_TOKEN
        # the block is size+2 bytes whatever it holds: the rest is a command line
        out = await c.send(b"set a 0 0 2\r\nxyz\r\n")
        assert out == b"CLIENT_ERROR bad command line termination\r\n" + UNAUTH
        assert c.auth.failures[("memcached", "auth")] == 0  # not a guess

    run(test)


def test_the_auth_set_may_arrive_byte_by_byte_and_pipelined() -> None:
    async def test(c: Conn) -> None:
        data = b"get a\r\n" + auth_block("reader", "reader-pw") + b"get a\r\n"
        out = b""
        for i in range(len(data)):
            out += await c.send(data[i : i + 1])
        assert out == UNAUTH + b"STORED\r\nEND\r\n"

    run(test)


def test_junk_before_authenticating_closes_the_connection() -> None:
    async def test(c: Conn) -> None:
        assert await c.send(b"x" * (MAX_AUTH_LINE_BYTES + 1)) == b""
        assert c.transport.closed

    run(test)

    async def big(c: Conn) -> None:
        out = await c.send(b"set a 0 0 %d\r\n" % (MAX_AUTH_BLOCK_BYTES + 1))
        assert out == BAD_TOKEN and c.transport.closed

    run(big)


def test_repeated_failures_are_slowed_and_nothing_is_read_meanwhile(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(mc_server, "penalty_s", lambda failures: 0.2 if failures > 1 else 0.0)

    async def test(c: Conn) -> None:
        assert await c.send(auth_block("reader", "guess")) == FAILURE  # free
        data = auth_block("reader", "guess") + auth_block("reader", "reader-pw") + b"get a\r\n"
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await c.send(data) == b""  # the failure waits; the rest is not read yet
        assert c.transport.paused and c.conn.user is None
        while len(c.transport.out) < 2 * len(FAILURE) + len(b"STORED\r\nEND\r\n"):
            await asyncio.sleep(0.01)
            c.engine.commit()
            assert loop.time() - started < 2
        assert loop.time() - started >= 0.2
        assert bytes(c.transport.out) == FAILURE * 2 + b"STORED\r\nEND\r\n"
        assert not c.transport.paused and c.conn.user_name == "reader"

    run(test)


def test_an_open_cluster_needs_no_auth_and_the_auth_set_is_a_set() -> None:
    async def test(c: Conn) -> None:
        assert c.conn.user is not None and c.conn.user_name == "default"
        assert await c.send(auth_block("reader", "reader-pw")) == b"STORED\r\n"
        # an ordinary `set auth 0 0 N`: stored as a plain SET (flags 0, no expiry)
        assert c.engine.submitted[0] == ([b"SET", b"auth", b"reader reader-pw"], 0)

    async def go() -> None:
        await test(Conn(Users(None)))

    asyncio.run(go())


# -- permissions -------------------------------------------------------------------------------


def noperm(command: str) -> bytes:
    text = f"CLIENT_ERROR NOPERM this user has no permissions to run the '{command}' command"
    return text.encode() + b"\r\n"


NOPERM_KEY = (
    b"CLIENT_ERROR NOPERM this user has no permissions to access one of the keys used as "
    b"arguments\r\n"
)


async def as_user(c: Conn, user: str, password: str) -> None:
    assert await c.send(auth_block(user, password)) == b"STORED\r\n"


def test_a_read_only_user_reads_and_every_write_is_refused() -> None:
    async def test(c: Conn) -> None:
        await as_user(c, "reader", "reader-pw")
        assert await c.send(b"get a b\r\ngets a\r\nmg a v\r\n") == b"END\r\nEND\r\nEN\r\n"
        for data, command in (
            (b"set a 0 0 1\r\nx\r\n", "set"),
            (b"add a 0 0 1\r\nx\r\n", "set"),
            (b"cas a 0 0 1 5\r\nx\r\n", "set"),
            (b"append a 0 0 1\r\nx\r\n", "set"),
            (b"ms a 1\r\nx\r\n", "set"),
            (b"delete a\r\n", "del"),
            (b"md a\r\n", "del"),
            (b"incr a 1\r\n", "incrby"),
            (b"decr a 1\r\n", "incrby"),
            (b"ma a\r\n", "incrby"),
            (b"touch a 10\r\n", "expire"),
            (b"gat 10 a\r\n", "getex"),
            (b"gats 10 a\r\n", "getex"),
            (b"mg a v T10\r\n", "getex"),
            (b"flush_all\r\n", "flushall"),
            (b"stats\r\n", "info"),
            (b"stats reset\r\n", "config|resetstat"),
            (b"verbosity 1\r\n", "config|set"),
            (b"config get cluster\r\n", "cluster|slots"),
        ):
            assert await c.send(data) == noperm(command), data
        assert c.engine.submitted == []
        assert c.auth.failures[("memcached", "perm")] == 19
        # noreply: nothing is sent, nothing is done, still counted
        out = await c.send(
            b"set a 0 0 1 noreply\r\nx\r\ndelete a noreply\r\nincr a 1 noreply\r\n"
            b"touch a 1 noreply\r\nflush_all noreply\r\nverbosity 1 noreply\r\nmn\r\n"
        )
        assert out == b"MN\r\n" and c.engine.submitted == []
        assert c.auth.failures[("memcached", "perm")] == 25
        assert c.server.verbosity == 0
        # what needs no permission
        assert await c.send(b"version\r\nmn\r\n") == b"VERSION 1.6.18\r\nMN\r\n"

    run(test)


def test_a_prefix_user_touches_only_its_keys() -> None:
    async def test(c: Conn) -> None:
        await as_user(c, "app", "app-pw")
        out = await c.send(b"set app:1 0 0 1\r\nx\r\nget app:1\r\nincr app:n 1\r\n")
        assert out == b"STORED\r\nVALUE app:1 0 1\r\nx\r\nEND\r\nNOT_FOUND\r\n"
        for data in (
            b"set other 0 0 1\r\nx\r\n",
            b"get other\r\n",
            b"get app:1 other\r\n",  # one key outside refuses the whole get
            b"delete other\r\n",
            b"ms other 1\r\nx\r\n",
            b"mg other v\r\n",
            b"touch other 1\r\n",
        ):
            assert await c.send(data) == NOPERM_KEY, data
        assert await c.send(b"flush_all\r\n") == noperm("flushall")  # -@dangerous
        assert len(c.engine.submitted) == 2
        # a restricted user's plain set within its keys goes as a plain SET; refused ones
        # (above) proposed nothing
        assert c.engine.submitted[0] == ([b"SET", b"app:1", b"x"], 0)

    run(test)


def test_a_user_who_may_do_anything_stores_a_plain_set_as_a_plain_SET() -> None:
    async def test(c: Conn) -> None:
        await as_user(c, "default", "admin-pw")
        assert (
            await c.send(b"set a 0 0 1\r\nx\r\nget a\r\n")
            == b"STORED\r\nVALUE a 0 1\r\nx\r\nEND\r\n"
        )
        assert c.engine.submitted == [([b"SET", b"a", b"x"], 0)]

    run(test)


def test_a_refusal_is_logged_once_per_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    logged: list[tuple[str, str, bool]] = []
    original = Auth.failed

    def failed(self: Auth, protocol: str, kind: str, who: str, log: bool, **kw: Any) -> None:
        logged.append((protocol, kind, log))
        original(self, protocol, kind, who, log, **kw)

    monkeypatch.setattr(Auth, "failed", failed)

    async def test(c: Conn) -> None:
        await as_user(c, "reader", "reader-pw")
        await c.send(b"delete a\r\ndelete b\r\n")
        assert logged == [("memcached", "perm", True), ("memcached", "perm", False)]

    run(test)


# -- users that change -----------------------------------------------------------------------


def test_a_deleted_users_connection_closes_at_its_next_command() -> None:
    async def test(c: Conn) -> None:
        await as_user(c, "app", "app-pw")
        c.users.set("".join(u for u in USERS.splitlines(True) if not u.startswith("user app ")))
        assert await c.send(b"get app:1\r\n") == b""
        assert c.transport.closed

    run(test)


def test_new_rules_hold_for_open_connections() -> None:
    async def test(c: Conn) -> None:
        await as_user(c, "app", "app-pw")
        assert await c.send(b"set app:1 0 0 1\r\nx\r\n") == b"STORED\r\n"
        c.users.set(USERS.replace("+@write", ""))
        assert await c.send(b"set app:1 0 0 1\r\nx\r\n") == noperm("set")
        c.users.set(USERS.replace("user default on >admin-pw", "user default on nopass"))
        fresh = Conn(c.users)
        assert await fresh.send(b"set k 0 0 1\r\nx\r\n") == b"STORED\r\n"  # open now

    run(test)


def test_an_unauthenticated_connection_gets_in_when_the_cluster_opens() -> None:
    async def test(c: Conn) -> None:
        assert await c.send(b"get a\r\n") == UNAUTH
        c.users.set(USERS.replace("user default on >admin-pw", "user default on nopass"))
        assert await c.send(b"get a\r\n") == b"END\r\n"
        assert c.conn.user_name == "default"

    run(test)


# -- the checks themselves (node/acl.py on memcached's table calls) ------------------------------


def test_table_calls_are_checked_as_their_redis_equivalents() -> None:
    assert redis_equivalents([b"raftcache.mc.get", b"a", b"b"]) == [[b"get", b"a"], [b"get", b"b"]]
    assert redis_equivalents([b"raftcache.mc.store"]) is None  # too short: its own command
    users = acl.Acl.parse(USERS)
    reader, app = users.users["reader"], users.users["app"]
    store = [b"raftcache.mc.store", b"set", b"app:1", b"v", b"0", b"0", b""]
    assert reader.denial(store) == ("command", "set")
    assert app.denial(store) is None
    assert app.denial([*store[:2], b"x", *store[3:]]) == ("key", "x")
    assert reader.denial([b"raftcache.mc.get", b"a"]) is None
    assert reader.denial([b"raftcache.mc.store"]) == ("command", "raftcache.mc.store")
    assert reader.denial([b"raftcache.mc.bogus", b"a"]) == ("command", "raftcache.mc.bogus")
    assert users.users["default"].denial(store) is None
