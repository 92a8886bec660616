"""Node configuration: one frozen dataclass, built and validated once from flags/environment."""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raftcache.consensus import Durability, RaftConfig
from raftcache.node.acl import Acl, AclError
from raftcache.node.auth import seed_text
from raftcache.node.proposer import ProposerConfig
from raftcache.node.requests import Limits
from raftcache.node.state_machine import EVICTION_POLICIES

ENV_PREFIX = "RAFTCACHE_"


class ConfigError(ValueError):
    """A flag (or its RAFTCACHE_* variable) has a bad value; the message names the flag."""


@dataclass(frozen=True)
class TlsConfig:
    """TLS on the client ports: PEM file paths (their contents are checked by node/tls.py)."""

    cert_file: str
    key_file: str
    client_ca_file: str = ""  # mTLS: clients must present a certificate signed by this CA
    ca_file: str = ""  # verifies peers when forwarding; "" = the client CA


@dataclass(frozen=True)
class NodeConfig:
    node_id: str
    listen: str
    advertise: str
    raft: RaftConfig
    limits: Limits
    proposer: ProposerConfig
    log_format: str
    log_level: str
    max_memory: int = 0
    eviction_policy: str = "noeviction"
    redis_listen: str = ""  # "" = no Redis port
    redis_advertise: str = ""
    redis_max_staleness_ms: int = 1000
    redis_replica_reads: bool = False  # connections start in READONLY (a reader endpoint)
    memcached_listen: str = ""  # "" = no memcached port
    memcached_advertise: str = ""
    memcached_stale_reads_ms: int = 0  # 0 = gets are linearizable
    memcached_max_item_bytes: int = 0  # 0 = the --max-value-bytes limit
    event_loop: str = "uvloop"
    cpu_affinity: frozenset[int] = frozenset()  # empty = not pinned (node/affinity.py)
    metrics_listen: str = ""  # "" = no metrics endpoint
    tls: TlsConfig | None = None  # None = plaintext client ports
    # With TLS on: a second, plaintext gRPC / Redis port beside the TLS one ("" = none).
    plaintext_listen: str = ""
    redis_plaintext_listen: str = ""
    restore_from: str = ""  # a backup file that seeds a new cluster (node/restore.py)
    users_seed: str | None = None  # ACL text of --users-file/--requirepass (node/auth.py)
    tls_client_cn_as_user: bool = False  # a client certificate's CN names the gRPC user
    joining: bool = False  # --join: a newcomer to an existing cluster (node/DESIGN.md)
    # A StatefulSet pod beyond --replicas (scaled up later): the client addresses of the pods
    # that bootstrapped the cluster, through which node/statefulset.py adds it (AddMember).
    statefulset_seeds: tuple[str, ...] = ()
    join_credentials: str = ""  # --join-credentials: where that pod finds its join user


def _flag(name: str, help_text: str, default: str | None) -> tuple[str, dict[str, object]]:
    env = ENV_PREFIX + name.upper().replace("-", "_")
    shown = "none" if default in (None, "") else default
    return f"--{name}", {"help": f"{help_text} [env {env}; default {shown}]", "default": None}


