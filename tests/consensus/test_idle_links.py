"""Follower-to-follower links survive idleness, so an election's first round is heard.

pysyncobj drops a connection that read nothing for connectionTimeout at its next event,
with the message that woke it. Two followers send each other nothing while a leader
lives, so before keepalives (consensus/prevote.py `_keep_links_alive`) the first message
between them after an idle spell was lost: a candidate's first pre-vote or vote request.
A CI run of tests/integration/test_membership.py: a leadership transfer's target reached
only the old leader (2 votes of 5) and lost its election.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from tests.consensus.harness import SecretTrio, wait_for

SECRET = "idle-links-test-secret"
CONNECTION_TIMEOUT_S = 2.0  # harness.secret_config


def test_a_message_between_followers_arrives_after_an_idle_spell(trio: SecretTrio) -> None:
    leader = trio.leader()
    a, b = (n for n in trio.nodes if n is not leader)
    arrived: list[Any] = []
    receiver = b._syncobj
    handle = receiver._SyncObj__onMessageReceived

    def spy(node: Any, message: Any) -> None:
        if isinstance(message, dict) and message.get("type") == "idle_link_probe":
            arrived.append(message["n"])
        handle(node, message)

    receiver._SyncObj__transport.setOnMessageReceivedCallback(spy)
    sender = a._syncobj
    to_b = next(n for n in sender._SyncObj__otherNodes if n.id == b.config.self_addr)
    for n in range(2):
        time.sleep(CONNECTION_TIMEOUT_S * 1.5)  # no Raft traffic between the two followers
        sent = threading.Event()

        def send(n: int = n, sent: threading.Event = sent) -> None:  # on a's tick thread
            sender._SyncObj__transport.send(to_b, {"type": "idle_link_probe", "n": n})
            sent.set()

        a._on_tick_actions.append(send)
        assert sent.wait(5)
        wait_for(lambda n=n: n in arrived, f"probe {n} at the other follower", timeout=2)
    assert sender.keepalives_sent > 0 and receiver.keepalives_sent > 0
    assert trio.fatal == [[], [], []]
