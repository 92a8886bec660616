"""COMMAND: the commands this front-end serves, in Redis 7.0's reply formats.

The list is what a node really accepts: the replicated command table
(node/keyspace/table.COMMANDS: arity, flags and key range as registered), the front-end's
connection commands (node/resp/server.py) and the admin commands (this package). Summaries,
ACL categories, tips and key specs come from Redis 7.0.15's own command descriptions
(redis_meta.py). Cluster clients (redis-py's RedisCluster) read key positions from here, and
COMMAND GETKEYS evaluates the key specs the way Redis does.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from raftcache.node.keyspace import dispatch
from raftcache.node.keyspace.args import parse_int
from raftcache.node.keyspace.glob import compile_glob
from raftcache.node.keyspace.reply import SYNTAX, Error, Map, ReplyT, SetReply, Status
from raftcache.node.resp.admin import ARITIES, SUBCOMMANDS, container, subcommand
from raftcache.node.resp.redis_meta import FLAG_ORDER, META
from raftcache.node.resp.server import _LOCAL

if TYPE_CHECKING:
    from raftcache.node.resp.server import Connection

_SEMANTIC = frozenset(["write", "readonly", "denyoom", "fast"])
# Redis 7.2 commands we serve that 7.0.15's descriptions lack.
_EXTRA_META: dict[str, dict[str, Any]] = {
    "client|setinfo": {
        "summary": "Set client or connection specific info",
        "since": "7.2.0",
        "group": "connection",
        "arity": 4,
        "flags": ["noscript", "loading", "stale"],
        "acl": ["@slow", "@connection"],
        "range": [0, 0, 0],
    },
    "client|no-touch": {
        "summary": "Controls whether commands sent by the client will alter the LRU/LFU of "
        "the keys they access.",
        "since": "7.2.0",
        "group": "connection",
        "arity": 3,
        "flags": ["noscript", "loading", "stale"],
        "acl": ["@slow", "@connection"],
        "range": [0, 0, 0],
    },
    "cluster|myshardid": {
        "summary": "Returns the shard ID of a node.",
        "since": "7.2.0",
        "group": "cluster",
        "arity": 2,
        "flags": ["loading", "stale"],
        "acl": ["@slow"],
        "range": [0, 0, 0],
    },
}


def meta_of(fullname: str) -> dict[str, Any]:
    return META.get(fullname) or _EXTRA_META.get(fullname) or {}


@dataclass(frozen=True)
class CommandDoc:
    """One command or subcommand as COMMAND describes it."""

    name: str  # full name: "get", "client|list"
    arity: int
    flags: list[str]
    first: int
    last: int
    step: int
    meta: dict[str, Any]
    subcommands: list[CommandDoc]

    @property
    def key_specs(self) -> list[dict[str, Any]]:
        specs: list[dict[str, Any]] = self.meta.get("key_specs", [])
        return specs

    def has_keys(self) -> bool:
        if self.key_specs:
            return any("NOT_KEY" not in s.get("flags", []) for s in self.key_specs)
        return self.first > 0


def _ordered(flags: Iterable[str]) -> list[str]:
    chosen = set(flags)
    return [f for f in FLAG_ORDER if f in chosen]


def _local_names() -> list[str]:
    """The connection commands of node/resp/server.py (PING, HELLO, MULTI, ...)."""
    return [name.decode() for name in _LOCAL]


def _doc(fullname: str, arity: int, subs: list[CommandDoc]) -> CommandDoc:
    """A front-end command described by Redis's metadata."""
    meta = meta_of(fullname)
    first, last, step = meta.get("range", [0, 0, 0])
    return CommandDoc(
        fullname, arity, _ordered(meta.get("flags", [])), first, last, step, meta, subs
    )


def _meta_subcommands(name: str) -> list[CommandDoc]:
    prefix = f"{name}|"
    return [
        _doc(full, int(meta["arity"]), []) for full, meta in META.items() if full.startswith(prefix)
    ]


