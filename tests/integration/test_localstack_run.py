"""``make run`` end to end: the demo tenants sync, Ctrl-C stops every process it started.
Plus the view's readers against the emulators: the tenant/pulse collector and the dead-letter
peek, which must count without consuming."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from google.cloud import firestore, pubsub_v1
from google.cloud.firestore_v1.base_query import FieldFilter

from agenttrader import paths, topology
from agenttrader.credentials import AlpacaKeys, LocalKek, Vault
from devtools.localstack import demo
from devtools.localstack.seed import seed_user, store_keys
from devtools.localstack.view import DeadLetterPeek, collect_state, render
from devtools.topology import apply_topology
from tests.pipeline_fixtures import doc, drain_dead_letters, wait_for

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
KEY_ID = "PKVIEWTEST0000000001"
SECRET = "viewtestsecret" * 3


def _process_table() -> dict[int, int]:
    """pid -> ppid of every live (non-zombie) process."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if fields[0] != "Z":
                table[int(entry.name)] = int(fields[1])
    return table


def _descendants(pid: int) -> set[int]:
    table, found, frontier = _process_table(), set(), {pid}
    while frontier:
        children = {child for child, parent in table.items() if parent in frontier}
        frontier = children - found
        found |= children
    return found


def _alive(pids: set[int]) -> set[int]:
    return pids & set(_process_table())


