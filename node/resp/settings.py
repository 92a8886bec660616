"""CONFIG GET/SET/RESETSTAT/REWRITE with Redis 7.0.15's parameter names, defaults, value
checks and error texts.

Three kinds of parameters:
- node facts (port, bind, proto-max-bulk-len, databases, ...): read from the node; setting
  one to another value is refused with the flag that changes it;
- replicated cluster config (maxmemory, maxmemory-policy): every node answers the values the
  leader replicated; changing them is refused with the --max-memory / --eviction-policy
  flags to use (a value equal to the current one is accepted: tools set what they read);
- notify-keyspace-events: replicated state too, which CONFIG SET on any node changes through
  the log (keyspace/notify.py), so every node publishes the same notifications;
- everything else (save, appendonly, the encoding thresholds,
  lua-time-limit, slowlog-*, ...): checked as Redis checks it and remembered on this node,
  where CONFIG GET shows it. raftcache does not act on these (its persistence is the Raft
  journal, its encodings are its own); tools and test harnesses only need them accepted.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from raftcache.node.keyspace import notify
from raftcache.node.keyspace.glob import compile_glob
from raftcache.node.keyspace.reply import OK, SYNTAX, Error, Map, ReplyT
from raftcache.node.resp.admin import NodeFacts, awaited_reply, container, facts, subcommand

if TYPE_CHECKING:
    from raftcache.node.resp.server import Connection

_INT_MAX = 2**31 - 1
_LONG_MAX = 2**63 - 1
_UINT_MAX = 2**32 - 1


class BadValue(ValueError):
    """A value CONFIG SET refuses; the message is Redis's reason."""


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # bool, int, memory, enum, string, special
    default: str
    alias: str = ""
    low: int = 0
    high: int = _LONG_MAX
    values: tuple[str, ...] = ()
    immutable: bool = False
    hidden: bool = False  # matched by its exact name only, never by a pattern
    check: Callable[[str], str] | None = None  # special: returns the normalized value


def parse_memory(text: str) -> int:
    """Redis's memtoull: digits with an optional unit (b, k, kb, m, mb, g, gb)."""
    match = re.fullmatch(r"(\d+)(b|k|kb|m|mb|g|gb)?", text, re.IGNORECASE)
    if match is None:
        raise BadValue("argument must be a memory value")
    units = {"": 1, "b": 1, "k": 1000, "kb": 1024, "m": 10**6, "mb": 1 << 20}
    units |= {"g": 10**9, "gb": 1 << 30}
    return int(match.group(1)) * units[(match.group(2) or "").lower()]


def _parse_int(text: str) -> int:
    if re.fullmatch(r"-?(0|[1-9]\d{0,18})", text) is None or text == "-0":
        raise BadValue("argument couldn't be parsed into an integer")
    return int(text)


def normalize(param: Param, text: str) -> str:
    """The value CONFIG GET shows after CONFIG SET param text; BadValue when refused."""
    if param.kind == "bool":
        if text.lower() not in ("yes", "no"):
            raise BadValue("argument must be 'yes' or 'no'")
        return text.lower()
    if param.kind in ("int", "memory"):
        value = parse_memory(text) if param.kind == "memory" else _parse_int(text)
        if not param.low <= value <= param.high:
            raise BadValue(f"argument must be between {param.low} and {param.high} inclusive")
        return str(value)
    if param.kind == "enum":
        if text.lower() not in param.values:
            raise BadValue("argument(s) must be one of the following: " + ", ".join(param.values))
        return text.lower()
    if param.check is not None:
        return param.check(text)
    return text


def _check_save(text: str) -> str:
    words = text.split()
    if len(words) % 2 or any(
        not re.fullmatch(r"-?\d+", w) or int(w) < (1 if i % 2 == 0 else 0)
        for i, w in enumerate(words)
    ):
        raise BadValue("Invalid save parameters")
    return " ".join(str(int(w)) for w in words)


def _check_notify(text: str) -> str:
    try:
        return notify.normalize(text)
    except notify.BadFlags as exc:
        raise BadValue(str(exc)) from None


def _check_output_limits(text: str) -> str:
    words = text.split()
    if not words or len(words) % 4:
        raise BadValue("Wrong number of arguments in buffer limit configuration.")
    limits = dict(
        (c, (h, s, t))
        for c, h, s, t in (("normal", "0", "0", "0"), ("slave", "268435456", "67108864", "60"))
    )
    limits["pubsub"] = ("33554432", "8388608", "60")
    for i in range(0, len(words), 4):
        kind, hard, soft, seconds = words[i : i + 4]
        kind = "slave" if kind.lower() == "replica" else kind.lower()
        if kind not in limits:
            raise BadValue("Invalid client class specified in buffer limit configuration.")
        try:
            limits[kind] = (str(parse_memory(hard)), str(parse_memory(soft)), str(int(seconds)))
        except (BadValue, ValueError):
            raise BadValue(
                "Error in hard, soft or soft_seconds setting in buffer limit configuration."
            ) from None
    return " ".join(f"{k} {' '.join(v)}" for k, v in limits.items())


