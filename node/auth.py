"""Authentication on a node: who a connection or a call is, and what it may do.

One `Auth` per node, shared by the gRPC, Redis and Memcached front-ends:

- `acl()` is the users this node enforces: the replicated ones (node/keyspace/acl.py)
  once stored, before that the users the node was started with (--users-file,
  --requirepass), else Redis's default user. It is a cached compile of the stored text, so
  a check costs a dict lookup until the users change.
- A follower that relays a call to the leader names the caller's user in the call's
  metadata and proves it is a member with `forward_proof()`, an HMAC under the cluster's
  forwarding key (replicated with the users): the leader then checks the permission again
  as that user and never trusts a bare claim (a client cannot pose as a follower).
- A relay from a member that names no user (the memcached front-end, which has no users
  yet, and other calls a member makes for itself) carries the proof alone: the leader runs
  it as `MEMBER`, unrestricted, since the member's front-end did the checks.
- Failures are counted per protocol (`failures`) for the metrics; a connection that keeps
  failing to authenticate waits longer each time (`penalty_s`), so guessing passwords over
  one connection is slow. A gRPC caller's failures are logged at most once a minute per
  peer host (`failed(..., peer=...)`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import structlog
from raftcache.node import acl, errors
from raftcache.node.acl import CHANNEL_COMMANDS, Acl, User

_log = structlog.get_logger("raftcache.auth")

AS_USER_KEY: Final = "raftcache-as-user"
FORWARD_PROOF_KEY: Final = "raftcache-forward-proof"
AUTHORIZATION_KEY: Final = "authorization"
_PROOF_MESSAGE: Final = b"raftcache forwarded call v1"
FREE_FAILURES: Final = 3
"""Failed AUTHs a connection may make before each further failure is delayed."""
MAX_PENALTY_S: Final = 2.0
LOG_MAX: Final = 128
"""Entries ACL LOG keeps."""
LOG_EVERY_S: Final = 60.0
"""A peer's refusals are logged at most this often (all are counted)."""
MEMBER: Final = User(
    "raftcache-member",
    enabled=True,
    keys=[(acl.READ | acl.WRITE, b"*")],
    allchannels=True,
    command_rules=["+@all"],
)
"""Who a member's own relayed call (proven, naming no user) runs as."""


def seed_text(users_file: str | None, requirepass: str | None) -> str | None:
    """The users a node was started with, as ACL text (validated), or None."""
    parts: list[str] = []
    if users_file:
        with open(users_file, encoding="utf-8") as f:
            parts.append(f.read())
    text = "\n".join(parts)
    users = Acl.parse(text, users_file or "users")
    if requirepass:
        default = users.users["default"]
        users.users["default"] = acl.with_rules(
            default, "default", ["resetpass", "#" + acl.digest(requirepass.encode())]
        )
    if not users_file and not requirepass:
        return None
    return users.text()