_FLAGS: list[tuple[str, str, str | None]] = [
    ("data-dir", "directory for the Raft journal and LMDB snapshots", "./raftcache-data"),
    ("listen", "HOST:PORT the gRPC client API listens on", "127.0.0.1:6380"),
    ("advertise", "HOST:PORT clients should use to reach this node", "the --listen address"),
    ("raft", "HOST:PORT of this node's Raft port (peers dial it)", "127.0.0.1:7380"),
    ("redis-listen", "HOST:PORT the Redis (RESP2/RESP3) port listens on; empty = off", ""),
    (
        "redis-advertise",
        "HOST:PORT Redis clients should use to reach this node (CLUSTER SLOTS, SENTINEL)",
        "the --advertise host with the --redis-listen port",
    ),
    (
        "redis-max-staleness-ms",
        "how far behind the leader a node may be to serve reads locally to a Redis "
        "connection that sent READONLY (0 = no bound)",
        "1000",
    ),
    (
        "redis-replica-reads",
        "'true': Redis connections to this node start in READONLY mode, and RESET returns "
        "them there (reads served from its own state within --redis-max-staleness-ms while it "
        "follows, linearizable while it leads; writes forwarded; READWRITE switches a "
        "connection back): a reader endpoint for clients that never send READONLY, such as "
        "redis-py's Redis, Sentinel's slave_for, Django's cache and redis-benchmark",
        "false",
    ),
    (
        "memcached-listen",
        "HOST:PORT the memcached (text and meta) port listens on; empty = off",
        "",
    ),
    (
        "memcached-advertise",
        "HOST:PORT memcached clients should use to reach this node (`config get cluster`)",
        "the --advertise host with the --memcached-listen port",
    ),
    (
        "memcached-stale-reads",
        "serve memcached gets from this node's own state when it is at most this many ms "
        "behind the leader (0 = every get is linearizable, followers ask the leader)",
        "0",
    ),
    (
        "memcached-max-item-bytes",
        "the largest memcached item (memcached's -I); larger sets answer SERVER_ERROR object "
        "too large for cache",
        "the --max-value-bytes limit",
    ),
    (
        "raft-bind",
        "HOST:PORT the Raft port listens on, when peers reach it through another address "
        "(0.0.0.0:PORT in a container, or behind a proxy)",
        "the --raft address",
    ),
    ("peers", "comma-separated Raft HOST:PORT of the OTHER voters (empty: single node)", ""),
    (
        "read-replica",
        "'true': a read replica that never votes (pysyncobj's read-only node): it follows the "
        "voters listed in --join or --peers, serves stale reads and forwards the rest; start "
        "and stop it freely, no membership change needed",
        "false",
    ),
    (
        "join",
        "comma-separated Raft HOST:PORT of an existing cluster's current members: start as a "
        "newcomer that votes only once the leader adds it ('raftcache member add'); instead "
        "of --peers. After a restart the membership stored in the journal wins",
        None,
    ),
    (
        "join-credentials",
        "directory holding 'username' and 'password' (a kubernetes.io/basic-auth Secret "
        "mounted as a volume): a StatefulSet pod beyond --replicas adds itself to the "
        "cluster as this user, who needs +cluster|meet; missing = it waits for "
        "'raftcache member add'",
        "",
    ),
    ("node-id", "this node's name in Status and logs", "the --raft address"),
    ("raft-secret", "shared secret encrypting the Raft port (required off loopback)", None),
    ("durability", "'journal' (journal + LMDB snapshots) or 'memory' (no disk)", "journal"),
    ("log-format", "'console' or 'json' (one JSON object per line)", "console"),
    ("log-level", "debug, info, warning or error", "info"),
    ("event-loop", "'uvloop' (libuv, faster) or 'asyncio' (the standard library's)", "uvloop"),
    (
        "cpu-affinity",
        "the CPUs this node's process runs on, as Redis's server_cpulist: '0', '0,2' or "
        "'0-3' (empty = every CPU the OS allows). Its Python threads share one GIL, and on "
        "one CPU handing it over or waking the other thread crosses no CPUs (node/affinity.py)",
        "",
    ),
    ("metrics-listen", "HOST:PORT serving Prometheus metrics at /metrics; empty = off", ""),
    (
        "tls-cert-file",
        "PEM certificate (chain) for the gRPC, Redis and memcached ports: TLS on all three; "
        "reloaded on SIGHUP and when the file changes",
        None,
    ),
    ("tls-key-file", "PEM private key of --tls-cert-file (unencrypted)", None),
    (
        "users-file",
        "ACL file (Redis's format, one 'user NAME RULE...' per line; '#' + SHA-256 for "
        "passwords) with the users a NEW cluster starts with; afterwards ACL SETUSER/DELUSER "
        "(or the Cluster SetUser RPC) change them",
        None,
    ),
    (
        "requirepass",
        "password of the default user of a NEW cluster (Redis's requirepass); prefer "
        "RAFTCACHE_REQUIREPASS to a flag others can read in the process list",
        None,
    ),
    (
        "insecure-allow-unauthenticated",
        "'true' lets a node serve clients on a non-loopback address with neither users "
        "(--users-file/--requirepass) nor TLS",
        "false",
    ),
    (
        "tls-client-ca-file",
        "PEM CA bundle: clients must present a certificate signed by it (mTLS); also "
        "verifies the leader when forwarding unless --tls-ca-file is given",
        None,
    ),
    (
        "tls-client-cn-as-user",
        "'true': on the gRPC port, a client certificate's CN names the user when a call "
        "carries no 'authorization: Basic' credentials (needs --tls-client-ca-file)",
        "false",
    ),
    (
        "tls-ca-file",
        "PEM CA bundle this node trusts for other nodes' certificates when it forwards to "
        "the leader (required with TLS unless --tls-client-ca-file is given)",
        None,
    ),
    (
        "plaintext-listen",
        "with TLS on: HOST:PORT of a second gRPC port, plaintext, beside the TLS --listen "
        "(while clients move to TLS, or for a sidecar on loopback); empty = off",
        "",
    ),
    (
        "redis-plaintext-listen",
        "with TLS on: HOST:PORT of a second Redis port, plaintext, beside the TLS "
        "--redis-listen (Redis's `port` beside its `tls-port`); empty = off",
        "",
    ),
    ("max-key-bytes", "largest accepted key", "65536"),
    ("max-value-bytes", "largest accepted value", "4194304"),
    ("tick-interval-ms", "how often the leader replicates its clock", "100"),
    (
        "lease-reads",
        "'true': the leader answers linearizable reads under a lease (a majority accepted its "
        "appends within 0.8 x the minimum election timeout; assumes clock rates that agree "
        "within a fifth) without a log entry; 'false': every linearizable read waits for an entry "
        "to commit",
        "true",
    ),
    ("commit-timeout-ms", "after this a write's outcome is reported unknown", "5000"),
    ("max-inflight-batches", "group-commit batches waiting for Raft at once", "1"),
    (
        "group-commit-wait-ms",
        "while the last entry carried several ops, how long the next may wait for as many "
        "(0 = never wait)",
        "10",
    ),
    ("compaction-entries", "Raft log entries between snapshots", "20000"),
    (
        "compaction-log-bytes",
        "...or bytes of Raft log entries between snapshots, whichever comes first (suffix "
        "kb/mb/gb; 0 = entries only)",
        "64mb",
    ),
    (
        "max-memory",
        "accounted bytes of keys and values the cache may hold (suffix kb/mb/gb; 0 = no "
        "limit); the leader's value is replicated",
        "0",
    ),
    (
        "eviction-policy",
        "what happens at --max-memory: noeviction, allkeys-lru, allkeys-lfu, volatile-lru, "
        "volatile-ttl or allkeys-random",
        "noeviction",
    ),
    (
        "pod-name",
        "this StatefulSet pod's name, <statefulset>-<ordinal> (downward API metadata.name); "
        "with --replicas and --peer-template it derives --raft, --peers, --node-id and "
        "--advertise",
        None,
    ),
    (
        "replicas",
        "the voters the cluster was created with (with --pod-name): pods 0..N-1 bootstrap it "
        "with --peers; a pod with a higher ordinal (the StatefulSet scaled up later) starts "
        "with --join and is added through the leader",
        None,
    ),
    (
        "restore-from",
        "a `raftcache backup` file that seeds a NEW cluster: start every member with the same "
        "file and an empty --data-dir; checked in full before anything starts",
        None,
    ),
    (
        "peer-template",
        "Raft HOST:PORT of any pod, '{pod}' standing for its name, e.g. "
        "'{pod}.raftcache-peers.raftcache.svc.cluster.local:7380' (with --pod-name)",
        None,
    ),
]

