"""What Eventarc sends for a Firestore write, encoded: the local Eventarc bridges and the tests
deliver exactly these bodies and headers to the functions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from google.events.cloud.firestore_v1.types import data as firestore_data

from agenttrader.events import FIRESTORE_WRITTEN


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
