"""The numbers and promises in README.md and the DESIGN.md files, checked against the code.

Each check builds the sentence from the constant it states, so changing the constant (or
the behaviour) without the docs fails here, naming the file to fix."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from raftcache.client import _async_client, cli
from raftcache.consensus import RaftConfig
from raftcache.node import config, errors, eviction, state_machine, status_codes, values
from raftcache.node.requests import Limits
from raftcache.node.streams import StreamLimits
from raftcache.v1 import pipeline

ROOT = Path(__file__).resolve().parents[2]
RAFT = RaftConfig(self_addr="127.0.0.1:7380", peers=(), data_dir=Path("."))
LIMITS = Limits()
STREAMS = StreamLimits()
DEFAULTS = {name: default for name, _help, default in config._FLAGS}


def text_of(doc: str) -> str:
    """The document with every run of whitespace (line breaks too) as one space."""
    return " ".join((ROOT / doc).read_text().split())


def n(number: float) -> str:
    """A number as the docs write it: 1,024 and 0.5."""
    return f"{number:,}" if isinstance(number, int) else f"{number:g}"


def mib(size: int) -> str:
    return f"{size >> 20} MiB"


CLAIMS: list[tuple[str, str]] = [
    # README: limits, time, dedup, streams, SDK
    (
        "README.md",
        f"Keys: 1 byte to {int(DEFAULTS['max-key-bytes'] or 0) >> 10} KiB (`--max-key-bytes`); "
        f"values up to {mib(int(DEFAULTS['max-value-bytes'] or 0))} (`--max-value-bytes`)",
    ),
    ("README.md", f"the leader replicates its clock every {DEFAULTS['tick-interval-ms']} ms"),
    ("README.md", f"up to one clock tick ({DEFAULTS['tick-interval-ms']} ms)"),
    ("README.md", f"the last {n(state_machine.DEDUP_RESULTS_PER_CLIENT)} results per client"),
    (
        "README.md",
        f"the last {n(STREAMS.history_events)} changes / {mib(STREAMS.history_bytes)}",
    ),
    ("README.md", f"default {n(_async_client.DEFAULT_TIMEOUT_S)} s"),
    ("README.md", "`receivers`: the subscribers **on the leader**"),
    (
        "README.md",
        f"At most {n(LIMITS.max_batch_ops)} ops and {mib(LIMITS.max_batch_bytes)} per request",
    ),
    ("README.md", f"at most {pipeline.DEFAULT_MAX_INFLIGHT} RPCs in flight per node"),
    ("node/DESIGN.md", f"at most {n(LIMITS.max_batch_ops)} ops and {mib(LIMITS.max_batch_bytes)}"),
    ("README.md", "a node restarted since keeps only the changes after its last snapshot"),
    ("README.md", f"timeout after {int(DEFAULTS['commit-timeout-ms'] or 0) // 1000} s"),
    # README: Kubernetes, a pod back at a new IP (the DNS cache was 10 minutes once)
    ("README.md", f"resolve its name again after at most {n(RAFT.dns_cache_s)} s"),
    ("README.md", f"abandon a connect left unanswered for {n(RAFT.connection_timeout)} s"),
    ("README.md", f"rejoins in about {n(RAFT.dns_cache_s)} s"),
    ("deploy/DESIGN.md", f"`dnsCacheTime={n(RAFT.dns_cache_s)} s`"),
    ("deploy/DESIGN.md", f"`dnsFailCacheTime={n(RAFT.dns_fail_cache_s)} s`"),
    # consensus/DESIGN.md
    (
        "consensus/DESIGN.md",
        f"heartbeats every {RAFT.heartbeat_period * 1000:g} ms, election timeout "
        f"{n(RAFT.election_timeout_min)}\u2013{n(RAFT.election_timeout_max)} s, connection retry "
        f"{n(RAFT.connection_retry)} s",
    ),
    ("consensus/DESIGN.md", f"leader fallback {n(RAFT.leader_fallback_timeout)} s"),
    (
        "consensus/DESIGN.md",
        f"DNS cached {n(RAFT.dns_cache_s)} s and stuck connects abandoned after "
        f"{n(RAFT.connection_timeout)} s",
    ),
    (
        "consensus/DESIGN.md",
        f"(`--compaction-entries`, default {n(int(DEFAULTS['compaction-entries'] or 0))} entries",
    ),
    (
        "consensus/DESIGN.md",
        f"`--compaction-log-bytes`, default {DEFAULTS['compaction-log-bytes']} of entries",
    ),
    (
        "README.md",
        f"`--compaction-log-bytes` bytes of entries (default {DEFAULTS['compaction-log-bytes']}",
    ),
    ("consensus/DESIGN.md", f"`compaction_log_bytes` ({RAFT.compaction_log_bytes >> 20} MB,"),
    # node/DESIGN.md
    ("node/DESIGN.md", f"at most {n(state_machine.MAX_EXPIRIES_PER_COMMAND)} per command"),
    ("node/DESIGN.md", f"the last {n(state_machine.DEDUP_RESULTS_PER_CLIENT)} results per client"),
    ("node/DESIGN.md", f"{n(state_machine.SCAN_BUCKETS)} buckets by crc32"),
    ("node/DESIGN.md", f"per key `len(key) + {state_machine.KEY_OVERHEAD}`"),
    (
        "node/DESIGN.md",
        f"hash field {values.Hash.OVERHEAD}, set member {values.Set.OVERHEAD}, list element "
        f"{values.List.OVERHEAD}, sorted-set member {values.ZSet.OVERHEAD}",
    ),
    ("node/DESIGN.md", f"the least used among the {eviction.LFU_SAMPLE} least recently used"),
    (
        "node/DESIGN.md",
        f"({n(STREAMS.max_queued_messages)} messages / {mib(STREAMS.max_queued_bytes)})",
    ),
    ("node/DESIGN.md", f"({n(STREAMS.history_events)} / {mib(STREAMS.history_bytes)})"),
    ("node/DESIGN.md", "`receivers` of a Publish is the leader's own count"),
]


@pytest.mark.parametrize(("doc", "claim"), CLAIMS, ids=[f"{d}: {c[:60]}" for d, c in CLAIMS])
def test_the_docs_state_what_the_code_does(doc: str, claim: str) -> None:
    assert claim in text_of(doc), f"{doc} no longer says (or never said): {claim!r}"


def test_no_doc_calls_a_fixed_problem_a_known_issue() -> None:
    """The README once warned that a rescheduled pod stays out for 10 minutes (fixed)."""
    assert "Known issue" not in text_of("README.md")


def test_the_readme_lists_every_status_code_a_node_answers_with() -> None:
    readme = text_of("README.md")
    paragraph = readme[readme.index("Status codes:") :][:1500]
    for code in set(status_codes.STATUS_CODES.values()):
        assert code.name in paragraph, f"README's status codes omit {code.name}"
    assert "ABORTED when that request id is older" in paragraph
    assert errors.RequestTooOld in status_codes.STATUS_CODES


def test_the_readme_lists_every_cli_exit_code() -> None:
    readme = text_of("README.md")
    paragraph = readme[readme.index("Errors are one line on stderr") :][:900]
    codes = {code for _cls, code in cli._EXIT_CODES}
    codes |= {cli.EXIT_NOT_FOUND, cli.EXIT_USAGE, cli.EXIT_INTERRUPTED}
    for code in sorted(codes):
        assert re.search(rf"\b{code} [a-z]", paragraph), f"README omits exit code {code}"


def test_make_run_and_the_cli_default_agree_on_the_first_client_port() -> None:
    """The README's examples use 127.0.0.1:6381: where `make run` puts the first node and
    where the CLI looks by default."""
    assert cli.DEFAULT_ENDPOINTS == "127.0.0.1:6381"
    assert "default=6381" in (ROOT / "chaos/local_cluster.py").read_text()
    assert "127.0.0.1:6381" in text_of("README.md")


def test_the_chaos_durations_in_the_readme() -> None:
    makefile = (ROOT / "Makefile").read_text()
    smoke = (ROOT / "tests/integration/test_chaos_smoke.py").read_text()
    assert "raftcache-chaos --duration 300" in makefile
    seconds = re.search(r'"--duration", "(\d+)"', smoke)
    assert seconds is not None, "the smoke run's --duration"
    readme = text_of("README.md")
    assert "`make chaos` runs 5 minutes" in readme
    assert f"a ~{seconds.group(1)} s smoke run" in readme
