"""The Firebase JS SDK end-to-end test (``tests/js/``), driven from pytest: this process serves
the callables and plays the pipeline's first sync; node is the web client."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from agenttrader.callable_server import CallablesServer
from agenttrader.emulators import load_firestore_rules
from tests.callable_fixtures import REGION, REPO_ROOT, CallableEnv, FirstSyncStandIn, entry_points

pytestmark = pytest.mark.integration

JS_TEST = REPO_ROOT / "tests" / "js" / "callables.test.mjs"
RULES = REPO_ROOT / "firestore.rules"
NODE_TIMEOUT_SECONDS = 120


def test_firebase_js_sdk_end_to_end(callable_env: CallableEnv) -> None:
    node = shutil.which("node")
    if node is None or not (REPO_ROOT / "node_modules" / "firebase").is_dir():
        pytest.fail("needs Node.js 20+ and `npm ci` (make setup) for the Firebase JS SDK")
    firestore_host = callable_env.env["FIRESTORE_EMULATOR_HOST"]
    rules_loaded = RULES.is_file()
    if rules_loaded:
        load_firestore_rules(firestore_host, callable_env.project, RULES.read_text())

    server = CallablesServer(entry_points(), project=callable_env.project, region=REGION)
    with server, FirstSyncStandIn(callable_env.db) as first_sync:
        env = {
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
    assert len(first_sync.synced) == 1  # only the user who wrote keys was synced
    assert callable_env.standin.requests, "the signal came from the Vertex AI stand-in"
