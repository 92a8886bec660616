"""A fast slice of `make redis-compat` inside `make test`: Redis's own tests of a few units
against a real 3-node cluster, with a floor on how many pass in each.

The suite comes from Debian's redis source package, fetched once into the cache dir
(`.ci/run` prefetches it and keeps it across CI runs); a failed fetch fails this test with
apt's message, it never skips. Raise a floor when a fix makes more tests pass.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.compat import skip_list
from tests.compat.redis_suite import RunConfig, local_cluster, run_suite
from tests.compat.suite_source import FetchError, ensure_suite

pytestmark = pytest.mark.integration

# unit -> tests that must pass (of the tests runtest runs in external mode; see the report).
FLOORS = {
    "type/incr": 23,
    "keyspace": 40,
    "expire": 58,
    "protocol": 19,
    "multi": 26,
    "type/stream-cgroups": 36,  # ~3 s; type/stream's fuzzers take ~1 min, so it stays out
}


def test_redis_suite_slice(tmp_path: Path) -> None:
    try:
        suite = ensure_suite()
    except FetchError as exc:
        pytest.fail(f"cannot fetch Redis's test suite: {exc}")
    config = RunConfig(
        suite_dir=suite, out_dir=tmp_path, units=list(FLOORS), skips=skip_list.load()
    )
    with local_cluster(tmp_path / "cluster", "journal", []) as target:
        report = run_suite(config, target)
    text = "\n".join(report.lines())
    print(text)
    assert not [e for e in report.events if " exited " in e], text  # elections are no failure
    short = {
        r.unit: f"{len(r.passed)} passed < {FLOORS[r.unit]}"
        for r in report.results
        if len(r.passed) < FLOORS[r.unit]
    }
    assert not short, f"fewer Redis tests pass than before: {short}\n{text}"
