"""Offline probe: how long a full cyclic-GC pass takes over a StateMachine holding N keys.

A full collection holds the GIL, so in a node it stalls the tick thread as long as it
runs. Runs in a spawned process (clean heap, memory returned afterwards). The what-if
row stores the same values as plain tuples, which CPython's GC untracks (a NamedTuple
subclass instance stays tracked).
"""

from __future__ import annotations

import gc
import multiprocessing as mp
import time
from typing import Any

from raftcache.node.state_machine import StateMachine
from raftcache.v1 import command_pb2

from bench.common import key_name, value_bytes


def _collect_ms(rounds: int = 3) -> list[float]:
    out = []
    for _ in range(rounds):
        started = time.process_time()
        gc.collect()
        out.append(round((time.process_time() - started) * 1000, 1))
    return out


def _probe(keys: int) -> dict[str, Any]:
    sm = StateMachine()
    value = value_bytes()
    started = time.process_time()
    for start in range(0, keys, 1000):
        command = command_pb2.Command(format=1, now_ms=1)
        op = command.ops.add()
        for i in range(start, min(start + 1000, keys)):
            op.mset.entries.add(key=key_name("snap-", i), value=value)
        sm.apply(command)
    build_s = time.process_time() - started
    gc.collect()
    entry = next(iter(sm._data.values()))
    result: dict[str, Any] = {
        "keys": keys,
        "build_cpu_s": round(build_s, 1),
        "gc_tracked_objects": len(gc.get_objects()),
        "entry_type": type(entry).__name__,
        "entry_gc_tracked": gc.is_tracked(entry),
        "full_collect_cpu_ms": _collect_ms(),
        "gc_thresholds": list(gc.get_threshold()),
    }
    # what-if: the same data as exact tuples (untracked by the GC after one pass)
    data: dict[bytes, Any] = sm._data
    data.update({k: tuple(e) for k, e in data.items()})
    gc.collect()
    result["what_if_plain_tuples"] = {
        "gc_tracked_objects": len(gc.get_objects()),
        "full_collect_cpu_ms": _collect_ms(),
    }
    gc.freeze()
    result["what_if_gc_freeze"] = {"full_collect_cpu_ms": _collect_ms()}
    return result


def run(keys: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    with ctx.Pool(1) as pool:
        result: dict[str, Any] = pool.apply(_probe, (keys,))
    return result
