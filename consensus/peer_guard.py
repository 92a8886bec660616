"""Bad peers (issue 16 item 5): what a peer sends is checked, never silently skipped.

pysyncobj 0.3.17 drops a connection whose frame does not decode without a word (its
own comment: "Why no logging of security errors?"), drops a half-received frame on
close the same way, hands a decoded message of the wrong shape to handlers that raise
on the tick thread, and when applying the log it skips an entry of a type it does not
know, and steps over an entry from a newer code version after logging it. Here:

- **Frames** (``CheckedTcpConnection``, installed in place of pysyncobj's
  ``TcpConnection``): a frame whose length header is negative or beyond any frame a
  peer sends (``frame_limit``), that does not decrypt with this node's secret, whose
  timestamp or session key is not the connection's, that does not decompress and
  unpickle, or that stops part-way (the peer closed, reset or went quiet for the
  connection timeout mid-frame) is logged as one structured error naming the peer and
  what was wrong, counted by reason (``BadFrames``, ``raftcache_raft_bad_frames``), and
  the connection is dropped. Nothing of that frame reaches the Raft handler, and Raft's
  own log matching makes the sender resend from the first entry the receiver lacks: a
  dropped frame can delay entries, never lose one while later ones apply.
- **Messages** (``GuardedSyncObj._SyncObj__onMessageReceived`` and
  ``CheckedTransport._onIncomingMessageReceived``): a frame that decodes to something
  that is not a message, or a message a handler raises on, counts as ``malformed``
  and drops the connection too, instead of an exception on the tick thread.
- **Utility commands** (``CheckedTransport._onUtilityMessage``): pysyncobj answers a
  list sent as the first message of an incoming connection (what ``syncobj_admin``
  sends: ``status``, ``add``, ``remove``, ``set_version``, ``transfer``) before it asks
  who is calling, so anyone with the Raft secret could change the membership behind
  ``RaftNode.change_membership``'s checks. Only the commands registered through
  ``GuardedSyncObj.answer_utility`` are answered; any other gets a ``FAIL ...: this
  command is refused by raftcache`` answer naming the raftcache command to use, is
  logged as a warning naming the peer and counted as ``refused_admin``.
- **Entries** (``GuardedSyncObj._SyncObj__doApplyCommand``): an entry this build
  cannot apply (an unknown pysyncobj entry type, a code version above ours, an unknown
  replicated method, or anything the state machine raises on, such as a command
  format newer than ``node/commands.py`` knows) halts the node: ``on_bad_entry`` is
  called once (RaftNode's ``on_fatal``: a critical log line and exit 70) and no later
  entry is applied, since skipping one would make this replica diverge.

Relies on pysyncobj 0.3.17 internals: ``TcpConnection``'s private read, parse and
timeout methods and fields, the module-level ``TcpConnection`` names in
``pysyncobj.transport`` and ``pysyncobj.tcp_server``, ``_SyncObj__doApplyCommand``,
``_SyncObj__onMessageReceived`` and ``_SyncObj__transport``.
"""

from __future__ import annotations

import collections
import errno
import pickle
import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import pysyncobj.tcp_server
import pysyncobj.transport
import structlog
from cryptography.fernet import InvalidToken
from pysyncobj import pickle as _pysyncobj_pickle
from pysyncobj.monotonic import monotonic as _pysyncobj_monotonic
from pysyncobj.node import TCPNode
from pysyncobj.syncobj import _COMMAND_TYPE, SyncObjExceptionWrongVer
from pysyncobj.tcp_connection import CONNECTION_STATE, TcpConnection
from raftcache.consensus.commit_notice import CommitNoticeSyncObj
from raftcache.consensus.lease import LeaseTransport
from raftcache.consensus.log_matching import is_snapshot_part

_log = structlog.get_logger("raftcache.consensus.peers")

