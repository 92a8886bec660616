from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Consistency(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LINEARIZABLE: _ClassVar[Consistency]
    STALE: _ClassVar[Consistency]

class Condition(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONDITION_NONE: _ClassVar[Condition]
    IF_ABSENT: _ClassVar[Condition]
    IF_PRESENT: _ClassVar[Condition]

class End(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LEFT: _ClassVar[End]
    RIGHT: _ClassVar[End]
LINEARIZABLE: Consistency
STALE: Consistency
CONDITION_NONE: Condition
IF_ABSENT: Condition
IF_PRESENT: Condition
LEFT: End
RIGHT: End

class RequestId(_message.Message):
    __slots__ = ("client_id", "seq", "done_below")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    DONE_BELOW_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    seq: int
    done_below: int
    def __init__(self, client_id: _Optional[str] = ..., seq: _Optional[int] = ..., done_below: _Optional[int] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("key", "consistency", "max_staleness_ms")
    KEY_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    MAX_STALENESS_MS_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    consistency: Consistency
    max_staleness_ms: int
    def __init__(self, key: _Optional[bytes] = ..., consistency: _Optional[_Union[Consistency, str]] = ..., max_staleness_ms: _Optional[int] = ...) -> None: ...

class GetResponse(_message.Message):
    __slots__ = ("found", "value", "version", "ttl_ms")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    found: bool
    value: bytes
    version: int
    ttl_ms: int
    def __init__(self, found: _Optional[bool] = ..., value: _Optional[bytes] = ..., version: _Optional[int] = ..., ttl_ms: _Optional[int] = ...) -> None: ...

class SetRequest(_message.Message):
    __slots__ = ("key", "value", "ttl_ms", "condition", "expected_version", "request_id")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    CONDITION_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    value: bytes
    ttl_ms: int
    condition: Condition
    expected_version: int
    request_id: RequestId
    def __init__(self, key: _Optional[bytes] = ..., value: _Optional[bytes] = ..., ttl_ms: _Optional[int] = ..., condition: _Optional[_Union[Condition, str]] = ..., expected_version: _Optional[int] = ..., request_id: _Optional[_Union[RequestId, _Mapping]] = ...) -> None: ...

class SetResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: int
    def __init__(self, version: _Optional[int] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("key", "request_id")
    KEY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    request_id: RequestId
    def __init__(self, key: _Optional[bytes] = ..., request_id: _Optional[_Union[RequestId, _Mapping]] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: bool
    def __init__(self, deleted: _Optional[bool] = ...) -> None: ...

class IncrRequest(_message.Message):
    __slots__ = ("key", "delta", "ttl_ms", "request_id")
    KEY_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    delta: int
    ttl_ms: int
    request_id: RequestId
    def __init__(self, key: _Optional[bytes] = ..., delta: _Optional[int] = ..., ttl_ms: _Optional[int] = ..., request_id: _Optional[_Union[RequestId, _Mapping]] = ...) -> None: ...

class IncrResponse(_message.Message):
    __slots__ = ("value", "version")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    value: int
    version: int
    def __init__(self, value: _Optional[int] = ..., version: _Optional[int] = ...) -> None: ...

class MGetRequest(_message.Message):
    __slots__ = ("keys", "consistency", "max_staleness_ms")
    KEYS_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    MAX_STALENESS_MS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedScalarFieldContainer[bytes]
    consistency: Consistency
    max_staleness_ms: int
    def __init__(self, keys: _Optional[_Iterable[bytes]] = ..., consistency: _Optional[_Union[Consistency, str]] = ..., max_staleness_ms: _Optional[int] = ...) -> None: ...

class MGetResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[GetResponse]
    def __init__(self, results: _Optional[_Iterable[_Union[GetResponse, _Mapping]]] = ...) -> None: ...

class KeyValue(_message.Message):
    __slots__ = ("key", "value", "ttl_ms")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    value: bytes
    ttl_ms: int
    def __init__(self, key: _Optional[bytes] = ..., value: _Optional[bytes] = ..., ttl_ms: _Optional[int] = ...) -> None: ...

class MSetRequest(_message.Message):
    __slots__ = ("entries", "request_id")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[KeyValue]
    request_id: RequestId
    def __init__(self, entries: _Optional[_Iterable[_Union[KeyValue, _Mapping]]] = ..., request_id: _Optional[_Union[RequestId, _Mapping]] = ...) -> None: ...

class MSetResponse(_message.Message):
    __slots__ = ("versions",)
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    versions: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, versions: _Optional[_Iterable[int]] = ...) -> None: ...

class FieldValue(_message.Message):
    __slots__ = ("field", "value")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    field: bytes
    value: bytes
    def __init__(self, field: _Optional[bytes] = ..., value: _Optional[bytes] = ...) -> None: ...

class ScoredMember(_message.Message):
    __slots__ = ("member", "score")
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    member: bytes
    score: float
    def __init__(self, member: _Optional[bytes] = ..., score: _Optional[float] = ...) -> None: ...

class ScoreBound(_message.Message):
    __slots__ = ("value", "exclusive")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    EXCLUSIVE_FIELD_NUMBER: _ClassVar[int]
    value: float
    exclusive: bool
    def __init__(self, value: _Optional[float] = ..., exclusive: _Optional[bool] = ...) -> None: ...

class StrGet(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    def __init__(self, key: _Optional[bytes] = ...) -> None: ...

class StrSet(_message.Message):
    __slots__ = ("key", "value", "ttl_ms")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    value: bytes
    ttl_ms: int
    def __init__(self, key: _Optional[bytes] = ..., value: _Optional[bytes] = ..., ttl_ms: _Optional[int] = ...) -> None: ...

class KeyDelete(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    def __init__(self, key: _Optional[bytes] = ...) -> None: ...

class StrIncr(_message.Message):
    __slots__ = ("key", "delta")
    KEY_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    delta: int
    def __init__(self, key: _Optional[bytes] = ..., delta: _Optional[int] = ...) -> None: ...

class HSet(_message.Message):
    __slots__ = ("key", "fields")
    KEY_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    fields: _containers.RepeatedCompositeFieldContainer[FieldValue]
    def __init__(self, key: _Optional[bytes] = ..., fields: _Optional[_Iterable[_Union[FieldValue, _Mapping]]] = ...) -> None: ...

class HGet(_message.Message):
    __slots__ = ("key", "field")
    KEY_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    field: bytes
    def __init__(self, key: _Optional[bytes] = ..., field: _Optional[bytes] = ...) -> None: ...

class HGetAll(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    def __init__(self, key: _Optional[bytes] = ...) -> None: ...

class HDel(_message.Message):
    __slots__ = ("key", "fields")
    KEY_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    fields: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, key: _Optional[bytes] = ..., fields: _Optional[_Iterable[bytes]] = ...) -> None: ...

class HIncrBy(_message.Message):
    __slots__ = ("key", "field", "delta")
    KEY_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    field: bytes
    delta: int
    def __init__(self, key: _Optional[bytes] = ..., field: _Optional[bytes] = ..., delta: _Optional[int] = ...) -> None: ...

class HLen(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    def __init__(self, key: _Optional[bytes] = ...) -> None: ...

class ZAdd(_message.Message):
    __slots__ = ("key", "members")
    KEY_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    members: _containers.RepeatedCompositeFieldContainer[ScoredMember]
    def __init__(self, key: _Optional[bytes] = ..., members: _Optional[_Iterable[_Union[ScoredMember, _Mapping]]] = ...) -> None: ...

class ZIncrBy(_message.Message):
    __slots__ = ("key", "member", "delta")
    KEY_FIELD_NUMBER: _ClassVar[int]
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    member: bytes
    delta: float
    def __init__(self, key: _Optional[bytes] = ..., member: _Optional[bytes] = ..., delta: _Optional[float] = ...) -> None: ...

class ZScore(_message.Message):
    __slots__ = ("key", "member")
    KEY_FIELD_NUMBER: _ClassVar[int]
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    member: bytes
    def __init__(self, key: _Optional[bytes] = ..., member: _Optional[bytes] = ...) -> None: ...

class ZRank(_message.Message):
    __slots__ = ("key", "member", "reverse")
    KEY_FIELD_NUMBER: _ClassVar[int]
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    REVERSE_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    member: bytes
    reverse: bool
    def __init__(self, key: _Optional[bytes] = ..., member: _Optional[bytes] = ..., reverse: _Optional[bool] = ...) -> None: ...

class ZRange(_message.Message):
    __slots__ = ("key", "start", "stop", "reverse")
    KEY_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    REVERSE_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    start: int
    stop: int
    reverse: bool
    def __init__(self, key: _Optional[bytes] = ..., start: _Optional[int] = ..., stop: _Optional[int] = ..., reverse: _Optional[bool] = ...) -> None: ...

class ZRangeByScore(_message.Message):
    __slots__ = ("key", "min", "max", "reverse", "offset", "limit")
    KEY_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    REVERSE_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    min: ScoreBound
    max: ScoreBound
    reverse: bool
    offset: int
    limit: int
    def __init__(self, key: _Optional[bytes] = ..., min: _Optional[_Union[ScoreBound, _Mapping]] = ..., max: _Optional[_Union[ScoreBound, _Mapping]] = ..., reverse: _Optional[bool] = ..., offset: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class ZRem(_message.Message):
    __slots__ = ("key", "members")
    KEY_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    members: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, key: _Optional[bytes] = ..., members: _Optional[_Iterable[bytes]] = ...) -> None: ...

class ZCard(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    def __init__(self, key: _Optional[bytes] = ...) -> None: ...

class ZCount(_message.Message):
    __slots__ = ("key", "min", "max")
    KEY_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    min: ScoreBound
    max: ScoreBound
    def __init__(self, key: _Optional[bytes] = ..., min: _Optional[_Union[ScoreBound, _Mapping]] = ..., max: _Optional[_Union[ScoreBound, _Mapping]] = ...) -> None: ...

class Push(_message.Message):
    __slots__ = ("key", "values", "end")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    values: _containers.RepeatedScalarFieldContainer[bytes]
    end: End
    def __init__(self, key: _Optional[bytes] = ..., values: _Optional[_Iterable[bytes]] = ..., end: _Optional[_Union[End, str]] = ...) -> None: ...

class Pop(_message.Message):
    __slots__ = ("key", "count", "end")
    KEY_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    count: int
    end: End
    def __init__(self, key: _Optional[bytes] = ..., count: _Optional[int] = ..., end: _Optional[_Union[End, str]] = ...) -> None: ...

class LRange(_message.Message):
    __slots__ = ("key", "start", "stop")
    KEY_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    start: int
    stop: int
    def __init__(self, key: _Optional[bytes] = ..., start: _Optional[int] = ..., stop: _Optional[int] = ...) -> None: ...

class LLen(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    def __init__(self, key: _Optional[bytes] = ...) -> None: ...

class SAdd(_message.Message):
    __slots__ = ("key", "members")
    KEY_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    members: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, key: _Optional[bytes] = ..., members: _Optional[_Iterable[bytes]] = ...) -> None: ...

class SRem(_message.Message):
    __slots__ = ("key", "members")
    KEY_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    members: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, key: _Optional[bytes] = ..., members: _Optional[_Iterable[bytes]] = ...) -> None: ...

class SMembers(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    def __init__(self, key: _Optional[bytes] = ...) -> None: ...

class SIsMember(_message.Message):
    __slots__ = ("key", "member")
    KEY_FIELD_NUMBER: _ClassVar[int]
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    member: bytes
    def __init__(self, key: _Optional[bytes] = ..., member: _Optional[bytes] = ...) -> None: ...

class SCard(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    def __init__(self, key: _Optional[bytes] = ...) -> None: ...

class Expire(_message.Message):
    __slots__ = ("key", "ttl_ms")
    KEY_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    ttl_ms: int
    def __init__(self, key: _Optional[bytes] = ..., ttl_ms: _Optional[int] = ...) -> None: ...

class Persist(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    def __init__(self, key: _Optional[bytes] = ...) -> None: ...

class Ttl(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    def __init__(self, key: _Optional[bytes] = ...) -> None: ...

class TypeOf(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    def __init__(self, key: _Optional[bytes] = ...) -> None: ...

class DataOp(_message.Message):
    __slots__ = ("get", "set", "delete", "incr", "hset", "hget", "hgetall", "hdel", "hincrby", "hlen", "zadd", "zincrby", "zscore", "zrank", "zrange", "zrangebyscore", "zrem", "zcard", "zcount", "push", "pop", "lrange", "llen", "sadd", "srem", "smembers", "sismember", "scard", "expire", "persist", "ttl", "type", "call")
    GET_FIELD_NUMBER: _ClassVar[int]
    SET_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    INCR_FIELD_NUMBER: _ClassVar[int]
    HSET_FIELD_NUMBER: _ClassVar[int]
    HGET_FIELD_NUMBER: _ClassVar[int]
    HGETALL_FIELD_NUMBER: _ClassVar[int]
    HDEL_FIELD_NUMBER: _ClassVar[int]
    HINCRBY_FIELD_NUMBER: _ClassVar[int]
    HLEN_FIELD_NUMBER: _ClassVar[int]
    ZADD_FIELD_NUMBER: _ClassVar[int]
    ZINCRBY_FIELD_NUMBER: _ClassVar[int]
    ZSCORE_FIELD_NUMBER: _ClassVar[int]
    ZRANK_FIELD_NUMBER: _ClassVar[int]
    ZRANGE_FIELD_NUMBER: _ClassVar[int]
    ZRANGEBYSCORE_FIELD_NUMBER: _ClassVar[int]
    ZREM_FIELD_NUMBER: _ClassVar[int]
    ZCARD_FIELD_NUMBER: _ClassVar[int]
    ZCOUNT_FIELD_NUMBER: _ClassVar[int]
    PUSH_FIELD_NUMBER: _ClassVar[int]
    POP_FIELD_NUMBER: _ClassVar[int]
    LRANGE_FIELD_NUMBER: _ClassVar[int]
    LLEN_FIELD_NUMBER: _ClassVar[int]
    SADD_FIELD_NUMBER: _ClassVar[int]
    SREM_FIELD_NUMBER: _ClassVar[int]
    SMEMBERS_FIELD_NUMBER: _ClassVar[int]
    SISMEMBER_FIELD_NUMBER: _ClassVar[int]
    SCARD_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_FIELD_NUMBER: _ClassVar[int]
    PERSIST_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    CALL_FIELD_NUMBER: _ClassVar[int]
    get: StrGet
    set: StrSet
    delete: KeyDelete
    incr: StrIncr
    hset: HSet
    hget: HGet
    hgetall: HGetAll
    hdel: HDel
    hincrby: HIncrBy
    hlen: HLen
    zadd: ZAdd
    zincrby: ZIncrBy
    zscore: ZScore
    zrank: ZRank
    zrange: ZRange
    zrangebyscore: ZRangeByScore
    zrem: ZRem
    zcard: ZCard
    zcount: ZCount
    push: Push
    pop: Pop
    lrange: LRange
    llen: LLen
    sadd: SAdd
    srem: SRem
    smembers: SMembers
    sismember: SIsMember
    scard: SCard
    expire: Expire
    persist: Persist
    ttl: Ttl
    type: TypeOf
    call: RedisCall
    def __init__(self, get: _Optional[_Union[StrGet, _Mapping]] = ..., set: _Optional[_Union[StrSet, _Mapping]] = ..., delete: _Optional[_Union[KeyDelete, _Mapping]] = ..., incr: _Optional[_Union[StrIncr, _Mapping]] = ..., hset: _Optional[_Union[HSet, _Mapping]] = ..., hget: _Optional[_Union[HGet, _Mapping]] = ..., hgetall: _Optional[_Union[HGetAll, _Mapping]] = ..., hdel: _Optional[_Union[HDel, _Mapping]] = ..., hincrby: _Optional[_Union[HIncrBy, _Mapping]] = ..., hlen: _Optional[_Union[HLen, _Mapping]] = ..., zadd: _Optional[_Union[ZAdd, _Mapping]] = ..., zincrby: _Optional[_Union[ZIncrBy, _Mapping]] = ..., zscore: _Optional[_Union[ZScore, _Mapping]] = ..., zrank: _Optional[_Union[ZRank, _Mapping]] = ..., zrange: _Optional[_Union[ZRange, _Mapping]] = ..., zrangebyscore: _Optional[_Union[ZRangeByScore, _Mapping]] = ..., zrem: _Optional[_Union[ZRem, _Mapping]] = ..., zcard: _Optional[_Union[ZCard, _Mapping]] = ..., zcount: _Optional[_Union[ZCount, _Mapping]] = ..., push: _Optional[_Union[Push, _Mapping]] = ..., pop: _Optional[_Union[Pop, _Mapping]] = ..., lrange: _Optional[_Union[LRange, _Mapping]] = ..., llen: _Optional[_Union[LLen, _Mapping]] = ..., sadd: _Optional[_Union[SAdd, _Mapping]] = ..., srem: _Optional[_Union[SRem, _Mapping]] = ..., smembers: _Optional[_Union[SMembers, _Mapping]] = ..., sismember: _Optional[_Union[SIsMember, _Mapping]] = ..., scard: _Optional[_Union[SCard, _Mapping]] = ..., expire: _Optional[_Union[Expire, _Mapping]] = ..., persist: _Optional[_Union[Persist, _Mapping]] = ..., ttl: _Optional[_Union[Ttl, _Mapping]] = ..., type: _Optional[_Union[TypeOf, _Mapping]] = ..., call: _Optional[_Union[RedisCall, _Mapping]] = ...) -> None: ...

class RedisCall(_message.Message):
    __slots__ = ("argv", "db", "user")
    ARGV_FIELD_NUMBER: _ClassVar[int]
    DB_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    argv: _containers.RepeatedScalarFieldContainer[bytes]
    db: int
    user: str
    def __init__(self, argv: _Optional[_Iterable[bytes]] = ..., db: _Optional[int] = ..., user: _Optional[str] = ...) -> None: ...

class Reply(_message.Message):
    __slots__ = ("bulk", "int", "status", "error", "null", "null_array", "double", "array", "map", "set", "boolean", "pairs", "keyed")
    BULK_FIELD_NUMBER: _ClassVar[int]
    INT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    NULL_FIELD_NUMBER: _ClassVar[int]
    NULL_ARRAY_FIELD_NUMBER: _ClassVar[int]
    DOUBLE_FIELD_NUMBER: _ClassVar[int]
    ARRAY_FIELD_NUMBER: _ClassVar[int]
    MAP_FIELD_NUMBER: _ClassVar[int]
    SET_FIELD_NUMBER: _ClassVar[int]
    BOOLEAN_FIELD_NUMBER: _ClassVar[int]
    PAIRS_FIELD_NUMBER: _ClassVar[int]
    KEYED_FIELD_NUMBER: _ClassVar[int]
    bulk: bytes
    int: int
    status: str
    error: str
    null: bool
    null_array: bool
    double: float
    array: Replies
    map: Replies
    set: Replies
    boolean: bool
    pairs: Replies
    keyed: Replies
    def __init__(self, bulk: _Optional[bytes] = ..., int: _Optional[int] = ..., status: _Optional[str] = ..., error: _Optional[str] = ..., null: _Optional[bool] = ..., null_array: _Optional[bool] = ..., double: _Optional[float] = ..., array: _Optional[_Union[Replies, _Mapping]] = ..., map: _Optional[_Union[Replies, _Mapping]] = ..., set: _Optional[_Union[Replies, _Mapping]] = ..., boolean: _Optional[bool] = ..., pairs: _Optional[_Union[Replies, _Mapping]] = ..., keyed: _Optional[_Union[Replies, _Mapping]] = ...) -> None: ...

class Replies(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Reply]
    def __init__(self, items: _Optional[_Iterable[_Union[Reply, _Mapping]]] = ...) -> None: ...

class BytesList(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, items: _Optional[_Iterable[bytes]] = ...) -> None: ...

class FieldValues(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[FieldValue]
    def __init__(self, items: _Optional[_Iterable[_Union[FieldValue, _Mapping]]] = ...) -> None: ...

class ScoredMembers(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[ScoredMember]
    def __init__(self, items: _Optional[_Iterable[_Union[ScoredMember, _Mapping]]] = ...) -> None: ...

class Value(_message.Message):
    __slots__ = ("nil", "int", "score", "bytes", "list", "fields", "scored", "text", "reply")
    NIL_FIELD_NUMBER: _ClassVar[int]
    INT_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    LIST_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    SCORED_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    REPLY_FIELD_NUMBER: _ClassVar[int]
    nil: bool
    int: int
    score: float
    bytes: bytes
    list: BytesList
    fields: FieldValues
    scored: ScoredMembers
    text: str
    reply: Reply
    def __init__(self, nil: _Optional[bool] = ..., int: _Optional[int] = ..., score: _Optional[float] = ..., bytes: _Optional[bytes] = ..., list: _Optional[_Union[BytesList, _Mapping]] = ..., fields: _Optional[_Union[FieldValues, _Mapping]] = ..., scored: _Optional[_Union[ScoredMembers, _Mapping]] = ..., text: _Optional[str] = ..., reply: _Optional[_Union[Reply, _Mapping]] = ...) -> None: ...

class ExecRequest(_message.Message):
    __slots__ = ("op", "consistency", "max_staleness_ms", "request_id")
    OP_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    MAX_STALENESS_MS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    op: DataOp
    consistency: Consistency
    max_staleness_ms: int
    request_id: RequestId
    def __init__(self, op: _Optional[_Union[DataOp, _Mapping]] = ..., consistency: _Optional[_Union[Consistency, str]] = ..., max_staleness_ms: _Optional[int] = ..., request_id: _Optional[_Union[RequestId, _Mapping]] = ...) -> None: ...

class ExecResponse(_message.Message):
    __slots__ = ("value",)
    VALUE_FIELD_NUMBER: _ClassVar[int]
    value: Value
    def __init__(self, value: _Optional[_Union[Value, _Mapping]] = ...) -> None: ...

class Compare(_message.Message):
    __slots__ = ("key", "op", "exists", "version", "value")
    class Op(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        EQUAL: _ClassVar[Compare.Op]
        NOT_EQUAL: _ClassVar[Compare.Op]
        GREATER: _ClassVar[Compare.Op]
        LESS: _ClassVar[Compare.Op]
    EQUAL: Compare.Op
    NOT_EQUAL: Compare.Op
    GREATER: Compare.Op
    LESS: Compare.Op
    KEY_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    EXISTS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    op: Compare.Op
    exists: bool
    version: int
    value: bytes
    def __init__(self, key: _Optional[bytes] = ..., op: _Optional[_Union[Compare.Op, str]] = ..., exists: _Optional[bool] = ..., version: _Optional[int] = ..., value: _Optional[bytes] = ...) -> None: ...

class TxnRequest(_message.Message):
    __slots__ = ("compares", "success", "failure", "request_id")
    COMPARES_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    compares: _containers.RepeatedCompositeFieldContainer[Compare]
    success: _containers.RepeatedCompositeFieldContainer[DataOp]
    failure: _containers.RepeatedCompositeFieldContainer[DataOp]
    request_id: RequestId
    def __init__(self, compares: _Optional[_Iterable[_Union[Compare, _Mapping]]] = ..., success: _Optional[_Iterable[_Union[DataOp, _Mapping]]] = ..., failure: _Optional[_Iterable[_Union[DataOp, _Mapping]]] = ..., request_id: _Optional[_Union[RequestId, _Mapping]] = ...) -> None: ...

class TxnResponse(_message.Message):
    __slots__ = ("succeeded", "results")
    SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    succeeded: bool
    results: _containers.RepeatedCompositeFieldContainer[Value]
    def __init__(self, succeeded: _Optional[bool] = ..., results: _Optional[_Iterable[_Union[Value, _Mapping]]] = ...) -> None: ...

class ScanRequest(_message.Message):
    __slots__ = ("cursor", "prefix", "count", "consistency", "max_staleness_ms")
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    MAX_STALENESS_MS_FIELD_NUMBER: _ClassVar[int]
    cursor: bytes
    prefix: bytes
    count: int
    consistency: Consistency
    max_staleness_ms: int
    def __init__(self, cursor: _Optional[bytes] = ..., prefix: _Optional[bytes] = ..., count: _Optional[int] = ..., consistency: _Optional[_Union[Consistency, str]] = ..., max_staleness_ms: _Optional[int] = ...) -> None: ...

class ScanResponse(_message.Message):
    __slots__ = ("keys", "next_cursor")
    KEYS_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedScalarFieldContainer[bytes]
    next_cursor: bytes
    def __init__(self, keys: _Optional[_Iterable[bytes]] = ..., next_cursor: _Optional[bytes] = ...) -> None: ...

class PublishRequest(_message.Message):
    __slots__ = ("channel", "message", "request_id")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    channel: bytes
    message: bytes
    request_id: RequestId
    def __init__(self, channel: _Optional[bytes] = ..., message: _Optional[bytes] = ..., request_id: _Optional[_Union[RequestId, _Mapping]] = ...) -> None: ...

class PublishResponse(_message.Message):
    __slots__ = ("receivers",)
    RECEIVERS_FIELD_NUMBER: _ClassVar[int]
    receivers: int
    def __init__(self, receivers: _Optional[int] = ...) -> None: ...

class SubscribeRequest(_message.Message):
    __slots__ = ("channels", "patterns")
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    PATTERNS_FIELD_NUMBER: _ClassVar[int]
    channels: _containers.RepeatedScalarFieldContainer[bytes]
    patterns: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, channels: _Optional[_Iterable[bytes]] = ..., patterns: _Optional[_Iterable[bytes]] = ...) -> None: ...

class PubSubMessage(_message.Message):
    __slots__ = ("channel", "message", "pattern")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PATTERN_FIELD_NUMBER: _ClassVar[int]
    channel: bytes
    message: bytes
    pattern: bytes
    def __init__(self, channel: _Optional[bytes] = ..., message: _Optional[bytes] = ..., pattern: _Optional[bytes] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("key", "prefix", "start_revision")
    KEY_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    START_REVISION_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    prefix: bool
    start_revision: int
    def __init__(self, key: _Optional[bytes] = ..., prefix: _Optional[bool] = ..., start_revision: _Optional[int] = ...) -> None: ...

class WatchEvent(_message.Message):
    __slots__ = ("kind", "key", "revision", "value", "type")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        SET: _ClassVar[WatchEvent.Kind]
        DELETE: _ClassVar[WatchEvent.Kind]
        EXPIRE: _ClassVar[WatchEvent.Kind]
        EVICT: _ClassVar[WatchEvent.Kind]
    SET: WatchEvent.Kind
    DELETE: WatchEvent.Kind
    EXPIRE: WatchEvent.Kind
    EVICT: WatchEvent.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    kind: WatchEvent.Kind
    key: bytes
    revision: int
    value: bytes
    type: str
    def __init__(self, kind: _Optional[_Union[WatchEvent.Kind, str]] = ..., key: _Optional[bytes] = ..., revision: _Optional[int] = ..., value: _Optional[bytes] = ..., type: _Optional[str] = ...) -> None: ...

class BatchOp(_message.Message):
    __slots__ = ("get", "set", "delete", "incr", "exec")
    GET_FIELD_NUMBER: _ClassVar[int]
    SET_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    INCR_FIELD_NUMBER: _ClassVar[int]
    EXEC_FIELD_NUMBER: _ClassVar[int]
    get: GetRequest
    set: SetRequest
    delete: DeleteRequest
    incr: IncrRequest
    exec: ExecRequest
    def __init__(self, get: _Optional[_Union[GetRequest, _Mapping]] = ..., set: _Optional[_Union[SetRequest, _Mapping]] = ..., delete: _Optional[_Union[DeleteRequest, _Mapping]] = ..., incr: _Optional[_Union[IncrRequest, _Mapping]] = ..., exec: _Optional[_Union[ExecRequest, _Mapping]] = ...) -> None: ...

class BatchRequest(_message.Message):
    __slots__ = ("ops",)
    OPS_FIELD_NUMBER: _ClassVar[int]
    ops: _containers.RepeatedCompositeFieldContainer[BatchOp]
    def __init__(self, ops: _Optional[_Iterable[_Union[BatchOp, _Mapping]]] = ...) -> None: ...

class OpError(_message.Message):
    __slots__ = ("code", "message", "origin", "leader")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    origin: str
    leader: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., origin: _Optional[str] = ..., leader: _Optional[str] = ...) -> None: ...

class BatchResult(_message.Message):
    __slots__ = ("get", "set", "delete", "incr", "exec", "error")
    GET_FIELD_NUMBER: _ClassVar[int]
    SET_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    INCR_FIELD_NUMBER: _ClassVar[int]
    EXEC_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    get: GetResponse
    set: SetResponse
    delete: DeleteResponse
    incr: IncrResponse
    exec: ExecResponse
    error: OpError
    def __init__(self, get: _Optional[_Union[GetResponse, _Mapping]] = ..., set: _Optional[_Union[SetResponse, _Mapping]] = ..., delete: _Optional[_Union[DeleteResponse, _Mapping]] = ..., incr: _Optional[_Union[IncrResponse, _Mapping]] = ..., exec: _Optional[_Union[ExecResponse, _Mapping]] = ..., error: _Optional[_Union[OpError, _Mapping]] = ...) -> None: ...

class BatchResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[BatchResult]
    def __init__(self, results: _Optional[_Iterable[_Union[BatchResult, _Mapping]]] = ...) -> None: ...
