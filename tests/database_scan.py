"""Scanning a whole Firestore database in tests: every document at any depth (missing parents
included), and every value of a document, so a test can prove no credential rests anywhere."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any


def every_document(db: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(path, data)`` of every document of the database, walking every collection."""

    def walk(collection: Any) -> Iterator[tuple[str, dict[str, Any]]]:
        for ref in collection.list_documents():
            snapshot = ref.get()
            if snapshot.exists:
                yield ref.path, snapshot.to_dict() or {}
            for sub in ref.collections():
                yield from walk(sub)

    for collection in db.collections():
        yield from walk(collection)


def every_value(data: object) -> Iterator[str]:
    """Every key and string of a document at any depth, bytes decoded as Latin-1 (so a value
    hidden in bytes is found too)."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield str(key)
            yield from every_value(value)
    elif isinstance(data, list | tuple):
        for value in data:
            yield from every_value(value)
    elif isinstance(data, bytes):
        yield data.decode("latin-1")
    elif isinstance(data, str):
        yield data
    elif data is not None:
        yield str(data)


def holding(documents: Iterable[tuple[str, dict[str, Any]]], secrets: Iterable[str]) -> list[str]:
    """The paths of the documents holding any of ``secrets`` (as is, lower- or upper-cased)."""
    forms = {form for secret in secrets for form in (secret, secret.lower(), secret.upper())}
    return [
        path
        for path, data in documents
        if any(form in value for value in every_value(data) for form in forms)
    ]
