"""RaftNode.status() as its callers read it across a change of role."""

from __future__ import annotations

import threading
from pathlib import Path

from raftcache.consensus import RaftNode, Role
from raftcache.node.replica import Replica

from tests.consensus.harness import lone_journal_config, wait_for

_FOLLOWER = 0  # pysyncobj's _RAFT_STATE.FOLLOWER


def test_a_node_that_stepped_down_never_names_itself_the_leader(tmp_path: Path) -> None:
    # pysyncobj steps down on a higher term (__setState, whose hook refreshes the status)
    # before it clears its leader. The status refreshed in between said "follower, leader:
    # me": a leadership transfer that had succeeded answered that leadership had not moved
    # (tests/integration/test_membership.py failed on it on a slow host).
    seen: list[tuple[Role, str | None]] = []
    done = threading.Event()
    node: RaftNode | None = None

    def on_role_change(old: Role, new: Role) -> None:
        if node is not None and new is Role.FOLLOWER:
            status = node.status()
            seen.append((status.role, status.leader))

    node = RaftNode(lone_journal_config(tmp_path), Replica(), on_role_change=on_role_change)
    try:
        wait_for(node.is_leader, "the single node to elect itself")
        assert node.status().leader == node.config.self_addr
        so = node._syncobj

        def step_down() -> None:  # as pysyncobj handles a request_vote of a higher term
            so._SyncObj__setState(_FOLLOWER)
            so._SyncObj__raftLeader = None
            done.set()

        node._on_tick_actions.append(step_down)
        assert done.wait(10)
        assert seen == [(Role.FOLLOWER, None)]
    finally:
        node.destroy()
