"""Raft's AppendEntries log-matching rule, which pysyncobj 0.3.17 gets wrong.

pysyncobj's follower deletes *every* entry after ``prevLogIdx`` whenever it has
any, then re-adds only the entries in the message. Raft (§5.3, receiver rule 3)
deletes only from the first entry whose term conflicts. The difference matters:
a duplicate or late AppendEntries (after a pause, a reconnect or a leader's
nextIndex reset) made a follower drop entries the leader had already counted in
its matchIndex, which never goes down. Had the leader died while enough
followers held such a truncated log, a leader lacking a committed entry could
have been elected. Our chaos runs logged pysyncobj's CRITICAL "truncating
already-applied log entries" for exactly this, most often right after a snapshot
install (an append sent before the snapshot overlaps its last, applied entry).

``LogMatchingSyncObj`` rewrites each AppendEntries before pysyncobj's handler
sees it, so the handler's delete-everything-after-prev only ever runs from the
first conflicting entry:

- entries the follower already holds with the same term are dropped from the
  message and ``prevLogIdx``/``prevLogTerm`` move past them;
- when every entry matches (a duplicate), nothing is deleted: the follower
  answers success for the last entry of the message and takes a commit index of
  at most that entry (Raft's ``min(leaderCommit, index of last new entry)``),
  never one covering its own unverified tail.

Chunked transmissions of single huge entries are passed through unchanged: we
configure the chunk size as the largest entry, so pysyncobj never chunks.

Snapshot messages (``serialized``: a leader streaming its snapshot to a follower
whose next entry it no longer holds) carry no ``prevLogIdx``, so they vouch for
none of the follower's entries; yet pysyncobj's handler raises the follower's
commit index to ``min(leaderCommit, its own last index)`` on every one of them:
each chunk, and each ``serialized: None`` the leader sends while its snapshot is
still being written (pysyncobj's forked serializer). A follower with an
uncommitted tail of an old term (a deposed leader's writes that never reached a
majority) then applies that tail, and a deposed leader answers those clients that
their writes applied: acknowledged writes that are in no committed log. So a
snapshot message raises the commit index only once the snapshot is loaded (the
log is then the snapshot's two committed entries), and then up to its last entry;
this node's own proposals the snapshot covers are then answered UNKNOWN_OUTCOME (the
new leader may or may not have committed them), since pysyncobj would never call
them back.

A snapshot this log already holds (its end committed here, or its end entry in the log
with the same term) is refused and answered instead of loaded: a leader sent back into
its snapshot by a stale reset would otherwise roll the follower's log and state back,
dropping entries its matchIndex still counts (Raft's InstallSnapshot rule 6). Streams
never mix: a new leader starts its streams over, and a follower drops the file it
receives when a part of another leader's or term's stream comes (consensus/DESIGN.md).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from typing import Any

from pysyncobj import FAIL_REASON, SyncObj

_log = logging.getLogger("raftcache.consensus")

# pysyncobj's raft log holds (command bytes, index, term) tuples.
_IDX, _TERM = 1, 2


class LogMatchingSyncObj(SyncObj):  # type: ignore[misc]  # pysyncobj is untyped
    """SyncObj whose followers truncate their log only at the first conflicting entry."""

    _SyncObj__raftCommitIndex: int  # pysyncobj's (declared for mypy only)

    def __init__(
        self,
        *args: Any,
        snapshot_end: Callable[[str], tuple[int, int] | None] | None = None,
        **kwargs: Any,
    ) -> None:
        # The last entry's (index, term) of a received snapshot file, None if unreadable; set
        # before SyncObj.__init__, which starts the tick thread. None: every snapshot loads.
        self._snapshot_end = snapshot_end
        self.stale_snapshots_refused = 0
        self._incoming_stream: tuple[Any, int] | None = None  # (leader, term) of its first part
        super().__init__(*args, **kwargs)

    def _SyncObj__onBecomeLeader(self) -> None:
        """Streams of this node's snapshot left from an earlier term start over: a follower
        may have begun another leader's stream since, and would append this one's later
        parts to it (pysyncobj keeps each stream's position until a disconnect)."""
        transmissions = self._SyncObj__serializer._Serializer__transmissions
        for stream in transmissions.values():
            with contextlib.suppress(Exception):
                stream["file"].close()
        transmissions.clear()
        super()._SyncObj__onBecomeLeader()

    def _SyncObj__onMessageReceived(self, node: Any, message: Any) -> None:
        if _is_plain_append_entries(message) and message["term"] >= self._SyncObj__raftCurrentTerm:
            message = self._match_entries(node, message)
            if message is None:
                return
        elif is_snapshot_part(message) and message["term"] >= self._SyncObj__raftCurrentTerm:
            self._install_part(node, message)
            return
        super()._SyncObj__onMessageReceived(node, message)

    def _install_part(self, node: Any, message: dict[str, Any]) -> None:
        """A snapshot message: pysyncobj's handling, with the commit index held where it
        was unless this message completed the snapshot (then up to its last entry)."""
        before = self._log_end()
        leader_commit: int = message["commit_index"]
        held = dict(message, commit_index=min(leader_commit, self._SyncObj__raftCommitIndex))
        self._keep_to_one_stream(node, message)
        held_already = self._held_snapshot_end(message)
        if held_already is not None:
            held["serialized"] = None  # pysyncobj's bookkeeping (term, leader, timer) only
        try:
            super()._SyncObj__onMessageReceived(node, held)
        finally:
            self._SyncObj__leaderCommitIndex = leader_commit  # what the leader committed
        if held_already is not None:
            # Raft's InstallSnapshot rule 6: this log already holds what the snapshot holds.
            # Loading it would put the state, the log and the commit index back to its end,
            # dropping entries this node acknowledged (the leader's matchIndex still counts
            # them). Answer for what this log matches of the leader's: its committed
            # entries, and the snapshot's end.
            matched = max(held_already, self._SyncObj__raftCommitIndex)
            self._SyncObj__sendNextNodeIdx(node, nextNodeIdx=matched + 1, success=True)
            return
        if self._log_end() == before:
            return  # still streaming (or not loaded): no entry of this log is vouched for
        log = self._SyncObj__raftLog
        # A snapshot holds applied, so committed, entries only: its end is committed even
        # when the leader's commit index (as restored after its own restart) trails it.
        last = log[-1][_IDX]
        if last > self._SyncObj__raftCommitIndex:
            self._SyncObj__raftCommitIndex = last
            log.setRaftCommitIndex(last)
        # Proposals of this node's (as a deposed leader) at or before the snapshot's end will
        # never apply here: their outcome is unknown (the new leader may hold them), now
        # rather than at their commit timeout.
        waiting = self._SyncObj__commandsWaitingCommit
        for index in [i for i in waiting if i <= last]:
            for _term, callback in waiting.pop(index):
                callback(None, FAIL_REASON.UNKNOWN_OUTCOME)

    def _keep_to_one_stream(self, node: Any, message: dict[str, Any]) -> None:
        """A part of another stream than the one being received (another leader's, or
        another term's) ends it: the file would be one snapshot's start and another's
        end. pysyncobj then takes nothing until a stream's first part."""
        part = _stream_part(message)
        if part is None:
            return
        origin = (node, message["term"])
        if part[1]:  # a first part: pysyncobj starts the file over
            self._incoming_stream = origin
            return
        incoming = self._SyncObj__serializer._Serializer__incomingTransmissionFile
        if incoming is not None and self._incoming_stream != origin:
            self._drop_incoming()
            _log.warning("dropped a snapshot being received: a part of another stream came")

    def _drop_incoming(self) -> None:
        """Forget the snapshot being received: pysyncobj takes no part until a first one."""
        serializer = self._SyncObj__serializer
        incoming = serializer._Serializer__incomingTransmissionFile
        if serializer._Serializer__fileName is not None:  # else bytes, in memory
            with contextlib.suppress(OSError):
                incoming.close()
        serializer._Serializer__incomingTransmissionFile = None

    def _holds(self, index: int, term: int) -> bool:
        """This log has the entry `index` with `term` (so it matches any log that does, up
        to there)."""
        log = self._SyncObj__raftLog
        first = log[0][_IDX]
        return bool(first <= index <= log[-1][_IDX] and log[index - first][_TERM] == term)

    def _held_snapshot_end(self, message: dict[str, Any]) -> int | None:
        """For the last part of a snapshot this log already holds, the snapshot's end index,
        with the received file dropped before pysyncobj renames it over this node's own
        (newer) snapshot; None otherwise (the part goes to pysyncobj as sent).

        A snapshot is held already when its end is committed here, or this log has its end
        entry (same index and term: the logs match up to it). A leader streams one to a
        follower that no longer needs it when a reply from before an earlier stream resets
        its nextIndex at or below its first entry (pysyncobj takes resets unchecked)."""
        part = _stream_part(message)
        if self._snapshot_end is None or part is None or not part[2]:
            return None
        serializer = self._SyncObj__serializer
        incoming = serializer._Serializer__incomingTransmissionFile
        path = serializer._Serializer__fileName
        if incoming is None or path is None:
            return None  # pysyncobj will load nothing (no first part seen) or keeps it in memory
        tmp = path + ".1.tmp"  # pysyncobj's name for the file being received
        try:
            incoming.flush()
            end = self._snapshot_end(tmp)
        except Exception:
            _log.exception("cannot read the end of a received snapshot; loading it")
            return None
        if end is None:
            return None
        index, term = end
        if index > self._SyncObj__raftCommitIndex and not self._holds(index, term):
            return None
        self._drop_incoming()
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        self.stale_snapshots_refused += 1
        log = self._SyncObj__raftLog
        _log.warning(
            "refused a snapshot ending at index %d (term %d): this log holds it already "
            "(commit index %d, log %d..%d)",
            index,
            term,
            self._SyncObj__raftCommitIndex,
            log[0][_IDX],
            log[-1][_IDX],
        )
        return int(index)

    def _log_end(self) -> tuple[int, int, int]:
        """The last entry's index and term, and the last applied index: a snapshot load
        changes them (the log becomes the snapshot's last two entries)."""
        last = self._SyncObj__raftLog[-1]
        return last[_IDX], last[_TERM], self._SyncObj__raftLastApplied

    def _match_entries(self, node: Any, message: dict[str, Any]) -> dict[str, Any] | None:
        """The message without entries this follower already holds; None if fully handled."""
        log = self._SyncObj__raftLog
        first, last = log[0][_IDX], log[-1][_IDX]
        prev_idx: int = message["prevLogIdx"]
        if not self._holds(prev_idx, message["prevLogTerm"]):
            return message  # pysyncobj answers "no match" without touching the log
        entries = message.get("entries", [])
        matched = 0
        for entry in entries:
            idx = entry[_IDX]
            if idx > last or log[idx - first][_TERM] != entry[_TERM]:
                break
            matched += 1
        if matched == len(entries):
            if prev_idx + len(entries) == last and not entries:
                return message  # a plain heartbeat at the end of the log: nothing to rewrite
            self._acknowledge_duplicate(node, message, prev_idx + len(entries))
            return None
        if matched == 0:
            return message
        rewritten = dict(message)
        rewritten["prevLogIdx"] = entries[matched - 1][_IDX]
        rewritten["prevLogTerm"] = entries[matched - 1][_TERM]
        rewritten["entries"] = entries[matched:]
        return rewritten

    def _acknowledge_duplicate(self, node: Any, message: dict[str, Any], last_new: int) -> None:
        # Leader, term and election-timer bookkeeping stay pysyncobj's: hand it the message as a
        # bare heartbeat (no prevLogIdx: no log change, no reply) with the commit index capped at
        # the last entry this message vouches for, then answer for that entry ourselves.
        heartbeat = {
            "type": "append_entries",
            "term": message["term"],
            "commit_index": min(message["commit_index"], last_new),
        }
        try:
            super()._SyncObj__onMessageReceived(node, heartbeat)
        finally:
            # what the leader committed (readiness and staleness read it), not the cap
            self._SyncObj__leaderCommitIndex = message["commit_index"]
        self._SyncObj__sendNextNodeIdx(node, nextNodeIdx=last_new + 1, success=True)


def _stream_part(message: dict[str, Any]) -> tuple[Any, bool, bool] | None:
    """A snapshot message's (data, is first, is last); None for `serialized: None`."""
    serialized = message.get("serialized")
    if isinstance(serialized, tuple | list) and len(serialized) == 3:
        return (serialized[0], bool(serialized[1]), bool(serialized[2]))
    return None


def is_snapshot_part(message: Any) -> bool:
    return (
        isinstance(message, dict)
        and message.get("type") == "append_entries"
        and "prevLogIdx" not in message
        and "serialized" in message
    )


def _is_plain_append_entries(message: Any) -> bool:
    return (
        isinstance(message, dict)
        and message.get("type") == "append_entries"
        and "prevLogIdx" in message
        and message.get("transmission") is None
    )
