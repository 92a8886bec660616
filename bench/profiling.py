"""py-spy on the leader and a summary of where its CPU goes (own time and subtree time).

py-spy records collapsed stacks (`--format raw`) of every Python thread, with native
frames (`--native`) so that C-level work (zlib, pickle, protobuf/upb, socket calls,
grpc's Cython core, waiting for the GIL) is visible. A sample is classified as
  - waiting: its innermost frames are a poll/epoll wait (idle) or a condition-variable
    wait (in CPython 3.11 that is take_gil: waiting for the GIL),
  - on CPU otherwise; on-CPU samples are attributed to a component by the innermost
    frame that belongs to a known component ("own time"), and counted once for every
    component that appears anywhere in the stack ("subtree time").
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import log

RATE_HZ = 100
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
_IO_WAIT = {
    "epoll_wait",
    "epoll_pwait",
    "poll",
    "ppoll",
    "select",
    "pselect",
    "pselect6",
    "nanosleep",
    "clock_nanosleep",
    "accept4",
    "sem_wait",
    "sem_timedwait",
}
_SYSCALLS = {
    "write",
    "send",
    "sendmsg",
    "sendto",
    "writev",
    "recv",
    "recvmsg",
    "recvfrom",
    "read",
    "readv",
    "syscall",
    "eventfd_write",
    "eventfd_read",
    "getsockopt",
    "getpid",
    "epoll_ctl",
}
_SYSCALL_OWNERS = (
    ("PipeNotifier.notify", "pysyncobj PipeNotifier.notify: pipe write per proposal"),
    ("_write_to_self", "asyncio call_soon_threadsafe self-pipe wakeup"),
    ("_read_from_self", "asyncio self-pipe read"),
    ("TcpConnection", "pysyncobj peer TCP send/recv"),
    ("eventfd_write", "grpc eventfd wakeups (poller thread)"),
    ("cygrpc", "grpc socket I/O + futex (sendmsg/recvmsg/syscall)"),
)
_GIL_WAIT = {
    "pthread_cond_timedwait",
    "pthread_cond_wait",
    "take_gil",
    "__futex_abstimed_wait_common",
}


def pyspy_binary() -> str:
    """py-spy from this virtualenv (installed with pip into it if missing) or from PATH."""
    local = Path(sys.executable).parent / "py-spy"
    if local.exists():
        return str(local)
    found = shutil.which("py-spy")
    if found:
        return found
    log("py-spy not found: pip install py-spy (into this virtualenv only)")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "py-spy"], check=True)
    return str(local)


class Recorder:
    """`py-spy record` of one process for a fixed duration, started on demand."""

    def __init__(
        self,
        pid: int,
        duration_s: float,
        out_path: Path,
        native: bool = True,
        rate_hz: int = RATE_HZ,
    ) -> None:
        self.out_path = out_path
        self.duration_s = duration_s
        self.rate_hz = rate_hz
        self.command = [
            pyspy_binary(),
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(round(duration_s)),
            "--rate",
            str(rate_hz),
            "--format",
            "raw",
            "--threads",
            *(["--native"] if native else []),
            "--output",
            str(out_path),
        ]
        self._process: subprocess.Popen[str] | None = None
        self.stderr_tail = ""
        self.returncode: int | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(
            self.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def wait(self) -> None:
        if self._process is None:
            return
        try:
            out, err = self._process.communicate(timeout=self.duration_s + 120)
        except subprocess.TimeoutExpired:
            self._process.kill()
            out, err = self._process.communicate()
        self.returncode = self._process.returncode
        self.stderr_tail = (out + err)[-2000:]
        if self.returncode != 0 or not self.out_path.exists():
            raise RuntimeError(f"py-spy failed ({self.returncode}): {self.stderr_tail}")


# ----------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class Frame:
    func: str
    file: str
    line: str

    @property
    def key(self) -> str:
        """The function without its line; unnamed native frames grouped by module."""
        if self.func.startswith("0x"):
            return f"[{Path(self.file).name.split('.')[0]} native code]"
        return f"{self.func} ({self.file})" if self.file else self.func


def _frame(text: str) -> Frame:
    match = _FRAME.match(text)
    if match is None:
        return Frame(text, "", "")
    return Frame(match["func"], match["file"], match["line"] or "")


def parse_raw(path: Path) -> Iterator[tuple[str, list[Frame], int]]:
    """(thread name, frames root..leaf, count) for every line of py-spy's raw output."""
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack or not count.isdigit():
                continue
            parts = stack.split(";")
            thread = ""
            if parts and parts[0].startswith("thread ("):
                thread = parts[0].split(": ", 1)[1] if ": " in parts[0] else parts[0]
                parts = parts[1:]
            yield thread, [_frame(p) for p in parts], int(count)


