"""The Firebase JS SDK end-to-end test (``tests/js/``), driven from pytest: this process serves
the callables and runs the real pipeline (Eventarc bridge → ``on_alpaca_secret_written`` →
``user-sync`` → push bridge → ``sync_user`` → the Alpaca simulator); node is the web client.

Meanwhile a listener on every ``secrets`` document records each write with Firestore's own
update time, so the test knows how long the keys the client wrote rested in plaintext before
the trigger sealed them; afterwards every document of the database is scanned for the key id,
the secret and the OAuth token (each in any case), and none may hold one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from datetime import datetime
from typing import Any

import pytest

from agenttrader import paths
from agenttrader.deps import set_deps
from devtools.callable_server import CallablesServer
from devtools.emulators import load_firestore_rules
from devtools.localstack.stack import LocalStack
from devtools.simulator import AlpacaSimulator
from tests.callable_fixtures import REGION, REPO_ROOT, CallableEnv, entry_points
from tests.database_scan import every_document, holding

pytestmark = pytest.mark.integration

JS_TEST = REPO_ROOT / "tests" / "js" / "callables.test.mjs"
RULES = REPO_ROOT / "firestore.rules"
NODE_TIMEOUT_SECONDS = 120
REDIRECT_URI = "http://localhost:5173/alpaca/callback"
SEALED_WITHIN_SECONDS = 2.0


class SecretsWrites:
    """Every write of a ``secrets`` document, as a Firestore listener sees it."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, datetime, bool]] = []
        """(path, update time, sealed?) in the order seen."""
        self._lock = threading.Lock()

    def __call__(self, snapshots: list[Any], changes: list[Any], read_time: Any) -> None:
        with self._lock:
            for change in changes:
                document = change.document
                if document.exists:
                    sealed = (document.to_dict() or {}).get("sealed") is True
                    self.seen.append((document.reference.path, document.update_time, sealed))

    def plaintext_rested(self, path: str) -> float:
        """Seconds between the plaintext write of ``path`` and its sealed rewrite (server
        update times)."""
        with self._lock:
            writes = [(at, sealed) for p, at, sealed in self.seen if p == path]
        written = next(at for at, sealed in writes if not sealed)
        sealed_at = next(at for at, sealed in writes if sealed and at > written)
        return (sealed_at - written).total_seconds()


def test_firebase_js_sdk_end_to_end(
    callable_env: CallableEnv, simulator: AlpacaSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = shutil.which("node")
    if node is None or not (REPO_ROOT / "node_modules" / "firebase").is_dir():
        pytest.fail("needs Node.js 20+ and `npm ci` (make setup) for the Firebase JS SDK")
    firestore_host = callable_env.env["FIRESTORE_EMULATOR_HOST"]
    rules_loaded = RULES.is_file()
    if rules_loaded:
        load_firestore_rules(firestore_host, callable_env.project, RULES.read_text())

    tenant = simulator.add_tenant()
    oauth_tenant = simulator.add_tenant()
    app = simulator.add_oauth_app([REDIRECT_URI])
    oauth_env = {
        "ALPACA_ALLOWED_BASE_URLS": simulator.base_url,
        "ALPACA_OAUTH_CLIENT_ID": app.client_id,
        "ALPACA_OAUTH_CLIENT_SECRET": app.client_secret,
        "ALPACA_OAUTH_BASE_URL": simulator.base_url,
    }
    for name, value in oauth_env.items():
        monkeypatch.setenv(name, value)
    set_deps(None)  # the callables' container, from this environment
    stack_env = {**callable_env.env, **oauth_env}
    db = callable_env.db
    writes = SecretsWrites()
    watch = db.collection_group("secrets").on_snapshot(writes)
    server = CallablesServer(entry_points(), project=callable_env.project, region=REGION)
    try:
        with server, LocalStack(callable_env.project, stack_env) as stack:
            env = {
                "AGENTTRADER_ALPACA_KEY_ID": tenant.key_id,
                "AGENTTRADER_ALPACA_SECRET_KEY": tenant.secret_key,
                "AGENTTRADER_ALPACA_BASE_URL": simulator.base_url,
                "AGENTTRADER_OAUTH_CLIENT_ID": app.client_id,
                "AGENTTRADER_OAUTH_REDIRECT_URI": REDIRECT_URI,
                "AGENTTRADER_OAUTH_TENANT": oauth_tenant.key_id,
                **os.environ,
                "AGENTTRADER_PROJECT": callable_env.project,
                "AGENTTRADER_REGION": REGION,
                "AGENTTRADER_CALLABLES_HOST": server.host_port,
                "AGENTTRADER_RULES_LOADED": "1" if rules_loaded else "0",
                "FIREBASE_AUTH_EMULATOR_HOST": callable_env.env["FIREBASE_AUTH_EMULATOR_HOST"],
                "FIRESTORE_EMULATOR_HOST": firestore_host,
            }
            result = subprocess.run(
                [node, "--test", "--test-reporter=spec", str(JS_TEST)],
                cwd=REPO_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=NODE_TIMEOUT_SECONDS,
                check=False,
            )
    finally:
        watch.unsubscribe()
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    assert result.returncode == 0, f"node --test failed:\n{result.stdout}\n{result.stderr}"
    assert stack.push_bridge is not None
    # Two first syncs: alice's keys and bob's OAuth token; nothing else wrote valid credentials.
    assert stack.push_bridge.stats.acked == 2
    assert simulator.requests_for(tenant.key_id) >= 2  # the worker called Alpaca with her keys
    assert simulator.requests_for(oauth_tenant.key_id) >= 2  # and with his token
    synced = [
        s.reference.path
        for s in db.collection_group("data").stream()
        if (s.to_dict() or {}).get("reason") == "first_sync"
    ]
    assert len(synced) == 2 and all(path.startswith(paths.USERS + "/") for path in synced)
    assert callable_env.standin.requests, "the signal came from the Vertex AI stand-in"

    # The keys rested in plaintext for less than 2 s, and no document holds any credential.
    [alice_keys] = {p for p, _, sealed in writes.seen if not sealed}
    rested = writes.plaintext_rested(alice_keys)
    print(f"\nkeys written → sealed in {rested * 1000:.0f} ms (Firestore update times)")
    assert 0 < rested < SEALED_WITHIN_SECONDS
    [grant] = simulator.oauth_grants()
    documents = list(every_document(db))
    assert len(documents) > 20
    credentials = (tenant.key_id, tenant.secret_key, grant.token, app.client_secret)
    assert holding(documents, credentials) == []
    sealed = [data for path, data in documents if path.endswith("/secrets/alpaca")]
    assert len(sealed) == 1 and sealed[0]["sealed"] is True  # alice's; bob disconnected
