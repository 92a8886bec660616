"""node/statefulset.py and node/rejoin.py: what a StatefulSet pod scaled up beyond
--replicas does before and after its node starts (the container test is
tests/deploy/test_scaling.py); plain --join starts: tests/unit/test_rejoin.py."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from raftcache.consensus import MembershipView, identity
from raftcache.node import rejoin, statefulset
from raftcache.node.config import NodeConfig, load

DOMAIN = "raftcache-peers.raftcache.svc.cluster.local"
ME = f"raftcache-3.{DOMAIN}:7380"


def pod(tmp_path: Path, name: str = "raftcache-3", **env: str) -> NodeConfig:
    return load(
        [],
        {
            "RAFTCACHE_POD_NAME": name,
            "RAFTCACHE_REPLICAS": "3",
            "RAFTCACHE_PEER_TEMPLATE": "{pod}." + DOMAIN + ":7380",
            "RAFTCACHE_RAFT_SECRET": "s",
            "RAFTCACHE_LISTEN": "0.0.0.0:6380",
            "RAFTCACHE_REQUIREPASS": "pw",
            "RAFTCACHE_DATA_DIR": str(tmp_path),
            **env,
        },
    )


def answer(monkeypatch: pytest.MonkeyPatch, members: set[str]) -> list[str]:
    """Every Raft port answers as a settled leader whose voters are `members`."""
    asked: list[str] = []

    def query_membership(address: str, secret: object, timeout: float) -> MembershipView:
        asked.append(address)
        return MembershipView(address, "leader", address, frozenset(members), True, True)

    monkeypatch.setattr(rejoin, "query_membership", query_membership)
    return asked


def test_a_new_pod_that_is_no_member_joins_as_a_newcomer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = answer(monkeypatch, {f"raftcache-{i}.{DOMAIN}:7380" for i in range(3)})
    asyncio.run(rejoin.prepare(pod(tmp_path)))
    assert identity.load(tmp_path, ME) is None  # the node records itself a voter as --join
    # over the Raft ports of the --join addresses, every one asked before "newcomer"
    assert asked == [f"raftcache-{i}.{DOMAIN}:7380" for i in range(3)]


def test_a_member_on_a_new_volume_rejoins_instead_of_voting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    answer(monkeypatch, {ME, *(f"raftcache-{i}.{DOMAIN}:7380" for i in range(3))})
    asyncio.run(rejoin.prepare(pod(tmp_path)))
    record = identity.load(tmp_path, ME)
    assert record is not None and record.state == identity.REJOINING


def test_a_volume_that_knows_the_pod_is_left_to_the_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    identity.store(tmp_path, identity.Identity(ME, identity.VOTER))
    asked = answer(monkeypatch, {ME})
    asyncio.run(rejoin.prepare(pod(tmp_path)))
    assert asked == []
    assert identity.load(tmp_path, ME) == identity.Identity(ME, identity.VOTER)


def test_bootstrap_pods_run_the_node_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    asked = answer(monkeypatch, set())
    ran: list[int] = []

    async def node_run() -> None:
        ran.append(1)

    asyncio.run(rejoin.run(node_run, pod(tmp_path, "raftcache-1")))
    assert ran == [1] and asked == []  # --peers: nothing to ask


def test_join_credentials_are_a_basic_auth_secret_volume(tmp_path: Path) -> None:
    assert statefulset.read_credentials("") is None
    assert statefulset.read_credentials(str(tmp_path / "absent")) is None
    (tmp_path / "username").write_text("join\n")
    assert statefulset.read_credentials(str(tmp_path)) is None  # no password
    (tmp_path / "password").write_text("pw")
    assert statefulset.read_credentials(str(tmp_path)) == ("join", "pw")


def test_without_credentials_a_pod_that_is_no_member_says_how_to_add_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    answer(monkeypatch, {f"raftcache-{i}.{DOMAIN}:7380" for i in range(3)})
    cfg = pod(tmp_path, RAFTCACHE_JOIN_CREDENTIALS=str(tmp_path / "none"))
    asyncio.run(asyncio.wait_for(statefulset.join(cfg), 5))
    assert f"raftcache member add {ME}" in capsys.readouterr().out


def test_a_member_has_nothing_to_join(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    asked = answer(monkeypatch, {ME})
    (tmp_path / "username").write_text("join")
    (tmp_path / "password").write_text("pw")
    cfg = pod(tmp_path, RAFTCACHE_JOIN_CREDENTIALS=str(tmp_path))
    asyncio.run(asyncio.wait_for(statefulset.join(cfg), 5))
    assert len(asked) == 1
