"""A tiny Firestore-emulator REST client for security-rules tests.

Two kinds of caller, as ``@firebase/rules-unit-testing`` models them:

* the **server**: ``Authorization: Bearer owner`` makes the emulator skip the rules (the
  header ``withSecurityRulesDisabled`` sends; the admin SDK's counterpart in production);
* a **client**: an emulator ID token (``id_token``), unsigned as the emulator accepts it, or no
  ``Authorization`` header at all for an unauthenticated client.

Documents are given and returned as plain Python values (``str``, ``bytes``, ``bool``,
``int``, ``float``, ``None``, ``datetime``, ``dict``, ``list``); ``encode_fields`` maps them to
the REST API's typed ``Value`` JSON.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests

from devtools import emulators

SERVER = "owner"
"""The emulator's rules bypass token: what the admin SDK is to production."""


def _b64url(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def id_token(project: str, uid: str, **claims: Any) -> str:
    """An emulator ID token for ``uid`` with custom ``claims`` (e.g. ``admin=True``).

    Shaped like ``@firebase/rules-unit-testing``'s: header ``alg: none``, the standard Firebase
    claims for ``project``, and an empty signature (``header.payload.``).
    """
    now = int(time.time())
    payload = {
        "iss": f"https://securetoken.google.com/{project}",
        "aud": project,
        "iat": now,
        "exp": now + 3600,
        "auth_time": now,
        "sub": uid,
        "user_id": uid,
        "firebase": {"sign_in_provider": "custom", "identities": {}},
        **claims,
    }
    return f"{_b64url({'alg': 'none', 'kid': 'fakekid', 'typ': 'JWT'})}.{_b64url(payload)}."


def encode_value(value: Any) -> dict[str, Any]:
    """One Python value as a Firestore REST ``Value``."""
    if value is None:
        return {"nullValue": None}
    if isinstance(value, bool):  # before int: bool is an int
        return {"booleanValue": value}
    if isinstance(value, int):
        return {"integerValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, bytes):
        return {"bytesValue": base64.b64encode(value).decode()}
    if isinstance(value, datetime):
        return {"timestampValue": value.astimezone(UTC).isoformat().replace("+00:00", "Z")}
    if isinstance(value, dict):
        return {"mapValue": {"fields": encode_fields(value)}}
    if isinstance(value, list | tuple):
        return {"arrayValue": {"values": [encode_value(v) for v in value]}}
    raise TypeError(f"cannot encode {type(value).__name__}")


def encode_fields(data: dict[str, Any]) -> dict[str, Any]:
    return {key: encode_value(value) for key, value in data.items()}


def load_rules(host_port: str, project: str, rules_text: str) -> None:
    """``emulators.load_firestore_rules`` with the emulator's compile errors in the message."""
    try:
        emulators.load_firestore_rules(host_port, project, rules_text)
    except urllib.error.HTTPError as err:
        raise AssertionError(f"the emulator refused the rules: {err.read().decode()}") from err


@dataclass
class Response:
    status: int
    body: str

    @property
    def allowed(self) -> bool:
        """True for success, False for a rules denial; anything else is a broken test setup."""
        if self.status == 200:
            return True
        if self.status == 403 and "PERMISSION_DENIED" in self.body:
            return False
        raise AssertionError(f"neither allowed nor denied: HTTP {self.status} {self.body[:500]}")


class RulesClient:
    """Document operations against one emulator project, as a given caller."""

    def __init__(self, host_port: str, project: str, session: requests.Session) -> None:
        self.project = project
        self.base = f"http://{host_port}/v1/projects/{project}/databases/(default)/documents"
        self.session = session

    def _headers(self, token: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"} if token else {}

    def _send(self, method: str, url: str, token: str | None, **kwargs: Any) -> Response:
        response = self.session.request(
            method, url, headers=self._headers(token), timeout=30, **kwargs
        )
        return Response(response.status_code, response.text)

    # Client operations: each maps to one rules method (get, list, create, update, delete).

    def get(self, path: str, token: str | None) -> Response:
        return self._send("GET", f"{self.base}/{path}", token)

    def list(self, collection: str, token: str | None) -> Response:
        return self._send("GET", f"{self.base}/{collection}", token)

    def create(self, path: str, data: dict[str, Any], token: str | None) -> Response:
        parent, _, doc_id = path.rpartition("/")
        return self._send(
            "POST",
            f"{self.base}/{parent}",
            token,
            params={"documentId": doc_id},
            json={"fields": encode_fields(data)},
        )

    def update(
        self,
        path: str,
        data: dict[str, Any],
        token: str | None,
        mask: list[str] | None = None,
    ) -> Response:
        """Update an existing document: with ``mask``, only those fields (a merge, as the SDKs'
        ``updateDoc`` does); without, the document is replaced by ``data``."""
        params: list[tuple[str, str]] = [("currentDocument.exists", "true")]
        params += [("updateMask.fieldPaths", field) for field in mask or ()]
        return self._send(
            "PATCH",
            f"{self.base}/{path}",
            token,
            params=params,
            json={"fields": encode_fields(data)},
        )

    def delete(self, path: str, token: str | None) -> Response:
        return self._send("DELETE", f"{self.base}/{path}", token)

    def run_query(self, parent: str, query: dict[str, Any], token: str | None) -> Response:
        """``runQuery`` under ``parent`` ("" for the database root)."""
        url = f"{self.base}/{parent}:runQuery" if parent else f"{self.base}:runQuery"
        return self._send("POST", url, token, json={"structuredQuery": query})

    # Server operations (rules bypassed), to arrange each cell.

    def seed(self, path: str, data: dict[str, Any]) -> None:
        response = self._send(
            "PATCH", f"{self.base}/{path}", SERVER, json={"fields": encode_fields(data)}
        )
        if response.status != 200:
            raise AssertionError(f"seeding {path} failed: {response.status} {response.body}")

    def seed_many(self, documents: dict[str, dict[str, Any]]) -> None:
        """Write many documents as the server in as few commits as Firestore allows."""
        prefix = self.base.split("/v1/", 1)[1]
        writes = [
            {"update": {"name": f"{prefix}/{path}", "fields": encode_fields(data)}}
            for path, data in documents.items()
        ]
        for start in range(0, len(writes), 500):
            response = self._send(
                "POST", f"{self.base}:commit", SERVER, json={"writes": writes[start : start + 500]}
            )
            if response.status != 200:
                raise AssertionError(f"seeding failed: {response.status} {response.body[:500]}")

    def remove(self, path: str) -> None:
        response = self._send("DELETE", f"{self.base}/{path}", SERVER)
        if response.status != 200:
            raise AssertionError(f"removing {path} failed: {response.status} {response.body}")

    def read(self, path: str) -> dict[str, Any] | None:
        """The stored document's raw REST fields, read as the server; None if missing."""
        response = self._send("GET", f"{self.base}/{path}", SERVER)
        if response.status == 404:
            return None
        if response.status != 200:
            raise AssertionError(f"reading {path} failed: {response.status} {response.body}")
        fields: dict[str, Any] = json.loads(response.body).get("fields", {})
        return fields
