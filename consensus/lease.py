"""Leader leases: linearizable reads on the leader without a log entry.

A linearizable read must not miss a write some other leader committed. Until now the
leader proved it still led by appending an empty entry and waiting for it to commit (a
"barrier"): a Raft round, a journal write and an apply per batch of reads. Leader
stickiness (prevote.py) already gives a cheaper proof, the one etcd's
``ReadOnlyLeaseBased``, TiKV and CockroachDB use: a member that accepted an append from
this leader refuses every pre-vote and every vote for a higher term for the minimum
election timeout after it received it (transfers excepted, see below). So once a
majority accepted appends this leader sent at time S, no other leader can be elected
before S + the minimum election timeout, as long as clocks run at about the same rate.
Until then the leader's applied state, once it holds everything committed, is the
latest committed state, and a read may be answered from it at once.

How:
- The leader stamps every ``append_entries`` it sends with its term and send time
  (``raftcache_lease``). A member answering it (pysyncobj's ``next_node_idx``, from its
  own handler or LogMatchingSyncObj's) echoes the stamp with its own minimum election
  timeout (``raftcache_lease_ack``). A member of an older build echoes nothing and gives
  the leader no lease: reads then take the barrier as before.
- On the tick thread the leader keeps, per voting member, the latest echoed send time of
  its current term, and publishes ``(term, until)``: the send time a majority (itself
  included) has reached, plus ``LEASE_FRACTION`` of the smallest minimum election timeout
  any of them reported. Read replicas never vote and do not count.
- ``lease_read_ok`` (any thread) holds when: this node leads, in the term of the
  published lease; the lease has not run out on this node's monotonic clock; the no-op
  pysyncobj appends when a leader takes over has been applied (so every entry of earlier
  terms is applied here); and everything this leader knows committed is applied (so the
  read misses nothing another member may already have shown). Otherwise the caller takes
  the barrier.
- A leadership transfer skips stickiness: the target's election is tagged and members
  vote for it at once. So a leader that sends ``timeout_now`` gives up its lease for the
  rest of its term.
- A member that starts (or restarts) may have accepted an append just before it went
  down and lost that memory with the process: PreVoteSyncObj counts its start as leader
  contact, so it grants no vote or pre-vote for the minimum election timeout.

What it assumes (consensus/DESIGN.md, "Leader leases"): monotonic clocks whose rates
differ by less than ``1 - LEASE_FRACTION`` (20%; NTP keeps real clocks within 0.05%),
and members running this build's stickiness. A node started with ``lease_reads=False``
never answers from a lease (every linearizable read takes the barrier).
"""

from __future__ import annotations

import time
from typing import Any

from raftcache.consensus.prevote import PreVoteSyncObj, _TransferTaggingTransport

LEASE_STAMP = "raftcache_lease"  # on append_entries: (term, monotonic send time)
LEASE_ACK = "raftcache_lease_ack"  # on next_node_idx: (term, send time, min election timeout)
LEASE_FRACTION = 0.8
"""The part of the minimum election timeout a lease lasts after the majority's send time:
the rest absorbs clock-rate differences between members."""

_LEADER = 2  # pysyncobj's _RAFT_STATE.LEADER
_NO_LEASE = (-1, 0.0)


class LeaseTransport(_TransferTaggingTransport):
    """Stamps the leader's appends and echoes the stamp in a member's answer to them."""

    def send(self, node: Any, message: Any) -> bool:
        if isinstance(message, dict):
            owner = self._syncObj
            kind = message.get("type")
            if kind == "append_entries":
                if owner._SyncObj__raftState == _LEADER:
                    # pysyncobj builds a fresh dict for every send
                    message[LEASE_STAMP] = (message.get("term"), time.monotonic())
            elif kind == "next_node_idx":
                echo = owner._lease_echo
                if echo is not None and echo[0] is node:
                    message[LEASE_ACK] = (*echo[1], owner._SyncObj__conf.raftMinTimeout)
            elif kind == "timeout_now":
                owner.void_lease()  # a transfer's election skips stickiness
        return bool(super().send(node, message))


