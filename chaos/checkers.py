"""Correctness checkers over chaos histories; each returns a JSON-able Verdict.

``valid`` is True (proved), False (a violation was found; ``details`` says where)
or "unknown" (the check could not finish, e.g. the time budget ran out). An
"unknown" is never a pass.
"""

from __future__ import annotations

import bisect
import math
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from typing import Any, Literal

from raftcache.chaos.history import WRITE_OPS, Op

Validity = bool | Literal["unknown"]
State = Hashable

_DEADLINE_CHECK_EVERY = 256


@dataclass
class Verdict:
    """The outcome of one checker."""

    name: str
    valid: Validity
    details: dict[str, Any] = field(default_factory=dict)
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The verdict as a JSON-able dict."""
        return asdict(self)


def _freeze(value: Any) -> State:
    """A hashable form of a JSON value (lists become tuples)."""
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    result: State = value
    return result


def _as_int(value: Any) -> int | None:
    """A counter value as an int (absent counts as 0), or None if it is not an integer."""
    if value is None:
        return 0
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return None
    return None


def _same(state: State, read: State) -> bool:
    """Whether a read value matches the register state (counters may be read as strings)."""
    if state == read:
        return True
    if isinstance(state, int) and not isinstance(state, bool) and isinstance(read, str):
        return _as_int(read) == state
    return False


def _describe(op: Op) -> dict[str, Any]:
    record = asdict(op)
    if math.isinf(op.complete):
        record["complete"] = None
    return record


# --- linearizability -------------------------------------------------------------------


def _step(state: State, op: Op) -> tuple[bool, State]:
    """Apply op to a register in state: (legal?, next state).

    An unknown-outcome op only reaches here when the search chose to linearize it,
    i.e. to assume it took effect; a failed-looking unknown cas is a no-op.
    """
    kind = op.op
    if kind == "get":
        return _same(state, _freeze(op.value)), state
    if kind == "set":
        return True, _freeze(op.value)
    if kind == "delete":
        return True, None
    if kind == "cas":
        old, new = _freeze(op.value[0]), _freeze(op.value[1])
        matches = _same(state, old)
        if op.outcome == "ok" and isinstance(op.result, bool):
            return matches == op.result, new if matches else state
        return True, new if matches else state
    base = _as_int(state)
    if base is None:
        return False, state
    after = base + int(op.value)
    if op.outcome == "ok" and op.result is not None:
        return _as_int(op.result) == after, after
    return True, after


def _written_values(ops: Iterable[Op]) -> set[State]:
    """Every value a set or cas in ops may have written."""
    values: set[State] = set()
    for op in ops:
        if op.op == "set":
            values.add(_freeze(op.value))
        elif op.op == "cas" and not (op.outcome == "ok" and op.result is False):
            values.add(_freeze(op.value[1]))
    return values


def _register_ops(ops: Sequence[Op]) -> dict[str, list[Op]]:
    """Per key, the ops the register search must consider, sorted by invoke.

    Failed ops never happened; unknown reads carry no information; unknown
    writes get complete = +inf (they may take effect any time after invoke).
    """
    per_key: dict[str, list[Op]] = defaultdict(list)
    for op in ops:
        if op.outcome == "fail" or (op.outcome == "unknown" and op.op == "get"):
            continue
        if op.outcome == "unknown":
            op = Op(op.process, op.op, op.key, op.value, None, op.invoke, math.inf, "unknown")
        per_key[op.key].append(op)
    for key_ops in per_key.values():
        key_ops.sort(key=lambda o: (o.invoke, o.complete))
    return dict(per_key)


@dataclass
class _KeyResult:
    valid: Validity
    violation: dict[str, Any] | None = None
    explored: int = 0


def _unexplained_read(key_ops: Sequence[Op]) -> Op | None:
    """An ok read of a value no write could have produced (skipped for counter keys)."""
    if any(op.op == "incr" for op in key_ops):
        return None
    written = _written_values(key_ops)
    for op in key_ops:
        if op.op == "get" and op.outcome == "ok":
            read = _freeze(op.value)
            if read is not None and read not in written:
                return op
    return None


def _prune_unobserved(key_ops: Sequence[Op]) -> list[Op]:
    """Drop unknown writes whose value no read or cas ever observed.

    Applying such a write can only break later reads, so the search may as well
    never apply it, unless some ok cas failed: a write nobody read could explain
    that failure, so then nothing is pruned.
    """
    if any(
        op.op == "incr" or (op.op == "cas" and op.outcome == "ok" and op.result is False)
        for op in key_ops
    ):
        return list(key_ops)
    observed: set[State] = set()
    for op in key_ops:
        if op.op == "get" and op.outcome == "ok":
            observed.add(_freeze(op.value))
        elif op.op == "cas":
            observed.add(_freeze(op.value[0]))
    kept = []
    for op in key_ops:
        unobserved = op.op in ("set", "cas", "delete") and _written(op) not in observed
        if not (op.outcome == "unknown" and unobserved):
            kept.append(op)
    return kept


class _Usefulness:
    """Whether applying an unknown write now could help explain a pending op.

    An unknown write that no pending op could observe (no pending read of its value,
    no pending cas expecting it) and that cannot make a pending failed cas fail
    might as well be skipped, so the search does not try it. Counter keys are
    exempt: every unknown incr is always tried.
    """

    def __init__(self, key_ops: Sequence[Op]) -> None:
        self.exempt = any(op.op == "incr" for op in key_ops)
        self.observed: dict[State, int] = defaultdict(int)
        self.failed_cas_old: dict[State, int] = defaultdict(int)
        for op in key_ops:
            self.pending(op, +1)

    def pending(self, op: Op, delta: int) -> None:
        """Count op as pending (+1) or no longer pending (-1)."""
        if op.op == "get" and op.outcome == "ok":
            self.observed[_freeze(op.value)] += delta
        elif op.op == "cas":
            if op.outcome == "ok" and op.result is False:
                self.failed_cas_old[_freeze(op.value[0])] += delta
            else:
                self.observed[_freeze(op.value[0])] += delta

    def now(self, op: Op, state: State) -> bool:
        """Whether the unknown op is worth applying in state."""
        if self.exempt:
            return True
        if op.op == "cas" and not _same(state, _freeze(op.value[0])):
            return False  # it would be a no-op, the same as skipping it
        return self.observed[_written(op)] > 0 or self.failed_cas_old[state] > 0


def _search_key(all_ops: Sequence[Op], deadline: float) -> _KeyResult:
    """Wing & Gong / Lowe search with (linearized bitmask, state) memoization."""
    bad_read = _unexplained_read(all_ops)
    if bad_read is not None:
        violation = {"reason": "read of a value that was never written", "op": _describe(bad_read)}
        return _KeyResult(False, violation)
    key_ops = _prune_unobserved(all_ops)
    n = len(key_ops)
    invokes = [op.invoke for op in key_ops]
    oks = [i for i in range(n) if key_ops[i].outcome == "ok"]
    oks_by_complete = sorted(oks, key=lambda i: key_ops[i].complete)
    unknowns = [i for i in range(n) if key_ops[i].outcome != "ok"]
    if not oks:
        return _KeyResult(True)
    required = sum(1 << i for i in oks)
    linearized = bytearray(n)  # mirrors the mask of the frame on top of the stack
    useful = _Usefulness(key_ops)

    unknown_bit = {u: 1 << k for k, u in enumerate(unknowns)}

    def advance(lo: int, hc: int) -> tuple[int, int]:
        # Skip past linearized ok ops in invoke order and in complete order.
        while lo < len(oks) and linearized[oks[lo]]:
            lo += 1
        while hc < len(oks_by_complete) and linearized[oks_by_complete[hc]]:
            hc += 1
        return lo, hc

    def candidates(state: State, lo: int, hc: int) -> list[int]:
        # An op may go next iff no unlinearized op completed before it was invoked;
        # ok ops are tried in invoke order, then unknown ones (whose complete is +inf).
        horizon = key_ops[oks_by_complete[hc]].complete if hc < len(oks) else math.inf
        cands: list[int] = []
        for j in range(lo, len(oks)):
            if invokes[oks[j]] > horizon:
                break
            if not linearized[oks[j]]:
                cands.append(oks[j])
        cands += [
            u
            for u in unknowns
            if not linearized[u] and invokes[u] <= horizon and useful.now(key_ops[u], state)
        ]
        return cands

    initial: State = None
    # Frame: [ok mask, state, candidates, next candidate, lo, hc, placed op, ok count,
    # unknown mask]; the ok mask is over op positions, the unknown mask over `unknowns`.
    stack: list[list[Any]] = [[0, initial, candidates(initial, 0, 0), 0, 0, 0, -1, 0, 0]]
    # Memo: (ok ops linearized, state) -> the sets of unknown ops linearized with it.
    # Having applied more unknown ops never helps (each could have been skipped), so a
    # visit is redundant when an earlier one had a subset of its unknown ops applied.
    # The ok mask is keyed as (lo, mask >> position of oks[lo]): every ok op before
    # oks[lo] is linearized, so this is exact and stays small on long histories.
    seen: dict[tuple[int, int, State], list[int]] = {(0, 0, initial): [0]}
    best: tuple[int, int, State] = (0, 0, initial)
    explored = 0
    while stack:
        top = stack[-1]
        ok_mask, state, cands, pos, lo, hc, placed, done, unknown_mask = top
        if pos >= len(cands):
            stack.pop()
            if placed >= 0:
                linearized[placed] = 0
                useful.pending(key_ops[placed], +1)
            continue
        top[3] = pos + 1
        explored += 1
        if explored % _DEADLINE_CHECK_EVERY == 0 and time.monotonic() > deadline:
            return _KeyResult("unknown", explored=explored)
        i = cands[pos]
        legal, after = _step(state, key_ops[i])
        if not legal:
            continue
        if i in unknown_bit:
            n_ok, n_unknown, ndone = ok_mask, unknown_mask | unknown_bit[i], done
        else:
            n_ok, n_unknown, ndone = ok_mask | 1 << i, unknown_mask, done + 1
        if ndone == len(oks):
            return _KeyResult(True, explored=explored)
        linearized[i] = 1
        nlo, nhc = advance(lo, hc)
        visits = seen.setdefault((nlo, n_ok >> oks[nlo] if nlo < len(oks) else 0, after), [])
        if any(prev & ~n_unknown == 0 for prev in visits):
            linearized[i] = 0
            continue
        visits.append(n_unknown)
        if ndone > best[0]:
            best = (ndone, n_ok, after)
        useful.pending(key_ops[i], -1)
        stack.append([n_ok, after, candidates(after, nlo, nhc), 0, nlo, nhc, i, ndone, n_unknown])
    return _KeyResult(False, _stuck(key_ops, best, required), explored)


def _stuck(key_ops: Sequence[Op], best: tuple[int, int, State], required: int) -> dict[str, Any]:
    """Describe the longest linearizable prefix and the ok op that cannot follow it."""
    done, mask, state = best
    pending = [i for i in range(len(key_ops)) if required >> i & 1 and not mask >> i & 1]
    blocker = min(pending, key=lambda i: key_ops[i].complete)
    return {
        "reason": "no linearization explains this op",
        "op": _describe(key_ops[blocker]),
        "register_before": state,
        "linearized_ok_ops": done,
    }


def check_linearizable_registers(ops: Sequence[Op], time_budget_s: float = 10.0) -> Verdict:
    """Every key behaves as a linearizable register (get/set/cas/delete, incr as a counter)."""
    name = "linearizable_registers"
    per_key = _register_ops(ops)
    keys = sorted(per_key)
    started = time.monotonic()
    end = started + time_budget_s
    unknown_keys: list[str] = []
    first_violation: dict[str, Any] | None = None
    invalid_keys: list[str] = []
    explored: dict[str, int] = {}
    for idx, key in enumerate(keys):
        now = time.monotonic()
        share = max(0.0, end - now) / (len(keys) - idx)
        result = _search_key(per_key[key], now + share)
        explored[key] = result.explored
        if result.valid == "unknown":
            unknown_keys.append(key)
        elif result.valid is False:
            invalid_keys.append(key)
            if first_violation is None:
                first_violation = {"key": key, **(result.violation or {})}
    details: dict[str, Any] = {
        "keys_checked": len(keys),
        "ops_per_key": {k: len(per_key[k]) for k in keys},
        "states_explored": explored,
        "invalid_keys": invalid_keys,
        "unknown_keys": unknown_keys,
        "first_violation": first_violation,
        "elapsed_s": round(time.monotonic() - started, 4),
    }
    if first_violation is not None:
        op = first_violation["op"]
        message = (
            f"key {first_violation['key']!r} is not linearizable: {first_violation['reason']}: "
            f"{op['op']} by process {op['process']} value={op['value']!r} "
            f"result={op['result']!r} invoked at {op['invoke']:.6f}"
        )
        if "register_before" in first_violation:
            message += f" (register held {first_violation['register_before']!r})"
        return Verdict(name, False, details, message)
    if unknown_keys:
        message = (
            f"time budget of {time_budget_s}s ran out for key(s) {unknown_keys}; "
            "linearizability is unproven there (raise time_budget_s or shorten the run)"
        )
        return Verdict(name, "unknown", details, message)
    return Verdict(name, True, details, f"{len(keys)} key(s) linearizable")


# --- counters --------------------------------------------------------------------------


def _window_bounds(
    incrs: Sequence[Op], start: float, end: float, exclude: Op | None = None
) -> tuple[int, int]:
    """Bounds on the sum of deltas applied by a point inside [start, end].

    Acked incrs that completed before start count surely; acked ones overlapping
    the window and unknown ones invoked before end may or may not count.
    """
    lo = hi = 0
    for op in incrs:
        if op is exclude:
            continue
        delta = int(op.value)
        if op.outcome == "ok" and op.complete < start:
            lo += delta
            hi += delta
        elif op.invoke <= end:
            if delta > 0:
                hi += delta
            else:
                lo += delta
    return lo, hi


class _Bounds:
    """_window_bounds for many windows of one key in O(log n) each (a 30-minute run has tens
    of thousands of incrs per key: the plain scan per acked incr was quadratic)."""

    def __init__(self, incrs: Sequence[Op]) -> None:
        acked = sorted((op for op in incrs if op.outcome == "ok"), key=lambda o: o.complete)
        self._acked_at = [op.complete for op in acked]
        self._acked = _prefix([int(op.value) for op in acked])
        self._acked_pos = _prefix([max(int(op.value), 0) for op in acked])
        self._acked_neg = _prefix([min(int(op.value), 0) for op in acked])
        invoked = sorted(incrs, key=lambda o: o.invoke)
        self._invoked_at = [op.invoke for op in invoked]
        self._invoked_pos = _prefix([max(int(op.value), 0) for op in invoked])
        self._invoked_neg = _prefix([min(int(op.value), 0) for op in invoked])

    def bounds(self, start: float, end: float, exclude: Op | None = None) -> tuple[int, int]:
        """As _window_bounds: acked incrs completed before start count surely (they were
        all invoked by end too); every other one invoked by end may count."""
        a = bisect.bisect_left(self._acked_at, start)  # complete < start
        i = bisect.bisect_right(self._invoked_at, end)  # invoke <= end
        sure = self._acked[a]
        hi = sure + self._invoked_pos[i] - self._acked_pos[a]
        lo = sure + self._invoked_neg[i] - self._acked_neg[a]
        if exclude is not None and exclude.invoke <= end:
            if not (exclude.outcome == "ok" and exclude.complete < start):
                delta = int(exclude.value)
                hi -= max(delta, 0)
                lo -= min(delta, 0)
            else:  # excluded from the sure ones
                lo -= int(exclude.value)
                hi -= int(exclude.value)
        return lo, hi


def _prefix(values: Sequence[int]) -> list[int]:
    out = [0]
    for v in values:
        out.append(out[-1] + v)
    return out


def _check_counter(key: str, key_ops: Sequence[Op], final: int | None) -> list[dict[str, Any]]:
    incrs = [op for op in key_ops if op.op == "incr" and op.outcome != "fail"]
    violations: list[dict[str, Any]] = []
    if final is not None:
        lo, hi = _window_bounds(incrs, math.inf, math.inf)
        if not lo <= final <= hi:
            violations.append(
                {
                    "key": key,
                    "reason": "final value out of bounds",
                    "final": final,
                    "min": lo,
                    "max": hi,
                }
            )
    deltas = [int(op.value) for op in incrs]
    monotone = all(d > 0 for d in deltas) or all(d < 0 for d in deltas)
    window = _Bounds(incrs)
    seen: dict[int, Op] = {}
    for op in incrs:
        result = _as_int(op.result) if op.outcome == "ok" and op.result is not None else None
        if result is None:
            continue
        lo, hi = window.bounds(op.invoke, op.complete, exclude=op)
        delta = int(op.value)
        if not lo + delta <= result <= hi + delta:
            violations.append(
                {
                    "key": key,
                    "reason": "incr result out of bounds",
                    "op": _describe(op),
                    "min": lo + delta,
                    "max": hi + delta,
                }
            )
        if monotone and result in seen:
            violations.append(
                {
                    "key": key,
                    "reason": "two acked incrs returned the same value",
                    "ops": [_describe(seen[result]), _describe(op)],
                }
            )
        seen[result] = op
    return violations


def _final_from_reads(key_ops: Sequence[Op]) -> tuple[int | None, float, float]:
    reads = [op for op in key_ops if op.op == "get" and op.outcome == "ok"]
    if not reads:
        return None, math.inf, math.inf
    last = max(reads, key=lambda o: o.invoke)
    return _as_int(last.value), last.invoke, last.complete


def check_counters(ops: Sequence[Op], final_values: Mapping[str, int] | None = None) -> Verdict:
    """Counters reflect every acked incr exactly once and unknown ones at most once."""
    name = "counters"
    per_key: dict[str, list[Op]] = defaultdict(list)
    for op in ops:
        per_key[op.key].append(op)
    keys = sorted(k for k, v in per_key.items() if any(op.op == "incr" for op in v))
    violations: list[dict[str, Any]] = []
    finals: dict[str, int | None] = {}
    for key in keys:
        key_ops = per_key[key]
        incrs = [op for op in key_ops if op.op == "incr" and op.outcome != "fail"]
        if final_values is not None and key in final_values:
            finals[key] = _as_int(final_values[key])
            if finals[key] is None:
                violations.append(
                    {
                        "key": key,
                        "reason": "final value is not an integer",
                        "final": final_values[key],
                    }
                )
            violations += _check_counter(key, key_ops, finals[key])
            continue
        final, start, end = _final_from_reads(key_ops)
        if final is None and not math.isinf(start):
            violations.append({"key": key, "reason": "last read is not an integer"})
        finals[key] = final
        violations += _check_counter(key, key_ops, None)
        if final is not None and not math.isinf(start):
            lo, hi = _window_bounds(incrs, start, end)
            if not lo <= final <= hi:
                violations.append(
                    {
                        "key": key,
                        "reason": "last read out of bounds",
                        "final": final,
                        "min": lo,
                        "max": hi,
                    }
                )
    details = {"keys_checked": keys, "final_values": finals, "violations": violations}
    if violations:
        first = violations[0]
        return Verdict(name, False, details, f"counter {first['key']!r}: {first['reason']}")
    return Verdict(name, True, details, f"{len(keys)} counter(s) within bounds")


# --- lost writes -----------------------------------------------------------------------


def _written(op: Op) -> State:
    if op.op == "delete":
        return None
    if op.op == "cas":
        return _freeze(op.value[1])
    return _freeze(op.value)


def check_no_lost_writes(
    ops: Sequence[Op],
    final_reads: Mapping[str, Any],
    expiring_keys: Collection[str] = (),
) -> Verdict:
    """Each key's final value is its last acked write or a write that may follow it.

    Counter keys are left to check_counters. Keys in expiring_keys (written with a
    TTL) may also read as absent.
    """
    name = "no_lost_writes"
    per_key: dict[str, list[Op]] = defaultdict(list)
    for op in ops:
        per_key[op.key].append(op)
    lost: list[dict[str, Any]] = []
    checked: list[str] = []
    for key in sorted(final_reads):
        key_ops = per_key.get(key, [])
        if any(op.op == "incr" for op in key_ops):
            continue
        checked.append(key)
        final = _freeze(final_reads[key])
        problem = _lost_write(key_ops, final, key in expiring_keys)
        if problem is not None:
            lost.append({"key": key, "final": final, **problem})
    unread = sorted({op.key for op in ops if op.op in WRITE_OPS} - set(final_reads))
    details = {"keys_checked": len(checked), "lost": lost, "unread_keys": unread}
    if lost:
        keys = [entry["key"] for entry in lost]
        return Verdict(name, False, details, f"{len(lost)} key(s) lost writes: {keys}")
    return Verdict(name, True, details, f"{len(checked)} key(s) hold their last write")


def _lost_write(key_ops: Sequence[Op], final: State, may_expire: bool) -> dict[str, Any] | None:
    writes = [
        op
        for op in key_ops
        if op.op in ("set", "delete", "cas")
        and op.outcome != "fail"
        and not (op.op == "cas" and op.outcome == "ok" and op.result is False)
    ]
    acked = [op for op in writes if op.outcome == "ok"]
    if may_expire and final is None:
        return None
    if not acked:
        if final is None or final in {_written(op) for op in writes}:
            return None
        return {"reason": "final value was never written"}
    last = max(acked, key=lambda o: o.complete)
    allowed = {_written(last)}
    for op in writes:
        complete = math.inf if op.outcome == "unknown" else op.complete
        if op is not last and complete > last.invoke:
            allowed.add(_written(op))
    if any(_same(value, final) for value in allowed):
        return None
    return {
        "reason": "last acked write missing",
        "expected": _written(last),
        "write": _describe(last),
    }


# --- watch ---------------------------------------------------------------------------------

_LISTED = 20  # violations and missing writes listed in a verdict's details


def check_watch(
    records: Sequence[Mapping[str, Any]],
    ops: Sequence[Op],
    final_reads: Mapping[str, Any] | None,
    marker: tuple[str, str],
    prefix: str = "r:",
) -> Verdict:
    """The SDK watches of a run (chaos/watch.py records) against the writes they followed:

    - order: each watcher's revisions strictly increase;
    - provenance: each delivered value was written to that key by a set, or by a cas that
      applied, that did not fail; each is delivered once;
    - completeness: each acknowledged write invoked after its watcher started is
      delivered, unless it overlaps a gap where no member still retained the revision to
      resume from (a "compacted" record: the watch started again from now);
    - write order: a write acknowledged before another was invoked is delivered at a lower
      revision (revisions are the order the cluster applied them in);
    - the end: each watcher delivered `marker` (key, value), written after the writers
      stopped, and each key's last delivered value is its final read, or a value whose write
      is still of unknown outcome (it may have applied after the marker).
    """
    name = "watch"
    writes: dict[tuple[str, Any], Op] = {}
    for op in ops:
        if op.key.startswith(prefix) and op.op in ("set", "cas"):
            writes[(op.key, _written(op))] = op
    by_watcher: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    for record in records:
        by_watcher[int(record["watcher"])].append(record)
    violations: list[dict[str, Any]] = []
    missing: list[dict[str, Any]] = []
    stats: dict[int, Counter[str]] = {}
    acked_checked = 0
    for watcher, recs in sorted(by_watcher.items()):
        seen, gaps, counts, last = _follow_watch(recs, writes, marker, violations)
        stats[watcher] = counts
        starts = [r["time"] for r in recs if r["what"] == "start"]
        if not starts:
            violations.append({"watcher": watcher, "problem": "the watch never started"})
            continue
        if counts["marker"] == 0:
            violations.append(
                {"watcher": watcher, "problem": "the end marker was never delivered (stalled)"}
            )
        for (key, value), op in writes.items():
            if not _applied_ack(op) or op.invoke < starts[0]:
                continue
            acked_checked += 1
            if (key, value) in seen or any(
                op.complete >= lo and op.invoke <= hi for lo, hi in gaps
            ):
                continue
            missing.append({"watcher": watcher, "key": key, "value": value, "write": _describe(op)})
        _check_write_order(watcher, seen, writes, violations)
        if final_reads is not None and counts["marker"]:
            _check_watch_final(watcher, last, final_reads, writes, prefix, violations)
    details: dict[str, Any] = {
        "watchers": {w: dict(c) for w, c in stats.items()},
        "acked_writes_checked": acked_checked,
        "missing": missing[:_LISTED],
        "missing_count": len(missing),
        "violations": violations[:_LISTED],
        "violation_count": len(violations),
    }
    if not by_watcher:
        return Verdict(name, "unknown", details, "no watch records: the watchers did not run")
    if violations or missing:
        first = (violations or missing)[0]
        return Verdict(
            name,
            False,
            details,
            f"{len(violations)} violation(s), {len(missing)} acknowledged write(s) never "
            f"delivered; first: {first}",
        )
    events = sum(c["event"] for c in stats.values())
    resumed = sum(c["resumes"] for c in stats.values())
    return Verdict(
        name,
        True,
        details,
        f"{len(stats)} watcher(s) delivered {events} change(s) in order, each once, "
        f"{acked_checked} acknowledged write(s) all among them; {resumed} resume(s)",
    )


def _applied_ack(op: Op) -> bool:
    """An acknowledged write that applied (a cas answered True)."""
    return op.outcome == "ok" and not (op.op == "cas" and op.result is not True)


def _follow_watch(
    recs: Sequence[Mapping[str, Any]],
    writes: Mapping[tuple[str, Any], Op],
    marker: tuple[str, str],
    violations: list[dict[str, Any]],
) -> tuple[dict[tuple[str, Any], int], list[tuple[float, float]], Counter[str], dict[str, Any]]:
    """One watcher's records in order: the revision of each (key, value) delivered, the time
    gaps a "compacted" restart leaves, the counts, and each key's last delivered value.

    A gap starts when the write of the last change delivered before it was invoked (a write
    acknowledged before that had a lower revision, so it was not in the gap; one acknowledged
    later may have been, even before the watcher logged that change: a watch on a follower
    lags the leader's answers), or at the beginning of time when no change was delivered
    since the watch (re)started; it ends when the watch started again."""
    seen: dict[tuple[str, Any], int] = {}
    gaps: list[tuple[float, float]] = []
    counts: Counter[str] = Counter()
    last: dict[str, Any] = {}
    revision = 0
    since = -math.inf  # invoke time of the last delivered write since the watch (re)started
    gap_from: float | None = None
    for rec in recs:
        what = rec["what"]
        counts[what] += 1
        if what == "end":
            counts["resumes"] += int(rec.get("value") or 0)
        elif what == "compacted":
            gap_from = since if gap_from is None else gap_from
        elif what == "start":
            if gap_from is not None:
                gaps.append((gap_from, rec["time"]))
                gap_from = None
            since = -math.inf
        elif what == "event":
            key, value, rev = rec["key"], rec.get("value"), int(rec["revision"])
            where = {"watcher": rec["watcher"], "key": key, "value": value, "revision": rev}
            if rev <= revision:
                violations.append({**where, "problem": f"revision not above {revision}"})
            revision = max(revision, rev)
            if (key, value) == marker:
                counts["marker"] += 1
                continue
            op = writes.get((key, value))
            if rec.get("kind") != "set":
                violations.append({**where, "problem": f"a {rec.get('kind')} event"})
            elif op is None:
                violations.append({**where, "problem": "a value never written to this key"})
            elif op.outcome == "fail" or (op.op == "cas" and op.outcome == "ok" and not op.result):
                violations.append(
                    {**where, "problem": "the write did not apply", "write": _describe(op)}
                )
            elif (key, value) in seen:
                violations.append(
                    {**where, "problem": f"delivered again (first at {seen[key, value]})"}
                )
            seen[(key, value)] = rev
            last[key] = value
            if op is not None:
                since = op.invoke
    return seen, gaps, counts, last


def _check_write_order(
    watcher: int,
    seen: Mapping[tuple[str, Any], int],
    writes: Mapping[tuple[str, Any], Op],
    violations: list[dict[str, Any]],
) -> None:
    """In revision order (one order over every key), no acknowledged write may have been
    invoked after a later-revision acknowledged write completed."""
    delivered = sorted(
        (
            (rev, op)
            for pair, rev in seen.items()
            if (op := writes.get(pair)) is not None and _applied_ack(op)
        ),
        key=lambda pair: pair[0],
    )
    latest: tuple[int, Op] | None = None  # the latest-invoked write so far
    for rev, op in delivered:
        if latest is not None and latest[1].invoke > op.complete:
            violations.append(
                {
                    "watcher": watcher,
                    "key": op.key,
                    "problem": f"revision {latest[0]} was written after revision {rev} was "
                    "acknowledged, yet comes before it",
                    "acknowledged_first": _describe(op),
                    "invoked_after": _describe(latest[1]),
                }
            )
        if latest is None or op.invoke > latest[1].invoke:
            latest = (rev, op)


def _check_watch_final(
    watcher: int,
    last: Mapping[str, Any],
    final_reads: Mapping[str, Any],
    writes: Mapping[tuple[str, Any], Op],
    prefix: str,
    violations: list[dict[str, Any]],
) -> None:
    for key, final in final_reads.items():
        if not key.startswith(prefix) or key not in last or _same(last[key], final):
            continue
        op = writes.get((key, _freeze(final)))
        if op is not None and op.outcome == "unknown":
            continue  # may have applied after the marker
        violations.append(
            {
                "watcher": watcher,
                "key": key,
                "problem": "the last delivered value is not the final read",
                "delivered": last[key],
                "final": final,
            }
        )


# --- pub/sub -------------------------------------------------------------------------------


def check_pubsub(records: Sequence[Mapping[str, Any]], marker_prefix: str = "end-") -> Verdict:
    """Pub/sub sessions (chaos/pubsub.py records) against the publishes: at most once, so
    no completeness, but no message never published or whose publish failed, none on
    another channel, none twice in one session, a publisher's acknowledged messages in
    order within a session, the messages two sessions share in one order (every node
    delivers in log order), and an end marker at every subscriber after the faults."""
    name = "pubsub"
    published: dict[str, Mapping[str, Any]] = {}
    sessions: dict[tuple[int, int], list[Mapping[str, Any]]] = defaultdict(list)
    subscribers: set[int] = set()
    for record in records:
        what = record["what"]
        if what == "publish":
            published[record["message"]] = record
        elif what in ("message", "subscribed", "break"):
            subscribers.add(int(record["subscriber"]))
            if what == "message":
                sessions[(int(record["subscriber"]), int(record["session"]))].append(record)
    violations: list[dict[str, Any]] = []
    marked: set[int] = set()
    positions: dict[tuple[int, int], dict[str, int]] = {}
    for session, messages in sessions.items():
        positions[session] = _check_session(session, messages, published, violations)
        if any(m.startswith(marker_prefix) for m in positions[session]):
            marked.add(session[0])
    _check_shared_order(positions, violations)
    for subscriber in sorted(subscribers - marked):
        violations.append({"subscriber": subscriber, "problem": "no end marker (stuck)"})
    outcomes = Counter(r["outcome"] for r in published.values())
    delivered = {
        sub: len({m for (s, _), seen in positions.items() if s == sub for m in seen})
        for sub in sorted(subscribers)
    }
    details: dict[str, Any] = {
        "published": dict(outcomes),
        "sessions": dict(Counter(s for s, _ in sessions)),
        "delivered": delivered,
        "violations": violations[:_LISTED],
        "violation_count": len(violations),
    }
    if not subscribers:
        return Verdict(name, "unknown", details, "no subscriber records: pub/sub did not run")
    if violations:
        return Verdict(
            name, False, details, f"{len(violations)} violation(s); first: {violations[0]}"
        )
    return Verdict(
        name,
        True,
        details,
        f"{len(subscribers)} subscriber(s), {len(sessions)} session(s): {sum(delivered.values())} "
        f"deliveries of {outcomes['ok']} acknowledged publishes, none phantom, none twice in "
        "a session, every shared pair in one order; every subscriber got the end marker",
    )


def _check_session(
    session: tuple[int, int],
    messages: Sequence[Mapping[str, Any]],
    published: Mapping[str, Mapping[str, Any]],
    violations: list[dict[str, Any]],
) -> dict[str, int]:
    """One session's checks; returns each message's position in it."""
    seen: dict[str, int] = {}
    last: dict[str, tuple[int, str]] = {}  # publisher -> (n, message) of its last acked one
    for position, record in enumerate(messages):
        message, channel = record["message"], record["channel"]
        where = {"subscriber": session[0], "session": session[1], "message": message}
        publish = published.get(message)
        if publish is None:
            violations.append({**where, "problem": "never published"})
        elif publish["outcome"] == "fail":
            violations.append({**where, "problem": "its publish failed"})
        elif publish["channel"] != channel:
            violations.append({**where, "problem": f"published on {publish['channel']}"})
        if message in seen:
            violations.append({**where, "problem": "delivered twice in one session"})
            continue
        seen[message] = position
        if publish is None or publish["outcome"] != "ok" or publish["publisher"] < 0:
            continue
        publisher, _, n = message.rpartition("-")
        previous = last.get(publisher)
        if previous is not None and int(n) < previous[0]:
            violations.append({**where, "problem": f"after {previous[1]}, acknowledged later"})
        last[publisher] = (int(n), message)
    return seen


def _check_shared_order(
    positions: Mapping[tuple[int, int], Mapping[str, int]], violations: list[dict[str, Any]]
) -> None:
    """Every two sessions order the messages they share the same way."""
    ordered = list(positions.items())
    for i, (a, in_a) in enumerate(ordered):
        for b, in_b in ordered[i + 1 :]:
            previous: str | None = None
            for message in in_a:  # in a's order
                if message not in in_b:
                    continue
                if previous is not None and in_b[message] < in_b[previous]:
                    violations.append(
                        {
                            "sessions": [a, b],
                            "problem": f"{previous} then {message} in the first, "
                            "the other way round in the second",
                        }
                    )
                    break
                previous = message


# --- convergence and availability ------------------------------------------------------


def check_convergence(statuses: Sequence[Mapping[str, Any]]) -> Verdict:
    """All nodes report the same state-machine digest."""
    name = "convergence"
    nodes = [
        {
            "node_id": s.get("node_id"),
            "applied_index": s.get("applied_index"),
            "digest": s.get("digest"),
        }
        for s in statuses
    ]
    details: dict[str, Any] = {"nodes": nodes}
    if not nodes:
        return Verdict(name, "unknown", details, "no node statuses were collected")
    digests = {n["digest"] for n in nodes}
    details["distinct_digests"] = len(digests)
    if len(digests) == 1 and None not in digests:
        return Verdict(name, True, details, f"{len(nodes)} node(s) share one digest")
    by_digest: dict[str, list[Any]] = defaultdict(list)
    for n in nodes:
        by_digest[str(n["digest"])].append(n["node_id"])
    return Verdict(name, False, details, f"nodes diverge: {dict(by_digest)}")


GAP_SHOWN_S = 0.5  # write gaps at least this long are listed (report.html draws them)
_MAX_LISTED_GAPS = 1000
# Blocking by design (BRPOP waits up to its timeout): not a latency under a fault.
_NOT_LATENCY_OPS = frozenset({"dequeue"})


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-quantile (0..1) of values by the nearest-rank method; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def check_unavailability(
    ops: Sequence[Op],
    faults: Sequence[Mapping[str, Any]],
    protocol_of: Callable[[str], str] | None = None,
) -> Verdict:
    """Informational: the longest write gaps overall and during each kind of fault, and the
    latency of acknowledged ops under each kind of fault.

    Gaps run between consecutive acked writes' complete times, with the first
    invoke and last complete of the history as outer boundaries; a gap counts for a fault
    when the two overlap. An op is "under" a fault when its [invoke, complete] overlaps the
    fault's [start, end]; p50/p99/max are over such ok ops (BRPOP's blocking dequeues
    left out), per kind, over every fault ("under_faults") and over the rest ("calm").
    With `protocol_of` (key -> "grpc", "redis", ...) the longest gaps are also given per
    protocol ("by_protocol", overall and per kind): an outage of one front-end or of the
    SDK alone is hidden in the all-writes gap while the others keep writing.
    """
    name = "unavailability"
    acked = [op for op in ops if op.op in WRITE_OPS and op.outcome == "ok"]
    times = sorted(op.complete for op in acked)
    finite = [op.invoke for op in ops] + [op.complete for op in ops if op.outcome != "unknown"]
    bounds = (min(finite), max(finite)) if finite else None
    gaps = _write_gaps(times, bounds)
    longest = max(gaps, key=lambda g: g[1] - g[0], default=(0.0, 0.0))
    per_protocol: dict[str, list[tuple[float, float]]] = {}
    if protocol_of is not None:
        by_protocol_times: dict[str, list[float]] = defaultdict(list)
        for op in acked:
            by_protocol_times[protocol_of(op.key)].append(op.complete)
        per_protocol = {
            proto: _write_gaps(sorted(t), bounds) for proto, t in sorted(by_protocol_times.items())
        }
    gap_ends = [b for _, b in gaps]  # ascending, as are the starts
    protocol_ends = {proto: [b for _, b in g] for proto, g in per_protocol.items()}
    timed = sorted(
        (op for op in ops if op.outcome == "ok" and op.op not in _NOT_LATENCY_OPS),
        key=lambda o: o.invoke,
    )
    invokes = [o.invoke for o in timed]
    longest_op = max((o.complete - o.invoke for o in timed), default=0.0)
    by_kind: dict[str, dict[str, Any]] = {}
    latencies: dict[str, list[float]] = defaultdict(list)
    under: set[int] = set()
    for fault in faults:
        start, end = float(fault["start"]), float(fault["end"])
        kind = str(fault["kind"])
        entry = by_kind.setdefault(kind, {"longest_gap_s": 0.0, "gap": None, "occurrences": 0})
        entry["occurrences"] += 1
        gap = _longest_overlapping(gaps, gap_ends, start, end)
        if gap is not None and gap[1] - gap[0] > entry["longest_gap_s"]:
            entry["longest_gap_s"], entry["gap"] = gap[1] - gap[0], list(gap)
        for proto, proto_gaps in per_protocol.items():
            mine = entry.setdefault("by_protocol", {}).setdefault(proto, 0.0)
            gap = _longest_overlapping(proto_gaps, protocol_ends[proto], start, end)
            if gap is not None and gap[1] - gap[0] > mine:
                entry["by_protocol"][proto] = gap[1] - gap[0]
        lo = bisect.bisect_left(invokes, start - longest_op)
        hi = bisect.bisect_left(invokes, end)
        for j in range(lo, hi):
            if timed[j].complete > start:
                latencies[kind].append(timed[j].complete - timed[j].invoke)
                under.add(j)
    for kind, entry in by_kind.items():
        entry.update(_latency_stats(latencies.get(kind, [])))
    calm = [o.complete - o.invoke for j, o in enumerate(timed) if j not in under]
    faulted = [timed[j].complete - timed[j].invoke for j in under]
    shown = sorted((g for g in gaps if g[1] - g[0] >= GAP_SHOWN_S), key=lambda g: g[0] - g[1])
    details: dict[str, Any] = {
        "acked_writes": len(times),
        "longest_gap_s": longest[1] - longest[0],
        "longest_gap": list(longest),
        "by_fault": by_kind,
        "by_protocol": {
            proto: max((b - a for a, b in g), default=0.0) for proto, g in per_protocol.items()
        },
        "under_faults": _latency_stats(faulted),
        "calm": _latency_stats(calm),
        # the longest gaps first, at most _MAX_LISTED_GAPS, each [start, end]
        "gaps": [list(g) for g in sorted(shown[:_MAX_LISTED_GAPS])],
    }
    p99 = details["under_faults"]["p99_latency_s"]
    message = f"longest write gap {details['longest_gap_s']:.3f}s over {len(times)} acked writes"
    if p99 is not None:
        message += f"; p99 latency under faults {p99 * 1000:.0f} ms"
    return Verdict(name, True, details, message)


def _write_gaps(
    times: Sequence[float], bounds: tuple[float, float] | None
) -> list[tuple[float, float]]:
    """The gaps between consecutive sorted times, the history's bounds as outer points."""
    points = [*([bounds[0]] if bounds else []), *times, *([bounds[1]] if bounds else [])]
    return [(a, b) for a, b in pairwise(points) if b > a]


