"""How the SDK reaches nodes: an injectable transport, so routing and retries are
tested without sockets (tests pass a fake with the same `call` and `open_stream`)."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import grpc
from raftcache.v1.wire import LEADER_METADATA_KEY, METHODS, ORIGIN_METADATA_KEY, STREAMS
from raftcache.v1.wire import never_sent as _never_sent


@dataclass(frozen=True)
class CallFailed(Exception):
    """One attempt failed. `origin` is the node's own error class name when the node
    answered (absent for transport failures); `leader` is the node's leader hint."""

    code: str  # grpc.StatusCode name, e.g. "UNAVAILABLE"
    details: str
    origin: str | None = None
    leader: str | None = None

    @property
    def never_sent(self) -> bool:
        """True when the request surely did not reach a node (connect or DNS failure)."""
        return _never_sent(self.code, self.details, self.origin is not None)


@dataclass(frozen=True)
class TlsConfig:
    """TLS to the nodes: `ca_file` (PEM) verifies their certificates (None: gRPC's built-in
    public roots); `cert_file` and `key_file` are this client's pair when they require mTLS;
    `server_name` overrides the name checked against the certificate (e.g. dialling an IP)."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    server_name: str | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        """Channel credentials from the files; ValueError names a file that cannot be used."""
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError(
                "TlsConfig: cert_file and key_file go together (the client certificate and its "
                "private key, for mTLS); give both or neither"
            )

        def read(what: str, path: str | None) -> bytes | None:
            if path is None:
                return None
            try:
                return Path(path).read_bytes()
            except OSError as exc:
                raise ValueError(
                    f"TlsConfig: cannot read {what} {path} ({exc.strerror or exc})"
                ) from None

        return grpc.ssl_channel_credentials(
            read("ca_file", self.ca_file),
            read("key_file", self.key_file),
            read("cert_file", self.cert_file),
        )


USER_ENV = "RAFTCACHE_USER"
PASSWORD_ENV = "RAFTCACHE_PASSWORD"


def credentials_metadata(
    user: str | None, password: str | None, environ: Mapping[str, str] | None = None
) -> tuple[tuple[str, str], ...]:
    """The `authorization: Basic base64(user:password)` metadata every call carries: `user`
    and `password` as given, else RAFTCACHE_USER / RAFTCACHE_PASSWORD; none at all when
    neither is set (the cluster's default user, if it needs no password). A password alone
    is the default user's (Redis's `AUTH password`)."""
    env = os.environ if environ is None else environ
    if user is None:
        user = env.get(USER_ENV) or None
    if password is None:
        password = env.get(PASSWORD_ENV)
    if user is None and password is None:
        return ()
    if user is not None and ":" in user:
        raise ValueError(f"user {user!r}: a user name cannot contain ':' (Basic credentials)")
    token = base64.b64encode(f"{user or 'default'}:{password or ''}".encode()).decode()
    return (("authorization", f"Basic {token}"),)


class Stream(Protocol):
    """One server-streaming call to one node."""

    async def started(self, timeout: float) -> Mapping[str, str]:
        """Wait until the node accepted the call (its initial metadata, returned; empty if it
        did not come within `timeout` seconds); raise CallFailed if it refused or the
        connection failed."""

    async def next(self) -> Any | None:
        """The next message, or None when the node ended the stream cleanly; CallFailed
        for any non-OK end."""

    def cancel(self) -> None: ...


class Transport(Protocol):
    async def call(self, address: str, method: str, request: Any, timeout: float) -> Any:
        """Send one unary call; raise CallFailed for any non-OK status."""

    def open_stream(self, address: str, method: str, request: Any) -> Stream:
        """Start one server-streaming call (see wire.STREAMS); it runs until cancelled."""

    async def close(self) -> None: ...


def _failed(exc: grpc.aio.AioRpcError) -> CallFailed:
    trailing = dict(exc.trailing_metadata() or ())
    return CallFailed(
        code=exc.code().name,
        details=exc.details() or "",
        origin=trailing.get(ORIGIN_METADATA_KEY),
        leader=trailing.get(LEADER_METADATA_KEY),
    )


class _GrpcStream:
    def __init__(self, call: Any) -> None:
        self._call = call

    async def started(self, timeout: float) -> Mapping[str, str]:
        metadata: dict[str, str] = {}
        try:
            received = await asyncio.wait_for(self._call.initial_metadata(), timeout)
            metadata = {str(k): str(v) for k, v in (received or ())}
        except TimeoutError:
            pass  # a node that sends its metadata only with the first message: still fine
        except grpc.aio.AioRpcError as exc:
            raise _failed(exc) from None
        if self._call.done():
            code = await self._call.code()
            if code != grpc.StatusCode.OK:
                trailing = dict(await self._call.trailing_metadata() or ())
                raise CallFailed(
                    code.name,
                    await self._call.details() or "",
                    trailing.get(ORIGIN_METADATA_KEY),
                    trailing.get(LEADER_METADATA_KEY),
                )
        return metadata

    async def next(self) -> Any | None:
        try:
            message = await self._call.read()
        except grpc.aio.AioRpcError as exc:
            raise _failed(exc) from None
        return None if message is grpc.aio.EOF else message

    def cancel(self) -> None:
        self._call.cancel()


RECONNECT_BACKOFF_MS: tuple[tuple[str, int], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
)


class GrpcTransport:
    """grpc.aio channels, one per node address."""

    def __init__(
        self,
        options: list[tuple[str, Any]] | None = None,
        tls: TlsConfig | None = None,
        metadata: tuple[tuple[str, str], ...] = (),
    ) -> None:
        """`tls`: None for plaintext; the files are read here (ValueError when unusable).
        `metadata`: sent with every call (credentials_metadata)."""
        self._options = options or [
            ("grpc.max_receive_message_length", 64 << 20),
            ("grpc.max_send_message_length", 64 << 20),
        ]
        # gRPC's default reconnect backoff grows to 120 s: a node down for minutes stayed
        # unreachable to the SDK for up to ~2 min after it was back (the chaos-long run: a
        # re-added member that then led refused every leader-only call for 104 s). Dial a
        # down node at least once a second instead.
        given = {name for name, _ in self._options}
        self._options = [
            *self._options,
            *((k, v) for k, v in RECONNECT_BACKOFF_MS if k not in given),
        ]
        self._credentials = tls.credentials() if tls is not None else None
        if tls is not None and tls.server_name:
            self._options = [*self._options, ("grpc.ssl_target_name_override", tls.server_name)]
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._calls: dict[tuple[str, str], Any] = {}
        self.metadata = metadata or None

    def _channel(self, address: str) -> grpc.aio.Channel:
        channel = self._channels.get(address)
        if channel is None and self._credentials is not None:
            channel = grpc.aio.secure_channel(address, self._credentials, self._options)
            self._channels[address] = channel
        elif channel is None:
            channel = grpc.aio.insecure_channel(address, options=self._options)
            self._channels[address] = channel
        return channel

    def _callable(self, address: str, method: str) -> Any:
        key = (address, method)
        call = self._calls.get(key)
        if call is None:
            kind, types = (
                ("unary_stream", STREAMS[method]) if method in STREAMS else
                ("unary_unary", METHODS[method])
            )  # fmt: skip
            call = getattr(self._channel(address), kind)(
                f"/raftcache.v1.{method}",
                request_serializer=types[0].SerializeToString,
                response_deserializer=types[1].FromString,
            )
            self._calls[key] = call
        return call

    async def call(self, address: str, method: str, request: Any, timeout: float) -> Any:
        try:
            return await self._callable(address, method)(
                request, timeout=timeout, metadata=self.metadata
            )
        except grpc.aio.AioRpcError as exc:
            raise _failed(exc) from None

    def open_stream(self, address: str, method: str, request: Any) -> Stream:
        return _GrpcStream(self._callable(address, method)(request, metadata=self.metadata))

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
        self._calls.clear()