class LeaseSyncObj(PreVoteSyncObj):
    """PreVoteSyncObj whose leader holds a read lease while a majority follows it."""

    def __init__(self, *args: Any, lease_reads: bool = True, **kwargs: Any) -> None:
        # Set before SyncObj.__init__, which starts the tick thread.
        self.lease_reads = lease_reads
        self._lease: tuple[int, float] = _NO_LEASE  # (term, until): replaced, never mutated
        self._lease_acks: dict[Any, tuple[float, float]] = {}  # member -> (sent, min timeout)
        self._lease_term = -1  # the term _lease_acks belong to
        self._lease_void_term = -1  # a transfer in this term: no lease until the term ends
        self._lease_echo: tuple[Any, tuple[Any, Any]] | None = None  # (leader, its stamp)
        self.lease_voided = 0
        self.stale_answers_dropped = 0  # next_node_idx answering an append of an older term
        if "transport" not in kwargs:
            kwargs.setdefault("transportClass", LeaseTransport)
        super().__init__(*args, **kwargs)

    # ------------------------------------------------------------ any thread

    def lease_read_ok(self) -> bool:
        """A linearizable read may be answered from this node's applied state now."""
        term, until = self._lease
        if until <= time.monotonic():
            return False
        applied = self._SyncObj__raftLastApplied
        noop = self._SyncObj__noopIDx
        return bool(
            self._SyncObj__raftState == _LEADER
            and self._SyncObj__raftCurrentTerm == term
            and noop is not None
            and applied >= noop
            and applied >= self._SyncObj__raftCommitIndex
        )

    def applied_everything(self) -> bool:
        """This node leads, has applied every entry in its log and has no proposal queued
        for it: an entry proposed now is applied to the state the caller sees (nothing
        earlier is still to come). Conservative: an entry whose callback runs before
        pysyncobj counts it applied reads as not applied yet."""
        try:
            last = self._SyncObj__raftLog[-1][1]
        except IndexError:
            return False
        return bool(
            self._SyncObj__raftState == _LEADER
            and self._SyncObj__raftLastApplied >= last
            and not self._SyncObj__commandsQueue._FastQueue__queue  # proposed, not appended
        )

    def lease_remaining(self) -> float:
        """Seconds the published lease has left (0 when none)."""
        term, until = self._lease
        if term != self._SyncObj__raftCurrentTerm or self._SyncObj__raftState != _LEADER:
            return 0.0
        return max(0.0, until - time.monotonic())

    # ------------------------------------------------------------ tick thread

    def void_lease(self) -> None:
        """Give up the lease for the rest of this term (a transfer skips stickiness)."""
        self._lease_void_term = self._SyncObj__raftCurrentTerm
        if self._lease is not _NO_LEASE:
            self.lease_voided += 1
        self._lease = _NO_LEASE

    def _SyncObj__onMessageReceived(self, node: Any, message: Any) -> None:
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "append_entries":
            stamp = message.get(LEASE_STAMP)
            self._lease_echo = (node, stamp) if _is_stamp(stamp) else None
            try:
                super()._SyncObj__onMessageReceived(node, message)
            finally:
                self._lease_echo = None
            return
        if kind == "next_node_idx" and self._answers_an_older_term(message.get(LEASE_ACK)):
            # pysyncobj's answers carry no term. One held up on the way (TCP retransmits
            # under loss) through this node's losing and winning back the lead would set
            # its matchIndex for a log the member may have changed since: the member could
            # be counted for this term's entries at indexes it never took. Raft drops
            # answers from older terms; the echoed stamp says which term this one answers.
            self.stale_answers_dropped += 1
            return
        super()._SyncObj__onMessageReceived(node, message)
        if kind == "next_node_idx":
            self._count_lease_ack(node, message.get(LEASE_ACK))

    def _answers_an_older_term(self, ack: Any) -> bool:
        return bool(
            isinstance(ack, tuple)
            and len(ack) == 3
            and isinstance(ack[0], int)
            and ack[0] < self._SyncObj__raftCurrentTerm
        )

    def _count_lease_ack(self, node: Any, ack: Any) -> None:
        if not (
            isinstance(ack, tuple)
            and len(ack) == 3
            and all(isinstance(v, int | float) for v in ack)
            and self._SyncObj__raftState == _LEADER
            and ack[0] == self._SyncObj__raftCurrentTerm
            and node in self._SyncObj__otherNodes
        ):
            return
        term, sent, min_timeout = ack
        if term != self._lease_term:
            self._lease_acks = {}
            self._lease_term = term
        held = self._lease_acks.get(node)
        if held is None or sent > held[0]:
            self._lease_acks[node] = (float(sent), float(min_timeout))
            self._publish_lease()

    def _publish_lease(self) -> None:
        term = self._SyncObj__raftCurrentTerm
        if (
            not self.lease_reads
            or self._SyncObj__raftState != _LEADER
            or term == self._lease_void_term
        ):
            self._lease = _NO_LEASE
            return
        voters = self._SyncObj__otherNodes
        needed = (len(voters) + 1) // 2  # members besides this one for a majority
        timeout = self._SyncObj__conf.raftMinTimeout
        if needed == 0:
            self._lease = (term, float("inf"))  # alone: nobody else can be elected
            return
        acks = self._lease_acks if self._lease_term == term else {}
        held = sorted((acks[n] for n in voters if n in acks), reverse=True)
        if len(held) < needed:
            self._lease = _NO_LEASE
            return
        # The majority's send time: the latest time `needed` members have all reached.
        sent = held[needed - 1][0]
        timeout = min([timeout, *(t for _, t in held[:needed])])
        self._lease = (term, sent + LEASE_FRACTION * timeout)

    def _onTick(self, timeToWait: float = 0.0) -> None:
        super()._onTick(timeToWait)
        # Leadership, membership or the void term may have changed during the tick.
        if self._lease is not _NO_LEASE or self._SyncObj__raftState == _LEADER:
            self._publish_lease()


def _is_stamp(stamp: Any) -> bool:
    return (
        isinstance(stamp, tuple)
        and len(stamp) == 2
        and isinstance(stamp[0], int)
        and isinstance(stamp[1], float)
    )
