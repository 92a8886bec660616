"""deploy/examples/secrets (a kustomize secretGenerator over files the operator creates) and
deploy/examples/cert-manager.yaml: they produce exactly the Secrets, keys and certificate
names the StatefulSet and the backup CronJob read. No key is committed: the generator's
inputs are made here, in a temporary directory."""

from __future__ import annotations

import fnmatch
import hashlib
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from raftcache.node.auth import seed_text

from tests.deploy.manifests import (
    OVERLAYS,
    ROOT,
    Object,
    container,
    one,
    overlay,
    pod_fqdn,
    render,
    secret_refs,
    secret_volumes,
)
from tests.deploy.test_backup_cronjob import objects as backup_objects
from tests.deploy.test_manifests import KUBERNETES_VERSIONS

EXAMPLES = ROOT / "deploy" / "examples"


def needed() -> set[tuple[str, str]]:
    """Every (Secret, key) the overlays' pods and the backup job read."""
    wanted: set[tuple[str, str]] = set()
    for name in OVERLAYS:
        sts = one(overlay(name), "StatefulSet", "raftcache")
        wanted |= secret_refs(sts)
        for secret, keys in secret_volumes(sts).values():
            wanted |= {(secret, key) for key in keys}
    cron = backup_objects()[1]
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    for item in pod["containers"][0]["env"]:
        if ref := item.get("valueFrom", {}).get("secretKeyRef"):
            wanted.add((ref["name"], ref["key"]))
    for volume in pod["volumes"]:
        if "secret" in volume:
            wanted |= {
                (volume["secret"]["secretName"], i["key"]) for i in volume["secret"]["items"]
            }
    return wanted


def generated(tmp_path: Path) -> list[Object]:
    source = EXAMPLES / "secrets"
    shutil.copy(source / "kustomization.yaml", tmp_path / "kustomization.yaml")
    for name in ("tls.crt", "tls.key", "ca.crt", "users.acl", "raft-secret"):
        (tmp_path / name).write_text(f"placeholder {name}\n")
    (tmp_path / "backup-username").write_text("backup")
    (tmp_path / "backup-password").write_text("placeholder")
    (tmp_path / "join-username").write_text("join")
    (tmp_path / "join-password").write_text("placeholder")
    return render(tmp_path)


def test_the_generator_makes_every_secret_and_key_the_pods_and_the_backup_job_read(
    tmp_path: Path,
) -> None:
    secrets = generated(tmp_path)
    made = {(s["metadata"]["name"], key) for s in secrets for key in s["data"]}
    assert needed() <= made, f"missing: {sorted(needed() - made)}"
    types = {s["metadata"]["name"]: s["type"] for s in secrets}
    assert types["raftcache-tls"] == "kubernetes.io/tls"  # what cert-manager writes too
    assert types["raftcache-backup"] == "kubernetes.io/basic-auth"
    assert types["raftcache-join"] == "kubernetes.io/basic-auth"
    for secret in secrets:
        assert secret["metadata"]["namespace"] == "raftcache"
        for version in KUBERNETES_VERSIONS:
            kubernetes_validate.validate(secret, version, strict=True)


def test_the_operators_files_are_kept_out_of_git() -> None:
    directory = EXAMPLES / "secrets"
    for name in ("tls.key", "users.acl", "backup-password", "raft-secret", "ca.crt"):
        ignored = subprocess.run(
            ["git", "check-ignore", "-q", str(directory / name)], cwd=ROOT, check=False
        )
        assert ignored.returncode == 0, f"{name} would be committable"
    tracked = subprocess.run(
        ["git", "ls-files", "--others", "--cached", "--exclude-standard", str(directory)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert {Path(p).name for p in tracked} <= {
        ".gitignore",
        "kustomization.yaml",
        "users.acl.example",
    }


def test_the_example_users_file_is_valid_once_its_placeholders_are_filled(
    tmp_path: Path,
) -> None:
    text = (EXAMPLES / "secrets" / "users.acl.example").read_text()
    (tmp_path / "raw.acl").write_text(text)
    with pytest.raises(Exception, match=r"(?i)REPLACE_WITH"):
        seed_text(str(tmp_path / "raw.acl"), None)  # a forgotten placeholder is refused
    filled = text
    for word in ("ADMIN", "APP", "BACKUP", "JOIN"):
        digest = hashlib.sha256(word.lower().encode()).hexdigest()
        filled = filled.replace(f"#REPLACE_WITH_SHA256_OF_THE_{word}_PASSWORD", f"#{digest}")
    (tmp_path / "users.acl").write_text(filled)
    seeded = seed_text(str(tmp_path / "users.acl"), None)
    assert seeded is not None
    assert {line.split()[1] for line in seeded.splitlines()} == {"default", "app", "backup", "join"}


def cert_manager() -> list[dict[str, Any]]:
    return [o for o in yaml.safe_load_all((EXAMPLES / "cert-manager.yaml").read_text()) if o]


def test_cert_manager_writes_the_tls_secret_for_every_name_the_pods_are_reached_by() -> None:
    found = cert_manager()
    issuers = {o["metadata"]["name"]: o for o in found if o["kind"] == "Issuer"}
    certs = {o["metadata"]["name"]: o for o in found if o["kind"] == "Certificate"}
    for obj in found:
        assert obj["apiVersion"] == "cert-manager.io/v1"
        assert obj["metadata"]["namespace"] == "raftcache"
    tls = certs["raftcache-tls"]["spec"]
    assert tls["secretName"] == "raftcache-tls"
    assert {"server auth", "client auth"} <= set(tls["usages"])  # forwarding under mTLS
    # The issuer chain: raftcache-tls <- Issuer raftcache-ca (CA in Secret raftcache-ca) <-
    # Certificate raftcache-ca (isCA) <- a self-signed Issuer.
    ca_issuer = issuers[tls["issuerRef"]["name"]]["spec"]["ca"]
    ca_cert = next(
        c["spec"] for c in certs.values() if c["spec"]["secretName"] == ca_issuer["secretName"]
    )
    assert ca_cert["isCA"] is True
    assert "selfSigned" in issuers[ca_cert["issuerRef"]["name"]]["spec"]
    names = tls["dnsNames"]
    for name in OVERLAYS:
        objects = overlay(name)
        sts = one(objects, "StatefulSet", "raftcache")
        for ordinal in range(sts["spec"]["replicas"]):
            fqdn = pod_fqdn(sts, ordinal)  # what a follower dials to forward to the leader
            assert any(fnmatch.fnmatch(fqdn, n) and n.count(".") == fqdn.count(".") for n in names)
        service = one(objects, "Service", "raftcache")["metadata"]
        assert f"{service['name']}.{service['namespace']}.svc.cluster.local" in names
        assert container(sts)  # the StatefulSet mounts this Secret: test_manifests.py
