"""Pending rejoins, as replicated state: the amnesia rejoin's intent survives its leader.

A member that came back without its Raft state is removed and re-added by the leader
(consensus/raft.py `_Amnesia`; consensus/DESIGN.md "Amnesia"). If that leader failed
between the removal and the re-add, nothing re-added the node: it stayed out, a
non-voter, until an operator ran `member add` (a CI run's fresh cluster start never got
ready that way: a slow bootstrap member is treated like a wiped one). Now the leader first
records the intent here (`raftcache.rejoin.pending ADDR`), then removes; any later leader
that finds a pending address outside the voters re-adds it, and whoever completes the
re-add clears it (`raftcache.rejoin.clear ADDR`). An operator's removal clears it first, so
a node removed on purpose is never put back.

One entry of an internal database (REJOIN_DB, above the 16 Redis databases, so DBSIZE,
SCAN, KEYS, eviction and FLUSHALL skip it): the pending Raft addresses, sorted, one per
line. Snapshots, digests and backups carry it. Clients cannot call these commands
(`acl.client_may_call`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from raftcache.node.keyspace.db import DB_PREFIX, Db
from raftcache.node.keyspace.table import command

if TYPE_CHECKING:
    from raftcache.node.state_machine import StateMachine

REJOIN_DB: Final = 0xFC
PENDING_KEY: Final = DB_PREFIX + bytes((REJOIN_DB,)) + b"pending"
PENDING: Final = b"raftcache.rejoin.pending"
CLEAR: Final = b"raftcache.rejoin.clear"


def read_pending(sm: StateMachine) -> frozenset[str]:
    """The Raft addresses whose re-add is pending, as this replica applied them."""
    entry = sm._data.get(PENDING_KEY)
    if entry is None or not isinstance(entry[0], bytes) or not entry[0]:
        return frozenset()
    return frozenset(entry[0].decode("latin-1").split("\n"))


def _store(db: Db, pending: frozenset[str]) -> None:
    if pending:
        db.sm._put(PENDING_KEY, "\n".join(sorted(pending)).encode("latin-1"), 0)
    elif PENDING_KEY in db.sm._data:
        db.sm._drop(PENDING_KEY, "delete")


@command("raftcache.rejoin.pending", 2, "write admin internal", keys=(0, 0, 0), group="server")
def _pending(db: Db, argv: list[bytes]) -> int:
    """raftcache.rejoin.pending ADDR: 1 if ADDR was not pending before, else 0."""
    pending = read_pending(db.sm)
    address = argv[1].decode("latin-1")
    if address in pending:
        return 0
    _store(db, pending | {address})
    return 1


@command("raftcache.rejoin.clear", 2, "write admin internal", keys=(0, 0, 0), group="server")
def _clear(db: Db, argv: list[bytes]) -> int:
    """raftcache.rejoin.clear ADDR: 1 if ADDR was pending, else 0."""
    pending = read_pending(db.sm)
    address = argv[1].decode("latin-1")
    if address not in pending:
        return 0
    _store(db, pending - {address})
    return 1
