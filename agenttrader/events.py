"""Decoding of the events the functions receive, into small typed values.

- Pub/Sub push: functions-framework turns the raw push body into a CloudEvent whose data is
  ``{"message": {data, attributes, messageId, publishTime}}``. It drops ``deliveryAttempt``;
  :func:`pubsub_delivery` takes it from the raw body when the entry point passes it.
- Firestore (Eventarc): binary-mode CloudEvent whose data is a protobuf ``DocumentEventData``.

Decoding only: the encoders the local bridges and tests use live in ``devtools.eventarc``.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cloudevents.http import CloudEvent
from google.events.cloud.firestore_v1.types import data as firestore_data

from agenttrader.messages import parse_timestamp

FIRESTORE_WRITTEN = "google.cloud.firestore.document.v1.written"
FIRESTORE_WRITTEN_WITH_AUTH = "google.cloud.firestore.document.v1.written.withAuthContext"
"""Eventarc's Firestore event types the functions are triggered by (the second carries
``authtype`` / ``authid``: who wrote)."""


@dataclass(frozen=True)
class PubsubDelivery:
    """One Pub/Sub message as pushed to a function."""

    message_id: str
    data: bytes = field(repr=False)
    attributes: dict[str, str]
    publish_time: datetime
    delivery_attempt: int | None = None
    """1 on the first delivery; ``None`` when the subscription has no dead-letter policy."""


def pubsub_delivery(event: CloudEvent, raw_body: Any = None) -> PubsubDelivery:
    """Decode a Pub/Sub CloudEvent; ``ValueError`` when it is not one.

    ``raw_body`` is the push request's JSON, the only place ``deliveryAttempt`` survives.
    """
    payload = event.data
    message = payload.get("message") if isinstance(payload, dict) else None
    if not isinstance(message, dict):
        raise ValueError("event data has no Pub/Sub message")
    try:
        data = base64.b64decode(message.get("data") or "", validate=True)
    except (binascii.Error, TypeError, ValueError) as err:
        raise ValueError("Pub/Sub message data is not base64") from err
    attributes = message.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise ValueError("Pub/Sub message attributes are not a map")
    published = message.get("publishTime") or event["time"]
    attempt = raw_body.get("deliveryAttempt") if isinstance(raw_body, dict) else None
    return PubsubDelivery(
        message_id=str(message.get("messageId") or event["id"]),
        data=data,
        attributes={str(k): str(v) for k, v in attributes.items()},
        publish_time=parse_timestamp(published, "publishTime") if published else datetime.now(UTC),
        delivery_attempt=attempt if isinstance(attempt, int) and attempt > 0 else None,
    )


@dataclass(frozen=True)
class DocumentChange:
    """A Firestore document write: values before and after (``None`` when absent)."""

    path: str
    """Relative document path, e.g. ``users/u1/secrets/alpaca``."""
    old: dict[str, Any] | None = field(repr=False)
    new: dict[str, Any] | None = field(repr=False)

    @property
    def is_delete(self) -> bool:
        return self.new is None

    @property
    def is_create(self) -> bool:
        return self.old is None and self.new is not None


def _value(value: firestore_data.Value) -> Any:
    kind = firestore_data.Value.pb(value).WhichOneof("value_type")
    if kind in (None, "null_value"):
        return None
    if kind == "map_value":
        return {k: _value(v) for k, v in value.map_value.fields.items()}
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    if kind == "timestamp_value":
        return value.timestamp_value
    return getattr(value, kind)


def _fields(document: firestore_data.Document) -> dict[str, Any] | None:
    if not document.name:
        return None
    return {k: _value(v) for k, v in document.fields.items()}


def _relative_path(name: str) -> str:
    marker = "/documents/"
    return name.split(marker, 1)[1] if marker in name else name


def document_change(event: CloudEvent) -> DocumentChange:
    """Decode a ``google.cloud.firestore.document.v1.*`` CloudEvent (protobuf data)."""
    raw = event.data
    if not isinstance(raw, bytes | bytearray):
        raise ValueError("Firestore event data must be protobuf bytes (DocumentEventData)")
    try:
        decoded = firestore_data.DocumentEventData.deserialize(bytes(raw))
    except Exception as err:
        raise ValueError("Firestore event data is not a DocumentEventData") from err
    old, new = _fields(decoded.old_value), _fields(decoded.value)
    name = decoded.value.name or decoded.old_value.name
    if not name:
        document = event.get("document") or event.get("subject") or ""
        name = str(document).removeprefix("documents/")
    return DocumentChange(path=_relative_path(name), old=old, new=new)
