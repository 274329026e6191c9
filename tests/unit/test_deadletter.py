"""Publishing dead letters: attributes as given, a huge body cut to a size every reader takes."""

from __future__ import annotations

from typing import Any

from agenttrader.deadletter import MAX_DEAD_LETTER_BYTES, publish_dead_letter
from agenttrader.deps import Deps
from agenttrader.settings import Settings


class _Done:
    def result(self, timeout: float) -> str:
        return "m-1"


class _Publisher:
    def __init__(self) -> None:
        self.published: list[tuple[str, bytes, dict[str, Any]]] = []

    def publish(self, topic: str, data: bytes, **attributes: Any) -> _Done:
        self.published.append((topic, data, attributes))
        return _Done()


def _publish(data: bytes) -> tuple[str, bytes, dict[str, Any]]:
    publisher = _Publisher()
    deps = Deps(Settings(project="p"), publisher=publisher)  # type: ignore[arg-type]
    attributes = {"uid": "u1", "error_class": "MalformedMessage"}
    assert publish_dead_letter(deps, data, attributes) == "m-1"
    [published] = publisher.published
    return published


def test_a_small_body_is_published_as_it_is() -> None:
    topic, data, attributes = _publish(b'{"uid": "u1"}')
    assert topic == "projects/p/topics/user-sync-dead-letter"
    assert data == b'{"uid": "u1"}'
    assert attributes == {"uid": "u1", "error_class": "MalformedMessage"}


def test_a_huge_body_is_cut_and_says_how_long_it_was() -> None:
    body = b"x" * (9 * 1024 * 1024)
    _, data, attributes = _publish(body)
    assert data == body[:MAX_DEAD_LETTER_BYTES]
    assert attributes["data_truncated_from"] == str(len(body))
    assert attributes["uid"] == "u1"


def test_a_body_of_exactly_the_limit_is_kept_whole() -> None:
    body = b"y" * MAX_DEAD_LETTER_BYTES
    _, data, attributes = _publish(body)
    assert data == body and "data_truncated_from" not in attributes
