"""TLS for the client ports (gRPC, Redis, memcached) and for follower-to-leader forwarding.

`load_material` reads and checks the PEM files (refusing a key that does not match its
certificate, garbage, an expired certificate); `TlsReloader` keeps the current material,
re-reads it on SIGHUP or when a file's mtime changes, and hands it to new handshakes:
gRPC through dynamic server credentials, the asyncio ports by loading the new chain into
the same ssl.SSLContext. Connections already open keep the certificate they started with.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import ssl
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import structlog
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from raftcache.node.config import ConfigError, TlsConfig

_log = structlog.get_logger("raftcache.node.tls")

POLL_INTERVAL_S = 5.0


@dataclass(frozen=True)
class TlsMaterial:
    """The bytes of one consistent set of TLS files, already checked."""

    cert_chain: bytes
    key: bytes
    client_ca: bytes | None  # mTLS: clients must present a certificate signed by it
    peer_ca: bytes  # verifies the leader's certificate when forwarding
    not_after: datetime.datetime
    serial: int


def _read(flag: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"{flag}: cannot read {path} ({exc.strerror or exc}); give a readable PEM file"
        ) from None


def _certificates(flag: str, path: str, data: bytes) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        certs = []
    if not certs:
        raise ConfigError(
            f"{flag}: {path} holds no PEM certificate (expected '-----BEGIN CERTIFICATE-----')"
        )
    return certs


def _public(key: object) -> bytes:
    return key.public_bytes(  # type: ignore[attr-defined,no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_material(config: TlsConfig, now: datetime.datetime | None = None) -> TlsMaterial:
    """Read and check the files `config` names; ConfigError says which one is wrong and how.

    Expiry is read with the `cryptography` package (a node dependency)."""
    cert_data = _read("--tls-cert-file", config.cert_file)
    key_data = _read("--tls-key-file", config.key_file)
    leaf = _certificates("--tls-cert-file", config.cert_file, cert_data)[0]
    try:
        key = serialization.load_pem_private_key(key_data, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"--tls-key-file: {config.key_file} is not an unencrypted PEM private key ({exc}); "
            "give the key of the --tls-cert-file certificate, without a passphrase"
        ) from None
    if _public(key.public_key()) != _public(leaf.public_key()):
        raise ConfigError(
            f"--tls-cert-file and --tls-key-file do not match: the certificate in "
            f"{config.cert_file} (subject {leaf.subject.rfc4514_string()}) was not issued for "
            f"the key in {config.key_file}; give the key the certificate was made for"
        )
    now = now or datetime.datetime.now(datetime.UTC)
    if leaf.not_valid_after_utc <= now:
        raise ConfigError(
            f"--tls-cert-file: the certificate in {config.cert_file} (subject "
            f"{leaf.subject.rfc4514_string()}) expired on "
            f"{leaf.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC; renew it"
        )
    client_ca = None
    if config.client_ca_file:
        client_ca = _read("--tls-client-ca-file", config.client_ca_file)
        _certificates("--tls-client-ca-file", config.client_ca_file, client_ca)
    peer_ca = client_ca
    if config.ca_file:
        peer_ca = _read("--tls-ca-file", config.ca_file)
        _certificates("--tls-ca-file", config.ca_file, peer_ca)
    assert peer_ca is not None  # config.load requires one of the two
    return TlsMaterial(
        cert_data, key_data, client_ca, peer_ca, leaf.not_valid_after_utc, leaf.serial_number
    )


def _load_chain(context: ssl.SSLContext, material: TlsMaterial) -> None:
    """load_cert_chain reads files only: write the checked bytes to a private temp dir, so the
    context gets exactly what was checked even if the files change meanwhile."""
    with tempfile.TemporaryDirectory(prefix="raftcache-tls-") as tmp:
        cert, key = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(material.key)
        cert.write_bytes(material.cert_chain)
        context.load_cert_chain(cert, key)


def server_context(material: TlsMaterial) -> ssl.SSLContext:
    """An ssl.SSLContext for the Redis and memcached ports (TLS 1.2+)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_chain(context, material)
    if material.client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cadata=material.client_ca.decode("ascii", "replace"))
    return context


