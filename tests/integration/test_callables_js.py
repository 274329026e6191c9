"""The Firebase JS SDK end-to-end test (``tests/js/``), driven from pytest: this process serves
the callables and runs the real pipeline (Eventarc bridge → ``on_alpaca_secret_written`` →
``user-sync`` → push bridge → ``sync_user`` → the Alpaca simulator); node is the web client."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from agenttrader import paths
from devtools.callable_server import CallablesServer
from devtools.emulators import load_firestore_rules
from devtools.localstack.stack import LocalStack
from devtools.simulator import AlpacaSimulator
from tests.callable_fixtures import REGION, REPO_ROOT, CallableEnv, entry_points

pytestmark = pytest.mark.integration

JS_TEST = REPO_ROOT / "tests" / "js" / "callables.test.mjs"
RULES = REPO_ROOT / "firestore.rules"
NODE_TIMEOUT_SECONDS = 120


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
    monkeypatch.setenv("ALPACA_ALLOWED_BASE_URLS", simulator.base_url)
    stack_env = {**callable_env.env, "ALPACA_ALLOWED_BASE_URLS": simulator.base_url}
    server = CallablesServer(entry_points(), project=callable_env.project, region=REGION)
    with server, LocalStack(callable_env.project, stack_env) as stack:
        env = {
            "AGENTTRADER_ALPACA_KEY_ID": tenant.key_id,
            "AGENTTRADER_ALPACA_SECRET_KEY": tenant.secret_key,
            "AGENTTRADER_ALPACA_BASE_URL": simulator.base_url,
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
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    assert result.returncode == 0, f"node --test failed:\n{result.stdout}\n{result.stderr}"
    assert stack.push_bridge is not None
    assert stack.push_bridge.stats.acked == 1  # one first sync: only alice wrote valid keys
    assert simulator.requests_for(tenant.key_id) >= 2  # the worker called Alpaca with her keys
    synced = [
        s.reference.path
        for s in callable_env.db.collection_group("data").stream()
        if (s.to_dict() or {}).get("reason") == "first_sync"
    ]
    assert len(synced) == 1 and synced[0].startswith(paths.USERS + "/")
    assert callable_env.standin.requests, "the signal came from the Vertex AI stand-in"
