"""The Kubernetes nemesis: the exact kubectl commands it runs, and how it fails."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from raftcache.chaos import runner
from raftcache.chaos.k8s import (
    CommandResult,
    K8sConfig,
    K8sNemesis,
    Kubectl,
    KubectlError,
    leader_from_status_json,
    run_command,
)

STATUS_JSON = json.dumps(
    [
        {"id": "raftcache-0", "role": "follower", "term": 4},
        {"id": "raftcache-1", "role": "leader", "term": 3},  # cut off, not yet stepped down
        {"id": "raftcache-2", "role": "leader", "term": 4},
    ]
)


class FakeKubectl:
    """Records every argv; answers from a table keyed by the kubectl verb and object."""

    def __init__(self, fail: dict[str, CommandResult] | None = None) -> None:
        self.calls: list[list[str]] = []
        self.fail = fail or {}

    def __call__(self, argv: Sequence[str], timeout: float) -> CommandResult:
        self.calls.append(list(argv))
        args = argv[argv.index("--namespace") + 2 :]
        key = " ".join(args[:2])
        if key in self.fail:
            return self.fail[key]
        if key == "get pods":
            return CommandResult(0, "raftcache-1 raftcache-0 raftcache-2", "")
        if key == "get statefulset":
            return CommandResult(0, "3", "")
        if args[0] == "exec":
            return CommandResult(0, STATUS_JSON, "")
        return CommandResult(0, "", "")


def _kubectl(fake: FakeKubectl, **kwargs: object) -> Kubectl:
    return Kubectl(K8sConfig(**kwargs), run=fake)  # type: ignore[arg-type]


def test_argv_uses_context_and_namespace() -> None:
    fake = FakeKubectl()
    k = _kubectl(fake, namespace="cache", context="prod-eu", kubectl="/opt/kubectl")
    assert k.replicas() == 3
    assert fake.calls == [
        [
            "/opt/kubectl", "--context", "prod-eu", "--namespace", "cache",
            "get", "statefulset", "raftcache", "-o", "jsonpath={.spec.replicas}",
        ]
    ]  # fmt: skip
    assert _kubectl(FakeKubectl()).argv("get", "pods")[:3] == [
        "kubectl",
        "--namespace",
        "raftcache",
    ]


def test_pod_commands_are_exact() -> None:
    fake = FakeKubectl()
    k = _kubectl(fake)
    assert k.pods() == ["raftcache-0", "raftcache-1", "raftcache-2"]
    k.kill_pod("raftcache-1")
    k.delete_pod("raftcache-2")
    k.wait_ready(120)
    base = ["kubectl", "--namespace", "raftcache"]
    assert fake.calls == [
        [*base, "get", "pods", "-l", "app.kubernetes.io/name=raftcache",
         "-o", "jsonpath={.items[*].metadata.name}"],
        [*base, "delete", "pod", "raftcache-1", "--grace-period=0", "--force", "--wait=false"],
        [*base, "delete", "pod", "raftcache-2", "--wait=false"],
        [*base, "rollout", "status", "statefulset/raftcache", "--timeout=120s"],
    ]  # fmt: skip


def test_leader_via_exec_picks_the_highest_term() -> None:
    fake = FakeKubectl()
    assert _kubectl(fake).leader_pod() == "raftcache-2"
    assert fake.calls[-1] == [
        "kubectl", "--namespace", "raftcache", "exec", "raftcache-0", "-c", "raftcache", "--",
        "raftcache", "--json", "--endpoints", "127.0.0.1:6380", "status",
    ]  # fmt: skip
    assert leader_from_status_json("[]") is None
    with pytest.raises(KubectlError, match="unexpected"):
        leader_from_status_json("Error: no such command")


def test_nemesis_kills_the_leader_and_records_the_fault() -> None:
    fake = FakeKubectl()
    nemesis = K8sNemesis(_kubectl(fake), log=lambda _: None)
    fault = nemesis.inject("kill-leader")
    assert fault.target == ["raftcache-2"] and fault.end is not None and fault.end >= fault.start
    verbs = [c[3:6] for c in fake.calls]
    assert ["delete", "pod", "raftcache-2"] in verbs
    assert verbs[-1][:2] == ["rollout", "status"]
    assert nemesis.fault_dicts()[0]["kind"] == "kill-leader"
    nemesis.inject("delete-random")
    deleted = [c for c in fake.calls if c[3:5] == ["delete", "pod"]][-1]
    assert deleted[-1] == "--wait=false" and "--force" not in deleted


def test_kubectl_failure_names_the_command_and_stderr() -> None:
    denied = CommandResult(1, "", 'Error from server (Forbidden): pods "raftcache-0" is forbidden')
    k = _kubectl(FakeKubectl(fail={"delete pod": denied}))
    with pytest.raises(KubectlError, match=r"kubectl --namespace raftcache delete pod .*Forbidden"):
        k.delete_pod("raftcache-0")
    empty = _kubectl(FakeKubectl(fail={"get pods": CommandResult(0, "", "")}))
    with pytest.raises(KubectlError, match="no pods match"):
        K8sNemesis(empty, log=lambda _: None).inject("kill-random")


def test_missing_kubectl_says_how_to_fix_it() -> None:
    with pytest.raises(KubectlError, match="not found on PATH: install kubectl"):
        run_command(["kubectl-does-not-exist-here", "version"], 5)


def test_bad_kinds_and_config_are_refused() -> None:
    with pytest.raises(ValueError, match="must be among"):
        K8sNemesis(_kubectl(FakeKubectl()), kinds=("pause",))
    with pytest.raises(ValueError, match="namespace"):
        K8sConfig(namespace="")


def test_runner_kubernetes_mode_reports_bad_usage_and_missing_kubectl(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "out")
    assert runner.main(["--kubernetes", "--out", out]) == runner.EXIT_USAGE
    assert "--kubernetes needs --endpoints" in capsys.readouterr().err
    code = runner.main(["--kubernetes", "--endpoints", "127.0.0.1:1", "--nemesis", "pause"])
    assert code == runner.EXIT_USAGE
    assert "not available with --kubernetes" in capsys.readouterr().err
    code = runner.main(
        ["--kubernetes", "--endpoints", "127.0.0.1:1", "--kubectl", "no-kubectl-here", "--out", out]
    )
    assert code == runner.EXIT_NOT_RUN
    assert "'no-kubectl-here' not found on PATH" in capsys.readouterr().err
    assert not (tmp_path / "out").exists(), "nothing is written before kubectl answered"


def test_runner_rejects_unknown_local_nemesis(capsys: pytest.CaptureFixture[str]) -> None:
    assert runner.main(["--nemesis", "partition-everything"]) == runner.EXIT_USAGE
    err = capsys.readouterr().err
    assert "unknown --nemesis 'partition-everything'" in err and "partition-leader" in err
