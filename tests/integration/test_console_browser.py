"""The admin console in real headless Chromium (Debian's ``chromium``, driven by Playwright for
Python), against ``make run``'s local stack and the real pipeline.

An administrator signs in on the Auth emulator, sees the pulse chart and the tenant list filled
by the pipeline, filters to the failing tenants, replays their dead letters from the page once
the cause is fixed and watches them sync (the snapshot says ``reason: replay``); a tenant who
signs in sees the "not an administrator" page and no data, and the callables refuse his token.
The alert conditions the page shows are those of ``agenttrader status --check``. Screenshots and
the page-load timings land in an artifacts directory the test prints.

Skipped, saying why, where Chromium or Playwright is not installed (``make setup`` installs
both where it can).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from google.cloud import firestore, pubsub_v1

from agenttrader import paths, topology
from devtools.auth_emulator import AuthEmulatorClient
from devtools.localstack import demo
from tests.pipeline_fixtures import doc, wait_for

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
"""Debian's chromium as root on a closed network (Playwright adds --headless and a fresh
profile directory of its own)."""
FAILING = "demo-bad-keys"
EXTRA_TICKS = 3


def _chromium() -> str:
    path = shutil.which("chromium") or (CHROMIUM if Path(CHROMIUM).exists() else None)
    if path is None:
        pytest.skip(
            "Debian's chromium is not installed (`make setup` installs it as root with apt-get;"
            " `make browser` alone), so the console's browser test cannot run here"
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("playwright (Python) is not installed: run `make setup`")
    return path


@pytest.fixture
def artifacts(capsys: pytest.CaptureFixture[str]) -> Iterator[Path]:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    directory = REPO_ROOT / ".local" / "artifacts" / f"console-{stamp}-{uuid.uuid4().hex[:6]}"
    directory.mkdir(parents=True)
    with capsys.disabled():
        print(f"\nconsole browser test artifacts: {directory}", flush=True)
    yield directory


@contextlib.contextmanager
def local_stack(project: str) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """``python -m devtools.localstack`` with a scheduler that ticks once (the test ticks)."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devtools.localstack",
            "--no-view",
            "--tick-seconds",
            "3600",
            "--project",
            project,
        ],
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(process.stdout or []), daemon=True)
    reader.start()
    try:
        yield process, output
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        reader.join(timeout=5)
        if process.stdout is not None:
            process.stdout.close()


def _tick(project: str) -> None:
    publisher = pubsub_v1.PublisherClient()
    body = json.dumps({"scheduled_at": datetime.now(UTC).isoformat()}).encode()
    publisher.publish(publisher.topic_path(project, topology.SYNC_TICK), body).result(timeout=30)
    publisher.stop()


