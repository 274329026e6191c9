"""Tenant isolation: ``firestore.rules`` checked cell by cell against the Firestore emulator.

The rules are loaded once into a project of this module's own. Each cell arranges its
document as the server (``Authorization: Bearer owner``, the emulator's rules bypass), then
makes one client request over the emulator's REST API with an emulator ID token, and checks
the emulator's verdict: HTTP 200 = allowed, 403 PERMISSION_DENIED = denied, anything else
fails the cell (the setup, not the rules, would be wrong). Every cell has a uid of its own,
so cells are independent of each other and of their order; the owner's ``users/{uid}`` is
seeded as ``onboard_user`` writes it (except for the newcomer, who never onboarded), since
the rules decide who is a tenant from it.

At the end the emulator's rule coverage report is fetched, saved beside pytest's temporary
files and its location printed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import requests

from devtools import emulators
from tests.rules_client import RulesClient, id_token, load_rules

pytestmark = pytest.mark.integration

RULES_FILE = Path(__file__).resolve().parents[2] / "firestore.rules"

OWNER, NEWCOMER, ANONYMOUS, UNVERIFIED = "owner", "newcomer", "anonymous", "unverified"
OTHER, SIGNED_OUT, ADMIN = "other", "signed_out", "admin"
"""The actors. Whose uid is the path's: the tenant (onboarded, verified email, a password
sign-in), a newcomer (signed in and verified, never onboarded), the same onboarded user in an
anonymous session, and one whose email is not verified (the policy recorded at onboarding
requires it). Whose is not: another signed-in tenant, a client with no token, and an
operator with the ``admin`` custom claim."""
ACTORS = (OWNER, NEWCOMER, ANONYMOUS, UNVERIFIED, OTHER, SIGNED_OUT, ADMIN)
OPS = ("get", "list", "create", "update", "delete")

NOBODY, SELF = "-", "self"
"""What a cell of :data:`EXPECTED` may also name: nobody, or anyone signed in whose uid is the
path's (a tenant or not). ``OWNER`` there means the tenant alone, ``ADMIN`` the operator."""
ALLOWED: dict[str, frozenset[str]] = {
    NOBODY: frozenset(),
    SELF: frozenset({OWNER, NEWCOMER, ANONYMOUS, UNVERIFIED}),
    OWNER: frozenset({OWNER}),
    ADMIN: frozenset({ADMIN}),
}

STRICT_POLICY = {"providers": None, "requireVerifiedEmail": True}
"""``users/{uid}.tenantPolicy`` as ``onboard_user`` records the production default."""
ROOT = {
    "onboarded": True,
    "onboardedAt": datetime(2026, 1, 1, tzinfo=UTC),
    "email": "tenant@example.com",
    "emailVerified": True,
    "tenantPolicy": STRICT_POLICY,
}
"""An onboarded tenant's ``users/{uid}``."""

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
SECRET = {
    "key_id": "PKTESTKEY1234567890",
    "secret_key": "s3cr3t-" + "x" * 33,
    "base_url": "https://paper-api.alpaca.markets",
}
SEALED = {
    "sealed": True,
    "auth": "keys",
    "ciphertext": b"\x00\x00\x00\x24wrapped-data-key-and-encrypted-payload",
    "key_id_hint": "7890",
    "base_url": "https://paper-api.alpaca.markets",
    "sealedAt": datetime(2026, 1, 2, tzinfo=UTC),
    "keys_version": "1767312000000000",
}
"""``secrets/alpaca`` as the server stores it (agenttrader/credentials): written by the server
only; a client may replace it with new keys, never write or keep any of its fields."""
SERVER_FIELDS = ("sealed", "ciphertext", "auth", "key_id_hint", "keys_version", "sealedAt")


@dataclass(frozen=True)
class Target:
    """One document path and the data used to exercise it."""

    path: str
    """``{uid}`` stands for the owner's uid (each cell has a uid of its own)."""
    stored: dict[str, Any]
    """What the server keeps there (seeded before get, list, update and delete)."""
    create: dict[str, Any]
    """What a client tries to create."""
    update: dict[str, Any]
    """The fields a client tries to change (sent with an update mask, as ``updateDoc`` does)."""

    def at(self, uid: str) -> str:
        return self.path.format(uid=uid)


