"""Cloud Monitoring as code: log-based metrics, alert policies and the dashboard, declared once.

Rendered into the JSON the APIs take (Cloud Logging ``LogMetric``, Cloud Monitoring
``AlertPolicy`` and ``Dashboard``), written under ``infra/cloud-monitoring/`` (``python -m infra
monitoring``; a unit test keeps the files equal to the rendering and checks every key against
the APIs' field names), and applied by :mod:`infra.plan` with ``--config-from-file`` /
``--policy-from-file``. The notification channel (``--alert-email``) is given at deploy time.

What the metrics read, from the structured logs (agenttrader/logs.py: ``jsonPayload`` holds the
message and the fields, the entry's ``labels`` the labels):

- ``sync failed permanently, dead-lettered: …`` and ``malformed message dead-lettered: …``
  (sync_worker/worker.py), ``transient failure, event to be redelivered: …``
  (agenttrader/redelivery.py), each with the label ``error_class``;
- ``pulse complete`` (agenttrader/pulses.py: ``published``, ``success``, ``error``, ``skipped``,
  ``error_rate``, ``duration_seconds``), once per pulse when its last result is counted.

The alerts are the product spec's three (error rate above 10 %, a function slower than 45 s,
several tenants failing pulse after pulse) and the dead-letter backlog, the worker's oldest
unacknowledged message, and the stream gateway's health once it is deployed (a policy with
``requires`` is rendered only when that service is part of the deployment).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agenttrader import topology
from console.status import CONSECUTIVE_FAILURES_THRESHOLD, ERROR_RATE_THRESHOLD, SLOW_PULSE_SECONDS
from infra.model import fingerprint

DIRECTORY = Path(__file__).resolve().parent / "cloud-monitoring"
"""Where the rendered JSON lives (committed; the plan's commands read it from there)."""
METRIC_PREFIX = "logging.googleapis.com/user/"
DASHBOARD_TITLE = "AgentTrader pipeline"
CHANNEL_NAME = "AgentTrader alerts"
"""Display name of the e-mail notification channel made from ``--alert-email``."""
GATEWAY = "stream-gateway"
"""The stream gateway's Cloud Run service: its policy is rendered when a deployment holds it."""
FAILING_TENANTS_PER_PULSE = CONSECUTIVE_FAILURES_THRESHOLD
"""\"Several tenants failing in a row\": at least this many errors in every pulse for
``CONSECUTIVE_FAILURES_THRESHOLD`` minutes (a tick a minute), the fleet-wide counterpart of
``agenttrader status --check``'s per-tenant streak (which the console shows)."""


def service_name(function: str) -> str:
    """The Cloud Run service of a Cloud Run function: its name, lower case, ``_`` → ``-``."""
    return function.lower().replace("_", "-")


_CLOUD_RUN = 'resource.type = "cloud_run_revision"'


def _service_filter(*functions: str) -> str:
    names = ", ".join(f'"{service_name(f)}"' for f in functions)
    return (
        f'resource.type = "cloud_run_revision" AND resource.labels.service_name = one_of({names})'
    )


# --- log-based metrics ------------------------------------------------------------------------


@dataclass(frozen=True)
class LogMetric:
    name: str
    description: str
    log_filter: str
    labels: Mapping[str, str] = field(default_factory=dict)
    """label -> extractor expression."""
    value_field: str | None = None
    """A distribution of this ``jsonPayload`` field; ``None``: a counter of matching entries."""
    unit: str = "1"
    buckets: tuple[float, ...] = ()

    @property
    def metric_type(self) -> str:
        return METRIC_PREFIX + self.name

    def render(self) -> dict[str, Any]:
        descriptor: dict[str, Any] = {
            "metricKind": "DELTA",
            "valueType": "DISTRIBUTION" if self.value_field else "INT64",
            "unit": self.unit,
            "labels": [
                {"key": key, "valueType": "STRING", "description": f"the entry's {key}"}
                for key in self.labels
            ],
        }
        metric: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "filter": self.log_filter,
            "metricDescriptor": descriptor,
            "labelExtractors": dict(self.labels),
        }
        if self.value_field:
            metric["valueExtractor"] = f"EXTRACT(jsonPayload.{self.value_field})"
            metric["bucketOptions"] = {"explicitBuckets": {"bounds": list(self.buckets)}}
        return metric


