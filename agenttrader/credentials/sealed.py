"""The sealed form of ``users/{uid}/secrets/alpaca`` (docs/DESIGN.md, Credentials) and what
its ciphertext holds.

A sealed document has ``sealed: true``, ``auth``, ``ciphertext`` (bytes), ``key_id_hint``
(the last 4 characters), ``base_url``, ``sealedAt`` and ``keys_version``, and none of the
plaintext fields a client wrote. The ciphertext holds the credentials as JSON, ``auth`` and
``base_url`` included; it is bound (Tink associated data) to the tenant's uid and the
document's path, so it opens only where it was sealed. The clear ``auth`` and ``base_url``
fields must equal the sealed ones: a document edited around its ciphertext fails closed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from agenttrader.credentials.model import AlpacaKeys, AuthKind, Credentials, OAuthToken, auth_of
from agenttrader.errors import CredentialsTampered

PLAINTEXT_FIELDS: tuple[str, ...] = ("key_id", "secret_key")
"""What a client writes in clear and sealing removes (``base_url`` stays, sealed and clear)."""

_FORMAT = "agenttrader.credentials.v1"
"""Names this layout in the associated data: a future layout cannot open as this one."""
_AUTH_KINDS: frozenset[str] = frozenset({"keys", "oauth"})


def is_sealed(doc: Mapping[str, Any] | None) -> bool:
    """Whether a ``secrets/alpaca`` document is in the sealed form (written by the server)."""
    return doc is not None and doc.get("sealed") is True


def associated_data(uid: str, path: str) -> bytes:
    """What a ciphertext is bound to: the layout, the tenant and the document (unambiguous:
    a JSON array, so no choice of uid and path can collide with another)."""
    return json.dumps([_FORMAT, uid, path], separators=(",", ":")).encode()


@dataclass(frozen=True)
class SealedForm:
    """A sealed document's fields, checked for shape (not yet opened)."""

    auth: AuthKind
    ciphertext: bytes = field(repr=False)
    key_id_hint: str
    base_url: str
    sealed_at: datetime
    keys_version: str | None

    @classmethod
    def from_document(cls, doc: Mapping[str, Any] | None) -> SealedForm:
        """``CredentialsTampered`` for anything but a well-formed sealed document: only the
        server writes this form, so a malformed one was altered."""
        if doc is None or not is_sealed(doc):
            raise CredentialsTampered("the credentials document is not sealed")
        auth, ciphertext = doc.get("auth"), doc.get("ciphertext")
        hint, base_url = doc.get("key_id_hint"), doc.get("base_url")
        sealed_at, version = doc.get("sealedAt"), doc.get("keys_version")
        if auth not in _AUTH_KINDS:
            raise CredentialsTampered("sealed credentials have an unknown auth kind")
        if not isinstance(ciphertext, bytes) or not ciphertext:
            raise CredentialsTampered("sealed credentials have no ciphertext")
        if not isinstance(hint, str) or not isinstance(base_url, str):
            raise CredentialsTampered("sealed credentials lack key_id_hint or base_url")
        if not isinstance(sealed_at, datetime):
            raise CredentialsTampered("sealed credentials lack sealedAt")
        if version is not None and not isinstance(version, str):
            raise CredentialsTampered("sealed credentials have a malformed keys_version")
        return cls(
            auth="oauth" if auth == "oauth" else "keys",
            ciphertext=ciphertext,
            key_id_hint=hint,
            base_url=base_url,
            sealed_at=sealed_at,
            keys_version=version,
        )

    def to_document(self) -> dict[str, Any]:
        return {
            "sealed": True,
            "auth": self.auth,
            "ciphertext": self.ciphertext,
            "key_id_hint": self.key_id_hint,
            "base_url": self.base_url,
            "sealedAt": self.sealed_at,
            "keys_version": self.keys_version,
        }

    def check_matches(self, credentials: Credentials) -> Credentials:
        """The opened credentials, if the clear fields agree with them."""
        if auth_of(credentials) != self.auth or credentials.base_url != self.base_url:
            raise CredentialsTampered("sealed credentials do not match their document")
        return credentials


def encode_payload(credentials: Credentials) -> bytes:
    """The plaintext that is encrypted."""
    if isinstance(credentials, OAuthToken):
        fields = {"access_token": credentials.access_token}
    else:
        fields = {"key_id": credentials.key_id, "secret_key": credentials.secret_key}
    payload = {"auth": auth_of(credentials), **fields, "base_url": credentials.base_url}
    return json.dumps(payload, separators=(",", ":")).encode()


def decode_payload(plaintext: bytes) -> Credentials:
    """Credentials from a decrypted payload, validated as when they were first accepted."""
    try:
        payload = json.loads(plaintext)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CredentialsTampered("sealed credentials hold no JSON") from None
    if not isinstance(payload, dict):
        raise CredentialsTampered("sealed credentials hold no JSON object")
    if payload.get("auth") == "oauth":
        return OAuthToken.from_document(payload)
    if payload.get("auth") == "keys":
        return AlpacaKeys.from_document(payload)
    raise CredentialsTampered("sealed credentials have an unknown auth kind")
