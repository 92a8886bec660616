"""Issue 12's targets measured in pairs: etcd and raftcache both up, each target's two rows
back to back, `reps` times, the order alternating; the verdict on the median of the paired
ratios.

Why: the memcached section measures its systems one after the other, a few minutes apart,
and on this shared 2-core host that moved a ratio by a fifth between runs of the same code
(2026-12-07: etcd's linearizable get at 64 clients 8,490/s in one run and 11,551/s in the
next, raftcache's memcached get 30,012/s and 28,606/s: 3.54x, then 2.48x). A pair measured
seconds apart divides out what the host was doing that minute, as the security section's
paired ratios do. The cost: the other system sits idle meanwhile (etcd's heartbeats,
raftcache's lease ticks: a few % of a core), and whichever is measured second in a pair
meets a host already warm; the order alternates for that.

`measure_pairs` is generic over two sides (a reference system and ours, each with its
addresses per role and its processes): the section pairs etcd with raftcache's memcached
port, the tests pair memcached with raftcache (no etcd in CI).
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raftcache.chaos.local_cluster import LocalCluster

from bench import memgen, peers, peers_report, peers_section
from bench.common import log, node_pids, restart_followers_with, running_cluster


@dataclass(frozen=True)
class Roles:
    """Where a side's roles are now: addresses per role, its processes, who leads."""

    addrs: Mapping[str, Sequence[str]]
    pids: Mapping[str, int]
    leader: str = ""
    as_prepared: bool = True
    """False when the roles are not the ones the side was set up for (raftcache: a
    follower restarted with --memcached-stale-reads now leads, so its "linearizable" gets
    would be local reads): a row measured so does not count."""


@dataclass(frozen=True)
class Side:
    """One system as the pairs see it; `roles` is asked before and after every row, so a
    row goes to whoever leads then, and a pair during which the leader changed is
    measured again (a failover is not what a pair measures)."""

    system: str
    interface: str
    prefix: str
    roles: Callable[[], Roles]
    per_channel: int = 0


ATTEMPTS = 3
"""Tries per pair while the leader keeps changing (or the roles are not as prepared); a
pair still unsettled after them is recorded but left out of the median. Only the last
try's numbers (ops/s, errors) are kept."""


Pair = tuple[str, tuple[str, str, str], tuple[str, str, str]]
"""(row kind, reference's (label, op, role), ours' (label, op, role))."""

ETCD_MEMCACHED_PAIRS: tuple[Pair, ...] = (
    ("write", ("put", "etcd_put", "leader"), ("set", "mc_set", "leader")),
    ("read", ("get (linearizable)", "etcd_get_lin", "leader"), ("get", "mc_get", "leader")),
    (
        "stale",
        ("get (serializable)", "etcd_get_ser", "all"),
        ("get (stale reads)", "mc_get", "followers"),
    ),
)
"""Issue 12's three targets (peers_report.MEMCACHED_TARGETS) as pairs of rows at 64 clients:
the etcd row is the one the one-pass verdict most often takes as its reference."""
CLIENTS = 64


def _row(side: Side, kind: str, spec: tuple[str, str, str]) -> peers_section.Row:
    label, op, role = spec
    return peers_section.Row(
        side.system, side.interface, kind, label, op, CLIENTS, role, side.prefix, side.per_channel
    )


def measure_pairs(
    ref: Side,
    ours: Side,
    pairs: Sequence[Pair],
    factors: Mapping[str, float],
    *,
    reps: int,
    keys: int,
    warmup: float,
    seconds: float,
    mc_runner: peers_section.Runner | None = None,
) -> dict[str, Any]:
    """Every pair `reps` times (reference first on even repetitions, ours first on odd),
    per kind: both systems' ops/s per repetition, the paired ratios ours/reference, their
    median, and whether it meets factors[kind]. The reference's row is measured with one
    and with two generator processes and keeps the better, whatever the first one's CPU:
    with the other system up, etcd's Python generator stayed just under the one-pass
    run's 85% rule and gave etcd 6k serializable gets/s against 9-11k with two processes
    (2026-12-07), a ratio that flattered us."""
    if reps < 1:
        raise ValueError(f"paired targets need at least 1 repetition, not {reps}")
    kw: dict[str, Any] = {"keys": keys, "warmup": warmup, "seconds": seconds}
    per_kind: dict[str, dict[str, Any]] = {
        kind: {"kind": kind, ref.system: [], ours.system: [], "ratios": [], "errors": 0}
        for kind, _, _ in pairs
    }
    for rep in range(reps):
        for kind, ref_spec, our_spec in pairs:
            order = [(ref, ref_spec), (ours, our_spec)]
            if rep % 2:
                order.reverse()
            cell = per_kind[kind]
            tries = 0
            while True:
                tries += 1
                got: dict[str, dict[str, Any]] = {}
                settled = True
                for side, spec in order:
                    row = _row(side, kind, spec)
                    now = side.roles()
                    got[side.system] = peers_section.measure(
                        row, now.addrs[row.role], now.pids, mc_runner=mc_runner,
                        both=side is ref, **kw,
                    )  # fmt: skip
                    after = side.roles()
                    settled = settled and now.as_prepared and after.leader == now.leader
                if settled or tries == ATTEMPTS:
                    break
                log(f"  pair {rep} {kind}: a leader changed (try {tries}): measuring it again")
            if tries > 1 or not settled:
                # what the report says of it; only the last try's numbers are kept
                cell.setdefault("retried", []).append(
                    {"rep": rep, "tries": tries, "settled": settled}
                )
            a, b = got[ref.system]["ops_per_s"], got[ours.system]["ops_per_s"]
            cell[ref.system].append(a)
            cell[ours.system].append(b)
            # the exact ratio (the report rounds it down for display): a verdict on rounded
            # ratios could pass 2.99996 as 3
            cell["ratios"].append(b / a if a and settled else None)
            cell["errors"] += got[ref.system]["errors"] + got[ours.system]["errors"]
            log(f"  pair {rep} {kind}: {ours.system} {b:,.0f}/s vs {ref.system} {a:,.0f}/s")
    out = []
    for kind, _, _ in pairs:
        cell = per_kind[kind]
        ratios = [r for r in cell["ratios"] if r is not None]
        median = statistics.median(ratios) if ratios else None
        factor = factors.get(kind)
        cell["median_ratio"] = median
        cell["required"] = factor
        cell["met"] = None if median is None or factor is None else median >= factor
        out.append(cell)
    return {"reps": reps, "clients": CLIENTS, "reference": ref.system, "ours": ours.system,
            "targets": out}  # fmt: skip


