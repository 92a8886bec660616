"""Node configuration: flags, RAFTCACHE_* fallbacks, defaults and every refusal."""

from __future__ import annotations

import atexit
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from raftcache.consensus import Durability
from raftcache.node import config
from raftcache.node.acl import Acl, digest
from raftcache.node.config import ConfigError, NodeConfig, load

FLAG_NAMES = [name for name, _help, _default in config._FLAGS]


def env_name(flag: str) -> str:
    return "RAFTCACHE_" + flag.upper().replace("-", "_")


def clean_environ() -> dict[str, str]:
    """The test process's environment without any RAFTCACHE_* variable."""
    return {k: v for k, v in os.environ.items() if not k.startswith("RAFTCACHE_")}


@pytest.fixture(autouse=True)
def no_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """load() resolves peer names to spot this node among them: no real DNS in unit tests
    (localhost is 127.0.0.1, every other name is unknown)."""

    def getaddrinfo(host: str, *_args: object, **_kwargs: object) -> list[tuple[object, ...]]:
        if host.lower() != "localhost":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 0))]

    monkeypatch.setattr(config.socket, "getaddrinfo", getaddrinfo)


def refused(argv: list[str], env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as exc:
        load(argv, env or {})
    return str(exc.value)


# ------------------------------------------------------------------ defaults


def test_defaults_run_a_single_loopback_node() -> None:
    cfg = load([], {})
    assert isinstance(cfg, NodeConfig)
    assert cfg.listen == "127.0.0.1:6380"
    assert cfg.advertise == "127.0.0.1:6380"
    assert cfg.node_id == "127.0.0.1:7380"
    assert cfg.log_format == "console"
    assert cfg.log_level == "info"
    raft = cfg.raft
    assert raft.self_addr == "127.0.0.1:7380"
    assert raft.peers == ()
    assert raft.secret is None
    assert raft.durability is Durability.JOURNAL
    assert raft.data_dir == Path("./raftcache-data")
    assert raft.compaction_min_entries == 20_000
    assert (cfg.limits.max_key_bytes, cfg.limits.max_value_bytes) == (65_536, 4_194_304)
    assert cfg.proposer.tick_interval_s == pytest.approx(0.1)
    assert cfg.proposer.commit_timeout_s == pytest.approx(5.0)
    assert cfg.proposer.max_inflight == 1
    assert cfg.proposer.group_wait_s == pytest.approx(0.01)
    assert raft.lease_reads is True


def test_config_is_frozen() -> None:
    cfg = load([], {})
    with pytest.raises(AttributeError):
        cfg.listen = "x"  # type: ignore[misc]


def test_load_reads_the_process_environment_when_no_env_is_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in os.environ:
        if name.startswith("RAFTCACHE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("RAFTCACHE_LISTEN", "127.0.0.1:9999")
    assert load([]).listen == "127.0.0.1:9999"


# ------------------------------------------------------------------ flags and env


# Every flag at once: the StatefulSet flags derive --raft, --peers and --node-id, which are
# also given here with the same values (allowed); --advertise overrides the derived one.
USERS_FILE = Path(tempfile.mkdtemp(prefix="raftcache-users-")) / "users.acl"
atexit.register(shutil.rmtree, USERS_FILE.parent, True)  # one per run was left in /tmp
USERS_FILE.write_text(
    "# the app's user\nuser app on #" + digest(b"app-pw") + " ~app:* +@read\n"
    "user default on #" + digest(b"admin-pw") + " ~* &* +@all\n"
)
OPEN_USERS_FILE = USERS_FILE.with_name("open.acl")  # the default user stays nopass +@all
OPEN_USERS_FILE.write_text("user app on #" + digest(b"app-pw") + " ~app:* +@read\n")

ALL_FLAGS = {
    "data-dir": "/var/lib/raftcache",
    "listen": "0.0.0.0:6400",
    "advertise": "cache-0.example:6400",
    "raft": "cache-0.peers.example:7400",
    "raft-bind": "0.0.0.0:7400",
    "peers": "cache-1.peers.example:7400,cache-2.peers.example:7400",
    "node-id": "cache-0",
    "raft-secret": "s3cret",
    "durability": "journal",
    "log-format": "json",
    "log-level": "debug",
    "max-key-bytes": "100",
    "max-value-bytes": "2000",
    "tick-interval-ms": "50",
    "lease-reads": "false",
    "commit-timeout-ms": "1500",
    "max-inflight-batches": "4",
    "group-commit-wait-ms": "3",
    "compaction-entries": "500",
    "compaction-log-bytes": "16mb",
    "pod-name": "cache-0",
    "replicas": "3",
    "peer-template": "{pod}.peers.example:7400",
    "max-memory": "64mb",
    "eviction-policy": "allkeys-lru",
    "redis-listen": "0.0.0.0:6379",
    "metrics-listen": "0.0.0.0:9121",
    "restore-from": "/backups/cache.rcbak",
    "redis-advertise": "cache-0.example:6379",
    "redis-max-staleness-ms": "250",
    "redis-replica-reads": "true",
    "memcached-listen": "0.0.0.0:11211",
    "memcached-advertise": "cache-0.example:11211",
    "memcached-stale-reads": "500",
    "memcached-max-item-bytes": "1500",
    "event-loop": "asyncio",
    "cpu-affinity": "0-1,3",
    "tls-cert-file": "/etc/raftcache/tls.crt",
    "tls-key-file": "/etc/raftcache/tls.key",
    "tls-client-ca-file": "/etc/raftcache/clients-ca.crt",
    "tls-ca-file": "/etc/raftcache/ca.crt",
    "tls-client-cn-as-user": "true",
    "plaintext-listen": "127.0.0.1:6401",
    "redis-plaintext-listen": "0.0.0.0:6389",
    "users-file": str(USERS_FILE),
    "requirepass": "hunter2",
    "insecure-allow-unauthenticated": "false",
    "read-replica": "true",
    "join-credentials": "/etc/raftcache/join",
}


def check_all_flags(cfg: NodeConfig) -> None:
    assert cfg.raft.data_dir == Path("/var/lib/raftcache")
    assert cfg.listen == "0.0.0.0:6400"
    assert cfg.advertise == "cache-0.example:6400"
    assert cfg.raft.self_addr == "cache-0.peers.example:7400"
    assert cfg.raft.bind_addr == "0.0.0.0:7400"
    assert cfg.raft.peers == ("cache-1.peers.example:7400", "cache-2.peers.example:7400")
    assert cfg.node_id == "cache-0"
    assert cfg.raft.secret == "s3cret"
    assert cfg.raft.durability is Durability.JOURNAL
    assert (cfg.log_format, cfg.log_level) == ("json", "debug")
    assert (cfg.limits.max_key_bytes, cfg.limits.max_value_bytes) == (100, 2000)
    assert cfg.proposer.tick_interval_s == pytest.approx(0.05)
    assert cfg.raft.lease_reads is False
    assert cfg.proposer.commit_timeout_s == pytest.approx(1.5)
    assert cfg.proposer.max_inflight == 4
    assert cfg.proposer.group_wait_s == pytest.approx(0.003)
    assert cfg.raft.compaction_min_entries == 500
    assert cfg.raft.compaction_log_bytes == 16 << 20
    assert (cfg.max_memory, cfg.eviction_policy) == (64 << 20, "allkeys-lru")
    assert (cfg.redis_listen, cfg.redis_advertise) == ("0.0.0.0:6379", "cache-0.example:6379")
    assert cfg.metrics_listen == "0.0.0.0:9121"
    assert cfg.restore_from == "/backups/cache.rcbak"
    assert cfg.redis_max_staleness_ms == 250
    assert cfg.redis_replica_reads is True
    assert (cfg.memcached_listen, cfg.memcached_advertise) == (
        "0.0.0.0:11211",
        "cache-0.example:11211",
    )
    assert (cfg.memcached_stale_reads_ms, cfg.memcached_max_item_bytes) == (500, 1500)
    assert cfg.event_loop == "asyncio"
    assert cfg.cpu_affinity == frozenset({0, 1, 3})
    assert cfg.tls == config.TlsConfig(
        "/etc/raftcache/tls.crt",
        "/etc/raftcache/tls.key",
        "/etc/raftcache/clients-ca.crt",
        "/etc/raftcache/ca.crt",
    )
    assert cfg.tls_client_cn_as_user is True
    assert (cfg.plaintext_listen, cfg.redis_plaintext_listen) == (
        "127.0.0.1:6401",
        "0.0.0.0:6389",
    )
    assert cfg.raft.read_replica is True
    assert cfg.join_credentials == "/etc/raftcache/join"
    assert cfg.users_seed is not None
    users = Acl.parse(cfg.users_seed)
    assert users.authenticate("app", b"app-pw") is not None
    assert users.authenticate("default", b"hunter2") is not None
    assert users.authenticate("default", b"not:valid:!") is None


# Flags that exclude one in the table above, tested on their own below.
EXCLUSIVE_FLAGS = {"join": "peers"}


def test_the_table_above_covers_every_flag() -> None:
    assert sorted([*ALL_FLAGS, *EXCLUSIVE_FLAGS]) == sorted(FLAG_NAMES)


def test_join_takes_the_members_instead_of_peers() -> None:
    cfg = load(["--raft", "127.0.0.1:7004", "--join", "127.0.0.1:7001,127.0.0.1:7002"], {})
    assert cfg.joining is True
    assert cfg.raft.peers == ("127.0.0.1:7001", "127.0.0.1:7002")
    assert load(["--raft", "127.0.0.1:7004", "--peers", "127.0.0.1:7001"], {}).joining is False
    with pytest.raises(ConfigError, match="--join and --peers"):
        load(
            ["--raft", "127.0.0.1:7004", "--join", "127.0.0.1:7001", "--peers", "127.0.0.1:7001"],
            {},
        )


def test_every_flag_is_read() -> None:
    argv = [f"--{name}={value}" for name, value in ALL_FLAGS.items()]
    check_all_flags(load(argv, {}))


def test_every_flag_falls_back_to_its_environment_variable() -> None:
    env = {env_name(name): value for name, value in ALL_FLAGS.items()}
    check_all_flags(load([], env))


@pytest.mark.parametrize("flag", list(ALL_FLAGS))
def test_a_flag_beats_its_environment_variable(flag: str) -> None:
    # The env value alone would be refused, so the flag must have won.
    env = {env_name(name): value for name, value in ALL_FLAGS.items()}
    env[env_name(flag)] = "not:valid:!" if flag != "node-id" else "from-env"
    cfg = load([f"--{flag}={ALL_FLAGS[flag]}"], env)
    if flag == "node-id":
        assert cfg.node_id == "cache-0"
    else:
        check_all_flags(cfg)


def test_advertise_defaults_to_listen_and_node_id_to_raft() -> None:
    cfg = load(["--listen", "127.0.0.1:6500", "--raft", "127.0.0.1:7500"], {})
    assert cfg.advertise == "127.0.0.1:6500"
    assert cfg.node_id == "127.0.0.1:7500"


def test_raft_bind_defaults_to_the_raft_address() -> None:
    assert load(["--raft", "127.0.0.1:7500"], {}).raft.bind_addr == "127.0.0.1:7500"


def test_a_raft_port_bound_off_loopback_needs_a_secret_even_if_peers_dial_loopback() -> None:
    with pytest.raises(ConfigError, match=r"--raft-secret: the Raft port 0\.0\.0\.0:7380"):
        load(["--raft", "127.0.0.1:7380", "--raft-bind", "0.0.0.0:7380"], {})


def test_a_bad_raft_bind_names_the_flag() -> None:
    with pytest.raises(ConfigError, match="--raft-bind: 'nope' is not HOST:PORT"):
        load(["--raft-bind", "nope"], {})


def test_memory_durability_has_no_data_dir() -> None:
    cfg = load(["--durability", "memory", "--data-dir", "/ignored"], {})
    assert cfg.raft.durability is Durability.MEMORY
    assert cfg.raft.data_dir is None


def test_addresses_and_peers_are_stripped() -> None:
    cfg = load(["--listen", " 127.0.0.1:6380 ", "--peers", " 127.0.0.1:7381 , 127.0.0.1:7382"], {})
    assert cfg.listen == "127.0.0.1:6380"
    assert cfg.raft.peers == ("127.0.0.1:7381", "127.0.0.1:7382")


@pytest.mark.parametrize("peers", ["", "  "])
def test_empty_peers_mean_a_single_node(peers: str) -> None:
    assert load(["--peers", peers], {}).raft.peers == ()


@pytest.mark.parametrize(
    ("raft", "peers"),
    [
        ("localhost:7380", "localhost:7381"),
        ("[::1]:7380", "[::1]:7381"),
        ("127.0.0.2:7380", "127.0.0.3:7381"),
    ],
)
def test_loopback_raft_needs_no_secret(raft: str, peers: str) -> None:
    cfg = load(["--raft", raft, "--peers", peers], {})
    assert cfg.raft.secret is None


def test_a_secret_from_the_environment_allows_a_public_raft_port() -> None:
    cfg = load(["--raft", "10.0.0.1:7380"], {"RAFTCACHE_RAFT_SECRET": "s"})
    assert cfg.raft.secret == "s"


# ------------------------------------------------------------------ refusals


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (["--peers", "127.0.0.1:7381,,127.0.0.1:7382"], ["entry 2", "is empty"]),
        (["--peers", "127.0.0.1:7381,"], ["entry 2", "no trailing comma"]),
        (["--peers", ","], ["entry 1", "is empty"]),
        (["--peers", "127.0.0.1"], ["'127.0.0.1' is not HOST:PORT"]),
        (["--peers", "127.0.0.1:"], ["not HOST:PORT", "1-65535"]),
        (["--peers", ":7381"], ["not HOST:PORT"]),
        (["--peers", "127.0.0.1:7381,127.0.0.1:http"], ["'127.0.0.1:http' is not HOST:PORT"]),
        (["--peers", "127.0.0.1:70000"], ["'127.0.0.1:70000'", "the port must be 1-65535"]),
        (["--peers", "127.0.0.1:0"], ["the port must be 1-65535"]),
        (["--peers", "127.0.0.1:-1"], ["the port must be 1-65535"]),
        (["--peers", "127.0.0.1:7381,127.0.0.1:7381"], ["the same address twice"]),
        (["--peers", "127.0.0.1:7381, 127.0.0.1:7381 "], ["the same address twice"]),
        (
            ["--raft", "127.0.0.1:7380", "--peers", "127.0.0.1:7381,127.0.0.1:7380"],
            ["own --raft address 127.0.0.1:7380", "list only the others"],
        ),
    ],
    ids=[
        "empty-entry",
        "trailing-comma",
        "only-comma",
        "missing-port",
        "empty-port",
        "missing-host",
        "named-port",
        "port-too-big",
        "port-zero",
        "port-negative",
        "duplicate",
        "duplicate-with-spaces",
        "own-address",
    ],
)
def test_malformed_peers_are_refused(argv: list[str], fragments: list[str]) -> None:
    message = refused(argv)
    assert message.startswith("--peers: ")
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize(
    ("raft", "peers", "named"),
    [
        ("127.0.0.1:7380", "127.0.0.1:7381,localhost:7380", "localhost:7380"),
        ("localhost:7380", "127.0.0.1:7380", "127.0.0.1:7380"),
        ("127.0.0.1:7380", "LOCALHOST:7380", "LOCALHOST:7380"),
        ("[::1]:7380", "[0:0::1]:7380", "[0:0::1]:7380"),
    ],
    ids=["localhost-for-127.0.0.1", "127.0.0.1-for-localhost", "case", "ipv6-spelling"],
)
def test_a_peer_that_is_this_node_however_written_is_refused(
    raft: str, peers: str, named: str
) -> None:
    message = refused(["--raft", raft, "--peers", peers])
    assert message == (
        f"--peers: {named} is this node's own --raft address {raft}; list only the others"
    )


