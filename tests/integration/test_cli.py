"""The `raftcache` console script, run as a subprocess against a real 3-node cluster."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from raftcache.chaos.local_cluster import LocalCluster

pytestmark = pytest.mark.integration

SCRIPT = Path(sys.executable).parent / "raftcache"
NOTHING_LISTENING = "127.0.0.1:1"


@pytest.fixture(scope="module")
def endpoints(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Client addresses of one 3-node cluster shared by this module."""
    cluster = LocalCluster(3, tmp_path_factory.mktemp("cli-cluster")).start()
    try:
        cluster.wait_until_ready(timeout=40)
        yield ",".join(node.client_addr for node in cluster.nodes)
    finally:
        cluster.close()


def cli(
    *args: str | bytes, endpoints: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the console script; `endpoints` becomes --endpoints when given."""
    command: list[str | bytes] = [str(SCRIPT)]
    if endpoints is not None:
        command += ["--endpoints", endpoints]
    environment = {k: v for k, v in os.environ.items() if k != "RAFTCACHE_ENDPOINTS"}
    environment.update(env or {})
    return subprocess.run(
        command + list(args), capture_output=True, text=True, env=environment, timeout=30
    )


def assert_error(result: subprocess.CompletedProcess[str], code: int, *phrases: str) -> None:
    """Exit `code`, nothing on stdout, one `raftcache: error:` line holding every phrase."""
    assert result.returncode == code, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("raftcache: error: ")
    for phrase in phrases:
        assert phrase in lines[0]


def test_set_then_get_as_text_and_json(endpoints: str) -> None:
    result = cli("set", "cli:greeting", "héllo wörld", endpoints=endpoints)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK (version ")
    version = int(result.stdout.split()[-1].rstrip(")"))

    result = cli("get", "cli:greeting", endpoints=endpoints)
    assert (result.returncode, result.stdout) == (0, "héllo wörld\n")

    result = cli("--json", "get", "cli:greeting", endpoints=endpoints)
    assert result.returncode == 0
    assert json.loads(result.stdout) == {
        "found": True,
        "key": "cli:greeting",
        "value": "héllo wörld",
        "version": version,
        "ttl": None,
    }

    result = cli("set", "cli:ttl", "v", "--ttl", "60", "--json", endpoints=endpoints)
    data = json.loads(result.stdout)
    assert data["ok"] is True and data["version"] > version
    ttl = json.loads(cli("get", "cli:ttl", "--json", endpoints=endpoints).stdout)["ttl"]
    assert 0 < ttl <= 60


def test_missing_key_prints_nil_and_exits_1(endpoints: str) -> None:
    result = cli("get", "cli:missing", endpoints=endpoints)
    assert (result.returncode, result.stdout, result.stderr) == (1, "(nil)\n", "")
    result = cli("get", "cli:missing", "--json", endpoints=endpoints)
    assert result.returncode == 1
    assert json.loads(result.stdout)["found"] is False


def test_a_value_that_is_not_utf8(endpoints: str) -> None:
    raw = b"\xff\xfeab"
    assert cli("set", "cli:binary", raw, endpoints=endpoints).returncode == 0
    result = cli("get", "cli:binary", endpoints=endpoints)
    assert result.stdout == "b'\\xff\\xfeab'\n"
    data = json.loads(cli("get", "cli:binary", "--json", endpoints=endpoints).stdout)
    assert data["value"] == "\\xff\\xfeab"
    assert base64.b64decode(data["value_b64"]) == raw


def test_incr_counts_up_and_down(endpoints: str) -> None:
    assert cli("incr", "cli:counter", endpoints=endpoints).stdout == "1\n"
    assert cli("incr", "cli:counter", "5", endpoints=endpoints).stdout == "6\n"
    result = cli("--json", "incr", "cli:counter", "-10", endpoints=endpoints)
    assert json.loads(result.stdout) == {"key": "cli:counter", "value": -4}


def test_a_write_rerun_with_the_same_client_id_applies_once(endpoints: str) -> None:
    # What the exit-5 message tells the user to do.
    for _ in range(2):
        result = cli("--client-id", "cli-test-retry", "incr", "cli:once", endpoints=endpoints)
        assert (result.returncode, result.stdout) == (0, "1\n")
    assert cli("incr", "cli:once", endpoints=endpoints).stdout == "2\n"


def test_mset_mget_and_del(endpoints: str) -> None:
    result = cli("mset", "cli:a", "1", "cli:b", "2", "--ttl", "60", endpoints=endpoints)
    assert (result.returncode, result.stdout) == (0, "OK (2 keys)\n")
    result = cli("mget", "cli:a", "cli:b", "cli:nope", endpoints=endpoints)
    assert (result.returncode, result.stdout) == (0, "1\n2\n(nil)\n")
    data = json.loads(cli("--json", "mget", "cli:b", "cli:nope", endpoints=endpoints).stdout)
    assert data == {
        "results": [
            {"key": "cli:b", "found": True, "value": "2"},
            {"key": "cli:nope", "found": False},
        ]
    }

    result = cli("--json", "mset", "cli:c", "3", "cli:d", "4", endpoints=endpoints)
    items = json.loads(result.stdout)["items"]
    assert [i["key"] for i in items] == ["cli:c", "cli:d"]
    assert items[1]["version"] == items[0]["version"] + 1

    result = cli("del", "cli:a", "cli:b", "cli:nope", endpoints=endpoints)
    assert (result.returncode, result.stdout) == (0, "2\n")
    result = cli("--json", "del", "cli:c", "cli:c", endpoints=endpoints)
    assert json.loads(result.stdout) == {
        "deleted": 1,
        "results": [{"key": "cli:c", "existed": True}, {"key": "cli:c", "existed": False}],
    }
    assert cli("mget", "cli:a", "cli:c", endpoints=endpoints).stdout == "(nil)\n(nil)\n"


def test_status_table_and_json(endpoints: str) -> None:
    addresses = endpoints.split(",")
    result = cli("status", endpoints=addresses[1])
    assert result.returncode == 0, result.stderr
    header, *rows = [line.split() for line in result.stdout.splitlines()]
    assert header == ["ID", "ROLE", "TERM", "APPLIED", "LAG", "ADDRESS"]
    assert sorted(row[0] for row in rows) == ["n1", "n2", "n3"]
    assert sorted(row[5] for row in rows) == sorted(addresses)
    assert [row[1] for row in rows].count("leader") == 1
    for row in rows:
        assert int(row[2]) >= 1 and int(row[3]) >= 1 and int(row[4]) >= 0

    nodes = json.loads(cli("--json", "status", endpoints=addresses[2]).stdout)
    assert sorted(n["address"] for n in nodes) == sorted(addresses)
    leader = next(n for n in nodes if n["role"] == "leader")
    assert leader["lag"] == 0
    assert all(n["leader_id"] == leader["id"] for n in nodes)


def test_endpoints_come_from_the_environment(endpoints: str) -> None:
    env = {"RAFTCACHE_ENDPOINTS": endpoints.split(",")[2]}
    assert cli("set", "cli:env", "from-env", env=env).returncode == 0
    assert cli("get", "cli:env", env=env).stdout == "from-env\n"
    # --endpoints wins over the environment.
    env = {"RAFTCACHE_ENDPOINTS": NOTHING_LISTENING}
    assert cli("get", "cli:env", endpoints=endpoints, env=env).stdout == "from-env\n"


def test_nothing_listening_fails_within_the_timeout() -> None:
    for args in (["get", "k"], ["set", "k", "v"], ["status"]):
        started = time.monotonic()
        result = cli("--timeout", "1", *args, endpoints=NOTHING_LISTENING)
        elapsed = time.monotonic() - started
        assert_error(result, 4, NOTHING_LISTENING)
        assert elapsed < 4, f"{args} took {elapsed:.1f} s with --timeout 1"


def test_a_malformed_endpoint_is_bad_usage() -> None:
    result = cli("get", "k", endpoints="nonsense")
    assert_error(result, 2, "'nonsense'", "HOST:PORT")
    result = cli("get", "k", env={"RAFTCACHE_ENDPOINTS": "127.0.0.1:6381,host:notaport"})
    assert_error(result, 2, "'host:notaport'")


def test_invalid_input_exits_2(endpoints: str) -> None:
    assert_error(cli("set", "", "v", endpoints=endpoints), 2, "key is empty")
    assert_error(cli("set", "k", "v", "--ttl", "-1", endpoints=endpoints), 2, "--ttl", "-1")
    assert_error(cli("mset", "k1", "v1", "k2", endpoints=endpoints), 2, "'k2' has no value")
    assert_error(cli("get", "k", "--max-staleness", "1", endpoints=endpoints), 2, "stale")
    assert_error(cli("frobnicate", endpoints=endpoints), 2, "frobnicate")


def test_failed_conditions_exit_3(endpoints: str) -> None:
    assert cli("set", "cli:cas", "first", "--if-absent", endpoints=endpoints).returncode == 0
    result = cli("set", "cli:cas", "second", "--if-absent", endpoints=endpoints)
    assert_error(result, 3, "if-absent")
    result = cli("set", "cli:cas", "third", "--expected-version", "999999", endpoints=endpoints)
    assert_error(result, 3, "999999")
    assert_error(cli("incr", "cli:cas", endpoints=endpoints), 3, "integer")
    assert cli("get", "cli:cas", endpoints=endpoints).stdout == "first\n"


def test_help_documents_commands_and_exit_codes() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "raftcache.client.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0
    for word in ("get", "set", "del", "incr", "mget", "mset", "status", "--endpoints"):
        assert word in result.stdout
    assert "3    condition failed" in result.stdout
    assert "5    outcome unknown" in result.stdout
    result = cli("set", "--help")
    assert result.returncode == 0 and "--if-absent" in result.stdout


def test_ctrl_c_exits_130_without_a_traceback() -> None:
    process = subprocess.Popen(
        [str(SCRIPT), "--endpoints", NOTHING_LISTENING, "--timeout", "30", "get", "k"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A parent started in the background may ignore SIGINT; the child must not inherit it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    time.sleep(3)  # past interpreter and grpc start-up (~0.1 s), into the retry loop
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=10)
    assert process.returncode == 130, stderr
    assert stderr == "raftcache: interrupted\n"
