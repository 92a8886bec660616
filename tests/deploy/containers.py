"""Run the node image as the StatefulSet would, in Docker: build the image, and start one
container per pod with the pod's DNS name as a network alias and exactly the env the
rendered manifest gives that pod (downward API and Secret references resolved)."""

from __future__ import annotations

import contextlib
import io
import ipaddress
import os
import random
import secrets
import subprocess
import tarfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import docker
import grpc
import pytest
from docker.types import EndpointConfig, IPAMConfig, IPAMPool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from raftcache.client._transport import GrpcTransport
from raftcache.v1 import cluster_pb2, cluster_pb2_grpc
from testcontainers.core.container import DockerContainer
from testcontainers.core.network import Network

from tests.deploy.manifests import (
    ROOT,
    Object,
    container,
    pod_env,
    pod_fqdn,
    pod_name,
    secret_refs,
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
    for label in ("io.raftcache.stage=build", "org.opencontainers.image.title=raftcache-node"):
        client.images.prune(filters={"dangling": True, "label": label, "until": "24h"})
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


class PublishedPorts:
    """An SDK transport that reaches each pod's advertised name through the port Docker
    published on 127.0.0.1 (the test runs outside the pods' network, as a client outside
    the Kubernetes cluster would: it must translate the advertised addresses somehow)."""

    def __init__(self, addresses: dict[str, str]) -> None:
        self.addresses = addresses  # advertised HOST:PORT -> 127.0.0.1:PORT, kept current
        self._grpc = GrpcTransport()

    async def call(self, address: str, method: str, request: Any, timeout: float) -> Any:
        return await self._grpc.call(self.addresses.get(address, address), method, request, timeout)

    async def close(self) -> None:
        await self._grpc.close()


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


@dataclass
class StatefulSetInDocker:
    """Pods of one StatefulSet as containers on one Docker network."""

    statefulset: Object
    image: str
    client: docker.DockerClient
    network: Network
    subnet: ipaddress.IPv4Network
    pods: list[Pod] = field(default_factory=list)
    transport_addresses: dict[str, str] = field(default_factory=dict)
    _next_host: int = 10

    @classmethod
    def create(
        cls, statefulset: Object, image: str, client: docker.DockerClient
    ) -> StatefulSetInDocker:
        network, subnet = _network()
        self = cls(statefulset, image, client, network, subnet)
        ports = {p["name"]: p["containerPort"] for p in container(statefulset)["ports"]}
        values = {ref: secrets.token_hex(16) for ref in secret_refs(statefulset)}
        run_id = uuid.uuid4().hex[:8]
        for ordinal in range(statefulset["spec"]["replicas"]):
            env = pod_env(statefulset, ordinal, values)
            self.pods.append(
                Pod(
                    ordinal=ordinal,
                    name=pod_name(statefulset, ordinal),
                    fqdn=pod_fqdn(statefulset, ordinal),
                    env=env,
                    advertised=f"{pod_fqdn(statefulset, ordinal)}:{ports['client']}",
                    volume=f"raftcache-test-{run_id}-data-{pod_name(statefulset, ordinal)}",
                    ip=self.new_ip(),
                )
            )
        self.client_port = ports["client"]
        self.redis_port = ports["redis"]
        self.memcached_port = ports["memcached"]
        return self

    def new_ip(self) -> str:
        """A pod IP never used before in this network (a rescheduled pod gets a new one)."""
        self._next_host += 1
        return str(self.subnet.network_address + self._next_host)

    def start(self, pod: Pod) -> None:
        sts = self.statefulset
        spec = sts["spec"]["template"]["spec"]
        c = container(sts)
        ctx = {**spec["securityContext"], **c["securityContext"]}
        mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
        [claim] = sts["spec"]["volumeClaimTemplates"]
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
        # Published on 127.0.0.1 only, on a port Docker picks.
        dc.ports[f"{self.client_port}/tcp"] = ("127.0.0.1",)  # type: ignore[assignment]
        dc.ports[f"{self.redis_port}/tcp"] = ("127.0.0.1",)  # type: ignore[assignment]
        dc.ports[f"{self.memcached_port}/tcp"] = ("127.0.0.1",)  # type: ignore[assignment]
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

    # ---------------------------------------------------------------- gRPC

    def health(self, pod: Pod, service: str) -> bool:
        with grpc.insecure_channel(pod.published) as channel:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=1
            )
        return response.status == health_pb2.HealthCheckResponse.SERVING

    def status(self, pod: Pod) -> cluster_pb2.StatusResponse:
        with grpc.insecure_channel(pod.published) as channel:
            return cluster_pb2_grpc.ClusterStub(channel).Status(
                cluster_pb2.StatusRequest(), timeout=1
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
