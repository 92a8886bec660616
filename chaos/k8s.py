"""Faults on the pods of a raftcache StatefulSet through `kubectl` (raftcache-chaos --kubernetes).

Kinds: kill-leader / kill-random (`kubectl delete pod --grace-period=0 --force`: the
runtime SIGKILLs the container, no preStop, no leadership handover) and
delete-leader / delete-random (`kubectl delete pod`: graceful, preStop then SIGTERM,
so a leader hands over first). The StatefulSet controller recreates the pod; a
fault ends when `kubectl rollout status` reports every replica ready again (or after
the recovery timeout). `kubectl exec ... kill -9 1` is deliberately not used: the
node runs as PID 1 of its container, and the kernel drops SIGKILL and SIGSTOP sent to
a namespace's init from inside it, so the command "succeeds" and nothing happens.
For the same reason there is no pause kind here.

The leader is found through Cluster.Status on a client address reachable from here
(--endpoints, e.g. a `kubectl port-forward`), else with `kubectl exec` into a
running pod and the `raftcache status --json` CLI of the image. Node ids are pod
names (the manifests in deploy/k8s derive --node-id from metadata.name).

Every kubectl call goes through an injectable CommandRunner, so the exact argv is
unit-tested without a cluster (none runs in this repository's CI).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from raftcache.chaos.nemesis import Fault, FaultSchedule
from raftcache.v1 import cluster_pb2, cluster_pb2_grpc

K8S_KINDS = ("kill-leader", "kill-random", "delete-leader", "delete-random")
CLIENT_PORT = 6380


class KubectlError(RuntimeError):
    """kubectl is missing, timed out or exited non-zero; the message says what to do."""


@dataclass(frozen=True)
class CommandResult:
    """What a finished command returned."""

    returncode: int
    stdout: str
    stderr: str


CommandRunner = Callable[[Sequence[str], float], CommandResult]


def run_command(argv: Sequence[str], timeout: float) -> CommandResult:
    """Run argv, capturing output; raises KubectlError if it cannot start or times out."""
    if shutil.which(argv[0]) is None:
        raise KubectlError(
            f"{argv[0]!r} not found on PATH: install kubectl "
            "(https://kubernetes.io/docs/tasks/tools/) or pass --kubectl /path/to/kubectl"
        )
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise KubectlError(
            f"`{' '.join(argv)}` did not finish within {timeout:g} s: "
            "check that the cluster is reachable (kubectl cluster-info)"
        ) from exc
    except OSError as exc:
        raise KubectlError(f"cannot run {argv[0]!r}: {exc}") from exc
    return CommandResult(done.returncode, done.stdout, done.stderr)


@dataclass(frozen=True)
class K8sConfig:
    """Where the StatefulSet lives; defaults match deploy/k8s."""

    namespace: str = "raftcache"
    context: str | None = None
    statefulset: str = "raftcache"
    container: str = "raftcache"
    selector: str = "app.kubernetes.io/name=raftcache"
    kubectl: str = "kubectl"
    client_addrs: tuple[str, ...] = ()  # reachable client addresses, for the leader lookup
    command_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        for name in ("namespace", "statefulset", "container", "selector", "kubectl"):
            if not getattr(self, name):
                raise ValueError(f"kubernetes {name} must not be empty")
        if self.command_timeout_s <= 0:
            raise ValueError("kubectl command timeout must be > 0 s")


class Kubectl:
    """The kubectl commands the Kubernetes nemesis runs."""

    def __init__(self, config: K8sConfig, run: CommandRunner = run_command) -> None:
        self.config = config
        self._run = run

    def argv(self, *args: str) -> list[str]:
        """The full command line for kubectl `args` in the configured context and namespace."""
        context = ["--context", self.config.context] if self.config.context else []
        return [self.config.kubectl, *context, "--namespace", self.config.namespace, *args]

    def run(self, *args: str, timeout: float | None = None) -> str:
        """Stdout of kubectl `args`; raises KubectlError with its stderr if it fails."""
        argv = self.argv(*args)
        result = self._run(argv, timeout or self.config.command_timeout_s)
        if result.returncode != 0:
            detail = result.stderr.strip() or result.stdout.strip() or "no output"
            raise KubectlError(f"`{' '.join(argv)}` failed (exit {result.returncode}): {detail}")
        return result.stdout

    def replicas(self) -> int:
        """The StatefulSet's desired replica count (also checks access to the cluster)."""
        out = self.run(
            "get", "statefulset", self.config.statefulset, "-o", "jsonpath={.spec.replicas}"
        )
        try:
            return int(out.strip())
        except ValueError as exc:
            raise KubectlError(
                f"statefulset {self.config.statefulset!r} in namespace "
                f"{self.config.namespace!r} reported replicas {out.strip()!r}"
            ) from exc

    def pods(self) -> list[str]:
        """Names of the StatefulSet's pods, sorted."""
        out = self.run(
            "get", "pods", "-l", self.config.selector, "-o", "jsonpath={.items[*].metadata.name}"
        )
        return sorted(out.split())

    def kill_pod(self, pod: str) -> None:
        """Force-delete: the container is SIGKILLed without preStop or grace period."""
        self.run("delete", "pod", pod, "--grace-period=0", "--force", "--wait=false")

    def delete_pod(self, pod: str) -> None:
        """Graceful delete: preStop, SIGTERM (a leader hands over), then the pod is recreated."""
        self.run("delete", "pod", pod, "--wait=false")

    def wait_ready(self, timeout_s: float) -> None:
        """Block until every replica of the StatefulSet is ready; KubectlError on timeout."""
        self.run(
            "rollout",
            "status",
            f"statefulset/{self.config.statefulset}",
            f"--timeout={max(int(timeout_s), 1)}s",
            timeout=timeout_s + 10,
        )

    def leader_pod(self) -> str | None:
        """The pod that leads (highest term among those that say so), or None if none does."""
        for addr in self.config.client_addrs:
            leader = _leader_via_grpc(addr)
            if leader:
                return leader
        for pod in self.pods():
            try:
                out = self.run(
                    "exec", pod, "-c", self.config.container, "--",
                    "raftcache", "--json", "--endpoints", f"127.0.0.1:{CLIENT_PORT}", "status",
                )  # fmt: skip
            except KubectlError:
                continue  # that pod may be the one being restarted; ask the next
            return leader_from_status_json(out)
        return None