def test_a_peer_name_that_resolves_to_the_raft_address_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def getaddrinfo(host: str, *_args: object, **_kwargs: object) -> list[tuple[object, ...]]:
        addresses = {"cache-0.internal": "10.0.0.1", "cache-1.internal": "10.0.0.2"}
        if host not in addresses:
            raise OSError(f"unknown host {host}")
        return [(2, 1, 6, "", (addresses[host], 0))]

    monkeypatch.setattr(config.socket, "getaddrinfo", getaddrinfo)
    secret = ["--raft-secret", "s"]
    message = refused(["--raft", "10.0.0.1:7380", "--peers", "cache-0.internal:7380", *secret])
    assert "cache-0.internal:7380 is this node's own --raft address 10.0.0.1:7380" in message
    message = refused(["--peers", "cache-1.internal:7380,10.0.0.2:7380", *secret])
    assert message == (
        "--peers: cache-1.internal:7380 and 10.0.0.2:7380 are the same node; list each voter once"
    )
    # Another port, or a name that does not resolve (yet), is another node.
    cfg = load(["--raft", "10.0.0.1:7380", "--peers", "10.0.0.1:7381,cache-9:7380", *secret], {})
    assert cfg.raft.peers == ("10.0.0.1:7381", "cache-9:7380")


