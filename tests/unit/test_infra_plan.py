"""The deployment plan: every resource with the right flags, derived from the topology and the
settings, deterministic, and computed without running anything."""

from __future__ import annotations

import dataclasses
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agenttrader import topology
from agenttrader.settings import Settings, SyncSchedule
from infra import iam, resources
from infra.__main__ import main as infra_main
from infra.model import FINGERPRINT_KEY, Argv, Fingerprinted, HasBinding, Plan, Step
from infra.plan import DeployConfig, PlanError, build_plan
from infra.resources import Trigger

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "acme-trading"
REGION = "europe-west1"
INVOKER = f"at-push-invoker@{PROJECT}.iam.gserviceaccount.com"
PUBSUB_AGENT = "serviceAccount:service-${PROJECT_NUMBER}@gcp-sa-pubsub.iam.gserviceaccount.com"

DESIGN_ENTRY_POINTS = {
    "publish_user_syncs": "cloudevent",
    "sync_user": "cloudevent",
    "on_alpaca_secret_written": "cloudevent",
    "onboard_user": "http",
    "delete_account": "http",
    "connect_alpaca": "http",
    "disconnect_alpaca": "http",
    "generate_trading_signal": "http",
    "migrate_legacy_data": "http",
}
"""docs/DESIGN.md's entry point table (main.py may export more: each must be deployed too)."""


def make_plan(**overrides: object) -> Plan:
    config = DeployConfig(project=PROJECT, region=REGION, source_digest="feedc0de", **overrides)  # type: ignore[arg-type]
    return build_plan(config)


def flags(argv: Argv) -> dict[str, list[str]]:
    """``--name=value`` / ``--name value`` / ``--switch`` of a command, by name."""
    out: dict[str, list[str]] = {}
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("--"):
            name, sep, value = arg[2:].partition("=")
            separate = not sep and i + 1 < len(args) and not args[i + 1].startswith("--")
            if separate and argv[0].endswith("firebase"):  # only firebase-tools does this
                value = args[i + 1]
                i += 1
            out.setdefault(name, []).append(value)
        i += 1
    return out


def one(argv: Argv, name: str) -> str:
    values = flags(argv)[name]
    assert len(values) == 1, (name, values)
    return values[0]


def binding_steps(plan: Plan) -> list[Step]:
    return [s for s in plan.steps if s.kind == "iam"]


def bound(plan: Plan, role: str, member: str, target: tuple[str, ...]) -> bool:
    """Whether the plan binds ``role`` to ``member`` with a command starting ``target``."""
    for step in binding_steps(plan):
        assert isinstance(step.probe, HasBinding)
        if (
            step.probe.role == role
            and step.probe.member == member
            and step.create[: len(target)] == target
        ):
            assert f"--member={member}" in step.create and f"--role={role}" in step.create
            return True
    return False


# --- Pub/Sub -------------------------------------------------------------------------------


def test_every_topic_of_the_topology_is_created() -> None:
    plan = make_plan()
    for topic in topology.TOPICS:
        step = plan.step("topic", topic)
        assert step.create[:5] == ("gcloud", "pubsub", "topics", "create", topic)
        assert f"--project={PROJECT}" in step.create
        assert step.check is not None and "describe" in step.check
    assert set(topology.TOPICS) == {"sync-tick", "user-sync", "user-sync-dead-letter"}


def test_worker_subscription_pushes_with_oidc_retry_and_dead_letter_policies() -> None:
    plan = make_plan()
    sub = topology.subscription(topology.USER_SYNC_WORKER)
    step = plan.step("subscription", topology.USER_SYNC_WORKER)
    create = step.create
    assert create[:5] == ("gcloud", "pubsub", "subscriptions", "create", "user-sync-worker")
    assert one(create, "topic") == topology.USER_SYNC
    assert one(create, "push-endpoint") == "${SYNC_USER_URL}"
    assert one(create, "push-auth-token-audience") == "${SYNC_USER_URL}"
    assert one(create, "push-auth-service-account") == INVOKER
    assert one(create, "ack-deadline") == str(sub.ack_deadline_seconds)
    assert sub.retry is not None and sub.dead_letter is not None
    assert one(create, "min-retry-delay") == f"{sub.retry.minimum_backoff_seconds}s"
    assert one(create, "max-retry-delay") == f"{sub.retry.maximum_backoff_seconds}s"
    assert one(create, "dead-letter-topic") == topology.USER_SYNC_DEAD_LETTER
    assert one(create, "max-delivery-attempts") == str(sub.dead_letter.max_delivery_attempts)
    assert one(create, "message-retention-duration") == f"{sub.message_retention_seconds}s"
    assert one(create, "expiration-period") == "never"
    # The update converges an existing subscription to the same policies.
    assert step.update is not None
    for name in (
        "push-endpoint",
        "push-auth-token-audience",
        "dead-letter-topic",
        "max-delivery-attempts",
        "min-retry-delay",
        "max-retry-delay",
        "ack-deadline",
    ):
        assert flags(step.update)[name] == flags(create)[name]
    assert isinstance(step.probe, Fingerprinted)
    assert one(create, "labels") == f"{FINGERPRINT_KEY}={step.probe.value}"
    # The URL is read after the deploy, from the deployed function.
    url = plan.variable("SYNC_USER_URL")
    assert url.command[:4] == ("gcloud", "functions", "describe", "sync_user")
    assert "--format=value(serviceConfig.uri)" in url.command
    assert plan.steps.index(plan.step("function", "sync_user")) < plan.steps.index(step)


