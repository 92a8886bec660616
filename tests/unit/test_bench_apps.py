"""The apps bench's pieces that need no server: the commands it sends, reply checks, row
math and ratios, the table, and its connection loop against a tiny in-test RESP server
(SET NX PX, EVALSHA of the release script, LPUSH, BRPOP with parked waiters)."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import defaultdict, deque
from typing import Any

import pytest
from redis.lock import Lock

from bench import apps_section as apps
from bench.respgen import reply_end


def _argv(frame: bytes) -> list[bytes]:
    """Decode one RESP multibulk command (what the bench sends)."""
    lines = frame.split(b"\r\n")
    return [lines[i] for i in range(2, len(lines) - 1, 2)]


# ----------------------------------------------------------------------------- commands


def test_release_script_is_redis_pys_verbatim() -> None:
    assert apps.RELEASE_SCRIPT == Lock.LUA_RELEASE_SCRIPT
    assert hashlib.sha1(Lock.LUA_RELEASE_SCRIPT.encode()).hexdigest() == apps.RELEASE_SHA


def test_locker_sends_set_nx_px_then_evalsha_with_the_same_token() -> None:
    (set_cmd, set_expect), (eval_cmd, eval_expect) = apps.steps_for(
        apps.Conn("locker", 7, "h:1"), "abc"
    )
    set_argv, eval_argv = _argv(set_cmd), _argv(eval_cmd)
    assert set_argv[:2] == [b"SET", b"lock:7"]
    assert set_argv[3:] == [b"NX", b"PX", b"10000"]
    assert eval_argv == [b"EVALSHA", b"abc", b"1", b"lock:7", set_argv[2]]
    assert (set_expect, eval_expect) == ("ok", "one")


def test_ping_pong_roles_use_their_pairs_queues() -> None:
    producer = [_argv(c) for c, _ in apps.steps_for(apps.Conn("producer", 3, "h:1"))]
    consumer = [_argv(c) for c, _ in apps.steps_for(apps.Conn("consumer", 3, "h:1"))]
    assert producer == [[b"LPUSH", b"q:3", b"ping"], [b"BRPOP", b"r:3", b"5"]]
    assert consumer == [[b"BRPOP", b"q:3", b"5"], [b"LPUSH", b"r:3", b"ack"]]
    with pytest.raises(ValueError, match="unknown role"):
        apps.steps_for(apps.Conn("watcher", 0, "h:1"))


@pytest.mark.parametrize(
    ("expect", "reply", "code"),
    [
        ("ok", b"+OK\r\n", ""),
        ("ok", b"$-1\r\n", "nil"),  # SET NX refused: the lock was held
        ("ok", b"_\r\n", "nil"),  # the same in RESP3
        ("one", b":1\r\n", ""),
        ("one", b":0\r\n", "unexpected"),  # release found another token
        ("one", b"-NOSCRIPT No matching script.\r\n", "NOSCRIPT"),
        ("int", b":12\r\n", ""),
        ("int", b"+OK\r\n", "unexpected"),
        ("pop", b"*2\r\n$3\r\nq:1\r\n$4\r\nping\r\n", ""),
        ("pop", b"*-1\r\n", "nil"),  # BRPOP timed out
        ("pop", b"-CLUSTERDOWN leader stepped down\r\n", "CLUSTERDOWN"),
        ("pop", b"-\r\n", "ERR"),
    ],
)
def test_check(expect: str, reply: bytes, code: str) -> None:
    assert apps.check(expect, reply) == code


def test_plan_and_split() -> None:
    lock = apps.plan("lock", 4, "L", [])
    assert [(c.role, c.index, c.target) for c in lock] == [("locker", i, "L") for i in range(4)]
    spread = apps.plan("pingpong_followers", 6, "L", ["F1", "F2"])
    assert [c.target for c in spread if c.role == "producer"] == ["L"] * 3
    assert [c.target for c in spread if c.role == "consumer"] == ["F1", "F2", "F1"]
    assert {c.target for c in apps.plan("pingpong", 6, "L", [])} == {"L"}
    parts = apps.split(spread, 2)
    assert sorted(c.index for c in parts[0]) == [0, 0, 2, 2]  # a pair stays in one process
    assert sum(len(p) for p in parts) == len(spread)
    with pytest.raises(ValueError):
        apps.plan("pingpong_followers", 4, "L", [])


# ----------------------------------------------------------------------------- row math


def _measured(workload: str) -> apps.Measured:
    timed = apps.RoleStats(cycles=400, errors=2, codes={"nil": 2})
    timed.latencies.extend([0.001] * 98 + [0.010, 0.020])
    timed.step_latencies = [apps.array("d", [0.0004] * 100), apps.array("d", [0.0006] * 100)]
    roles = {"locker" if workload == "lock" else "producer": timed}
    if workload != "lock":
        roles["consumer"] = apps.RoleStats(cycles=401)
    cpu = {
        "process_cpu_s": {"leader(n1)": 0.8, "follower-a(n2)": 0.2, "generator0": 0.5},
        "process_pct": {"leader(n1)": 40.0, "follower-a(n2)": 10.0, "generator0": 25.0},
    }
    return apps.Measured(roles, cpu, window_s=2.0, processes=1, stuck=0)


def test_summarize_lock_row() -> None:
    row = apps.summarize("lock", _measured("lock"), head="leader")
    assert row["ops_per_s"] == row["evalsha_per_s"] == 200.0
    assert row["commands_per_s"] == 400.0
    assert row["latency_ms"]["p50"] == 1.0 and row["latency_ms"]["p99"] == 10.0
    assert row["evalsha_latency_ms"]["p50"] == 0.6
    assert row["head_cpu_us_per_op"] == 2000.0  # 0.8 s of leader CPU / 400 pairs
    assert row["servers_cpu_us_per_op"] == 2500.0  # generators excluded
    assert row["generator_cpu_pct"] == [25.0]
    assert row["errors"] == 2 and row["error_codes"] == {"nil": 2}


def test_summarize_ping_pong_counts_producers_only() -> None:
    row = apps.summarize("pingpong", _measured("pingpong"), head="leader")
    assert row["ops"] == 400 and row["consumer"]["cycles"] == 401
    assert row["lpush_latency_ms"]["p50"] == 0.4


def test_summarize_with_nothing_done() -> None:
    m = apps.Measured({}, _measured("lock").cpu, window_s=2.0, processes=1, stuck=3)
    row = apps.summarize("lock", m, head="leader")
    assert row["ops_per_s"] == 0.0 and row["head_cpu_us_per_op"] is None
    assert row["stuck_connections"] == 3


def _section() -> dict[str, Any]:
    def row(system: str, workload: str, ops: float, p50: float, p99: float) -> dict[str, Any]:
        lat = {"p50": p50, "p99": p99}
        return {
            "system": system,
            "workload": workload,
            "label": apps.LABELS[workload],
            "ops_per_s": ops,
            "latency_ms": lat,
            "evalsha_latency_ms": lat,
            "lpush_latency_ms": lat,
            "errors": 0,
            "head_cpu_us_per_op": 100.0,
            "generator_cpu_pct": [50.0],
            "cpu": {"unaccounted_pct": 150.0},
            "load_start": [3.0, 2.0, 1.0],
            "load_end": [4.0, 2.0, 1.0],
        }

    return {
        "setup": {"clients": 64, "warmup_s": 1, "seconds_per_row": 5},
        "systems": {
            "raftcache": {
                "rows": [
                    row("raftcache", "lock", 1000, 30.0, 90.0),
                    row("raftcache", "pingpong", 500, 60.0, 120.0),
                    row("raftcache", "pingpong_followers", 250, 120.0, 240.0),
                ]
            },
            "redis": {
                "rows": [
                    row("redis", "lock", 40000, 1.5, 3.0),
                    {
                        "system": "redis",
                        "workload": "pingpong",
                        "label": apps.LABELS["pingpong"],
                        "failed": "boom",
                    },
                ]
            },
        },
    }


def test_ratios_are_raftcache_over_redis_and_skip_failed_rows() -> None:
    assert apps.ratios(_section()) == {"lock": {"ops_per_s": 0.025, "p50": 20.0, "p99": 30.0}}
    assert apps.ratio(1.0, 0.0) is None and apps.ratio(None, 1.0) is None


def test_markdown_table() -> None:
    section = _section()
    section["ratios"] = apps.ratios(section)
    text = apps.markdown(section)
    assert "| raftcache | SET NX PX + EVALSHA release (redis-py Lock) | 1,000 |" in text
    assert "| 0.025 | 20.00 | 30.00 |" in text
    assert "| 50 | 150 | 3.00 → 4.00 |" in text
    assert "BRPOP/LPUSH ping-pong: FAILED" in text


# ----------------------------------------------------------------------------- the loop


class FakeRedis:
    """Just enough Redis for the bench's cycles; BRPOP parks until an LPUSH."""

    def __init__(self, sha: str) -> None:
        self.sha = sha
        self.strings: dict[bytes, bytes] = {}
        self.lists: defaultdict[bytes, deque[bytes]] = defaultdict(deque)
        self.parked: defaultdict[bytes, deque[asyncio.StreamWriter]] = defaultdict(deque)
        self.commands: list[bytes] = []
        self.fail: dict[bytes, int] = {}
        """Command name -> how many of its next calls answer -TRYAGAIN."""

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buf = b""
        try:
            while data := await reader.read(65536):
                buf += data
                while (end := reply_end(buf, 0)) >= 0:
                    self.handle(_argv(buf[:end]), writer)
                    buf = buf[end:]
        except ConnectionError:
            pass
        finally:
            writer.close()

    def handle(self, argv: list[bytes], writer: asyncio.StreamWriter) -> None:
        name = argv[0].upper()
        self.commands.append(name)
        if self.fail.get(name):
            self.fail[name] -= 1
            writer.write(b"-TRYAGAIN injected\r\n")
        elif name == b"SET":
            if argv[1] in self.strings:
                writer.write(b"$-1\r\n")
            else:
                self.strings[argv[1]] = argv[2]
                writer.write(b"+OK\r\n")
        elif name == b"EVALSHA":
            if argv[1].decode() != self.sha:
                writer.write(b"-NOSCRIPT No matching script.\r\n")
            elif self.strings.get(argv[3]) == argv[4]:
                del self.strings[argv[3]]
                writer.write(b":1\r\n")
            else:
                writer.write(b":0\r\n")
        elif name == b"LPUSH":
            key = argv[1]
            self.lists[key].appendleft(argv[2])
            writer.write(b":%d\r\n" % len(self.lists[key]))
            while self.parked[key] and self.lists[key]:
                self._pop(key, self.parked[key].popleft())
        elif name == b"BRPOP":
            if self.lists[argv[1]]:
                self._pop(argv[1], writer)
            else:
                self.parked[argv[1]].append(writer)
        else:
            writer.write(b"-ERR unknown command\r\n")

    def _pop(self, key: bytes, writer: asyncio.StreamWriter) -> None:
        item = self.lists[key].pop()
        writer.write(b"*2\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n" % (len(key), key, len(item), item))


