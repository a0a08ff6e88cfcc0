"""``deploy/``: the Prometheus alert rules pass ``promtool`` (syntax, and each alert fires on the series that
should fire it), and the rules and the Grafana dashboard name only metrics and labels the daemon exports."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from sync.metrics import Metrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "iterable-segment-sync.json"
PROMQL_WORDS = {"by", "without", "sum", "max", "min", "rate", "increase", "topk", "histogram_quantile", "le"}


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing under CI: .ci/ensure-promtool should have installed it")
        pytest.skip("promtool is not installed (make test installs Debian's prometheus package)")
    return found


def test_the_alert_rules_pass_promtool_and_fire_when_they_should() -> None:
    tool = promtool()
    checked = subprocess.run([tool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 5 rules found" in checked.stdout
    tested = subprocess.run([tool, "test", "rules", "alerts_test.yml"], cwd=RULES.parent, capture_output=True,
                            text=True, timeout=60)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def exported() -> dict[str, set[str]]:
    """Every series name the daemon's /metrics can show, with its label names."""
    metrics = Metrics()
    metrics.delivery_latency.labels(direction="outbound").observe(1.0)
    metrics.failed("outbound", "Iterable rejected the item: disallowedEventNames", "Beta")
    metrics.skipped.labels(direction="outbound", reason="group").inc()
    metrics.received.labels(direction="outbound", type="track").inc()
    metrics.upstream.labels(target="iterable", endpoint="events/trackBulk", status="200").inc()
    metrics.mapping.labels(digest="abc").set(1)
    names: dict[str, set[str]] = {}
    for line in metrics.render().decode().splitlines():
        found = re.match(r"^([a-z_]+)(?:\{(.*)\})? ", line)
        if found:
            labels = set(re.findall(r'(\w+)="', found.group(2) or ""))
            names.setdefault(found.group(1), set()).update(labels)
    return names


def queries() -> list[str]:
    rules = yaml.safe_load(RULES.read_text())
    found = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    dashboard = json.loads(DASHBOARD.read_text())
    return found + [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def test_the_rules_and_the_dashboard_name_only_what_the_daemon_exports() -> None:
    series = exported()
    wanted = {"sync_oldest_pending_seconds", "sync_events_dead_total", "sync_direction_paused",
              "sync_deletions_pending", "sync_delivery_latency_seconds_bucket", "sync_delivery_failures_total"}
    used: set[str] = set()
    for expr in queries():
        names = set(re.findall(r"\bsync_[a-z_]+\b", expr))
        assert names, expr
        used |= names
        for name in names:
            assert name in series, f"{name} is not exported (query: {expr})"
        for group in re.findall(r"\bby \(([^)]*)\)", expr):
            labels = {label.strip() for label in group.split(",")}
            assert labels <= set.union(*(series[n] for n in names)), (labels, expr)
    assert wanted <= used  # the alerts the issue asks for are all there
    assert series["sync_delivery_latency_seconds_bucket"] >= {"direction", "le"}
    assert series["sync_delivery_failures_total"] == {"direction", "reason_class", "event"}


def test_failure_labels_stay_bounded() -> None:
    metrics = Metrics(event_names=2)
    for name in ("A", "B", "C", "D"):
        metrics.failed("outbound", "HTTP 400 BadParams", name)
    text = metrics.render().decode()
    events = set(re.findall(r'sync_delivery_failures_total\{[^}]*event="([^"]*)"', text))
    assert events == {"A", "B", "other"}
    assert 'reason_class="upstream refused (4xx)"' in text
