"""Redis 7.0 functions: FUNCTION LOAD/DELETE/FLUSH/LIST/STATS/DUMP/RESTORE, FCALL, FCALL_RO.

- The loaded libraries are replicated state: one entry of an internal database
  (LIBRARIES_DB, key `\\x00rcdb\\xfe` + b"libraries") holding every library's code, so
  snapshots, digests and followers carry them; no user command reaches it, DBSIZE/SCAN/KEYS
  and eviction skip it, FLUSHALL keeps it (FUNCTION FLUSH drops it), as Redis does.
- What a library registers (names, descriptions, flags) is a pure function of its code: it
  is computed by running the body in a fresh Lua state, cached per process by code.
- FCALL runs like EVAL (scripting.atomically): a fresh Lua state loads the library, then
  calls the function, under the same budget; a failure is rolled back.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from raftcache.node.keyspace.args import parse_int
from raftcache.node.keyspace.db import DB_PREFIX, RESERVED_KEY, Db
from raftcache.node.keyspace.glob import compile_glob
from raftcache.node.keyspace.rdb import RDB_VERSION, BadPayload, Reader, crc64, rdb_string
from raftcache.node.keyspace.reply import OK, CommandError, Map, ReplyT, SetReply, Status
from raftcache.node.keyspace.scripting import NOT_BUSY, RO_FLAGGED, _Script, atomically
from raftcache.node.keyspace.table import command

LIBRARIES_DB: Final = 0xFE
"""The internal database that holds the loaded libraries (outside 0-15)."""
_LIBRARIES_KEY: Final = DB_PREFIX + bytes((LIBRARIES_DB,)) + b"libraries"
_FLAG_ORDER: Final = (
    "no-writes",
    "allow-oom",
    "allow-stale",
    "no-cluster",
    "allow-cross-slot-keys",
)
_BAD_NAME: Final = (
    "ERR Library names can only contain letters, numbers, or underscores(_) and must be at "
    "least one character long"
)


@dataclass(frozen=True)
class Function:
    name: bytes
    description: bytes | None
    flags: frozenset[str]


@dataclass(frozen=True)
class Library:
    name: bytes
    code: bytes  # as loaded, shebang included
    functions: tuple[Function, ...]


# -- reading and writing the stored libraries ----------------------------------------------

_described: dict[bytes, Library] = {}  # code -> Library (bounded; a pure function of code)
_parsed: dict[bytes, dict[bytes, Library]] = {}  # stored blob -> libraries by lower name


def _name_of(code: bytes) -> tuple[bytes, bytes]:
    """(library name, engine) from the shebang, as functionExtractLibMetaData reads it."""
    if not code.startswith(b"#!"):
        raise CommandError("ERR Missing library metadata")
    end = code.find(b"\n")
    if end < 0:
        raise CommandError("ERR Invalid library metadata")
    parts = _split_args(code[:end].decode("latin-1"))
    if not parts:
        raise CommandError("ERR Invalid library metadata")
    engine, name = parts[0][2:].encode("latin-1"), None
    for part in parts[1:]:
        if part[:5].lower() == "name=":
            if name is not None:
                raise CommandError(
                    "ERR Invalid metadata value, name argument was given multiple times"
                )
            name = part[5:].encode("latin-1")
            continue
        raise CommandError(f"ERR Invalid metadata value given: {part}")
    if name is None:
        raise CommandError("ERR Library name was not given")
    if not name or not all(c == 0x5F or (chr(c).isalnum() and c < 128) for c in name):
        raise CommandError(_BAD_NAME)
    if engine.lower() != b"lua":
        shown = engine.decode("utf-8", "replace")
        raise CommandError(f"ERR Engine '{shown}' not found")
    return name, engine


def _split_args(line: str) -> list[str] | None:
    """Redis's sdssplitargs (a quote opens anywhere in a word; "..." takes escapes), or None
    for unbalanced quotes."""
    parts: list[str] = []
    i, n = 0, len(line)
    while True:
        while i < n and line[i].isspace():
            i += 1
        if i >= n:
            return parts
        word: list[str] = []
        while i < n and not line[i].isspace():
            quote = line[i]
            if quote not in "\"'":
                word.append(quote)
                i += 1
                continue
            close = line.find(quote, i + 1)
            while quote == '"' and close > 0 and line[close - 1] == "\\":
                close = line.find(quote, close + 1)
            if close < 0 or (close + 1 < n and not line[close + 1].isspace()):
                return None
            inner = line[i + 1 : close]
            if quote == '"':
                inner = inner.encode("latin-1").decode("unicode_escape")
            word.append(inner)
            i = close + 1
        parts.append("".join(word))


def describe(db: Db, code: bytes) -> Library:
    """The library `code` defines (running its body); CommandError with Redis's text."""
    lib = _described.get(code)
    if lib is not None:
        return lib
    name, _ = _name_of(code)
    body = code[code.find(b"\n") :]  # from the newline: line numbers stay the file's
    script = _Script(db, name)
    try:
        regs = script.registrations(body)
    finally:
        script.close()
    lib = Library(name, code, tuple(Function(n, d, frozenset(f)) for n, d, f, _ in regs))
    if len(_described) >= 1024:
        _described.clear()
    _described[code] = lib
    return lib


