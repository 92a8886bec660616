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
    (mount,) = container["volumeMounts"]
    assert script.count("/backups/") >= 2 and mount["mountPath"] == "/backups"
    (volume,) = pod["volumes"]
    assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
