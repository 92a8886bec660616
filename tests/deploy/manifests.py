"""Render the kustomize overlays and read them as Kubernetes would: one place for both the
manifest tests and the container tests, so the containers get exactly the manifest's env."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
EXAMPLES = ROOT / "deploy" / "examples"
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if p.is_dir())
CONTAINER = "raftcache"
CLUSTER_DOMAIN = "cluster.local"

Object = dict[str, Any]


def render(path: Path) -> list[Object]:
    """`kubectl kustomize path` as a list of objects."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail(
            "kubectl is not installed: the manifest tests render the overlays with "
            "`kubectl kustomize` (Debian: apt-get install kubernetes-client, or kubectl)"
        )
    proc = subprocess.run(
        [kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, f"kubectl kustomize {path} failed:\n{proc.stderr}"
    return [obj for obj in yaml.safe_load_all(proc.stdout) if obj]


def overlay(name: str) -> list[Object]:
    return render(K8S / "overlays" / name)


def one(objects: list[Object], kind: str, name: str | None = None) -> Object:
    found = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def container(statefulset: Object) -> Object:
    containers = statefulset["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == CONTAINER)


def pod_name(statefulset: Object, ordinal: int) -> str:
    return f"{statefulset['metadata']['name']}-{ordinal}"


def pod_fqdn(statefulset: Object, ordinal: int) -> str:
    """The DNS name the headless service gives pod `ordinal`."""
    meta = statefulset["metadata"]
    service = statefulset["spec"]["serviceName"]
    return f"{pod_name(statefulset, ordinal)}.{service}.{meta['namespace']}.svc.{CLUSTER_DOMAIN}"


def pod_env(
    statefulset: Object, ordinal: int, secrets: dict[tuple[str, str], str]
) -> dict[str, str]:
    """The environment the kubelet gives pod `ordinal`'s container: downward API fields and
    Secret keys resolved (`secrets` maps (secret name, key) to the value the user created)."""
    meta = statefulset["metadata"]
    fields = {
        "metadata.name": pod_name(statefulset, ordinal),
        "metadata.namespace": meta["namespace"],
    }
    env: dict[str, str] = {}
    for item in container(statefulset).get("env", []):
        name = item["name"]
        assert name not in env, f"env {name} is set twice"
        if "value" in item:
            # The kubelet expands $(VAR) of variables defined earlier in the list.
            env[name] = re.sub(
                r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                lambda m: env.get(m[1], m[0]),
                item["value"],
            )
            assert "$(" not in env[name], f"{name}: {item['value']} names no earlier variable"
        elif "fieldRef" in item.get("valueFrom", {}):
            env[name] = fields[item["valueFrom"]["fieldRef"]["fieldPath"]]
        elif "secretKeyRef" in item.get("valueFrom", {}):
            ref = item["valueFrom"]["secretKeyRef"]
            env[name] = secrets[(ref["name"], ref["key"])]
        else:
            raise AssertionError(f"env {name}: {item} is not a value, fieldRef or secretKeyRef")
    return env


def secret_refs(statefulset: Object) -> set[tuple[str, str]]:
    """Every (Secret name, key) the container's env reads."""
    return {
        (ref["name"], ref["key"])
        for item in container(statefulset).get("env", [])
        if (ref := item.get("valueFrom", {}).get("secretKeyRef"))
    }


def secret_volumes(statefulset: Object) -> dict[str, tuple[str, dict[str, str]]]:
    """Each Secret volume the container mounts: mountPath -> (Secret name, {key: file name})."""
    spec = statefulset["spec"]["template"]["spec"]
    mounts = {m["name"]: m for m in container(statefulset).get("volumeMounts", [])}
    found: dict[str, tuple[str, dict[str, str]]] = {}
    for volume in spec.get("volumes", []):
        secret = volume.get("secret")
        if secret is None or volume["name"] not in mounts:
            continue
        mount = mounts[volume["name"]]
        assert "subPath" not in mount, f"{volume['name']}: a subPath mount never sees rotations"
        assert mount.get("readOnly") is True, f"{volume['name']}: mount Secrets read-only"
        if secret.get("optional") is True:
            continue  # optional_secret_volumes
        items = secret.get("items")
        assert items, f"{volume['name']}: list the keys (items), so a missing one fails clearly"
        found[mount["mountPath"]] = (
            secret["secretName"],
            {item["key"]: item["path"] for item in items},
        )
    return found


def optional_secret_volumes(statefulset: Object) -> dict[str, tuple[str, dict[str, str]]]:
    """Secret volumes marked optional (the pod starts without them): as secret_volumes."""
    spec = statefulset["spec"]["template"]["spec"]
    mounts = {m["name"]: m for m in container(statefulset).get("volumeMounts", [])}
    return {
        mounts[v["name"]]["mountPath"]: (
            v["secret"]["secretName"],
            {item["key"]: item["path"] for item in v["secret"]["items"]},
        )
        for v in spec.get("volumes", [])
        if v.get("secret", {}).get("optional") is True and v["name"] in mounts
    }


def secret_files(statefulset: Object) -> dict[str, tuple[str, str]]:
    """Every file the container sees from a Secret: its path -> (Secret name, key)."""
    return {
        f"{mount_path}/{path}": (name, key)
        for mount_path, (name, keys) in secret_volumes(statefulset).items()
        for key, path in keys.items()
    }
