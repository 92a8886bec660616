"""Client workloads of a chaos run: threads that record every operation in a history.

- registers: get (linearizable), set of a unique value "<process>-<n>", and
  compare-and-set (get_item, then set with expected_version; recorded as a get and a
  "cas" [old, new] whose result is whether it applied) on keys r:0..r:N-1.
- counters: incr by 1 on c:0..c:N-1 (exactly once, by request id).
- sessions: set a fresh key s:<process>-<n> with a long TTL, then read it back.

SDK errors map to outcomes: OutcomeUnknownError -> unknown, UnavailableError /
OverloadedError -> fail, ConditionFailedError on a cas -> ok with result False.
A worker whose operation ended unknown continues as a new process id (process +
workers), as in Jepsen: the unknown operation may still be in flight, so that
process never completes, and a process's operations stay sequential.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from raftcache.chaos.history import HistoryWriter, Recorder
from raftcache.client import (
    Client,
    ConditionFailedError,
    Item,
    OutcomeUnknownError,
    OverloadedError,
    UnavailableError,
)

WORKLOADS = ("registers", "counters", "sessions")
T = TypeVar("T")


@dataclass(frozen=True)
class WorkloadConfig:
    """Key spaces, pacing and timeouts of the workers."""

    endpoints: tuple[str, ...]
    workers: int = 9
    register_keys: int = 30
    counter_keys: int = 3
    session_ttl_s: float = 3600.0  # outlives any run, so final reads must still see them
    op_timeout_s: float = 3.0
    think_s: float = 0.02  # pause between two operations of one worker
    seed: int = 0

    def __post_init__(self) -> None:
        if self.workers < len(WORKLOADS):
            raise ValueError(f"need at least {len(WORKLOADS)} workers, one per workload")
        if not self.endpoints:
            raise ValueError("need at least one endpoint")

    def register_key_names(self) -> list[str]:
        return [f"r:{i}" for i in range(self.register_keys)]

    def counter_key_names(self) -> list[str]:
        return [f"c:{i}" for i in range(self.counter_keys)]


class _Unknown(Exception):
    """The recorded operation ended unknown; the worker must take a new process id."""


def _record(rec: Recorder, call: Callable[[], T], ok: Callable[[T], object]) -> T | None:
    """Run call and record its outcome; raises _Unknown after recording an unknown."""
    try:
        result = call()
    except OutcomeUnknownError:
        rec.unknown()
        raise _Unknown() from None
    except (UnavailableError, OverloadedError):
        rec.fail()
        return None
    ok(result)
    return result


class Worker:
    """One thread running one workload with its own Client."""

    def __init__(
        self, index: int, workload: str, config: WorkloadConfig, history: HistoryWriter
    ) -> None:
        self.workload = workload
        self.config = config
        self.history = history
        self.process = index
        self._n = 0
        self._rng = random.Random(f"{config.seed}-{index}")
        self._stop = threading.Event()
        self._client = Client(list(config.endpoints), timeout=config.op_timeout_s)
        self._thread = threading.Thread(target=self._run, name=f"{workload}-{index}", daemon=True)
        self.error: BaseException | None = None
        self.session_keys: list[str] = []

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        self._client.close()

    def _run(self) -> None:
        step = _STEPS[self.workload]
        try:
            while not self._stop.is_set():
                try:
                    step(self)
                except _Unknown:
                    self.process += self.config.workers
                self._stop.wait(self.config.think_s)
        except BaseException as exc:  # reported by the runner; never silently lost
            self.error = exc

    def _unique(self) -> str:
        self._n += 1
        return f"{self.process}-{self._n}"

    # -- workloads ----------------------------------------------------------------

    def _registers(self) -> None:
        key = self._rng.choice(self.config.register_key_names())
        roll = self._rng.random()
        if roll < 0.4:
            rec = self.history.begin(self.process, "get", key)
            _record(rec, lambda: _text(self._client.get(key)), rec.ok)
        elif roll < 0.75:
            value = self._unique()
            rec = self.history.begin(self.process, "set", key, value)
            _record(rec, lambda: self._client.set(key, value), lambda _: rec.ok())
        else:
            self._cas(key)

    def _cas(self, key: str) -> None:
        read = self.history.begin(self.process, "get", key)
        item = _record(read, lambda: self._client.get_item(key), lambda i: read.ok(_item_text(i)))
        if item is None:
            return  # absent (or the read failed): nothing to compare against
        old, new = item.value.decode(), self._unique()
        rec = self.history.begin(self.process, "cas", key, [old, new])
        try:
            _record(
                rec,
                lambda: self._client.set(key, new, expected_version=item.version),
                lambda _: rec.ok(True),
            )
        except ConditionFailedError:
            rec.ok(False)

    def _counters(self) -> None:
        key = self._rng.choice(self.config.counter_key_names())
        rec = self.history.begin(self.process, "incr", key, 1)
        _record(rec, lambda: self._client.incr(key, 1), rec.ok)

    def _sessions(self) -> None:
        key, value = f"s:{self._unique()}", self._unique()
        rec = self.history.begin(self.process, "set", key, value)
        ttl = self.config.session_ttl_s
        _record(rec, lambda: self._client.set(key, value, ttl=ttl), lambda _: rec.ok())
        self.session_keys.append(key)
        read = self.history.begin(self.process, "get", key)
        _record(read, lambda: _text(self._client.get(key)), read.ok)


_STEPS: dict[str, Callable[[Worker], None]] = {
    "registers": Worker._registers,
    "counters": Worker._counters,
    "sessions": Worker._sessions,
}


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode()


def _item_text(item: Item | None) -> str | None:
    return None if item is None else item.value.decode()


def assign(workers: int) -> list[str]:
    """Workload of each worker: one each for counters and sessions, the rest on registers."""
    return ["counters", "sessions", *["registers"] * (workers - 2)]


def start_workers(config: WorkloadConfig, history: HistoryWriter) -> list[Worker]:
    workers = [Worker(i, w, config, history) for i, w in enumerate(assign(config.workers))]
    for worker in workers:
        worker.start()
    return workers


def stop_workers(workers: Sequence[Worker], timeout: float = 10.0) -> list[str]:
    """Stop and join every worker; returns the errors that ended any of them early."""
    for worker in workers:
        worker.stop()
    errors = []
    for worker in workers:
        worker.join(timeout)
        if worker.error is not None:
            errors.append(f"{worker.workload} worker: {worker.error!r}")
    return errors
