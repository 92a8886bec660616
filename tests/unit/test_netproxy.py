"""The Raft link proxy: source identification, cuts, heals and delays, on loopback sockets."""

from __future__ import annotations

import pickle
import socket
import socketserver
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from raftcache.chaos.local_cluster import LocalCluster, free_port
from raftcache.chaos.nemesis import Nemesis, NemesisConfig
from raftcache.chaos.netproxy import (
    Delay,
    NetProxy,
    Route,
    decode_address_frame,
    encode_address_frame,
)


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@pytest.fixture
def echo() -> Iterator[tuple[str, int]]:
    """A fake node: echoes whatever its Raft port receives."""
    server = _Server(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield ("127.0.0.1", int(server.server_address[1]))
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def net(echo: tuple[str, int]) -> Iterator[NetProxy]:
    """n1 and n2 proxied; n1's real port is the echo server."""
    routes = [
        Route("n1", ("127.0.0.1", free_port()), echo),
        Route("n2", ("127.0.0.1", free_port()), echo),
    ]
    with NetProxy(routes, seed=1) as proxy:
        yield proxy


def _dial(net: NetProxy, dest: str, source: str) -> socket.socket:
    """Connect to dest's advertised address the way pysyncobj does: first frame = own address."""
    sock = socket.create_connection(net.routes[dest].listen, timeout=10)
    sock.sendall(encode_address_frame(source))
    return sock


def _roundtrip(sock: socket.socket, payload: bytes) -> bytes:
    """Send payload and read until as many bytes came back (b'' if the proxy closed on us)."""
    sock.sendall(payload)
    got = b""
    while len(got) < len(payload):
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return got
        if not chunk:
            return got
        got += chunk
    return got


def _skip_frame(sock: socket.socket, source: str) -> None:
    """The echo server also echoes the identification frame; read it off."""
    expected = encode_address_frame(source)
    got = b""
    while len(got) < len(expected):
        chunk = sock.recv(len(expected) - len(got))
        assert chunk, "proxy closed the connection"
        got += chunk
    assert got == expected


def _closed(sock: socket.socket, within: float = 10.0) -> bool:
    """True once the peer closes (EOF or reset) within the deadline."""
    sock.settimeout(within)
    try:
        return sock.recv(65536) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def _wait_links(net: NetProxy, n: int) -> list[tuple[str | None, str]]:
    deadline = time.monotonic() + 10
    while len(links := net.links()) != n and time.monotonic() < deadline:
        time.sleep(0.02)
    return links


# -- the identification frame ----------------------------------------------------------


def test_address_frame_roundtrip_and_protocols() -> None:
    frame = encode_address_frame("127.0.0.1:7380")
    assert decode_address_frame(frame[4:]) == "127.0.0.1:7380"
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        body = zlib.compress(pickle.dumps("10.0.0.1:1", protocol=protocol))
        assert decode_address_frame(body) == "10.0.0.1:1", protocol


class _Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("unpickled!",))


@pytest.mark.parametrize(
    "payload",
    [
        zlib.compress(pickle.dumps(["readonly"])),
        zlib.compress(pickle.dumps(("a", "b"))),
        zlib.compress(pickle.dumps(42)),
        zlib.compress(pickle.dumps(_Evil())),
        zlib.compress(b"\x80\x04not a pickle"),
        b"not zlib at all",
        zlib.compress(pickle.dumps("x" * 100_000)),  # larger than any address
    ],
)
def test_anything_but_a_lone_string_is_not_an_address(payload: bytes) -> None:
    assert decode_address_frame(payload) is None


# -- the proxy ---------------------------------------------------------------------------


def test_forwards_both_ways_and_learns_the_link(net: NetProxy) -> None:
    with _dial(net, "n1", net.routes["n2"].advertised) as sock:
        _skip_frame(sock, net.routes["n2"].advertised)
        payload = bytes(range(256)) * 1000
        assert _roundtrip(sock, payload) == payload
        assert _wait_links(net, 1) == [("n2", "n1")]
    assert net.stats.identified == 1


def test_cut_closes_open_connections_and_refuses_new_ones_until_heal(net: NetProxy) -> None:
    source = net.routes["n2"].advertised
    sock = _dial(net, "n1", source)
    _skip_frame(sock, source)
    assert _roundtrip(sock, b"before") == b"before"

    net.partition(["n1"], ["n2"])
    assert net.is_cut("n2", "n1") and net.is_cut("n1", "n2")
    assert _closed(sock)
    sock.close()
    with _dial(net, "n1", source) as again:
        assert _closed(again)
    assert net.stats.refused >= 1

    net.heal()
    with _dial(net, "n1", source) as healed:
        _skip_frame(healed, source)
        assert _roundtrip(healed, b"after") == b"after"


def test_unidentified_dialer_is_forwarded_even_during_a_cut(net: NetProxy) -> None:
    net.isolate("n1")
    with _dial(net, "n1", "192.0.2.1:9") as sock:  # not a node of this cluster
        _skip_frame(sock, "192.0.2.1:9")
        assert _roundtrip(sock, b"hello") == b"hello"
        assert _wait_links(net, 1) == [(None, "n1")]
    # a dialer that does not speak the frame format at all
    with socket.create_connection(net.routes["n1"].listen, timeout=10) as raw:
        assert _roundtrip(raw, b"\xff\xff\xff\xffGET / HTTP/1.0\r\n") == (
            b"\xff\xff\xff\xffGET / HTTP/1.0\r\n"
        )


def test_delay_holds_bytes_in_both_directions_and_keeps_order(net: NetProxy) -> None:
    source = net.routes["n2"].advertised
    with _dial(net, "n1", source) as sock:
        _skip_frame(sock, source)
        net.set_delay(Delay(0.15, jitter_s=0.1))
        started = time.monotonic()
        assert _roundtrip(sock, b"ping") == b"ping"
        assert time.monotonic() - started >= 0.3  # 150 ms each way, at least
        # Many small writes with jitter still arrive as one ordered stream.
        for i in range(50):
            sock.sendall(b"%03d," % i)
        expected = b"".join(b"%03d," % i for i in range(50))
        got = b""
        while len(got) < len(expected):
            got += sock.recv(65536)
        assert got == expected
        net.set_delay(None)


def test_bad_input_is_refused_clearly(echo: tuple[str, int]) -> None:
    with pytest.raises(ValueError, match="unique"):
        NetProxy([Route("n1", echo, echo), Route("n1", echo, echo)])
    with pytest.raises(ValueError, match="latency"):
        Delay(-1)
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        port = int(taken.getsockname()[1])
        proxy = NetProxy([Route("n1", ("127.0.0.1", port), echo)])
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}"):
            proxy.start()
    finally:
        taken.close()
    with (
        NetProxy([Route("n1", ("127.0.0.1", free_port()), echo)]) as proxy,
        pytest.raises(ValueError, match="unknown node"),
    ):
        proxy.partition(["n1"], ["n9"])


def test_network_nemeses_need_a_proxied_cluster(tmp_path: Path) -> None:
    cluster = LocalCluster(3, tmp_path)  # never started: no processes, no proxy
    nemesis = Nemesis(cluster, NemesisConfig(("partition-leader",)), log=lambda _: None)
    assert NemesisConfig(("pause", "latency")).needs_proxy
    assert not NemesisConfig(("pause",)).needs_proxy
    for action in (nemesis.partition_leader, nemesis.partition_halves, nemesis.latency):
        with pytest.raises(ValueError, match="proxy=True"):
            action()
    assert nemesis.faults == []
