"""TLS flags and files: every refusal at start-up names the flag and says what to do."""

from __future__ import annotations

import datetime
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from raftcache.node.config import ConfigError, TlsConfig, load
from raftcache.node.tls import TlsReloader, load_material

from tests.tls_certs import Ca


@pytest.fixture(scope="module")
def ca() -> Ca:
    return Ca.make()


@pytest.fixture
def files(ca: Ca, tmp_path: Path) -> dict[str, Path]:
    cert, key, _ = ca.write_pair(tmp_path, "node")
    return {"cert": cert, "key": key, "ca": ca.write(tmp_path / "ca.crt")}


def refused(argv: list[str]) -> str:
    with pytest.raises(ConfigError) as exc:
        load(argv, {})
    return str(exc.value)


def test_no_tls_flags_is_plaintext() -> None:
    assert load([], {}).tls is None


def test_tls_flags_from_the_environment() -> None:
    env = {
        "RAFTCACHE_TLS_CERT_FILE": "c.pem",
        "RAFTCACHE_TLS_KEY_FILE": "k.pem",
        "RAFTCACHE_TLS_CA_FILE": "ca.pem",
    }
    assert load([], env).tls == TlsConfig("c.pem", "k.pem", "", "ca.pem")


def test_key_without_cert_is_refused() -> None:
    assert "--tls-key-file given without --tls-cert-file" in refused(["--tls-key-file", "k"])


def test_cert_without_key_is_refused() -> None:
    assert "--tls-cert-file given without --tls-key-file" in refused(["--tls-cert-file", "c"])


def test_a_ca_without_a_certificate_is_refused() -> None:
    message = refused(["--tls-client-ca-file", "ca"])
    assert "--tls-client-ca-file given without --tls-cert-file and --tls-key-file" in message


def test_tls_needs_a_ca_for_forwarding() -> None:
    message = refused(["--tls-cert-file", "c", "--tls-key-file", "k"])
    assert message.startswith("--tls-ca-file:") and "--tls-client-ca-file" in message


def test_the_client_ca_also_verifies_peers() -> None:
    cfg = load(["--tls-cert-file", "c", "--tls-key-file", "k", "--tls-client-ca-file", "ca"], {})
    assert cfg.tls == TlsConfig("c", "k", "ca", "")


def tls(files: dict[str, Path], **override: Path) -> TlsConfig:
    paths = {**files, **override}
    return TlsConfig(str(paths["cert"]), str(paths["key"]), "", str(paths["ca"]))


def test_good_files_load(files: dict[str, Path]) -> None:
    material = load_material(tls(files))
    assert material.peer_ca == files["ca"].read_bytes()
    assert material.client_ca is None


def test_a_missing_file_names_its_flag(files: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--tls-key-file: cannot read .*nope\.key"):
        load_material(tls(files, key=tmp_path / "nope.key"))


def test_garbage_instead_of_a_certificate(files: dict[str, Path], tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_bytes(b"not a certificate\n")
    with pytest.raises(ConfigError, match=r"--tls-cert-file: .* holds no PEM certificate"):
        load_material(tls(files, cert=junk))
    with pytest.raises(ConfigError, match=r"--tls-key-file: .* is not an unencrypted PEM"):
        load_material(tls(files, key=junk))
    with pytest.raises(ConfigError, match=r"--tls-ca-file: .* holds no PEM certificate"):
        load_material(tls(files, ca=junk))


def test_a_certificate_that_does_not_match_its_key(
    ca: Ca, files: dict[str, Path], tmp_path: Path
) -> None:
    _, other_key, _ = ca.write_pair(tmp_path, "other")
    with pytest.raises(ConfigError, match="--tls-cert-file and --tls-key-file do not match"):
        load_material(tls(files, key=other_key))


def test_an_expired_certificate(ca: Ca, files: dict[str, Path], tmp_path: Path) -> None:
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)
    cert, key, _ = ca.write_pair(tmp_path, "old", not_after=past)
    with pytest.raises(ConfigError, match=r"--tls-cert-file: .* expired on .*; renew it"):
        load_material(tls(files, cert=cert, key=key))


def test_a_bad_reload_keeps_the_current_material(
    ca: Ca, files: dict[str, Path], tmp_path: Path
) -> None:
    config = tls(files)
    reloader = TlsReloader(config, load_material(config))
    before = reloader.material
    files["key"].write_bytes(ca.issue("x")[1])  # a key of another certificate
    assert not reloader.reload("test")
    assert reloader.material is before and reloader.generation == 0
    cert, key, serial = ca.issue("rotated")
    files["cert"].write_bytes(cert)
    files["key"].write_bytes(key)
    assert reloader.reload("test")
    assert reloader.material.serial == serial and reloader.generation == 1
    assert isinstance(reloader.context, ssl.SSLContext)


def test_the_node_refuses_to_start_with_a_clear_error(
    ca: Ca, files: dict[str, Path], tmp_path: Path
) -> None:
    _, other_key, _ = ca.write_pair(tmp_path, "other")
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "raftcache.node.cli",
            "--durability",
            "memory",
            "--tls-cert-file",
            str(files["cert"]),
            "--tls-key-file",
            str(other_key),
            "--tls-ca-file",
            str(files["ca"]),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode == 2
    assert "raftcache-node: error: --tls-cert-file and --tls-key-file do not match" in run.stderr
