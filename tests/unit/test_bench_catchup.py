"""The catchup bench section's summary and table (bench/catchup.py), without a cluster."""

from __future__ import annotations

from bench import catchup


def _trial(kind: str, seconds: float, caught_up: bool = True, **extra: object) -> dict[str, object]:
    return {
        "kind": kind,
        "caught_up": caught_up,
        "seconds": seconds,
        "leader_cpu_s": seconds / 4,
        "snapshot_mib": 130.0,
        "frames_cut": 0,
        "leader_max_tick_gap_ms": 150,
        "follower_max_tick_gap_ms": 600,
        **extra,
    }


def test_the_summary_counts_only_trials_that_caught_up_and_names_the_others() -> None:
    trials = [
        _trial("random", 2.0),
        _trial("random", 3.0),
        _trial("random", 60.0, caught_up=False),
        _trial("json", 1.5),
        {"kind": "json", "error": "RuntimeError: the leader did not answer Status"},
    ]
    summary = catchup.summarize(trials)
    assert summary["random"]["trials"] == 3
    assert summary["random"]["not_caught_up"] == 1
    assert summary["random"]["seconds"] == {"median": 2.5, "min": 2.0, "max": 3.0}
    assert summary["json"]["trials"] == 2  # the broken trial is counted, not measured
    assert summary["json"]["not_caught_up"] == 0
    assert summary["json"]["seconds"]["median"] == 1.5


def test_the_table_shows_each_kind_and_every_failed_trial() -> None:
    trials = [_trial("random", 2.0), {"kind": "json", "error": "OSError: boom"}]
    section = {
        "setup": {"keys": 100, "value_bytes": 1000, "timeout_s": 60.0},
        "trials": trials,
        "summary": catchup.summarize(trials),
    }
    text = catchup.markdown(section)
    assert (
        "| random | 1 | 0 | 2.00 (2.00-2.00) | 0.50 (0.50-0.50) | 600 (600-600) | 0 (0-0) |" in text
    )
    assert "| json | 1 | 0 | - | - | - | - |" in text
    assert "- json trial failed: OSError: boom" in text
    assert "130.0-130.0 MiB" in text
