"""Which Firestore failures :func:`agenttrader.firestore_io.call` classifies as transient."""

from __future__ import annotations

import pytest
from google.api_core import exceptions as gexc

from agenttrader.errors import DependencyUnavailable
from agenttrader.firestore_io import call

TRANSIENT: list[type[gexc.GoogleAPICallError]] = [
    gexc.ServiceUnavailable,
    gexc.DeadlineExceeded,
    gexc.InternalServerError,
    gexc.TooManyRequests,
    gexc.ResourceExhausted,
    gexc.Aborted,
    gexc.Unknown,  # a connection lost mid-call ("Stream removed")
    gexc.Cancelled,  # a call cancelled under us (channel closed, instance shutting down)
]
PASSED_ON: list[type[gexc.GoogleAPICallError]] = [
    # Retrying the same request cannot help, or the caller decides (a lost precondition).
    gexc.InvalidArgument,
    gexc.PermissionDenied,
    gexc.Unauthenticated,
    gexc.NotFound,
    gexc.AlreadyExists,
    gexc.FailedPrecondition,
]


def _raising(error: Exception) -> object:
    raise error


@pytest.mark.parametrize("kind", TRANSIENT, ids=lambda k: k.__name__)
def test_a_transient_failure_becomes_dependency_unavailable(
    kind: type[gexc.GoogleAPICallError],
) -> None:
    with pytest.raises(DependencyUnavailable, match=kind.__name__) as info:
        call(lambda: _raising(kind("secret detail from the response")))
    assert "secret detail" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


@pytest.mark.parametrize("kind", PASSED_ON, ids=lambda k: k.__name__)
def test_other_failures_are_passed_on_unchanged(kind: type[gexc.GoogleAPICallError]) -> None:
    with pytest.raises(kind):
        call(lambda: _raising(kind("x")))


def test_a_success_is_returned() -> None:
    assert call(lambda: 42) == 42
