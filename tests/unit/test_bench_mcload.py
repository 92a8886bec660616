"""bench/mcload.c, the memcached rows' C load generator, through its driver bench/mcload.py:
built with the machine's C compiler, run against the real memcached (what it measures),
against an in-test server whose answers each test picks (misses, errors, replies that are
not memcached's, a server that hangs up), and with bad arguments."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bench import mcload, memgen, peers, peers_section
from bench.common import value_bytes
from bench.loadgen import LoadSpec, MeasuredRun

Answer = Callable[[bytes], bytes | None]
"""A request line (and its data block for a set) -> the reply, or None to hang up."""


class ThreadedServer:
    """A listener on loopback whose connections are each served on a thread of their own
    (`_serve`, reading lines with `_line`)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.addr = f"127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            while True:
                got = self._line(conn, buf)
                if got is None:
                    return
                rest = self._handle(conn, *got)
                if rest is None:
                    return  # hang up
                buf = rest

    def _handle(self, conn: socket.socket, line: bytes, buf: bytes) -> bytes | None:
        """Answer the command `line` (its data, if any, starts `buf`); return what follows
        it, or None to hang up."""
        raise NotImplementedError

    @staticmethod
    def _line(conn: socket.socket, buf: bytes) -> tuple[bytes, bytes] | None:
        """The next line and what follows it, or None once the client has gone."""
        while b"\r\n" not in buf:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            buf += chunk
        line, rest = buf.split(b"\r\n", 1)
        return line, rest

    @staticmethod
    def _block(conn: socket.socket, buf: bytes, size: int) -> bytes | None:
        """buf grown to at least `size` bytes, or None once the client has gone."""
        while len(buf) < size:
            chunk = conn.recv(1 << 20)
            if not chunk:  # mcload gone mid-request
                return None
            buf += chunk
        return buf

    def close(self) -> None:
        self.listener.close()