_WORKER = _service_filter("sync_user")
_FAILURE = (
    "^(?:sync failed permanently, |transient failure, event to be )(dead-lettered|redelivered)"
)
"""The worker's permanent failures and the redelivery line of agenttrader/redelivery.py."""
_PULSE = 'jsonPayload.message = "pulse complete"'
_COUNTS = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000)

LOG_METRICS: tuple[LogMetric, ...] = (
    LogMetric(
        "agenttrader/sync_failures",
        "Failed syncs by error class and disposition (dead-lettered, or redelivered by Pub/Sub).",
        f'{_WORKER} AND jsonPayload.message =~ "{_FAILURE}"',
        labels={
            "error_class": "EXTRACT(labels.error_class)",
            "disposition": f'REGEXP_EXTRACT(jsonPayload.message, "{_FAILURE}")',
        },
    ),
    LogMetric(
        "agenttrader/dead_letters",
        "Messages the worker published to user-sync-dead-letter, by error class.",
        f'{_WORKER} AND jsonPayload.message =~ "dead-lettered"',
        labels={"error_class": "EXTRACT(labels.error_class)"},
    ),
    LogMetric(
        "agenttrader/pulse_duration",
        "Seconds from a tick to the last counted result of its pulse.",
        _PULSE,
        value_field="duration_seconds",
        unit="s",
        buckets=(5, 10, 15, 20, 30, SLOW_PULSE_SECONDS, 60, 90, 120, 180, 300, 600),
    ),
    LogMetric(
        "agenttrader/pulse_error_rate",
        "errors / (successes + errors) of each pulse.",
        _PULSE,
        value_field="error_rate",
        buckets=(0.01, 0.02, 0.05, ERROR_RATE_THRESHOLD, 0.2, 0.5, 1.0),
    ),
    *(
        LogMetric(
            f"agenttrader/pulse_{outcome}",
            f"Tenants with outcome {outcome} in each pulse.",
            _PULSE,
            value_field=outcome,
            buckets=_COUNTS,
        )
        for outcome in ("published", "success", "error", "skipped")
    ),
)


def log_metric(name: str) -> LogMetric:
    for metric in LOG_METRICS:
        if metric.name == name:
            return metric
    raise KeyError(name)


# --- alert policies ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Threshold:
    """A ``conditionThreshold``: ``aligner`` over ``window`` per series, ``reducer`` across
    them, above ``value`` for ``duration`` seconds."""

    title: str
    metric_filter: str
    value: float
    aligner: str
    window: int = 60
    reducer: str | None = None
    duration: int = 0
    comparison: str = "COMPARISON_GT"

    def render(self) -> dict[str, Any]:
        aggregation: dict[str, Any] = {
            "alignmentPeriod": f"{self.window}s",
            "perSeriesAligner": self.aligner,
        }
        if self.reducer:
            aggregation["crossSeriesReducer"] = self.reducer
        return {
            "displayName": self.title,
            "conditionThreshold": {
                "filter": self.metric_filter,
                "aggregations": [aggregation],
                "comparison": self.comparison,
                "thresholdValue": self.value,
                "duration": f"{self.duration}s",
                "trigger": {"count": 1},
            },
        }


@dataclass(frozen=True)
class Absent:
    """A ``conditionAbsent``: no data for ``duration`` seconds."""

    title: str
    metric_filter: str
    aligner: str
    duration: int

    def render(self) -> dict[str, Any]:
        return {
            "displayName": self.title,
            "conditionAbsent": {
                "filter": self.metric_filter,
                "aggregations": [{"alignmentPeriod": "60s", "perSeriesAligner": self.aligner}],
                "duration": f"{self.duration}s",
                "trigger": {"count": 1},
            },
        }