def _longest_overlapping(
    gaps: Sequence[tuple[float, float]], ends: Sequence[float], start: float, end: float
) -> tuple[float, float] | None:
    """The longest of the sorted, disjoint gaps (ends: their ends) overlapping [start, end]."""
    best: tuple[float, float] | None = None
    for a, b in gaps[bisect.bisect_right(ends, start) :]:
        if a >= end:
            break
        if best is None or b - a > best[1] - best[0]:
            best = (a, b)
    return best


def _latency_stats(values: Sequence[float]) -> dict[str, Any]:
    return {
        "ops": len(values),
        "p50_latency_s": percentile(values, 0.5),
        "p99_latency_s": percentile(values, 0.99),
        "max_latency_s": max(values, default=None),
    }


# --- append-only lists -----------------------------------------------------------------

_MAX_LISTED_VIOLATIONS = 20


@dataclass
class _ListRead:
    """One observation of a list: an ok read, or the final read (invoke = complete = +inf)."""

    elements: list[Any]
    invoke: float
    complete: float
    op: Op | None  # None for the final read


def _as_list(value: Any) -> list[Any] | None:
    return list(value) if isinstance(value, list | tuple) else None


def check_appends(ops: Sequence[Op], final_lists: Mapping[str, Sequence[Any]] | None) -> Verdict:
    """Append-only lists (RPUSH / LRANGE): nothing acked is lost, nothing is duplicated or
    reordered, nothing failed ever shows up.

    Ops are ``append`` (value = a unique element; result = the list's length after it,
    when acked) and ``read`` (value = the whole list). A ``fail`` append must never
    appear; an ``unknown`` one may appear at most once, anywhere real time allows. Every
    read must be a prefix of the final list, contain every append acked before it began,
    and be no shorter than a read that completed before it began. An element whose append
    was acked before another's was invoked must come first; an acked append that reported
    length n sits at index n - 1. Without final lists (they could not be read) the longest
    read stands in for them and lost appends cannot be judged.
    """
    name = "appends"
    per_key: dict[str, list[Op]] = defaultdict(list)
    for op in ops:
        if op.op in ("append", "read"):
            per_key[op.key].append(op)
    keys = sorted(per_key)
    violations: list[dict[str, Any]] = []
    stats: Counter[str] = Counter()
    lengths: dict[str, int | None] = {}
    for key in keys:
        final = None if final_lists is None else final_lists.get(key)
        found = _check_list(key, per_key[key], None if final is None else list(final), stats)
        violations += found
        lengths[key] = None if final is None else len(final)
    by_reason = Counter(v["reason"] for v in violations)
    details: dict[str, Any] = {
        "keys_checked": len(keys),
        "final_lengths": lengths,
        "appends": dict(stats),
        "violations_by_reason": dict(by_reason),
        "violations": violations[:_MAX_LISTED_VIOLATIONS],
    }
    if violations:
        first = violations[0]
        summary = ", ".join(f"{n} {reason}" for reason, n in sorted(by_reason.items()))
        return Verdict(name, False, details, f"list {first['key']!r}: {summary}")
    if final_lists is None:
        return Verdict(
            name, "unknown", details, "the final lists could not be read; lost appends unjudged"
        )
    acked = stats["acked"]
    return Verdict(
        name,
        True,
        details,
        f"{len(keys)} list(s): {acked} acked appends all present once and in order "
        f"({stats['unknown_present']} of {stats['unknown']} unknown ones applied)",
    )


