"""The memcached front-end: text and meta protocol on an asyncio Protocol per connection,
on the node's loop.

Each command becomes a call of the one command table (node/keyspace/memcached.py) and
travels the same paths as Redis's commands (node/pipeline.py): writes are proposed at once
(a follower forwards them), gets are linearizable by default — a barrier on the leader,
forwarded by followers — or, with --memcached-stale-reads MS, answered by any node whose
state is at most MS behind. Replies go out in request order; `noreply` writes still go
through Raft and still owe a (silent) slot, so a client that never reads cannot make the
node buffer without bound (reading pauses at MAX_PENDING_REPLIES).

Users (node/auth.py, node/acl.py): when the default user needs a password, a connection
authenticates as memcached 1.6's ASCII auth (`memcached -Y`) has it: until then every
command answers `CLIENT_ERROR unauthenticated` except a `set <any key> <flags> <exptime>
<bytes>` whose data block is `<user> <password>`, which answers STORED (nothing is stored)
or `CLIENT_ERROR authentication failure`. Each command is then checked as its Redis
equivalent (the table calls in node/keyspace/memcached.py say which); a refusal is a
`CLIENT_ERROR NOPERM ...` line (none with noreply) and changes nothing. The connection's
engine names its user, so the leader checks a follower's relayed calls again.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog
from raftcache.node import acl
from raftcache.node.auth import penalty_s
from raftcache.node.command_stats import ProtocolStats
from raftcache.node.engine import READ_AT_CLUSTER_TIME, Engine
from raftcache.node.keyspace.memcached import GET_COMMAND, STORE_COMMAND, store_equivalent
from raftcache.node.keyspace.reply import CommandError, ReplyT
from raftcache.node.memcached.admin import VERSION, Discovery, config_get_cluster, stats_reply
from raftcache.node.memcached.forms import (
    STORED_FORM,
    ArithForm,
    Form,
    GetForm,
    MetaForm,
    StatusForm,
    error_line,
)
from raftcache.node.pipeline import FrontEndServer, PipelinedConnection
from raftcache.node.requests import Limits

_log = structlog.get_logger("raftcache.memcached")

MAX_KEY_BYTES = 250
BAD_FORMAT_TEXT = "CLIENT_ERROR bad command line format"
BAD_TOKEN = "CLIENT_ERROR bad token in command line format"
BAD_META_FLAG = "CLIENT_ERROR invalid or duplicate flag"
"""md and ma answer this to any flag they cannot read (mg and ms say which)."""
MAX_LINE_BYTES = 64 * 1024
"""A command line (a multi-key get included) longer than this closes the connection."""
_U32 = 1 << 32
_I32_MAX = (1 << 31) - 1
_U64 = 1 << 64
BAD_FORMAT = b"CLIENT_ERROR bad command line format\r\n"
ERROR = b"ERROR\r\n"
UNAUTHENTICATED = b"CLIENT_ERROR unauthenticated\r\n"
AUTH_FAILURE = b"CLIENT_ERROR authentication failure\r\n"
AUTH_BAD_FORMAT = b"CLIENT_ERROR bad authentication token format\r\n"
AUTH_BAD_TERMINATION = b"CLIENT_ERROR bad command line termination\r\n"
"""memcached 1.6.18's replies in its ASCII auth mode (`-Y`), byte for byte."""
MAX_AUTH_LINE_BYTES = 2048
"""Before authenticating, more than this without a newline closes the connection (as
memcached does with junk)."""
MAX_AUTH_BLOCK_BYTES = 4096
"""The largest `<user> <password>` block read; a larger one is refused and the connection
closed (an unauthenticated client makes the node buffer no more than this)."""


_FAMILIES = {
    **dict.fromkeys((b"get", b"gets", b"gat", b"gats", b"mg"), ("get", "read")),
    **dict.fromkeys(
        (b"set", b"add", b"replace", b"append", b"prepend", b"cas", b"ms"), ("set", "write")
    ),
    **dict.fromkeys((b"delete", b"md"), ("delete", "write")),
    **dict.fromkeys((b"incr", b"decr", b"ma"), ("arith", "write")),
    b"touch": ("touch", "write"),
    b"flush_all": ("admin", "write"),
}


