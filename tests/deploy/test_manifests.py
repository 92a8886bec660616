"""The Kubernetes manifests, rendered per overlay: schema-valid (strict), quorum-safe, locked
down, and configuring every pod into a valid node (checked with the node's own config code)."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from raftcache.node.config import _FLAGS, ENV_PREFIX, ConfigError, load

from tests.deploy.manifests import (
    CONTAINER,
    EXAMPLES,
    OVERLAYS,
    ROOT,
    Object,
    container,
    one,
    optional_secret_volumes,
    overlay,
    pod_env,
    pod_fqdn,
    pod_name,
    secret_files,
    secret_refs,
    secret_volumes,
)

NAME = "raftcache"
TLS_SECRET = "raftcache-tls"
USERS_SECRET = "raftcache-users"
LABELS = {"app.kubernetes.io/name": NAME}
REPLICA_LABELS = {"app.kubernetes.io/name": "raftcache-replica"}
JOIN_SECRET = "raftcache-join"
# Oldest Kubernetes release we claim (gRPC probes GA in 1.27) and the newest bundled schema.
KUBERNETES_VERSIONS = ["1.29.0", kubernetes_validate.latest_version()]
EXPECTED_REPLICAS = {"dev": 3, "production": 5}


@cache
def rendered(name: str) -> list[Object]:
    return overlay(name)


def statefulset(name: str) -> Object:
    return one(rendered(name), "StatefulSet", NAME)


def pod_spec(name: str) -> Object:
    spec: Object = statefulset(name)["spec"]["template"]["spec"]
    return spec


def quorum(voters: int) -> int:
    return voters // 2 + 1


def test_the_overlays_are_dev_and_production() -> None:
    assert OVERLAYS == ["dev", "production"]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("name", OVERLAYS)
def test_every_object_validates_strictly_against_the_kubernetes_schema(
    name: str, version: str
) -> None:
    objects = rendered(name)
    assert {o["kind"] for o in objects} == {
        "Namespace",
        "Service",
        "StatefulSet",
        "PodDisruptionBudget",
        "NetworkPolicy",
    }
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(
                f"{name}: {obj['kind']}/{obj['metadata']['name']}: {exc.message} at {exc.path}"
            )


def test_strict_validation_catches_a_misspelt_field() -> None:
    """The validator really is strict: a typo in a field name is an error, not ignored."""
    sts = statefulset("dev")
    bad = {**sts, "spec": {**sts["spec"], "podManagmentPolicy": "Parallel"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES_VERSIONS[-1], strict=True)


@pytest.mark.parametrize("name", OVERLAYS)
def test_the_names_other_tools_rely_on(name: str) -> None:
    objects = rendered(name)
    assert {o["metadata"]["namespace"] for o in objects if o["kind"] != "Namespace"} == {NAME}
    assert one(objects, "Namespace")["metadata"]["name"] == NAME
    for obj in objects:
        assert obj["metadata"]["labels"].items() >= LABELS.items(), obj["metadata"]["name"]
    sts = statefulset(name)
    assert sts["spec"]["selector"] == {"matchLabels": LABELS}
    assert sts["spec"]["template"]["metadata"]["labels"].items() >= LABELS.items()
    ports = {p["name"]: p["containerPort"] for p in container(sts)["ports"]}
    assert ports == {
        "client": 6380,
        "redis": 6379,
        "memcached": 11211,
        "raft": 7380,
        "metrics": 9380,
    }
    assert [c["name"] for c in pod_spec(name)["containers"]] == [CONTAINER]
    assert sts["spec"]["replicas"] == EXPECTED_REPLICAS[name]


@pytest.mark.parametrize("name", OVERLAYS)
def test_the_peer_service_is_headless_and_publishes_pods_before_they_are_ready(name: str) -> None:
    peers = one(rendered(name), "Service", "raftcache-peers")
    assert statefulset(name)["spec"]["serviceName"] == "raftcache-peers"
    assert peers["spec"]["clusterIP"] == "None"
    assert peers["spec"]["publishNotReadyAddresses"] is True
    assert peers["spec"]["selector"] == LABELS
    assert {(p["name"], p["port"]) for p in peers["spec"]["ports"]} == {
        ("client", 6380),
        ("redis", 6379),
        ("memcached", 11211),
        ("raft", 7380),
        ("metrics", 9380),
    }


@pytest.mark.parametrize("name", OVERLAYS)
def test_the_client_service_exposes_only_the_client_ports(name: str) -> None:
    client = one(rendered(name), "Service", NAME)
    assert client["spec"].get("clusterIP") != "None"
    assert client["spec"]["selector"] == LABELS
    assert [(p["name"], p["port"], p["targetPort"]) for p in client["spec"]["ports"]] == [
        ("client", 6380, "client"),
        ("redis", 6379, "redis"),
        ("memcached", 11211, "memcached"),
    ]


@pytest.mark.parametrize("name", OVERLAYS)
def test_the_disruption_budget_never_allows_losing_quorum(name: str) -> None:
    voters = statefulset(name)["spec"]["replicas"]
    pdb = one(rendered(name), "PodDisruptionBudget", NAME)["spec"]
    assert pdb["selector"] == {"matchLabels": LABELS}
    assert "minAvailable" not in pdb
    max_unavailable = pdb["maxUnavailable"]
    assert isinstance(max_unavailable, int), "a percentage would round with the replica count"
    assert voters - max_unavailable >= quorum(voters), "a drain could take the majority away"
    # ...and no stricter than that, so nodes can still be drained one at a time.
    assert max_unavailable == (voters - 1) // 2 >= 1


@pytest.mark.parametrize("name", OVERLAYS)
def test_pods_start_in_parallel_and_keep_their_volumes(name: str) -> None:
    spec = statefulset(name)["spec"]
    assert spec["podManagementPolicy"] == "Parallel"
    assert spec["persistentVolumeClaimRetentionPolicy"] == {
        "whenDeleted": "Retain",
        "whenScaled": "Retain",
    }
    [claim] = spec["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["resources"]["requests"]["storage"]


def test_production_voters_go_on_different_nodes_and_dev_prefers_to() -> None:
    prod = pod_spec("production")["affinity"]["podAntiAffinity"]
    [term] = prod["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term == {
        "topologyKey": "kubernetes.io/hostname",
        "labelSelector": {"matchLabels": LABELS},
    }
    assert "preferredDuringSchedulingIgnoredDuringExecution" not in prod
    dev = pod_spec("dev")["affinity"]["podAntiAffinity"]
    assert "requiredDuringSchedulingIgnoredDuringExecution" not in dev
    [preferred] = dev["preferredDuringSchedulingIgnoredDuringExecution"]
    assert preferred["podAffinityTerm"] == term


@pytest.mark.parametrize("name", OVERLAYS)
def test_resources_are_requested_and_memory_is_limited(name: str) -> None:
    resources = container(statefulset(name))["resources"]
    assert set(resources["requests"]) == {"cpu", "memory"}
    assert set(resources["limits"]) == {"memory"}  # no CPU limit: throttling delays heartbeats


@pytest.mark.parametrize("name", OVERLAYS)
def test_the_pod_runs_as_non_root_with_a_read_only_root(name: str) -> None:
    spec = pod_spec(name)
    pod_ctx = spec["securityContext"]
    assert pod_ctx["runAsNonRoot"] is True
    assert pod_ctx["runAsUser"] != 0
    assert pod_ctx["fsGroup"] == pod_ctx["runAsGroup"]
    assert pod_ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    ctx = container(statefulset(name))["securityContext"]
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    assert spec["automountServiceAccountToken"] is False


@pytest.mark.parametrize("name", OVERLAYS)
def test_every_path_the_node_writes_is_a_volume(name: str) -> None:
    sts = statefulset(name)
    c = container(sts)
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert mounts[env["RAFTCACHE_DATA_DIR"]] == "data"  # the volume claim template
    assert env["RAFTCACHE_DURABILITY"] == "journal"
    volumes = {v["name"]: v for v in pod_spec(name)["volumes"]}
    assert "emptyDir" in volumes[mounts[env["TMPDIR"]]]
    assert set(mounts.values()) <= {"data", *volumes}


def test_the_image_user_is_the_manifest_user() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    [user] = re.findall(r"^USER (\d+):(\d+)$", dockerfile, re.MULTILINE)
    for name in OVERLAYS:
        ctx = pod_spec(name)["securityContext"]
        assert (str(ctx["runAsUser"]), str(ctx["runAsGroup"])) == user
    assert re.search(r'^ENTRYPOINT \["raftcache-node"\]$', dockerfile, re.MULTILINE)


@pytest.mark.parametrize("name", OVERLAYS)
def test_readiness_is_the_nodes_health_over_plain_http_and_liveness_is_lenient(name: str) -> None:
    c = container(statefulset(name))
    readiness = c["readinessProbe"]
    # The kubelet's gRPC probe cannot do TLS, and the client ports speak only TLS: the node
    # answers its grpc.health.v1 status as GET /readyz on the metrics port (node/metrics.py),
    # plain HTTP and without credentials.
    assert readiness["httpGet"] == {"port": "metrics", "path": "/readyz"}
    assert "grpc" not in readiness and "scheme" not in readiness["httpGet"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["RAFTCACHE_METRICS_LISTEN"] == f"0.0.0.0:{ports['metrics']}"
    assert readiness["periodSeconds"] <= 5
    liveness = c["livenessProbe"]
    # Not the health status: NOT_SERVING during an election must never restart a node. A
    # TCP connect needs neither a TLS handshake nor credentials.
    assert "grpc" not in liveness and "httpGet" not in liveness
    assert liveness["tcpSocket"] == {"port": "client"}
    assert liveness["periodSeconds"] * liveness["failureThreshold"] >= 60
    startup = c["startupProbe"]
    assert startup["tcpSocket"] == {"port": "client"}
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300  # journal replay


@pytest.mark.parametrize("name", OVERLAYS)
def test_shutdown_leaves_time_for_leadership_handover(name: str) -> None:
    c = container(statefulset(name))
    command = c["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pre_stop_s = int(command[1])
    handover_s, grpc_grace_s = 3, 1  # node/server.py _shutdown
    grace = pod_spec(name)["terminationGracePeriodSeconds"]
    assert grace >= pre_stop_s + handover_s + grpc_grace_s + 10


@pytest.mark.parametrize("name", OVERLAYS)
def test_only_the_caches_own_pods_reach_the_raft_port(name: str) -> None:
    policy = one(rendered(name), "NetworkPolicy", NAME)["spec"]
    assert policy["podSelector"] == {"matchLabels": LABELS}
    assert policy["policyTypes"] == ["Ingress"]
    rules: list[dict[str, Any]] = policy["ingress"]
    raft_rules = [r for r in rules if any(p["port"] in (7380, "raft") for p in r["ports"])]
    assert raft_rules == [
        {
            "from": [
                {"podSelector": {"matchLabels": LABELS}},
                # deploy/examples/read-replicas.yaml: they dial the voters' Raft port.
                {"podSelector": {"matchLabels": REPLICA_LABELS}},
            ],
            "ports": [{"protocol": "TCP", "port": 7380}],
        }
    ]
    client_rules = [r for r in rules if r not in raft_rules]
    assert client_rules == [
        {
            "ports": [
                {"protocol": "TCP", "port": 6380},
                {"protocol": "TCP", "port": 6379},
                {"protocol": "TCP", "port": 11211},
            ]
        },
        {"ports": [{"protocol": "TCP", "port": 9380}]},  # Prometheus, from its own namespace
    ]  # from anywhere


@pytest.mark.parametrize("name", OVERLAYS)
def test_the_raft_secret_comes_from_a_secret_that_is_not_committed(name: str) -> None:
    sts = statefulset(name)
    assert secret_refs(sts) == {("raftcache-raft", "secret")}
    raft_secret = next(e for e in container(sts)["env"] if e["name"] == "RAFTCACHE_RAFT_SECRET")
    assert raft_secret["valueFrom"]["secretKeyRef"] == {"name": "raftcache-raft", "key": "secret"}
    assert not [o for o in rendered(name) if o["kind"] == "Secret"]


@pytest.mark.parametrize("name", OVERLAYS)
def test_tls_and_users_come_from_secrets_mounted_as_whole_directories(name: str) -> None:
    """The kubernetes.io/tls layout cert-manager writes (tls.crt, tls.key, ca.crt) and the
    users file, each read from a Secret volume the kubelet updates in place (no subPath)."""
    sts = statefulset(name)
    env = pod_env(sts, 0, {ref: "x" for ref in secret_refs(sts)})
    files = secret_files(sts)
    assert files[env["RAFTCACHE_TLS_CERT_FILE"]] == (TLS_SECRET, "tls.crt")
    assert files[env["RAFTCACHE_TLS_KEY_FILE"]] == (TLS_SECRET, "tls.key")
    assert files[env["RAFTCACHE_TLS_CA_FILE"]] == (TLS_SECRET, "ca.crt")
    assert files[env["RAFTCACHE_USERS_FILE"]] == (USERS_SECRET, "users.acl")
    assert {secret for secret, _ in files.values()} == {TLS_SECRET, USERS_SECRET}
    volumes = [v for v in pod_spec(name)["volumes"] if "secret" in v]
    for volume in volumes:
        assert volume["secret"]["defaultMode"] == 0o440  # the pod's group (fsGroup) only
        if volume["secret"]["secretName"] != JOIN_SECRET:
            assert volume["secret"].get("optional") is not True  # no Secret, no pod
    assert not [m for m in secret_volumes(sts) if m.startswith(("/data", "/tmp"))]


@pytest.mark.parametrize("name", OVERLAYS)
def test_every_raftcache_variable_is_a_node_flag(name: str) -> None:
    """A misspelt RAFTCACHE_* variable would be ignored silently (the node reads only its
    flags' variables): TLS or users could be off without anyone noticing."""
    flags = {ENV_PREFIX + flag.upper().replace("-", "_") for flag, _help, _default in _FLAGS}
    names = {e["name"] for e in container(statefulset(name))["env"]}
    assert {n for n in names if n.startswith(ENV_PREFIX)} - flags == set()
    assert names - flags == {"TMPDIR"}


@pytest.mark.parametrize("name", OVERLAYS)
def test_without_the_secrets_the_node_refuses_to_start(name: str) -> None:
    """The manifest's TLS and users are what lets the node listen on 0.0.0.0 at all."""
    sts = statefulset(name)
    env = pod_env(sts, 0, {ref: "from-the-secret" for ref in secret_refs(sts)})
    for var in ("RAFTCACHE_TLS_CERT_FILE", "RAFTCACHE_TLS_KEY_FILE", "RAFTCACHE_TLS_CA_FILE"):
        del env[var]
    del env["RAFTCACHE_USERS_FILE"]
    with pytest.raises(ConfigError, match=r"refusing to serve clients on 0\.0\.0\.0"):
        load([], env)
    assert "RAFTCACHE_INSECURE_ALLOW_UNAUTHENTICATED" not in {
        e["name"] for e in container(sts)["env"]
    }


@pytest.mark.parametrize("name", OVERLAYS)
def test_service_links_do_not_leak_into_the_raftcache_environment(name: str) -> None:
    # A Service named "raftcache" would inject RAFTCACHE_PORT=tcp://... and friends.
    assert pod_spec(name)["enableServiceLinks"] is False


def materialized(sts: Object, env: dict[str, str], directory: Path) -> dict[str, str]:
    """`env` with each Secret file path moved under `directory` (the users file holds real
    ACL text: the config loader parses it; TLS files are checked later, by node/tls.py)."""
    moved = dict(env)
    for path, (_secret, key) in secret_files(sts).items():
        target = directory / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(
            "user default on >from-the-secret ~* &* +@all\n" if key == "users.acl" else ""
        )
        moved = {k: str(target) if v == path else v for k, v in moved.items()}
    return moved


@pytest.mark.parametrize("name", OVERLAYS)
def test_every_pod_gets_a_valid_node_config_from_the_manifest(name: str, tmp_path: Path) -> None:
    """Run the node's own config loader on each pod's environment."""
    sts = statefulset(name)
    replicas = sts["spec"]["replicas"]
    ports = {p["name"]: p["containerPort"] for p in container(sts)["ports"]}
    secrets = {ref: "from-the-secret" for ref in secret_refs(sts)}
    everyone = {f"{pod_fqdn(sts, i)}:{ports['raft']}" for i in range(replicas)}
    for ordinal in range(replicas):
        env = pod_env(sts, ordinal, secrets)
        assert env["RAFTCACHE_REPLICAS"] == str(replicas), "keep it equal to spec.replicas"
        cfg = load([], materialized(sts, env, tmp_path))
        assert cfg.node_id == pod_name(sts, ordinal)
        assert cfg.raft.self_addr == f"{pod_fqdn(sts, ordinal)}:{ports['raft']}"
        assert cfg.raft.bind_addr == f"0.0.0.0:{ports['raft']}"
        assert {cfg.raft.self_addr, *cfg.raft.peers} == everyone
        assert len(cfg.raft.peers) == replicas - 1
        assert cfg.listen == f"0.0.0.0:{ports['client']}"
        assert cfg.redis_listen == f"0.0.0.0:{ports['redis']}"
        assert cfg.redis_advertise == f"{pod_fqdn(sts, ordinal)}:{ports['redis']}"
        assert cfg.memcached_listen == f"0.0.0.0:{ports['memcached']}"
        assert cfg.memcached_advertise == f"{pod_fqdn(sts, ordinal)}:{ports['memcached']}"
        assert cfg.advertise == f"{pod_fqdn(sts, ordinal)}:{ports['client']}"
        assert cfg.metrics_listen == f"0.0.0.0:{ports['metrics']}"
        assert cfg.raft.secret == "from-the-secret"
        assert str(cfg.raft.data_dir) == env["RAFTCACHE_DATA_DIR"]
        assert cfg.tls is not None and cfg.users_seed is not None
        assert "user default on #" in cfg.users_seed  # only the password's SHA-256 is kept


# ------------------------------------------------------------------ scaling (README "Scaling")


@pytest.mark.parametrize("name", OVERLAYS)
def test_pods_scaled_up_beyond_the_bootstrap_voters_join_through_the_leader(
    name: str, tmp_path: Path
) -> None:
    """`kubectl scale` adds pods whose env is the same template: with RAFTCACHE_REPLICAS
    unchanged they derive --join (the bootstrap pods) and where to ask about the membership,
    and find the join user's credentials in the optional Secret raftcache-join."""
    sts = statefulset(name)
    bootstrap = sts["spec"]["replicas"]
    ports = {p["name"]: p["containerPort"] for p in container(sts)["ports"]}
    secrets = {ref: "from-the-secret" for ref in secret_refs(sts)}
    first = {f"{pod_fqdn(sts, i)}:{ports['raft']}" for i in range(bootstrap)}
    for ordinal in (bootstrap, bootstrap + 1, bootstrap + 4):
        env = pod_env(sts, ordinal, secrets)
        cfg = load([], materialized(sts, env, tmp_path))
        assert cfg.joining, "a scaled-up pod must join, never bootstrap a second cluster"
        assert cfg.node_id == pod_name(sts, ordinal)
        assert cfg.raft.self_addr == f"{pod_fqdn(sts, ordinal)}:{ports['raft']}"
        assert set(cfg.raft.peers) == first
        assert set(cfg.statefulset_seeds) == {
            f"{pod_fqdn(sts, i)}:{ports['client']}" for i in range(bootstrap)
        }
        assert cfg.join_credentials == "/etc/raftcache/join"
    for ordinal in range(bootstrap):
        assert not load([], materialized(sts, pod_env(sts, ordinal, secrets), tmp_path)).joining
    # The join user's Secret: optional (a pod starts without it and waits for `raftcache
    # member add`), mounted as a whole directory, basic-auth's keys.
    assert optional_secret_volumes(sts) == {
        "/etc/raftcache/join": (JOIN_SECRET, {"username": "username", "password": "password"})
    }


def replica_objects() -> list[Object]:
    text = (EXAMPLES / "read-replicas.yaml").read_text()
    return [o for o in yaml.safe_load_all(text) if o]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_the_read_replica_example_validates_strictly(version: str) -> None:
    objects = replica_objects()
    assert sorted((o["kind"], o["metadata"]["name"]) for o in objects) == [
        ("Service", "raftcache-read"),
        ("Service", "raftcache-replicas"),
        ("StatefulSet", "raftcache-replica"),
    ]
    for obj in objects:
        assert obj["metadata"]["namespace"] == NAME
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message} at {exc.path}")


