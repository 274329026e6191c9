"""Secret hygiene, proven: run the main flows — keys written by clients (valid, refused,
rotated, pasted into a base URL) and an Alpaca OAuth connection through ``connect_alpaca``,
its token later revoked — while capturing every log line, every Pub/Sub message (dead letters
included), every Firestore document of the whole database (``secrets/`` included: sealed, it
holds no key) and every HTTP response of the functions, and fail if any key id, secret, OAuth
token, authorization code or the app's client secret shows up anywhere, in any case (a key
pasted into a base URL's host comes back lower-cased if anything echoes the host)."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from google.cloud import firestore, pubsub_v1

from agenttrader import paths, topology
from agenttrader.deps import set_deps
from agenttrader.messages import Reason, SyncRequest
from devtools.localstack.stack import LocalStack
from devtools.simulator import AlpacaSimulator, Scenario
from devtools.topology import apply_topology
from tests.callable_fixtures import REPO_ROOT, FakeTokens, call, functions_framework_client
from tests.database_scan import every_document
from tests.log_capture import json_log_lines
from tests.pipeline_fixtures import doc, pull, seed_user, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    with json_log_lines() as lines:  # libraries' debug lines too: urllib3, grpc, werkzeug
        yield lines


TOKEN_ENDPOINT = "/oauth/token"
"""Alpaca's answer to the code exchange: the one response that must carry a token."""