def command_family(name: bytes) -> tuple[str, str]:
    """A memcached command's metrics labels (family, read/write/other)."""
    family = _FAMILIES.get(name)
    if family is not None:
        return family
    return ("admin", "other") if name in _COMMANDS else ("unknown", "other")


@dataclass
class McStats:
    """This node's memcached counters (`stats`)."""

    started: float = field(default_factory=time.time)
    curr_connections: int = 0
    total_connections: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n

    def count_hit(self, op: str, hit: bool, badval: bool = False) -> None:
        """get/touch/incr/decr/delete/cas hits and misses, as memcached names them."""
        if badval:
            self.add(f"{op}_badval")
        else:
            self.add(f"{op}_hits" if hit else f"{op}_misses")


class McServer(FrontEndServer):
    """Owns the listening socket, the connections and the counters."""

    protocol = "memcached"

    def __init__(
        self,
        engine: Engine,
        max_item_bytes: int,
        stale_reads_ms: int = 0,
        max_key_bytes: int = Limits.max_key_bytes,
    ) -> None:
        super().__init__()
        self.engine = engine
        self.max_item_bytes = max_item_bytes
        self.max_key_bytes = max_key_bytes  # --max-key-bytes: a plain set's key within it
        self.stale_reads_ms = stale_reads_ms
        self.stats = McStats()
        self.commands = ProtocolStats("memcached", command_family)  # for node/metrics.py
        self.verbosity = 0
        self.discovery = Discovery()
        self.clients: dict[int, McConnection] = {}

    def connection(self, client_id: int) -> McConnection:
        return McConnection(self, client_id)


Local = Callable[["McConnection", list[bytes]], None]


