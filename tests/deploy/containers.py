"""Run the node image as the StatefulSet would, in Docker: build the image, and start one
container per pod with the pod's DNS name as a network alias and exactly the env the
rendered manifest gives that pod (downward API and Secret references resolved), and its
Secret volumes as read-only directories laid out as the kubelet writes them (files that are
symlinks through `..data`, swapped atomically on an update)."""

from __future__ import annotations

import contextlib
import io
import ipaddress
import os
import random
import secrets
import ssl
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import docker
import grpc
import pytest
from docker.types import EndpointConfig, IPAMConfig, IPAMPool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from raftcache.client._transport import GrpcTransport, TlsConfig, _failed
from raftcache.node.auth import AUTHORIZATION_KEY, basic_header
from raftcache.v1 import cluster_pb2, cluster_pb2_grpc
from testcontainers.core.container import DockerContainer
from testcontainers.core.network import Network

from tests.deploy.manifests import (
    ROOT,
    Object,
    container,
    optional_secret_volumes,
    pod_env,
    pod_fqdn,
    pod_name,
    secret_refs,
    secret_volumes,
)

# The reaper image cannot be pulled here; the fixtures remove what they create themselves.
# (testcontainers reads this lazily, at the first container start.)
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

IMAGE = "raftcache:test"
# The image the Dockerfile builds FROM. The default official image needs a registry; where
# there is none, .ci/run builds raftcache-base:bookworm with deploy/base/build-debian-base.sh.
LOCAL_BASE = "raftcache-base:bookworm"
DEFAULT_BASE = "python:3.11-slim-bookworm"

T = TypeVar("T")


def docker_client() -> docker.DockerClient:
    """The Docker engine, or a loud failure: these tests must run in CI, never skip."""
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.fail(
            f"no Docker engine ({exc}); the container tests need one: `.ci/run` installs "
            "docker.io and starts dockerd (run it as root), or start dockerd yourself"
        )
    return client


def base_image(client: docker.DockerClient) -> str:
    chosen = os.environ.get("RAFTCACHE_BASE_IMAGE")
    if chosen:
        return chosen
    try:
        client.images.get(LOCAL_BASE)
        return LOCAL_BASE
    except docker.errors.ImageNotFound:
        return DEFAULT_BASE