def _thread_role(name: str) -> str:
    if "_autoTickThread" in name:
        return "pysyncobj tick thread"
    if name == "MainThread":
        return "asyncio main thread (client front-ends)"
    return f"other thread ({name or 'unnamed'})"


def _state(frames: list[Frame]) -> str:
    tail = [f.func for f in frames[-3:]]
    if any(name in _IO_WAIT for name in tail):
        return "idle: waiting in poll/epoll"
    if any(name in _GIL_WAIT for name in tail):
        return "waiting for the GIL"
    return "on CPU"


def _raftcache_part(file: str) -> str | None:
    name = file.rsplit("/", 1)[-1]
    if re.search(r"(^|/)node/", file):
        if "/resp/" in file:
            return {
                "parser.py": "raftcache: RESP parse",
                "encoder.py": "raftcache: RESP encode",
            }.get(name, "raftcache: RESP dispatch (resp/server.py)")
        if name == "engine.py":
            return "raftcache: engine (ops, barriers, forwarding)"
        if "/keyspace/" in file:
            return "raftcache: keyspace (Redis command table)"
        if name in ("state_machine.py", "replica.py", "commands.py"):
            return "raftcache: state machine / replica apply"
        if name == "proposer.py":
            return "raftcache: proposer (group commit, read barrier)"
        if name in ("servicers.py", "requests.py", "status_codes.py", "errors.py"):
            return "raftcache: servicers + request validation"
        return "raftcache: node (other)"
    if re.search(r"(^|/)consensus/", file):
        return "raftcache: consensus adapter (raft.py)"
    return None


def _component(frame: Frame) -> str | None:
    """The component a frame belongs to, or None for frames that say nothing (interpreter
    internals, libc) so that the next frame up decides."""
    func, file = frame.func, frame.file
    if func.startswith("zlib_") or "zlibmodule" in file or file.endswith("libz.so.1"):
        return "pysyncobj wire: zlib"
    if "pysyncobj/pickle.py" in file or "_pickle" in file:
        return "pysyncobj wire: pickle"
    if "cryptography" in file or "fernet" in file.lower() or "libcrypto" in file or "_rust" in file:
        return "pysyncobj wire: encryption (Fernet)"
    if (
        "_message" in file
        or "google/protobuf" in file
        or func.startswith(("PyUpb", "upb_", "_upb"))
    ):
        return "protobuf (upb) encode/decode"
    part = _raftcache_part(file)
    if part is not None:
        return part
    if "pysyncobj/" in file:
        return "pysyncobj: raft logic + transport (Python)"
    if "cygrpc" in file or "grpc/" in file or "grpc_" in file:
        return "grpc aio (Cython + C core)"
    if "asyncio/" in file or "_asynciomodule" in file or file == "selectors.py":
        return "asyncio event loop"
    if "structlog" in file or file.startswith("logging/"):
        return "logging"
    return None


def _own_component(frames: list[Frame]) -> str:
    """Own-time bucket of a sample: syscalls are charged to the code that made them."""
    if any(f.func in _SYSCALLS for f in frames[-2:]):
        for f in reversed(frames):
            for marker, owner in _SYSCALL_OWNERS:
                if marker in f.func or marker in f.file:
                    return f"syscalls: {owner}"
        return "syscalls: other"
    return next((c for c in map(_component, reversed(frames)) if c), "other (runtime)")