class McConnection(PipelinedConnection):
    """One memcached client connection."""

    staleness_flag = "--memcached-stale-reads"

    def __init__(self, server: McServer, client_id: int) -> None:
        super().__init__(server.engine)
        self.server = server
        self.id = client_id
        self.stats = server.stats
        self.max_staleness_ms = server.stale_reads_ms
        self._buf = bytearray()
        self._swallow = 0  # bytes of a refused value still to discard
        self._form: Form = Form()
        self.auth_failures = 0
        self._failure_logged = False
        self._penalty: asyncio.TimerHandle | None = None  # a failed auth's delayed reply
        self._name = b""  # the command being handled (for the logs)

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.server.clients[self.id] = self
        self.stats.curr_connections += 1
        self.stats.total_connections += 1
        self.users_changed(self.server.auth.acl(), close_at_once=False)  # default if open

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self._penalty is not None:
            self._penalty.cancel()
            self._penalty = None
        if self.server.clients.pop(self.id, None) is not None:
            self.stats.curr_connections -= 1

    def data_received(self, data: bytes) -> None:
        self._hold_flush()
        try:
            self._take(data)
        finally:
            self._end_read()

    def _take(self, data: bytes) -> None:
        """Run every whole command of the input (a storage command waits for its data)."""
        buf = self._buf
        buf += data
        pos = 0
        while not self._closing and self._penalty is None:
            if self._swallow:
                taken = min(self._swallow, len(buf) - pos)
                pos += taken
                self._swallow -= taken
                if self._swallow:
                    break
            end = buf.find(b"\n", pos)
            if end < 0:
                if self.user is None and len(buf) - pos > MAX_AUTH_LINE_BYTES:
                    self._closing = True  # junk before authenticating: memcached just closes
                    self._close_when_flushed = True
                elif len(buf) - pos > MAX_LINE_BYTES:
                    self._fail(b"CLIENT_ERROR line too long\r\n")
                break
            line = bytes(buf[pos:end]).rstrip(b"\r")
            used = self._command(line, buf, end + 1)
            if used < 0:  # a storage command waiting for its data block
                break
            pos = used
        del buf[:pos]

    def _fail(self, reply: bytes) -> None:
        """A protocol violation this connection cannot recover from: answer and close."""
        self._reply_now(reply)
        self._closing = True
        self._close_when_flushed = True

    def _update_reading(self) -> None:
        if self._penalty is not None:  # nothing more is read until a failed auth answers
            if not self._reading_paused and self.transport is not None and not self._closing:
                self._reading_paused = True
                self.transport.pause_reading()
            return
        super()._update_reading()

    # -- users ---------------------------------------------------------------------------

    def _unauthenticated(self, line: bytes, buf: bytearray, after: int) -> int:
        """A command before authenticating (memcached's try_read_command_asciiauth): only
        `set <key> <flags> <exptime> <bytes>` followed by a `<user> <password>` block is
        heard; anything else answers `CLIENT_ERROR unauthenticated`, quit included."""
        tokens = [t for t in line.split(b" ") if t]
        size = _number(tokens[4]) if len(tokens) >= 5 and tokens[0] == b"set" else None
        if size is None or not 0 <= size < _U32:
            self._reply_now(UNAUTHENTICATED)
            return after
        if size > MAX_AUTH_BLOCK_BYTES:
            self._fail(AUTH_BAD_FORMAT)
            return after
        end = after + size + 2
        if len(buf) < end:
            return -1  # wait for the block
        block = bytes(buf[after:end])
        if not block.endswith(b"\r\n"):
            self._reply_now(AUTH_BAD_TERMINATION)
            return end
        name, _, password = block[:-2].strip(b" ").partition(b" ")
        password = password.lstrip(b" ")
        if not password:
            self._reply_now(AUTH_BAD_FORMAT)
            return end
        self.stats.add("auth_cmds")
        who = name.decode("latin-1")  # as RESP and gRPC read names: their bytes
        user = self.server.auth.acl().authenticate(who, password)
        if user is not None:
            self.authenticated(user)
            self._reply_now(b"STORED\r\n")  # noreply or not, as memcached answers
            return end
        self.stats.add("auth_errors")
        self.auth_failures += 1
        self.server.auth.failed("memcached", "auth", who, not self._failure_logged)
        self._failure_logged = True
        delay = penalty_s(self.auth_failures)
        if not delay:
            self._reply_now(AUTH_FAILURE)
        else:  # guessing gets slow: nothing more is read until the failure answers
            self._penalty = self._loop.call_later(delay, self._penalty_over)
        return end

    def _penalty_over(self) -> None:
        self._penalty = None
        if self._closing:
            return
        self._reply_now(AUTH_FAILURE)
        self.data_received(b"")  # what arrived meanwhile (flushes and resumes reading)

    def permitted(self, argv: list[bytes], noreply: bool = False) -> bool:
        """Whether this connection's user may run argv (a memcached table call, or the Redis
        command a local one amounts to); if not, the refusal is answered (silently with
        noreply), counted, and logged once per connection."""
        user = self.user
        if user is None or user.unrestricted:
            return True
        denied = user.denial(argv)
        if denied is None:
            return True
        text = "CLIENT_ERROR " + acl.noperm_text(denied)
        self.server.auth.failed(
            "memcached",
            "perm",
            self.user_name,
            not self._failure_logged,
            command=self._name.decode("latin-1"),
        )
        self._failure_logged = True
        if self.cmd is not None:
            self.cmd.count_error(text)
        if not noreply:
            self._reply_now(error_line(text))
        return False

    # -- PipelinedConnection's hooks ---------------------------------------------------

    def slot_fmt(self) -> Form:
        return self._form

    def render(self, fmt: Form, reply: ReplyT) -> bytes:
        return fmt.render(reply, self.stats)

    def local_read(
        self, argv: list[bytes], db: int, key: bytes | None, now_ms: int = READ_AT_CLUSTER_TIME
    ) -> ReplyT:
        if argv[0] == GET_COMMAND:  # get, gets, mg: the commonest reads, without the table
            try:
                reply = self.engine.read_mc_get(argv[1:], now_ms)
            except Exception as exc:
                reply = self._read_failed(exc, GET_COMMAND)
        else:
            reply = self.answer_locally(argv, db, now_ms)
        if isinstance(reply, list):
            view = self.engine.view
            for k, item in zip(argv[1:], reply, strict=False):
                view.count_read(k, item is not None)  # a hit is a use for LRU/LFU eviction
        return reply

    # -- dispatch --------------------------------------------------------------------------

    def _command(self, line: bytes, buf: bytearray, after: int) -> int:
        """Handle one command line; returns where the next command starts, or -1 when a
        storage command's data block has not fully arrived."""
        users = self.server.auth.acl()
        if users is not self._acl:
            self.users_changed(users, close_at_once=False)
            if self._closing:
                return after
        if self.user is None:
            return self._unauthenticated(line, buf, after)
        tokens = line.split(b" ")  # memcached separates tokens by spaces only
        if b"" in tokens:
            tokens = [t for t in tokens if t]
        if not tokens:
            self._reply_now(ERROR)
            return after
        self._name = name = tokens[0]
        commands = self.server.commands
        self.cmd = cmd = commands.by_name.get(name) or commands.for_name(name)
        cmd.calls += 1
        if name in _STORAGE or name == b"ms":
            return self._storage(tokens, buf, after)
        handler = _COMMANDS.get(name)
        if handler is None:
            self.stats.add("cmd_unknown")
            cmd.errors += 1
            self._reply_now(ERROR)
            return after
        try:
            handler(self, tokens)
        except CommandError as exc:
            self._error(exc, name in _TEXT_NOREPLY and tokens[-1] == b"noreply")
        return after

    def _storage(self, tokens: list[bytes], buf: bytearray, after: int) -> int:
        """set/add/replace/append/prepend/cas and ms: a command line, then a data block."""
        meta = tokens[0] == b"ms"
        want = 6 if tokens[0] == b"cas" else 5
        if not meta and len(tokens) not in (want, want + 1):
            self._reply_now(ERROR)  # memcached reads no data block then (the next line is a
            return after  # command of its own)
        if meta and len(tokens) < 3:
            self._reply_now(ERROR if len(tokens) < 2 else BAD_FORMAT)
            return after
        quiet = not meta and tokens[-1] == b"noreply"
        try:
            size = self._value_size(tokens, meta)
        except CommandError as exc:
            self._error(exc, quiet)
            return after
        if size > self.server.max_item_bytes:
            # refused, and the data (with its \r\n) discarded: the stream stays in sync
            self.stats.add("cmd_set")
            if not quiet:
                self._reply_now(b"SERVER_ERROR object too large for cache\r\n")
            self._swallow = size + 2
            return after
        end = after + size + 2
        if len(buf) < end:
            return -1  # wait for the rest (the item size limit bounds what is kept)
        data = bytes(buf[after : after + size])
        if buf[end - 2 : end] != b"\r\n":
            if not quiet:
                self._reply_now(b"CLIENT_ERROR bad data chunk\r\n")
            return end
        self.stats.add("cmd_set")
        try:
            if meta:
                self._meta_set(tokens, data)
            else:
                self._text_set(tokens, data)
        except CommandError as exc:
            self._error(exc, quiet)
        return end

    def _error(self, exc: CommandError, quiet: bool) -> None:
        """A refused command's error line; memcached answers nothing at all to `noreply`."""
        if self.cmd is not None:
            self.cmd.count_error(exc.text)
        if not quiet:
            self._reply_now(error_line(exc.text))

    def _value_size(self, tokens: list[bytes], meta: bool) -> int:
        """The data block's size, checked before the data is read (as memcached does: a
        command line refused here has no data block; the next line is a command)."""
        _key(tokens[1])  # a bad key refuses the line before its data (memcached's order)
        size = _number(tokens[2] if meta else tokens[4])
        if size is None or not 0 <= size < _I32_MAX - 2:
            raise CommandError(BAD_FORMAT_TEXT)
        if not meta:
            flags, exptime = _number(tokens[2]), _number(tokens[3])
            if flags is None or not 0 <= flags < _U64 or not _int32(exptime):
                raise CommandError(BAD_FORMAT_TEXT)
            if tokens[0] == b"cas" and not _u64(tokens[5]):
                raise CommandError(BAD_FORMAT_TEXT)
        return size

    def _text_set(self, tokens: list[bytes], data: bytes) -> None:
        name = tokens[0]
        key = tokens[1]
        if (
            name == b"set"
            and len(tokens) == 5
            and tokens[2] == b"0"
            and tokens[3] == b"0"
            and len(key) <= self.server.max_key_bytes
            and (user := self.user) is not None
            and (user.unrestricted or user.denial(store_equivalent(key)) is None)
        ):
            # `set K 0 0 N`, the commonest store, stores what `SET K V` does (flags 0, no
            # expiry, any old type replaced, the same memory bound), so it goes as one: a
            # plain SET through write_sets, the RESP port's own fast write (leader CPU per
            # set 53 -> 40 us, node/DESIGN.md "Memcached sets as plain SETs"). Its OK reads
            # STORED. A restricted user's key is checked as the store's is (the same
            # store_equivalent); a refused one takes the store's path, which answers and
            # logs the refusal.
            self._form = STORED_FORM
            argv = [b"SET", key, data]
            self.write_sets([argv], 0, 3 + len(key) + len(data))
            return
        flags = int(tokens[2]) % _U32  # memcached keeps the low 32 bits of a larger number
        exptime = int(tokens[3])
        cas = tokens[5] if name == b"cas" else b""
        noreply = tokens[-1] == b"noreply"
        mode = b"set" if name == b"cas" else name
        self._form = StatusForm(noreply, "cas" if name == b"cas" else "")
        self._propose(
            [STORE_COMMAND, mode, key, data, b"%d" % flags, b"%d" % exptime, cas],
            len(data),
        )

    def _propose(self, argv: list[bytes], size: int = 0) -> None:
        if not self.permitted(argv, self._form.noreply):
            return
        self._args_bytes = size
        self.write(argv, 0)

    def _get(self, argv: list[bytes], keys: list[bytes]) -> None:
        if not self.permitted(argv):
            return
        stale = self.server.stale_reads_ms > 0
        self.read(argv, 0, keys[0] if keys else None, stale=stale)

    # -- meta commands -------------------------------------------------------------------

    def _meta_set(self, tokens: list[bytes], data: bytes) -> None:
        flags = _meta_flags(tokens[3:], "bcCFIkNOqsTMS")
        key = _meta_key(tokens[1], flags)
        mode = {b"": b"set", b"S": b"set", b"E": b"add", b"A": b"append", b"P": b"prepend"}
        mode.update({b"R": b"replace"})
        raw_mode = flags.get("M", b"").upper()
        if raw_mode not in mode:
            raise CommandError("CLIENT_ERROR invalid mode for ms M token")
        if "I" in flags and "C" in flags:
            raise CommandError(_UNSUPPORTED_INVALIDATE)
        if "F" in flags and not _u64(flags["F"]):
            raise CommandError(BAD_FORMAT_TEXT)
        client_flags = int(flags.get("F", b"0")) % _U32  # memcached keeps the low 32 bits
        ttl = _meta_int(flags, "T", 0, None)
        _meta_int(flags, "N", 0, None)  # memcached 1.6.18 reads N on ms and ignores it
        cas = flags.get("C", b"")
        if cas:
            _meta_int(flags, "C", 0, _U64)
        self._form = _meta_form("ms", key, flags, value=False)
        argv = [STORE_COMMAND, mode[raw_mode], key, data, b"%d" % client_flags]
        self._propose([*argv, b"%d" % ttl, cas], len(data))


