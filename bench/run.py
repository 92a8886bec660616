"""`python -m bench.run --out bench-results`: run the benchmarks, write bench.json + bench.md.

Sections (all but memcached by default; pick with --only):
  throughput  Set / Get LINEARIZABLE / Get STALE at 1 and 64 clients
  failover    SIGKILL the leader under steady writes, time to the first write on the new one
  snapshot    forced log compaction at 1M keys under steady writes: tick gap, leader change
  catchup     a follower killed past a compaction and restarted: seconds until it caught up
              from the streamed snapshot, the leader's CPU, tick gaps (random and JSON
              values; bench/catchup.py)
  sdk         AsyncClient vs raw gRPC stubs at 64 concurrent callers
  typed       typed values (hashes, sorted sets, ...) through the SDK
  redis       redis-benchmark against raftcache's RESP port, Redis 7 (primary + 2 replicas)
              and etcd 3.4 (3 members) in one run, the issue-10 targets as ratios, and a
              py-spy profile of the leader during SET at 64 clients (profile-redis.txt),
              then SET and SET -P16 with the nodes pinned by role (--cpu-affinity's way)
              and unpinned again;
              installs redis-server, redis-tools, etcd-server, etcd-client if missing
  peers       etcd, raftcache (raw gRPC, SDK, RESP, memcached), Redis and memcached at 1 and
              64 clients, one after the other: peers.json, peers.md (ratios to etcd, load
              average per row) and peers.svg; installs the Debian packages it needs
              (`make bench-peers` runs only this section)
  memcached   the peers section's run for issue 12: etcd, raftcache's memcached port (set,
              linearizable get on the leader, stale gets on followers started with
              --memcached-stale-reads) and memcached 1.6 at 1 and 64 clients, with the
              issue's targets as ratios to etcd: memcached.json, memcached.md, memcached.svg
              (not in the default run: peers measures the same rows and prints the table);
              its memcached rows, like peers', are driven by bench/mcload.c, built with cc
              at run time (--memcached-generator memgen: the Python generator)
  apps        redis-py's Lock release (SET NX PX + EVALSHA) and BRPOP/LPUSH ping-pong at 64
              connections against raftcache's leader and Redis 7's primary in one run, with
              ratios (bench/apps_section.py); installs redis-server if missing
  security    what users/permissions and TLS cost: SET and GET at 64 clients over RESP and
              gRPC on three clusters (plain, --users-file with a restricted user, TLS),
              interleaved and repeated, ratios to plain against issue 14's targets:
              security.json, security.md (bench/security_section.py)
--profile adds a py-spy profile of the leader during an extra 64-client Set run
(bench-results/profile.txt; needs ptrace permission, e.g. root).
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import (
    apps_section,
    catchup,
    failover,
    paired,
    peers_report,
    peers_section,
    redis_section,
    report,
    sdk,
    security_section,
    snapshot,
    throughput,
    typed,
)
from bench.common import load_snapshot, log, machine_info

SECTIONS = (
    "throughput",
    "failover",
    "snapshot",
    "catchup",
    "sdk",
    "typed",
    "redis",
    "peers",
    "memcached",
    "apps",
    "security",
)
DEFAULT_SECTIONS = tuple(s for s in SECTIONS if s != "memcached")
"""Every section but `memcached`: the peers section measures the same rows (and more) and
prints the same issue-12 table, so a default run does not measure them twice."""


def _sections(text: str) -> list[str]:
    chosen = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"--only: {','.join(unknown) or text!r} is not a section; "
            f"choose from {','.join(SECTIONS)}"
        )
    return [s for s in SECTIONS if s in chosen]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", default="bench-results", help="output directory")
    parser.add_argument(
        "--only",
        type=_sections,
        default=list(DEFAULT_SECTIONS),
        help=f"comma-separated sections: {','.join(SECTIONS)} (default: all but memcached, "
        "whose rows and targets the peers section includes)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="py-spy the leader during an extra 64-client Set run"
    )
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per row")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per row")
    parser.add_argument("--keys", type=int, default=10_000, help="key space of the throughput rows")
    parser.add_argument(
        "--snapshot-keys", type=int, default=1_000_000, help="keys loaded before the snapshot test"
    )
    parser.add_argument(
        "--snapshot-clean-window",
        type=float,
        default=62.0,
        help="seconds of steady writes before each snapshot (must exceed Status's 60-s "
        "max_tick_gap window for a clean baseline; lower only for smoke tests)",
    )
    parser.add_argument("--failover-trials", type=int, default=5)
    parser.add_argument(
        "--catchup-trials", type=int, default=3, help="trials per value kind (catchup section)"
    )
    parser.add_argument(
        "--catchup-keys", type=int, default=100_000, help="keys of 1,000 bytes (catchup section)"
    )
    parser.add_argument(
        "--redis-max-staleness-ms",
        type=int,
        default=1000,
        help="the nodes' --redis-max-staleness-ms in the redis section (READONLY reads)",
    )
    parser.add_argument(
        "--redis-systems",
        default="raftcache,redis,etcd",
        help="which systems the redis section runs (the targets need all three)",
    )
    parser.add_argument(
        "--redis-no-profile",
        action="store_true",
        help="skip the redis section's py-spy run on the leader",
    )
    parser.add_argument(
        "--peers-seconds",
        type=float,
        default=5.0,
        help="measured seconds per row of the peers section (44 rows or so) and the memcached one",
    )
    parser.add_argument(
        "--peers-warmup",
        type=float,
        default=1.0,
        help="warm-up seconds per peers (and memcached) row",
    )
    parser.add_argument(
        "--memcached-generator",
        choices=peers_section.MEMCACHED_GENERATORS,
        default="mcload",
        help="what drives the memcached rows (peers and memcached sections): mcload "
        "(bench/mcload.c, built with cc at run time) or memgen (bench/memgen.py, Python)",
    )
    parser.add_argument(
        "--memcached-pairs",
        type=int,
        default=3,
        help="the memcached section's targets again in pairs (etcd and raftcache both up, "
        "back to back, order alternating) this many times; the verdict is on the median "
        "of the paired ratios (0: one pass only)",
    )
    parser.add_argument(
        "--peers-systems",
        default=",".join(peers_section.SYSTEMS),
        help="which systems the peers section runs (the ratios need etcd)",
    )
    parser.add_argument(
        "--apps-seconds", type=float, default=5.0, help="measured seconds per apps row"
    )
    parser.add_argument(
        "--apps-warmup", type=float, default=1.0, help="warm-up seconds per apps row"
    )
    parser.add_argument(
        "--apps-clients",
        type=int,
        default=apps_section.CLIENTS,
        help="connections per apps row (even: ping-pong runs clients/2 pairs)",
    )
    parser.add_argument(
        "--security-seconds",
        type=float,
        default=5.0,
        help="measured seconds per security run (4 cells x 3 configurations x reps runs)",
    )
    parser.add_argument(
        "--security-warmup", type=float, default=1.0, help="warm-up seconds per security run"
    )
    parser.add_argument(
        "--security-reps",
        type=int,
        default=security_section.REPS,
        help="runs per (configuration, protocol, op) cell, configurations alternated",
    )
    parser.add_argument(
        "--security-grpc-generator",
        choices=security_section.GRPC_GENERATORS,
        default="h2load",
        help="what drives the security section's gRPC cells: h2load (C, the default) or "
        "bench.loadgen's grpc.aio processes (which pay the credential's cost on the same cores)",
    )
    parser.add_argument(
        "--typed-members",
        type=int,
        default=1_000_000,
        help="members of the sorted set the typed section reads ranges from",
    )
    parser.add_argument(
        "--node-args",
        default="",
        help="extra raftcache-node flags for every cluster, e.g. "
        "'--max-inflight-batches 2 --durability memory'",
    )
    parser.add_argument(
        "--work-dir", default=None, help="where cluster data dirs go (default: a fresh temp dir)"
    )
    parser.add_argument(
        "--keep-data",
        action="store_true",
        help="keep cluster data dirs and node logs (always kept on failure)",
    )
    return parser


def _clean(value: Any) -> Any:
    """JSON without NaN/inf (they become null)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _write(out: Path, results: dict[str, Any]) -> None:
    (out / "bench.json").write_text(json.dumps(_clean(results), indent=2) + "\n")
    text = report.render(results)
    for name, render in (
        ("peers", peers_report.markdown),
        ("memcached", peers_report.markdown),
        ("apps", apps_section.markdown),
        ("catchup", catchup.markdown),
        ("security", security_section.markdown),
    ):
        section = results.get(name)
        if section is None:
            continue
        if "error" in section:  # as report.render shows the other sections' failures
            text += f"\n## {name}: FAILED\n\n```\n{section['error']}\n```\n"
        else:
            text += "\n" + render(section)
    (out / "bench.md").write_text(text)


