"""The cluster as Redis clients see it: an emulated one-shard Redis Cluster, a Sentinel that
monitors one master, ROLE and WAIT.

The Raft leader is the master of every slot (0-16383); the followers are its replicas.
Addresses are the members' advertised Redis addresses (--redis-advertise), which every node
announces into the replicated member list; cluster node ids are 40-hex digests of the
raftcache node ids, so they never change. Every node answers the same way, so a
cluster-aware client (redis-py RedisCluster, redis-cli -c) may start from any node, and
after a failover it finds the new leader by asking again. While there is no leader the
topology commands answer `-CLUSTERDOWN The cluster is down`, which those clients retry.

Sentinel: every node also answers SENTINEL as if it were a Sentinel watching one master.
SENTINEL MASTERS lists it as "mymaster" (what redis-py's `Sentinel.master_for` looks up);
the other subcommands accept any master name and answer about the leader.
"""

from __future__ import annotations

import asyncio
import binascii
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from raftcache.node.keyspace.args import parse_int
from raftcache.node.keyspace.db import key_db
from raftcache.node.keyspace.reply import OK, CommandError, Error, Map, ReplyT, Status
from raftcache.node.resp.admin import (
    REPLIED,
    NodeFacts,
    admin,
    bulk_map,
    container,
    facts,
    parse_timeout_ms,
    stable_id,
    subcommand,
    verbatim,
)

if TYPE_CHECKING:
    from raftcache.node.pipeline import Slot
    from raftcache.node.resp.server import Connection

SLOTS = 16384
MASTER_NAME = "mymaster"
CLUSTERDOWN = "CLUSTERDOWN The cluster is down"
WAIT_FOREVER_S = 30.0
"""WAIT's timeout 0 ("forever") waits at most this long: a client is never parked forever."""
_WAIT_POLL_S = 0.005


def key_slot(key: bytes) -> int:
    """Redis Cluster's hash slot: CRC16 (XMODEM) of the key, or of its {hash tag}."""
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1 : end]
    return binascii.crc_hqx(key, 0) & (SLOTS - 1)


