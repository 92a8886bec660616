"""The peers bench's pieces that need no peer installed: the memcached generator against a
tiny in-test memcached (and the real one when installed), the raftcache memcached
endpoint detection, and the tables and chart rendered from a fixture run."""

from __future__ import annotations

import asyncio
import copy
import json
import shutil
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bench import memgen, peers, peers_report, peers_section
from bench import run as bench_run
from bench.common import FramedReplies

SVG = "{http://www.w3.org/2000/svg}"


class FakeMemcached:
    """set/get/version over the text protocol, a dict behind it, on its own loop thread."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self.loop
        ).result(10)
        self.addr = f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                parts = line.split()
                if parts[:1] == [b"set"]:
                    self.data[parts[1]] = (await reader.readexactly(int(parts[4]) + 2))[:-2]
                    writer.write(b"STORED\r\n")
                elif parts[:1] == [b"get"]:
                    for key in parts[1:]:
                        if key in self.data:
                            value = self.data[key]
                            writer.write(b"VALUE %b 0 %d\r\n%b\r\n" % (key, len(value), value))
                    writer.write(b"END\r\n")
                elif parts[:1] == [b"version"]:
                    writer.write(b"VERSION 0-fake\r\n")
                else:
                    writer.write(b"ERROR\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def close(self) -> None:
        """Cancel the connections' tasks on the running loop, then stop and close it: a task
        left pending on a stopped loop was collected later, its `finally` calling into the
        dead loop (an unraisable GeneratorExit in a later test)."""

        async def shutdown() -> None:
            self.server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def fake_memcached() -> Iterator[FakeMemcached]:
    server = FakeMemcached()
    try:
        yield server
    finally:
        server.close()


# ----------------------------------------------------------------------------- framing


def test_reply_end_frames_lines_values_and_partial_replies() -> None:
    value = b"x\r\ny" * 3
    block = b"VALUE k 0 %d\r\n%b\r\nEND\r\n" % (len(value), value)
    assert memgen.reply_end(b"STORED\r\n", 0) == 8
    assert memgen.reply_end(block + b"STORED\r\n", 0) == len(block)
    assert memgen.reply_end(block, 0) == len(block)  # CRLF inside the data is data
    for cut in range(len(block)):
        assert memgen.reply_end(block[:cut], 0) == -1, cut
    assert memgen.reply_end(b"SERVER_ERROR out of memory\r\n", 0) == 28


def test_framed_replies_reads_into_one_buffer_and_cuts_whole_replies() -> None:
    """The generators' connections (bench/common.py FramedReplies): whatever the read sizes,
    each whole reply reaches _reply once, in order, with nothing allocated per read; a
    reply larger than the read buffer arrives whole too."""

    class Recorder(FramedReplies):
        reply_end = staticmethod(memgen.reply_end)

        def __init__(self) -> None:
            super().__init__()
            self.replies: list[bytes] = []

        def _reply(self, reply: bytes) -> None:
            self.replies.append(reply)

    big = b"z" * (FramedReplies.READ_CHUNK * 2 + 5)
    replies = [
        b"STORED\r\n",
        b"VALUE k 0 4\r\nx\r\ny\r\nEND\r\n",
        b"VALUE big 0 %d\r\n%b\r\nEND\r\n" % (len(big), big),
        b"END\r\n",
    ]
    stream = b"".join(replies)
    for step in (1, 7, 4096, len(stream)):
        conn = Recorder()
        for start in range(0, len(stream), step):
            piece = stream[start : start + step]
            while piece:
                buffer = conn.get_buffer(-1)
                assert buffer is conn.get_buffer(-1)  # the same buffer every read
                n = min(len(buffer), len(piece))
                buffer[:n] = piece[:n]
                conn.buffer_updated(n)
                piece = piece[n:]
        assert conn.replies == replies, step
        assert not conn.buf


def test_outcome_names_misses_and_errors() -> None:
    assert memgen.outcome("mc_set", b"STORED\r\n") == ""
    assert memgen.outcome("mc_set", b"NOT_STORED\r\n") == "NOT_STORED"
    assert memgen.outcome("mc_get", b"VALUE k 0 1\r\nv\r\nEND\r\n") == ""
    assert memgen.outcome("mc_get", b"END\r\n") == "MISS"
    assert memgen.outcome("mc_get", b"CLIENT_ERROR bad\r\n") == "CLIENT_ERROR"


# ----------------------------------------------------------------------------- the generator


def _row(op: str, clients: int) -> peers_section.Row:
    kind = "write" if op == "mc_set" else "read"
    return peers_section.Row("memcached", "memcached", kind, op, op, clients, "server", "mc:")


def _drive(addr: str, pids: dict[str, int]) -> list[dict[str, Any]]:
    asyncio.run(memgen.populate(addr, "mc:", 200, 100))
    assert asyncio.run(memgen.read_value(addr, memgen.mc_key("mc:", 7))) == memgen.value_bytes(100)
    assert asyncio.run(memgen.read_value(addr, b"absent")) is None
    return [
        peers_section.measure(_row(op, clients), [addr], pids, keys=200, warmup=0.1, seconds=0.4)
        for op, clients in (("mc_get", 1), ("mc_set", 4))
    ]


def _check(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        assert row["ops"] > 0, row
        assert row["errors"] == 0, row["error_codes"]
        assert row["latency_ms"]["p50"] > 0
        assert len(row["load_start"]) == 3 and len(row["load_end"]) == 3
        assert sum(row["connections_per_process"]) == row["clients"]


def test_memcached_generator_against_an_in_test_server(fake_memcached: FakeMemcached) -> None:
    assert asyncio.run(memgen.version(fake_memcached.addr)) == "0-fake"
    _check(_drive(fake_memcached.addr, {}))
    assert len(fake_memcached.data) == 200


@pytest.mark.skipif(shutil.which("memcached") is None, reason="Debian memcached not installed")
def test_memcached_generator_against_real_memcached(tmp_path: Path) -> None:
    server = peers.MemcachedServer(tmp_path, memory_mb=64)
    server.start()
    try:
        assert asyncio.run(memgen.version(server.addr)).startswith("1.")
        rows = _drive(server.addr, server.pids)
    finally:
        server.close()
    _check(rows)
    assert all("memcached" in row["cpu"]["process_pct"] for row in rows)


# ----------------------------------------------------------------------------- detection


def test_raftcache_memcached_rows_need_an_answering_port(fake_memcached: FakeMemcached) -> None:
    without = SimpleNamespace(nodes=[SimpleNamespace(redis_port=1)] * 3)
    addrs, why = peers_section.memcached_addrs(without)  # type: ignore[arg-type]
    assert addrs == [] and "no memcached_port" in why
    port = int(fake_memcached.addr.rsplit(":", 1)[1])
    node = SimpleNamespace(memcached_port=port, memcached_addr=fake_memcached.addr)
    addrs, why = peers_section.memcached_addrs(SimpleNamespace(nodes=[node] * 3))  # type: ignore[arg-type]
    assert addrs == [fake_memcached.addr] * 3 and why == ""
    dead = SimpleNamespace(memcached_port=1, memcached_addr="127.0.0.1:1")
    addrs, why = peers_section.memcached_addrs(SimpleNamespace(nodes=[dead] * 3))  # type: ignore[arg-type]
    assert addrs == [] and "does not answer" in why


# ----------------------------------------------------------------------------- rendering


def _measured(system: str, interface: str, kind: str, label: str, clients: int, role: str,
              ops: float, load: float) -> dict[str, Any]:  # fmt: skip
    return {
        "system": system, "interface": interface, "kind": kind, "label": label, "op": "x",
        "clients": clients, "role": role, "ops_per_s": ops, "errors": 0, "error_codes": {},
        "latency_ms": {"p50": 1000 / ops * clients, "p99": 2000 / ops * clients},
        "generator_processes": 1, "generator_cpu_pct": [40.0], "generator_bound": False,
        "server_cpu_pct": 120.0, "cpu": {"unaccounted_pct": 7.0},
        "load_start": [load, 1.0, 1.0], "load_end": [load + 0.5, 1.0, 1.0],
    }  # fmt: skip


FIXTURE: dict[str, Any] = {
    "started": "2026-12-09 10:00:00 +0000",
    "git_commit": "0123456789abcdef",
    "machine": {"cpu_count": 2},
    "load_start": {"loadavg": [0.25, 0.5, 0.75]},
    "load_end": {"loadavg": [1.5, 1.0, 0.8]},
    "setup": {
        "key_space": 10000,
        "value_bytes": 100,
        "warmup_s": 1.0,
        "seconds_per_row": 5.0,
        "order": ["etcd", "raftcache", "redis", "memcached"],
    },
    "versions": {"etcd": "etcd Version: 3.4.23"},
    "systems": {
        "etcd": {
            "rows": [
                _measured("etcd", "gRPC", "write", "put", 1, "leader", 800.0, 0.3),
                _measured("etcd", "gRPC", "write", "put", 64, "leader", 7000.0, 0.4),
                _measured("etcd", "gRPC", "write", "put", 64, "all", 6000.0, 0.4),
                _measured("etcd", "gRPC", "read", "get (linearizable)", 64, "leader", 9000.0, 0.5),
                _measured("etcd", "gRPC", "stale", "get (serializable)", 64, "all", 10000.0, 0.5),
            ]
        },
        "raftcache": {
            "rows": [
                _measured("raftcache", "gRPC", "write", "Set", 1, "leader", 1200.0, 0.6),
                _measured("raftcache", "gRPC", "write", "Set", 64, "leader", 3500.0, 0.7),
                _measured(
                    "raftcache", "SDK", "read", "get (linearizable)", 64, "all", 18000.0, 0.8
                ),
                _measured(
                    "raftcache",
                    "RESP",
                    "stale",
                    "GET after READONLY",
                    64,
                    "followers",
                    40000.0,
                    0.9,
                ),
                {
                    "system": "raftcache",
                    "interface": "memcached",
                    "kind": "write",
                    "label": "set",
                    "op": "mc_set",
                    "clients": 64,
                    "role": "leader",
                    "skipped": "no memcached endpoint: not in this checkout yet",
                },
            ]
        },
        "redis": {
            "rows": [
                _measured("redis", "RESP", "write", "SET + WAIT 2", 64, "primary", 30000.0, 1.0),
            ]
        },
    },
}


@pytest.fixture
def fixture_json(tmp_path: Path) -> Path:
    path = tmp_path / "peers.json"
    path.write_text(json.dumps(FIXTURE))
    return path


def test_ratios_use_the_best_etcd_row_of_the_same_kind_and_clients() -> None:
    rows = {(r["system"], r["label"], r["clients"]): r for r in peers_report.rows_of(FIXTURE)}
    assert peers_report.ratio(FIXTURE, rows[("raftcache", "Set", 64)]) == 0.5  # 3,500 / 7,000
    assert peers_report.ratio(FIXTURE, rows[("raftcache", "Set", 1)]) == 1.5
    assert peers_report.ratio(FIXTURE, rows[("raftcache", "get (linearizable)", 64)]) == 2.0
    assert peers_report.ratio(FIXTURE, rows[("raftcache", "GET after READONLY", 64)]) == 4.0
    assert peers_report.ratio(FIXTURE, rows[("raftcache", "set", 64)]) is None  # skipped


def test_tables_show_ratios_loads_and_skip_reasons(fixture_json: Path, capsys: Any) -> None:
    assert peers_report.main([str(fixture_json)]) == 0
    text = capsys.readouterr().out
    assert "| raftcache · gRPC | Set, leader | 1,200/s, p50 0.83 ms | 1.50x " in text
    assert "3,500/s, p50 18.29 ms | 0.50x" in text
    assert "- skipped: no memcached endpoint: not in this checkout yet" in text
    assert "0.60 → 1.10 / 0.70 → 1.20" in text  # load average at each row's start and end
    assert "0.25/0.50/0.75 at the start, 1.50/1.00/0.80 at the end" in text
    assert "| 120 / 40 | 7 | 0.70 → 1.20 |" in text  # the every-row table: CPU, other, load


def test_chart_is_svg_with_a_bar_per_measured_row(fixture_json: Path, tmp_path: Path) -> None:
    svg = tmp_path / "docs" / "peers.svg"
    assert peers_report.main([str(fixture_json), "--svg", str(svg), "--compact"]) == 0
    root = ET.fromstring(svg.read_text())
    assert root.tag == f"{SVG}svg"
    bars = [r for r in root.iter(f"{SVG}rect") if r.get("fill") != "#fff"]
    measured = [r for r in peers_report.rows_of(FIXTURE) if "ops_per_s" in r]
    assert len(bars) == len(measured)
    widths = {float(b.get("width", 0)) for b in bars}
    assert max(widths) <= peers_report.PLOT_W
    texts = " ".join(t.text or "" for t in root.iter(f"{SVG}text"))
    assert "0.50x etcd" in texts and "4.00x etcd" in texts
    assert "not measured: no memcached endpoint" in texts
    assert "load average 0.25 at the start, 1.50 at the end" in texts


def _memcached_section(stale: dict[str, Any]) -> dict[str, Any]:
    """FIXTURE's etcd rows beside raftcache's memcached rows: set, get and `stale` (a
    1-client get first: the targets are the 64-client rows)."""
    section = copy.deepcopy(FIXTURE)
    section["systems"]["raftcache"]["rows"] = [
        _measured("raftcache", "memcached", "read", "get", 1, "leader", 90_000.0, 0.7),
        _measured("raftcache", "memcached", "write", "set", 64, "leader", 21_000.0, 0.7),
        _measured("raftcache", "memcached", "read", "get", 64, "leader", 26_000.0, 0.7),
        stale,
    ]
    return section


def _stale_row(**result: Any) -> dict[str, Any]:
    return {
        "system": "raftcache", "interface": "memcached", "kind": "stale",
        "label": "get (stale reads)", "op": "mc_get", "clients": 64, "role": "followers",
        **result,
    }  # fmt: skip


def test_memcached_targets_are_ratios_to_etcds_best_row_of_each_kind() -> None:
    """Issue 12: set vs etcd's best put (leader 7,000 over every member 6,000), get vs its
    linearizable get, stale gets vs its serializable get, all at 64 clients; a failed row
    has no verdict and says why in one line."""
    failed = _stale_row(failed="Traceback (most recent call last):\n  ...\nConnectionResetError\n")
    targets = peers_report.memcached_targets(_memcached_section(failed))
    assert [(t["raftcache"], t["reference"], t["ratio"], t["met"]) for t in targets] == [
        (21_000.0, 7_000.0, 3.0, True),
        (26_000.0, 9_000.0, 2.888, False),  # 2.8888...: rounded down, never up to a target
        (None, 10_000.0, None, None),
    ]
    assert targets[0]["reference_row"] == "etcd put, leader"
    assert targets[2]["why_missing"] == "failed: ConnectionResetError"
    table = peers_report.memcached_targets_table(_memcached_section(failed))
    assert "| 21,000/s | 7,000/s (etcd put, leader) | 3.000x (need 3x) | yes |" in table
    assert "| 26,000/s | 9,000/s (etcd get (linearizable), leader) | 2.888x (need 3x) | no |" in (
        table
    )
    assert "| failed: ConnectionResetError | 10,000/s (etcd get (serializable), every node) " in (
        table
    )
    stale = _measured("raftcache", "memcached", "stale", "get (stale reads)", 64, "followers",
                      50_000.0, 0.7)  # fmt: skip
    assert peers_report.memcached_targets(_memcached_section(stale))[2]["met"] is True
    skipped = _stale_row(skipped="no stale memcached reads: raftcache-node has no flag yet")
    assert peers_report.memcached_targets(_memcached_section(skipped))[2]["why_missing"] == (
        "no stale memcached reads: raftcache-node has no flag yet"
    )


def test_memcached_targets_say_why_a_system_gave_no_rows() -> None:
    """A raftcache block that failed as a whole (no rows) and an etcd that was not run, or
    whose 64-client row failed: the table is still there and says so."""
    section = copy.deepcopy(FIXTURE)
    section["name"] = "memcached"  # and the setup peers_section.run writes for it
    section["setup"]["raftcache_interfaces"] = ["memcached"]
    section["systems"]["raftcache"] = {
        "error": "Traceback (most recent call last):\n  ...\nTimeoutError: no leader in 60 s\n",
        "rows": [],
    }
    del section["systems"]["etcd"]
    text = peers_report.markdown(section)
    assert "| failed: TimeoutError: no leader in 60 s | not run | — (need 3x) | — |" in text
    section = _memcached_section(
        _measured("raftcache", "memcached", "stale", "get (stale reads)", 64, "followers", 1.0, 0.7)
    )
    etcd = section["systems"]["etcd"]["rows"]
    etcd[:] = [r for r in etcd if r["kind"] != "stale"]
    etcd.append({**_stale_row(failed="boom\nRuntimeError: etcd died"), "system": "etcd",
                 "interface": "gRPC"})  # fmt: skip
    target = peers_report.memcached_targets(section)[2]
    assert (target["reference"], target["met"]) == (None, None)
    assert target["reference_missing"] == "failed: RuntimeError: etcd died"


def test_the_memcached_section_is_titled_and_targeted_and_peers_without_it_is_not() -> None:
    section = {**_memcached_section(_measured(
        "raftcache", "memcached", "stale", "get (stale reads)", 64, "followers", 40_000.0, 0.7
    )), "name": "memcached"}  # fmt: skip
    text = peers_report.markdown(section)
    assert text.startswith(f"## {peers_report.MEMCACHED_TITLE} (same run)")
    assert "| Target (issue 12) |" in text and "4.000x (need 5x) | no |" in text
    without = copy.deepcopy(FIXTURE)
    rows = without["systems"]["raftcache"]["rows"]
    rows[:] = [r for r in rows if r["interface"] != "memcached"]
    text = peers_report.markdown(without)
    assert text.startswith(f"## {peers_report.PEERS_TITLE} (same run)")
    assert "Target (issue 12)" not in text


def test_bench_md_holds_both_sections_and_a_failed_one(tmp_path: Path) -> None:
    """bench.run's report: the peers and memcached sections each under its own title, and
    a section that raised shown as FAILED with its traceback (not silently left out)."""
    results: dict[str, Any] = {
        "meta": {"started": "2026-12-09 10:00:00 +0000", "sections": ["peers", "memcached"]},
        "peers": FIXTURE,
        "memcached": {
            **_memcached_section(
                _measured(
                    "raftcache",
                    "memcached",
                    "stale",
                    "get (stale reads)",
                    64,
                    "followers",
                    1.0,
                    0.7,
                )
            ),
            "name": "memcached",
        },
    }
    bench_run._write(tmp_path, results)
    text = (tmp_path / "bench.md").read_text()
    assert f"## {peers_report.PEERS_TITLE} (same run)" in text
    assert f"## {peers_report.MEMCACHED_TITLE} (same run)" in text
    results["memcached"] = {"error": "Traceback ...\nRuntimeError: apt-get install failed"}
    bench_run._write(tmp_path, results)
    text = (tmp_path / "bench.md").read_text()
    assert "## memcached: FAILED" in text and "RuntimeError: apt-get install failed" in text


def test_only_the_chosen_systems_tools_are_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[list[str]] = []
    monkeypatch.setattr(peers, "ensure_tools", lambda tools: asked.append(sorted(tools)))

    def stop() -> None:
        raise SystemExit("stop before measuring")

    monkeypatch.setattr(peers_section, "machine_info", stop)
    with pytest.raises(SystemExit):
        peers_section.run(Path("/nonexistent"), Path("/nonexistent"), [], keys=1, warmup=0,
                          seconds=0, systems=peers_section.MEMCACHED_SYSTEMS)  # fmt: skip
    assert asked == [["etcd", "etcdctl", "memcached"]]
    assert peers_section.versions(("memcached",)).keys() == {"memcached"}


def test_the_section_refuses_unknown_systems_and_interfaces(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown interface\(s\) \['http'\]"):
        peers_section.run(tmp_path, tmp_path, [], keys=10, warmup=0, seconds=0,
                          interfaces=("memcached", "http"))  # fmt: skip
    with pytest.raises(ValueError, match=r"unknown system\(s\) \['mongodb'\]"):
        peers_section.run(tmp_path, tmp_path, [], keys=10, warmup=0, seconds=0,
                          systems=("mongodb",), name="memcached")  # fmt: skip
    assert list(tmp_path.iterdir()) == []  # nothing started, nothing written