TARGETS: dict[str, Target] = {
    # Every document of the data model (docs/DESIGN.md, agenttrader/paths.py) ...
    "user": Target("users/{uid}", ROOT, ROOT, {"onboarded": False}),
    "config_alpaca": Target(
        "users/{uid}/config/alpaca",
        {"configured": False, "createdAt": NOW, "instructions": "Write your Alpaca keys."},
        {"configured": True},
        {"configured": True},
    ),
    "secrets_alpaca": Target(
        "users/{uid}/secrets/alpaca", SECRET, SECRET, {"secret_key": "rotated-secret"}
    ),
    "secrets_alpaca_sealed": Target(
        "users/{uid}/secrets/alpaca", SEALED, SEALED, {"keys_version": "1767312000000001"}
    ),
    "status_trading": Target(
        "users/{uid}/status/trading",
        {"enabled": False, "message": "Trading is paused.", "createdAt": NOW},
        {"enabled": True},
        {"enabled": True},
    ),
    "status_last_sync_error": Target(
        "users/{uid}/status/last_sync_error",
        {"error": "401 Unauthorized", "timestamp": NOW, "error_class": "permanent"},
        {"error": "", "timestamp": NOW},
        {"error": ""},
    ),
    "status_sync": Target(
        "users/{uid}/status/sync",
        {"pulse_id": "p-1", "outcome": "success", "at": NOW},
        {"pulse_id": "p-1", "outcome": "success"},
        {"outcome": "success"},
    ),
    "data_snapshot": Target(
        "users/{uid}/data/snapshot",
        {
            "syncedAt": NOW,
            "account": {"status": "ACTIVE"},
            "equity": "100000",
            "buying_power": "200000",
            "cash": "100000",
        },
        {"syncedAt": NOW, "equity": "999999999"},
        {"equity": "999999999"},
    ),
    "trading_signal": Target(
        "users/{uid}/trading_signals/signal-1",
        {"createdAt": NOW, "response": "HOLD", "prompt": "p", "vertex": {"model": "gemini"}},
        {"createdAt": NOW, "response": "BUY everything", "prompt": "p"},
        {"response": "BUY everything"},
    ),
    "audit_entry": Target(
        "users/{uid}/audit/entry-1",
        {"action": "keys_created", "actor": "system", "at": NOW, "details": {}},
        {"action": "keys_deleted", "actor": "system", "at": NOW, "details": {}},
        {"action": "forged"},
    ),
    "usage_day": Target(
        "users/{uid}/usage/2026-01-02",
        {"signals": 3, "syncs": 1440},
        {"signals": 0},
        {"signals": 0},
    ),
    "order": Target(
        "users/{uid}/orders/order-1",
        {"event": "fill", "order": {"id": "order-1", "status": "filled"}, "updatedAt": NOW},
        {"event": "fill", "order": {"id": "order-1", "status": "filled"}, "updatedAt": NOW},
        {"event": "canceled"},
    ),
    "status_stream": Target(
        "users/{uid}/status/stream",
        {"state": "refused", "error_class": "AlpacaAuthError", "since": NOW},
        {"state": "live"},
        {"state": "live"},
    ),
    "ops_last_pulse": Target(
        "ops/last_pulse",
        {"timestamp": NOW, "success_count": 1, "error_count": 0, "skipped_count": 2},
        {"timestamp": NOW, "success_count": 0, "error_count": 0, "skipped_count": 0},
        {"error_count": 0},
    ),
    "ops_pulse": Target(
        "ops/pulses/history/{uid}", {"published": 1, "skipped": 2}, {"published": 0}, {"skipped": 0}
    ),
    "ops_pulse_shard": Target(
        "ops/pulses/history/{uid}/shards/0",
        {"success": 1, "error": 0},
        {"success": 9},
        {"error": 0},
    ),
    "ops_roster": Target(
        "ops/roster", {"built_at": NOW, "shards": 32}, {"shards": 1}, {"shards": 1}
    ),
    "ops_roster_shard": Target(
        "ops/roster/shards/0", {"members": {"u1": 3}}, {"members": {}}, {"members": {"x": 1}}
    ),
    "ops_deletion": Target(
        "ops/deletions/entries/{uid}",
        {"uid": "gone-user", "at": NOW, "deleted": {"audit": 3}, "total": 3},
        {"uid": "forged", "at": NOW},
        {"total": 0},
    ),
    "ops_market_clock": Target(
        "ops/market_clock",
        {"is_open": True, "next_open": NOW, "next_close": NOW},
        {"is_open": False},
        {"is_open": False},
    ),
    "ops_stream_bucket": Target(
        "ops/streams/buckets/0",
        {"holder": "s1", "token": 1, "live": {"u1": 1}},
        {"holder": "x"},
        {"holder": "x"},
    ),
    "ops_stream_session": Target(
        "ops/streams/sessions/{uid}",
        {"renewedAt": NOW, "revoked": False},
        {"revoked": False},
        {"revoked": True},
    ),
    "legacy_snapshot": Target(
        "alpacaAccounts/snapshot",
        {"equity": "5000", "cash": "5000"},
        {"equity": "1"},
        {"cash": "1"},
    ),
    # ... and paths nobody named, next to and below the named ones.
    "secrets_other": Target(
        "users/{uid}/secrets/other", SECRET, SECRET, {"secret_key": "rotated-secret"}
    ),
    "data_other": Target("users/{uid}/data/other", {"equity": "1"}, {"equity": "1"}, {"x": 1}),
    "config_nested": Target("users/{uid}/config/alpaca/nested/x", {"x": 1}, {"x": 1}, {"x": 2}),
    "user_other": Target("users/{uid}/other/x", {"x": 1}, {"x": 1}, {"x": 2}),
    "misc": Target("misc/{uid}", {"x": 1}, {"x": 1}, {"x": 2}),
}