def all_commands() -> dict[str, CommandDoc]:
    """Every command a node serves, by lower-case name."""
    out: dict[str, CommandDoc] = {}
    for raw, spec in dispatch.COMMANDS.items():
        if "internal" in spec.flags:  # raftcache's own plumbing (WATCH's versions)
            continue
        name = raw.decode()
        meta = meta_of(name)
        extra = {f for f in meta.get("flags", []) if f not in _SEMANTIC}
        flags = _ordered(set(spec.flags) | extra)
        subs = _meta_subcommands(name)
        out[name] = CommandDoc(
            name, spec.arity, flags, spec.first_key, spec.last_key, spec.step, meta, subs
        )
    for name in _local_names():
        out.setdefault(
            name, _doc(name, int(meta_of(name).get("arity", -1)), _meta_subcommands(name))
        )
    for raw, arity in ARITIES.items():
        name = raw.decode()
        subs = [
            _doc(f"{name}|{sub.decode()}", sub_arity, [])
            for sub, (sub_arity, _) in sorted(SUBCOMMANDS.get(raw, {}).items())
        ]
        out.setdefault(name, _doc(name, arity, subs))
    return out


def find(commands: dict[str, CommandDoc], name: str) -> CommandDoc | None:
    """A command, or a subcommand by its full name ("client|list")."""
    parent, _, sub = name.lower().partition("|")
    doc = commands.get(parent)
    if doc is None or not sub:
        return doc
    return next((s for s in doc.subcommands if s.name == f"{parent}|{sub}"), None)


# -- replies ---------------------------------------------------------------------------------


def _statuses(items: Iterable[str]) -> ReplyT:
    return SetReply([Status(x) for x in items])


def _bulk_map(pairs: Iterable[tuple[str, ReplyT]]) -> ReplyT:
    return Map([x for key, value in pairs for x in (key.encode(), value)])


_KEY_FLAG_ORDER = [
    "RO",
    "RW",
    "OW",
    "RM",
    "ACCESS",
    "UPDATE",
    "INSERT",
    "DELETE",
    "NOT_KEY",
    "INCOMPLETE",
    "VARIABLE_FLAGS",
]


def key_flags(flags: Iterable[str]) -> list[str]:
    """Key-spec flags as Redis prints them (RO/RW/OW/RM upper, the rest lower case)."""
    chosen = set(flags)
    return [f if len(f) == 2 else f.lower() for f in _KEY_FLAG_ORDER if f in chosen]


def _key_spec_reply(spec: dict[str, Any]) -> ReplyT:
    begin, find_keys = spec["begin_search"], spec["find_keys"]
    if "index" in begin:
        bs = _bulk_map(
            [("type", b"index"), ("spec", _bulk_map([("index", begin["index"]["pos"])]))]
        )
    elif "keyword" in begin:
        kw = begin["keyword"]
        inner = _bulk_map([("keyword", kw["keyword"].encode()), ("startfrom", kw["startfrom"])])
        bs = _bulk_map([("type", b"keyword"), ("spec", inner)])
    else:
        bs = _bulk_map([("type", b"unknown"), ("spec", Map([]))])
    if "range" in find_keys:
        r = find_keys["range"]
        inner = _bulk_map(
            [("lastkey", r["lastkey"]), ("keystep", r["step"]), ("limit", r["limit"])]
        )
        fk = _bulk_map([("type", b"range"), ("spec", inner)])
    elif "keynum" in find_keys:
        k = find_keys["keynum"]
        pairs = [("keynumidx", k["keynumidx"]), ("firstkey", k["firstkey"]), ("keystep", k["step"])]
        fk = _bulk_map([("type", b"keynum"), ("spec", _bulk_map(pairs))])
    else:
        fk = _bulk_map([("type", b"unknown"), ("spec", Map([]))])
    notes = [("notes", spec["notes"].encode())] if "notes" in spec else []
    flags = _statuses(key_flags(spec.get("flags", [])))
    return _bulk_map([*notes, ("flags", flags), ("begin_search", bs), ("find_keys", fk)])


def info_reply(doc: CommandDoc) -> ReplyT:
    """COMMAND INFO's ten-element description."""
    subs: ReplyT = [info_reply(s) for s in doc.subcommands] if doc.subcommands else SetReply([])
    return [
        doc.name.encode(),
        doc.arity,
        _statuses(doc.flags),
        doc.first,
        doc.last,
        doc.step,
        _statuses(doc.meta.get("acl", ["@slow"])),
        SetReply([t.encode() for t in doc.meta.get("tips", [])]),
        SetReply([_key_spec_reply(s) for s in doc.key_specs]),
        subs,
    ]


