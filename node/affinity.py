"""`--cpu-affinity`: the CPUs a node's process runs on, as Redis's `server_cpulist`.

A node's Python threads (the event loop, pysyncobj's tick thread) share one GIL, so they
never run Python in parallel; what two CPUs buy them is that every GIL hand-over and every
wake-up between them (a proposal's notifier pipe, a commit's `call_soon_threadsafe`) may
cross CPUs. On a virtual machine that costs: an idle vCPU is woken by an IPI, a VM exit
that the waking thread pays for in its syscall (py-spy put ~0.3 ms on the proposal's pipe
write under -P16 on this host's Firecracker VMs). On one CPU the same wake-up is a local
run-queue insert. node/DESIGN.md, "CPU affinity", has the measurements.

The whole process is pinned at start-up, before gRPC or pysyncobj start a thread (threads
inherit their creator's mask; the ones already running are pinned too). A forked child
(pysyncobj's snapshot writer) goes back to the mask the process started with: it runs
beside the node, not in its place.
"""

from __future__ import annotations

import contextlib
import os

from raftcache.node.config import ConfigError


def describe(cpus: frozenset[int] | set[int]) -> str:
    """{0, 1, 2, 5} -> '0-2,5' (the kernel's own list format)."""
    ranges: list[list[int]] = []
    for cpu in sorted(cpus):
        if ranges and cpu == ranges[-1][1] + 1:
            ranges[-1][1] = cpu
        else:
            ranges.append([cpu, cpu])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


_fork_hook_registered = False


def pin(cpus: frozenset[int]) -> None:
    """Run this process (every thread it has and will have) on `cpus`; a forked child goes
    back to the CPUs the process had. Raises ConfigError, changing nothing, when a CPU is
    not one this process may use."""
    global _fork_hook_registered
    if not cpus:
        return
    allowed = os.sched_getaffinity(0)
    missing = cpus - allowed
    if missing:
        raise ConfigError(
            f"--cpu-affinity: CPU {describe(missing)} is not available to this process (it "
            f"may use {describe(allowed)}): pick CPUs from that list"
        )
    try:
        pin_threads("self", cpus)
    except OSError as exc:  # e.g. the cgroup's cpuset changed meanwhile
        os.sched_setaffinity(0, allowed)
        raise ConfigError(
            f"--cpu-affinity: the CPUs {describe(cpus)} could not be set ({exc.strerror or exc}): "
            "pick CPUs from the process's cpuset"
        ) from exc
    if not _fork_hook_registered:  # hooks cannot be removed: one, with the first mask
        _fork_hook_registered = True
        os.register_at_fork(after_in_child=lambda: os.sched_setaffinity(0, allowed))


def pin_threads(pid: int | str, cpus: frozenset[int] | set[int]) -> None:
    """Every thread of process `pid` ("self": this one) on `cpus`, threads started during
    the pass included (the bench pins the nodes it started by role this way:
    bench/redis_section.py). Raises FileNotFoundError when the process has gone."""
    done: set[str] = set()
    while True:
        tasks = set(os.listdir(f"/proc/{pid}/task")) - done
        if not tasks:
            return
        for task in tasks:
            with contextlib.suppress(ProcessLookupError):  # a thread that has just ended
                os.sched_setaffinity(int(task), cpus)
        done |= tasks