def _check_list(
    key: str, key_ops: Sequence[Op], final: list[Any] | None, stats: Counter[str]
) -> list[dict[str, Any]]:
    appends: dict[Any, Op] = {}
    violations: list[dict[str, Any]] = []

    def violation(reason: str, **extra: Any) -> None:
        violations.append({"key": key, "reason": reason, **extra})

    for op in key_ops:
        if op.op != "append":
            continue
        element = _freeze(op.value)
        if element in appends:
            violation("element appended twice by the workload", ops=[_describe(op)])
        appends[element] = op
        stats["acked" if op.outcome == "ok" else op.outcome] += 1
    reads = [
        _ListRead(elements, op.invoke, op.complete, op)
        for op in key_ops
        if op.op == "read" and op.outcome == "ok"
        for elements in [_as_list(op.value)]
        if elements is not None
    ]
    malformed = [op for op in key_ops if op.op == "read" and op.outcome == "ok"]
    if len(malformed) != len(reads):
        violation("a read did not return a list")
    reference = final
    if final is not None:
        reads.append(_ListRead(final, math.inf, math.inf, None))
    elif reads:
        reference = max(reads, key=lambda r: len(r.elements)).elements
    for read in reads:
        _check_read(read, appends, reference, violation)
    _check_read_order(reads, violation)
    if final is not None:
        present = {_freeze(e) for e in final}
        for element, op in appends.items():
            if op.outcome == "ok" and element not in present:
                violation("acked append lost", op=_describe(op))
            elif op.outcome == "unknown" and element in present:
                stats["unknown_present"] += 1
        _check_positions(appends, final, violation)
    return violations


