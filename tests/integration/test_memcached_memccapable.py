"""libmemcached's `memccapable -a` (Debian libmemcached-tools) against a raftcache node, the
leader and a follower: every ascii test it has must pass. The binary protocol (`-b`) is
deprecated upstream and not served."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator

import pytest
from raftcache.chaos.local_cluster import LocalCluster

from tests.integration.conftest import running_cluster

BINARY = shutil.which("memccapable") or shutil.which("memcapable")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        BINARY is None,
        reason="memccapable is not installed (apt-get install -y libmemcached-tools)",
    ),
]

_TESTS = ("version", "quit", "verbosity", "set", "get", "gets", "mget", "flush", "add")
_TESTS += ("replace", "cas", "delete", "incr", "decr", "append", "prepend", "stat")
_NOREPLY = ("set", "flush", "add", "replace", "cas", "delete", "incr", "decr", "append")
_NOREPLY += ("prepend",)
MUST_PASS = {f"ascii {t}" for t in _TESTS} | {f"ascii {t} noreply" for t in _NOREPLY}
"""The floor: memccapable 1.1.4's 27 ascii tests, all passing on raftcache."""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with running_cluster(tmp_path_factory.mktemp("memccapable")) as c:
        yield c


def run_memccapable(port: int) -> dict[str, str]:
    """{test name: pass|FAIL|skip} from one `memccapable -a` run."""
    assert BINARY is not None
    proc = subprocess.run(
        [BINARY, "-a", "-t", "10", "-h", "127.0.0.1", "-p", str(port)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    results = dict(re.findall(r"^(ascii [\w ]+?)\s+\[(\w+)\]", proc.stdout, re.M))
    assert results, proc.stdout + proc.stderr
    return results


@pytest.mark.parametrize("role", ["leader", "follower"])
def test_memccapable_ascii_passes(cluster: LocalCluster, role: str) -> None:
    leader = cluster.wait_for_leader()
    i = leader if role == "leader" else (leader + 1) % len(cluster.nodes)
    results = run_memccapable(cluster.nodes[i].memcached_port)
    passed = {name for name, outcome in results.items() if outcome == "pass"}
    assert passed >= MUST_PASS, {n: results.get(n, "missing") for n in MUST_PASS - passed}
