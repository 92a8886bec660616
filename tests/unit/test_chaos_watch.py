"""checkers.check_watch over hand-made watch records and register histories (no sockets):
each rule passes a clean history and fails the one that breaks it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from raftcache.chaos import runner
from raftcache.chaos.checkers import check_watch
from raftcache.chaos.history import Op

MARKER = ("r:~end", "end-1")


def write(key: str, value: str, invoke: float, complete: float, outcome: str = "ok") -> Op:
    return Op(0, "set", key, value, None, invoke, complete, outcome)  # type: ignore[arg-type]


def cas(key: str, old: str, new: str, applied: bool | None, t: float) -> Op:
    outcome = "unknown" if applied is None else "ok"
    return Op(1, "cas", key, (old, new), applied, t, t + 0.1, outcome)  # type: ignore[arg-type]


def start(t: float, revision: int = 0, watcher: int = 0) -> dict[str, Any]:
    return {"watcher": watcher, "what": "start", "time": t, "revision": revision, "value": "n1"}


def event(
    key: str, value: str, revision: int, t: float, watcher: int = 0, kind: str = "set"
) -> dict[str, Any]:
    return {
        "watcher": watcher,
        "what": "event",
        "time": t,
        "key": key,
        "value": value,
        "revision": revision,
        "kind": kind,
    }


def end(t: float, watcher: int = 0, resumes: int = 1) -> list[dict[str, Any]]:
    return [
        event(*MARKER, 1000, t, watcher),
        {"watcher": watcher, "what": "end", "time": t + 1, "value": resumes},
    ]


WRITES = [
    write("r:0", "a", 1.0, 1.1),
    write("r:1", "b", 1.2, 1.3),
    write("r:0", "c", 2.0, 2.1),
]
CLEAN = [
    start(0.5, 10),
    event("r:0", "a", 11, 1.1),
    event("r:1", "b", 12, 1.3),
    event("r:0", "c", 13, 2.1),
    *end(3.0),
]
FINAL = {"r:0": "c", "r:1": "b", "c:0": "7"}


def problems(verdict: Any) -> list[str]:
    return [v["problem"] for v in verdict.details["violations"]]


def test_a_clean_watch_passes_and_counts_what_it_checked() -> None:
    verdict = check_watch(CLEAN, WRITES, FINAL, MARKER)
    assert verdict.valid is True, verdict
    assert verdict.details["acked_writes_checked"] == 3
    assert verdict.details["watchers"][0]["event"] == 4  # three writes and the marker
    assert verdict.details["watchers"][0]["resumes"] == 1
    assert "1 resume(s)" in verdict.message


def test_an_acknowledged_write_never_delivered_is_missing() -> None:
    records = [r for r in CLEAN if r.get("value") != "b"]
    verdict = check_watch(records, WRITES, FINAL, MARKER)
    assert verdict.valid is False
    assert verdict.details["missing_count"] == 1
    assert verdict.details["missing"][0]["value"] == "b"


def test_writes_before_the_watch_started_are_not_required() -> None:
    early = [write("r:2", "z", 0.1, 0.2), *WRITES]
    verdict = check_watch(CLEAN, early, FINAL, MARKER)
    assert verdict.valid is True, verdict


def test_an_unknown_write_may_be_delivered_or_not() -> None:
    unknown = [*WRITES, write("r:1", "u", 2.2, 5.0, "unknown")]
    assert check_watch(CLEAN, unknown, FINAL, MARKER).valid is True
    records = [*CLEAN[:4], event("r:1", "u", 14, 2.3), *end(3.0)]
    # the final read may be the unknown write's value too
    assert check_watch(records, unknown, {**FINAL, "r:1": "u"}, MARKER).valid is True


def test_revisions_must_increase() -> None:
    records = [CLEAN[0], CLEAN[1], CLEAN[3], CLEAN[2], *end(3.0)]
    verdict = check_watch(records, WRITES, FINAL, MARKER)
    assert verdict.valid is False
    assert problems(verdict)[0] == "revision not above 13"


def test_a_value_never_written_or_from_a_failed_write_is_a_violation() -> None:
    failed = [*WRITES, write("r:1", "f", 2.2, 2.3, "fail"), cas("r:0", "c", "x", False, 2.4)]
    for value, problem in (
        ("ghost", "a value never written to this key"),
        ("f", "the write did not apply"),
    ):
        records = [*CLEAN[:4], event("r:1", value, 14, 2.5), *end(3.0)]
        verdict = check_watch(records, failed, {**FINAL, "r:1": value}, MARKER)
        assert verdict.valid is False
        assert problem in problems(verdict)
    records = [*CLEAN[:4], event("r:0", "x", 14, 2.5), *end(3.0)]
    verdict = check_watch(records, failed, {**FINAL, "r:0": "x"}, MARKER)
    assert "the write did not apply" in problems(verdict)  # a cas answered False


def test_an_applied_cas_is_required_and_may_be_delivered() -> None:
    writes = [*WRITES, cas("r:0", "c", "d", True, 2.4)]
    assert check_watch(CLEAN, writes, FINAL, MARKER).valid is False  # d missing
    records = [*CLEAN[:4], event("r:0", "d", 14, 2.6), *end(3.0)]
    assert check_watch(records, writes, {**FINAL, "r:0": "d"}, MARKER).valid is True


def test_a_change_delivered_twice_is_a_violation() -> None:
    records = [*CLEAN[:4], event("r:0", "c", 14, 2.2), *end(3.0)]
    verdict = check_watch(records, WRITES, FINAL, MARKER)
    assert verdict.valid is False
    assert problems(verdict) == ["delivered again (first at 13)"]


def test_a_delete_or_expiry_of_a_register_is_a_violation() -> None:
    records = [*CLEAN[:4], event("r:0", "c", 14, 2.2, kind="expire"), *end(3.0)]
    assert "a expire event" in problems(check_watch(records, WRITES, FINAL, MARKER))


def test_revision_order_must_respect_real_time() -> None:
    # "a" was acknowledged (1.1) before "c" was invoked (2.0), yet "c" comes first
    records = [
        start(0.5, 10),
        event("r:1", "b", 11, 2.1),
        event("r:0", "c", 12, 2.1),
        event("r:0", "a", 13, 2.1),
        *end(3.0),
    ]
    verdict = check_watch(records, WRITES, {**FINAL, "r:0": "a"}, MARKER)
    assert verdict.valid is False
    assert problems(verdict) == [
        "revision 12 was written after revision 13 was acknowledged, yet comes before it"
    ]
    # concurrent writes may come in either order
    overlapping = [write("r:0", "a", 1.0, 2.5), WRITES[1], WRITES[2]]
    assert check_watch(records, overlapping, {**FINAL, "r:0": "a"}, MARKER).valid is True


def test_revision_order_is_one_order_across_keys() -> None:
    # "a" on r:0 was acknowledged (1.1) before "b" on r:1 was invoked (1.2)
    records = [start(0.5, 10), event("r:1", "b", 11, 1.3), event("r:0", "a", 12, 1.3)]
    records += [event("r:0", "c", 13, 2.1), *end(3.0)]
    verdict = check_watch(records, WRITES, FINAL, MARKER)
    assert problems(verdict) == [
        "revision 11 was written after revision 12 was acknowledged, yet comes before it"
    ]


def test_a_compacted_restart_excuses_only_the_writes_in_its_gap() -> None:
    writes = [*WRITES, write("r:1", "g", 2.3, 2.4), write("r:1", "h", 4.0, 4.1)]
    gap = {"watcher": 0, "what": "compacted", "time": 2.6, "revision": 13, "value": "gone"}
    records = [*CLEAN[:4], gap, start(3.0, 20), *end(5.0)]  # g (2.3-2.4) in the gap; h not
    verdict = check_watch(records, writes, {**FINAL, "r:1": "h"}, MARKER)
    assert verdict.valid is False
    assert [m["value"] for m in verdict.details["missing"]] == ["h"]
    records = [*CLEAN[:4], gap, start(3.0, 20), event("r:1", "h", 21, 4.1), *end(5.0)]
    assert check_watch(records, writes, {**FINAL, "r:1": "h"}, MARKER).valid is True


def test_a_gap_starts_when_the_last_delivered_write_was_invoked() -> None:
    """A watch on a follower lags the leader's answers: a write acknowledged before the
    watcher logged the change just before it may still fall in the gap that follows."""
    writes = [write("r:0", "x", 1.0, 1.9), write("r:1", "y", 1.92, 1.95)]
    gap = {"watcher": 0, "what": "compacted", "time": 2.1, "revision": 100, "value": "gone"}
    records = [start(0.5, 99), event("r:0", "x", 100, 2.0), gap, start(2.5, 200), *end(3.0)]
    verdict = check_watch(records, writes, {"r:0": "x"}, MARKER)
    assert verdict.valid is True, verdict  # y (acked 1.95, before x was logged) is excused
    # a write acknowledged before x was even invoked came before x: not in the gap
    early = [write("r:1", "w", 0.6, 0.9), *writes]
    verdict = check_watch(records, early, {"r:0": "x"}, MARKER)
    assert [m["value"] for m in verdict.details["missing"]] == ["w"]


def test_a_watch_that_never_delivers_the_marker_stalled() -> None:
    records = CLEAN[:4]
    verdict = check_watch(records, WRITES, FINAL, MARKER)
    assert verdict.valid is False
    assert problems(verdict) == ["the end marker was never delivered (stalled)"]


def test_the_last_delivered_value_must_be_the_final_read() -> None:
    verdict = check_watch(CLEAN, WRITES, {**FINAL, "r:0": "a"}, MARKER)
    assert verdict.valid is False
    assert problems(verdict) == ["the last delivered value is not the final read"]


def test_every_watcher_is_checked_on_its_own() -> None:
    second = [start(0.5, 10, watcher=1), event("r:0", "a", 11, 1.1, watcher=1), *end(3.0, 1)]
    verdict = check_watch([*CLEAN, *second], WRITES, FINAL, MARKER)
    assert verdict.valid is False
    assert {m["value"] for m in verdict.details["missing"]} == {"b", "c"}
    assert all(m["watcher"] == 1 for m in verdict.details["missing"])


def test_no_records_is_unknown_never_a_pass() -> None:
    verdict = check_watch([], WRITES, FINAL, MARKER)
    assert verdict.valid == "unknown"


def test_runner_refuses_a_negative_watcher_or_subscriber_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert runner.main(["--watchers", "-1", "--out", str(out)]) == runner.EXIT_USAGE
    assert "--watchers must be >= 0 (0: no watches), not -1" in capsys.readouterr().err
    code = runner.main(["--kubernetes", "--endpoints", "127.0.0.1:1", "--watchers", "-2"])
    assert code == runner.EXIT_USAGE
    assert "--watchers must be >= 0" in capsys.readouterr().err
    assert runner.main(["--subscribers", "-1", "--out", str(out)]) == runner.EXIT_USAGE
    assert "--subscribers must be >= 0 (0: no pub/sub), not -1" in capsys.readouterr().err
    assert not out.exists(), "nothing starts"