def test_worker_ack_deadline_fits_the_worker_timeout() -> None:
    plan = make_plan()
    deploy = plan.step("function", "sync_user").create
    ack = int(one(plan.step("subscription", "user-sync-worker").create, "ack-deadline"))
    assert int(one(deploy, "timeout").removesuffix("s")) <= ack
    settings = Settings(project=PROJECT)
    worst = resources.WORKER_ALPACA_REQUESTS * 2 * settings.alpaca_timeout_seconds
    assert worst + resources.WORKER_FIRESTORE_ALLOWANCE_SECONDS <= ack


def test_a_worker_slower_than_its_ack_deadline_is_refused() -> None:
    with pytest.raises(PlanError, match="ack deadline"):
        make_plan(env=(("ALPACA_TIMEOUT_SECONDS", "30"),))


def test_dead_letter_hold_is_a_pull_subscription_keeping_seven_days() -> None:
    plan = make_plan()
    step = plan.step("subscription", topology.USER_SYNC_DEAD_LETTER_HOLD)
    assert one(step.create, "topic") == topology.USER_SYNC_DEAD_LETTER
    assert "push-endpoint" not in flags(step.create)
    assert one(step.create, "message-retention-duration") == f"{7 * 86_400}s"
    assert one(step.create, "expiration-period") == "never"
    worker = plan.step("subscription", topology.USER_SYNC_WORKER)
    # Dead letters have somewhere to go before anything can be dead-lettered.
    assert plan.steps.index(step) < plan.steps.index(worker)


def test_tick_subscription_pushes_to_publish_user_syncs_as_the_topology_says() -> None:
    plan = make_plan()
    sub = topology.subscription(topology.SYNC_TICK_PUBLISHER)
    step = plan.step("subscription", topology.SYNC_TICK_PUBLISHER)
    assert one(step.create, "topic") == topology.SYNC_TICK
    assert one(step.create, "push-endpoint") == "${PUBLISH_USER_SYNCS_URL}"
    assert one(step.create, "push-auth-token-audience") == "${PUBLISH_USER_SYNCS_URL}"
    assert one(step.create, "message-retention-duration") == f"{sub.message_retention_seconds}s"
    assert "dead-letter-topic" not in flags(step.create)
    deploy = plan.step("function", "publish_user_syncs").create
    assert "--trigger-http" in deploy and "--no-allow-unauthenticated" in deploy
    assert one(deploy, "timeout") == f"{sub.ack_deadline_seconds}s"


def test_pubsub_service_agent_can_dead_letter_and_mint_push_tokens() -> None:
    plan = make_plan()
    dl_topic = ("gcloud", "pubsub", "topics", "add-iam-policy-binding", "user-sync-dead-letter")
    worker = ("gcloud", "pubsub", "subscriptions", "add-iam-policy-binding", "user-sync-worker")
    sa = ("gcloud", "iam", "service-accounts", "add-iam-policy-binding", INVOKER)
    assert bound(plan, "roles/pubsub.publisher", PUBSUB_AGENT, dl_topic)
    assert bound(plan, "roles/pubsub.subscriber", PUBSUB_AGENT, worker)
    assert bound(plan, "roles/iam.serviceAccountTokenCreator", PUBSUB_AGENT, sa)
    number = plan.variable("PROJECT_NUMBER")
    assert number.command == (
        "gcloud",
        "projects",
        "describe",
        PROJECT,
        "--format=value(projectNumber)",
    )


def test_schedule_publishes_an_empty_tick_every_minute_by_default() -> None:
    step = make_plan().step("scheduler-job", resources.SCHEDULER_JOB)
    create = step.create
    assert create[:5] == ("gcloud", "scheduler", "jobs", "create", "pubsub")
    assert one(create, "schedule") == "* * * * *"
    assert one(create, "time-zone") == "Etc/UTC"
    assert one(create, "topic") == topology.SYNC_TICK
    assert one(create, "message-body") == "{}"
    assert one(create, "location") == REGION
    assert step.update is not None and step.update[:5] == (
        "gcloud",
        "scheduler",
        "jobs",
        "update",
        "pubsub",
    )


def test_schedule_is_configurable_and_validated() -> None:
    plan = make_plan(schedule="*/5 * * * *")
    step = plan.step("scheduler-job", resources.SCHEDULER_JOB)
    assert one(step.create, "schedule") == "*/5 * * * *"
    assert step.probe != make_plan().step("scheduler-job", resources.SCHEDULER_JOB).probe
    with pytest.raises(PlanError, match="cron"):
        make_plan(schedule="every minute")


def test_scheduler_job_is_the_last_step() -> None:
    assert make_plan().steps[-1].kind == "scheduler-job"


# --- functions -----------------------------------------------------------------------------


def deploy_of(plan: Plan, name: str) -> Argv:
    return plan.step("function", name).create


def test_every_function_deploys_python311_from_the_root_with_its_entry_point() -> None:
    plan = make_plan()
    assert set(DESIGN_ENTRY_POINTS) <= {f.name for f in resources.FUNCTIONS}
    for fn in resources.FUNCTIONS:
        deploy = deploy_of(plan, fn.name)
        assert deploy[:5] == ("gcloud", "functions", "deploy", fn.name, "--gen2")
        assert one(deploy, "runtime") == "python311"
        assert one(deploy, "source") == "."
        assert one(deploy, "entry-point") == fn.name
        assert one(deploy, "region") == REGION
        assert one(deploy, "project") == PROJECT
        assert (
            one(deploy, "service-account") == f"{fn.account_id}@{PROJECT}.iam.gserviceaccount.com"
        )
        assert one(deploy, "build-service-account").endswith(
            f"/at-build@{PROJECT}.iam.gserviceaccount.com"
        )
        assert int(one(deploy, "concurrency")) >= 1
        step = plan.step("function", fn.name)
        assert step.update == step.create  # gcloud functions deploy creates or updates
        assert isinstance(step.probe, Fingerprinted)


