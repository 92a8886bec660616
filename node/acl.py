"""Users and permissions: one model, in Redis's ACL syntax, for every protocol.

A user is what `ACL SETUSER name rule...` builds, with Redis 7.0's rules and error texts:
`on`/`off`, passwords (`>pw`, `<pw`, `#sha256`, `!sha256`, `nopass`, `resetpass`; a user
may hold several, which is how rotation works), key patterns (`~pat`, `%R~pat`, `%W~pat`,
`%RW~pat`, `allkeys`, `resetkeys`), channel patterns (`&pat`, `allchannels`,
`resetchannels`), commands and categories (`+get`, `-set`, `+@read`, `-@dangerous`,
`+client|id`, `+select|0`, `allcommands`, `nocommands`) and `reset`. Selectors (`(...)`)
are refused: raftcache gives a user one set of patterns.

The users are replicated state (node/keyspace/acl.py keeps them as ACL LIST lines in one
internal entry); `Acl.parse` compiles such text, so every node that applied the same log
enforces the same rules. Passwords are kept only as SHA-256 digests (what ACL LIST shows):
a front-end turns `>pw` into `#digest` before the rule enters the Raft log.

The checks are Redis's (ACLSelectorCheckCmd): the command (or subcommand) must be allowed;
every key must match a pattern that grants what the key spec needs (ACCESS needs read,
INSERT/DELETE/UPDATE need write); every channel must match a channel pattern (PSUBSCRIBE's
patterns must equal one literally).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from raftcache.node.keyspace.glob import compile_glob

READ: Final = 1
WRITE: Final = 2

CATEGORY_ORDER: Final = (
    *("keyspace", "read", "write", "set", "sortedset", "list", "hash", "string", "bitmap"),
    *("hyperloglog", "geo", "stream", "pubsub", "admin", "fast", "slow", "blocking"),
    *("dangerous", "connection", "transaction", "scripting"),
)

MEMCACHED_PREFIX: Final = "raftcache.mc."
"""memcached's table commands: checked as their Redis equivalents (User.denial)."""
SCRIPT_COMMANDS: Final = frozenset(
    (b"eval", b"evalsha", b"eval_ro", b"evalsha_ro", b"fcall", b"fcall_ro")
)
"""Commands that run other commands: those run as the caller's user (RedisCall.user)."""


def stamp_user(op: Any, user: str) -> None:
    """Make a DataOp that is a script call run as `user` (any other call: as nobody, so a
    client cannot choose whose permissions its script gets)."""
    if op.WhichOneof("op") != "call":
        return
    call = op.call
    call.user = user if call.argv and call.argv[0].lower() in SCRIPT_COMMANDS else ""


NOAUTH: Final = "NOAUTH Authentication required."
WRONGPASS: Final = "WRONGPASS invalid username-password pair or user is disabled."
NOPERM_KEY: Final = (
    "NOPERM this user has no permissions to access one of the keys used as arguments"
)
NOPERM_CHANNEL: Final = (
    "NOPERM this user has no permissions to access one of the channels used as arguments"
)


def noperm_command(name: str) -> str:
    return f"NOPERM this user has no permissions to run the '{name}' command"


# Redis 7.0's multi.c: a queued command that the user's rules no longer allow at EXEC.
_EXEC_NOPERM: Final = (
    "NOPERM ACLs rules changed between the moment the transaction was accumulated and the "
    "EXEC call. This command is no longer allowed for the following reason: "
)
_EXEC_REASONS: Final = {
    "command": "no permission to execute the command or subcommand",
    "key": "no permission to touch the specified keys",
    "channel": "no permission to access one of the channels used as arguments",
}


def noperm_at_exec(denied: tuple[str, str]) -> str:
    """The error in EXEC's array for a queued command the rules stopped allowing."""
    return _EXEC_NOPERM + _EXEC_REASONS.get(denied[0], "no permission")


def noperm_text(denied: tuple[str, str]) -> str:
    """The NOPERM error of a denial (Redis 7.0 names the command, not the key or channel)."""
    reason, obj = denied
    if reason == "command":
        return noperm_command(obj)
    return NOPERM_KEY if reason == "key" else NOPERM_CHANNEL


def dryrun_text(denied: tuple[str, str]) -> str:
    """ACL DRYRUN's answer for a denial."""
    reason, obj = denied
    if reason == "command":
        return f"This user has no permissions to run the '{obj}' command"
    return f"This user has no permissions to access the '{obj}' {reason}"


