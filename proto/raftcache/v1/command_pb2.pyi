from raftcache.v1 import cache_pb2 as _cache_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class OpRequestId(_message.Message):
    __slots__ = ("client_id", "seq", "done_below")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    DONE_BELOW_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    seq: int
    done_below: int
    def __init__(self, client_id: _Optional[str] = ..., seq: _Optional[int] = ..., done_below: _Optional[int] = ...) -> None: ...

class SetOp(_message.Message):
    __slots__ = ("key", "value", "deadline_ms", "condition", "has_expected_version", "expected_version")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_MS_FIELD_NUMBER: _ClassVar[int]
    CONDITION_FIELD_NUMBER: _ClassVar[int]
    HAS_EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    value: bytes
    deadline_ms: int
    condition: int
    has_expected_version: bool
    expected_version: int
    def __init__(self, key: _Optional[bytes] = ..., value: _Optional[bytes] = ..., deadline_ms: _Optional[int] = ..., condition: _Optional[int] = ..., has_expected_version: _Optional[bool] = ..., expected_version: _Optional[int] = ...) -> None: ...

class DeleteOp(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    def __init__(self, key: _Optional[bytes] = ...) -> None: ...

class IncrOp(_message.Message):
    __slots__ = ("key", "delta", "deadline_ms")
    KEY_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_MS_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    delta: int
    deadline_ms: int
    def __init__(self, key: _Optional[bytes] = ..., delta: _Optional[int] = ..., deadline_ms: _Optional[int] = ...) -> None: ...

class MSetOp(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[SetOp]
    def __init__(self, entries: _Optional[_Iterable[_Union[SetOp, _Mapping]]] = ...) -> None: ...

class AnnounceOp(_message.Message):
    __slots__ = ("node_id", "raft_addr", "client_addr", "redis_addr", "memcached_addr")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    RAFT_ADDR_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ADDR_FIELD_NUMBER: _ClassVar[int]
    REDIS_ADDR_FIELD_NUMBER: _ClassVar[int]
    MEMCACHED_ADDR_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    raft_addr: str
    client_addr: str
    redis_addr: str
    memcached_addr: str
    def __init__(self, node_id: _Optional[str] = ..., raft_addr: _Optional[str] = ..., client_addr: _Optional[str] = ..., redis_addr: _Optional[str] = ..., memcached_addr: _Optional[str] = ...) -> None: ...

class DataCmd(_message.Message):
    __slots__ = ("op", "deadline_ms")
    OP_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_MS_FIELD_NUMBER: _ClassVar[int]
    op: _cache_pb2.DataOp
    deadline_ms: int
    def __init__(self, op: _Optional[_Union[_cache_pb2.DataOp, _Mapping]] = ..., deadline_ms: _Optional[int] = ...) -> None: ...

class TxnOp(_message.Message):
    __slots__ = ("compares", "success", "failure")
    COMPARES_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    compares: _containers.RepeatedCompositeFieldContainer[_cache_pb2.Compare]
    success: _containers.RepeatedCompositeFieldContainer[DataCmd]
    failure: _containers.RepeatedCompositeFieldContainer[DataCmd]
    def __init__(self, compares: _Optional[_Iterable[_Union[_cache_pb2.Compare, _Mapping]]] = ..., success: _Optional[_Iterable[_Union[DataCmd, _Mapping]]] = ..., failure: _Optional[_Iterable[_Union[DataCmd, _Mapping]]] = ...) -> None: ...

class EvictOp(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, keys: _Optional[_Iterable[bytes]] = ...) -> None: ...

class PublishOp(_message.Message):
    __slots__ = ("channel", "message")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    channel: bytes
    message: bytes
    def __init__(self, channel: _Optional[bytes] = ..., message: _Optional[bytes] = ...) -> None: ...

class ConfigOp(_message.Message):
    __slots__ = ("max_memory", "eviction_policy")
    MAX_MEMORY_FIELD_NUMBER: _ClassVar[int]
    EVICTION_POLICY_FIELD_NUMBER: _ClassVar[int]
    max_memory: int
    eviction_policy: str
    def __init__(self, max_memory: _Optional[int] = ..., eviction_policy: _Optional[str] = ...) -> None: ...

class Op(_message.Message):
    __slots__ = ("request_id", "set", "delete", "incr", "mset", "announce", "data", "txn", "evict", "publish", "config")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SET_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    INCR_FIELD_NUMBER: _ClassVar[int]
    MSET_FIELD_NUMBER: _ClassVar[int]
    ANNOUNCE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    TXN_FIELD_NUMBER: _ClassVar[int]
    EVICT_FIELD_NUMBER: _ClassVar[int]
    PUBLISH_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    request_id: OpRequestId
    set: SetOp
    delete: DeleteOp
    incr: IncrOp
    mset: MSetOp
    announce: AnnounceOp
    data: DataCmd
    txn: TxnOp
    evict: EvictOp
    publish: PublishOp
    config: ConfigOp
    def __init__(self, request_id: _Optional[_Union[OpRequestId, _Mapping]] = ..., set: _Optional[_Union[SetOp, _Mapping]] = ..., delete: _Optional[_Union[DeleteOp, _Mapping]] = ..., incr: _Optional[_Union[IncrOp, _Mapping]] = ..., mset: _Optional[_Union[MSetOp, _Mapping]] = ..., announce: _Optional[_Union[AnnounceOp, _Mapping]] = ..., data: _Optional[_Union[DataCmd, _Mapping]] = ..., txn: _Optional[_Union[TxnOp, _Mapping]] = ..., evict: _Optional[_Union[EvictOp, _Mapping]] = ..., publish: _Optional[_Union[PublishOp, _Mapping]] = ..., config: _Optional[_Union[ConfigOp, _Mapping]] = ...) -> None: ...

class Command(_message.Message):
    __slots__ = ("format", "now_ms", "ops")
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    NOW_MS_FIELD_NUMBER: _ClassVar[int]
    OPS_FIELD_NUMBER: _ClassVar[int]
    format: int
    now_ms: int
    ops: _containers.RepeatedCompositeFieldContainer[Op]
    def __init__(self, format: _Optional[int] = ..., now_ms: _Optional[int] = ..., ops: _Optional[_Iterable[_Union[Op, _Mapping]]] = ...) -> None: ...
