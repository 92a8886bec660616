"""INFO: Redis 7.0.15's sections and fields, filled with this node's facts.

`gather` reads the node once into `InfoFacts`; `render` is pure (unit-tested with fakes).
Memory is the replicated accounted memory (equal on every replica at one applied index),
so used_memory and maxmemory mean what eviction means. Replication shows the Raft group:
the leader is the master (role:master, one slaveN line per connected follower with its
Redis address and its Raft match index as offset), a follower is a slave of the leader.
Counters of connections, commands, hits and misses are this node's own.
"""

from __future__ import annotations

import os
import platform
import resource
import struct
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from raftcache.node.keyspace import dispatch, functions, scripting
from raftcache.node.keyspace.db import DATABASES, Db, key_db
from raftcache.node.resp.admin import ADMIN, admin, facts, stable_id, verbatim
from raftcache.node.resp.server import _LOCAL, REDIS_VERSION
from raftcache.node.resp.topology import topology

if TYPE_CHECKING:
    from raftcache.node.keyspace.reply import ReplyT
    from raftcache.node.resp.server import Connection
    from raftcache.node.state_machine import StateMachine

_EXACT_EXPIRES_UP_TO = 10_000
"""Above this many keys with a TTL in several databases, per-database expires are estimated
(counting them holds the replica lock, which apply needs)."""


@dataclass(frozen=True)
class Follower:
    host: str
    port: int
    offset: int


@dataclass(frozen=True)
class InfoFacts:
    """Everything INFO prints, read from the node at one instant."""

    tcp_port: int = 6379
    uptime_s: int = 0
    process_id: int = 0
    run_id: str = "0" * 40
    executable: str = ""
    now_us: int = 0
    connected_clients: int = 0
    blocked_clients: int = 0
    blocking_keys: int = 0
    maxclients: int = 10000
    used_memory: int = 0
    peak_memory: int = 0
    rss: int = 0
    total_system_memory: int = 0
    maxmemory: int = 0
    maxmemory_policy: str = "noeviction"
    lastsave: int = 0
    aof_enabled: bool = False
    connections_received: int = 0
    commands_processed: int = 0
    rejected_connections: int = 0
    expired_keys: int = 0
    evicted_keys: int = 0
    keyspace_hits: int = 0
    keyspace_misses: int = 0
    error_replies: int = 0
    pubsub_channels: int = 0
    pubsub_patterns: int = 0
    master: bool = True
    master_host: str = ""
    master_port: int = 0
    master_link_up: bool = False
    repl_offset: int = 0
    replid: str = "0" * 40
    followers: list[Follower] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)  # by command name
    keyspace: list[tuple[int, int, int]] = field(default_factory=list)  # (db, keys, expires)
    cpu: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    cached_scripts: int = 0
    libraries: int = 0
    functions: int = 0


def human(n: int) -> str:
    """Redis's bytesToHuman."""
    if n < 1024:
        return f"{n}B"
    for unit, power in (("K", 1), ("M", 2), ("G", 3), ("T", 4), ("P", 5)):
        if n < 1024 ** (power + 1):
            return f"{n / 1024**power:.2f}{unit}"
    return f"{n}B"


# -- sections ------------------------------------------------------------------------------


def _server(f: InfoFacts) -> list[str]:
    uname = platform.uname()
    return [
        f"redis_version:{REDIS_VERSION}",
        "redis_git_sha1:00000000",
        "redis_git_dirty:0",
        f"redis_build_id:{stable_id('raftcache-build', REDIS_VERSION)[:16]}",
        "redis_mode:cluster",
        f"os:{uname.system} {uname.release} {uname.machine}",
        f"arch_bits:{struct.calcsize('P') * 8}",
        "monotonic_clock:POSIX clock_gettime",
        "multiplexing_api:epoll",
        "atomicvar_api:c11-builtin",
        "gcc_version:0.0.0",
        f"process_id:{f.process_id}",
        "process_supervised:no",
        f"run_id:{f.run_id}",
        f"tcp_port:{f.tcp_port}",
        f"server_time_usec:{f.now_us}",
        f"uptime_in_seconds:{f.uptime_s}",
        f"uptime_in_days:{f.uptime_s // 86400}",
        "hz:10",
        "configured_hz:10",
        f"lru_clock:{(f.now_us // 1_000_000) & ((1 << 24) - 1)}",
        f"executable:{f.executable}",
        "config_file:",
        "io_threads_active:0",
    ]


