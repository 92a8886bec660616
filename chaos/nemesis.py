"""Process and network faults on a LocalCluster, injected on a schedule from a background thread.

Process kinds: kill-leader (SIGKILL the leader, restart it after a hold), kill-random,
kill-majority (SIGKILL 2 of 3, bring both back), pause (SIGSTOP / SIGCONT a node, the
leader half of the time) and restart-all (SIGKILL every node, restart them all).
Network kinds (need a cluster started with proxy=True, see netproxy.py):
partition-leader (cut the leader off from every peer), partition-halves (a random
minority is cut off from the majority) and latency (50-200 ms one-way delay, plus up
to half that again as jitter, on every Raft link). Every fault is recorded as
{"kind", "start", "end", "target"} on time.monotonic(), the clock the history uses;
"end" is when the heal was issued, not when service came back. The target of a
partition is the cut-off side; of latency, every node.

Namespace kinds (need a cluster started with netns=True, see netns.py; they cut every
port, client and forwarding traffic included): partition-one-way (packets from the
leader to the followers, or from the followers to the leader, dropped; the target is
the leader, the note says which way), bridge-flap (every node's bridge port down and up
every 0.5 s: every node loses everyone, clients included) and loss (20% of the packets
every node receives dropped). In netns mode partition-leader and partition-halves cut
every port too, and latency needs the kernel's netem (netns.netem_unavailable()).
clock-skew (needs clock_skew=True): the leader's wall clock jumps ahead by 1-2 s, the
others' behind by 1-2 s; after half the hold the leader is stopped (SIGTERM: it hands
leadership over) and restarted, so a new leader 2-4 s BEHIND the old one stamps the
entries; the heal sets every offset back to 0. The fault records its offsets
({"offsets_ms": {node: ms}}) for the TTL checker (chaos/DESIGN.md "Clock skew").

Membership kinds (chaos/DESIGN.md "Membership faults"): member-cycle removes a follower
(Cluster.RemoveMember), stops it, wipes its data dir and restarts it with --join, then adds
it back (AddMember) and waits until it caught up: the amnesia-safe way back for a node
that lost its disk. member-grow starts a spare (or a member removed earlier) wiped with
--join, adds it as a 4th voter, waits until it caught up, holds, then removes a random
non-leader member (which then stays down, wiped at its next add). leader-transfer hands
leadership to a random follower (Cluster.TransferLeadership). Changes go one at a time; a
refusal (ConditionFailedError: not healthy, a change in progress, the leader moved) is a
recorded no-op ("changes": [{"op", "member", "outcome": "refused", "reason"}]), never a
failure; an unknown outcome is settled by re-reading the membership.

A node that exits without the nemesis having killed it is recorded in `crashes`
(that is a bug in the node) and restarted at the next heal.
"""

from __future__ import annotations

import random
import shutil
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from raftcache.chaos.local_cluster import LocalCluster
from raftcache.chaos.netns import NetnsNetwork, Network
from raftcache.chaos.netproxy import Delay
from raftcache.client import (
    Client,
    ConditionFailedError,
    Membership,
    OutcomeUnknownError,
    RaftcacheError,
)

PROCESS_KINDS = ("kill-leader", "kill-random", "kill-majority", "pause", "restart-all")
NETWORK_KINDS = ("partition-leader", "partition-halves", "latency")
NETNS_KINDS = ("partition-one-way", "bridge-flap", "loss")  # need --net netns
CLOCK_KINDS = ("clock-skew",)
MEMBERSHIP_KINDS = ("member-cycle", "member-grow", "leader-transfer")
SPARE_KINDS = ("member-grow",)  # the cluster needs a spare node (LocalCluster(spares=1))
KINDS = PROCESS_KINDS + NETWORK_KINDS + NETNS_KINDS + CLOCK_KINDS + MEMBERSHIP_KINDS
LATENCY_RANGE_S = (0.05, 0.2)
LOSS_PCT = 20.0
FLAP_PERIOD_S = 0.5  # bridge-flap: ports down this long, then up this long, over and over
CLOCK_AHEAD_MS = (1000, 2000)  # clock-skew: the old leader's offset
CLOCK_BEHIND_MS = (1000, 2000)  # clock-skew: every other node's offset (negative)
MEMBER_CHANGE_TIMEOUT_S = 60.0  # retrying one change (refusals while the cluster settles)
CATCH_UP_TIMEOUT_S = 60.0  # a newcomer must have caught up by then


