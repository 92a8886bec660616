"""raftcache-chaos: run workloads against a local cluster under faults, then check the history.

Exit status: 0 every check passed, 1 a check failed, 2 a check could not decide
("unknown", e.g. the linearizability search ran out of time), 3 the run itself
could not be carried out (the cluster never became ready, kubectl failed), 64 bad
arguments. Everything lands in --out: history.jsonl, faults.json, summary.json,
leaders.jsonl, report.html and the cluster's data and logs. With --kubernetes the
faults hit the pods of a deployed StatefulSet instead (chaos/k8s.py).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from raftcache.chaos import checkers, netns, report
from raftcache.chaos.checkers import Verdict
from raftcache.chaos.history import HistoryWriter, Op, RecordLog, read_history, read_records
from raftcache.chaos.k8s import K8S_KINDS, K8sConfig, K8sNemesis, Kubectl, KubectlError
from raftcache.chaos.local_cluster import CHANNEL_OPTIONS, LocalCluster
from raftcache.chaos.nemesis import (
    CLOCK_KINDS,
    KINDS,
    MEMBERSHIP_KINDS,
    NETNS_KINDS,
    NETWORK_KINDS,
    PROCESS_KINDS,
    SPARE_KINDS,
    Nemesis,
    NemesisConfig,
)
from raftcache.chaos.pubsub import MARKER_PREFIX, PUBSUB_FILE, finish_pubsub, start_pubsub
from raftcache.chaos.watch import (
    MARKER_KEY,
    WATCH_FILE,
    finish_watchers,
    start_watchers,
)
from raftcache.chaos.workloads import (
    GRPC_WORKLOADS,
    MEMCACHED_WORKLOADS,
    QUEUE_KEYS,
    ListKeys,
    Worker,
    WorkloadConfig,
    parse_workloads,
    pipeline_summary,
    start_workers,
    stop_workers,
    workload_of,
)
from raftcache.client import Client, RaftcacheError
from raftcache.v1 import cluster_pb2, cluster_pb2_grpc

NEMESIS_CHOICES: dict[str, tuple[str, ...]] = {
    "mix": KINDS,
    "processes": PROCESS_KINDS,
    "network": NETWORK_KINDS + NETNS_KINDS,
    "clock": CLOCK_KINDS,
    "membership": MEMBERSHIP_KINDS,
    **{kind: (kind,) for kind in KINDS},
    "none": (),
}
NET_MODES = ("proxy", "netns")
EXIT_OK, EXIT_FAILED, EXIT_UNKNOWN, EXIT_NOT_RUN, EXIT_USAGE = 0, 1, 2, 3, 64


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="raftcache-chaos", description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--duration", type=float, default=60.0, help="seconds of faults (default 60)")
    p.add_argument("--seed", type=int, default=None, help="default: random (printed)")
    p.add_argument(
        "--nemesis",
        default="mix",
        help="mix (every kind), processes, network, clock, membership, none, one of "
        + ", ".join(KINDS)
        + ", or a comma-separated list of them",
    )
    p.add_argument(
        "--net",
        choices=NET_MODES,
        default="proxy",
        help="how network faults are made: proxy (TCP proxies in front of the Raft ports, no "
        "root needed; cuts Raft links only) or netns (every node in its own network namespace "
        "on a bridge, root needed; cuts every port, client and forwarding traffic included, "
        "and adds partition-one-way, bridge-flap and loss; chaos/netns.py)",
    )
    p.add_argument("--interval", type=float, default=10.0, help="calm seconds between faults")
    p.add_argument("--hold", type=float, default=3.0, help="seconds each fault stays in force")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="client threads (default: 9, or one per workload if there are more)",
    )
    p.add_argument(
        "--workloads",
        default="mix",
        help="mix (every workload), grpc (registers, counters, sessions through the SDK), "
        "redis (redis-registers, redis-appends through redis-py), memcached (mc-registers "
        "through pymemcache), one workload or a "
        "comma-separated list",
    )
    p.add_argument("--think", type=float, default=0.02, help="seconds between a worker's ops")
    p.add_argument(
        "--subscribers",
        type=int,
        default=2,
        metavar="N",
        help="pub/sub subscribers, through the SDK and the Redis port in turn, under one SDK "
        "publisher, checked for phantoms, duplicates and order (default 2; 0: none)",
    )
    p.add_argument(
        "--watchers",
        type=int,
        default=2,
        metavar="N",
        help="SDK watches on the registers' prefix, checked against their writes (default 2; "
        "0: none; only with the registers workload)",
    )
    p.add_argument(
        "--no-auto-pipeline",
        dest="auto_pipeline",
        action="store_false",
        help="run the SDK workers' shared Client with auto-pipelining off (default: on)",
    )
    p.add_argument("--check-budget", type=float, default=60.0, help="linearizability search s")
    p.add_argument("--out", default="chaos-results")
    p.add_argument(
        "--compaction-entries",
        type=int,
        default=None,
        metavar="N",
        help="every node's --compaction-entries (local mode): small values make nodes that "
        "fell behind during a fault catch up from the leader's snapshot",
    )
    k8s = p.add_argument_group(
        "kubernetes mode",
        "fault pods of a deployed StatefulSet through kubectl instead of a local cluster "
        "(kinds: " + ", ".join(K8S_KINDS) + "; see chaos/k8s.py)",
    )
    k8s.add_argument("--kubernetes", action="store_true", help="run against a StatefulSet")
    k8s.add_argument(
        "--endpoints",
        default="",
        metavar="HOST:PORT[,...]",
        help="client addresses reachable from here, one per pod for the convergence check "
        "(e.g. kubectl port-forward pod/raftcache-0 16380:6380); required with --kubernetes",
    )
    k8s.add_argument(
        "--redis-endpoints",
        default="",
        metavar="HOST:PORT[,...]",
        help="the pods' Redis ports reachable from here; without them `mix` leaves out the "
        "redis-* workloads",
    )
    k8s.add_argument(
        "--memcached-endpoints",
        default="",
        metavar="HOST:PORT[,...]",
        help="the pods' memcached ports reachable from here; without them `mix` leaves out "
        "the mc-* workloads",
    )
    k8s.add_argument("--namespace", default="raftcache")
    k8s.add_argument("--context", default=None, help="kubectl context (default: current)")
    k8s.add_argument("--statefulset", default="raftcache")
    k8s.add_argument("--container", default="raftcache")
    k8s.add_argument("--selector", default="app.kubernetes.io/name=raftcache")
    k8s.add_argument("--kubectl", default="kubectl", help="kubectl binary (default: on PATH)")
    return p.parse_args(argv)


def _parse_kinds(
    spec: str, presets: dict[str, tuple[str, ...]], known: Sequence[str], refusal: str
) -> tuple[str, ...]:
    """A preset name, or a comma-separated list of known kinds; else ValueError(refusal)."""
    if spec in presets:
        return presets[spec]
    kinds = tuple(k.strip() for k in spec.split(",") if k.strip())
    if not kinds or any(k not in known for k in kinds):
        raise ValueError(refusal)
    return kinds


def _kinds(spec: str) -> tuple[str, ...]:
    return _parse_kinds(
        spec,
        NEMESIS_CHOICES,
        KINDS,
        f"unknown --nemesis {spec!r}; use mix, processes, network, clock, membership, none, "
        f"{', '.join(KINDS)} or a comma-separated list of those",
    )


def _k8s_kinds(spec: str) -> tuple[str, ...]:
    return _parse_kinds(
        spec,
        {"mix": K8S_KINDS, "processes": K8S_KINDS, "none": ()},
        K8S_KINDS,
        f"--nemesis {spec!r} is not available with --kubernetes; use mix, none, "
        f"{', '.join(K8S_KINDS)} or a comma-separated list of those",
    )


@dataclass
class Backend:
    """What a run acts on: a local cluster or a Kubernetes StatefulSet."""

    endpoints: tuple[str, ...]
    redis_endpoints: tuple[str, ...]
    memcached_endpoints: tuple[str, ...]
    nemesis: Nemesis | K8sNemesis | None
    wait_ready: Callable[[], bool]
    statuses: Callable[[], list[dict[str, Any]]]
    logs: Callable[[], dict[str, str]] | None = None  # node id -> its log (local mode)
    clock_skew: bool = False  # a fault moves clocks: `mix` adds the ttl-sessions workload


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    if args.kubernetes:
        return _main_kubernetes(args, seed)
    try:  # bad arguments are reported before any node starts
        kinds = _net_kinds(_kinds(args.nemesis), args)
        NemesisConfig(kinds or KINDS, interval_s=args.interval, hold_s=args.hold)
        workloads = parse_workloads(args.workloads, ttl=any(k in CLOCK_KINDS for k in kinds))
        WorkloadConfig(
            ("-",),
            workers=_workers(args, workloads),
            workloads=workloads,
            redis_endpoints=("-",),
            memcached_endpoints=("-",),
        )
        if args.nodes < 1 or args.duration <= 0:
            raise ValueError("--nodes must be >= 1 and --duration > 0")
        _check_streams(args)
        if args.compaction_entries is not None and args.compaction_entries < 100:
            raise ValueError("--compaction-entries must be >= 100 (the node's minimum)")
    except ValueError as exc:
        print(f"raftcache-chaos: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.net == "netns" and (reason := netns.unavailable()) is not None:
        print(f"raftcache-chaos: --net netns: {reason}", file=sys.stderr)
        return EXIT_NOT_RUN
    out = _prepare_out(args, seed)
    # Raft links go through proxies only when a network fault needs them.
    proxy = args.net == "proxy" and any(k in NETWORK_KINDS for k in kinds)
    node_args: list[str] = []
    if args.compaction_entries is not None:
        node_args = ["--compaction-entries", str(args.compaction_entries)]
    cluster = LocalCluster(
        args.nodes,
        out / "cluster",
        proxy=proxy,
        proxy_seed=seed,
        extra_args=node_args,
        netns=args.net == "netns",
        clock_skew=any(k in CLOCK_KINDS for k in kinds),
        # member-grow adds one more voter: a node laid out (ports, namespace) but not started
        spares=1 if any(k in SPARE_KINDS for k in kinds) else 0,
    )
    previous = signal.getsignal(signal.SIGTERM)
    if previous is signal.SIG_DFL:  # SIGTERM tears the cluster (and namespaces) down too
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        cluster.start()
        args.network = _network_description(cluster, proxy)
        _log(f"network: {args.network}")
        try:
            cluster.wait_until_ready(timeout=60)
        except TimeoutError as exc:
            print(f"raftcache-chaos: the cluster did not start: {exc}", file=sys.stderr)
            return EXIT_NOT_RUN
        nemesis = Nemesis(
            cluster,
            NemesisConfig(kinds or KINDS, interval_s=args.interval, hold_s=args.hold, seed=seed),
            log=_log,
        )
        backend = Backend(
            endpoints=tuple(n.client_addr for n in cluster.nodes),
            redis_endpoints=tuple(n.redis_addr for n in cluster.nodes),
            memcached_endpoints=tuple(n.memcached_addr for n in cluster.nodes),
            nemesis=nemesis if kinds else None,
            wait_ready=lambda: _wait_ready(cluster),
            statuses=lambda: _statuses(cluster),
            logs=lambda: {n.node_id: n.log_path.read_text(errors="replace") for n in cluster.nodes},
            clock_skew=any(k in CLOCK_KINDS for k in kinds),
        )
        return _run(args, seed, out, backend)
    finally:
        cluster.close()
        if previous is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _net_kinds(kinds: tuple[str, ...], args: argparse.Namespace) -> tuple[str, ...]:
    """The kinds this --net mode can make: presets (mix, network) leave out what it cannot;
    a kind named explicitly that it cannot make is a usage error."""
    preset = args.nemesis in NEMESIS_CHOICES and args.nemesis not in KINDS
    drop: dict[str, str] = {}
    if args.net == "proxy":
        drop.update({k: "needs --net netns" for k in NETNS_KINDS})
    elif "latency" in kinds and (reason := netns.netem_unavailable()) is not None:
        drop["latency"] = f"--net netns makes latency with tc netem, and {reason}"
    refused = [f"{k} {drop[k]}" for k in kinds if k in drop]
    if refused and not preset:
        raise ValueError("; ".join(refused))
    for line in refused:
        print(f"raftcache-chaos: leaving out {line}", file=sys.stderr)
    return tuple(k for k in kinds if k not in drop)


def _network_description(cluster: LocalCluster, proxied: bool) -> str:
    """Which network mode the run used, for the log, summary.json and report.html."""
    if cluster.netns is not None:
        return cluster.netns.describe()
    if proxied:
        return "proxy (Raft links through netproxy.py; client ports not cut)"
    return "loopback, no network faults"


def _main_kubernetes(args: argparse.Namespace, seed: int) -> int:
    try:
        kinds = _k8s_kinds(args.nemesis)
        endpoints = tuple(e.strip() for e in args.endpoints.split(",") if e.strip())
        if not endpoints:
            raise ValueError(
                "--kubernetes needs --endpoints: client addresses of the pods reachable from "
                "here, e.g. after `kubectl -n raftcache port-forward pod/raftcache-0 16380:6380`"
            )
        redis_endpoints = tuple(e.strip() for e in args.redis_endpoints.split(",") if e.strip())
        mc_endpoints = tuple(e.strip() for e in args.memcached_endpoints.split(",") if e.strip())
        workloads = parse_workloads(
            args.workloads, redis=bool(redis_endpoints), memcached=bool(mc_endpoints)
        )
        WorkloadConfig(
            endpoints,
            workers=_workers(args, workloads),
            workloads=workloads,
            redis_endpoints=redis_endpoints,
            memcached_endpoints=mc_endpoints,
        )
        config = K8sConfig(
            namespace=args.namespace,
            context=args.context,
            statefulset=args.statefulset,
            container=args.container,
            selector=args.selector,
            kubectl=args.kubectl,
            client_addrs=endpoints,
        )
        kubectl = Kubectl(config)
        nemesis = K8sNemesis(kubectl, kinds or K8S_KINDS, interval_s=args.interval, seed=seed)
        if args.duration <= 0:
            raise ValueError("--duration must be > 0")
        _check_streams(args)
    except ValueError as exc:
        print(f"raftcache-chaos: {exc}", file=sys.stderr)
        return EXIT_USAGE
    nemesis.log = _log
    try:  # fail before any load if kubectl or the StatefulSet is not there
        replicas = kubectl.replicas()
    except KubectlError as exc:
        print(f"raftcache-chaos: {exc}", file=sys.stderr)
        return EXIT_NOT_RUN
    out = _prepare_out(args, seed)
    _log(f"statefulset {config.statefulset} in {config.namespace}: {replicas} replicas")

    def wait_ready() -> bool:
        try:
            kubectl.wait_ready(180)
            return True
        except KubectlError as exc:
            _log(str(exc))
            return False

    backend = Backend(
        endpoints=endpoints,
        redis_endpoints=redis_endpoints,
        memcached_endpoints=mc_endpoints,
        nemesis=nemesis if kinds else None,
        wait_ready=wait_ready,
        statuses=lambda: _endpoint_statuses(endpoints),
    )
    return _run(args, seed, out, backend)


def _check_streams(args: argparse.Namespace) -> None:
    if args.watchers < 0:
        raise ValueError(f"--watchers must be >= 0 (0: no watches), not {args.watchers}")
    if args.subscribers < 0:
        raise ValueError(f"--subscribers must be >= 0 (0: no pub/sub), not {args.subscribers}")


def _prepare_out(args: argparse.Namespace, seed: int) -> Path:
    """Create --out and remove what an earlier run left there."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stale_files = (
        "history.jsonl",
        WATCH_FILE,
        PUBSUB_FILE,
        "faults.json",
        "summary.json",
        "leaders.jsonl",
        "report.html",
    )
    for stale in ("cluster", *stale_files):
        path = out / stale
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    print(f"raftcache-chaos: seed {seed}, nemesis {args.nemesis}, {args.duration:g} s, out {out}/")
    return out