REASONS = (
    "oversized",
    "undecryptable",
    "replayed",
    "undecodable",
    "truncated",
    "malformed",
    "refused_admin",
)
"""Why a frame was refused; each is a label of raftcache_raft_bad_frames."""

ADMIN_REFUSED = "this command is refused by raftcache"
"""In the answer to a pysyncobj utility command this node does not take."""
_ADMIN_HINTS = {
    "add": "use `raftcache member add` (one change at a time, the newcomer caught up first)",
    "remove": "use `raftcache member remove` (refused where it would lose quorum)",
    "transfer": "use `raftcache leader transfer`",
    "set_version": "the code version changes only with a raftcache upgrade",
    "status": "use `raftcache status`",
}

_LENGTH = struct.Struct("i")  # pysyncobj's frame header: native int, the frame's length
_KNOWN_ENTRY_TYPES = frozenset(
    {_COMMAND_TYPE.REGULAR, _COMMAND_TYPE.NO_OP, _COMMAND_TYPE.MEMBERSHIP, _COMMAND_TYPE.VERSION}
)
_LOG_EVERY_S = 10.0
_LOGGED_KEYS = 1024
_RECENT = 64


def frame_limit(max_entry_bytes: int) -> int:
    """The largest frame a peer may send: 8x the largest entry, plus 1 MiB.

    An append carries entries totalling less than two batches (`max_entry_bytes` each);
    pickling adds at most about as much again for small entries, Fernet a third; a
    snapshot chunk is 1 MiB. A header announcing more is not a frame (b"GET " announces
    ~517 MiB): waiting for it would only buffer garbage.
    """
    return 8 * max_entry_bytes + (1 << 20)


@dataclass(frozen=True)
class BadFrame:
    """One refused frame (or message): who sent it and what was wrong."""

    peer: str
    reason: str
    detail: str


class BadFrames:
    """Frames this node refused, by reason; the tick thread records, anyone reads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(REASONS, 0)
        self.recent: collections.deque[BadFrame] = collections.deque(maxlen=_RECENT)
        self._logged: dict[tuple[str, str], tuple[float, int]] = {}

    def counts(self) -> dict[str, int]:
        """Refused frames since start, every reason included (0 too)."""
        with self._lock:
            return dict(self._counts)

    def record(self, peer: str, reason: str, detail: str) -> None:
        """Count the frame and log it (one line per peer host and reason per 10 s)."""
        with self._lock:
            self._counts[reason] = self._counts.get(reason, 0) + 1
            self.recent.append(BadFrame(peer, reason, detail))
            key = (_host(peer), reason)
            now = float(_pysyncobj_monotonic())
            last, suppressed = self._logged.get(key, (float("-inf"), 0))
            if now - last < _LOG_EVERY_S:
                self._logged[key] = (last, suppressed + 1)
                return
            if len(self._logged) > _LOGGED_KEYS:  # many scanning hosts: start over
                self._logged.clear()
            self._logged[key] = (now, 0)
        if reason == "refused_admin":  # answered, not a broken stream: the connection stays
            _log.warning(
                "refused a pysyncobj utility command on the Raft port",
                peer=peer,
                reason=reason,
                detail=detail,
                **({"suppressed_since_last_line": suppressed} if suppressed else {}),
            )
            return
        # A frame cut off mid-way is what a peer killed or cut off mid-append leaves behind
        # (every restart under load): a warning; the rest cannot come from a healthy peer.
        (_log.warning if reason == "truncated" else _log.error)(
            "refused a bad frame from a Raft peer and dropped the connection",
            peer=peer,
            reason=reason,
            detail=detail,
            **({"suppressed_since_last_line": suppressed} if suppressed else {}),
        )


def _host(peer: str) -> str:
    return peer.split(" ", 1)[0].rpartition(":")[0] or peer


class _Bad(Exception):
    """A frame refused for `reason`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


