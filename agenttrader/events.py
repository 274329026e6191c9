"""Decoding of the events the functions receive, into small typed values.

- Pub/Sub push: functions-framework turns the raw push body into a CloudEvent whose data is
  ``{"message": {data, attributes, messageId, publishTime}}``. It drops ``deliveryAttempt``;
  :func:`pubsub_delivery` takes it from the raw body when the adapter passes it.
- Firestore (Eventarc): binary-mode CloudEvent whose data is a protobuf ``DocumentEventData``.
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


# --- encoding: what Eventarc sends, for the local bridge and the tests ---------------------------

FIRESTORE_WRITTEN = "google.cloud.firestore.document.v1.written"
FIRESTORE_WRITTEN_WITH_AUTH = "google.cloud.firestore.document.v1.written.withAuthContext"


def _to_value(value: Any) -> firestore_data.Value:
    if value is None:
        return firestore_data.Value(null_value=0)
    if isinstance(value, bool):
        return firestore_data.Value(boolean_value=value)
    if isinstance(value, int):
        return firestore_data.Value(integer_value=value)
    if isinstance(value, float):
        return firestore_data.Value(double_value=value)
    if isinstance(value, str):
        return firestore_data.Value(string_value=value)
    if isinstance(value, bytes):
        return firestore_data.Value(bytes_value=value)
    if isinstance(value, datetime):
        return firestore_data.Value(timestamp_value=value)
    if isinstance(value, dict):
        return firestore_data.Value(
            map_value=firestore_data.MapValue(fields={k: _to_value(v) for k, v in value.items()})
        )
    if isinstance(value, list | tuple):
        return firestore_data.Value(
            array_value=firestore_data.ArrayValue(values=[_to_value(v) for v in value])
        )
    return firestore_data.Value(string_value=str(value))


def document_name(project: str, path: str) -> str:
    return f"projects/{project}/databases/(default)/documents/{path}"


def encode_document_event(
    project: str,
    path: str,
    old: dict[str, Any] | None,
    new: dict[str, Any] | None,
    time: datetime | None = None,
) -> bytes:
    """Serialize a write as Eventarc's protobuf ``DocumentEventData``."""
    time = time or datetime.now(UTC)
    event = firestore_data.DocumentEventData()
    for target, values in (("old_value", old), ("value", new)):
        if values is not None:
            getattr(event, target).name = document_name(project, path)
            getattr(event, target).fields = {k: _to_value(v) for k, v in values.items()}
            getattr(event, target).update_time = time
            getattr(event, target).create_time = time
    if old is not None and new is not None:
        changed = sorted(k for k in {*old, *new} if old.get(k) != new.get(k))
        event.update_mask = firestore_data.DocumentMask(field_paths=changed)
    return bytes(firestore_data.DocumentEventData.serialize(event))


def firestore_event_headers(
    project: str,
    path: str,
    event_id: str,
    time: datetime,
    *,
    event_type: str = FIRESTORE_WRITTEN,
    auth: tuple[str, str] | None = None,
) -> dict[str, str]:
    """Binary-mode CloudEvent headers exactly as Eventarc sets them for a Firestore write
    (``auth``: the ``authtype`` and ``authid`` of a ``withAuthContext`` event)."""
    extra = {"ce-authtype": auth[0], "ce-authid": auth[1]} if auth else {}
    return {
        **extra,
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "ce-type": event_type,
        "ce-source": f"//firestore.googleapis.com/projects/{project}/databases/(default)",
        "ce-subject": f"documents/{path}",
        "ce-time": time.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "ce-dataschema": "https://github.com/googleapis/google-cloudevents/blob/main/proto/google/events/cloud/firestore/v1/data.proto",
        "ce-project": project,
        "ce-database": "(default)",
        "ce-namespace": "(default)",
        "ce-document": path,
        "ce-location": "nam5",
        "content-type": "application/protobuf",
    }
