"""Request validation and op building: bad input is refused with a helpful message."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from raftcache.node import requests
from raftcache.node.errors import CacheError, InvalidInput
from raftcache.node.keyspace.db import DB_PREFIX
from raftcache.node.requests import MAX_TTL_MS, Limits
from raftcache.node.state_machine import SetOk, StateMachine
from raftcache.v1 import cache_pb2, command_pb2

DEFAULT = Limits()
SMALL = Limits(max_key_bytes=4, max_value_bytes=8, max_batch_keys=3)
NOW = 1_700_000_000_000
KiB = 1024
MiB = 1024 * KiB


@contextmanager
def refused(*fragments: str) -> Iterator[None]:
    """The block must raise InvalidInput whose message contains every fragment."""
    with pytest.raises(InvalidInput) as exc:
        yield
    for fragment in fragments:
        assert fragment in str(exc.value), f"{fragment!r} not in {str(exc.value)!r}"


def test_invalid_input_is_a_cache_error_that_is_not_retriable() -> None:
    assert issubclass(InvalidInput, CacheError)
    assert InvalidInput.retriable is False


def test_default_limits() -> None:
    assert (DEFAULT.max_key_bytes, DEFAULT.max_value_bytes) == (64 * KiB, 4 * MiB)


# ------------------------------------------------------------------ keys


def test_empty_key_is_refused() -> None:
    with refused("key is empty", "at least one byte"):
        requests.set_op(cache_pb2.SetRequest(key=b"", value=b"v"), DEFAULT, NOW)


@pytest.mark.parametrize("key", [DB_PREFIX, DB_PREFIX + b"\x03k", DB_PREFIX + b"\x00"])
def test_keys_in_the_prefix_of_redis_databases_are_refused(key: bytes) -> None:
    # Databases 1-15 live under this prefix: a gRPC key there would alias a Redis key.
    with refused("starts with", "reserved for the keys of Redis databases 1-15"):
        requests.set_op(cache_pb2.SetRequest(key=key, value=b"v"), DEFAULT, NOW)
    with refused("keys[1] starts with"):
        requests.check_keys([b"a", key], DEFAULT)


def test_keys_that_merely_resemble_the_prefix_are_accepted() -> None:
    for key in (DB_PREFIX[:-1], b"rcdb\x03k", b"x" + DB_PREFIX):
        requests.check_key(key, DEFAULT)


def test_key_at_the_default_limit_is_accepted_and_one_byte_more_is_refused() -> None:
    requests.check_key(b"k" * (64 * KiB), DEFAULT)
    with refused("key is 65537 bytes", "limit of 65536 bytes", "--max-key-bytes", "shorter key"):
        requests.check_key(b"k" * (64 * KiB + 1), DEFAULT)


def test_value_at_the_default_limit_is_accepted_and_one_byte_more_is_refused() -> None:
    requests.check_value(b"v" * (4 * MiB), DEFAULT)
    request = cache_pb2.SetRequest(key=b"k", value=b"v" * (4 * MiB + 1))
    with refused("value is 4194305 bytes", "limit of 4194304", "--max-value-bytes", "split it"):
        requests.set_op(request, DEFAULT, NOW)


def test_empty_value_is_accepted() -> None:
    op = requests.set_op(cache_pb2.SetRequest(key=b"k", value=b""), DEFAULT, NOW)
    assert op.set.value == b""


def test_custom_limits_are_honoured() -> None:
    requests.set_op(cache_pb2.SetRequest(key=b"kkkk", value=b"v" * 8), SMALL, NOW)
    with refused("key is 5 bytes", "limit of 4 bytes"):
        requests.set_op(cache_pb2.SetRequest(key=b"kkkkk", value=b"v"), SMALL, NOW)
    with refused("value is 9 bytes", "limit of 8 bytes"):
        requests.set_op(cache_pb2.SetRequest(key=b"k", value=b"v" * 9), SMALL, NOW)
    with refused("key is 5 bytes"):
        requests.incr_op(cache_pb2.IncrRequest(key=b"kkkkk", delta=1), SMALL, NOW)
    with refused("key is 5 bytes"):
        requests.delete_op(cache_pb2.DeleteRequest(key=b"kkkkk"), SMALL)
    requests.check_keys([b"a", b"b", b"c"], SMALL)
    with refused("4 keys in one request", "limit of 3", "split the request"):
        requests.check_keys([b"a", b"b", b"c", b"d"], SMALL)
    entries = [cache_pb2.KeyValue(key=b"k", value=b"v")] * 4
    with refused("4 entries in one request", "limit of 3", "split the request"):
        requests.mset_op(cache_pb2.MSetRequest(entries=entries), SMALL, NOW)


# ------------------------------------------------------------------ ttl and enums


@pytest.mark.parametrize("ttl", [-1, -60_000])
def test_negative_ttl_is_refused(ttl: int) -> None:
    fragments = (f"ttl_ms is {ttl}", "cannot be negative", "0 means no expiry")
    with refused(*fragments):
        requests.set_op(cache_pb2.SetRequest(key=b"k", ttl_ms=ttl), DEFAULT, NOW)
    with refused(*fragments):
        requests.incr_op(cache_pb2.IncrRequest(key=b"k", ttl_ms=ttl), DEFAULT, NOW)


def test_ttl_over_ten_years_is_refused() -> None:
    requests.check_ttl(MAX_TTL_MS)
    with refused(f"ttl_ms is {MAX_TTL_MS + 1}", "ten years"):
        requests.check_ttl(MAX_TTL_MS + 1)


@pytest.mark.parametrize("condition", [3, 7, 100])
def test_unknown_condition_is_refused(condition: int) -> None:
    request = cache_pb2.SetRequest(key=b"k", value=b"v", condition=condition)  # type: ignore[arg-type]
    with refused(f"unknown condition {condition}", "IF_ABSENT (1)", "IF_PRESENT (2)"):
        requests.set_op(request, DEFAULT, NOW)


@pytest.mark.parametrize("consistency", [2, 9])
def test_unknown_consistency_is_refused(consistency: int) -> None:
    with refused(f"unknown consistency {consistency}", "LINEARIZABLE (0) or STALE (1)"):
        requests.check_consistency(consistency)


def test_known_consistencies_are_accepted() -> None:
    requests.check_consistency(cache_pb2.LINEARIZABLE)
    requests.check_consistency(cache_pb2.STALE)


# ------------------------------------------------------------------ key lists


def test_empty_key_list_is_refused() -> None:
    with refused("no keys given", "at least one key"):
        requests.check_keys([], DEFAULT)


def test_a_bad_key_in_a_list_is_named_by_its_index() -> None:
    with refused("keys[1] is empty"):
        requests.check_keys([b"a", b"", b"c"], DEFAULT)
    with refused("keys[2] is 5 bytes"):
        requests.check_keys([b"a", b"b", b"ccccc"], SMALL)


def test_empty_mset_is_refused() -> None:
    with refused("no entries given", "at least one key/value"):
        requests.mset_op(cache_pb2.MSetRequest(), DEFAULT, NOW)


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        (cache_pb2.KeyValue(key=b"", value=b"v"), "entries[1].key is empty"),
        (cache_pb2.KeyValue(key=b"kkkkk", value=b"v"), "entries[1].key is 5 bytes"),
        (cache_pb2.KeyValue(key=b"k", value=b"v" * 9), "entries[1].value is 9 bytes"),
        (cache_pb2.KeyValue(key=b"k", value=b"v", ttl_ms=-5), "entries[1].ttl_ms is -5"),
    ],
)
def test_a_bad_mset_entry_is_named_by_its_index(bad: cache_pb2.KeyValue, fragment: str) -> None:
    request = cache_pb2.MSetRequest(entries=[cache_pb2.KeyValue(key=b"ok", value=b"v"), bad])
    with refused(fragment):
        requests.mset_op(request, SMALL, NOW)


# ------------------------------------------------------------------ request ids


def _set(rid: cache_pb2.RequestId) -> command_pb2.Op:
    return requests.set_op(cache_pb2.SetRequest(key=b"k", request_id=rid), DEFAULT, NOW)


def _delete(rid: cache_pb2.RequestId) -> command_pb2.Op:
    return requests.delete_op(cache_pb2.DeleteRequest(key=b"k", request_id=rid), DEFAULT)


def _incr(rid: cache_pb2.RequestId) -> command_pb2.Op:
    return requests.incr_op(cache_pb2.IncrRequest(key=b"k", delta=1, request_id=rid), DEFAULT, NOW)


def _mset(rid: cache_pb2.RequestId) -> command_pb2.Op:
    entries = [cache_pb2.KeyValue(key=b"k")]
    return requests.mset_op(cache_pb2.MSetRequest(entries=entries, request_id=rid), DEFAULT, NOW)


Builder = Callable[[cache_pb2.RequestId], command_pb2.Op]
BUILDER_FNS: list[Builder] = [_set, _delete, _incr, _mset]
BUILDER_IDS = ["set", "delete", "incr", "mset"]


@pytest.mark.parametrize("build", BUILDER_FNS, ids=BUILDER_IDS)
def test_request_id_is_copied_into_the_op(
    build: Builder,
) -> None:
    op = build(cache_pb2.RequestId(client_id="client-1", seq=42))
    assert op.HasField("request_id")
    assert (op.request_id.client_id, op.request_id.seq) == ("client-1", 42)


def test_an_op_without_request_id_has_none() -> None:
    op = requests.incr_op(cache_pb2.IncrRequest(key=b"k", delta=1), DEFAULT, NOW)
    assert not op.HasField("request_id")


@pytest.mark.parametrize("build", BUILDER_FNS, ids=BUILDER_IDS)
@pytest.mark.parametrize(
    ("rid", "fragments"),
    [
        (
            cache_pb2.RequestId(client_id="", seq=1),
            ("request_id.client_id", "1..128 bytes", "got 0"),
        ),
        (cache_pb2.RequestId(client_id="x" * 129, seq=1), ("1..128 bytes", "got 129")),
        # 65 characters but 130 bytes: the limit is in bytes
        (cache_pb2.RequestId(client_id="é" * 65, seq=1), ("1..128 bytes", "got 130")),
        (cache_pb2.RequestId(client_id="c", seq=0), ("request_id.seq must be > 0", "start at 1")),
    ],
    ids=["empty-client", "long-client", "multibyte-client", "seq-zero"],
)
def test_bad_request_ids_are_refused(
    build: Builder,
    rid: cache_pb2.RequestId,
    fragments: tuple[str, ...],
) -> None:
    with refused(*fragments):
        build(rid)


def test_client_id_of_exactly_128_bytes_is_accepted() -> None:
    op = BUILDER_FNS[0](cache_pb2.RequestId(client_id="x" * 128, seq=1))
    assert op.request_id.client_id == "x" * 128


# ------------------------------------------------------------------ valid requests


def test_set_request_becomes_a_set_op_with_an_absolute_deadline() -> None:
    request = cache_pb2.SetRequest(
        key=b"k", value=b"v", ttl_ms=1_500, condition=cache_pb2.IF_PRESENT
    )
    op = requests.set_op(request, DEFAULT, NOW)
    assert op.WhichOneof("kind") == "set"
    s = op.set
    assert (s.key, s.value, s.deadline_ms, s.condition) == (b"k", b"v", NOW + 1_500, 2)
    assert not s.has_expected_version


def test_zero_ttl_means_no_deadline() -> None:
    op = requests.set_op(cache_pb2.SetRequest(key=b"k", value=b"v"), DEFAULT, NOW)
    assert op.set.deadline_ms == 0


def test_expected_version_zero_is_kept_as_must_not_exist() -> None:
    request = cache_pb2.SetRequest(key=b"k", value=b"v", expected_version=0)
    op = requests.set_op(request, DEFAULT, NOW)
    assert op.set.has_expected_version
    assert op.set.expected_version == 0
    sm = StateMachine()
    command = command_pb2.Command(ops=[op, op])
    first, second = sm.apply(command)
    assert first == SetOk(1)
    assert not isinstance(second, SetOk)  # the key exists now


def test_expected_version_is_copied() -> None:
    request = cache_pb2.SetRequest(key=b"k", value=b"v", expected_version=17)
    op = requests.set_op(request, DEFAULT, NOW)
    assert (op.set.has_expected_version, op.set.expected_version) == (True, 17)


def test_delete_request_becomes_a_delete_op() -> None:
    op = requests.delete_op(cache_pb2.DeleteRequest(key=b"k"), DEFAULT)
    assert op.WhichOneof("kind") == "delete"
    assert op.delete.key == b"k"


@pytest.mark.parametrize(("ttl", "deadline"), [(0, 0), (250, NOW + 250)])
def test_incr_request_becomes_an_incr_op(ttl: int, deadline: int) -> None:
    op = requests.incr_op(cache_pb2.IncrRequest(key=b"n", delta=-9, ttl_ms=ttl), DEFAULT, NOW)
    assert op.WhichOneof("kind") == "incr"
    assert (op.incr.key, op.incr.delta, op.incr.deadline_ms) == (b"n", -9, deadline)


def test_mset_request_stamps_each_entrys_deadline() -> None:
    request = cache_pb2.MSetRequest(
        entries=[
            cache_pb2.KeyValue(key=b"a", value=b"1"),
            cache_pb2.KeyValue(key=b"b", value=b"2", ttl_ms=10),
            cache_pb2.KeyValue(key=b"c", value=b"3", ttl_ms=MAX_TTL_MS),
        ]
    )
    op = requests.mset_op(request, DEFAULT, NOW)
    assert op.WhichOneof("kind") == "mset"
    got = [(e.key, e.value, e.deadline_ms) for e in op.mset.entries]
    assert got == [(b"a", b"1", 0), (b"b", b"2", NOW + 10), (b"c", b"3", NOW + MAX_TTL_MS)]


# ---------------------------------------------------------------- typed values (issue 5)


def _d(name: str, **fields: object) -> cache_pb2.DataOp:
    return cache_pb2.DataOp(**{name: fields})


@pytest.mark.parametrize(
    ("op", "fragments"),
    [
        (cache_pb2.DataOp(), ("op is empty",)),
        (_d("hget", key=b""), ("op.hget.key is empty",)),
        (_d("hset", key=b"k"), ("op.hset.fields is empty",)),
        (_d("hset", key=b"k", fields=[{"field": b"f", "value": b"x" * 9}]),
         ("op.hset.fields[0].value is 9 bytes",)),
        (_d("zadd", key=b"k", members=[{"member": b"m", "score": float("nan")}]),
         ("op.zadd.members[0].score is NaN",)),
        (_d("zadd", key=b"k", members=[{"member": b"m"}] * 4), ("has 4 items", "limit of 3")),
        (_d("zincrby", key=b"k", member=b"m", delta=float("nan")), ("delta is NaN",)),
        (_d("zcount", key=b"k", min={"value": float("nan")}), ("op.zcount.min is NaN",)),
        (_d("push", key=b"k", values=[b"v"], end=7), ("end is 7", "LEFT (0) or RIGHT (1)")),
        (_d("pop", key=b"k", count=4), ("pop.count is 4", "limit of 3")),
        (_d("sadd", key=b"k", members=[b"x" * 9]), ("op.sadd.members[0] is 9 bytes",)),
        (_d("set", key=b"k", value=b"v", ttl_ms=-1), ("cannot be negative",)),
        (_d("expire", key=b"k", ttl_ms=0), ("must be > 0", "persist")),
        (_d("expire", key=b"k", ttl_ms=MAX_TTL_MS + 1), ("ten years",)),
    ],
)  # fmt: skip
def test_bad_data_ops_are_refused_with_what_was_wrong(
    op: cache_pb2.DataOp, fragments: tuple[str, ...]
) -> None:
    with refused(*fragments):
        requests.exec_op(cache_pb2.ExecRequest(op=op), SMALL, NOW)


def test_a_data_op_gets_its_deadline_stamped_and_its_request_id() -> None:
    request = cache_pb2.ExecRequest(
        op=_d("expire", key=b"k", ttl_ms=500), request_id={"client_id": "c", "seq": 3}
    )
    op = requests.exec_op(request, DEFAULT, NOW)
    assert op.data.deadline_ms == NOW + 500
    assert (op.request_id.client_id, op.request_id.seq) == ("c", 3)
    assert requests.exec_op(cache_pb2.ExecRequest(op=_d("hlen", key=b"k")), DEFAULT, NOW)


@pytest.mark.parametrize(
    ("compare", "fragments"),
    [
        (cache_pb2.Compare(key=b"k"), ("compares[0] compares nothing",)),
        (cache_pb2.Compare(key=b"", exists=True), ("compares[0].key is empty",)),
        (cache_pb2.Compare(key=b"k", version=1, op=9), ("compares[0].op is 9",)),
        (cache_pb2.Compare(key=b"k", exists=True, op=cache_pb2.Compare.GREATER),
         ("exists can only be compared with EQUAL or NOT_EQUAL",)),
        (cache_pb2.Compare(key=b"k", value=b"x" * 9), ("compares[0].value is 9 bytes",)),
    ],
)  # fmt: skip
def test_bad_compares_are_refused(compare: cache_pb2.Compare, fragments: tuple[str, ...]) -> None:
    with refused(*fragments):
        requests.txn_op(cache_pb2.TxnRequest(compares=[compare]), SMALL, NOW)


def test_a_bad_op_in_a_txn_branch_names_the_branch_and_position() -> None:
    request = cache_pb2.TxnRequest(failure=[_d("get", key=b"k"), _d("hset", key=b"k")])
    with refused("failure[1].hset.fields is empty"):
        requests.txn_op(request, SMALL, NOW)


def test_a_txn_over_the_batch_limit_is_refused() -> None:
    request = cache_pb2.TxnRequest(success=[_d("get", key=b"k")] * 4)
    with refused("4 compares and ops", "limit of 3"):
        requests.txn_op(request, SMALL, NOW)


@pytest.mark.parametrize(
    ("request_", "fragments"),
    [
        (cache_pb2.ScanRequest(cursor=b"abc"), ("not one this node handed out",)),
        (cache_pb2.ScanRequest(cursor=b"1234567"), ("not one this node handed out",)),
        (cache_pb2.ScanRequest(count=10_001), ("count is 10001", "limit of 10000")),
        (cache_pb2.ScanRequest(prefix=b"x" * 5), ("prefix is 5 bytes",)),
        (cache_pb2.ScanRequest(consistency=7), ("unknown consistency 7",)),
    ],
)
def test_bad_scans_are_refused(request_: cache_pb2.ScanRequest, fragments: tuple[str, ...]) -> None:
    with refused(*fragments):
        requests.scan_args(request_, SMALL)


def test_scan_defaults() -> None:
    assert requests.scan_args(cache_pb2.ScanRequest(), DEFAULT) == (0, 100)
    assert requests.scan_args(cache_pb2.ScanRequest(cursor=b"42", count=7), DEFAULT) == (42, 7)


@pytest.mark.parametrize(
    ("request_", "fragment"),
    [
        (cache_pb2.PublishRequest(message=b"m"), "channel is empty"),
        (cache_pb2.PublishRequest(channel=b"c", message=b"x" * 9), "message is 9 bytes"),
    ],
)
def test_bad_publishes_are_refused(request_: cache_pb2.PublishRequest, fragment: str) -> None:
    with refused(fragment):
        requests.publish_op(request_, SMALL)
