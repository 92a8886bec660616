"""raftcache.consensus: the only package that imports pysyncobj.

Public surface: RaftNode, RaftConfig, RaftStatus, Durability, Role, Outcome,
ReplicatedState, MembershipRefused, MemberHealth, query_membership (a Raft port's view
of the voters, MembershipView). See DESIGN.md for how pysyncobj's
traps are handled.
"""

from raftcache.consensus.raft import (
    Durability,
    MemberHealth,
    MembershipRefused,
    MembershipView,
    Outcome,
    RaftConfig,
    RaftNode,
    RaftStatus,
    ReplicatedState,
    Role,
    query_membership,
)

__all__ = [
    "Durability",
    "MemberHealth",
    "MembershipRefused",
    "MembershipView",
    "Outcome",
    "RaftConfig",
    "RaftNode",
    "RaftStatus",
    "ReplicatedState",
    "Role",
    "query_membership",
]
