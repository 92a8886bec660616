"""Routing and retries: one place decides where a call goes and whether to try again.

- Writes and LINEARIZABLE reads go to the leader (cached; re-learned from the
  `x-raftcache-leader` hint or from Cluster.Status); STALE reads rotate over all
  members, skipping one that cannot honour the staleness bound.
- UNAVAILABLE, leader changes and full queues are retried with exponential backoff
  and full jitter, inside ONE deadline per call.
- Writes carry a request id (client id + sequence) that stays the same across
  retries, so the cluster applies them at most once. If an attempt may have applied
  and the deadline passes before the outcome is settled: OutcomeUnknownError.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from raftcache.client import errors
from raftcache.client._transport import CallFailed, Transport
from raftcache.v1 import cluster_pb2

READ_STALE = "stale"
READ_LEADER = "leader"
WRITE = "write"


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff between attempts: uniform(0, min(cap, base * 2**attempt)) seconds."""

    base_s: float = 0.01
    cap_s: float = 0.5
    refresh_every_s: float = 30.0  # re-learn the members at least this often
    # One attempt may take at most this long: a hung node (a paused process still
    # accepts connections) must not eat the whole deadline while another leads.
    attempt_timeout_s: float = 1.5


# Errors the node answered itself: never retried. By status code, then by the node's own
# error class (trailing metadata), which is more specific where a code is shared.
_FINAL: dict[str, type[errors.RaftcacheError]] = {
    "INVALID_ARGUMENT": errors.InvalidInputError,
    "FAILED_PRECONDITION": errors.ConditionFailedError,
    "OUT_OF_RANGE": errors.RevisionCompactedError,
}
_FINAL_ANY_ORIGIN: dict[str, type[errors.RaftcacheError]] = {
    "UNAUTHENTICATED": errors.AuthenticationError,
    "PERMISSION_DENIED": errors.PermissionDeniedError,
}
"""Final whoever answered (a node, or a proxy in front of it): another attempt carries the
same credentials."""
_FINAL_BY_ORIGIN: dict[str, type[errors.RaftcacheError]] = {
    "RequestTooOld": errors.RequestTooOldError,
    "TooLarge": errors.TooLargeError,
    "OutOfMemory": errors.OutOfMemoryError,
    "WrongType": errors.WrongTypeError,
    "RevisionCompacted": errors.RevisionCompactedError,
    "SlowConsumer": errors.SlowConsumerError,
}


def final_error(failure: CallFailed) -> errors.RaftcacheError | None:
    """The typed error for a failure no retry can fix, or None when retrying may help."""
    final = _FINAL_BY_ORIGIN.get(failure.origin or "")
    if final is None and failure.origin is not None:
        final = _FINAL.get(failure.code)
    if final is errors.ConditionFailedError and _names_wrong_type(failure.details):
        final = errors.WrongTypeError  # the node reports it as a failed precondition
    if final is None and failure.code == "INVALID_ARGUMENT":  # e.g. over gRPC's own limit
        final = errors.InvalidInputError
    if final is None:
        final = _FINAL_ANY_ORIGIN.get(failure.code)
    if final is None and _over_grpc_message_limit(failure):
        return errors.TooLargeError(
            f"the request or its answer is over gRPC's message size limit ({failure.details}); "
            "nothing was applied: send or ask for less per call (split an mset or an mget), or "
            "raise the nodes' --max-value-bytes, which also raises their message limit"
        )
    return final(failure.details) if final is not None else None


def _over_grpc_message_limit(failure: CallFailed) -> bool:
    """gRPC's own refusal of a message over its size limit (no node error marker): the
    receiving side drops the call before any handler runs."""
    return (
        failure.code == "RESOURCE_EXHAUSTED"
        and failure.origin is None
        and "message larger than max" in failure.details.lower()
    )


def _names_wrong_type(details: str) -> bool:
    text = details.lower()
    return "wrong type" in text or "wrongtype" in text or "wrong kind" in text


