"""Raft frames as consensus/peer_guard.py sends them: stored zlib blocks that stock
pysyncobj's receive path (`pickle.loads(zlib.decompress(body))` after a native-int length
header) reads as it reads its own `zlib.compress(..., 3)` frames, so a node of this build
and one of an older build understand each other."""

from __future__ import annotations

import os
import struct
import zlib

import pytest
from cryptography.fernet import Fernet
from pysyncobj import pickle as pysyncobj_pickle
from pysyncobj.encryptor import getEncryptor
from pysyncobj.poller import createPoller
from raftcache.consensus.peer_guard import (
    COMPRESS_FROM,
    PROBE_EVERY,
    CheckedTcpConnection,
    frame_payload,
)

MESSAGE = {
    "type": "append_entries",
    "term": 7,
    "commit_index": 41,
    "entries": [(b"\x00" + os.urandom(70_000), 42, 7), (b"v" * 100, 43, 7)],
    "prevLogIdx": 41,
    "prevLogTerm": 7,
}


@pytest.mark.parametrize("deflate", [False, True])
@pytest.mark.parametrize("size", [0, 1, 64, 65_535, 65_536, 200_000])
def test_a_payload_decompresses_to_itself(size: int, deflate: bool) -> None:
    data = os.urandom(size)
    assert zlib.decompress(frame_payload(data, deflate)) == data
    assert zlib.decompressobj().decompress(frame_payload(data, deflate)) == data


def test_only_a_large_payload_asked_to_deflate_is_deflated() -> None:
    small = b"v" * (COMPRESS_FROM - 1)  # deflate would make this a few hundred bytes
    assert len(frame_payload(small, deflate=True)) > len(small)
    large = b"v" * COMPRESS_FROM
    assert len(frame_payload(large)) > len(large)  # an entry: stored however well it packs
    assert len(frame_payload(large, deflate=True)) < len(large) // 50
    assert zlib.decompress(frame_payload(large, deflate=True)) == large


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
    assert pysyncobj_pickle.loads(zlib.decompress(first)) == MESSAGE
    assert pysyncobj_pickle.loads(zlib.decompress(second))["next_node_idx"] == 44


def test_entries_go_stored_and_snapshot_parts_deflated() -> None:
    # A big entry costs the leader's tick thread per follower to deflate (2 ms for 122 KiB
    # of random values); a snapshot part is sent once, and its bytes are the whole state.
    entry = dict(MESSAGE, entries=[(b"\x00" + b"v" * 200_000, 42, 7)])
    snapshot = {
        "type": "append_entries",
        "term": 7,
        "commit_index": 41,
        "serialized": (b"v" * 200_000, True, False),
    }
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
    part = {
        "type": "append_entries",
        "term": 7,
        "commit_index": 41,
        "serialized": (b"v" * 200_000, True, False),
    }
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