def _number(token: bytes) -> int | None:
    """A decimal integer token (memcached's strtol family), or None."""
    digits = token[1:] if token[:1] == b"-" else token
    if not digits or not digits.isdigit() or len(digits) > 20:
        return None
    return int(token)


def _int32(value: int | None) -> bool:
    """memcached's safe_strtol: a number that fits a signed 32-bit integer."""
    return value is not None and -(1 << 31) <= value <= _I32_MAX


def _u64(token: bytes) -> bool:
    """memcached's safe_strtoull: an unsigned 64-bit decimal."""
    return token.isdigit() and len(token) <= 20 and int(token) < _U64


_KEY_REFUSED = re.compile(rb"[\x00-\x20\x7f]")
"""Bytes no memcached key holds: control characters, space and DEL (any byte < 33 or 127)."""


def _key(token: bytes) -> bytes:
    """memcached's key rules: at most 250 bytes, no control characters (spaces split)."""
    if len(token) > MAX_KEY_BYTES or _KEY_REFUSED.search(token) is not None:
        raise CommandError(BAD_FORMAT_TEXT)
    return token


def _meta_flags(tokens: list[bytes], allowed: str) -> dict[str, bytes]:
    """Meta flags: one letter each, some with a token glued on (T30, Oabc)."""
    flags: dict[str, bytes] = {}
    for token in tokens:
        letter = chr(token[0])
        if letter not in allowed:
            raise CommandError("CLIENT_ERROR invalid flag")
        if letter in flags and letter != "O":
            raise CommandError("CLIENT_ERROR duplicate flag")
        flags[letter] = token[1:]
    return flags


