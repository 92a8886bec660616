"""A StatefulSet pod scaled up beyond --replicas adds itself to the running cluster.

Pods 0..replicas-1 bootstrap the cluster with --peers (node/config.py). A pod with a higher
ordinal (after `kubectl scale`) is derived --join (the bootstrap pods), so before its node
starts it goes through node/rejoin.py like every --join start: with no identity record it
asks the cluster whether it is a member already, and a member on a new volume records
itself `rejoining` instead of voting as a newcomer. What this module adds, run by
node/rejoin.py's `run` once the node runs (deploy/DESIGN.md "Scaling"):

**While this address is not a member**: `AddMember` of its own Raft address through the
leader, as the user in --join-credentials (a kubernetes.io/basic-auth Secret volume; the
user needs `+cluster|meet`), retried while the leader refuses (another change in progress,
a voter still catching up): the leader's checks are what serialise several pods joining at
once. Without credentials it says once how to add it by hand.

Scaling down is not automatic: a stopping pod cannot tell a scale-down from a restart, so
the operator removes the dropped ordinal (`raftcache member remove`) after scaling
(README "Deploying on Kubernetes").
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
from raftcache.node import rejoin
from raftcache.node.config import NodeConfig

if TYPE_CHECKING:
    from raftcache.client import TlsConfig

_log = structlog.get_logger("raftcache.node.statefulset")

RETRY_S = 2.0
"""Between two tries to read the membership or to be added."""
SAY_EVERY_S = 30.0
"""How often a pod still waiting says so."""


async def join(config: NodeConfig) -> None:
    """While this pod is not a member, ask the leader to add it."""
    me = config.raft.self_addr
    credentials = read_credentials(config.join_credentials)
    said = 0.0
    while True:
        # A settled leader's word only: after an add whose outcome is unknown, a follower
        # holding the appended but uncommitted entry would say "member", and a new leader
        # without it rolls it back: this pod would run outside the cluster for good.
        answer = await rejoin.wait_for_membership(
            config, "to see whether this pod is a member", settled=True
        )
        members = answer.members
        if answer.member:
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