def test_bracketed_ipv6_addresses_are_accepted_everywhere() -> None:
    cfg = load(
        ["--listen", "[::1]:6380", "--raft", "[::1]:7380", "--peers", "[::1]:7381,[::1]:7382"],
        {},
    )
    assert (cfg.listen, cfg.advertise) == ("[::1]:6380", "[::1]:6380")
    assert cfg.raft.self_addr == "[::1]:7380" and cfg.node_id == "[::1]:7380"
    assert cfg.raft.peers == ("[::1]:7381", "[::1]:7382")
    assert cfg.raft.secret is None  # loopback


@pytest.mark.parametrize(
    ("flag", "text", "advice"),
    [
        ("--raft", "::1:7380", "write it as [::1]:7380"),
        ("--listen", ":::6380", "write it as [::]:6380"),
        ("--peers", "fe80::1:7381", "write it as [fe80::1]:7381"),
        ("--advertise", "[cache-0]:6380", "brackets are for IPv6 only"),
    ],
)
def test_an_ipv6_host_without_brackets_is_refused_with_the_bracketed_form(
    flag: str, text: str, advice: str
) -> None:
    message = refused([flag, text])
    assert message.startswith(f"{flag}: ") and advice in message


@pytest.mark.parametrize(
    "argv",
    [
        ["--raft", "10.0.0.1:7380"],
        ["--raft", "0.0.0.0:7380"],
        ["--raft", "cache-0.internal:7380"],
        ["--raft", "127.0.0.1:7380", "--peers", "127.0.0.1:7381,10.0.0.2:7380"],
        ["--raft", "10.0.0.1:7380", "--raft-secret", ""],
    ],
    ids=["private-ip", "any-address", "hostname", "public-peer", "empty-secret"],
)
def test_off_loopback_raft_without_a_secret_is_refused(argv: list[str]) -> None:
    message = refused(argv)
    assert message.startswith("--raft-secret: ")
    for fragment in ["not on loopback", "pickled", "RAFTCACHE_RAFT_SECRET", "every node"]:
        assert fragment in message