def build_context() -> io.BytesIO:
    """The working tree's files that git knows of (tracked or not ignored): no .venv, no data."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in sorted(set(listed.decode().split("\0")) - {""}):
            path = ROOT / name
            if path.is_file():
                info = tar.gettarinfo(str(path), arcname=name)
                info.mtime = 0  # content alone decides whether a layer is reused
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                with path.open("rb") as f:
                    tar.addfile(info, f)
    buffer.seek(0)
    return buffer


def build_image(client: docker.DockerClient) -> str:
    """Build deploy/Dockerfile from the working tree; returns the image ID."""
    base = base_image(client)
    args = {"BASE_IMAGE": base}
    if os.environ.get("PIP_INDEX_URL"):
        args["PIP_INDEX_URL"] = os.environ["PIP_INDEX_URL"]
    log: list[str] = []
    image_id = ""
    started = time.monotonic()
    for chunk in client.api.build(
        fileobj=build_context(),
        custom_context=True,
        dockerfile="deploy/Dockerfile",
        tag=IMAGE,
        buildargs=args,
        rm=True,
        forcerm=True,
        decode=True,
    ):
        if "stream" in chunk:
            log.append(chunk["stream"])
        if "ID" in chunk.get("aux", {}):
            image_id = chunk["aux"]["ID"]
        if "error" in chunk:
            pytest.fail(
                f"docker build (FROM {base}) failed: {chunk['error']}\n{''.join(log)[-4000:]}"
            )
    print(f"built {IMAGE} FROM {base} in {time.monotonic() - started:.1f} s")
    # Every source change leaves an untagged build stage and the previous image behind;
    # drop ours once a day old (younger ones are the layer cache of the next build).
    # Another build of this run (the other test worker) may be pruning the same images:
    # the daemon refuses a second prune (409), and the first does the job.
    for label in ("io.raftcache.stage=build", "org.opencontainers.image.title=raftcache-node"):
        try:
            client.images.prune(filters={"dangling": True, "label": label, "until": "24h"})
        except docker.errors.APIError as exc:
            if exc.status_code != 409:
                raise
    # The ID, not the tag: another run building at the same time may move the tag.
    assert image_id, f"docker build reported no image ID\n{''.join(log)[-2000:]}"
    return image_id


def wait_for(
    what: str, check: Callable[[], T | None], timeout: float, logs: Callable[[], str]
) -> T:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
            last = result
        except (grpc.RpcError, docker.errors.APIError) as exc:
            last = exc
        time.sleep(0.25)
    pytest.fail(f"timed out after {timeout} s waiting for {what} (last: {last!r})\n{logs()}")


class PublishedPorts(GrpcTransport):
    """An SDK transport that reaches each pod's advertised name through the port Docker
    published on 127.0.0.1 (the test runs outside the pods' network, as a client outside
    the Kubernetes cluster would: it must translate the advertised addresses somehow), over
    TLS, sending `authorization: Basic` credentials with every call."""

    def __init__(self, addresses: dict[str, str], tls: TlsConfig, user: str, password: str) -> None:
        super().__init__(tls=tls)
        self.addresses = addresses  # advertised HOST:PORT -> 127.0.0.1:PORT, kept current
        self.metadata = ((AUTHORIZATION_KEY, basic_header(user, password)),)

    async def call(self, address: str, method: str, request: Any, timeout: float) -> Any:
        target = self.addresses.get(address, address)
        try:
            return await self._callable(target, method)(
                request, timeout=timeout, metadata=self.metadata
            )
        except grpc.aio.AioRpcError as exc:
            raise _failed(exc) from None


class SecretVolume:
    """A Secret as the kubelet projects it into a pod: `<dir>/<file>` is a symlink to
    `..data/<file>`, and `..data` a symlink to a timestamped directory that an update
    replaces by renaming a new symlink over `..data` (one atomic swap of every file)."""

    def __init__(self, directory: str, group: int, files: dict[str, bytes]) -> None:
        self.directory = directory
        self.group = group
        self.version = 0
        os.makedirs(directory, mode=0o755)
        self.update(files)
        for name in files:
            os.symlink(f"..data/{name}", f"{directory}/{name}")

    def update(self, files: dict[str, bytes]) -> None:
        self.version += 1
        stamp = f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{self.version}"
        os.mkdir(f"{self.directory}/{stamp}", 0o755)
        for name, content in files.items():
            path = f"{self.directory}/{stamp}/{name}"
            with open(path, "wb") as f:
                f.write(content)
            # The kubelet: owned by root, group fsGroup, defaultMode 0440.
            if os.geteuid() == 0:
                os.chown(path, 0, self.group)
                os.chmod(path, 0o440)
            else:  # pragma: no cover - the container tests run as root in CI
                os.chmod(path, 0o444)
        os.symlink(stamp, f"{self.directory}/..data_tmp")
        os.replace(f"{self.directory}/..data_tmp", f"{self.directory}/..data")


@dataclass
class Pod:
    ordinal: int
    name: str
    fqdn: str
    env: dict[str, str]
    advertised: str  # the client address it announces: <pod fqdn>:<client port>
    volume: str
    ip: str
    container: DockerContainer | None = None
    published: str = ""  # 127.0.0.1:<port> Docker published its client port on
    redis_published: str = ""  # 127.0.0.1:<port> Docker published its Redis port on
    memcached_published: str = ""  # ... and its memcached port
    metrics_published: str = ""  # ... and its metrics port (GET /readyz: the readiness probe)
    statefulset: Object | None = None  # another StatefulSet's pod (None: the set's own)


@dataclass
class StatefulSetInDocker:
    """Pods of one StatefulSet as containers on one Docker network."""

    statefulset: Object
    image: str
    client: docker.DockerClient
    network: Network
    subnet: ipaddress.IPv4Network
    secret_dir: str
    pods: list[Pod] = field(default_factory=list)
    transport_addresses: dict[str, str] = field(default_factory=dict)
    secret_volumes: dict[str, SecretVolume] = field(default_factory=dict)  # by Secret name
    grpc_metadata: tuple[tuple[str, str], ...] = ()  # credentials for calls that need them
    secret_values: dict[tuple[str, str], str] = field(default_factory=dict)  # env secretKeyRefs
    run_id: str = ""
    _next_host: int = 10

    @classmethod
    def create(
        cls,
        statefulset: Object,
        image: str,
        client: docker.DockerClient,
        secret_data: dict[str, dict[str, bytes]],
        secret_dir: str,
    ) -> StatefulSetInDocker:
        """`secret_data`: the Secrets the operator created, name -> key -> content; each
        Secret volume the pod mounts is written under `secret_dir` (a host directory)."""
        network, subnet = _network()
        self = cls(statefulset, image, client, network, subnet, secret_dir)
        group = statefulset["spec"]["template"]["spec"]["securityContext"]["fsGroup"]
        for name, keys in secret_volumes(statefulset).values():
            missing = set(keys) - set(secret_data.get(name, {}))
            assert not missing, f"the pods need the Secret {name} with keys {sorted(missing)}"
            self.secret_volumes[name] = SecretVolume(
                f"{secret_dir}/{name}",
                group,
                {path: secret_data[name][key] for key, path in keys.items()},
            )
        # An optional Secret the operator did not create: the kubelet starts the pod anyway.
        for name, keys in optional_secret_volumes(statefulset).values():
            if name in secret_data:
                self.secret_volumes[name] = SecretVolume(
                    f"{secret_dir}/{name}",
                    group,
                    {path: secret_data[name][key] for key, path in keys.items()},
                )
        ports = {p["name"]: p["containerPort"] for p in container(statefulset)["ports"]}
        self.secret_values = {ref: secrets.token_hex(16) for ref in secret_refs(statefulset)}
        self.run_id = uuid.uuid4().hex[:8]
        for ordinal in range(statefulset["spec"]["replicas"]):
            self.pods.append(self.new_pod(ordinal))
        self.client_port = ports["client"]
        self.redis_port = ports["redis"]
        self.memcached_port = ports["memcached"]
        self.metrics_port = ports["metrics"]
        return self

    def new_pod(self, ordinal: int, statefulset: Object | None = None) -> Pod:
        """Pod `ordinal` of this StatefulSet (or of another one in the same namespace, such
        as the read replicas'), not started: what `kubectl scale` makes the controller
        create. Its env is the manifest's, with the same Secrets."""
        sts = statefulset or self.statefulset
        ports = {p["name"]: p["containerPort"] for p in container(sts)["ports"]}
        return Pod(
            ordinal=ordinal,
            name=pod_name(sts, ordinal),
            fqdn=pod_fqdn(sts, ordinal),
            env=pod_env(sts, ordinal, self.secret_values),
            advertised=f"{pod_fqdn(sts, ordinal)}:{ports['client']}",
            volume=f"raftcache-test-{self.run_id}-data-{pod_name(sts, ordinal)}",
            ip=self.new_ip(),
            statefulset=statefulset,
        )

    def scale_up(self, ordinal: int, statefulset: Object | None = None) -> Pod:
        """`kubectl scale` adding pod `ordinal`: a new pod, a new volume, started."""
        pod = self.new_pod(ordinal, statefulset)
        self.pods.append(pod)
        self.start(pod)
        return pod

    def scale_down(self, pod: Pod) -> None:
        """`kubectl scale` removing the pod: SIGTERM with the pod's grace period (the
        preStop sleep only waits for the endpoints controller, which Docker has not), then
        the pod is gone; its volume is deleted too (the claim is Retained by the manifest,
        so deleting it is the operator's step, README "Scaling the voters")."""
        assert pod.container is not None
        sts = pod.statefulset or self.statefulset
        grace = sts["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        wrapped = pod.container.get_wrapped_container()
        wrapped.stop(timeout=grace)
        wrapped.remove(force=True)
        with contextlib.suppress(docker.errors.NotFound):
            self.client.volumes.get(pod.volume).remove(force=True)
        self.pods.remove(pod)
        self.transport_addresses.pop(pod.advertised, None)

    def lose_volume(self, pod: Pod) -> None:
        """The pod's volume lost (its claim deleted with the pod): the pod comes back with
        a NEW, empty volume and a new IP, under its old name."""
        assert pod.container is not None
        pod.container.get_wrapped_container().remove(force=True)
        self.client.volumes.get(pod.volume).remove(force=True)
        pod.ip = self.new_ip()
        self.start(pod)

    def update_secret(self, name: str, data: dict[str, bytes]) -> None:
        """What the kubelet does some time after `kubectl apply` of a changed Secret."""
        [keys] = [k for n, k in secret_volumes(self.statefulset).values() if n == name]
        self.secret_volumes[name].update({path: data[key] for key, path in keys.items()})

    def new_ip(self) -> str:
        """A pod IP never used before in this network (a rescheduled pod gets a new one)."""
        self._next_host += 1
        return str(self.subnet.network_address + self._next_host)

    def start(self, pod: Pod) -> None:
        sts = pod.statefulset or self.statefulset
        spec = sts["spec"]["template"]["spec"]
        c = container(sts)
        ctx = {**spec["securityContext"], **c["securityContext"]}
        mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
        # The data volume: a claim (a Docker volume), or a disk emptyDir (one as well).
        [claim] = sts["spec"].get("volumeClaimTemplates") or [{"metadata": {"name": "data"}}]
        tmpfs = {
            mounts[v["name"]]: "size=64m"
            for v in spec["volumes"]
            if v.get("emptyDir", {}).get("medium") == "Memory"
        }
        memory = c["resources"]["limits"]["memory"]
        assert memory.endswith("Mi") or memory.endswith("Gi"), memory
        aliases = [pod.fqdn]
        dc = (
            DockerContainer(self.image)
            .with_network(self.network)
            .with_network_aliases(*aliases)
            .with_envs(**pod.env)
            .with_volume_mapping(pod.volume, mounts[claim["metadata"]["name"]], "rw")
            .with_kwargs(
                hostname=pod.name,
                user=f"{ctx['runAsUser']}:{ctx['runAsGroup']}",
                read_only=ctx["readOnlyRootFilesystem"],
                cap_drop=c["securityContext"]["capabilities"]["drop"],
                security_opt=["no-new-privileges:true"],
                mem_limit=memory.replace("Mi", "m").replace("Gi", "g"),
                networking_config={
                    self.network.name: EndpointConfig(
                        self.client.api._version, aliases=aliases, ipv4_address=pod.ip
                    )
                },
                labels={"raftcache-test": "1"},
            )
        )
        for path, options in tmpfs.items():
            dc.tmpfs[path] = options
        for mount_path, (name, _keys) in secret_volumes(sts).items():
            dc.with_volume_mapping(self.secret_volumes[name].directory, mount_path, "ro")
        for mount_path, (name, _keys) in optional_secret_volumes(sts).items():
            if name in self.secret_volumes:
                dc.with_volume_mapping(self.secret_volumes[name].directory, mount_path, "ro")
        # Published on 127.0.0.1 only, on a port Docker picks.
        dc.ports[f"{self.client_port}/tcp"] = ("127.0.0.1",)  # type: ignore[assignment]
        dc.ports[f"{self.redis_port}/tcp"] = ("127.0.0.1",)  # type: ignore[assignment]
        dc.ports[f"{self.memcached_port}/tcp"] = ("127.0.0.1",)  # type: ignore[assignment]
        dc.ports[f"{self.metrics_port}/tcp"] = ("127.0.0.1",)  # type: ignore[assignment]
        dc.start()
        pod.container = dc
        self.refresh_port(pod)

    def refresh_port(self, pod: Pod) -> None:
        assert pod.container is not None
        wrapped = pod.container.get_wrapped_container()

        def published(port: int) -> Callable[[], str | None]:
            def find() -> str | None:
                wrapped.reload()
                bindings = wrapped.attrs["NetworkSettings"]["Ports"].get(f"{port}/tcp")
                return f"127.0.0.1:{bindings[0]['HostPort']}" if bindings else None

            return find

        pod.published = wait_for(
            f"{pod.name}'s published port", published(self.client_port), 20, lambda: self.logs(pod)
        )
        pod.redis_published = wait_for(
            f"{pod.name}'s published Redis port",
            published(self.redis_port),
            20,
            lambda: self.logs(pod),
        )
        pod.memcached_published = wait_for(
            f"{pod.name}'s published memcached port",
            published(self.memcached_port),
            20,
            lambda: self.logs(pod),
        )
        pod.metrics_published = wait_for(
            f"{pod.name}'s published metrics port",
            published(self.metrics_port),
            20,
            lambda: self.logs(pod),
        )
        self.transport_addresses[pod.advertised] = pod.published

    def running(self, pod: Pod) -> bool:
        assert pod.container is not None
        wrapped = pod.container.get_wrapped_container()
        wrapped.reload()
        return bool(wrapped.status == "running")

    def kill(self, pod: Pod) -> None:
        """SIGKILL: the node gets no chance to hand over or flush anything."""
        assert pod.container is not None
        pod.container.get_wrapped_container().kill()

    def restart_in_place(self, pod: Pod) -> None:
        """The kubelet restarting a crashed container: same pod, same IP, same volume."""
        assert pod.container is not None
        pod.container.get_wrapped_container().start()
        self.refresh_port(pod)

    def reschedule(self, pod: Pod) -> None:
        """The pod deleted and created again (another node, say): its volume, a NEW IP."""
        assert pod.container is not None
        pod.container.get_wrapped_container().remove(force=True)
        pod.ip = self.new_ip()
        self.start(pod)

    def logs(self, pod: Pod, tail: int = 40) -> str:
        if pod.container is None:
            return ""
        try:
            text = pod.container.get_wrapped_container().logs(tail=tail).decode(errors="replace")
        except docker.errors.APIError as exc:
            text = f"(no logs: {exc})"
        return f"--- {pod.name} ({pod.ip}) ---\n{text}"

    def all_logs(self) -> str:
        return "\n".join(self.logs(p) for p in self.pods)

    def remove(self) -> None:
        for pod in self.pods:
            if pod.container is not None:
                with contextlib.suppress(docker.errors.NotFound):
                    pod.container.get_wrapped_container().remove(force=True)
            with contextlib.suppress(docker.errors.NotFound):
                self.client.volumes.get(pod.volume).remove(force=True)
        self.network.remove()

    # ---------------------------------------------------------------- probes and gRPC

    @property
    def ca_pem(self) -> bytes:
        with open(f"{self.secret_volumes['raftcache-tls'].directory}/ca.crt", "rb") as f:
            return f.read()

    def ssl_context(self) -> ssl.SSLContext:
        """What a client outside the cluster trusts: the CA of the Secret raftcache-tls."""
        return ssl.create_default_context(cadata=self.ca_pem.decode())

    def channel(self, pod: Pod) -> grpc.Channel:
        """A TLS channel to the pod's client port (the certificate names 127.0.0.1 too)."""
        return grpc.secure_channel(pod.published, grpc.ssl_channel_credentials(self.ca_pem))

    def ready(self, pod: Pod) -> bool:
        """What the kubelet's readiness probe sees: GET /readyz on the metrics port."""
        probe = container(self.statefulset)["readinessProbe"]["httpGet"]
        url = f"http://{pod.metrics_published}{probe['path']}"
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                return 200 <= response.status < 400
        except (urllib.error.URLError, OSError):
            return False

    def health(self, pod: Pod, service: str) -> bool:
        """grpc.health.v1 over TLS, without credentials (it must never need any)."""
        with self.channel(pod) as channel:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=1
            )
        return response.status == health_pb2.HealthCheckResponse.SERVING

    def status(self, pod: Pod) -> cluster_pb2.StatusResponse:
        with self.channel(pod) as channel:
            return cluster_pb2_grpc.ClusterStub(channel).Status(
                cluster_pb2.StatusRequest(), timeout=1, metadata=self.grpc_metadata
            )


def _network() -> tuple[Network, ipaddress.IPv4Network]:
    """A network with a subnet of our own, so each pod can be given an IP (and a new one)."""
    for _ in range(10):
        subnet = ipaddress.IPv4Network(
            f"10.{random.randint(100, 250)}.{random.randint(0, 255)}.0/24"
        )
        ipam = IPAMConfig(pool_configs=[IPAMPool(subnet=str(subnet))])
        network = Network(docker_network_kw={"ipam": ipam, "labels": {"raftcache-test": "1"}})
        try:
            return network.create(), subnet
        except docker.errors.APIError as exc:
            if "overlap" not in str(exc):
                raise
    pytest.fail("no free /24 for the test network in 10.100-250.x.0")
