"""The node's durable identity: which cluster it belongs to and whether it may vote.

A small JSON file (`identity.json`) in the data directory, written with fsync (file and
directory) before anything it records can matter, and kept in `memory` mode too (only the
cache content and the Raft log are not persisted there). See DESIGN.md "Amnesia".

States:
- ``voter``: this node had Raft state (log, term, vote) for the cluster on this disk and may
  vote whenever that state is present. Without it (memory mode after a restart, a journal
  that is gone) the node is amnesiac.
- ``rejoining``: the node found itself amnesiac and has not yet been removed, re-added and
  caught up; it must not vote, even if it restarts with a log received meanwhile.
- ``probing``: a node with no state and no record asked its peers whether a cluster exists
  (nothing it did while probing can matter: it neither voted nor was counted).

No record at all on a ``--join`` start: node/rejoin.py asks the cluster first and writes
``rejoining`` if the cluster still counts this address as a voter.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

FILE_NAME = "identity.json"
VOTER = "voter"
REJOINING = "rejoining"
PROBING = "probing"


@dataclass(frozen=True)
class Identity:
    self_addr: str
    state: str
    members: tuple[str, ...] = ()


def load(directory: Path | None, self_addr: str) -> Identity | None:
    """The record for `self_addr` (another address's record is no record), or None."""
    if directory is None:
        return None
    try:
        data = json.loads((directory / FILE_NAME).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("self") != self_addr:
        return None
    state = data.get("state")
    if state not in (VOTER, REJOINING, PROBING):
        return None
    return Identity(self_addr, state, tuple(data.get("members") or ()))


def store(directory: Path | None, identity: Identity) -> None:
    """Write the record durably (temp file, fsync, rename, fsync of the directory)."""
    if directory is None:
        return
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / FILE_NAME
    tmp = directory / (FILE_NAME + ".tmp")
    body = {"self": identity.self_addr, "state": identity.state, "members": list(identity.members)}
    with open(tmp, "w") as f:
        json.dump(body, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