def _meta_key(token: bytes, flags: dict[str, bytes]) -> bytes:
    if "b" in flags:
        try:
            token = base64.b64decode(token, validate=True)
        except (binascii.Error, ValueError):
            raise CommandError("CLIENT_ERROR error decoding key") from None
        if not token or len(token) > MAX_KEY_BYTES:
            raise CommandError("CLIENT_ERROR bad command line format")
        return token
    return _key(token)


def _meta_int(flags: dict[str, bytes], letter: str, default: int, limit: int | None) -> int:
    if letter not in flags:
        return default
    value = _number(flags[letter])
    if value is None or (limit is not None and not 0 <= value < limit):
        raise CommandError(BAD_TOKEN)
    if limit is None and not _int32(value):
        raise CommandError(BAD_TOKEN)
    return value


_UNSUPPORTED_INVALIDATE = (
    "CLIENT_ERROR the I (invalidate) flag is not supported by raftcache: delete the key instead"
)
_UNSUPPORTED_VIVIFY = (
    "CLIENT_ERROR mg's N (vivify on miss) flag is not supported by raftcache: "
    "use ms with ME (add) to claim a missing key"
)
_RETURNED = "kOcfst"
_U64_FLAGS = {"C": True, "D": True, "J": True, "N": False, "T": False}
"""md and ma: flags with a number (True: unsigned 64-bit, False: signed 32-bit)."""