def memcached_port_side(cluster: LocalCluster, keys: int) -> Side:
    """raftcache's memcached port as a side: the followers restarted with
    --memcached-stale-reads (as in the section's own rows), the keys populated."""
    mc, missing = peers_section.memcached_addrs(cluster)
    if not mc:
        raise RuntimeError(missing)
    leader = restart_followers_with(
        cluster, [peers_section.MC_STALE_FLAG, str(peers_section.MC_STALE_MS)]
    )
    asyncio.run(
        memgen.populate(mc[leader], peers_section.MC_PREFIX, keys, peers_section.VALUE_SIZE)
    )
    cluster.wait_until_ready(timeout=60)

    def roles() -> Roles:
        lead = cluster.wait_for_leader()
        return Roles(
            {"leader": [mc[lead]], "followers": [a for i, a in enumerate(mc) if i != lead]},
            node_pids(cluster, lead),
            cluster.nodes[lead].node_id,
            # only the node that kept linearizable gets may lead: after a failover a
            # follower started with stale reads would lead, and the old leader follow
            # without them
            as_prepared=lead == leader,
        )

    return Side("raftcache", "memcached", peers_section.MC_PREFIX, roles)


def _etcd_leader(etcd: peers.EtcdCluster, timeout: float = 15.0) -> str:
    """The leader's endpoint, asked once per call (its name is derived from it, so a row
    never goes to one member while another is recorded), waiting out an election."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return etcd.leader_endpoint()
        except RuntimeError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.2)


def etcd_and_memcached_port(
    work_dir: Path,
    node_args: Sequence[str],
    *,
    reps: int,
    keys: int,
    warmup: float,
    seconds: float,
    mc_runner: peers_section.Runner | None = None,
) -> dict[str, Any]:
    """Issue 12's targets in pairs: a 3-node etcd and a 3-node raftcache (followers with
    --memcached-stale-reads, as in the section's own rows), both populated, both up."""
    started = time.monotonic()
    etcd = peers.EtcdCluster(Path(tempfile.mkdtemp(prefix="etcd-pairs-", dir=work_dir)))
    try:
        etcd.start()
        etcd.populate(peers_section.GRPC_PREFIX, keys, peers_section.VALUE_SIZE)
        etcd.compact_and_defrag()
        args = [*node_args, "--redis-max-staleness-ms", str(peers_section.REDIS_STALENESS_MS)]
        with running_cluster(work_dir, "pairs", args) as (cluster, _):
            ours = memcached_port_side(cluster, keys)

            def etcd_roles() -> Roles:
                endpoint = _etcd_leader(etcd)
                lead = etcd.names[etcd.endpoints.index(endpoint)]
                return Roles(
                    {"leader": [endpoint], "all": etcd.endpoints},
                    {(f"{n} (leader)" if n == lead else n): p for n, p in etcd.pids.items()},
                    lead,
                )

            ref = Side(
                "etcd", "gRPC", peers_section.GRPC_PREFIX, etcd_roles,
                per_channel=peers_section.PER_CHANNEL,
            )  # fmt: skip
            factors = {kind: factor for _, kind, factor in peers_report.MEMCACHED_TARGETS}
            result = measure_pairs(
                ref,
                ours,
                ETCD_MEMCACHED_PAIRS,
                factors,
                reps=reps,
                keys=keys,
                warmup=warmup,
                seconds=seconds,
                mc_runner=mc_runner,
            )
    finally:
        etcd.close()
    result["elapsed_s"] = round(time.monotonic() - started, 1)
    return result
