"""settings + topology + resources -> the ordered steps of a deployment. Pure: no I/O, no clock.

Order (each step only needs what the steps before it made):

1. service accounts; their project roles and the service agent's token-creator role;
2. topics, topic-level publisher roles;
   the credentials KEK (key ring, key with a rotation period) and who may encrypt or decrypt
   with it; the OAuth client secret in Secret Manager (its value from the operator's file,
   never shown) and who may read it;
3. pull subscriptions (the dead-letter hold exists before anything can dead-letter);
4. Firestore rules and indexes (index builds take minutes: start them early);
5. the functions (push targets first), then ``roles/run.invoker`` on the push/event targets;
6. push subscriptions (their endpoint is the function URL), the agent's subscriber role;
7. the admin console's page on Firebase Hosting (built, configured for the project);
8. Cloud Monitoring (infra/monitoring.py): the e-mail notification channel (``--alert-email``),
   the log-based metrics, the alert policies reading them, the dashboard;
9. the Cloud Scheduler job, last: ticks start once everything they reach exists.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from agenttrader import topology
from agenttrader.settings import Settings
from infra import iam, monitoring, resources, source
from infra.model import (
    FINGERPRINT_KEY,
    Argv,
    Check,
    Expect,
    Fingerprinted,
    HasBinding,
    HasExclusion,
    Plan,
    Step,
    Variable,
    fingerprint,
)
from infra.resources import Function, Trigger

FIREBASE = "node_modules/.bin/firebase"
PYTHON = ".venv/bin/python"
SERVICE_PORT = 8080
"""What Cloud Run sends a service's requests and probes to (its ``PORT``)."""
IAM_RETRIES = 4
"""A service account just created is not visible to IAM everywhere at once."""

_PROJECT_ID = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_REGION = re.compile(r"^[a-z]+(-[a-z]+)+[0-9]+$")
_CRON_FIELD = re.compile(r"^[0-9A-Za-z*/,\-?LW#]+$")
_EMAIL = re.compile(r"^[^@\s,;]+@[^@\s,;]+\.[^@\s,;]+$")

# Pub/Sub's limits, so a topology edit fails here and not halfway through an apply.
_ACK_DEADLINE = (10, 600)
_RETENTION = (600, 7 * 86_400)
_BACKOFF = (0, 600)
_DELIVERY_ATTEMPTS = (5, 100)


class PlanError(ValueError):
    """The inputs cannot give a valid deployment."""


@dataclass(frozen=True)
class DeployConfig:
    project: str
    region: str
    schedule: str = resources.DEFAULT_SCHEDULE
    firestore_location: str | None = None
    """Location of the Firestore database (the Eventarc trigger's); ``None``: read at apply."""
    env: tuple[tuple[str, str], ...] = ()
    """Setting overrides by variable name (``--set NAME=VALUE``)."""
    source_digest: str = "0" * 16
    sync_schedule: str = resources.PRODUCTION_SYNC_SCHEDULE.value
    """``SYNC_SCHEDULE`` of ``publish_user_syncs`` (``--sync-schedule``)."""
    alert_email: str | None = None
    """Where the alert policies notify (``--alert-email``); ``None``: no notification channel,
    the incidents show in the Cloud console only."""
    service_digests: tuple[tuple[str, str], ...] = ()
    """Digest of each service's staged source, by service name (its fingerprint)."""

    def settings(self) -> Settings:
        try:
            return resources.deploy_settings(
                self.project, self.region, dict(self.env), self.sync_schedule
            )
        except ValueError as err:
            raise PlanError(str(err)) from err


def deployed() -> frozenset[str]:
    """The functions and services this deployment holds (what monitoring may watch)."""
    return frozenset(user.name for user in resources.identities())


def policy_var(policy: monitoring.AlertPolicy) -> str:
    return f"POLICY_{policy.key.upper()}"


ALERT_CHANNEL_VAR = "ALERT_CHANNEL"
_NAME = "--format=value(name)"
DASHBOARD_VAR = "DASHBOARD"


def url_var(fn: str) -> str:
    return f"{fn.upper()}_URL"


def service_var(fn: str) -> str:
    return f"{fn.upper()}_SERVICE"


NEXT_ROTATION_VAR = "KEK_NEXT_ROTATION"
"""The KEK's first automatic rotation (now + the rotation period), known only at apply."""
PYTHON = ".venv/bin/python"
"""The project's interpreter (``make setup``), relative to the repository root apply runs in."""


