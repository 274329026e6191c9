"""Cloud Monitoring as code: the committed JSON is the rendering of infra/monitoring.py, every key
is a field of the APIs' resources (Cloud Logging LogMetric, Cloud Monitoring v3 AlertPolicy and
Dashboard), every enum value is one the API knows, the metrics read lines the code writes, and
the plan creates it all, once."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from agenttrader import topology
from infra import monitoring, resources
from infra.model import Fingerprinted
from infra.plan import ALERT_CHANNEL_VAR, DeployConfig, PlanError, build_plan, deployed

ROOT = Path(__file__).resolve().parents[2]

# The APIs' field names (REST reference of logging v2 LogMetric and monitoring v3 AlertPolicy /
# Dashboard), limited to the message types the rendering uses. Each type: field -> the type of
# its value (None for a scalar, a list of one type for a repeated message, "map" for a map).
SCHEMA: dict[str, dict[str, Any]] = {
    "LogMetric": {
        "name": None,
        "description": None,
        "filter": None,
        "bucketName": None,
        "disabled": None,
        "metricDescriptor": "MetricDescriptor",
        "valueExtractor": None,
        "labelExtractors": "map",
        "bucketOptions": "BucketOptions",
        "createTime": None,
        "updateTime": None,
        "version": None,
    },
    "MetricDescriptor": {
        "name": None,
        "type": None,
        "labels": ["LabelDescriptor"],
        "metricKind": None,
        "valueType": None,
        "unit": None,
        "description": None,
        "displayName": None,
        "metadata": "map",
        "launchStage": None,
        "monitoredResourceTypes": None,
    },
    "LabelDescriptor": {"key": None, "valueType": None, "description": None},
    "BucketOptions": {
        "linearBuckets": "map",
        "exponentialBuckets": "map",
        "explicitBuckets": "Explicit",
    },
    "Explicit": {"bounds": None},
    "AlertPolicy": {
        "name": None,
        "displayName": None,
        "documentation": "Documentation",
        "userLabels": "map",
        "conditions": ["Condition"],
        "combiner": None,
        "enabled": None,
        "validity": "map",
        "notificationChannels": None,
        "creationRecord": "map",
        "mutationRecord": "map",
        "alertStrategy": "AlertStrategy",
        "severity": None,
    },
    "Documentation": {"content": None, "mimeType": None, "subject": None, "links": None},
    "Condition": {
        "name": None,
        "displayName": None,
        "conditionThreshold": "MetricThreshold",
        "conditionAbsent": "MetricAbsence",
        "conditionMatchedLog": "map",
        "conditionMonitoringQueryLanguage": "map",
        "conditionPrometheusQueryLanguage": "map",
        "conditionSql": "map",
    },
    "MetricThreshold": {
        "filter": None,
        "aggregations": ["Aggregation"],
        "denominatorFilter": None,
        "denominatorAggregations": ["Aggregation"],
        "forecastOptions": "map",
        "comparison": None,
        "thresholdValue": None,
        "duration": None,
        "trigger": "Trigger",
        "evaluationMissingData": None,
    },
    "MetricAbsence": {
        "filter": None,
        "aggregations": ["Aggregation"],
        "duration": None,
        "trigger": "Trigger",
    },
    "Aggregation": {
        "alignmentPeriod": None,
        "perSeriesAligner": None,
        "crossSeriesReducer": None,
        "groupByFields": None,
    },
    "Trigger": {"count": None, "percent": None},
    "AlertStrategy": {
        "notificationRateLimit": "map",
        "notificationPrompts": None,
        "autoClose": None,
        "notificationChannelStrategy": None,
    },
    "Dashboard": {
        "name": None,
        "displayName": None,
        "etag": None,
        "gridLayout": "map",
        "mosaicLayout": "MosaicLayout",
        "rowLayout": "map",
        "columnLayout": "map",
        "dashboardFilters": None,
        "labels": "map",
    },
    "MosaicLayout": {"columns": None, "tiles": ["Tile"]},
    "Tile": {"xPos": None, "yPos": None, "width": None, "height": None, "widget": "Widget"},
    "Widget": {
        "title": None,
        "xyChart": "XyChart",
        "scorecard": "map",
        "text": "map",
        "id": None,
    },
    "XyChart": {
        "dataSets": ["DataSet"],
        "timeshiftDuration": None,
        "thresholds": None,
        "xAxis": "map",
        "yAxis": "map",
        "y2Axis": "map",
        "chartOptions": "map",
    },
    "DataSet": {
        "timeSeriesQuery": "TimeSeriesQuery",
        "plotType": None,
        "legendTemplate": None,
        "minAlignmentPeriod": None,
        "targetAxis": None,
    },
    "TimeSeriesQuery": {
        "timeSeriesFilter": "TimeSeriesFilter",
        "timeSeriesFilterRatio": "map",
        "timeSeriesQueryLanguage": None,
        "prometheusQuery": None,
        "unitOverride": None,
        "outputFullDuration": None,
    },
    "TimeSeriesFilter": {
        "filter": None,
        "aggregation": "Aggregation",
        "secondaryAggregation": "Aggregation",
        "pickTimeSeriesFilter": "map",
        "statisticalTimeSeriesFilter": "map",
    },
}

ENUMS: dict[str, set[str]] = {
    "metricKind": {"GAUGE", "DELTA", "CUMULATIVE"},
    "valueType": {"BOOL", "INT64", "DOUBLE", "STRING", "DISTRIBUTION", "MONEY"},
    "combiner": {"AND", "OR", "AND_WITH_MATCHING_RESOURCE"},
    "comparison": {
        "COMPARISON_GT",
        "COMPARISON_GE",
        "COMPARISON_LT",
        "COMPARISON_LE",
        "COMPARISON_EQ",
        "COMPARISON_NE",
    },
    "perSeriesAligner": {
        "ALIGN_NONE",
        "ALIGN_DELTA",
        "ALIGN_RATE",
        "ALIGN_INTERPOLATE",
        "ALIGN_NEXT_OLDER",
        "ALIGN_MIN",
        "ALIGN_MAX",
        "ALIGN_MEAN",
        "ALIGN_COUNT",
        "ALIGN_SUM",
        "ALIGN_STDDEV",
        "ALIGN_COUNT_TRUE",
        "ALIGN_COUNT_FALSE",
        "ALIGN_FRACTION_TRUE",
        "ALIGN_PERCENTILE_99",
        "ALIGN_PERCENTILE_95",
        "ALIGN_PERCENTILE_50",
        "ALIGN_PERCENTILE_05",
        "ALIGN_PERCENT_CHANGE",
    },
    "crossSeriesReducer": {
        "REDUCE_NONE",
        "REDUCE_MEAN",
        "REDUCE_MIN",
        "REDUCE_MAX",
        "REDUCE_SUM",
        "REDUCE_STDDEV",
        "REDUCE_COUNT",
        "REDUCE_COUNT_TRUE",
        "REDUCE_COUNT_FALSE",
        "REDUCE_FRACTION_TRUE",
        "REDUCE_PERCENTILE_99",
        "REDUCE_PERCENTILE_95",
        "REDUCE_PERCENTILE_50",
        "REDUCE_PERCENTILE_05",
    },
    "plotType": {"LINE", "STACKED_AREA", "STACKED_BAR", "HEATMAP"},
    "mimeType": {"text/markdown"},
}
DURATION = re.compile(r"^\d+(\.\d+)?s$")


def check(document: Any, kind: str, where: str = "") -> None:
    """Every key of ``document`` is a field of ``kind``; recurse into message fields."""
    fields = SCHEMA[kind]
    assert isinstance(document, dict), f"{where or kind}: not an object"
    for key, value in document.items():
        here = f"{where}.{key}" if where else key
        assert key in fields, f"{here}: {kind} has no field {key!r}"
        if key in ENUMS:
            assert value in ENUMS[key], f"{here}: {value!r} is not a {key} value"
        if key in ("duration", "alignmentPeriod", "autoClose"):
            assert DURATION.match(value), f"{here}: {value!r} is not a duration"
        sub = fields[key]
        if isinstance(sub, list):
            assert isinstance(value, list), f"{here}: not a list"
            for i, item in enumerate(value):
                check(item, sub[0], f"{here}[{i}]")
        elif sub == "map":
            assert isinstance(value, dict), f"{here}: not an object"
        elif sub is not None:
            check(value, sub, here)


KIND_TYPES = {"log-metric": "LogMetric", "alert-policy": "AlertPolicy", "dashboard": "Dashboard"}


def test_the_committed_files_are_the_rendering() -> None:
    rendered = {r.path: r.document for r in monitoring.resources(deployed())}
    on_disk = {
        p.relative_to(ROOT).as_posix(): json.loads(p.read_text())
        for p in (ROOT / "infra" / "cloud-monitoring").rglob("*.json")
    }
    assert on_disk == rendered, "run: python -m infra monitoring"


@pytest.mark.parametrize("resource", monitoring.resources(deployed()), ids=lambda r: r.path)
def test_every_key_and_value_is_the_apis(resource: monitoring.Resource) -> None:
    check(resource.document, KIND_TYPES[resource.kind])


def test_the_spec_alerts_and_the_backlogs_are_declared() -> None:
    by_key = {p.key: p.render() for p in monitoring.policies(deployed())}
    assert set(by_key) == {
        "error_rate",
        "slow_function",
        "tenants_failing",
        "dead_letter_backlog",
        "worker_backlog",
        "stream_gateway_down",
    }

    def threshold(key: str) -> dict[str, Any]:
        condition: dict[str, Any] = by_key[key]["conditions"][0]["conditionThreshold"]
        return condition

    assert threshold("error_rate")["thresholdValue"] == 0.10
    assert "agenttrader/pulse_error_rate" in threshold("error_rate")["filter"]
    assert threshold("slow_function")["thresholdValue"] == 45_000  # request_latencies is in ms
    assert "run.googleapis.com/request_latencies" in threshold("slow_function")["filter"]
    backlog = threshold("dead_letter_backlog")
    assert "subscription/num_undelivered_messages" in backlog["filter"]
    assert f'"{topology.USER_SYNC_DEAD_LETTER_HOLD}"' in backlog["filter"]
    oldest = threshold("worker_backlog")
    assert "subscription/oldest_unacked_message_age" in oldest["filter"]
    assert f'"{topology.USER_SYNC_WORKER}"' in oldest["filter"]


def test_the_gateway_policy_exists_only_with_the_gateway() -> None:
    without = monitoring.policies(deployed() - {monitoring.GATEWAY})
    assert not any(p.requires for p in without)
    with_gateway = monitoring.policies(deployed())
    assert [p.key for p in with_gateway if p.requires] == ["stream_gateway_down"]
    assert monitoring.GATEWAY in {svc.name for svc in resources.SERVICES}
    assert not [n for n in build_plan(config()).notes if "not deployed" in n]
    [down] = [p for p in with_gateway if p.requires]
    assert "container/instance_count" in json.dumps(down.render())


def test_the_metrics_read_lines_the_code_writes() -> None:
    pulses = (ROOT / "agenttrader" / "pulses.py").read_text()
    worker = (ROOT / "sync_worker" / "worker.py").read_text()
    assert '"pulse complete"' in pulses
    for field in ("published", "success", "error", "skipped", "error_rate", "duration_seconds"):
        assert f'"{field}":' in pulses, field
    redelivery = (ROOT / "agenttrader" / "redelivery.py").read_text()
    assert 'f"sync failed permanently, dead-lettered: {err}"' in worker
    assert 'f"malformed message dead-lettered: {error}"' in worker
    assert 'f"transient failure, event to be redelivered: {err}"' in redelivery
    failures = monitoring.log_metric("agenttrader/sync_failures").render()
    pattern = failures["labelExtractors"]["disposition"].split('"')[1]
    assert re.match(pattern, "sync failed permanently, dead-lettered: x").group(1) == (  # type: ignore[union-attr]
        "dead-lettered"
    )
    retried = re.match(pattern, "transient failure, event to be redelivered: AlpacaUnavailable")
    assert retried is not None and retried.group(1) == "redelivered"
    dashboard = json.dumps(monitoring.dashboard())
    for needed in (
        "run.googleapis.com/request_count",
        "response_code_class",
        "ALIGN_PERCENTILE_50",
        "ALIGN_PERCENTILE_95",
        "ALIGN_PERCENTILE_99",
        "firestore.googleapis.com/document/read_ops_count",
        "agenttrader/pulse_success",
    ):
        assert needed in dashboard, needed


def config(**overrides: Any) -> DeployConfig:
    return DeployConfig(project="acme-trading", region="us-central1", **overrides)


def test_the_plan_lists_every_monitoring_resource_and_the_hosting_site() -> None:
    plan = build_plan(config())
    kinds = [s.kind for s in plan.steps]
    assert kinds.count("log-metric") == len(monitoring.LOG_METRICS)
    assert kinds.count("alert-policy") == len(monitoring.policies(deployed()))
    assert kinds.count("dashboard") == 1
    assert "notification-channel" not in kinds
    assert plan.step("hosting", "acme-trading.web.app").create[1:4] == (
        "deploy",
        "--only",
        "hosting",
    )
    assert kinds.index("hosting-build") < kinds.index("hosting") < kinds.index("scheduler-job")
    assert kinds.index("log-metric") < kinds.index("alert-policy")  # policies read the metrics
    for step in plan.steps:
        if step.kind in ("log-metric", "alert-policy", "dashboard"):
            assert isinstance(step.probe, Fingerprinted)
            path = next(a.split("=", 1)[1] for a in step.create if a.endswith(".json"))
            assert (ROOT / path).is_file(), path
    text = plan.render()
    assert "alert-policy AgentTrader: sync error rate above 10%" in text
    assert "Alerts notify: nobody" in text


def test_alert_email_makes_a_channel_every_policy_notifies() -> None:
    plan = build_plan(config(alert_email="oncall@example.com"))
    channel = plan.step("notification-channel", monitoring.CHANNEL_NAME)
    assert "--channel-labels=email_address=oncall@example.com" in channel.create
    kinds = [s.kind for s in plan.steps]
    assert kinds.index("notification-channel") < kinds.index("alert-policy")
    for step in plan.steps:
        if step.kind == "alert-policy":
            assert f"--notification-channels=${{{ALERT_CHANNEL_VAR}}}" in step.create
    with pytest.raises(PlanError, match="alert-email"):
        build_plan(config(alert_email="not-an-address"))