class Router:
    """Keeps the cluster view (members, leader) and runs calls with retries."""

    def __init__(
        self,
        transport: Transport,
        seeds: Sequence[str],
        policy: RetryPolicy,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Any] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if not seeds:
            raise errors.InvalidInputError("no endpoints given: pass at least one HOST:PORT")
        self._transport = transport
        self._seeds = list(dict.fromkeys(seeds))
        self._members: list[str] = list(self._seeds)
        self.leader: str | None = None
        self._policy = policy
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._refreshed_at = float("-inf")
        self._next_stale = 0

    @property
    def members(self) -> list[str]:
        return list(self._members)

    # ------------------------------------------------------------------ view

    def deadline_in(self, seconds: float) -> float:
        """A deadline `seconds` from now on this router's clock."""
        return self._clock() + seconds

    async def refresh(self, deadline: float) -> None:
        """Ask members (leader first) for Cluster.Status and adopt the first answer that
        names a leader; if none does, the first answer.

        Adopting the first answer alone could stick: a node that knows no leader (one
        removed from the cluster, or amnesiac and not yet re-added, that still lists
        itself first among the members it knew) answered first on every refresh, and the
        client never asked the members that knew the leader (a CI run: ListMembers found
        "no leader" for 30 s on a healthy cluster)."""
        candidates = [a for a in [self.leader, *self._members, *self._seeds] if a]
        first: cluster_pb2.StatusResponse | None = None
        for address in dict.fromkeys(candidates):
            remaining = deadline - self._clock()
            if remaining <= 0:
                break
            try:
                status = await self._transport.call(
                    address, "Cluster/Status", cluster_pb2.StatusRequest(), min(remaining, 0.5)
                )
            except CallFailed:
                continue
            if status.leader_client_addr:
                self._adopt(status)
                return
            if first is None:
                first = status
        if first is not None:
            self._adopt(first)

    async def refresh_if_old(self, deadline: float) -> None:
        """Refresh when the view was never learned or is older than the policy allows."""
        if self._clock() - self._refreshed_at > self._policy.refresh_every_s:
            await self.refresh(deadline)

    def _adopt(self, status: cluster_pb2.StatusResponse) -> None:
        members = [m.client_addr for m in status.members if m.client_addr]
        if members:
            self._members = members
        self.leader = status.leader_client_addr or None
        self._refreshed_at = self._clock()

    # ------------------------------------------------------------------ calls

    async def call(
        self,
        method: str,
        request: Any,
        *,
        route: str,
        timeout: float,
        request_id: tuple[str, int] | None = None,
    ) -> Any:
        """Run one logical call until it succeeds, fails for good, or the deadline passes."""
        deadline = self._clock() + timeout
        await self.refresh_if_old(min(deadline, self._clock() + timeout / 2))
        maybe_applied = False
        skipped: set[str] = set()
        last: CallFailed | None = None
        attempt = redirects = 0
        while True:
            remaining = deadline - self._clock()
            if remaining <= 0:
                break
            address = self._target(route, skipped)
            try:
                return await self._transport.call(
                    address, method, request, min(remaining, self._policy.attempt_timeout_s)
                )
            except CallFailed as failure:
                last = failure
                final = final_error(failure)
                if isinstance(final, errors.RequestTooOldError):
                    raise _too_old(method, request_id, failure) from None
                if final is not None:
                    raise final from None
                if route == WRITE and _may_have_applied(failure):
                    maybe_applied = True
                redirected = self._learn(failure, address, route, skipped)
            # Hints can point in a circle during an election: only so many go at once.
            redirects = redirects + 1 if redirected else 0
            if redirects > len(self._members):
                redirected, redirects = False, 0
            attempt += 1
            if not redirected:
                await self._backoff(attempt, deadline)
                if route != READ_STALE and self.leader is None:
                    await self.refresh(deadline)
        if maybe_applied:
            advice = (
                f"retrying with the same request id {request_id} is safe"
                if request_id is not None
                else "it carries no request id, so a retry may apply it twice (a Publish "
                "retried may deliver the message twice)"
            )
            raise errors.OutcomeUnknownError(
                f"{method.split('/')[-1]} may or may not have been applied: no attempt "
                f"settled it within {timeout} s (last: {_describe(last)}); {advice}",
                request_id,
            )
        if last is not None and last.origin == "Overloaded":
            raise errors.OverloadedError(
                f"{method.split('/')[-1]} failed: the node's write queue stayed full for "
                f"{timeout} s ({last.details}); nothing was applied; retry later or slow down"
            )
        raise errors.UnavailableError(
            f"{method.split('/')[-1]} failed: no node could serve it within {timeout} s "
            f"(last: {_describe(last)}); nothing was applied"
        )

    def _target(self, route: str, skipped: set[str]) -> str:
        if route == READ_STALE:
            choices = [m for m in self._members if m not in skipped] or self._members
            self._next_stale = (self._next_stale + 1) % len(choices)
            return choices[self._next_stale]
        if self.leader:
            return self.leader
        # No leader known: any member forwards to the leader it knows.
        self._next_stale = (self._next_stale + 1) % len(self._members)
        return self._members[self._next_stale]

    def _learn(self, failure: CallFailed, address: str, route: str, skipped: set[str]) -> bool:
        """Update the view from a failure; True when the next attempt should go at once."""
        if failure.leader and failure.leader != address:
            self.leader = failure.leader
            if failure.leader not in self._members:
                self._members.append(failure.leader)
            return True
        if route == READ_STALE and failure.origin == "TooStale":
            skipped.add(address)
            return len(skipped) < len(self._members)
        if address == self.leader and failure.origin in (None, "NoLeader", "NotLeader"):
            self.leader = None  # unreachable or deposed: re-learn before the next attempt
        if route == READ_STALE:
            skipped.add(address)
        return False

    async def _backoff(self, attempt: int, deadline: float) -> None:
        # The exponent is capped: a watch resumes for as long as it takes (2**1024 would not
        # fit a float), and cap_s is reached long before 2**32 anyway.
        ceiling = min(self._policy.cap_s, self._policy.base_s * 2 ** min(attempt, 32))
        pause = min(self._rng.uniform(0, ceiling), max(deadline - self._clock(), 0))
        if pause > 0:
            await self._sleep(pause)


def _may_have_applied(failure: CallFailed) -> bool:
    """Could the write have reached a leader and been applied?"""
    if failure.code == "DEADLINE_EXCEEDED":
        return True  # the node's own outcome-unknown answer, or our deadline mid-call
    if failure.origin is not None:
        return False  # the node answered: NoLeader, NotLeader, Overloaded... not applied
    return not failure.never_sent  # a transport failure after sending


def _too_old(
    method: str, request_id: tuple[str, int] | None, failure: CallFailed
) -> errors.RequestTooOldError:
    return errors.RequestTooOldError(
        f"{method.split('/')[-1]} may or may not have been applied, and the cluster no longer "
        f"remembers request id {request_id} ({failure.details}); no retry can settle it: "
        "re-read the state before writing again",
        request_id,
    )


def _describe(failure: CallFailed | None) -> str:
    if failure is None:
        return "no attempt could be made"
    return f"{failure.code}: {failure.details}"