def _observed(on_failure: Callable[[ssl.SSLError], None]) -> type[ssl.SSLObject]:
    """An SSLObject class whose failed handshakes reach `on_failure` (then raise as ever).
    The event loop's SSL protocol wraps every connection in its context's sslobject_class
    and drops failed handshakes silently (uvloop and asyncio log them only in debug mode);
    this sees each one where it happens, at no cost once the handshake is done. A client
    that leaves before sending anything (a TCP health probe) never fails a handshake."""

    class Observed(ssl.SSLObject):
        def do_handshake(self) -> None:
            try:
                super().do_handshake()
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                raise
            except ssl.SSLError as exc:
                with contextlib.suppress(Exception):
                    on_failure(exc)
                raise

    return Observed


def _mtimes(config: TlsConfig) -> tuple[float, ...]:
    paths = (config.cert_file, config.key_file, config.client_ca_file, config.ca_file)
    times = []
    for path in paths:
        try:
            times.append(os.stat(path).st_mtime if path else 0.0)
        except OSError:
            times.append(-1.0)
    return tuple(times)


class TlsReloader:
    """The current TLS material and everything built from it, swapped on reload."""

    def __init__(self, config: TlsConfig, material: TlsMaterial) -> None:
        self.config = config
        self.material = material
        self.context = server_context(material)
        self._contexts: list[ssl.SSLContext] = []  # observed_context()'s, reloaded alike
        self.generation = 0
        self._mtimes = _mtimes(config)
        self._served_generation = 0
        self.on_reload: list[Callable[[], None]] = []

    def observed_context(self, on_failure: Callable[[ssl.SSLError], None]) -> ssl.SSLContext:
        """A server context of a front-end's own (Redis, memcached) whose failed handshakes
        reach `on_failure`: plaintext on the TLS port, no or an untrusted client certificate
        under mTLS. Reloads load into it like into `context`."""
        context = server_context(self.material)
        context.sslobject_class = _observed(on_failure)
        self._contexts.append(context)
        return context

    def _grpc_config(self) -> grpc.ServerCertificateConfiguration:
        material = self.material
        return grpc.ssl_server_certificate_configuration(
            [(material.key, material.cert_chain)], material.client_ca
        )

    def grpc_credentials(self) -> grpc.ServerCredentials:
        """Server credentials that pick up reloaded material on each new handshake."""

        def fetch() -> grpc.ServerCertificateConfiguration | None:  # a gRPC core thread
            generation = self.generation
            if generation == self._served_generation:
                return None  # unchanged
            self._served_generation = generation
            return self._grpc_config()

        return grpc.dynamic_ssl_server_credentials(
            self._grpc_config(), fetch, require_client_authentication=bool(self.material.client_ca)
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """What forwarding presents to the leader: its CA, and under mTLS this node's pair."""
        material = self.material
        if material.client_ca is None:
            return grpc.ssl_channel_credentials(material.peer_ca)
        return grpc.ssl_channel_credentials(material.peer_ca, material.key, material.cert_chain)

    def reload(self, reason: str) -> bool:
        """Re-read the files; on any problem keep serving the current material (logged)."""
        self._mtimes = _mtimes(self.config)
        try:
            material = load_material(self.config)
            for context in (self.context, *self._contexts):
                if material.client_ca != self.material.client_ca and material.client_ca:
                    # A CA added to the file is trusted at once; one removed stays trusted
                    # by the Redis/memcached ports until restart (an SSLContext only adds).
                    context.load_verify_locations(
                        cadata=material.client_ca.decode("ascii", "replace")
                    )
                _load_chain(context, material)
        except (ConfigError, ssl.SSLError, OSError) as exc:
            _log.error("TLS files not reloaded; still serving the previous ones", error=str(exc))
            return False
        self.material = material
        self.generation += 1
        for callback in self.on_reload:
            with contextlib.suppress(Exception):
                callback()
        _log.info(
            "TLS certificate reloaded",
            reason=reason,
            serial=f"{material.serial:x}",
            not_after=material.not_after.isoformat(),
        )
        return True

    def poll(self) -> bool:
        """Reload when any file's mtime changed since the last look (not while half-written:
        a reload that fails is retried at the next change)."""
        if _mtimes(self.config) == self._mtimes:
            return False
        return self.reload("files changed")
