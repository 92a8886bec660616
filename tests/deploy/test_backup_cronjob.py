"""deploy/examples/backup-cronjob.yaml: schema-valid, one backup at a time, onto its volume."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy.manifests import ROOT
from tests.deploy.test_manifests import KUBERNETES_VERSIONS

PATH = ROOT / "deploy" / "examples" / "backup-cronjob.yaml"


def objects() -> list[dict[str, Any]]:
    return [o for o in yaml.safe_load_all(PATH.read_text()) if o]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_object_validates_strictly(version: str) -> None:
    found = objects()
    assert [o["kind"] for o in found] == ["PersistentVolumeClaim", "CronJob"]
    for obj in found:
        kubernetes_validate.validate(obj, version, strict=True)


def test_the_job_backs_up_onto_the_claimed_volume_one_at_a_time() -> None:
    claim, cron = objects()
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    script = container["args"][0]
    assert 'raftcache backup "$file"' in script
    assert 'raftcache backup --inspect "$file"' in script
    assert {
        "name": "RAFTCACHE_ENDPOINTS",
        "value": "raftcache.raftcache.svc.cluster.local:6380",
    } in container["env"]
    mount, _tls = container["volumeMounts"]
    assert script.count("/backups/") >= 2 and mount["mountPath"] == "/backups"
    volume, _ = pod["volumes"]
    assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_the_job_speaks_tls_with_the_clusters_ca_and_logs_in_as_a_user() -> None:
    """The nodes serve TLS only and need a user (deploy/k8s): the job trusts ca.crt of the
    nodes' Secret (and sees nothing else of it: not the private key) and takes its user
    and password from a kubernetes.io/basic-auth Secret."""
    _, cron = objects()
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    ca_dir, _, ca_name = env["RAFTCACHE_TLS_CA_FILE"]["value"].rpartition("/")
    tls = volumes[mounts[ca_dir]["name"]]["secret"]
    assert mounts[ca_dir]["readOnly"] is True
    assert tls["secretName"] == "raftcache-tls"  # the StatefulSet's (test_manifests.py)
    assert tls["items"] == [{"key": "ca.crt", "path": ca_name}]
    assert env["RAFTCACHE_USER"]["valueFrom"]["secretKeyRef"] == {
        "name": "raftcache-backup",
        "key": "username",
    }
    assert env["RAFTCACHE_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "raftcache-backup",
        "key": "password",
    }
    assert not {"RAFTCACHE_TLS_CERT_FILE", "RAFTCACHE_TLS_KEY_FILE"} & set(env)
    assert "--password" not in container["args"][0]  # not in the process list
