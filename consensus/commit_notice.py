"""Commit notices wait briefly for the next entry to carry them (the leader's side).

With ``appendEntriesUseBatch`` off, pysyncobj's leader sends every follower an
``append_entries`` as soon as it has applied newly committed entries, only to tell them the
new commit index, and every follower answers it: on a 3-node cluster that is four messages
per entry, as many as replicating the entry itself, and a message costs its sender 50-110 us
of CPU on this host (the loopback send wakes the receiving thread; node/DESIGN.md). Under
load the next entry follows within a few milliseconds and carries the same commit index.

So a notice with nothing else to send waits up to ``COMMIT_NOTICE_DELAY_S``: an entry
proposed meanwhile carries it (pysyncobj sends every new entry at once, with the commit
index), and otherwise it goes alone when the delay is up, as a heartbeat does (the tick's
poll is cut short so that it is not late by a whole tick period). A connected follower
behind the log (entries to send it) gets the notice at once with them, as before; one that
is down or cut off is not waited for.

Safety does not depend on when a follower learns the commit index: only on the leader's
commit rule, which this leaves alone. What it moves: a follower applies an entry up to
``COMMIT_NOTICE_DELAY_S`` later when no entry follows, so its stale reads may trail the
leader by that much more (still within --max-staleness, which followers check against the
commit index they were told), and the leader's lease is extended by the acks of entries
and heartbeats rather than of notices.
"""

from __future__ import annotations

from typing import Any

from pysyncobj.monotonic import monotonic as _now
from raftcache.consensus.lease import _LEADER, LeaseSyncObj

COMMIT_NOTICE_DELAY_S = 0.005
"""How long a commit notice waits for an entry to carry it. A 64-client write load proposes
its next entry within ~1-3 ms of the last one applying; a quiet leader's followers learn of
its last entry this much later than before."""


class CommitNoticeSyncObj(LeaseSyncObj):
    _SyncObj__newAppendEntriesTime: float  # pysyncobj's: when the next heartbeat is due

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._notice_due = 0.0  # when a deferred notice must go (0: none waiting)
        self.commit_notices_held = 0
        self.commit_notices_carried = 0  # of those, carried by an entry in time
        super().__init__(*args, **kwargs)
        poll = self._poller.poll

        def poll_until_notice_due(timeout: float) -> None:
            due = self._notice_due
            if due:
                if self._SyncObj__raftState == _LEADER:
                    timeout = min(timeout, max(0.0, due - _now()))
                else:  # stepped down meanwhile: the next leader tells them
                    self._notice_due = 0.0
            poll(timeout)

        self._poller.poll = poll_until_notice_due

    def _SyncObj__applyLogEntries(self) -> bool:  # tick thread
        notify: bool = super()._SyncObj__applyLogEntries()
        if not notify or self._SyncObj__raftState != _LEADER:
            return notify
        last = self._SyncObj__raftLog[-1][1]
        nexts = self._SyncObj__raftNextIndex
        connected = self._SyncObj__connectedNodes  # pysyncobj sends nothing to the others
        for node in self._SyncObj__otherNodes | self._SyncObj__readonlyNodes:
            if node in connected and nexts.get(node, 0) <= last:
                return True  # entries to send it anyway: the notice goes with them
        due = _now() + COMMIT_NOTICE_DELAY_S
        if not self._notice_due:
            self._notice_due = due
            self.commit_notices_held += 1
        # pysyncobj's tick sends when this time has passed (the heartbeat's clock)
        if self._SyncObj__newAppendEntriesTime > self._notice_due:
            self._SyncObj__newAppendEntriesTime = self._notice_due
        return False

    def _SyncObj__sendAppendEntries(self) -> None:  # tick thread: every send carries it
        if self._notice_due:
            if _now() < self._notice_due:
                self.commit_notices_carried += 1
            self._notice_due = 0.0
        super()._SyncObj__sendAppendEntries()