def _subtree_tags(frames: list[Frame]) -> set[str]:
    tags: set[str] = set()
    for f in frames:
        func, file = f.func, f.file
        if "cygrpc" in file or "grpc/" in file:
            tags.add("grpc aio (any grpc frame on the stack)")
        if "pysyncobj/" in file:
            tags.add("pysyncobj (any pysyncobj frame)")
        if "__sendAppendEntries" in func or func in ("TCPTransport.send", "TcpConnection.send"):
            tags.add("pysyncobj send path (__sendAppendEntries/TcpConnection.send)")
        if func in (
            "TcpConnection.__processConnection",
            "TcpConnection.__processParseMessage",
            "TcpConnection.__processRead",
            "TcpConnection.__tryReadBuffer",
        ):
            tags.add("pysyncobj receive path (read + unpickle + decompress)")
        if "__onMessageReceived" in func or "_onMessageReceived" in func:
            tags.add("pysyncobj message handling (__onMessageReceived)")
        if "__applyLogEntries" in func or "_checkCommandsToApply" in func:
            tags.add("pysyncobj apply path (__applyLogEntries/_checkCommandsToApply)")
        if func.startswith("replicated.") or func == "SyncObj._applyCommand":
            tags.add("propose: @replicated wrapper + _applyCommand (pickle + queue)")
        if func.startswith("CacheServicer.") or func.startswith("ClusterServicer."):
            tags.add("raftcache servicers (CacheServicer.*)")
        if func.startswith("Proposer."):
            tags.add("raftcache proposer (Proposer.*)")
        if func.startswith(("Replica.apply", "StateMachine.")):
            tags.add("raftcache apply (Replica.apply / StateMachine)")
        if func.startswith(("RaftNode._on_tick", "RaftNode._refresh_status")):
            tags.add("RaftNode._on_tick/_refresh_status (status copy every tick)")
        if func.startswith("RaftNode.propose.<locals>.done") or "on_done" in func:
            tags.add("commit callback -> call_soon_threadsafe (tick -> asyncio)")
        if "_message" in file or "google/protobuf" in file:
            tags.add("protobuf (any)")
        if func.startswith("zlib_"):
            tags.add("zlib (any)")
        if func in _SYSCALLS and f is frames[-1]:
            tags.add("syscalls (any, leaf)")
        if "cryptography" in file or "fernet" in file.lower():
            tags.add("encryption (any)")
        if func.startswith("Proposer._propose") or func == "RaftNode.propose":
            tags.add("Proposer._propose -> RaftNode.propose")
    return tags


# ----------------------------------------------------------------------------- summary


@dataclass
class Summary:
    text: str
    data: dict[str, Any]


def _table(counter: Counter[str], total: int, limit: int, us_per_sample: float | None) -> list[str]:
    lines = []
    for name, n in counter.most_common(limit):
        share = n / total * 100 if total else 0.0
        cost = f"  {us_per_sample * n:7.1f} us/op" if us_per_sample is not None else ""
        lines.append(f"  {share:5.1f}%  {n:6d}{cost}  {name}")
    return lines


def summarize(
    raw_path: Path,
    *,
    leader_cpu_us_per_op: float,
    ops_per_s: float,
    leader_cpu_pct: float,
    unprofiled_ops_per_s: float,
    command: list[str],
    title: str = "raftcache leader profile: 64-client Set run",
) -> Summary:
    threads: Counter[str] = Counter()
    states: Counter[str] = Counter()
    own: Counter[str] = Counter()
    own_by_thread: dict[str, Counter[str]] = {}
    own_functions: Counter[str] = Counter()
    subtree: Counter[str] = Counter()
    inclusive_functions: Counter[str] = Counter()
    total = on_cpu = 0
    for thread, frames, count in parse_raw(raw_path):
        total += count
        role = _thread_role(thread)
        state = _state(frames)
        states[f"{state} [{role}]"] += count
        if state != "on CPU":
            continue
        on_cpu += count
        threads[role] += count
        component = _own_component(frames)
        own[component] += count
        own_by_thread.setdefault(role, Counter())[component] += count
        if frames:
            own_functions[frames[-1].key] += count
        for tag in _subtree_tags(frames):
            subtree[tag] += count
        for key in {f.key for f in frames if not f.func.startswith("0x") or "cygrpc" in f.file}:
            inclusive_functions[key] += count
    # us of leader CPU per client op attributable to one on-CPU sample
    per_sample: float | None = leader_cpu_us_per_op / on_cpu if on_cpu else None
    sampled_cpu_pct = on_cpu / RATE_HZ / _duration(command) * 100 if on_cpu else 0.0

    out: list[str] = []
    add: Callable[..., None] = out.append
    add(title)
    add("=" * 60)
    add(f"command: {' '.join(command)}")
    add(
        f"samples: {total} total, {on_cpu} on CPU (Python threads only; gRPC core's own C "
        f"threads are not sampled)"
    )
    add(
        f"profiled run: {ops_per_s:.0f} Set/s (same run without py-spy: "
        f"{unprofiled_ops_per_s:.0f} Set/s)"
    )
    add(
        f"leader CPU (from /proc, whole process): {leader_cpu_pct:.0f}% of one core = "
        f"{leader_cpu_us_per_op:.0f} us of CPU per Set; py-spy saw {sampled_cpu_pct:.0f}% of a "
        "core on CPU in Python threads"
    )
    add("'us/op' columns below = share of on-CPU samples x leader CPU us per Set.")
    add("")
    add("Sample states by thread (all samples):")
    out.extend(_table(states, total, 20, None))
    add("")
    add("On-CPU samples by thread:")
    out.extend(_table(threads, on_cpu, 10, per_sample))
    add("")
    add("OWN time by component (innermost frame that belongs to a known component):")
    out.extend(_table(own, on_cpu, 30, per_sample))
    for role, counter in sorted(own_by_thread.items(), key=lambda kv: -sum(kv[1].values())):
        add(f"  -- {role}:")
        out.extend("  " + line for line in _table(counter, on_cpu, 12, per_sample))
    add("")
    add("SUBTREE time (samples with the component anywhere on the stack; they overlap):")
    out.extend(_table(subtree, on_cpu, 30, per_sample))
    add("")
    add("Top functions by OWN time (leaf frame):")
    out.extend(_table(own_functions, on_cpu, 30, per_sample))
    add("")
    add("Top functions by SUBTREE (inclusive) time:")
    out.extend(_table(inclusive_functions, on_cpu, 45, per_sample))
    add("")

    def shares(counter: Counter[str]) -> dict[str, float]:
        return {k: round(v / on_cpu * 100, 2) for k, v in counter.most_common()} if on_cpu else {}

    def costs(counter: Counter[str]) -> dict[str, float]:
        if per_sample is None:
            return {}
        return {k: round(v * per_sample, 1) for k, v in counter.most_common()}

    data: dict[str, Any] = {
        "samples_total": total,
        "samples_on_cpu": on_cpu,
        "sampled_python_cpu_pct": round(sampled_cpu_pct, 1),
        "leader_cpu_pct": leader_cpu_pct,
        "leader_cpu_us_per_op": leader_cpu_us_per_op,
        "profiled_ops_per_s": ops_per_s,
        "unprofiled_ops_per_s": unprofiled_ops_per_s,
        "states_pct": {k: round(v / total * 100, 2) for k, v in states.most_common()},
        "threads_pct": shares(threads),
        "own_pct": shares(own),
        "own_us_per_op": costs(own),
        "subtree_pct": shares(subtree),
        "subtree_us_per_op": costs(subtree),
        "top_own_functions_pct": dict(list(shares(own_functions).items())[:30]),
        "top_inclusive_functions_pct": dict(list(shares(inclusive_functions).items())[:45]),
    }
    return Summary("\n".join(out) + "\n", data)