def _md_ma_flags(tokens: list[bytes], allowed: str) -> dict[str, bytes]:
    """md and ma's flags: any flag they cannot read is `invalid or duplicate flag`."""
    try:
        flags = _meta_flags(tokens[2:], allowed)
    except CommandError:
        raise CommandError(BAD_META_FLAG) from None
    for letter, unsigned in _U64_FLAGS.items():
        if letter in flags:
            raw = flags[letter]
            if not (_u64(raw) if unsigned else _int32(_number(raw))):
                raise CommandError(BAD_META_FLAG)
    return flags


def _meta_form(kind: str, key: bytes, flags: dict[str, bytes], value: bool) -> MetaForm:
    returns = [f for f in flags if f in _RETURNED]
    return MetaForm(kind, key, returns, flags.get("O"), "q" in flags, value, "b" in flags)


# -- commands without a data block ----------------------------------------------------------

# The Redis commands the local commands are checked as (version, mn and quit need none):
_INFO = [b"info"]  # stats
_CONFIG_RESETSTAT = [b"config", b"resetstat"]  # stats reset
_CONFIG_SET = [b"config", b"set", b"loglevel"]  # verbosity
_CLUSTER_SLOTS = [b"cluster", b"slots"]  # config get cluster (the cluster's topology)

_STORAGE = frozenset((b"set", b"add", b"replace", b"append", b"prepend", b"cas"))
_TEXT_NOREPLY = dict.fromkeys(
    (b"delete", b"incr", b"decr", b"touch", b"flush_all", b"verbosity"), True
)
"""Text commands whose last token may be `noreply` (which then silences errors too)."""
_COMMANDS: dict[bytes, Local] = {}


def _command(name: str) -> Callable[[Local], Local]:
    def register(fn: Local) -> Local:
        _COMMANDS[name.encode()] = fn
        return fn

    return register


def _get_command(conn: McConnection, tokens: list[bytes], cas: bool) -> None:
    keys = [_key(k) for k in tokens[1:]]
    if not keys:
        conn._reply_now(ERROR)
        return
    conn.stats.add("cmd_get", len(keys))
    conn._form = GetForm(keys, cas, touch=False)
    conn._get([GET_COMMAND, *keys], keys)