@dataclass(frozen=True)
class AlertPolicy:
    key: str
    """File name and fingerprint label; the display name is ``AgentTrader: {title}``."""
    title: str
    runbook: str
    """What to do, in Markdown (the notification carries it)."""
    condition: Threshold | Absent
    requires: str | None = None
    """A service that must be part of the deployment for this policy to exist."""

    @property
    def display_name(self) -> str:
        return f"AgentTrader: {self.title}"

    def render(self) -> dict[str, Any]:
        return {
            "displayName": self.display_name,
            "documentation": {"content": self.runbook, "mimeType": "text/markdown"},
            "userLabels": {"agenttrader": self.key.replace("_", "-")},
            "combiner": "OR",
            "enabled": True,
            "conditions": [self.condition.render()],
            "alertStrategy": {"autoClose": "86400s"},
        }


def _user_metric(name: str) -> str:
    return f'metric.type = "{log_metric(name).metric_type}"'


def _subscription_metric(metric: str, subscription: str) -> str:
    return (
        f'metric.type = "pubsub.googleapis.com/subscription/{metric}" AND resource.type ='
        f' "pubsub_subscription" AND resource.labels.subscription_id = "{subscription}"'
    )


_FUNCTIONS_LATENCY = (
    'metric.type = "run.googleapis.com/request_latencies" AND resource.type = "cloud_run_revision"'
    ' AND resource.labels.service_name = one_of("publish-user-syncs", "sync-user")'
)

ALERT_POLICIES: tuple[AlertPolicy, ...] = (
    AlertPolicy(
        "error_rate",
        f"sync error rate above {ERROR_RATE_THRESHOLD:.0%}",
        "More than 10 % of a pulse's syncs failed. `agenttrader status` names the failing "
        'tenants and their error classes; docs/RUNBOOK.md, "a tenant is not syncing".',
        Threshold(
            "pulse error rate",
            _user_metric("agenttrader/pulse_error_rate"),
            ERROR_RATE_THRESHOLD,
            "ALIGN_PERCENTILE_99",
            window=300,
        ),
    ),
    AlertPolicy(
        "slow_function",
        f"function time above {SLOW_PULSE_SECONDS:.0f} s",
        "publish_user_syncs or sync_user took more than 45 s (the scheduler ticks every "
        "60 s). Check Alpaca's latency and the worker's instances; the dashboard shows P99.",
        Threshold(
            "P99 request latency",
            _FUNCTIONS_LATENCY,
            SLOW_PULSE_SECONDS * 1000,
            "ALIGN_PERCENTILE_99",
            window=60,
            reducer="REDUCE_MAX",
        ),
    ),
    AlertPolicy(
        "tenants_failing",
        "several tenants failing in a row",
        f"At least {FAILING_TENANTS_PER_PULSE} tenants failed in every pulse for "
        f"{CONSECUTIVE_FAILURES_THRESHOLD} minutes. `agenttrader status --check` lists the "
        "tenants with 3+ failures in a row; the admin console filters them.",
        Threshold(
            "errors in every pulse",
            _user_metric("agenttrader/pulse_error"),
            FAILING_TENANTS_PER_PULSE - 0.5,
            "ALIGN_PERCENTILE_05",
            window=60,
            duration=60 * CONSECUTIVE_FAILURES_THRESHOLD,
        ),
    ),
    AlertPolicy(
        "dead_letter_backlog",
        "dead letters waiting",
        "Messages are held in user-sync-dead-letter-hold. Inspect with `agenttrader dlq "
        "list` or the console's dead-letter page; fix the cause, then replay (docs/RUNBOOK.md).",
        Threshold(
            "undelivered dead letters",
            _subscription_metric("num_undelivered_messages", topology.USER_SYNC_DEAD_LETTER_HOLD),
            0,
            "ALIGN_MAX",
            duration=300,
        ),
    ),
    AlertPolicy(
        "worker_backlog",
        "user-sync messages waiting too long",
        "The oldest unacknowledged message of user-sync-worker is older than 5 minutes: "
        "sync_user is failing or cannot keep up (instances, Alpaca, Firestore).",
        Threshold(
            "oldest unacked message age",
            _subscription_metric("oldest_unacked_message_age", topology.USER_SYNC_WORKER),
            300,
            "ALIGN_MAX",
            duration=120,
        ),
    ),
    AlertPolicy(
        "stream_gateway_down",
        "stream gateway not serving",
        "No stream-gateway instance has run for 5 minutes: tenants fall back to polling "
        "every tick. Check the service's logs and its /healthz probes.",
        Absent(
            "stream gateway instances",
            'metric.type = "run.googleapis.com/container/instance_count" AND '
            f'resource.labels.service_name = "{service_name(GATEWAY)}"',
            "ALIGN_RATE",
            duration=300,
        ),
        requires=GATEWAY,
    ),
)


