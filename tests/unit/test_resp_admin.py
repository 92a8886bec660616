"""The Redis front-end's admin commands without sockets: key slots, CLIENT LIST lines, INFO
text, CONFIG checks, COMMAND metadata and key extraction, the cluster and Sentinel views of
a fake Raft group, and the subcommand dispatch with Redis 7.0's error texts."""

from __future__ import annotations

import asyncio
import binascii
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from raftcache.consensus import RaftStatus, Role
from raftcache.node.auth import Auth
from raftcache.node.keyspace.reply import OK, Error, Map, ReplyT, SetReply, Status
from raftcache.node.replica import CacheStats
from raftcache.node.resp import encoder, info, introspection, topology
from raftcache.node.resp import settings as config_params
from raftcache.node.resp.admin import ADMIN, NodeFacts, NodeLocal, help_reply
from raftcache.node.resp.clients import ClientInfo, client_flags, client_line, parse_kill
from raftcache.node.resp.redis_meta import META
from raftcache.node.resp.server import Stats
from raftcache.node.state_machine import Member, StateMachine
from redis.crc import key_slot as redis_py_key_slot

# -- a fake node and connection ------------------------------------------------------------


class FakeRaft:
    def __init__(self, self_addr: str, peers: tuple[str, ...]) -> None:
        self.config = SimpleNamespace(self_addr=self_addr, peers=peers, data_dir=Path("/data"))
        self.current = RaftStatus()

    def status(self) -> RaftStatus:
        return self.current

    def is_leader(self) -> bool:
        return self.current.role is Role.LEADER


class FakeReplica:
    def __init__(self, members: dict[str, Member]) -> None:
        self._members = members
        self.state = StateMachine()
        self.lock = threading.Lock()
        self.cache = CacheStats(3, 5, 1000, 0, "noeviction")

    def members(self) -> dict[str, Member]:
        return dict(self._members)

    def stats(self) -> CacheStats:
        return self.cache

    def digest(self) -> str:
        return "d" * 32


MEMBERS = {
    "n1": Member("127.0.0.1:7001", "127.0.0.1:6001", "10.0.0.1:6379"),
    "n2": Member("127.0.0.1:7002", "127.0.0.1:6002", "10.0.0.2:6379"),
    "n3": Member("127.0.0.1:7003", "127.0.0.1:6003", "10.0.0.3:6379"),
}


def node(me: str = "n1", leader: str | None = "n1", connected: tuple[str, ...] = ()) -> NodeFacts:
    """NodeFacts of node `me` in a 3-node group whose leader is `leader`."""
    raft_addr = MEMBERS[me].raft_addr
    peers = tuple(m.raft_addr for n, m in MEMBERS.items() if n != me)
    raft = FakeRaft(raft_addr, peers)
    leader_addr = None if leader is None else MEMBERS[leader].raft_addr
    raft.current = RaftStatus(
        role=Role.LEADER if leader == me else Role.FOLLOWER,
        term=4,
        leader=leader_addr,
        commit_index=50,
        applied_index=50,
        leader_commit_index=50,
        match_index={MEMBERS["n2"].raft_addr: 50, MEMBERS["n3"].raft_addr: 40}
        if leader == me
        else {},
        connected=frozenset(connected or peers),
    )
    view = SimpleNamespace(raft=raft, replica=FakeReplica(MEMBERS), node_id=me)
    config = SimpleNamespace(
        node_id=me,
        redis_listen="0.0.0.0:6379",
        redis_advertise=MEMBERS[me].redis_addr,
        raft=raft.config,
    )
    streams = SimpleNamespace(channel_names=lambda pattern: [b"ch"], pattern_count=lambda: 2)
    return NodeFacts(view, config, streams)  # type: ignore[arg-type]


@dataclass
class FakeServer:
    info: NodeFacts
    clients: dict[int, Any] = field(default_factory=dict)
    stats: Stats = field(default_factory=Stats)
    limits: Any = field(default_factory=lambda: SimpleNamespace(max_bulk_bytes=4 << 20))
    auth: Auth = field(default_factory=lambda: Auth(lambda: (None, None)))
    blocker: Any = None  # a node before its Blocker runs


class FakeConn:
    """What admin handlers use of a Connection; replies are kept as reply values."""

    def __init__(self, server: FakeServer, client_id: int = 1, proto: int = 2) -> None:
        self.server = server
        self.id = client_id
        self.proto = proto
        self.replies: list[ReplyT] = []
        self.multi: list[Any] | None = None
        self.name = b""
        self.lib_name = b""
        self.lib_ver = b""
        self.user_name = "default"
        self.last_name = b""
        self.addr = f"127.0.0.1:{50000 + client_id}"
        self.laddr = "127.0.0.1:6379"
        self.created = self.last_command = 1000.0
        self.blocked: Any = None
        self.db = 0
        self.sub = None
        self.readonly = False
        self.transport = None
        self.last_write_index = 0
        self._closing = False
        self._close_when_flushed = False
        self.closed = False
        server.clients[client_id] = self

    def reply(self, reply: ReplyT) -> None:
        self.replies.append(reply)

    def close(self) -> None:
        self.closed = True