def _check_percentiles(text: str) -> str:
    try:
        values = [float(w) for w in text.split()]
    except ValueError:
        raise BadValue("Invalid latency-tracking-info-percentiles parameters") from None
    if any(not 0.0 <= v <= 100.0 for v in values):
        raise BadValue(
            "latency-tracking-info-percentiles parameters should sit between [0.0,100.0]"
        )
    return " ".join(f"{v:g}" for v in values)


def _p(name: str, kind: str, default: str, alias: str = "", **kw: object) -> Param:
    return Param(name, kind, default, alias, **kw)  # type: ignore[arg-type]


def _bools(spec: str, immutable: bool = False) -> list[Param]:
    out = []
    for item in spec.split():
        name, _, default = item.partition("=")
        out.append(_p(name, "bool", default, immutable=immutable))
    return out


PARAMS: list[Param] = [
    *_bools(
        "protected-mode=yes rdbcompression=yes activerehashing=yes "
        "stop-writes-on-bgsave-error=yes dynamic-hz=yes lazyfree-lazy-eviction=no "
        "lazyfree-lazy-expire=no lazyfree-lazy-server-del=no lazyfree-lazy-user-del=no "
        "lazyfree-lazy-user-flush=no repl-diskless-sync=yes appendonly=no activedefrag=no "
        "latency-tracking=yes cluster-require-full-coverage=yes "
        "cluster-allow-reads-when-down=no aof-use-rdb-preamble=yes "
        "no-appendfsync-on-rewrite=no crash-log-enabled=yes replica-announced=yes "
        "rdb-del-sync-files=no aof-load-truncated=yes aof-timestamp-enabled=no"
    ),
    *_bools("rdbchecksum=yes daemonize=no cluster-enabled=yes io-threads-do-reads=no", True),
    _p("replica-serve-stale-data", "bool", "yes", "slave-serve-stale-data"),
    _p("replica-read-only", "bool", "yes", "slave-read-only"),
    _p("replica-lazy-flush", "bool", "no", "slave-lazy-flush"),
    _p("appendfsync", "enum", "everysec", values=("everysec", "always", "no")),
    _p("loglevel", "enum", "notice", values=("debug", "verbose", "notice", "warning")),
    _p(
        "cluster-preferred-endpoint-type",
        "enum",
        "ip",
        values=("ip", "hostname", "unknown-endpoint"),
    ),
    _p("sanitize-dump-payload", "enum", "no", values=("no", "yes", "clients")),
    _p("supervised", "enum", "no", values=("upstart", "systemd", "auto", "no"), immutable=True),
    _p("io-threads", "int", "1", low=1, high=128, immutable=True),
    _p("tcp-backlog", "int", "511", high=_INT_MAX, immutable=True),
    _p("list-max-listpack-size", "int", "-2", "list-max-ziplist-size", low=-(2**31), high=_INT_MAX),
    _p("list-compress-depth", "int", "0", high=_INT_MAX),
    _p("hash-max-listpack-entries", "int", "512", "hash-max-ziplist-entries"),
    _p("hash-max-listpack-value", "memory", "64", "hash-max-ziplist-value"),
    _p("set-max-intset-entries", "int", "512"),
    _p("zset-max-listpack-entries", "int", "128", "zset-max-ziplist-entries"),
    _p("zset-max-listpack-value", "memory", "64", "zset-max-ziplist-value"),
    _p("stream-node-max-bytes", "memory", "4096"),
    _p("stream-node-max-entries", "int", "100"),
    _p("hll-sparse-max-bytes", "memory", "3000"),
    _p("tcp-keepalive", "int", "300", high=_INT_MAX),
    _p("timeout", "int", "0", high=_INT_MAX),
    _p("maxclients", "int", "10000", low=1, high=_UINT_MAX),
    _p("hz", "int", "10", high=_INT_MAX),
    _p("active-expire-effort", "int", "1", low=1, high=10),
    _p("lfu-log-factor", "int", "10", high=_INT_MAX),
    _p("lfu-decay-time", "int", "1", high=_INT_MAX),
    _p("maxmemory-samples", "int", "5", low=1, high=_INT_MAX),
    _p("maxmemory-eviction-tenacity", "int", "10", high=100),
    _p("maxmemory-clients", "memory", "0"),
    _p("replica-priority", "int", "100", "slave-priority", high=_INT_MAX),
    _p("repl-timeout", "int", "60", low=1, high=_INT_MAX),
    _p("repl-ping-replica-period", "int", "10", "repl-ping-slave-period", low=1, high=_INT_MAX),
    _p("repl-backlog-size", "memory", "1048576", low=1),
    _p("min-replicas-to-write", "int", "0", "min-slaves-to-write", high=_INT_MAX),
    _p("min-replicas-max-lag", "int", "10", "min-slaves-max-lag", high=_INT_MAX),
    _p("busy-reply-threshold", "int", "5000", "lua-time-limit"),
    _p("cluster-node-timeout", "int", "15000"),
    _p("slowlog-log-slower-than", "int", "10000", low=-1),
    _p("slowlog-max-len", "int", "128"),
    _p("acllog-max-len", "int", "128"),
    _p("latency-monitor-threshold", "int", "0"),
    _p("tracking-table-max-keys", "int", "1000000"),
    _p("shutdown-timeout", "int", "10", high=_INT_MAX),
    _p("client-query-buffer-limit", "memory", "1073741824", low=1 << 20),
    _p("auto-aof-rewrite-percentage", "int", "100", high=_INT_MAX),
    _p("auto-aof-rewrite-min-size", "memory", "67108864"),
    _p("active-defrag-ignore-bytes", "memory", "104857600", low=1),
    _p("rdb-key-save-delay", "int", "0", low=-(2**31), high=_INT_MAX, hidden=True),
    _p("key-load-delay", "int", "0", low=-(2**31), high=_INT_MAX, hidden=True),
    _p("dbfilename", "string", "dump.rdb"),
    _p("masterauth", "string", ""),
    _p("masteruser", "string", ""),
    _p("replica-announce-ip", "string", "", "slave-announce-ip"),
    _p("cluster-announce-ip", "string", ""),
    _p("ignore-warnings", "string", ""),
    _p("logfile", "string", "", immutable=True),
    _p("pidfile", "string", "", immutable=True),
    _p("unixsocket", "string", "", immutable=True),
    _p("aclfile", "string", "", immutable=True),
    _p("appendfilename", "string", "appendonly.aof", immutable=True),
    _p("appenddirname", "string", "appendonlydir", immutable=True),
    _p("cluster-config-file", "string", "nodes.conf", immutable=True),
    _p("save", "special", "", check=_check_save),
    _p("notify-keyspace-events", "special", "", check=_check_notify),
    _p(
        "client-output-buffer-limit",
        "special",
        "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60",
        check=_check_output_limits,
    ),
    _p("latency-tracking-info-percentiles", "special", "50 99 99.9", check=_check_percentiles),
    _p("oom-score-adj-values", "special", "0 200 800"),
    # node facts and replicated config: values come from _live(), see the module docstring
    _p("databases", "int", "16", low=1, high=_INT_MAX, immutable=True),
    _p("port", "int", "6379", high=65535),
    _p("bind", "special", ""),
    _p("dir", "string", ""),
    _p("proto-max-bulk-len", "memory", "536870912", low=1 << 20),
    _p("requirepass", "string", ""),
    _p("maxmemory", "memory", "0"),
    _p(
        "maxmemory-policy",
        "enum",
        "noeviction",
        values=(
            "volatile-lru",
            "volatile-lfu",
            "volatile-random",
            "volatile-ttl",
            "allkeys-lru",
            "allkeys-lfu",
            "allkeys-random",
            "noeviction",
        ),
    ),
]
_BY_NAME: dict[str, Param] = {}
for _param in PARAMS:
    _BY_NAME[_param.name] = _param
    if _param.alias:
        _BY_NAME[_param.alias] = _param

