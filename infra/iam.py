"""Least privilege: every role binding the deployment makes, and why.

Derived, not restated: the publishers from :data:`infra.resources.FUNCTIONS`, the invoker and
the Pub/Sub service agent's roles from the topology's push subscriptions and dead-letter
policies. docs/DEPLOY.md's table is :func:`markdown_table` (a unit test keeps them equal).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from agenttrader import topology
from infra import resources
from infra.resources import BUILD_ACCOUNT, BUILD_ROLES, PUSH_INVOKER, Trigger

PUBSUB_AGENT = "pubsub-service-agent"
"""Google's Pub/Sub service agent, ``service-PROJECT_NUMBER@gcp-sa-pubsub...``."""
PUBSUB_AGENT_MEMBER = (
    "serviceAccount:service-${PROJECT_NUMBER}@gcp-sa-pubsub.iam.gserviceaccount.com"
)


class Scope(Enum):
    """Where a role is bound: the narrowest resource that carries the permission."""

    PROJECT = "project"
    TOPIC = "topic"
    SUBSCRIPTION = "subscription"
    SERVICE = "service"
    """The Cloud Run service of a function (``name`` is the function)."""
    SERVICE_ACCOUNT = "service-account"
    """A service account as a resource (``name`` is its account id)."""
    CRYPTO_KEY = "crypto-key"
    """A Cloud KMS key of the deployment's key ring (``name`` is the key)."""
    SECRET = "secret"
    """A Secret Manager secret (``name`` is the secret)."""


@dataclass(frozen=True)
class Grant:
    principal: str
    """An account id of ours, or :data:`PUBSUB_AGENT`."""
    role: str
    scope: Scope
    resource: str
    why: str

    def member(self, project: str) -> str:
        if self.principal == PUBSUB_AGENT:
            return PUBSUB_AGENT_MEMBER
        return f"serviceAccount:{resources.email(self.principal, project)}"

    @property
    def on(self) -> str:
        if self.scope is Scope.PROJECT:
            return "project"
        if self.scope is Scope.SERVICE:
            return f"service of `{self.resource}`"
        return f"{self.scope.value} `{self.resource}`"


def grants() -> tuple[Grant, ...]:
    """Every binding, in the order they are applied (reads the topology at call time)."""
    out: list[Grant] = []
    for fn in resources.identities():
        for role in fn.project_roles:
            out.append(Grant(fn.account_id, role, Scope.PROJECT, "", _ROLE_WHY[role]))
        for topic in fn.publishes:
            out.append(
                Grant(
                    fn.account_id,
                    "roles/pubsub.publisher",
                    Scope.TOPIC,
                    topic,
                    f"publishes to `{topic}`, no other topic",
                )
            )
        for subscription in fn.subscribes:
            out.append(
                Grant(
                    fn.account_id,
                    "roles/pubsub.subscriber",
                    Scope.SUBSCRIPTION,
                    subscription,
                    f"pulls and acknowledges `{subscription}`, no other subscription",
                )
            )
    out += kek_grants()
    for fn in resources.FUNCTIONS:
        for name in fn.secrets:
            out.append(
                Grant(
                    fn.account_id,
                    "roles/secretmanager.secretAccessor",
                    Scope.SECRET,
                    resources.SECRETS[name],
                    f"reads `{name}` when an instance starts, no other secret",
                )
            )
    push_targets = [s.push_target for s in topology.SUBSCRIPTIONS if s.push_target]
    event_targets = [f.name for f in resources.FUNCTIONS if f.trigger is Trigger.FIRESTORE]
    for target in (*push_targets, *event_targets):
        out.append(
            Grant(
                PUSH_INVOKER,
                "roles/run.invoker",
                Scope.SERVICE,
                target,
                "delivers pushed messages / events to this function only",
            )
        )
    if event_targets:
        out.append(
            Grant(
                PUSH_INVOKER,
                "roles/eventarc.eventReceiver",
                Scope.PROJECT,
                "",
                "identity of the Eventarc Firestore trigger (receives its events)",
            )
        )
    if push_targets or event_targets:
        out.append(
            Grant(
                PUBSUB_AGENT,
                "roles/iam.serviceAccountTokenCreator",
                Scope.SERVICE_ACCOUNT,
                PUSH_INVOKER,
                "mints the OIDC tokens of push deliveries (needed in projects from before"
                " 2021-04-08; harmless after)",
            )
        )
    for sub in topology.SUBSCRIPTIONS:
        if sub.dead_letter is None:
            continue
        out.append(
            Grant(
                PUBSUB_AGENT,
                "roles/pubsub.publisher",
                Scope.TOPIC,
                sub.dead_letter.topic,
                f"forwards messages `{sub.name}` gave up on",
            )
        )
        out.append(
            Grant(
                PUBSUB_AGENT,
                "roles/pubsub.subscriber",
                Scope.SUBSCRIPTION,
                sub.name,
                "acknowledges the messages it dead-lettered",
            )
        )
    for role in BUILD_ROLES:
        out.append(Grant(BUILD_ACCOUNT, role, Scope.PROJECT, "", _ROLE_WHY[role]))
    return tuple(out)


