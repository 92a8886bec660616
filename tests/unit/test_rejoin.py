"""node/rejoin.py: a --join start with no identity record asks the cluster whether it is a
member already, and rejoins instead of voting if so (the real-cluster test is
tests/integration/test_amnesia.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from raftcache.consensus import MembershipView, identity
from raftcache.node import rejoin
from raftcache.node.config import NodeConfig, load

ME = "127.0.0.1:7384"
SEEDS = ["127.0.0.1:7381", "127.0.0.1:7382", "127.0.0.1:7383"]
LEADER = SEEDS[2]


def joiner(tmp_path: Path, *extra: str) -> NodeConfig:
    return load(["--raft", ME, "--join", ",".join(SEEDS), "--data-dir", str(tmp_path), *extra], {})


def view(
    address: str,
    members: set[str],
    *,
    role: str = "follower",
    has_state: bool = True,
    settled: bool = False,
    leader: str | None = LEADER,
) -> MembershipView:
    return MembershipView(address, role, leader, frozenset(members), has_state, settled)


def cluster(
    monkeypatch: pytest.MonkeyPatch, answers: dict[str, MembershipView | None]
) -> list[str]:
    """The Raft ports answer as `answers` says (None or absent: no answer)."""
    asked: list[str] = []

    def query_membership(address: str, secret: object, timeout: float) -> MembershipView | None:
        asked.append(address)
        return answers.get(address)

    monkeypatch.setattr(rejoin, "query_membership", query_membership)
    return asked


def test_a_joined_member_that_lost_its_data_dir_records_itself_rejoining(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    members = {*SEEDS, ME}
    asked = cluster(monkeypatch, {SEEDS[0]: view(SEEDS[0], members)})
    asyncio.run(rejoin.prepare(joiner(tmp_path)))
    record = identity.load(tmp_path, ME)
    assert record is not None and record.state == identity.REJOINING
    assert set(record.members) == members
    assert asked == [SEEDS[0]]  # any member with state that counts it is enough


def test_a_newcomer_takes_the_settled_leaders_word(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = cluster(
        monkeypatch,
        {
            SEEDS[0]: view(SEEDS[0], set(SEEDS)),  # a follower: "not a member" is not enough
            LEADER: view(LEADER, set(SEEDS), role="leader", settled=True),
        },
    )
    asyncio.run(rejoin.prepare(joiner(tmp_path)))
    assert identity.load(tmp_path, ME) is None  # the node then records itself a voter
    assert asked == [SEEDS[0], LEADER, SEEDS[1]]  # the leader hint next, then every seed


def test_any_seed_that_counts_it_outweighs_a_settled_leader_before_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a leader cut off from its followers still calls itself settled for a moment, with a
    # membership the others moved past: a follower that counts this node wins
    cluster(
        monkeypatch,
        {
            LEADER: view(LEADER, set(SEEDS), role="leader", settled=True),
            SEEDS[1]: view(SEEDS[1], {*SEEDS, ME}),
        },
    )
    answer = asyncio.run(rejoin.ask([LEADER, SEEDS[1]], None, ME))
    assert answer is not None and answer.member


def test_a_pod_adding_itself_takes_only_a_settled_leaders_word(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # after an add whose outcome is unknown, a follower may hold the uncommitted entry
    cluster(
        monkeypatch,
        {
            SEEDS[0]: view(SEEDS[0], {*SEEDS, ME}),
            LEADER: view(LEADER, set(SEEDS), role="leader", settled=True),
        },
    )
    answer = asyncio.run(rejoin.ask(SEEDS, None, ME, settled=True))
    assert answer is not None and not answer.member


def test_no_answer_while_the_leader_is_not_settled(monkeypatch: pytest.MonkeyPatch) -> None:
    # a leader with a membership change in flight (or its no-op not applied) may yet count
    # this node again: no verdict, ask again later
    asked = cluster(monkeypatch, {LEADER: view(LEADER, set(SEEDS), role="leader")})
    assert asyncio.run(rejoin.ask(SEEDS, None, ME)) is None
    assert sorted(asked) == sorted(SEEDS)


def test_a_node_without_state_is_no_witness(monkeypatch: pytest.MonkeyPatch) -> None:
    # a node that has never been part of a cluster lists its own --peers, not a membership
    cluster(monkeypatch, {s: view(s, {*SEEDS, ME}, has_state=False, leader=None) for s in SEEDS})
    assert asyncio.run(rejoin.ask(SEEDS, None, ME)) is None


def test_it_waits_for_an_answer_before_starting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers: dict[str, MembershipView | None] = {}
    asked = cluster(monkeypatch, answers)
    monkeypatch.setattr(rejoin, "RETRY_S", 0.01)

    async def scenario() -> None:
        task = asyncio.ensure_future(rejoin.prepare(joiner(tmp_path)))
        await asyncio.sleep(0.1)
        assert not task.done() and len(asked) >= 3  # nobody answered: still asking
        answers[SEEDS[1]] = view(SEEDS[1], {*SEEDS, ME})
        await asyncio.wait_for(task, 5)

    asyncio.run(scenario())
    record = identity.load(tmp_path, ME)
    assert record is not None and record.state == identity.REJOINING


@pytest.mark.parametrize(
    "extra", [(), ("--read-replica=true",)], ids=["record-present", "read-replica"]
)
def test_nothing_to_ask(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: tuple) -> None:
    if not extra:
        identity.store(tmp_path, identity.Identity(ME, identity.VOTER))
    asked = cluster(monkeypatch, {})
    asyncio.run(rejoin.prepare(joiner(tmp_path, *extra)))
    assert asked == []


def test_a_bootstrap_member_asks_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # --peers: consensus/raft.py's _Amnesia covers it (its state_query to the peers)
    asked = cluster(monkeypatch, {})
    cfg = load(["--raft", ME, "--peers", ",".join(SEEDS), "--data-dir", str(tmp_path)], {})
    ran: list[int] = []

    async def node_run() -> None:
        ran.append(1)

    asyncio.run(rejoin.run(node_run, cfg))
    assert ran == [1] and asked == []


def test_another_addresss_record_is_no_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    identity.store(tmp_path, identity.Identity("127.0.0.1:9999", identity.VOTER))
    asked = cluster(monkeypatch, {SEEDS[0]: view(SEEDS[0], {*SEEDS, ME})})
    asyncio.run(rejoin.prepare(joiner(tmp_path)))
    record = identity.load(tmp_path, ME)
    assert record is not None and record.state == identity.REJOINING and asked == [SEEDS[0]]