@dataclass
class Fault:
    """One injected fault; end is None while it is in force."""

    kind: str
    start: float
    target: list[str]
    end: float | None = None
    details: dict[str, Any] = field(default_factory=dict)  # e.g. clock-skew's offsets_ms

    def to_dict(self) -> dict[str, Any]:
        out = {"kind": self.kind, "start": self.start, "end": self.end, "target": self.target}
        return {**out, **self.details}


@dataclass(frozen=True)
class NemesisConfig:
    """Which faults, how often and for how long; validated once."""

    kinds: tuple[str, ...] = KINDS
    interval_s: float = 10.0  # calm time between a heal (and recovery) and the next fault
    hold_s: float = 3.0  # how long a fault stays in force
    seed: int = 0
    recovery_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        unknown = [k for k in self.kinds if k not in KINDS]
        if unknown or not self.kinds:
            raise ValueError(f"nemesis kinds must be among {', '.join(KINDS)}; got {unknown}")
        if self.interval_s <= 0 or self.hold_s <= 0:
            raise ValueError("nemesis interval and hold must be > 0 s")

    @property
    def needs_proxy(self) -> bool:
        """True if some kind acts on Raft links (the cluster must run with proxy=True)."""
        return any(k in NETWORK_KINDS for k in self.kinds)

    @property
    def needs_network(self) -> bool:
        """True if some kind cuts or slows links (proxy or netns)."""
        return any(k in NETWORK_KINDS + NETNS_KINDS for k in self.kinds)

    @property
    def needs_spare(self) -> bool:
        """True if some kind adds a member beyond the initial ones (LocalCluster(spares=1))."""
        return any(k in SPARE_KINDS for k in self.kinds)

    @property
    def needs_clock(self) -> bool:
        """True if some kind moves clocks (the cluster must run with clock_skew=True)."""
        return any(k in CLOCK_KINDS for k in self.kinds)


@dataclass
class _Crash:
    node_id: str
    exit_code: int | None
    at: float

    def to_dict(self) -> dict[str, Any]:
        return {"node_id": self.node_id, "exit_code": self.exit_code, "at": self.at}


