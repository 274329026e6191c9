"""The deployed functions, their identities and environment, and the APIs a deployment needs.

Entry point names are docs/DESIGN.md's contracts; the Pub/Sub side comes from
:mod:`agenttrader.topology`, the environment from :class:`agenttrader.settings.Settings`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from agenttrader import topology
from agenttrader.events import FIRESTORE_WRITTEN, FIRESTORE_WRITTEN_WITH_AUTH
from agenttrader.settings import Settings, SyncSchedule

RUNTIME = "python311"

FIRESTORE_DATABASE = "(default)"


class KekUse(Enum):
    """What an identity may do with the credentials KEK: exactly one of the two, never both."""

    ENCRYPT = "roles/cloudkms.cryptoKeyEncrypter"
    """Seals credentials (the secrets trigger, ``connect_alpaca``); cannot open them."""
    DECRYPT = "roles/cloudkms.cryptoKeyDecrypter"
    """Opens sealed credentials to call Alpaca (the worker); cannot seal."""


class Trigger(Enum):
    """How a function is reached."""

    PUSH = "push"
    """Authenticated HTTP, fed by the topology's push subscription naming it (OIDC token of
    the push invoker): explicit subscriptions carry the retry and dead-letter policies."""
    FIRESTORE = "firestore"
    """Eventarc Firestore trigger on ``document`` (retries on), delivered as the push
    invoker."""
    CALLABLE = "callable"
    """Public HTTP: a Firebase callable verifies the caller's ID token itself."""


@dataclass(frozen=True)
class Function:
    """One Cloud Run function (2nd gen); its name is its entry point."""

    name: str
    module: str
    """Where the entry point is defined (``main.py`` re-exports it)."""
    trigger: Trigger
    purpose: str
    timeout_seconds: int | None
    """``None``: the ack deadline of the push subscription feeding it (:func:`timeout_for`)."""
    concurrency: int
    max_instances: int
    memory: str = "512Mi"
    cpu: str = "1"
    project_roles: tuple[str, ...] = ("roles/datastore.user",)
    """Project-level roles of its own service account (Firestore has no narrower IAM scope)."""
    publishes: tuple[str, ...] = ()
    """Topics it publishes to: ``roles/pubsub.publisher`` on each topic, nothing wider."""
    subscribes: tuple[str, ...] = ()
    """Pull subscriptions it reads and acknowledges: ``roles/pubsub.subscriber`` on each."""
    event_type: str | None = None
    """``FIRESTORE``: the Eventarc event type."""
    document: str | None = None
    """``FIRESTORE``: the document path pattern."""
    kek: KekUse | None = None
    """Its role on the credentials KEK (:data:`KEK_KEY`), if it handles credentials."""
    secrets: tuple[str, ...] = ()
    """Settings it reads from Secret Manager (:data:`SECRETS`), not from ``--set-env-vars``."""

    @property
    def account_id(self) -> str:
        return account_id_for(self.name)