# What a StatefulSet names its pods: <statefulset>-<ordinal>, no leading zeros.
_POD_NAME = re.compile(r"(?P<set>[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)-(?P<ordinal>0|[1-9][0-9]*)")
_ORDINAL_FLAGS = ("pod-name", "replicas", "peer-template")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="raftcache-node",
        description="Run one raftcache node: a gRPC cache API backed by a Raft-replicated state. "
        "Every flag can also be set through the environment variable named in its help.",
    )
    for name, help_text, default in _FLAGS:
        flag, kwargs = _flag(name, help_text, default)
        parser.add_argument(flag, **kwargs)  # type: ignore[arg-type]
    return parser


def _resolve(args: argparse.Namespace, env: Mapping[str, str]) -> dict[str, str]:
    """The values given as flags or RAFTCACHE_* variables (no defaults)."""
    values: dict[str, str] = {}
    for name, _help, _default in _FLAGS:
        attr = name.replace("-", "_")
        value = getattr(args, attr)
        if value is None:
            value = env.get(ENV_PREFIX + attr.upper())
        if value is not None:
            values[name] = value
    return values


def _with_defaults(values: Mapping[str, str]) -> dict[str, str]:
    """`values` plus the literal defaults of flags not given ("the ..." ones are derived)."""
    defaults = {
        name: default
        for name, _help, default in _FLAGS
        if default is not None and not default.startswith("the ")
    }
    return {**defaults, **values}


def parse_address(flag: str, text: str) -> str:
    """Validate HOST:PORT (an IPv6 host in brackets: [::1]:7380); returns it stripped."""
    text = text.strip()
    host, sep, port = text.rpartition(":")
    if (
        not sep
        or not host
        or not (port.isascii() and port.isdigit())
        or not 0 < int(port) < 65536
        or " " in host
    ):
        raise ConfigError(
            f"{flag}: {text!r} is not HOST:PORT (for example 127.0.0.1:7380, or [::1]:7380 "
            "for IPv6); the port must be 1-65535"
        )
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        raise ConfigError(
            f"{flag}: {text!r} has an IPv6 host without brackets, so its port is ambiguous; "
            f"write it as [{host}]:{port} (HOST:PORT with the IPv6 address in brackets)"
        )
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise ConfigError(
                f"{flag}: {host} in {text!r} is not an IPv6 address; brackets are for IPv6 "
                "only (a name or an IPv4 address goes without them)"
            ) from None
    return text


