"""Raft frames as consensus/peer_guard.py sends them: stored zlib blocks that stock
pysyncobj's receive path (`pickle.loads(zlib.decompress(body))` after a native-int length
header) reads as it reads its own `zlib.compress(..., 3)` frames, so a node of this build
and one of an older build understand each other."""

from __future__ import annotations

import errno
import os
import pickle
import struct
import zlib

import pytest
from cryptography.fernet import Fernet
from pysyncobj import pickle as pysyncobj_pickle
from pysyncobj.encryptor import getEncryptor
from pysyncobj.poller import createPoller
from raftcache.consensus import peer_guard
from raftcache.consensus.peer_guard import (
    COMPRESS_FROM,
    PICKLE_PROTOCOL,
    PROBE_EVERY,
    READ_BUDGET,
    CheckedTcpConnection,
    frame_payload,
)


def _snapshot_part(data: bytes, first: bool = False, last: bool = False) -> dict[str, object]:
    """An append_entries carrying one part of a snapshot transmission, as pysyncobj sends it."""
    return {
        "type": "append_entries",
        "term": 7,
        "commit_index": 41,
        "serialized": (data, first, last),
    }


MESSAGE = {
    "type": "append_entries",
    "term": 7,
    "commit_index": 41,
    "entries": [(b"\x00" + os.urandom(70_000), 42, 7), (b"v" * 100, 43, 7)],
    "prevLogIdx": 41,
    "prevLogTerm": 7,
}


@pytest.mark.parametrize("size", [0, 1, 64, 65_535, 65_536, 200_000])
def test_a_payload_decompresses_to_itself(size: int) -> None:
    data = os.urandom(size)
    assert zlib.decompress(frame_payload(data)) == data
    assert zlib.decompressobj().decompress(frame_payload(data)) == data


def test_a_payload_is_stored_however_well_it_packs() -> None:
    large = b"v" * COMPRESS_FROM  # deflate would make this a few hundred bytes
    assert len(frame_payload(large)) > len(large)


def _sent_frames(conn: CheckedTcpConnection) -> list[bytes]:
    """The frames a connection queued (it has no socket, so they stay in its buffer)."""
    buffer = conn._TcpConnection__writeBuffer
    frames = []
    while buffer:
        (size,) = struct.unpack("i", buffer[:4])
        frames.append(buffer[4 : 4 + size])
        buffer = buffer[4 + size :]
    return frames


def _encrypted_connection(password: str) -> CheckedTcpConnection:
    conn = CheckedTcpConnection(createPoller("auto"))
    conn.encryptor = getEncryptor(password)
    conn.sendRandKey = b"session-key"
    return conn


def _plain_sizes(conn: CheckedTcpConnection, password: str) -> list[int]:
    """Each queued frame's zlib stream size after decryption (what deflate left)."""
    decrypt = getEncryptor(password).decrypt
    return [len(decrypt(frame)) for frame in _sent_frames(conn)]


def test_a_sent_message_reads_back_as_stock_pysyncobj_reads_it() -> None:
    conn = CheckedTcpConnection(createPoller("auto"))
    conn.send(MESSAGE)
    conn.send({"type": "next_node_idx", "next_node_idx": 44, "reset": False, "success": True})
    first, second = _sent_frames(conn)
    # pickled at protocol 4: MESSAGE's random bytes are not inflated as protocol 2's latin-1
    # strings in UTF-8 would inflate them (~1.5x)
    assert zlib.decompress(first)[:2] == pickle.PROTO + bytes([PICKLE_PROTOCOL])
    assert len(zlib.decompress(first)) < 71_000
    assert pysyncobj_pickle.loads(zlib.decompress(first)) == MESSAGE
    assert pysyncobj_pickle.loads(zlib.decompress(second))["next_node_idx"] == 44


def test_entries_go_stored_and_snapshot_parts_deflated() -> None:
    # A big entry costs the leader's tick thread per follower to deflate (2 ms for 122 KiB
    # of random values); a snapshot part is sent once, and its bytes are the whole state.
    entry = dict(MESSAGE, entries=[(b"\x00" + b"v" * 200_000, 42, 7)])
    snapshot = _snapshot_part(b"v" * 200_000, first=True)
    conn = CheckedTcpConnection(createPoller("auto"))
    conn.send(entry)
    conn.send(snapshot)
    stored, deflated = _sent_frames(conn)
    assert len(stored) > 200_000 and len(deflated) < 10_000
    assert pysyncobj_pickle.loads(zlib.decompress(stored)) == entry
    assert pysyncobj_pickle.loads(zlib.decompress(deflated)) == snapshot