PICKLE_PROTOCOL = 4
"""How our proposals and Raft frames are pickled (`CheckedTcpConnection.send`,
`raft._Consumer.propose`). pysyncobj pickles at protocol 2, for Python 2 peers, where a
bytes object is pickled as a latin-1 string encoded in UTF-8: every byte of 0x80 and above
takes two, and both sides pay a transcoding. An entry of 730 SETs of 100 random bytes (89 KB
of protobuf) pickled to 126 KB in 370 us and unpickled in 299 on every replica, against
89 KB in 2 and 3 us at protocol 4; its frames pickle the pickled entry once more. Every
Python 3 unpickler reads any protocol, so nodes of older builds apply these entries and
read these frames as they read their own (tests/unit/test_raft_frames.py,
tests/consensus/test_entry_pickling.py)."""


COMPRESS_FROM = 64 << 10
"""Only frames of at least this many bytes may be deflated (snapshot parts, and log frames
on an encrypted link, each while that pays: `AdaptiveDeflate`); smaller ones go stored."""


def frame_payload(pickled: bytes) -> bytes:
    """A message's bytes as a zlib stream of stored (uncompressed) blocks.

    pysyncobj sends `zlib.compress(message, 3)`, and every receiver, ours and stock
    pysyncobj's, runs `zlib.decompress` on what arrives: any zlib stream will do. For small
    frames zlib's cost is its per-call setup, not the bytes (54-67 us for a 64-byte
    acknowledgement here, against 0.9 stored); for large ones it is the bytes, and it is
    paid per follower on the leader's tick thread: 2.0 ms to deflate an entry of 1,024
    random 100-byte SETs (122 KiB) against 46 us stored. Log entries therefore go stored,
    as etcd's and Redis's replication streams do, except where deflating first pays
    (`AdaptiveDeflate`): consensus/DESIGN.md "The Raft port".
    """
    framer = zlib.compressobj(0, zlib.DEFLATED, 9, 1)
    return framer.compress(pickled) + framer.flush()


DEFLATE_PAYS = 4
"""On an encrypted link a big log frame is deflated while deflating shrinks such frames at
least this many times (`AdaptiveDeflate`)."""
SNAPSHOT_DEFLATE_PAYS = 2
"""A snapshot part is deflated while deflating shrinks parts at least this many times: a
part of values that do not pack (random, compressed or encrypted bytes) cost the leader's
tick thread 16-24 ms a MiB to deflate for nothing (`AdaptiveDeflate`)."""
PROBE_EVERY = 16
"""Big frames of a stream sent stored before it deflates one again to check."""


class AdaptiveDeflate:
    """Whether the big frames of one stream (a link's log frames, its snapshot parts) go
    deflated. It deflates a frame, keeps deflating while that shrinks them `pays` times
    or more, and otherwise sends the next `PROBE_EVERY` frames stored before it tries again
    (consensus/DESIGN.md "The Raft port").
    - Log frames on an encrypted link (`DEFLATE_PAYS`): Fernet's cost follows the bytes on
      both sides (~3.8 ns a byte, 460 us for a 122 KiB entry), so values that pack well
      are cheaper deflated first (redis-benchmark's: 140 us to a 3 KiB frame), while
      values that do not pack cost 2 ms more to deflate for nothing.
    - Snapshot parts on every link (`SNAPSHOT_DEFLATE_PAYS`): their bytes are the whole
      state, so what packs is sent packed, but a 1 MiB part of random values costs the
      leader's tick thread 16-24 ms to deflate and shrinks by a few percent."""

    __slots__ = ("_pays", "_stored_left")

    def __init__(self, pays: int) -> None:
        self._pays = pays
        self._stored_left = 0

    def frame(self, pickled: bytes) -> bytes:
        if self._stored_left:
            self._stored_left -= 1
            return frame_payload(pickled)
        data = zlib.compress(pickled, 1)
        if len(data) * self._pays > len(pickled):
            self._stored_left = PROBE_EVERY
        return data


READ_BUDGET = 4 << 20
"""Bytes a Raft connection reads per readiness event (`CheckedTcpConnection`)."""