def _clients(f: InfoFacts) -> list[str]:
    return [
        f"connected_clients:{f.connected_clients}",
        "cluster_connections:0",
        f"maxclients:{f.maxclients}",
        "client_recent_max_input_buffer:0",
        "client_recent_max_output_buffer:0",
        f"blocked_clients:{f.blocked_clients}",
        "tracking_clients:0",
        "clients_in_timeout_table:0",
        # Redis 7.2's field; the leader counts the keys of relayed calls it parks too
        f"total_blocking_keys:{f.blocking_keys}",
    ]


def _memory(f: InfoFacts) -> list[str]:
    used, peak = f.used_memory, max(f.peak_memory, f.used_memory)
    peak_perc = 100.0 * used / peak if peak else 100.0
    frag = f.rss / used if used else 0.0
    return [
        f"used_memory:{used}",
        f"used_memory_human:{human(used)}",
        f"used_memory_rss:{f.rss}",
        f"used_memory_rss_human:{human(f.rss)}",
        f"used_memory_peak:{peak}",
        f"used_memory_peak_human:{human(peak)}",
        f"used_memory_peak_perc:{peak_perc:.2f}%",
        "used_memory_overhead:0",
        "used_memory_startup:0",
        f"used_memory_dataset:{used}",
        "used_memory_dataset_perc:100.00%",
        f"allocator_allocated:{used}",
        f"allocator_active:{used}",
        f"allocator_resident:{f.rss}",
        f"total_system_memory:{f.total_system_memory}",
        f"total_system_memory_human:{human(f.total_system_memory)}",
        "used_memory_lua:0",
        "used_memory_vm_eval:0",
        "used_memory_lua_human:0B",
        "used_memory_scripts_eval:0",
        f"number_of_cached_scripts:{f.cached_scripts}",
        f"number_of_functions:{f.functions}",
        f"number_of_libraries:{f.libraries}",
        "used_memory_vm_functions:0",
        "used_memory_vm_total:0",
        "used_memory_vm_total_human:0B",
        "used_memory_functions:0",
        "used_memory_scripts:0",
        "used_memory_scripts_human:0B",
        f"maxmemory:{f.maxmemory}",
        f"maxmemory_human:{human(f.maxmemory)}",
        f"maxmemory_policy:{f.maxmemory_policy}",
        "allocator_frag_ratio:1.00",
        "allocator_frag_bytes:0",
        "allocator_rss_ratio:1.00",
        "allocator_rss_bytes:0",
        "rss_overhead_ratio:1.00",
        "rss_overhead_bytes:0",
        f"mem_fragmentation_ratio:{frag:.2f}",
        f"mem_fragmentation_bytes:{max(f.rss - used, 0)}",
        "mem_not_counted_for_evict:0",
        "mem_replication_backlog:0",
        "mem_total_replication_buffers:0",
        "mem_clients_slaves:0",
        "mem_clients_normal:0",
        "mem_cluster_links:0",
        "mem_aof_buffer:0",
        "mem_allocator:libc",
        "active_defrag_running:0",
        "lazyfree_pending_objects:0",
        "lazyfreed_objects:0",
    ]


