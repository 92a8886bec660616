"""Operation histories of a chaos run: one JSON line per completed client operation.

A record is ``{"process", "op", "key", "value", "result", "invoke", "complete",
"outcome"}``; ``invoke`` and ``complete`` come from one monotonic clock (seconds).
``value`` is the written value for set, the value read (or null) for get,
``[old, new]`` for cas, the delta for incr, the element for append (to a list) and the
whole list for read (of a list), the element for sadd and the sorted members for smembers
(of a set); ``result`` is the new counter value for incr,
true/false for cas, the list's length after an append and null otherwise. ``outcome``
is "ok", "fail" (definitely not applied) or "unknown" (may or may not have applied;
``complete`` is when the client gave up).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, TextIO, cast, get_args

OpName = Literal[
    "get", "set", "cas", "incr", "delete", "append", "read", "enqueue", "dequeue",
    "sadd", "smembers",
]  # fmt: skip
Outcome = Literal["ok", "fail", "unknown"]

OP_NAMES: frozenset[str] = frozenset(get_args(OpName))
OUTCOMES: frozenset[str] = frozenset(get_args(Outcome))
WRITE_OPS: frozenset[str] = frozenset({"set", "cas", "incr", "delete", "append", "enqueue", "sadd"})


@dataclass(frozen=True)
class Op:
    """One completed client operation, as recorded in a history."""

    process: int
    op: OpName
    key: str
    value: Any
    result: Any
    invoke: float
    complete: float
    outcome: Outcome

    def to_json(self) -> str:
        """The record as one JSON line (without the newline)."""
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Op:
        """Validate and build an op from a decoded record; raises ValueError on bad input."""
        missing = {f for f in _FIELDS if f not in raw}
        if missing:
            raise ValueError(f"record lacks field(s) {sorted(missing)}")
        if raw["op"] not in OP_NAMES:
            raise ValueError(f"unknown op {raw['op']!r}; expected one of {sorted(OP_NAMES)}")
        if raw["outcome"] not in OUTCOMES:
            raise ValueError(f"unknown outcome {raw['outcome']!r}; expected {sorted(OUTCOMES)}")
        if not isinstance(raw["key"], str) or not isinstance(raw["process"], int):
            raise ValueError("key must be a string and process an integer")
        invoke, complete = float(raw["invoke"]), float(raw["complete"])
        if complete < invoke:
            raise ValueError(f"complete {complete} is before invoke {invoke}")
        value = raw["value"]
        if raw["op"] == "cas" and (not isinstance(value, list | tuple) or len(value) != 2):
            raise ValueError(f"cas value must be [old, new], got {value!r}")
        if raw["op"] == "read" and raw["outcome"] == "ok" and not isinstance(value, list):
            raise ValueError(f"an ok read's value must be the list read, got {value!r}")
        return cls(
            process=raw["process"],
            op=cast(OpName, raw["op"]),
            key=raw["key"],
            value=tuple(value) if raw["op"] == "cas" else value,
            result=raw["result"],
            invoke=invoke,
            complete=complete,
            outcome=cast(Outcome, raw["outcome"]),
        )


_FIELDS = ("process", "op", "key", "value", "result", "invoke", "complete", "outcome")


class JsonLines:
    """An append-only JSON-lines file, each line flushed as it is written (thread-safe);
    `clock` stamps what is written (one monotonic clock for every file of a run).

    Writes take a short threading lock and never await, so one file serves threads and
    asyncio tasks alike."""

    def __init__(self, path: str | Path, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(path)
        self.clock = clock
        self._lock = threading.Lock()
        self._file: TextIO | None = self.path.open("a", encoding="utf-8")

    def _append(self, line: str, after_close: Literal["raise", "drop"] = "raise") -> None:
        with self._lock:
            if self._file is None:
                if after_close == "drop":
                    return
                raise RuntimeError(f"{self.path} is closed; no more records accepted")
            self._file.write(line + "\n")
            self._file.flush()

    def close(self) -> None:
        """Flush and close the file; later writes raise (or are dropped, where allowed)."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


class HistoryWriter(JsonLines):
    """The history: one completed operation per line."""

    def write(self, op: Op) -> None:
        """Append one record and flush it."""
        self._append(op.to_json())

    def begin(self, process: int, op: OpName, key: str, value: Any = None) -> Recorder:
        """Stamp the invoke time of an operation; finish it with the returned recorder."""
        if op not in OP_NAMES:
            raise ValueError(f"unknown op {op!r}; expected one of {sorted(OP_NAMES)}")
        return Recorder(self, process, op, key, value, self.clock())

    def __enter__(self) -> HistoryWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RecordLog(JsonLines):
    """Records of the streams a run follows (watch.jsonl, pubsub.jsonl): one JSON object a
    line, `what` it is and the `time` it was written. A thread still finishing after the
    run closed the file is not an error: its late records are dropped."""

    def write(self, what: str, **fields: Any) -> None:
        record = {"what": what, "time": self.clock(), **fields}
        self._append(json.dumps(record, separators=(",", ":"), sort_keys=True), "drop")


def read_records(path: Path) -> list[dict[str, Any]]:
    """The records of a RecordLog file, in file order ([] when it was never written)."""
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


class Recorder:
    """An invoked operation; exactly one of ok/fail/unknown stamps completion and writes it."""

    def __init__(
        self, writer: HistoryWriter, process: int, op: OpName, key: str, value: Any, invoke: float
    ) -> None:
        self._writer = writer
        self.process = process
        self.op: OpName = op
        self.key = key
        self.value = tuple(value) if op == "cas" else value
        self.invoke = invoke
        self._done = False

    def ok(self, result: Any = None, value: Any = None) -> Op:
        """The operation succeeded; for get, read and smembers pass the value read as
        ``value`` (or ``result``)."""
        if self.op in ("get", "read", "dequeue", "smembers"):
            value = value if value is not None else result
            return self._finish("ok", None, value)
        return self._finish("ok", result, self.value)

    def fail(self) -> Op:
        """The operation was definitely not applied."""
        return self._finish("fail", None, self.value)

    def unknown(self) -> Op:
        """The client gave up without knowing whether the operation was applied."""
        return self._finish("unknown", None, self.value)

    def _finish(self, outcome: Outcome, result: Any, value: Any) -> Op:
        if self._done:
            raise RuntimeError(f"{self.op} on {self.key!r} was already recorded")
        self._done = True
        record = Op(
            process=self.process,
            op=self.op,
            key=self.key,
            value=value,
            result=result,
            invoke=self.invoke,
            complete=max(self._writer.clock(), self.invoke),
            outcome=outcome,
        )
        self._writer.write(record)
        return record


def read_history(path: str | Path) -> list[Op]:
    """Every record of a history file, in file order; a bad line raises ValueError naming it."""
    ops: list[Op] = []
    with Path(path).open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
                if not isinstance(raw, dict):
                    raise ValueError("record is not a JSON object")
                ops.append(Op.from_dict(raw))
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{path}:{lineno}: bad history record: {exc}") from exc
    return ops
