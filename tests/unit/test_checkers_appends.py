"""The append-only list checker (RPUSH / LRANGE): histories that must fail or pass."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from raftcache.chaos.checkers import Verdict, check_appends
from raftcache.chaos.history import HistoryWriter, Op, read_history


def append(
    element: str,
    invoke: float,
    complete: float,
    outcome: str = "ok",
    length: int | None = None,
    key: str = "l",
    process: int = 0,
) -> Op:
    return Op.from_dict(
        {
            "process": process,
            "op": "append",
            "key": key,
            "value": element,
            "result": length if outcome == "ok" else None,
            "invoke": invoke,
            "complete": complete,
            "outcome": outcome,
        }
    )


def read(elements: list[str], invoke: float, complete: float, key: str = "l") -> Op:
    return Op.from_dict(
        {
            "process": 99,
            "op": "read",
            "key": key,
            "value": elements,
            "result": None,
            "invoke": invoke,
            "complete": complete,
            "outcome": "ok",
        }
    )


def check(ops: list[Op], final: dict[str, list[str]] | None) -> Verdict:
    verdict = check_appends(ops, final)
    json.dumps(verdict.to_dict())  # details must stay JSON-able
    return verdict


def reasons(verdict: Verdict) -> set[str]:
    return set(verdict.details["violations_by_reason"])


SEQUENTIAL = [
    append("a", 0, 1, length=1),
    append("b", 2, 3, length=2),
    read(["a", "b"], 4, 5),
    append("c", 6, 7, length=3),
]


# --- histories that pass ----------------------------------------------------------------


def test_sequential_appends_pass() -> None:
    verdict = check(SEQUENTIAL, {"l": ["a", "b", "c"]})
    assert verdict.valid is True, verdict.message
    assert verdict.details["appends"] == {"acked": 3}
    assert verdict.details["final_lengths"] == {"l": 3}


def test_concurrent_appends_may_land_in_either_order() -> None:
    ops = [append("a", 0, 5, length=2), append("b", 1, 4, length=1)]
    assert check(ops, {"l": ["b", "a"]}).valid is True
    ops = [append("a", 0, 5, length=1), append("b", 1, 4, length=2)]
    assert check(ops, {"l": ["a", "b"]}).valid is True


def test_unknown_append_may_be_absent_or_present_once() -> None:
    ops = [append("a", 0, 1, length=1), append("u", 2, 3, outcome="unknown")]
    absent = check(ops, {"l": ["a"]})
    assert absent.valid is True, absent.message
    present = check(ops, {"l": ["a", "u"]})
    assert present.valid is True, present.message
    assert present.details["appends"]["unknown_present"] == 1
    assert "1 of 1 unknown" in present.message


def test_unknown_append_may_land_after_later_acked_ones() -> None:
    """Its complete is unbounded: it may take effect long after the client gave up."""
    ops = [
        append("u", 0, 1, outcome="unknown"),
        append("b", 2, 3, length=1),
        append("c", 4, 5, length=3),
    ]
    assert check(ops, {"l": ["b", "u", "c"]}).valid is True


def test_failed_append_absent_passes() -> None:
    ops = [append("a", 0, 1, length=1), append("f", 2, 3, outcome="fail")]
    verdict = check(ops, {"l": ["a"]})
    assert verdict.valid is True
    assert verdict.details["appends"]["fail"] == 1


def test_read_concurrent_with_an_append_may_miss_it() -> None:
    ops = [append("a", 0, 1, length=1), append("b", 2, 6, length=2), read(["a"], 3, 4)]
    assert check(ops, {"l": ["a", "b"]}).valid is True


def test_several_keys_are_independent() -> None:
    ops = [append("a", 0, 1, length=1, key="x"), append("a", 0, 1, length=1, key="y")]
    verdict = check(ops, {"x": ["a"], "y": ["a"]})
    assert verdict.valid is True
    assert verdict.details["keys_checked"] == 2


def test_empty_history_passes() -> None:
    assert check([], {}).valid is True


# --- histories that must fail -----------------------------------------------------------


def test_lost_acked_append_is_caught() -> None:
    verdict = check(SEQUENTIAL, {"l": ["a", "c"]})
    assert verdict.valid is False
    assert "acked append lost" in reasons(verdict)
    lost = [v for v in verdict.details["violations"] if v["reason"] == "acked append lost"]
    assert lost[0]["op"]["value"] == "b"


def test_duplicated_element_is_caught() -> None:
    verdict = check(SEQUENTIAL, {"l": ["a", "b", "b", "c"]})
    assert verdict.valid is False
    assert "element duplicated" in reasons(verdict)


def test_unknown_append_applied_twice_is_caught() -> None:
    ops = [append("a", 0, 1, length=1), append("u", 2, 3, outcome="unknown")]
    verdict = check(ops, {"l": ["a", "u", "u"]})
    assert verdict.valid is False
    assert "element duplicated" in reasons(verdict)


def test_reordered_elements_are_caught() -> None:
    verdict = check(SEQUENTIAL, {"l": ["b", "a", "c"]})
    assert verdict.valid is False
    assert "elements reordered" in reasons(verdict)


def test_reorder_is_caught_without_lengths() -> None:
    """Real-time order alone (no length in the reply) still catches a swap."""
    ops = [append("a", 0, 1), append("b", 2, 3)]
    verdict = check(ops, {"l": ["b", "a"]})
    assert verdict.valid is False
    assert reasons(verdict) == {"elements reordered"}


def test_failed_append_present_is_caught() -> None:
    ops = [append("a", 0, 1, length=1), append("f", 2, 3, outcome="fail")]
    verdict = check(ops, {"l": ["a", "f"]})
    assert verdict.valid is False
    assert "failed append present" in reasons(verdict)


def test_element_never_appended_is_caught() -> None:
    verdict = check([append("a", 0, 1, length=1)], {"l": ["a", "zzz"]})
    assert verdict.valid is False
    assert "element never appended" in reasons(verdict)


def test_wrong_position_is_caught() -> None:
    """RPUSH answered 1 for b, so b must be first: another write got in between."""
    ops = [append("a", 0, 5, length=2), append("b", 1, 4, length=1)]
    verdict = check(ops, {"l": ["a", "b"]})
    assert verdict.valid is False
    assert "acked append not at the position its reply gave" in reasons(verdict)


def test_stale_read_is_caught() -> None:
    ops = [*SEQUENTIAL, read(["a"], 8, 9)]
    verdict = check(ops, {"l": ["a", "b", "c"]})
    assert verdict.valid is False
    assert "stale read: shorter than a read that completed before it began" in reasons(verdict)
    assert "acked append missing from a later read" in reasons(verdict)


def test_read_that_is_not_a_prefix_is_caught() -> None:
    ops = [append("a", 0, 1, length=1), append("b", 0, 1), read(["b"], 2, 3)]
    verdict = check(ops, {"l": ["a", "b"]})
    assert verdict.valid is False
    assert "read is not a prefix of the final list" in reasons(verdict)


def test_read_from_the_future_is_caught() -> None:
    ops = [read(["a"], 0, 1), append("a", 2, 3, length=1)]
    verdict = check(ops, {"l": ["a"]})
    assert verdict.valid is False
    assert "element read before its append began" in reasons(verdict)


def test_reads_that_disagree_are_caught_without_a_final_read() -> None:
    ops = [append("a", 0, 1), append("b", 0, 1), read(["a", "b"], 2, 3), read(["b", "a"], 4, 5)]
    verdict = check(ops, None)
    assert verdict.valid is False
    assert "read is not a prefix of the final list" in reasons(verdict)


def test_no_final_lists_is_unknown_not_pass() -> None:
    verdict = check(SEQUENTIAL, None)
    assert verdict.valid == "unknown"
    assert "could not be read" in verdict.message


def test_violations_listed_are_capped() -> None:
    ops = [append(str(i), i, i + 0.5, length=i + 1) for i in range(100)]
    verdict = check(ops, {"l": []})
    assert verdict.valid is False
    assert verdict.details["violations_by_reason"]["acked append lost"] == 100
    assert len(verdict.details["violations"]) == 20


def test_history_round_trip_keeps_lists(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    with HistoryWriter(path) as writer:
        writer.begin(1, "append", "l", "a").ok(1)
        writer.begin(2, "read", "l").ok(["a"])
        writer.begin(3, "append", "l", "b").unknown()
    ops = read_history(path)
    assert [(o.op, o.value, o.result, o.outcome) for o in ops] == [
        ("append", "a", 1, "ok"),
        ("read", ["a"], None, "ok"),
        ("append", "b", None, "unknown"),
    ]
    assert check(ops, {"l": ["a", "b"]}).valid is True


# --- properties ---------------------------------------------------------------------------


def _simulate(seed: int, n: int) -> tuple[list[Op], list[str]]:
    """A history of a correct list: each op takes effect at one instant inside its window."""
    rng = random.Random(seed)
    ops: list[Op] = []
    events: list[tuple[float, int, str, Any]] = []
    for i in range(n):
        invoke = rng.uniform(0, 100)
        complete = invoke + rng.uniform(0.01, 10)
        at = rng.uniform(invoke, complete)
        kind = rng.choice(["append", "append", "read"])
        events.append((at, i, kind, (invoke, complete, rng.random())))
    events.sort()
    state: list[str] = []
    for _, i, kind, (invoke, complete, roll) in events:
        if kind == "read":
            ops.append(read(list(state), invoke, complete))
            continue
        element = f"e{i}"
        if roll < 0.15:  # unknown: applied or not
            if roll < 0.07:
                state.append(element)
            ops.append(append(element, invoke, complete, outcome="unknown"))
        elif roll < 0.25:
            ops.append(append(element, invoke, complete, outcome="fail"))
        else:
            state.append(element)
            ops.append(append(element, invoke, complete, length=len(state)))
    return ops, state


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32), st.integers(0, 40))
def test_correct_histories_pass(seed: int, n: int) -> None:
    ops, final = _simulate(seed, n)
    verdict = check(ops, {"l": final})
    assert verdict.valid is True, (seed, verdict.details["violations"])


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32), st.integers(2, 40), st.sampled_from(["drop", "dup", "swap"]))
def test_corrupted_final_lists_fail(seed: int, n: int, corruption: str) -> None:
    ops, final = _simulate(seed, n)
    acked = [op.value for op in ops if op.op == "append" and op.outcome == "ok"]
    rng = random.Random(seed)
    if corruption == "drop":
        if not acked:
            return
        dropped = rng.choice(acked)
        final = [e for e in final if e != dropped]
    elif corruption == "dup":
        if not final:
            return
        final = [*final, rng.choice(final)]
    else:
        if len(acked) < 2:
            return
        i = rng.randrange(len(final) - 1)
        final[i], final[i + 1] = final[i + 1], final[i]
        # a swap of two concurrent, length-less appends would be legal: ours carry lengths
        if not any(
            op.op == "append" and op.outcome == "ok" and op.value in final[i : i + 2] for op in ops
        ):
            return
    assert check(ops, {"l": final}).valid is False