def libraries(db: Db) -> dict[bytes, Library]:
    """The loaded libraries by lower-case name, in name order."""
    entry = db.sm._live(_LIBRARIES_KEY, db.now)
    if entry is None or not isinstance(entry[0], bytes):
        return {}
    blob = entry[0]
    libs = _parsed.get(blob)
    if libs is None:
        libs = {}
        i = 0
        while i < len(blob):
            (n,) = struct.unpack_from(">I", blob, i)
            lib = describe(db, blob[i + 4 : i + 4 + n])
            libs[lib.name.lower()] = lib
            i += 4 + n
        if len(_parsed) >= 64:
            _parsed.clear()
        _parsed[blob] = libs
    return libs


def _save(db: Db, libs: dict[bytes, Library]) -> None:
    if not libs:
        if db.sm._live(_LIBRARIES_KEY, db.now) is not None:
            db.sm._drop(_LIBRARIES_KEY, "delete")
        return
    blob = b"".join(struct.pack(">I", len(libs[k].code)) + libs[k].code for k in sorted(libs))
    db.sm._put(_LIBRARIES_KEY, blob, 0)


def _function_index(libs: dict[bytes, Library]) -> dict[bytes, tuple[Library, Function]]:
    return {f.name.lower(): (lib, f) for lib in libs.values() for f in lib.functions}


def counts(db: Db) -> tuple[int, int]:
    """(libraries, functions) loaded (INFO, FUNCTION STATS)."""
    libs = libraries(db)
    return len(libs), sum(len(lib.functions) for lib in libs.values())


def _join(
    current: dict[bytes, Library], new: list[Library], replace: bool, quoted: bool
) -> dict[bytes, Library]:
    """`current` with `new` added (Redis's libraryJoin / functionsCreateWithLibraryCtx)."""
    libs = dict(current)
    for lib in new:
        key = lib.name.lower()
        if key in libs and not replace:
            shown = lib.name.decode("utf-8", "replace")
            raise CommandError(
                f"ERR Library '{shown}' already exists" if quoted else
                f"ERR Library {shown} already exists"
            )  # fmt: skip
        libs.pop(key, None)
        taken = _function_index(libs)
        for f in lib.functions:
            if f.name.lower() in taken:
                raise CommandError(
                    f"ERR Function {f.name.decode('utf-8', 'replace')} already exists"
                )
        libs[key] = lib
    return libs


# -- FUNCTION ---------------------------------------------------------------------------------

_HELP: Final = [
    "FUNCTION <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "LOAD [REPLACE] <FUNCTION CODE>",
    "    Create a new library with the given library name and code.",
    "DELETE <LIBRARY NAME>",
    "    Delete the given library.",
    "LIST [LIBRARYNAME PATTERN] [WITHCODE]",
    "    Return general information on all the libraries:",
    "    * Library name",
    "    * The engine used to run the Library",
    "    * Library description",
    "    * Functions list",
    "    * Library code (if WITHCODE is given)",
    "    It also possible to get only function that matches a pattern using LIBRARYNAME argument.",
    "STATS",
    "    Return information about the current function running:",
    "    * Function name",
    "    * Command used to run the function",
    "    * Duration in MS that the function is running",
    "    If no function is running, return nil",
    "    In addition, returns a list of available engines.",
    "KILL",
    "    Kill the current running function (raftcache: a function runs to completion",
    "    within its execution budget, so there is never one to kill).",
    "FLUSH [ASYNC|SYNC]",
    "    Delete all the libraries (replicated: every node forgets them).",
    "DUMP",
    "    Return a serialized payload representing the current libraries, can be restored "
    "using FUNCTION RESTORE command",
    "RESTORE <PAYLOAD> [FLUSH|APPEND|REPLACE]",
    "    Restore the libraries represented by the given payload, it is possible to give a "
    "restore policy to",
    "    control how to handle existing libraries (default APPEND):",
    "    * FLUSH: delete all existing libraries.",
    "    * APPEND: appends the restored libraries to the existing libraries. On collision, abort.",
    "    * REPLACE: appends the restored libraries to the existing libraries, On collision, "
    "replace the old",
    "      libraries with the new libraries (notice that even on this option there is a "
    "chance of failure",
    "      in case of functions name collision with another library).",
    "HELP",
    "    Print this help.",
]
# subcommand -> (min words, max words or -1), the whole command counted
_ARITY: Final = {
    b"load": (3, -1), b"delete": (3, 3), b"flush": (2, 3), b"list": (2, -1), b"stats": (2, 2),
    b"dump": (2, 2), b"restore": (3, 4), b"kill": (2, 2), b"help": (2, 2),
}  # fmt: skip
_POLICIES: Final = (b"append", b"replace", b"flush")