class Auth:
    """This node's users and the bookkeeping of failures."""

    def __init__(
        self,
        read_stored: Callable[[], tuple[bytes | None, bytes | None]],
        seed: str | None = None,
    ) -> None:
        self._read_stored = read_stored  # (users text, forwarding key) as applied here
        self.seed = seed
        self._last: tuple[bytes | None, Acl] | None = None
        self._peer_failures: dict[str, int] = {}  # gRPC connection -> wrong passwords
        self.failures: Counter[tuple[str, str]] = Counter()  # (protocol, kind) -> count
        self._proof: tuple[bytes, str] | None = None
        self._basic: dict[str, tuple[Acl, User | None]] = {}
        self._logged: dict[str, float] = {}  # peer host -> when its last refusal was logged

    def acl(self) -> Acl:
        raw, _ = self._read_stored()
        last = self._last
        if last is not None and last[0] is raw:
            return last[1]
        if raw is not None:
            text = raw.decode("latin-1")
        else:
            text = self.seed if self.seed is not None else acl.DEFAULT_TEXT
        users = acl.compiled(text)
        self._last = (raw, users)
        return users

    @property
    def bootstrapped(self) -> bool:
        return self._read_stored()[0] is not None

    def bootstrap_call(self) -> list[bytes] | None:
        """The call a new leader proposes to store its seed users, if any are still due."""
        text, key = self._read_stored()
        if key is not None or (text is None and self.seed is None):
            return None
        # users but no forwarding key (a cluster restored from a backup, which leaves the key
        # out): the bootstrap only adds a key, since users are stored
        seed = self.seed if self.seed is not None else acl.DEFAULT_TEXT
        return [b"raftcache.acl.bootstrap", new_forward_key(), seed.encode("latin-1")]

    # -- follower -> leader ---------------------------------------------------------------

    def forward_proof(self) -> str | None:
        key = self._read_stored()[1]
        if key is None:
            return None
        cached = self._proof
        if cached is None or cached[0] != key:
            cached = self._proof = (key, hmac.new(key, _PROOF_MESSAGE, hashlib.sha256).hexdigest())
        return cached[1]

    def forward_metadata(self, user: str | None) -> tuple[tuple[str, str], ...]:
        """What a relayed call carries to name its user; `None`: the member's own call
        (the proof alone). Before any users are stored there is no forwarding key: the
        cluster is open and the leader takes the call as its default user."""
        proof = self.forward_proof()
        if proof is None:
            return () if user is None else ((AS_USER_KEY, user),)
        if user is None:
            return ((FORWARD_PROOF_KEY, proof),)
        return ((AS_USER_KEY, user), (FORWARD_PROOF_KEY, proof))

    def verify_forward_proof(self, proof: str) -> bool:
        mine = self.forward_proof()
        return mine is not None and hmac.compare_digest(mine, proof)

    # -- credentials ------------------------------------------------------------------------

    def basic(self, header: str) -> User | None:
        """The user of an `authorization: Basic base64(user:password)` header, or None if it
        does not authenticate. Verified once per header value and set of users."""
        users = self.acl()
        cached = self._basic.get(header)
        if cached is not None and cached[0] is users:
            return cached[1]
        user = None
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() == "basic":
            try:
                name, sep, password = base64.b64decode(encoded, validate=True).partition(b":")
            except ValueError:
                sep = b""
            if sep:
                user = users.authenticate(name.decode("latin-1"), password)
        if len(self._basic) >= 1024:
            self._basic.clear()
        self._basic[header] = (users, user)
        return user

    def identify(
        self,
        metadata: Sequence[tuple[str, Any]] | None,
        peer_cn: str | None = None,
        protocol: str = "grpc",
        peer: object | None = None,
    ) -> User:
        """The user of a gRPC call: a member's relayed call names it (with the forwarding
        proof; the proof alone: `MEMBER`), else `authorization: Basic` credentials, else the
        client certificate's CN (when --tls-client-cn-as-user), else the default user if it
        needs no password. Raises Unauthenticated (with the reason) otherwise; a failure is
        counted and logged (once a minute per `peer` host, when given)."""
        users = self.acl()
        found: dict[str, str] | None = None
        for key, value in metadata or ():
            if key in _IDENTITY_KEYS:
                if found is None:
                    found = {}
                found[key] = value if isinstance(value, str) else value.decode("latin-1")
        if found is None:
            if peer_cn is None and users.open:  # an open cluster's usual call: no credentials
                return users.default  # type: ignore[return-value]  # open: it exists
            found = {}
        proof = found.get(FORWARD_PROOF_KEY)
        if proof is not None and self.verify_forward_proof(proof):
            claimed = found.get(AS_USER_KEY)
            if claimed is None:
                return MEMBER
            user = users.users.get(claimed)
            if user is None:
                raise errors.Unauthenticated(f"the user {claimed!r} no longer exists")
            return user
        header = found.get(AUTHORIZATION_KEY)
        if header is not None:
            user = self.basic(header)
            if user is None:
                self.failed(protocol, "auth", _basic_name(header), True, peer=peer)
                refused = errors.Unauthenticated(acl.WRONGPASS.removeprefix("WRONGPASS "))
                refused.delay_s = self._penalty(str(peer) if peer is not None else "")
                raise refused
            return user
        if peer_cn is not None:
            user = users.users.get(peer_cn)
            if user is not None and user.enabled:
                return user
        default = users.default
        if default is not None and users.open:
            return default
        self.failed(protocol, "auth", peer_cn or "", True, peer=peer, reason="no credentials")
        raise errors.Unauthenticated(
            "authentication required: send 'authorization: Basic base64(user:password)' "
            "metadata (the SDK's user= and password=, the CLI's --user and --password)"
        )

    def _penalty(self, peer: str) -> float:
        """How long to wait before refusing a wrong password from `peer` (a gRPC connection:
        address and port), growing with its failures (penalty_s); bounded memory."""
        if not peer:
            return 0.0
        failures = self._peer_failures.get(peer, 0) + 1
        if len(self._peer_failures) >= 4096:
            self._peer_failures.clear()
        self._peer_failures[peer] = failures
        return penalty_s(failures)

    def failed(
        self,
        protocol: str,
        kind: str,
        who: str,
        log: bool,
        peer: object | None = None,
        **fields: object,
    ) -> None:
        """Count a failed authentication ("auth"), authorisation ("perm") or TLS handshake
        ("tls"); log it when the
        caller says this connection has not logged one yet and, given the `peer` (its str()
        is a gRPC peer string, read only here), when that host logged none in the last
        LOG_EVERY_S. Never logs a password."""
        self.failures[(protocol, kind)] += 1
        if log and peer is not None:
            fields["peer"] = shown = str(peer)
            log = self._may_log(shown)
        if log:
            event = _EVENTS.get(kind, "permission denied")
            _log.warning(event, protocol=protocol, user=who, **fields)

    def _may_log(self, peer: str) -> bool:
        host = peer_host(peer)
        now = time.monotonic()
        last = self._logged.get(host)
        if last is not None and now - last < LOG_EVERY_S:
            return False
        if len(self._logged) >= 4096:
            self._logged = {h: t for h, t in self._logged.items() if now - t < LOG_EVERY_S}
        self._logged[host] = now
        return True