FUNCTIONS: tuple[Function, ...] = (
    Function(
        name="publish_user_syncs",
        module="publisher.main",
        trigger=Trigger.PUSH,
        purpose="fans a sync-tick out to one user-sync message per eligible user",
        timeout_seconds=None,
        concurrency=1,
        max_instances=5,
        # One tick holds the eligible users and their messages: 611 MB peak measured at
        # 1,000,000 tenants (benchmarks/publisher_scale.py); 512 MiB serves ~800,000.
        memory="1Gi",
        publishes=(topology.USER_SYNC,),
    ),
    Function(
        name="sync_user",
        module="sync_worker.main",
        trigger=Trigger.PUSH,
        purpose="syncs one user's Alpaca account into Firestore",
        timeout_seconds=None,
        concurrency=40,
        max_instances=100,
        publishes=(topology.USER_SYNC_DEAD_LETTER,),
        kek=KekUse.DECRYPT,
    ),
    Function(
        name="on_alpaca_secret_written",
        module="accounts.main",
        trigger=Trigger.FIRESTORE,
        purpose="validates newly written Alpaca keys and requests the first sync",
        timeout_seconds=60,
        concurrency=10,
        max_instances=10,
        publishes=(topology.USER_SYNC,),
        event_type=FIRESTORE_WRITTEN,
        document="users/{uid}/secrets/alpaca",
        kek=KekUse.ENCRYPT,
    ),
    Function(
        name="on_alpaca_config_written",
        module="publisher.main",
        trigger=Trigger.FIRESTORE,
        purpose="keeps the user's roster entry (who a tick publishes to) in step",
        timeout_seconds=60,
        concurrency=10,
        max_instances=10,
        event_type=FIRESTORE_WRITTEN,
        document="users/{uid}/config/alpaca",
    ),
    Function(
        name="on_trading_status_written",
        module="publisher.main",
        trigger=Trigger.FIRESTORE,
        purpose="keeps the roster entry in step; audits kill-switch toggles (who, old -> new)",
        timeout_seconds=60,
        concurrency=10,
        max_instances=10,
        event_type=FIRESTORE_WRITTEN_WITH_AUTH,
        document="users/{uid}/status/trading",
    ),
    Function(
        name="onboard_user",
        module="accounts.main",
        trigger=Trigger.CALLABLE,
        purpose="Firebase callable: creates the caller's user documents",
        timeout_seconds=60,
        concurrency=20,
        max_instances=10,
    ),
    Function(
        name="delete_account",
        module="accounts.main",
        trigger=Trigger.CALLABLE,
        purpose="Firebase callable: deletes the caller's tenant data, audited for operators",
        timeout_seconds=120,
        concurrency=10,
        max_instances=5,
    ),
    Function(
        name="connect_alpaca",
        module="accounts.main",
        trigger=Trigger.CALLABLE,
        purpose="Firebase callable: Alpaca OAuth code -> access token, stored sealed",
        timeout_seconds=60,
        concurrency=20,
        max_instances=10,
        publishes=(topology.USER_SYNC,),
        kek=KekUse.ENCRYPT,
        secrets=("ALPACA_OAUTH_CLIENT_SECRET",),
    ),
    Function(
        name="disconnect_alpaca",
        module="accounts.main",
        trigger=Trigger.CALLABLE,
        purpose="Firebase callable: deletes the caller's Alpaca credentials",
        timeout_seconds=60,
        concurrency=20,
        max_instances=5,
    ),
    Function(
        name="migrate_legacy_data",
        module="accounts.main",
        trigger=Trigger.CALLABLE,
        purpose="Firebase callable (admin claim): imports the legacy single-user snapshot",
        timeout_seconds=300,
        concurrency=1,
        max_instances=1,
    ),
    Function(
        name="generate_trading_signal",
        module="signal_worker.main",
        trigger=Trigger.CALLABLE,
        purpose="Firebase callable: a Gemini trading signal from the caller's snapshot",
        timeout_seconds=60,
        concurrency=20,
        max_instances=20,
        project_roles=("roles/datastore.user", "roles/aiplatform.user"),
    ),
    *(
        Function(
            name=name,
            module="console.main",
            trigger=Trigger.CALLABLE,
            purpose=f"Firebase callable (admin claim), the admin console: {purpose}",
            timeout_seconds=timeout,
            concurrency=10,
            max_instances=3,
            project_roles=roles,
            publishes=publishes,
            subscribes=subscribes,
        )
        for name, purpose, timeout, roles, publishes, subscribes in (
            (
                "admin_status",
                "pulses, failing tenants, dead-letter depth, alerts",
                60,
                ("roles/datastore.viewer",),
                (),
                (topology.USER_SYNC_DEAD_LETTER_HOLD,),
            ),
            (
                "admin_tenants",
                "tenants paged by state or search",
                60,
                ("roles/datastore.viewer",),
                (),
                (),
            ),
            (
                "admin_tenant",
                "one tenant and its audit trail",
                60,
                ("roles/datastore.viewer",),
                (),
                (),
            ),
            (
                "admin_dead_letters",
                "held dead letters by error class",
                120,
                (),
                (),
                (topology.USER_SYNC_DEAD_LETTER_HOLD,),
            ),
            (
                "admin_replay_dead_letters",
                "republishes dead letters (rate-limited)",
                300,
                (),
                (topology.USER_SYNC,),
                (topology.USER_SYNC_DEAD_LETTER_HOLD,),
            ),
            (
                "admin_purge_dead_letters",
                "deletes dead letters",
                120,
                (),
                (),
                (topology.USER_SYNC_DEAD_LETTER_HOLD,),
            ),
        )
    ),
)