def _where(read: _ListRead) -> dict[str, Any]:
    if read.op is None:
        return {"read": "final"}
    return {"read": _describe(read.op)}


def _check_read(
    read: _ListRead,
    appends: Mapping[Any, Op],
    reference: list[Any] | None,
    violation: Callable[..., None],
) -> None:
    seen: set[Any] = set()
    latest_invoke = -math.inf  # the latest invoke among the elements before this one
    latest_element: Any = None
    for index, raw in enumerate(read.elements):
        element = _freeze(raw)
        op = appends.get(element)
        if element in seen:
            violation("element duplicated", element=raw, index=index, **_where(read))
        seen.add(element)
        if op is None:
            violation("element never appended", element=raw, index=index, **_where(read))
            continue
        if op.outcome == "fail":
            violation("failed append present", element=raw, op=_describe(op), **_where(read))
        if op.invoke > read.complete:
            violation("element read before its append began", op=_describe(op), **_where(read))
        complete = math.inf if op.outcome != "ok" else op.complete
        if complete < latest_invoke:
            violation(
                "elements reordered",
                element=raw,
                acked_before_invoke_of=latest_element,
                index=index,
                **_where(read),
            )
        if op.invoke > latest_invoke:
            latest_invoke, latest_element = op.invoke, raw
    for element, op in appends.items():
        # (the final read's missing appends are reported as lost instead)
        missing = op.outcome == "ok" and op.complete < read.invoke and element not in seen
        if missing and read.op is not None:
            violation("acked append missing from a later read", op=_describe(op), **_where(read))
    if reference is not None and read.elements != reference[: len(read.elements)]:
        violation("read is not a prefix of the final list", **_where(read))


