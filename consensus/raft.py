"""RaftNode: pysyncobj behind one small, typed interface.

One replicated entry point takes bytes; results come back through a callback
with an Outcome that separates "was it committed?" from "what did the state
machine answer?". Callbacks run on pysyncobj's tick thread: callers must hand
them to their own loop and never block. See DESIGN.md beside this file.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import enum
import functools
import logging
import os
import pickle
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pysyncobj import (
    FAIL_REASON,
    SERIALIZER_STATE,
    SyncObjConf,
    SyncObjConsumer,
    SyncObjException,
)
from pysyncobj import replicated as _replicated
from pysyncobj.node import TCPNode
from pysyncobj.syncobj import _COMMAND_TYPE
from pysyncobj.tcp_connection import CONNECTION_STATE
from raftcache.consensus import identity, journal, peer_guard, recovery, snapshot
from raftcache.consensus.durations import SLOW_BUCKETS_S, Durations
from raftcache.consensus.prevote import PreVoteSyncObj

journal.install()
_log = logging.getLogger("raftcache.consensus")
_LIBC = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1
_SCRATCH_PREFIX = "raftcache-"
_SNAPSHOT_RETRY_S = 10.0
_LOG_TIMES = 8192
"""(index, time) samples a leader keeps of its log's growth: one per tick at most, so about
80 s of history for replication lag in seconds (an older lag is reported as that old)."""


class Durability(enum.Enum):
    MEMORY = "memory"  # no disk: a restarted node starts empty and re-syncs from its peers
    JOURNAL = "journal"  # Raft journal flushed every second + LMDB snapshots


class Role(enum.Enum):
    FOLLOWER = "follower"
    CANDIDATE = "candidate"
    LEADER = "leader"


class Outcome(enum.Enum):
    """What is known about a proposal."""

    APPLIED = "applied"  # committed and applied; the result is the state machine's answer
    NOT_APPLIED = "not_applied"  # never entered the log: safe to retry
    UNKNOWN = "unknown"  # may or may not commit (leader change, discarded, lost reply)


_NOT_APPLIED = {FAIL_REASON.QUEUE_FULL, FAIL_REASON.MISSING_LEADER, FAIL_REASON.REQUEST_DENIED}
_ROLES = {0: Role.FOLLOWER, 1: Role.CANDIDATE, 2: Role.LEADER}

ProposeCallback = Callable[[Outcome, Any], None]


class ReplicatedState(Protocol):
    """The application side: applies log entries and saves/restores snapshots."""

    def apply(self, data: bytes) -> Any:
        """Apply one committed entry (on the tick thread). Raising stops the node."""

    def snapshot_meta(self) -> bytes:
        """Everything but the items, called in a forked child."""

    def snapshot_items(self) -> Iterable[tuple[bytes, bytes]]:
        """The items, called in a forked child."""

    def restore(self, meta: bytes, items: Iterable[tuple[bytes, bytes]]) -> None:
        """Replace the whole state (on the tick thread)."""


class RejoinIntents(Protocol):
    """Where an amnesia rejoin keeps its intent, in the replicated state, so that it
    survives the leader that began it (node/keyspace/rejoin.py; DESIGN.md "Amnesia")."""

    def pending(self) -> frozenset[str]:
        """The Raft addresses whose re-add is pending, as applied here (tick thread)."""

    def command(self, address: str, pending: bool) -> bytes:
        """A log entry that marks (True) or clears (False) `address`'s pending re-add."""


@dataclass(frozen=True)
class RaftConfig:
    """Consensus settings; timings are seconds."""

    self_addr: str
    peers: tuple[str, ...]
    durability: Durability = Durability.JOURNAL
    data_dir: Path | None = None
    secret: str | None = None
    # Where the Raft port listens, when peers dial it through another address (a proxy, a
    # container's 0.0.0.0); None means self_addr.
    bind_addr: str | None = None
    election_timeout_min: float = 0.3
    election_timeout_max: float = 0.7
    heartbeat_period: float = 0.05
    connection_timeout: float = 1.5
    connection_retry: float = 0.2
    leader_fallback_timeout: float = 1.0
    compaction_min_entries: int = 20_000
    compaction_min_time: float = 24 * 3600.0
    # ...or once this many bytes of entries were applied since the last snapshot began
    # (0 = by entries only): entries carry up to thousands of ops, so a count alone lets
    # the log (kept in memory and in the journal) grow to hundreds of MB (DESIGN.md).
    compaction_log_bytes: int = 64 << 20
    max_entry_bytes: int = 64 << 20
    queue_size: int = 10_000
    # pysyncobj caches a peer's resolved address for 600 s by default: a pod rescheduled at a
    # new IP (Kubernetes) would stay unreachable for peers that dial it for ten minutes.
    dns_cache_s: float = 5.0
    dns_fail_cache_s: float = 1.0
    # Pre-vote before an election (prevote.py; DESIGN.md "Pre-vote and check-quorum"). Off,
    # the node still answers pre-votes and keeps leader stickiness; only its own elections
    # start without asking first.
    pre_vote: bool = True
    # Leader leases (lease.py; DESIGN.md "Leader leases"): the leader answers linearizable
    # reads without a log entry while a majority accepted its appends within 0.8 x
    # election_timeout_min. False: every linearizable read waits for an entry to commit.
    lease_reads: bool = True
    # A read replica (pysyncobj's read-only node): it dials the voters in `peers`, receives
    # the log and never votes or counts; it listens on no Raft port (self_addr only names
    # it). DESIGN.md "Read replicas".
    read_replica: bool = False
    # Where the identity file lives (DESIGN.md "Amnesia"): the data directory, in memory
    # mode too; None keeps no identity (unit tests), and the node then votes at once.
    identity_dir: Path | None = None
    # --join: a newcomer the leader adds; with no state and no identity it votes once added.
    joining: bool = False

    def __post_init__(self) -> None:
        if self.durability is Durability.JOURNAL and self.data_dir is None:
            raise ValueError("durability 'journal' needs a data directory")
        if self.self_addr in self.peers:
            raise ValueError(
                f"the peer list contains this node's own raft address {self.self_addr}"
            )


@dataclass(frozen=True)
class RaftStatus:
    """A consistent copy of pysyncobj's state, refreshed on every tick."""

    role: Role = Role.FOLLOWER
    term: int = 0
    leader: str | None = None
    commit_index: int = 0
    applied_index: int = 0
    leader_commit_index: int = 0
    match_index: dict[str, int] = field(default_factory=dict)
    connected: frozenset[str] = frozenset()
    ready: bool = False
    # Monotonic time of the last tick at which this node knew a leader and had applied
    # everything that leader had told it was committed.
    caught_up_at: float = 0.0
    # The voters as this node's log says (a change counts from when it is appended, as
    # pysyncobj does), this node included, sorted; read replicas are not members.
    members: tuple[str, ...] = ()
    # On the leader: followers that answered an append within leader_fallback_timeout.
    responsive: frozenset[str] = frozenset()
    # On the leader: a membership change appended but not committed ("add H:P at index N").
    pending_change: str = ""
    # Read replicas connected to this node (a voter; they dial every voter).
    read_replicas: int = 0
    # False while the node may be amnesiac (DESIGN.md "Amnesia"): it neither votes nor
    # stands for election until re-added and caught up (or a new cluster is bootstrapped).
    voting: bool = True


