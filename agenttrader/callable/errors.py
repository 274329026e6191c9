"""The errors a callable may answer with: the protocol's canonical statuses and the one
exception a handler raises to choose what the client sees."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    """Canonical error statuses of the callable protocol (the Firebase SDKs map them to
    ``functions/<kebab-case>`` codes)."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    OUT_OF_RANGE = "OUT_OF_RANGE"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    ABORTED = "ABORTED"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    CANCELLED = "CANCELLED"
    UNIMPLEMENTED = "UNIMPLEMENTED"
    INTERNAL = "INTERNAL"
    UNKNOWN = "UNKNOWN"
    UNAVAILABLE = "UNAVAILABLE"
    DATA_LOSS = "DATA_LOSS"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"


HTTP_STATUS: Mapping[Status, int] = {
    Status.INVALID_ARGUMENT: 400,
    Status.FAILED_PRECONDITION: 400,
    Status.OUT_OF_RANGE: 400,
    Status.UNAUTHENTICATED: 401,
    Status.PERMISSION_DENIED: 403,
    Status.NOT_FOUND: 404,
    Status.ALREADY_EXISTS: 409,
    Status.ABORTED: 409,
    Status.RESOURCE_EXHAUSTED: 429,
    Status.CANCELLED: 499,
    Status.UNIMPLEMENTED: 501,
    Status.INTERNAL: 500,
    Status.UNKNOWN: 500,
    Status.UNAVAILABLE: 503,
    Status.DATA_LOSS: 500,
    Status.DEADLINE_EXCEEDED: 504,
}
"""The HTTP code of each status, as Firebase callables answer them."""

INTERNAL_MESSAGE = "internal error"


class CallableError(Exception):
    """An error whose status and message the client may see; raise it from a handler.

    The message is written by this project and must never contain a secret or copy text from
    another system's error (which might echo a header or a key).
    """

    def __init__(
        self,
        status: Status,
        message: str,
        *,
        details: Mapping[str, Any] | None = None,
        http_status: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = dict(details) if details else None
        self.http_status = http_status or HTTP_STATUS[status]
        """Only protocol errors (405, 413) differ from :data:`HTTP_STATUS`."""
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"status": self.status.value, "message": self.message}
        if self.details:
            error["details"] = self.details
        return {"error": error}


def invalid_argument(field_name: str, problem: str) -> CallableError:
    """``INVALID_ARGUMENT`` naming the bad field in the message and in ``details.field``."""
    return CallableError(
        Status.INVALID_ARGUMENT, f"{field_name}: {problem}", details={"field": field_name}
    )


# --- the caller --------------------------------------------------------------------------------