def parse_peers(text: str) -> tuple[str, ...]:
    if not text.strip():
        return ()
    peers = []
    for i, item in enumerate(text.split(",")):
        if not item.strip():
            raise ConfigError(
                f"--peers: entry {i + 1} of {text!r} is empty; give comma-separated HOST:PORT "
                "Raft addresses with no trailing comma"
            )
        peers.append(parse_address("--peers", item))
    if len(set(peers)) != len(peers):
        raise ConfigError(f"--peers: {text!r} lists the same address twice")
    return tuple(peers)


def _refuse_self_and_repeats(raft: str, peers: Sequence[str], *, resolve: bool) -> None:
    """--peers names each other voter once and never this node, however they are written:
    localhost:7380 and 127.0.0.1:7380 are one node, which pysyncobj would count twice."""
    resolved: dict[str, frozenset[str]] = {}

    def addresses(host: str) -> frozenset[str]:
        if host not in resolved:
            resolved[host] = _host_addresses(host, resolve)
        return resolved[host]

    def same(a: str, b: str) -> bool:
        (host_a, _, port_a), (host_b, _, port_b) = a.rpartition(":"), b.rpartition(":")
        return port_a == port_b and bool(addresses(host_a) & addresses(host_b))

    for peer in peers:
        if same(raft, peer):
            raise ConfigError(
                f"--peers: {peer} is this node's own --raft address {raft}; list only the others"
            )
    for i, peer in enumerate(peers):
        for other in peers[i + 1 :]:
            if same(peer, other):
                raise ConfigError(
                    f"--peers: {peer} and {other} are the same node; list each voter once"
                )


def _host_addresses(host: str, resolve: bool) -> frozenset[str]:
    """The IP addresses a host stands for; a name that is not resolved (or does not resolve
    yet: a peer whose DNS record is not published) stands for itself."""
    literal = host.strip("[]")
    try:
        return frozenset({str(ipaddress.ip_address(literal))})
    except ValueError:
        pass
    try:
        if resolve:
            infos = socket.getaddrinfo(literal, None, type=socket.SOCK_STREAM)
            return frozenset(str(info[4][0]) for info in infos)
    except (OSError, UnicodeError):
        pass
    return frozenset({literal.lower()})


def _unspecified(address: str) -> bool:
    host = address.rpartition(":")[0].strip("[]")
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def is_loopback(address: str) -> bool:
    host = address.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _int(values: Mapping[str, str], name: str, minimum: int) -> int:
    text = values[name]
    try:
        number = int(text)
    except ValueError:
        raise ConfigError(f"--{name}: {text!r} is not a whole number") from None
    if number < minimum:
        raise ConfigError(f"--{name}: {number} is below the minimum of {minimum}")
    return number


def _pod_address(template: str, pod: str) -> str:
    return parse_address("--peer-template", template.replace("{pod}", pod))


def _normalized(name: str, value: str) -> object:
    """A given value in the form it is compared with a derived one (peers in any order)."""
    if name in ("peers", "join"):
        return frozenset(parse_peers(value))
    return parse_address(f"--{name}", value) if name == "raft" else value.strip()