class MembershipRefused(Exception):
    """A membership change or leadership transfer was refused before anything was appended;
    the message says why (str(exc)). `not_leader` when this node does not lead."""

    def __init__(self, message: str, *, not_leader: bool = False) -> None:
        super().__init__(message)
        self.not_leader = not_leader


@dataclass(frozen=True)
class MemberHealth:
    """The leader's view of one voter."""

    address: str
    is_leader: bool
    responsive: bool  # answered an append within leader_fallback_timeout (the leader: True)
    match_index: int
    lag_entries: int
    lag_seconds: float

    @property
    def caught_up(self) -> bool:
        """Up, and no entry it lacks is older than CAUGHT_UP_LAG_S."""
        return self.responsive and (self.lag_entries == 0 or self.lag_seconds <= CAUGHT_UP_LAG_S)


CAUGHT_UP_LAG_S = 2.0
"""A voter that answers and lacks no entry older than this counts as caught up (membership
changes need every voter, or a majority of the remaining ones, caught up)."""
_PENDING_EXPIRY_S = 30.0


class _Consumer(SyncObjConsumer):  # type: ignore[misc]
    """Holds the single replicated method; the state itself lives in ReplicatedState."""

    def __init__(self, state: ReplicatedState) -> None:
        self._state = state
        self.applied_bytes = 0  # bytes of entries applied since start (tick thread)
        super().__init__()

    @_replicated  # type: ignore[untyped-decorator]
    def apply(self, data: bytes) -> Any:
        # Raising stops the node: GuardedSyncObj calls on_fatal and applies nothing after.
        self.applied_bytes += len(data)
        return self._state.apply(data)

    def propose(self, data: bytes, callback: Callable[[Any, int], None]) -> None:
        """`self.apply(data, callback=callback)` as pysyncobj's `replicated` wrapper does it
        (the method's id for the code version in force, the call queued as a regular
        entry), pickled at `PICKLE_PROTOCOL` instead of protocol 2."""
        syncobj = self._syncObj
        name = syncobj._getFuncName((id(self), "apply"))
        call = (syncobj._methodToID[(id(self), name)], (data,))
        syncobj._applyCommand(
            pickle.dumps(call, peer_guard.PICKLE_PROTOCOL), callback, _COMMAND_TYPE.REGULAR
        )


MEMBERSHIP_QUERY = "raftcache_members"
"""A pysyncobj utility command on the Raft port: what `query_membership` asks."""


@dataclass(frozen=True)
class MembershipView:
    """One node's answer to `query_membership`."""

    address: str  # the Raft address asked
    role: str  # Role.value
    leader: str | None  # the leader it follows (its Raft address), if any
    members: frozenset[str]  # the voters as its log says (appended changes count)
    has_state: bool  # it holds Raft state (a term): it is part of a running cluster
    settled: bool  # a leader whose membership cannot change back (see _answer_membership)


def query_membership(
    address: str, secret: str | None, timeout: float = 2.0
) -> MembershipView | None:
    """Ask the node whose Raft port is `address` for its view of the membership (blocking;
    None when it does not answer in `timeout` s). Needs only the Raft secret, not
    membership: pysyncobj answers utility commands before it asks who is calling."""
    from pysyncobj.utility import TcpUtility, UtilityException

    try:
        answer = TcpUtility(secret, timeout).executeCommand(
            _to_pysyncobj(address), [MEMBERSHIP_QUERY]
        )
    except (UtilityException, OSError, ValueError):
        return None
    if not isinstance(answer, dict) or not isinstance(answer.get("members"), list):
        return None  # an older build, or not a raftcache node
    leader = answer.get("leader")
    return MembershipView(
        address=address,
        role=str(answer.get("role")),
        leader=leader if isinstance(leader, str) else None,
        members=frozenset(str(m) for m in answer["members"]),
        has_state=bool(answer.get("has_state")),
        settled=bool(answer.get("settled")),
    )


def _to_pysyncobj(address: str) -> str:
    """HOST:PORT as pysyncobj takes it: it splits at the last colon and resolves the host as
    written, so an IPv6 host goes without its brackets ([::1]:7380 -> ::1:7380)."""
    host, _, port = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        return f"{host[1:-1]}:{port}"
    return address


def _from_pysyncobj(address: str) -> str:
    """The inverse of _to_pysyncobj: the address as the rest of the node writes it."""
    host, _, port = address.rpartition(":")
    return f"[{host}]:{port}" if ":" in host else address


