"""apply against a fake Google Cloud: preconditions stop it before any change, a first apply
creates everything, a second changes nothing, drift is updated, failures stop it cleanly."""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest

from agenttrader import topology
from infra import indexes, monitoring, resources
from infra.apply import apply, local_problems
from infra.model import FINGERPRINT_KEY, Plan, Result
from infra.plan import FIREBASE, PYTHON, DeployConfig, build_plan, deployed

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "acme-trading"
REGION = "us-central1"
NUMBER = "123456789012"
AGENT = f"serviceAccount:service-{NUMBER}@gcp-sa-pubsub.iam.gserviceaccount.com"
SELF_IDEMPOTENT = (FIREBASE, "node", PYTHON)
"""Steps without a check: they run every apply (firebase deploy, the console's build, staging
a service's source)."""
MUTATING_VERBS = {"create", "update", "deploy", "add-iam-policy-binding", "enable", "delete", "add"}
VERBS = {
    "create",
    "update",
    "deploy",
    "describe",
    "add-iam-policy-binding",
    "get-iam-policy",
    "add",
}
NEXT_ROTATION = "2030-01-01T00:00:00Z"


def is_mutation(argv: Sequence[str]) -> bool:
    if argv[0] == FIREBASE:
        return argv[1] == "deploy"
    if argv[0] == "node":  # builds the console's page into the working tree
        return True
    if argv[0] == PYTHON:  # stages a service's source; `next-rotation-time` only prints
        return "source" in argv
    return any(word in MUTATING_VERBS for word in argv if not word.startswith("-"))


