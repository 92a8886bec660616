"""Node configuration: flags, RAFTCACHE_* fallbacks, defaults and every refusal."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from raftcache.consensus import Durability
from raftcache.node import config
from raftcache.node.config import ConfigError, NodeConfig, load

FLAG_NAMES = [name for name, _help, _default in config._FLAGS]


def env_name(flag: str) -> str:
    return "RAFTCACHE_" + flag.upper().replace("-", "_")


def clean_environ() -> dict[str, str]:
    """The test process's environment without any RAFTCACHE_* variable."""
    return {k: v for k, v in os.environ.items() if not k.startswith("RAFTCACHE_")}


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


ALL_FLAGS = {
    "data-dir": "/var/lib/raftcache",
    "listen": "0.0.0.0:6400",
    "advertise": "cache-0.example:6400",
    "raft": "10.0.0.1:7400",
    "raft-bind": "0.0.0.0:7400",
    "peers": "10.0.0.2:7400,10.0.0.3:7400",
    "node-id": "cache-0",
    "raft-secret": "s3cret",
    "durability": "journal",
    "log-format": "json",
    "log-level": "debug",
    "max-key-bytes": "100",
    "max-value-bytes": "2000",
    "tick-interval-ms": "50",
    "commit-timeout-ms": "1500",
    "max-inflight-batches": "4",
    "compaction-entries": "500",
}


def check_all_flags(cfg: NodeConfig) -> None:
    assert cfg.raft.data_dir == Path("/var/lib/raftcache")
    assert cfg.listen == "0.0.0.0:6400"
    assert cfg.advertise == "cache-0.example:6400"
    assert cfg.raft.self_addr == "10.0.0.1:7400"
    assert cfg.raft.bind_addr == "0.0.0.0:7400"
    assert cfg.raft.peers == ("10.0.0.2:7400", "10.0.0.3:7400")
    assert cfg.node_id == "cache-0"
    assert cfg.raft.secret == "s3cret"
    assert cfg.raft.durability is Durability.JOURNAL
    assert (cfg.log_format, cfg.log_level) == ("json", "debug")
    assert (cfg.limits.max_key_bytes, cfg.limits.max_value_bytes) == (100, 2000)
    assert cfg.proposer.tick_interval_s == pytest.approx(0.05)
    assert cfg.proposer.commit_timeout_s == pytest.approx(1.5)
    assert cfg.proposer.max_inflight == 4
    assert cfg.raft.compaction_min_entries == 500


def test_the_table_above_covers_every_flag() -> None:
    assert sorted(ALL_FLAGS) == sorted(FLAG_NAMES)


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
        ("commit-timeout-ms", "99", ["below the minimum of 100"]),
        ("max-inflight-batches", "0", ["below the minimum of 1"]),
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
