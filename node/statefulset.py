"""A StatefulSet pod scaled up beyond --replicas joins the running cluster by itself.

Pods 0..replicas-1 bootstrap the cluster with --peers (node/config.py). A pod with a higher
ordinal (after `kubectl scale`) is derived --join (the bootstrap pods) and this module, run
by `raftcache-node` around the node, does two things (deploy/DESIGN.md "Scaling"):

1. **Before the node starts**, on a volume with no identity record for this address (a new
   pod, or one whose volume was lost): ask the cluster (Cluster.Status, open to every
   caller) whether this address is a member. A member that comes back empty must not vote
   as a newcomer would: it records itself as `rejoining` (consensus/identity.py), so the
   node's amnesia protection has the leader remove and re-add it before it votes. The node
   does not start until the cluster has answered.
2. **Once it runs**, while this address is not a member: `AddMember` of its own Raft address
   through the leader, as the user in --join-credentials (a kubernetes.io/basic-auth Secret
   volume; the user needs `+cluster|meet`), retried while the leader refuses (another change
   in progress, a voter still catching up): the leader's checks are what serialise several
   pods joining at once. Without credentials it says once how to add it by hand.

Scaling down is not automatic: a stopping pod cannot tell a scale-down from a restart, so
the operator removes the dropped ordinal (`raftcache member remove`) after scaling
(README "Deploying on Kubernetes").
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import structlog
from raftcache.consensus import identity
from raftcache.node.config import NodeConfig

if TYPE_CHECKING:
    from raftcache.client import TlsConfig

_log = structlog.get_logger("raftcache.node.statefulset")

RETRY_S = 2.0
"""Between two tries to read the membership or to be added."""
SAY_EVERY_S = 30.0
"""How often a pod still waiting says so."""


async def run(node_run: Callable[[], Awaitable[None]], config: NodeConfig) -> None:
    """Run the node (`node_run`: Node.run), with a scaled-up pod's checks around it."""
    if not config.statefulset_seeds:
        await node_run()
        return
    await _interruptible(prepare(config))
    joiner = asyncio.create_task(join(config))
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
    """Before the Raft node exists: a member whose volume is new must rejoin, not join."""
    directory = config.raft.identity_dir
    me = config.raft.self_addr
    if directory is None or identity.load(directory, me) is not None:
        return  # this volume knows this node: the node's own start-up decides
    members = await _wait_for_members(config, "before starting (is this pod a member already?)")
    if me in members:
        _log.warning(
            "this pod is a member but its volume holds no state for it (a new volume): it "
            "rejoins through the leader (removed, re-added, caught up) before it votes",
            members=sorted(members),
        )
        identity.store(directory, identity.Identity(me, identity.REJOINING, tuple(members)))
    else:
        _log.info("a new member: joining the cluster", members=sorted(members))


async def join(config: NodeConfig) -> None:
    """While this pod is not a member, ask the leader to add it."""
    me = config.raft.self_addr
    credentials = read_credentials(config.join_credentials)
    said = 0.0
    while True:
        members = await _wait_for_members(config, "to see whether this pod is a member")
        if me in members:
            _log.info("this pod is a member", members=sorted(members))
            return
        if credentials is None:
            _log.warning(
                f"not a member yet and no join credentials ({config.join_credentials or 'none'}"
                f"/username, password): add it with `raftcache member add {me}`",
                members=sorted(members),
            )
            return
        outcome = await _add(config, credentials)
        if outcome is None:
            continue  # added (or unknown): read the membership again
        now = time.monotonic()
        if now - said >= SAY_EVERY_S:
            said = now
            _log.info("not added yet; trying again", reason=outcome)
        await asyncio.sleep(RETRY_S)


async def _add(config: NodeConfig, credentials: tuple[str, str]) -> str | None:
    """One AddMember of this pod: None once it went through, else why not."""
    from raftcache.client import AsyncClient
    from raftcache.client.errors import (
        AuthenticationError,
        ConditionFailedError,
        OutcomeUnknownError,
        PermissionDeniedError,
        RaftcacheError,
    )

    me = config.raft.self_addr
    user, password = credentials
    client = AsyncClient(
        list(config.statefulset_seeds),
        tls=_client_tls(config),
        user=user,
        password=password,
        timeout=30,
    )
    try:
        await client.add_member(me, timeout=30)
        _log.info("added to the cluster through the leader", raft_addr=me)
        return None
    except (AuthenticationError, PermissionDeniedError) as exc:
        _log.error(
            f"cannot add this pod as user {user!r} ({exc}): the user needs +cluster|meet; "
            f"or add it with `raftcache member add {me}`"
        )
        await asyncio.sleep(SAY_EVERY_S - RETRY_S)
        return str(exc)
    except OutcomeUnknownError:
        return None
    except ConditionFailedError as exc:
        return str(exc)  # another change in progress, a voter catching up...
    except RaftcacheError as exc:
        return str(exc)
    finally:
        await client.close()


def read_credentials(directory: str) -> tuple[str, str] | None:
    """(username, password) from a basic-auth Secret volume, or None when there is none."""
    if not directory:
        return None
    try:
        user = (Path(directory) / "username").read_text().strip()
        password = (Path(directory) / "password").read_text().strip()
    except OSError:
        return None
    return (user, password) if user and password else None


def _client_tls(config: NodeConfig) -> TlsConfig | None:
    from raftcache.client import TlsConfig

    tls = config.tls
    if tls is None:
        return None
    mutual = bool(tls.client_ca_file)  # the nodes ask for client certificates: show ours
    return TlsConfig(
        ca_file=tls.ca_file or tls.client_ca_file or None,
        cert_file=tls.cert_file if mutual else None,
        key_file=tls.key_file if mutual else None,
    )


async def _wait_for_members(config: NodeConfig, why: str) -> frozenset[str]:
    said = time.monotonic()
    while True:
        members = await members_of(config.statefulset_seeds, _client_tls(config))
        if members is not None:
            return members
        if time.monotonic() - said >= SAY_EVERY_S:
            said = time.monotonic()
            _log.info(
                f"waiting for the cluster's leader {why}", seeds=list(config.statefulset_seeds)
            )
        await asyncio.sleep(RETRY_S)


async def members_of(seeds: Sequence[str], tls: TlsConfig | None) -> frozenset[str] | None:
    """The voters' Raft addresses as the leader reports them (Cluster.Status, which needs no
    credentials), or None when no seed knows a leader that answers."""
    from raftcache.v1 import cluster_pb2, cluster_pb2_grpc

    credentials = tls.credentials() if tls is not None else None
    asked: set[str] = set()
    queue = list(seeds)
    while queue:
        address = queue.pop(0)
        if address in asked:
            continue
        asked.add(address)
        channel = (
            grpc.aio.secure_channel(address, credentials)
            if credentials is not None
            else grpc.aio.insecure_channel(address)
        )
        try:
            status = await cluster_pb2_grpc.ClusterStub(channel).Status(
                cluster_pb2.StatusRequest(), timeout=2
            )
        except grpc.aio.AioRpcError:
            continue
        finally:
            await channel.close()
        if status.role == cluster_pb2.LEADER:
            return frozenset(m.raft_addr for m in status.members)
        if status.leader_client_addr:
            queue.insert(0, status.leader_client_addr)
    return None
