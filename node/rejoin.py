"""A node started with --join asks the cluster, before it starts, whether it is a member.

`--join` names an existing cluster's voters; the leader then adds the node. After a
restart the node's identity record (consensus/identity.py) and Raft state say what it is.
But a node that lost its data dir (identity record included: a new volume, a wiped disk)
and is started again with the same --join line looks like a newcomer, and a newcomer votes
as soon as it is added. If the cluster still counts its address as a voter, it is not a
newcomer: it is an amnesiac member, and its vote could elect a leader that lacks writes it
had acknowledged (consensus/DESIGN.md "Amnesia").

So every --join start with no identity record for this address (plain `raftcache-node
--join ...` and StatefulSet pods beyond --replicas alike) first asks the --join addresses
over the Raft port (`query_membership`: a pysyncobj utility command, which needs the Raft
secret but not membership) and follows their leader hint:

- a node with Raft state that counts this address as a voter: it is (or was until a removal
  still in flight) a member. It records itself `rejoining`, so the node's amnesia
  protection has the leader remove and re-add it, and it votes only once caught up.
- the leader, settled (its no-op applied, no membership change uncommitted), that does not
  count it: a newcomer; the node starts as --join always did.
- no such answer (no leader, the seeds unreachable): it waits and asks again. It does not
  start meanwhile; it could not be added anyway (`AddMember` needs its Raft port to answer).

Asking before the node binds its Raft port is what makes "a member" mean "a member before
this process started": an operator cannot add it in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import structlog
from raftcache.consensus import identity, query_membership
from raftcache.node.config import NodeConfig

_log = structlog.get_logger("raftcache.node.rejoin")

RETRY_S = 2.0
"""Between two rounds of questions."""
SAY_EVERY_S = 30.0
"""How often a node still waiting says so."""
QUERY_TIMEOUT_S = 2.0
"""For one node's answer."""


@dataclass(frozen=True)
class Membership:
    """What the cluster answered: whether this address is a voter, and the voters."""

    member: bool
    members: frozenset[str]
    source: str  # the Raft address that answered


async def run(node_run: Callable[[], Awaitable[None]], config: NodeConfig) -> None:
    """Run the node (`node_run`: Node.run) with the checks of a --join start around it."""
    if config.joining and not config.raft.read_replica:
        await _interruptible(prepare(config))
    if not config.statefulset_seeds:
        await node_run()
        return
    from raftcache.node import statefulset

    joiner = asyncio.create_task(statefulset.join(config))
    joiner.add_done_callback(_joined)
    try:
        await node_run()
    finally:
        joiner.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await joiner


async def _interruptible(step: Awaitable[None]) -> None:
    """`step`, ended by SIGTERM/SIGINT (the node's own handlers are not installed yet, and a
    container's PID 1 ignores signals it has no handler for)."""
    task = asyncio.ensure_future(step)
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, task.cancel)
            installed.append(sig)
    try:
        await task
    except asyncio.CancelledError:
        raise SystemExit(0) from None
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


async def prepare(config: NodeConfig) -> None:
    """Before the Raft node exists: a member that comes back empty must rejoin, not join."""
    directory = config.raft.identity_dir
    me = config.raft.self_addr
    if not config.joining or config.raft.read_replica or directory is None:
        return
    if identity.load(directory, me) is not None:
        return  # this data dir knows this node: the node's own start-up decides
    answer = await wait_for_membership(config, "before starting (is this node a member?)")
    if answer.member:
        _log.warning(
            "this node is a member but its data dir holds no state for it (a new volume, a "
            "wiped disk): it rejoins through the leader (removed, re-added, caught up) "
            "before it votes",
            members=sorted(answer.members),
            answered_by=answer.source,
        )
        identity.store(directory, identity.Identity(me, identity.REJOINING, tuple(answer.members)))
    else:
        _log.info("a new member: joining the cluster", members=sorted(answer.members))


def _joined(task: asyncio.Task[None]) -> None:
    """A pod's self-add that died says so (it would otherwise never join, silently)."""
    if not task.cancelled() and task.exception() is not None:
        _log.error(
            "adding this pod to the cluster failed; add it with `raftcache member add`",
            error=repr(task.exception()),
        )


async def wait_for_membership(config: NodeConfig, why: str, *, settled: bool = False) -> Membership:
    """`ask` until it has an answer, saying every SAY_EVERY_S that it is still waiting."""
    said = time.monotonic()
    while True:
        answer = await ask(config.raft.peers, config.raft.secret, config.raft.self_addr, settled)
        if answer is not None:
            return answer
        if time.monotonic() - said >= SAY_EVERY_S:
            said = time.monotonic()
            _log.info(f"waiting for the cluster's leader {why}", join=list(config.raft.peers))
        await asyncio.sleep(RETRY_S)


async def ask(
    seeds: Sequence[str], secret: str | None, me: str, settled: bool = False
) -> Membership | None:
    """Whether `me` is a voter, as the nodes at the Raft addresses `seeds` (and the leaders
    they name) say; None when none can tell yet.

    Asymmetric on purpose (`settled` False, before a node starts): any node with Raft state
    that counts `me` is enough to say "member" (the safe side: a node wrongly taken for a
    member is only removed and re-added once); "not a member" takes a settled leader's word,
    and only once every seed that answers was asked (a leader cut off from its followers
    still calls itself settled for up to a fallback timeout; a follower that holds the newer
    membership then wins). `settled` True (a pod that adds itself): both answers take a
    settled leader's word, since an appended but uncommitted add may yet be rolled back."""
    asked: set[str] = set()
    queue = list(seeds)
    newcomer: Membership | None = None
    while queue:
        address = queue.pop(0)
        if address in asked or address == me:
            continue
        asked.add(address)
        view = await asyncio.to_thread(query_membership, address, secret, QUERY_TIMEOUT_S)
        if view is None:
            continue
        if view.has_state and me in view.members and (view.settled or not settled):
            return Membership(True, view.members, address)
        if view.settled:
            if settled:
                return Membership(me in view.members, view.members, address)
            newcomer = newcomer or Membership(False, view.members, address)
        if view.leader and view.leader not in asked:
            queue.insert(0, view.leader)
    return newcomer