@dataclass(frozen=True)
class Service:
    """A Cloud Run service that is not a function: a long-running process with its own
    identity, deployed from a staged copy of its package (:func:`infra.source.service_files`)."""

    name: str
    """The Cloud Run service's name."""
    package: str
    """What ``python -m PACKAGE`` runs (its ``Procfile``)."""
    purpose: str
    account: str
    """Its own service account id."""
    min_instances: int
    max_instances: int
    memory: str = "1Gi"
    cpu: str = "1"
    concurrency: int = 10
    """Requests one instance serves at once: only health probes reach it."""
    health_path: str = "/healthz"
    project_roles: tuple[str, ...] = ("roles/datastore.user",)
    publishes: tuple[str, ...] = ()
    subscribes: tuple[str, ...] = ()
    kek: KekUse | None = None
    """What its account may do with the credentials KEK (granted on the key alone)."""

    @property
    def account_id(self) -> str:
        return self.account


STREAM_GATEWAY = Service(
    name="stream-gateway",
    package="stream_gateway",
    purpose="holds every eligible tenant's Alpaca trade-update stream (docs/DESIGN.md, Streams)",
    account="at-stream-gateway",
    min_instances=1,
    max_instances=20,
    memory="2Gi",
    publishes=(topology.USER_SYNC,),
    kek=KekUse.DECRYPT,
)
SERVICES: tuple[Service, ...] = (STREAM_GATEWAY,)
"""Services besides the functions: always-allocated CPU, at least ``min_instances`` running."""


def identities() -> tuple[Function | Service, ...]:
    """Every function and service: what runs under an account of its own (read at call
    time, so a test's replacement of either tuple is seen)."""
    return (*FUNCTIONS, *SERVICES)


PUSH_INVOKER = "at-push-invoker"
"""Identity of every push delivery: Pub/Sub push subscriptions and the Eventarc trigger."""
BUILD_ACCOUNT = "at-build"
"""Identity of Cloud Build when it builds the functions (the default one may lack roles)."""
BUILD_ROLES: tuple[str, ...] = (
    "roles/logging.logWriter",
    "roles/artifactregistry.writer",
    "roles/storage.objectAdmin",
)
"""What Google documents for a custom Cloud Run functions build service account."""

KEK_KEY_RING = "agenttrader"
"""The Cloud KMS key ring, in the deployment's region (key rings cannot be deleted)."""
KEK_KEY = "tenant-credentials"
"""The key-encryption key sealing tenant credentials (``CREDENTIALS_KEK_URI``)."""
KEK_ROTATION_DAYS = 90
"""Cloud KMS makes a new primary version this often; older versions still decrypt what they
wrapped, and ``agenttrader credentials rewrap`` moves data keys onto the new one."""

SECRETS: Mapping[str, str] = {"ALPACA_OAUTH_CLIENT_SECRET": "alpaca-oauth-client-secret"}
"""Settings held in Secret Manager, by variable: the secret's name. One secret for the app
(never one per tenant); the operator supplies its value, no plan prints it."""
SECRET_FILE_VARIABLE = "ALPACA_OAUTH_CLIENT_SECRET_FILE"
"""Where apply reads the OAuth client secret's first value from (a file the operator made;
only its path is ever shown). Needed once, and only with ``ALPACA_OAUTH_CLIENT_ID`` set."""


def kek_uri(project: str, region: str) -> str:
    """``CREDENTIALS_KEK_URI`` of the key the deployment creates."""
    return (
        f"gcp-kms://projects/{project}/locations/{region}/keyRings/{KEK_KEY_RING}"
        f"/cryptoKeys/{KEK_KEY}"
    )