def policies(deployed: Collection[str]) -> tuple[AlertPolicy, ...]:
    """The policies of a deployment holding the functions / services ``deployed``."""
    return tuple(p for p in ALERT_POLICIES if p.requires is None or p.requires in deployed)


# --- dashboard --------------------------------------------------------------------------------


def _chart(title: str, series: Sequence[tuple[str, str, str | None, str | None]]) -> dict[str, Any]:
    """One XY chart; each series is (filter, aligner, reducer, legend)."""
    data_sets = []
    for series_filter, aligner, reducer, legend in series:
        aggregation: dict[str, Any] = {"alignmentPeriod": "60s", "perSeriesAligner": aligner}
        if reducer:
            aggregation["crossSeriesReducer"] = reducer
            aggregation["groupByFields"] = ["resource.label.service_name"]
        data_set: dict[str, Any] = {
            "timeSeriesQuery": {
                "timeSeriesFilter": {"filter": series_filter, "aggregation": aggregation}
            },
            "plotType": "LINE",
        }
        if legend:
            data_set["legendTemplate"] = legend
        data_sets.append(data_set)
    return {"title": title, "xyChart": {"dataSets": data_sets}}


def _run(metric: str, extra: str = "") -> str:
    return f'metric.type = "run.googleapis.com/{metric}" AND {_CLOUD_RUN}{extra}'


_RATE = "ALIGN_RATE"
_BY_SERVICE = "${resource.labels.service_name}"
_BY_ERROR_CLASS = "${metric.labels.error_class}"


def dashboard() -> dict[str, Any]:
    """The dashboard: invocations, errors, P50/P95/P99 latency, Firestore, pulses."""
    latency = _run("request_latencies")
    charts = [
        _chart(
            "Invocations per function", [(_run("request_count"), "ALIGN_RATE", "REDUCE_SUM", None)]
        ),
        _chart(
            "Errors (5xx) per function",
            [
                (
                    _run("request_count", ' AND metric.labels.response_code_class = "5xx"'),
                    "ALIGN_RATE",
                    "REDUCE_SUM",
                    None,
                )
            ],
        ),
        _chart(
            "Execution time P50 / P95 / P99 (ms)",
            [
                (
                    latency,
                    f"ALIGN_PERCENTILE_{p}",
                    "REDUCE_MAX",
                    f"P{p} ${{resource.labels.service_name}}",
                )
                for p in ("50", "95", "99")
            ],
        ),
        _chart(
            "Firestore operations",
            [
                (
                    f'metric.type = "firestore.googleapis.com/document/{op}_ops_count"',
                    "ALIGN_RATE",
                    None,
                    op,
                )
                for op in ("read", "write", "delete")
            ],
        ),
        _chart(
            "Pulse outcomes (tenants per pulse)",
            [
                (_user_metric(f"agenttrader/pulse_{o}"), "ALIGN_PERCENTILE_50", None, o)
                for o in ("published", "success", "error", "skipped")
            ],
        ),
        _chart(
            f"Pulse duration (s; alert line {SLOW_PULSE_SECONDS:.0f} s)",
            [(_user_metric("agenttrader/pulse_duration"), "ALIGN_PERCENTILE_99", None, "P99")],
        ),
        _chart(
            "Failed syncs by error class",
            [
                (
                    _user_metric("agenttrader/sync_failures"),
                    "ALIGN_RATE",
                    None,
                    "${metric.labels.error_class}",
                )
            ],
        ),
        _chart(
            "Dead letters held / oldest unacked user-sync message (s)",
            [
                (
                    _subscription_metric(
                        "num_undelivered_messages", topology.USER_SYNC_DEAD_LETTER_HOLD
                    ),
                    "ALIGN_MAX",
                    None,
                    "dead letters held",
                ),
                (
                    _subscription_metric("oldest_unacked_message_age", topology.USER_SYNC_WORKER),
                    "ALIGN_MAX",
                    None,
                    "oldest unacked (s)",
                ),
            ],
        ),
    ]
    tiles = [
        {
            "xPos": i % 2 * 24,
            "yPos": i // 2 * 16,
            "width": 24,
            "height": 16,
            "widget": chart,
        }
        for i, chart in enumerate(charts)
    ]
    return {"displayName": DASHBOARD_TITLE, "mosaicLayout": {"columns": 48, "tiles": tiles}}