@pytest.mark.parametrize(
    ("flag", "value", "fragments"),
    [
        ("durability", "disk", ["'disk'", "'journal' or 'memory'"]),
        ("durability", "", ["'journal' or 'memory'"]),
        ("log-format", "xml", ["'xml'", "'console' or 'json'"]),
        ("log-level", "verbose", ["'verbose'", "debug/info/warning/error"]),
        ("listen", "6380", ["not HOST:PORT"]),
        ("advertise", "host:99999", ["not HOST:PORT", "1-65535"]),
        ("raft", "localhost", ["not HOST:PORT"]),
        ("max-key-bytes", "64k", ["'64k' is not a whole number"]),
        ("max-key-bytes", "0", ["below the minimum of 1"]),
        ("max-value-bytes", "-1", ["below the minimum of 0"]),
        ("tick-interval-ms", "5", ["below the minimum of 10"]),
        ("lease-reads", "yes", ["--lease-reads", "'yes'", "'true' or 'false'"]),
        ("commit-timeout-ms", "99", ["below the minimum of 100"]),
        ("max-inflight-batches", "0", ["below the minimum of 1"]),
        ("group-commit-wait-ms", "-1", ["below the minimum of 0"]),
        ("compaction-entries", "1.5", ["not a whole number"]),
    ],
)
def test_bad_values_are_refused_naming_the_flag(
    flag: str, value: str, fragments: list[str]
) -> None:
    for message in [refused([f"--{flag}={value}"]), refused([], {env_name(flag): value})]:
        assert message.startswith(f"--{flag}: ")
        for fragment in fragments:
            assert fragment in message


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


def test_an_unknown_flag_is_an_argparse_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        load(["--no-such-flag"], {})
    assert exc.value.code == 2
    assert "--no-such-flag" in capsys.readouterr().err


# ------------------------------------------------------------------ StatefulSet ordinals

TEMPLATE = "{pod}.raftcache-peers.raftcache.svc.cluster.local:7380"
DOMAIN = "raftcache-peers.raftcache.svc.cluster.local"
POD_ENV = {
    "RAFTCACHE_REPLICAS": "3",
    "RAFTCACHE_PEER_TEMPLATE": TEMPLATE,
    "RAFTCACHE_RAFT_SECRET": "s",
    "RAFTCACHE_LISTEN": "0.0.0.0:6380",
    "RAFTCACHE_RAFT_BIND": "0.0.0.0:7380",
    "RAFTCACHE_REQUIREPASS": "pod-pw",  # the StatefulSet gives it from a Secret
}


def pod(name: str, argv: list[str] | None = None, **env: str) -> NodeConfig:
    return load(argv or [], {**POD_ENV, "RAFTCACHE_POD_NAME": name, **env})


@pytest.mark.parametrize("ordinal", [0, 1, 2])
def test_a_pod_derives_its_addresses_and_peers_from_its_ordinal(ordinal: int) -> None:
    cfg = pod(f"raftcache-{ordinal}")
    assert cfg.node_id == f"raftcache-{ordinal}"
    assert cfg.raft.self_addr == f"raftcache-{ordinal}.{DOMAIN}:7380"
    assert cfg.advertise == f"raftcache-{ordinal}.{DOMAIN}:6380"
    assert cfg.raft.bind_addr == "0.0.0.0:7380"
    assert cfg.raft.peers == tuple(f"raftcache-{i}.{DOMAIN}:7380" for i in range(3) if i != ordinal)


def test_every_pod_of_a_set_agrees_on_the_voters() -> None:
    configs = [pod(f"cache-{i}", RAFTCACHE_REPLICAS="5") for i in range(5)]
    voters = {frozenset({cfg.raft.self_addr, *cfg.raft.peers}) for cfg in configs}
    assert len(voters) == 1
    assert len(next(iter(voters))) == 5


