"""`make redis-compat`: Redis 7.0.15's own test suite against a real 3-node raftcache cluster.

Fetches the suite once (suite_source.py), starts a LocalCluster with Redis ports, and runs
`runtest` in external mode against the leader's Redis port, one process per unit so a unit
that stops early does not take the others with it. A test that hangs is reported as failed
and the unit is run again without it. Prints passed / failed / skipped per unit and in total,
every failure, the reason of every skip, and writes the same as JSON (summary.json).

Exit status: 0, or 1 below --min-pass-rate / --min-passed, or 2 when the harness could not
do its job (no suite, no cluster, runtest unusable, a unit that could not start at all).

    python -m tests.compat.redis_suite [--units type/incr,protocol] [--target HOST:PORT]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.compat import skip_list
from tests.compat.runtest_output import Failure, UnitResult, parse
from tests.compat.suite_source import REDIS_VERSION, FetchError, default_cache_dir, ensure_suite

# The units of issue 10. `info` is all `external:skip` (it reports 0 tests run), so the INFO
# command's own unit, info-command, runs beside it.
DEFAULT_UNITS = (
    "type/string", "type/incr", "keyspace", "expire", "type/hash", "type/set", "type/zset",
    "type/list", "multi", "pubsub", "protocol", "info", "info-command",
)  # fmt: skip
# External mode (tests/README.md): no SYNC, no DEBUG, one database, no encoding or digest
# checks. --durable: a Tcl error inside a test (an error reply, a dropped connection) counts
# as that test's failure instead of ending the whole run. In external mode runtest starts one
# client whatever --clients says.
RUNTEST_FLAGS = (
    "--singledb", "--ignore-encoding", "--ignore-digest", "--durable", "--clients", "1",
    "--tags", "-needs:repl", "--tags", "-needs:debug", "--tags", "-needs:config-maxmemory",
)  # fmt: skip
# runtest --timeout: seconds without progress before runtest gives up on a test. A test that
# waits for a reply that never comes hangs until then, so units of quick tests get a short
# one; units with fuzzers that take over a minute here get more.
DEFAULT_TEST_TIMEOUT_S = 30
UNIT_TEST_TIMEOUT_S = {
    "type/string": 240, "type/hash": 240, "type/set": 300, "type/zset": 300, "type/list": 120,
}  # fmt: skip

Log = Callable[[str], None]
_UNKNOWN_COMMAND = re.compile(r"ERR unknown command '([^']+)'")


class HarnessError(RuntimeError):
    """The harness could not run the suite; nothing about compatibility was learned."""


@dataclass(frozen=True)
class RunConfig:
    suite_dir: Path
    out_dir: Path  # runtest logs and the skip file runtest reads
    units: Sequence[str] = DEFAULT_UNITS
    skips: Sequence[skip_list.Skip] = ()
    test_timeout_s: int | None = None  # None: UNIT_TEST_TIMEOUT_S, else DEFAULT_TEST_TIMEOUT_S
    unit_timeout_s: int = 1800  # one runtest process
    unit_budget_s: int = 900  # no new rerun (without the tests that hung) after this long
    multidb: bool = False  # drop --singledb (the suite SELECTs db 9 and runs SELECT tests)
    election_reruns: int = 1  # runs again of a unit in which tests got CLUSTERDOWN

    def test_timeout(self, unit: str) -> int:
        if self.test_timeout_s is not None:
            return self.test_timeout_s
        return UNIT_TEST_TIMEOUT_S.get(unit, DEFAULT_TEST_TIMEOUT_S)


@dataclass
class Target:
    """Where runtest connects; `address()` is asked again before each unit (leader moves)."""

    address: Callable[[], tuple[str, int]]
    describe: str
    health: Callable[[], list[str]] = lambda: []  # problems seen since the last call


@dataclass
class Report:
    results: list[UnitResult]
    skips: Sequence[skip_list.Skip]
    target: str
    seconds: float
    events: list[str] = field(default_factory=list)

    def totals(self) -> dict[str, int]:
        return {
            "passed": sum(len(r.passed) for r in self.results),
            "failed": sum(len(r.failed) for r in self.results),
            "skipped": sum(len(r.skipped) + _named_ignores(r) for r in self.results),
            "ignored_blocks": sum(_block_ignores(r) for r in self.results),
        }

    def pass_rate(self) -> float:
        t = self.totals()
        ran = t["passed"] + t["failed"]
        return 100.0 * t["passed"] / ran if ran else 0.0

    def missing_commands(self) -> Counter[str]:
        """Commands the server called unknown, by how many failing tests sent them."""
        names: Counter[str] = Counter()
        for r in self.results:
            for f in r.failed:
                found = _UNKNOWN_COMMAND.search(f.message) or _UNKNOWN_COMMAND.search(f.detail)
                if found:
                    names[found.group(1).lower()] += 1
        return names

    def clusterdown_failures(self) -> int:
        return sum(f.message.startswith("CLUSTERDOWN") for r in self.results for f in r.failed)

    def could_not_start(self) -> list[UnitResult]:
        return [r for r in self.results if r.aborted is not None and not r.started]

    def to_json(self) -> dict[str, Any]:
        return {
            "suite": f"redis {REDIS_VERSION} tests (Debian source package, upstream tarball)",
            "target": self.target,
            "runtest_flags": list(RUNTEST_FLAGS),
            "seconds": round(self.seconds, 1),
            "totals": self.totals(),
            "pass_rate_percent": round(self.pass_rate(), 2),
            "clusterdown_failures": self.clusterdown_failures(),
            "unknown_commands": dict(self.missing_commands().most_common()),
            "events": self.events,
            "skip_reasons": dict(self._skip_reasons().most_common()),
            "units": {r.unit: self._unit_json(r) for r in self.results},
        }

    def _unit_json(self, r: UnitResult) -> dict[str, Any]:
        return {
            "passed": len(r.passed),
            "failed": len(r.failed),
            "skipped": len(r.skipped) + _named_ignores(r),
            "ignored_blocks": _block_ignores(r),
            "aborted": r.aborted,
            "could_not_start": r.aborted is not None and not r.started,
            "failures": [{"name": f.name, "message": f.message, "detail": f.detail[:4000]}
                         for f in r.failed],
            "skips": [{"name": n, "reason": skip_list.reason_for(n, self.skips)}
                      for n in r.skipped]
            + [{"name": i.name, "reason": _tag_reason(i.why)} for i in r.ignored if i.name],
            "ignored_blocks_why": [_tag_reason(i.why) for i in r.ignored if i.name is None],
            "passed_tests": r.passed,
        }  # fmt: skip

    def _skip_reasons(self) -> Counter[str]:
        reasons: Counter[str] = Counter()
        for r in self.results:
            reasons.update(skip_list.reason_for(n, self.skips) for n in r.skipped)
            reasons.update(_tag_reason(i.why) for i in r.ignored if i.name)
        return reasons

    def lines(self) -> Iterator[str]:
        """The human report: a table, every failure, every skip reason, the totals."""
        yield f"\nRedis {REDIS_VERSION} test suite against {self.target}"
        yield f"{'unit':<16}{'passed':>8}{'failed':>8}{'skipped':>9}  notes"
        for r in self.results:
            notes = []
            if r.aborted:
                notes.append(f"stopped early: {r.aborted.splitlines()[0][:90]}")
            if _block_ignores(r):
                notes.append(f"{_block_ignores(r)} block(s) not run by tag")
            yield (
                f"{r.unit:<16}{len(r.passed):>8}{len(r.failed):>8}"
                f"{len(r.skipped) + _named_ignores(r):>9}  {'; '.join(notes)}"
            )
        t = self.totals()
        yield f"{'total':<16}{t['passed']:>8}{t['failed']:>8}{t['skipped']:>9}"
        failures = [(r.unit, f) for r in self.results for f in r.failed]
        if failures:
            yield f"\nfailures ({len(failures)}):"
            for unit, f in failures:
                yield f"  {unit}: {f.name} -- {f.message[:160]}"
        reasons = self._skip_reasons()
        if reasons:
            yield "\nskipped, by reason:"
            for reason, count in reasons.most_common():
                yield f"  {count:4d}  {reason}"
        missing = self.missing_commands()
        if missing:
            listed = ", ".join(f"{name} ({count})" for name, count in missing.most_common())
            yield f"\nunknown commands, by failing tests: {listed}"
        clusterdown = self.clusterdown_failures()
        if clusterdown:
            yield (
                f"\n{clusterdown} of the failures answered CLUSTERDOWN: the cluster had no leader"
                " then (elections), which says nothing about that command"
            )
        for event in self.events:
            yield f"\ncluster: {event}"
        yield (
            f"\nredis-compat: {t['passed']} passed, {t['failed']} failed, {t['skipped']} skipped"
            f" ({self.pass_rate():.1f}% of the tests that ran passed; {self.seconds:.0f} s)"
        )


def _named_ignores(r: UnitResult) -> int:
    return sum(1 for i in r.ignored if i.name)


def _block_ignores(r: UnitResult) -> int:
    return sum(1 for i in r.ignored if i.name is None)


def _tag_reason(why: str) -> str:
    return f"{why}: {skip_list.TAG_REASONS.get(why, 'refused by runtest')}"


# -- running runtest ------------------------------------------------------------------------


def tclsh() -> str:
    for name in ("tclsh8.6", "tclsh8.7", "tclsh8.5", "tclsh"):
        path = shutil.which(name)
        if path:
            return path
    raise HarnessError("no tclsh on PATH: apt-get install tcl8.6")


def run_unit(config: RunConfig, target: Target, unit: str, log: Log = print) -> UnitResult:
    """One unit, rerun without each test that hangs (those count as failures)."""
    hung: list[str] = []
    started = time.monotonic()
    while True:
        host, port = target.address()
        output = _runtest(config, host, port, unit, hung)
        result = parse(unit, output)
        in_budget = time.monotonic() - started < config.unit_budget_s
        if result.hung_test and result.hung_test not in hung and in_budget:
            log(f"  {unit}: {result.hung_test!r} hung; running the unit again without it")
            hung.append(result.hung_test)
            continue
        break
    for name in hung:
        if name in result.skipped:
            result.skipped.remove(name)
        message = f"hung: no reply for {config.test_timeout(unit)} s (runtest --timeout)"
        result.failed.append(Failure(name, message, message))
    if result.hung_test in hung:  # the final run hung again, in a test already known to hang
        result.aborted = None
    if not result.done and result.aborted is None:
        tail = "\n".join(output.strip().splitlines()[-20:])
        result.aborted = f"runtest ended without finishing the unit:\n{tail}"
    return result


def _runtest(config: RunConfig, host: str, port: int, unit: str, hung: list[str]) -> str:
    skipfile = skip_list.write_runtest_file(list(config.skips), config.out_dir / "skipfile.txt")
    flags = [f for f in RUNTEST_FLAGS if not (config.multidb and f == "--singledb")]
    argv = [
        tclsh(), "tests/test_helper.tcl", "--host", host, "--port", str(port), *flags,
        "--timeout", str(config.test_timeout(unit)), "--skipfile", str(skipfile),
        *[arg for name in hung for arg in ("--skiptest", name)],
        "--single", f"unit/{unit}",
    ]  # fmt: skip
    env = {**os.environ, "TERM": "dumb"}  # no colours
    log_path = config.out_dir / f"{unit.replace('/', '_')}.log"
    with open(log_path, "w+") as out:
        # A session of its own: runtest forks a test client; on a timeout both must go.
        proc = subprocess.Popen(
            argv, cwd=config.suite_dir, stdout=out, stderr=subprocess.STDOUT, env=env,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        try:
            proc.wait(config.unit_timeout_s)
        except subprocess.TimeoutExpired:
            out.write(f"\n[exception]: harness: unit exceeded {config.unit_timeout_s} s\n")
        finally:
            _end_session(proc)
        out.seek(0)
        return out.read()


def _end_session(proc: subprocess.Popen[bytes]) -> None:
    """Stop runtest and the test client it forked (the process group this harness made)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            continue
    if proc.poll() is None:
        proc.wait()


