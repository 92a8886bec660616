"""The work-queue checker (LPUSH producers, BRPOP consumers): histories that must pass or
fail."""

from __future__ import annotations

from typing import Any

from raftcache.chaos.checkers import check_queue
from raftcache.chaos.history import Op

_clock = iter(range(1, 10_000))


def op(kind: str, value: Any, outcome: str = "ok") -> Op:
    t = float(next(_clock))
    return Op.from_dict(
        {
            "process": 0,
            "op": kind,
            "key": "qu:0",
            "value": value,
            "result": None,
            "invoke": t,
            "complete": t + 0.5,
            "outcome": outcome,
        }
    )


def queues(*elements: str) -> dict[str, list[str]]:
    return {"qu:0": list(elements), "qu:1": []}


def test_every_element_taken_once_or_left_queued_passes() -> None:
    ops = [op("enqueue", "a"), op("enqueue", "b"), op("dequeue", "a"), op("dequeue", None)]
    verdict = check_queue(ops, queues("b"))
    assert verdict.valid is True, verdict.message
    assert verdict.details["taken"] == 1 and verdict.details["left_queued"] == 1


def test_a_lost_element_fails() -> None:
    verdict = check_queue([op("enqueue", "a"), op("enqueue", "b"), op("dequeue", "a")], queues())
    assert verdict.valid is False and "lost" in verdict.message


def test_an_unknown_dequeue_may_explain_one_missing_element_only() -> None:
    ops = [op("enqueue", "a"), op("dequeue", None, "unknown")]
    assert check_queue(ops, queues()).valid is True
    ops = [op("enqueue", "a"), op("enqueue", "b"), op("dequeue", None, "unknown")]
    assert check_queue(ops, queues()).valid is False


def test_duplicates_phantoms_and_failed_enqueues_fail() -> None:
    twice = [op("enqueue", "a"), op("dequeue", "a"), op("dequeue", "a")]
    assert "duplicated" in check_queue(twice, queues()).message
    taken_and_queued = [op("enqueue", "a"), op("dequeue", "a")]
    assert "duplicated" in check_queue(taken_and_queued, queues("a")).message
    assert "never enqueued" in check_queue([op("dequeue", "x")], queues()).message
    failed = [op("enqueue", "a", "fail")]
    assert "its enqueue failed" in check_queue(failed, queues("a")).message
    assert check_queue([op("enqueue", "a", "fail")], queues()).valid is True


def test_an_unknown_enqueue_may_or_may_not_have_happened() -> None:
    assert check_queue([op("enqueue", "a", "unknown")], queues()).valid is True
    assert check_queue([op("enqueue", "a", "unknown")], queues("a")).valid is True


def test_without_the_final_queues_the_verdict_is_unknown() -> None:
    assert check_queue([op("enqueue", "a")], None).valid == "unknown"