def _check_read_order(reads: Sequence[_ListRead], violation: Callable[..., None]) -> None:
    """A read that began after another completed is at least as long (lists only grow)."""
    by_complete = sorted(reads, key=lambda r: r.complete)
    longest: _ListRead | None = None
    i = 0
    for read in sorted(reads, key=lambda r: r.invoke):
        while i < len(by_complete) and by_complete[i].complete < read.invoke:
            if longest is None or len(by_complete[i].elements) > len(longest.elements):
                longest = by_complete[i]
            i += 1
        if longest is not None and len(read.elements) < len(longest.elements):
            violation(
                "stale read: shorter than a read that completed before it began",
                length=len(read.elements),
                earlier_length=len(longest.elements),
                earlier=_where(longest),
                **_where(read),
            )


def _check_positions(
    appends: Mapping[Any, Op], final: Sequence[Any], violation: Callable[..., None]
) -> None:
    """An acked append that answered length n is the n-th element."""
    for element, op in appends.items():
        n = op.result
        if op.outcome != "ok" or isinstance(n, bool) or not isinstance(n, int):
            continue
        at = _freeze(final[n - 1]) if 0 < n <= len(final) else None
        if at != element:
            violation(
                "acked append not at the position its reply gave",
                op=_describe(op),
                found=None if at is None else final[n - 1],
            )


