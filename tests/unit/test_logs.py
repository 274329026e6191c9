"""Cloud Logging JSON lines, and redaction of every secret that could reach one."""

from __future__ import annotations

import io
import json
import logging
import sys
import threading
from typing import Any

import pytest

from agenttrader import logs
from agenttrader.logs import REDACTED, CloudLoggingFormatter, get_logger, redact, secret_scope

KEY_ID = "PKABCDEFGHIJ12345678"  # PK + 18 upper-case alphanumerics, as Alpaca issues them
SECRET = "s3cr3t-Value/with+chars"
LABELS = "logging.googleapis.com/labels"


def _record(
    message: str,
    *args: object,
    level: int = logging.INFO,
    exc_info: Any = None,
    **extra: Any,
) -> logging.LogRecord:
    record = logging.LogRecord("agenttrader.test", level, __file__, 1, message, args, exc_info)
    for name, value in extra.items():
        setattr(record, name, value)
    return record


def _format(record: logging.LogRecord) -> dict[str, Any]:
    line = CloudLoggingFormatter().format(record)
    assert "\n" not in line, "one JSON object per line"
    entry: dict[str, Any] = json.loads(line)
    return entry


# --- format ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("level", "severity"),
    [
        (logging.DEBUG, "DEBUG"),
        (logging.INFO, "INFO"),
        (logging.WARNING, "WARNING"),
        (logging.ERROR, "ERROR"),
        (logging.CRITICAL, "CRITICAL"),
    ],
)
def test_formatter_writes_cloud_logging_json(level: int, severity: str) -> None:
    entry = _format(_record("synced %s in %d ms", "user-1", 42, level=level))

    assert entry["severity"] == severity
    assert entry["message"] == "synced user-1 in 42 ms"
    assert entry["logger"] == "agenttrader.test"
    assert entry["time"].endswith("+00:00")


def test_labels_go_under_the_cloud_logging_key_as_strings() -> None:
    entry = _format(
        _record("m", labels={"uid": "user-1", "attempt": 3, "message_id": "m-1", "none": None})
    )

    assert entry[LABELS] == {"uid": "user-1", "attempt": "3", "message_id": "m-1"}
    assert "uid" not in entry


def test_fields_become_top_level_json() -> None:
    entry = _format(_record("m", fields={"count": 3, "ok": True, "items": ["a", 1], "x": None}))

    assert entry["count"] == 3
    assert entry["ok"] is True
    assert entry["items"] == ["a", 1]
    assert entry["x"] is None


def test_non_json_field_values_are_stringified() -> None:
    entry = _format(_record("m", fields={"obj": object(), "exc": ValueError("boom")}))

    assert entry["obj"].startswith("<object object")
    assert entry["exc"] == "boom"


def test_no_labels_key_without_labels() -> None:
    assert LABELS not in _format(_record("m", labels={}))
    assert LABELS not in _format(_record("m"))


# --- redaction -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "leak"),
    [
        ("APCA-API-SECRET-KEY: xyzsecret", "xyzsecret"),
        ("apca-api-secret-key=xyzsecret", "xyzsecret"),
        ("APCA-API-KEY-ID: someKeyId99", "someKeyId99"),
        ("{'APCA-API-SECRET-KEY': 'xyzsecret'}", "xyzsecret"),
        ('{"secret_key": "xyzsecret", "base_url": "https://x"}', "xyzsecret"),
        ('{"secret_key":"xyzsecret"}', "xyzsecret"),
        ("secret_key='xyzsecret'", "xyzsecret"),
        ("key_id=PK0123456789", "PK0123456789"),
        ("key_id=mykeyid99", "mykeyid99"),
        ("password=hunter22", "hunter22"),
        ("api_key: AIzaSomething", "AIzaSomething"),
        ("x-goog-api-key: AIzaSomething", "AIzaSomething"),
        ("Authorization: Bearer eyJhbGciOi.payload.sig", "eyJhbGciOi"),
        ("Authorization: Basic dXNlcjpwYXNz", "dXNlcjpwYXNz"),
        ("sent Bearer eyJhbGciOiJSUzI1NiJ9.abc.def to the API", "eyJhbGciOiJSUzI1NiJ9"),
        (f"calling Alpaca with {KEY_ID} now", KEY_ID),
        ("live key AKZYXWVUTSRQ98765432 in text", "AKZYXWVUTSRQ98765432"),
        (f"({KEY_ID})", KEY_ID),
        ("GET https://PKUSER:SECRETPW@paper-api.alpaca.markets/v2", "SECRETPW"),
        ("url=http://user:pa55@127.0.0.1:8765/", "pa55"),
        ("proxy https://tokenonly@evil.example", "tokenonly"),
    ],
)
def test_credential_shapes_are_redacted(text: str, leak: str) -> None:
    redacted = redact(text)

    assert leak not in redacted
    assert REDACTED in redacted