@pytest.mark.timeout(120)
def test_make_run_syncs_the_demo_tenants_and_ctrl_c_stops_everything() -> None:
    project = f"demo-r{uuid.uuid4().hex[:10]}"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devtools.localstack",
            "--no-view",
            "--tick-seconds",
            "5",
            "--trade-seconds",
            "2",
            "--project",
            project,
        ],
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(process.stdout or []), daemon=True)
    reader.start()
    children: set[int] = set()
    try:
        match = wait_for(lambda: re.search(r"logs in (\S+)/", "".join(output)), timeout=10)
        run_dir = REPO_ROOT / match.group(1)
        env_file = run_dir / demo.ENV_FILE
        wait_for(lambda: env_file.is_file() or process.poll() is not None, timeout=90)
        assert process.poll() is None, "".join(output)
        env = demo.read_env_file(env_file)
        assert env["GOOGLE_CLOUD_PROJECT"] == project
        os.environ.update(env)  # the autouse fixture restores the environment
        db = firestore.Client(project=project)

        def synced() -> bool:
            return all(
                doc(db, paths.snapshot_doc(uid)) for uid in ("demo-healthy-1", "demo-healthy-2")
            )

        wait_for(synced, timeout=40)
        error = wait_for(lambda: doc(db, paths.last_sync_error_doc("demo-bad-keys")), timeout=20)
        assert error["error_class"] == "AlpacaAuthError"
        assert doc(db, paths.alpaca_config_doc("demo-trading-off"))["configured"] is True  # type: ignore[index]
        # Every tenant's keys rest sealed; the run's local KEK opens them, for the leak check.
        vault = Vault(LocalKek(project))
        secrets = []
        for spec in demo.DEMO_SPECS:
            path = paths.alpaca_secret_doc(spec.uid)
            sealed = wait_for(
                lambda path=path: (d := doc(db, path)) and d.get("sealed"), timeout=10
            )
            opened = vault.open(doc(db, path), spec.uid, path)
            assert isinstance(opened, AlpacaKeys) and sealed
            secrets += [opened.key_id, opened.secret_key]
        assert len(secrets) == 2 * len(demo.DEMO_SPECS)
        wait_for(lambda: "| pulse " in "".join(output), timeout=15)  # a status line was printed
        # The demo trader's fill came through a stream gateway into the tenant's orders.
        fills = db.collection(paths.orders_collection("demo-healthy-1")).where(
            filter=FieldFilter("event", "==", "fill")
        )
        wait_for(lambda: list(fills.limit(1).stream()), timeout=30)
        # The two gateways share the buckets (who streams which tenant depends on the hash).
        shared = r"stream gateway {} streams \d+ tenants · buckets 32"
        wait_for(lambda: all(re.search(shared.format(n), "".join(output)) for n in (1, 2)), 20)
        children = _descendants(process.pid)
        # 2 emulators + 5 functions-framework processes + 2 stream gateways (+ Auth emulator)
        assert len(children) >= 9, children

        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=40) == 0
    finally:
        if process.poll() is None:  # the test failed: stop the run and whatever it started
            started = _descendants(process.pid)
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            for pid in _alive(started):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        reader.join(timeout=5)
        if process.stdout is not None:
            process.stdout.close()
    text = "".join(output)
    assert "Stopped everything." in text
    assert "demo-bad-keys" in text and "AlpacaAuthError" in text
    deadline = time.monotonic() + 5
    while _alive(children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(children), f"left behind: {_alive(children)}"
    assert not env_file.exists()
    logs = [path.read_text(errors="replace") for path in run_dir.iterdir() if path.is_file()]
    assert any("sync" in log for log in logs)
    for secret in secrets:
        assert secret not in text
        assert not any(secret in log for log in logs)
    shutil.rmtree(run_dir)  # kept when the test fails, for its logs


def test_collect_state_reads_tenants_and_pulses(emulator_env: dict[str, str], project: str) -> None:
    db = firestore.Client(project=project)
    now = datetime.now(UTC).replace(microsecond=0)
    seed_user(
        db,
        "t-ok",
        keys={"key_id": KEY_ID, "secret_key": SECRET, "base_url": "http://127.0.0.1:1"},
        extra_user_fields={demo.SCENARIO_FIELD: "healthy"},
    )
    db.document(paths.snapshot_doc("t-ok")).set(
        {"syncedAt": now, "equity": "123.45", "account": {"id": "a"}, "positions": []}
    )
    db.document(paths.sync_state_doc("t-ok")).set({"outcome": "success", "pulse_id": "p2"})
    seed_user(db, "t-bad", enabled=False, configured=False)
    db.document(paths.last_sync_error_doc("t-bad")).set(
        {"error": "401", "error_class": "AlpacaAuthError", "timestamp": now}
    )
    store_keys(db, "t-keys-only", key_id=KEY_ID, secret_key=SECRET, base_url="http://x")
    earlier = now - timedelta(minutes=1)
    db.document(paths.pulse_doc("p1")).set(
        {"pulse_id": "p1", "timestamp": earlier, "published_count": 2, "ineligible_count": 1}
    )
    db.document(paths.pulse_doc("p2")).set({"pulse_id": "p2", "timestamp": now})
    db.document(paths.LAST_PULSE_DOC).set(
        {
            "pulse_id": "p2",
            "timestamp": now,
            "published_count": 1,
            "success_count": 1,
            "error_count": 0,
            "skipped_count": 1,
            "complete": True,
        }
    )

    state = collect_state(db, project=project, started_at=now, now=now)

    assert state.problems == ()
    rows = {row.uid: row for row in state.tenants}
    assert sorted(rows) == ["t-bad", "t-keys-only", "t-ok"]
    assert state.tenants_total == 3
    ok = rows["t-ok"]
    assert (ok.scenario, ok.trading_enabled, ok.configured) == ("healthy", True, True)
    assert (ok.synced_at, ok.equity, ok.outcome, ok.error_class) == (
        now,
        "123.45",
        "success",
        None,
    )
    bad = rows["t-bad"]
    assert (bad.trading_enabled, bad.configured, bad.synced_at) == (False, False, None)
    assert (bad.error_class, bad.error_at) == ("AlpacaAuthError", now)
    assert rows["t-keys-only"].configured is None  # no users/{uid} yet: still listed
    assert state.last_pulse is not None
    assert (state.last_pulse.pulse_id, state.last_pulse.success, state.last_pulse.complete) == (
        "p2",
        1,
        True,
    )
    assert [(p.pulse_id, p.published, p.skipped) for p in state.pulse_history] == [("p1", 2, 1)]
    text = render(state)
    assert KEY_ID not in text and SECRET not in text


def test_dead_letter_peek_counts_without_consuming(
    emulator_env: dict[str, str], project: str
) -> None:
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    try:
        apply_topology(project, publisher, subscriber)
    finally:
        subscriber.close()
    topic = publisher.topic_path(project, topology.USER_SYNC_DEAD_LETTER)
    for uid in ("u1", "u2", "u3"):
        publisher.publish(topic, b"{}", uid=uid).result(timeout=30)

    peek = DeadLetterPeek(project, interval=0)
    capped = DeadLetterPeek(project, cap=2)
    try:
        assert peek.measure().count == 3
        again = peek.depth()
        assert again is not None and (again.count, again.capped) == (3, False)
        at_cap = capped.measure()
        assert (at_cap.count, at_cap.capped) == (2, True)
    finally:
        peek.close()
        capped.close()

    letters = drain_dead_letters(project, expect=3, timeout=15)
    assert sorted(m.attributes["uid"] for m in letters) == ["u1", "u2", "u3"]