def test_session_keys_and_encryption_still_wrap_the_message() -> None:
    password = Fernet.generate_key().decode()
    conn = _encrypted_connection(password)
    conn.send(MESSAGE)
    (frame,) = _sent_frames(conn)
    key, message = pysyncobj_pickle.loads(zlib.decompress(getEncryptor(password).decrypt(frame)))
    assert key == b"session-key" and message == MESSAGE
    # a snapshot part is recognised before the session key wraps it: still deflated
    part = _snapshot_part(b"v" * 200_000, first=True)
    conn.send(part)
    (frame,) = _sent_frames(conn)[1:]
    plain = getEncryptor(password).decrypt(frame)
    assert len(plain) < 10_000
    assert pysyncobj_pickle.loads(zlib.decompress(plain)) == (b"session-key", part)


def test_an_encrypted_link_deflates_big_entries_that_pack_well() -> None:
    # Fernet costs per byte: values that pack 40x (redis-benchmark's) are cheaper deflated
    password = Fernet.generate_key().decode()
    conn = _encrypted_connection(password)
    entry = dict(MESSAGE, entries=[(b"\x00" + b"v" * 200_000, 42, 7)])
    for _ in range(PROBE_EVERY + 2):
        conn.send(entry)
    sizes = _plain_sizes(conn, password)
    assert all(size < 10_000 for size in sizes), sizes
    frame = getEncryptor(password).decrypt(_sent_frames(conn)[-1])
    assert pysyncobj_pickle.loads(zlib.decompress(frame)) == (b"session-key", entry)


def test_an_encrypted_link_sends_entries_that_do_not_pack_stored_and_probes_again() -> None:
    # half random, half zeros: deflate halves them, short of DEFLATE_PAYS
    password = Fernet.generate_key().decode()
    conn = _encrypted_connection(password)
    entries = [
        dict(MESSAGE, entries=[(os.urandom(50_000) + bytes(50_000), i, 7)])
        for i in range(PROBE_EVERY + 2)
    ]
    for entry in entries:
        conn.send(entry)
    sizes = _plain_sizes(conn, password)
    # the first is deflated (a probe: it packs 2x), the next PROBE_EVERY go stored, then a
    # probe again
    assert sizes[0] < 75_000
    assert all(size > 100_000 for size in sizes[1 : PROBE_EVERY + 1]), sizes
    assert sizes[PROBE_EVERY + 1] < 75_000
    decrypt = getEncryptor(password).decrypt
    for frame, entry in zip(_sent_frames(conn), entries, strict=True):
        assert pysyncobj_pickle.loads(zlib.decompress(decrypt(frame))) == (b"session-key", entry)


def test_an_unencrypted_link_sends_every_log_frame_stored() -> None:
    conn = CheckedTcpConnection(createPoller("auto"))
    entry = dict(MESSAGE, entries=[(b"\x00" + b"v" * 200_000, 42, 7)])
    conn.send(entry)
    (frame,) = _sent_frames(conn)
    assert len(frame) > 200_000