def leader_from_status_json(text: str) -> str | None:
    """The leader's id in `raftcache --json status` output (a JSON list of nodes)."""
    try:
        nodes = json.loads(text)
    except json.JSONDecodeError as exc:
        raise KubectlError(f"unexpected `raftcache status --json` output: {text[:200]!r}") from exc
    leaders = [n for n in nodes if isinstance(n, dict) and n.get("role") == "leader"]
    if not leaders:
        return None
    return str(max(leaders, key=lambda n: int(n.get("term") or 0))["id"])


def _leader_via_grpc(addr: str) -> str | None:
    with grpc.insecure_channel(addr) as channel:
        try:
            status = cluster_pb2_grpc.ClusterStub(channel).Status(
                cluster_pb2.StatusRequest(), timeout=2.0
            )
        except grpc.RpcError:
            return None
    return str(status.leader_id) or None


@dataclass
class K8sNemesis(FaultSchedule):
    """Runs pod faults on a schedule from a thread until stop(); same fault records as Nemesis."""

    kubectl: Kubectl
    kinds: tuple[str, ...] = K8S_KINDS
    interval_s: float = 30.0
    recovery_timeout_s: float = 180.0
    seed: int = 0
    log: Callable[[str], None] = print
    faults: list[Fault] = field(default_factory=list)
    crashes: list[dict[str, Any]] = field(default_factory=list)  # unused: pods are recreated

    def __post_init__(self) -> None:
        unknown = [k for k in self.kinds if k not in K8S_KINDS]
        if unknown or not self.kinds:
            raise ValueError(
                f"kubernetes nemesis kinds must be among {', '.join(K8S_KINDS)}; got {unknown}"
            )
        self._schedule(self.kinds, self.seed, "k8s-nemesis")

    def stop(self) -> None:
        """Stop injecting and wait for the current fault to recover (idempotent)."""
        self._halt()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            kind = self._next_kind()
            try:
                self.inject(kind)
            except KubectlError as exc:  # keep the schedule going; the message says why
                self.log(f"k8s nemesis: {kind} failed: {exc}")

    def inject(self, kind: str) -> Fault:
        """One fault of `kind`, then wait until the StatefulSet is ready again."""
        pod = self._target(kind)
        fault = self._record(Fault(kind, time.monotonic(), [pod]))
        self.log(f"k8s nemesis: {kind} {pod}")
        try:
            if kind.startswith("kill-"):
                self.kubectl.kill_pod(pod)
            else:
                self.kubectl.delete_pod(pod)
            self.kubectl.wait_ready(self.recovery_timeout_s)
        finally:
            fault.end = time.monotonic()
        return fault

    def _target(self, kind: str) -> str:
        pods = self.kubectl.pods()
        if not pods:
            raise KubectlError(
                f"no pods match -l {self.kubectl.config.selector} in namespace "
                f"{self.kubectl.config.namespace}: is the StatefulSet deployed there?"
            )
        if kind.endswith("-leader"):
            leader = self.kubectl.leader_pod()
            if leader in pods:
                return leader
            self.log(f"k8s nemesis: no leader found; {kind} picks a random pod")
        return self._rng.choice(pods)