def test_entry_points_exist_in_main() -> None:
    import main

    exported = set(getattr(main, "__all__", []))
    deployed = {f.name for f in resources.FUNCTIONS}
    assert exported <= deployed, f"entry points without a deployment: {exported - deployed}"
    for fn in resources.FUNCTIONS:
        if not hasattr(main, fn.name):
            # Being added (accounts/, signal_worker/): its name is docs/DESIGN.md's.
            assert fn.name in DESIGN_ENTRY_POINTS
            continue
        assert callable(getattr(main, fn.name))
        module = importlib.import_module(fn.module)
        assert getattr(module, fn.name) is getattr(main, fn.name)


def test_sync_user_is_an_authenticated_http_function() -> None:
    deploy = deploy_of(make_plan(), "sync_user")
    assert "--trigger-http" in deploy
    assert "--no-allow-unauthenticated" in deploy
    assert "--allow-unauthenticated" not in deploy
    assert not any(a.startswith("--trigger-topic") for a in deploy)


def test_secret_trigger_is_an_eventarc_firestore_trigger_with_retries() -> None:
    plan = make_plan()
    deploy = deploy_of(plan, "on_alpaca_secret_written")
    assert flags(deploy)["trigger-event-filters"] == [
        "type=google.cloud.firestore.document.v1.written",
        "database=(default)",
    ]
    assert one(deploy, "trigger-event-filters-path-pattern") == (
        "document=users/{uid}/secrets/alpaca"
    )
    assert one(deploy, "trigger-location") == "${FIRESTORE_LOCATION}"
    assert one(deploy, "trigger-service-account") == INVOKER
    assert "--retry" in deploy
    assert "--trigger-http" not in deploy
    location = plan.variable("FIRESTORE_LOCATION")
    assert "--format=value(locationId)" in location.command
    fixed = make_plan(firestore_location="nam5")
    assert one(deploy_of(fixed, "on_alpaca_secret_written"), "trigger-location") == "nam5"
    assert not any(v.name == "FIRESTORE_LOCATION" for v in fixed.variables)


def test_kill_switch_audit_trigger_carries_the_writer_identity() -> None:
    deploy = deploy_of(make_plan(), "on_trading_status_written")
    assert flags(deploy)["trigger-event-filters"] == [
        "type=google.cloud.firestore.document.v1.written.withAuthContext",
        "database=(default)",
    ]
    assert one(deploy, "trigger-event-filters-path-pattern") == (
        "document=users/{uid}/status/trading"
    )
    assert one(deploy, "trigger-service-account") == INVOKER
    assert "--retry" in deploy


def test_callables_are_public_http_functions() -> None:
    plan = make_plan()
    callables = [f for f in resources.FUNCTIONS if f.trigger is Trigger.CALLABLE]
    assert {f.name for f in callables} == {
        "onboard_user",
        "delete_account",
        "connect_alpaca",
        "disconnect_alpaca",
        "generate_trading_signal",
        "migrate_legacy_data",
        *ADMIN_CALLABLES,
    }
    for fn in callables:
        deploy = deploy_of(plan, fn.name)
        assert "--trigger-http" in deploy and "--allow-unauthenticated" in deploy
        assert "--no-allow-unauthenticated" not in deploy


# --- identities and roles ------------------------------------------------------------------


ADMIN_CALLABLES = (
    "admin_status",
    "admin_tenants",
    "admin_tenant",
    "admin_dead_letters",
    "admin_replay_dead_letters",
    "admin_purge_dead_letters",
)
HOLD = ("roles/pubsub.subscriber", "subscription", "user-sync-dead-letter-hold")
READ_ONLY = ("roles/datastore.viewer", "project", "")