def check_sets(ops: Sequence[Op], final_sets: Mapping[str, Sequence[Any]] | None) -> Verdict:
    """Grow-only sets (SADD of unique elements / SMEMBERS): per key, every acked add is in
    the final set; no element whose add failed, or that was never added, is in the final
    set or any read; every read holds every add acked before it began and nothing added
    after it ended; a read that began after another ended holds all of that one (sets only
    grow). An unknown add may or may not be present. Without final sets (they could not be
    read) the lost-add check is skipped."""
    name = "sets"
    per_key: dict[str, list[Op]] = defaultdict(list)
    for op in ops:
        if op.op in ("sadd", "smembers"):
            per_key[op.key].append(op)
    violations: list[dict[str, Any]] = []
    stats: Counter[str] = Counter()
    for key in sorted(per_key):
        key_ops = per_key[key]
        adds = {str(op.value): op for op in key_ops if op.op == "sadd"}
        stats["acked"] += sum(1 for op in adds.values() if op.outcome == "ok")
        stats["unknown"] += sum(1 for op in adds.values() if op.outcome == "unknown")
        final = None if final_sets is None else final_sets.get(key)

        def bad(reason: str, **extra: Any) -> None:
            violations.append({"key": key, "reason": reason, **extra})  # noqa: B023

        if final is not None:
            members = {str(m) for m in final}
            for element, op in adds.items():
                if op.outcome == "ok" and element not in members:
                    bad("acked add lost", element=element, op=_describe(op))
                if op.outcome == "fail" and element in members:
                    bad("failed add present", element=element, op=_describe(op))
                if op.outcome == "unknown" and element in members:
                    stats["unknown_applied"] += 1
            for element in members - set(adds):
                bad("element never added", element=element)
        acked = sorted((op for op in adds.values() if op.outcome == "ok"), key=lambda o: o.complete)
        acked_at = [op.complete for op in acked]
        reads = sorted(
            (op for op in key_ops if op.op == "smembers" and op.outcome == "ok"),
            key=lambda o: o.invoke,
        )
        stats["reads"] += len(reads)
        for read in reads:
            seen = {str(m) for m in (read.value or [])}
            before = acked[: bisect.bisect_left(acked_at, read.invoke)]
            missing = [op.value for op in before if str(op.value) not in seen]
            if missing:
                bad(
                    "read lacks an add acked before it began",
                    missing=missing[:5],
                    op=_describe(read),
                )
            for element in seen:
                add = adds.get(element)
                if add is None or add.outcome == "fail":
                    bad(
                        "read holds an element never (successfully) added",
                        element=element,
                        op=_describe(read),
                    )
                elif add.invoke > read.complete:
                    bad(
                        "read holds an element added after it ended",
                        element=element,
                        op=_describe(read),
                    )
        # Monotonic reads: the union of what reads that ended before r began saw is in r.
        ended = sorted(reads, key=lambda o: o.complete)
        union: set[str] = set()
        j = 0
        for read in reads:
            while j < len(ended) and ended[j].complete < read.invoke:
                union |= {str(m) for m in (ended[j].value or [])}
                j += 1
            lost = union - {str(m) for m in (read.value or [])}
            if lost:
                bad(
                    "read lacks an element an earlier read saw",
                    missing=sorted(lost)[:5],
                    op=_describe(read),
                )
    details: dict[str, Any] = {
        "keys_checked": len(per_key),
        "adds": dict(stats),
        "violations": violations[:_MAX_LISTED_VIOLATIONS],
        "violation_count": len(violations),
    }
    if violations:
        first = violations[0]
        return Verdict(
            name,
            False,
            details,
            f"{len(violations)} violation(s); first: {first['reason']} on {first['key']}",
        )
    if final_sets is None:
        return Verdict(
            name, "unknown", details, "the final sets could not be read: lost adds unchecked"
        )
    message = (
        f"{len(per_key)} set(s): {stats['acked']} acked adds all present, {stats['reads']} "
        f"reads monotonic ({stats['unknown_applied']} of {stats['unknown']} unknown ones applied)"
    )
    return Verdict(name, True, details, message)