@_command("get")
def _get_text(conn: McConnection, tokens: list[bytes]) -> None:
    _get_command(conn, tokens, cas=False)


@_command("gets")
def _gets(conn: McConnection, tokens: list[bytes]) -> None:
    _get_command(conn, tokens, cas=True)


def _gat_command(conn: McConnection, tokens: list[bytes], cas: bool) -> None:
    if len(tokens) < 2:
        conn._reply_now(ERROR)
        return
    exptime = _number(tokens[1])
    if exptime is None or not _int32(exptime):
        raise CommandError("CLIENT_ERROR invalid exptime argument")
    keys = [_key(k) for k in tokens[2:]]
    if not keys:
        conn._reply_now(b"END\r\n")
        return
    conn.stats.add("cmd_touch", len(keys))
    conn.stats.add("cmd_get", len(keys))
    conn._form = GetForm(keys, cas, touch=True)
    conn._propose([b"raftcache.mc.gat", b"%d" % exptime, *keys])


@_command("gat")
def _gat(conn: McConnection, tokens: list[bytes]) -> None:
    _gat_command(conn, tokens, cas=False)


@_command("gats")
def _gats(conn: McConnection, tokens: list[bytes]) -> None:
    _gat_command(conn, tokens, cas=True)


@_command("delete")
def _delete(conn: McConnection, tokens: list[bytes]) -> None:
    if not 2 <= len(tokens) <= 4:
        conn._reply_now(ERROR)
        return
    noreply = tokens[-1] == b"noreply"
    if len(tokens) > 2:
        zero = tokens[2] == b"0"  # the legacy "delete <key> 0" form
        if not ((len(tokens) == 3 and (zero or noreply)) or (zero and noreply)):
            raise CommandError(f"{BAD_FORMAT_TEXT}.  Usage: delete <key> [noreply]")
    key = _key(tokens[1])
    conn.stats.add("cmd_delete")
    conn._form = StatusForm(noreply, "delete")
    conn._propose([b"raftcache.mc.delete", key, b""])


def _arith(conn: McConnection, tokens: list[bytes], op: bytes) -> None:
    if len(tokens) not in (3, 4):
        conn._reply_now(ERROR)
        return
    key = _key(tokens[1])
    if not _u64(tokens[2]):
        raise CommandError("CLIENT_ERROR invalid numeric delta argument")
    conn._form = ArithForm(tokens[-1] == b"noreply", op.decode())
    conn._propose([b"raftcache.mc.arith", key, op, tokens[2], b"-1", b"0", b""])


@_command("incr")
def _incr(conn: McConnection, tokens: list[bytes]) -> None:
    _arith(conn, tokens, b"incr")


@_command("decr")
def _decr(conn: McConnection, tokens: list[bytes]) -> None:
    _arith(conn, tokens, b"decr")


@_command("touch")
def _touch(conn: McConnection, tokens: list[bytes]) -> None:
    if len(tokens) not in (3, 4):
        conn._reply_now(ERROR)
        return
    key = _key(tokens[1])
    exptime = _number(tokens[2])
    if exptime is None or not _int32(exptime):
        raise CommandError("CLIENT_ERROR invalid exptime argument")
    conn.stats.add("cmd_touch")
    conn._form = StatusForm(tokens[-1] == b"noreply", "touch")
    conn._propose([b"raftcache.mc.touch", key, b"%d" % exptime])


@_command("flush_all")
def _flush_all(conn: McConnection, tokens: list[bytes]) -> None:
    if len(tokens) > 3:
        conn._reply_now(ERROR)
        return
    noreply = tokens[-1] == b"noreply"
    delay: int | None = 0
    if len(tokens) != (2 if noreply else 1):  # memcached reads the delay, ignores the rest
        delay = _number(tokens[1])
        if delay is None or not _int32(delay):
            raise CommandError("CLIENT_ERROR invalid exptime argument")
    assert delay is not None
    conn.stats.add("cmd_flush")
    conn._form = StatusForm(noreply)
    conn._propose([b"raftcache.mc.flush", b"%d" % max(delay, 0)])


