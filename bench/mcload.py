"""Drive bench/mcload.c, the C memcached load generator, as the peers section drives its
Python generators: the same LoadSpec in, the same MeasuredRun out (one generator process
per spec, on one shared window, the servers' and generators' CPU metered over it).

Why C: on this 2-core machine the generator shares the cores with the servers it loads.
bench/memgen.py spent ~14 us of CPU per request (most of it Python), mcload ~9 (nearly all
of it the kernel's loopback TCP, which any client pays), so the memcached rows measure the
servers more and the generator less. memgen stays for `--memcached-generator memgen` and
where no C compiler is installed; which one drove a row is in the section's output.

mcload is compiled at run time into the bench's work dir (gcc or cc, -O2), never kept:
nothing built goes into the repository.
"""

from __future__ import annotations

import array
import hashlib
import json
import math
import select
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from bench.common import CpuMeter
from bench.loadgen import LoadResult, LoadSpec, MeasuredRun

SOURCE = Path(__file__).with_name("mcload.c")
OPS = {"mc_get": "get", "mc_set": "set"}
READY_TIMEOUT_S = 30.0
START_DELAY_S = 0.05
"""From GO to the window's start: every process has read its GO line by then."""


def compiler() -> str | None:
    """The C compiler mcload is built with, or None."""
    for name in ("cc", "gcc"):
        path = shutil.which(name)
        if path:
            return path
    return None


def build(out_dir: Path) -> Path:
    """Compile mcload.c into out_dir (once per source text: the binary is named by its
    hash, so the memcached section's one-pass rows and its pairs share it); raises
    RuntimeError saying why not."""
    source = SOURCE.read_bytes()
    binary = out_dir / f"mcload-{hashlib.sha256(source).hexdigest()[:12]}"
    if binary.exists():
        return binary
    cc = compiler()
    if cc is None:
        raise RuntimeError("no C compiler (cc or gcc) to build bench/mcload.c: apt-get install gcc")
    out_dir.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [cc, "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(binary), str(SOURCE)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"building {SOURCE.name} failed:\n{done.stderr[-2000:]}")
    return binary


def argv(binary: Path, spec: LoadSpec, latency_file: Path) -> list[str]:
    """mcload's command line for one spec."""
    if spec.timeline:
        raise ValueError("mcload has no timeline mode")
    op = OPS.get(spec.op)
    if op is None:
        raise ValueError(f"mcload drives {sorted(OPS)}, not {spec.op!r}")
    return [
        str(binary),
        "--op", op,
        "--targets", ",".join(spec.targets),
        "--connections", str(spec.clients),
        "--prefix", spec.key_prefix,
        "--keys", str(spec.key_count),
        "--value-size", str(spec.value_size),
        "--seed", str(spec.seed),
        "--latency-file", str(latency_file),
        "--timeout", str(math.ceil(spec.rpc_timeout_s)),
    ]  # fmt: skip


def result_of(index: int, stdout: str, latency_file: Path) -> LoadResult:
    """A LoadResult from mcload's JSON line and latency file."""
    summary = json.loads(stdout.strip().splitlines()[-1])
    latencies = array.array("d")
    latencies.frombytes(latency_file.read_bytes())
    if len(latencies) != summary["ops"]:
        raise RuntimeError(
            f"mcload reported {summary['ops']} ops but wrote {len(latencies)} latencies"
        )
    return LoadResult(
        index,
        ops=summary["ops"],
        errors=summary["errors"],
        error_codes=dict(summary["codes"]),
        latencies=latencies,
        channels=summary["connections"],
    )


def _failure(proc: subprocess.Popen[str], what: str) -> RuntimeError:
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    assert proc.stderr is not None
    err = proc.stderr.read().strip()
    return RuntimeError(f"mcload {what}: {err[-1000:] or f'exit {proc.returncode}'}")


def run_measured(
    specs: Sequence[LoadSpec], server_pids: Mapping[str, int], binary: Path, work_dir: Path
) -> MeasuredRun:
    """One mcload process per spec: all connect, then share one window (warm-up, then
    spec.duration_s measured, CPU metered over it). Raises RuntimeError if one fails."""
    warmup, duration = specs[0].warmup_s, specs[0].duration_s
    files = [work_dir / f"mcload-latencies-{i}.bin" for i in range(len(specs))]
    procs: list[subprocess.Popen[str]] = []
    try:
        for spec, path in zip(specs, files, strict=True):
            procs.append(
                subprocess.Popen(
                    argv(binary, spec, path),
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        for proc in procs:
            assert proc.stdout is not None
            ready, _, _ = select.select([proc.stdout], [], [], READY_TIMEOUT_S)
            line = proc.stdout.readline() if ready else ""  # READY, or EOF if it died
            if line.strip() != "READY":
                raise _failure(proc, "did not connect")
        begin = time.monotonic() + START_DELAY_S
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(f"GO {begin!r} {warmup!r} {duration!r}\n")
            proc.stdin.flush()  # communicate() below closes it
        meter = CpuMeter({**server_pids, **{f"generator{i}": p.pid for i, p in enumerate(procs)}})
        time.sleep(max(begin + warmup - time.monotonic(), 0))
        meter.start()
        time.sleep(max(begin + warmup + duration - time.monotonic(), 0))
        cpu = meter.stop()
        results = []
        for i, proc in enumerate(procs):
            # mcload gives up rpc_timeout_s after the window (replies still owed); this
            # bounds the wait should it not
            try:
                out, err = proc.communicate(timeout=specs[i].rpc_timeout_s + 10)
            except subprocess.TimeoutExpired as exc:
                raise RuntimeError(
                    f"mcload still running {specs[i].rpc_timeout_s + 10:g} s after its window"
                ) from exc
            if proc.returncode != 0:
                raise RuntimeError(f"mcload failed (exit {proc.returncode}): {err.strip()[-1000:]}")
            results.append(result_of(i, out, files[i]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for path in files:
            path.unlink(missing_ok=True)
    return MeasuredRun(results, cpu, duration)