def check_queue(ops: Sequence[Op], final_queues: Mapping[str, Sequence[Any]] | None) -> Verdict:
    """A work queue (LPUSH by producers, BRPOP by consumers): every element taken at most
    once, never one that was not enqueued, never one whose enqueue failed, and every acked
    element either taken or still queued at the end.

    Ops are ``enqueue`` (value = a unique element) and ``dequeue`` (value = the element
    taken, None on a timeout). A dequeue with an unknown outcome may have taken an element
    nobody saw: that many acked elements may be missing (and are reported), no more.
    """
    name = "queue"
    enqueued = {op.value: op for op in ops if op.op == "enqueue"}
    taken: Counter[Any] = Counter(
        op.value for op in ops if op.op == "dequeue" and op.outcome == "ok" and op.value
    )
    unknown_takes = sum(1 for op in ops if op.op == "dequeue" and op.outcome == "unknown")
    details: dict[str, Any] = {
        "enqueued": Counter(op.outcome for op in enqueued.values()),
        "taken": sum(taken.values()),
        "unknown_dequeues": unknown_takes,
    }
    if final_queues is None:
        return Verdict(name, "unknown", details, "the final queues could not be read")
    queued: Counter[Any] = Counter(e for q in final_queues.values() for e in q)
    details["left_queued"] = sum(queued.values())
    violations: list[dict[str, Any]] = []
    for element in sorted(set(taken) | set(queued)):
        seen = taken[element] + queued[element]
        op = enqueued.get(element)
        if op is None:
            violations.append({"element": element, "reason": "never enqueued"})
        elif op.outcome == "fail":
            violations.append({"element": element, "reason": "its enqueue failed"})
        elif seen > 1:
            violations.append({"element": element, "reason": "duplicated", "times": seen})
    missing = sorted(
        e for e, op in enqueued.items() if op.outcome == "ok" and not taken[e] and not queued[e]
    )
    details["missing"] = len(missing)
    if len(missing) > unknown_takes:
        violations.append(
            {
                "reason": "lost",
                "missing": missing[:_MAX_LISTED_VIOLATIONS],
                "more_than_unknown_dequeues": len(missing) - unknown_takes,
            }
        )
    details["violations"] = violations[:_MAX_LISTED_VIOLATIONS]
    if violations:
        reasons = Counter(v["reason"] for v in violations)
        summary = ", ".join(f"{n} {reason}" for reason, n in sorted(reasons.items()))
        return Verdict(name, False, details, summary)
    acked = details["enqueued"].get("ok", 0)
    return Verdict(
        name,
        True,
        details,
        f"{acked} acked elements: {sum(taken.values())} taken once, {sum(queued.values())} "
        f"left queued, {len(missing)} missing (<= {unknown_takes} unknown dequeues)",
    )