class FakeCloud:
    """Enough of gcloud and firebase-tools to apply a plan: resources with labels and
    descriptions, IAM policies, function URLs; every call recorded."""

    def __init__(
        self,
        *,
        account: str = "ops@example.com",
        apis: Sequence[str] = resources.REQUIRED_APIS,
        firestore_type: str | None = "FIRESTORE_NATIVE",
        firebase_login: bool = True,
        adc: bool = False,
        environ: dict[str, str] | None = None,
    ) -> None:
        self.environ = environ or {}
        """What ``printenv`` finds (the operator's shell)."""
        self.account = account
        self.apis = list(apis)
        self.firestore_type = firestore_type
        self.firebase_login = firebase_login
        self.adc = adc
        self.calls: list[tuple[str, ...]] = []
        self.resources: dict[tuple[str, str], dict[str, object]] = {}
        self.policies: dict[tuple[str, str], dict[str, set[str]]] = {}
        self.sinks: dict[str, list[dict[str, str]]] = {}
        self.fail: dict[str, int] = {}
        """Substring of a command -> how many more times it fails."""

    @property
    def mutations(self) -> list[tuple[str, ...]]:
        return [c for c in self.calls if is_mutation(c)]

    def __call__(self, argv: Sequence[str], *, capture: bool = True) -> Result:
        argv = tuple(argv)
        self.calls.append(argv)
        line = " ".join(argv)
        assert "${" not in line, f"unresolved placeholder: {line}"
        assert capture != is_mutation(argv), f"reads are captured, mutations stream: {line}"
        for needle, remaining in self.fail.items():
            if remaining and needle in line:
                self.fail[needle] = remaining - 1
                return Result(1, "", "simulated failure")
        return self._answer(argv)

    # -- the simulation ------------------------------------------------------------------

    def _answer(self, argv: tuple[str, ...]) -> Result:
        words = [a for a in argv if not a.startswith("--")]
        opts: dict[str, list[str]] = {}
        for a in argv:
            if a.startswith("--"):
                name, _, value = a[2:].partition("=")
                opts.setdefault(name, []).append(value)
        fmt = (opts.get("format") or [""])[0]
        if argv[0] == "printenv":
            value = self.environ.get(argv[1])
            return Result(0, value + "\n") if value else Result(1)
        if argv[:4] == (".venv/bin/python", "-m", "infra", "next-rotation-time"):
            return Result(0, NEXT_ROTATION + "\n")
        if argv[0] == "node":
            assert argv[1] == "console/web/build.mjs"
            return Result(0)
        if argv[0] == PYTHON:
            assert argv[1:5] == ("-m", "infra", "source", "--stage=stream-gateway")
            return Result(0)
        monitoring_group = _monitoring_group(words)
        if monitoring_group is not None:
            return self._monitoring(monitoring_group, words, opts)
        if argv[0] == FIREBASE:
            if argv[1] == "login:list":
                result = [{"user": {"email": self.account}}] if self.firebase_login else None
                body = {"status": "success", **({"result": result} if result else {})}
                return Result(0, json.dumps(body))
            assert argv[1] == "deploy"
            return Result(0)
        if words[1:3] == ["auth", "list"]:
            return Result(0, self.account + "\n" if self.account else "")
        if words[1:3] == ["auth", "application-default"]:
            return Result(0, "token") if self.adc else Result(1, "", "no ADC")
        if words[1:3] == ["services", "list"]:
            return Result(0, "\n".join(self.apis) + "\n")
        if words[1:3] == ["projects", "describe"]:
            assert words[3] == PROJECT
            return Result(0, NUMBER + "\n")
        if words[1:4] == ["firestore", "databases", "describe"]:
            if self.firestore_type is None:
                return Result(1, "", "NOT_FOUND: database (default) does not exist")
            value = {"value(type)": self.firestore_type, "value(locationId)": "nam5"}[fmt]
            return Result(0, value + "\n")
        verb_at = next(i for i, w in enumerate(words) if w in VERBS)
        group = tuple(words[1:verb_at])
        verb = words[verb_at]
        name = words[verb_at + 1]
        if group == ("scheduler", "jobs") and name == "pubsub":
            name = words[verb_at + 2]
        if group == ("iam", "service-accounts"):
            name = name.split("@")[0]
        if group == ("run",) and verb == "deploy":  # a service: described as a run service
            group = ("run", "services")
        if group == ("secrets", "versions") and verb == "describe":
            name = opts["secret"][0]  # describe latest --secret=NAME; add NAME
        key = (" ".join(group), name)
        if group == ("logging", "sinks"):
            return self._sink(name, verb, opts)
        if verb in ("get-iam-policy", "add-iam-policy-binding"):
            return self._iam(key, verb, opts)
        exists = key in self.resources
        if verb == "describe":
            if not exists:
                return Result(1, "", "NOT_FOUND")
            if fmt == "value(serviceConfig.uri)":
                return Result(0, f"https://{name.replace('_', '-')}-abc123-uc.a.run.app\n")
            if fmt == "value(serviceConfig.service)":
                service = f"projects/{PROJECT}/locations/{REGION}/services/{name.replace('_', '-')}"
                return Result(0, service + "\n")
            return Result(0, json.dumps(self.resources[key]))
        if verb == "create" and exists:
            return Result(1, "", "ALREADY_EXISTS")
        if verb == "update" and not exists:
            return Result(1, "", "NOT_FOUND")
        resource = dict(self.resources.get(key, {}))
        labels = dict(resource.get("labels", {}))  # type: ignore[call-overload]
        for pair in opts.get("labels", []) + opts.get("update-labels", []):
            k, _, v = pair.partition("=")
            labels[k] = v
        resource["labels"] = labels
        if group == ("run", "services"):
            resource["metadata"] = {"labels": labels}
        if "description" in opts:
            resource["description"] = opts["description"][0]
        resource["flags"] = opts
        self.resources[key] = resource
        if group == ("functions",):
            service = name.replace("_", "-")
            self.resources[("run services", service)] = {"function": name}
        return Result(0)

    def _monitoring(self, group: str, words: list[str], opts: dict[str, list[str]]) -> Result:
        """Log metrics (by name), alert policies, dashboards and channels (by display name;
        Google names them ``.../ID``), their content read from the file the command names."""
        verb = words[words.index(group.rsplit(maxsplit=1)[-1]) + 1]
        if verb in ("list", "describe"):
            wanted = (
                words[-1] if verb == "describe" else opts["filter"][0].split("=", 1)[1].strip('"')
            )
            found = [r for (g, _), r in self.resources.items() if g == group and r["key"] == wanted]
            if verb == "describe":
                return Result(0, json.dumps(found[0])) if found else Result(1, "", "NOT_FOUND")
            if "value(name)" in (opts.get("format") or [""])[0]:
                return Result(0, "".join(f"{r['name']}\n" for r in found))
            return Result(0, json.dumps(found))
        source = (opts.get("config-from-file") or opts.get("policy-from-file") or [""])[0]
        document: dict[str, object] = json.loads((ROOT / source).read_text()) if source else {}
        if group == "beta monitoring channels":
            labels = dict(pair.split("=", 1) for pair in opts.get("user-labels", []))
            labels.update(pair.split("=", 1) for pair in opts.get("update-user-labels", []))
            document = {"displayName": opts.get("display-name", [""])[0], "userLabels": labels}
        if verb == "create":
            key = str(
                document.get("name") if group == "logging metrics" else document["displayName"]
            )
            name = (
                key if group == "logging metrics" else f"projects/{PROJECT}/x/{len(self.resources)}"
            )
            if (group, name) in self.resources:
                return Result(1, "", "ALREADY_EXISTS")
        else:
            name = words[words.index(verb) + 1]
            if (group, name) not in self.resources:
                return Result(1, "", "NOT_FOUND")
            previous = self.resources[(group, name)]
            key = str(previous["key"])
            if group == "beta monitoring channels":
                document = {
                    **previous,
                    "userLabels": {**previous["userLabels"], **document["userLabels"]},
                }  # type: ignore[dict-item]
        self.resources[(group, name)] = {**document, "name": name, "key": key, "flags": opts}
        return Result(0)

    def _sink(self, name: str, verb: str, opts: dict[str, list[str]]) -> Result:
        """The project's ``_Default`` log sink always exists; exclusions come and go."""
        assert name == "_Default"
        exclusions: list[dict[str, str]] = self.sinks.setdefault(name, [])
        if verb == "describe":
            return Result(0, json.dumps({"name": name, "exclusions": exclusions}))
        for flag in ("add-exclusion", "update-exclusion"):
            for spec in opts.get(flag, []):
                fields = dict(part.split("=", 1) for part in spec.split(","))
                same = [e for e in exclusions if e["name"] == fields["name"]]
                if flag == "add-exclusion" and same:
                    return Result(1, "", "ALREADY_EXISTS")
                if flag == "update-exclusion" and not same:
                    return Result(1, "", "NOT_FOUND")
                exclusions[:] = [e for e in exclusions if e["name"] != fields["name"]] + [fields]
        return Result(0)

    def _iam(self, key: tuple[str, str], verb: str, opts: dict[str, list[str]]) -> Result:
        if key[0] != "projects" and key not in self.resources:
            return Result(1, "", f"NOT_FOUND: {key}")
        policy = self.policies.setdefault(key, {})
        if verb == "get-iam-policy":
            bindings = [{"role": r, "members": sorted(m)} for r, m in sorted(policy.items())]
            return Result(0, json.dumps({"bindings": bindings, "etag": "x"}))
        policy.setdefault(opts["role"][0], set()).add(opts["member"][0])
        return Result(0)

    def members(self, kind: str, name: str, role: str) -> set[str]:
        return self.policies.get((kind, name), {}).get(role, set())


