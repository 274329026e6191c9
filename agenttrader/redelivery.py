"""How a cloudevent function asks for its event to be delivered again, quietly.

A function answers non-2xx to have Pub/Sub (or Eventarc) redeliver. Raising any exception
does that, but functions-framework hands it to Flask, which logs it at ERROR with its
traceback: during an outage, one traceback per failing tenant per minute. An *expected*
transient failure — a ``RetryableError``, or an error the Google clients raise for a transient
fault (:data:`agenttrader.firestore_io.TRANSIENT`) — instead becomes one structured WARNING
line and an HTTP 503 (a werkzeug ``HTTPException``, which Flask answers without logging).
Anything else propagates unchanged: an unexpected exception keeps its ERROR line, its
traceback and its 500.

Every cloudevent entry point wraps its use case in :func:`for_message` (Pub/Sub push) or
:func:`for_document` (Firestore events), after decoding the event.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from werkzeug.exceptions import ServiceUnavailable

from agenttrader.errors import RetryableError
from agenttrader.events import DocumentChange, PubsubDelivery
from agenttrader.firestore_io import TRANSIENT
from agenttrader.logs import get_logger
from agenttrader.paths import parse_user_document, valid_uid

log = get_logger(__name__)


class Redeliver(ServiceUnavailable):
    """HTTP 503 for an expected transient failure; Pub/Sub and Eventarc retry any non-2xx.

    Not 500: functions-framework marks its 500 answers as a crash (``X-Google-Status``)."""

    description = "transient failure: deliver the event again later"


@contextmanager
def redelivered_when_transient(**labels: Any) -> Iterator[None]:
    """Turn an expected transient failure of the block into one WARNING line carrying
    ``labels`` (``uid``, ``delivery_attempt``, ``message_id``…; ``None`` ones are left out)
    and :class:`Redeliver`; let anything else through."""
    try:
        yield
    except RetryableError as err:
        _warn(f"transient failure, event to be redelivered: {err}", err.error_class, labels)
        raise Redeliver() from err
    except TRANSIENT as err:
        # A Google client's message may quote the response: only the class is logged.
        name = type(err).__name__
        _warn(f"transient failure, event to be redelivered: {name}", name, labels)
        raise Redeliver() from err


def for_message(delivery: PubsubDelivery) -> AbstractContextManager[None]:
    """:func:`redelivered_when_transient` for a Pub/Sub push: the message id, the delivery
    attempt and the ``uid`` attribute (when it names a user)."""
    return redelivered_when_transient(
        uid=valid_uid(delivery.attributes.get("uid")),
        message_id=delivery.message_id,
        delivery_attempt=delivery.delivery_attempt,
    )


def for_document(change: DocumentChange, event_id: str) -> AbstractContextManager[None]:
    """:func:`redelivered_when_transient` for a Firestore event: the event id and the uid
    of the user document written (Eventarc does not number its attempts)."""
    document = parse_user_document(change.path)
    return redelivered_when_transient(
        uid=document.uid if document is not None else None, event_id=event_id
    )


def _warn(message: str, error_class: str, labels: dict[str, Any]) -> None:
    log.warning(message, error_class=error_class, **labels)