@dataclass(frozen=True)
class Peer:
    """One node as the topology commands show it."""

    node_id: str
    raft_addr: str
    host: str  # the advertised Redis host ("" when the node has no Redis port)
    port: int
    leader: bool
    myself: bool
    online: bool
    offset: int  # the Raft log position known for it (its match index, as the leader sees it)

    @property
    def cluster_id(self) -> str:
        return stable_id("raftcache-node", self.node_id)

    @property
    def bus_port(self) -> int:
        port = self.raft_addr.rpartition(":")[2]
        return int(port) if port.isdigit() else 0

    @property
    def addr(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Topology:
    """This node's view: every member with a Redis address, the leader first."""

    peers: list[Peer]
    term: int
    me: Peer

    @property
    def leader(self) -> Peer | None:
        return next((p for p in self.peers if p.leader and p.host), None)

    @property
    def replicas(self) -> list[Peer]:
        return [p for p in self.peers if not p.leader and p.host]

    @property
    def size(self) -> int:
        return len(self.peers)


def _split(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host.strip("[]"), int(port) if port.isdigit() else 0


def topology(node: NodeFacts) -> Topology:
    """The members (from the replicated member list) with their roles, as this node knows."""
    view, config = node.view, node.config
    status = view.raft.status()
    is_leader = view.raft.is_leader()
    self_raft = view.raft.config.self_addr
    members = dict(view.replica.members())
    peers: list[Peer] = []
    me: Peer | None = None
    for node_id, member in sorted(members.items()):
        myself = node_id == config.node_id
        leader = member.raft_addr == status.leader
        host, port = _split(config.redis_advertise if myself else member.redis_addr)
        if myself:
            online, offset = True, status.applied_index
            if is_leader:
                offset = status.commit_index
        elif is_leader:
            online = member.raft_addr in status.connected
            offset = status.match_index.get(member.raft_addr, 0)
        else:  # a follower knows the leader; the other followers are assumed up
            online = not leader or status.leader is not None
            offset = status.leader_commit_index if leader else 0
        peer = Peer(node_id, member.raft_addr, host, port, leader, myself, online, offset)
        peers.append(peer)
        me = peer if myself else me
    if me is None:  # not announced yet
        host, port = _split(config.redis_advertise)
        me = Peer(config.node_id, self_raft, host, port, is_leader, True, True, 0)
        peers.append(me)
    peers.sort(key=lambda p: (not p.leader, p.node_id))
    return Topology(peers, status.term, me)


def _leader_or_down(top: Topology) -> Peer:
    leader = top.leader
    if leader is None:
        raise CommandError(CLUSTERDOWN)
    return leader


# -- CLUSTER -----------------------------------------------------------------------------------


def node_line(peer: Peer, top: Topology, now_ms: int) -> str:
    """One CLUSTER NODES line."""
    role = "master" if peer.leader else "slave"
    flags = f"myself,{role}" if peer.myself else role
    if not peer.online:
        flags += ",fail"
    leader = top.leader
    master = "-" if peer.leader or leader is None else leader.cluster_id
    pong = 0 if peer.myself else now_ms
    link = "connected" if peer.online else "disconnected"
    line = (
        f"{peer.cluster_id} {peer.host}:{peer.port}@{peer.bus_port} {flags} {master} 0 {pong} "
        f"{top.term} {link}"
    )
    return line + (f" 0-{SLOTS - 1}" if peer.leader else "")


def nodes_text(top: Topology, now_ms: int) -> str:
    return "".join(node_line(p, top, now_ms) + "\n" for p in top.peers if p.host)


def slots_reply(top: Topology) -> ReplyT:
    leader = _leader_or_down(top)
    entries: list[ReplyT] = [0, SLOTS - 1]
    for peer in [leader, *(p for p in top.replicas if p.online)]:
        entries.append([peer.host.encode(), peer.port, peer.cluster_id.encode(), Map([])])
    return [entries]


def _shard_node(conn: Connection, peer: Peer) -> ReplyT:
    return bulk_map(
        conn,
        [
            ("id", peer.cluster_id.encode()),
            ("port", peer.port),
            ("ip", peer.host.encode()),
            ("endpoint", peer.host.encode()),
            ("role", b"master" if peer.leader else b"replica"),
            ("replication-offset", peer.offset),
            ("health", b"online" if peer.online else b"fail"),
        ],
    )


def cluster_info_text(top: Topology) -> str:
    up = top.leader is not None
    lines = [
        f"cluster_state:{'ok' if up else 'fail'}",
        f"cluster_slots_assigned:{SLOTS}",
        f"cluster_slots_ok:{SLOTS if up else 0}",
        "cluster_slots_pfail:0",
        f"cluster_slots_fail:{0 if up else SLOTS}",
        f"cluster_known_nodes:{len([p for p in top.peers if p.host])}",
        "cluster_size:1",
        f"cluster_current_epoch:{top.term}",
        f"cluster_my_epoch:{top.term}",
        "cluster_stats_messages_sent:0",
        "cluster_stats_messages_received:0",
        "total_cluster_links_buffer_limit_exceeded:0",
    ]
    return "".join(line + "\r\n" for line in lines)


@subcommand("cluster", "slots")
def _cluster_slots(conn: Connection, argv: list[bytes]) -> ReplyT:
    return slots_reply(topology(facts(conn)))


@subcommand("cluster", "shards")
def _cluster_shards(conn: Connection, argv: list[bytes]) -> ReplyT:
    top = topology(facts(conn))
    leader = _leader_or_down(top)
    nodes = [_shard_node(conn, p) for p in [leader, *top.replicas]]
    return [bulk_map(conn, [("slots", [0, SLOTS - 1]), ("nodes", nodes)])]


@subcommand("cluster", "nodes")
def _cluster_nodes(conn: Connection, argv: list[bytes]) -> ReplyT:
    top = topology(facts(conn))
    _leader_or_down(top)
    return verbatim(conn, nodes_text(top, int(time.time() * 1000)))


@subcommand("cluster", "info")
def _cluster_info(conn: Connection, argv: list[bytes]) -> ReplyT:
    return verbatim(conn, cluster_info_text(topology(facts(conn))))


@subcommand("cluster", "myid")
def _cluster_myid(conn: Connection, argv: list[bytes]) -> ReplyT:
    return stable_id("raftcache-node", facts(conn).config.node_id).encode()


@subcommand("cluster", "myshardid", 2)
def _cluster_myshardid(conn: Connection, argv: list[bytes]) -> ReplyT:
    return stable_id("raftcache-shard").encode()


@subcommand("cluster", "keyslot")
def _cluster_keyslot(conn: Connection, argv: list[bytes]) -> ReplyT:
    return key_slot(argv[2])


def _keys_in_slot(conn: Connection, slot: int, limit: int) -> list[bytes]:
    """Database 0's keys in a slot on this node. Every key is looked at (no per-slot index:
    a rare admin call); the replica lock is held only to copy the key list."""
    replica = facts(conn).view.replica
    with replica.lock:
        stored_keys = list(replica.state.keys())
    out: list[bytes] = []
    for stored in stored_keys:
        db, key = key_db(stored)
        if db == 0 and key_slot(key) == slot:
            out.append(key)
            if len(out) >= limit:
                break
    return out


@subcommand("cluster", "countkeysinslot")
def _cluster_countkeysinslot(conn: Connection, argv: list[bytes]) -> ReplyT:
    slot = parse_int(argv[2])
    if not 0 <= slot < SLOTS:
        return Error("ERR Invalid slot")
    return len(_keys_in_slot(conn, slot, 1 << 62))


@subcommand("cluster", "getkeysinslot")
def _cluster_getkeysinslot(conn: Connection, argv: list[bytes]) -> ReplyT:
    slot, count = parse_int(argv[2]), parse_int(argv[3])
    if not 0 <= slot < SLOTS or count < 0:
        return Error("ERR Invalid slot or number of keys")
    return list(_keys_in_slot(conn, slot, count)) if count else []


def _replicas_of(conn: Connection, argv: list[bytes]) -> ReplyT:
    top = topology(facts(conn))
    wanted = argv[2].decode("utf-8", "replace")
    peer = next((p for p in top.peers if p.host and p.cluster_id == wanted), None)
    if peer is None:
        return Error(f"ERR Unknown node {wanted}")
    if not peer.leader:
        return Error("ERR The specified node is not a master")
    now_ms = int(time.time() * 1000)
    return [node_line(p, top, now_ms).encode() for p in top.replicas]


subcommand("cluster", "replicas")(_replicas_of)
subcommand("cluster", "slaves")(_replicas_of)


@subcommand("cluster", "links")
def _cluster_links(conn: Connection, argv: list[bytes]) -> ReplyT:
    return []


@subcommand("cluster", "count-failure-reports")
def _cluster_failure_reports(conn: Connection, argv: list[bytes]) -> ReplyT:
    return 0


@subcommand("cluster", "saveconfig")
def _cluster_saveconfig(conn: Connection, argv: list[bytes]) -> ReplyT:
    return OK


def _cluster_unsupported(conn: Connection, argv: list[bytes]) -> ReplyT:
    sub = argv[1].decode("utf-8", "replace").upper()
    return Error(
        f"ERR CLUSTER {sub} is not supported: raftcache emulates a one-shard cluster whose "
        "members and master follow its Raft group (change membership with raftcache's own tools)"
    )


for _sub in [
    "meet",
    "addslots",
    "addslotsrange",
    "delslots",
    "delslotsrange",
    "failover",
    "forget",
    "replicate",
    "reset",
    "setslot",
    "flushslots",
    "bumpepoch",
    "set-config-epoch",
]:
    subcommand("cluster", _sub)(_cluster_unsupported)

container("cluster")(
    [
        "COUNTKEYSINSLOT <slot>",
        "    Return the number of keys in <slot>.",
        "GETKEYSINSLOT <slot> <count>",
        "    Return key names stored by current node in a slot.",
        "INFO",
        "    Return information about the cluster.",
        "KEYSLOT <key>",
        "    Return the hash slot for <key>.",
        "MYID",
        "    Return the node id.",
        "MYSHARDID",
        "    Return the node's shard id.",
        "NODES",
        "    Return cluster configuration seen by node. Output format:",
        "    <id> <ip:port> <flags> <master> <pings> <pongs> <epoch> <link> <slot> ...",
        "REPLICAS <node-id>",
        "    Return <node-id> replicas.",
        "SLOTS",
        "    Return information about slots range mappings. Each range is made of:",
        "    start, end, master and replicas IP addresses, ports and ids",
        "SHARDS",
        "    Return information about slot range mappings and the nodes associated with them.",
        "LINKS",
        "    Return information about all network links between this node and its peers.",
        "(raftcache: one shard; MEET, ADDSLOTS, FAILOVER, ... are refused: the Raft group",
        " decides members and leader.)",
    ]
)


# -- SENTINEL ---------------------------------------------------------------------------------


def _instance(conn: Connection, pairs: list[tuple[str, str | int]]) -> ReplyT:
    """A Sentinel instance description: every value a bulk string, as Sentinel sends them."""
    return bulk_map(conn, [(k, str(v).encode()) for k, v in pairs])


def _common(peer: Peer, flags: str, run_id: str) -> list[tuple[str, str | int]]:
    down = [] if peer.online else [("s-down-time", 0)]
    return [
        ("ip", peer.host),
        ("port", peer.port),
        ("runid", run_id),
        ("flags", flags),
        ("link-pending-commands", 0),
        ("link-refcount", 1),
        ("last-ping-sent", 0),
        ("last-ok-ping-reply", 0 if peer.online else 30000),
        ("last-ping-reply", 0 if peer.online else 30000),
        *down,
        ("down-after-milliseconds", 30000),
    ]


def master_state(conn: Connection, top: Topology, name: str) -> ReplyT:
    leader = _leader_or_down(top)
    pairs: list[tuple[str, str | int]] = [("name", name)]
    pairs += _common(leader, "master", stable_id("raftcache-run", leader.node_id))
    pairs += [
        ("info-refresh", 0),
        ("role-reported", "master"),
        ("role-reported-time", 0),
        ("config-epoch", top.term),
        ("num-slaves", len(top.replicas)),
        ("num-other-sentinels", len([p for p in top.peers if p.host]) - 1),
        ("quorum", len(top.peers) // 2 + 1),
        ("failover-timeout", 180000),
        ("parallel-syncs", 1),
    ]
    return _instance(conn, pairs)


def replica_state(conn: Connection, top: Topology, peer: Peer, leader: Peer) -> ReplyT:
    flags = "slave" if peer.online else "s_down,slave,disconnected"
    pairs: list[tuple[str, str | int]] = [("name", peer.addr)]
    pairs += _common(peer, flags, stable_id("raftcache-run", peer.node_id))
    pairs += [
        ("info-refresh", 0),
        ("role-reported", "slave"),
        ("role-reported-time", 0),
        ("master-link-down-time", 0),
        ("master-link-status", "ok" if peer.online else "err"),
        ("master-host", leader.host),
        ("master-port", leader.port),
        ("slave-priority", 100),
        ("slave-repl-offset", peer.offset),
        ("replica-announced", 1),
    ]
    return _instance(conn, pairs)


def sentinel_state(conn: Connection, peer: Peer) -> ReplyT:
    sentinel_id = stable_id("raftcache-sentinel", peer.node_id)
    pairs: list[tuple[str, str | int]] = [("name", sentinel_id)]
    pairs += _common(
        peer, "sentinel" if peer.online else "s_down,sentinel,disconnected", sentinel_id
    )
    pairs += [("last-hello-message", 0), ("voted-leader", "?"), ("voted-leader-epoch", 0)]
    return _instance(conn, pairs)


def _name(argv: list[bytes]) -> str:
    return argv[2].decode("utf-8", "replace")


@subcommand("sentinel", "masters")
def _sentinel_masters(conn: Connection, argv: list[bytes]) -> ReplyT:
    return [master_state(conn, topology(facts(conn)), MASTER_NAME)]


@subcommand("sentinel", "master")
def _sentinel_master(conn: Connection, argv: list[bytes]) -> ReplyT:
    return master_state(conn, topology(facts(conn)), _name(argv))


def _sentinel_replicas(conn: Connection, argv: list[bytes]) -> ReplyT:
    top = topology(facts(conn))
    leader = _leader_or_down(top)
    return [replica_state(conn, top, p, leader) for p in top.replicas]


subcommand("sentinel", "replicas")(_sentinel_replicas)
subcommand("sentinel", "slaves")(_sentinel_replicas)


@subcommand("sentinel", "sentinels")
def _sentinel_sentinels(conn: Connection, argv: list[bytes]) -> ReplyT:
    top = topology(facts(conn))
    return [sentinel_state(conn, p) for p in top.peers if p.host and not p.myself]


@subcommand("sentinel", "get-master-addr-by-name")
def _sentinel_master_addr(conn: Connection, argv: list[bytes]) -> ReplyT:
    leader = _leader_or_down(topology(facts(conn)))
    return [leader.host.encode(), str(leader.port).encode()]


@subcommand("sentinel", "myid")
def _sentinel_myid(conn: Connection, argv: list[bytes]) -> ReplyT:
    return stable_id("raftcache-sentinel", facts(conn).config.node_id).encode()


@subcommand("sentinel", "is-master-down-by-addr")
def _sentinel_is_down(conn: Connection, argv: list[bytes]) -> ReplyT:
    parse_int(argv[3])  # port
    parse_int(argv[4])  # epoch
    top = topology(facts(conn))
    leader = top.leader
    host = argv[2].decode("utf-8", "replace")
    down = leader is None or (leader.host, leader.port) != (host, parse_int(argv[3]))
    return [int(down), b"*", 0]


@subcommand("sentinel", "ckquorum")
def _sentinel_ckquorum(conn: Connection, argv: list[bytes]) -> ReplyT:
    top = topology(facts(conn))
    _leader_or_down(top)
    usable = len([p for p in top.peers if p.host and p.online])
    return Status(f"OK {usable} usable Sentinels. Quorum and failover authorization can be reached")


@subcommand("sentinel", "pending-scripts")
def _sentinel_pending_scripts(conn: Connection, argv: list[bytes]) -> ReplyT:
    return []


def _sentinel_unsupported(conn: Connection, argv: list[bytes]) -> ReplyT:
    sub = argv[1].decode("utf-8", "replace").upper()
    return Error(
        f"ERR SENTINEL {sub} is not supported: raftcache's master is its Raft leader, "
        "chosen by the Raft group (no Sentinel configuration to change)"
    )


for _sub in [
    "monitor",
    "remove",
    "set",
    "failover",
    "reset",
    "config",
    "flushconfig",
    "simulate-failure",
    "debug",
]:
    subcommand("sentinel", _sub, -2)(_sentinel_unsupported)
subcommand("sentinel", "info-cache", -2)(_sentinel_unsupported)

container("sentinel")(
    [
        "CKQUORUM <master-name>",
        "    Check if the current Sentinel configuration is able to reach the quorum",
        "    needed to failover a master and the majority needed to authorize the",
        "    failover.",
        "GET-MASTER-ADDR-BY-NAME <master-name>",
        "    Return the ip and port number of the master with that name.",
        "IS-MASTER-DOWN-BY-ADDR <ip> <port> <current-epoch> <runid>",
        "    Check if the master specified by ip:port is down from current Sentinel's",
        "    point of view.",
        "MASTER <master-name>",
        "    Show the state and info of the specified master.",
        "MASTERS",
        "    Show a list of monitored masters and their state.",
        "MYID",
        "    Return the ID of the Sentinel instance.",
        "PENDING-SCRIPTS",
        "    Get pending scripts information.",
        "REPLICAS <master-name>",
        "    Show a list of replicas for this master and their state.",
        "SENTINELS <master-name>",
        "    Show a list of Sentinel instances for this master and their state.",
        "(raftcache: one master, the Raft leader, listed as 'mymaster'; any master name is",
        " accepted. MONITOR, SET, FAILOVER, ... are refused.)",
    ]
)


# -- ROLE and WAIT ------------------------------------------------------------------------------


@admin("role")
def _role(conn: Connection, argv: list[bytes]) -> ReplyT:
    top = topology(facts(conn))
    me = top.me
    if me.leader:
        replicas: list[ReplyT] = [
            [p.host.encode(), str(p.port).encode(), str(p.offset).encode()]
            for p in top.replicas
            if p.online
        ]
        return [b"master", me.offset, replicas]
    leader = top.leader
    if leader is None:
        return [b"slave", b"", 0, b"connect", -1]
    return [b"slave", leader.host.encode(), leader.port, b"connected", me.offset]


def acked_replicas(node: NodeFacts, target: int) -> int:
    """Followers whose log holds index `target` (as the leader knows from their acks)."""
    status = node.view.raft.status()
    self_addr = node.view.raft.config.self_addr
    return sum(
        1
        for addr, index in status.match_index.items()
        if addr != self_addr and index >= target and (target > 0 or addr in status.connected)
    )


def _follower_knowledge(node: NodeFacts, target: int) -> int:
    """What a follower can vouch for: an acknowledged write is on a majority, i.e. on at
    least quorum - 1 replicas besides the leader."""
    voters = len(node.view.raft.config.peers) + 1
    return voters // 2 if target > 0 else voters - 1


async def wait_for_replicas(node: NodeFacts, target: int, wanted: int, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    while True:
        if not node.view.raft.is_leader():
            return _follower_knowledge(node, target)
        count = acked_replicas(node, target)
        if count >= wanted or time.monotonic() >= deadline:
            return count
        await asyncio.sleep(_WAIT_POLL_S)


@admin("wait")
def _wait(conn: Connection, argv: list[bytes]) -> object:
    wanted = parse_int(argv[1])
    timeout_ms = parse_timeout_ms(argv[2])
    node = facts(conn)
    if conn.multi is not None:  # inside MULTI: answer at once, as Redis does
        target = conn.last_write_index
        if not node.view.raft.is_leader():
            return _follower_knowledge(node, target)
        return acked_replicas(node, target)
    timeout_s = timeout_ms / 1000 if timeout_ms else WAIT_FOREVER_S

    def start(slot: Slot) -> None:
        # Started once this connection's earlier writes have answered (a read run waits
        # for the write run before it): last_write_index then covers all of them.
        coro = wait_for_replicas(node, conn.last_write_index, wanted, timeout_s)
        conn._spawn(coro, slot)

    conn.run("r", start)
    return REPLIED
