"""Helpers for pipeline tests: seeding tenants as the server would, waiting for outcomes,
reading dead letters. Imported by the integration tests that need them."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from google.cloud import firestore, pubsub_v1

from agenttrader import topology
from devtools.localstack.seed import seed_user
from devtools.simulator import AlpacaSimulator, Scenario

__all__ = ["Tenant", "doc", "drain_dead_letters", "pull", "seed_user", "sim_tenant", "wait_for"]

T = TypeVar("T")


@dataclass(frozen=True)
class Tenant:
    uid: str
    key_id: str
    secret_key: str


def sim_tenant(
    sim: AlpacaSimulator, db: firestore.Client, uid: str, scenario: Scenario, **seed: Any
) -> Tenant:
    """A simulator tenant whose keys are stored for ``uid``."""
    t = sim.add_tenant(scenario=scenario)
    seed_user(
        db,
        uid,
        keys={"key_id": t.key_id, "secret_key": t.secret_key, "base_url": sim.base_url},
        **seed,
    )
    return Tenant(uid, t.key_id, t.secret_key)


def wait_for(predicate: Callable[[], T], timeout: float = 60.0, interval: float = 0.25) -> T:
    """Poll until ``predicate`` returns something truthy; fail with its last value."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value:
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s (last value: {value!r})")
        time.sleep(interval)
        value = predicate()
    return value


def doc(db: firestore.Client, path: str) -> dict[str, Any] | None:
    snapshot = db.document(path).get()
    return snapshot.to_dict() if snapshot.exists else None


def pull(
    project: str,
    subscription: str,
    *,
    expect: int | None = None,
    timeout: float = 5.0,
    until_quiet: bool = False,
) -> list[Any]:
    """Pull and acknowledge messages of ``subscription`` until ``expect`` arrived, or (with
    ``until_quiet``) until a pull after the first messages finds nothing, or the time is up."""
    subscriber = pubsub_v1.SubscriberClient()
    path = subscriber.subscription_path(project, subscription)
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and (expect is None or len(got) < expect):
            response = subscriber.pull(
                request={"subscription": path, "max_messages": 100}, timeout=3
            )
            if not response.received_messages:
                if until_quiet and got:
                    break
                time.sleep(0.2)
                continue
            subscriber.acknowledge(
                request={
                    "subscription": path,
                    "ack_ids": [m.ack_id for m in response.received_messages],
                }
            )
            got.extend(m.message for m in response.received_messages)
    finally:
        subscriber.close()
    return got


def drain_dead_letters(project: str, expect: int, timeout: float = 60.0) -> list[Any]:
    """Pull (and ack) dead letters until ``expect`` arrived or the time is up."""
    return pull(project, topology.USER_SYNC_DEAD_LETTER_HOLD, expect=expect, timeout=timeout)