def call(conn: FakeConn, *args: str | bytes) -> ReplyT:
    argv = [a if isinstance(a, bytes) else a.encode() for a in args]
    result = ADMIN[argv[0].lower()](conn, argv)
    assert result is None, "this command answers at once"
    return conn.replies.pop()


def fresh(facts: NodeFacts | None = None, proto: int = 2) -> FakeConn:
    return FakeConn(FakeServer(facts or node()), proto=proto)


# -- key slots -------------------------------------------------------------------------------


def test_key_slots_match_redis_examples() -> None:
    assert topology.key_slot(b"foo") == 12182
    assert topology.key_slot(b"somekey") == 11058
    assert topology.key_slot(b"{user1000}.following") == topology.key_slot(b"{user1000}.followers")
    assert topology.key_slot(b"foo{}{bar}") == topology.key_slot(b"foo{}{bar}")  # whole key
    assert topology.key_slot(b"foo{}{bar}") != topology.key_slot(b"bar")
    assert topology.key_slot(b"foo{{bar}}zap") == topology.key_slot(b"{bar")
    assert topology.key_slot(b"foo{bar}{zap}") == topology.key_slot(b"bar")


@settings(deadline=None)
@given(st.binary(max_size=40))
def test_key_slot_is_redis_pys(key: bytes) -> None:
    assert topology.key_slot(key) == redis_py_key_slot(key)
    assert 0 <= topology.key_slot(key) < 16384
    if b"{" not in key:
        assert topology.key_slot(key) == binascii.crc_hqx(key, 0) % 16384


# -- CLIENT ----------------------------------------------------------------------------------


def test_client_line_has_redis_fields_in_order() -> None:
    c = ClientInfo(
        7, "1.2.3.4:5", "5.6.7.8:6379", 9, "app", 3, 1, "N", 2, 0, 1, -1, 0, "r", "get", 3
    )
    line = client_line(c)
    keys = [part.split("=", 1)[0] for part in line.split(" ")]
    assert keys == [
        "id",
        "addr",
        "laddr",
        "fd",
        "name",
        "age",
        "idle",
        "flags",
        "db",
        "sub",
        "psub",
        "ssub",
        "multi",
        "qbuf",
        "qbuf-free",
        "argv-mem",
        "multi-mem",
        "rbs",
        "rbp",
        "obl",
        "oll",
        "omem",
        "tot-mem",
        "events",
        "cmd",
        "user",
        "redir",
        "resp",
        "lib-name",
        "lib-ver",
    ]
    assert line.startswith("id=7 addr=1.2.3.4:5 laddr=5.6.7.8:6379 fd=9 name=app age=3 idle=1 ")
    assert " db=2 sub=0 psub=1 " in line and " cmd=get user=default redir=-1 resp=3 " in line


def test_client_flags_letters_in_redis_order() -> None:
    assert client_flags(False, False, False, False, False, False) == "N"
    assert client_flags(True, True, False, True, True, True) == "PxreT"


def test_client_list_filters_and_errors() -> None:
    conn = fresh()
    other = FakeConn(conn.server, client_id=2)
    other.sub = SimpleNamespace(channels=[b"a"], patterns=[])  # type: ignore[assignment]
    listed = call(conn, "CLIENT", "LIST")
    assert isinstance(listed, bytes) and listed.count(b"\n") == 2
    assert b"cmd=client|list" in listed
    pubsub = call(conn, "client", "list", "type", "pubsub")
    assert isinstance(pubsub, bytes) and pubsub.startswith(b"id=2 ") and b"flags=P " in pubsub
    assert call(conn, "client", "list", "type", "master") == b""
    assert call(conn, "client", "list", "type", "nope") == Error("ERR Unknown client type 'nope'")
    assert call(conn, "client", "list", "id", "2", "99").startswith(b"id=2 ")  # type: ignore[union-attr]
    assert call(conn, "client", "list", "id", "x") == Error("ERR Invalid client ID")
    assert call(conn, "client", "list", "foo") == Error("ERR syntax error")


def test_client_list_is_verbatim_in_resp3() -> None:
    conn = fresh(proto=3)
    reply = call(conn, "client", "info")
    assert isinstance(reply, encoder.Raw) and reply.startswith(b"=") and b"\r\ntxt:id=1 " in reply