def run_suite(config: RunConfig, target: Target, log: Log = print) -> Report:
    """Every unit in config.units against the target, in order."""
    started = time.monotonic()
    results: list[UnitResult] = []
    events: list[str] = []
    for unit in config.units:
        for attempt in range(1 + config.election_reruns):
            t0 = time.monotonic()
            log(f"redis-compat: unit/{unit} ...")
            try:
                result = run_unit(config, target, unit, log)
            except HarnessError as exc:
                result = UnitResult(unit, aborted=f"harness: {exc}")
            skipped = len(result.skipped) + _named_ignores(result)
            log(
                f"redis-compat: unit/{unit}: {len(result.passed)} passed,"
                f" {len(result.failed)} failed, {skipped} skipped ({time.monotonic() - t0:.0f} s)"
            )
            for problem in target.health():
                events.append(f"during unit/{unit}: {problem}")
                log(f"redis-compat: {events[-1]}")
            clusterdown = sum(f.message.startswith("CLUSTERDOWN") for f in result.failed)
            if not clusterdown or attempt == config.election_reruns:
                break
            # Redis never answers CLUSTERDOWN: these tests met an election, not a bug in the
            # command they test (the events say so); their unit runs again.
            events.append(f"unit/{unit}: {clusterdown} tests got CLUSTERDOWN; ran the unit again")
            log(f"redis-compat: {events[-1]}")
        results.append(result)
    return Report(results, config.skips, target.describe, time.monotonic() - started, events)