EXPECTED_ROLES = {
    # account: {(role, scope, resource)}
    "at-publish-user-syncs": {
        ("roles/datastore.user", "project", ""),
        ("roles/pubsub.publisher", "topic", "user-sync"),
    },
    "at-sync-user": {
        ("roles/datastore.user", "project", ""),
        ("roles/pubsub.publisher", "topic", "user-sync-dead-letter"),
        ("roles/cloudkms.cryptoKeyDecrypter", "crypto-key", "tenant-credentials"),
    },
    "at-on-alpaca-secret-written": {
        ("roles/datastore.user", "project", ""),
        ("roles/pubsub.publisher", "topic", "user-sync"),
        ("roles/cloudkms.cryptoKeyEncrypter", "crypto-key", "tenant-credentials"),
    },
    "at-on-alpaca-config-written": {("roles/datastore.user", "project", "")},
    "at-on-trading-status-written": {("roles/datastore.user", "project", "")},
    "at-onboard-user": {("roles/datastore.user", "project", "")},
    "at-delete-account": {("roles/datastore.user", "project", "")},
    "at-connect-alpaca": {
        ("roles/datastore.user", "project", ""),
        ("roles/pubsub.publisher", "topic", "user-sync"),
        ("roles/cloudkms.cryptoKeyEncrypter", "crypto-key", "tenant-credentials"),
        ("roles/secretmanager.secretAccessor", "secret", "alpaca-oauth-client-secret"),
    },
    "at-disconnect-alpaca": {("roles/datastore.user", "project", "")},
    "at-migrate-legacy-data": {("roles/datastore.user", "project", "")},
    "at-generate-trading-signal": {
        ("roles/datastore.user", "project", ""),
        ("roles/aiplatform.user", "project", ""),
    },
    # The admin console: read-only Firestore, the hold subscription only where dead letters are
    # read, and user-sync only for the replay.
    "at-admin-status": {READ_ONLY, HOLD},
    "at-admin-tenants": {READ_ONLY},
    "at-admin-tenant": {READ_ONLY},
    "at-admin-dead-letters": {HOLD},
    "at-admin-replay-dead-letters": {HOLD, ("roles/pubsub.publisher", "topic", "user-sync")},
    "at-admin-purge-dead-letters": {HOLD},
    # The stream gateway (a service): Firestore, and user-sync for its trade_update and
    # reconcile syncs; it is invoked by nobody (health probes come from Cloud Run itself).
    "at-stream-gateway": {
        ("roles/datastore.user", "project", ""),
        ("roles/pubsub.publisher", "topic", "user-sync"),
        ("roles/cloudkms.cryptoKeyDecrypter", "crypto-key", "tenant-credentials"),
    },
    "at-push-invoker": {
        ("roles/run.invoker", "service", "publish_user_syncs"),
        ("roles/run.invoker", "service", "sync_user"),
        ("roles/run.invoker", "service", "on_alpaca_secret_written"),
        ("roles/run.invoker", "service", "on_alpaca_config_written"),
        ("roles/run.invoker", "service", "on_trading_status_written"),
        ("roles/eventarc.eventReceiver", "project", ""),
    },
    "at-build": {
        ("roles/logging.logWriter", "project", ""),
        ("roles/artifactregistry.writer", "project", ""),
        ("roles/storage.objectAdmin", "project", ""),
    },
    iam.PUBSUB_AGENT: {
        ("roles/pubsub.publisher", "topic", "user-sync-dead-letter"),
        ("roles/pubsub.subscriber", "subscription", "user-sync-worker"),
        ("roles/iam.serviceAccountTokenCreator", "service-account", "at-push-invoker"),
    },
}


def test_one_service_account_per_function_with_only_the_roles_it_needs() -> None:
    plan = make_plan()
    accounts = [s.name for s in plan.steps if s.kind == "service-account"]
    assert len(accounts) == len(set(accounts))
    assert set(accounts) == set(EXPECTED_ROLES) - {iam.PUBSUB_AGENT}
    for account in accounts:
        assert 6 <= len(account) <= 30
    granted: dict[str, set[tuple[str, str, str]]] = {}
    for grant in iam.grants():
        granted.setdefault(grant.principal, set()).add(
            (grant.role, grant.scope.value, grant.resource)
        )
    assert granted == EXPECTED_ROLES
    # Every grant is a step of the plan, checked before it is made.
    assert len(binding_steps(plan)) == len(iam.grants())
    for step in binding_steps(plan):
        assert step.check is not None and "get-iam-policy" in step.check
        assert "add-iam-policy-binding" in step.create
    # Topic-level publishers: no runtime identity may publish to every topic.
    for step in binding_steps(plan):
        assert isinstance(step.probe, HasBinding)
        if step.probe.role == "roles/pubsub.publisher":
            assert step.create[:3] == ("gcloud", "pubsub", "topics")


def test_push_targets_are_invocable_by_the_push_invoker_only() -> None:
    plan = make_plan()
    member = f"serviceAccount:{INVOKER}"
    for fn in (
        "publish_user_syncs",
        "sync_user",
        "on_alpaca_secret_written",
        "on_alpaca_config_written",
        "on_trading_status_written",
    ):
        service = (
            "gcloud",
            "run",
            "services",
            "add-iam-policy-binding",
            f"${{{fn.upper()}_SERVICE}}",
        )
        assert bound(plan, "roles/run.invoker", member, service)
        step = next(s for s in binding_steps(plan) if s.create[:5] == service)
        # Granted after the deploy that creates the service, before pushes start.
        assert plan.steps.index(plan.step("function", fn)) < plan.steps.index(step)
        variable = plan.variable(f"{fn.upper()}_SERVICE")
        assert variable.last_segment
        assert "--format=value(serviceConfig.service)" in variable.command
    for sub in topology.SUBSCRIPTIONS:
        if sub.push_target:
            step = next(
                s
                for s in binding_steps(plan)
                if s.create[4:5] == (f"${{{sub.push_target.upper()}_SERVICE}}",)
            )
            assert plan.steps.index(step) < plan.steps.index(plan.step("subscription", sub.name))


def test_service_accounts_exist_before_they_are_used() -> None:
    plan = make_plan()
    last_account = max(i for i, s in enumerate(plan.steps) if s.kind == "service-account")
    first_use = min(i for i, s in enumerate(plan.steps) if s.kind != "service-account")
    assert last_account < first_use


# --- environment ---------------------------------------------------------------------------


def env_of(plan: Plan, name: str = "sync_user") -> dict[str, str]:
    flag = one(deploy_of(plan, name), "set-env-vars")
    delimiter = ","
    if flag.startswith("^"):
        delimiter, flag = flag[1], flag[3:]
    return dict(pair.split("=", 1) for pair in flag.split(delimiter))


