"""Hand-written parts of the wire contract shared by nodes and clients (not generated).

Trailing-metadata keys, the message types of each RPC, and how to recognise a gRPC
failure that happened before a request left its sender.
"""

from __future__ import annotations

from typing import Any

from raftcache.v1 import cache_pb2, cluster_pb2

LEADER_METADATA_KEY = "x-raftcache-leader"
"""Trailing metadata with the leader's client address, sent with NOT_LEADER answers."""

ORIGIN_METADATA_KEY = "x-raftcache-error"
"""Trailing metadata on every error a node answers itself (value: the error class name),
so a forwarding follower or a client can tell node answers from transport failures."""

REVISION_METADATA_KEY = "x-raftcache-revision"
"""Initial metadata of a Watch: the revision the stream starts after (what "from now" meant),
so a client that breaks before the first event resumes without a gap."""

FORWARDED_METADATA_KEY = "x-raftcache-forwarded"
"""Request metadata on a call a follower relays to the leader (never relayed twice)."""

# "Service/Method" -> (request type, response type)
METHODS: dict[str, tuple[Any, Any]] = {
    "Cache/Get": (cache_pb2.GetRequest, cache_pb2.GetResponse),
    "Cache/Set": (cache_pb2.SetRequest, cache_pb2.SetResponse),
    "Cache/Delete": (cache_pb2.DeleteRequest, cache_pb2.DeleteResponse),
    "Cache/Incr": (cache_pb2.IncrRequest, cache_pb2.IncrResponse),
    "Cache/MGet": (cache_pb2.MGetRequest, cache_pb2.MGetResponse),
    "Cache/MSet": (cache_pb2.MSetRequest, cache_pb2.MSetResponse),
    "Cache/Exec": (cache_pb2.ExecRequest, cache_pb2.ExecResponse),
    "Cache/Txn": (cache_pb2.TxnRequest, cache_pb2.TxnResponse),
    "Cache/Scan": (cache_pb2.ScanRequest, cache_pb2.ScanResponse),
    "Cache/Publish": (cache_pb2.PublishRequest, cache_pb2.PublishResponse),
    "Cache/Batch": (cache_pb2.BatchRequest, cache_pb2.BatchResponse),
    "Cluster/Status": (cluster_pb2.StatusRequest, cluster_pb2.StatusResponse),
    "Cluster/SetUser": (cluster_pb2.SetUserRequest, cluster_pb2.SetUserResponse),
    "Cluster/DeleteUsers": (cluster_pb2.DeleteUsersRequest, cluster_pb2.DeleteUsersResponse),
    "Cluster/ListUsers": (cluster_pb2.ListUsersRequest, cluster_pb2.ListUsersResponse),
    "Cluster/GetUser": (cluster_pb2.GetUserRequest, cluster_pb2.GetUserResponse),
    "Cluster/WhoAmI": (cluster_pb2.WhoAmIRequest, cluster_pb2.WhoAmIResponse),
    "Cluster/ListMembers": (cluster_pb2.ListMembersRequest, cluster_pb2.ListMembersResponse),
    "Cluster/AddMember": (cluster_pb2.AddMemberRequest, cluster_pb2.MemberChangeResponse),
    "Cluster/RemoveMember": (cluster_pb2.RemoveMemberRequest, cluster_pb2.MemberChangeResponse),
    "Cluster/TransferLeadership": (
        cluster_pb2.TransferLeadershipRequest,
        cluster_pb2.TransferLeadershipResponse,
    ),
}

# Server-streaming RPCs: "Service/Method" -> (request type, streamed message type). Any node
# serves them from its own applied state; they are never forwarded.
STREAMS: dict[str, tuple[Any, Any]] = {
    "Cache/Subscribe": (cache_pb2.SubscribeRequest, cache_pb2.PubSubMessage),
    "Cache/Watch": (cache_pb2.WatchRequest, cache_pb2.WatchEvent),
    # Served by the leader only (a follower answers NOT_LEADER with the leader's address).
    "Cluster/Backup": (cluster_pb2.BackupRequest, cluster_pb2.BackupChunk),
}

# gRPC's wording for failures before a request left the sender (connect, DNS).
_NEVER_SENT = ("failed to connect", "connection refused", "dns resolution failed", "resolving")


def never_sent(code_name: str, details: str, answered_by_node: bool) -> bool:
    """True when a failed call surely did not reach a node, so it cannot have applied."""
    text = details.lower()
    return (
        code_name == "UNAVAILABLE"
        and not answered_by_node
        and any(sign in text for sign in _NEVER_SENT)
    )
