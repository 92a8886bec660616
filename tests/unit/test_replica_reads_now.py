"""Reads a replica answers at once (node/DESIGN.md "Replica reads answered at once"): a
READONLY follower's GET, and any read from this node within its staleness bound, skip the
slot, run and callback when nothing before them is owed. Each case runs twice, through
`PipelinedConnection._read_now` and with it switched off (the general path), and must give
the same bytes, the same counters and the same reads; the spy on `run` shows which way each
read went."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from raftcache.node import errors
from raftcache.node.keyspace.db import DB_PREFIX
from raftcache.node.keyspace.reply import WRONGTYPE, Error, ReplyT

from tests.unit.resp_fakes import FakeEngine, cmd, connect, settle
from tests.unit.test_memcached_protocol import McEngine
from tests.unit.test_memcached_protocol import connect as mc_connect


class _Replica(FakeEngine):
    """A follower holding k=v and a hash at h; `stale` makes its staleness check fail."""

    def __init__(self) -> None:
        super().__init__()
        self.leader = False
        self.data[b"k"] = b"v"
        self.stale = False

    def read_get(self, db: int, key: bytes) -> tuple[ReplyT, bool]:
        if key == b"h":
            return Error(WRONGTYPE), True
        return super().read_get(db, key)

    @property
    def view(self) -> Any:
        view = FakeEngine.view.fget(self)  # type: ignore[attr-defined]
        engine = self

        class View(type(view)):  # type: ignore[misc]
            def check_staleness(self, max_staleness_ms: int, bound: str, advice: str) -> None:
                if engine.stale:
                    raise errors.TooStale(f"this replica is too stale for {bound}; {advice}")

        return View()


def _instrument(conn: Any, fast: bool, label: Callable[[str], Any]) -> list[Any]:
    """What went through `run` (label(kind) per command); `fast=False` switches
    `_read_now` off, so every read takes the general path."""
    seen: list[Any] = []
    real_run = conn.run

    def run(kind: str, start: Any) -> None:
        seen.append(label(kind))
        real_run(kind, start)

    conn.run = run
    if not fast:
        conn._read_now = lambda *_: False
    return seen


def _serve(
    data: bytes, fast: bool, engine: _Replica | None = None, reply_mode: int = 0
) -> dict[str, Any]:
    """`data` read by a READONLY connection to a follower (a 16-byte key limit); what it
    wrote, its counters, and how many commands went through `run`."""

    async def body() -> dict[str, Any]:
        replica = engine or _Replica()
        conn, transport = connect(replica)
        conn.server.max_key_bytes = 16
        conn.readonly = True
        conn.reply_mode = reply_mode  # CLIENT REPLY: 1 = OFF, 2 = SKIP
        runs = _instrument(conn, fast, lambda _: conn.last_name)
        conn.data_received(data)
        await settle()
        stats = conn.server.stats
        cell = conn.server.commands.by_name.get(b"get")
        return {
            "out": bytes(transport.out),
            "runs": runs,
            "hits": (stats.keyspace_hits, stats.keyspace_misses),
            "errors": (stats.error_replies, dict(stats.error_codes)),
            "get": None if cell is None else (cell.calls, cell.errors, sum(cell.latency.counts)),
            "reads": list(replica.reads),
        }

    return asyncio.run(body())


def _same_both_ways(data: bytes, engine: Any = None, reply_mode: int = 0) -> dict[str, Any]:
    fast = _serve(data, True, engine() if engine else None, reply_mode)
    slow = _serve(data, False, engine() if engine else None, reply_mode)
    assert {**fast, "runs": None} == {**slow, "runs": None}
    return fast


def test_gets_are_answered_at_once_with_the_same_replies_and_counters() -> None:
    got = _same_both_ways(cmd(b"GET", b"k") + cmd(b"get", b"missing") + cmd(b"GET", b"h"))
    assert got["out"] == b"$1\r\nv\r\n$-1\r\n-" + WRONGTYPE.encode() + b"\r\n"
    assert got["runs"] == []  # no slot, no run for any of them
    assert got["hits"] == (2, 1)  # h exists (another type): a hit, as Redis counts it
    assert got["get"] == (3, 1, 3)  # calls, error replies, latencies observed
    assert got["errors"] == (1, {"WRONGTYPE": 1})
    assert got["reads"] == [(b"k", True), (b"missing", False), (b"h", True)]


@pytest.mark.parametrize(
    "data",
    [
        cmd(b"GET", b"k" * 17),  # over --max-key-bytes
        cmd(b"GET", DB_PREFIX + b"x"),  # the reserved prefix
        cmd(b"GET"),  # arity
        cmd(b"GET", b"k", b"k"),
    ],
)
def test_gets_the_general_path_refuses_still_go_there(data: bytes) -> None:
    got = _same_both_ways(data)
    assert got["out"].startswith(b"-ERR")
    assert got["reads"] == []


def test_a_get_behind_an_owed_write_waits_for_it() -> None:
    async def body() -> None:
        replica = _Replica()
        conn, transport = connect(replica)
        conn.readonly = True
        conn.data_received(cmd(b"SET", b"k", b"v2") + cmd(b"GET", b"k"))
        await settle()
        assert transport.out == b""  # the SET is forwarded: the GET may not read yet
        assert replica.reads == []
        replica.data[b"k"] = b"v2"  # the write applied here before its answer came back
        replica.forwards[0].set_result(None)
        await settle()
        assert transport.out == b"+OK\r\n$2\r\nv2\r\n"  # read after the write, in order

    asyncio.run(body())


def test_a_replica_over_its_staleness_bound_answers_the_general_paths_error() -> None:
    def stale() -> _Replica:
        replica = _Replica()
        replica.stale = True
        return replica

    got = _same_both_ways(cmd(b"GET", b"k"), stale)
    assert got["out"].startswith(b"-") and b"too stale" in got["out"]
    assert got["reads"] == []


def test_a_transaction_and_the_leader_take_the_general_path() -> None:
    got = _same_both_ways(cmd(b"MULTI") + cmd(b"GET", b"k"))
    assert got["out"] == b"+OK\r\n+QUEUED\r\n"
    assert got["runs"] == []  # queued: neither read nor run yet

    def leader() -> _Replica:
        replica = _Replica()
        replica.leader = True  # READONLY on the leader: a linearizable read (a barrier)
        return replica

    got = _same_both_ways(cmd(b"GET", b"k"), leader)
    assert got["runs"] == [b"get"]


def test_silenced_replies_are_answered_at_once_and_stay_silent() -> None:
    got = _same_both_ways(cmd(b"GET", b"k") + cmd(b"GET", b"k"), reply_mode=1)  # OFF
    assert got["out"] == b""
    assert got["runs"] == []
    assert got["get"] == (2, 0, 2)
    got = _same_both_ways(cmd(b"GET", b"k") + cmd(b"GET", b"k"), reply_mode=2)  # SKIP
    assert got["out"] == b"$1\r\nv\r\n"  # the next command only
    assert got["runs"] == []


def _mc_serve(data: bytes, fast: bool) -> dict[str, Any]:
    async def body() -> dict[str, Any]:
        engine = McEngine()
        engine.leader = False
        engine.r(b"SET", b"k", b"v")
        conn, transport = mc_connect(engine)
        conn.server.stale_reads_ms = 1000
        ran = _instrument(conn, fast, lambda kind: kind)
        conn.data_received(data)
        await settle()
        cell = conn.server.commands.by_name[b"get"]
        return {
            "out": bytes(transport.out),
            "runs": ran,
            "counts": dict(conn.stats.counts),
            "get": (cell.calls, cell.errors, sum(cell.latency.counts)),
            "reads": list(engine.reads),
        }

    return asyncio.run(body())


def test_a_memcached_stale_get_is_answered_at_once() -> None:
    data = b"get k\r\nget missing k\r\nget\r\n"
    fast, slow = _mc_serve(data, True), _mc_serve(data, False)
    assert {**fast, "runs": None} == {**slow, "runs": None}
    assert fast["out"] == b"VALUE k 0 1\r\nv\r\nEND\r\nVALUE k 0 1\r\nv\r\nEND\r\nERROR\r\n"
    assert fast["runs"] == [] and slow["runs"] == ["r", "r"]
    assert fast["get"] == (3, 0, 2)  # `get` alone is refused before it reads
    assert (fast["counts"]["get_hits"], fast["counts"]["get_misses"]) == (2, 1)
