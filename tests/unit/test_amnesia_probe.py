"""consensus/raft.py's _Amnesia on its own: when a node with no Raft state and no identity
record may vote (issue 15 item 5). The real-cluster scenarios are
tests/integration/test_amnesia.py; these pin the two rules a CI run showed were needed:
a wiped member and a slow bootstrap member elected each other and lost an acknowledged
write, because the wiped member counted the slow one's query (sent after it had heard a
term) as a bootstrap peer's, and the slow one counted the wiped member's stale "empty"
reply although it had heard a term itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from raftcache.consensus import identity
from raftcache.consensus.raft import _Amnesia

ME, PEER1, PEER2 = "127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"


@dataclass
class FakeSyncObj:
    raftCurrentTerm: int = 0
    voting: bool = False
    raftLastApplied: int = 0
    sent: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    on_state_reply: Any = None
    on_state_query: Any = None
    on_rejoin_request: Any = None
    on_rejoined: Any = None

    def __post_init__(self) -> None:
        self._SyncObj__otherNodes = [PEER1, PEER2]
        self._SyncObj__transport = SimpleNamespace(send=lambda n, m: self.sent.append((n, m)))

    def _getLeader(self) -> None:
        return None


def probing(tmp_path: Path) -> tuple[_Amnesia, FakeSyncObj]:
    """A bootstrap member (no --join) starting with no Raft state and no record."""
    config = SimpleNamespace(identity_dir=tmp_path, self_addr=ME, read_replica=False, joining=False)
    node = SimpleNamespace(
        config=config,
        status=lambda: SimpleNamespace(members=(ME, PEER1, PEER2)),
        rejoin_intents=None,
    )
    so = FakeSyncObj()
    amnesia = _Amnesia(node, so)  # type: ignore[arg-type]
    assert not so.voting and identity.load(tmp_path, ME).state == identity.PROBING  # type: ignore[union-attr]
    return amnesia, so


def peer(address: str) -> SimpleNamespace:
    return SimpleNamespace(address=address)


def test_a_bootstrap_peer_that_asked_first_lets_a_slow_member_vote(tmp_path: Path) -> None:
    _, so = probing(tmp_path)
    so.on_state_query(peer(PEER1), 0)  # a peer without state asked: a bootstrap together
    so.on_state_reply(peer(PEER1), True)  # ...and formed the cluster meanwhile
    assert so.voting
    assert identity.load(tmp_path, ME).state == identity.VOTER  # type: ignore[union-attr]


def test_a_query_from_a_node_that_heard_a_term_is_no_bootstrap_peers(tmp_path: Path) -> None:
    _, so = probing(tmp_path)
    so.on_state_query(peer(PEER1), 1)  # it heard term 1 already: past the bootstrap
    so.on_state_reply(peer(PEER1), True)
    assert not so.voting  # a cluster exists and this node may have been in it: rejoin
    assert identity.load(tmp_path, ME).state == identity.REJOINING  # type: ignore[union-attr]


def test_a_node_that_heard_a_term_never_concludes_no_peer_has_state(tmp_path: Path) -> None:
    amnesia, so = probing(tmp_path)
    so.on_state_reply(peer(PEER1), False)  # a stale "empty" (PEER1 before it was wiped)
    so.raftCurrentTerm = 1  # then PEER2 campaigned or led: a cluster with state exists
    for now in (0.0, 10.0, 100.0):  # long past the bootstrap grace
        amnesia.tick(now)
    assert not so.voting
    assert identity.load(tmp_path, ME).state == identity.REJOINING  # type: ignore[union-attr]


def test_a_majority_without_state_is_a_new_cluster(tmp_path: Path) -> None:
    amnesia, so = probing(tmp_path)
    so.on_state_reply(peer(PEER1), False)
    so.on_state_reply(peer(PEER2), False)
    amnesia.tick(0.0)
    assert so.voting
