"""The `raftcache` CLI's typed-value, scan, pub/sub and watch commands, run in-process
against the SDK on a fake transport: argument parsing, the op sent, output, exit codes."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from raftcache.client import Client, cli
from raftcache.client._transport import CallFailed
from raftcache.v1 import cache_pb2

from tests.unit.test_client_routing import CLIENT_ID
from tests.unit.test_client_typed import FakeStream, StreamingFake, answer, blist, scored

V = cache_pb2.Value


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> StreamingFake:
    """The fake every CLI run in the test talks to."""
    transport = StreamingFake()

    def client(
        endpoints: list[str], *, timeout: float, client_id: str | None, tls: object = None
    ) -> Client:
        assert tls is None  # these runs give no --tls-* flags
        return Client(endpoints, timeout=timeout, transport=transport, client_id=CLIENT_ID)

    monkeypatch.setattr(cli, "Client", client)
    return transport


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(["--endpoints", "10.0.0.1:6380", "--timeout", "1", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def sent_op(fake: StreamingFake) -> Any:
    (call,) = fake.sent("Cache/Exec")
    return call.request.op


def assert_usage_error(result: tuple[int, str, str], *phrases: str) -> None:
    code, out, err = result
    assert code == cli.EXIT_USAGE, err
    assert out == ""
    assert len(err.splitlines()) == 1 and err.startswith("raftcache: error: ")
    for phrase in phrases:
        assert phrase in err


# -- parsing ---------------------------------------------------------------------------


def test_score_bounds_parse_like_redis() -> None:
    args = cli.build_parser().parse_args(
        ["zrangebyscore", "board", "-inf", "(5", "--limit", "3", "--withscores"]
    )
    assert (args.min, args.max, args.limit, args.offset) == ((-math.inf, False), (5.0, True), 3, 0)
    assert args.withscores and not args.reverse


def test_negative_indexes_are_positionals() -> None:
    args = cli.build_parser().parse_args(["lrange", "l", "-3", "-1"])
    assert (args.start, args.stop) == (-3, -1)


def test_every_typed_command_is_registered() -> None:
    parser = cli.build_parser()
    for name in [*cli.TYPED, "scan", "publish", "subscribe", "watch"]:
        assert name in cli.COMMANDS
        with pytest.raises(SystemExit) as exited:
            parser.parse_args([name, "--help"])
        assert exited.value.code == 0


@pytest.mark.parametrize(
    ("argv", "phrases"),
    [
        (["zadd", "board", "10", "ann", "20"], ["SCORE MEMBER", "'20' has no partner"]),
        (["zadd", "board", "ten", "ann"], ["bad SCORE", "'ten'"]),
        (["hset", "h", "f1", "v1", "f2"], ["FIELD VALUE", "'f2'"]),
        (["lpop", "l", "0"], ["must be > 0"]),
        (["expire", "k", "-5"], ["seconds"]),
        (["zrange", "z", "0", "last"], ["expected an integer", "'last'"]),
        (["zscore", "z"], ["MEMBER"]),
        (["zrangebyscore", "z", "nan", "1"], ["NaN"]),
        (["subscribe"], ["CHANNEL or a --pattern"]),
        (["hincrby", "h", "f", "1.5"], ["expected an integer"]),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_2(
    fake: StreamingFake, capsys: pytest.CaptureFixture[str], argv: list[str], phrases: list[str]
) -> None:
    assert_usage_error(run_cli(capsys, *argv), *phrases)
    assert fake.sent("Cache/Exec") == []


# -- ops sent and output -----------------------------------------------------------------


def test_hset_sends_the_pairs_and_prints_how_many_are_new(
    fake: StreamingFake, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.script("Cache/Exec", answer(int=2))

    assert run_cli(capsys, "hset", "session:1", "user", "ann", "cart", "3") == (0, "2\n", "")
    op = sent_op(fake)
    assert [(f.field, f.value) for f in op.hset.fields] == [(b"user", b"ann"), (b"cart", b"3")]


def test_hget_of_a_missing_field_prints_nil_and_exits_1(
    fake: StreamingFake, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.script("Cache/Exec", answer(nil=True))
    assert run_cli(capsys, "hget", "h", "f") == (1, "(nil)\n", "")


def test_zadd_takes_score_member_pairs_like_redis(
    fake: StreamingFake, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.script("Cache/Exec", answer(int=2))

    assert run_cli(capsys, "zadd", "board", "10", "ann", "2.5", "bob")[0] == 0
    members = sent_op(fake).zadd.members
    assert [(m.member, m.score) for m in members] == [(b"ann", 10.0), (b"bob", 2.5)]


def test_zincrby_follows_redis_argument_order(
    fake: StreamingFake, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.script("Cache/Exec", answer(score=12.0))

    assert run_cli(capsys, "zincrby", "board", "2", "ann") == (0, "12\n", "")
    op = sent_op(fake).zincrby
    assert (op.member, op.delta) == (b"ann", 2.0)


def test_zrange_withscores_prints_member_tab_score_and_json(
    fake: StreamingFake, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.otherwise(
        "Cache/Exec", cache_pb2.ExecResponse(value=scored((b"bob", 30.0), (b"ann", 2.5)))
    )

    code, out, _ = run_cli(capsys, "zrange", "board", "0", "-1", "--reverse", "--withscores")
    assert (code, out) == (0, "bob\t30\nann\t2.5\n")
    code, out, _ = run_cli(capsys, "--json", "zrange", "board", "0", "1")
    assert json.loads(out) == {"key": "board", "values": [{"value": "bob"}, {"value": "ann"}]}
    first, second = fake.sent("Cache/Exec")
    assert first.request.op.zrange.reverse and not second.request.op.zrange.reverse


def test_zrangebyscore_sends_exclusive_and_open_bounds(
    fake: StreamingFake, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.script("Cache/Exec", cache_pb2.ExecResponse(value=scored((b"c", 7.0))))

    assert run_cli(capsys, "zrangebyscore", "z", "(5", "+inf", "--offset", "1")[:2] == (0, "c\n")
    op = sent_op(fake).zrangebyscore
    assert (op.min.value, op.min.exclusive, op.max.value, op.offset) == (5.0, True, math.inf, 1)


def test_smembers_prints_sorted_members(
    fake: StreamingFake, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.script("Cache/Exec", cache_pb2.ExecResponse(value=blist(b"b", b"a", b"c")))
    assert run_cli(capsys, "smembers", "s")[:2] == (0, "a\nb\nc\n")


def test_stale_reads_pass_the_global_consistency(
    fake: StreamingFake, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.otherwise("Cache/Exec", answer(int=1))

    assert run_cli(capsys, "sismember", "s", "a", "--consistency", "stale")[:2] == (0, "1\n")
    assert sent_op(fake).sismember.member == b"a"
    assert fake.sent("Cache/Exec")[0].request.consistency == cache_pb2.STALE


@pytest.mark.parametrize(
    ("ms", "expected"),
    [(-1, (0, "(no expiry)\n")), (-2, (1, "(nil)\n")), (2500, (0, "2.5\n"))],
)
def test_ttl_output(
    fake: StreamingFake, capsys: pytest.CaptureFixture[str], ms: int, expected: tuple[int, str]
) -> None:
    fake.script("Cache/Exec", answer(int=ms))
    assert run_cli(capsys, "ttl", "k")[:2] == expected


def test_lpop_with_a_count_prints_each_value(
    fake: StreamingFake, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.script("Cache/Exec", cache_pb2.ExecResponse(value=blist(b"x", b"y")))

    assert run_cli(capsys, "lpop", "l", "2")[:2] == (0, "x\ny\n")
    assert sent_op(fake).pop.count == 2


# -- del -------------------------------------------------------------------------------------


def test_del_deletes_every_key_in_one_atomic_request(
    fake: StreamingFake, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.script(
        "Cache/Txn", cache_pb2.TxnResponse(succeeded=True, results=[V(int=1), V(int=0), V(int=1)])
    )

    assert run_cli(capsys, "del", "a", "missing", "b") == (0, "2\n", "")
    (call,) = fake.sent("Cache/Txn")  # one request, not one Delete per key
    assert not fake.sent("Cache/Delete")
    assert list(call.request.compares) == []
    assert [op.delete.key for op in call.request.success] == [b"a", b"missing", b"b"]
    assert call.request.request_id.client_id == CLIENT_ID  # applied at most once


def test_del_json_says_which_keys_existed(
    fake: StreamingFake, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.script("Cache/Txn", cache_pb2.TxnResponse(succeeded=True, results=[V(int=1), V(int=0)]))

    code, out, _ = run_cli(capsys, "--json", "del", "c", "c")
    assert code == 0
    assert json.loads(out) == {
        "deleted": 1,
        "results": [{"key": "c", "existed": True}, {"key": "c", "existed": False}],
    }


# -- errors ----------------------------------------------------------------------------------


def test_a_wrong_type_is_exit_3_naming_both_types(
    fake: StreamingFake, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.script(
        "Cache/Exec",
        CallFailed("FAILED_PRECONDITION", "WRONGTYPE key holds a list, not a hash", "WrongType"),
    )

    code, out, err = run_cli(capsys, "hget", "l", "f")
    assert (code, out) == (cli.EXIT_CONDITION, "")
    assert "list" in err and "hash" in err and len(err.splitlines()) == 1


def test_a_request_id_the_cluster_forgot_is_exit_5_without_the_rerun_advice(
    fake: StreamingFake, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.script(
        "Cache/Exec", CallFailed("ABORTED", "request id x/1 is older than ...", "RequestTooOld")
    )

    code, _, err = run_cli(capsys, "hincrby", "h", "f", "1")
    assert code == cli.EXIT_OUTCOME_UNKNOWN and len(err.splitlines()) == 1
    assert "cannot settle it" in err and "re-read" in err
    assert "--client-id" not in err  # a re-run with the same id would only fail the same way


def test_out_of_memory_is_exit_4_with_what_to_do(
    fake: StreamingFake, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.script(
        "Cache/Exec",
        CallFailed("RESOURCE_EXHAUSTED", "over --max-memory 1048576", "OutOfMemory"),
    )

    code, _, err = run_cli(capsys, "rpush", "l", "x")
    assert code == cli.EXIT_UNAVAILABLE
    assert "1048576" in err and "raise --max-memory" in err


# -- scan, publish, subscribe, watch ------------------------------------------------------------


def test_scan_prints_every_page(fake: StreamingFake, capsys: pytest.CaptureFixture[str]) -> None:
    fake.script(
        "Cache/Scan",
        cache_pb2.ScanResponse(keys=[b"user:1"], next_cursor=b"c"),
        cache_pb2.ScanResponse(keys=[b"user:2"]),
    )

    assert run_cli(capsys, "scan", "user:", "--count", "1")[:2] == (0, "user:1\nuser:2\n")
    assert [c.request.prefix for c in fake.sent("Cache/Scan")] == [b"user:", b"user:"]


def test_publish_prints_receivers(fake: StreamingFake, capsys: pytest.CaptureFixture[str]) -> None:
    fake.script("Cache/Publish", cache_pb2.PublishResponse(receivers=4))
    assert run_cli(capsys, "publish", "news", "hi") == (0, "4\n", "")


def test_subscribe_prints_messages_until_count(
    fake: StreamingFake, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.streams.append(
        FakeStream(
            cache_pb2.PubSubMessage(channel=b"news", message=b"one"),
            cache_pb2.PubSubMessage(channel=b"news.eu", message=b"two", pattern=b"news.*"),
            cache_pb2.PubSubMessage(channel=b"news", message=b"never read"),
        )
    )

    code, out, _ = run_cli(
        capsys, "--json", "subscribe", "news", "--pattern", "news.*", "--count", "2"
    )

    assert code == 0
    assert [json.loads(line) for line in out.splitlines()] == [
        {"channel": "news", "pattern": None, "value": "one"},
        {"channel": "news.eu", "pattern": "news.*", "value": "two"},
    ]


def test_watch_prints_events_and_resumes(
    fake: StreamingFake, capsys: pytest.CaptureFixture[str]
) -> None:
    set_event = cache_pb2.WatchEvent(key=b"k", revision=3, value=b"v", type="string")
    delete = cache_pb2.WatchEvent(kind=cache_pb2.WatchEvent.DELETE, key=b"k", revision=4)
    fake.streams.extend(
        [FakeStream(set_event, CallFailed("UNAVAILABLE", "Socket closed")), FakeStream(delete)]
    )

    code, out, _ = run_cli(capsys, "watch", "k", "--count", "2")

    assert (code, out) == (0, "3\tset\tk\tv\n4\tdelete\tk\n")
    assert [request.start_revision for _, _, request in fake.opened] == [0, 3]


def test_watch_too_far_back_is_exit_7(
    fake: StreamingFake, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.streams.append(
        FakeStream(refuse=CallFailed("OUT_OF_RANGE", "oldest retained is 500", "RevisionCompacted"))
    )

    code, out, err = run_cli(capsys, "watch", "k", "--start-revision", "10")
    assert (code, out) == (cli.EXIT_REVISION_COMPACTED, "")
    assert "revision 10" in err and "watch from now" in err