def test_the_advertised_port_is_the_listen_port() -> None:
    assert pod("raftcache-1", RAFTCACHE_LISTEN="0.0.0.0:9000").advertise == (
        f"raftcache-1.{DOMAIN}:9000"
    )


def test_a_single_replica_has_no_peers() -> None:
    assert pod("raftcache-0", RAFTCACHE_REPLICAS="1").raft.peers == ()


def test_set_names_may_contain_dashes_and_digits() -> None:
    cfg = pod("my-cache-2-12", RAFTCACHE_REPLICAS="13")
    assert cfg.node_id == "my-cache-2-12"
    assert f"my-cache-2-0.{DOMAIN}:7380" in cfg.raft.peers


def test_an_explicit_advertise_overrides_the_derived_one() -> None:
    assert pod("raftcache-0", ["--advertise", "cache.example.com:443"]).advertise == (
        "cache.example.com:443"
    )


def test_explicit_addresses_that_agree_with_the_derived_ones_are_accepted() -> None:
    peers = f"raftcache-2.{DOMAIN}:7380, raftcache-0.{DOMAIN}:7380"  # any order, spaces
    cfg = pod(
        "raftcache-1",
        ["--raft", f"raftcache-1.{DOMAIN}:7380", "--peers", peers, "--node-id", "raftcache-1"],
    )
    assert cfg.raft.peers == (f"raftcache-0.{DOMAIN}:7380", f"raftcache-2.{DOMAIN}:7380")


def test_a_derived_raft_address_still_needs_a_secret() -> None:
    env = {k: v for k, v in POD_ENV.items() if k != "RAFTCACHE_RAFT_SECRET"}
    message = refused([], {**env, "RAFTCACHE_POD_NAME": "raftcache-0"})
    assert message.startswith("--raft-secret: ")


@pytest.mark.parametrize("ordinal", [3, 7])
def test_a_pod_beyond_replicas_joins_through_the_bootstrap_pods(ordinal: int) -> None:
    """The StatefulSet scaled up: the pod joins (--join: the pods that bootstrapped the
    cluster) and node/statefulset.py asks their client ports about the membership."""
    cfg = pod(f"raftcache-{ordinal}")
    assert cfg.joining
    assert cfg.node_id == f"raftcache-{ordinal}"
    assert cfg.raft.self_addr == f"raftcache-{ordinal}.{DOMAIN}:7380"
    assert cfg.raft.peers == tuple(f"raftcache-{i}.{DOMAIN}:7380" for i in range(3))
    assert cfg.statefulset_seeds == tuple(f"raftcache-{i}.{DOMAIN}:6380" for i in range(3))
    assert pod("raftcache-2").statefulset_seeds == ()
    assert not pod("raftcache-2").joining
    env = {**POD_ENV, "RAFTCACHE_POD_NAME": f"raftcache-{ordinal}"}
    assert "conflicts with" in refused(["--join", f"raftcache-0.{DOMAIN}:7380"], env)
    message = refused(["--peers", f"raftcache-0.{DOMAIN}:7380"], env)
    assert message.startswith("--peers: ") and "drop --peers" in message


@pytest.mark.parametrize(
    ("argv", "flag", "fragments"),
    [
        (
            ["--raft", "10.0.0.1:7380"],
            "--raft",
            ["'10.0.0.1:7380' conflicts with", f"'raftcache-0.{DOMAIN}:7380'"],
        ),
        (["--peers", f"raftcache-1.{DOMAIN}:7380"], "--peers", ["conflicts with"]),
        (["--node-id", "primary"], "--node-id", ["'primary' conflicts with 'raftcache-0'"]),
    ],
    ids=["raft", "peers", "node-id"],
)
def test_explicit_addresses_that_conflict_with_the_ordinal_are_refused(
    argv: list[str], flag: str, fragments: list[str]
) -> None:
    message = refused(argv, {**POD_ENV, "RAFTCACHE_POD_NAME": "raftcache-0"})
    assert message.startswith(f"{flag}: ")
    for fragment in [*fragments, "--pod-name, --replicas and --peer-template", f"drop {flag}"]:
        assert fragment in message


@pytest.mark.parametrize(
    ("env", "fragments"),
    [
        (
            {"RAFTCACHE_POD_NAME": "raftcache-0"},
            ["--pod-name given without --replicas and --peer-template"],
        ),
        ({"RAFTCACHE_REPLICAS": "3"}, ["--replicas given without --pod-name and --peer-template"]),
        (
            {"RAFTCACHE_POD_NAME": "raftcache-0", "RAFTCACHE_PEER_TEMPLATE": TEMPLATE},
            ["--pod-name, --peer-template given without --replicas"],
        ),
    ],
    ids=["pod-name-alone", "replicas-alone", "no-replicas"],
)
def test_ordinal_flags_come_together(env: dict[str, str], fragments: list[str]) -> None:
    message = refused([], {"RAFTCACHE_RAFT_SECRET": "s", **env})
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize(
    ("flag", "value", "fragments"),
    [
        ("pod-name", "raftcache", ["'raftcache' is not <statefulset>-<ordinal>", "metadata.name"]),
        ("pod-name", "raftcache-", ["is not <statefulset>-<ordinal>"]),
        ("pod-name", "raftcache-01", ["'raftcache-01' is not"]),
        ("pod-name", "raftcache-x", ["is not <statefulset>-<ordinal>"]),
        ("pod-name", "RaftCache-0", ["is not <statefulset>-<ordinal>"]),
        ("pod-name", "", ["is not <statefulset>-<ordinal>"]),
        ("replicas", "three", ["'three' is not a whole number"]),
        ("replicas", "0", ["below the minimum of 1"]),
        ("peer-template", "raftcache-peers:7380", ["must contain '{pod}'"]),
        ("peer-template", "{pod}.{namespace}:7380", ["no other braces"]),
        ("peer-template", "{pod}.raftcache-peers", ["is not HOST:PORT"]),
        ("peer-template", "{pod}:99999", ["the port must be 1-65535"]),
    ],
)
def test_bad_ordinal_values_are_refused_naming_the_flag(
    flag: str, value: str, fragments: list[str]
) -> None:
    base = {**POD_ENV, "RAFTCACHE_POD_NAME": "raftcache-0"}
    for message in [
        refused([f"--{flag}={value}"], base),
        refused([], {**base, env_name(flag): value}),
    ]:
        assert message.startswith(f"--{flag}: ")
        for fragment in fragments:
            assert fragment in message