# Parameters whose value is not this node's to change, and the flag that changes it.
_FIXED_BY = {
    "port": "--redis-listen",
    "bind": "--redis-listen",
    "dir": "--data-dir",
    "proto-max-bulk-len": "--max-value-bytes",
    "requirepass": "AUTH support (a later release); the default user has no password",
}
_REPLICATED = {"maxmemory": "--max-memory", "maxmemory-policy": "--eviction-policy"}


def lookup(name: str) -> Param | None:
    return _BY_NAME.get(name.lower())


def _live(node: NodeFacts, conn: Connection, param: Param) -> str:
    """A parameter's current value on this node."""
    name = param.name
    if name in ("maxmemory", "maxmemory-policy"):
        stats = node.view.replica.stats()
        return str(stats.max_memory) if name == "maxmemory" else stats.eviction_policy
    if name == "notify-keyspace-events":
        return notify.display(node.view.replica.state.notify_flags)
    listen = node.config.redis_listen
    if name == "port":
        return listen.rpartition(":")[2] or "0"
    if name == "bind":
        return listen.rpartition(":")[0].strip("[]")
    if name == "proto-max-bulk-len":
        return str(conn.server.limits.max_bulk_bytes)
    if name == "dir":
        return str(node.config.raft.data_dir or "")
    return node.local.settings.get(name, param.default)