def _argument_reply(arg: dict[str, Any]) -> ReplyT:
    """One argument of COMMAND DOCS, fields in Redis's order."""
    pairs: list[tuple[str, ReplyT]] = [
        ("name", arg["name"].lower().encode()),  # as Redis's generated command table
        ("type", arg["type"].encode()),
    ]
    if "key_spec_index" in arg:
        pairs.append(("key_spec_index", arg["key_spec_index"]))
    for field in ("token", "since", "deprecated_since"):
        if field in arg:
            pairs.append((field, arg[field].encode()))
    flags = [f for f in ("optional", "multiple", "multiple_token") if arg.get(f)]
    if flags:
        pairs.append(("flags", _statuses(flags)))
    if arg["type"] in ("oneof", "block"):
        pairs.append(("arguments", [_argument_reply(a) for a in arg.get("arguments", [])]))
    return _bulk_map(pairs)


def docs_reply(doc: CommandDoc) -> ReplyT:
    """COMMAND DOCS's map for one command (without the history notes)."""
    meta = doc.meta
    pairs: list[tuple[str, ReplyT]] = [
        ("summary", meta.get("summary", "").encode()),
        ("since", meta.get("since", "7.0.0").encode()),
        ("group", meta.get("group", "generic").encode()),
    ]
    if "complexity" in meta:
        pairs.append(("complexity", meta["complexity"].encode()))
    if meta.get("doc_flags"):
        pairs.append(("doc_flags", _statuses(meta["doc_flags"])))
    for field in ("deprecated_since", "replaced_by"):
        if field in meta:
            pairs.append((field, meta[field].encode()))
    if meta.get("arguments"):
        pairs.append(("arguments", [_argument_reply(a) for a in meta["arguments"]]))
    if doc.subcommands:
        subs = _bulk_map([(s.name, docs_reply(s)) for s in doc.subcommands])
        pairs.append(("subcommands", subs))
    return _bulk_map(pairs)


# -- key extraction (COMMAND GETKEYS) ------------------------------------------------------------


