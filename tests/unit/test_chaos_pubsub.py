"""checkers.check_pubsub over hand-made pub/sub records (no sockets): a clean history
passes, and each rule fails the history that breaks it."""

from __future__ import annotations

from typing import Any

from raftcache.chaos.checkers import check_pubsub


def pub(message: str, channel: str = "ps:0", outcome: str = "ok", t: float = 1.0) -> dict[str, Any]:
    publisher = -1 if message.startswith("end-") else int(message.split("-")[0])
    return {
        "what": "publish", "publisher": publisher, "channel": channel, "message": message,
        "invoke": t, "complete": t + 0.01, "outcome": outcome, "time": t + 0.01,
    }  # fmt: skip


def got(sub: int, session: int, message: str, channel: str = "ps:0") -> dict[str, Any]:
    return {
        "what": "message", "subscriber": sub, "session": session, "channel": channel,
        "message": message, "time": 2.0,
    }  # fmt: skip


def opened(sub: int, session: int) -> dict[str, Any]:
    return {"what": "subscribed", "subscriber": sub, "session": session, "time": 0.5}


PUBLISHED = [pub("0-0"), pub("0-1", "ps:1"), pub("0-2"), pub("end-0")]
CLEAN = [
    opened(0, 1),
    opened(1, 1),
    *PUBLISHED,
    got(0, 1, "0-0"),
    got(0, 1, "0-1", "ps:1"),
    got(0, 1, "0-2"),
    got(0, 1, "end-0"),
    got(1, 1, "0-1", "ps:1"),  # the Redis subscriber joined late: at most once
    got(1, 1, "0-2"),
    got(1, 1, "end-0"),
]


def problems(verdict: Any) -> list[str]:
    return [v["problem"] for v in verdict.details["violations"]]


def test_a_clean_history_passes_with_its_counts() -> None:
    verdict = check_pubsub(CLEAN)
    assert verdict.valid is True, verdict
    assert verdict.details["published"] == {"ok": 4}
    assert verdict.details["delivered"] == {0: 4, 1: 3}
    assert verdict.details["sessions"] == {0: 1, 1: 1}


def test_a_message_never_published_or_from_a_failed_publish_is_a_phantom() -> None:
    records = [*CLEAN, pub("0-3", outcome="fail"), got(0, 1, "0-3"), got(1, 1, "9-9")]
    assert problems(check_pubsub(records)) == ["its publish failed", "never published"]


def test_an_unknown_publish_may_be_delivered_and_out_of_order() -> None:
    records = [*CLEAN, pub("0-3", outcome="unknown"), pub("0-4"), got(0, 1, "0-4")]
    records.append(got(0, 1, "0-3"))
    assert check_pubsub(records).valid is True


def test_a_message_on_another_channel_is_a_violation() -> None:
    records = [*CLEAN, pub("0-3", "ps:2"), got(0, 1, "0-3", "ps:0")]
    assert problems(check_pubsub(records)) == ["published on ps:2"]


def test_twice_in_one_session_is_a_violation_but_again_in_a_new_session_is_not() -> None:
    records = [*CLEAN, got(1, 1, "0-2")]
    assert problems(check_pubsub(records)) == ["delivered twice in one session"]
    # a re-subscription on a node that applies later may deliver it again: at most once
    # holds per subscription
    records = [*CLEAN, opened(1, 2), got(1, 2, "0-2")]
    assert check_pubsub(records).valid is True


def test_acknowledged_messages_out_of_order_in_a_session() -> None:
    records = [*PUBLISHED, got(0, 1, "0-2"), got(0, 1, "0-0"), got(0, 1, "end-0")]
    assert (
        problems(check_pubsub(records))
        == [
            "after 0-2, acknowledged later",
            "0-2 then 0-0 in the first, the other way round in the second",
        ][:1]
    )


def test_two_sessions_sharing_messages_in_different_orders() -> None:
    # unknown publishes have no acknowledged order, but the log still has one order
    unknown = [pub("0-0", outcome="unknown"), pub("0-1", outcome="unknown"), pub("end-0")]
    records = [
        *unknown,
        got(0, 1, "0-0"),
        got(0, 1, "0-1"),
        got(0, 1, "end-0"),
        got(1, 1, "0-1"),
        got(1, 1, "0-0"),
        got(1, 1, "end-0"),
    ]
    assert problems(check_pubsub(records)) == [
        "0-0 then 0-1 in the first, the other way round in the second"
    ]


def test_a_subscriber_without_the_end_marker_is_stuck() -> None:
    records = [r for r in CLEAN if not (r.get("subscriber") == 1 and r["what"] == "message")]
    assert problems(check_pubsub(records)) == ["no end marker (stuck)"]


def test_no_subscriber_records_is_unknown() -> None:
    assert check_pubsub(PUBLISHED).valid == "unknown"