@_command("version")
def _version(conn: McConnection, tokens: list[bytes]) -> None:
    conn._reply_now(f"VERSION {VERSION}\r\n".encode())


@_command("verbosity")
def _verbosity(conn: McConnection, tokens: list[bytes]) -> None:
    if len(tokens) not in (2, 3):
        conn._reply_now(ERROR)
        return
    level = _number(tokens[1])
    if level is None or not 0 <= level < _U64:
        raise CommandError(BAD_FORMAT_TEXT)
    if not conn.permitted(_CONFIG_SET, tokens[-1] == b"noreply"):
        return
    conn.server.verbosity = min(level, 2)
    if tokens[-1] != b"noreply":
        conn._reply_now(b"OK\r\n")


@_command("quit")
def _quit(conn: McConnection, tokens: list[bytes]) -> None:
    conn._closing = True
    conn._close_when_flushed = True


@_command("mn")
def _mn(conn: McConnection, tokens: list[bytes]) -> None:
    conn._reply_now(b"MN\r\n")  # after every earlier command's reply, like any reply


@_command("mg")
def _mg(conn: McConnection, tokens: list[bytes]) -> None:
    if len(tokens) < 2:
        conn._reply_now(ERROR)
        return
    flags = _meta_flags(tokens[2:], "bcfhklOqstTvN")
    key = _meta_key(tokens[1], flags)
    conn.stats.add("cmd_get")
    if "N" in flags:
        raise CommandError(_UNSUPPORTED_VIVIFY)
    conn._form = _meta_form("mg", key, flags, value="v" in flags)
    if "T" in flags:
        ttl = _meta_int(flags, "T", 0, None)
        conn.stats.add("cmd_touch")
        conn._propose([b"raftcache.mc.gat", b"%d" % ttl, key])
        return
    conn._get([GET_COMMAND, key], [key])


@_command("md")
def _md(conn: McConnection, tokens: list[bytes]) -> None:
    if len(tokens) < 2:
        conn._reply_now(ERROR)
        return
    flags = _md_ma_flags(tokens, "bCkOqIT")
    key = _meta_key(tokens[1], flags)
    if "I" in flags or "T" in flags:
        raise CommandError(_UNSUPPORTED_INVALIDATE)
    cas = flags.get("C", b"")
    conn.stats.add("cmd_delete")
    conn._form = _meta_form("md", key, flags, value=False)
    conn._propose([b"raftcache.mc.delete", key, cas])


@_command("ma")
def _ma(conn: McConnection, tokens: list[bytes]) -> None:
    if len(tokens) < 2:
        conn._reply_now(ERROR)
        return
    flags = _md_ma_flags(tokens, "bCNJDTMqOtckv")
    key = _meta_key(tokens[1], flags)
    mode = flags.get("M", b"I").upper()
    if mode not in (b"I", b"+", b"D", b"-"):
        raise CommandError("CLIENT_ERROR invalid mode for ma M token")
    op = b"incr" if mode in (b"I", b"+") else b"decr"
    delta = int(flags.get("D", b"1"))
    vivify = int(flags["N"]) if "N" in flags else -1
    initial = int(flags.get("J", b"0"))
    cas = flags.get("C", b"")
    if "T" in flags:  # T without N would touch an existing counter: not supported
        raise CommandError("CLIENT_ERROR ma's T flag is not supported by raftcache: use N")
    conn._form = _meta_form("ma", key, flags, value="v" in flags)
    argv = [b"raftcache.mc.arith", key, op, b"%d" % delta, b"%d" % vivify, b"%d" % initial]
    conn._propose([*argv, cas])


@_command("stats")
def _stats(conn: McConnection, tokens: list[bytes]) -> None:
    if not conn.permitted(_CONFIG_RESETSTAT if tokens[1:] == [b"reset"] else _INFO):
        return
    reply = stats_reply(conn.server, tokens[1:])
    conn._reply_now(reply)


@_command("config")
def _config(conn: McConnection, tokens: list[bytes]) -> None:
    if tokens[1:] != [b"get", b"cluster"]:
        conn._reply_now(ERROR)
        return
    if not conn.permitted(_CLUSTER_SLOTS):
        return
    conn._reply_now(config_get_cluster(conn.server))