_APPLY_FILES = ("state_machine.py", "replica.py", "commands.py", "values.py", "eviction.py")


def _tick_bucket(frames: list[Frame]) -> str:
    """A tick-thread sample: commit hand-off, apply, our adapter, or pysyncobj itself."""
    funcs = [f.func for f in frames]
    if any("on_done" in f or f == "call_soon_threadsafe" for f in funcs):
        return "proposer: commit callbacks (tick thread -> loop, call_soon_threadsafe)"
    for f in frames:
        if re.search(r"(^|/)node/", f.file) and (
            "/keyspace/" in f.file or f.file.rsplit("/", 1)[-1] in _APPLY_FILES
        ):
            return "apply: state machine + keyspace (tick thread)"
    if any(re.search(r"(^|/)consensus/", f.file) for f in frames):
        return "pysyncobj tick: consensus adapter (consensus/*.py: status, journal)"
    if any("__sendAppendEntries" in f or f in ("TcpConnection.send",) for f in funcs):
        return "pysyncobj tick: sends (append entries, pickle, TCP)"
    if any(
        f.startswith(("TcpConnection.__process", "TcpConnection.__tryRead"))
        or "__onMessageReceived" in f
        for f in funcs
    ):
        return "pysyncobj tick: receives (read, unpickle, message handling)"
    return "pysyncobj tick: other (poll loop, raft logic, journal)"


_READS = {"recv", "recvmsg", "recvfrom", "read", "readv"}
_WRITES = {"send", "sendmsg", "sendto", "write", "writev"}


def _syscall_bucket(frames: list[Frame]) -> str | None:
    """A main-thread sample inside a syscall: which kind of I/O it is, or None."""
    leaf = next((f.func for f in reversed(frames[-3:]) if f.func in _SYSCALLS), None)
    if leaf is None:
        return None
    funcs = " ".join(f.func for f in frames)
    if "_write_to_self" in funcs or "PipeNotifier" in funcs or leaf.startswith("eventfd"):
        return "syscalls: wake-ups (asyncio self-pipe, pysyncobj notifier pipe)"
    if leaf in _READS:
        return "syscalls: socket reads (recv)"
    if leaf in _WRITES:
        return "syscalls: socket writes (replies, forwarded requests)"
    return f"syscalls: other ({leaf})"