class CheckedTcpConnection(TcpConnection):  # type: ignore[misc]  # pysyncobj is untyped
    """pysyncobj's TcpConnection with every received frame checked (module docstring)."""

    # pysyncobj's attributes this class assigns (declared for mypy only).
    _TcpConnection__readBuffer: bytes
    recvLastTimestamp: int

    # Set by CheckedTransport for the connections it owns: (connection, reason, detail).
    on_bad_frame: Callable[[CheckedTcpConnection, str, str], None] | None = None
    max_frame_bytes: int = frame_limit(64 << 20)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._eof = False
        self._read_budget = READ_BUDGET
        self._start_framing()
        sock = kwargs.get("socket")
        self.remote = "?"
        if sock is not None:
            try:
                host, port = sock.getpeername()[:2]
                self.remote = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            except OSError:
                pass
        super().__init__(*args, **kwargs)

    def connect(self, host: str, port: int) -> bool:
        self._eof = False
        self._start_framing()  # pysyncobj reuses a dialled peer's object: start afresh
        self.remote = f"[{host}]:{port}" if host and ":" in host else f"{host}:{port}"
        return bool(super().connect(host, port))

    def _start_framing(self) -> None:
        self._framing = AdaptiveDeflate(DEFLATE_PAYS)  # log frames (on an encrypted link)
        self._snapshot_framing = AdaptiveDeflate(SNAPSHOT_DEFLATE_PAYS)

    def send(self, message: Any) -> None:
        """pysyncobj's send, framing the message as stored zlib blocks (`frame_payload`),
        except big snapshot parts, and big log frames on an encrypted link, which are
        deflated while that pays (`AdaptiveDeflate`)."""
        snapshot = is_snapshot_part(message)
        if self.sendRandKey:
            message = (self.sendRandKey, message)
        pickled = pickle.dumps(message, PICKLE_PROTOCOL)
        if len(pickled) < COMPRESS_FROM:
            data = frame_payload(pickled)
        elif snapshot:
            data = self._snapshot_framing.frame(pickled)
        elif self.encryptor:
            data = self._framing.frame(pickled)
        else:
            data = frame_payload(pickled)
        if self.encryptor:
            data = self.encryptor.encrypt_at_time(data, int(_pysyncobj_monotonic()))
        self._TcpConnection__writeBuffer += _LENGTH.pack(len(data)) + data
        self._TcpConnection__trySendBuffer()

    def disconnect(self) -> None:
        self._eof = False
        super().disconnect()

    # -- pysyncobj's private reads, parse and timeout, re-implemented with checks

    def _TcpConnection__tryReadBuffer(self) -> None:
        """pysyncobj's: read until the socket is empty, then note the time. Here at most
        `READ_BUDGET` bytes per readiness event, so that a peer streaming faster than this
        node parses (a snapshot in stored parts) cannot hold the tick thread: the poller is
        level-triggered and the rest is read on the next tick."""
        self._read_budget = READ_BUDGET
        while self._TcpConnection__processRead():
            pass
        self._TcpConnection__lastReadTime = _pysyncobj_monotonic()

    def _TcpConnection__processRead(self) -> bool:
        sock = self._TcpConnection__socket
        try:
            incoming = sock.recv(min(self._TcpConnection__recvBufferSize, self._read_budget))
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                self._cut_off(f"the connection failed ({exc.strerror})")
                self.disconnect()
            return False
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            self._cut_off("the connection failed")
            self.disconnect()
            return False
        if not incoming:
            # The peer closed: parse the whole frames it sent before, then disconnect
            # (_TcpConnection__processParseMessage). pysyncobj dropped them unread.
            self._eof = True
            return False
        self._TcpConnection__readBuffer += incoming
        self._read_budget -= len(incoming)
        return self._read_budget > 0

    def _TcpConnection__processParseMessage(self) -> Any:
        buffer = self._TcpConnection__readBuffer
        if len(buffer) >= _LENGTH.size:
            (size,) = _LENGTH.unpack_from(buffer)
            if not 0 <= size <= self.max_frame_bytes:
                return self._refuse(
                    "oversized",
                    f"a frame header announces {size} bytes; no peer frame exceeds "
                    f"{self.max_frame_bytes} (not a raftcache Raft peer?)",
                )
            end = _LENGTH.size + size
            if len(buffer) >= end:
                try:
                    message = self._decode(bytes(buffer[_LENGTH.size : end]))
                except _Bad as bad:
                    return self._refuse(bad.reason, bad.detail)
                self._TcpConnection__readBuffer = buffer[end:]
                return message
        if self._eof:
            self._cut_off("the peer closed the connection")
            self.disconnect()
        return None

    def _TcpConnection__processConnectionTimeout(self) -> None:
        idle = float(_pysyncobj_monotonic()) - self._TcpConnection__lastReadTime
        if idle > self._TcpConnection__timeout and self.state != CONNECTION_STATE.DISCONNECTED:
            self._cut_off(f"the peer sent nothing for {idle:.1f} s")
        super()._TcpConnection__processConnectionTimeout()

    def _decode(self, data: bytes) -> Any:
        encryptor = self.encryptor
        if encryptor:
            try:
                timestamp = encryptor.extract_timestamp(data)
                if timestamp < self.recvLastTimestamp:
                    raise _Bad(
                        "replayed",
                        f"the frame is stamped {timestamp}, before the previous frame "
                        f"({self.recvLastTimestamp}): replayed or reordered",
                    )
                self.recvLastTimestamp = timestamp
                data = encryptor.decrypt(data)
            except _Bad:
                raise
            except Exception as exc:  # InvalidToken, or whatever else a token of junk raises
                why = "" if isinstance(exc, InvalidToken) else f" ({type(exc).__name__})"
                raise _Bad(
                    "undecryptable",
                    f"a {len(data)}-byte frame does not decrypt with this node's "
                    f"--raft-secret{why} (another secret on the peer, or not a raftcache peer)",
                ) from None
        try:
            message = _pysyncobj_pickle.loads(zlib.decompress(data))
        except Exception as exc:
            raise _Bad(
                "undecodable",
                f"a {len(data)}-byte frame is not a pysyncobj message "
                f"({type(exc).__name__}: {exc})"[:300],
            ) from None
        if self.recvRandKey:
            if not (
                isinstance(message, tuple) and len(message) == 2 and message[0] == self.recvRandKey
            ):
                raise _Bad("replayed", "the frame does not carry this connection's session key")
            message = message[1]
        return message

    def _refuse(self, reason: str, detail: str) -> None:
        self._report(reason, detail)
        self.disconnect()
        return None

    def _cut_off(self, why: str) -> None:
        """Report a frame left incomplete when the connection ends (nothing if none is)."""
        buffer = self._TcpConnection__readBuffer
        pos = 0
        while len(buffer) - pos >= _LENGTH.size:
            (size,) = _LENGTH.unpack_from(buffer, pos)
            if not 0 <= size <= self.max_frame_bytes or len(buffer) - pos - _LENGTH.size < size:
                break
            pos += _LENGTH.size + size
        if pos == len(buffer):
            return
        have = len(buffer) - pos
        if have < _LENGTH.size:
            detail = f"{why} {have} bytes into a frame header"
        else:
            (size,) = _LENGTH.unpack_from(buffer, pos)
            detail = f"{why} {have - _LENGTH.size} bytes into a {size}-byte frame"
        self._report("truncated", detail)

    def _report(self, reason: str, detail: str) -> None:
        if self.on_bad_frame is not None:
            self.on_bad_frame(self, reason, detail)
        else:
            _log.error(
                "refused a bad frame and dropped the connection",
                peer=self.remote,
                reason=reason,
                detail=detail,
            )