# ------------------------------------------------------------------ the CLI


def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "raftcache.node.cli", *args],
        cwd=cwd,
        env={**clean_environ(), "COLUMNS": "100"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_help_documents_every_flag_with_its_environment_variable(tmp_path: Path) -> None:
    proc = run_cli(["--help"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "environment variable" in proc.stdout
    options = proc.stdout.split("options:", 1)[1]
    # one entry per option: "--flag METAVAR  help text [env NAME; default ...]", maybe wrapped
    entries = {
        block.split()[0]: " ".join(block.split())
        for block in re.split(r"\n  (?=-)", options)
        if block.strip()
    }
    for flag in ALL_FLAGS:
        entry = entries.get(f"--{flag}")
        assert entry is not None, f"--{flag} is not documented in --help"
        assert f"[env {env_name(flag)}; default " in entry, f"--{flag}: {entry!r}"


def test_bad_peers_exit_2_with_one_line_and_start_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    proc = run_cli(["--peers", "127.0.0.1:7381,", "--data-dir", str(data_dir)], tmp_path)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("raftcache-node: error: --peers: ")
    assert "no trailing comma" in lines[0]
    assert list(tmp_path.iterdir()) == []  # no data directory, no journal, no files at all


@pytest.mark.parametrize(
    ("text", "size"), [("0", 0), ("1000", 1000), ("512kb", 512 << 10), ("2GB", 2 << 30)]
)
def test_max_memory_sizes(text: str, size: int) -> None:
    assert load(["--max-memory", text], {}).max_memory == size


@pytest.mark.parametrize("text", ["lots", "-5", "10tb", "mb"])
def test_a_bad_max_memory_names_the_flag(text: str) -> None:
    with pytest.raises(ConfigError, match=f"--max-memory: {text!r} is not a size"):
        load(["--max-memory", text], {})


def test_an_unknown_eviction_policy_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="--eviction-policy: 'lru' is not one of noeviction"):
        load(["--eviction-policy", "lru"], {})


@pytest.mark.parametrize("listen", ["0.0.0.0:6380", "[::]:6380"])
def test_listening_on_every_interface_needs_an_advertise_address(listen: str) -> None:
    with pytest.raises(ConfigError, match=r"--advertise: .* is not an address clients can dial"):
        load(["--listen", listen], {})
    cfg = load(
        ["--listen", listen, "--advertise", "cache-0.example:6380", "--requirepass", "p"], {}
    )
    assert cfg.advertise == "cache-0.example:6380"


def test_redis_is_off_unless_listen_is_given_and_advertises_this_host() -> None:
    cfg = load([], {})
    assert (cfg.redis_listen, cfg.redis_advertise) == ("", "")
    cfg = load(["--redis-listen", "127.0.0.1:6379", "--advertise", "cache-0.example:6380"], {})
    assert cfg.redis_listen == "127.0.0.1:6379"
    assert cfg.redis_advertise == "cache-0.example:6379"  # the --advertise host, Redis port
    cfg = load([], {"RAFTCACHE_REDIS_LISTEN": "127.0.0.1:7001"})
    assert cfg.redis_listen == "127.0.0.1:7001"


def test_metrics_are_off_unless_listen_is_given() -> None:
    assert load([], {}).metrics_listen == ""
    assert load(["--metrics-listen", "127.0.0.1:9121"], {}).metrics_listen == "127.0.0.1:9121"
    cfg = load([], {"RAFTCACHE_METRICS_LISTEN": "[::]:9121"})
    assert cfg.metrics_listen == "[::]:9121"
    assert refused(["--metrics-listen", "nope"]).startswith("--metrics-listen")


def test_bad_redis_flags_are_refused_naming_the_flag() -> None:
    assert refused(["--redis-listen", "nope"]).startswith("--redis-listen")
    error = refused(["--redis-listen", "0.0.0.0:6379", "--redis-advertise", "0.0.0.0:6379"])
    assert error.startswith("--redis-advertise") and "not an address clients can dial" in error
    assert refused(["--redis-max-staleness-ms", "-1"]).startswith("--redis-max-staleness-ms")
    error = refused(["--redis-replica-reads", "yes"])
    assert error == "--redis-replica-reads: 'yes' is not 'true' or 'false'"


def test_redis_connections_start_linearizable_unless_the_node_is_a_reader_endpoint() -> None:
    assert load([], {}).redis_replica_reads is False
    assert load(["--redis-listen", "127.0.0.1:6379"], {}).redis_replica_reads is False
    on = ["--redis-listen", "127.0.0.1:6379", "--redis-replica-reads", "true"]
    assert load(on, {}).redis_replica_reads is True


def test_memcached_is_off_unless_listen_is_given_and_items_default_to_the_value_limit() -> None:
    cfg = load([], {})
    assert (cfg.memcached_listen, cfg.memcached_advertise) == ("", "")
    assert cfg.memcached_max_item_bytes == cfg.limits.max_value_bytes
    assert cfg.memcached_stale_reads_ms == 0  # gets are linearizable unless asked
    cfg = load(
        ["--memcached-listen", "0.0.0.0:11211", "--advertise", "cache-0.example:6380"],
        {"RAFTCACHE_INSECURE_ALLOW_UNAUTHENTICATED": "true"},
    )
    assert cfg.memcached_advertise == "cache-0.example:11211"
    cfg = load([], {"RAFTCACHE_MEMCACHED_LISTEN": "127.0.0.1:7002"})
    assert cfg.memcached_listen == "127.0.0.1:7002"


def test_bad_memcached_flags_are_refused_naming_the_flag() -> None:
    assert refused(["--memcached-listen", "nope"]).startswith("--memcached-listen")
    error = refused(
        ["--memcached-listen", "0.0.0.0:11211", "--memcached-advertise", "0.0.0.0:11211"]
    )
    assert error.startswith("--memcached-advertise") and "not an address" in error
    assert refused(["--memcached-stale-reads", "-5"]).startswith("--memcached-stale-reads")
    assert refused(["--memcached-max-item-bytes", "0"]).startswith("--memcached-max-item-bytes")
    error = refused(["--max-value-bytes", "1000", "--memcached-max-item-bytes", "2000"])
    assert error.startswith("--memcached-max-item-bytes") and "--max-value-bytes" in error


@pytest.mark.parametrize(
    ("text", "cpus"),
    [("", set()), ("  ", set()), ("0", {0}), (" 1 , 0 ", {0, 1}), ("0-3", {0, 1, 2, 3}),
     ("2-2,5,0-1", {0, 1, 2, 5}), ("1,1", {1}), ("0-7:2", {0, 2, 4, 6}), ("1-3:1", {1, 2, 3})],
)  # fmt: skip
def test_cpu_affinity_takes_cpu_numbers_and_ranges(text: str, cpus: set[int]) -> None:
    assert load(["--cpu-affinity", text], {}).cpu_affinity == frozenset(cpus)
    assert load([], {}).cpu_affinity == frozenset()  # not pinned unless asked


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("a", "'a' in 'a' is not a CPU number or range"),
        ("0,,1", "'' in '0,,1' is not a CPU number or range"),
        ("-1", "'-1' in '-1' is not a CPU number or range"),
        ("0-x", "'0-x' in '0-x' is not a CPU number or range"),
        ("3-1", "the range '3-1' ends before it starts: write the lower CPU first (1-3)"),
        ("0-99999999", "CPU 99999999 is past the largest CPU number Linux supports (8191)"),
        ("0-7:0", "the step in '0-7:0' is 0: give a step of 1 or more"),
        ("0:2", "'0:2' in '0:2' is not a CPU number or range"),
    ],
)
def test_a_cpu_affinity_that_is_not_a_cpu_list_is_refused(text: str, says: str) -> None:
    error = refused(["--cpu-affinity", text])
    assert error.startswith("--cpu-affinity: ") and says in error