@pytest.mark.parametrize(
    "text",
    [
        "synced user-1: equity 1000.00, 3 positions",
        "https://paper-api.alpaca.markets/v2/account",
        "PK is short PK123",
        "the key was rotated",
        "Bearer",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact(text) == text


def test_scoped_secrets_are_redacted_anywhere_and_only_in_the_scope() -> None:
    line = f"odd text{SECRET}glued and {KEY_ID.lower()}"

    with secret_scope(SECRET, KEY_ID.lower()):
        inside = redact(line)
    after = redact(line)

    assert SECRET not in inside
    assert KEY_ID.lower() not in inside
    assert inside == f"odd text{REDACTED}glued and {REDACTED}"
    assert after == line


def test_secret_scopes_nest_and_unwind() -> None:
    with secret_scope("outer-secret"):
        with secret_scope("inner-secret"):
            both = redact("outer-secret inner-secret")
        outer_only = redact("outer-secret inner-secret")

    assert both == f"{REDACTED} {REDACTED}"
    assert outer_only == f"{REDACTED} inner-secret"


def test_secret_scope_is_reset_when_the_block_raises() -> None:
    with pytest.raises(RuntimeError), secret_scope("leaky-secret"):
        raise RuntimeError("x")

    assert redact("leaky-secret") == "leaky-secret"


def test_secret_scope_ignores_short_and_non_string_values() -> None:
    with secret_scope("abc", "", None, 12345):  # type: ignore[arg-type]
        assert redact("abc 12345 cab") == "abc 12345 cab"


def test_secret_scope_is_per_thread() -> None:
    other_thread_saw: list[str] = []
    in_scope = threading.Event()
    checked = threading.Event()

    def other() -> None:
        in_scope.wait(5)
        other_thread_saw.append(redact("value zz-thread-secret"))
        checked.set()

    thread = threading.Thread(target=other)
    thread.start()
    with secret_scope("zz-thread-secret"):
        in_scope.set()
        checked.wait(5)
        mine = redact("value zz-thread-secret")
    thread.join(5)

    assert mine == f"value {REDACTED}"
    assert other_thread_saw == ["value zz-thread-secret"]


def test_formatter_redacts_scoped_secrets_in_message_labels_and_fields() -> None:
    record = _record(
        "keys %s / %s",
        KEY_ID,
        SECRET,
        labels={"uid": "user-1", "hint": f"sk={SECRET}", "key": KEY_ID},
        fields={
            "detail": f"got {SECRET}",
            "nested": {"list": [SECRET, {"deeper": SECRET}], "tuple": (SECRET,)},
            "auth": "Authorization: Bearer abcdefghijklmnop",
        },
    )

    with secret_scope(SECRET):
        line = CloudLoggingFormatter().format(record)

    assert SECRET not in line
    assert KEY_ID not in line
    assert "abcdefghijklmnop" not in line
    entry = json.loads(line)
    assert entry["message"] == f"keys {REDACTED} / {REDACTED}"
    assert entry[LABELS]["uid"] == "user-1"
    assert entry[LABELS]["key"] == REDACTED
    assert entry["nested"]["list"] == [REDACTED, {"deeper": REDACTED}]


def test_formatter_redacts_exception_tracebacks() -> None:
    try:
        raise ValueError(f"request failed: APCA-API-SECRET-KEY: {SECRET} key {KEY_ID}")
    except ValueError:
        exc_info = sys.exc_info()

    with secret_scope(SECRET):
        entry = _format(_record("sync failed", level=logging.ERROR, exc_info=exc_info))

    assert "Traceback (most recent call last)" in entry["message"]
    assert "ValueError: request failed" in entry["message"]
    assert SECRET not in json.dumps(entry)
    assert KEY_ID not in json.dumps(entry)


def test_pattern_redaction_needs_no_scope_in_tracebacks() -> None:
    try:
        raise RuntimeError(f"headers={{'APCA-API-KEY-ID': '{KEY_ID}'}}")
    except RuntimeError:
        exc_info = sys.exc_info()

    entry = _format(_record("boom", exc_info=exc_info))

    assert KEY_ID not in entry["message"]


# --- configure and Log -----------------------------------------------------------------------


def _ours(root: logging.Logger) -> list[logging.Handler]:
    return [h for h in root.handlers if h.get_name() == logs._HANDLER_NAME]


def test_configure_is_idempotent(root_logger: logging.Logger) -> None:
    stream = io.StringIO()

    logs.configure(stream)
    logs.configure(stream)
    logs.configure(io.StringIO())

    assert len(_ours(root_logger)) == 1
    assert isinstance(_ours(root_logger)[0].formatter, CloudLoggingFormatter)


def test_configured_root_writes_redacted_json(root_logger: logging.Logger) -> None:
    stream = io.StringIO()
    logs.configure(stream, level=logging.DEBUG)
    log = get_logger("agenttrader.test.configure")

    with secret_scope(SECRET):
        log.info(f"loaded {SECRET}", uid="user-1", fields={"secret_copy": SECRET})
        log.debug("debug line", uid="user-1")
        try:
            raise KeyError(SECRET)
        except KeyError:
            log.exception("failed", uid="user-1", message_id="m-9")
    # A library logging through the root, outside our helper, is formatted the same way.
    logging.getLogger("urllib3.test").warning("key_id=%s", KEY_ID)

    output = stream.getvalue()
    assert SECRET not in output
    assert KEY_ID not in output
    entries = [json.loads(line) for line in output.splitlines()]
    assert [e["severity"] for e in entries] == ["INFO", "DEBUG", "ERROR", "WARNING"]
    assert entries[0]["message"] == f"loaded {REDACTED}"
    assert entries[0]["secret_copy"] == REDACTED
    assert entries[0][LABELS] == {"uid": "user-1"}
    assert entries[2][LABELS] == {"uid": "user-1", "message_id": "m-9"}
    assert "KeyError" in entries[2]["message"]
    assert entries[3]["logger"] == "urllib3.test"


def test_log_respects_the_level(root_logger: logging.Logger) -> None:
    stream = io.StringIO()
    logs.configure(stream, level=logging.WARNING)
    log = get_logger("agenttrader.test.level")

    log.info("hidden")
    log.warning("shown", uid="u")
    log.error("also shown")

    messages = [json.loads(line)["message"] for line in stream.getvalue().splitlines()]
    assert messages == ["shown", "also shown"]
