"""The cluster id, and `--restore-from`: seeding a new cluster from a backup file.

Checked before anything starts (the caller runs `prepare` first): the file is read
in full and verified; a data directory that belongs to another cluster is refused.
See node/DESIGN.md "Backup and restore".
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from raftcache.node import backup_file
from raftcache.node.replica import Replica

CLUSTER_ID_FILE = "cluster_id"
SEED_FILE = "restore-seed.rcbak"
_STATE_FILES = ("raft.journal", "snapshot.lmdb")


class RestoreError(OSError):
    """The node cannot start as asked (an OSError: the entry point reports it and exits 1)."""


@dataclass(frozen=True)
class StartState:
    cluster_id: str
    seed: str | None  # a verified backup file to seed the state machine from, or None


def derive_id(members: Iterable[str], salt: str = "") -> str:
    """The same on every member started with the same member list (and backup)."""
    h = hashlib.blake2b(digest_size=8)
    h.update("\n".join(sorted(set(members))).encode())
    h.update(b"\0" + salt.encode())
    return h.hexdigest()


def prepare(data_dir: Path | None, members: Iterable[str], restore_from: str) -> StartState:
    """The cluster id and what to seed from; raises RestoreError before anything started."""
    members = list(members)
    info = _verified(restore_from) if restore_from else None
    restored_id = derive_id(members, info.checksum) if info else ""
    if data_dir is None:  # memory mode: nothing survives a restart, so seed every time
        return StartState(restored_id or derive_id(members), restore_from or None)
    id_path = data_dir / CLUSTER_ID_FILE
    stored = id_path.read_text().strip() if id_path.exists() else ""
    has_state = any((data_dir / name).exists() for name in _STATE_FILES)
    if info is not None and stored != restored_id:
        if stored or has_state:
            raise RestoreError(
                f"--restore-from: --data-dir {data_dir} already holds "
                f"{'cluster ' + stored if stored else 'a Raft journal'}; a restore seeds a NEW "
                "cluster: give an empty --data-dir (or drop --restore-from to run the "
                "existing one)"
            )
        data_dir.mkdir(parents=True, exist_ok=True)
        _copy_durably(restore_from, data_dir / SEED_FILE)
    if not stored:
        stored = restored_id or derive_id(members)
        data_dir.mkdir(parents=True, exist_ok=True)
        _write_durably(id_path, stored + "\n")
    seed = data_dir / SEED_FILE
    # Once a snapshot exists it holds the seed plus everything applied since.
    wanted = seed.exists() and not (data_dir / "snapshot.lmdb").exists()
    return StartState(stored, str(seed) if wanted else None)


def seed(replica: Replica, path: str) -> backup_file.BackupInfo:
    """Load a backup into `replica` as a new cluster's initial state (before Raft starts)."""
    _verified(path)
    with backup_file.reader(path) as (info, meta, items):
        replica.restore(for_new_cluster(meta), items)
    return info


def for_new_cluster(meta: bytes) -> bytes:
    """The state meta without the old cluster's members and client sessions."""
    doc = json.loads(meta)
    doc["members"] = {}
    doc["sessions"] = {}
    return json.dumps(doc, separators=(",", ":")).encode()


def _verified(path: str) -> backup_file.BackupInfo:
    try:
        return backup_file.verify(path)
    except backup_file.BackupFormatError as exc:
        raise RestoreError(f"--restore-from: {exc}; nothing was started") from exc


def _copy_durably(src: str, dst: Path) -> None:
    partial = dst.with_name(dst.name + ".partial")
    shutil.copyfile(src, partial)
    _fsync_and_rename(partial, dst)


def _write_durably(dst: Path, text: str) -> None:
    partial = dst.with_name(dst.name + ".partial")
    partial.write_text(text)
    _fsync_and_rename(partial, dst)


def _fsync_and_rename(partial: Path, dst: Path) -> None:
    with open(partial, "rb") as f:
        os.fsync(f.fileno())
    os.replace(partial, dst)
    fd = os.open(dst.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