def _persistence(f: InfoFacts) -> list[str]:
    # Every acknowledged write is in the Raft journal (and its LMDB snapshots): nothing is
    # ever pending, no fork ever runs.
    return [
        "loading:0",
        "async_loading:0",
        "current_cow_peak:0",
        "current_cow_size:0",
        "current_cow_size_age:0",
        "current_fork_perc:0.00",
        "current_save_keys_processed:0",
        "current_save_keys_total:0",
        "rdb_changes_since_last_save:0",
        "rdb_bgsave_in_progress:0",
        f"rdb_last_save_time:{f.lastsave}",
        "rdb_last_bgsave_status:ok",
        "rdb_last_bgsave_time_sec:-1",
        "rdb_current_bgsave_time_sec:-1",
        "rdb_saves:0",
        "rdb_last_cow_size:0",
        "rdb_last_load_keys_expired:0",
        "rdb_last_load_keys_loaded:0",
        f"aof_enabled:{int(f.aof_enabled)}",
        "aof_rewrite_in_progress:0",
        "aof_rewrite_scheduled:0",
        "aof_last_rewrite_time_sec:-1",
        "aof_current_rewrite_time_sec:-1",
        "aof_last_bgrewrite_status:ok",
        "aof_rewrites:0",
        "aof_rewrites_consecutive_failures:0",
        "aof_last_write_status:ok",
        "aof_last_cow_size:0",
        "module_fork_in_progress:0",
        "module_fork_last_cow_size:0",
    ]


def _stats(f: InfoFacts) -> list[str]:
    zero = [
        "total_net_input_bytes",
        "total_net_output_bytes",
        "total_net_repl_input_bytes",
        "total_net_repl_output_bytes",
    ]
    rest = ["sync_full", "sync_partial_ok", "sync_partial_err"]
    return [
        f"total_connections_received:{f.connections_received}",
        f"total_commands_processed:{f.commands_processed}",
        "instantaneous_ops_per_sec:0",
        *(f"{name}:0" for name in zero),
        "instantaneous_input_kbps:0.00",
        "instantaneous_output_kbps:0.00",
        "instantaneous_input_repl_kbps:0.00",
        "instantaneous_output_repl_kbps:0.00",
        f"rejected_connections:{f.rejected_connections}",
        *(f"{name}:0" for name in rest),
        f"expired_keys:{f.expired_keys}",
        "expired_stale_perc:0.00",
        "expired_time_cap_reached_count:0",
        "expire_cycle_cpu_milliseconds:0",
        f"evicted_keys:{f.evicted_keys}",
        "evicted_clients:0",
        "total_eviction_exceeded_time:0",
        "current_eviction_exceeded_time:0",
        f"keyspace_hits:{f.keyspace_hits}",
        f"keyspace_misses:{f.keyspace_misses}",
        f"pubsub_channels:{f.pubsub_channels}",
        f"pubsub_patterns:{f.pubsub_patterns}",
        "pubsubshard_channels:0",
        "latest_fork_usec:0",
        "total_forks:0",
        "migrate_cached_sockets:0",
        "slave_expires_tracked_keys:0",
        "active_defrag_hits:0",
        "active_defrag_misses:0",
        "active_defrag_key_hits:0",
        "active_defrag_key_misses:0",
        "total_active_defrag_time:0",
        "current_active_defrag_time:0",
        "tracking_total_keys:0",
        "tracking_total_items:0",
        "tracking_total_prefixes:0",
        "unexpected_error_replies:0",
        f"total_error_replies:{f.error_replies}",
        "dump_payload_sanitizations:0",
        f"total_reads_processed:{f.commands_processed}",
        "total_writes_processed:0",
        "io_threaded_reads_processed:0",
        "io_threaded_writes_processed:0",
        "reply_buffer_shrinks:0",
        "reply_buffer_expands:0",
    ]


def _replication(f: InfoFacts) -> list[str]:
    lines = [f"role:{'master' if f.master else 'slave'}"]
    if not f.master:
        lines += [
            f"master_host:{f.master_host}",
            f"master_port:{f.master_port}",
            f"master_link_status:{'up' if f.master_link_up else 'down'}",
            f"master_last_io_seconds_ago:{0 if f.master_link_up else -1}",
            "master_sync_in_progress:0",
            f"slave_read_repl_offset:{f.repl_offset}",
            f"slave_repl_offset:{f.repl_offset}",
        ]
        if not f.master_link_up:
            lines.append("master_link_down_since_seconds:-1")
        lines += ["slave_priority:100", "slave_read_only:1", "replica_announced:1"]
    lines.append(f"connected_slaves:{len(f.followers)}")
    lines += [
        f"slave{i}:ip={r.host},port={r.port},state=online,offset={r.offset},lag=0"
        for i, r in enumerate(f.followers)
    ]
    return [
        *lines,
        "master_failover_state:no-failover",
        f"master_replid:{f.replid}",
        "master_replid2:0000000000000000000000000000000000000000",
        f"master_repl_offset:{f.repl_offset}",
        "second_repl_offset:-1",
        "repl_backlog_active:1",
        "repl_backlog_size:1048576",
        "repl_backlog_first_byte_offset:1",
        f"repl_backlog_histlen:{f.repl_offset}",
    ]


