"""Pre-vote, leader stickiness and check-quorum on top of pysyncobj 0.3.17.

pysyncobj starts an election as soon as a follower's election timer runs out: it
bumps its term and asks for votes. A follower cut off from the others (a network
partition, a proxy that closes its links) keeps doing that, and when it comes back
its higher term deposes a healthy leader that a majority still follows: an
election nobody needed and a gap in availability. ``PreVoteSyncObj`` adds the
Raft thesis' remedies (§9.6, as etcd implements them):

- **Pre-vote.** When the election timer runs out, the node first asks its peers
  (``pre_vote_request``) whether they *would* vote for it at term+1. A peer says
  yes only if the candidate's log is at least as up to date as its own and it has
  not heard from a live leader within the minimum election timeout. Only with a
  majority of yeses does pysyncobj's own election start. Answering a pre-vote
  changes nothing on the receiver (no term, no vote, no timer).
- **Leader stickiness.** A node that heard from a live leader within the minimum
  election timeout (or leads itself) ignores a ``request_vote`` for a higher term:
  no term change, no vote. Two exceptions: an election started by a leadership
  transfer (pysyncobj's ``timeout_now``; our candidate tags its ``request_vote``
  with ``leadership_transfer``), and, on the leader, a request from a member that
  has not acknowledged its appends within the minimum election timeout (such a
  member cannot follow this leader: refusing would lock it out for good).
- **Term notices.** pysyncobj ignores an append from a lower term without
  answering, so a member whose term got ahead (a transfer election that lost its
  messages, a node running without pre-vote) could never rejoin a sticky
  majority. It answers such an append with ``term_notice`` carrying its term; the
  stale leader adopts it and steps down, as Raft's "reply with currentTerm" rule
  would make it (etcd does the same). A pre-vote refusal carries the refuser's
  term too: a pre-candidate behind it never takes that term (its own term, vote and
  leader stay, so it keeps following a live leader whose append may be on its way),
  but its next round asks for a term above it, and a won round elects at that term.
  Two nodes therefore cannot refuse each other forever (one holding the longer log,
  the other the higher term).
- **Transfers.** pysyncobj's leader sends ``timeout_now`` once its target holds its
  last entry, then goes on appending: the target's election then carried a log
  behind the old leader's and the other follower's, lost their votes, and nobody led
  until pre-vote rounds sorted it out (~1 s; seen in CI on a SIGTERM'd leader). As
  the Raft thesis (§3.10) and etcd do, a leader that sent ``timeout_now`` appends no
  new command for ``raftMaxTimeout`` (they wait in pysyncobj's queue), so the
  target's log is as long as any and the old leader votes for it.
- **Check-quorum** is pysyncobj's own ``leaderFallbackTimeout``: on every tick a
  leader that has had no append answer from a majority within that time steps down
  to follower. ``RaftConfig.leader_fallback_timeout`` sets it (see DESIGN.md).

How: pysyncobj's election start lives in ``_onTick``; this class runs a check just
before it. When an election is due and was not cleared by a won pre-vote (or is a
leadership transfer), it pushes pysyncobj's election deadline forward and sends
pre-vote requests instead, so pysyncobj's election code runs unchanged and only
when allowed. Incoming messages go through the ``_SyncObj__onMessageReceived``
override (the same hook as ``LogMatchingSyncObj``). Requests for transfer elections
are tagged by a ``TCPTransport`` subclass. Messages of the new types are ignored
by pysyncobj's handler (it dispatches on known types only) and the journal is not
touched beyond pysyncobj's own term writes. Everything runs on the tick thread.

This relies on pysyncobj 0.3.17's private names (checked at import and in
tests/consensus/test_prevote.py): ``__raftElectionDeadline``,
``__transferInProgress``, ``__raftState``, ``__raftCurrentTerm``,
``__votedForNodeId``, ``__raftLeader``, ``__otherNodes``, ``__selfNode``,
``__lastResponseTime``, ``__connectedNodes``, ``__readonlyNodes``, ``__transport``,
``__conf`` and the methods named in ``_PRIVATE_METHODS``; and on pysyncobj's
TcpConnection dropping a connection idle for connectionTimeout at its next event
(keepalives, ``_keep_links_alive``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from pysyncobj import FAIL_REASON, SyncObj
from pysyncobj.monotonic import monotonic as _pysyncobj_monotonic
from pysyncobj.transport import TCPTransport
from pysyncobj.version import VERSION as _PYSYNCOBJ_VERSION
from raftcache.consensus.log_matching import LogMatchingSyncObj

_PINNED = "0.3.17"
# Re-check before moving the pin: besides these names existing, PreVoteSyncObj relies on
# pysyncobj calling __connectedToAnyone only in its election condition (_onTick), which the
# subclass gates (`_may_elect`).
_PRIVATE_METHODS = (
    "_SyncObj__onMessageReceived",
    "_SyncObj__generateRaftTimeout",
    "_SyncObj__connectedToAnyone",
    "_SyncObj__setCurrentTerm",
    "_SyncObj__setState",
    "_SyncObj__onLeaderChanged",
    "_SyncObj__getCurrentLogIndex",
    "_SyncObj__getCurrentLogTerm",
    "_onTick",
    "_checkCommandsToApply",
    "transferLeadership",
)
if _PYSYNCOBJ_VERSION != _PINNED or not all(hasattr(SyncObj, m) for m in _PRIVATE_METHODS):
    raise ImportError(
        f"raftcache.consensus.prevote overrides pysyncobj {_PINNED} internals; "
        f"pysyncobj {_PYSYNCOBJ_VERSION} is installed: re-check prevote.py before moving the pin"
    )

PRE_VOTE_REQUEST = "pre_vote_request"
PRE_VOTE_RESPONSE = "pre_vote_response"
TERM_NOTICE = "term_notice"
KEEPALIVE = "raftcache_keepalive"
"""A message with no content: keeps an otherwise idle link alive (PreVoteSyncObj._onTick)."""
TRANSFER_FLAG = "leadership_transfer"  # an extra key in pysyncobj's request_vote
# Amnesia (DESIGN.md "Amnesia"): a node with no Raft state asks its peers whether a cluster
# exists; an amnesiac one asks the leader to remove and re-add it, and is told when done.
STATE_QUERY = "state_query"
STATE_REPLY = "state_reply"
REJOIN_REQUEST = "rejoin_request"
REJOINED = "rejoined"

# pysyncobj's _RAFT_STATE
_FOLLOWER, _CANDIDATE, _LEADER = 0, 1, 2

_log = logging.getLogger("raftcache.consensus")


def _now() -> float:
    """pysyncobj's clock (CLOCK_MONOTONIC_RAW, not time.monotonic): its election deadline and
    response times are compared with ours."""
    return float(_pysyncobj_monotonic())


@dataclass
class PreVoteStats:
    """Counters (tick thread writes, anyone may read)."""

    rounds: int = 0  # pre-vote rounds started
    won: int = 0  # rounds that cleared a real election
    refusals_received: int = 0
    granted: int = 0  # pre-votes this node granted
    refused: int = 0  # pre-votes this node refused
    votes_ignored: int = 0  # request_vote dropped by leader stickiness
    term_notices_sent: int = 0
    terms_adopted: int = 0  # from a term notice


class _TransferTaggingTransport(TCPTransport):  # type: ignore[misc]  # pysyncobj is untyped
    """Tags the request_vote messages of an election started by a leadership transfer."""

    def send(self, node: Any, message: Any) -> bool:
        owner = self._syncObj
        if (
            isinstance(message, dict)
            and message.get("type") == "request_vote"
            and message.get("term") == getattr(owner, "_transfer_term", None)
        ):
            message = {**message, TRANSFER_FLAG: True}
        return bool(super().send(node, message))


class PreVoteSyncObj(LogMatchingSyncObj):
    """LogMatchingSyncObj with pre-vote, leader stickiness and term notices.

    `pre_vote=False` only stops this node from running pre-votes before its own
    elections (pysyncobj's plain behaviour); it still answers pre-votes, ignores
    disruptive vote requests and sends term notices, so nodes with either setting
    can run in one cluster.
    """

    # pysyncobj's private attributes this class assigns (declared for mypy only).
    _SyncObj__raftLeader: Any
    _SyncObj__raftElectionDeadline: float
    _SyncObj__transferInProgress: bool

    def __init__(
        self,
        selfNode: Any,
        otherNodes: Any,
        conf: Any = None,
        consumers: Any = None,
        *,
        pre_vote: bool = True,
        voting: bool = True,
        **kwargs: Any,
    ) -> None:
        # Set before SyncObj.__init__, which starts the tick thread (and records the
        # attributes that exist by then as its own, so a default pickle dump skips them).
        self._pre_vote = pre_vote
        # Last append from a leader of our term or newer. Starting counts as one: before it
        # stopped, this node may have accepted an append a leader's read lease rests on
        # (lease.py), and it must not vote against that leader until the lease ran out.
        self._leader_contact = _now()
        self._round_term: int | None = None  # the term our open pre-vote round asks for
        self._round_grants: set[Any] = set()
        self._cleared_term: int | None = None  # a won pre-vote: the term it cleared
        self._cleared_at = 0.0
        self._transfer_term: int | None = None  # request_votes of this term get TRANSFER_FLAG
        self._transfer_asked_in: int | None = None  # the term our leader sent timeout_now in
        self._term_floor = 0  # the highest term a pre-vote refusal reported
        self._transfer_pause_until = 0.0  # a leader that sent timeout_now appends nothing
        self._ignored_logged: set[tuple[Any, int]] = set()
        self.pre_vote_stats = PreVoteStats()
        # False: this node neither votes nor stands for election (amnesia: it may lack
        # entries it acknowledged before it lost its state). It still follows a leader.
        self.voting = voting
        self._may_elect = False  # pysyncobj may start an election on this tick (_onTick)
        self._next_keepalive = 0.0
        self.keepalives_sent = 0
        # Hooks for the amnesia messages (set by RaftNode; run on the tick thread).
        self.on_state_reply: Any = None  # (node, has_state: bool)
        # (node, its term): a peer without a record asked us (term 0: it has no state either)
        self.on_state_query: Any = None
        self.on_rejoin_request: Any = None  # (node) on the leader
        self.on_rejoined: Any = None  # (node, index)
        if "transport" not in kwargs:
            kwargs.setdefault("transportClass", _TransferTaggingTransport)
        super().__init__(selfNode, otherNodes, conf, consumers, **kwargs)

    # ------------------------------------------------------------ the election start

    def _onTick(self, timeToWait: float = 0.0) -> None:
        # pysyncobj starts an election inside its own tick, when its deadline has passed
        # and it is connected to anyone (its only use of __connectedToAnyone). The deadline
        # can pass between the check here and its own (the tick thread stalled on a loaded
        # host): it then elected without a pre-vote, or while not voting (a CI run: a
        # probing node stood in term 1, the other two took that for a cluster with state,
        # and three fresh nodes never elected anyone). So it elects only on a tick where
        # this check let it (`_may_elect`).
        self._may_elect = False
        if self._timer_expired():
            if not self.voting:
                # never a candidate: hold pysyncobj's election back for another timeout
                self._SyncObj__raftElectionDeadline = _now() + self._SyncObj__generateRaftTimeout()
                if self._SyncObj__raftLeader is not None:
                    self._SyncObj__raftLeader = None
                    self._SyncObj__onLeaderChanged()
            else:
                self._may_elect = self._before_election(_now())
        self._keep_links_alive(_now())
        try:
            super()._onTick(timeToWait)
        finally:
            self._may_elect = False

    def _keep_links_alive(self, now: float) -> None:
        """Send a keepalive on every connected link no Raft traffic keeps busy.

        pysyncobj checks a connection's idleness (nothing read for connectionTimeout) on
        its next event, a send or an arrival, and then drops the connection with the
        message that woke it. Only the leader's links carry traffic in a steady cluster
        (appends one way, their answers the other); two followers send each other nothing
        until an election, so a candidate's first pre-vote or vote request to another
        follower was dropped whenever that link had been idle for 1.5 s, and the election
        round failed. A CI run: a leadership transfer's target reached only the old leader
        (2 of 5 votes) and lost; every follower-started election lost its first round the
        same way. So every node except the leader sends each connected peer (its leader
        too: two nodes may disagree on who leads) a keepalive every quarter of
        connectionTimeout: both ends of every link read something well within the timeout.
        Peers of an older build ignore the type (and send none: see consensus/DESIGN.md)."""
        if now < self._next_keepalive:
            return
        self._next_keepalive = now + self._SyncObj__conf.connectionTimeout / 4
        if self._SyncObj__raftState == _LEADER:
            return
        connected = self._SyncObj__connectedNodes
        transport = self._SyncObj__transport
        for node in self._SyncObj__otherNodes | self._SyncObj__readonlyNodes:
            if node in connected and transport.send(node, {"type": KEEPALIVE}):
                self.keepalives_sent += 1

    def _SyncObj__connectedToAnyone(self) -> bool:
        """pysyncobj's election condition (see _onTick): connected, and let this tick."""
        return self._may_elect and self._connected()

    def _connected(self) -> bool:
        """Connected to any peer (pysyncobj's own test)."""
        return bool(super()._SyncObj__connectedToAnyone())

    def _timer_expired(self) -> bool:
        """pysyncobj's condition for starting an election on this tick, but for connectivity
        (it starts none while connected to nobody)."""
        return bool(
            self._SyncObj__raftState != _LEADER
            and self._SyncObj__selfNode is not None
            and self._SyncObj__raftElectionDeadline < _now()
        )

    def _before_election(self, now: float) -> bool:
        """Let pysyncobj's election go ahead (True), or hold it back behind a pre-vote
        round (False)."""
        current: int = self._SyncObj__raftCurrentTerm
        connected = self._connected()
        if self._SyncObj__transferInProgress:
            if self._transfer_asked_in == current:
                if connected:
                    self._transfer_term = current + 1  # the outgoing leader asked: no pre-vote
                return True
            # Asked in an older term (the flag outlived a lost election or a term adopted
            # since): a tagged election now would pass the stickiness of members following
            # a newer leader, whose read lease rests on it (lease.py). A plain one instead.
            self._SyncObj__transferInProgress = False
        next_term = max(current, self._term_floor) + 1
        if not self._pre_vote or not self._SyncObj__otherNodes:
            return True
        if self._SyncObj__raftLeader is not None:
            # No leader heard for an election timeout: stop naming it, as pysyncobj does
            # when it starts an election, so forwarded commands fail and bounded-staleness
            # reads stop. (pysyncobj alone keeps naming it while connected to nobody.)
            self._SyncObj__raftLeader = None
            self._SyncObj__onLeaderChanged()
        if not connected:
            return False
        if (
            self._cleared_term == next_term
            and now - self._cleared_at < self._SyncObj__conf.raftMinTimeout
        ):
            self._cleared_term = None
            if next_term > current + 1:
                # pysyncobj elects at its term + 1: move to the term below the one cleared
                # (no vote), which a refusal reported as in use.
                self._SyncObj__setCurrentTerm(next_term - 1, None)
            return True
        self._start_round(now, next_term)
        return False

    def _start_round(self, now: float, term: int) -> None:
        # Holds pysyncobj's election back until the next timeout (or a won round).
        self._SyncObj__raftElectionDeadline = now + self._SyncObj__generateRaftTimeout()
        self._round_term = term
        self._round_grants = set()
        self._cleared_term = None
        self.pre_vote_stats.rounds += 1
        request = {
            "type": PRE_VOTE_REQUEST,
            "term": term,
            "last_log_index": self._SyncObj__getCurrentLogIndex(),
            "last_log_term": self._SyncObj__getCurrentLogTerm(),
        }
        _log.debug("pre-vote round for term %d", term)
        for node in self._SyncObj__otherNodes:
            self._SyncObj__transport.send(node, request)

    # ------------------------------------------------------------ messages

    def _SyncObj__onMessageReceived(self, node: Any, message: Any) -> None:
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == KEEPALIVE:
            return  # arriving was its purpose
        if kind == STATE_QUERY:
            has_state = self._SyncObj__raftCurrentTerm > 0 or self._SyncObj__raftLeader is not None
            self._SyncObj__transport.send(node, {"type": STATE_REPLY, "has_state": has_state})
            if self.on_state_query is not None:
                term = message.get("term", 0)  # absent from an older build: as before
                self.on_state_query(node, term if isinstance(term, int) else 0)
            return
        if kind in (STATE_REPLY, REJOIN_REQUEST, REJOINED):
            hook = {
                STATE_REPLY: self.on_state_reply,
                REJOIN_REQUEST: self.on_rejoin_request,
                REJOINED: self.on_rejoined,
            }[kind]
            if hook is not None:
                if kind == STATE_REPLY:
                    hook(node, bool(message.get("has_state")))
                elif kind == REJOINED:
                    hook(node, message.get("index"))
                else:
                    hook(node, message.get("token"))
            return
        if not self.voting and kind in ("request_vote", "timeout_now", PRE_VOTE_REQUEST):
            return  # an amnesiac node grants nothing and is never a transfer's target
        if kind == PRE_VOTE_REQUEST:
            self._answer_pre_vote(node, message)
            return
        if kind == PRE_VOTE_RESPONSE:
            self._count_pre_vote(node, message)
            return
        if kind == TERM_NOTICE:
            self._adopt_term(message.get("term"), node, "a term notice")
            return
        if kind == "request_vote" and self._ignores_vote(node, message):
            return
        if kind == "timeout_now":
            super()._SyncObj__onMessageReceived(node, message)
            if self._SyncObj__transferInProgress:
                self._transfer_asked_in = self._SyncObj__raftCurrentTerm
            return
        if kind == "append_entries" and self._SyncObj__selfNode is not None:
            if message["term"] >= self._SyncObj__raftCurrentTerm:
                self._leader_contact = _now()
                self._round_term = None
                self._cleared_term = None
            else:
                self._send_term_notice(node)
        super()._SyncObj__onMessageReceived(node, message)

    # ------------------------------------------------------------ the leader's side of a transfer

    def transferLeadership(self, node: Any = None, callback: Any = None) -> None:
        """pysyncobj's transfer; once ``timeout_now`` went out, new commands wait (§3.10)."""

        def sent(result: Any, error: Any) -> None:
            if error == FAIL_REASON.SUCCESS:
                self._transfer_pause_until = _now() + self._SyncObj__conf.raftMaxTimeout
            if callback is not None:
                callback(result, error)

        super().transferLeadership(node, sent)

    def _checkCommandsToApply(self) -> None:
        if self._SyncObj__raftState != _LEADER:
            self._transfer_pause_until = 0.0
        elif _now() < self._transfer_pause_until:
            return  # the transfer target must keep the leader's last entry to win
        super()._checkCommandsToApply()

    def _in_lease(self, now: float) -> bool:
        """A live leader is known: this node leads, or heard from its leader recently."""
        if self._SyncObj__raftState == _LEADER:
            return True
        return bool(now - self._leader_contact < self._SyncObj__conf.raftMinTimeout)

    def _log_up_to_date(self, message: dict[str, Any]) -> bool:
        """The candidate's last entry is at least as recent as ours (Raft §5.4.1)."""
        ours = (self._SyncObj__getCurrentLogTerm(), self._SyncObj__getCurrentLogIndex())
        return bool((message["last_log_term"], message["last_log_index"]) >= ours)

    def _answer_pre_vote(self, node: Any, message: dict[str, Any]) -> None:
        if self._SyncObj__selfNode is None:
            return
        term: int = message["term"]
        current: int = self._SyncObj__raftCurrentTerm
        voted = self._SyncObj__votedForNodeId
        if term < current:
            granted = False  # the real vote would be ignored; the reply tells it our term
        elif term == current and voted is not None and voted != node.id:
            granted = False  # we voted for another in that term already
        elif self._in_lease(_now()):
            granted = False
        else:
            granted = self._log_up_to_date(message)
        if granted:
            self.pre_vote_stats.granted += 1
        else:
            self.pre_vote_stats.refused += 1
        self._SyncObj__transport.send(
            node,
            {"type": PRE_VOTE_RESPONSE, "term": term, "granted": granted, "current_term": current},
        )

    def _count_pre_vote(self, node: Any, message: dict[str, Any]) -> None:
        if not message.get("granted"):
            self.pre_vote_stats.refusals_received += 1
            # Never our term (a refuser may be a candidate whose election is failing while
            # our leader still leads): only the term our next round asks for.
            theirs = message.get("current_term")
            if isinstance(theirs, int) and theirs > self._term_floor:
                self._term_floor = theirs
            return
        term = message.get("term")
        if (
            term is None
            or term != self._round_term
            or term <= self._SyncObj__raftCurrentTerm
            or self._SyncObj__raftState == _LEADER
            or node not in self._SyncObj__otherNodes
        ):
            return  # a late answer to an older round
        self._round_grants.add(node)
        if len(self._round_grants) + 1 > (len(self._SyncObj__otherNodes) + 1) / 2:
            self._round_term = None
            self._cleared_term = term
            self._cleared_at = _now()
            self._SyncObj__raftElectionDeadline = 0  # pysyncobj elects on the next tick
            self.pre_vote_stats.won += 1
            _log.info("pre-vote won for term %d; starting an election", term)

    def _ignores_vote(self, node: Any, message: dict[str, Any]) -> bool:
        """Leader stickiness: drop a higher-term vote request while a live leader is known."""
        term: int = message["term"]
        if term <= self._SyncObj__raftCurrentTerm or message.get(TRANSFER_FLAG):
            return False
        now = _now()
        if not self._in_lease(now):
            return False
        if self._SyncObj__raftState == _LEADER:
            answered = self._SyncObj__lastResponseTime.get(node)
            if answered is None or now - answered >= self._SyncObj__conf.raftMinTimeout:
                # The member does not follow us (its term is ahead, so it ignores our
                # appends): refusing would keep it out for as long as we lead.
                return False
        self.pre_vote_stats.votes_ignored += 1
        if (node, term) not in self._ignored_logged:
            if len(self._ignored_logged) > 1024:
                self._ignored_logged.clear()
            self._ignored_logged.add((node, term))
            _log.info(
                "ignoring %s's vote request for term %d: a live leader is known (term %d)",
                getattr(node, "id", node),
                term,
                self._SyncObj__raftCurrentTerm,
            )
        return True

    def _send_term_notice(self, node: Any) -> None:
        self.pre_vote_stats.term_notices_sent += 1
        self._SyncObj__transport.send(
            node, {"type": TERM_NOTICE, "term": self._SyncObj__raftCurrentTerm}
        )

    def _adopt_term(self, term: Any, node: Any, source: str) -> None:
        """Move to a higher term heard from `node`, as a follower without a vote (Raft §5.1)."""
        if not isinstance(term, int) or self._SyncObj__selfNode is None:
            return
        if term <= self._SyncObj__raftCurrentTerm:
            return
        _log.info(
            "term %d -> %d from %s of %s",
            self._SyncObj__raftCurrentTerm,
            term,
            source,
            getattr(node, "id", node),
        )
        self.pre_vote_stats.terms_adopted += 1
        self._round_term = None
        self._cleared_term = None
        # What pysyncobj does on a request_vote of a higher term.
        self._SyncObj__setCurrentTerm(term, None)
        self._SyncObj__setState(_FOLLOWER)
        self._SyncObj__raftLeader = None
