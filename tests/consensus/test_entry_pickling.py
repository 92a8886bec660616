"""Our proposals are pickled at protocol 4 (peer_guard.PICKLE_PROTOCOL), not pysyncobj's 2.

At protocol 2 a bytes object is pickled as a latin-1 string in UTF-8: every byte of 0x80
and above takes two, and both sides pay a transcoding. A log of both kinds (a node that ran
an older build, or entries from a leader of one) must apply in order, and stock pysyncobj's
apply path must read ours: it unpickles whatever protocol it is given.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

from pysyncobj import FAIL_REASON
from pysyncobj.syncobj import _COMMAND_TYPE
from raftcache.consensus import Outcome, RaftNode
from raftcache.consensus.peer_guard import PICKLE_PROTOCOL
from raftcache.node import commands

from tests.consensus.harness import (
    Proposal,
    RaftHarness,
    command,
    journal_of,
    propose_all,
    set_op,
    wait_for,
)


def _entries_with(node: RaftNode, payload: bytes) -> list[bytes]:
    journal = journal_of(node)
    return [journal[i][0] for i in range(len(journal)) if payload in journal[i][0]]


def test_a_proposal_is_pickled_at_protocol_4_as_the_replicated_wrapper_would_call(
    raft: RaftHarness, tmp_path: Path
) -> None:
    node, replica = raft.start(tmp_path)
    value = os.urandom(4096)  # binary: half its bytes would take two at protocol 2
    payload = commands.encode(command(set_op(b"k", value)))
    (proposal,) = propose_all(node, [payload])
    assert proposal.outcome is Outcome.APPLIED
    assert replica.get(b"k", 0).value == value
    (entry,) = _entries_with(node, payload)
    assert entry[0] == _COMMAND_TYPE.REGULAR
    assert entry[1:3] == pickle.PROTO + bytes([PICKLE_PROTOCOL])
    assert len(entry) < len(payload) + 64  # not ~1.5x, as protocol 2 makes random bytes
    # the call stock pysyncobj's wrapper makes: (the method's id, (the payload,))
    consumer = node._consumer
    syncobj = consumer._syncObj
    name = syncobj._getFuncName((id(consumer), "apply"))
    assert pickle.loads(entry[1:]) == (syncobj._methodToID[(id(consumer), name)], (payload,))


def test_entries_pickled_by_pysyncobj_and_by_us_apply_in_order(
    raft: RaftHarness, tmp_path: Path
) -> None:
    # an entry proposed through pysyncobj's own wrapper (protocol 2, as older builds did)
    # between two of ours: all three apply, in log order
    node, replica = raft.start(tmp_path)
    first, old, last = (
        commands.encode(command(set_op(b"k", value))) for value in (b"\x80a", b"\xffb", b"\x90c")
    )
    done = [Proposal() for _ in range(3)]
    node.propose(first, done[0])
    node._consumer.apply(
        old,
        callback=lambda result, reason: done[1](
            Outcome.APPLIED if reason == FAIL_REASON.SUCCESS else Outcome.UNKNOWN, result
        ),
    )
    node.propose(last, done[2])
    for proposal in done:
        wait_for(proposal.done.is_set, "every entry applied")
    assert [p.outcome for p in done] == [Outcome.APPLIED] * 3
    assert replica.get(b"k", 0).value == b"\x90c"
    (old_entry,) = _entries_with(node, b"\xc3\xbfb")  # protocol 2: 0xff as UTF-8 of U+00FF
    assert old_entry[1:3] == pickle.PROTO + bytes([2])
    assert [_entries_with(node, p)[0][1:3] for p in (first, last)] == [
        pickle.PROTO + bytes([PICKLE_PROTOCOL])
    ] * 2
