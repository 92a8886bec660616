"""Bad peers (issue 16 item 5, consensus/peer_guard.py), over real sockets.

A peer that sends garbage or a truncated frame is refused: one structured error naming
the peer and what was wrong, a count by reason, the connection dropped, nothing of the
frame applied, and the cluster goes on committing to the same state everywhere. A peer
that sends an entry or a snapshot from a newer format than this node understands stops
the node (on_fatal, once): the entry is never skipped, and nothing after it is applied.

The nodes run with a Raft secret, the encrypted path every cluster off loopback runs.
`FakePeer` speaks pysyncobj's framing by hand: it can pose as a member (it knows the
secret) to send garbage inside an authenticated connection, or lead a lone node.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import pickle
import socket
import struct
import time
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import lmdb
import pytest
from cryptography.fernet import Fernet
from prometheus_client.parser import text_string_to_metric_families
from pysyncobj.encryptor import getEncryptor
from pysyncobj.monotonic import monotonic
from raftcache.chaos.local_cluster import LocalCluster, free_port
from raftcache.consensus import RaftConfig, RaftNode, snapshot
from raftcache.consensus.peer_guard import REASONS, EntryRefused
from raftcache.node import commands
from raftcache.node.replica import Replica
from raftcache.node.state_machine import StateMachine
from raftcache.v1 import command_pb2

from tests.consensus.harness import (
    WAIT_S,
    ClusterClient,
    SecretTrio,
    command,
    keys,
    log_text,
    missing_keys,
    secret_config,
    set_op,
    take_snapshot,
    value_of,
    wait_for,
    write_keys,
)

SECRET = "bad-peers-test-secret"
_HEADER = struct.Struct("i")


@functools.lru_cache
def _fernet(secret: str) -> Fernet:
    return getEncryptor(secret)  # PBKDF2: slow, so once per secret


class FakePeer:
    """A connection to a node's Raft port that speaks pysyncobj's framing by hand."""

    def __init__(
        self, target: str, secret: str | None = SECRET, sock: socket.socket | None = None
    ) -> None:
        if sock is None:
            host, port = target.rsplit(":", 1)
            sock = socket.create_connection((host, int(port)), timeout=5)
        self.sock = sock
        self.fernet = _fernet(secret) if secret else None
        self.session_key: bytes | None = None  # the node's key, once introduced
        self._own_key: bytes | None = None
        self._buffer = b""

    def frame(self, message: Any) -> bytes:
        if self.session_key is not None:
            message = (self.session_key, message)
        return self.seal(zlib.compress(pickle.dumps(message, 2), 3))

    def seal(self, data: bytes) -> bytes:
        """`data` as one frame: encrypted as a peer with our secret does, length first."""
        if self.fernet is not None:
            data = self.fernet.encrypt_at_time(data, int(monotonic()))
        return _HEADER.pack(len(data)) + data

    def send(self, message: Any) -> None:
        self.sock.sendall(self.frame(message))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def introduce(self, claim: str) -> None:
        """Pose as member `claim`, exactly as pysyncobj's dialling side introduces itself."""
        self._own_key = os.urandom(32)
        self.send(self._own_key)
        self.session_key = self.receive()
        self.send(claim)

    def receive(self) -> Any:
        while True:
            if len(self._buffer) >= _HEADER.size:
                (size,) = _HEADER.unpack_from(self._buffer)
                if len(self._buffer) >= _HEADER.size + size:
                    data = self._buffer[_HEADER.size : _HEADER.size + size]
                    self._buffer = self._buffer[_HEADER.size + size :]
                    if self.fernet is not None:
                        data = self.fernet.decrypt(data)
                    message = pickle.loads(zlib.decompress(data))
                    if self._own_key is not None:
                        key, message = message
                        assert key == self._own_key
                    return message
            chunk = self.sock.recv(1 << 16)
            assert chunk, "the node closed the connection"
            self._buffer += chunk

    def dropped_by_node(self, timeout: float = 5.0) -> bool:
        """True once the node has closed the connection (whatever it sent before)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                if not self.sock.recv(1 << 16):
                    return True
            except ConnectionResetError:
                return True
            except TimeoutError:
                return False
        return False

    def close(self) -> None:
        self.sock.close()


def _config(addr: str, peers: tuple[str, ...], data_dir: Path) -> RaftConfig:
    return secret_config(addr, peers, data_dir, SECRET)


def _refused(node: RaftNode, reason: str, count: int = 1) -> None:
    wait_for(lambda: node.bad_frames.counts()[reason] >= count, f"{count} {reason} frame(s)")
    assert node.bad_frames.counts()[reason] == count


# ------------------------------------------------------------------ garbage


def test_garbage_on_the_raft_port_is_refused_loudly_and_the_cluster_goes_on(
    trio: SecretTrio,
) -> None:
    first = write_keys(trio.leader(), keys("first-", 20))
    target = trio.nodes[0]
    for data in (
        b"GET / HTTP/1.1\r\nHost: raft\r\n\r\n",  # its header announces ~517 MiB: oversized
        _HEADER.pack(-7) + b"xyz",  # oversized
        _HEADER.pack(40) + os.urandom(40),  # not a Fernet token: undecryptable
    ):
        peer = FakePeer(trio.addrs[0])
        peer.send_raw(data)
        assert peer.dropped_by_node(), f"{data!r} did not get the connection dropped"
        peer.close()
    # A peer with another --raft-secret: its very first frame does not decrypt.
    peer = FakePeer(trio.addrs[0], secret="another-secret")
    peer.send(os.urandom(32))
    assert peer.dropped_by_node()
    peer.close()
    _refused(target, "oversized", 2)
    _refused(target, "undecryptable", 2)
    seen = list(target.bad_frames.recent)
    assert all(b.peer.endswith("(not identified yet)") for b in seen), seen
    assert "announces 542393671 bytes" in seen[0].detail
    assert "--raft-secret" in seen[-1].detail

    second = write_keys(trio.leader(), keys("second-", 20))
    trio.converge(first + second)


def test_garbage_from_a_member_drops_its_connection_and_nothing_is_lost(trio: SecretTrio) -> None:
    first = write_keys(trio.leader(), keys("first-", 20))
    target, member = trio.nodes[0], trio.addrs[2]
    sealer = FakePeer(trio.addrs[0])  # only seals frames with the secret
    sealer.close()
    # On the member's own (authenticated) connection: a frame that decrypts with the
    # secret but is not a pysyncobj message, then a message of the wrong shape, then one
    # a handler raises on. Each time the member redials and is connected again.
    key = None
    for i, bad in enumerate(
        [sealer.seal(b"not zlib, not pickle"), ["odd"], {"type": "append_entries"}]
    ):
        key = on_member_link(trio, 2, 0, _put(bad), after=key)
        _refused(target, "undecodable" if i == 0 else "malformed", 1 if i < 2 else 2)
        assert target.bad_frames.recent[-1].peer == member
    assert "not a pysyncobj message" in target.bad_frames.recent[0].detail
    assert "a list where a message belongs" in target.bad_frames.recent[1].detail
    assert "'append_entries' message raised KeyError('term')" in target.bad_frames.recent[2].detail
    on_member_link(trio, 2, 0, lambda conn: None, after=key)  # the member is back

    second = write_keys(trio.leader(), keys("second-", 30))
    trio.converge(first + second)


def on_member_link(
    trio: SecretTrio, sender: int, receiver: int, action: Callable[[Any], None], after: Any = None
) -> Any:
    """Run `action(connection)` on `sender`'s tick thread, on its connection to `receiver`,
    once that connection is up and its handshake done (with a session key other than
    `after`: not the connection a previous action had dropped). Returns that key."""
    sender_so = trio.nodes[sender]._syncobj
    transport = sender_so._SyncObj__transport
    used: list[Any] = []

    def attempt() -> None:
        node = next(n for n in transport._connections if n.address == trio.addrs[receiver])
        conn = transport._connections[node]
        key = conn.sendRandKey
        if node in sender_so._SyncObj__connectedNodes and key is not None and key != after:
            action(conn)
            used.append(key)

    deadline = time.monotonic() + WAIT_S
    while not used:
        assert time.monotonic() < deadline, "no connection to act on"
        trio.nodes[sender]._on_tick_actions.append(attempt)
        time.sleep(0.05)
    return used[0]


def _put(bad: Any) -> Callable[[Any], None]:
    """Bytes as they are between two frames; anything else as a message (session key on)."""

    def put(conn: Any) -> None:
        if isinstance(bad, bytes):
            conn._TcpConnection__writeBuffer += bad
            conn._TcpConnection__trySendBuffer()
        else:
            conn.send(bad)

    return put


# ------------------------------------------------------------------ truncated frames


def test_a_truncated_frame_is_refused_loudly_and_the_cluster_goes_on(trio: SecretTrio) -> None:
    first = write_keys(trio.leader(), keys("first-", 20))
    target, member = trio.nodes[0], trio.addrs[2]

    peer = FakePeer(trio.addrs[0])  # unidentified: a header promising more than comes
    peer.send_raw(_HEADER.pack(1000) + b"x" * 10)
    peer.close()
    _refused(target, "truncated")
    assert "closed the connection 10 bytes into a 1000-byte frame" in (
        target.bad_frames.recent[-1].detail
    )

    peer = FakePeer(trio.addrs[0])  # cut inside the header
    peer.send_raw(b"\x10\x00")
    peer.close()
    _refused(target, "truncated", 2)
    assert "2 bytes into a frame header" in target.bad_frames.recent[-1].detail

    # A member that dies in the middle of a frame (it stops writing and closes).
    def die_mid_frame(conn: Any) -> None:
        frame = sealer.seal(zlib.compress(pickle.dumps({"type": "x"}, 2)))
        conn._TcpConnection__socket.send(frame[: len(frame) // 2])
        conn._TcpConnection__socket.shutdown(socket.SHUT_WR)

    sealer = FakePeer(trio.addrs[0])
    sealer.close()
    key = on_member_link(trio, 2, 0, die_mid_frame)
    _refused(target, "truncated", 3)
    assert target.bad_frames.recent[-1].peer == member
    assert "closed the connection" in target.bad_frames.recent[-1].detail
    assert sum(target.bad_frames.counts().values()) == 3  # nothing else was refused
    on_member_link(trio, 2, 0, lambda conn: None, after=key)  # the member is back

    second = write_keys(trio.leader(), keys("second-", 30))
    trio.converge(first + second)


# ------------------------------------------------------------------ the dialling side


def test_a_dialling_node_sends_nothing_before_the_session_keys_are_exchanged(
    tmp_path: Path,
) -> None:
    """pysyncobj calls a dialled connection connected once TCP connects, before the
    encrypted link's session keys are exchanged. The start-up state queries sent in that
    gap went without the key, and the member refused them as replayed and dropped the
    link (a CI run). Here the member is a FakePeer that accepts and holds its key back:
    only the handshake frame arrives until it answers, and every frame after carries the
    member's key."""
    # pysyncobj's greater address dials the smaller: the node must dial both members.
    *members, addr = sorted(f"127.0.0.1:{free_port()}" for _ in range(3))
    listeners = [socket.create_server(("127.0.0.1", int(m.rsplit(":", 1)[1]))) for m in members]
    # With an identity dir and no Raft state, the node asks its peers whether a cluster
    # exists before voting: a state query to every peer each 0.1 s from the first tick.
    # A connection timeout well past the second the member stays silent: a loaded host
    # must not make the node drop the link first.
    config = dataclasses.replace(
        _config(addr, tuple(members), tmp_path / "n"),
        identity_dir=tmp_path / "id",
        connection_timeout=10.0,
    )
    node = RaftNode(config, Replica())
    try:
        listeners[0].settimeout(WAIT_S)
        accepted, _ = listeners[0].accept()
        accepted.settimeout(WAIT_S)
        member = FakePeer(members[0], sock=accepted)
        node_key = member.receive()  # the dialling side's first frame: its session key
        assert isinstance(node_key, bytes) and len(node_key) == 32

        accepted.settimeout(1.0)  # the node queries its peers every 0.1 s meanwhile
        with pytest.raises(TimeoutError):
            member.receive()

        accepted.settimeout(WAIT_S)
        member.session_key = node_key  # the accepting side's answer: (its key, our key)
        member._own_key = os.urandom(32)
        member.send(member._own_key)
        assert member.receive() == addr  # receive() checks each frame carries our key
        kinds = [member.receive()["type"] for _ in range(3)]  # keepalives may come too
        assert "state_query" in kinds
        assert node.bad_frames.counts() == dict.fromkeys(REASONS, 0)
    finally:
        node.destroy()
        for listener in listeners:
            listener.close()