def _main_bucket(frames: list[Frame]) -> str:
    """A main-thread sample, by the innermost frame that says which layer it is in."""
    if any(f.func.startswith("gc_collect") for f in frames):
        return "CPython cyclic GC (main thread)"
    syscall = _syscall_bucket(frames)
    if syscall is not None:
        return syscall
    for f in reversed(frames):
        file, name = f.file, f.file.rsplit("/", 1)[-1]
        if re.search(r"(^|/)node/", file):
            if "/resp/" in file:
                if name == "parser.py":
                    return "front-end: RESP parse (resp/parser.py)"
                if name == "encoder.py":
                    return "front-end: RESP encode (resp/encoder.py)"
                return "front-end: dispatch (resp/server.py)"
            if name in ("proposer.py", "commands.py"):
                return "proposer: batching + Command encode (proposer.py, commands.py)"
            if "/keyspace/" in file or name in ("state_machine.py", "replica.py"):
                return "front-end: command table / local reads (keyspace/, replica.py)"
            if name == "engine.py":
                return "front-end: dispatch (engine.py: ops, barriers)"
            return f"node: {name}"
        if re.search(r"(^|/)consensus/", file) or "pysyncobj/" in file:
            return "proposer: hand-off to pysyncobj (RaftNode.propose, _applyCommand)"
        if "cygrpc" in file or "grpc/" in file:
            return "gRPC (aio server on the loop)"
        if "asyncio/" in file or "_asynciomodule" in file or file == "selectors.py":
            return "asyncio loop: scheduling, futures, callbacks, transports (Python)"
    return "main thread: other (interpreter)"


def leader_buckets(raw_path: Path, us_per_op: float) -> Summary:
    """Where the leader's on-CPU samples go, in the layers of a RESP request: front-end
    (parse, dispatch, encode), the event loop and its syscalls, proposer, pysyncobj's tick
    thread (sends, receives), apply. `us_per_op` (the leader's CPU per request, from /proc)
    turns shares into microseconds per request."""
    buckets: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    waits: Counter[str] = Counter()
    on_cpu = 0
    for thread, frames, count in parse_raw(raw_path):
        role = _thread_role(thread)
        state = _state(frames)
        if state != "on CPU":
            waits[f"{state} [{role}]"] += count
            continue
        on_cpu += count
        threads[role] += count
        if role == "pysyncobj tick thread":
            bucket = _tick_bucket(frames)
        elif role.startswith("asyncio main thread"):
            bucket = _main_bucket(frames)
        else:
            bucket = f"{role}"
        buckets[bucket] += count
        if frames:
            functions[frames[-1].key] += count
    per_sample = us_per_op / on_cpu if on_cpu else 0.0
    data: dict[str, Any] = {
        "samples_on_cpu": on_cpu,
        "us_per_op": round(us_per_op, 1),
        "pct": {k: round(v / on_cpu * 100, 2) for k, v in buckets.most_common()} if on_cpu else {},
        "us_per_op_by_bucket": {k: round(v * per_sample, 1) for k, v in buckets.most_common()},
        "threads_pct": (
            {k: round(v / on_cpu * 100, 2) for k, v in threads.most_common()} if on_cpu else {}
        ),
        "waiting_samples": dict(waits.most_common()),
        "top_leaf_functions_pct": (
            {k: round(v / on_cpu * 100, 2) for k, v in functions.most_common(25)} if on_cpu else {}
        ),
    }
    lines = [
        "Leader CPU by layer (on-CPU samples; us/op = share x leader CPU per request)",
        "=" * 60,
        *_table(buckets, on_cpu, 40, per_sample),
        "",
        "By thread:",
        *_table(threads, on_cpu, 10, per_sample),
        "",
        "Not on CPU (waiting):",
        *_table(waits, sum(waits.values()), 10, None),
        "",
    ]
    return Summary("\n".join(lines) + "\n", data)


def gc_time(raw_path: Path, rate_hz: int) -> dict[str, Any]:
    """Seconds the sampled process spent in CPython's cyclic GC (native gc_collect* frames).

    A collection holds the GIL: no other Python thread (the tick thread included) runs."""
    total = gc_samples = 0
    by_thread: Counter[str] = Counter()
    for thread, frames, count in parse_raw(raw_path):
        total += count
        if any(f.func.startswith("gc_collect") for f in frames):
            gc_samples += count
            by_thread[_thread_role(thread)] += count
    return {
        "samples": total,
        "gc_samples": gc_samples,
        "gc_seconds": round(gc_samples / rate_hz, 2),
        "gc_samples_by_thread": dict(by_thread),
        "rate_hz": rate_hz,
    }


def _duration(command: list[str]) -> float:
    try:
        return float(command[command.index("--duration") + 1])
    except (ValueError, IndexError):
        return 10.0