def test_environment_comes_from_the_settings_module() -> None:
    plan = make_plan()
    env = env_of(plan)
    defaults = Settings(project=PROJECT)
    expected = {
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        "VERTEX_AI_LOCATION": defaults.vertex_ai_location,
        "VERTEX_AI_MODEL": defaults.vertex_ai_model,
        "ALPACA_TIMEOUT_SECONDS": str(defaults.alpaca_timeout_seconds),
        "SIGNAL_DAILY_QUOTA": str(defaults.signal_daily_quota),
        "PULSE_ROLLUP_DELAY_SECONDS": str(defaults.pulse_rollup_delay_seconds),
    }
    assert {name: env.get(name) for name in expected} == expected
    assert not any(name.endswith("_EMULATOR_HOST") for name in env)
    assert "ALPACA_ALLOWED_BASE_URLS" not in env
    assert "VERTEX_AI_BASE_URL" not in env
    assert "SYNC_SCHEDULE" not in env
    assert "RECONCILE_EVERY_TICKS" not in env
    assert env["CREDENTIALS_KEK_URI"] == (
        f"gcp-kms://projects/{PROJECT}/locations/{REGION}/keyRings/agenttrader"
        "/cryptoKeys/tenant-credentials"
    )
    assert "ALPACA_OAUTH_CLIENT_SECRET" not in env
    planned = {"GOOGLE_CLOUD_PROJECT": PROJECT, "CREDENTIALS_KEK_URI": env["CREDENTIALS_KEK_URI"]}
    assert Settings.from_env(env) == Settings.from_env(planned)
    for fn in resources.FUNCTIONS:
        if fn.name != "publish_user_syncs":
            assert env_of(plan, fn.name) == env
    assert env_of(plan, "publish_user_syncs") == {
        **env,
        "SYNC_SCHEDULE": "market-hours",
        "RECONCILE_EVERY_TICKS": str(defaults.reconcile_every_ticks),
    }


def test_publish_user_syncs_follows_market_hours_by_default_and_always_on_request() -> None:
    default, always = make_plan(), make_plan(sync_schedule="always")
    publisher = Settings.from_env(env_of(default, "publish_user_syncs"))

    assert publisher.sync_schedule is SyncSchedule.MARKET_HOURS
    assert env_of(always, "publish_user_syncs")["SYNC_SCHEDULE"] == "always"
    assert "publish_user_syncs also: SYNC_SCHEDULE=market-hours" in default.render()
    for fn in resources.FUNCTIONS:
        changed = default.step("function", fn.name).probe != always.step("function", fn.name).probe
        assert changed is (fn.name == "publish_user_syncs"), fn.name  # only it is redeployed
        if fn.name != "publish_user_syncs":
            assert "SYNC_SCHEDULE" not in env_of(always, fn.name)


def test_sync_schedule_is_validated_and_chosen_with_its_flag_only() -> None:
    with pytest.raises(PlanError, match="SYNC_SCHEDULE must be always or market-hours"):
        make_plan(sync_schedule="weekdays")
    with pytest.raises(PlanError, match="--sync-schedule"):
        make_plan(env=(("SYNC_SCHEDULE", "always"),))


def test_sync_schedule_flag_of_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["plan", "--project", PROJECT, "--region", REGION]
    assert infra_main(base) == 0
    default = capsys.readouterr().out
    assert infra_main([*base, "--sync-schedule", "always"]) == 0
    always = capsys.readouterr().out
    with pytest.raises(SystemExit):
        infra_main([*base, "--sync-schedule", "sometimes"])

    assert "SYNC_SCHEDULE=market-hours" in default and "SYNC_SCHEDULE=always" not in default
    assert "SYNC_SCHEDULE=always" in always and "SYNC_SCHEDULE=market-hours" not in always


def test_every_settings_field_maps_to_the_variable_settings_reads() -> None:
    """A new Settings field whose variable isn't its upper-cased name must be mapped."""
    samples: dict[type, object] = {str: "x-sample", int: 7, float: 3.5}
    for f in dataclasses.fields(Settings):
        name = resources.env_name(f.name)
        if f.name == "extra_alpaca_base_urls":
            value = "https://alpaca.example.com"
            expected: object = ("https://alpaca.example.com",)
        elif f.name == "sync_schedule":
            value, expected = "market-hours", SyncSchedule.MARKET_HOURS
        elif f.name == "log_level":
            value, expected = "debug", "DEBUG"
        elif f.name == "tenant_sign_in_providers":
            value, expected = "password,phone", ("password", "phone")
        elif f.name == "require_verified_email":
            value, expected = "false", False
        elif f.name == "credentials_kek_uri":
            value = expected = "gcp-kms://projects/p/locations/l/keyRings/r/cryptoKeys/k"
        elif f.name == "alpaca_oauth_base_url":  # must be on the allowlist
            value = expected = "https://paper-api.alpaca.markets"
        else:
            kind = type(getattr(Settings(project="p"), f.name) or "")
            expected = samples.get(kind, "x-sample")
            value = str(expected)
            if f.name.endswith("_base_url"):
                value = expected = "https://stand-in.example.com"
            if f.name.endswith("_host"):
                value = expected = "localhost:1234"
        parsed = Settings.from_env({name: value})
        assert getattr(parsed, f.name) == expected, f"{f.name} is not read from {name}"