class ScriptedServer(ThreadedServer):
    """A memcached stand-in: every request is answered by `answer`."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests: list[bytes] = []
        super().__init__()

    def _handle(self, conn: socket.socket, line: bytes, buf: bytes) -> bytes | None:
        request = line
        if line.startswith(b"set "):
            size = int(line.split()[4]) + 2
            got = self._block(conn, buf, size)
            if got is None:
                return None
            request, buf = line + b"\r\n" + got[:size], got[size:]
        self.requests.append(request)
        reply = self.answer(request)
        if reply is None:
            return None
        conn.sendall(reply)
        return buf


@pytest.fixture
def scripted() -> Iterator[Callable[[Answer], ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def make(answer: Answer) -> ScriptedServer:
        servers.append(ScriptedServer(answer))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


@pytest.fixture(scope="module")
def binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if mcload.compiler() is None:
        pytest.fail("no C compiler: .ci/run installs gcc")
    return mcload.build(tmp_path_factory.mktemp("mcload"))


def _spec(
    op: str, addrs: list[str], clients: int = 4, seed: int = 1, size: int = 100, **kw: float
) -> LoadSpec:
    return LoadSpec(
        op=op,
        targets=tuple(addrs),
        clients=clients,
        clients_per_channel=0,
        key_prefix="mc:",
        key_count=50,
        value_size=size,
        warmup_s=kw.get("warmup", 0.1),
        duration_s=kw.get("seconds", 0.4),
        seed=seed,
        rpc_timeout_s=kw.get("timeout", 2.0),
    )


def _run(binary: Path, tmp_path: Path, *specs: LoadSpec) -> MeasuredRun:
    return mcload.run_measured(list(specs), {}, binary, tmp_path)


def test_against_real_memcached_gets_hit_and_sets_store_the_bench_value(
    binary: Path, tmp_path: Path
) -> None:
    server = peers.MemcachedServer(tmp_path / "mc", memory_mb=64)
    server.start()
    try:
        asyncio.run(memgen.populate(server.addr, "mc:", 50, 100))
        got = _run(binary, tmp_path, _spec("mc_get", [server.addr], clients=8))
        (result,) = got.results
        assert result.ops > 0 and result.errors == 0 and result.error_codes == {}
        assert result.channels == 8 and len(result.latencies) == result.ops
        assert 0 < min(result.latencies) <= max(result.latencies) < 2.0
        assert got.window_s == 0.4 and "generator0" in got.cpu.process_pct
        # sets store value_bytes(size, seed) under the generator's keys, as memgen's do
        two = _run(
            binary,
            tmp_path,
            _spec("mc_set", [server.addr], clients=2, seed=7),
            _spec("mc_set", [server.addr], clients=2, seed=7),
        )
        assert [r.index for r in two.results] == [0, 1]
        assert all(r.ops > 0 and r.errors == 0 for r in two.results)
        assert {"generator0", "generator1"} <= set(two.cpu.process_pct)
        stored = asyncio.run(memgen.read_value(server.addr, memgen.mc_key("mc:", 3)))
        assert stored == value_bytes(100, 7)
    finally:
        server.close()
    assert not list(tmp_path.glob("mcload-latencies-*"))  # the driver's files are removed


def test_requests_spread_over_targets_and_keys(
    binary: Path, tmp_path: Path, scripted: Callable[[Answer], ScriptedServer]
) -> None:
    a = scripted(lambda r: b"STORED\r\n")
    b = scripted(lambda r: b"STORED\r\n")
    (result,) = _run(binary, tmp_path, _spec("mc_set", [a.addr, b.addr], clients=4)).results
    assert result.ops > 0 and result.errors == 0
    for server in (a, b):  # two connections each: client c goes to target c mod 2
        first = server.requests[0]
        assert first.startswith(b"set mc:0000000000")
        header, data = first.split(b"\r\n", 1)
        assert header.split()[2:] == [b"0", b"0", b"100"]
        assert data == value_bytes(100, 1) + b"\r\n"
    keys = {r.split()[1] for r in a.requests + b.requests}
    assert len(keys) > 10 and all(len(k) == len(b"mc:") + 12 for k in keys)


def test_misses_and_error_replies_are_counted_by_their_first_word(
    binary: Path, tmp_path: Path, scripted: Callable[[Answer], ScriptedServer]
) -> None:
    def answer(request: bytes) -> bytes:
        key = request.split()[1]
        if key.endswith(b"1"):
            return b"END\r\n"  # a get's miss
        if key.endswith(b"2"):
            return b"SERVER_ERROR out of memory storing object\r\n"
        return b"VALUE %b 0 3\r\nabc\r\nEND\r\n" % key

    server = scripted(answer)
    (result,) = _run(binary, tmp_path, _spec("mc_get", [server.addr])).results
    assert result.ops > 0 and result.errors > 0
    assert set(result.error_codes) == {"MISS", "SERVER_ERROR"}
    assert sum(result.error_codes.values()) == result.errors
    assert len(result.latencies) == result.ops  # errors have no latency


def test_values_split_across_reads_and_holding_crlf_are_framed_by_their_size(
    binary: Path, tmp_path: Path, scripted: Callable[[Answer], ScriptedServer]
) -> None:
    value = b"\r\nEND\r\n" * 2000  # 14 KB: several reads, and END inside the data

    server = scripted(
        lambda r: b"VALUE %b 5 %d 99\r\n%b\r\nEND\r\n" % (r.split()[1], len(value), value)
    )
    (result,) = _run(binary, tmp_path, _spec("mc_get", [server.addr], clients=2)).results
    assert result.ops > 0 and result.errors == 0


def test_requests_larger_than_a_socket_takes_at_once_are_sent_whole(
    binary: Path, tmp_path: Path, scripted: Callable[[Answer], ScriptedServer]
) -> None:
    """6 MiB sets on 4 connections: more than a loopback socket buffers (tcp_wmem's 4 MiB),
    so mcload (non-blocking) finishes each on EPOLLOUT while the others go on."""
    sizes: list[int] = []

    def answer(request: bytes) -> bytes:
        header, data = request.split(b"\r\n", 1)
        sizes.append(len(data) - 2)
        assert int(header.split()[4]) == len(data) - 2 and data.endswith(b"\r\n")
        return b"STORED\r\n"

    server = scripted(answer)
    spec = _spec("mc_set", [server.addr], size=6 << 20, seconds=1.0)
    (result,) = _run(binary, tmp_path, spec).results
    assert result.ops > 0 and result.errors == 0
    assert sizes and set(sizes) == {6 << 20}


class EarlyRefusal(ThreadedServer):
    """memcached's way with a value over its item size: `SERVER_ERROR object too large for
    cache` right after the command line, then (after a pause) the data block read and
    dropped."""

    LIMIT = 1000

    def __init__(self) -> None:
        self.refused = 0
        super().__init__()

    def _handle(self, conn: socket.socket, line: bytes, buf: bytes) -> bytes | None:
        size = int(line.split()[4]) + 2
        if size - 2 > self.LIMIT:
            self.refused += 1
            conn.sendall(b"SERVER_ERROR object too large for cache\r\n")
            time.sleep(0.05)  # slow to drain: the rest is still unsent after 2 ms
        got = self._block(conn, buf, size)  # the data block: dropped (or stored)
        if got is None:
            return None
        if size - 2 <= self.LIMIT:
            conn.sendall(b"STORED\r\n")
        return got[size:]


def test_an_error_before_the_request_is_all_sent_keeps_the_stream_in_step(
    binary: Path, tmp_path: Path
) -> None:
    """The refusal arrives while most of a 6 MiB set is still to be sent (over the 4 MiB a
    loopback socket buffers at most, tcp_wmem): the rest goes out before the connection's
    next request, so the server's byte count stays in step. Before the fix mcload started
    its next request 2 ms after the error and the server read it as the old one's data."""
    server = EarlyRefusal()
    try:
        spec = _spec("mc_set", [server.addr], clients=2, size=6 << 20, seconds=1.0)
        (result,) = _run(binary, tmp_path, spec).results
    finally:
        server.close()
    assert result.ops == 0 and result.errors > 0
    assert result.error_codes == {"SERVER_ERROR": result.errors}
    assert server.refused >= result.errors


def test_after_an_error_a_connection_pauses_instead_of_spinning(
    binary: Path, tmp_path: Path, scripted: Callable[[Answer], ScriptedServer]
) -> None:
    server = scripted(lambda r: b"SERVER_ERROR busy\r\n")
    (result,) = _run(binary, tmp_path, _spec("mc_get", [server.addr], clients=1)).results
    # one connection, a 0.4 s window, 2 ms after each error: ~200 at most, not thousands
    assert result.ops == 0 and result.error_codes == {"SERVER_ERROR": result.errors}
    assert 20 < result.errors <= 0.4 / 0.002


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        (b"VALUE k 0 banana\r\n", "not a memcached reply"),
        (b"STORED\r\nSTORED\r\n", "more than one reply to one request"),
        (None, "closed a connection mid-run"),
    ],
)
def test_a_server_that_misbehaves_fails_the_run_saying_how(
    binary: Path,
    tmp_path: Path,
    scripted: Callable[[Answer], ScriptedServer],
    reply: bytes | None,
    why: str,
) -> None:
    server = scripted(lambda r: reply)
    op = "mc_get" if reply and reply.startswith(b"VALUE") else "mc_set"
    with pytest.raises(RuntimeError, match=why):
        _run(binary, tmp_path, _spec(op, [server.addr], clients=1))


def test_a_server_that_never_answers_fails_after_the_timeout(
    binary: Path, tmp_path: Path, scripted: Callable[[Answer], ScriptedServer]
) -> None:
    hang = threading.Event()
    server = scripted(lambda r: hang.wait(30) and None)  # type: ignore[func-returns-value]
    try:
        with pytest.raises(RuntimeError, match="replies still owed 1 s after the window"):
            _run(binary, tmp_path, _spec("mc_get", [server.addr], clients=1, timeout=0.1))
    finally:
        hang.set()


def test_a_target_nobody_listens_on_fails_before_the_window(binary: Path, tmp_path: Path) -> None:
    with socket.socket() as s:  # a port just freed: nobody listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RuntimeError, match=f"did not connect: mcload: connect to 127.0.0.1:{port}"):
        _run(binary, tmp_path, _spec("mc_get", [f"127.0.0.1:{port}"]))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--connections", "0"], "--connections must be an integer from 1 to 100000, not '0'"),
        (["--keys", "ten"], "--keys must be an integer from 1 to 100000000, not 'ten'"),
        (["--op", "delete"], "--op must be get or set"),
        (["--targets", "localhost"], "a target must be HOST:PORT"),
        (["--prefix", "a b"], "--prefix must be a short word"),
        (["--verbose", "1"], "unknown option '--verbose'"),
        (["--seed"], "every option takes a value"),
    ],
)
def test_bad_arguments_exit_2_saying_what_was_wrong(
    binary: Path, args: list[str], message: str
) -> None:
    base = {
        "--op": "get",
        "--targets": "127.0.0.1:1",
        "--connections": "1",
        "--prefix": "mc:",
        "--keys": "10",
        "--latency-file": "/dev/null",
    }
    argv = [str(binary)]
    for option, value in base.items():
        if option not in args:
            argv += [option, value]
    argv += args
    done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    assert done.returncode == 2
    assert done.stderr.startswith(f"mcload: {message}\nusage: mcload --op get|set")


def test_the_driver_refuses_ops_it_cannot_drive(binary: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"mcload drives \['mc_get', 'mc_set'\], not 'resp_get'"):
        mcload.argv(binary, _spec("resp_get", ["127.0.0.1:1"]), tmp_path / "x")


def test_the_peers_section_picks_the_generator_by_name(tmp_path: Path) -> None:
    assert peers_section.memcached_runner("memgen", tmp_path) is None
    assert peers_section.memcached_runner("mcload", tmp_path) is not None
    (built,) = (tmp_path / "mcload-build").glob("mcload-*")
    assert os.access(built, os.X_OK)
    with pytest.raises(ValueError, match=r"choose from \('mcload', 'memgen'\)"):
        peers_section.memcached_runner("memaslap", tmp_path)


def test_a_source_is_compiled_once_per_work_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The memcached section's one-pass rows and its pairs each ask for mcload: the second
    ask finds the binary its source text names."""
    first = mcload.build(tmp_path)

    def no_compiler(*args: Any, **kw: Any) -> Any:
        raise AssertionError("compiled again")

    monkeypatch.setattr(mcload.subprocess, "run", no_compiler)
    assert mcload.build(tmp_path) == first


def test_a_build_without_a_compiler_says_how_to_get_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(mcload.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match=r"no C compiler \(cc or gcc\).*apt-get install gcc"):
        mcload.build(tmp_path)


def test_the_section_installs_gcc_when_no_compiler_is_there(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    asked: list[list[str]] = []
    monkeypatch.setattr(mcload, "compiler", lambda: None)
    monkeypatch.setattr(peers, "ensure_tools", lambda tools: asked.append(list(tools)))
    monkeypatch.setattr(mcload, "build", lambda out: out / "mcload")
    assert peers_section.memcached_runner("mcload", tmp_path) is not None
    assert asked == [["gcc"]]


def test_installing_gcc_brings_the_c_headers_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """gcc only Recommends libc6-dev (stdio.h...), and the install skips recommends."""
    ran: list[list[str]] = []
    monkeypatch.setattr(peers.shutil, "which", lambda name: None)
    monkeypatch.setattr(peers.os, "geteuid", lambda: 0)

    def run(argv: list[str], **kw: Any) -> Any:
        ran.append(argv)
        return subprocess.CompletedProcess(argv, 0)

    monkeypatch.setattr(peers.subprocess, "run", run)
    peers.ensure_tools(["gcc"])
    assert ran[0][:4] == ["apt-get", "install", "-y", "--no-install-recommends"]
    assert ran[0][4:] == ["gcc", "libc6-dev"]