def _log(message: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _workers(args: argparse.Namespace, workloads: Sequence[str]) -> int:
    """--workers, or by default 9 (one per workload when there are more)."""
    return int(args.workers) if args.workers is not None else max(9, len(workloads))


def _run(args: argparse.Namespace, seed: int, out: Path, backend: Backend) -> int:
    endpoints = backend.endpoints
    workloads = parse_workloads(
        args.workloads,
        redis=bool(backend.redis_endpoints),
        memcached=bool(backend.memcached_endpoints),
        ttl=backend.clock_skew,
    )
    wconfig = WorkloadConfig(
        endpoints,
        workers=_workers(args, workloads),
        think_s=args.think,
        seed=seed,
        workloads=workloads,
        redis_endpoints=backend.redis_endpoints,
        memcached_endpoints=backend.memcached_endpoints,
        auto_pipeline=args.auto_pipeline,
    )
    lists = ListKeys(wconfig.open_lists, wconfig.list_cap)
    sets = ListKeys(wconfig.open_lists, wconfig.list_cap, prefix="rs")
    history = HistoryWriter(out / "history.jsonl")
    nemesis = backend.nemesis
    sampler = LeaderSampler(_sampler_names(endpoints, args), out / "leaders.jsonl")
    sampler.start()
    started = time.monotonic()
    end_marker = f"end-{seed}"  # the value of MARKER_KEY every watch must deliver at the end
    watch_log = RecordLog(out / WATCH_FILE)
    watching = args.watchers if "registers" in wconfig.workloads else 0
    if args.watchers and not watching:
        _log("no watches: --watchers follows the registers workload, which is not running")
    watchers = start_watchers(watching, endpoints, watch_log)  # before the writers: from now
    pubsub_log = RecordLog(out / PUBSUB_FILE)
    publishers, subscribers = start_pubsub(
        endpoints, backend.redis_endpoints, pubsub_log, args.subscribers, seed
    )
    workers = start_workers(wconfig, history, lists, sets)
    ready = False
    try:
        if nemesis is not None:
            nemesis.start()
        time.sleep(args.duration)
        if nemesis is not None:
            nemesis.stop()  # heals: resumes paused nodes, restarts dead ones, reconnects
        ready = backend.wait_ready()
        time.sleep(2.0)  # let the workers show recovery after the last fault
    finally:  # also on Ctrl-C: no thread may outlive the cluster
        try:
            if nemesis is not None:
                nemesis.stop()
            worker_errors = stop_workers(workers)
            # The writers have stopped. After a recovery, the end markers every watch and
            # subscriber must deliver; otherwise (not ready, Ctrl-C) just stop them.
            worker_errors += finish_watchers(watchers, endpoints, end_marker if ready else None)
            worker_errors += finish_pubsub(publishers, subscribers, endpoints, pubsub_log, ready)
        finally:
            watch_log.close()
            pubsub_log.close()
            _log(f"SDK workers' client: {pipeline_summary(workers)}")
            history.close()
            sampler.stop()
    elapsed = time.monotonic() - started

    final = _final_reads(endpoints, wconfig, workers) if ready else None
    list_keys = [*lists.used()]
    if "redis-queue" in wconfig.workloads:
        list_keys += QUEUE_KEYS
    final_lists = _final_lists(endpoints, list_keys) if ready else None
    set_keys = sets.used() if "redis-sets" in wconfig.workloads else []
    final_sets = _final_sets(endpoints, set_keys) if ready else None
    statuses = backend.statuses()
    ops = read_history(out / "history.jsonl")
    faults = nemesis.fault_dicts() if nemesis is not None else []
    crashes = nemesis.crashes if nemesis is not None else []
    verdicts = _check(ops, faults, final, final_lists, statuses, args.check_budget, final_sets)
    if watchers:
        records = read_records(out / WATCH_FILE)
        verdicts.append(
            checkers.check_watch(records, ops, final, (MARKER_KEY, end_marker))
            if ready
            else _unknown("watch", "the cluster did not recover: no end marker, not checked")
        )
    if subscribers:
        verdicts.append(
            checkers.check_pubsub(read_records(out / PUBSUB_FILE), MARKER_PREFIX)
            if ready
            else _unknown("pubsub", "the cluster did not recover: no end marker, not checked")
        )
    verdicts.append(_run_verdict(ready, worker_errors, crashes))
    if backend.logs is not None:
        verdicts.append(_log_verdict(backend.logs()))

    summary = _summary(seed, args, elapsed, ops, faults, crashes, verdicts, statuses)
    summary["membership"] = _membership_summary(nemesis)
    summary["report"] = str(out / "report.html")
    (out / "faults.json").write_text(json.dumps(faults, indent=2) + "\n")
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    leaders = report.read_leaders(out / "leaders.jsonl")
    report.write_report(out, summary, ops, faults, leaders)
    return _report(summary, verdicts, seed, out)


def _sampler_names(endpoints: tuple[str, ...], args: argparse.Namespace) -> list[tuple[str, str]]:
    """Local nodes are n1..nN in endpoint order; Kubernetes endpoints are named by address."""
    if args.kubernetes:
        return [(addr, addr) for addr in endpoints]
    return [(f"n{i + 1}", addr) for i, addr in enumerate(endpoints)]


def _endpoint_statuses(endpoints: Sequence[str]) -> list[dict[str, Any]]:
    """node_id, applied_index and digest of every endpoint, once the digests agree (<= 60 s)."""
    deadline = time.monotonic() + 60
    while True:
        out: list[dict[str, Any]] = []
        for addr in endpoints:
            with grpc.insecure_channel(addr, options=CHANNEL_OPTIONS) as channel:
                try:
                    s = cluster_pb2_grpc.ClusterStub(channel).Status(
                        cluster_pb2.StatusRequest(), timeout=5.0
                    )
                    out.append(
                        {"node_id": s.node_id, "applied_index": s.applied_index, "digest": s.digest}
                    )
                except grpc.RpcError:
                    out.append({"node_id": addr, "applied_index": None, "digest": None})
        digests = {o["digest"] for o in out}
        if (len(digests) == 1 and None not in digests) or time.monotonic() > deadline:
            return out
        time.sleep(0.5)


class LeaderSampler:
    """Records every node's role and term about every `period_s` into a JSON-lines file.

    A line is {"t": monotonic s, "nodes": {node_id: {"role", "term"}}}; role is
    leader, follower, candidate, unknown or down (no answer within the period)."""

    def __init__(self, nodes: Sequence[tuple[str, str]], path: Path, period_s: float = 0.3) -> None:
        self.period_s = period_s
        # Reconnects at most 1 s apart: a node down for minutes (a spare, a removed member)
        # must not look down for half a minute after it is back (gRPC's backoff).
        self._channels = [
            (name, grpc.insecure_channel(addr, options=CHANNEL_OPTIONS)) for name, addr in nodes
        ]
        self._stubs = [(name, cluster_pb2_grpc.ClusterStub(ch)) for name, ch in self._channels]
        self._file = path.open("w", encoding="utf-8")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="leader-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling and close the file (idempotent)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if not self._file.closed:
            self._file.close()
        for _, channel in self._channels:
            channel.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self._file.write(json.dumps(self.sample(), separators=(",", ":")) + "\n")
            self._file.flush()
            self._stop.wait(max(self.period_s - (time.monotonic() - started), 0.05))

    def sample(self) -> dict[str, Any]:
        """One sample: every node asked at once, so a paused node costs one period, not N."""
        t = time.monotonic()
        futures = [
            (name, stub.Status.future(cluster_pb2.StatusRequest(), timeout=self.period_s))
            for name, stub in self._stubs
        ]
        nodes: dict[str, dict[str, Any]] = {}
        for name, future in futures:
            try:
                status = future.result()
                role = cluster_pb2.Role.Name(status.role).lower().removeprefix("role_")
                nodes[name] = {"role": role, "term": status.term}
            except grpc.RpcError:
                nodes[name] = {"role": "down", "term": None}
        return {"t": t, "nodes": nodes}


def _wait_ready(cluster: LocalCluster) -> bool:
    try:
        cluster.wait_until_ready(timeout=60)
        return True
    except TimeoutError as exc:
        _log(f"cluster not ready after the final heal: {exc}")
        return False


def _final_reads(
    endpoints: tuple[str, ...], config: WorkloadConfig, workers: Sequence[Worker]
) -> dict[str, str | None] | None:
    """Linearizable values of every key the run touched (None if they cannot be read)."""
    keys = config.register_key_names() + config.counter_key_names()
    keys += [k for w in workers for k in w.session_keys]
    # Redis's database 0 is the SDK's keyspace: these are read back through gRPC.
    keys += config.redis_register_key_names()
    values: dict[str, str | None] = {}
    with Client(list(endpoints), timeout=10.0) as client:
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            for attempt in range(5):
                try:
                    got = client.mget(chunk)
                    break
                except RaftcacheError as exc:
                    _log(f"final read attempt {attempt + 1} failed: {exc!r}")
                    time.sleep(1.0)
            else:
                return None
            pairs = zip(chunk, got, strict=True)
            values.update((k, None if v is None else v.decode()) for k, v in pairs)
    return values


def _final_lists(endpoints: tuple[str, ...], keys: Sequence[str]) -> dict[str, list[str]] | None:
    """Every list the redis-appends workers used, read linearizably through the SDK."""
    lists: dict[str, list[str]] = {}
    with Client(list(endpoints), timeout=10.0) as client:
        for key in keys:
            for attempt in range(5):
                try:
                    lists[key] = [v.decode() for v in client.lrange(key, 0, -1)]
                    break
                except RaftcacheError as exc:
                    _log(f"final read of list {key} attempt {attempt + 1} failed: {exc!r}")
                    time.sleep(1.0)
            else:
                return None
    return lists


def _final_sets(endpoints: tuple[str, ...], keys: Sequence[str]) -> dict[str, list[str]] | None:
    """Every set the redis-sets workers used, read linearizably through the SDK."""
    sets: dict[str, list[str]] = {}
    with Client(list(endpoints), timeout=10.0) as client:
        for key in keys:
            for attempt in range(5):
                try:
                    sets[key] = sorted(v.decode() for v in client.smembers(key))
                    break
                except RaftcacheError as exc:
                    _log(f"final read of set {key} attempt {attempt + 1} failed: {exc!r}")
                    time.sleep(1.0)
            else:
                return None
    return sets


def _statuses(cluster: LocalCluster) -> list[dict[str, Any]]:
    """Every node's node_id, applied_index and digest once they agree (or as they are after 60 s).

    A node that does not answer is listed with applied_index and digest None."""
    try:
        converged = cluster.wait_converged(timeout=60)
        return [
            {"node_id": s.node_id, "applied_index": s.applied_index, "digest": s.digest}
            for s in converged
        ]
    except TimeoutError as exc:
        _log(str(exc))
    out: list[dict[str, Any]] = []
    for i, node in enumerate(cluster.nodes):
        if not node.member:  # a spare, or a member the nemesis removed (it is stopped)
            continue
        s = cluster.status(i, timeout=5.0)
        out.append(
            {"node_id": node.node_id, "applied_index": None, "digest": None}
            if s is None
            else {"node_id": s.node_id, "applied_index": s.applied_index, "digest": s.digest}
        )
    return out


def _check(
    ops: list[Op],
    faults: list[dict[str, Any]],
    final: dict[str, str | None] | None,
    final_lists: dict[str, list[str]] | None,
    statuses: list[dict[str, Any]],
    budget: float,
    final_sets: dict[str, list[str]] | None = None,
) -> list[Verdict]:
    by_workload: dict[str, list[Op]] = {}
    for op in ops:
        by_workload.setdefault(workload_of(op.key), []).append(op)
    registers = [
        op
        for w in ("registers", "redis-registers", "mc-registers")
        for op in by_workload.get(w, [])
    ]
    counters = by_workload.get("counters", [])
    appends = by_workload.get("redis-appends", [])
    queue = by_workload.get("redis-queue", [])
    verdicts = [checkers.check_linearizable_registers(registers, budget)]
    if final is None:
        verdicts.append(_unknown("final-reads", "the final values could not be read"))
    else:
        counts = {k: int(v) if v is not None else 0 for k, v in final.items() if k[:2] == "c:"}
        verdicts.append(checkers.check_counters(counters, final_values=counts))
        values = [
            o
            for o in ops
            if o.op not in ("append", "read", "enqueue", "dequeue", "sadd", "smembers")
            and workload_of(o.key) != "ttl-sessions"
        ]
        verdicts.append(checkers.check_no_lost_writes(values, final))
    if appends:
        verdicts.append(checkers.check_appends(appends, final_lists))
    if by_workload.get("redis-sets"):
        verdicts.append(checkers.check_sets(by_workload["redis-sets"], final_sets))
    if queue:
        queues = None if final_lists is None else {k: final_lists[k] for k in QUEUE_KEYS}
        verdicts.append(checkers.check_queue(queue, queues))
    if by_workload.get("ttl-sessions"):
        verdicts.append(checkers.check_ttl(by_workload["ttl-sessions"], faults))
    verdicts.append(checkers.check_convergence(statuses))
    verdicts.append(checkers.check_unavailability(ops, faults, protocol_of))
    return verdicts


def protocol_of(key: str) -> str:
    """Which door a key's workload uses: grpc (the SDK), redis or memcached."""
    workload = workload_of(key)
    if workload in GRPC_WORKLOADS:
        return "grpc"
    return "memcached" if workload in MEMCACHED_WORKLOADS else "redis"


def _unknown(name: str, message: str) -> Verdict:
    return Verdict(name=name, valid="unknown", details={}, message=message)


# A CRITICAL line in the console or JSON format (structlog), or from stdlib logging's default.
_CRITICAL = re.compile(r'\[critical\s*\]|"level": "critical"|^CRITICAL\b', re.MULTILINE)


def _log_verdict(logs: dict[str, str]) -> Verdict:
    """No node logged anything at CRITICAL: every such line means a node stopped or its log
    diverged (consensus/log_matching.py keeps pysyncobj's truncation warning for that)."""
    found = {
        node: lines
        for node, text in logs.items()
        if (lines := [line for line in text.splitlines() if _CRITICAL.search(line)])
    }
    message = (
        "; ".join(f"{node}: {lines[0][:300]}" for node, lines in found.items())
        or "no node logged a CRITICAL line"
    )
    return Verdict(name="logs", valid=not found, details={"critical": found}, message=message)


def _run_verdict(ready: bool, worker_errors: list[str], crashes: list[dict[str, Any]]) -> Verdict:
    """The run itself: no node exited on its own, no worker died, the cluster came back."""
    problems = [f"node {c['node_id']} exited by itself (code {c['exit_code']})" for c in crashes]
    problems += worker_errors
    if not ready:
        problems.append("the cluster was not ready within 60 s of the final heal")
    details = {"crashes": crashes, "worker_errors": worker_errors, "ready": ready}
    message = "; ".join(problems) or "no node crashed, every worker ran to the end"
    return Verdict(name="run", valid=not problems, details=details, message=message)


def _summary(
    seed: int,
    args: argparse.Namespace,
    elapsed: float,
    ops: list[Op],
    faults: list[dict[str, Any]],
    crashes: list[dict[str, Any]],
    verdicts: list[Verdict],
    statuses: list[dict[str, Any]],
) -> dict[str, Any]:
    by_workload: dict[str, Counter[str]] = {}
    for op in ops:
        by_workload.setdefault(workload_of(op.key), Counter())[op.outcome] += 1
    unavailability = next((v.details for v in verdicts if v.name == "unavailability"), None)
    return {
        "seed": seed,
        "network": getattr(args, "network", "kubernetes" if args.kubernetes else None),
        "argv": vars(args),
        "elapsed_s": round(elapsed, 2),
        "ops": {w: dict(c) for w, c in sorted(by_workload.items())},
        "ops_total": dict(Counter(o.outcome for o in ops)),
        "faults": faults,
        "fault_kinds": dict(Counter(f["kind"] for f in faults)),
        "crashes": crashes,
        "unavailability": unavailability,
        "statuses": statuses,
        "verdicts": [
            {"name": v.name, "valid": v.valid, "message": v.message, "details": v.details}
            for v in verdicts
        ],
    }


def _membership_summary(nemesis: Nemesis | K8sNemesis | None) -> dict[str, Any] | None:
    """The membership and leadership changes the nemesis tried, counted by op and outcome,
    and the members at the end (None without a membership-capable nemesis)."""
    if not isinstance(nemesis, Nemesis):
        return None
    changes = list(nemesis.changes)
    return {
        "changes": changes,
        "counts": dict(Counter(f"{c['op']} {c['outcome']}" for c in changes)),
        "members_at_end": [nemesis.cluster.nodes[i].node_id for i in nemesis.members()],
    }


def _fault_table(unavailability: dict[str, Any] | None) -> list[str]:
    """Per fault kind: the longest write gap and the p99 latency of ok ops under it."""
    gaps = (unavailability or {}).get("by_fault", {})
    lines = []
    for kind, g in sorted(gaps.items()):
        p99 = g.get("p99_latency_s")
        p99_text = "-" if p99 is None else f"{p99 * 1000:.0f} ms"
        by_protocol = ", ".join(f"{p} {v:.2f}" for p, v in g.get("by_protocol", {}).items())
        lines.append(
            f"    {kind:<18} x{g['occurrences']:<3} longest write gap {g['longest_gap_s']:6.2f} s"
            f"   p99 latency {p99_text:>8}  ({g.get('ops', 0)} ok ops)"
            + (f"   per protocol: {by_protocol}" if by_protocol else "")
        )
    for label, key in (("under any fault", "under_faults"), ("calm", "calm")):
        stats = (unavailability or {}).get(key) or {}
        if stats.get("p99_latency_s") is not None:
            lines.append(
                f"    {label:<23} p99 latency {stats['p99_latency_s'] * 1000:.0f} ms"
                f"  ({stats['ops']} ok ops)"
            )
    return lines


def _report(summary: dict[str, Any], verdicts: list[Verdict], seed: int, out: Path) -> int:
    print(f"\nraftcache-chaos: {summary['elapsed_s']} s, seed {seed}")
    print(f"  network: {summary['network']}")
    print(f"  faults: {summary['fault_kinds'] or 'none'}")
    for workload, counts in summary["ops"].items():
        print(f"  {workload:<16} " + "  ".join(f"{k} {n}" for k, n in sorted(counts.items())))
    table = _fault_table(summary["unavailability"])
    if table:
        print("  per fault kind:")
        print("\n".join(table))
    membership = summary.get("membership")
    if membership and membership["changes"]:
        counts = ", ".join(f"{k} {n}" for k, n in sorted(membership["counts"].items()))
        print(f"  membership changes: {counts}; members at the end: {membership['members_at_end']}")
    for v in verdicts:
        mark = "PASS" if v.valid is True else "FAIL" if v.valid is False else "????"
        print(f"  {mark}  {v.name:<16} {v.message}")
    failed = [v.name for v in verdicts if v.valid is False]
    undecided = [v.name for v in verdicts if v.valid not in (True, False)]
    print(f"  report: {summary['report']}")
    details = f"history, faults and summary in {out}/; rerun with --seed {seed}"
    if failed:
        print(f"FAILED: {', '.join(failed)} ({details})")
        return EXIT_FAILED
    if undecided:
        print(
            f"UNDECIDED: {', '.join(undecided)} could not be checked "
            f"(e.g. the search ran out of time: raise --check-budget or shorten --duration; "
            f"{details})"
        )
        return EXIT_UNKNOWN
    print(f"OK: every check passed ({details})")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