def test_settings_overrides_are_deployed_and_validated() -> None:
    plan = make_plan(env=(("VERTEX_AI_LOCATION", "europe-west4"), ("SIGNAL_DAILY_QUOTA", "5")))
    env = env_of(plan)
    assert env["VERTEX_AI_LOCATION"] == "europe-west4" and env["SIGNAL_DAILY_QUOTA"] == "5"
    urls = "https://a.example.com,https://b.example.com"
    env = env_of(make_plan(env=(("ALPACA_ALLOWED_BASE_URLS", urls),)))
    assert env["ALPACA_ALLOWED_BASE_URLS"] == urls  # the comma survives gcloud's splitting
    for bad, match in (
        (("FIRESTORE_EMULATOR_HOST", "localhost:8080"), "emulator"),
        (("VERTEX_AI_BASE_URL", "http://localhost:9"), "stand-in"),
        (("NOT_A_SETTING", "1"), "not a setting"),
        (("GOOGLE_CLOUD_PROJECT", "other"), "--project"),
        (
            ("CREDENTIALS_KEK_URI", "gcp-kms://projects/p/locations/l/keyRings/r/cryptoKeys/k"),
            "plan creates",
        ),
        (("ALPACA_OAUTH_CLIENT_SECRET", "hunter2-hunter2"), "Secret Manager"),
        (("SIGNAL_DAILY_QUOTA", "many"), "integer"),
    ):
        with pytest.raises(PlanError, match=match):
            make_plan(env=(bad,))


# --- Firestore rules and indexes -----------------------------------------------------------


def test_rules_and_indexes_are_deployed_with_firebase_tools() -> None:
    import json

    step = make_plan().step("firestore", "rules-and-indexes")
    assert step.create[0] == "node_modules/.bin/firebase"
    assert step.create[1] == "deploy"
    assert one(step.create, "only") == "firestore:rules,firestore:indexes"
    assert one(step.create, "project") == PROJECT
    assert one(step.create, "config") == "firebase.json"
    config = json.loads((ROOT / "firebase.json").read_text())
    assert config["firestore"]["rules"] == "firestore.rules"
    assert config["firestore"]["indexes"] == "firestore.indexes.json"
    assert (ROOT / "firestore.rules").exists() and (ROOT / "firestore.indexes.json").exists()


# --- topology-driven, deterministic, offline -------------------------------------------------


def test_the_plan_is_deterministic() -> None:
    assert make_plan().render() == make_plan().render()


def test_the_plan_is_byte_identical_across_processes() -> None:
    argv = [sys.executable, "-m", "infra", "plan", "--project", PROJECT, "--region", REGION]
    outputs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        outputs.append(
            subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, check=True).stdout
        )
    assert outputs[0] == outputs[1]
    assert b"gcloud functions deploy sync_user" in outputs[0]


def test_values_come_from_the_topology(monkeypatch: pytest.MonkeyPatch) -> None:
    before = make_plan()
    changed = tuple(
        dataclasses.replace(
            s,
            ack_deadline_seconds=90,
            retry=topology.RetryPolicy(20, 300),
            dead_letter=topology.DeadLetterPolicy(topology.USER_SYNC_DEAD_LETTER, 9),
        )
        if s.name == topology.USER_SYNC_WORKER
        else s
        for s in topology.SUBSCRIPTIONS
    )
    monkeypatch.setattr(topology, "SUBSCRIPTIONS", changed)
    after = make_plan()
    assert after.render() != before.render()
    create = after.step("subscription", topology.USER_SYNC_WORKER).create
    assert one(create, "ack-deadline") == "90"
    assert one(create, "min-retry-delay") == "20s"
    assert one(create, "max-retry-delay") == "300s"
    assert one(create, "max-delivery-attempts") == "9"
    assert one(deploy_of(after, "sync_user"), "timeout") == "90s"
    # The new desired state has a new fingerprint, so apply updates what exists.
    assert (
        after.step("subscription", topology.USER_SYNC_WORKER).probe
        != before.step("subscription", topology.USER_SYNC_WORKER).probe
    )


def test_a_topology_outside_pubsub_limits_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tuple(
        dataclasses.replace(s, dead_letter=topology.DeadLetterPolicy(s.dead_letter.topic, 2))
        if s.dead_letter
        else s
        for s in topology.SUBSCRIPTIONS
    )
    monkeypatch.setattr(topology, "SUBSCRIPTIONS", bad)
    with pytest.raises(PlanError, match="max delivery attempts"):
        make_plan()


def test_the_source_digest_changes_only_the_functions() -> None:
    a = make_plan()
    b = build_plan(DeployConfig(project=PROJECT, region=REGION, source_digest="0ther"))
    for sa, sb in zip(a.steps, b.steps, strict=True):
        assert (sa.probe == sb.probe) == (sa.kind != "function"), sa.title


@pytest.mark.parametrize(
    ("project", "region", "match"),
    [
        ("Bad_Project", REGION, "project id"),
        ("demo-agenttrader", REGION, "emulators"),
        (PROJECT, "mars", "region"),
    ],
)
def test_invalid_inputs_are_refused(project: str, region: str, match: str) -> None:
    with pytest.raises(PlanError, match=match):
        build_plan(DeployConfig(project=project, region=region))


def test_plan_runs_no_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"plan ran a command: {args}")

    monkeypatch.setattr(subprocess, "run", forbidden)
    monkeypatch.setattr(subprocess, "Popen", forbidden)
    assert infra_main(["plan", "--project", PROJECT, "--region", REGION]) == 0
    out = capsys.readouterr().out
    for step in make_plan().steps:
        assert step.kind in out
    assert "gcloud auth list --filter=status:ACTIVE '--format=value(account)'" in out
    assert "${SYNC_USER_URL}" in out and "${PROJECT_NUMBER}" in out