_KEK_WHY = {
    resources.KekUse.ENCRYPT: "seals tenant credentials; cannot open them",
    resources.KekUse.DECRYPT: "opens sealed tenant credentials to call Alpaca; cannot seal",
}


def kek_grants() -> list[Grant]:
    """Who may use the credentials KEK, and for what: only its key, never the key ring or the
    project, and never both roles for one identity."""
    return [
        Grant(
            user.account_id, user.kek.value, Scope.CRYPTO_KEY, resources.KEK_KEY, _KEK_WHY[user.kek]
        )
        for user in resources.identities()
        if user.kek is not None
    ]


_ROLE_WHY = {
    "roles/datastore.user": "reads and writes Firestore",
    "roles/datastore.viewer": "reads Firestore, writes nothing",
    "roles/aiplatform.user": "calls Gemini on Vertex AI",
    "roles/logging.logWriter": "writes the build logs",
    "roles/artifactregistry.writer": "stores the built images",
    "roles/storage.objectAdmin": "reads the uploaded source, caches build layers",
}


def principal_label(principal: str) -> str:
    if principal == PUBSUB_AGENT:
        return "Pub/Sub service agent"
    return f"`{principal}`"


def markdown_table() -> str:
    """The least-privilege table of docs/DEPLOY.md."""
    rows = [
        "| principal | used as | role | on | why |",
        "|---|---|---|---|---|",
    ]
    used_as = {fn.account_id: f"runtime of `{fn.name}`" for fn in resources.FUNCTIONS}
    used_as.update(
        {svc.account_id: f"runtime of the `{svc.name}` service" for svc in resources.SERVICES}
    )
    used_as[PUSH_INVOKER] = "OIDC identity of push subscriptions and the Eventarc trigger"
    used_as[BUILD_ACCOUNT] = "Cloud Build, building the functions"
    used_as[PUBSUB_AGENT] = "Google-managed (dead-lettering, push tokens)"
    for grant in grants():
        rows.append(
            f"| {principal_label(grant.principal)} | {used_as.get(grant.principal, 'a service')} "
            f"| `{grant.role}` | {grant.on} | {grant.why} |"
        )
    for fn in resources.FUNCTIONS:
        if fn.trigger is Trigger.CALLABLE:
            rows.append(
                f"| `allUsers` | callers of `{fn.name}` | `roles/run.invoker` "
                f"| service of `{fn.name}` | a Firebase callable: the function verifies the "
                "caller's ID token itself (`--allow-unauthenticated`) |"
            )
    rows.append(
        f"| Cloud Scheduler service agent | publishes `{topology.SYNC_TICK}` | (its own "
        "`roles/cloudscheduler.serviceAgent`, granted by Google) | project | a Pub/Sub-target "
        "job publishes as Google's agent and cannot name another account |"
    )
    return "\n".join(rows) + "\n"
