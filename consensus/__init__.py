"""raftcache.consensus: the only package that imports pysyncobj.

Public surface: RaftNode, RaftConfig, RaftStatus, Durability, Role, Outcome,
ReplicatedState. See DESIGN.md for how pysyncobj's traps are handled.
"""

from raftcache.consensus.raft import (
    Durability,
    Outcome,
    RaftConfig,
    RaftNode,
    RaftStatus,
    ReplicatedState,
    Role,
)

__all__ = [
    "Durability",
    "Outcome",
    "RaftConfig",
    "RaftNode",
    "RaftStatus",
    "ReplicatedState",
    "Role",
]