# ------------------------------------------------------------------ node processes


@pytest.mark.integration
def test_a_node_process_logs_each_refused_frame_as_json_and_exports_a_count(
    tmp_path: Path,
) -> None:
    cluster = LocalCluster(
        3,
        tmp_path / "cluster",
        metrics=True,
        extra_args=("--raft-secret", SECRET, "--log-format", "json"),
    )
    client = ClusterClient(cluster)
    try:
        cluster.start()
        leader = cluster.wait_until_ready()
        first = keys("first-", 10)
        client.set_keys(leader, first)
        peer = FakePeer(cluster.nodes[0].raft_addr)
        peer.send_raw(_HEADER.pack(40) + os.urandom(40))
        assert peer.dropped_by_node()
        peer.close()
        peer = FakePeer(cluster.nodes[0].raft_addr)
        peer.send_raw(_HEADER.pack(1000) + b"x" * 10)
        peer.close()

        def counted() -> dict[str, float]:
            url = cluster.nodes[0].metrics_url
            with urllib.request.urlopen(url, timeout=5) as response:
                text = response.read().decode()
            return {
                s.labels["reason"]: s.value
                for family in text_string_to_metric_families(text)
                for s in family.samples
                if s.name == "raftcache_raft_bad_frames_total"
            }

        wait_for(lambda: counted().get("truncated") == 1, "the truncated frame counted")
        assert counted() == {r: (1 if r in ("undecryptable", "truncated") else 0) for r in REASONS}
        lines = [json.loads(line) for line in log_text(cluster, 0).splitlines() if "{" in line[:1]]
        refused = [e for e in lines if e.get("event", "").startswith("refused a bad frame")]
        assert [(e["reason"], e["level"]) for e in refused] == [
            ("undecryptable", "error"),
            ("truncated", "warning"),  # what a peer killed mid-append leaves
        ]
        assert all(e["peer"].endswith("(not identified yet)") for e in refused)

        second = keys("second-", 10)
        client.set_keys(cluster.wait_for_leader(), second)
        for i in range(3):
            wait_for(lambda i=i: not client.stale_missing(i, first + second), f"node {i} caught up")
    finally:
        client.close()
        cluster.close()