SCHEDULER_JOB = "sync-tick-every-minute"
REQUEST_LOG_EXCLUSION = "agenttrader-sync-user-ok-requests"
"""Exclusion on the ``_Default`` log sink: Cloud Run request logs of successful pushes."""
QUIET_REQUEST_LOGS = "sync_user"
"""The function whose successful request logs are not ingested (one per tenant a minute)."""
DEFAULT_SCHEDULE = "* * * * *"
SCHEDULER_TIME_ZONE = "Etc/UTC"
TICK_BODY = "{}"

WORKER_ALPACA_REQUESTS = 2
"""Alpaca requests one sync makes (account, positions). The market-clock call of the one
``check_clock`` message of a pulse starts only when it still ends within the ack deadline
(``agenttrader.market_clock.clock_call_fits``), so it does not add to the worst case."""
WORKER_FIRESTORE_ALLOWANCE_SECONDS = 10
"""Firestore reads and writes of one sync, generously."""

REQUIRED_APIS: tuple[str, ...] = (
    "aiplatform.googleapis.com",
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudkms.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "cloudscheduler.googleapis.com",
    "eventarc.googleapis.com",
    "firebase.googleapis.com",
    "firebaserules.googleapis.com",
    "firestore.googleapis.com",
    "iam.googleapis.com",
    "identitytoolkit.googleapis.com",
    "firebasehosting.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "storage.googleapis.com",
)

_ACCOUNT_ID = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")


def account_id_for(function: str) -> str:
    """``sync_user`` -> ``at-sync-user`` (service account ids: 6-30 of ``[a-z0-9-]``)."""
    account = "at-" + function.replace("_", "-").lower()
    if not _ACCOUNT_ID.match(account):
        raise ValueError(f"{function!r} gives an invalid service account id {account!r}")
    return account


def email(account_id: str, project: str) -> str:
    return f"{account_id}@{project}.iam.gserviceaccount.com"


def function(name: str) -> Function:
    for fn in FUNCTIONS:
        if fn.name == name:
            return fn
    raise KeyError(name)


def push_subscription_for(name: str) -> topology.Subscription | None:
    """The topology's push subscription delivering to function ``name``, if any."""
    for sub in topology.SUBSCRIPTIONS:
        if sub.push_target == name:
            return sub
    return None


def timeout_for(fn: Function) -> int:
    """A push target answers within its subscription's ack deadline: a longer run would be
    redelivered while it is still going."""
    if fn.timeout_seconds is not None:
        return fn.timeout_seconds
    sub = push_subscription_for(fn.name)
    if sub is None:
        raise ValueError(f"{fn.name} has no timeout and no topology subscription pushes to it")
    return sub.ack_deadline_seconds


# --- environment --------------------------------------------------------------------------

_ENV_NAMES: Mapping[str, str] = {
    "project": "GOOGLE_CLOUD_PROJECT",
    "extra_alpaca_base_urls": "ALPACA_ALLOWED_BASE_URLS",
}
"""Settings fields whose variable is not simply the field name in upper case."""

NEVER_DEPLOYED: frozenset[str] = frozenset(
    {"PUBSUB_EMULATOR_HOST", "FIRESTORE_EMULATOR_HOST", "FIREBASE_AUTH_EMULATOR_HOST"}
)
"""Emulator switches: in production they would send everything to a machine that isn't there."""
REFUSED: Mapping[str, str] = {
    "VERTEX_AI_BASE_URL": "it replaces Vertex AI with a local stand-in (tests only)",
    "ALPACA_OAUTH_CLIENT_SECRET": (
        f"it is a secret: the functions read it from Secret Manager"
        f" ({SECRETS['ALPACA_OAUTH_CLIENT_SECRET']}); apply takes its first value from the file"
        f" named by {SECRET_FILE_VARIABLE}, and no plan or command line ever shows it"
    ),
}
"""Settings never deployed as environment variables (and refused as ``--set`` overrides)."""
PLANNED: Mapping[str, str] = {
    "GOOGLE_CLOUD_PROJECT": "is the --project being deployed to",
    "SYNC_SCHEDULE": "is chosen with --sync-schedule",
    "CREDENTIALS_KEK_URI": "names the key the plan creates (key ring and key in --region)",
}
"""Settings the plan decides itself."""
FUNCTION_SETTINGS: Mapping[str, str] = {
    "SYNC_SCHEDULE": "publish_user_syncs",
    "RECONCILE_EVERY_TICKS": "publish_user_syncs",
}
"""Settings only one function reads: deployed to that function alone, so changing one
redeploys only it."""
PRODUCTION_SYNC_SCHEDULE = SyncSchedule.MARKET_HOURS
"""The plan's ``SYNC_SCHEDULE`` (``--sync-schedule``): sync while Alpaca's clock says the
market is open (Settings' own default, ``always``, is the local stack's and the tests')."""