def install() -> None:
    """Make pysyncobj create CheckedTcpConnections (idempotent)."""
    pysyncobj.transport.TcpConnection = CheckedTcpConnection
    pysyncobj.tcp_server.TcpConnection = CheckedTcpConnection


class CheckedTransport(LeaseTransport):
    """The transport of GuardedSyncObj: wires its connections to the node's BadFrames."""

    _syncObj: GuardedSyncObj

    def _watch(self, conn: Any) -> None:
        if isinstance(conn, CheckedTcpConnection):
            conn.on_bad_frame = self.report
            conn.max_frame_bytes = self._syncObj.max_frame_bytes

    def _onNewIncomingConnection(self, conn: Any) -> None:
        super()._onNewIncomingConnection(conn)
        self._watch(conn)

    def addNode(self, node: Any) -> None:
        super().addNode(node)
        self._watch(self._connections.get(node))

    def send(self, node: Any, message: Any) -> bool:
        """Nothing goes to a dialled member before the encrypted link's session keys are
        exchanged. pysyncobj calls a dialled connection connected as soon as TCP connects,
        and sends whatever its tick sends then (our state queries, its own vote requests)
        before the member's key has come back, so without the key: the member refused
        each such frame as ``replayed`` and dropped the link (a CI run: at start-up, the
        first node's refusal count). Until the exchange is done a send fails, as one to
        a member not connected does; Raft resends what matters."""
        if self._syncObj.encryptor:
            conn = self._connections.get(node)
            if conn is not None and not conn.sendRandKey:
                return False
        return bool(super().send(node, message))

    def _onIncomingMessageReceived(self, conn: Any, message: Any) -> None:
        try:
            super()._onIncomingMessageReceived(conn, message)
        except Exception as exc:  # pysyncobj raised on an odd handshake (an unhashable id)
            self.report(conn, "malformed", f"not a pysyncobj handshake ({exc!r})"[:300])
            conn.disconnect()
            self._unknownConnections.discard(conn)

    def _onUtilityMessage(self, conn: Any, message: list[Any]) -> bool:
        """A list as the first message of an incoming connection: a utility command.
        pysyncobj answers these before asking who calls; only the ones raftcache registered
        (``GuardedSyncObj.answer_utility``) are, every other one is refused (answered with
        why, logged, counted). The connection stays for the caller to close, as after an
        answer pysyncobj gives: pysyncobj's own client loses an answer that arrives
        together with the close."""
        command = message[0] if message else None
        if isinstance(command, str) and command in self._syncObj.utility_commands:
            return bool(super()._onUtilityMessage(conn, message))
        name = command if isinstance(command, str) else repr(command)
        words = " ".join(str(word) for word in [name.upper(), *message[1:]])[:200]
        hint = _ADMIN_HINTS.get(name, "not a command raftcache answers")
        self.report(  # before the answer: whoever reads the answer finds it counted
            conn,
            "refused_admin",
            f"pysyncobj utility command {words!r}: {hint} (the Raft port answers only "
            f"{', '.join(sorted(self._syncObj.utility_commands)) or 'none'})"[:300],
        )
        conn.send(f"FAIL {words}: {ADMIN_REFUSED}: {hint}")
        return True

    def peer_name(self, conn: Any) -> str:
        """The member's address, or where an unidentified connection comes from."""
        node = self._connToNode(conn)
        remote = getattr(conn, "remote", "?")
        if isinstance(node, TCPNode):
            return str(node.address)
        if node is not None:
            return f"{remote} (read replica)"
        return f"{remote} (not identified yet)"

    def report(self, conn: Any, reason: str, detail: str) -> None:
        self._syncObj.bad_frames.record(self.peer_name(conn), reason, detail)


