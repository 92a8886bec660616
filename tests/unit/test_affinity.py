"""--cpu-affinity applied to a real process: its threads, a forked child, a CPU it may not use."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from raftcache.node.affinity import describe, pin
from raftcache.node.config import ConfigError


def test_describe_writes_the_kernels_list_format() -> None:
    assert describe({0}) == "0"
    assert describe({0, 1, 2, 5}) == "0-2,5"
    assert describe(frozenset({7, 3, 4})) == "3-4,7"


def test_a_cpu_this_process_may_not_use_is_refused_and_nothing_changes() -> None:
    before = os.sched_getaffinity(0)
    outside = max(before) + 1
    with pytest.raises(ConfigError) as caught:
        pin(frozenset({min(before), outside}))
    assert str(caught.value) == (
        f"--cpu-affinity: CPU {outside} is not available to this process (it may use "
        f"{describe(before)}): pick CPUs from that list"
    )
    assert os.sched_getaffinity(0) == before


PINNED = textwrap.dedent(
    """
    import json, os, sys, threading, time
    from raftcache.node.affinity import pin

    before = os.sched_getaffinity(0)
    early = threading.Thread(target=time.sleep, args=(2,), daemon=True)
    early.start()  # running when the process is pinned, as an imported library's could be
    pin(frozenset({int(sys.argv[1])}))
    late = threading.Thread(target=time.sleep, args=(2,), daemon=True)
    late.start()  # started after: inherits the mask
    masks = {t: os.sched_getaffinity(int(t)) for t in os.listdir("/proc/self/task")}
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # a snapshot writer: back on the CPUs the process started with
        os.write(write, json.dumps(sorted(os.sched_getaffinity(0))).encode())
        os._exit(0)
    os.waitpid(child, 0)
    print(json.dumps({
        "before": sorted(before),
        "threads": {t: sorted(m) for t, m in masks.items()},
        "child": json.loads(os.read(read, 1000)),
    }))
    """
)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to pin to one")
def test_every_thread_is_pinned_and_a_forked_child_gets_the_cpus_back() -> None:
    cpu = max(os.sched_getaffinity(0))
    everywhere = sorted(os.sched_getaffinity(0))
    out = subprocess.run(
        [sys.executable, "-c", PINNED, str(cpu)], capture_output=True, text=True, check=True
    ).stdout
    seen = json.loads(out)
    assert seen["before"] == everywhere
    assert len(seen["threads"]) == 3  # main, early, late
    assert all(mask == [cpu] for mask in seen["threads"].values())
    assert seen["child"] == everywhere  # the forked child: every CPU again