# Who may do what per (path, operation): the tenant alone (OWNER), anyone signed in whose uid
# is the path's (SELF: reading one's own documents needs no tenancy), the operator (ADMIN) or
# NOBODY. Every other actor is denied. `list` lists the collection that holds the document.
EXPECTED: dict[str, tuple[str, str, str, str, str]] = {
    #                          get     list    create  update  delete
    "user":                   (SELF,   NOBODY, NOBODY, NOBODY, NOBODY),  # never list `users`
    "config_alpaca":          (SELF,   SELF,   NOBODY, NOBODY, NOBODY),
    "secrets_alpaca":         (NOBODY, NOBODY, OWNER,  OWNER,  OWNER),   # write-only
    "secrets_alpaca_sealed":  (NOBODY, NOBODY, NOBODY, NOBODY, OWNER),   # server-written
    "status_trading":         (SELF,   SELF,   OWNER,  OWNER,  NOBODY),  # kill-switch
    "status_last_sync_error": (SELF,   SELF,   NOBODY, NOBODY, NOBODY),
    "status_sync":            (SELF,   SELF,   NOBODY, NOBODY, NOBODY),
    "data_snapshot":          (SELF,   NOBODY, NOBODY, NOBODY, NOBODY),
    "trading_signal":         (SELF,   SELF,   NOBODY, NOBODY, NOBODY),
    "audit_entry":            (SELF,   SELF,   NOBODY, NOBODY, NOBODY),
    "usage_day":              (SELF,   SELF,   NOBODY, NOBODY, NOBODY),
    "order":                  (SELF,   SELF,   NOBODY, NOBODY, NOBODY),  # server-written
    "status_stream":          (SELF,   SELF,   NOBODY, NOBODY, NOBODY),
    "ops_last_pulse":         (ADMIN,  ADMIN,  NOBODY, NOBODY, NOBODY),
    "ops_pulse":              (ADMIN,  ADMIN,  NOBODY, NOBODY, NOBODY),
    "ops_pulse_shard":        (ADMIN,  ADMIN,  NOBODY, NOBODY, NOBODY),
    "ops_roster":             (ADMIN,  ADMIN,  NOBODY, NOBODY, NOBODY),
    "ops_roster_shard":       (ADMIN,  ADMIN,  NOBODY, NOBODY, NOBODY),
    "ops_deletion":           (ADMIN,  ADMIN,  NOBODY, NOBODY, NOBODY),
    "ops_market_clock":       (ADMIN,  ADMIN,  NOBODY, NOBODY, NOBODY),
    "ops_stream_bucket":      (ADMIN,  ADMIN,  NOBODY, NOBODY, NOBODY),
    "ops_stream_session":     (ADMIN,  ADMIN,  NOBODY, NOBODY, NOBODY),
    "legacy_snapshot":        (NOBODY, NOBODY, NOBODY, NOBODY, NOBODY),
    "secrets_other":          (NOBODY, NOBODY, NOBODY, NOBODY, NOBODY),
    "data_other":             (NOBODY, NOBODY, NOBODY, NOBODY, NOBODY),
    "config_nested":          (NOBODY, NOBODY, NOBODY, NOBODY, NOBODY),
    "user_other":             (NOBODY, NOBODY, NOBODY, NOBODY, NOBODY),
    "misc":                   (NOBODY, NOBODY, NOBODY, NOBODY, NOBODY),
}  # fmt: skip


class Cell(NamedTuple):
    target: str
    op: str
    actor: str
    expected: bool

    @property
    def id(self) -> str:
        return f"{self.target}-{self.op}-{self.actor}"


CELLS = [
    Cell(target, op, actor, actor in ALLOWED[who])
    for target in TARGETS
    for op, who in zip(OPS, EXPECTED[target], strict=True)
    for actor in ACTORS
]


def cell_uid(kind: str, cell_id: str) -> str:
    """Each cell's owner: a uid of its own, named after the cell (readable in failures)."""
    return f"{kind}-{cell_id}"


@dataclass
class Env:
    client: RulesClient
    project: str
    other_uid: str = "someone-else"
    admin_uid: str = "ops-admin"

    def token(self, actor: str, owner_uid: str) -> str | None:
        if actor in (OWNER, NEWCOMER):
            return user_token(self.project, owner_uid)
        if actor == ANONYMOUS:
            return user_token(self.project, owner_uid, provider="anonymous", email=None)
        if actor == UNVERIFIED:
            return user_token(self.project, owner_uid, email_verified=False)
        if actor == OTHER:
            return user_token(self.project, self.other_uid)
        if actor == ADMIN:
            return id_token(self.project, self.admin_uid, admin=True)
        assert actor == SIGNED_OUT
        return None


def user_token(
    project: str,
    uid: str,
    *,
    provider: str = "password",
    email: str | None = "tenant@example.com",
    email_verified: object = True,
) -> str:
    """An emulator ID token as Firebase Auth issues it after a ``provider`` sign-in."""
    claims: dict[str, Any] = {"firebase": {"sign_in_provider": provider, "identities": {}}}
    if email is not None:
        claims |= {"email": email, "email_verified": email_verified}
    return id_token(project, uid, **claims)


def owned(target: Target) -> bool:
    """Whether the target lies under a user's root (whose ``users/{uid}`` the rules read)."""
    return target.path.startswith("users/{uid}/")