def test_the_event_loop_is_uvloop_unless_asked_otherwise() -> None:
    assert load([], {}).event_loop == "uvloop"
    assert load(["--event-loop", "asyncio"], {}).event_loop == "asyncio"
    assert refused(["--event-loop", "trio"]).startswith("--event-loop")


# -- users and safe defaults (issue 14) ------------------------------------------------------

LOOPBACK = ["--listen", "127.0.0.1:6500", "--raft", "127.0.0.1:7500"]


def test_a_client_port_off_loopback_without_users_or_tls_is_refused() -> None:
    with pytest.raises(ConfigError) as refused:
        load(["--listen", "0.0.0.0:6500", "--advertise", "10.0.0.5:6500", *LOOPBACK[2:]], {})
    text = str(refused.value)
    assert "refusing to serve clients on 0.0.0.0:6500 with neither users nor TLS" in text
    assert "--insecure-allow-unauthenticated=true" in text


@pytest.mark.parametrize("flag", ["--redis-listen", "--memcached-listen"])
def test_a_redis_or_memcached_port_off_loopback_is_refused_too(flag: str) -> None:
    with pytest.raises(ConfigError, match="with neither users nor TLS"):
        load([*LOOPBACK, flag, "0.0.0.0:6501"], {})


def test_users_tls_or_the_insecure_switch_each_allow_an_open_port() -> None:
    open_port = ["--listen", "0.0.0.0:6500", "--advertise", "10.0.0.5:6500", *LOOPBACK[2:]]
    assert load([*open_port, "--requirepass", "pw"], {}).users_seed is not None
    assert load([*open_port, "--users-file", str(USERS_FILE)], {}).users_seed is not None
    tls = ["--tls-cert-file", "c.pem", "--tls-key-file", "k.pem", "--tls-ca-file", "ca.pem"]
    assert load([*open_port, *tls], {}).tls is not None
    allowed = load([*open_port, "--insecure-allow-unauthenticated", "true"], {})
    assert allowed.users_seed is None and allowed.tls is None


def test_a_users_file_that_leaves_the_default_user_open_does_not_count() -> None:
    open_port = ["--listen", "0.0.0.0:6500", "--advertise", "10.0.0.5:6500", *LOOPBACK[2:]]
    with pytest.raises(ConfigError, match="whose default user needs a password or is off"):
        load([*open_port, "--users-file", str(OPEN_USERS_FILE)], {})


TLS_FILES = ["--tls-cert-file", "c.pem", "--tls-key-file", "k.pem", "--tls-ca-file", "ca.pem"]