def build_plan(config: DeployConfig) -> Plan:
    """The deployment of ``config``; raises :class:`PlanError` for invalid inputs."""
    _validate(config)
    settings = config.settings()
    _validate_topology(settings)
    p = _Planner(config, settings)
    active = monitoring.policies(deployed())
    return Plan(
        project=config.project,
        region=config.region,
        source_digest=config.source_digest,
        checks=p.checks(),
        variables=p.variables(),
        steps=p.steps(),
        notes=(
            f"Functions: {', '.join(f.name for f in resources.FUNCTIONS)} ({resources.RUNTIME}).",
            *(
                f"Service {svc.name}: python -m {svc.package}, {svc.min_instances}-"
                f"{svc.max_instances} instances, CPU always allocated, health {svc.health_path}"
                for svc in resources.SERVICES
            ),
            f"Environment: {resources.env_flag(resources.environment(settings))}",
            *(
                f"{fn} also: {name}={resources.environment(settings, fn)[name]}"
                for name, fn in resources.FUNCTION_SETTINGS.items()
            ),
            f"Alerts notify: {config.alert_email}"
            if config.alert_email
            else "Alerts notify: nobody (no --alert-email): incidents show in the Cloud console",
            *(
                f"Alert policy {policy.display_name} waits for {policy.requires}, not deployed"
                for policy in monitoring.ALERT_POLICIES
                if policy not in active
            ),
        ),
    )


def _validate(config: DeployConfig) -> None:
    if not _PROJECT_ID.match(config.project):
        raise PlanError(f"--project {config.project!r} is not a Google Cloud project id")
    if config.project.startswith("demo-"):
        raise PlanError(f"{config.project!r}: demo-* projects exist only in the emulators")
    if not _REGION.match(config.region):
        raise PlanError(f"--region {config.region!r} is not a region (e.g. us-central1)")
    fields = config.schedule.split()
    if len(fields) != 5 or not all(_CRON_FIELD.match(f) for f in fields):
        raise PlanError(f"--schedule {config.schedule!r} is not a 5-field cron expression")
    if config.alert_email is not None and not _EMAIL.match(config.alert_email):
        raise PlanError(f"--alert-email {config.alert_email!r} is not an e-mail address")
    if config.firestore_location is not None and not re.match(
        r"^[a-z0-9-]+$", config.firestore_location
    ):
        raise PlanError(f"--firestore-location {config.firestore_location!r} is not a location")


def _within(what: str, value: int, bounds: tuple[int, int]) -> None:
    low, high = bounds
    if not low <= value <= high:
        raise PlanError(f"topology: {what} is {value}, Pub/Sub allows {low}..{high}")


def _validate_topology(settings: Settings) -> None:
    for sub in topology.SUBSCRIPTIONS:
        _validate_subscription(sub)
    for fn in resources.FUNCTIONS:
        if fn.trigger is Trigger.PUSH and resources.push_subscription_for(fn.name) is None:
            raise PlanError(f"{fn.name} is a push target but no subscription pushes to it")
        if fn.trigger is Trigger.FIRESTORE and not (fn.event_type and fn.document):
            raise PlanError(f"{fn.name}: a Firestore trigger needs an event type and a document")
    _validate_worker_fits(settings)


def _validate_subscription(sub: topology.Subscription) -> None:
    if sub.topic not in topology.TOPICS:
        raise PlanError(f"topology: {sub.name} reads unknown topic {sub.topic}")
    _within(f"{sub.name} ack deadline", sub.ack_deadline_seconds, _ACK_DEADLINE)
    _within(f"{sub.name} retention", sub.message_retention_seconds, _RETENTION)
    if sub.retry:
        _within(f"{sub.name} minimum backoff", sub.retry.minimum_backoff_seconds, _BACKOFF)
        _within(f"{sub.name} maximum backoff", sub.retry.maximum_backoff_seconds, _BACKOFF)
        if sub.retry.minimum_backoff_seconds > sub.retry.maximum_backoff_seconds:
            raise PlanError(f"topology: {sub.name} minimum backoff exceeds the maximum")
    if sub.dead_letter:
        if sub.dead_letter.topic not in topology.TOPICS:
            raise PlanError(f"topology: {sub.name} dead-letters to an unknown topic")
        _within(
            f"{sub.name} max delivery attempts",
            sub.dead_letter.max_delivery_attempts,
            _DELIVERY_ATTEMPTS,
        )
    if sub.push_target:
        fn = resources.function(sub.push_target)
        if fn.trigger is not Trigger.PUSH:
            raise PlanError(f"topology: {sub.name} pushes to {fn.name}, not a push target")


def _validate_worker_fits(settings: Settings) -> None:
    worker = resources.push_subscription_for("sync_user")
    if worker is not None:
        worst = (
            resources.WORKER_ALPACA_REQUESTS * 2 * settings.alpaca_timeout_seconds
            + resources.WORKER_FIRESTORE_ALLOWANCE_SECONDS
        )
        if worst > worker.ack_deadline_seconds:
            raise PlanError(
                f"sync_user may take {worst:g}s ({resources.WORKER_ALPACA_REQUESTS} Alpaca"
                f" requests, connect + read timeout {settings.alpaca_timeout_seconds:g}s each,"
                f" plus Firestore) but {worker.name}'s ack deadline is"
                f" {worker.ack_deadline_seconds}s: Pub/Sub would redeliver while it runs"
            )


