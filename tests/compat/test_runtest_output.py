"""The runtest output reader and the skip list, on transcripts runtest 7.0.15 really prints."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.compat import skip_list
from tests.compat.redis_suite import Report
from tests.compat.runtest_output import Failure, parse

# Abridged from a run against a raftcache cluster (runtest --durable, TERM=xterm colours).
TRANSCRIPT = """\
Cleanup: may take some time... OK
Starting test server at port 21079
[ready]: 6846
\x1b[1;37;49mTesting unit/multi\x1b[0m
[\x1b[0;32;49mok\x1b[0m]: MULTI / EXEC basics (3 ms)
[ignore]: EXEC fail on lazy expired WATCHed key: Tag: needs:debug denied
[ignore]: Tag: needs:repl denied
[skip]: MULTI and script timeout
[err]: EXEC fails if there are errors while queueing commands #2 in tests/unit/multi.tcl
 SET failed (possibly related to argument 'maxmemory')
ERR CONFIG SET failed (possibly related to argument 'maxmemory')
    while executing
"$rd read"
[err]: MUTLI / EXEC with REPLICAOF in tests/unit/multi.tcl
Expected 'OK' to equal or match 'QUEUED'
[ok]: DISCARD (1 ms)
[1/1 \x1b[0;33;49mdone\x1b[0m]: unit/multi (1 seconds)

                   The End

Execution time of different units:
  1 seconds - unit/multi

!!! WARNING The following tests failed:

*** [err]: MUTLI / EXEC with REPLICAOF in tests/unit/multi.tcl
Expected 'OK' to equal or match 'QUEUED'
"""

TIMEOUT = """\
Testing unit/protocol
[ok]: Handle an empty query (1 ms)
[TIMEOUT]: clients state report follows.
sock55d0c7a1b2c0 => (IN PROGRESS) Out of range multibulk payload length
Killing still running Redis server 123

                   The End
"""

EXCEPTION = """\
Testing unit/keyspace
[exception]: Executing test client: ERR unknown command 'function', with args beginning with: .
ERR unknown command 'function', with args beginning with:
    while executing
"r function flush"
"""


def test_counts_each_status_once_and_stops_at_the_recap() -> None:
    result = parse("multi", TRANSCRIPT)
    assert result.passed == ["MULTI / EXEC basics", "DISCARD"]
    assert [f.name for f in result.failed] == [
        "EXEC fails if there are errors while queueing commands #2",
        "MUTLI / EXEC with REPLICAOF",
    ]
    assert result.skipped == ["MULTI and script timeout"]
    assert [(i.name, i.why) for i in result.ignored] == [
        ("EXEC fail on lazy expired WATCHed key", "Tag: needs:debug denied"),
        (None, "Tag: needs:repl denied"),
    ]
    assert result.done and result.aborted is None and result.started


def test_a_tcl_error_is_reported_whole_not_cut_by_durable() -> None:
    first, second = parse("multi", TRANSCRIPT).failed
    assert first.message.startswith("ERR CONFIG SET failed (possibly related to argument")
    assert "while executing" in first.detail
    assert second.message == "Expected 'OK' to equal or match 'QUEUED'"


def test_a_timeout_names_the_test_that_hung() -> None:
    result = parse("protocol", TIMEOUT)
    assert result.passed == ["Handle an empty query"]
    assert result.hung_test == "Out of range multibulk payload length"
    assert result.aborted is not None and not result.done


def test_an_exception_before_any_test_means_the_unit_could_not_start() -> None:
    result = parse("keyspace", EXCEPTION)
    assert result.aborted is not None and "unknown command 'function'" in result.aborted
    assert not result.started
    report = Report([result], [], "test", 0.0)
    assert report.could_not_start() == [result]


def test_the_report_counts_tag_refusals_as_skips_with_their_reason() -> None:
    report = Report([parse("multi", TRANSCRIPT)], skip_list.load(), "test", 1.0)
    assert report.totals() == {"passed": 2, "failed": 2, "skipped": 2, "ignored_blocks": 1}
    summary = report.to_json()
    reasons = {s["name"]: s["reason"] for s in summary["units"]["multi"]["skips"]}
    assert "busy script" in reasons["MULTI and script timeout"]
    assert "DEBUG" in reasons["EXEC fail on lazy expired WATCHed key"]
    assert report.pass_rate() == 50.0


def test_every_committed_skip_has_a_reason_and_a_valid_pattern() -> None:
    skips = skip_list.load()
    assert skips, "the skip file is empty"
    for skip in skips:
        assert len(skip.reason) > 10, f"line {skip.line}: reason too short: {skip.reason!r}"
        if skip.pattern.startswith("/"):
            # runtest evaluates these with Tcl's regexp, where \b is a backspace.
            assert "\\b" not in skip.pattern, f"line {skip.line}: use [ :,/] not \\b in Tcl"
            re.compile(skip.pattern[1:])


def test_an_entry_without_a_reason_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "skip.txt"
    bad.write_text("# why\nfirst test\n\nsecond test\n")
    with pytest.raises(skip_list.SkipListError, match=":4: 'second test' has no reason"):
        skip_list.load(bad)


def test_patterns_match_as_runtest_matches_them() -> None:
    exact = skip_list.Skip("BLPOP: timeout", "r", 1)
    regex = skip_list.Skip("/^BLMPOP_(LEFT|RIGHT):", "r", 2)
    assert exact.matches("BLPOP: timeout") and not exact.matches("BLPOP: timeout 2")
    assert regex.matches("BLMPOP_LEFT: timeout") and not regex.matches("LMPOP_LEFT: x")


def test_the_report_names_unknown_commands_and_clusterdown_failures() -> None:
    result = parse("string", "[ok]: a (1 ms)\n")
    result.failed = [
        Failure("SETBIT fuzzing", "ERR unknown command 'setbit', with args beginning with: "),
        Failure("GETBIT", "Expected 'ERR unknown command 'GETBIT', with args' to match 'x'"),
        Failure("ZSCORE", "CLUSTERDOWN no leader is known right now"),
    ]
    report = Report([result], [], "test", 1.0)
    assert report.missing_commands() == {"setbit": 1, "getbit": 1}
    assert report.clusterdown_failures() == 1
    assert "\nunknown commands, by failing tests: setbit (1), getbit (1)" in list(report.lines())