class FaultSchedule:
    """A daemon thread injecting one fault per interval, its kind drawn in shuffled rounds
    (random order, yet every kind comes up); `faults` records what it did.

    Subclasses call `_schedule()` once and implement `_run`, the thread's loop."""

    faults: list[Fault]

    def _schedule(self, kinds: Sequence[str], seed: int, name: str) -> None:
        self._kinds = tuple(kinds)
        self._rng = random.Random(seed)
        self._queue: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._thread.start()

    def _halt(self) -> None:
        """Stop injecting and wait for the current fault to end (idempotent)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def fault_dicts(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.to_dict() for f in self.faults]

    def _next_kind(self) -> str:
        if not self._queue:
            self._queue = list(self._kinds)
            self._rng.shuffle(self._queue)
        return self._queue.pop()

    def _record(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault


@dataclass
class Nemesis(FaultSchedule):
    """Runs faults from `config` against `cluster` until stop(), then heals everything."""

    cluster: LocalCluster
    config: NemesisConfig
    log: Callable[[str], None] = print
    faults: list[Fault] = field(default_factory=list)
    crashes: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._schedule(self.config.kinds, self.config.seed, "nemesis")
        self._killed: set[int] = set()  # nodes we SIGKILLed and have not restarted
        self._paused: set[int] = set()
        self._skewed = False
        self._admin: Client | None = None
        self._nominal = len(self.members())  # membership faults end with this many members
        # every membership change tried: {"op", "member", "outcome", "reason"?, "at"}
        self.changes: list[dict[str, Any]] = []

    def stop(self) -> None:
        """Stop injecting, wait for the thread, and heal the cluster (idempotent)."""
        self._halt()
        self.heal()
        if self._admin is not None:
            self._admin.close()
            self._admin = None

    def members(self) -> list[int]:
        """Indices of the nodes that are members (spares and removed nodes left out)."""
        return [i for i, n in enumerate(self.cluster.nodes) if n.member]

    # -- schedule ---------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.wait(self.config.interval_s):
            kind = self._next_kind()
            try:
                _ACTIONS[kind](self)
            except Exception as exc:  # keep the schedule going; the heal still runs
                self.log(f"nemesis: {kind} failed: {exc!r}")
            self.heal()
            with self._lock:
                for fault in self.faults:
                    if fault.end is None:
                        fault.end = time.monotonic()
            self._wait_recovered()

    def _wait_recovered(self) -> None:
        deadline = time.monotonic() + self.config.recovery_timeout_s
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                self.cluster.wait_until_ready(timeout=1.0)
                return
            except TimeoutError:
                continue
        if not self._stop.is_set():
            self.log(f"nemesis: cluster not ready {self.config.recovery_timeout_s} s after heal")

    # -- primitives ---------------------------------------------------------------

    def _begin(self, kind: str, targets: Sequence[int], note: str = "") -> Fault:
        fault = self._record(
            Fault(kind, time.monotonic(), [self.cluster.nodes[i].node_id for i in targets])
        )
        self.log(f"nemesis: {kind} {', '.join(fault.target)}{note}")
        return fault

    def _end(self, fault: Fault) -> None:
        fault.end = time.monotonic()

    def _kill(self, targets: Sequence[int]) -> None:
        self._killed.update(targets)
        for i in targets:
            self.cluster.kill(i)

    def _hold(self) -> None:
        self._stop.wait(self.config.hold_s)

    def heal(self) -> None:
        """Reconnect and undelay every link, resume paused nodes, start every node that is down,
        set every clock offset back to 0."""
        network = self.cluster.network
        if network is not None:
            network.heal()
            network.set_delay(None)
        if self._skewed:
            for i in range(len(self.cluster.nodes)):
                self.cluster.set_clock_offset(i, 0)
            self._skewed = False
        for i in sorted(self._paused):
            self.cluster.resume(i)
        self._paused.clear()
        for i, node in enumerate(self.cluster.nodes):
            if node.running or not node.member:
                continue
            if i not in self._killed:
                code = node.process.poll() if node.process is not None else None
                crash = _Crash(node.node_id, code, time.monotonic())
                self.crashes.append(crash.to_dict())
                self.log(f"nemesis: {node.node_id} exited by itself (code {code}); restarting")
            self.cluster.start_node(i)
        self._killed.clear()

    # -- faults -------------------------------------------------------------------

    def _random_member(self) -> int:
        return self._rng.choice(self.members())

    def kill_leader(self) -> None:
        leader = self.cluster.leader()
        if leader is None:
            leader = self._random_member()
            self.log("nemesis: no leader found; killing a random node instead")
        self._kill_hold("kill-leader", [leader])

    def kill_random(self) -> None:
        self._kill_hold("kill-random", [self._random_member()])

    def kill_majority(self) -> None:
        members = self.members()
        self._kill_hold("kill-majority", self._rng.sample(members, len(members) // 2 + 1))

    def restart_all(self) -> None:
        self._kill_hold("restart-all", self.members())

    def pause(self) -> None:
        leader = self.cluster.leader()
        if leader is not None and self._rng.random() < 0.5:
            target = leader
        else:
            target = self._random_member()
        fault = self._begin("pause", [target], " (the leader)" if target == leader else "")
        self._paused.add(target)
        self.cluster.pause(target)
        self._hold()
        self.cluster.resume(target)
        self._paused.discard(target)
        self._end(fault)

    def partition_leader(self) -> None:
        net = self._net("partition-leader")
        leader = self.cluster.leader()
        if leader is None:
            leader = self._random_member()
            self.log("nemesis: no leader found; isolating a random node instead")
        fault = self._begin("partition-leader", [leader])
        net.isolate(self.cluster.nodes[leader].node_id)
        self._hold()
        net.heal()
        self._end(fault)

    def partition_halves(self) -> None:
        net = self._net("partition-halves")
        names = [self.cluster.nodes[i].node_id for i in self.members()]
        self._rng.shuffle(names)
        minority, majority = names[: len(names) // 2], names[len(names) // 2 :]
        targets = [i for i, n in enumerate(self.cluster.nodes) if n.node_id in minority]
        fault = self._begin("partition-halves", targets, f" | {', '.join(sorted(majority))}")
        net.partition(minority, majority)
        self._hold()
        net.heal()
        self._end(fault)

    def latency(self) -> None:
        net = self._net("latency")
        latency = self._rng.uniform(*LATENCY_RANGE_S)
        delay = Delay(latency, jitter_s=latency / 2)
        fault = self._begin("latency", self.members(), f" ({latency * 1000:.0f} ms + jitter)")
        net.set_delay(delay)
        self._hold()
        net.set_delay(None)
        self._end(fault)

    def _net(self, kind: str) -> Network:
        network = self.cluster.network
        if network is None:
            raise ValueError(
                f"nemesis {kind} needs the Raft links proxied: "
                "start the LocalCluster with proxy=True (or netns=True)"
            )
        return network

    def _netns(self, kind: str) -> NetnsNetwork:
        if self.cluster.netns is None:
            raise ValueError(
                f"nemesis {kind} needs every node in a network namespace: "
                "start the LocalCluster with netns=True (raftcache-chaos --net netns)"
            )
        return self.cluster.netns

    def _leader_or_random(self, kind: str) -> int:
        leader = self.cluster.leader()
        if leader is None:
            leader = self._random_member()
            self.log(f"nemesis: {kind}: no leader found; picking a random node instead")
        return leader

    def partition_one_way(self) -> None:
        net = self._netns("partition-one-way")
        leader = self._leader_or_random("partition-one-way")
        name = self.cluster.nodes[leader].node_id
        others = [self.cluster.nodes[i].node_id for i in self.members() if i != leader]
        outbound = self._rng.random() < 0.5
        note = f" ({name} -> others dropped)" if outbound else f" (others -> {name} dropped)"
        fault = self._begin("partition-one-way", [leader], note)
        fault.details["direction"] = "from-leader" if outbound else "to-leader"
        if outbound:
            net.cut_one_way([name], others)
        else:
            net.cut_one_way(others, [name])
        self._hold()
        net.heal()
        self._end(fault)

    def bridge_flap(self) -> None:
        net = self._netns("bridge-flap")
        fault = self._begin("bridge-flap", self.members(), " (every port)")
        deadline = time.monotonic() + self.config.hold_s
        while time.monotonic() < deadline and not self._stop.is_set():
            net.set_bridge(False)
            self._stop.wait(FLAP_PERIOD_S)
            net.set_bridge(True)
            self._stop.wait(FLAP_PERIOD_S)
        net.set_bridge(True)
        self._end(fault)

    def loss(self) -> None:
        net = self._netns("loss")
        fault = self._begin("loss", self.members(), f" ({LOSS_PCT:g}%)")
        net.set_loss(LOSS_PCT)
        self._hold()
        net.set_loss(0.0)
        self._end(fault)

    def clock_skew(self) -> None:
        if not any("RAFTCACHE_TEST_CLOCK_OFFSET_FILE" in n.env for n in self.cluster.nodes):
            raise ValueError(
                "nemesis clock-skew needs the nodes' clocks movable: "
                "start the LocalCluster with clock_skew=True"
            )
        leader = self._leader_or_random("clock-skew")
        ahead = self._rng.randint(*CLOCK_AHEAD_MS)
        offsets = {
            i: ahead if i == leader else -self._rng.randint(*CLOCK_BEHIND_MS)
            for i in self.members()
        }
        named = {self.cluster.nodes[i].node_id: ms for i, ms in offsets.items()}
        note = " (" + ", ".join(f"{n} {ms:+d} ms" for n, ms in named.items()) + ")"
        fault = self._begin("clock-skew", list(offsets), note)
        fault.details["offsets_ms"] = named
        self._skewed = True
        for i, ms in offsets.items():
            self.cluster.set_clock_offset(i, ms)
        self._stop.wait(self.config.hold_s / 2)
        # The leader, ahead, hands over to a node behind it, then comes back as a follower.
        self.cluster.stop(leader)
        self.cluster.start_node(leader)
        self._stop.wait(self.config.hold_s / 2)
        for i in offsets:
            self.cluster.set_clock_offset(i, 0)
        self._skewed = False
        self._end(fault)

    # -- membership and leadership --------------------------------------------------

    def _client(self) -> Client:
        if self._admin is None:
            self._admin = Client([n.client_addr for n in self.cluster.nodes], timeout=10.0)
        return self._admin

    def _membership(self, timeout_s: float = 20.0) -> Membership | None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return self._client().membership(timeout=5.0)
            except RaftcacheError as exc:
                if time.monotonic() > deadline:
                    self.log(f"nemesis: cannot read the membership: {exc!r}")
                    return None
                time.sleep(0.5)

    def _is_member(self, raft_addr: str) -> bool | None:
        m = self._membership()
        return None if m is None else any(x.raft_addr == raft_addr for x in m.members)

    def _change(self, fault: Fault, op: str, i: int) -> bool:
        """Add or remove node i, retrying refusals for up to MEMBER_CHANGE_TIMEOUT_S (the
        cluster may still be settling after the previous step); every try is recorded. A
        refusal or an unknown outcome is checked against the membership re-read: if it is
        already what we wanted, the change counts as done. True when it took effect. Runs
        to the end even while the nemesis stops, so a run never ends half-changed."""
        node = self.cluster.nodes[i]
        want = op == "add"
        deadline = time.monotonic() + MEMBER_CHANGE_TIMEOUT_S
        while True:
            entry: dict[str, Any] = {"op": op, "member": node.node_id, "at": time.monotonic()}
            try:
                if want:
                    self._client().add_member(node.raft_addr, timeout=30.0)
                else:
                    self._client().remove_member(node.raft_addr, timeout=30.0)
                entry["outcome"] = "ok"
            except ConditionFailedError as exc:
                entry.update(outcome="refused", reason=str(exc)[:300])
            except RaftcacheError as exc:  # OutcomeUnknownError, no leader, a timeout
                kind = "unknown" if isinstance(exc, OutcomeUnknownError) else "failed"
                entry.update(outcome=kind, reason=f"{exc!r}"[:300])
            if entry["outcome"] != "ok" and self._is_member(node.raft_addr) is want:
                entry["settled"] = "found applied"
                entry["outcome"] = "ok" if entry["outcome"] != "refused" else "refused"
                self._record_change(fault, entry)
                return True
            self._record_change(fault, entry)
            if entry["outcome"] == "ok":
                return True
            if time.monotonic() > deadline:
                return False
            if not want and self.cluster.leader() == i:
                return False  # the node we meant to remove leads now: leave it
            time.sleep(1.0)

    def _record_change(self, fault: Fault, entry: dict[str, Any]) -> None:
        with self._lock:
            self.changes.append(entry)
            fault.details.setdefault("changes", []).append(entry)
        reason = f" ({entry['reason'][:160]})" if "reason" in entry else ""
        settled = f" [{entry['settled']}]" if "settled" in entry else ""
        who = f"{entry['op']} {entry.get('member', '')}"
        self.log(f"nemesis: {who}: {entry['outcome']}{reason}{settled}")

    def _wait_listening(self, i: int, timeout_s: float = 30.0) -> bool:
        node = self.cluster.nodes[i]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and node.running:
            try:
                socket.create_connection((node.host, node.raft_port), timeout=1.0).close()
                return True
            except OSError:
                time.sleep(0.1)
        return False

    def _start_wiped(self, i: int) -> None:
        """Start node i with an empty data dir and --join (the other members' Raft addresses):
        it does nothing until a member add names it."""
        node = self.cluster.nodes[i]
        if node.running:
            self.cluster.stop(i)
        shutil.rmtree(node.data_dir, ignore_errors=True)
        node.join = [self.cluster.nodes[j].raft_addr for j in self.members() if j != i]
        self.cluster.start_node(i)

    def _add(self, fault: Fault, i: int) -> bool:
        """Start node i wiped with --join, add it, wait until it caught up. False (and node i
        stopped, not a member) if the add did not take; True once it is a member, caught up
        or not (the caller's recovery wait covers the rest)."""
        node = self.cluster.nodes[i]
        self._start_wiped(i)
        if not self._wait_listening(i):
            self.log(f"nemesis: {node.node_id} did not open its Raft port; leaving it out")
            self.cluster.stop(i)
            return False
        if not self._change(fault, "add", i):
            self.cluster.stop(i)
            return False
        node.member = True
        try:
            self._client().wait_caught_up(node.raft_addr, timeout=CATCH_UP_TIMEOUT_S)
        except RaftcacheError as exc:
            self.log(f"nemesis: {node.node_id} has not caught up: {exc!r}")
            fault.details["not_caught_up"] = node.node_id
        return True

    def _remove(self, fault: Fault, i: int) -> bool:
        """Remove node i (never the leader), then stop it: it stays out until an add."""
        if not self._change(fault, "remove", i):
            return False
        self.cluster.nodes[i].member = False
        self.cluster.stop(i)
        return True

    def _followers(self) -> tuple[int | None, list[int]]:
        leader = self.cluster.leader()
        return leader, [i for i in self.members() if i != leader]

    def _settle_membership(self, fault: Fault) -> None:
        """Back to the initial number of members: re-add a node left out by an add that did
        not take, or remove the extra one a removal that did not take left behind."""
        nominal = self._nominal
        while len(self.members()) < nominal and not self._stop.is_set():
            out = [i for i, n in enumerate(self.cluster.nodes) if not n.member]
            if not self._add(fault, self._rng.choice(out)):
                return
        while len(self.members()) > nominal and not self._stop.is_set():
            _, followers = self._followers()
            if not followers or not self._remove(fault, self._rng.choice(followers)):
                return

    def member_cycle(self) -> None:
        """Remove a follower, wipe it, start it with --join and add it back."""
        leader, followers = self._followers()
        if leader is None or not followers:
            fault = self._begin("member-cycle", [])
            entry = {"op": "remove", "outcome": "refused", "reason": "no leader or no follower"}
            self._record_change(fault, {**entry, "at": time.monotonic()})
            self._end(fault)
            return
        target = self._rng.choice(followers)
        fault = self._begin("member-cycle", [target], " (remove, wipe, --join, add back)")
        if self._remove(fault, target):
            self._hold()
            self._add(fault, target)
        self._settle_membership(fault)
        fault.details["members_after"] = [self.cluster.nodes[i].node_id for i in self.members()]
        self._end(fault)

    def member_grow(self) -> None:
        """Add a node that is not a member as one more voter, then remove a random follower."""
        out = [i for i, n in enumerate(self.cluster.nodes) if not n.member]
        if not out:
            raise ValueError(
                "nemesis member-grow needs a node that is not a member: "
                "start the LocalCluster with spares=1"
            )
        newcomer = self._rng.choice(out)
        fault = self._begin("member-grow", [newcomer], " (add as a voter, then remove one)")
        if self._add(fault, newcomer):
            self._hold()
            _, followers = self._followers()
            if followers:
                self._remove(fault, self._rng.choice(followers))
        self._settle_membership(fault)
        fault.details["members_after"] = [self.cluster.nodes[i].node_id for i in self.members()]
        self._end(fault)

    def leader_transfer(self) -> None:
        """Hand leadership to a random follower (TransferLeadership)."""
        leader, followers = self._followers()
        target = self._rng.choice(followers) if followers else None
        fault = self._begin("leader-transfer", [] if target is None else [target])
        entry: dict[str, Any] = {"op": "transfer", "at": time.monotonic()}
        if leader is not None:
            entry["from"] = self.cluster.nodes[leader].node_id
        if target is None:
            entry.update(outcome="refused", reason="no leader or no follower")
        else:
            entry["member"] = self.cluster.nodes[target].node_id
            try:
                entry["leader"] = self._client().transfer_leadership(
                    self.cluster.nodes[target].node_id, timeout=10.0
                )
                entry["outcome"] = "ok"
            except ConditionFailedError as exc:
                entry.update(outcome="refused", reason=str(exc)[:300])
            except RaftcacheError as exc:
                entry.update(outcome="unknown", reason=f"{exc!r}"[:300])
        self._record_change(fault, entry)
        self._end(fault)

    def _kill_hold(self, kind: str, targets: Sequence[int]) -> None:
        fault = self._begin(kind, targets)
        self._kill(targets)
        self._hold()
        for i in targets:
            self.cluster.start_node(i)
            self._killed.discard(i)
        self._end(fault)


_ACTIONS: dict[str, Callable[[Nemesis], None]] = {
    "kill-leader": Nemesis.kill_leader,
    "kill-random": Nemesis.kill_random,
    "kill-majority": Nemesis.kill_majority,
    "pause": Nemesis.pause,
    "restart-all": Nemesis.restart_all,
    "partition-leader": Nemesis.partition_leader,
    "partition-halves": Nemesis.partition_halves,
    "latency": Nemesis.latency,
    "partition-one-way": Nemesis.partition_one_way,
    "bridge-flap": Nemesis.bridge_flap,
    "loss": Nemesis.loss,
    "clock-skew": Nemesis.clock_skew,
    "member-cycle": Nemesis.member_cycle,
    "member-grow": Nemesis.member_grow,
    "leader-transfer": Nemesis.leader_transfer,
}