def _terminate(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _paired(work_dir: Path, node_args: Sequence[str], args: argparse.Namespace) -> dict[str, Any]:
    """The memcached section's paired targets (bench/paired.py), or why they failed."""
    try:
        runner = peers_section.memcached_runner(args.memcached_generator, work_dir)
        return paired.etcd_and_memcached_port(
            work_dir,
            node_args,
            reps=args.memcached_pairs,
            keys=args.keys,
            warmup=args.peers_warmup,
            seconds=args.peers_seconds,
            mc_runner=runner,
        )
    except Exception:
        error = traceback.format_exc()
        log(f"memcached: the paired targets failed:\n{error}")
        return {"error": error}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)  # run every `finally`: clusters get closed
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work_dir = (
        Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="raftcache-bench-"))
    )
    work_dir.mkdir(parents=True, exist_ok=True)
    node_args = shlex.split(args.node_args)
    results: dict[str, Any] = {
        "meta": {
            "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
            "command": " ".join(
                [
                    Path(sys.executable).name,
                    "-m",
                    "bench.run",
                    *(argv if argv is not None else sys.argv[1:]),
                ]
            ),
            "sections": args.only,
            "profile": args.profile,
            "options": vars(args) | {"only": args.only},
            "machine": machine_info(),
            "load": [load_snapshot("before the run")],
        }
    }
    log(f"machine load before the run: {results['meta']['load'][0]['uptime']}")
    failed = False
    try:
        for name in args.only:
            log(f"=== {name} ===")
            started = time.monotonic()
            try:
                if name == "throughput":
                    section = throughput.run(
                        work_dir,
                        out,
                        node_args,
                        keys=args.keys,
                        warmup=args.warmup,
                        duration=args.duration,
                        profile=args.profile,
                        keep_data=args.keep_data,
                    )
                elif name == "typed":
                    section = typed.run(
                        work_dir,
                        node_args,
                        members=args.typed_members,
                        seconds=args.duration / 2,
                        keep_data=args.keep_data,
                    )
                elif name == "redis":
                    section = redis_section.run(
                        work_dir,
                        out,
                        node_args,
                        keys=args.keys,
                        warmup=args.warmup,
                        duration=args.duration,
                        staleness_ms=args.redis_max_staleness_ms,
                        profile=not args.redis_no_profile,
                        systems=[x.strip() for x in args.redis_systems.split(",") if x.strip()],
                        keep_data=args.keep_data,
                    )
                    failed = failed or bool(section.get("failed_blocks"))
                elif name in ("peers", "memcached"):
                    # the memcached section: the peers run with raftcache's memcached rows
                    alone = name == "memcached"
                    section = peers_section.run(
                        work_dir,
                        out,
                        node_args,
                        keys=args.keys,
                        warmup=args.peers_warmup,
                        seconds=args.peers_seconds,
                        systems=peers_section.MEMCACHED_SYSTEMS
                        if alone
                        else [x.strip() for x in args.peers_systems.split(",") if x.strip()],
                        keep_data=args.keep_data,
                        interfaces=("memcached",) if alone else peers_section.INTERFACES,
                        name=name,
                        memcached_generator=args.memcached_generator,
                    )
                    if alone and args.memcached_pairs > 0:
                        section["paired"] = _paired(work_dir, node_args, args)
                        peers_section.write_outputs(out, section, name)
                        failed = failed or "error" in section["paired"]
                    failed = failed or bool(section.get("failed"))
                elif name == "apps":
                    section = apps_section.run(
                        work_dir,
                        node_args,
                        clients=args.apps_clients,
                        warmup=args.apps_warmup,
                        seconds=args.apps_seconds,
                        keep_data=args.keep_data,
                    )
                    failed = failed or bool(section.get("failed"))
                elif name == "security":
                    section = security_section.run(
                        work_dir,
                        out,
                        node_args,
                        keys=args.keys,
                        warmup=args.security_warmup,
                        seconds=args.security_seconds,
                        reps=args.security_reps,
                        keep_data=args.keep_data,
                        grpc_generator=args.security_grpc_generator,
                    )
                    failed = failed or bool(section.get("failed"))
                elif name == "sdk":
                    section = sdk.run(work_dir, node_args, keep_data=args.keep_data)
                elif name == "catchup":
                    section = catchup.run(
                        work_dir,
                        node_args,
                        trials=args.catchup_trials,
                        keys=args.catchup_keys,
                        keep_data=args.keep_data,
                    )
                    failed = failed or bool(section.get("failed"))
                elif name == "failover":
                    section = failover.run(
                        work_dir, node_args, trials=args.failover_trials, keep_data=args.keep_data
                    )
                else:
                    section = snapshot.run(
                        work_dir,
                        node_args,
                        keys=args.snapshot_keys,
                        clean_window_s=args.snapshot_clean_window,
                        out_dir=out,
                        profile=args.profile,
                        keep_data=args.keep_data,
                    )
            except Exception:
                failed = True
                section = {"error": traceback.format_exc()}
                log(f"{name} failed:\n{section['error']}")
            section["elapsed_s"] = round(time.monotonic() - started, 1)
            results[name] = section
            _write(out, results)
    finally:
        results["meta"]["load"].append(load_snapshot("after the run"))
        results["meta"]["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %z")
        end_commit = machine_info()["git_commit"]
        results["meta"]["git_commit_at_end"] = end_commit
        if end_commit != results["meta"]["machine"]["git_commit"]:
            log("WARNING: the repository's HEAD changed during the run")
        _write(out, results)
        if not args.work_dir and not args.keep_data and not failed:
            shutil.rmtree(work_dir, ignore_errors=True)
    log(f"wrote {out / 'bench.json'} and {out / 'bench.md'}")
    print((out / "bench.md").read_text())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