def test_read_replicas_are_outside_every_voter_selector() -> None:
    """The voters' client Service, budget, StatefulSet and NetworkPolicy must not count the
    replicas (a budget counting them would let a drain take a voter majority), and the
    replicas' StatefulSet owns its pods alone; they keep no volume claims, so they scale
    freely and leave nothing behind."""
    sts = one(replica_objects(), "StatefulSet", "raftcache-replica")
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert labels.items() >= REPLICA_LABELS.items()
    assert sts["spec"]["selector"] == {"matchLabels": REPLICA_LABELS}
    for name in OVERLAYS:
        for obj in rendered(name):
            selector = obj["spec"].get("selector") if "spec" in obj else None
            if obj["kind"] == "NetworkPolicy":
                selector = obj["spec"]["podSelector"]
            if not selector:
                continue
            wanted = selector.get("matchLabels", selector)
            assert not labels.items() >= wanted.items(), f"{obj['kind']} {obj['metadata']['name']}"
    assert "volumeClaimTemplates" not in sts["spec"]
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    service = one(replica_objects(), "Service", "raftcache-replicas")
    assert sts["spec"]["serviceName"] == "raftcache-replicas"
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["selector"] == REPLICA_LABELS
    voters = statefulset("dev")
    assert pod_spec("dev")["securityContext"] == sts["spec"]["template"]["spec"]["securityContext"]
    assert container(voters)["securityContext"] == container(sts)["securityContext"]
    assert container(sts)["readinessProbe"] == container(voters)["readinessProbe"]