# ------------------------------------------------------------------ newer entries and snapshots


class Lone:
    """One node whose two peers do not run; a FakePeer leads it as one of them."""

    def __init__(self, base: Path) -> None:
        self.addr, *self.peers = sorted(f"127.0.0.1:{free_port()}" for _ in range(3))
        self.replica = Replica()
        self.fatal: list[BaseException] = []
        self.node = RaftNode(
            _config(self.addr, tuple(self.peers), base / "lone"),
            self.replica,
            on_fatal=self.fatal.append,
        )
        self.so: Any = self.node._syncobj
        self.leader = FakePeer(self.addr)
        self.leader.introduce(self.peers[1])

    def entry(self, payload: bytes) -> bytes:
        """`payload` as pysyncobj's log entry for RaftNode's one replicated method."""
        consumer = id(self.node._consumer)
        (method,) = [i for key, i in self.so._methodToID.items() if key[0] == consumer]
        return b"\x00" + pickle.dumps((method, (payload,)), 2)

    def append(self, *entries: bytes, term: int = 3) -> None:
        """Entries 2.. (after pysyncobj's initial no-op at 1), committed at once."""
        last = 1 + len(entries)
        self.leader.send(
            {
                "type": "append_entries",
                "term": term,
                "commit_index": last,
                "entries": [(e, 2 + i, term) for i, e in enumerate(entries)],
                "prevLogIdx": 1,
                "prevLogTerm": 0,
            }
        )

    def close(self) -> None:
        self.leader.close()
        self.node.destroy()