# --- expiry under clock skew -----------------------------------------------------------

TTL_SLACK_S = 0.1
"""Added to the clock-skew tolerance: a node re-reads its test clock offset every 50 ms, so a
changed offset reaches its stamps up to 50 ms late; the rest is rounding to whole ms."""


def ttl_of(key: str) -> float | None:
    """The TTL (s) a ttl-sessions key was set with: tt:<ttl ms>:<unique>."""
    parts = key.split(":")
    if len(parts) < 3 or parts[0] != "tt" or not parts[1].isdigit():
        return None
    return int(parts[1]) / 1000


def skew_tolerance_s(faults: Sequence[Mapping[str, Any]], start: float, end: float) -> float:
    """The clock skew a key that lived over [start, end] may see (chaos/DESIGN.md "Clock
    skew"): max offset - min offset (0 counting as an offset: unskewed nodes) over the
    clock-skew faults in force then, or whose lead over real time (cluster time runs ahead of
    every clock by up to the largest offset after the heal, then stands still) reached it."""
    offsets = [0.0]
    for fault in faults:
        named = fault.get("offsets_ms")
        if fault.get("kind") != "clock-skew" or not named:
            continue
        values = [ms / 1000 for ms in named.values()]
        lead = max(0.0, *values)
        f_end = math.inf if fault.get("end") is None else float(fault["end"])
        if float(fault["start"]) < end and f_end + lead > start:
            offsets += values
    return max(offsets) - min(offsets)


def check_ttl(ops: Sequence[Op], faults: Sequence[Mapping[str, Any]] = ()) -> Verdict:
    """Keys set with a TTL (ttl-sessions) expire monotonically and on time.

    Per key, from its acked SET and its ok GETs: (1) once a GET answered nil, no GET invoked
    after that answer sees the value again (expiry is monotonic in cluster time); (2) no GET
    sees another value; (3) the lifetime is within TTL +- the skew tolerance: the last GET
    that saw the value was invoked at most TTL + tol after the SET completed (else it was
    stretched), and the first nil came back at least TTL - tol after the SET was invoked
    (else it shrank)."""
    name = "ttl"
    per_key: dict[str, list[Op]] = defaultdict(list)
    for op in ops:
        if ttl_of(op.key) is not None:
            per_key[op.key].append(op)
    violations: list[dict[str, Any]] = []
    checked = expired = 0
    stretch = shrink = -math.inf  # the worst seen, in s beyond the TTL (may be negative)
    for key, key_ops in sorted(per_key.items()):
        ttl = ttl_of(key)
        assert ttl is not None
        sets = [o for o in key_ops if o.op == "set" and o.outcome == "ok"]
        reads = sorted(
            (o for o in key_ops if o.op == "get" and o.outcome == "ok"), key=lambda o: o.invoke
        )
        if len(sets) != 1 or not reads:
            continue
        written, checked = sets[0], checked + 1
        present = [r for r in reads if r.value is not None]
        missing = [r for r in reads if r.value is None]
        end = max(r.complete for r in reads)
        tol = skew_tolerance_s(faults, written.invoke, end) + TTL_SLACK_S
        for r in present:
            if r.value != written.value:
                violations.append(
                    {"key": key, "reason": "read a value never set", "read": _describe(r)}
                )
        if missing:
            expired += 1
            first_nil = min(missing, key=lambda o: o.complete)
            back = [r for r in present if r.invoke > first_nil.complete]
            if back:
                violations.append({
                    "key": key,
                    "reason": "an expired key reappeared",
                    "nil": _describe(first_nil),
                    "reappeared": _describe(back[0]),
                })  # fmt: skip
            shortest = first_nil.complete - written.invoke
            shrink = max(shrink, ttl - shortest)
            if shortest < ttl - tol:
                violations.append({
                    "key": key,
                    "reason": f"expired after at most {shortest:.3f} s, TTL {ttl:.3f} s - "
                    f"tolerance {tol:.3f} s",
                    "set": _describe(written),
                    "nil": _describe(first_nil),
                })  # fmt: skip
        if present:
            last_seen = max(present, key=lambda o: o.invoke)
            longest = last_seen.invoke - written.complete
            stretch = max(stretch, longest - ttl)
            if longest > ttl + tol:
                violations.append({
                    "key": key,
                    "reason": f"still there after at least {longest:.3f} s, TTL {ttl:.3f} s + "
                    f"tolerance {tol:.3f} s",
                    "set": _describe(written),
                    "read": _describe(last_seen),
                })  # fmt: skip
    details = {
        "keys_checked": checked,
        "keys_seen_expired": expired,
        "max_stretch_s": None if stretch == -math.inf else round(stretch, 3),
        "max_shrink_s": None if shrink == -math.inf else round(shrink, 3),
        "skew_tolerance_s": round(skew_tolerance_s(faults, -math.inf, math.inf), 3),
        "violations": violations[:20],
    }
    if violations:
        first = violations[0]
        return Verdict(name, False, details, f"{len(violations)} violation(s); first: "
                       f"{first['key']!r} {first['reason']}")  # fmt: skip
    if checked and not expired:
        return Verdict(name, "unknown", details, f"{checked} key(s), none seen expiring")
    return Verdict(
        name,
        True,
        details,
        f"{expired} of {checked} key(s) expired once, within TTL +- skew "
        f"(worst: {details['max_shrink_s']} s early, {details['max_stretch_s']} s late)",
    )