# -- the cluster ----------------------------------------------------------------------------


def wait_for_resp(host: str, port: int, timeout: float = 30.0) -> None:
    """Until the port answers PING with +PONG."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=2) as sock:
                sock.sendall(b"*1\r\n$4\r\nPING\r\n")
                reply = sock.recv(64)
            if reply.startswith(b"+PONG"):
                return
            last = repr(reply)
        except OSError as exc:
            last = str(exc)
        time.sleep(0.2)
    raise HarnessError(f"{host}:{port} did not answer PING within {timeout:.0f} s ({last})")


@contextmanager
def local_cluster(
    base_dir: Path, durability: str, node_args: Sequence[str], log: Log = print
) -> Iterator[Target]:
    """A 3-node raftcache cluster on loopback; the target follows its leader's Redis port."""
    from raftcache.chaos.local_cluster import LocalCluster

    cluster = LocalCluster(3, base_dir, durability=durability, extra_args=node_args)
    cluster.start()
    try:
        try:
            cluster.wait_until_ready(timeout=60)
        except TimeoutError as exc:
            raise HarnessError(f"{exc}\n{_log_tails(cluster.nodes)}") from exc
        reported: set[str] = set()

        def address() -> tuple[str, int]:
            leader = cluster.leader()
            if leader is None:
                leader = cluster.wait_for_leader(timeout=30)
            node = cluster.nodes[leader]
            wait_for_resp("127.0.0.1", node.redis_port)
            return "127.0.0.1", node.redis_port

        def term() -> int:
            statuses = [cluster.status(i) for i in range(len(cluster.nodes))]
            return max((st.term for st in statuses if st is not None), default=0)

        last_term = [0]

        def health() -> list[str]:
            problems = []
            now = term()
            if last_term[0] and now > last_term[0]:
                problems.append(
                    f"leader elections: term {last_term[0]} -> {now} (a test that got CLUSTERDOWN"
                    " or a dropped reply then saw a leader change, see the node logs)"
                )
            last_term[0] = max(now, last_term[0])
            for node in cluster.nodes:
                if not node.running and node.node_id not in reported:
                    reported.add(node.node_id)
                    code = node.process.returncode if node.process else None
                    problems.append(
                        f"node {node.node_id} exited ({code}); log {node.log_path}:\n"
                        + _log_tails([node])
                    )
            return problems

        address()
        last_term[0] = term()
        nodes = ", ".join(f"{n.node_id} redis {n.redis_addr}" for n in cluster.nodes)
        log(f"redis-compat: cluster up ({nodes}); logs in {base_dir}")
        yield Target(address, "a 3-node raftcache cluster (the leader's Redis port)", health)
    finally:
        cluster.close()
        for node in cluster.nodes:  # keep the logs for triage, not the journals
            shutil.rmtree(node.data_dir, ignore_errors=True)