@pytest.fixture
def captured_responses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every HTTP response body and header set any `requests` caller in this process got,
    but Alpaca's token endpoint's."""
    seen: list[str] = []
    original = requests.Session.send

    def send(self: requests.Session, request: requests.PreparedRequest, **kwargs: Any) -> Any:
        response = original(self, request, **kwargs)
        if not str(request.url).endswith(TOKEN_ENDPOINT):
            seen.append(f"{response.status_code} {dict(response.headers)} {response.text}")
        return response

    monkeypatch.setattr(requests.Session, "send", send)
    return seen


REDIRECT = "https://app.example.com/alpaca/callback"


def test_no_credential_is_stored_logged_published_or_answered(
    emulator_env: dict[str, str],
    project: str,
    monkeypatch: pytest.MonkeyPatch,
    *,
    captured_logs: io.StringIO,
    captured_responses: list[str],
    fake_tokens: FakeTokens,
) -> None:
    with AlpacaSimulator() as sim:
        app = sim.add_oauth_app([REDIRECT])
        env = {
            **emulator_env,
            "ALPACA_ALLOWED_BASE_URLS": sim.base_url,
            "ALPACA_TIMEOUT_SECONDS": "1",
            "PULSE_ROLLUP_DELAY_SECONDS": "0.3",
            "ALPACA_OAUTH_CLIENT_ID": app.client_id,
            "ALPACA_OAUTH_CLIENT_SECRET": app.client_secret,
            "ALPACA_OAUTH_BASE_URL": sim.base_url,
        }
        set_deps(None)  # the callables' container, from this environment
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        db = firestore.Client(project=project)
        publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
        apply_topology(project, publisher, subscriber, retry_override=topology.RetryPolicy(0, 1))
        for topic in topology.TOPICS:  # taps: a copy of every message on every topic
            subscriber.create_subscription(
                name=subscriber.subscription_path(project, f"tap-{topic}"),
                topic=publisher.topic_path(project, topic),
            )
        subscriber.close()
        tenants = {
            "good": sim.add_tenant(scenario=Scenario(kind="normal")),
            "bad": sim.add_tenant(scenario=Scenario(kind="bad_keys")),
            "flaky": sim.add_tenant(
                scenario=Scenario(kind="fail_then_ok", fail_count=2, fail_status=503)
            ),
            "down": sim.add_tenant(scenario=Scenario(kind="server_error", status=500)),
        }
        for uid in tenants:
            seed_user(db, uid, configured=False, enabled=True)
        seed_user(db, "evil", configured=False)
        good = tenants["good"]
        pasted_hosts = {  # a key pasted into the host, as typed, upper-cased, mixed with the id
            "host-secret": f"https://{good.secret_key}.evil.example",
            "host-upper": f"https://{good.secret_key.upper()}.evil.example/v2",
            "host-key-id": f"https://{good.key_id}.{good.secret_key.lower()}.example",
        }
        for uid in pasted_hosts:
            seed_user(db, uid, configured=False, enabled=True)
        seed_user(db, "oauth", configured=False, enabled=True)
        oauth_account = sim.add_tenant(scenario=Scenario(kind="normal"))
        code = sim.authorize(app, REDIRECT, tenant=oauth_account.key_id)
        # An Alpaca OAuth connection: the code exchanged, the token sealed, its first sync
        # published (synced once the stack runs).
        with functions_framework_client("connect_alpaca", REPO_ROOT / "main.py") as client:
            connect = {"code": code, "redirect_uri": REDIRECT, "environment": "paper"}
            connect["base_url"] = sim.base_url
            status, body = call(client, "/", connect, token=fake_tokens.token_for("oauth"))
            assert status == 200, body
            captured_responses.append(json.dumps(body))
        with LocalStack(project, env) as stack:
            wait_for(lambda: doc(db, paths.snapshot_doc("oauth")), timeout=30)
            # Key writes from the client side: each fires the trigger and a first sync.
            for uid, tenant in tenants.items():
                db.document(paths.alpaca_secret_doc(uid)).set(
                    {
                        "key_id": tenant.key_id,
                        "secret_key": tenant.secret_key,
                        "base_url": sim.base_url,
                    }
                )
            # A key pasted into a disallowed base URL must not leak through the error either.
            db.document(paths.alpaca_secret_doc("evil")).set(
                {
                    "key_id": tenants["good"].key_id,
                    "secret_key": tenants["good"].secret_key,
                    "base_url": f"https://{tenants['good'].key_id}:{tenants['good'].secret_key}@evil.example",
                }
            )
            wait_for(lambda: doc(db, paths.snapshot_doc("good")), timeout=30)
            wait_for(lambda: doc(db, paths.snapshot_doc("flaky")), timeout=30)
            wait_for(
                lambda: (e := doc(db, paths.last_sync_error_doc("bad"))) and e["final"], timeout=30
            )
            wait_for(
                lambda: (e := doc(db, paths.last_sync_error_doc("down"))) and e["final"], timeout=60
            )
            wait_for(lambda: doc(db, paths.last_sync_error_doc("evil")), timeout=30)
            # The trigger refuses the pasted hosts (and deletes them: no plaintext rests); a sync
            # requested anyway finds no keys. Neither echoes the host.
            for uid, url in pasted_hosts.items():
                db.document(paths.alpaca_secret_doc(uid)).set(
                    {"key_id": good.key_id, "secret_key": good.secret_key, "base_url": url}
                )
            for uid in pasted_hosts:
                wait_for(lambda uid=uid: doc(db, paths.last_sync_error_doc(uid)), timeout=30)
                request = SyncRequest(uid, Reason.MANUAL, datetime.now(UTC))
                publisher.publish(
                    publisher.topic_path(project, topology.USER_SYNC),
                    request.to_bytes(),
                    **request.attributes(),
                ).result(timeout=30)
            for uid in pasted_hosts:
                wait_for(
                    lambda uid=uid: (
                        (e := doc(db, paths.last_sync_error_doc(uid))) and e.get("message_id")
                    ),
                    timeout=30,
                )
            # The OAuth token revoked at Alpaca: its next sync is refused (401) and recorded.
            sim.revoke_oauth_tokens(tenant=oauth_account.key_id)
            # A scheduled pulse on top, and a key rotation.
            assert stack.ticker is not None
            stack.ticker.tick()
            wait_for(lambda: (d := doc(db, paths.LAST_PULSE_DOC)) and d.get("complete"), timeout=60)
            rotated = sim.add_tenant(scenario=Scenario(kind="normal"))
            db.document(paths.alpaca_secret_doc("good")).set(
                {
                    "key_id": rotated.key_id,
                    "secret_key": rotated.secret_key,
                    "base_url": sim.base_url,
                }
            )
            wait_for(lambda: len(list(db.collection(paths.audit_collection("good")).stream())) == 2)
            time.sleep(1)

        wait_for(
            lambda: (
                (e := doc(db, paths.last_sync_error_doc("oauth")))
                and e["error_class"] == "AlpacaAuthError"
            ),
            timeout=30,
        )
        [grant] = sim.oauth_grants()
        oauth_values = (grant.token, code, app.client_secret)
        secrets = [
            form
            for value in (
                *(v for t in [*tenants.values(), rotated] for v in (t.key_id, t.secret_key)),
                *oauth_values,
            )
            for form in (value, value.lower(), value.upper())
        ]
        messages = [
            m
            for topic in topology.TOPICS
            for m in pull(project, f"tap-{topic}", timeout=30, until_quiet=True)
        ]
        assert any(m.attributes.get("error_class") for m in messages), "no dead letter captured"
        refused = [m for m in messages if m.attributes.get("uid") in pasted_hosts]
        assert {m.attributes["uid"] for m in refused if m.attributes.get("error")} == set(
            pasted_hosts
        ), "the worker did not dead-letter every pasted host"
        for uid in pasted_hosts:
            error = doc(db, paths.last_sync_error_doc(uid)) or {}
            assert error["error_class"] == "MissingKeys"  # refused, so deleted by the trigger
            assert doc(db, paths.alpaca_secret_doc(uid)) is None
            [entry] = [e.to_dict() for e in db.collection(paths.audit_collection(uid)).stream()]
            assert entry["details"] == {
                "error_class": "DisallowedBaseUrl",
                "base_url_allowed": False,
            }
        assert "evil.example" not in captured_logs.getvalue()
        documents = list(every_document(db))
        assert any(p.endswith("/audit/" + p.rsplit("/", 1)[-1]) for p, _ in documents)
        sealed = [d for p, d in documents if p.endswith("/secrets/alpaca")]
        assert len(sealed) == 5 and all(d["sealed"] is True for d in sealed)
        assert {d["auth"] for d in sealed} == {"keys", "oauth"}
        places = {
            "log lines": captured_logs.getvalue(),
            "Pub/Sub messages": repr([(m.data, dict(m.attributes)) for m in messages]),
            "Firestore documents": json.dumps(documents, default=str),
            "HTTP responses": "\n".join(captured_responses),
        }
        assert captured_logs.getvalue().count("\n") > 20, "the flows logged nothing?"
        for where, text in places.items():
            for secret in secrets:
                assert secret not in text, f"a key value leaked into {where}"