def test_plaintext_ports_beside_tls_ones() -> None:
    cfg = load(
        [*LOOPBACK, *TLS_FILES, "--redis-listen", "127.0.0.1:6379",
         "--plaintext-listen", "127.0.0.1:6501", "--redis-plaintext-listen", "127.0.0.1:6389"],
        {},
    )  # fmt: skip
    assert cfg.tls is not None
    assert (cfg.plaintext_listen, cfg.redis_plaintext_listen) == (
        "127.0.0.1:6501",
        "127.0.0.1:6389",
    )
    env = {"RAFTCACHE_REDIS_PLAINTEXT_LISTEN": "127.0.0.1:6390"}
    cfg = load([*LOOPBACK, *TLS_FILES, "--redis-listen", "127.0.0.1:6379"], env)
    assert (cfg.plaintext_listen, cfg.redis_plaintext_listen) == ("", "127.0.0.1:6390")
    cfg = load([*LOOPBACK, *TLS_FILES], {})
    assert (cfg.plaintext_listen, cfg.redis_plaintext_listen) == ("", "")


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--plaintext-listen", "127.0.0.1:6501"],
         "--plaintext-listen: a plaintext port beside a TLS one, but TLS is off"),
        (["--redis-listen", "127.0.0.1:6379", "--redis-plaintext-listen", "127.0.0.1:6389"],
         "--redis-plaintext-listen: a plaintext port beside a TLS one, but TLS is off"),
        ([*TLS_FILES, "--redis-plaintext-listen", "127.0.0.1:6389"],
         "--redis-plaintext-listen: a plaintext port beside the TLS one, but "
         "--redis-listen is off; give --redis-listen too"),
        ([*TLS_FILES, "--plaintext-listen", "127.0.0.1:6500"],
         "--plaintext-listen: 127.0.0.1:6500 is the TLS port's address (--listen)"),
        ([*TLS_FILES, "--plaintext-listen", "localhost"],
         "--plaintext-listen"),
    ],
)  # fmt: skip
def test_plaintext_ports_refused_where_they_make_no_sense(args: list[str], error: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load([*LOOPBACK, *args], {})
    assert error in str(refused.value)


@pytest.mark.parametrize(
    "flag", ["--plaintext-listen", "--redis-plaintext-listen"]
)  # fmt: skip
def test_a_plaintext_port_off_loopback_needs_users_whatever_tls_covers(flag: str) -> None:
    args = [*LOOPBACK, *TLS_FILES, "--redis-listen", "127.0.0.1:6379", flag, "0.0.0.0:6502"]
    with pytest.raises(ConfigError) as refused:
        load(args, {})
    text = str(refused.value)
    assert "refusing to serve plaintext clients on 0.0.0.0:6502 without users" in text
    assert "TLS does not cover a plaintext port" in text
    assert load([*args, "--requirepass", "pw"], {}).users_seed is not None
    assert load([*args, "--insecure-allow-unauthenticated", "true"], {}).tls is not None
    # the TLS ports themselves may face the network without users, as before
    tls_open = ["--listen", "0.0.0.0:6500", "--advertise", "10.0.0.5:6500", *LOOPBACK[2:]]
    assert load([*tls_open, *TLS_FILES, "--plaintext-listen", "127.0.0.1:6501"], {}).tls


def test_the_insecure_switch_takes_only_true_or_false() -> None:
    with pytest.raises(ConfigError, match="'yes' is not 'true' or 'false'"):
        load([*LOOPBACK, "--insecure-allow-unauthenticated", "yes"], {})


def test_a_missing_users_file_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "nope.acl"
    with pytest.raises(ConfigError, match=f"--users-file: cannot read {missing}"):
        load([*LOOPBACK, "--users-file", str(missing)], {})


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("user app on +@nosuch", "line 2: Error in ACL SETUSER modifier '+@nosuch': Unknown"),
        ("user app on #abc", "The password hash must be exactly 64 characters"),
        ("app on", "line 2: should start with user keyword"),
        ("user app on foo", "modifier 'foo': Syntax error"),
    ],
)
def test_a_users_file_that_does_not_parse_names_the_line(
    tmp_path: Path, line: str, why: str
) -> None:
    path = tmp_path / "users.acl"
    path.write_text(f"# comment\n{line}\n")
    with pytest.raises(ConfigError) as refused:
        load([*LOOPBACK, "--users-file", str(path)], {})
    assert why in str(refused.value)
    assert "fix the file" in str(refused.value)


def test_an_empty_requirepass_is_refused() -> None:
    with pytest.raises(ConfigError, match="--requirepass: the password is empty"):
        load([*LOOPBACK, "--requirepass", " "], {})


def test_requirepass_alone_gives_the_default_user_a_password() -> None:
    seed = load([*LOOPBACK], {"RAFTCACHE_REQUIREPASS": "s3"}).users_seed
    assert seed is not None
    users = Acl.parse(seed)
    assert not users.open
    assert users.authenticate("default", b"s3") is not None
    assert "s3" not in seed  # stored as its digest only


def test_client_cn_as_user_takes_true_or_false_and_needs_mtls() -> None:
    mtls = [
        *("--tls-cert-file", "c.pem", "--tls-key-file", "k.pem"),
        *("--tls-client-ca-file", "ca.pem"),
    ]
    assert load([*LOOPBACK, *mtls], {}).tls_client_cn_as_user is False
    env = {"RAFTCACHE_TLS_CLIENT_CN_AS_USER": "true"}
    assert load([*LOOPBACK, *mtls], env).tls_client_cn_as_user is True
    with pytest.raises(ConfigError, match="'yes' is not 'true' or 'false'"):
        load([*LOOPBACK, *mtls, "--tls-client-cn-as-user", "yes"], {})
    with pytest.raises(ConfigError, match="needs mTLS"):
        load([*LOOPBACK, "--tls-client-cn-as-user", "true"], {})


@pytest.mark.parametrize(("text", "size"), [(None, 64 << 20), ("0", 0), ("1mb", 1 << 20)])
def test_compaction_log_bytes(text: str | None, size: int) -> None:
    argv = [] if text is None else ["--compaction-log-bytes", text]
    assert load(argv, {}).raft.compaction_log_bytes == size


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("10", "'10' is below 1mb, which would snapshot the whole state every few entries"),
        ("lots", "'lots' is not a size"),
    ],
)
def test_a_bad_compaction_log_bytes_says_what_to_give(text: str, error: str) -> None:
    with pytest.raises(ConfigError, match=f"--compaction-log-bytes: {error}"):
        load(["--compaction-log-bytes", text], {})