def _derive_from_ordinal(values: Mapping[str, str], given: Mapping[str, str]) -> dict[str, str]:
    """--raft, --peers, --node-id and --advertise of StatefulSet pod --pod-name.

    `values` has the defaults filled in; `given` only what was set. A derived address that
    was also given explicitly must agree with the derived one."""
    present = [f"--{name}" for name in _ORDINAL_FLAGS if name in values]
    if not present:
        return {}
    if len(present) < len(_ORDINAL_FLAGS):
        missing = [f"--{name}" for name in _ORDINAL_FLAGS if name not in values]
        raise ConfigError(
            f"{', '.join(present)} given without {' and '.join(missing)}: a StatefulSet pod "
            "derives its addresses from all three of --pod-name, --replicas and --peer-template"
        )
    pod = values["pod-name"].strip()
    match = _POD_NAME.fullmatch(pod)
    if match is None:
        raise ConfigError(
            f"--pod-name: {pod!r} is not <statefulset>-<ordinal> (for example raftcache-2); "
            "set it from the downward API (fieldRef metadata.name) of a StatefulSet pod"
        )
    replicas = _int(values, "replicas", 1)
    ordinal = int(match["ordinal"])
    template = values["peer-template"].strip()
    if "{pod}" not in template or "{" in template.replace("{pod}", ""):
        raise ConfigError(
            f"--peer-template: {template!r} must contain '{{pod}}' (the pod's name) and no "
            "other braces, for example '{pod}.raftcache-peers.raftcache.svc.cluster.local:7380'"
        )
    # Pods 0..replicas-1 bootstrap the cluster; a later pod (scaled up) joins it, listing the
    # bootstrap pods: the log starts with their membership, so a joiner replaying it from
    # index 1 (or loading a snapshot) ends with the membership as it is now.
    pods = [f"{match['set']}-{i}" for i in range(replicas)]
    raft = _pod_address(template, pod)
    others = ",".join(_pod_address(template, p) for p in pods if p != pod)
    derived = {"raft": raft, "peers" if ordinal < replicas else "join": others, "node-id": pod}
    if ordinal >= replicas and given.get("peers", "").strip():
        raise ConfigError(
            f"--peers: {pod!r} has ordinal {ordinal}, beyond --replicas {replicas}: it joins "
            "the running cluster (derived --join) instead of bootstrapping one; drop --peers"
        )
    for name, value in derived.items():
        explicit = given.get(name)
        if explicit is not None and _normalized(name, explicit) != _normalized(name, value):
            raise ConfigError(
                f"--{name}: {explicit!r} conflicts with {value!r}, which --pod-name, --replicas "
                f"and --peer-template derive; drop --{name} (or its RAFTCACHE_ variable)"
            )
    # Clients reach the pod by the same name as its peers, on the client port; an explicit
    # --advertise wins (clients may come through other names than peers do).
    listen_port = parse_address("--listen", values["listen"]).rpartition(":")[2]
    derived["advertise"] = given.get("advertise", f"{raft.rpartition(':')[0]}:{listen_port}")
    if ordinal >= replicas:
        # Where node/statefulset.py adds the pod (AddMember): the bootstrap pods' client ports.
        derived[_SEEDS] = ",".join(
            f"{_pod_address(template, p).rpartition(':')[0]}:{listen_port}" for p in pods
        )
    return derived


_SEEDS = "statefulset-seeds"  # derived only, never a flag