@pytest.fixture
def lone(tmp_path: Path) -> Iterator[Lone]:
    node = Lone(tmp_path)
    try:
        yield node
    finally:
        node.close()


def _set(key: bytes) -> bytes:
    return commands.encode(command(set_op(key, value_of(key))))


def _newer_format(payload: bytes) -> bytes:
    newer = command_pb2.Command.FromString(payload)
    newer.format = commands.COMMAND_FORMAT + 1
    return newer.SerializeToString()


BAD_ENTRIES = {
    # A command of a newer raftcache: its format field is above COMMAND_FORMAT.
    "newer-command-format": (
        lambda lone: lone.entry(_newer_format(_set(b"bad"))),
        f"command format {commands.COMMAND_FORMAT + 1}",
    ),
    # A pysyncobj entry type this build does not know (pysyncobj skipped those silently).
    "unknown-entry-type": (lambda lone: b"\x09" + os.urandom(20), "has entry type 9"),
    # pysyncobj's code-version switch to a version above ours (pysyncobj logged and
    # stepped over it).
    "newer-code-version": (lambda lone: b"\x03" + pickle.dumps(7, 2), "code version 7"),
    # A second replicated method (a newer build): an id this node has no method for.
    "unknown-method": (lambda lone: b"\x00" + pickle.dumps((99, (b"x",)), 2), "KeyError: 99"),
}