@dataclass
class LogEntry:
    count: int
    reason: str  # "command", "key", "channel", "auth"
    context: str
    object: str
    username: str
    created: float
    updated: float
    client_info: str
    entry_id: int


class AclLog:
    """This node's last refusals, newest first; repeats of one (reason, object, user) within
    60 s are counted on the existing entry, as Redis does."""

    def __init__(self) -> None:
        self.entries: OrderedDict[tuple[str, str, str, str], LogEntry] = OrderedDict()
        self._next_id = 0

    def add(
        self, reason: str, obj: str, username: str, client_info: str, context: str = "toplevel"
    ) -> None:
        """One refusal; `context`: "toplevel", or "multi" for a queued command refused at
        EXEC (Redis's ACL_LOG_CTX_MULTI)."""
        key = (reason, context, obj, username)
        now = time.time()
        entry = self.entries.get(key)
        if entry is not None and now - entry.updated < 60:
            entry.count += 1
            entry.updated = now
            entry.client_info = client_info
            self.entries.move_to_end(key, last=False)
            return
        self.entries[key] = LogEntry(
            1, reason, context, obj, username, now, now, client_info, self._next_id
        )
        self.entries.move_to_end(key, last=False)
        self._next_id += 1
        while len(self.entries) > LOG_MAX:
            self.entries.popitem(last=True)


_IDENTITY_KEYS: Final = frozenset((AS_USER_KEY, FORWARD_PROOF_KEY, AUTHORIZATION_KEY))


def _basic_name(header: str) -> str:
    """The user name in a Basic header (for logs; never the password)."""
    try:
        raw = base64.b64decode(header.partition(" ")[2], validate=True)
    except ValueError:
        return "?"
    name, colon, _ = raw.partition(b":")
    if not colon:  # no user:password shape: the whole token may be a password
        return "?"
    return name[:64].decode("latin-1")


_EVENTS: Final = {"auth": "authentication failed", "tls": "TLS handshake failed"}


def peer_host(peer: str) -> str:
    """The host of a gRPC peer string ("ipv4:10.0.0.7:51234" -> "ipv4:10.0.0.7", "ipv6:[::1]:5"
    -> "ipv6:[::1]"): a client that reconnects keeps its host, not its port."""
    head, sep, tail = peer.rpartition(":")
    return head if sep and tail.isdigit() and head not in ("ipv4", "ipv6") else peer


def new_forward_key() -> bytes:
    return os.urandom(32)


def penalty_s(failures: int) -> float:
    """How long a connection's next failed AUTH is delayed after `failures` failures."""
    if failures <= FREE_FAILURES:
        return 0.0
    return min(MAX_PENALTY_S, 0.05 * float(2 ** (failures - FREE_FAILURES)))


def basic_header(user: str, password: str) -> str:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return f"Basic {token}"


def channels_of(argv: Sequence[bytes], name: bytes | None = None) -> list[tuple[bytes, bool]]:
    """The (channel, is_pattern) pairs a pub/sub command names (none for others). `name`:
    argv[0] in lower case, if the caller has it (the RESP port's dispatch does)."""
    if name is None:
        name = argv[0].lower()
    if name not in CHANNEL_COMMANDS:
        return []
    if name in (b"publish", b"spublish") and len(argv) > 1:
        return [(argv[1], False)]
    if name in (b"subscribe", b"ssubscribe"):
        return [(c, False) for c in argv[1:]]
    if name == b"psubscribe":
        return [(p, True) for p in argv[1:]]
    return []