_SIZE_SUFFIXES = {"": 1, "b": 1, "kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30}


MIN_COMPACTION_LOG_BYTES = 1 << 20


def _log_bytes(text: str) -> int:
    size = parse_size("--compaction-log-bytes", text)
    if 0 < size < MIN_COMPACTION_LOG_BYTES:
        raise ConfigError(
            f"--compaction-log-bytes: {text!r} is below 1mb, which would snapshot the whole "
            "state every few entries; give 1mb or more, or 0 to snapshot by entries only"
        )
    return size


def parse_size(flag: str, text: str) -> int:
    """Bytes from '1048576', '512kb', '100mb' or '2gb' (binary units)."""
    raw = text.strip().lower()
    digits = raw.rstrip("kmgb")
    suffix = raw[len(digits) :]
    if not digits.isdigit() or suffix not in _SIZE_SUFFIXES:
        raise ConfigError(
            f"{flag}: {text!r} is not a size; give bytes, optionally with kb, mb or gb "
            "(for example 512mb)"
        )
    return int(digits) * _SIZE_SUFFIXES[suffix]


def load(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> NodeConfig:
    """Parse flags (falling back to RAFTCACHE_* variables) into a validated NodeConfig."""
    args = build_parser().parse_args(argv)
    given = _resolve(args, os.environ if env is None else env)
    values = _with_defaults({**given, **_derive_from_ordinal(_with_defaults(given), given)})
    listen = parse_address("--listen", values["listen"])
    raft_addr = parse_address("--raft", values["raft"])
    advertise = parse_address("--advertise", values.get("advertise", listen))
    if _unspecified(advertise):
        raise ConfigError(
            f"--advertise: {advertise} is not an address clients can dial (--listen binds "
            "every interface, and it is what other nodes hand to clients); set --advertise "
            "to this node's reachable HOST:PORT"
        )
    raft_bind = parse_address("--raft-bind", values.get("raft-bind", raft_addr))
    joining = bool(values.get("join", "").strip())
    if joining and given.get("peers", "").strip():
        raise ConfigError(
            "--join and --peers: give one. --peers bootstraps a new cluster with its voters; "
            "--join starts a node that an existing cluster's leader then adds"
        )
    peers = parse_peers(values["join"] if joining else values.get("peers", ""))
    read_replica = _bool(values, "read-replica")
    if read_replica and not peers:
        raise ConfigError("--read-replica=true needs the voters to follow: give --join")
    # Peers derived from --pod-name are distinct pod names: no DNS lookups at start-up there.
    _refuse_self_and_repeats(raft_addr, peers, resolve="pod-name" not in values)
    secret = values.get("raft-secret") or None
    on_loopback = all(is_loopback(a) for a in (raft_addr, raft_bind, *peers))
    if secret is None and not on_loopback:
        raise ConfigError(
            f"--raft-secret: the Raft port {raft_bind} (or a peer) is not on loopback, and the "
            "Raft protocol carries pickled Python objects: anyone who can reach the port could "
            "run code in this node. Set --raft-secret (or RAFTCACHE_RAFT_SECRET) to the same "
            "secret on every node, and keep the port private"
        )
    try:
        durability = Durability(values["durability"])
    except ValueError:
        raise ConfigError(
            f"--durability: {values['durability']!r} is not 'journal' or 'memory'"
        ) from None
    if values["log-format"] not in ("console", "json"):
        raise ConfigError(f"--log-format: {values['log-format']!r} is not 'console' or 'json'")
    if values["log-level"] not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"--log-level: {values['log-level']!r} is not debug/info/warning/error")
    max_key = _int(values, "max-key-bytes", 1)
    max_value = _int(values, "max-value-bytes", 0)
    # gRPC messages may be this large (server.grpc_options adds 1 MiB of headroom).
    message_bytes = max(16 << 20, 2 * (max_value + max_key))
    limits = Limits(
        max_key_bytes=max_key, max_value_bytes=max_value, max_response_bytes=message_bytes
    )
    tick_ms = _int(values, "tick-interval-ms", 10)
    proposer = ProposerConfig(
        max_inflight=_int(values, "max-inflight-batches", 1),
        group_wait_s=_int(values, "group-commit-wait-ms", 0) / 1000,
        commit_timeout_s=_int(values, "commit-timeout-ms", 100) / 1000,
        tick_interval_s=tick_ms / 1000,
        max_batch_bytes=message_bytes,
    )
    raft = RaftConfig(
        self_addr=raft_addr,
        bind_addr=raft_bind,
        peers=peers,
        durability=durability,
        data_dir=Path(values["data-dir"]) if durability is Durability.JOURNAL else None,
        secret=secret,
        compaction_min_entries=_int(values, "compaction-entries", 100),
        compaction_log_bytes=_log_bytes(values["compaction-log-bytes"]),
        read_replica=read_replica,
        identity_dir=Path(values["data-dir"]),
        joining=joining,
        max_entry_bytes=4 * proposer.max_batch_bytes,
        lease_reads=_bool(values, "lease-reads"),
    )
    tls = _tls(values)
    cn_as_user = _cn_as_user(values, tls)
    users_seed = _users(values)
    front_ends = {**_redis(values, advertise), **_memcached(values, advertise, max_value)}
    plaintext, redis_plaintext = _plaintext(values, tls, listen, front_ends.get("redis_listen", ""))
    _refuse_open_ports(
        [listen, front_ends.get("redis_listen", ""), front_ends.get("memcached_listen", "")],
        users_seed,
        tls,
        values["insecure-allow-unauthenticated"],
        plaintext=[plaintext, redis_plaintext],
    )
    return NodeConfig(
        node_id=values.get("node-id", raft_addr),
        listen=listen,
        advertise=advertise,
        raft=raft,
        limits=limits,
        proposer=proposer,
        log_format=values["log-format"],
        log_level=values["log-level"],
        max_memory=parse_size("--max-memory", values["max-memory"]),
        eviction_policy=_policy(values["eviction-policy"]),
        event_loop=_event_loop(values["event-loop"]),
        cpu_affinity=_cpu_list(values["cpu-affinity"]),
        metrics_listen=_optional_address(values, "metrics-listen"),
        tls=tls,
        restore_from=values.get("restore-from", "").strip(),
        users_seed=users_seed,
        tls_client_cn_as_user=cn_as_user,
        joining=joining,
        statefulset_seeds=tuple(s for s in values.get(_SEEDS, "").split(",") if s),
        join_credentials=values["join-credentials"].strip(),
        plaintext_listen=plaintext,
        redis_plaintext_listen=redis_plaintext,
        **front_ends,
    )


_CPU_ITEM = re.compile(r"(\d+)(?:-(\d+)(?::(\d+))?)?")
_CPU_LIMIT = 8192
"""Linux's largest CONFIG_NR_CPUS: a CPU number past it is a typo, not a CPU."""


def _cpu_list(text: str) -> frozenset[int]:
    """--cpu-affinity: '0', '0,2', '0-3', '0-1,4', '0-7:2' (every second) -> the CPU
    numbers, Redis's server_cpulist syntax; '' -> none (the CPUs themselves are checked
    against the process's when they are applied: node/affinity.py)."""
    text = text.strip()
    cpus: set[int] = set()
    for item in text.split(",") if text else ():
        match = _CPU_ITEM.fullmatch(item.strip())
        if match is None:
            raise ConfigError(
                f"--cpu-affinity: {item.strip()!r} in {text!r} is not a CPU number or range: "
                "give CPU numbers and ranges, such as 0, 0,2, 0-3 or 0-7:2"
            )
        first = int(match.group(1))
        last = int(match.group(2) or first)
        step = int(match.group(3) or 1)
        if last < first:
            raise ConfigError(
                f"--cpu-affinity: the range {item.strip()!r} ends before it starts: write the "
                f"lower CPU first ({last}-{first})"
            )
        if last >= _CPU_LIMIT:
            raise ConfigError(
                f"--cpu-affinity: CPU {last} is past the largest CPU number Linux supports "
                f"({_CPU_LIMIT - 1}): give the CPUs this machine has"
            )
        if step < 1:
            raise ConfigError(
                f"--cpu-affinity: the step in {item.strip()!r} is 0: give a step of 1 or more"
            )
        cpus.update(range(first, last + 1, step))
    return frozenset(cpus)


def _bool(values: Mapping[str, str], name: str) -> bool:
    text = values.get(name, "false").strip().lower()
    if text not in ("true", "false"):
        raise ConfigError(f"--{name}: {text!r} is not 'true' or 'false'")
    return text == "true"


def _cn_as_user(values: Mapping[str, str], tls: TlsConfig | None) -> bool:
    """--tls-client-cn-as-user: only with mTLS, where the node verifies client certificates."""
    text = values.get("tls-client-cn-as-user", "false").strip().lower()
    if text not in ("true", "false"):
        raise ConfigError(f"--tls-client-cn-as-user: {text!r} is not 'true' or 'false'")
    if text == "true" and (tls is None or not tls.client_ca_file):
        raise ConfigError(
            "--tls-client-cn-as-user=true needs mTLS (--tls-client-ca-file): without it no "
            "client certificate is verified, so a CN names nobody"
        )
    return text == "true"


def _users(values: Mapping[str, str]) -> str | None:
    """The seed users of --users-file and --requirepass (validated), or None."""
    path = values.get("users-file", "").strip()
    password = values.get("requirepass") or None
    if password is not None and not password.strip():
        raise ConfigError("--requirepass: the password is empty; give a password or leave it out")
    try:
        return seed_text(path or None, password)
    except OSError as exc:
        raise ConfigError(f"--users-file: cannot read {path} ({exc.strerror or exc})") from None
    except AclError as exc:
        raise ConfigError(
            f"--users-file: {exc.text.removeprefix('ERR ')} (fix the file: Redis ACL syntax, "
            "e.g. 'user app on #<sha256 hex> ~app:* +@read +@write')"
        ) from None


def _refuse_open_ports(
    listens: Sequence[str],
    users_seed: str | None,
    tls: TlsConfig | None,
    allowed: str,
    plaintext: Sequence[str] = (),
) -> None:
    """A client port off loopback needs users or TLS, unless the operator says otherwise;
    a `plaintext` port (beside a TLS one) needs users: TLS does not cover it."""
    if allowed.strip().lower() not in ("true", "false"):
        raise ConfigError(f"--insecure-allow-unauthenticated: {allowed!r} is not 'true' or 'false'")
    users_lock = users_seed is not None and not Acl.parse(users_seed).open
    if users_lock or allowed.lower() == "true":
        return
    bare = [a for a in plaintext if a and not is_loopback(a)]
    if bare:
        raise ConfigError(
            f"refusing to serve plaintext clients on {', '.join(bare)} without users: TLS "
            "does not cover a plaintext port, so anyone who reaches it could read and "
            "overwrite every key. Give --users-file (whose default user needs a password or "
            "is off) or --requirepass, listen on 127.0.0.1, or set "
            "--insecure-allow-unauthenticated=true on a network you trust"
        )
    open_to = [a for a in listens if a and not is_loopback(a)]
    if not open_to or tls is not None:
        return
    raise ConfigError(
        f"refusing to serve clients on {', '.join(open_to)} with neither users nor TLS: anyone "
        "who reaches the port could read and overwrite every key. Give --users-file (whose "
        "default user needs a password or is off) or --requirepass (and "
        "--tls-cert-file/--tls-key-file), listen on 127.0.0.1, or set "
        "--insecure-allow-unauthenticated=true on a network you trust"
    )


def _plaintext(
    values: Mapping[str, str], tls: TlsConfig | None, listen: str, redis_listen: str
) -> tuple[str, str]:
    """--plaintext-listen and --redis-plaintext-listen ("" = off): plaintext ports beside
    TLS ones."""
    out: list[str] = []
    for flag, beside, beside_flag in (
        ("plaintext-listen", listen, "--listen"),
        ("redis-plaintext-listen", redis_listen, "--redis-listen"),
    ):
        address = _optional_address(values, flag)
        out.append(address)
        if not address:
            continue
        if tls is None:
            raise ConfigError(
                f"--{flag}: a plaintext port beside a TLS one, but TLS is off (no "
                f"--tls-cert-file/--tls-key-file), so {beside_flag} is plaintext already; "
                f"drop --{flag}"
            )
        if not beside:
            raise ConfigError(
                f"--{flag}: a plaintext port beside the TLS one, but {beside_flag} is off; "
                f"give {beside_flag} too"
            )
        if address == beside:
            raise ConfigError(
                f"--{flag}: {address} is the TLS port's address ({beside_flag}); give another port"
            )
    return out[0], out[1]


def _optional_address(values: Mapping[str, str], flag: str) -> str:
    """A HOST:PORT flag that is off when empty."""
    text = values.get(flag, "").strip()
    return parse_address(f"--{flag}", text) if text else ""


def _tls(values: Mapping[str, str]) -> TlsConfig | None:
    """Which TLS files are given, and whether they make sense together (contents: tls.py)."""
    paths = {
        name: values.get(f"tls-{name}-file", "").strip()
        for name in ("cert", "key", "client-ca", "ca")
    }
    if not paths["cert"] and not paths["key"]:
        extra = [f"--tls-{name}-file" for name in ("client-ca", "ca") if paths[name]]
        if extra:
            raise ConfigError(
                f"{' and '.join(extra)} given without --tls-cert-file and --tls-key-file: the "
                "client ports only use TLS with a certificate and its key; give both"
            )
        return None
    for have, missing in (("cert", "key"), ("key", "cert")):
        if paths[have] and not paths[missing]:
            raise ConfigError(
                f"--tls-{have}-file given without --tls-{missing}-file: TLS needs the "
                "certificate and its private key; give both (or neither, for plaintext)"
            )
    if not paths["client-ca"] and not paths["ca"]:
        raise ConfigError(
            "--tls-ca-file: with TLS on, a follower forwards to the leader over TLS and must "
            "verify the leader's certificate; give --tls-ca-file (the CA that signed the "
            "nodes' certificates) or --tls-client-ca-file (mTLS, used for both)"
        )
    return TlsConfig(paths["cert"], paths["key"], paths["client-ca"], paths["ca"])


def _event_loop(text: str) -> str:
    if text not in ("uvloop", "asyncio"):
        raise ConfigError(f"--event-loop: {text!r} is not 'uvloop' or 'asyncio'")
    return text


def _redis(values: Mapping[str, str], advertise: str) -> dict[str, Any]:
    """The Redis front-end's settings: off unless --redis-listen is given."""
    listen = values.get("redis-listen", "").strip()
    staleness = _int(values, "redis-max-staleness-ms", 0)
    replica_reads = _bool(values, "redis-replica-reads")
    if not listen:
        return {"redis_max_staleness_ms": staleness, "redis_replica_reads": replica_reads}
    listen = parse_address("--redis-listen", listen)
    port = listen.rpartition(":")[2]
    default = f"{advertise.rpartition(':')[0]}:{port}"
    redis_advertise = parse_address("--redis-advertise", values.get("redis-advertise", default))
    if _unspecified(redis_advertise):
        raise ConfigError(
            f"--redis-advertise: {redis_advertise} is not an address clients can dial; set "
            "--redis-advertise to this node's reachable HOST:PORT for Redis clients"
        )
    return {
        "redis_listen": listen,
        "redis_advertise": redis_advertise,
        "redis_max_staleness_ms": staleness,
        "redis_replica_reads": replica_reads,
    }


def _memcached(values: Mapping[str, str], advertise: str, max_value: int) -> dict[str, Any]:
    """The memcached front-end's settings: off unless --memcached-listen is given."""
    listen = values.get("memcached-listen", "").strip()
    stale = _int(values, "memcached-stale-reads", 0)
    given = values.get("memcached-max-item-bytes", "")
    item = _int(values, "memcached-max-item-bytes", 1) if given else max_value
    if item > max_value:
        raise ConfigError(
            f"--memcached-max-item-bytes: {item} is over --max-value-bytes ({max_value}); "
            "raise --max-value-bytes or lower the item limit"
        )
    settings: dict[str, Any] = {"memcached_stale_reads_ms": stale, "memcached_max_item_bytes": item}
    if not listen:
        return settings
    listen = parse_address("--memcached-listen", listen)
    default = f"{advertise.rpartition(':')[0]}:{listen.rpartition(':')[2]}"
    addr = parse_address("--memcached-advertise", values.get("memcached-advertise", default))
    if _unspecified(addr):
        raise ConfigError(
            f"--memcached-advertise: {addr} is not an address clients can dial; set "
            "--memcached-advertise to this node's reachable HOST:PORT for memcached clients"
        )
    return {**settings, "memcached_listen": listen, "memcached_advertise": addr}


def _policy(text: str) -> str:
    if text not in EVICTION_POLICIES:
        raise ConfigError(
            f"--eviction-policy: {text!r} is not one of {', '.join(EVICTION_POLICIES)}"
        )
    return text