def test_an_encrypted_link_sends_small_frames_stored_however_well_they_pack() -> None:
    # acknowledgements, heartbeats and small entries: zlib's setup costs more than Fernet saves
    password = Fernet.generate_key().decode()
    conn = _encrypted_connection(password)
    small = dict(MESSAGE, entries=[(b"\x00" + b"v" * (COMPRESS_FROM // 2), 42, 7)])
    conn.send(small)
    (size,) = _plain_sizes(conn, password)
    assert size > COMPRESS_FROM // 2


def test_an_encrypted_link_sends_frames_that_pack_less_than_deflate_pays_stored() -> None:
    # a third random, two thirds zeros: deflate packs them ~3x, short of DEFLATE_PAYS
    password = Fernet.generate_key().decode()
    conn = _encrypted_connection(password)
    for i in range(3):
        conn.send(dict(MESSAGE, entries=[(os.urandom(40_000) + bytes(80_000), i, 7)]))
    probe, *stored = _plain_sizes(conn, password)
    assert probe < 60_000
    assert all(size > 120_000 for size in stored), stored


def test_a_redialled_peer_starts_its_framing_afresh() -> None:
    # pysyncobj reuses a dialled peer's connection object across reconnects: a peer that
    # came back must not inherit the stored run its previous connection was in
    password = Fernet.generate_key().decode()
    conn = _encrypted_connection(password)
    conn.send(dict(MESSAGE, entries=[(os.urandom(50_000) + bytes(50_000), 1, 7)]))
    conn.connect("127.0.0.1", 1)  # nothing listens there: only the framing matters
    conn.disconnect()  # a frame sent now stays in the buffer, where _sent_frames reads it
    conn.encryptor, conn.sendRandKey = getEncryptor(password), b"session-key"
    conn._TcpConnection__writeBuffer = b""
    conn.send(dict(MESSAGE, entries=[(b"\x00" + b"v" * 200_000, 2, 7)]))
    (size,) = _plain_sizes(conn, password)
    assert size < 10_000  # probed (deflated) again, not sent stored


@pytest.mark.parametrize("encrypted", [False, True])
def test_snapshot_parts_that_do_not_pack_go_stored_and_are_probed_again(
    encrypted: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a part of random values (random tokens, compressed or encrypted blobs) costs the
    # leader's tick thread 16-24 ms a MiB to deflate and shrinks by a few percent
    deflated: list[int] = []
    compress = zlib.compress

    def spy(data: bytes, level: int = -1) -> bytes:
        deflated.append(len(data))
        return compress(data, level)

    monkeypatch.setattr(peer_guard.zlib, "compress", spy)
    password = Fernet.generate_key().decode()
    conn = (
        _encrypted_connection(password) if encrypted else CheckedTcpConnection(createPoller("auto"))
    )
    parts = [_snapshot_part(os.urandom(100_000), first=i == 0) for i in range(PROBE_EVERY + 1)]
    # a third random, two thirds zeros packs ~3x, past the bar: the next probe finds it
    # worth deflating
    parts += [_snapshot_part(os.urandom(30_000) + bytes(70_000)) for _ in range(2)]
    sent = []
    for part in parts:
        conn.send(part)
        sent.append(len(deflated))
    # the first is deflated (a probe that gained next to nothing), the next PROBE_EVERY go
    # stored, then a probe again, which pays: the one after it is deflated too
    assert sent == [1] * (PROBE_EVERY + 1) + [2, 3]
    frames = _sent_frames(conn)
    if encrypted:
        decrypt = getEncryptor(password).decrypt
        frames = [decrypt(frame) for frame in frames]
    assert len(frames[-1]) < 40_000
    for frame, part in zip(frames, parts, strict=True):
        message = pysyncobj_pickle.loads(zlib.decompress(frame))
        assert (message[1] if encrypted else message) == part


def test_snapshot_parts_that_pack_stay_deflated() -> None:
    conn = CheckedTcpConnection(createPoller("auto"))
    parts = [_snapshot_part(os.urandom(20_000) + bytes(80_000)) for _ in range(PROBE_EVERY + 2)]
    for part in parts:
        conn.send(part)
    sizes = [len(frame) for frame in _sent_frames(conn)]
    assert all(size < 30_000 for size in sizes), sizes


def test_snapshot_parts_and_log_frames_are_judged_apart() -> None:
    # an encrypted link sending entries of random values stored still deflates the snapshot
    # parts that pack, and a snapshot of random values leaves the log frames' choice alone
    password = Fernet.generate_key().decode()
    conn = _encrypted_connection(password)
    packed = b"\x00" + b"v" * 200_000
    conn.send(dict(MESSAGE, entries=[(os.urandom(100_000), 1, 7)]))  # probe: entries stored next
    conn.send(_snapshot_part(packed, first=True))
    conn.send(_snapshot_part(os.urandom(100_000)))  # probe: parts stored next
    conn.send(dict(MESSAGE, entries=[(packed, 2, 7)]))
    conn.send(_snapshot_part(packed))
    _, packed_part, _, entry, stored_part = _plain_sizes(conn, password)
    assert packed_part < 10_000  # the log stream's stored run did not reach the snapshot's
    assert entry > 200_000  # the log stream is in its stored run
    assert stored_part > 200_000  # and now the snapshot stream is in its own


class _StreamingSocket:
    """A socket whose peer has already sent `data` (recv hands it out as the kernel would)."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._short = 0  # every other recv hands out less than asked, as TCP may

    def recv(self, size: int) -> bytes:
        if not self._data:
            raise BlockingIOError(errno.EAGAIN, "no data")
        self._short ^= 1
        if self._short:
            size = max(1, size - 12_345)
        chunk, self._data = self._data[:size], self._data[size:]
        return chunk

    def getsockopt(self, *args: object) -> int:
        return 0


def test_a_connection_reads_at_most_its_budget_per_event_and_the_rest_later() -> None:
    # A peer streaming faster than this node parses (a snapshot in stored 1 MiB parts) kept
    # a follower's tick thread reading for 5 s: no keepalive went out, the leader dropped
    # the idle-looking connection mid-transfer and started the snapshot over.
    parts = [_snapshot_part(os.urandom(1 << 20), first=i == 0) for i in range(12)]
    frames = b""
    for part in parts:
        body = frame_payload(pickle.dumps(part, PICKLE_PROTOCOL))
        frames += struct.pack("i", len(body)) + body
    conn = CheckedTcpConnection(createPoller("auto"))
    conn._TcpConnection__socket = _StreamingSocket(frames)
    conn._TcpConnection__recvBufferSize = 2 << 20  # RaftNode's
    reads = []
    while len(conn._TcpConnection__readBuffer) < len(frames):
        before = len(conn._TcpConnection__readBuffer)
        conn._TcpConnection__tryReadBuffer()  # one readiness event
        reads.append(len(conn._TcpConnection__readBuffer) - before)
    assert max(reads) <= READ_BUDGET, reads  # then it goes back to the tick
    assert len(reads) >= -(-len(frames) // READ_BUDGET)
    received = []
    while (message := conn._TcpConnection__processParseMessage()) is not None:
        received.append(message)
    assert received == parts