def _monitoring_group(words: list[str]) -> str | None:
    for group in (
        ("logging", "metrics"),
        ("monitoring", "policies"),
        ("monitoring", "dashboards"),
        ("beta", "monitoring", "channels"),
    ):
        if tuple(words[1 : 1 + len(group)]) == group:
            return " ".join(group)
    return None


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A working tree ready to deploy (requirements.txt, firebase-tools, firebase.json)."""
    for name in ("pyproject.toml", "uv.lock", "requirements.txt", "firebase.json"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "firestore.indexes.json").write_text(indexes.render_text())
    monitoring.write(tmp_path, deployed())
    firebase = tmp_path / FIREBASE
    firebase.parent.mkdir(parents=True)
    firebase.write_text("#!/bin/sh\n")
    return tmp_path


def make_plan(digest: str = "feedc0de") -> Plan:
    return build_plan(DeployConfig(project=PROJECT, region=REGION, source_digest=digest))


def run(plan: Plan, cloud: FakeCloud, root: Path) -> tuple[int, str]:
    out = io.StringIO()
    sleeps: list[float] = []
    code = apply(plan, cloud, root=root, out=out, sleep=sleeps.append)
    return code, out.getvalue()


# --- preconditions -------------------------------------------------------------------------


def test_unauthenticated_gcloud_stops_before_any_change(root: Path) -> None:
    cloud = FakeCloud(account="")
    code, out = run(make_plan(), cloud, root)
    assert code == 2
    assert cloud.mutations == []
    assert "Nothing was changed" in out and "gcloud auth login" in out
    # Nothing past the gate was even asked.
    assert not any("services" in c for c in cloud.calls)


def test_missing_api_stops_before_any_change_and_says_how_to_enable_it(root: Path) -> None:
    cloud = FakeCloud(
        apis=[a for a in resources.REQUIRED_APIS if a != "cloudscheduler.googleapis.com"]
    )
    code, out = run(make_plan(), cloud, root)
    assert code == 2
    assert cloud.mutations == []
    assert "missing cloudscheduler.googleapis.com" in out
    assert f"gcloud services enable cloudscheduler.googleapis.com --project={PROJECT}" in out


def test_missing_firestore_database_stops_before_any_change(root: Path) -> None:
    cloud = FakeCloud(firestore_type=None)
    code, out = run(make_plan(), cloud, root)
    assert code == 2 and cloud.mutations == []
    assert "gcloud firestore databases create" in out and "NOT_FOUND" in out
    cloud = FakeCloud(firestore_type="DATASTORE_MODE")
    code, out = run(make_plan(), cloud, root)
    assert code == 2 and cloud.mutations == [] and "native mode" in out


def test_firebase_tools_needs_a_login_or_application_default_credentials(root: Path) -> None:
    cloud = FakeCloud(firebase_login=False)
    code, out = run(make_plan(), cloud, root)
    assert code == 2 and cloud.mutations == [] and "firebase login" in out
    code, _ = run(make_plan(), FakeCloud(firebase_login=False, adc=True), root)
    assert code == 0


def test_working_tree_problems_stop_before_any_change(root: Path) -> None:
    (root / "requirements.txt").write_text("requests\n")
    (root / FIREBASE).unlink()
    (root / "firestore.indexes.json").write_text('{"indexes": []}')
    cloud = FakeCloud()
    code, out = run(make_plan(), cloud, root)
    assert code == 2 and cloud.mutations == []
    assert "requirements.txt is not what uv.lock calls for" in out
    assert "make setup" in out
    assert "python -m infra indexes > firestore.indexes.json" in out
    (root / "requirements.txt").unlink()
    assert any("requirements.txt is missing" in p for p in local_problems(root))


def test_all_problems_are_reported_together(root: Path) -> None:
    cloud = FakeCloud(apis=[], firestore_type=None, firebase_login=False)
    code, out = run(make_plan(), cloud, root)
    assert code == 2 and cloud.mutations == []
    assert out.count("\n  - ") == 3


# --- idempotent apply ----------------------------------------------------------------------


def test_first_apply_creates_everything_and_second_changes_nothing(root: Path) -> None:
    plan = make_plan()
    cloud = FakeCloud()
    code, out = run(plan, cloud, root)
    assert code == 0, out
    created = {(s.kind, s.name) for s in plan.steps}
    assert len(cloud.mutations) == len(created)
    worker = cloud.resources[("pubsub subscriptions", topology.USER_SYNC_WORKER)]["flags"]
    url = "https://sync-user-abc123-uc.a.run.app"
    assert worker["push-endpoint"] == [url]  # type: ignore[index]
    assert worker["push-auth-token-audience"] == [url]  # type: ignore[index]
    invoker = f"serviceAccount:at-push-invoker@{PROJECT}.iam.gserviceaccount.com"
    assert cloud.members("run services", "sync-user", "roles/run.invoker") == {invoker}
    assert cloud.members("pubsub topics", "user-sync-dead-letter", "roles/pubsub.publisher") == {
        AGENT,
        f"serviceAccount:at-sync-user@{PROJECT}.iam.gserviceaccount.com",
    }
    trigger = cloud.resources[("functions", "on_alpaca_secret_written")]["flags"]
    assert trigger["trigger-location"] == ["nam5"]  # type: ignore[index]

    cloud.calls.clear()
    code, out = run(plan, cloud, root)
    assert code == 0, out
    # Only checks ran, plus the steps idempotent by themselves: firebase deploy skips an
    # unchanged ruleset and unchanged Hosting files; the console's build rewrites dist/; a
    # service's source is staged again (its deploy step is skipped: same fingerprint).
    assert cloud.mutations == [s.create for s in plan.steps if s.check is None]
    assert [s.kind for s in plan.steps if s.check is None] == [
        "firestore",
        "service-source",
        "hosting-build",
        "hosting",
    ]
    assert "0 created, 0 updated" in out


def test_a_topology_change_updates_only_what_it_touches(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cloud = FakeCloud()
    assert run(make_plan(), cloud, root)[0] == 0
    changed = tuple(
        dataclasses.replace(s, dead_letter=topology.DeadLetterPolicy(s.dead_letter.topic, 10))
        if s.dead_letter
        else s
        for s in topology.SUBSCRIPTIONS
    )
    monkeypatch.setattr(topology, "SUBSCRIPTIONS", changed)
    cloud.calls.clear()
    code, out = run(make_plan(), cloud, root)
    assert code == 0, out
    updates = [c for c in cloud.mutations if c[0] not in SELF_IDEMPOTENT]
    assert [c[:5] for c in updates] == [
        ("gcloud", "pubsub", "subscriptions", "update", topology.USER_SYNC_WORKER)
    ]
    assert "--max-delivery-attempts=10" in updates[0]
    assert "1 updated" in out


def test_changed_source_redeploys_the_functions_only(root: Path) -> None:
    cloud = FakeCloud()
    assert run(make_plan("v1"), cloud, root)[0] == 0
    cloud.calls.clear()
    assert run(make_plan("v2"), cloud, root)[0] == 0
    redeployed = sorted(c[3] for c in cloud.mutations if c[1:3] == ("functions", "deploy"))
    assert redeployed == sorted(f.name for f in resources.FUNCTIONS)
    assert all(
        c[:3] == ("gcloud", "functions", "deploy") or c[0] in SELF_IDEMPOTENT
        for c in cloud.mutations
    )


def test_existing_resources_without_our_fingerprint_are_updated_not_recreated(
    root: Path,
) -> None:
    cloud = FakeCloud()
    cloud.resources[("pubsub topics", "user-sync")] = {}
    cloud.resources[("pubsub subscriptions", "user-sync-dead-letter-hold")] = {"labels": {}}
    code, _ = run(make_plan(), cloud, root)
    assert code == 0
    assert not any(
        c[:5] == ("gcloud", "pubsub", "topics", "create", "user-sync") for c in cloud.mutations
    )
    assert any(
        c[:5] == ("gcloud", "pubsub", "subscriptions", "update", "user-sync-dead-letter-hold")
        for c in cloud.mutations
    )


def test_iam_bindings_are_retried_while_a_new_account_propagates(root: Path) -> None:
    cloud = FakeCloud()
    cloud.fail["add-iam-policy-binding acme-trading --member=serviceAccount:at-sync-user"] = 2
    out = io.StringIO()
    sleeps: list[float] = []
    assert apply(make_plan(), cloud, root=root, out=out, sleep=sleeps.append) == 0
    assert len(sleeps) == 2


def test_a_failed_step_stops_the_apply_and_a_rerun_resumes(root: Path) -> None:
    plan = make_plan()
    cloud = FakeCloud()
    cloud.fail["functions deploy sync_user"] = 2  # the deploy and its one retry
    code, out = run(plan, cloud, root)
    assert code == 1
    assert "function sync_user: FAILED" in out and "resumes" in out
    assert not any("scheduler" in " ".join(c) for c in cloud.mutations)
    done_before = len(cloud.mutations)
    cloud.calls.clear()
    code, out = run(plan, cloud, root)
    assert code == 0, out
    # Only what had not been done (and the idempotent firebase deploy) ran the second time.
    assert len(cloud.mutations) == len(plan.steps) - done_before + 2 + 1


def test_an_unresolvable_value_stops_with_a_clear_message(root: Path) -> None:
    class NoUrl(FakeCloud):
        def _answer(self, argv: tuple[str, ...]) -> Result:
            if "--format=value(serviceConfig.uri)" in argv:
                return Result(0, "\n")
            return super()._answer(argv)

    cloud = NoUrl()
    code, out = run(make_plan(), cloud, root)
    assert code == 1
    assert "could not resolve ${PUBLISH_USER_SYNCS_URL}" in out


def test_the_request_log_exclusion_is_added_once_and_updated_when_it_drifts(root: Path) -> None:
    cloud = FakeCloud()
    assert run(make_plan(), cloud, root)[0] == 0
    (exclusion,) = cloud.sinks["_Default"]
    assert exclusion["name"] == resources.REQUEST_LOG_EXCLUSION
    assert "sync-user" in exclusion["filter"]  # the service name, resolved at apply time
    exclusion["description"] = "edited by hand"
    calls = len(cloud.mutations)
    assert run(make_plan(), cloud, root)[0] == 0
    changed = cloud.mutations[calls:]
    assert [c for c in changed if "logging" in c] == [
        c for c in changed if any(a.startswith("--update-exclusion=") for a in c)
    ]
    assert len(cloud.sinks["_Default"]) == 1
    assert FINGERPRINT_KEY in cloud.sinks["_Default"][0]["description"]


# --- credentials: the KEK and the OAuth client secret ---------------------------------------


def test_the_kek_is_created_with_its_first_rotation_resolved_at_apply(root: Path) -> None:
    cloud = FakeCloud()
    assert run(make_plan(), cloud, root)[0] == 0
    key = cloud.resources[("kms keys", "tenant-credentials")]["flags"]
    assert key["rotation-period"] == ["90d"]  # type: ignore[index]
    assert key["next-rotation-time"] == [NEXT_ROTATION]  # type: ignore[index]
    assert ("kms keyrings", "agenttrader") in cloud.resources
    openers = {
        f"serviceAccount:at-{name}@{PROJECT}.iam.gserviceaccount.com"
        for name in ("sync-user", "stream-gateway")
    }
    decrypt = "roles/cloudkms.cryptoKeyDecrypter"
    assert cloud.members("kms keys", "tenant-credentials", decrypt) == openers
    assert (
        len(cloud.members("kms keys", "tenant-credentials", "roles/cloudkms.cryptoKeyEncrypter"))
        == 2
    )
    # A second apply neither recreates nor reschedules it.
    cloud.calls.clear()
    assert run(make_plan(), cloud, root)[0] == 0
    assert not any(c[:3] == ("gcloud", "kms", "keys") and is_mutation(c) for c in cloud.calls)


def oauth_plan() -> Plan:
    env = (("ALPACA_OAUTH_CLIENT_ID", "agenttrader-app"),)
    return build_plan(DeployConfig(project=PROJECT, region=REGION, source_digest="x", env=env))


def test_the_oauth_client_secret_comes_from_the_operators_file_and_is_never_shown(
    root: Path,
) -> None:
    value = "the-real-client-secret-0123456789"
    secret_file = root / "client-secret.txt"
    secret_file.write_text(value)
    cloud = FakeCloud()
    code, out = run(oauth_plan(), cloud, root)
    # Without the file named, the apply stops at the secret's value, before any function.
    assert code == 1 and "ALPACA_OAUTH_CLIENT_SECRET_FILE" in out
    assert ("secrets", "alpaca-oauth-client-secret") in cloud.resources
    assert not any(c[:3] == ("gcloud", "functions", "deploy") for c in cloud.calls)

    cloud.environ["ALPACA_OAUTH_CLIENT_SECRET_FILE"] = str(secret_file)
    code, out = run(oauth_plan(), cloud, root)
    assert code == 0, out
    added = cloud.resources[("secrets versions", "alpaca-oauth-client-secret")]["flags"]
    assert added["data-file"] == [str(secret_file)]  # type: ignore[index]
    connect = cloud.resources[("functions", "connect_alpaca")]["flags"]
    assert connect["set-secrets"] == [  # type: ignore[index]
        "ALPACA_OAUTH_CLIENT_SECRET=alpaca-oauth-client-secret:latest"
    ]
    accessor = "roles/secretmanager.secretAccessor"
    assert cloud.members("secrets", "alpaca-oauth-client-secret", accessor) == {
        f"serviceAccount:at-connect-alpaca@{PROJECT}.iam.gserviceaccount.com"
    }
    assert not any(value in " ".join(c) for c in cloud.calls) and value not in out
    # The value exists now: later applies never ask for the file again.
    del cloud.environ["ALPACA_OAUTH_CLIENT_SECRET_FILE"]
    cloud.calls.clear()
    assert run(oauth_plan(), cloud, root)[0] == 0
    assert not any(c[0] == "printenv" for c in cloud.calls)