def _documents_to_seed() -> dict[str, dict[str, Any]]:
    """Every document the cells expect to exist, keyed by path (one batch, not one per cell)."""
    seeds: dict[str, dict[str, Any]] = {}
    for cell in CELLS:
        target, uid = TARGETS[cell.target], cell_uid("m", cell.id)
        if owned(target) and cell.actor != NEWCOMER:
            seeds[f"users/{uid}"] = ROOT
        if cell.op != "create":
            seeds[target.at(uid)] = target.stored
    for case_id, case in FIELD_CASES.items():
        target, uid = TARGETS[case.target], cell_uid("f", case_id)
        if owned(target):
            seeds[f"users/{uid}"] = ROOT
        if case.op == "update":
            seeds[target.at(uid)] = target.stored
    for case_id, policy_case in POLICY_CASES.items():
        if policy_case.root is not None:
            for target in POLICY_TARGETS:
                seeds[f"users/{cell_uid('p', f'{target}-{case_id}')}"] = policy_case.root
    for query_id in QUERIES:
        for name in QUERY_SEEDS:
            seeds[TARGETS[name].at(cell_uid("q", query_id))] = TARGETS[name].stored
    return seeds


class _CoverageSummary:
    """A plugin registered at the end of the module: prints where the coverage report is."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        for line in self.lines:
            terminalreporter.write_line(line)


@pytest.fixture(scope="module")
def env(
    emulator_hosts: dict[str, str],
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Env]:
    """One project with the rules loaded and the documents seeded, for the whole module.

    Afterwards: fetch, save and print the emulator's rule coverage report.
    """
    host = emulator_hosts["FIRESTORE_EMULATOR_HOST"]
    project = f"demo-rules-{uuid.uuid4().hex[:10]}"
    load_rules(host, project, RULES_FILE.read_text())
    with requests.Session() as session:
        client = RulesClient(host, project, session)
        client.seed_many(_documents_to_seed())
        yield Env(client, project)
        url = f"http://{host}/emulator/v1/projects/{project}:ruleCoverage.html"
        response = session.get(url, timeout=30)
    # The emulator (and so the URL) stops with the pytest session: keep a copy.
    saved = tmp_path_factory.mktemp("rules-coverage") / "firestore-rules-coverage.html"
    saved.write_text(response.text)
    # Printed in the terminal summary: output written during a test's teardown is captured.
    request.config.pluginmanager.register(
        _CoverageSummary([f"Rules coverage report: {url}", f"  (saved copy: {saved})"])
    )
    emulators.clear_firestore(host, project)
    assert response.status_code == 200, f"{url} answered {response.status_code}"
    assert "Rule Coverage" in response.text


def _act(env: Env, target: Target, op: str, uid: str, token: str | None) -> bool:
    """Make one client request (True if allowed) on the cell's document.

    The cell's own document was seeded by the fixture (absent for create). Fixed paths
    (ops/last_pulse, alpacaAccounts/snapshot) are shared by cells, so they are arranged here.
    """
    path = target.at(uid)
    client = env.client
    if "{uid}" not in target.path:
        if op == "create":
            client.remove(path)
        else:
            client.seed(path, target.stored)
    if op == "create":
        return client.create(path, target.create, token).allowed
    if op == "get":
        return client.get(path, token).allowed
    if op == "list":
        return client.list(path.rpartition("/")[0], token).allowed
    if op == "update":
        return client.update(path, target.update, token, mask=list(target.update)).allowed
    assert op == "delete"
    return client.delete(path, token).allowed


@pytest.mark.parametrize("cell", CELLS, ids=[cell.id for cell in CELLS])
def test_access_matrix(env: Env, cell: Cell) -> None:
    uid = cell_uid("m", cell.id)
    target = TARGETS[cell.target]
    allowed = _act(env, target, cell.op, uid, env.token(cell.actor, uid))
    verdict = "allowed" if allowed else "denied"
    assert allowed is cell.expected, f"{cell.op} {target.at(uid)} as {cell.actor} was {verdict}"


# Field-level cases: what the owner (unless said otherwise) may put into the documents they
# can write, and that the server-owned fields stay out of reach.


@dataclass(frozen=True)
class FieldCase:
    target: str
    op: str
    """"create" (document absent) or "update" (document seeded with the target's stored data)."""
    data: dict[str, Any]
    expected: bool
    mask: tuple[str, ...] | None = ()
    """Update mask; () means the keys of ``data``; None replaces the whole document."""
    actor: str = OWNER


def _secret(**changes: Any) -> dict[str, Any]:
    return {key: value for key, value in {**SECRET, **changes}.items() if value is not ...}


def _url(url: str) -> dict[str, Any]:
    return _secret(base_url=url)


ALLOW, DENY = True, False
ENABLED = {"enabled": True}


def new_secret(data: dict[str, Any], expected: bool, actor: str = OWNER) -> FieldCase:
    return FieldCase("secrets_alpaca", "create", data, expected, actor=actor)


def set_secret(data: dict[str, Any], expected: bool, **kwargs: Any) -> FieldCase:
    return FieldCase("secrets_alpaca", "update", data, expected, **kwargs)


def over_sealed(data: dict[str, Any], expected: bool, **kwargs: Any) -> FieldCase:
    """A client write on the sealed form the server stored."""
    return FieldCase("secrets_alpaca_sealed", "update", data, expected, **kwargs)


def new_switch(data: dict[str, Any], expected: bool, actor: str = OWNER) -> FieldCase:
    return FieldCase("status_trading", "create", data, expected, actor=actor)


def set_switch(data: dict[str, Any], expected: bool, **kwargs: Any) -> FieldCase:
    return FieldCase("status_trading", "update", data, expected, **kwargs)


FIELD_CASES: dict[str, FieldCase] = {
    # users/{uid}/secrets/alpaca: exactly three bounded strings, a plausible base_url.
    "secrets-create_valid": new_secret(SECRET, ALLOW),
    "secrets-create_extra_field": new_secret(_secret(note="x"), DENY),
    "secrets-create_missing_key_id": new_secret(_secret(key_id=...), DENY),
    "secrets-create_missing_secret_key": new_secret(_secret(secret_key=...), DENY),
    "secrets-create_missing_base_url": new_secret(_secret(base_url=...), DENY),
    "secrets-create_empty": new_secret({}, DENY),
    "secrets-key_id_number": new_secret(_secret(key_id=12345), DENY),
    "secrets-secret_key_null": new_secret(_secret(secret_key=None), DENY),
    "secrets-secret_key_map": new_secret(_secret(secret_key={"a": "b"}), DENY),
    "secrets-base_url_bool": new_secret(_secret(base_url=True), DENY),
    "secrets-key_id_empty": new_secret(_secret(key_id=""), DENY),
    "secrets-key_id_128": new_secret(_secret(key_id="K" * 128), ALLOW),
    "secrets-key_id_129": new_secret(_secret(key_id="K" * 129), DENY),
    "secrets-secret_key_empty": new_secret(_secret(secret_key=""), DENY),
    "secrets-secret_key_256": new_secret(_secret(secret_key="s" * 256), ALLOW),
    "secrets-secret_key_257": new_secret(_secret(secret_key="s" * 257), DENY),
    "secrets-base_url_2048": new_secret(_url("https://a.example/" + "p" * 2030), ALLOW),
    "secrets-base_url_2049": new_secret(_url("https://a.example/" + "p" * 2031), DENY),
    "secrets-base_url_empty": new_secret(_url(""), DENY),
    "secrets-base_url_live_v2": new_secret(_url("https://api.alpaca.markets/v2"), ALLOW),
    "secrets-base_url_https_port": new_secret(_url("https://alpaca.example:8443"), ALLOW),
    "secrets-base_url_http_evil": new_secret(_url("http://evil.example"), DENY),
    "secrets-base_url_http_alpaca": new_secret(_url("http://paper-api.alpaca.markets"), DENY),
    "secrets-base_url_ftp": new_secret(_url("ftp://paper-api.alpaca.markets"), DENY),
    "secrets-base_url_javascript": new_secret(_url("javascript:alert(1)"), DENY),
    "secrets-base_url_no_scheme": new_secret(_url("paper-api.alpaca.markets"), DENY),
    "secrets-base_url_userinfo": new_secret(
        _url("https://paper-api.alpaca.markets@evil.example"), DENY
    ),
    "secrets-base_url_whitespace": new_secret(_url("https://paper-api.alpaca.markets /v2"), DENY),
    "secrets-base_url_backslash": new_secret(
        _url("https://evil.example\\@paper-api.alpaca.markets"), DENY
    ),
    "secrets-base_url_metadata_ip": new_secret(_url("http://169.254.169.254"), DENY),
    "secrets-base_url_private_ip": new_secret(_url("http://10.0.0.1:8080"), DENY),
    "secrets-base_url_loopback_ipv4": new_secret(_url("http://127.0.0.1:8080"), ALLOW),
    "secrets-base_url_loopback_ipv4_no_port": new_secret(_url("http://127.0.0.1"), ALLOW),
    "secrets-base_url_localhost": new_secret(_url("http://localhost"), ALLOW),
    "secrets-base_url_localhost_port_path": new_secret(_url("http://localhost:5000/v2"), ALLOW),
    "secrets-base_url_loopback_ipv6": new_secret(_url("http://[::1]:9000"), ALLOW),
    "secrets-base_url_loopback_lookalike": new_secret(_url("http://127.0.0.1.evil.example"), DENY),
    "secrets-base_url_localhost_lookalike": new_secret(_url("http://localhost.evil.example"), DENY),
    "secrets-base_url_localhost_userinfo": new_secret(_url("http://localhost@evil.example"), DENY),
    "secrets-update_rotate_secret_key": set_secret({"secret_key": "rotated"}, ALLOW),
    "secrets-update_all_three": set_secret(_url("http://localhost:5000"), ALLOW),
    "secrets-update_extra_field": set_secret({"note": "x"}, DENY),
    "secrets-update_base_url_evil": set_secret({"base_url": "http://evil.example"}, DENY),
    "secrets-update_key_id_number": set_secret({"key_id": 7}, DENY),
    "secrets-update_secret_key_too_long": set_secret({"secret_key": "s" * 257}, DENY),
    "secrets-update_drop_base_url": set_secret(_secret(base_url=...), DENY, mask=None),
    "secrets-update_by_other_user": set_secret({"base_url": "http://localhost"}, DENY, actor=OTHER),
    "secrets-create_by_admin": new_secret(SECRET, DENY, actor=ADMIN),
    # The sealed form is server-written only: no client writes or keeps any of its fields.
    **{
        f"secrets-create_with_{name}": new_secret({**SECRET, name: SEALED[name]}, DENY)
        for name in SERVER_FIELDS
    },
    **{
        f"secrets-update_adds_{name}": set_secret({name: SEALED[name]}, DENY)
        for name in SERVER_FIELDS
    },
    "secrets-create_sealed_form": new_secret(SEALED, DENY),
    "secrets-create_sealed_form_with_keys": new_secret({**SEALED, **SECRET}, DENY),
    "sealed-replaced_by_new_keys": over_sealed(SECRET, ALLOW, mask=None),  # a rotation
    "sealed-replaced_by_other_user": over_sealed(SECRET, DENY, mask=None, actor=OTHER),
    "sealed-merge_new_secret": over_sealed({"secret_key": "rotated-secret"}, DENY),
    "sealed-merge_all_three_keeping_sealed": over_sealed(SECRET, DENY),
    "sealed-touch_ciphertext": over_sealed({"ciphertext": b"forged"}, DENY),
    "sealed-touch_keys_version": over_sealed({"keys_version": "1"}, DENY),
    "sealed-replaced_by_forged_form": over_sealed({**SEALED, "auth": "oauth"}, DENY, mask=None),
    # users/{uid}/status/trading: the owner toggles `enabled` and may set `message`, nothing else.
    "killswitch-enable": set_switch(ENABLED, ALLOW),
    "killswitch-disable": set_switch({"enabled": False}, ALLOW),
    "killswitch-enable_with_message": set_switch({"enabled": True, "message": "go"}, ALLOW),
    "killswitch-message_only": set_switch({"message": "paused for earnings"}, ALLOW),
    "killswitch-message_empty": set_switch({"message": ""}, ALLOW),
    "killswitch-message_500": set_switch({"message": "m" * 500}, ALLOW),
    "killswitch-message_501": set_switch({"message": "m" * 501}, DENY),
    "killswitch-message_number": set_switch({"message": 5}, DENY),
    "killswitch-enabled_string": set_switch({"enabled": "true"}, DENY),
    "killswitch-enabled_number": set_switch({"enabled": 1}, DENY),
    "killswitch-enabled_null": set_switch({"enabled": None}, DENY),
    "killswitch-touch_createdAt": set_switch({"createdAt": NOW.replace(year=2030)}, DENY),
    "killswitch-enable_and_touch_createdAt": set_switch(
        {"enabled": True, "createdAt": NOW.replace(year=2030)}, DENY
    ),
    "killswitch-add_field": set_switch({"enabled": True, "configured": True}, DENY),
    "killswitch-replace_dropping_createdAt": set_switch(
        {"enabled": True, "message": "m"}, DENY, mask=None
    ),
    "killswitch-replace_keeping_createdAt": set_switch(
        {"enabled": True, "message": "m", "createdAt": NOW}, ALLOW, mask=None
    ),
    "killswitch-update_by_other_user": set_switch(ENABLED, DENY, actor=OTHER),
    "killswitch-update_by_admin": set_switch(ENABLED, DENY, actor=ADMIN),
    "killswitch-update_unauthenticated": set_switch(ENABLED, DENY, actor=SIGNED_OUT),
    "killswitch-create_enabled": new_switch(ENABLED, ALLOW),
    "killswitch-create_with_message": new_switch({"enabled": False, "message": "off"}, ALLOW),
    "killswitch-create_with_createdAt": new_switch({"enabled": True, "createdAt": NOW}, DENY),
    "killswitch-create_message_only": new_switch({"message": "hi"}, DENY),
    "killswitch-create_enabled_string": new_switch({"enabled": "yes"}, DENY),
    "killswitch-create_message_501": new_switch({"enabled": True, "message": "m" * 501}, DENY),
    "killswitch-create_by_other_user": new_switch(ENABLED, DENY, actor=OTHER),
    # Server-owned documents stay server-owned, whatever the owner writes.
    "config-owner_sets_configured": FieldCase(
        "config_alpaca", "update", {"configured": True}, DENY
    ),
    "config-owner_creates_configured": FieldCase(
        "config_alpaca", "create", {"configured": True}, DENY
    ),
    "last_sync_error-owner_clears_error": FieldCase(
        "status_last_sync_error", "update", {"error": ""}, DENY
    ),
    "last_sync_error-owner_creates": FieldCase(
        "status_last_sync_error", "create", {"error": "", "timestamp": NOW}, DENY
    ),
    "snapshot-owner_inflates_equity": FieldCase(
        "data_snapshot", "update", {"equity": "1e12"}, DENY
    ),
    "user-owner_sets_onboarded": FieldCase("user", "update", {"onboarded": True}, DENY),
    "user-owner_creates_own_root": FieldCase("user", "create", {"onboarded": True}, DENY),
    "usage-owner_resets_counters": FieldCase("usage_day", "update", {"signals": 0}, DENY),
    "audit-owner_appends_entry": FieldCase(
        "audit_entry", "create", {"action": "admin_action"}, DENY
    ),
}


@pytest.mark.parametrize(("case_id", "case"), FIELD_CASES.items(), ids=list(FIELD_CASES))
def test_field_rules(env: Env, case_id: str, case: FieldCase) -> None:
    uid = cell_uid("f", case_id)
    path = TARGETS[case.target].at(uid)
    token = env.token(case.actor, uid)
    if case.op == "create":
        response = env.client.create(path, case.data, token)
    else:  # seeded with the target's stored data by the fixture
        mask = None if case.mask is None else list(case.mask or case.data)
        response = env.client.update(path, case.data, token, mask=mask)
    assert response.allowed is case.expected, f"{case} -> HTTP {response.status} {response.body}"
    if case.expected and case.target.startswith("secrets_alpaca"):
        stored = env.client.read(path)
        assert stored is not None
        assert set(stored) == {"key_id", "secret_key", "base_url"}


# Who is a tenant: the policy onboard_user recorded in users/{uid}.tenantPolicy, against the
# token of the owner's session, for the documents a tenant writes.


class PolicyCase(NamedTuple):
    root: dict[str, Any] | None
    """The owner's ``users/{uid}`` (None: never onboarded)."""
    provider: str
    email_verified: object
    expected: bool


def _root(**fields: Any) -> dict[str, Any]:
    return {key: value for key, value in {**ROOT, **fields}.items() if value is not ...}


def _policy(providers: list[str] | None, verified: bool) -> dict[str, Any]:
    return _root(tenantPolicy={"providers": providers, "requireVerifiedEmail": verified})


LENIENT = _policy(None, False)
PASSWORD_OR_GOOGLE = _policy(["password", "google.com"], True)
POLICY_TARGETS = ("secrets_alpaca", "status_trading")
POLICY_CASES: dict[str, PolicyCase] = {
    "strict-verified_password": PolicyCase(ROOT, "password", True, ALLOW),
    "strict-verified_google": PolicyCase(ROOT, "google.com", True, ALLOW),
    "strict-unverified": PolicyCase(ROOT, "password", False, DENY),
    "strict-verified_as_string": PolicyCase(ROOT, "password", "true", DENY),
    "strict-anonymous_verified": PolicyCase(ROOT, "anonymous", True, DENY),
    "lenient-unverified": PolicyCase(LENIENT, "password", False, ALLOW),
    "lenient-phone": PolicyCase(LENIENT, "phone", False, ALLOW),
    "lenient-anonymous": PolicyCase(LENIENT, "anonymous", False, DENY),
    "listed-anonymous": PolicyCase(_policy(["anonymous"], False), "anonymous", False, ALLOW),
    "listed-other_provider": PolicyCase(_policy(["password"], False), "google.com", True, DENY),
    "listed-provider": PolicyCase(PASSWORD_OR_GOOGLE, "google.com", True, ALLOW),
    "listed-empty": PolicyCase(_policy([], False), "password", True, DENY),
    "unrecorded-verified": PolicyCase(_root(tenantPolicy=...), "password", True, ALLOW),
    "unrecorded-unverified": PolicyCase(_root(tenantPolicy=...), "password", False, DENY),
    "unrecorded-anonymous": PolicyCase(_root(tenantPolicy=...), "anonymous", True, DENY),
    "not_onboarded-false": PolicyCase(_root(onboarded=False), "password", True, DENY),
    "not_onboarded-string": PolicyCase(_root(onboarded="true"), "password", True, DENY),
    "not_onboarded-absent": PolicyCase(_root(onboarded=...), "password", True, DENY),
    "not_onboarded-no_root": PolicyCase(None, "password", True, DENY),
}  # fmt: skip


@pytest.mark.parametrize("target", POLICY_TARGETS)
@pytest.mark.parametrize(("case_id", "case"), POLICY_CASES.items(), ids=list(POLICY_CASES))
def test_only_tenants_write(env: Env, target: str, case_id: str, case: PolicyCase) -> None:
    uid = cell_uid("p", f"{target}-{case_id}")
    token = user_token(env.project, uid, provider=case.provider, email_verified=case.email_verified)
    response = env.client.create(TARGETS[target].at(uid), TARGETS[target].create, token)
    assert response.allowed is case.expected, f"{case} -> HTTP {response.status} {response.body}"


# The `admin` claim must be exactly the boolean true.
ADMIN_CLAIMS = {"true": (True, True), "string_true": ("true", False), "one": (1, False)}
ADMIN_CLAIMS |= {"false": (False, False), "absent": (None, False)}


@pytest.mark.parametrize(("claim", "expected"), ADMIN_CLAIMS.values(), ids=list(ADMIN_CLAIMS))
def test_admin_claim_must_be_boolean_true(env: Env, claim: object, expected: bool) -> None:
    env.client.seed("ops/last_pulse", TARGETS["ops_last_pulse"].stored)
    claims = {} if claim is None else {"admin": claim}
    token = id_token(env.project, env.admin_uid, **claims)
    assert env.client.get("ops/last_pulse", token).allowed is expected


def _from(collection: str, all_descendants: bool = False) -> dict[str, Any]:
    return {"from": [{"collectionId": collection, "allDescendants": all_descendants}]}


class Query(NamedTuple):
    parent: str
    """The document the query runs under ("" for the database root); {uid} is the owner's."""
    structured: dict[str, Any]
    actor: str
    expected: bool


# Collection-group queries span tenants, so none is granted: the rules match only paths under
# one users/{uid}, and `users` itself cannot be listed.
QUERIES = {
    "own_signals-owner": Query("users/{uid}", _from("trading_signals"), OWNER, ALLOW),
    "own_signals-other": Query("users/{uid}", _from("trading_signals"), OTHER, DENY),
    "own_audit-owner": Query("users/{uid}", _from("audit"), OWNER, ALLOW),
    "own_orders-owner": Query("users/{uid}", _from("orders"), OWNER, ALLOW),
    "own_orders-other": Query("users/{uid}", _from("orders"), OTHER, DENY),
    "group_orders-owner": Query("", _from("orders", True), OWNER, DENY),
    "own_secrets-owner": Query("users/{uid}", _from("secrets"), OWNER, DENY),
    "group_signals-owner": Query("", _from("trading_signals", True), OWNER, DENY),
    "group_secrets-owner": Query("", _from("secrets", True), OWNER, DENY),
    "group_secrets-admin": Query("", _from("secrets", True), ADMIN, DENY),
    "group_status-admin": Query("", _from("status", True), ADMIN, DENY),
    "users-admin": Query("", _from("users"), ADMIN, DENY),
    "users-owner": Query("", _from("users"), OWNER, DENY),
    "ops_history-admin": Query("ops/pulses", _from("history"), ADMIN, ALLOW),
    "ops_history-owner": Query("ops/pulses", _from("history"), OWNER, DENY),
}


QUERY_SEEDS = (
    "trading_signal",
    "audit_entry",
    "order",
    "secrets_alpaca",
    "status_trading",
    "ops_pulse",
)
"""Documents each query cell's uid owns (seeded by the fixture), so every query has matches."""


@pytest.mark.parametrize(("query_id", "query"), QUERIES.items(), ids=list(QUERIES))
def test_queries(env: Env, query_id: str, query: Query) -> None:
    uid = cell_uid("q", query_id)
    token = env.token(query.actor, uid)
    response = env.client.run_query(query.parent.format(uid=uid), query.structured, token)
    assert response.allowed is query.expected, response.body


def test_server_writes_bypass_rules_only_with_bearer_owner(env: Env) -> None:
    """The seeding relies on it: `Bearer owner` is the emulator's admin, and nothing else is."""
    path = f"misc/bypass-{uuid.uuid4().hex[:8]}"
    env.client.seed(path, {"x": 1})  # raises unless the write succeeded
    assert env.client.read(path) is not None
    for token in (None, id_token(env.project, "owner"), id_token(env.project, "x", admin=True)):
        assert env.client.update(path, {"x": 2}, token, mask=["x"]).allowed is False
    # Anything else in the header is not a token at all: rejected before the rules run.
    assert env.client.update(path, {"x": 2}, "not-owner", mask=["x"]).status == 400


def _model_paths() -> dict[str, str]:
    """Every document path ``agenttrader.paths`` can name (``*_doc`` functions, ``*_DOC``
    constants), keyed by name, with ``*`` for each segment that is an argument."""
    import inspect

    from agenttrader import paths

    found: dict[str, str] = {}
    for name, value in vars(paths).items():
        if name.endswith("_DOC") and isinstance(value, str):
            found[name] = value
        elif name.endswith("_doc") and inspect.isfunction(value):
            params = inspect.signature(value).parameters.values()
            args = [
                10 + i if p.annotation in (int, "int") else f"ARG{i}" for i, p in enumerate(params)
            ]
            markers = {str(arg) for arg in args}
            segments = value(*args).split("/")
            found[name] = "/".join("*" if seg in markers else seg for seg in segments)
    return found


def _covers(template: str, model_path: str) -> bool:
    """True if the target's path is an instance of ``model_path``."""
    ours = template.split("/")
    theirs = model_path.split("/")
    return len(ours) == len(theirs) and all(
        b in ("*", a) for a, b in zip(ours, theirs, strict=True)
    )


def test_matrix_covers_every_path_of_the_data_model() -> None:
    """A document path added to agenttrader/paths.py needs a row here (and a rule)."""
    model = _model_paths()
    assert "alpaca_secret_doc" in model  # the introspection works
    missing = {
        name: path
        for name, path in model.items()
        if not any(_covers(t.path, path) for t in TARGETS.values())
    }
    assert not missing, f"no matrix row for {missing}"
    assert set(EXPECTED) == set(TARGETS)
    assert len(CELLS) + len(FIELD_CASES) + len(QUERIES) >= 150
