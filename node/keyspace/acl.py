"""The users, as replicated state: ACL SETUSER/DELUSER and the bootstrap from --users-file.

- The users live in one entry of an internal database (USERS_DB): their ACL LIST lines,
  passwords as SHA-256 digests only. Snapshots, digests, followers and backups carry them;
  no user command reaches the entry; DBSIZE/SCAN/KEYS, eviction and FLUSHALL skip it.
- Until the entry exists a cluster has Redis's default user (`on nopass ~* &* +@all`), or
  the users a node was started with (--users-file, --requirepass): the first leader
  proposes those (`raftcache.acl.bootstrap`), which applies only while no users are stored,
  so the first bootstrap wins and later ones (a restarted node with another file) change
  nothing.
- A second entry holds the cluster's forwarding key: 32 random bytes the leader stamps into
  the first ACL command. A follower proves with it that a call it relays to the leader on
  behalf of a user comes from a member (node/auth.py), so that a client cannot claim to be
  a forwarding follower.
- These commands are `internal`: front-ends refuse them from clients (`client_may_call`),
  so the only way in is through ACL SETUSER/DELUSER, which hash passwords first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from raftcache.node import acl
from raftcache.node.keyspace.db import DB_PREFIX, Db
from raftcache.node.keyspace.reply import OK, CommandError, ReplyT
from raftcache.node.keyspace.table import command

if TYPE_CHECKING:
    from raftcache.node.state_machine import StateMachine

USERS_DB: Final = 0xFD
_USERS_KEY: Final = DB_PREFIX + bytes((USERS_DB,)) + b"users"
FORWARD_KEY: Final = DB_PREFIX + bytes((USERS_DB,)) + b"forward-key"
_PREFIX: Final = "raftcache.acl."


def client_may_call(name: bytes) -> bool:
    """Whether a client may send this command itself (the ACL plumbing and the membership
    plumbing, keyspace/rejoin.py, are not callable)."""
    return not name.lower().startswith((b"raftcache.acl.", b"raftcache.rejoin."))


def read_stored(sm: StateMachine) -> tuple[bytes | None, bytes | None]:
    """(users text, forwarding key) as this replica applied them (no lock: two dict reads)."""
    users, key = sm._data.get(_USERS_KEY), sm._data.get(FORWARD_KEY)
    return (
        users[0] if users is not None and isinstance(users[0], bytes) else None,
        key[0] if key is not None and isinstance(key[0], bytes) else None,
    )


def stored_text(db: Db) -> str | None:
    entry = db.sm._live(_USERS_KEY, db.now)
    if entry is None or not isinstance(entry[0], bytes):
        return None
    return entry[0].decode("latin-1")


def stored_forward_key(db: Db) -> bytes | None:
    entry = db.sm._live(FORWARD_KEY, db.now)
    if entry is None or not isinstance(entry[0], bytes):
        return None
    return entry[0]


def _current(db: Db) -> acl.Acl:
    text = stored_text(db)
    return acl.compiled(text if text is not None else acl.DEFAULT_TEXT)


def _save(db: Db, users: acl.Acl, key: bytes) -> None:
    db.sm._put(_USERS_KEY, users.text().encode("latin-1"), 0)
    if stored_forward_key(db) is None and len(key) == 32:
        db.sm._put(FORWARD_KEY, key, 0)


def _rethrow(exc: acl.AclError) -> CommandError:
    return CommandError(exc.text)


@command("raftcache.acl.setuser", -3, "write admin internal", keys=(0, 0, 0), group="server")
def _setuser(db: Db, argv: list[bytes]) -> ReplyT:
    """raftcache.acl.setuser FORWARD-KEY NAME RULE...: rules with digests only."""
    key, name = argv[1], argv[2].decode("latin-1")
    users = _current(db)
    try:
        rules = [r.decode("latin-1") for r in argv[3:]]
        if any(r.startswith((">", "<")) for r in rules):
            raise acl.AclError("ERR raftcache.acl.setuser takes password digests only")
        updated = acl.with_rules(users.users.get(name), name, rules)
    except acl.AclError as exc:
        raise _rethrow(exc) from None
    _save(db, acl.Acl({**users.users, name: updated}), key)
    return OK


@command("raftcache.acl.deluser", -3, "write admin internal", keys=(0, 0, 0), group="server")
def _deluser(db: Db, argv: list[bytes]) -> ReplyT:
    """raftcache.acl.deluser FORWARD-KEY NAME...: how many existed."""
    names = [a.decode("latin-1") for a in argv[2:]]
    if "default" in names:
        raise CommandError("ERR The 'default' user cannot be removed")
    users = _current(db)
    kept = {n: u for n, u in users.users.items() if n not in names}
    removed = len(users.users) - len(kept)
    if removed:
        _save(db, acl.Acl(kept), argv[1])
    return removed


@command("raftcache.acl.bootstrap", 3, "write admin internal", keys=(0, 0, 0), group="server")
def _bootstrap(db: Db, argv: list[bytes]) -> ReplyT:
    """raftcache.acl.bootstrap FORWARD-KEY TEXT: store TEXT's users if none are stored (1),
    else nothing (0)."""
    if stored_text(db) is not None:
        if stored_forward_key(db) is None and len(argv[1]) == 32:
            db.sm._put(FORWARD_KEY, argv[1], 0)
        return 0
    try:
        users = acl.Acl.parse(argv[2].decode("latin-1"), "users")
    except acl.AclError as exc:
        raise _rethrow(exc) from None
    _save(db, users, argv[1])
    return 1