def _check_function(argv: list[bytes]) -> None:
    sub = argv[1].lower()
    bounds = _ARITY.get(sub)
    n = len(argv)
    if bounds is None:
        shown = argv[1].decode("utf-8", "replace")[:128]
        raise CommandError(f"ERR unknown subcommand '{shown}'. Try FUNCTION HELP.")
    if n < bounds[0] or (bounds[1] >= 0 and n > bounds[1]):
        raise CommandError(
            f"ERR unknown subcommand or wrong number of arguments for '{sub.decode()}'. "
            "Try FUNCTION HELP."
        )
    if sub == b"load":
        for option in argv[2:-1]:
            if option.lower() != b"replace":
                shown = option.decode("utf-8", "replace")
                raise CommandError(f"ERR Unknown option given: {shown}")
    elif sub == b"flush" and n == 3 and argv[2].lower() not in (b"sync", b"async"):
        raise CommandError("ERR FUNCTION FLUSH only supports SYNC|ASYNC option")
    elif sub == b"restore" and n == 4 and argv[3].lower() not in _POLICIES:
        raise CommandError(
            "ERR Wrong restore policy given, value should be either FLUSH, APPEND or REPLACE."
        )
    elif sub == b"list":
        _list_options(argv)


def _list_options(argv: list[bytes]) -> tuple[bool, bytes | None]:
    with_code, pattern = False, None
    i = 2
    while i < len(argv):
        option = argv[i].lower()
        if not with_code and option == b"withcode":
            with_code = True
        elif pattern is None and option == b"libraryname":
            if i >= len(argv) - 1:
                raise CommandError("ERR library name argument was not given")
            i += 1
            pattern = argv[i]
        else:
            raise CommandError(f"ERR Unknown argument {argv[i].decode('utf-8', 'replace')}")
        i += 1
    return with_code, pattern


@command("function", -2, "write noscript", keys=(0, 0, 0), group="scripting",
         check=_check_function)  # fmt: skip
def function(db: Db, argv: list[bytes]) -> ReplyT:
    """FUNCTION (logged, like SCRIPT: LOAD, DELETE, FLUSH and RESTORE change every replica)."""
    sub = argv[1].lower()
    if sub == b"load":
        code = argv[-1]
        replace = len(argv) > 3
        name, _ = _name_of(code)
        current = libraries(db)
        if name.lower() in current and not replace:
            raise CommandError(f"ERR Library '{name.decode('utf-8', 'replace')}' already exists")
        _save(db, _join(current, [describe(db, code)], replace, quoted=True))
        return name
    if sub == b"delete":
        libs = dict(libraries(db))
        if libs.pop(argv[2].lower(), None) is None:
            raise CommandError("ERR Library not found")
        _save(db, libs)
        return OK
    if sub == b"flush":
        _save(db, {})
        return OK
    if sub == b"list":
        return _list(db, argv)
    if sub == b"stats":
        n_libs, n_functions = counts(db)
        lua = Map([b"libraries_count", n_libs, b"functions_count", n_functions])
        return Map([b"running_script", None, b"engines", Map([b"LUA", lua])])
    if sub == b"dump":
        return dump(libraries(db).values())
    if sub == b"restore":
        return _restore(db, argv)
    if sub == b"kill":
        raise CommandError(NOT_BUSY)
    return [Status(line) for line in _HELP]