def env_name(field_name: str) -> str:
    """The environment variable of a :class:`Settings` field."""
    return _ENV_NAMES.get(field_name, field_name.upper())


def deploy_settings(
    project: str,
    region: str,
    overrides: Mapping[str, str],
    sync_schedule: str = PRODUCTION_SYNC_SCHEDULE.value,
) -> Settings:
    """The functions' settings: Settings' defaults, ``overrides`` (variable names) on top,
    ``sync_schedule`` (``--sync-schedule``) as ``SYNC_SCHEDULE`` and the planned KEK as
    ``CREDENTIALS_KEK_URI``.

    Refuses the emulator switches, the secrets and test-only overrides, what the plan decides
    (:data:`PLANNED`), and unknown names.
    """
    known = {env_name(f.name) for f in dataclasses.fields(Settings)}
    for name in overrides:
        if name in NEVER_DEPLOYED or name.endswith("_EMULATOR_HOST"):
            raise ValueError(f"{name} is an emulator switch and is never deployed")
        if name in REFUSED:
            raise ValueError(f"{name} is not deployed: {REFUSED[name]}")
        if name in PLANNED:
            raise ValueError(f"{name} {PLANNED[name]}")
        if name not in known:
            raise ValueError(f"{name} is not a setting (known: {', '.join(sorted(known))})")
    env = {
        **overrides,
        "SYNC_SCHEDULE": sync_schedule,
        "GOOGLE_CLOUD_PROJECT": project,
        "CREDENTIALS_KEK_URI": kek_uri(project, region),
    }
    return Settings.from_env(env)


def _env_value(value: object) -> str | None:
    if value is None or value == ():
        return None
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def environment(settings: Settings, function: str | None = None) -> dict[str, str]:
    """Every setting as its environment variable, in field order; unset optional ones, the
    emulator switches and the settings of other functions (:data:`FUNCTION_SETTINGS`; all of
    them without ``function``) left out. ``Settings.from_env`` of a function's result gives
    ``settings`` back, as far as that function reads them (a unit test holds this)."""
    env: dict[str, str] = {}
    for f in dataclasses.fields(Settings):
        name = env_name(f.name)
        if name in NEVER_DEPLOYED or name in REFUSED:
            continue
        if name in FUNCTION_SETTINGS and FUNCTION_SETTINGS[name] != function:
            continue
        value = _env_value(getattr(settings, f.name))
        if value is not None:
            env[name] = value
    return env


def secrets_flag(function: Function) -> str | None:
    """``--set-secrets`` of a function reading settings from Secret Manager (latest version,
    resolved when an instance starts), else ``None``."""
    if not function.secrets:
        return None
    return "--set-secrets=" + ",".join(
        f"{name}={SECRETS[name]}:latest" for name in function.secrets
    )


def env_flag(env: Mapping[str, str]) -> str:
    """``--set-env-vars``; switches to gcloud's ``^DELIM^`` syntax when a value has a comma."""
    values = "".join(env.values())
    if "," not in values:
        return "--set-env-vars=" + ",".join(f"{k}={v}" for k, v in env.items())
    delimiter = next(d for d in "@|;#~" if d not in values and d not in "".join(env))
    return f"--set-env-vars=^{delimiter}^" + delimiter.join(f"{k}={v}" for k, v in env.items())