class AclError(Exception):
    """A rule or user file that cannot be applied; `text` is Redis's reply."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


def digest(password: bytes) -> str:
    """The stored form of a password (Redis's: SHA-256, lower-case hex)."""
    return hashlib.sha256(password).hexdigest()


def genpass(bits: int = 256) -> str:
    """ACL GENPASS: `bits` random bits as hex (rounded up to whole hex digits)."""
    return secrets.token_hex((bits + 7) // 8)[: (bits + 3) // 4]


# -- the command universe and its categories ------------------------------------------------


@dataclass(frozen=True)
class CommandInfo:
    """What the checks need of one command or subcommand."""

    name: str  # full name: "get", "client|id"
    categories: frozenset[str]
    key_specs: tuple[dict[str, Any], ...]
    key_range: tuple[int, int, int]  # Redis's legacy (first, last, step), for commands w/o specs
    write: bool


@dataclass(frozen=True)
class Universe:
    commands: dict[str, CommandInfo]  # by full name
    containers: frozenset[str]  # commands with subcommands
    by_category: dict[str, frozenset[str]]


@functools.cache
def universe() -> Universe:
    """Every command a node serves, with its ACL categories (Redis 7.0's metadata, and the
    write/read flags of raftcache's own commands)."""
    from raftcache.node.resp import introspection

    commands: dict[str, CommandInfo] = {}
    containers: set[str] = set()

    def add(doc: Any) -> None:
        meta = doc.meta
        cats = {c.lstrip("@") for c in meta.get("acl", [])}
        flags = set(doc.flags)
        if not cats:
            cats = {"write"} if "write" in flags else {"read"} if "readonly" in flags else set()
            cats |= {"fast"} if "fast" in flags else {"slow"}
            if "admin" in flags:
                cats |= {"admin", "dangerous"}
        commands[doc.name] = CommandInfo(
            doc.name,
            frozenset(cats),
            tuple(meta.get("key_specs", ())),
            (doc.first, doc.last, doc.step),
            "write" in flags,
        )

    for doc in introspection.all_commands().values():
        add(doc)
        for sub in doc.subcommands:
            containers.add(doc.name)
            add(sub)
    by_category: dict[str, set[str]] = {c: set() for c in CATEGORY_ORDER}
    for info in commands.values():
        for cat in info.categories:
            by_category.setdefault(cat, set()).add(info.name)
    return Universe(
        commands,
        frozenset(containers),
        {c: frozenset(names) for c, names in by_category.items()},
    )


def full_name(argv: Sequence[bytes]) -> str:
    """ "client|id" for a container's subcommand, else the lower-case command name."""
    name = argv[0].lower().decode("latin-1")
    if len(argv) > 1 and name in universe().containers:
        full = f"{name}|{argv[1].lower().decode('latin-1')}"
        if full in universe().commands:
            return full
    return name


# -- users --------------------------------------------------------------------------------


@dataclass
class User:
    """One user's rules, compiled for the checks."""

    name: str
    enabled: bool = False
    nopass: bool = False
    passwords: list[str] = field(default_factory=list)  # SHA-256 hex, in order added
    keys: list[tuple[int, bytes]] = field(default_factory=list)  # (READ|WRITE, pattern)
    channels: list[bytes] = field(default_factory=list)
    allchannels: bool = False
    allowed: set[str] = field(default_factory=set)  # full command names
    first_args: dict[str, set[bytes]] = field(default_factory=dict)
    command_rules: list[str] = field(default_factory=lambda: ["-@all"])
    sanitize_payload: bool = False
    _matchers: list[tuple[int, Callable[[bytes], bool]]] | None = None
    _channel_matchers: list[Callable[[bytes], bool]] | None = None
    # argv[0] as sent -> the key check of a command this user may always run, whose keys
    # are all that is left to check (see _fast_plan, _fast_check); filled as commands come
    _fast: dict[bytes, _Check] = field(default_factory=dict)

    # -- what the fast paths look at -------------------------------------------------------

    @functools.cached_property
    def allkeys(self) -> bool:
        return any(p == b"*" and f == READ | WRITE for f, p in self.keys)

    @functools.cached_property
    def allcommands(self) -> bool:
        return self.command_rules == ["+@all"]

    @functools.cached_property
    def unrestricted(self) -> bool:
        """Every command, key and channel: the checks can be skipped."""
        return self.allcommands and self.allkeys and self.allchannels

    # -- checks ------------------------------------------------------------------------------

    def check_password(self, password: bytes) -> bool:
        if not self.enabled:
            return False
        if self.nopass:
            return True
        given = digest(password)
        return any(hmac.compare_digest(given, stored) for stored in self.passwords)

    def may_run(self, full: str, argv: Sequence[bytes]) -> bool:
        if self.allcommands or full in self.allowed:
            return True
        if len(argv) > 1:
            firsts = self.first_args.get(full)
            if firsts is not None and argv[1].lower() in firsts:
                return True
        return False

    def may_access_key(self, key: bytes, need: int, literal: bool = False) -> bool:
        """Whether key matches a pattern granting `need`; `literal`: whether a pattern IS
        `key` (SORT's BY/GET patterns need a read pattern that is exactly `*`)."""
        if literal:
            return any(f & need == need and p == key for f, p in self.keys)
        matchers = self._matchers
        if matchers is None:
            matchers = self._matchers = [(f, fast_glob(p)) for f, p in self.keys]
        return any(f & need == need and match(key) for f, match in matchers)

    def may_use_channel(self, channel: bytes, is_pattern: bool = False) -> bool:
        if self.allchannels:
            return True
        if is_pattern:
            return channel in self.channels
        matchers = self._channel_matchers
        if matchers is None:
            matchers = self._channel_matchers = [fast_glob(p) for p in self.channels]
        return any(match(channel) for match in matchers)

    def denial(
        self, argv: Sequence[bytes], channels: Iterable[tuple[bytes, bool]] = ()
    ) -> tuple[str, str] | None:
        """None if this user may run argv, else why not: ("command", full name), ("key",
        key) or ("channel", channel). `channels` are the (channel, is_pattern) pairs of a
        pub/sub command."""
        if self.unrestricted:
            return None
        check = self._fast.get(argv[0])
        if check is not None:
            return check(argv)
        full = full_name(argv)
        if full.startswith(MEMCACHED_PREFIX):
            return self._memcached_denial(full, argv)
        info = universe().commands.get(full)
        if info is None:
            # raftcache's own plumbing (raftcache.*) is for members and superusers; any other
            # name is unknown and its command answers so, as Redis checks names first
            return ("command", full) if full.startswith("raftcache.") else None
        if not self.may_run(full, argv):
            return ("command", full)
        if not self.allkeys:
            found = keys_of(info, argv)
            if found is None:  # keys that cannot be told from the arguments: only for ~*
                return ("key", argv[1].decode("latin-1") if len(argv) > 1 else full)
            for key, need in found:
                if not self.may_access_key(key, need):
                    return ("key", key.decode("latin-1"))
            if full in ("sort", "sort_ro"):
                pattern = _sort_pattern(argv)
                if pattern is not None and not self.may_access_key(b"*", READ, literal=True):
                    return ("key", pattern.decode("latin-1"))
        if not self.allchannels:
            for channel, is_pattern in channels:
                if not self.may_use_channel(channel, is_pattern):
                    return ("channel", channel.decode("latin-1"))
        fast = self._fast_plan(full, info, argv)
        if fast is not None and len(self._fast) < _MAX_FAST:
            self._fast[argv[0]] = self._fast_check(fast)
        return None

    def _fast_check(self, plan: _Plan) -> _Check:
        """A plan's key check as one call: the commonest plan (one key at a fixed position,
        patterns that grant read and write alike: GET, SET, INCR, HSET... under `~app:*`)
        compares that key alone; any other walks the plan (_key_denial). GET's check for a
        `~key:*` user went from ~1.0 to ~0.4 us (issue 14's users target)."""
        if self.allkeys:
            return _no_denial
        if len(plan) == 1 and plan[0][1] == 0 and self._uniform_keys:
            first = plan[0][0]
            match = self._any_key

            def one_key(argv: Sequence[bytes]) -> tuple[str, str] | None:
                if len(argv) <= first or match(argv[first]):
                    return None
                return ("key", argv[first].decode("latin-1"))

            return one_key
        return functools.partial(self._key_denial, plan)

    def _fast_plan(self, full: str, info: CommandInfo, argv: Sequence[bytes]) -> _Plan | None:
        """The key positions of a command whose permission depends on nothing else: this
        user may run it with any arguments, it names no channels, its keys sit at fixed
        positions (a key spec plan), and either each spec's need is fixed or every key
        pattern grants read and write alike (so SET's variable flags cannot matter). The
        common data commands (GET, SET, HSET, INCR...) take this path: a dict lookup and a
        prefix compare per key instead of the full walk (issue 14's performance target)."""
        if full != argv[0].lower().decode("latin-1") or full in universe().containers:
            return None
        if full in ("sort", "sort_ro") or channels_named(full):
            return None
        if not (self.allcommands or full in self.allowed):
            return None
        plan = _plan(info) if info.key_specs else None
        if plan is None:
            return None
        if not self._uniform_keys and any(need < 0 for *_, need in plan):
            return None
        return plan

    def _key_denial(self, plan: _Plan, argv: Sequence[bytes]) -> tuple[str, str] | None:
        if self.allkeys:
            return None
        n = len(argv)
        uniform = self._uniform_keys
        match = self._any_key
        for first, lastkey, step, need in plan:
            last = first + lastkey if lastkey >= 0 else n + lastkey
            if first >= n or last >= n or last < first:
                continue  # as keys_of: a spec that does not apply finds nothing
            for i in range(first, last + 1, step):
                key = argv[i]
                if not (match(key) if uniform else self.may_access_key(key, need)):
                    return ("key", key.decode("latin-1"))
        return None

    @functools.cached_property
    def _uniform_keys(self) -> bool:
        """Whether every key pattern grants read and write alike (so a key's need cannot
        matter, SET's variable flags included)."""
        return all(f == READ | WRITE for f, _ in self.keys)

    @functools.cached_property
    def _any_key(self) -> Callable[[bytes], bool]:
        """Whether any key pattern matches (every pattern grants read and write here)."""
        matchers = [fast_glob(p) for _, p in self.keys]
        if len(matchers) == 1:
            return matchers[0]
        return lambda key: any(match(key) for match in matchers)

    def _memcached_denial(self, full: str, argv: Sequence[bytes]) -> tuple[str, str] | None:
        """A memcached table call (node/keyspace/memcached.py) is checked as the Redis calls
        it amounts to (store as SET, get as GET...), wherever it comes from: the memcached
        front-end, a follower relaying it, or a Redis client sending it itself."""
        from raftcache.node.keyspace.memcached import redis_equivalents

        calls = redis_equivalents(list(argv))
        if calls is None:
            return ("command", full)
        for call in calls:
            denied = self.denial(call)
            if denied is not None:
                return denied
        return None

    def check(
        self, argv: Sequence[bytes], channels: Iterable[tuple[bytes, bool]] = ()
    ) -> str | None:
        """None if this user may run argv, else the NOPERM reply."""
        denied = self.denial(argv, channels)
        return None if denied is None else noperm_text(denied)

    # -- ACL LIST / GETUSER ----------------------------------------------------------------

    def describe(self) -> str:
        """The user as one ACL LIST line (and as it is stored)."""
        parts = ["user", self.name, "on" if self.enabled else "off"]
        if self.sanitize_payload:
            parts.append("sanitize-payload")
        if self.nopass:
            parts.append("nopass")
        parts += [f"#{h}" for h in self.passwords]
        parts += [_key_rule(f, p) for f, p in self.keys]
        if self.allchannels:
            parts.append("&*")
        else:
            parts.append("resetchannels")
            parts += ["&" + p.decode("latin-1") for p in self.channels]
        parts += self.command_rules
        return " ".join(parts)

    def flags(self) -> list[str]:
        out = ["on" if self.enabled else "off"]
        if self.nopass:
            out.append("nopass")
        if self.sanitize_payload:
            out.append("sanitize-payload")
        return out

    def key_rules(self) -> str:
        return " ".join(_key_rule(f, p) for f, p in self.keys)

    def channel_rules(self) -> str:
        if self.allchannels:
            return "&*"
        return " ".join("&" + p.decode("latin-1") for p in self.channels)


_GLOB_CHARS = frozenset(b"*?[\\")


def fast_glob(pattern: bytes) -> Callable[[bytes], bool]:
    """A matcher for a key or channel pattern: `prefix*` and literal patterns (the usual
    ones) compare bytes; anything else is Redis's glob (keyspace/glob.py)."""
    body = pattern[:-1] if pattern.endswith(b"*") else pattern
    if not _GLOB_CHARS.intersection(body):
        if body is pattern:
            return pattern.__eq__
        return lambda key: key.startswith(body)
    return compile_glob(pattern)


def _key_rule(flags: int, pattern: bytes) -> str:
    text = pattern.decode("latin-1")
    if flags == READ | WRITE:
        return f"~{text}"
    return f"%{'R' if flags & READ else ''}{'W' if flags & WRITE else ''}~{text}"


def _need(flags: Sequence[str]) -> int:
    need = READ if "ACCESS" in flags else 0
    if "INSERT" in flags or "DELETE" in flags or "UPDATE" in flags:
        need |= WRITE
    return need


# A command whose key specs are all "index + range" with flags that do not vary has a plan:
# (first, lastkey, step, need) per spec, so finding its keys is a slice, not a spec walk.
_Plan = tuple[tuple[int, int, int, int], ...]
_Check = Callable[[Sequence[bytes]], "tuple[str, str] | None"]
"""A fast plan compiled for one user (User._fast_check): argv -> its denial or None."""


def _no_denial(argv: Sequence[bytes]) -> tuple[str, str] | None:
    return None


_PLANS: dict[str, _Plan | None] = {}
_MAX_FAST = 512  # a user's remembered fast plans (argv[0] spellings): bounded memory
CHANNEL_COMMANDS: Final = frozenset(
    (b"publish", b"spublish", b"subscribe", b"ssubscribe", b"psubscribe")
)
"""The commands that name channels, lower case (node/auth.py's channels_of reads exactly
these): never a fast plan, and the RESP port looks for channels only in them."""
_CHANNEL_COMMANDS = frozenset(name.decode() for name in CHANNEL_COMMANDS)


def channels_named(full: str) -> bool:
    return full in _CHANNEL_COMMANDS


def _plan(info: CommandInfo) -> _Plan | None:
    plan = _PLANS.get(info.name, ())
    if plan != ():
        return plan
    steps: list[tuple[int, int, int, int]] = []
    for spec in info.key_specs:
        flags = spec.get("flags", [])
        if "NOT_KEY" in flags:
            continue
        begin, find = spec["begin_search"], spec["find_keys"]
        rng = find.get("range")
        if "index" not in begin or rng is None or rng["limit"]:
            _PLANS[info.name] = None
            return None
        need = -1 if "VARIABLE_FLAGS" in flags else _need(flags)  # -1: per call
        steps.append((begin["index"]["pos"], rng["lastkey"], rng["step"], need))
    _PLANS[info.name] = result = tuple(steps)
    return result


def keys_of(info: CommandInfo, argv: Sequence[bytes]) -> list[tuple[bytes, int]] | None:
    """The key arguments of argv with the permission each needs (Redis's key spec flags:
    ACCESS needs read; INSERT, DELETE and UPDATE need write; others need a matching pattern
    of any kind); None when they cannot be told from the arguments."""
    out: list[tuple[bytes, int]] = []
    if info.name in ("sort", "sort_ro"):
        return _sort_keys(argv)
    if info.key_specs:
        plan = _plan(info)
        n = len(argv)
        if plan is not None:
            for first, lastkey, step, need in plan:
                last = first + lastkey if lastkey >= 0 else n + lastkey
                if first >= n or last >= n or last < first:
                    continue  # as keys_by_specs: a spec that does not apply finds nothing
                if need < 0:
                    need = _need(_actual_flags(info.name, argv))
                out.extend((argv[i], need) for i in range(first, last + 1, step))
            return out
        from raftcache.node.resp.introspection import keys_by_specs

        if any(
            "unknown" in spec["begin_search"] or "unknown" in spec["find_keys"]
            for spec in info.key_specs
            if "NOT_KEY" not in spec.get("flags", [])
        ):
            return None  # keys only the command itself can tell (Redis: getkeys_proc)
        # None here: a numkeys of 0 (no keys) or arguments the command refuses anyway
        found = keys_by_specs(list(info.key_specs), list(argv)) or []
        for i, flags in found:
            if "VARIABLE_FLAGS" in flags:
                flags = _actual_flags(info.name, argv)
            out.append((argv[i], _need(flags)))
        return out
    first, last, step = info.key_range
    if first <= 0:
        return out
    n = len(argv)
    end = last if last >= 0 else n + last
    need = WRITE if info.write else READ
    return [(argv[i], need) for i in range(first, min(end, n - 1) + 1, step or 1)]


def _sort_options(argv: Sequence[bytes]) -> list[tuple[bytes, bytes]]:
    """SORT's (option, argument) pairs: BY, GET, STORE (and LIMIT's, skipped)."""
    out: list[tuple[bytes, bytes]] = []
    i = 2
    while i < len(argv):
        word = argv[i].lower()
        if word in (b"by", b"get", b"store") and i + 1 < len(argv):
            out.append((word, argv[i + 1]))
            i += 2
        elif word == b"limit":
            i += 3
        else:
            i += 1
    return out


def _sort_keys(argv: Sequence[bytes]) -> list[tuple[bytes, int]]:
    """Redis's sortGetKeys: the source (read) and the last STORE destination (write)."""
    if len(argv) < 2:
        return []
    out = [(argv[1], READ)]
    stores = [arg for word, arg in _sort_options(argv) if word == b"store"]
    if stores:
        out.append((stores[-1], WRITE))
    return out


def _sort_pattern(argv: Sequence[bytes]) -> bytes | None:
    """A BY or GET pattern of SORT that reads other keys (not GET #, not BY nosort-like
    constants without '*'), which Redis 7.0 allows only to users who may read every key."""
    for word, arg in _sort_options(argv):
        if word == b"get" and arg != b"#" and b"*" in arg:
            return arg
        if word == b"by" and b"*" in arg:
            return arg
    return None


def _actual_flags(name: str, argv: Sequence[bytes]) -> list[str]:
    """The key flags of a call whose spec says VARIABLE_FLAGS (Redis's getkeys procs)."""
    args = [a.lower() for a in argv[2:]]
    if name == "set":
        return ["RW", "ACCESS", "UPDATE"] if b"get" in args[1:] else ["OW", "UPDATE"]
    if name == "bitfield" and not any(a in (b"set", b"incrby") for a in args):
        return ["RO", "ACCESS"]
    return ["RW", "ACCESS", "UPDATE"]


# -- applying rules -----------------------------------------------------------------------


def _modifier_error(rule: str, why: str) -> AclError:
    return AclError(f"ERR Error in ACL SETUSER modifier '{rule}': {why}")


_SYNTAX: Final = "Syntax error"
_UNKNOWN: Final = "Unknown command or category name in ACL"
_AFTER_STAR: Final = (
    "Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and does not "
    "have any effect. Try 'resetkeys' to start with an empty list of patterns"
)
_AFTER_STAR_CHANNEL: Final = (
    "Adding a pattern after the * pattern (or the 'allchannels' flag) is not valid and does "
    "not have any effect. Try 'resetchannels' to start with an empty list of channels"
)
_BAD_HASH: Final = (
    "The password hash must be exactly 64 characters and contain only lowercase hexadecimal "
    "characters"
)
_NO_SUCH_PASSWORD: Final = "The password you are trying to remove from the user does not exist"
_SELECTORS: Final = (
    "selectors are not supported by raftcache: give the user's key, channel and command "
    "rules directly"
)


def _valid_hash(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def apply_rule(user: User, rule: str) -> None:
    """Apply one rule to user in place; AclError (Redis's text) if it is not valid. Callers
    apply a whole rule list to a copy, so a bad rule changes nothing."""
    _forget_compiled(user)
    try:
        _apply_rule(user, rule)
    finally:
        _forget_compiled(user)


def _forget_compiled(user: User) -> None:
    user._matchers = user._channel_matchers = None
    user._fast.clear()  # its checks hold the old patterns' matchers
    for cached in ("unrestricted", "allkeys", "allcommands", "_uniform_keys", "_any_key"):
        user.__dict__.pop(cached, None)


def _apply_rule(user: User, rule: str) -> None:
    if rule.startswith("("):
        raise _modifier_error(rule, _SELECTORS)
    if not rule or (rule[0] not in "><" and ("\x00" in rule or any(c.isspace() for c in rule))):
        # Stored users are one line of space-separated rules each: a rule with a space, tab or
        # newline in it would read back as other rules (Redis refuses them too).
        raise _modifier_error(rule, _SYNTAX)
    low = rule.lower()
    if low == "on":
        user.enabled = True
    elif low == "off":
        user.enabled = False
    elif low == "nopass":
        user.nopass, user.passwords = True, []
    elif low == "resetpass":
        user.nopass, user.passwords = False, []
    elif low in ("sanitize-payload", "skip-sanitize-payload"):
        user.sanitize_payload = low == "sanitize-payload"
    elif rule.startswith((">", "#")):
        hashed = digest(rule[1:].encode("latin-1")) if rule[0] == ">" else rule[1:]
        if rule[0] == "#" and not _valid_hash(hashed):
            raise _modifier_error(rule, _BAD_HASH)
        if hashed not in user.passwords:
            user.passwords.append(hashed)
        user.nopass = False
    elif rule.startswith(("<", "!")):
        hashed = digest(rule[1:].encode("latin-1")) if rule[0] == "<" else rule[1:]
        if rule[0] == "!" and not _valid_hash(hashed):
            raise _modifier_error(rule, _BAD_HASH)
        if hashed not in user.passwords:
            raise _modifier_error(rule, _NO_SUCH_PASSWORD)
        user.passwords.remove(hashed)
    elif low == "allkeys" or rule.startswith(("~", "%")):
        _key_pattern(user, rule)
    elif low == "resetkeys":
        user.keys = []
    elif low == "allchannels" or rule.startswith("&"):
        if user.allchannels and low != "allchannels" and rule != "&*":
            raise _modifier_error(rule, _AFTER_STAR_CHANNEL)
        if low == "allchannels" or rule == "&*":
            user.allchannels, user.channels = True, []
        else:
            pattern = rule[1:].encode("latin-1")
            if pattern not in user.channels:
                user.channels.append(pattern)
    elif low == "resetchannels":
        user.allchannels, user.channels = False, []
    elif low in ("allcommands", "+@all"):
        user.allowed = set(universe().commands)
        user.first_args = {}
        user.command_rules = ["+@all"]
    elif low in ("nocommands", "-@all"):
        user.allowed = set()
        user.first_args = {}
        user.command_rules = ["-@all"]
    elif rule.startswith(("+", "-")):
        _command_rule(user, rule)
    elif low == "reset":
        for step in ("resetpass", "resetkeys", "resetchannels", "off", "-@all"):
            apply_rule(user, step)
        user.sanitize_payload = True
    elif rule.startswith("("):
        raise _modifier_error(rule, _SELECTORS)
    else:
        raise _modifier_error(rule, _SYNTAX)


def _key_pattern(user: User, rule: str) -> None:
    if rule.lower() == "allkeys":
        flags, pattern = READ | WRITE, b"*"
    elif rule.startswith("~"):
        flags, pattern = READ | WRITE, rule[1:].encode("latin-1")
    else:
        spec, tilde, rest = rule[1:].partition("~")
        flags = 0
        for c in spec.upper():
            if c == "R":
                flags |= READ
            elif c == "W":
                flags |= WRITE
            else:
                raise _modifier_error(rule, _SYNTAX)
        if not tilde or not flags:
            raise _modifier_error(rule, _SYNTAX)
        pattern = rest.encode("latin-1")
    if user.allkeys and pattern != b"*":
        raise _modifier_error(rule, _AFTER_STAR)
    if pattern == b"*" and flags == READ | WRITE:
        user.keys = [(flags, pattern)]
        return
    for i, (f, p) in enumerate(user.keys):
        if p == pattern:
            user.keys[i] = (f | flags, p)
            return
    user.keys.append((flags, pattern))


def _command_rule(user: User, rule: str) -> None:
    adding = rule[0] == "+"
    body = rule[1:].lower()
    cmds = universe()
    if body.startswith("@"):
        names = cmds.by_category.get(body[1:])
        if names is None:
            raise _modifier_error(rule, _UNKNOWN)
        user.allowed = (user.allowed | names) if adding else (user.allowed - names)
        if not adding:
            for name in names:
                user.first_args.pop(name, None)
    elif "|" in body:
        parent, _, sub = body.partition("|")
        if parent in cmds.containers:
            full = f"{parent}|{sub}"
            if full not in cmds.commands:
                raise _modifier_error(rule, _UNKNOWN)
            if adding:
                user.allowed.add(full)
            else:
                user.allowed.discard(full)
        elif parent in cmds.commands and sub:
            if not adding:  # Redis refuses to subtract a first argument
                raise _modifier_error(rule, "Allowing first-arg of a subcommand is not supported")
            if parent not in user.allowed:
                user.first_args.setdefault(parent, set()).add(sub.encode("latin-1"))
        else:
            raise _modifier_error(rule, _UNKNOWN)
    else:
        if body not in cmds.commands:
            raise _modifier_error(rule, _UNKNOWN)
        family = {body} | {n for n in cmds.commands if n.startswith(f"{body}|")}
        if adding:
            user.allowed |= family
        else:
            user.allowed -= family
        user.first_args.pop(body, None)
    # the description: a later rule for the same target replaces an earlier one
    target = body
    user.command_rules = [r for r in user.command_rules if r[1:].lower() != target]
    user.command_rules.append(f"{rule[0]}{body}")


def new_user(name: str) -> User:
    """A user as ACL SETUSER creates it: off, no passwords, no keys, no channels, -@all."""
    return User(name)


def default_user() -> User:
    """Redis's default user: on nopass ~* &* +@all."""
    user = User("default")
    for rule in ("on", "nopass", "~*", "&*", "+@all"):
        apply_rule(user, rule)
    return user


def _copy(user: User) -> User:
    return User(
        user.name,
        user.enabled,
        user.nopass,
        list(user.passwords),
        list(user.keys),
        list(user.channels),
        user.allchannels,
        set(user.allowed),
        {k: set(v) for k, v in user.first_args.items()},
        list(user.command_rules),
        user.sanitize_payload,
    )


def check_name(name: str) -> None:
    if not name or "\x00" in name or any(c.isspace() for c in name):
        raise AclError("ERR Usernames can't contain spaces or null characters")


MAX_RULES: Final = 1024
"""Rules one ACL SETUSER may give, and key/channel patterns and first arguments a user may
hold (each rule costs work on every replica, at every compile of the users)."""


def with_rules(user: User | None, name: str, rules: Iterable[str]) -> User:
    """A copy of user (or a new one) with rules applied; the original is untouched."""
    check_name(name)
    rules = list(rules)
    if len(rules) > MAX_RULES:
        raise AclError(f"ERR too many rules ({len(rules)}): at most {MAX_RULES} per user change")
    out = _copy(user) if user is not None else new_user(name)
    for rule in rules:
        apply_rule(out, rule)
    held = len(out.keys) + len(out.channels) + sum(map(len, out.first_args.values()))
    if held > MAX_RULES:
        raise AclError(
            f"ERR user '{name}' would hold {held} key/channel patterns and first arguments, "
            f"over {MAX_RULES}: use fewer, broader patterns"
        )
    return out


def hash_passwords(rules: Sequence[bytes]) -> list[str]:
    """The rules with every clear-text password (`>pw`, `<pw`) replaced by its digest
    (`#h`, `!h`): what enters the Raft log, the journal and the snapshots."""
    out: list[str] = []
    for raw in rules:
        rule = raw.decode("latin-1")
        if rule.startswith(">"):
            rule = "#" + digest(raw[1:])
        elif rule.startswith("<"):
            rule = "!" + digest(raw[1:])
        out.append(rule)
    return out


# -- the whole set of users ------------------------------------------------------------------


class Acl:
    """Every user, by name; built from ACL LIST lines (one `user NAME rule...` per line)."""

    def __init__(self, users: dict[str, User]) -> None:
        self.users = users
        self.default: User | None = users.get("default")

    @classmethod
    def parse(cls, text: str, where: str = "ACL") -> Acl:
        """Users from ACL file text (Redis's format; `#` comment lines and blank lines are
        skipped). The default user is Redis's unless the text redefines it. AclError names
        the line that is wrong."""
        users: dict[str, User] = {"default": default_user()}
        seen: set[str] = set()
        for lineno, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            words = line.split()
            if words[0] != "user" or len(words) < 2:
                raise AclError(
                    f"ERR {where} line {lineno}: should start with user keyword "
                    f"followed by the user name (got {line[:60]!r})"
                )
            name = words[1]
            if name in seen:
                raise AclError(f"ERR {where} line {lineno}: user '{name}' is defined twice")
            seen.add(name)
            base = new_user(name)
            if name == "default":
                base = with_rules(None, name, ["reset"])
                base.sanitize_payload = False
            try:
                users[name] = with_rules(base, name, words[2:])
            except AclError as exc:
                why = exc.text.removeprefix("ERR ")
                raise AclError(f"ERR {where} line {lineno}: {why}") from None
        return cls(users)

    def text(self) -> str:
        """The stored form: ACL LIST's lines in name order."""
        return "\n".join(self.users[n].describe() for n in sorted(self.users))

    def authenticate(self, name: str, password: bytes) -> User | None:
        user = self.users.get(name)
        if user is None or not user.check_password(password):
            return None
        return user

    @property
    def open(self) -> bool:
        """The default user needs no password: connections start authenticated as it."""
        d = self.default
        return d is not None and d.enabled and d.nopass


@functools.lru_cache(maxsize=8)
def compiled(text: str) -> Acl:
    """The Acl of stored text (cached: every check on a node looks its users up here)."""
    return Acl.parse(text)


DEFAULT_TEXT: Final = "user default on nopass ~* &* +@all"