async def _drive(
    workload: str, sha: str, seconds: float, fail: dict[bytes, int] | None = None
) -> tuple[apps.ProcResult, FakeRedis]:
    fake = FakeRedis(apps.RELEASE_SHA)
    fake.fail.update(fail or {})
    server = await asyncio.start_server(fake.serve, "127.0.0.1", 0)
    addr = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    result = apps.ProcResult(0)
    try:
        clients = await apps.connect(apps.plan(workload, 8, addr, [addr]), result, sha)
        now = time.perf_counter()
        await apps.run_window(clients, apps.Window(now, now + seconds), result)
    finally:
        server.close()
    return result, fake


def test_lock_loop_counts_pairs_in_the_window() -> None:
    result, fake = asyncio.run(_drive("lock", apps.RELEASE_SHA, 0.3))
    stats = result.roles["locker"]
    assert stats.cycles > 50 and stats.errors == 0 and result.stuck == 0
    assert len(stats.latencies) == stats.cycles
    assert len(stats.step_latencies[1]) == stats.cycles  # one EVALSHA per pair
    assert fake.strings == {}  # every lock released


def test_lock_loop_records_errors_and_releases_before_going_on() -> None:
    result, fake = asyncio.run(_drive("lock", apps.RELEASE_SHA, 0.3, fail={b"EVALSHA": 3}))
    stats = result.roles["locker"]
    assert stats.codes == {"TRYAGAIN": 3} and stats.errors == 3  # not followed by NX refusals
    assert stats.cycles > 50 and fake.strings == {}


def test_ping_pong_loop() -> None:
    result, fake = asyncio.run(_drive("pingpong_followers", apps.RELEASE_SHA, 0.3))
    producers, consumers = result.roles["producer"], result.roles["consumer"]
    assert producers.cycles > 20 and producers.errors == 0 and result.stuck == 0
    assert consumers.cycles >= producers.cycles - 4  # the consumers served every ping
    assert not any(fake.lists.values())  # nothing left behind