class EntryRefused(Exception):
    """A committed log entry this build cannot apply: the node stops rather than skip it."""


class GuardedSyncObj(CommitNoticeSyncObj):
    """The SyncObj a node runs (leases, pre-vote, commit notices underneath) that refuses
    bad frames and messages and halts on entries it cannot apply (module docstring)."""

    def __init__(
        self,
        *args: Any,
        on_bad_entry: Callable[[BaseException], None],
        bad_frames: BadFrames | None = None,
        max_frame_bytes: int = frame_limit(64 << 20),
        **kwargs: Any,
    ) -> None:
        # Set before SyncObj.__init__, which builds the transport and starts the tick thread.
        self.on_bad_entry = on_bad_entry
        self.bad_frames = bad_frames if bad_frames is not None else BadFrames()
        self.max_frame_bytes = max_frame_bytes
        self.halted: EntryRefused | None = None
        # The utility commands answered on the Raft port (answer_utility); others are refused.
        self.utility_commands: frozenset[str] = frozenset()
        if "transport" not in kwargs:
            kwargs.setdefault("transportClass", CheckedTransport)
        super().__init__(*args, **kwargs)

    def answer_utility(self, command: str, handler: Callable[[Any, Any], None]) -> None:
        """Answer the utility command `command` (a list ``[command, *args]`` sent as the
        first message of a connection, by anyone holding the Raft secret, member or not):
        ``handler(args, callback)`` runs on the tick thread and calls
        ``callback(result, None)``. pysyncobj's own (add, remove, ...) stay refused."""
        self._SyncObj__transport.setOnUtilityMessageCallback(command, handler)
        self.utility_commands = self.utility_commands | {command}

    def _SyncObj__doApplyCommand(self, command: Any) -> Any:
        if self.halted is not None:
            raise self.halted  # applies nothing after the entry it stopped at
        index = self.raftLastApplied + 1
        kind = command[0] if isinstance(command, bytes) and command else None
        if kind not in _KNOWN_ENTRY_TYPES:
            what = "is empty" if kind is None else f"has entry type {kind}"
            self._halt(
                EntryRefused(
                    f"log entry {index} {what}, which this build does not know: a newer "
                    "raftcache (or pysyncobj) wrote it, or the log is corrupt. Upgrade this "
                    "node; it stops rather than skip the entry"
                )
            )
        try:
            return super()._SyncObj__doApplyCommand(command)
        except SyncObjExceptionWrongVer as exc:
            self._halt(
                EntryRefused(
                    f"log entry {index} switches to pysyncobj code version {exc.ver}, above "
                    "this build's: a newer raftcache wrote it. Upgrade this node"
                ),
                exc,
            )
        except BaseException as exc:
            why = f"{type(exc).__name__}: {exc}"
            self._halt(EntryRefused(f"log entry {index} cannot be applied ({why})"), exc)

    def _halt(self, error: EntryRefused, cause: BaseException | None = None) -> NoReturn:
        error.__cause__ = cause
        self.halted = error
        self.on_bad_entry(error)  # RaftNode's on_fatal exits; a test's records it
        raise error

    def _onTick(self, timeToWait: float = 0.0) -> None:
        if self.halted is not None:  # stopped at an entry: no apply, no messages, no votes
            time.sleep(timeToWait)
            return
        super()._onTick(timeToWait)

    def _SyncObj__onMessageReceived(self, node: Any, message: Any) -> None:
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            self._drop(node, f"a {type(message).__name__} where a message belongs")
            return
        try:
            super()._SyncObj__onMessageReceived(node, message)
        except Exception as exc:
            if self.halted is not None:
                raise
            self._drop(node, f"its {message['type']!r} message raised {exc!r}"[:300])

    def _drop(self, node: Any, detail: str) -> None:
        transport = self._SyncObj__transport
        conn = transport._connections.get(node)
        if isinstance(transport, CheckedTransport) and conn is not None:
            transport.report(conn, "malformed", detail)
        else:
            self.bad_frames.record(str(getattr(node, "address", node)), "malformed", detail)
        if conn is not None:
            conn.disconnect()


install()
