"""Structured logs as Cloud Logging reads them from stdout/stderr (one JSON object per line).

Every line passes :func:`redact`: the secrets of the request being handled (registered with
:func:`secret_scope`), anything shaped like an Alpaca key, credential headers and URL userinfo
are replaced before the line is written.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from typing import IO, Any

REDACTED = "[REDACTED]"

_SCOPED_SECRETS: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar(
    "agenttrader_secrets", default=()
)
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Header or field names that carry credentials, followed by their value.
    (
        re.compile(
            r"(?i)((?:APCA-API-KEY-ID|APCA-API-SECRET-KEY|secret_key|key_id|api_key|secret|"
            r"password|authorization|x-goog-api-key)['\"]?\s*[:=]\s*['\"]?)"
            r"(?:(?:Bearer|Basic)\s+)?[^'\"\s,}&]+"
        ),
        r"\1" + REDACTED,
    ),
    (re.compile(r"(?i)\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=\-]{8,}"), r"\1 " + REDACTED),
    # Alpaca key ids (paper PK…, live AK…) wherever they appear.
    (re.compile(r"\b[PA]K[A-Z0-9]{14,30}\b"), REDACTED),
    # Userinfo in URLs: scheme://user:pass@host
    (re.compile(r"(://)[^/\s@]+@"), r"\1" + REDACTED + "@"),
)
_MIN_SECRET_LEN = 4
"""Shorter values would redact ordinary words; key validation refuses them anyway."""


class Severity(StrEnum):
    """Cloud Logging severities used here."""

    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"
    CRITICAL = "CRITICAL"


@contextmanager
def secret_scope(*secrets: str) -> Iterator[None]:
    """Redact these values from every log line written in this context (thread or task)."""
    values = tuple(s for s in secrets if isinstance(s, str) and len(s) >= _MIN_SECRET_LEN)
    token = _SCOPED_SECRETS.set(_SCOPED_SECRETS.get() + values)
    try:
        yield
    finally:
        _SCOPED_SECRETS.reset(token)


def redact(text: str) -> str:
    """Remove the scoped secrets and anything credential-shaped from ``text``."""
    for secret in _SCOPED_SECRETS.get():
        if secret in text:
            text = text.replace(secret, REDACTED)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {str(k): _redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(v) for v in value]
    if isinstance(value, int | float | bool) or value is None:
        return value
    return redact(str(value))


class CloudLoggingFormatter(logging.Formatter):
    """Formats a record as one line of Cloud Logging structured JSON."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message = f"{message}\n{self.formatException(record.exc_info)}"
        entry: dict[str, Any] = {
            "severity": record.levelname if record.levelname != "WARN" else "WARNING",
            "message": redact(message),
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "logger": record.name,
        }
        labels = getattr(record, "labels", None)
        if labels:
            entry["logging.googleapis.com/labels"] = {
                str(k): str(_redact_value(v)) for k, v in labels.items() if v is not None
            }
        fields = getattr(record, "fields", None)
        if fields:
            entry.update({str(k): _redact_value(v) for k, v in fields.items()})
        return json.dumps(entry, default=str)


_HANDLER_NAME = "agenttrader-json"


def configure(stream: IO[str] | None = None, level: int = logging.INFO) -> None:
    """Send every log record (ours and the libraries') through the JSON formatter; idempotent."""
    root = logging.getLogger()
    for handler in root.handlers:
        if handler.get_name() == _HANDLER_NAME:
            return
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(CloudLoggingFormatter())
    root.addHandler(handler)
    root.setLevel(level)


class Log:
    """A logger that takes labels (``uid``, ``message_id``…) and extra JSON fields as kwargs."""

    def __init__(self, name: str) -> None:
        self._logger = logging.getLogger(name)

    def _emit(
        self, level: int, message: str, labels: dict[str, Any], fields: dict[str, Any] | None
    ) -> None:
        if self._logger.isEnabledFor(level):
            self._logger.log(level, message, extra={"labels": labels, "fields": fields})

    def log(
        self,
        level: int,
        message: str,
        *,
        fields: dict[str, Any] | None = None,
        **labels: Any,
    ) -> None:
        self._emit(level, message, labels, fields)

    def debug(self, message: str, *, fields: dict[str, Any] | None = None, **labels: Any) -> None:
        self._emit(logging.DEBUG, message, labels, fields)

    def info(self, message: str, *, fields: dict[str, Any] | None = None, **labels: Any) -> None:
        self._emit(logging.INFO, message, labels, fields)

    def warning(self, message: str, *, fields: dict[str, Any] | None = None, **labels: Any) -> None:
        self._emit(logging.WARNING, message, labels, fields)

    def error(self, message: str, *, fields: dict[str, Any] | None = None, **labels: Any) -> None:
        self._emit(logging.ERROR, message, labels, fields)

    def exception(
        self, message: str, *, fields: dict[str, Any] | None = None, **labels: Any
    ) -> None:
        self._logger.error(message, exc_info=True, extra={"labels": labels, "fields": fields})


def get_logger(name: str) -> Log:
    return Log(name)