def _cpu(f: InfoFacts) -> list[str]:
    names = [
        "used_cpu_sys",
        "used_cpu_user",
        "used_cpu_sys_children",
        "used_cpu_user_children",
        "used_cpu_sys_main_thread",
        "used_cpu_user_main_thread",
    ]
    return [f"{name}:{value:.6f}" for name, value in zip(names, f.cpu, strict=True)]


def _commandstats(f: InfoFacts) -> list[str]:
    # Calls are counted per node; commands are not timed one by one (usec is 0).
    return [
        f"cmdstat_{name}:calls={n},usec=0,usec_per_call=0.00,rejected_calls=0,failed_calls=0"
        for name, n in sorted(f.calls.items())
    ]


def _errorstats(f: InfoFacts) -> list[str]:
    return [f"errorstat_{code}:count={n}" for code, n in sorted(f.errors.items())]


def _cluster(f: InfoFacts) -> list[str]:
    return ["cluster_enabled:1"]


def _keyspace(f: InfoFacts) -> list[str]:
    return [
        f"db{db}:keys={keys},expires={expires},avg_ttl=0"
        for db, keys, expires in f.keyspace
        if keys or expires
    ]


def _empty(f: InfoFacts) -> list[str]:
    return []


_Section = Callable[[InfoFacts], list[str]]
# (name, title, renderer) in Redis's order; "modules" also answers to "module_list".
_SECTIONS: list[tuple[str, str, _Section]] = [
    ("server", "Server", _server),
    ("clients", "Clients", _clients),
    ("memory", "Memory", _memory),
    ("persistence", "Persistence", _persistence),
    ("stats", "Stats", _stats),
    ("replication", "Replication", _replication),
    ("cpu", "CPU", _cpu),
    ("module_list", "Modules", _empty),
    ("commandstats", "Commandstats", _commandstats),
    ("errorstats", "Errorstats", _errorstats),
    ("latencystats", "Latencystats", _empty),
    ("cluster", "Cluster", _cluster),
    ("keyspace", "Keyspace", _keyspace),
]
_DEFAULT = frozenset(
    [
        "server",
        "clients",
        "memory",
        "persistence",
        "stats",
        "replication",
        "cpu",
        "module_list",
        "errorstats",
        "cluster",
        "keyspace",
    ]
)


def chosen_sections(args: Sequence[bytes]) -> set[str]:
    """The section names INFO's arguments select (Redis's genInfoSectionDict)."""
    if not args:
        return set(_DEFAULT)
    chosen: set[str] = set()
    for raw in args:
        name = raw.decode("utf-8", "replace").lower()
        if name == "default":
            chosen |= _DEFAULT
        elif name in ("all", "everything"):
            chosen |= {s[0] for s in _SECTIONS}
        elif name == "modules":
            chosen.add("module_list")
        else:
            chosen.add(name)
    return chosen


def render(f: InfoFacts, args: Sequence[bytes] = ()) -> str:
    """INFO's text for the sections `args` select."""
    chosen = chosen_sections(args)
    blocks = []
    for name, title, section in _SECTIONS:
        if name in chosen:
            lines = [f"# {title}", *section(f)]
            blocks.append("".join(line + "\r\n" for line in lines))
    return "\r\n".join(blocks)


# -- reading the node ------------------------------------------------------------------------