def _log_tails(nodes: Sequence[Any], lines: int = 12) -> str:
    tails = []
    for node in nodes:
        text = node.log_path.read_text(errors="replace") if node.log_path.exists() else ""
        tails.append(f"--- {node.log_path}\n" + "\n".join(text.splitlines()[-lines:]))
    return "\n".join(tails)


@contextmanager
def external(address: str) -> Iterator[Target]:
    host, _, port = address.rpartition(":")
    wait_for_resp(host or "127.0.0.1", int(port))
    yield Target(lambda: (host or "127.0.0.1", int(port)), f"{address} (given with --target)")


# -- entry point ----------------------------------------------------------------------------


def new_run_dir(cache_dir: Path, keep: int = 5) -> Path:
    """A fresh directory for this run's logs; older runs beyond `keep` are removed."""
    runs = cache_dir / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    for old in sorted(runs.iterdir())[:-keep] if keep else []:
        shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-"), dir=runs))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.compat.redis_suite", description=__doc__)
    parser.add_argument("--units", default=",".join(DEFAULT_UNITS), help="comma-separated")
    parser.add_argument("--target", default="", help="HOST:PORT of a running server instead")
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="default: CACHE/summary.json")
    parser.add_argument("--skip-file", type=Path, default=skip_list.SKIP_FILE)
    parser.add_argument("--min-pass-rate", type=float, default=0.0, help="percent of tests run")
    parser.add_argument("--min-passed", type=int, default=0)
    parser.add_argument("--test-timeout", type=int, default=None, help="runtest --timeout")
    parser.add_argument("--unit-budget", type=int, default=900, help="seconds, for reruns")
    parser.add_argument("--durability", default="journal", choices=["journal", "memory"])
    parser.add_argument("--node-arg", action="append", default=[], help="extra node flag")
    parser.add_argument("--multidb", action="store_true", help="run without --singledb")
    parser.add_argument(
        "--election-reruns", type=int, default=1, help="reruns of a unit that met CLUSTERDOWN"
    )
    args = parser.parse_args(argv)

    cache_dir = (args.cache_dir or default_cache_dir()).resolve()
    try:
        skips = skip_list.load(args.skip_file)
        suite = ensure_suite(cache_dir)
        run_dir = new_run_dir(cache_dir)
        config = RunConfig(
            suite_dir=suite,
            out_dir=run_dir,
            units=[u.strip() for u in args.units.split(",") if u.strip()],
            skips=skips,
            test_timeout_s=args.test_timeout,
            unit_budget_s=args.unit_budget,
            multidb=args.multidb,
            election_reruns=args.election_reruns,
        )
        tclsh()
        target_cm = (
            external(args.target)
            if args.target
            else local_cluster(run_dir / "cluster", args.durability, args.node_arg)
        )
        with target_cm as target:
            report = run_suite(config, target)
    except (HarnessError, FetchError, skip_list.SkipListError) as exc:
        print(f"redis-compat: harness error: {exc}", file=sys.stderr)
        return 2
    for line in report.lines():
        print(line)
    summary = report.to_json()
    summary["logs"] = str(run_dir)
    for path in {args.json or cache_dir / "summary.json", run_dir / "summary.json"}:
        path.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"summary: {args.json or cache_dir / 'summary.json'}; runtest logs: {run_dir}")
    return _verdict(report, args.min_pass_rate, args.min_passed)


def _verdict(report: Report, min_rate: float, min_passed: int) -> int:
    stuck = report.could_not_start()
    if stuck:
        for r in stuck:
            first = (r.aborted or "").splitlines()[0]
            print(f"redis-compat: unit/{r.unit} could not start: {first}", file=sys.stderr)
        return 2
    short = []
    if report.pass_rate() < min_rate:
        short.append(f"{report.pass_rate():.1f}% passed, --min-pass-rate is {min_rate}%")
    if report.totals()["passed"] < min_passed:
        short.append(f"{report.totals()['passed']} passed, --min-passed is {min_passed}")
    if short:
        print(f"redis-compat: below the threshold: {'; '.join(short)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