def keys_by_specs(
    specs: list[dict[str, Any]], argv: list[bytes]
) -> list[tuple[int, list[str]]] | None:
    """Positions (and flags) of the keys in argv, as Redis's getKeysUsingKeySpecs finds them;
    None when a spec cannot be applied (bad numkeys, out of range)."""
    argc = len(argv)
    out: list[tuple[int, list[str]]] = []
    for spec in specs:
        flags = spec.get("flags", [])
        if "NOT_KEY" in flags:
            continue
        begin, find_keys = spec["begin_search"], spec["find_keys"]
        if "index" in begin:
            first = begin["index"]["pos"]
        elif "keyword" in begin:
            first = _after_keyword(begin["keyword"], argv)
            if not first:
                continue
        else:
            return None
        if "range" in find_keys:
            r = find_keys["range"]
            step = r["step"]
            if r["lastkey"] >= 0:
                last = first + r["lastkey"]
            elif not r["limit"]:
                last = argc + r["lastkey"]
            else:
                last = first + ((argc - first) // r["limit"] + r["lastkey"])
        elif "keynum" in find_keys:
            k = find_keys["keynum"]
            step = k["step"]
            if first + k["keynumidx"] >= argc:
                return None
            try:
                numkeys = parse_int(argv[first + k["keynumidx"]])
            except Exception:
                return None
            if numkeys < 0:
                return None
            first += k["firstkey"]
            last = first + numkeys - 1
        else:
            return None
        if last >= argc or last < first or first >= argc:
            return None
        out.extend((i, flags) for i in range(first, last + 1, step))
    return out


def _after_keyword(keyword: dict[str, Any], argv: list[bytes]) -> int:
    word, start = keyword["keyword"].encode().lower(), keyword["startfrom"]
    argc = len(argv)
    positions = range(start, argc) if start > 0 else range(argc + start, 0, -1)
    for i in positions:
        if 1 <= i < argc and argv[i].lower() == word:
            return i + 1
    return 0


def get_keys(commands: dict[str, CommandDoc], args: list[bytes], with_flags: bool) -> ReplyT:
    """COMMAND GETKEYS / GETKEYSANDFLAGS for the command line args."""
    doc = commands.get(args[0].lower().decode("utf-8", "replace"))
    if doc is not None and doc.subcommands and len(args) > 1:
        doc = find(commands, f"{doc.name}|{args[1].lower().decode('utf-8', 'replace')}")
    if doc is None:
        return Error("ERR Invalid command specified")
    if not doc.has_keys():
        return Error("ERR The command has no key arguments")
    n = len(args)
    if (doc.arity > 0 and doc.arity != n) or n < -doc.arity:
        return Error("ERR Invalid number of arguments specified for command")
    found = keys_by_specs(doc.key_specs, args) if doc.key_specs else None
    if found is None and doc.first > 0 and not doc.key_specs:
        last = doc.last if doc.last >= 0 else n + doc.last
        found = [(i, []) for i in range(doc.first, min(last, n - 1) + 1, doc.step or 1)]
    if found is None:
        if "no_mandatory_keys" in doc.flags:
            return []
        return Error("ERR Invalid arguments specified for command")
    if with_flags:
        return [[args[i], _statuses(key_flags(flags))] for i, flags in found]
    return [args[i] for i, _ in found]


# -- the command --------------------------------------------------------------------------------


def _command(conn: Connection, argv: list[bytes]) -> ReplyT:
    return [info_reply(doc) for doc in all_commands().values()]


@subcommand("command", "count")
def _count(conn: Connection, argv: list[bytes]) -> ReplyT:
    return len(all_commands())


@subcommand("command", "info")
def _info(conn: Connection, argv: list[bytes]) -> ReplyT:
    commands = all_commands()
    if len(argv) == 2:
        return [info_reply(doc) for doc in commands.values()]
    out: list[ReplyT] = []
    for raw in argv[2:]:
        doc = find(commands, raw.decode("utf-8", "replace"))
        out.append(None if doc is None else info_reply(doc))
    return out


@subcommand("command", "docs")
def _docs(conn: Connection, argv: list[bytes]) -> ReplyT:
    commands = all_commands()
    if len(argv) == 2:
        chosen = list(commands.values())
    else:
        found = (find(commands, raw.decode("utf-8", "replace")) for raw in argv[2:])
        chosen = [doc for doc in found if doc is not None]
    return _bulk_map([(doc.name, docs_reply(doc)) for doc in chosen])


@subcommand("command", "list")
def _list(conn: Connection, argv: list[bytes]) -> ReplyT:
    commands = all_commands()
    if len(argv) == 2:
        return [name.encode() for name in commands]
    if len(argv) != 5 or argv[2].lower() != b"filterby":
        return Error(SYNTAX)
    kind, value = argv[3].lower(), argv[4]
    if kind == b"module":
        return []
    if kind == b"aclcat":
        category = "@" + value.decode("utf-8", "replace").lower()
        return [n.encode() for n, d in commands.items() if category in d.meta.get("acl", [])]
    if kind == b"pattern":
        matches = compile_glob(value.lower())
        names = [d.name for d in commands.values()]
        names += [s.name for d in commands.values() for s in d.subcommands]
        return [n.encode() for n in names if matches(n.encode())]
    return Error(SYNTAX)


@subcommand("command", "getkeys")
def _getkeys(conn: Connection, argv: list[bytes]) -> ReplyT:
    return get_keys(all_commands(), argv[2:], with_flags=False)


@subcommand("command", "getkeysandflags")
def _getkeysandflags(conn: Connection, argv: list[bytes]) -> ReplyT:
    return get_keys(all_commands(), argv[2:], with_flags=True)


container("command", bare=_command)(
    [
        "(no subcommand)",
        "    Return details about all Redis commands.",
        "COUNT",
        "    Return the total number of commands in this Redis server.",
        "LIST",
        "    Return a list of all commands in this Redis server.",
        "INFO [<command-name> ...]",
        "    Return details about multiple Redis commands.",
        "    If no command names are given, documentation details for all",
        "    commands are returned.",
        "DOCS [<command-name> ...]",
        "    Return documentation details about multiple Redis commands.",
        "    If no command names are given, documentation details for all",
        "    commands are returned.",
        "GETKEYS <full-command>",
        "    Return the keys from a full Redis command.",
        "GETKEYSANDFLAGS <full-command>",
        "    Return the keys and the access flags from a full Redis command.",
    ]
)
