"""deploy/monitoring/: the alert rules pass `promtool check rules` and their unit tests
(one per alert), and the dashboard is well-formed Grafana JSON with the panels an operator
needs. (tests/integration/test_metrics.py checks every name against a real node's scrape.)"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import yaml

from tests.deploy.monitoring import (
    MONITORING,
    RULE_TESTS,
    RULES,
    alert_names,
    dashboard,
    dashboard_exprs,
    metric_names,
    rule_exprs,
)


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("RAFTCACHE_REQUIRE_PROMTOOL"):
            pytest.fail("promtool is missing (Debian package prometheus); .ci/run installs it")
        pytest.skip("promtool is missing: apt-get install prometheus")
    return path


def run(*args: str) -> str:
    result = subprocess.run(
        [promtool(), *args], cwd=MONITORING, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_rules_pass_promtool_check() -> None:
    assert "SUCCESS" in run("check", "rules", RULES.name)


def test_rule_unit_tests_pass() -> None:
    assert "SUCCESS" in run("test", "rules", RULE_TESTS.name)


def test_every_alert_has_a_unit_test() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    tested = {
        case["alertname"]
        for test in tests
        for case in test["alert_rule_test"]
        if case.get("exp_alerts")
    }
    assert alert_names() - tested == set()


def test_rules_cover_elasticache_and_etcd_alarms() -> None:
    assert {
        "RaftcacheHighCPU",  # CPUUtilization
        "RaftcacheEngineCPUHigh",  # EngineCPUUtilization
        "RaftcacheMemoryHigh",  # DatabaseMemoryUsagePercentage
        "RaftcacheEvictions",
        "RaftcacheConnectionsHigh",  # CurrConnections
        "RaftcacheReplicationLag",
        "RaftcacheNoLeader",
        "RaftcacheHighNumberOfLeaderChanges",
        "RaftcacheMembersDown",
        "RaftcacheInsufficientMembers",
        "RaftcacheHighFailedRequests",
        "RaftcacheHighNumberOfFailedProposals",
        "RaftcacheSlowJournalFlush",
        "RaftcacheSlowCommit",
    } <= alert_names()


def test_dashboard_has_the_operator_panels() -> None:
    data = dashboard()
    assert data["uid"] and data["title"] == "raftcache"
    panels = [p for p in data["panels"] if p["type"] != "row"]
    ids = [p["id"] for p in data["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels:
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}"
    used = metric_names(dashboard_exprs())
    for name in (
        "raftcache_is_leader",
        "raftcache_term",
        "raftcache_commands_total",
        "raftcache_command_duration_seconds_bucket",
        "raftcache_cache_hits_total",
        "raftcache_memory_limit_bytes",
        "raftcache_evicted_keys_total",
        "raftcache_replication_lag_seconds",
        "raftcache_proposals_failed_total",
        "raftcache_snapshot_in_progress",
        "raftcache_connections",
    ):
        assert name in used


def test_expressions_name_metrics() -> None:
    assert metric_names(rule_exprs()) and metric_names(dashboard_exprs())
