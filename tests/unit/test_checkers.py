"""History format and chaos checkers: histories that must fail or pass, and properties."""

from __future__ import annotations

import itertools
import json
import math
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from raftcache.chaos.checkers import (
    Verdict,
    check_convergence,
    check_counters,
    check_linearizable_registers,
    check_no_lost_writes,
    check_unavailability,
)
from raftcache.chaos.history import HistoryWriter, Op, read_history


def mk(
    kind: str,
    key: str,
    value: Any,
    invoke: float,
    complete: float,
    outcome: str = "ok",
    result: Any = None,
    process: int = 0,
) -> Op:
    return Op.from_dict(
        {
            "process": process,
            "op": kind,
            "key": key,
            "value": value,
            "result": result,
            "invoke": invoke,
            "complete": complete,
            "outcome": outcome,
        }
    )


def lin(ops: list[Op], budget: float = 5.0) -> Verdict:
    verdict = check_linearizable_registers(ops, time_budget_s=budget)
    json.dumps(verdict.to_dict())  # details must stay JSON-able
    return verdict


# --- history format --------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 0.5
        return self.now


def test_recorder_round_trips_through_the_file(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    with HistoryWriter(path, clock=FakeClock()) as writer:
        written = [
            writer.begin(1, "set", "k", "v1").ok(),
            writer.begin(2, "get", "k").ok("v1"),
            writer.begin(3, "cas", "k", ["v1", "v2"]).ok(result=True),
            writer.begin(4, "incr", "c", 5).unknown(),
            writer.begin(5, "delete", "k").fail(),
        ]
    assert read_history(path) == written
    assert written[1].value == "v1" and written[1].result is None
    assert written[0].invoke < written[0].complete
    assert [op.outcome for op in written] == ["ok", "ok", "ok", "unknown", "fail"]


def test_recorder_refuses_a_second_completion(tmp_path: Path) -> None:
    with HistoryWriter(tmp_path / "h.jsonl") as writer:
        rec = writer.begin(0, "set", "k", "v")
        rec.ok()
        with pytest.raises(RuntimeError, match="already recorded"):
            rec.fail()


def test_writer_is_safe_across_threads(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    with HistoryWriter(path) as writer:

        def work(process: int) -> None:
            for i in range(100):
                writer.begin(process, "set", f"k{i % 3}", f"{process}-{i}").ok()

        threads = [threading.Thread(target=work, args=(p,)) for p in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    ops = read_history(path)
    assert len(ops) == 800
    assert len({op.value for op in ops}) == 800


def test_bad_record_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    good = mk("set", "k", "v", 0, 1).to_json()
    path.write_text(good + "\n" + '{"op": "frob"}\n')
    with pytest.raises(ValueError, match=r"h.jsonl:2"):
        read_history(path)


# --- linearizability: must be caught --------------------------------------------------


def test_stale_read_is_caught() -> None:
    ops = [
        mk("set", "k", "a", 0, 1),
        mk("set", "k", "b", 2, 3),
        mk("get", "k", "a", 4, 5, process=1),
    ]
    verdict = lin(ops)
    assert verdict.valid is False
    violation = verdict.details["first_violation"]
    assert violation["key"] == "k"
    assert violation["op"]["op"] == "get" and violation["op"]["value"] == "a"
    assert violation["register_before"] == "b"


def test_read_of_never_written_value_is_caught() -> None:
    ops = [mk("set", "k", "a", 0, 1), mk("get", "k", "zzz", 2, 3)]
    verdict = lin(ops)
    assert verdict.valid is False
    assert "never written" in verdict.details["first_violation"]["reason"]


def test_read_of_a_failed_write_is_caught() -> None:
    ops = [mk("set", "k", "a", 0, 1, outcome="fail"), mk("get", "k", "a", 2, 3)]
    assert lin(ops).valid is False


def test_unknown_write_cannot_be_undone() -> None:
    ops = [
        mk("set", "k", "a", 0, 1),
        mk("set", "k", "b", 2, 3, outcome="unknown"),
        mk("get", "k", "b", 4, 5),
        mk("get", "k", "a", 6, 7),
    ]
    assert lin(ops).valid is False


def test_cas_success_against_wrong_value_is_caught() -> None:
    ops = [
        mk("set", "k", "x", 0, 1),
        mk("cas", "k", ["a", "b"], 2, 3, result=True),
    ]
    assert lin(ops).valid is False


def test_violation_on_one_key_fails_the_verdict() -> None:
    ops = [mk("set", "good", "g", 0, 1), mk("get", "good", "g", 2, 3)]
    ops += [mk("set", "bad", "a", 0, 1), mk("set", "bad", "b", 2, 3), mk("get", "bad", "a", 4, 5)]
    verdict = lin(ops)
    assert verdict.valid is False
    assert verdict.details["invalid_keys"] == ["bad"]
    assert verdict.details["ops_per_key"] == {"bad": 3, "good": 2}


# --- linearizability: must pass --------------------------------------------------------


@pytest.mark.parametrize("read", ["x", None])
def test_read_concurrent_with_write_may_see_either(read: str | None) -> None:
    ops = [mk("set", "k", "x", 0, 10), mk("get", "k", read, 1, 2, process=1)]
    assert lin(ops).valid is True


@pytest.mark.parametrize("order", [("a", "b"), ("b", "a")])
def test_concurrent_writes_in_either_order(order: tuple[str, str]) -> None:
    ops = [
        mk("set", "k", "a", 0, 5, process=0),
        mk("set", "k", "b", 1, 6, process=1),
        mk("get", "k", order[0], 2, 3, process=2),
        mk("get", "k", order[1], 7, 8, process=2),
    ]
    assert lin(ops).valid is True


@pytest.mark.parametrize("read", ["a", "b"])
def test_unknown_write_may_or_may_not_take_effect(read: str) -> None:
    ops = [
        mk("set", "k", "a", 0, 1),
        mk("set", "k", "b", 2, 3, outcome="unknown"),
        mk("get", "k", read, 10, 11),
    ]
    assert lin(ops).valid is True


def test_unknown_write_may_take_effect_long_after_the_client_gave_up() -> None:
    ops = [
        mk("set", "k", "a", 0, 1),
        mk("set", "k", "b", 2, 3, outcome="unknown"),
        mk("get", "k", "a", 4, 5),
        mk("get", "k", "b", 6, 7),
    ]
    assert lin(ops).valid is True


def test_unknown_reads_are_ignored() -> None:
    ops = [mk("set", "k", "a", 0, 1), mk("get", "k", "nonsense", 2, 3, outcome="unknown")]
    assert lin(ops).valid is True


def test_cas_success_and_failure_sequence() -> None:
    ops = [
        mk("set", "k", "a", 0, 1),
        mk("cas", "k", ["a", "b"], 2, 3, result=True),
        mk("cas", "k", ["a", "c"], 4, 5, result=False),
        mk("get", "k", "b", 6, 7),
        mk("cas", "k", ["b", "d"], 8, 9, outcome="unknown"),
        mk("get", "k", "d", 10, 11),
        mk("delete", "k", None, 12, 13),
        mk("get", "k", None, 14, 15),
        mk("cas", "k", [None, "e"], 16, 17, result=True),
        mk("get", "k", "e", 18, 19),
    ]
    assert lin(ops).valid is True


def test_counter_key_is_a_linearizable_register_too() -> None:
    ops = [
        mk("incr", "c", 1, 0, 1, result=1),
        mk("incr", "c", 2, 2, 3, outcome="unknown"),
        mk("get", "c", "1", 4, 5),
        mk("incr", "c", 1, 6, 7, result=4),
    ]
    assert lin(ops).valid is True
    ops.append(mk("incr", "c", 1, 8, 9, result=4))
    assert lin(ops).valid is False


def test_budget_exhaustion_reports_unknown_never_pass() -> None:
    ops = [mk("set", "k", "first", 0, 1)]
    ops += [mk("set", "k", f"v{i}", 2, 100, process=i) for i in range(24)]
    ops.append(mk("get", "k", "first", 101, 102))  # impossible, but only an exhaustive search knows
    ops += [mk("set", "easy", "x", 0, 1), mk("get", "easy", "x", 2, 3)]
    verdict = lin(ops, budget=0.2)
    assert verdict.valid == "unknown"
    assert verdict.details["unknown_keys"] == ["k"]
    assert "'k'" in verdict.message or "k" in verdict.message


# --- counters --------------------------------------------------------------------------


def sequential_incrs(n: int) -> list[Op]:
    return [mk("incr", "c", 1, 2 * i, 2 * i + 1, result=i + 1) for i in range(n)]


def test_counter_exactly_acked_passes() -> None:
    assert check_counters(sequential_incrs(3), final_values={"c": 3}).valid is True


def test_duplicated_increment_in_final_value_is_caught() -> None:
    verdict = check_counters(sequential_incrs(3), final_values={"c": 4})
    assert verdict.valid is False
    assert verdict.details["violations"][0]["max"] == 3


def test_two_incrs_with_the_same_result_are_caught() -> None:
    ops = [
        mk("incr", "c", 1, 0, 5, result=1, process=0),
        mk("incr", "c", 1, 1, 6, result=1, process=1),
    ]
    verdict = check_counters(ops, final_values={"c": 2})
    assert verdict.valid is False
    assert any("same value" in v["reason"] for v in verdict.details["violations"])


def test_incr_result_out_of_bounds_is_caught() -> None:
    ops = [*sequential_incrs(1), mk("incr", "c", 1, 10, 11, result=5)]
    assert check_counters(ops).valid is False


@pytest.mark.parametrize(
    ("final", "valid"), [(1, False), (2, True), (3, True), (5, True), (6, False)]
)
def test_unknown_incrs_widen_the_bounds(final: int, valid: bool) -> None:
    ops = [
        *sequential_incrs(2),
        mk("incr", "c", 1, 10, 11, outcome="unknown"),
        mk("incr", "c", 2, 12, 13, outcome="unknown"),
        mk("incr", "c", 7, 14, 15, outcome="fail"),
    ]
    assert check_counters(ops, final_values={"c": final}).valid is valid


@pytest.mark.parametrize(("final", "valid"), [(-4, False), (-3, True), (-1, True), (0, False)])
def test_negative_deltas_are_bounded_symmetrically(final: int, valid: bool) -> None:
    ops = [
        mk("incr", "c", -1, 0, 1, result=-1),
        mk("incr", "c", -2, 2, 3, outcome="unknown"),
    ]
    assert check_counters(ops, final_values={"c": final}).valid is valid


def test_counter_final_taken_from_last_read() -> None:
    ops = [*sequential_incrs(2), mk("get", "c", "2", 10, 11)]
    assert check_counters(ops).valid is True
    ops = [*sequential_incrs(2), mk("get", "c", "3", 10, 11)]
    assert check_counters(ops).valid is False


# --- lost writes -----------------------------------------------------------------------


def test_lost_write_is_caught() -> None:
    ops = [mk("set", "k", "a", 0, 1), mk("set", "k", "b", 2, 3)]
    verdict = check_no_lost_writes(ops, {"k": "a"})
    assert verdict.valid is False
    assert verdict.details["lost"][0]["key"] == "k"
    assert verdict.details["lost"][0]["expected"] == "b"


def test_final_value_never_written_is_caught() -> None:
    assert check_no_lost_writes([mk("set", "k", "a", 0, 1)], {"k": "zzz"}).valid is False
    assert check_no_lost_writes([], {"k": "zzz"}).valid is False


@pytest.mark.parametrize("final", ["a", "b", "c"])
def test_concurrent_and_unknown_writes_may_win(final: str) -> None:
    ops = [
        mk("set", "k", "a", 0, 5),
        mk("set", "k", "b", 1, 2, process=1),
        mk("set", "k", "c", 0.5, 0.7, outcome="unknown", process=2),
        mk("set", "k", "old", 0, 0.1, outcome="ok", process=3),
    ]
    ops[-1] = mk("set", "k", "old", -2, -1, process=3)
    assert check_no_lost_writes(ops, {"k": final}).valid is True
    assert check_no_lost_writes(ops, {"k": "old"}).valid is False


def test_deleted_and_expiring_keys() -> None:
    ops = [mk("set", "k", "a", 0, 1), mk("delete", "k", None, 2, 3)]
    assert check_no_lost_writes(ops, {"k": None}).valid is True
    ops = [mk("set", "s", "session", 0, 1)]
    assert check_no_lost_writes(ops, {"s": None}).valid is False
    assert check_no_lost_writes(ops, {"s": None}, expiring_keys={"s"}).valid is True


# --- convergence and availability ------------------------------------------------------


def test_convergence() -> None:
    same = [{"node_id": n, "applied_index": 10, "digest": "abc"} for n in ("n1", "n2", "n3")]
    assert check_convergence(same).valid is True
    differ = [*same[:2], {"node_id": "n3", "applied_index": 9, "digest": "xyz"}]
    verdict = check_convergence(differ)
    assert verdict.valid is False
    assert verdict.details["distinct_digests"] == 2
    assert "n3" in verdict.message
    assert check_convergence([]).valid == "unknown"


def test_unavailability_gaps() -> None:
    ops = [mk("set", "k", f"v{t}", t - 0.5, t) for t in (1.0, 2.0, 6.0, 7.0)]
    ops += [mk("get", "k", "v7.0", 0.0, 0.2), mk("get", "k", "v7.0", 9.0, 10.0)]
    ops.append(mk("set", "k", "lost", 3.0, 4.0, outcome="unknown"))
    faults = [
        {"kind": "partition", "start": 3.0, "end": 5.0},
        {"kind": "partition", "start": 0.5, "end": 0.8},
        {"kind": "kill", "start": 6.5, "end": 8.0},
    ]
    verdict = check_unavailability(ops, faults)
    assert verdict.valid is True
    assert verdict.details["acked_writes"] == 4
    assert verdict.details["longest_gap_s"] == pytest.approx(4.0)
    assert verdict.details["longest_gap"] == [2.0, 6.0]
    assert verdict.details["by_fault"]["partition"]["longest_gap_s"] == pytest.approx(4.0)
    assert verdict.details["by_fault"]["partition"]["occurrences"] == 2
    assert verdict.details["by_fault"]["kill"]["longest_gap_s"] == pytest.approx(3.0)


# --- properties ------------------------------------------------------------------------

KEYS = ("a", "b")
op_specs = st.lists(
    st.tuples(
        st.sampled_from(["get", "set", "cas", "delete", "incr"]),
        st.sampled_from(KEYS),
        st.booleans(),  # cas: expect the current value?; unknown write: applied?
        st.sampled_from(["ok", "ok", "ok", "unknown"]),
        st.floats(0, 3),  # how far invoke precedes the linearization point
        st.floats(0, 3),  # how far complete follows it
    ),
    min_size=1,
    max_size=14,
)


def execute(specs: list[tuple[str, str, bool, str, float, float]], overlap: bool) -> list[Op]:
    """Run specs in order on a model; op i takes effect at time i, inside its interval."""
    state: dict[str, Any] = {}
    ops: list[Op] = []
    for i, (kind, key, flag, outcome, before, after) in enumerate(specs):
        key = "c" if kind == "incr" else key
        point = float(i)
        invoke, complete = (point - before, point + after) if overlap else (point, point + 0.5)
        applies = outcome == "ok" or flag
        current = state.get(key)
        value: Any
        result: Any = None
        if kind == "get":
            outcome, value = "ok", current
        elif kind == "set":
            value = f"v{i}"
            if applies:
                state[key] = value
        elif kind == "delete":
            value = None
            if applies:
                state.pop(key, None)
        elif kind == "cas":
            old = current if flag else f"never{i}"
            value = [old, f"v{i}"]
            result = current == old
            if result and (outcome == "ok" or i % 2 == 0):  # unknown cas: applied on even i
                state[key] = f"v{i}"
        else:
            value = 1 + i % 3
            total = (current or 0) + value
            if applies:
                state[key] = total
            result = total if outcome == "ok" else None
        if outcome == "unknown":
            result = None
        ops.append(mk(kind, key, value, invoke, complete, outcome, result, process=i))
    return ops


@settings(max_examples=200, deadline=None)
@given(op_specs, st.booleans())
def test_histories_from_a_real_execution_are_linearizable(
    specs: list[tuple[str, str, bool, str, float, float]], overlap: bool
) -> None:
    ops = execute(specs, overlap)
    verdict = lin(ops)
    assert verdict.valid is True, verdict.message


@settings(max_examples=200, deadline=None)
@given(op_specs, st.booleans(), st.integers(0, 1000))
def test_a_read_of_a_never_written_value_is_always_caught(
    specs: list[tuple[str, str, bool, str, float, float]], overlap: bool, pick: int
) -> None:
    ops = execute(specs, overlap)
    reads = [i for i, op in enumerate(ops) if op.op == "get" and op.key != "c"]
    if not reads:
        ops.append(mk("get", "a", None, 1e6, 1e6 + 1))
        reads = [len(ops) - 1]
    i = reads[pick % len(reads)]
    bad = ops[i]
    ops[i] = mk("get", bad.key, "never-written", bad.invoke, bad.complete, process=bad.process)
    assert lin(ops).valid is False


def brute_force_linearizable(ops: list[Op]) -> bool:
    """Try every subset of unknown writes and every real-time-respecting order."""
    ops = [op for op in ops if op.outcome == "ok" or (op.outcome == "unknown" and op.op != "get")]
    oks = [op for op in ops if op.outcome == "ok"]
    unknowns = [op for op in ops if op.outcome == "unknown"]

    def complete(op: Op) -> float:
        return math.inf if op.outcome == "unknown" else op.complete

    def legal(order: tuple[Op, ...]) -> bool:
        for a, b in itertools.combinations(order, 2):
            if complete(b) < a.invoke:
                return False
        value: Any = None
        for op in order:
            if op.op == "get":
                if op.value != value:
                    return False
            elif op.op == "set":
                value = op.value
            elif op.op == "delete":
                value = None
            else:
                matches = value == op.value[0]
                if op.outcome == "ok" and matches != op.result:
                    return False
                if matches:
                    value = op.value[1]
        return True

    for size in range(len(unknowns) + 1):
        for chosen in itertools.combinations(unknowns, size):
            if any(legal(order) for order in itertools.permutations(oks + list(chosen))):
                return True
    return False


random_ops = st.lists(
    st.tuples(
        st.sampled_from(["get", "set", "cas", "delete"]),
        st.sampled_from([None, "x", "y", "z"]),
        st.sampled_from([None, "x", "y", "z"]),
        st.sampled_from(["ok", "ok", "unknown", "fail"]),
        st.booleans(),
        st.integers(0, 6),
        st.integers(1, 4),
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=400, deadline=None)
@given(random_ops)
def test_search_agrees_with_brute_force(
    specs: list[tuple[str, Any, Any, str, bool, int, int]],
) -> None:
    ops = []
    for p, (kind, a, b, outcome, flag, start, length) in enumerate(specs):
        value: Any = {"get": a, "set": b or "w", "delete": None, "cas": [a, b]}[kind]
        result = flag if kind == "cas" and outcome == "ok" else None
        ops.append(mk(kind, "k", value, start, start + length, outcome, result, process=p))
    verdict = lin(ops)
    assert verdict.valid == brute_force_linearizable(ops), verdict.message


def test_non_integer_counter_value_is_caught() -> None:
    garbage: dict[str, Any] = {"c": "abc"}
    assert check_counters(sequential_incrs(1), final_values=garbage).valid is False
    assert check_counters([*sequential_incrs(1), mk("get", "c", "abc", 5, 6)]).valid is False