def _status_check(env: dict[str, str]) -> tuple[int, set[str]]:
    """``agenttrader status --json --check``: its exit code and the alert kinds."""
    cli = subprocess.run(
        [str(Path(sys.executable).with_name("agenttrader")), "status", "--json", "--check"],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return cli.returncode, {alert["kind"] for alert in json.loads(cli.stdout)["alerts"]}


def _replay_until(page: Any, status: str, attempts: int = 3) -> None:
    """Click Replay until the result lists ``status``. Pub/Sub has no peek: a reader scanning
    the hold at the same moment (``make run``'s own view measures the depth every 5 s) holds
    its messages for that moment and a scan sees none; the page then says "nothing matched",
    and an operator clicks again, as this does."""
    from playwright.sync_api import expect

    result = page.locator("#dlq-result")
    for attempt in range(attempts):
        page.click("#dlq-replay")
        expect(result).not_to_contain_text("…", timeout=30_000)
        if status in result.inner_text() or attempt == attempts - 1:
            break
        assert "nothing matched" in result.inner_text(), result.inner_text()
    expect(result).to_contain_text(status)


def _page_alerts(page: Any) -> set[str]:
    kinds = page.locator("#alerts [data-alert]").evaluate_all("n => n.map(a => a.dataset.alert)")
    return set(kinds)


def _call(url: str, token: str, data: Any) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url,
        data=json.dumps({"data": data}).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.mark.timeout(240)
def test_admin_console_in_chromium(artifacts: Path) -> None:
    chromium = _chromium()
    from playwright.sync_api import expect, sync_playwright

    project = f"demo-c{uuid.uuid4().hex[:10]}"
    timings: dict[str, float] = {}
    started = time.monotonic()
    with local_stack(project) as (process, output):
        match = wait_for(
            lambda: (
                re.search(r"admin console: (http://\S+/)", "".join(output))
                or process.poll() is not None
            ),
            timeout=150,
        )
        assert process.poll() is None, "".join(output)
        console_url = match.group(1)
        email, password = re.search(r"sign in as (\S+) / (\S+) ", "".join(output)).groups()  # type: ignore[union-attr]
        run_dir = REPO_ROOT / re.search(r"logs in (\S+)/", "".join(output)).group(1)  # type: ignore[union-attr]
        env_file = run_dir / demo.ENV_FILE
        wait_for(lambda: env_file.is_file() or process.poll() is not None, timeout=90)
        env = demo.read_env_file(env_file)
        os.environ.update(env)  # the autouse fixture restores the environment
        timings["stack start (s)"] = round(time.monotonic() - started, 1)
        db = firestore.Client(project=project)

        # The real pipeline: first syncs, then a few pulses (the failing tenant dead-letters).
        wait_for(lambda: doc(db, paths.last_sync_error_doc(FAILING)), timeout=60)
        for _ in range(EXTRA_TICKS):
            time.sleep(1.5)
            _tick(project)
        pulses = db.collection(paths.PULSES_COLLECTION)
        wait_for(lambda: len(list(pulses.stream())) >= EXTRA_TICKS, timeout=60)

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                t0 = time.monotonic()
                page.goto(console_url)
                expect(page.locator("#sign-in")).to_be_visible(timeout=20_000)
                timings["page load to sign-in form (ms)"] = round((time.monotonic() - t0) * 1000)
                page.fill("#email", email)
                page.fill("#password", password)
                t0 = time.monotonic()
                page.click("#sign-in-form button[type=submit]")
                expect(page.locator("#console")).to_be_visible(timeout=20_000)
                chart = page.locator("#pulse-chart")
                wait_for(lambda: int(chart.get_attribute("data-pulses") or 0) >= EXTRA_TICKS, 30)
                timings["sign-in to pulse chart (ms)"] = round((time.monotonic() - t0) * 1000)
                expect(page.locator("#failing-table")).to_contain_text(FAILING)
                page.screenshot(path=artifacts / "1-overview.png", full_page=True)

                # The page's alerts are `agenttrader status --check`'s, once both read the same
                # pulses (the page polls every 5 s; a pulse may complete in between).
                def agree() -> bool:
                    code, kinds = _status_check(env)
                    assert code == (2 if kinds else 0)
                    try:
                        wait_for(lambda: _page_alerts(page) == kinds, timeout=12)
                    except AssertionError:
                        return False
                    return True

                wait_for(agree, timeout=60, interval=0)
                # Tenants: the list filled by the pipeline, then only the failing ones.
                page.click("nav button[data-tab=tenants]")
                t0 = time.monotonic()
                expect(page.locator("#tenant-table tbody tr[data-uid]").first).to_be_visible()
                timings["tenants tab (ms)"] = round((time.monotonic() - t0) * 1000)
                expect(page.locator("#tenant-table")).to_contain_text("demo-healthy-1")
                t0 = time.monotonic()
                page.select_option("#tenant-filter", "failing")
                expect(page.locator("#tenant-table")).to_have_attribute("data-filter", "failing")
                row = page.locator(f"#tenant-table tr[data-uid='{FAILING}']")
                expect(row).to_be_visible()
                timings["failing filter (ms)"] = round((time.monotonic() - t0) * 1000)
                expect(row.locator("[data-state]")).to_have_attribute("data-state", "failing")
                healthy = page.locator("#tenant-table tr[data-uid='demo-healthy-1']")
                expect(healthy).to_have_count(0)
                row.click()
                expect(page.locator("#tenant-detail")).to_contain_text("Audit trail")
                expect(page.locator("#audit-table")).to_contain_text("keys_created")
                page.screenshot(path=artifacts / "2-failing-tenants.png", full_page=True)

                # The cause is fixed (new keys, say): the simulator accepts them from now on.
                # (The stored keys are sealed: the simulator's admin API names the account.)
                simulator = env[demo.SIMULATOR_URL_VAR]
                with urllib.request.urlopen(f"{simulator}/_sim/tenants", timeout=10) as listing:
                    accounts = json.load(listing)
                (key_id,) = [a["key_id"] for a in accounts if a["scenario"]["kind"] == "bad_keys"]
                fixed = urllib.request.Request(
                    f"{simulator}/_sim/tenants/{key_id}/scenario",
                    data=json.dumps({"kind": "normal"}).encode(),
                    method="PUT",
                    headers={"Content-Type": "application/json"},
                )
                urllib.request.urlopen(fixed, timeout=10).read()

                # Dead letters: grouped by class; a dry run, then the replay, from the page.
                page.click("nav button[data-tab=dead-letters]")
                t0 = time.monotonic()
                group = page.locator("#dlq-groups tr[data-error-class='AlpacaAuthError']")
                expect(group).to_be_visible(timeout=20_000)
                timings["dead letters tab (ms)"] = round((time.monotonic() - t0) * 1000)
                page.fill("#dlq-uid", FAILING)
                _replay_until(page, "would_replay")
                page.uncheck("#dlq-dry")
                page.fill("#dlq-rate", "20")
                t0 = time.monotonic()
                _replay_until(page, "replayed")
                timings["replay from the page (ms)"] = round((time.monotonic() - t0) * 1000)
                page.screenshot(path=artifacts / "3-replayed.png", full_page=True)

                # ... and watch them sync: no longer failing, the snapshot comes from a replay.
                page.click("nav button[data-tab=tenants]")
                t0 = time.monotonic()
                expect(row).to_have_count(0, timeout=30_000)
                timings["tenants refreshed without it after the replay (ms)"] = round(
                    (time.monotonic() - t0) * 1000
                )
                # Its keys were refused from the start and it was polled no more: its first
                # snapshot is the replay's — or, once that proved the keys and put the tenant
                # back on the roster, the reconciliation of the stream a gateway opened.
                snapshot = doc(db, paths.snapshot_doc(FAILING))
                assert snapshot is not None and snapshot["reason"] in ("replay", "reconcile")
                assert doc(db, paths.alpaca_config_doc(FAILING))["keysState"] == "proven"
                page.select_option("#tenant-filter", "all")
                expect(
                    page.locator(f"#tenant-table tr[data-uid='{FAILING}'] [data-state]")
                ).to_have_attribute("data-state", "healthy", timeout=20_000)
                page.screenshot(path=artifacts / "4-tenants-after-replay.png", full_page=True)
                page.click("nav button[data-tab=overview]")
                expect(page.locator("#alerts")).to_be_visible()
                page.screenshot(path=artifacts / "console.png")
                footer = page.inner_text("#timings")

                # A tenant signs in: the "not an administrator" page, no data, calls refused.
                auth = AuthEmulatorClient(env["FIREBASE_AUTH_EMULATOR_HOST"], project)
                tenant = auth.sign_up(f"tenant-{uuid.uuid4().hex[:6]}@example.com")
                other = browser.new_page(viewport={"width": 1200, "height": 700})
                other.goto(console_url)
                other.fill("#email", tenant.email)
                other.fill("#password", tenant.password)
                other.click("#sign-in-form button[type=submit]")
                expect(other.locator("#not-admin")).to_be_visible(timeout=20_000)
                expect(other.locator("#console")).to_be_hidden()
                body = other.inner_text("body")
                assert "demo-healthy-1" not in body and FAILING not in body
                other.screenshot(path=artifacts / "5-not-an-administrator.png")
                with urllib.request.urlopen(f"{console_url}console-config.json") as answer:
                    callables = "http://" + json.loads(answer.read())["emulators"]["functions"]
                for name in ("admin_status", "admin_tenants", "admin_dead_letters"):
                    url = f"{callables}/{project}/us-central1/{name}"
                    code, answer = _call(url, tenant.id_token, {})
                    assert (code, answer["error"]["status"]) == (403, "PERMISSION_DENIED"), name
            finally:
                browser.close()
    timings["whole test (s)"] = round(time.monotonic() - started, 1)
    (artifacts / "timings.json").write_text(json.dumps({**timings, "page calls": footer}, indent=2))
    print(f"console page timings: {json.dumps(timings)}; page calls: {footer}")
