"""pysyncobj's utility commands are refused on the Raft port (consensus/peer_guard.py).

pysyncobj answers a list sent as the first message of an incoming connection (what its
`syncobj_admin` tool sends: `status`, `add`, `remove`, `set_version`, `transfer`) before
it asks who is calling. Anyone holding the Raft secret (or anyone at all on loopback,
where raftcache runs without one) could add or remove voters behind
`change_membership`'s checks, switch the code version or move leadership. Now each is
answered with why it is refused, logged as a warning naming the caller and counted
(`refused_admin`); nothing is appended, and raftcache's own `raftcache_members` still
answers.

The commands are sent as `syncobj_admin` sends them: its own `TcpUtility` client, which
frames, encrypts and introduces itself exactly as the tool does.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

import pytest
import structlog
from pysyncobj import syncobj_admin
from pysyncobj.utility import TcpUtility
from raftcache.chaos.local_cluster import free_port
from raftcache.consensus import RaftNode, query_membership
from raftcache.consensus.peer_guard import ADMIN_REFUSED, REASONS
from raftcache.node.replica import Replica

from tests.consensus.harness import (
    SecretTrio,
    after_next_tick,
    keys,
    missing_keys,
    secret_config,
    wait_for,
    write_keys,
)

SECRET = "admin-commands-test-secret"


def admin(address: str, message: list[Any], secret: str | None = SECRET) -> Any:
    """Send `message` as syncobj_admin does (its TcpUtility), with a timeout instead of its
    900 s; the answer."""
    return TcpUtility(secret, 10.0).executeCommand(address, message)


def test_pysyncobj_admin_commands_are_refused_and_change_nothing(trio: SecretTrio) -> None:
    leader = trio.leader()
    first = write_keys(leader, keys("first-", 20))
    members = tuple(sorted(trio.addrs))
    wait_for(lambda: all(n.status().members == members for n in trio.nodes), "three voters")
    follower = next(n for n in trio.nodes if n is not leader)
    other = next(a for a in trio.addrs if a != leader.config.self_addr)
    absent = f"127.0.0.1:{free_port()}"
    after_next_tick(leader)  # its status counts every write acknowledged above
    before = leader.status()
    enabled = leader._syncobj.getStatus()["enabled_code_version"]

    # What `syncobj_admin -conn X -pass S -add|-remove|-set_version|-transfer|-status`
    # sends, to the leader (where each would take effect) and to a follower.
    commands: list[tuple[list[Any], str]] = [
        (["add", absent], "raftcache member add"),
        (["remove", other], "raftcache member remove"),
        (["remove", follower.config.self_addr], "raftcache member remove"),
        (["set_version", enabled], "raftcache upgrade"),
        (["set_version", enabled + 1], "raftcache upgrade"),
        (["transfer", other], "raftcache leader transfer"),
        (["transfer", ""], "raftcache leader transfer"),
        (["status"], "raftcache status"),
        (["no_such_command", "x"], "not a command raftcache answers"),
    ]
    with structlog.testing.capture_logs() as logs:
        for target in (leader, follower):
            for message, hint in commands:
                answer = admin(target.config.self_addr, list(message))
                words = " ".join(str(w) for w in [message[0].upper(), *message[1:]])
                assert isinstance(answer, str), (message, answer)
                assert answer.startswith(f"FAIL {words}: {ADMIN_REFUSED}: "), answer
                assert hint in answer, answer
    for target in (leader, follower):
        assert target.bad_frames.counts()["refused_admin"] == len(commands)
        assert {b.reason for b in target.bad_frames.recent} == {"refused_admin"}
        assert all(b.peer.endswith("(not identified yet)") for b in target.bad_frames.recent)
    # Logged as a warning naming the caller, once per caller host and 10 s (per node).
    refused = [e for e in logs if e.get("reason") == "refused_admin"]
    assert len(refused) == 2, refused
    assert all(e["log_level"] == "warning" for e in refused), refused
    assert all(e["peer"].startswith("127.0.0.1:") for e in refused), refused
    assert "'ADD " in refused[0]["detail"] and "raftcache_members" in refused[0]["detail"]

    time.sleep(1.0)  # an appended change, version switch or transfer would show by now
    after = leader.status()
    assert leader.is_leader() and after.term == before.term
    assert after.commit_index == before.commit_index, "something was appended"
    assert all(n.status().members == members for n in trio.nodes)
    assert leader._syncobj.getStatus()["enabled_code_version"] == enabled

    # The cluster goes on committing, and raftcache's own utility command still answers.
    second = write_keys(leader, keys("second-", 20))
    wait_for(lambda: all(not missing_keys(r, first + second) for r in trio.replicas), "every key")
    for addr in trio.addrs:
        view = query_membership(addr, SECRET)
        assert view is not None and view.members == frozenset(members), view
        assert view.has_state and view.leader == leader.config.self_addr
    assert all(n.bad_frames.counts()["refused_admin"] == len(commands) for n in (leader, follower))
    assert trio.fatal == [[], [], []]


def test_syncobj_admin_prints_why(trio: SecretTrio, monkeypatch: pytest.MonkeyPatch) -> None:
    """The tool itself, as an operator would run it: it prints the refusal."""
    leader = trio.leader()
    monkeypatch.setattr(syncobj_admin, "TcpUtility", functools.partial(TcpUtility, timeout=10.0))
    conn = ["-conn", leader.config.self_addr, "-pass", SECRET]
    printed = syncobj_admin.executeAdminCommand([*conn, "-add", f"127.0.0.1:{free_port()}"])
    assert printed.startswith("FAIL ADD 127.0.0.1:"), printed
    assert f"{ADMIN_REFUSED}: use `raftcache member add`" in printed, printed
    printed = syncobj_admin.executeAdminCommand([*conn, "-transfer"])
    assert f"{ADMIN_REFUSED}: use `raftcache leader transfer`" in printed, printed
    assert leader.is_leader() and len(leader.status().members) == 3


def test_refused_without_a_secret_too(tmp_path: Path) -> None:
    """On loopback raftcache runs without a Raft secret: anyone on the host could send these."""
    addr = f"127.0.0.1:{free_port()}"
    node = RaftNode(secret_config(addr, (), None, None), Replica())
    try:
        wait_for(node.is_leader, "the single node to elect itself")
        wait_for(lambda: node.status().commit_index >= 1, "its no-op")
        before = node.status()
        for message in (["add", f"127.0.0.1:{free_port()}"], ["set_version", 0], [], [["x"]]):
            answer = admin(addr, message, secret=None)
            assert isinstance(answer, str) and ADMIN_REFUSED in answer, (message, answer)
        assert node.bad_frames.counts() == {r: (4 if r == "refused_admin" else 0) for r in REASONS}
        view = query_membership(addr, None)
        assert view is not None and view.members == frozenset({addr}) and view.settled
        time.sleep(0.5)
        assert node.status().commit_index == before.commit_index
        assert node.status().members == (addr,)
        write_keys(node, keys("after-", 5))
    finally:
        node.destroy()