def test_plan_prints_every_check_create_and_update() -> None:
    plan = make_plan()
    text = plan.render()
    from infra.model import shell

    for step in plan.steps:
        assert shell(step.create) in text
        if step.check is not None:
            assert shell(step.check) in text
        if step.update is not None:
            assert shell(step.update) in text
    for check in plan.checks:
        assert shell(check.argv) in text
    for variable in plan.variables:
        assert shell(variable.command) in text


def test_apis_command_lists_every_required_api(capsys: pytest.CaptureFixture[str]) -> None:
    assert infra_main(["apis", "--project", PROJECT]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("gcloud services enable ")
    assert out.endswith(f"--project={PROJECT}")
    for api in (
        "cloudfunctions",
        "run",
        "cloudbuild",
        "artifactregistry",
        "eventarc",
        "pubsub",
        "firestore",
        "cloudscheduler",
        "aiplatform",
        "iam",
        "logging",
    ):
        assert f" {api}.googleapis.com " in out


def test_deploy_doc_carries_the_current_least_privilege_table() -> None:
    doc = (ROOT / "docs" / "DEPLOY.md").read_text()
    assert iam.markdown_table() in doc, "regenerate with: python -m infra roles"


def test_request_logs_of_successful_syncs_are_not_ingested_failed_ones_are() -> None:
    step = next(s for s in make_plan().steps if s.kind == "log-exclusion")
    assert step.check is not None and step.update is not None
    assert step.check[:5] == ("gcloud", "logging", "sinks", "describe", "_Default")
    (spec,) = [a for a in step.create if a.startswith("--add-exclusion=")]
    (updated,) = [a for a in step.update if a.startswith("--update-exclusion=")]
    assert spec.partition("=")[2] == updated.partition("=")[2]
    fields = dict(part.split("=", 1) for part in spec.partition("=")[2].split(","))
    assert fields["name"] == resources.REQUEST_LOG_EXCLUSION
    log_filter = fields["filter"]
    assert 'resource.labels.service_name="${SYNC_USER_SERVICE}"' in log_filter
    assert 'log_id("run.googleapis.com/requests")' in log_filter
    assert "httpRequest.status<400" in log_filter  # failed pushes (HTTP 500) stay visible
    assert f"{FINGERPRINT_KEY}=" in fields["description"]


def test_the_stream_gateway_is_a_cloud_run_service_with_its_own_identity() -> None:
    plan = make_plan(service_digests=(("stream-gateway", "c0ffee"),))
    staged = plan.step("service-source", ".local/deploy/stream-gateway")
    service = plan.step("service", "stream-gateway")
    kinds = [s.kind for s in plan.steps]
    assert kinds.index("service-source") + 1 == kinds.index("service")
    assert staged.create[-1] == "--stage=stream-gateway" and staged.check is None
    deploy = service.create
    assert deploy[:4] == ("gcloud", "run", "deploy", "stream-gateway")
    assert one(deploy, "source") == ".local/deploy/stream-gateway"
    assert "--no-cpu-throttling" in deploy  # CPU always allocated
    assert int(one(deploy, "min-instances")) >= 1
    assert one(deploy, "service-account") == f"at-stream-gateway@{PROJECT}.iam.gserviceaccount.com"
    assert "--no-allow-unauthenticated" in deploy and one(deploy, "ingress") == "internal"
    for probe in ("startup-probe", "liveness-probe"):
        assert one(deploy, probe).startswith("httpGet.path=/healthz,httpGet.port=8080")
    env = dict(pair.split("=", 1) for pair in one(deploy, "set-env-vars").split(","))
    assert env["GOOGLE_CLOUD_PROJECT"] == PROJECT and "SYNC_SCHEDULE" not in env
    other = make_plan(service_digests=(("stream-gateway", "beef"),)).step(
        "service", "stream-gateway"
    )
    assert isinstance(service.probe, Fingerprinted) and isinstance(other.probe, Fingerprinted)
    assert service.probe.value != other.probe.value  # new source: redeployed
    assert (
        make_plan().step("service", "stream-gateway").probe
        == make_plan().step("service", "stream-gateway").probe
    )
    assert env["CREDENTIALS_KEK_URI"].startswith("gcp-kms://")  # it opens sealed credentials


# --- credentials: the KEK and the OAuth client secret -----------------------------------------

KEY = ("gcloud", "kms", "keys")
KEK_WHERE = ("--keyring=agenttrader", f"--location={REGION}", f"--project={PROJECT}")
OAUTH = (("ALPACA_OAUTH_CLIENT_ID", "agenttrader-app"),)


def test_the_kek_is_a_rotated_key_in_the_deployment_region() -> None:
    plan = make_plan()
    ring = plan.step("kms-key-ring", "agenttrader")
    assert ring.create == (
        "gcloud", "kms", "keyrings", "create", "agenttrader", f"--location={REGION}",
        f"--project={PROJECT}",
    )  # fmt: skip
    key = plan.step("kms-key", "tenant-credentials")
    assert key.create[:4] == (*KEY, "create") and key.create[4] == "tenant-credentials"
    assert key.create[5:8] == KEK_WHERE
    assert one(key.create, "purpose") == "encryption"
    assert one(key.create, "rotation-period") == "90d"
    assert one(key.create, "next-rotation-time") == "${KEK_NEXT_ROTATION}"
    assert key.update is not None and one(key.update, "rotation-period") == "90d"
    assert isinstance(key.probe, Fingerprinted)
    rotation = plan.variable("KEK_NEXT_ROTATION")
    assert rotation.command == (".venv/bin/python", "-m", "infra", "next-rotation-time")
    # The ring before the key, the key before anyone is granted it, all before the functions.
    order = [plan.steps.index(s) for s in (ring, key)]
    grants = [
        i for i, s in enumerate(plan.steps) if s.create[:4] == (*KEY, "add-iam-policy-binding")
    ]
    first_function = min(i for i, s in enumerate(plan.steps) if s.kind == "function")
    assert order[0] < order[1] < min(grants) and max(grants) < first_function


def test_only_the_openers_decrypt_and_only_the_sealers_encrypt() -> None:
    plan = make_plan()
    key = (*KEY, "add-iam-policy-binding", "tenant-credentials", *KEK_WHERE)
    member = f"serviceAccount:at-{{}}@{PROJECT}.iam.gserviceaccount.com".format
    for opener in ("sync-user", "stream-gateway"):
        assert bound(plan, "roles/cloudkms.cryptoKeyDecrypter", member(opener), key)
    for sealer in ("on-alpaca-secret-written", "connect-alpaca"):
        assert bound(plan, "roles/cloudkms.cryptoKeyEncrypter", member(sealer), key)
    kms = [g for g in iam.grants() if g.role.startswith("roles/cloudkms.")]
    assert {(g.principal, g.role) for g in kms} == {
        ("at-sync-user", "roles/cloudkms.cryptoKeyDecrypter"),
        ("at-stream-gateway", "roles/cloudkms.cryptoKeyDecrypter"),
        ("at-on-alpaca-secret-written", "roles/cloudkms.cryptoKeyEncrypter"),
        ("at-connect-alpaca", "roles/cloudkms.cryptoKeyEncrypter"),
    }
    assert all(g.scope is iam.Scope.CRYPTO_KEY and g.resource == "tenant-credentials" for g in kms)
    # No identity both seals and opens, and nobody holds a KMS role on the project.
    principals = [g.principal for g in kms]
    assert len(principals) == len(set(principals))


def test_the_stream_gateway_opens_credentials_and_holds_no_other_kms_role() -> None:
    """The gateway decrypts (to authenticate a tenant's stream) on the key alone, never seals."""
    assert resources.STREAM_GATEWAY.kek is resources.KekUse.DECRYPT
    [gateway] = [
        g
        for g in iam.grants()
        if g.principal == "at-stream-gateway" and g.role.startswith("roles/cloudkms.")
    ]
    assert (gateway.role, gateway.scope, gateway.resource) == (
        "roles/cloudkms.cryptoKeyDecrypter",
        iam.Scope.CRYPTO_KEY,
        "tenant-credentials",
    )
    assert "`at-stream-gateway`" in iam.markdown_table()


def test_the_oauth_client_secret_lives_in_secret_manager_and_is_never_printed() -> None:
    value = "the-real-client-secret-0123456789"
    without, with_oauth = make_plan(), make_plan(env=OAUTH)
    for plan in (without, with_oauth):
        secret = plan.step("secret", "alpaca-oauth-client-secret")
        assert secret.create[:4] == ("gcloud", "secrets", "create", "alpaca-oauth-client-secret")
        assert "--replication-policy=automatic" in secret.create
        assert value not in plan.render()
    # OAuth off: no value is asked for and connect_alpaca reads no secret.
    assert not any(s.kind == "secret-version" for s in without.steps)
    assert "set-secrets" not in flags(deploy_of(without, "connect_alpaca"))
    # OAuth on: the first value from the operator's file, read by connect_alpaca alone.
    version = with_oauth.step("secret-version", "alpaca-oauth-client-secret")
    assert version.create[:5] == (
        "gcloud",
        "secrets",
        "versions",
        "add",
        "alpaca-oauth-client-secret",
    )
    assert one(version.create, "data-file") == "${ALPACA_OAUTH_CLIENT_SECRET_FILE}"
    assert version.check is not None and "latest" in version.check
    path = with_oauth.variable("ALPACA_OAUTH_CLIENT_SECRET_FILE")
    assert path.command == ("printenv", "ALPACA_OAUTH_CLIENT_SECRET_FILE")
    connect = deploy_of(with_oauth, "connect_alpaca")
    assert one(connect, "set-secrets") == (
        "ALPACA_OAUTH_CLIENT_SECRET=alpaca-oauth-client-secret:latest"
    )
    assert env_of(with_oauth, "connect_alpaca")["ALPACA_OAUTH_CLIENT_ID"] == "agenttrader-app"
    for fn in resources.FUNCTIONS:
        if fn.name != "connect_alpaca":
            assert "set-secrets" not in flags(deploy_of(with_oauth, fn.name)), fn.name
        assert "ALPACA_OAUTH_CLIENT_SECRET" not in env_of(with_oauth, fn.name)
    assert with_oauth.steps.index(version) < with_oauth.steps.index(
        with_oauth.step("function", "connect_alpaca")
    )


def test_every_function_is_told_the_planned_kek() -> None:
    plan = build_plan(DeployConfig(project=PROJECT, region="us-east4"))
    uri = (
        f"gcp-kms://projects/{PROJECT}/locations/us-east4/keyRings/agenttrader"
        "/cryptoKeys/tenant-credentials"
    )
    for fn in resources.FUNCTIONS:
        assert env_of(plan, fn.name)["CREDENTIALS_KEK_URI"] == uri
    assert Settings.from_env(env_of(plan)).credentials_kek() == uri


def test_next_rotation_time_is_the_rotation_period_from_now() -> None:
    from datetime import UTC, datetime

    from infra.__main__ import next_rotation_time

    assert next_rotation_time(datetime(2026, 1, 1, 12, 0, 0, 123, tzinfo=UTC)) == (
        "2026-04-01T12:00:00Z"
    )
