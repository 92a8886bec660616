"""Changing users from any front-end: ACL SETUSER/DELUSER on the Redis port and the Cluster
SetUser/DeleteUsers RPCs share these.

The rules are checked here first against this node's users (a bad rule is refused before
anything is proposed), clear-text passwords are replaced by their digests, and then:

- on the leader the change is proposed (after the node's seed users, if those are still
  to be stored, so a first ACL SETUSER cannot discard --users-file);
- on a follower it is relayed to the leader's Cluster RPC, naming the caller's user with
  the node's forwarding proof; the leader checks that user's permission again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

from raftcache.node import acl
from raftcache.node.auth import Auth, new_forward_key
from raftcache.node.keyspace.reply import CommandError, Error, ReplyT
from raftcache.v1 import cluster_pb2

if TYPE_CHECKING:
    from raftcache.node.engine import Engine


def from_wire(text: str) -> str:
    """A gRPC string (UTF-8) as the nodes keep names and rules: the latin-1 reading of its
    bytes, which is what the same text sent over RESP or memcached becomes."""
    return text.encode("utf-8").decode("latin-1")


def to_wire(text: str) -> str:
    """A name or rule as a gRPC string (its bytes read as UTF-8)."""
    return text.encode("latin-1").decode("utf-8", "replace")


def checked_rules(auth: Auth, name: str, rules: Sequence[bytes]) -> list[str]:
    """The rules as they enter the log (digests only), after applying them to a copy of the
    user here; AclError with Redis's text if one is not valid."""
    acl.with_rules(auth.acl().users.get(name), name, [r.decode("latin-1") for r in rules])
    return acl.hash_passwords(rules)


async def _applied_here(auth: Auth, before: acl.Acl, wait_s: float = 1.0) -> None:
    """After the leader committed a change, wait (briefly) until this follower applied it
    too, so that an AUTH right after ACL SETUSER on the same node sees the new user. A
    change that left the users as they were is not waited for beyond `wait_s`."""
    deadline = asyncio.get_running_loop().time() + wait_s
    while auth.acl() is before and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.005)


async def _bootstrap_first(engine: Engine, auth: Auth) -> None:
    call = auth.bootstrap_call()
    if call is not None:
        reply = await engine.write(call, 0)
        if isinstance(reply, Error):
            raise CommandError(str(reply))


async def set_user(engine: Engine, auth: Auth, name: str, rules: Sequence[bytes]) -> ReplyT:
    """ACL SETUSER name rules...: OK, or Redis's error reply."""
    try:
        hashed = checked_rules(auth, name, rules)
    except acl.AclError as exc:
        return Error(exc.text)
    if not engine.is_leader():
        before = auth.acl()
        request = cluster_pb2.SetUserRequest(name=to_wire(name), rules=[to_wire(r) for r in hashed])
        await engine.relay_cluster("SetUser", request)
        await _applied_here(auth, before)
        return b"OK"
    await _bootstrap_first(engine, auth)
    argv = [b"raftcache.acl.setuser", new_forward_key(), name.encode("latin-1")]
    return await engine.write(argv + [r.encode("latin-1") for r in hashed], 0)


async def delete_users(engine: Engine, auth: Auth, names: Sequence[str]) -> ReplyT:
    """ACL DELUSER name...: how many existed, or Redis's error reply."""
    if "default" in names:
        return Error("ERR The 'default' user cannot be removed")
    if not engine.is_leader():
        before = auth.acl()
        response = await engine.relay_cluster(
            "DeleteUsers", cluster_pb2.DeleteUsersRequest(names=[to_wire(n) for n in names])
        )
        if response.deleted:
            await _applied_here(auth, before)
        return int(response.deleted)
    await _bootstrap_first(engine, auth)
    argv = [b"raftcache.acl.deluser", new_forward_key()]
    return await engine.write(argv + [n.encode("latin-1") for n in names], 0)


def get_user(auth: Auth, name: str) -> cluster_pb2.GetUserResponse:
    user = auth.acl().users.get(name)
    if user is None:
        return cluster_pb2.GetUserResponse(found=False)
    return cluster_pb2.GetUserResponse(
        found=True,
        flags=user.flags(),
        passwords=list(user.passwords),
        commands=to_wire(" ".join(user.command_rules)),
        keys=to_wire(user.key_rules()),
        channels=to_wire(user.channel_rules()),
    )
