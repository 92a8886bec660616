"""Commit notices ride on the next entry (consensus/DESIGN.md "Commit notices").

pysyncobj's leader (with ``appendEntriesUseBatch=False``, our setting) sends every
follower an AppendEntries the moment its commit index moves, to tell them, and each
follower answers it. Under load the next entry follows within a couple of milliseconds
and carries the same commit index, so that notice and its answer are two of the four
messages per entry per follower pair, and on this machine a message costs its sender
50-110 us of CPU (the loopback send and the wake-up of the receiving thread) and its
receiver more.

Here the leader holds a commit notice back for at most ``commit_notice_delay`` seconds:
any AppendEntries sent meanwhile (the next entry's, a heartbeat) carries the commit index
and settles it; otherwise the notice goes out when it is due, and the tick's poll never
sleeps past that. Only followers' knowledge of the commit index waits, by at most the
delay; nothing the leader answers does (a write is answered when the leader applies it,
which needs a majority's acknowledgement of the entry, not the followers' notice).
``commit_notice_delay=0`` keeps pysyncobj's behaviour.
"""

from __future__ import annotations

import time
from typing import Any

from pysyncobj.syncobj import _RAFT_STATE
from raftcache.consensus.lease import LeaseSyncObj

_LEADER = _RAFT_STATE.LEADER
_now = time.monotonic


class CommitNoticeSyncObj(LeaseSyncObj):
    """LeaseSyncObj whose leader lets commit notices wait for the next AppendEntries."""

    def __init__(self, *args: Any, commit_notice_delay: float = 0.0, **kwargs: Any) -> None:
        # Set before SyncObj.__init__, which starts the tick thread.
        self.commit_notice_delay = commit_notice_delay
        self._notice_due: float | None = None  # when a held-back notice must go out
        self.commit_notices_held = 0  # notices settled by another AppendEntries
        self.commit_notices_sent = 0  # notices that went out on their own when due
        super().__init__(*args, **kwargs)
        poller = self._poller
        poll = poller.poll

        def poll_until_due(timeout: float) -> None:
            due = self._notice_due
            if due is not None:
                timeout = max(0.0, min(timeout, due - _now()))
            poll(timeout)

        poller.poll = poll_until_due

    # ------------------------------------------------------------ tick thread

    def _SyncObj__applyLogEntries(self) -> bool:
        notify = bool(super()._SyncObj__applyLogEntries())
        if not notify or self.commit_notice_delay <= 0:
            return notify
        if self._SyncObj__raftState == _LEADER and self._notice_due is None:
            self._notice_due = _now() + self.commit_notice_delay
        return False

    def _SyncObj__sendAppendEntries(self) -> None:
        if self._notice_due is not None:
            self._notice_due = None
            self.commit_notices_held += 1
        super()._SyncObj__sendAppendEntries()

    def _checkCommandsToApply(self) -> None:
        super()._checkCommandsToApply()  # sends the next entries, which settle a notice
        due = self._notice_due
        if due is None:
            return
        if self._SyncObj__raftState != _LEADER:
            self._notice_due = None  # a new leader tells the followers itself
        elif _now() >= due:
            self._notice_due = None
            self.commit_notices_sent += 1
            self._SyncObj__sendAppendEntries()