def _remove_orphaned_scratch(base: str) -> None:
    """Remove memory-mode scratch dirs of node processes that died without cleaning up."""
    for name in os.listdir(base):
        if not name.startswith(_SCRATCH_PREFIX):
            continue
        pid_text = name[len(_SCRATCH_PREFIX) :].split("-", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid():
            continue
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            shutil.rmtree(os.path.join(base, name), ignore_errors=True)
        except PermissionError:
            pass


def _reason_name(reason: int) -> str:
    for name in (
        "DISCARDED",
        "NOT_LEADER",
        "LEADER_CHANGED",
        "UNKNOWN_OUTCOME",
        "QUEUE_FULL",
        "MISSING_LEADER",
        "REQUEST_DENIED",
    ):
        if getattr(FAIL_REASON, name, None) == reason:
            return name
    return str(reason)


def _fatal_exit(exc: BaseException) -> None:
    _log.critical("cannot apply a committed log entry; stopping this node: %r", exc)
    logging.shutdown()
    os._exit(70)


class RaftNode:
    """One Raft member. Construct on the thread that will stay alive (pysyncobj checks it)."""

    def __init__(
        self,
        config: RaftConfig,
        state: ReplicatedState,
        *,
        on_fatal: Callable[[BaseException], None] = _fatal_exit,
        on_role_change: Callable[[Role, Role], None] | None = None,
        rejoin_intents: RejoinIntents | None = None,
    ) -> None:
        self.config = config
        self._state = state
        self.rejoin_intents = rejoin_intents
        self._on_role_change = on_role_change
        self._on_tick_actions: collections.deque[Callable[[], None]] = collections.deque()
        self._status = RaftStatus()
        self._last_tick = time.monotonic()
        self._next_connect_check = 0.0
        self._gap_buckets: collections.deque[tuple[int, float]] = collections.deque(maxlen=64)
        self.snapshots_taken = 0
        self.snapshot_failures = 0
        self.snapshot_durations = Durations(SLOW_BUCKETS_S)  # fork to renamed file
        self.snapshot_load_durations = Durations(SLOW_BUCKETS_S)
        self.leader_changes = 0  # a different leader became known (etcd counts the same)
        self._last_leader: str | None = None
        self._log_times: collections.deque[tuple[int, float]] = collections.deque(maxlen=_LOG_TIMES)
        self._snapshot_started = 0.0
        self.recovery: recovery.RecoveryReport | None = None
        self._child_pid = 0
        self._retry_at = 0.0
        self._writer_cancelled = False
        self._scratch: str | None = None
        # A membership change this leader handed to pysyncobj and has no outcome for yet:
        # (kind, address, monotonic time submitted). Tick thread only.
        self._change_in_flight: tuple[str, str, float] | None = None
        self.on_event: Callable[..., None] | None = None  # (name, **fields); set by the node
        self._dump_path, journal_path = self._prepare_files()
        self._on_fatal = on_fatal
        self._consumer = _Consumer(state)
        # _consumer.applied_bytes when the last snapshot began (or was asked for by size).
        self._snapshot_bytes = 0
        self.size_compactions = 0  # snapshots asked for by compaction_log_bytes
        # Frames refused from peers, by reason (peer_guard.py; raftcache_raft_bad_frames).
        self.bad_frames = peer_guard.BadFrames()
        conf = SyncObjConf(
            # Without bindAddress pysyncobj listens on 0.0.0.0 whatever the raft address
            # says: the pickle-speaking port would be reachable on every interface.
            bindAddress=_to_pysyncobj(config.bind_addr or config.self_addr),
            bindRetryTime=0.2,
            maxBindRetries=10,
            password=config.secret,
            autoTick=True,
            autoTickPeriod=0.01,
            appendEntriesUseBatch=False,
            appendEntriesPeriod=config.heartbeat_period,
            raftMinTimeout=config.election_timeout_min,
            raftMaxTimeout=config.election_timeout_max,
            connectionTimeout=config.connection_timeout,
            connectionRetryTime=config.connection_retry,
            leaderFallbackTimeout=config.leader_fallback_timeout,
            appendEntriesBatchSizeBytes=config.max_entry_bytes,
            logCompactionBatchSize=1 << 20,
            logCompactionMinEntries=config.compaction_min_entries,
            logCompactionMinTime=config.compaction_min_time,
            commandsQueueSize=config.queue_size,
            commandsWaitLeader=False,
            sendBufferSize=1 << 21,
            recvBufferSize=1 << 21,
            journalFile=journal_path,
            fullDumpFile=self._dump_path,
            serializer=self._serialize,
            deserializer=self._deserialize,
            serializeChecker=self._check_serializing,
            onStateChanged=self._state_changed,
            # Online membership changes (DESIGN.md "Membership"): our own checks in
            # change_membership() serialise them; pysyncobj's guard is dead code.
            dynamicMembershipChange=True,
            dnsCacheTime=config.dns_cache_s,
            dnsFailCacheTime=config.dns_fail_cache_s,
        )
        self._syncobj = peer_guard.GuardedSyncObj(
            None if config.read_replica else _to_pysyncobj(config.self_addr),
            [_to_pysyncobj(peer) for peer in config.peers],
            conf,
            consumers=[self._consumer],
            pre_vote=config.pre_vote,
            lease_reads=config.lease_reads,
            voting=config.identity_dir is None or config.read_replica,
            on_bad_entry=on_fatal,
            bad_frames=self.bad_frames,
            max_frame_bytes=peer_guard.frame_limit(config.max_entry_bytes),
            snapshot_end=_snapshot_end,
        )
        self._amnesia = _Amnesia(self, self._syncobj)
        # Answered to anyone holding the secret, members or not (node/rejoin.py asks it
        # before a --join node starts: DESIGN.md "Amnesia"). The only utility command
        # answered: pysyncobj's own (add, remove, set_version, transfer, status) are
        # refused (peer_guard.py; DESIGN.md "Bad peers").
        self._syncobj.answer_utility(MEMBERSHIP_QUERY, self._answer_membership)
        try:
            if not config.read_replica:  # a read-only node binds nothing (and never says so)
                self._syncobj.waitBinded()
        except SyncObjException as exc:
            self._syncobj.destroy()
            if config.bind_addr and config.bind_addr != config.self_addr:
                raise OSError(f"--raft-bind: cannot listen on {config.bind_addr} ({exc})") from exc
            raise OSError(f"--raft: cannot listen on {config.self_addr} ({exc})") from exc
        self._syncobj.addOnTickCallback(self._on_tick)

    # ------------------------------------------------------------ files

    def _prepare_files(self) -> tuple[str, str | None]:
        """Paths of the snapshot and journal; in journal mode, repair what a crash left."""
        if self.config.durability is Durability.MEMORY:
            base = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
            _remove_orphaned_scratch(base)
            prefix = f"{_SCRATCH_PREFIX}{os.getpid()}-"
            self._scratch = tempfile.mkdtemp(prefix=prefix, dir=base)
            return os.path.join(self._scratch, "snapshot.lmdb"), None
        assert self.config.data_dir is not None
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        dump = str(self.config.data_dir / "snapshot.lmdb")
        jrnl = str(self.config.data_dir / "raft.journal")
        # Trap 1 (PYSYNCOBJ.md): a journal without a dump file loses everything after the
        # first compaction, so journal mode always has both.
        self.recovery = recovery.repair(jrnl, dump)
        return dump, jrnl

    def _answer_membership(self, _args: Any, callback: Callable[[Any, Any], None]) -> None:
        """The `MEMBERSHIP_QUERY` utility command (tick thread): this node's view of the
        voters, and whether it is a leader whose view cannot change back (`settled`: its
        no-op applied, no membership change appended and uncommitted or in flight)."""
        so = self._syncobj
        status = self._status
        settled = False
        if status.role is Role.LEADER:
            noop = getattr(so, "_SyncObj__noopIDx", None)
            settled = (
                noop is not None
                and so.raftLastApplied >= noop
                and self._change_in_flight is None
                and not self._uncommitted_change()
            )
        callback(
            {
                "role": status.role.value,
                "leader": status.leader,
                "members": list(status.members),
                "has_state": so.raftCurrentTerm > 0,
                "settled": settled,
            },
            None,
        )

    # ------------------------------------------------------------ proposals

    def propose(self, data: bytes, callback: ProposeCallback) -> None:
        """Append `data` to the replicated log. `callback` runs on the tick thread."""

        def done(result: Any, reason: int) -> None:
            # An exception escaping here would make pysyncobj skip its applied-index
            # update and apply the same entry again.
            try:
                if reason == FAIL_REASON.SUCCESS:
                    callback(Outcome.APPLIED, result)
                elif reason in _NOT_APPLIED:
                    callback(Outcome.NOT_APPLIED, reason)
                else:
                    callback(Outcome.UNKNOWN, reason)
            except Exception:
                _log.exception("proposal callback failed")

        self._consumer.propose(data, done)

    # ------------------------------------------------------------ status

    def status(self) -> RaftStatus:
        """The state as of the last tick (at most one tick old)."""
        return self._status

    def is_leader(self) -> bool:
        return self._status.role is Role.LEADER

    def lease_read_ok(self) -> bool:
        """This leader's read lease holds now and it has applied everything it knows
        committed: a linearizable read may be answered from its state (lease.py)."""
        return self._syncobj.lease_read_ok()

    def commit_notices(self) -> tuple[int, int]:
        """(held, carried): commit notices this node held as leader, and how many of those
        the next entry carried in time (commit_notice.py; metrics)."""
        so = self._syncobj
        return so.commit_notices_held, so.commit_notices_carried

    def applied_everything(self) -> bool:
        """This leader has applied every entry in its log (lease.py): the proposer forms
        set runs only then, when the settings it checks are those its entry meets."""
        return self._syncobj.applied_everything()

    def tick_thread_id(self) -> int | None:
        """The native id of pysyncobj's tick thread (for its CPU time), once it runs."""
        thread = getattr(self._syncobj, "_SyncObj__thread", None)
        return thread.native_id if isinstance(thread, threading.Thread) else None

    def max_tick_gap_ms(self, window_s: float = 60.0) -> float:
        """Longest gap between two ticks in the last `window_s` seconds."""
        floor = int(time.monotonic() - window_s)
        return max((gap for second, gap in list(self._gap_buckets) if second >= floor), default=0.0)

    def _on_tick(self) -> None:
        now = time.monotonic()
        gap_ms = (now - self._last_tick) * 1000.0
        self._last_tick = now
        second = int(now)
        if self._gap_buckets and self._gap_buckets[-1][0] == second:
            if gap_ms > self._gap_buckets[-1][1]:
                self._gap_buckets[-1] = (second, gap_ms)
        else:
            self._gap_buckets.append((second, gap_ms))
        while self._on_tick_actions:
            self._on_tick_actions.popleft()()
        self._amnesia.tick(now)
        self._compact_by_size()
        if now >= self._next_connect_check:
            self._next_connect_check = now + 0.25
            self._abandon_stuck_connects(now)
        self._refresh_status()

    def _compact_by_size(self) -> None:
        """Ask pysyncobj for a snapshot once compaction_log_bytes of entries were applied
        since the last one began: its own trigger counts entries, and an entry carries up
        to thousands of ops (the log's memory grew by ~330 MB per 20,000 64-op entries)."""
        limit = self.config.compaction_log_bytes
        applied = self._consumer.applied_bytes
        if not limit or applied - self._snapshot_bytes < limit or self._child_pid:
            return
        self._snapshot_bytes = applied  # asked once; _serialize moves it when one begins
        self.size_compactions += 1
        self._syncobj.forceLogCompaction()

    def _abandon_stuck_connects(self, now: float) -> None:
        """Close outgoing connects that got no answer within connection_timeout.

        pysyncobj waits for the kernel on a connect: to an address that no longer exists (a
        pod rescheduled at a new IP) that took ~40 s here, and pysyncobj neither retries nor
        re-resolves the name meanwhile. Closing it lets the next attempt resolve afresh.
        """
        transport = getattr(self._syncobj, "_SyncObj__transport", None)
        connections: dict[Any, Any] = getattr(transport, "_connections", {})
        for conn in list(connections.values()):
            started = getattr(conn, "_TcpConnection__lastReadTime", now)
            if conn.state == CONNECTION_STATE.CONNECTING and (
                now - started > self.config.connection_timeout
            ):
                conn.disconnect()

    def _refresh_status(self) -> None:
        so = self._syncobj
        leader = so._getLeader()
        applied = so.raftLastApplied
        leader_commit = so._SyncObj__leaderCommitIndex or 0
        caught_up_at = self._status.caught_up_at
        if leader is not None and applied >= leader_commit:
            caught_up_at = time.monotonic()
        match: dict[Any, int] = getattr(so, "_SyncObj__raftMatchIndex", {})
        connected: set[Any] = getattr(so, "_SyncObj__connectedNodes", set())
        role = _ROLES[so._SyncObj__raftState]
        others: set[Any] = getattr(so, "_SyncObj__otherNodes", set())
        voters = {_from_pysyncobj(n.address) for n in list(others)}
        if not self.config.read_replica:
            voters.add(self.config.self_addr)
        members = tuple(sorted(voters))
        readonly: set[Any] = getattr(so, "_SyncObj__readonlyNodes", set())
        responsive: frozenset[str] = frozenset()
        if role is Role.LEADER:
            floor = time.monotonic() - self.config.leader_fallback_timeout
            last_response: dict[Any, float] = getattr(so, "_SyncObj__lastResponseTime", {})
            responsive = frozenset(
                _from_pysyncobj(n.address)
                for n, t in list(last_response.items())
                if t >= floor and n in others and n in connected
            )
        leader_addr = _from_pysyncobj(leader.address) if leader is not None else None
        if leader_addr == self.config.self_addr and role is not Role.LEADER:
            # pysyncobj steps down (__setState, whose hook refreshes this) before it clears
            # its leader: a follower naming itself would send callers back to itself, and
            # made a transfer that had succeeded report that leadership had not moved.
            leader_addr = None
        if leader_addr is not None and leader_addr != self._last_leader:
            self._last_leader = leader_addr
            self.leader_changes += 1
        if role is Role.LEADER:
            self._note_log_index(so)
        elif self._log_times:
            self._log_times.clear()
        self._status = RaftStatus(
            role=role,
            term=so.raftCurrentTerm,
            leader=leader_addr,
            commit_index=so.raftCommitIndex,
            applied_index=applied,
            leader_commit_index=leader_commit,
            # read replicas appear as address-less Nodes on the voters: not peers
            match_index={
                _from_pysyncobj(n.address): i
                for n, i in list(match.items())
                if isinstance(n, TCPNode)
            },
            connected=frozenset(
                _from_pysyncobj(n.address) for n in list(connected) if isinstance(n, TCPNode)
            ),
            ready=so.isReady(),
            caught_up_at=caught_up_at,
            members=members,
            responsive=responsive,
            pending_change=(self._uncommitted_change() or "") if role is Role.LEADER else "",
            read_replicas=len(readonly),
            voting=bool(so.voting),
        )

    def _note_log_index(self, so: Any) -> None:
        """Remember when the leader's log reached its current last index (tick thread)."""
        log = so._SyncObj__raftLog
        last = log[-1][1] if len(log) else 0
        if not self._log_times or self._log_times[-1][0] < last:
            self._log_times.append((last, time.monotonic()))

    def replication_lag(self) -> dict[str, tuple[int, float]]:
        """On the leader: per follower, (entries it lacks, age in seconds of the oldest of
        them); empty on a follower."""
        status = self._status
        times = list(self._log_times)
        if status.role is not Role.LEADER or not times:
            return {}
        last = times[-1][0]
        now = time.monotonic()
        lag: dict[str, tuple[int, float]] = {}
        for peer in status.members:
            if peer == self.config.self_addr:
                continue
            matched = status.match_index.get(peer, 0)
            if matched >= last:
                lag[peer] = (0, 0.0)
                continue
            # the first sample past `matched` is when the oldest missing entry was appended
            first = next((t for index, t in times if index > matched), times[-1][1])
            lag[peer] = (last - matched, now - first)
        return lag

    def stale_messages(self) -> dict[str, int]:
        """Peer messages refused as stale since start (DESIGN.md "A snapshot this log
        already holds is refused", "Answers to an older term's append are dropped")."""
        so = self._syncobj
        return {
            "snapshot": int(getattr(so, "stale_snapshots_refused", 0)),
            "answer": int(getattr(so, "stale_answers_dropped", 0)),
        }

    @property
    def snapshot_in_progress(self) -> bool:
        """A snapshot writer is running."""
        return bool(self._child_pid)

    def journal_flush_durations(self) -> Durations | None:
        """How long the journal's flushes took (None in memory mode)."""
        log = getattr(self._syncobj, "_SyncObj__raftLog", None)
        durations = getattr(log, "flush_durations", None)
        return durations if isinstance(durations, Durations) else None

    def _state_changed(self, old: int, new: int) -> None:
        self._refresh_status()
        if self._on_role_change is not None:
            self._on_role_change(_ROLES[old], _ROLES[new])

    # ------------------------------------------------------------ leadership

    def transfer_leadership(self, target: str | None = None) -> None:
        """Ask `target` (a member's raft address), or the most caught-up follower, to take
        over (runs on the tick thread). pysyncobj refuses silently while the target lacks
        the leader's last entry, and sends TimeoutNow only once: callers ask again until
        the leader changes (node/server.py _shutdown, Cluster.TransferLeadership)."""
        node = _to_pysyncobj(target) if target is not None else None
        self._on_tick_actions.append(lambda: self._syncobj.transferLeadership(node))

    # ------------------------------------------------------------ membership

    def member_health(self) -> list[MemberHealth]:
        """On the leader: every voter's state (empty on a follower)."""
        status = self._status
        if status.role is not Role.LEADER:
            return []
        lag = self.replication_lag()
        out = []
        for addr in status.members:
            me = addr == self.config.self_addr
            entries, seconds = (0, 0.0) if me else lag.get(addr, (0, 0.0))
            out.append(
                MemberHealth(
                    address=addr,
                    is_leader=me,
                    responsive=me or addr in status.responsive,
                    match_index=status.commit_index if me else status.match_index.get(addr, 0),
                    lag_entries=entries,
                    lag_seconds=seconds,
                )
            )
        return out

    def pending_change(self) -> str:
        """On the leader: the membership change appended but not committed yet, or ""."""
        return self._status.pending_change

    def change_membership(
        self,
        kind: str,
        address: str,
        callback: Callable[[Outcome, str], None],
        *,
        operator: bool = True,
    ) -> None:
        """Add (`kind` "add") or remove ("remove") one voter, on the leader.

        Runs on the tick thread: the checks and pysyncobj's append happen in the same tick,
        so no other change can slip in between. `callback(outcome, detail)` runs on the
        tick thread: NOT_APPLIED with the reason when refused (nothing appended), APPLIED
        once committed, UNKNOWN when the leader changed or the entry was discarded (it may
        or may not commit: re-read the membership). See DESIGN.md "Membership".

        An `operator` removal first clears a pending amnesia re-add of the address (and
        drops this leader's rejoin job for it), so a node removed on purpose stays out.
        """

        def run() -> None:
            intents = self.rejoin_intents
            if operator and kind == "remove" and intents is not None and self.is_leader():
                had_job = self._amnesia.forget(address)
                if not had_job and address not in intents.pending():
                    change()
                    return

                def cleared(outcome: Outcome, _result: Any) -> None:
                    if outcome is Outcome.APPLIED:
                        self._on_tick_actions.append(change)
                    else:
                        callback(outcome, f"its pending re-add was not cleared ({outcome.value})")

                self.propose(intents.command(address, False), cleared)
                return
            change()

        def change() -> None:
            try:
                self._check_change(kind, address)
            except MembershipRefused as exc:
                callback(Outcome.NOT_APPLIED, str(exc))
                return
            submitted = time.monotonic()
            self._change_in_flight = (kind, address, submitted)

            def done(_result: Any, reason: int) -> None:
                if self._change_in_flight is not None and self._change_in_flight[2] == submitted:
                    self._change_in_flight = None
                try:
                    if reason == FAIL_REASON.SUCCESS:
                        callback(Outcome.APPLIED, "committed")
                    elif reason in _NOT_APPLIED:
                        callback(Outcome.NOT_APPLIED, f"not appended ({_reason_name(reason)})")
                    else:
                        callback(Outcome.UNKNOWN, _reason_name(reason))
                except Exception:
                    _log.exception("membership callback failed")

            node = _to_pysyncobj(address)
            if kind == "add":
                self._syncobj.addNodeToCluster(node, callback=done)
            else:
                self._syncobj.removeNodeFromCluster(node, callback=done)

        self._on_tick_actions.append(run)

    def _check_change(self, kind: str, address: str) -> None:
        """Raise MembershipRefused unless the change is safe now (tick thread)."""
        so = self._syncobj
        self._refresh_status()
        status = self._status
        if status.role is not Role.LEADER:
            raise MembershipRefused("this node is not the leader", not_leader=True)
        in_flight = self._change_in_flight
        if in_flight is not None and time.monotonic() - in_flight[2] < _PENDING_EXPIRY_S:
            raise MembershipRefused(
                f"another membership change is in progress ({in_flight[0]} {in_flight[1]}, "
                "not committed yet): one change at a time; retry when it has committed"
            )
        # Ongaro's rule: a new leader changes nothing until an entry of its own term is
        # committed (an uncommitted change of an earlier leader may be in its log).
        noop = getattr(so, "_SyncObj__noopIDx", None)
        # applied, not just committed: pysyncobj's own check (REQUEST_DENIED) uses lastApplied
        if noop is None or so.raftLastApplied < noop:
            raise MembershipRefused(
                "this leader was just elected and has not committed an entry of its term "
                "yet; retry shortly"
            )
        pending = self._uncommitted_change()
        if pending:
            raise MembershipRefused(
                f"another membership change is in progress ({pending}, appended but not "
                "committed yet): one change at a time; retry when it has committed"
            )
        health = {h.address: h for h in self.member_health()}
        members = sorted(health)
        if kind == "remove":
            if address not in health:
                raise MembershipRefused(
                    f"{address} is not a member (members: {', '.join(members)})"
                )
            if address == self.config.self_addr:
                raise MembershipRefused(
                    f"{address} is the leader: transfer leadership to another member first "
                    "('raftcache leader transfer'), then remove it"
                )
            remaining = [a for a in members if a != address]
            up = [a for a in remaining if health[a].caught_up]
            need = len(remaining) // 2 + 1
            if len(up) < need:
                raise MembershipRefused(
                    f"removing {address} would lose quorum: of the {len(remaining)} voters "
                    f"left, only {len(up)} are up and caught up ({', '.join(up)}), and a "
                    f"majority is {need}; bring members back first"
                )
        elif kind == "add":
            if address in health:
                raise MembershipRefused(f"{address} is already a member")
            lagging = [a for a in members if not health[a].caught_up]
            if lagging:
                raise MembershipRefused(
                    f"the cluster is not healthy: {', '.join(lagging)} "
                    f"{'is' if len(lagging) == 1 else 'are'} down or still catching up; "
                    f"adding {address} now would make {len(members) + 1} voters whose "
                    f"majority ({(len(members) + 1) // 2 + 1}) must all be up while it "
                    "catches up. Remove dead members first (remove before add), or wait"
                )
        else:
            raise ValueError(f"unknown membership change {kind!r}")

    def _membership_entries_after(self, after: int) -> Iterator[tuple[int, bytes]]:
        """(index, pickled request) of the membership entries past index `after` in this
        node's log, newest first (tick thread)."""
        log = self._syncobj._SyncObj__raftLog
        for k in range(len(log) - 1, -1, -1):
            command, index, _term = log[k]
            if index <= after:
                return
            if command[:1] and command[0] == _COMMAND_TYPE.MEMBERSHIP:
                yield index, command[1:]

    def _uncommitted_change(self) -> str | None:
        """A membership entry in the log past the commit index, described; else None."""
        for index, pickled in self._membership_entries_after(self._syncobj.raftCommitIndex):
            try:
                request = pickle.loads(pickled)
                verb = "add" if request[0] == "add" else "remove"
                return f"{verb} {_from_pysyncobj(request[1])} at index {index}"
            except Exception:
                return f"a change at index {index}"
        return None

    def force_snapshot(self) -> bool:
        """Compact the log into a snapshot soon; False if one is being written already."""
        if self._child_pid:
            return False
        self._syncobj.forceLogCompaction()
        return True

    # ------------------------------------------------------------ snapshots

    def _serialize(self, _tmp_path: str, raft_data: tuple[Any, Any, Any]) -> None:
        """Called on the tick thread at compaction: fork a child that writes the LMDB file.

        The child sees the state exactly as of the last applied entry, copy-on-write,
        so the tick thread stalls only for the fork. The child renames the finished
        file into place itself; pysyncobj's own rename of `_tmp_path` then fails
        harmlessly and `_check_serializing` reports the child's result.
        """
        try:
            self._fork_writer(raft_data)
        except Exception:
            # pysyncobj's serializer would swallow this and never call us again (no more
            # snapshots, no streams to followers behind): report a failed writer instead,
            # retried like one that exited non-zero.
            _log.exception("could not start the snapshot writer")
            self.snapshot_failures += 1
            self._writer_cancelled = True
            self._retry_at = time.monotonic() + _SNAPSHOT_RETRY_S

    def _fork_writer(self, raft_data: tuple[Any, Any, Any]) -> None:
        last, previous, cluster = raft_data
        meta = snapshot.RaftMeta(
            last=snapshot.RaftEntry(bytes(last[0]), last[1], last[2]),
            previous=snapshot.RaftEntry(bytes(previous[0]), previous[1], previous[2]),
            cluster=self._voters_at(last[1], cluster),
        )
        self._snapshot_started = time.monotonic()
        self._snapshot_bytes = self._consumer.applied_bytes
        pid = os.fork()
        if pid == 0:  # child: touch only the file, then leave without running any cleanup
            code = 1
            partial = f"{self._dump_path}.writing.{os.getpid()}"
            try:
                # Die with the forking thread: a writer outliving a SIGKILLed node could
                # rename an old snapshot over the restarted node's newer one.
                _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
                snapshot.write(
                    partial, meta, self._state.snapshot_meta(), self._state.snapshot_items()
                )
                os.rename(partial, self._dump_path)
                journal.fsync_dir(os.path.dirname(self._dump_path))
                code = 0
            finally:
                if code:
                    with contextlib.suppress(OSError):
                        os.unlink(partial)
                os._exit(code)
        self._child_pid = pid

    def _voters_at(self, index: int, cluster: Any) -> tuple[str, ...]:
        """The voters as of entry `index`, for a snapshot taken there (tick thread).

        pysyncobj hands over its current set, which already holds every change appended
        after `index`, committed or not: a snapshot holding an uncommitted removal would
        bring it back at every restart (and to every follower it is streamed to) after the
        entry was overwritten. So the changes appended after `index` are undone, newest
        first, as pysyncobj undoes them when it truncates its log."""
        # a read replica's own entry is None (it is no member)
        voters = {n.address for n in cluster if n is not None}
        for _index, pickled in self._membership_entries_after(index):
            request = pickle.loads(pickled)
            node = request[2] if len(request) >= 3 else None
            address = getattr(node, "address", request[1])
            if request[0] == "add":
                voters.discard(address)
            elif request[0] == "rem":
                voters.add(address)
        return tuple(sorted(voters))

    def _emit(self, name: str, **fields: Any) -> None:
        if self.on_event is not None:
            try:
                self.on_event(name, **fields)
            except Exception:
                _log.exception("event hook failed")

    def _check_serializing(self) -> int:
        if self._writer_cancelled:
            self._writer_cancelled = False
            return int(SERIALIZER_STATE.FAILED)
        if not self._child_pid:
            if time.monotonic() < self._retry_at:
                return int(SERIALIZER_STATE.SERIALIZING)
            return int(SERIALIZER_STATE.NOT_SERIALIZING)
        pid, status = os.waitpid(self._child_pid, os.WNOHANG)
        if pid == 0:
            return int(SERIALIZER_STATE.SERIALIZING)
        self._child_pid = 0
        self.snapshot_durations.observe(time.monotonic() - self._snapshot_started)
        if os.waitstatus_to_exitcode(status) == 0:
            self.snapshots_taken += 1
            self._emit(
                "SnapshotComplete",
                seconds=round(time.monotonic() - self._snapshot_started, 3),
                applied_index=self._syncobj.raftLastApplied,
            )
            return int(SERIALIZER_STATE.SUCCESS)
        self.snapshot_failures += 1
        _log.error(
            "snapshot writer exited with status %s; next attempt in %.0f s",
            status,
            _SNAPSHOT_RETRY_S,
        )
        # pysyncobj would start a new writer on the very next tick: keep reporting
        # "serializing" for a while so a persistent failure does not fork-storm.
        self._retry_at = time.monotonic() + _SNAPSHOT_RETRY_S
        return int(SERIALIZER_STATE.FAILED)

    def _deserialize(self, path: str) -> tuple[Any, Any, Any]:
        """Load a snapshot (at start-up, or streamed from the leader) into the state."""
        self._cancel_writer()
        started = time.monotonic()
        if self.config.durability is Durability.JOURNAL:
            # pysyncobj renames a received snapshot into place without fsync, then
            # truncates the journal: make the file durable before that happens.
            with open(path, "rb") as f:
                os.fsync(f.fileno())
            journal.fsync_dir(os.path.dirname(path))
        try:
            with snapshot.reader(path) as (raft, state_meta, items):
                self._state.restore(state_meta, items)
        except Exception as exc:
            # pysyncobj swallows exceptions here and would carry on with an empty state
            # and a journal that starts after the snapshot: stop applying, then stop.
            so = getattr(self, "_syncobj", None)  # unset while pysyncobj is constructed
            if isinstance(so, peer_guard.GuardedSyncObj):
                so.halted = peer_guard.EntryRefused(f"cannot load the snapshot: {exc}")
            self._on_fatal(exc)
            raise
        self.snapshot_load_durations.observe(time.monotonic() - started)
        _log.info(
            "loaded snapshot at index %d in %.0f ms",
            raft.last.index,
            (time.monotonic() - started) * 1000,
        )
        cluster = {TCPNode(addr) for addr in raft.cluster}
        return raft.last.as_tuple(), raft.previous.as_tuple(), cluster

    def _cancel_writer(self) -> None:
        """Kill a running snapshot writer: a snapshot is being loaded that supersedes it.

        Otherwise the writer would later rename its older file over the snapshot just
        received from the leader, while pysyncobj has already cut the journal to start
        after it: the next restart would load the older file, clear the journal and lose
        acknowledged entries. If the writer renamed already, the older file is what
        gets loaded, which is consistent too (the leader then sends its snapshot again).
        """
        if not self._child_pid:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._child_pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self._child_pid, 0)
        self._child_pid = 0
        self._writer_cancelled = True  # reported as FAILED: pysyncobj must not truncate for it

    # ------------------------------------------------------------ lifecycle

    def destroy(self) -> None:
        """Stop the tick thread, flush and close the journal."""
        self._syncobj.destroy()
        thread = getattr(self._syncobj, "_SyncObj__thread", None)
        if isinstance(thread, threading.Thread) and thread is not threading.current_thread():
            thread.join(timeout=5)
        if self._child_pid:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self._child_pid, 0)
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)