@pytest.mark.parametrize("case", sorted(BAD_ENTRIES))
def test_an_entry_this_node_cannot_apply_stops_it_and_is_never_skipped(
    lone: Lone, case: str
) -> None:
    make, reason = BAD_ENTRIES[case]
    lone.append(lone.entry(_set(b"before")), make(lone), lone.entry(_set(b"after")))

    wait_for(lambda: lone.fatal, "the node to stop")
    time.sleep(0.3)  # it stays stopped: nothing after the bad entry is applied, ever
    assert len(lone.fatal) == 1, lone.fatal
    error = lone.fatal[0]
    assert isinstance(error, EntryRefused)
    assert str(error).startswith("log entry 3 "), error
    assert reason in str(error), error
    assert lone.so.raftCommitIndex == 4  # it knew entry 4 was committed...
    assert lone.so.raftLastApplied == 2  # ...and applied up to the bad entry only
    assert missing_keys(lone.replica, [b"before", b"after"]) == [b"after"]


def _snapshot_file(path: Path, *, state_format: int = 3, file_format: bytes = b"1") -> bytes:
    """A snapshot as a newer leader streams it: entry 1 (the no-op) at term 3, one key."""
    meta = json.loads(StateMachine().export_meta())
    meta["format"] = state_format
    no_op = snapshot.RaftEntry(b"\x01", 1, 3)
    raft = snapshot.RaftMeta(last=no_op, previous=no_op, cluster=())
    snapshot.write(str(path), raft, json.dumps(meta).encode(), [])
    if file_format != snapshot.SNAPSHOT_FORMAT:
        env = lmdb.open(str(path), subdir=False, lock=False, max_dbs=4)
        try:
            raft_db = env.open_db(b"raft")
            with env.begin(write=True) as txn:
                txn.put(b"format", file_format, db=raft_db)
        finally:
            env.close()
    return path.read_bytes()


@pytest.mark.parametrize(
    ("state_format", "file_format", "reason"),
    [
        (4, b"1", "the snapshot's state has format 4"),
        (3, b"2", "snapshot format b'2'"),
    ],
    ids=["newer-state-format", "newer-file-format"],
)
def test_a_snapshot_this_node_cannot_load_stops_it(
    lone: Lone, tmp_path: Path, state_format: int, file_format: bytes, reason: str
) -> None:
    data = _snapshot_file(
        tmp_path / "newer.lmdb", state_format=state_format, file_format=file_format
    )
    lone.leader.send(
        {"type": "append_entries", "term": 3, "commit_index": 1, "serialized": (data, True, True)}
    )
    wait_for(lambda: lone.fatal, "the node to stop")
    lone.append(lone.entry(_set(b"after")))  # a later entry is never applied
    time.sleep(0.3)
    assert len(lone.fatal) == 1 and reason in str(lone.fatal[0]), lone.fatal
    assert lone.so.halted is not None
    assert missing_keys(lone.replica, [b"after"]) == [b"after"]


# ------------------------------------------------------------------ what is on disk still loads


def test_journals_and_snapshots_written_before_still_load(tmp_path: Path) -> None:
    """The guard refuses nothing this build (or an earlier one: the formats are unchanged)
    wrote: no-ops, commands of format 1, snapshots of file format 1 and state format 3."""
    addr = f"127.0.0.1:{free_port()}"
    fatal: list[BaseException] = []

    def start() -> tuple[RaftNode, Replica]:
        replica = Replica()
        node = RaftNode(_config(addr, (), tmp_path / "n"), replica, on_fatal=fatal.append)
        wait_for(node.is_leader, "the single node to lead")
        return node, replica

    node, _ = start()
    names = write_keys(node, keys("a-", 30))
    take_snapshot(node)
    names += write_keys(node, keys("b-", 30))  # in the journal after the snapshot
    node.destroy()

    node, replica = start()
    try:
        wait_for(lambda: not missing_keys(replica, names), "every key after the restart")
        assert fatal == []
        assert sum(node.bad_frames.counts().values()) == 0
    finally:
        node.destroy()