def config_get(node: NodeFacts, conn: Connection, patterns: list[bytes]) -> list[tuple[str, str]]:
    """(name, value) pairs for CONFIG GET's patterns, each parameter once, in table order."""
    chosen: dict[str, Param] = {}  # shown name -> param
    for raw in patterns:
        pattern = raw.decode("utf-8", "replace")
        matches = compile_glob(pattern.lower().encode())
        if not any(c in pattern for c in "*?["):
            param = lookup(pattern)
            if param is not None and pattern not in chosen:
                chosen[pattern] = param
            continue
        for param in PARAMS:
            for name in filter(None, (param.name, param.alias)):
                if param.hidden or name in chosen:
                    continue
                if matches(name.encode()):
                    chosen[name] = param
    return [(name, _live(node, conn, param)) for name, param in chosen.items()]


def _refusal(node: NodeFacts, conn: Connection, param: Param, value: str) -> str | None:
    """Why this node will not set param to (normalized) value, or None."""
    if param.immutable:
        return "can't set immutable config"
    if param.name in _REPLICATED and value != _live(node, conn, param):
        flag = _REPLICATED[param.name]
        return (
            f"raftcache replicates {param.name} from the leader's {flag} flag "
            f"(env RAFTCACHE_{flag[2:].upper().replace('-', '_')}); restart the nodes with "
            "a new value to change it"
        )
    if param.name in _FIXED_BY and value != _live(node, conn, param):
        flag = _FIXED_BY[param.name]
        return f"raftcache sets {param.name} from {flag}; it cannot change at run time"
    return None


def config_set(
    node: NodeFacts, conn: Connection, argv: list[bytes]
) -> ReplyT | Coroutine[Any, Any, ReplyT]:
    """CONFIG SET name value [name value ...]: all or nothing, with Redis's error texts. A new
    notify-keyspace-events goes through the log: the reply then waits for it (OK, or why
    it could not be replicated, with this node's other changes made)."""
    if len(argv) % 2:
        return Error(SYNTAX)
    pairs = [
        (argv[i].decode("utf-8", "replace"), argv[i + 1].decode("utf-8", "replace"))
        for i in range(2, len(argv), 2)
    ]
    params: list[Param] = []
    for name, _ in pairs:
        param = lookup(name)
        if param is None:
            return Error(f"ERR Unknown option or number of arguments for CONFIG SET - '{name}'")
        if param.immutable:
            return _failed(name, "can't set immutable config")
        if param in params:
            return _failed(name, "duplicate parameter")
        params.append(param)
    updates: dict[str, str] = {}
    for param, (_, raw) in zip(params, pairs, strict=True):
        try:
            value = normalize(param, raw)
        except BadValue as exc:
            return _failed(param.name, str(exc))
        refusal = _refusal(node, conn, param, value)
        if refusal is not None:
            return _failed(param.name, refusal)
        updates[param.name] = value
    for name in list(updates):
        if name in _REPLICATED or name in _FIXED_BY:
            del updates[name]  # equal to the live value: nothing to remember
    flags = updates.pop("notify-keyspace-events", None)
    node.local.settings.update(updates)
    if flags is None:
        return OK
    # Proposed even when this node's copy is equal already: a lagging node's copy may be.
    return awaited_reply(conn.engine.write([notify.SET_FLAGS.encode(), flags.encode()], 0))


def _failed(name: str, reason: str) -> Error:
    return Error(f"ERR CONFIG SET failed (possibly related to argument '{name}') - {reason}")


@subcommand("config", "get")
def _get(conn: Connection, argv: list[bytes]) -> ReplyT:
    pairs = config_get(facts(conn), conn, argv[2:])
    return Map([x.encode() for pair in pairs for x in pair])


@subcommand("config", "set")
def _set(conn: Connection, argv: list[bytes]) -> ReplyT | Coroutine[Any, Any, ReplyT]:
    return config_set(facts(conn), conn, argv)


@subcommand("config", "resetstat")
def _resetstat(conn: Connection, argv: list[bytes]) -> ReplyT:
    stats = conn.server.stats
    for counter in (
        "connections_received",
        "commands_processed",
        "error_replies",
        "keyspace_hits",
        "keyspace_misses",
        "rejected_connections",
    ):
        setattr(stats, counter, 0)
    stats.error_codes.clear()
    stats.calls.clear()
    return OK


@subcommand("config", "rewrite")
def _rewrite(conn: Connection, argv: list[bytes]) -> ReplyT:
    return Error("ERR The server is running without a config file")


container("config")(
    [
        "GET <pattern>",
        "    Return parameters matching the glob-like <pattern> and their values.",
        "SET <directive> <value>",
        "    Set the configuration <directive> to <value>.",
        "RESETSTAT",
        "    Reset statistics reported by the INFO command.",
        "REWRITE",
        "    Rewrite the configuration file.",
    ]
)