class _Planner:
    def __init__(self, config: DeployConfig, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self.project = config.project
        self.region = config.region
        self.p = f"--project={config.project}"

    def email(self, account_id: str) -> str:
        return resources.email(account_id, self.project)

    # --- preconditions and apply-time values ----------------------------------------------

    def checks(self) -> tuple[Check, ...]:
        apis = resources.REQUIRED_APIS
        checks = [
            Check(
                "gcloud is authenticated",
                ("gcloud", "auth", "list", "--filter=status:ACTIVE", "--format=value(account)"),
                Expect.NON_EMPTY,
                "gcloud has no active account: run `gcloud auth login`.",
            ),
            Check(
                f"project {self.project} exists and is readable",
                ("gcloud", "projects", "describe", self.project, "--format=value(projectNumber)"),
                Expect.NON_EMPTY,
                f"cannot read project {self.project}: check the id and your access "
                f"(`gcloud projects describe {self.project}`).",
                provides="PROJECT_NUMBER",
            ),
            Check(
                "the required APIs are enabled",
                ("gcloud", "services", "list", "--enabled", self.p, "--format=value(config.name)"),
                Expect.CONTAINS_ALL,
                f"enable them: python -m infra apis --project {self.project}",
                items=apis,
            ),
            Check(
                "the (default) Firestore database exists in native mode",
                self.describe_database("value(type)"),
                Expect.EQUALS,
                "create it (docs/DEPLOY.md): gcloud firestore databases create "
                f"--location=LOCATION --type=firestore-native {self.p}",
                items=("FIRESTORE_NATIVE",),
            ),
            Check(
                "firebase-tools is signed in",
                (FIREBASE, "login:list", "--json"),
                Expect.JSON_RESULT,
                "firebase-tools has no credentials: run `node_modules/.bin/firebase login` or "
                "`gcloud auth application-default login`.",
                alternative=Check(
                    "application-default credentials exist (firebase-tools uses them)",
                    ("gcloud", "auth", "application-default", "print-access-token"),
                    Expect.SUCCEEDS,
                    "",
                ),
            ),
        ]
        return tuple(checks)

    def variables(self) -> tuple[Variable, ...]:
        out = [
            Variable(
                "PROJECT_NUMBER",
                ("gcloud", "projects", "describe", self.project, "--format=value(projectNumber)"),
                "names the Pub/Sub service agent",
            )
        ]
        if self.config.firestore_location is None:
            out.append(
                Variable(
                    "FIRESTORE_LOCATION",
                    self.describe_database("value(locationId)"),
                    "the Eventarc Firestore trigger lives where the database does",
                )
            )
        for fn in resources.FUNCTIONS:
            if fn.trigger is Trigger.PUSH:
                out.append(
                    Variable(
                        url_var(fn.name),
                        self.describe_function(fn.name, "value(serviceConfig.uri)"),
                        f"push endpoint and OIDC audience of {fn.name} (after its deploy)",
                    )
                )
        out.append(
            Variable(
                NEXT_ROTATION_VAR,
                (PYTHON, "-m", "infra", "next-rotation-time"),
                f"the KEK's first automatic rotation: {resources.KEK_ROTATION_DAYS} days from now",
            )
        )
        if self.oauth_enabled:
            out.append(
                Variable(
                    resources.SECRET_FILE_VARIABLE,
                    ("printenv", resources.SECRET_FILE_VARIABLE),
                    "a file holding the Alpaca OAuth client secret (first deploy only; only its"
                    " path is shown)",
                )
            )
        if self.config.alert_email:
            out.append(
                Variable(
                    ALERT_CHANNEL_VAR,
                    (*self.channels("list"), self.channel_filter(), _NAME),
                    "the e-mail notification channel the alert policies notify (once created)",
                )
            )
        for policy in monitoring.policies(deployed()):
            out.append(
                Variable(
                    policy_var(policy),
                    (
                        *self.policies("list"),
                        self.display_filter(policy.display_name),
                        "--format=value(name)",
                    ),
                    f"the alert policy {policy.display_name!r} (to update it)",
                )
            )
        out.append(
            Variable(
                DASHBOARD_VAR,
                (
                    *self.dashboards("list"),
                    self.display_filter(monitoring.dashboard()["displayName"]),
                    "--format=value(name)",
                ),
                "the dashboard (to update it)",
                last_segment=True,
            )
        )
        for grant in iam.grants():
            if grant.scope is iam.Scope.SERVICE and not any(
                v.name == service_var(grant.resource) for v in out
            ):
                out.append(
                    Variable(
                        service_var(grant.resource),
                        self.describe_function(grant.resource, "value(serviceConfig.service)"),
                        f"the Cloud Run service of {grant.resource} (after its deploy)",
                        last_segment=True,
                    )
                )
        return tuple(out)

    def describe_database(self, fmt: str) -> Argv:
        return (
            "gcloud",
            "firestore",
            "databases",
            "describe",
            f"--database={resources.FIRESTORE_DATABASE}",
            self.p,
            f"--format={fmt}",
        )

    def describe_function(self, name: str, fmt: str) -> Argv:
        return (
            "gcloud",
            "functions",
            "describe",
            name,
            "--gen2",
            f"--region={self.region}",
            self.p,
            f"--format={fmt}",
        )

    # --- steps ----------------------------------------------------------------------------

    def steps(self) -> tuple[Step, ...]:
        grants = iam.grants()
        push_subs = [s for s in topology.SUBSCRIPTIONS if s.push_target]
        pull_subs = [s for s in topology.SUBSCRIPTIONS if not s.push_target]
        functions = sorted(
            resources.FUNCTIONS,
            key=lambda f: (f.trigger is not Trigger.PUSH, resources.FUNCTIONS.index(f)),
        )
        out: list[Step] = [self.service_account(*a) for a in self.accounts()]
        out += [
            self.binding(g)
            for g in grants
            if g.scope in (iam.Scope.PROJECT, iam.Scope.SERVICE_ACCOUNT)
        ]
        out += [self.topic(t) for t in topology.TOPICS]
        out += [self.binding(g) for g in grants if g.scope is iam.Scope.TOPIC]
        out += [self.key_ring(), self.kek()]
        out += [self.binding(g) for g in grants if g.scope is iam.Scope.CRYPTO_KEY]
        out += [self.secret(name) for name in sorted(set(resources.SECRETS.values()))]
        if self.oauth_enabled:
            out.append(self.secret_version(resources.SECRETS["ALPACA_OAUTH_CLIENT_SECRET"]))
        out += [self.binding(g) for g in grants if g.scope is iam.Scope.SECRET]
        out += [self.subscription(s) for s in pull_subs]
        out.append(self.firestore_rules_and_indexes())
        out += [self.function(f) for f in functions]
        for svc in resources.SERVICES:
            out += self.service(svc)
        out += [self.binding(g) for g in grants if g.scope is iam.Scope.SERVICE]
        out += [self.subscription(s) for s in push_subs]
        out += [self.binding(g) for g in grants if g.scope is iam.Scope.SUBSCRIPTION]
        out.append(self.request_log_exclusion())
        out += self.hosting()
        if self.config.alert_email:
            out.append(self.notification_channel(self.config.alert_email))
        out += [self.monitoring(r) for r in monitoring.resources(deployed())]
        out.append(self.scheduler_job())
        return tuple(out)

    def accounts(self) -> list[tuple[str, str]]:
        out = [(f.account_id, f"runtime identity of {f.name}") for f in resources.FUNCTIONS]
        out.append((resources.PUSH_INVOKER, "OIDC identity of push deliveries to functions"))
        out += [(svc.account_id, f"runtime identity of {svc.name}") for svc in resources.SERVICES]
        out.append((resources.BUILD_ACCOUNT, "Cloud Build identity for function builds"))
        return out

    def service_account(self, account_id: str, purpose: str) -> Step:
        return Step(
            kind="service-account",
            name=account_id,
            purpose=purpose,
            check=(
                "gcloud",
                "iam",
                "service-accounts",
                "describe",
                self.email(account_id),
                self.p,
                "--format=json",
            ),
            create=(
                "gcloud",
                "iam",
                "service-accounts",
                "create",
                account_id,
                self.p,
                f"--display-name=AgentTrader {account_id}",
                f"--description={purpose}",
            ),
        )

    def binding(self, grant: iam.Grant) -> Step:
        member = grant.member(self.project)
        if grant.scope is iam.Scope.PROJECT:
            target: Argv = ("gcloud", "projects")
            resource: Argv = (self.project,)
            extra: Argv = ("--condition=None",)
        elif grant.scope is iam.Scope.TOPIC:
            target, resource, extra = ("gcloud", "pubsub", "topics"), (grant.resource, self.p), ()
        elif grant.scope is iam.Scope.SUBSCRIPTION:
            target = ("gcloud", "pubsub", "subscriptions")
            resource, extra = (grant.resource, self.p), ()
        elif grant.scope is iam.Scope.CRYPTO_KEY:
            target = ("gcloud", "kms", "keys")
            resource, extra = (grant.resource, *self.key_ring_of(), self.p), ()
        elif grant.scope is iam.Scope.SECRET:
            target, resource, extra = ("gcloud", "secrets"), (grant.resource, self.p), ()
        elif grant.scope is iam.Scope.SERVICE:
            target = ("gcloud", "run", "services")
            resource = (
                f"${{{service_var(grant.resource)}}}",
                f"--region={self.region}",
                self.p,
            )
            extra = ()
        else:
            target = ("gcloud", "iam", "service-accounts")
            resource, extra = (self.email(grant.resource), self.p), ()
        where = grant.resource or self.project
        return Step(
            kind="iam",
            name=f"{grant.role} on {grant.scope.value} {where} for {grant.principal}",
            purpose=grant.why,
            check=(*target, "get-iam-policy", *resource, "--format=json"),
            create=(
                *target,
                "add-iam-policy-binding",
                *resource,
                f"--member={member}",
                f"--role={grant.role}",
                *extra,
                "--format=none",
            ),
            probe=HasBinding(grant.role, member),
            retries=IAM_RETRIES,
        )

    @property
    def oauth_enabled(self) -> bool:
        """Alpaca OAuth is offered (``ALPACA_OAUTH_CLIENT_ID`` set): its client secret must
        then have a value, and ``connect_alpaca`` reads it."""
        return self.settings.alpaca_oauth_client_id is not None

    def key_ring_of(self) -> Argv:
        return (f"--keyring={resources.KEK_KEY_RING}", f"--location={self.region}")

    def key_ring(self) -> Step:
        location = f"--location={self.region}"
        return Step(
            kind="kms-key-ring",
            name=resources.KEK_KEY_RING,
            purpose=f"holds the credentials KEK, in {self.region} (a key ring is never deleted)",
            check=(
                "gcloud",
                "kms",
                "keyrings",
                "describe",
                resources.KEK_KEY_RING,
                location,
                self.p,
                "--format=json",
            ),
            create=(
                "gcloud",
                "kms",
                "keyrings",
                "create",
                resources.KEK_KEY_RING,
                location,
                self.p,
            ),
        )

    def kek(self) -> Step:
        """The key-encryption key: symmetric, software-protected, rotated every
        :data:`~infra.resources.KEK_ROTATION_DAYS` days (older versions keep decrypting)."""
        period = f"--rotation-period={resources.KEK_ROTATION_DAYS}d"
        first = f"--next-rotation-time=${{{NEXT_ROTATION_VAR}}}"
        fp = fingerprint(resources.KEK_KEY, period)
        base: Argv = ("gcloud", "kms", "keys")
        where = (*self.key_ring_of(), self.p)
        return Step(
            kind="kms-key",
            name=resources.KEK_KEY,
            purpose=f"seals tenant credentials (CREDENTIALS_KEK_URI), rotated every"
            f" {resources.KEK_ROTATION_DAYS} days",
            check=(*base, "describe", resources.KEK_KEY, *where, "--format=json"),
            create=(
                *base,
                "create",
                resources.KEK_KEY,
                *where,
                "--purpose=encryption",
                "--protection-level=software",
                period,
                first,
                f"--labels={FINGERPRINT_KEY}={fp}",
            ),
            update=(
                *base,
                "update",
                resources.KEK_KEY,
                *where,
                period,
                first,
                f"--update-labels={FINGERPRINT_KEY}={fp}",
            ),
            probe=Fingerprinted(("labels", FINGERPRINT_KEY), fp),
        )

    def secret(self, name: str) -> Step:
        return Step(
            kind="secret",
            name=name,
            purpose="Secret Manager secret (the value is added by the operator, never shown)",
            check=("gcloud", "secrets", "describe", name, self.p, "--format=json"),
            create=(
                "gcloud",
                "secrets",
                "create",
                name,
                self.p,
                "--replication-policy=automatic",
            ),
        )

    def secret_version(self, name: str) -> Step:
        """The secret's first value, from the file the operator names; an existing version is
        left alone (a new one is added with ``gcloud secrets versions add``, docs/DEPLOY.md)."""
        return Step(
            kind="secret-version",
            name=name,
            purpose=f"the first value of {name}, read from ${resources.SECRET_FILE_VARIABLE}",
            check=(
                "gcloud",
                "secrets",
                "versions",
                "describe",
                "latest",
                f"--secret={name}",
                self.p,
                "--format=json",
            ),
            create=(
                "gcloud",
                "secrets",
                "versions",
                "add",
                name,
                f"--data-file=${{{resources.SECRET_FILE_VARIABLE}}}",
                self.p,
                "--format=none",
            ),
        )

    def topic(self, name: str) -> Step:
        return Step(
            kind="topic",
            name=name,
            purpose="Pub/Sub topic (agenttrader/topology.py)",
            check=("gcloud", "pubsub", "topics", "describe", name, self.p, "--format=json"),
            create=("gcloud", "pubsub", "topics", "create", name, self.p),
        )

    def subscription(self, sub: topology.Subscription) -> Step:
        settings: list[str] = [
            f"--ack-deadline={sub.ack_deadline_seconds}",
            f"--message-retention-duration={sub.message_retention_seconds}s",
            # Idle subscriptions expire after 31 days by default; the dead-letter hold is idle
            # whenever nothing fails.
            "--expiration-period=never",
        ]
        clears: list[str] = []
        if sub.retry:
            settings += [
                f"--min-retry-delay={sub.retry.minimum_backoff_seconds}s",
                f"--max-retry-delay={sub.retry.maximum_backoff_seconds}s",
            ]
        else:
            clears.append("--clear-retry-policy")
        if sub.dead_letter:
            settings += [
                f"--dead-letter-topic={sub.dead_letter.topic}",
                f"--max-delivery-attempts={sub.dead_letter.max_delivery_attempts}",
            ]
        else:
            clears.append("--clear-dead-letter-policy")
        if sub.push_target:
            url = f"${{{url_var(sub.push_target)}}}"
            settings += [
                f"--push-endpoint={url}",
                f"--push-auth-service-account={self.email(resources.PUSH_INVOKER)}",
                f"--push-auth-token-audience={url}",
            ]
        fp = fingerprint(sub.name, sub.topic, settings, clears)
        base: Argv = ("gcloud", "pubsub", "subscriptions")
        if sub.push_target:
            purpose = f"push to {sub.push_target} on {sub.topic}, OIDC as the push invoker"
        else:
            purpose = f"pull, holds {sub.topic} for inspection and replay"
        if sub.dead_letter:
            purpose += f"; dead-letters to {sub.dead_letter.topic}"
        return Step(
            kind="subscription",
            name=sub.name,
            purpose=purpose,
            check=(*base, "describe", sub.name, self.p, "--format=json"),
            create=(
                *base,
                "create",
                sub.name,
                f"--topic={sub.topic}",
                self.p,
                *settings,
                f"--labels={FINGERPRINT_KEY}={fp}",
            ),
            update=(
                *base,
                "update",
                sub.name,
                self.p,
                *settings,
                *clears,
                f"--update-labels={FINGERPRINT_KEY}={fp}",
            ),
            probe=Fingerprinted(("labels", FINGERPRINT_KEY), fp),
        )

    def function(self, fn: Function) -> Step:
        args: list[str] = [
            "gcloud",
            "functions",
            "deploy",
            fn.name,
            "--gen2",
            self.p,
            f"--region={self.region}",
            f"--runtime={resources.RUNTIME}",
            "--source=.",
            f"--entry-point={fn.name}",
        ]
        if fn.trigger is Trigger.PUSH:
            args += ["--trigger-http", "--no-allow-unauthenticated"]
        elif fn.trigger is Trigger.CALLABLE:
            args += ["--trigger-http", "--allow-unauthenticated"]
        else:
            location = self.config.firestore_location or "${FIRESTORE_LOCATION}"
            args += [
                f"--trigger-event-filters=type={fn.event_type}",
                f"--trigger-event-filters=database={resources.FIRESTORE_DATABASE}",
                f"--trigger-event-filters-path-pattern=document={fn.document}",
                f"--trigger-location={location}",
                f"--trigger-service-account={self.email(resources.PUSH_INVOKER)}",
                "--retry",
            ]
        args += [
            f"--service-account={self.email(fn.account_id)}",
            "--build-service-account=projects/"
            f"{self.project}/serviceAccounts/{self.email(resources.BUILD_ACCOUNT)}",
            f"--timeout={resources.timeout_for(fn)}s",
            f"--memory={fn.memory}",
            f"--cpu={fn.cpu}",
            f"--concurrency={fn.concurrency}",
            "--min-instances=0",
            f"--max-instances={fn.max_instances}",
            resources.env_flag(resources.environment(self.settings, fn.name)),
        ]
        secrets = resources.secrets_flag(fn) if self.oauth_enabled else None
        if secrets is not None:
            args.append(secrets)
        fp = fingerprint(args, self.config.source_digest)
        deploy = (*args, f"--update-labels={FINGERPRINT_KEY}={fp}")
        return Step(
            kind="function",
            name=fn.name,
            purpose=f"{fn.trigger.value}: {fn.purpose}",
            check=self.describe_function(fn.name, "json"),
            create=deploy,
            update=deploy,
            probe=Fingerprinted(("labels", FINGERPRINT_KEY), fp),
            retries=1,
        )

    def service(self, svc: resources.Service) -> list[Step]:
        """A service: its source staged (shared core, its package, requirements, Procfile),
        then ``gcloud run deploy`` with CPU always allocated (its streams live between
        requests), a floor of instances, its own identity, health probes on its endpoint."""
        staged = f"{source.STAGE_ROOT}/{svc.name}"
        probe = f"httpGet.path={svc.health_path},httpGet.port={SERVICE_PORT}"
        args: list[str] = [
            "gcloud",
            "run",
            "deploy",
            svc.name,
            self.p,
            f"--region={self.region}",
            f"--source={staged}",
            f"--service-account={self.email(svc.account_id)}",
            "--build-service-account=projects/"
            f"{self.project}/serviceAccounts/{self.email(resources.BUILD_ACCOUNT)}",
            "--no-allow-unauthenticated",
            "--ingress=internal",
            "--no-cpu-throttling",
            f"--min-instances={svc.min_instances}",
            f"--max-instances={svc.max_instances}",
            f"--cpu={svc.cpu}",
            f"--memory={svc.memory}",
            f"--concurrency={svc.concurrency}",
            f"--port={SERVICE_PORT}",
            f"--startup-probe={probe},periodSeconds=2,failureThreshold=30,timeoutSeconds=2",
            f"--liveness-probe={probe},periodSeconds=30,failureThreshold=3,timeoutSeconds=5",
            resources.env_flag(resources.environment(self.settings, svc.name)),
        ]
        digest = dict(self.config.service_digests).get(svc.name, "0" * 16)
        fp = fingerprint(args, digest)
        deploy = (*args, f"--update-labels={FINGERPRINT_KEY}={fp}")
        return [
            Step(
                kind="service-source",
                name=staged,
                purpose=f"stages {svc.name}'s source: agenttrader/, {svc.package}/, "
                "requirements.txt, Procfile",
                create=(PYTHON, "-m", "infra", "source", f"--stage={svc.name}"),
            ),
            Step(
                kind="service",
                name=svc.name,
                purpose=svc.purpose,
                check=(
                    "gcloud",
                    "run",
                    "services",
                    "describe",
                    svc.name,
                    f"--region={self.region}",
                    self.p,
                    "--format=json",
                ),
                create=deploy,
                update=deploy,
                probe=Fingerprinted(("metadata", "labels", FINGERPRINT_KEY), fp),
                retries=1,
            ),
        ]

    def firestore_rules_and_indexes(self) -> Step:
        return Step(
            kind="firestore",
            name="rules-and-indexes",
            purpose="firestore.rules and firestore.indexes.json through firebase.json",
            create=(
                FIREBASE,
                "deploy",
                "--only",
                "firestore:rules,firestore:indexes",
                "--project",
                self.project,
                "--config",
                "firebase.json",
                "--non-interactive",
            ),
        )

    def request_log_exclusion(self) -> Step:
        """Cloud Run's request log of every successful push to ``sync_user`` (one a minute per
        tenant, ~1 KB each: the largest logging cost) is not ingested; failed requests are."""
        service = f"${{{service_var(resources.QUIET_REQUEST_LOGS)}}}"
        log_filter = (
            'resource.type="cloud_run_revision"'
            f' AND resource.labels.service_name="{service}"'
            ' AND log_id("run.googleapis.com/requests")'
            " AND httpRequest.status<400"
        )
        fp = fingerprint(resources.REQUEST_LOG_EXCLUSION, [log_filter])
        spec = (
            f"name={resources.REQUEST_LOG_EXCLUSION},"
            f"description=AgentTrader: successful push requests of"
            f" {resources.QUIET_REQUEST_LOGS} ({FINGERPRINT_KEY}={fp}),"
            f"filter={log_filter}"
        )
        base: Argv = ("gcloud", "logging", "sinks")
        return Step(
            kind="log-exclusion",
            name=resources.REQUEST_LOG_EXCLUSION,
            purpose=f"drops the request logs of {resources.QUIET_REQUEST_LOGS}'s successful pushes",
            check=(*base, "describe", "_Default", self.p, "--format=json"),
            create=(*base, "update", "_Default", f"--add-exclusion={spec}", self.p),
            update=(*base, "update", "_Default", f"--update-exclusion={spec}", self.p),
            probe=HasExclusion(resources.REQUEST_LOG_EXCLUSION, fp),
        )

    def scheduler_job(self) -> Step:
        settings = [
            f"--schedule={self.config.schedule}",
            f"--time-zone={resources.SCHEDULER_TIME_ZONE}",
            f"--topic={topology.SYNC_TICK}",
            f"--message-body={resources.TICK_BODY}",
        ]
        fp = fingerprint(resources.SCHEDULER_JOB, settings)
        description = (
            f"--description=AgentTrader: publishes {topology.SYNC_TICK} ({FINGERPRINT_KEY}={fp})"
        )
        where = (f"--location={self.region}", self.p)
        base: Argv = ("gcloud", "scheduler", "jobs")
        return Step(
            kind="scheduler-job",
            name=resources.SCHEDULER_JOB,
            purpose=f"publishes {topology.SYNC_TICK} on {self.config.schedule!r} (UTC)",
            check=(*base, "describe", resources.SCHEDULER_JOB, *where, "--format=json"),
            create=(
                *base,
                "create",
                "pubsub",
                resources.SCHEDULER_JOB,
                *where,
                *settings,
                description,
            ),
            update=(
                *base,
                "update",
                "pubsub",
                resources.SCHEDULER_JOB,
                *where,
                *settings,
                description,
            ),
            probe=Fingerprinted(("description",), fp),
        )

    # --- the admin console and Cloud Monitoring -----------------------------------------

    def hosting(self) -> list[Step]:
        """The console's page, built and configured for this project, on the project's default
        Hosting site (``PROJECT.web.app``); firebase-tools skips unchanged files."""
        return [
            Step(
                kind="hosting-build",
                name="console/web/dist",
                purpose="builds the admin console's page and its console-config.json",
                create=(
                    "node",
                    "console/web/build.mjs",
                    f"--project={self.project}",
                    f"--region={self.region}",
                ),
            ),
            Step(
                kind="hosting",
                name=f"{self.project}.web.app",
                purpose="Firebase Hosting site of the admin console (firebase.json hosting)",
                create=(
                    FIREBASE,
                    "deploy",
                    "--only",
                    "hosting",
                    "--project",
                    self.project,
                    "--config",
                    "firebase.json",
                    "--non-interactive",
                ),
            ),
        ]

    def channels(self, verb: str) -> Argv:
        return ("gcloud", "beta", "monitoring", "channels", verb, self.p)

    def policies(self, verb: str) -> Argv:
        return ("gcloud", "monitoring", "policies", verb, self.p)

    def dashboards(self, verb: str) -> Argv:
        return ("gcloud", "monitoring", "dashboards", verb, self.p)

    @staticmethod
    def display_filter(name: object) -> str:
        return f'--filter=displayName="{name}"'

    def channel_filter(self) -> str:
        return self.display_filter(monitoring.CHANNEL_NAME)

    def notification_channel(self, email: str) -> Step:
        fp = fingerprint(monitoring.CHANNEL_NAME, email)
        settings = (f"--channel-labels=email_address={email}",)
        return Step(
            kind="notification-channel",
            name=monitoring.CHANNEL_NAME,
            purpose=f"e-mails {email} when an alert policy fires",
            check=(*self.channels("list"), self.channel_filter(), "--format=json"),
            create=(
                *self.channels("create"),
                f"--display-name={monitoring.CHANNEL_NAME}",
                "--type=email",
                *settings,
                f"--user-labels={FINGERPRINT_KEY}={fp}",
            ),
            update=(
                *self.channels("update"),
                f"${{{ALERT_CHANNEL_VAR}}}",
                *settings,
                f"--update-user-labels={FINGERPRINT_KEY}={fp}",
            ),
            probe=Fingerprinted(("userLabels", FINGERPRINT_KEY), fp),
        )

    def monitoring(self, resource: monitoring.Resource) -> Step:
        fp = resource.fingerprint
        if resource.kind == "log-metric":
            base: Argv = ("gcloud", "logging", "metrics")
            source = f"--config-from-file={resource.path}"
            return Step(
                kind="log-metric",
                name=resource.name,
                purpose=str(resource.document["description"]).split(f" ({FINGERPRINT_KEY}")[0],
                check=(*base, "describe", resource.name, self.p, "--format=json"),
                create=(*base, "create", resource.name, source, self.p),
                update=(*base, "update", resource.name, source, self.p),
                probe=Fingerprinted(("description",), fp),
            )
        if resource.kind == "alert-policy":
            policy = next(p for p in monitoring.ALERT_POLICIES if p.display_name == resource.name)
            channel = f"${{{ALERT_CHANNEL_VAR}}}" if self.config.alert_email else None
            source = f"--policy-from-file={resource.path}"
            return Step(
                kind="alert-policy",
                name=resource.name,
                purpose=policy.condition.title
                + (" (notifies the channel)" if channel else " (no notification channel)"),
                check=(*self.policies("list"), self.display_filter(resource.name), "--format=json"),
                create=(
                    *self.policies("create"),
                    source,
                    *((f"--notification-channels={channel}",) if channel else ()),
                ),
                update=(
                    *self.policies("update"),
                    f"${{{policy_var(policy)}}}",
                    source,
                    f"--set-notification-channels={channel}"
                    if channel
                    else "--clear-notification-channels",
                ),
                probe=Fingerprinted(("userLabels", FINGERPRINT_KEY), fp),
            )
        source = f"--config-from-file={resource.path}"
        return Step(
            kind="dashboard",
            name=resource.name,
            purpose="invocations, errors, P50/P95/P99 latency, Firestore operations, pulses",
            check=(*self.dashboards("list"), self.display_filter(resource.name), "--format=json"),
            create=(*self.dashboards("create"), source),
            update=(*self.dashboards("update"), f"${{{DASHBOARD_VAR}}}", source),
            probe=Fingerprinted(("labels", FINGERPRINT_KEY), fp),
        )