def test_client_names_and_setinfo() -> None:
    conn = fresh()
    assert call(conn, "client", "getname") is None
    assert call(conn, "client", "setname", "worker-1") == OK
    assert call(conn, "client", "getname") == b"worker-1"
    bad = "ERR Client names cannot contain spaces, newlines or special characters."
    assert call(conn, "client", "setname", "a b") == Error(bad)
    assert call(conn, "client", "setinfo", "LIB-NAME", "redis-py") == OK
    assert call(conn, "client", "setinfo", "lib-ver", "8.2.0") == OK
    assert (conn.lib_name, conn.lib_ver) == (b"redis-py", b"8.2.0")
    assert call(conn, "client", "setinfo", "color", "x") == Error("ERR Unrecognized option 'color'")
    assert call(conn, "client", "setinfo", "lib-ver", "a b") == Error(
        "ERR lib-ver cannot contain spaces, newlines or special characters."
    )
    assert call(conn, "client", "id") == 1


def test_client_subcommand_errors_are_redis_texts() -> None:
    conn = fresh()
    assert call(conn, "client") == Error("ERR wrong number of arguments for 'client' command")
    assert call(conn, "client", "Foo") == Error("ERR unknown subcommand 'Foo'. Try CLIENT HELP.")
    assert call(conn, "client", "setname") == Error(
        "ERR wrong number of arguments for 'client|setname' command"
    )
    assert call(conn, "client", "no-evict", "maybe") == Error("ERR syntax error")
    assert call(conn, "client", "no-evict", "on") == OK
    assert call(conn, "client", "reply", "on") == OK
    assert call(conn, "client", "reply", "maybe") == Error("ERR syntax error")
    assert str(call(conn, "client", "tracking", "on")).startswith("ERR CLIENT TRACKING is not")
    assert call(conn, "client", "pause", "10") == OK
    assert call(conn, "client", "pause", "-1") == Error("ERR timeout is negative")
    assert call(conn, "client", "pause", "1", "x") == Error(
        "ERR CLIENT PAUSE mode must be WRITE or ALL"
    )
    help_lines = call(conn, "client", "help")
    assert isinstance(help_lines, list) and help_lines[0] == Status(
        "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    )
    assert help_lines[-2:] == [Status("HELP"), Status("    Prints this help.")]


def test_client_kill() -> None:
    conn = fresh()
    other = FakeConn(conn.server, client_id=2)
    assert call(conn, "client", "kill", "9.9.9.9:1") == Error("ERR No such client")
    assert call(conn, "client", "kill", "id", "0") == Error(
        "ERR client-id should be greater than 0"
    )
    assert call(conn, "client", "kill", "id", "2") == 1 and other.closed
    assert call(conn, "client", "kill", "id", "1") == 0  # SKIPME yes by default
    assert call(conn, "client", "kill", "user", "bob") == Error("ERR No such user 'bob'")
    assert call(conn, "client", "kill", conn.addr) == OK  # the old form may kill itself
    assert conn._close_when_flushed and not conn.closed


def test_parse_kill() -> None:
    f = parse_kill([b"client", b"kill", b"type", b"pubsub", b"skipme", b"no", b"laddr", b"x:1"])
    assert (f.kind, f.skipme, f.laddr, f.addr) == ("pubsub", False, "x:1", None)
    with pytest.raises(Exception, match="syntax error"):
        parse_kill([b"client", b"kill", b"id", b"1", b"type"])


# -- INFO ------------------------------------------------------------------------------------


def fields(text: str) -> dict[str, str]:
    return dict(line.split(":", 1) for line in text.split("\r\n") if line and line[0] != "#")


def test_info_default_sections_and_format() -> None:
    text = info.render(info.InfoFacts(keyspace=[(0, 5, 2), (1, 0, 0), (9, 1, 0)]))
    titles = [line for line in text.split("\r\n") if line.startswith("# ")]
    assert titles == [
        "# Server",
        "# Clients",
        "# Memory",
        "# Persistence",
        "# Stats",
        "# Replication",
        "# CPU",
        "# Modules",
        "# Errorstats",
        "# Cluster",
        "# Keyspace",
    ]
    assert "\r\n\r\n# Clients\r\n" in text and text.endswith("\r\n")
    values = fields(text)
    assert values["redis_version"] == "7.0.15" and values["cluster_enabled"] == "1"
    assert values["arch_bits"] in ("32", "64") and values["blocked_clients"] == "0"
    assert values["db0"] == "keys=5,expires=2,avg_ttl=0" and values["db9"].startswith("keys=1,")
    assert "db1" not in values


def test_info_sections_selection() -> None:
    facts = info.InfoFacts()
    assert info.render(facts, [b"CLUSTER"]) == "# Cluster\r\ncluster_enabled:1\r\n"
    assert info.render(facts, [b"nope"]) == ""
    every = info.render(facts, [b"everything"])
    assert "# Commandstats" in every and "# Latencystats" in every
    assert info.render(facts, [b"cpu", b"server"]).startswith("# Server\r\n")
    assert "# Errorstats" in info.render(facts, [b"default"])
    assert info.render(facts, [b"modules"]) == "# Modules\r\n"


def test_info_replication_leader_and_follower() -> None:
    leader = info.InfoFacts(
        master=True,
        repl_offset=50,
        followers=[info.Follower("10.0.0.2", 6379, 50), info.Follower("10.0.0.3", 6380, 40)],
    )
    values = fields(info.render(leader, [b"replication"]))
    assert values["role"] == "master" and values["connected_slaves"] == "2"
    assert values["slave1"] == "ip=10.0.0.3,port=6380,state=online,offset=40,lag=0"
    follower = info.InfoFacts(master=False, master_host="10.0.0.1", master_port=6379, repl_offset=7)
    values = fields(info.render(follower, [b"replication"]))
    assert values["role"] == "slave" and values["master_link_status"] == "down"
    assert values["master_port"] == "6379" and values["master_repl_offset"] == "7"


def test_info_memory_and_errorstats() -> None:
    f = info.InfoFacts(used_memory=2048, maxmemory=1 << 30, maxmemory_policy="allkeys-lru")
    values = fields(info.render(f, [b"memory"]))
    assert values["used_memory"] == "2048" and values["used_memory_human"] == "2.00K"
    assert values["maxmemory_human"] == "1.00G" and values["maxmemory_policy"] == "allkeys-lru"
    f = info.InfoFacts(calls={"get": 3})
    assert info.render(f, [b"commandstats"]) == (
        "# Commandstats\r\n"
        "cmdstat_get:calls=3,usec=0,usec_per_call=0.00,rejected_calls=0,failed_calls=0\r\n"
    )
    f = info.InfoFacts(errors={"WRONGTYPE": 2, "ERR": 5})
    assert info.render(f, [b"errorstats"]) == (
        "# Errorstats\r\nerrorstat_ERR:count=5\r\nerrorstat_WRONGTYPE:count=2\r\n"
    )


def test_human_is_redis_bytes_to_human() -> None:
    assert [info.human(n) for n in (0, 1023, 1024, 1536, 5 << 20, 3 << 40)] == [
        "0B",
        "1023B",
        "1.00K",
        "1.50K",
        "5.00M",
        "3.00T",
    ]


def test_info_gathered_from_a_leader() -> None:
    conn = fresh(node("n1", "n1"))
    text = call(conn, "info")
    assert isinstance(text, bytes)
    values = fields(text.decode())
    assert values["role"] == "master" and values["connected_slaves"] == "2"
    assert values["slave0"] == "ip=10.0.0.2,port=6379,state=online,offset=50,lag=0"
    assert values["used_memory"] == "1000" and values["expired_keys"] == "5"
    assert values["evicted_keys"] == "3" and values["tcp_port"] == "6379"
    assert values["pubsub_channels"] == "1" and values["pubsub_patterns"] == "2"
    values = fields(call(fresh(node("n2", "n1")), "info", "replication").decode())  # type: ignore[union-attr]
    assert values["role"] == "slave" and values["master_host"] == "10.0.0.1"
    assert values["master_link_status"] == "up"


def test_keyspace_counts_expires() -> None:
    from tests.unit.redis_harness import Redis

    r = Redis()
    r("SET", "a", "1", "EX", "100")
    r("SET", "b", "1")
    assert info.keyspace_counts(r.sm)[0] == (0, 2, 1)
    r("SET", "c", "1", "EX", "100", db=3)
    counts = info.keyspace_counts(r.sm)
    assert counts[0] == (0, 2, 1) and counts[3] == (3, 1, 1)


# -- CONFIG ------------------------------------------------------------------------------------


def test_config_get_patterns_and_aliases() -> None:
    conn = fresh()
    got = call(conn, "config", "get", "maxmemory", "MAXMEMORY-POLICY", "hash-max-ziplist-*")
    assert isinstance(got, Map)
    values = dict(zip(got[::2], got[1::2], strict=True))
    assert values[b"maxmemory"] == b"0" and values[b"MAXMEMORY-POLICY"] == b"noeviction"
    assert values[b"hash-max-ziplist-entries"] == b"512"
    assert values[b"hash-max-ziplist-value"] == b"64"
    got = call(conn, "config", "get", "save", "appendonly", "databases", "port", "bind")
    expected = [b"save", b"", b"appendonly", b"no", b"databases", b"16", b"port", b"6379"]
    assert got == Map([*expected, b"bind", b"0.0.0.0"])
    assert call(conn, "config", "get", "nope") == Map([])
    everything = call(conn, "config", "get", "*")
    assert isinstance(everything, Map) and b"rdb-key-save-delay" not in everything[::2]
    assert call(conn, "config", "get", "rdb-key-save-delay") == Map([b"rdb-key-save-delay", b"0"])


def test_config_set_remembers_harmless_params() -> None:
    conn = fresh()
    assert call(conn, "config", "set", "save", "3600 1 300 100", "appendonly", "YES") == OK
    assert call(conn, "config", "get", "save") == Map([b"save", b"3600 1 300 100"])
    assert call(conn, "config", "get", "appendonly") == Map([b"appendonly", b"yes"])
    assert call(conn, "config", "set", "lua-time-limit", "100") == OK
    assert call(conn, "config", "get", "busy-reply-threshold") == Map(
        [b"busy-reply-threshold", b"100"]
    )
    assert call(conn, "config", "set", "hash-max-ziplist-value", "1kb") == OK
    assert call(conn, "config", "get", "hash-max-listpack-value") == Map(
        [b"hash-max-listpack-value", b"1024"]
    )


def test_config_set_errors_are_redis_texts() -> None:
    conn = fresh()
    failed = "ERR CONFIG SET failed (possibly related to argument '{}') - {}"
    assert call(conn, "config", "set", "nope", "1") == Error(
        "ERR Unknown option or number of arguments for CONFIG SET - 'nope'"
    )
    assert call(conn, "config", "set", "hz", "1", "hz") == Error("ERR syntax error")
    assert call(conn, "config", "set", "hz", "abc") == Error(
        failed.format("hz", "argument couldn't be parsed into an integer")
    )
    assert call(conn, "config", "set", "hz", "1", "hz", "2") == Error(
        failed.format("hz", "duplicate parameter")
    )
    assert call(conn, "config", "set", "databases", "3") == Error(
        failed.format("databases", "can't set immutable config")
    )
    assert call(conn, "config", "set", "appendonly", "maybe") == Error(
        failed.format("appendonly", "argument must be 'yes' or 'no'")
    )
    assert call(conn, "config", "set", "hash-max-ziplist-entries", "x") == Error(
        failed.format("hash-max-listpack-entries", "argument couldn't be parsed into an integer")
    )
    assert call(conn, "config", "set", "maxmemory", "10q") == Error(
        failed.format("maxmemory", "argument must be a memory value")
    )
    policies = (
        "volatile-lru, volatile-lfu, volatile-random, volatile-ttl, allkeys-lru, allkeys-lfu, "
        "allkeys-random, noeviction"
    )
    assert call(conn, "config", "set", "maxmemory-policy", "foo") == Error(
        failed.format("maxmemory-policy", f"argument(s) must be one of the following: {policies}")
    )
    assert call(conn, "config", "set", "save", "1") == Error(
        failed.format("save", "Invalid save parameters")
    )
    assert call(conn, "config", "set", "notify-keyspace-events", "Q") == Error(
        failed.format(
            "notify-keyspace-events", "Invalid event class character. Use 'Ag$lshzxeKEtmdn'."
        )
    )
    # key-miss events happen on reads, which are not replicated: never published
    assert call(conn, "config", "set", "notify-keyspace-events", "KEm") == Error(
        failed.format(
            "notify-keyspace-events",
            "key-miss events (m) are not published by raftcache: a miss happens on a read, "
            "which no node replicates; leave out m",
        )
    )
    # nothing was remembered by the failed calls
    assert call(conn, "config", "get", "hz") == Map([b"hz", b"10"])


def test_config_set_notify_keyspace_events_goes_through_the_log() -> None:
    """The setting is proposed as the internal write every node applies (even when this
    node's copy already equals it: the copy may lag); CONFIG GET shows the replicated value
    in Redis's form."""
    conn = fresh()
    replica = conn.server.info.view.replica
    written: list[list[bytes]] = []

    async def write(argv: list[bytes], db: int) -> ReplyT:
        written.append(argv)
        replica.state.set_notify_flags(argv[1].decode())
        return OK

    conn.engine = SimpleNamespace(write=write)
    argv = [b"config", b"set", b"notify-keyspace-events", b"KA"]
    pending = config_params.config_set(conn.server.info, conn, argv)  # type: ignore[arg-type]
    assert asyncio.run(pending) == OK  # type: ignore[arg-type]
    assert written == [[b"raftcache.notify-keyspace-events", b"g$lshzxetdK"]]
    assert call(conn, "config", "get", "notify-keyspace-events") == Map(
        [b"notify-keyspace-events", b"AK"]
    )
    argv = [b"config", b"set", b"notify-keyspace-events", b"Kg$lshzxetd"]  # the same flags
    pending = config_params.config_set(conn.server.info, conn, argv)  # type: ignore[arg-type]
    assert asyncio.run(pending) == OK  # type: ignore[arg-type]
    assert written[1] == written[0]


def test_config_set_replicated_limits_need_the_node_flags() -> None:
    conn = fresh()
    assert call(conn, "config", "set", "maxmemory", "0", "maxmemory-policy", "noeviction") == OK
    refused = call(conn, "config", "set", "maxmemory", "100mb")
    assert isinstance(refused, Error) and "--max-memory" in refused
    refused = call(conn, "config", "set", "maxmemory-policy", "allkeys-lru")
    assert isinstance(refused, Error) and "--eviction-policy" in refused
    refused = call(conn, "config", "set", "port", "7000")
    assert isinstance(refused, Error) and "--redis-listen" in refused


def test_config_resetstat_and_rewrite() -> None:
    conn = fresh()
    conn.server.stats.commands_processed = 9
    conn.server.stats.count_error("WRONGTYPE Operation against a key")
    text = call(conn, "info", "errorstats")
    assert text == b"# Errorstats\r\nerrorstat_WRONGTYPE:count=1\r\n"
    assert call(conn, "config", "resetstat") == OK
    assert conn.server.stats.commands_processed == 0
    assert call(conn, "info", "errorstats") == b"# Errorstats\r\n"
    assert call(conn, "config", "rewrite") == Error(
        "ERR The server is running without a config file"
    )


def test_parse_memory_units() -> None:
    assert config_params.parse_memory("10") == 10
    assert config_params.parse_memory("1k") == 1000 and config_params.parse_memory("1KB") == 1024
    assert config_params.parse_memory("2gb") == 2 << 30
    with pytest.raises(config_params.BadValue):
        config_params.parse_memory("-1")


# -- COMMAND -----------------------------------------------------------------------------------


def test_command_lists_table_local_and_admin_commands() -> None:
    commands = introspection.all_commands()
    for name in ("get", "set", "hset", "ping", "hello", "multi", "info", "cluster", "wait"):
        assert name in commands, name
    get = introspection.info_reply(commands["get"])
    assert get[:6] == [b"get", 2, SetReply([Status("readonly"), Status("fast")]), 1, 1, 1]
    assert get[6] == SetReply([Status("@read"), Status("@string"), Status("@fast")])
    cluster = introspection.info_reply(commands["cluster"])
    subs = {entry[0] for entry in cluster[9]}
    assert {b"cluster|slots", b"cluster|nodes", b"cluster|keyslot", b"cluster|help"} <= subs


def test_command_count_info_and_docs_through_dispatch() -> None:
    conn = fresh()
    count = call(conn, "command", "count")
    assert isinstance(count, int) and count == len(call(conn, "command"))  # type: ignore[arg-type]
    info_reply = call(conn, "command", "info", "get", "nosuch", "client|list")
    assert isinstance(info_reply, list) and info_reply[1] is None
    assert info_reply[2][0] == b"client|list"  # type: ignore[index]
    docs = call(conn, "command", "docs", "get")
    assert docs == Map(
        [
            b"get",
            Map(
                [
                    *(b"summary", b"Get the value of a key", b"since", b"1.0.0"),
                    *(b"group", b"string", b"complexity", b"O(1)"),
                    *(
                        b"arguments",
                        [Map([b"name", b"key", b"type", b"key", b"key_spec_index", 0])],
                    ),
                ]
            ),
        ]
    )
    assert call(conn, "command", "nope") == Error(
        "ERR unknown subcommand 'nope'. Try COMMAND HELP."
    )
    listed = call(conn, "command", "list", "filterby", "pattern", "client|*")
    assert isinstance(listed, list) and b"client|list" in listed and b"get" not in listed


def test_command_getkeys_follows_key_specs() -> None:
    conn = fresh()
    getkeys = [b"command", b"getkeys"]
    assert ADMIN[b"command"](conn, [*getkeys, b"set", b"k", b"v"]) is None
    assert conn.replies.pop() == [b"k"]
    specs = META["zunionstore"]["key_specs"]
    argv = [b"zunionstore", b"dst", b"2", b"a", b"b", b"WEIGHTS", b"1", b"2"]
    assert introspection.keys_by_specs(specs, argv) == [
        (1, ["OW", "UPDATE"]),
        (3, ["RO", "ACCESS"]),
        (4, ["RO", "ACCESS"]),
    ]
    mset = [b"mset", b"a", b"1", b"b", b"2"]
    assert [i for i, _ in introspection.keys_by_specs(META["mset"]["key_specs"], mset) or []] == [
        1,
        3,
    ]
    xread = [b"xread", b"COUNT", b"2", b"STREAMS", b"s1", b"s2", b"0", b"0"]
    assert [i for i, _ in introspection.keys_by_specs(META["xread"]["key_specs"], xread) or []] == [
        4,
        5,
    ]
    assert introspection.keys_by_specs(specs, [b"zunionstore", b"d", b"x", b"a"]) is None


def test_command_getkeys_errors() -> None:
    commands = introspection.all_commands()
    get_keys = introspection.get_keys
    assert get_keys(commands, [b"nosuch", b"x"], False) == Error("ERR Invalid command specified")
    assert get_keys(commands, [b"ping"], False) == Error("ERR The command has no key arguments")
    assert get_keys(commands, [b"get"], False) == Error(
        "ERR Invalid number of arguments specified for command"
    )
    assert get_keys(commands, [b"get", b"k"], True) == [
        [b"k", SetReply([Status("RO"), Status("access")])]
    ]


def test_redis_meta_legacy_ranges() -> None:
    """(first, last, step) and movablekeys as Redis 7.0.15 derives them (its COMMAND agrees)."""
    expected = {
        "get": ([1, 1, 1], False),
        "mset": ([1, -1, 2], False),
        "smove": ([1, 2, 1], False),
        "zunionstore": ([1, 1, 1], True),
        "eval": ([0, 0, 0], True),
        "memory|usage": ([2, 2, 1], False),
        "ping": ([0, 0, 0], False),
    }
    for name, (key_range, movable) in expected.items():
        assert META[name]["range"] == key_range, name
        assert ("movablekeys" in META[name]["flags"]) == movable, name


# -- CLUSTER, SENTINEL, ROLE, WAIT -------------------------------------------------------------


def test_cluster_slots_from_any_node() -> None:
    for me in ("n1", "n2"):
        slots = call(fresh(node(me, "n1")), "cluster", "slots")
        assert isinstance(slots, list) and len(slots) == 1
        start, end, master, *replicas = slots[0]  # type: ignore[misc]
        assert (start, end) == (0, 16383)
        assert master[:2] == [b"10.0.0.1", 6379] and len(master[2]) == 40
        assert master[3] == Map([])
        assert [r[0] for r in replicas] == [b"10.0.0.2", b"10.0.0.3"]
    n1 = topology.Peer("n1", "a:1", "h", 1, True, True, True, 0).cluster_id
    assert call(fresh(node("n1", "n1")), "cluster", "myid") == n1.encode()
    assert call(fresh(node("n2", "n1")), "cluster", "myid") != n1.encode()


def test_cluster_without_leader_is_down() -> None:
    conn = fresh(node("n2", None))
    down = Error("CLUSTERDOWN The cluster is down")
    assert call(conn, "cluster", "slots") == down
    assert call(conn, "cluster", "nodes") == down
    assert call(conn, "sentinel", "get-master-addr-by-name", "mymaster") == down
    text = call(conn, "cluster", "info")
    assert isinstance(text, bytes) and b"cluster_state:fail\r\n" in text
    assert call(conn, "cluster", "keyslot", "foo") == 12182


def test_cluster_nodes_lines() -> None:
    text = call(fresh(node("n2", "n1", connected=())), "cluster", "nodes")
    assert isinstance(text, bytes)
    lines = text.decode().splitlines()
    assert len(lines) == 3
    master = lines[0].split(" ")
    assert master[1] == "10.0.0.1:6379@7001" and master[2] == "master" and master[3] == "-"
    assert master[6:] == ["4", "connected", "0-16383"]
    mine = next(line.split(" ") for line in lines if "myself" in line)
    assert mine[2] == "myself,slave" and mine[3] == master[0] and mine[5] == "0"
    info_text = call(fresh(node("n1", "n1")), "cluster", "info")
    values = dict(line.split(":") for line in info_text.decode().split("\r\n") if line)  # type: ignore[union-attr]
    assert values["cluster_state"] == "ok" and values["cluster_known_nodes"] == "3"
    assert values["cluster_size"] == "1" and values["cluster_current_epoch"] == "4"


def test_cluster_shards_and_errors() -> None:
    conn = fresh(node("n1", "n1", connected=(MEMBERS["n2"].raft_addr,)))
    shards = call(conn, "cluster", "shards")
    assert isinstance(shards, list) and len(shards) == 1
    shard = dict(zip(shards[0][::2], shards[0][1::2], strict=True))  # type: ignore[index]
    assert shard[b"slots"] == [0, 16383]
    health = [dict(zip(n[::2], n[1::2], strict=True))[b"health"] for n in shard[b"nodes"]]
    assert health == [b"online", b"online", b"fail"]  # n3 is not connected to the leader
    slots = call(conn, "cluster", "slots")
    assert len(slots[0]) == 4  # type: ignore[index]  # a failed replica is left out
    assert call(conn, "cluster", "countkeysinslot", "16384") == Error("ERR Invalid slot")
    assert call(conn, "cluster", "countkeysinslot", "12182") == 0
    assert call(conn, "cluster", "getkeysinslot", "1", "-1") == Error(
        "ERR Invalid slot or number of keys"
    )
    refused = call(conn, "cluster", "failover")
    assert isinstance(refused, Error) and "one-shard" in refused


def test_sentinel_answers_the_leader_under_any_name() -> None:
    conn = fresh(node("n3", "n2"))
    assert call(conn, "sentinel", "get-master-addr-by-name", "cache") == [b"10.0.0.2", b"6379"]
    masters = call(conn, "sentinel", "masters")
    assert isinstance(masters, list) and len(masters) == 1
    state = dict(zip(masters[0][::2], masters[0][1::2], strict=True))  # type: ignore[index]
    assert state[b"name"] == b"mymaster" and state[b"flags"] == b"master"
    assert (state[b"ip"], state[b"port"]) == (b"10.0.0.2", b"6379")
    assert state[b"num-slaves"] == b"2" and state[b"num-other-sentinels"] == b"2"
    master = call(conn, "sentinel", "master", "cache")
    assert master[1] == b"cache"  # type: ignore[index]
    replicas = call(conn, "sentinel", "replicas", "cache")
    assert isinstance(replicas, list)
    names = [dict(zip(r[::2], r[1::2], strict=True))[b"name"] for r in replicas]
    assert names == [b"10.0.0.1:6379", b"10.0.0.3:6379"]
    sentinels = call(conn, "sentinel", "sentinels", "cache")
    assert isinstance(sentinels, list) and len(sentinels) == 2
    assert call(conn, "sentinel", "masters", "x") == Error(
        "ERR wrong number of arguments for 'sentinel|masters' command"
    )


def test_role() -> None:
    assert call(fresh(node("n1", "n1")), "role") == [
        b"master",
        50,
        [[b"10.0.0.2", b"6379", b"50"], [b"10.0.0.3", b"6379", b"40"]],
    ]
    assert call(fresh(node("n2", "n1")), "role") == [b"slave", b"10.0.0.1", 6379, b"connected", 50]


def test_wait_counts_follower_match_indexes() -> None:
    facts = node("n1", "n1")
    assert topology.acked_replicas(facts, 45) == 1
    assert topology.acked_replicas(facts, 40) == 2
    assert topology.acked_replicas(facts, 0) == 2
    conn = fresh(facts)
    conn.multi = []
    conn.last_write_index = 45
    assert call(conn, "wait", "2", "0") == 1  # inside MULTI: answered at once
    assert call(conn, "wait", "x", "0") == Error("ERR value is not an integer or out of range")
    assert call(conn, "wait", "1", "-1") == Error("ERR timeout is negative")


def test_wait_for_replicas_times_out_with_the_count() -> None:
    facts = node("n1", "n1")
    assert asyncio.run(topology.wait_for_replicas(facts, 45, 2, 0.05)) == 1
    assert asyncio.run(topology.wait_for_replicas(facts, 40, 2, 5.0)) == 2
    assert asyncio.run(topology.wait_for_replicas(node("n2", "n1"), 45, 2, 5.0)) == 1


# -- the small commands --------------------------------------------------------------------------


def test_stub_replies() -> None:
    conn = fresh()  # FUNCTION is a replicated table command now (test_keyspace_functions.py)
    assert call(conn, "slowlog", "get") == [] and call(conn, "slowlog", "len") == 0
    assert call(conn, "debug", "set-active-expire", "0") == OK
    assert call(conn, "debug", "jmap") == OK
    assert call(conn, "debug", "nope") == Error(
        "ERR unknown subcommand or wrong number of arguments for 'nope'. Try DEBUG HELP."
    )
    assert call(conn, "debug", "protocol", "attrib") == b"Some real reply following the attribute"
    assert isinstance(call(conn, "shutdown"), Error)
    assert isinstance(call(conn, "monitor"), Error)
    assert isinstance(call(conn, "swapdb", "0", "1"), Error)
    assert call(conn, "swapdb", "x", "1") == Error("ERR invalid first DB index")
    assert call(conn, "time", "x") == Error("ERR wrong number of arguments for 'time' command")
    assert call(conn, "bgsave") == Status("Background saving started")


def test_debug_protocol_resp3_frames() -> None:
    conn = fresh(proto=3)
    assert call(conn, "debug", "protocol", "map") == encoder.Raw(
        b"%3\r\n:0\r\n#f\r\n:1\r\n#t\r\n:2\r\n#f\r\n"
    )
    assert call(conn, "debug", "protocol", "bignum") == encoder.Raw(
        b"(1234567999999999999999999999999999999\r\n"
    )
    assert call(conn, "debug", "protocol", "push").startswith(b">2\r\n")  # type: ignore[union-attr]


def test_help_reply_shape() -> None:
    assert help_reply("X", ["A"]) == [
        Status("X <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"),
        Status("A"),
        Status("HELP"),
        Status("    Prints this help."),
    ]


def test_node_local_forgets_closed_connections() -> None:
    local = NodeLocal()
    conn = fresh()
    local.extras(conn).no_evict = True  # type: ignore[arg-type]
    del conn.server.clients[1]
    other = FakeConn(conn.server, client_id=2)
    local.extras(other)  # type: ignore[arg-type]
    assert set(local.clients) == {2}
