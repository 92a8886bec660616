from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Role(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROLE_UNKNOWN: _ClassVar[Role]
    FOLLOWER: _ClassVar[Role]
    CANDIDATE: _ClassVar[Role]
    LEADER: _ClassVar[Role]
ROLE_UNKNOWN: Role
FOLLOWER: Role
CANDIDATE: Role
LEADER: Role

class Member(_message.Message):
    __slots__ = ("id", "client_addr", "raft_addr", "is_leader", "match_index", "responsive", "caught_up", "lag_entries", "lag_seconds")
    ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ADDR_FIELD_NUMBER: _ClassVar[int]
    RAFT_ADDR_FIELD_NUMBER: _ClassVar[int]
    IS_LEADER_FIELD_NUMBER: _ClassVar[int]
    MATCH_INDEX_FIELD_NUMBER: _ClassVar[int]
    RESPONSIVE_FIELD_NUMBER: _ClassVar[int]
    CAUGHT_UP_FIELD_NUMBER: _ClassVar[int]
    LAG_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    LAG_SECONDS_FIELD_NUMBER: _ClassVar[int]
    id: str
    client_addr: str
    raft_addr: str
    is_leader: bool
    match_index: int
    responsive: bool
    caught_up: bool
    lag_entries: int
    lag_seconds: float
    def __init__(self, id: _Optional[str] = ..., client_addr: _Optional[str] = ..., raft_addr: _Optional[str] = ..., is_leader: _Optional[bool] = ..., match_index: _Optional[int] = ..., responsive: _Optional[bool] = ..., caught_up: _Optional[bool] = ..., lag_entries: _Optional[int] = ..., lag_seconds: _Optional[float] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("node_id", "role", "term", "leader_id", "leader_client_addr", "commit_index", "applied_index", "cluster_time_ms", "members", "client_addr", "raft_addr", "keys", "digest", "leader_commit_index", "max_tick_gap_ms", "snapshots_taken", "durability", "hits", "misses", "evictions", "expired_keys", "memory_used_bytes", "max_memory_bytes", "eviction_policy", "subscribers", "watchers", "batch_rpcs", "batch_ops", "forwarded_unary", "forwarded_batches", "forwarded_batched_ops", "cluster_id")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    LEADER_CLIENT_ADDR_FIELD_NUMBER: _ClassVar[int]
    COMMIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    APPLIED_INDEX_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ADDR_FIELD_NUMBER: _ClassVar[int]
    RAFT_ADDR_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    LEADER_COMMIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    MAX_TICK_GAP_MS_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOTS_TAKEN_FIELD_NUMBER: _ClassVar[int]
    DURABILITY_FIELD_NUMBER: _ClassVar[int]
    HITS_FIELD_NUMBER: _ClassVar[int]
    MISSES_FIELD_NUMBER: _ClassVar[int]
    EVICTIONS_FIELD_NUMBER: _ClassVar[int]
    EXPIRED_KEYS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    EVICTION_POLICY_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBERS_FIELD_NUMBER: _ClassVar[int]
    WATCHERS_FIELD_NUMBER: _ClassVar[int]
    BATCH_RPCS_FIELD_NUMBER: _ClassVar[int]
    BATCH_OPS_FIELD_NUMBER: _ClassVar[int]
    FORWARDED_UNARY_FIELD_NUMBER: _ClassVar[int]
    FORWARDED_BATCHES_FIELD_NUMBER: _ClassVar[int]
    FORWARDED_BATCHED_OPS_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    role: Role
    term: int
    leader_id: str
    leader_client_addr: str
    commit_index: int
    applied_index: int
    cluster_time_ms: int
    members: _containers.RepeatedCompositeFieldContainer[Member]
    client_addr: str
    raft_addr: str
    keys: int
    digest: str
    leader_commit_index: int
    max_tick_gap_ms: float
    snapshots_taken: int
    durability: str
    hits: int
    misses: int
    evictions: int
    expired_keys: int
    memory_used_bytes: int
    max_memory_bytes: int
    eviction_policy: str
    subscribers: int
    watchers: int
    batch_rpcs: int
    batch_ops: int
    forwarded_unary: int
    forwarded_batches: int
    forwarded_batched_ops: int
    cluster_id: str
    def __init__(self, node_id: _Optional[str] = ..., role: _Optional[_Union[Role, str]] = ..., term: _Optional[int] = ..., leader_id: _Optional[str] = ..., leader_client_addr: _Optional[str] = ..., commit_index: _Optional[int] = ..., applied_index: _Optional[int] = ..., cluster_time_ms: _Optional[int] = ..., members: _Optional[_Iterable[_Union[Member, _Mapping]]] = ..., client_addr: _Optional[str] = ..., raft_addr: _Optional[str] = ..., keys: _Optional[int] = ..., digest: _Optional[str] = ..., leader_commit_index: _Optional[int] = ..., max_tick_gap_ms: _Optional[float] = ..., snapshots_taken: _Optional[int] = ..., durability: _Optional[str] = ..., hits: _Optional[int] = ..., misses: _Optional[int] = ..., evictions: _Optional[int] = ..., expired_keys: _Optional[int] = ..., memory_used_bytes: _Optional[int] = ..., max_memory_bytes: _Optional[int] = ..., eviction_policy: _Optional[str] = ..., subscribers: _Optional[int] = ..., watchers: _Optional[int] = ..., batch_rpcs: _Optional[int] = ..., batch_ops: _Optional[int] = ..., forwarded_unary: _Optional[int] = ..., forwarded_batches: _Optional[int] = ..., forwarded_batched_ops: _Optional[int] = ..., cluster_id: _Optional[str] = ...) -> None: ...

class SnapshotRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SnapshotResponse(_message.Message):
    __slots__ = ("started",)
    STARTED_FIELD_NUMBER: _ClassVar[int]
    started: bool
    def __init__(self, started: _Optional[bool] = ...) -> None: ...

class BackupRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class BackupChunk(_message.Message):
    __slots__ = ("data", "checksum", "key_count", "applied_index", "revision", "cluster_id")
    DATA_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    KEY_COUNT_FIELD_NUMBER: _ClassVar[int]
    APPLIED_INDEX_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    checksum: bytes
    key_count: int
    applied_index: int
    revision: int
    cluster_id: str
    def __init__(self, data: _Optional[bytes] = ..., checksum: _Optional[bytes] = ..., key_count: _Optional[int] = ..., applied_index: _Optional[int] = ..., revision: _Optional[int] = ..., cluster_id: _Optional[str] = ...) -> None: ...

class SetUserRequest(_message.Message):
    __slots__ = ("name", "rules")
    NAME_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    name: str
    rules: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., rules: _Optional[_Iterable[str]] = ...) -> None: ...

class SetUserResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DeleteUsersRequest(_message.Message):
    __slots__ = ("names",)
    NAMES_FIELD_NUMBER: _ClassVar[int]
    names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, names: _Optional[_Iterable[str]] = ...) -> None: ...

class DeleteUsersResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: int
    def __init__(self, deleted: _Optional[int] = ...) -> None: ...

class ListUsersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListUsersResponse(_message.Message):
    __slots__ = ("users",)
    USERS_FIELD_NUMBER: _ClassVar[int]
    users: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, users: _Optional[_Iterable[str]] = ...) -> None: ...

class GetUserRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetUserResponse(_message.Message):
    __slots__ = ("found", "flags", "passwords", "commands", "keys", "channels")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    PASSWORDS_FIELD_NUMBER: _ClassVar[int]
    COMMANDS_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    found: bool
    flags: _containers.RepeatedScalarFieldContainer[str]
    passwords: _containers.RepeatedScalarFieldContainer[str]
    commands: str
    keys: str
    channels: str
    def __init__(self, found: _Optional[bool] = ..., flags: _Optional[_Iterable[str]] = ..., passwords: _Optional[_Iterable[str]] = ..., commands: _Optional[str] = ..., keys: _Optional[str] = ..., channels: _Optional[str] = ...) -> None: ...

class WhoAmIRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WhoAmIResponse(_message.Message):
    __slots__ = ("user",)
    USER_FIELD_NUMBER: _ClassVar[int]
    user: str
    def __init__(self, user: _Optional[str] = ...) -> None: ...

class ListMembersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListMembersResponse(_message.Message):
    __slots__ = ("members", "leader_id", "commit_index", "pending_change", "read_replicas")
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    COMMIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    PENDING_CHANGE_FIELD_NUMBER: _ClassVar[int]
    READ_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    members: _containers.RepeatedCompositeFieldContainer[Member]
    leader_id: str
    commit_index: int
    pending_change: str
    read_replicas: int
    def __init__(self, members: _Optional[_Iterable[_Union[Member, _Mapping]]] = ..., leader_id: _Optional[str] = ..., commit_index: _Optional[int] = ..., pending_change: _Optional[str] = ..., read_replicas: _Optional[int] = ...) -> None: ...

class AddMemberRequest(_message.Message):
    __slots__ = ("raft_addr", "replaces")
    RAFT_ADDR_FIELD_NUMBER: _ClassVar[int]
    REPLACES_FIELD_NUMBER: _ClassVar[int]
    raft_addr: str
    replaces: str
    def __init__(self, raft_addr: _Optional[str] = ..., replaces: _Optional[str] = ...) -> None: ...

class MemberChangeResponse(_message.Message):
    __slots__ = ("membership",)
    MEMBERSHIP_FIELD_NUMBER: _ClassVar[int]
    membership: ListMembersResponse
    def __init__(self, membership: _Optional[_Union[ListMembersResponse, _Mapping]] = ...) -> None: ...

class RemoveMemberRequest(_message.Message):
    __slots__ = ("member",)
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    member: str
    def __init__(self, member: _Optional[str] = ...) -> None: ...

class TransferLeadershipRequest(_message.Message):
    __slots__ = ("target", "timeout_s")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    target: str
    timeout_s: float
    def __init__(self, target: _Optional[str] = ..., timeout_s: _Optional[float] = ...) -> None: ...

class TransferLeadershipResponse(_message.Message):
    __slots__ = ("leader_id", "leader_raft_addr")
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    LEADER_RAFT_ADDR_FIELD_NUMBER: _ClassVar[int]
    leader_id: str
    leader_raft_addr: str
    def __init__(self, leader_id: _Optional[str] = ..., leader_raft_addr: _Optional[str] = ...) -> None: ...