def keyspace_counts(sm: StateMachine) -> list[tuple[int, int, int]]:
    """(db, keys, expires) of every database. Expires are exact when one database holds
    keys or there are few keys with a TTL; otherwise split by key counts (an estimate)."""
    sizes = {db: sm.db_size(db) for db in range(DATABASES)}
    total = sm.ttl_keys
    used = [db for db, n in sizes.items() if n]
    expires: dict[int, int] = {}
    if total and len(used) == 1:
        expires = {used[0]: total}
    elif total and total <= _EXACT_EXPIRES_UP_TO:
        expires = dict(Counter(key_db(key)[0] for _, key in sm.keys_with_deadlines(total)))
    elif total:
        keys = sum(sizes.values()) or 1
        expires = {db: round(total * n / keys) for db, n in sizes.items()}
    return [(db, sizes[db], expires.get(db, 0)) for db in range(DATABASES)]


def _rss() -> int:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _cpu_times() -> tuple[float, ...]:
    me = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    thread = resource.getrusage(getattr(resource, "RUSAGE_THREAD", resource.RUSAGE_SELF))
    return (
        me.ru_stime,
        me.ru_utime,
        children.ru_stime,
        children.ru_utime,
        thread.ru_stime,
        thread.ru_utime,
    )


def _system_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 0


def _known_calls(calls: dict[bytes, int]) -> dict[str, int]:
    """Calls of commands this front-end knows (unknown names are not commands)."""
    known = dispatch.COMMANDS.keys() | ADMIN.keys() | _LOCAL.keys()
    return {name.decode(): n for name, n in calls.items() if name in known}


def gather(conn: Connection) -> InfoFacts:
    """This node's facts for INFO, now."""
    node = facts(conn)
    server, local = conn.server, node.local
    stats = server.stats
    replica = node.view.replica
    cache = replica.stats()
    local.peak_memory = max(local.peak_memory, cache.memory_used)
    with replica.lock:
        keyspace = keyspace_counts(replica.state)
        cached_scripts = replica.state.db_size(scripting.SCRIPTS_DB)
        db = Db(replica.state, 0, replica.state.cluster_time_ms, write=False)
        libraries, functions_count = functions.counts(db)
    top = topology(node)
    leader = top.leader
    me = top.me
    status = node.view.raft.status()
    now = time.time()
    streams = node.streams
    return InfoFacts(
        tcp_port=int(node.config.redis_listen.rpartition(":")[2] or 0),
        uptime_s=int(now - local.started),
        process_id=os.getpid(),
        run_id=local.run_id,
        executable=sys.executable,
        now_us=int(now * 1_000_000),
        connected_clients=len(server.clients),
        blocked_clients=sum(1 for c in server.clients.values() if c.blocked is not None),
        blocking_keys=server.blocker.blocking_keys if server.blocker is not None else 0,
        maxclients=int(local.settings.get("maxclients", "10000")),
        used_memory=cache.memory_used,
        peak_memory=local.peak_memory,
        rss=_rss(),
        total_system_memory=_system_memory(),
        maxmemory=cache.max_memory,
        maxmemory_policy=cache.eviction_policy,
        lastsave=int(now),
        aof_enabled=local.settings.get("appendonly", "no") == "yes",
        connections_received=stats.connections_received,
        commands_processed=stats.commands_processed,
        rejected_connections=stats.rejected_connections,
        expired_keys=cache.expired_keys,
        evicted_keys=cache.evictions,
        keyspace_hits=stats.keyspace_hits,
        keyspace_misses=stats.keyspace_misses,
        error_replies=stats.error_replies,
        pubsub_channels=len(streams.channel_names(None)),
        pubsub_patterns=streams.pattern_count(),
        master=me.leader,
        master_host="" if leader is None else leader.host,
        master_port=0 if leader is None else leader.port,
        master_link_up=leader is not None and status.leader is not None,
        repl_offset=me.offset,
        replid=stable_id("raftcache-replid", str(top.term)),
        followers=[Follower(p.host, p.port, p.offset) for p in top.replicas if p.online]
        if me.leader
        else [],
        errors=dict(stats.error_codes),
        calls=_known_calls(stats.calls),
        keyspace=keyspace,
        cpu=_cpu_times(),
        cached_scripts=cached_scripts,
        libraries=libraries,
        functions=functions_count,
    )


@admin("info")
def _info(conn: Connection, argv: list[bytes]) -> ReplyT:
    return verbatim(conn, render(gather(conn), argv[1:]))