def _list(db: Db, argv: list[bytes]) -> ReplyT:
    with_code, pattern = _list_options(argv)
    match = compile_glob(pattern.lower()) if pattern is not None else None
    out: list[ReplyT] = []
    for lib in libraries(db).values():
        if match is not None and not match(lib.name.lower()):
            continue
        functions: list[ReplyT] = [
            Map([
                b"name", f.name, b"description", f.description,
                b"flags", SetReply(Status(flag) for flag in _FLAG_ORDER if flag in f.flags),
            ])
            for f in lib.functions
        ]  # fmt: skip
        item = Map([b"library_name", lib.name, b"engine", b"LUA", b"functions", functions])
        if with_code:
            item.extend([b"library_code", lib.code])
        out.append(item)
    return out


def _restore(db: Db, argv: list[bytes]) -> ReplyT:
    policy = argv[3].lower() if len(argv) == 4 else b"append"
    new = [describe(db, code) for code in undump(argv[2])]
    if policy == b"flush":
        libs = _join({}, new, replace=False, quoted=False)
    else:
        libs = _join(libraries(db), new, replace=policy == b"replace", quoted=False)
    _save(db, libs)
    return OK


# -- FCALL ------------------------------------------------------------------------------------


def _fcall_numkeys(argv: list[bytes]) -> int:
    n = parse_int(argv[2], "ERR Bad number of keys provided")
    if n > len(argv) - 3:
        raise CommandError("ERR Number of keys can't be greater than number of args")
    if n < 0:
        raise CommandError("ERR Number of keys can't be negative")
    for key in argv[3 : 3 + n]:
        if key.startswith(DB_PREFIX):
            raise CommandError(RESERVED_KEY)
    return n


def _check_fcall(argv: list[bytes]) -> None:
    _fcall_numkeys(argv)


def _fcall(db: Db, argv: list[bytes], read_only: bool) -> ReplyT:
    found = _function_index(libraries(db)).get(argv[1].lower())
    if found is None:
        raise CommandError("ERR Function not found")
    lib, fn = found
    n = _fcall_numkeys(argv)
    no_writes = "no-writes" in fn.flags
    if read_only and not no_writes:
        raise CommandError(RO_FLAGGED)
    keys, args = argv[3 : 3 + n], argv[3 + n :]
    body = lib.code[lib.code.find(b"\n") :]
    return atomically(
        db, fn.name, read_only or no_writes,
        lambda script: script.execute_function(body, fn.name, keys, args),
    )  # fmt: skip


@command("fcall", -3, "write noscript skip_monitor movablekeys", keys=(0, 0, 0),
         group="scripting", check=_check_fcall)  # fmt: skip
def fcall(db: Db, argv: list[bytes]) -> ReplyT:
    return _fcall(db, argv, read_only=False)


@command("fcall_ro", -3, "readonly noscript skip_monitor movablekeys", keys=(0, 0, 0),
         group="scripting", check=_check_fcall)  # fmt: skip
def fcall_ro(db: Db, argv: list[bytes]) -> ReplyT:
    return _fcall(db, argv, read_only=True)


# -- DUMP / RESTORE payloads (Redis's RDB function opcodes, version 10, CRC64) ----------------

_OPCODE_FUNCTION2: Final = 245


def dump(libs: object) -> bytes:
    """FUNCTION DUMP's payload (strings stored uncompressed; Redis reads both)."""
    body = b"".join(
        bytes((_OPCODE_FUNCTION2,)) + rdb_string(lib.code)
        for lib in libs  # type: ignore[attr-defined]
    )
    body += struct.pack("<H", RDB_VERSION)
    return body + struct.pack("<Q", crc64(body))


_BAD_PAYLOAD: Final = "ERR DUMP payload version or checksum are wrong"


def undump(payload: bytes) -> list[bytes]:
    """The library codes in a FUNCTION DUMP payload (Redis's or ours)."""
    if len(payload) < 10:
        raise CommandError(_BAD_PAYLOAD)
    (version,) = struct.unpack_from("<H", payload, len(payload) - 10)
    (crc,) = struct.unpack_from("<Q", payload, len(payload) - 8)
    if version > RDB_VERSION or (crc != 0 and crc != crc64(payload[:-8])):
        raise CommandError(_BAD_PAYLOAD)
    codes, r = [], Reader(payload[:-10])
    try:
        while r.pos < len(r.data):
            if r.byte() != _OPCODE_FUNCTION2:
                raise CommandError("ERR given type is not a function")
            codes.append(r.string())
    except BadPayload:
        raise CommandError("ERR failed loading the given functions payload") from None
    return codes
