"""deploy/monitoring/: the metric names its dashboard and alert rules use."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

MONITORING = Path(__file__).resolve().parents[2] / "deploy" / "monitoring"
DASHBOARD = MONITORING / "dashboard.json"
RULES = MONITORING / "alerts.yaml"
RULE_TESTS = MONITORING / "alerts_test.yaml"

_METRIC = re.compile(r"\b((?:raftcache|process)_[a-z0-9_]+)\b")
SYNTHETIC = frozenset({"up"})
"""Series Prometheus makes itself (not in a node's scrape)."""


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in dashboard()["panels"] for t in p.get("targets", [])]


def rule_exprs() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def alert_names() -> set[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule}


def metric_names(exprs: list[str]) -> set[str]:
    """The sample names PromQL expressions read (histograms as their _bucket/_sum/_count)."""
    return {name for expr in exprs for name in _METRIC.findall(expr)}