# --- files ---------------------------------------------------------------------------------


FINGERPRINT_LABEL = "agenttrader-fp"


def _with_fingerprint(kind: str, document: dict[str, Any]) -> dict[str, Any]:
    """``document`` carrying the fingerprint of its own content where the plan's check reads
    it back: a log metric's description, a policy's ``userLabels``, the dashboard's ``labels``."""
    value = fingerprint(kind, document)
    if kind == "log-metric":
        return {
            **document,
            "description": f"{document['description']} ({FINGERPRINT_LABEL}={value})",
        }
    if kind == "alert-policy":
        return {**document, "userLabels": {**document["userLabels"], FINGERPRINT_LABEL: value}}
    return {**document, "labels": {FINGERPRINT_LABEL: value}}


@dataclass(frozen=True)
class Resource:
    """One rendered monitoring resource: where its file is and what the plan checks."""

    kind: str
    """``log-metric``, ``alert-policy`` or ``dashboard``."""
    name: str
    """The log metric's name, or the policy's / dashboard's display name."""
    path: str
    """The file, relative to the repository root."""
    document: dict[str, Any]

    @property
    def fingerprint(self) -> str:
        if self.kind == "log-metric":
            return str(self.document["description"]).rsplit(f"{FINGERPRINT_LABEL}=", 1)[1][:-1]
        labels = self.document["userLabels" if self.kind == "alert-policy" else "labels"]
        return str(labels[FINGERPRINT_LABEL])


def resources(deployed: Collection[str]) -> tuple[Resource, ...]:
    """Every monitoring resource of a deployment of ``deployed``, in the order applied (the
    metrics before the policies that read them)."""
    base = DIRECTORY.relative_to(DIRECTORY.parent.parent).as_posix()
    out = [
        Resource(
            "log-metric",
            m.name,
            f"{base}/log-metrics/{m.name.split('/')[-1]}.json",
            _with_fingerprint("log-metric", m.render()),
        )
        for m in LOG_METRICS
    ]
    out += [
        Resource(
            "alert-policy",
            p.display_name,
            f"{base}/alert-policies/{p.key}.json",
            _with_fingerprint("alert-policy", p.render()),
        )
        for p in policies(deployed)
    ]
    out.append(
        Resource(
            "dashboard",
            str(dashboard()["displayName"]),
            f"{base}/dashboard.json",
            _with_fingerprint("dashboard", dashboard()),
        )
    )
    return tuple(out)


def text(document: Mapping[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=False) + "\n"


def write(root: Path, deployed: Collection[str]) -> list[Path]:
    """Write the files under ``root`` and remove stale ones: ``python -m infra monitoring``."""
    wanted = {r.path: r.document for r in resources(deployed)}
    directory = root / DIRECTORY.relative_to(DIRECTORY.parent.parent)
    for stale in sorted(directory.rglob("*.json")) if directory.exists() else []:
        if stale.relative_to(root).as_posix() not in wanted:
            stale.unlink()
    written = []
    for rel, document in wanted.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text(document))
        written.append(path)
    return written
