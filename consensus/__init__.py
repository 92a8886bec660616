"""raftcache.consensus: the only package that imports pysyncobj.

Public surface: RaftNode, RaftConfig, RaftStatus, Durability, Role, Outcome,
ReplicatedState, MembershipRefused, MemberHealth. See DESIGN.md for how pysyncobj's
traps are handled.
"""

from raftcache.consensus.raft import (
    Durability,
    MemberHealth,
    MembershipRefused,
    Outcome,
    RaftConfig,
    RaftNode,
    RaftStatus,
    ReplicatedState,
    Role,
)

__all__ = [
    "Durability",
    "MemberHealth",
    "MembershipRefused",
    "Outcome",
    "RaftConfig",
    "RaftNode",
    "RaftStatus",
    "ReplicatedState",
    "Role",
]