def _snapshot_end(path: str) -> tuple[int, int]:
    """A snapshot file's last entry, (index, term), without loading its state."""
    last = snapshot.read_raft_meta(path).last
    return last.index, last.term


_QUERY_EVERY_S = 0.1
_REJOIN_EVERY_S = 1.0
_BOOTSTRAP_GRACE_S = 2.0
_LEADER_REJOIN_RETRY_S = 1.0
_GIVE_UP_S = 60.0
_SWEEP_COOLDOWN_S = 30.0  # after giving up on a pending re-add, or an operator's removal
_PROBE_FRESH_S = 3.0  # a sweep re-adds a pending node whose Raft port answered this recently


class _Amnesia:
    """No amnesiac voters (DESIGN.md "Amnesia"); everything runs on the tick thread but the
    constructor.

    At start a voter decides from its identity file and its Raft state whether it may vote:
    with state (a term) and no pending rejoin it votes at once. Without state it asks its
    peers (`state_query`): if any has state, a cluster exists and this node may have
    acknowledged entries it no longer has, so it asks the leader (`rejoin_request`) to
    remove and re-add it, and votes only once told it was re-added (`rejoined`, with the
    leader's commit index then) and it has applied that far. If instead a majority
    (counting itself) answer that they have no state either, and none has, this is a new
    cluster (or one that lost the state of a majority: nothing to keep): it votes.
    The leader side of `rejoin_request` runs here too.
    """

    def __init__(self, node: RaftNode, so: PreVoteSyncObj) -> None:
        self._node = node
        self._so = so
        config = node.config
        self._dir = config.identity_dir
        self._self = config.self_addr
        self._token = os.urandom(8).hex()
        self._replies: dict[str, bool] = {}
        self._majority_empty_at: float | None = None
        self._rejoin = False  # a cluster exists: ask the leader to re-add us
        self._rejoin_index: int | None = None
        self._next_query = 0.0
        self._next_request = 0.0
        # leader side: rejoin jobs by the node's token ("pending:ADDR" for a sweep's
        # re-add), when the sweep looks next, and addresses it gave up on, until when
        self._jobs: dict[str, _RejoinJob] = {}
        self._next_sweep = 0.0
        self._cooldown: dict[str, float] = {}
        self._answered_at: dict[str, float] = {}  # pending addresses that answered a probe
        self._probing_now: set[str] = set()
        so.on_state_reply = self._on_state_reply
        so.on_state_query = self._on_state_query
        # A node without state or record that answered another such node's query took part
        # in a bootstrap: that node may have counted on it and elected a leader with the
        # others before this node heard back. It never voted or acknowledged anything.
        self._probing = False
        self._answered_probe = False
        so.on_rejoin_request = self._on_rejoin_request
        so.on_rejoined = self._on_rejoined
        if self._dir is None or config.read_replica:
            return
        known = identity.load(self._dir, self._self)
        has_state = so.raftCurrentTerm > 0
        if known is not None and known.state == identity.REJOINING:
            self._start_rejoin("it had not been re-added and caught up before it stopped")
        elif has_state:
            if known is None or known.state != identity.VOTER:
                self._store(identity.VOTER)
            so.voting = True
        elif known is not None and known.state == identity.VOTER:
            self._start_rejoin(
                "it was a voter of this cluster and has no Raft state now (memory mode "
                "restart, or a new volume)"
            )
        elif config.joining:
            self._store(identity.VOTER)  # a newcomer: nothing it acknowledged is lost
            so.voting = True
        else:
            self._store(identity.PROBING)
            self._probing = True
            _log.info("no Raft state: asking the peers whether a cluster exists before voting")

    @property
    def waiting(self) -> bool:
        return not self._so.voting

    def _store(self, state: str) -> None:
        identity.store(self._dir, identity.Identity(self._self, state, self._node.status().members))

    def _start_rejoin(self, why: str) -> None:
        if not self._rejoin:
            _log.warning(
                "amnesia: not voting until the leader has removed and re-added this node and "
                "it has caught up: %s",
                why,
            )
        self._rejoin = True
        self._store(identity.REJOINING)

    def _on_state_reply(self, node: Any, has_state: bool) -> None:
        if self._so.voting:
            return
        self._replies[_from_pysyncobj(node.address)] = has_state
        if has_state and self._probing and self._answered_probe and not self._rejoin:
            self._store(identity.VOTER)
            self._so.voting = True
            _log.info("a new cluster formed while this node was starting; voting")
            return
        if has_state:
            self._start_rejoin(f"{_from_pysyncobj(node.address)} has Raft state: a cluster exists")

    def _on_state_query(self, _node: Any, term: int = 0) -> None:
        # Only a query from a node without state (term 0) is a bootstrap peer's: a node that
        # already heard a term is past the bootstrap, and counting its query let a wiped
        # member, which answered it, take itself for a slow bootstrap member and vote.
        if not self._so.voting and self._probing and term == 0:
            self._answered_probe = True

    def _on_rejoined(self, node: Any, index: Any) -> None:
        if not self._so.voting and isinstance(index, int) and self._rejoin:
            self._rejoin_index = index

    def tick(self, now: float) -> None:
        so = self._so
        if self._jobs or self._node.rejoin_intents is not None:
            self._run_jobs(now)
        if so.voting or self._dir is None:
            return
        peers = list(so._SyncObj__otherNodes)
        if self._rejoin_index is not None and so.raftLastApplied >= self._rejoin_index:
            self._store(identity.VOTER)
            so.voting = True
            _log.warning(
                "amnesia: re-added and caught up to index %d; voting again", self._rejoin_index
            )
            self._node._emit("CacheNodeReplaceComplete", node=self._self, rejoined=True)
            return
        if not self._rejoin:
            if so.raftCurrentTerm > 0:
                # It heard a term: some node campaigned or leads, so a cluster with state
                # exists (it may be cut off from it now): never "no peer has state" then.
                # A stale "empty" reply (a peer's, from before that peer was wiped) had a
                # slow bootstrap member and a wiped one elect each other without the write.
                if self._probing and self._answered_probe:
                    self._store(identity.VOTER)
                    so.voting = True
                    _log.info("a new cluster formed while this node was starting; voting")
                else:
                    self._start_rejoin(f"it heard term {so.raftCurrentTerm}: a cluster exists")
                return
            if now >= self._next_query:
                self._next_query = now + _QUERY_EVERY_S
                for peer in peers:
                    so._SyncObj__transport.send(
                        peer, {"type": "state_query", "term": so.raftCurrentTerm}
                    )
            empty = sum(1 for v in self._replies.values() if not v)
            if (empty + 1) * 2 > len(peers) + 1:
                if self._majority_empty_at is None:
                    self._majority_empty_at = now
                if len(self._replies) == len(peers) or now - self._majority_empty_at > (
                    _BOOTSTRAP_GRACE_S
                ):
                    self._store(identity.VOTER)
                    so.voting = True
                    _log.info(
                        "no peer has Raft state (%d of %d answered): a new cluster; voting",
                        len(self._replies),
                        len(peers),
                    )
            return
        leader = so._getLeader()
        if leader is not None and now >= self._next_request:
            self._next_request = now + _REJOIN_EVERY_S
            so._SyncObj__transport.send(leader, {"type": "rejoin_request", "token": self._token})
        # A node that had state once asks too: if the whole cluster lost its state, a
        # majority answers empty and nothing is left to protect.
        if leader is None and now >= self._next_query:
            self._next_query = now + _QUERY_EVERY_S
            for peer in peers:
                so._SyncObj__transport.send(
                    peer, {"type": "state_query", "term": so.raftCurrentTerm}
                )

    # ------------------------------------------------------------ the leader's side

    def _on_rejoin_request(self, node: Any, token: Any) -> None:
        """On the leader: `node` came back without its state; record the intent, remove it,
        then add it."""
        if self._node.status().role is not Role.LEADER or not isinstance(token, str):
            return
        address = _from_pysyncobj(node.address)
        job = self._jobs.get(token)
        if job is not None:
            if job.phase == "done":
                self._notify(job)  # it did not get the news (it was disconnected)
            return
        if address not in self._node.status().members:
            return
        _log.warning(
            "amnesia: %s came back without its Raft state; removing and re-adding it", address
        )
        now = time.monotonic()
        # The intent first, so that a later leader re-adds it if this one fails in between.
        first = "remove" if self._node.rejoin_intents is None else "intent"
        self._jobs[token] = _RejoinJob(address, first, give_up=now + _GIVE_UP_S)

    def forget(self, address: str) -> bool:
        """An operator removes `address`: drop this leader's rejoin jobs for it (True if it
        had one) and keep the sweep off it while the clear is on its way."""
        had = False
        for token, job in list(self._jobs.items()):
            if job.address == address:
                del self._jobs[token]
                had = True
        self._cooldown[address] = time.monotonic() + _SWEEP_COOLDOWN_S
        return had

    def _sweep(self, intents: RejoinIntents, now: float) -> None:
        """Re-add a pending address that is no voter: the leader that removed it to rejoin
        failed before it re-added it. That node then asks again (a new token) and is
        removed and re-added once more by this leader: it may have been restarted since,
        and only a re-add after its request proves it caught up from its own restart."""
        members = self._node.status().members
        busy = {job.address for job in self._jobs.values() if job.phase != "done"}
        for address in sorted(intents.pending() - set(members) - busy - {self._self}):
            if self._cooldown.get(address, 0.0) > now:
                continue
            # Only a node that is up (its Raft port answers, as AddMember asks): adding a
            # dead one would cost the cluster a voter's worth of fault tolerance.
            if self._answered_at.get(address, -1e9) < now - _PROBE_FRESH_S:
                self._probe(address)
                continue
            _log.warning(
                "amnesia: re-adding %s: a leader removed it to rejoin and did not re-add it",
                address,
            )
            self._jobs[f"pending:{address}"] = _RejoinJob(
                address, "add", next_try=now, give_up=now + _GIVE_UP_S, notify=False
            )

    def _probe(self, address: str) -> None:
        """Try a TCP connect to `address` off the tick thread; `_answered_at` records when
        it answered."""
        if address in self._probing_now:
            return
        self._probing_now.add(address)

        def probe() -> None:
            try:
                host, _, port = address.rpartition(":")
                with socket.create_connection((host.strip("[]"), int(port)), timeout=1.0):
                    self._answered_at[address] = time.monotonic()
            except (OSError, ValueError):
                pass
            finally:
                self._probing_now.discard(address)

        threading.Thread(target=probe, name="rejoin-probe", daemon=True).start()

    def _run_jobs(self, now: float) -> None:
        node = self._node
        if node.status().role is not Role.LEADER:
            self._jobs.clear()  # the node asks the next leader; the sweep finds the rest
            self._next_sweep = 0.0
            return
        intents = node.rejoin_intents
        if intents is not None and now >= self._next_sweep:
            self._next_sweep = now + _LEADER_REJOIN_RETRY_S
            self._sweep(intents, now)
        if not self._jobs:
            return
        pending = intents.pending() if intents is not None else frozenset()
        for token, job in list(self._jobs.items()):
            if job.busy or now < job.next_try or (job.phase == "done" and job.cleared):
                continue
            if now > job.give_up and job.phase != "done":
                _log.error("amnesia: gave up re-adding %s (%s step)", job.address, job.phase)
                self._cooldown[job.address] = now + _SWEEP_COOLDOWN_S
                del self._jobs[token]
                continue
            job.next_try = now + _LEADER_REJOIN_RETRY_S
            if job.phase == "remove" and intents is not None and job.address not in pending:
                job.phase = "intent"  # another job's clear took it: record it again first
            if job.phase == "done":  # re-added: clear the intent (a leader's sweep ignores it)
                if intents is None or job.address not in pending:
                    job.cleared = True
                elif any(
                    other.address == job.address and other.phase != "done"
                    for other in self._jobs.values()
                ):
                    pass  # the node asked again meanwhile: that job's intent stays
                else:
                    job.busy = True
                    node.propose(intents.command(job.address, False), job.cleared_step)
            elif job.phase == "intent":
                assert intents is not None
                job.busy = True
                node.propose(intents.command(job.address, True), job.intent_step)
            else:
                job.busy = True
                step = functools.partial(self._step_done, job, job.phase)
                node.change_membership(job.phase, job.address, step, operator=False)

    def _step_done(self, job: _RejoinJob, step: str, outcome: Outcome, detail: str) -> None:
        """A remove or add of a rejoin finished (tick thread)."""
        job.busy = False
        members = self._node.status().members
        if (
            outcome is Outcome.APPLIED
            or (step == "add" and job.address in members)
            or (step == "remove" and job.address not in members)  # out already
        ):
            _log.info("amnesia: %s %s committed", step, job.address)
            if step == "remove":
                job.phase, job.next_try = "add", 0.0
            else:
                job.phase, job.next_try = "done", 0.0
                job.index = self._so.raftCommitIndex
                self._notify(job)
        else:
            _log.info("amnesia: %s %s not done yet (%s); retrying", step, job.address, detail)

    def _notify(self, job: _RejoinJob) -> None:
        if not job.notify:
            return
        for peer in list(self._so._SyncObj__otherNodes):
            if _from_pysyncobj(peer.address) == job.address:
                self._so._SyncObj__transport.send(peer, {"type": "rejoined", "index": job.index})


@dataclass
class _RejoinJob:
    """The leader's work for one rejoining node: `phase` "intent" (recorded in the
    replicated state), "remove", "add", then "done" (and its intent cleared)."""

    address: str
    phase: str
    next_try: float = 0.0
    give_up: float = 0.0
    notify: bool = True  # tell the node (False: a sweep's re-add; the node asks again)
    busy: bool = False  # a step is in flight
    index: int = 0  # done: the commit index the node must apply before it votes
    cleared: bool = False

    def intent_step(self, outcome: Outcome, _result: Any) -> None:
        self.busy = False
        if outcome is Outcome.APPLIED:
            self.phase, self.next_try = "remove", 0.0

    def cleared_step(self, outcome: Outcome, _result: Any) -> None:
        self.busy = False
        self.cleared = outcome is Outcome.APPLIED
