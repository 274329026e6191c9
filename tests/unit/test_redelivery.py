"""Every cloudevent entry point through functions-framework, its use case replaced by one that
fails: an expected transient failure is one WARNING line (class, uid, attempt, id) and HTTP 503,
without a traceback; an unexpected exception keeps its ERROR line, traceback and 500. Either
way the answer is non-2xx, so Pub/Sub (or Eventarc) delivers the event again."""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
from google.api_core import exceptions as gexc

import accounts.main
import publisher.main
from agenttrader import logs, paths
from agenttrader.deps import Deps, set_deps
from agenttrader.errors import AlpacaUnavailable, DependencyUnavailable
from agenttrader.settings import Settings
from devtools.eventarc import encode_document_event, firestore_event_headers
from sync_worker import instance
from tests.callable_fixtures import REPO_ROOT, functions_framework_client

GOLDEN_PUSH = Path(__file__).parents[1] / "data" / "user_sync_push.json"
PROJECT = "demo-redelivery"
LABELS = "logging.googleapis.com/labels"


@dataclass(frozen=True)
class Request:
    """What one entry point is sent, and the labels its transient failure is logged with."""

    body: bytes
    headers: dict[str, str]
    labels: dict[str, str]


def _user_sync() -> Request:
    body = json.loads(GOLDEN_PUSH.read_text())
    body["deliveryAttempt"] = 3
    return Request(
        json.dumps(body).encode(),
        {"Content-Type": "application/json"},
        {"uid": "golden-user", "message_id": "17012345678901234", "delivery_attempt": "3"},
    )


def _sync_tick() -> Request:
    body = {
        "message": {
            "data": base64.b64encode(b"tick").decode(),
            "messageId": "tick-7",
            "publishTime": "2026-11-27T09:30:00.000Z",
        },
        "subscription": f"projects/{PROJECT}/subscriptions/sync-tick-publisher",
    }
    # sync-tick has no dead-letter policy: Pub/Sub does not number its attempts.
    return Request(
        json.dumps(body).encode(), {"Content-Type": "application/json"}, {"message_id": "tick-7"}
    )


def _document_write(path: str) -> Callable[[], Request]:
    def build() -> Request:
        now = datetime.now(UTC)
        return Request(
            encode_document_event(PROJECT, path, None, {"x": 1}, now),
            firestore_event_headers(PROJECT, path, "ev-9", now),
            {"uid": "u-7", "event_id": "ev-9"},
        )

    return build


def _failing(error: BaseException) -> Callable[..., Any]:
    def fail(*_args: Any, **_kwargs: Any) -> Any:
        raise error

    return fail


@dataclass(frozen=True)
class EntryPoint:
    target: str
    request: Callable[[], Request]
    replace_use_case: Callable[[pytest.MonkeyPatch, BaseException], None]
    """Makes the entry point's use case raise the error."""


class _Roster:
    def __init__(self, error: BaseException) -> None:
        self.on_source_written = _failing(error)


class _Worker:
    def __init__(self, error: BaseException) -> None:
        self.handle = _failing(error)


ENTRY_POINTS = [
    EntryPoint(
        "sync_user",
        _user_sync,
        lambda mp, err: mp.setattr(instance, "worker", lambda: _Worker(err)),
    ),
    EntryPoint(
        "publish_user_syncs",
        _sync_tick,
        lambda mp, err: mp.setattr(publisher.main, "fan_out", _failing(err)),
    ),
    EntryPoint(
        "on_alpaca_secret_written",
        _document_write(paths.alpaca_secret_doc("u-7")),
        lambda mp, err: mp.setattr(accounts.main, "handle_key_change", _failing(err)),
    ),
    EntryPoint(
        "on_alpaca_config_written",
        _document_write(paths.alpaca_config_doc("u-7")),
        lambda mp, err: mp.setattr(publisher.main, "roster", _Roster(err)),
    ),
    EntryPoint(
        "on_trading_status_written",
        _document_write(paths.trading_status_doc("u-7")),
        lambda mp, err: mp.setattr(publisher.main, "roster", _Roster(err)),
    ),
]
IDS = [e.target for e in ENTRY_POINTS]


@pytest.fixture(autouse=True)
def _no_clients() -> Iterator[None]:
    """Dependencies that are never used: each use case is replaced."""
    unused = cast(Any, object())
    set_deps(Deps(Settings.from_env({}), firestore_client=unused, publisher=unused))
    yield
    set_deps(None)


@pytest.fixture
def log_lines(root_logger: logging.Logger) -> io.StringIO:
    """What the instance writes to Cloud Logging: our JSON handler, into a buffer."""
    buffer = io.StringIO()
    logs.configure(stream=buffer)
    return buffer


def _post(entry: EntryPoint, request: Request) -> Any:
    with functions_framework_client(entry.target, REPO_ROOT / "main.py") as client:
        return client.post("/", data=request.body, headers=request.headers)


def _entries(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line]


@pytest.mark.parametrize("entry", ENTRY_POINTS, ids=IDS)
@pytest.mark.parametrize(
    ("error", "error_class"),
    [
        (AlpacaUnavailable("Alpaca answered 503"), "AlpacaUnavailable"),
        (DependencyUnavailable("Firestore is unavailable (Unknown)"), "DependencyUnavailable"),
        # Raised by a Google client where nothing wrapped it: transient all the same.
        (gexc.ServiceUnavailable("upstream connect error, host 10.0.0.7"), "ServiceUnavailable"),
    ],
    ids=["retryable", "dependency", "raw-google-transient"],
)
def test_an_expected_transient_failure_is_one_warning_line_and_a_503(
    entry: EntryPoint,
    error: BaseException,
    error_class: str,
    log_lines: io.StringIO,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    entry.replace_use_case(monkeypatch, error)
    request = entry.request()
    response = _post(entry, request)

    assert response.status_code == 503  # non-2xx: Pub/Sub and Eventarc deliver it again
    assert "X-Google-Status" not in response.headers  # not reported as a crash
    [line] = _entries(log_lines)
    assert line["severity"] == "WARNING"
    assert "Traceback" not in log_lines.getvalue()
    assert line[LABELS] == {"error_class": error_class, **request.labels}
    assert "10.0.0.7" not in line["message"]  # a Google client's message is not echoed


@pytest.mark.parametrize("entry", ENTRY_POINTS, ids=IDS)
def test_an_unexpected_exception_keeps_its_traceback_and_500(
    entry: EntryPoint, log_lines: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry.replace_use_case(monkeypatch, KeyError("a bug"))
    response = _post(entry, entry.request())

    assert response.status_code == 500
    [line] = [e for e in _entries(log_lines) if e["severity"] == "ERROR"]
    assert "Traceback" in line["message"] and "KeyError: 'a bug'" in line["message"]
    assert not [e for e in _entries(log_lines) if e["severity"] == "WARNING"]