@pytest.mark.parametrize("ordinal", [0, 1, 7])
def test_every_read_replica_pod_gets_a_valid_node_config(ordinal: int, tmp_path: Path) -> None:
    sts = one(replica_objects(), "StatefulSet", "raftcache-replica")
    flags = {ENV_PREFIX + flag.upper().replace("-", "_") for flag, _help, _default in _FLAGS}
    names = {e["name"] for e in container(sts)["env"]}
    assert names - flags == {"TMPDIR", "POD_NAME"}
    env = pod_env(sts, ordinal, {ref: "from-the-secret" for ref in secret_refs(sts)})
    cfg = load([], materialized(sts, env, tmp_path))
    fqdn = pod_fqdn(sts, ordinal)
    assert fqdn == f"raftcache-replica-{ordinal}.raftcache-replicas.raftcache.svc.cluster.local"
    assert cfg.raft.read_replica is True
    assert cfg.node_id == pod_name(sts, ordinal)
    assert cfg.advertise == f"{fqdn}:6380"
    assert cfg.redis_advertise == f"{fqdn}:6379"
    assert cfg.memcached_stale_reads_ms == 1000
    assert not cfg.statefulset_seeds  # a replica is never added: it never joins
    voters = statefulset("dev")
    assert set(cfg.raft.peers) == {f"{pod_fqdn(voters, i)}:7380" for i in range(3)}
    assert cfg.raft.secret == "from-the-secret"
    assert cfg.tls is not None and cfg.users_seed is not None
    # The voters' Secrets, mounted the same way.
    assert secret_volumes(sts) == secret_volumes(voters)
    assert secret_refs(sts) == secret_refs(voters)
