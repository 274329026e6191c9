"""The Pub/Sub topology, declared once (docs/DESIGN.md's table).

The local stack applies it to the emulator (``devtools.topology``); the deploy tooling renders
the same declaration into ``gcloud`` commands. Names are contracts.
"""

from __future__ import annotations

from dataclasses import dataclass

SYNC_TICK = "sync-tick"
USER_SYNC = "user-sync"
USER_SYNC_DEAD_LETTER = "user-sync-dead-letter"

SYNC_TICK_PUBLISHER = "sync-tick-publisher"
USER_SYNC_WORKER = "user-sync-worker"
USER_SYNC_DEAD_LETTER_HOLD = "user-sync-dead-letter-hold"

TOPICS: tuple[str, ...] = (SYNC_TICK, USER_SYNC, USER_SYNC_DEAD_LETTER)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff between redeliveries of a nacked message."""

    minimum_backoff_seconds: int
    maximum_backoff_seconds: int


@dataclass(frozen=True)
class DeadLetterPolicy:
    """After ``max_delivery_attempts`` Pub/Sub forwards the message to ``topic``."""

    topic: str
    max_delivery_attempts: int


@dataclass(frozen=True)
class Subscription:
    """One subscription; ``push_target`` names the function it pushes to (``None``: pull)."""

    name: str
    topic: str
    push_target: str | None
    ack_deadline_seconds: int
    message_retention_seconds: int
    retry: RetryPolicy | None = None
    dead_letter: DeadLetterPolicy | None = None


SUBSCRIPTIONS: tuple[Subscription, ...] = (
    Subscription(
        name=SYNC_TICK_PUBLISHER,
        topic=SYNC_TICK,
        push_target="publish_user_syncs",
        ack_deadline_seconds=300,
        # A tick older than this is useless: the next one is a minute away.
        message_retention_seconds=600,
        retry=RetryPolicy(10, 60),
    ),
    Subscription(
        name=USER_SYNC_WORKER,
        topic=USER_SYNC,
        push_target="sync_user",
        # The worker's worst case: two Alpaca calls at their timeout plus Firestore.
        ack_deadline_seconds=60,
        message_retention_seconds=86_400,
        retry=RetryPolicy(10, 600),
        dead_letter=DeadLetterPolicy(USER_SYNC_DEAD_LETTER, max_delivery_attempts=5),
    ),
    Subscription(
        name=USER_SYNC_DEAD_LETTER_HOLD,
        topic=USER_SYNC_DEAD_LETTER,
        push_target=None,
        ack_deadline_seconds=60,
        # Long enough for an operator to fix the cause and replay.
        message_retention_seconds=7 * 86_400,
    ),
)


def subscription(name: str) -> Subscription:
    return next(s for s in SUBSCRIPTIONS if s.name == name)
