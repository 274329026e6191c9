"""``agenttrader``: the operator tool (docs/DESIGN.md, "Replay"; docs/RUNBOOK.md shows it at work).

This module only parses arguments, builds the clients and prints; the work is done by
:mod:`operations`. It talks to the emulators when ``PUBSUB_EMULATOR_HOST`` /
``FIRESTORE_EMULATOR_HOST`` are set, and to a real project otherwise (Application Default
Credentials).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import signal
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from agenttrader import topology
from agenttrader.settings import DEFAULT_PROJECT
from console import deadletters as dlq
from console import documents
from console.hold import HoldSubscription
from console.status import DEFAULT_PULSES, read_status
from operations import render

EXIT_OK = 0
EXIT_FAILED = 1
"""A republish failed, or Pub/Sub / Firestore could not be reached."""
EXIT_USAGE = 2
"""Bad arguments, or a purge that could not be confirmed; also ``status --check`` alerts."""
EXIT_ALERT = 2
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """Printed as ``agenttrader: error: ...`` with exit code 2."""


def parse_duration(text: str) -> timedelta:
    """An argparse type: :func:`console.deadletters.parse_duration`."""
    try:
        return dlq.parse_duration(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _whole_number(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


_positive_int = _whole_number(1)
_count = _whole_number(0)


def _timestamp(text: str) -> datetime:
    """An RFC 3339 time; without a zone, UTC."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a time: {text!r} (RFC 3339, e.g. 2027-03-06T06:00:00Z)"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number ≥ 0, got {text!r}")
    return value


# --- the parser ---------------------------------------------------------------------------------

_DESCRIPTION = """\
Operate the AgentTrader sync pipeline: inspect, replay and purge dead-lettered user-sync
messages, and see the state of recent pulses and failing tenants."""

_EPILOG = f"""\
target:
  With PUBSUB_EMULATOR_HOST / FIRESTORE_EMULATOR_HOST set, the emulators (project
  GOOGLE_CLOUD_PROJECT, else {DEFAULT_PROJECT}); otherwise the real project named by --project
  or GOOGLE_CLOUD_PROJECT, with Application Default Credentials.

exit codes:
  0 ok · 1 a republish failed or Google Cloud could not be reached · 2 usage error,
  unconfirmed purge, or alerts with `status --check` · 130 interrupted

Runbook: docs/RUNBOOK.md"""

_FILTERS_EPILOG = """\
about filters:
  All are optional and combine with AND; --uid, --error-class and --source may repeat.
  Ages count from the moment the message reached the dead-letter topic; durations are
  like 30s, 30m, 2h, 1d, 1h30m. Pub/Sub's own dead letters (delivery limit reached) have
  the error class DeliveryLimitExceeded and the source delivery-limit."""


def _wrap(text: str) -> str:
    """Paragraphs filled to a readable width (the raw formatter keeps our line breaks)."""
    return "\n".join(textwrap.fill(paragraph, 88) for paragraph in text.split("\n"))


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=30)


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: given after the subcommand, it overrides the top-level value; absent, it does not.
    common.add_argument(
        "--project", default=argparse.SUPPRESS, help="Google Cloud project (GOOGLE_CLOUD_PROJECT)"
    )
    return common


def _filters() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("filters")
    group.add_argument("--uid", action="append", default=[], metavar="UID", help="only this tenant")
    group.add_argument(
        "--error-class",
        action="append",
        default=[],
        metavar="NAME",
        help="only this error class, e.g. AlpacaAuthError, MissingKeys, DeliveryLimitExceeded",
    )
    group.add_argument(
        "--source",
        action="append",
        default=[],
        choices=dlq.SOURCES,
        help="worker: permanent failure; delivery-limit: Pub/Sub gave up retrying",
    )
    group.add_argument(
        "--older-than", type=parse_duration, metavar="AGE", help="only dead letters older than AGE"
    )
    group.add_argument(
        "--newer-than", type=parse_duration, metavar="AGE", help="only dead letters newer than AGE"
    )
    group.add_argument(
        "--limit", type=_positive_int, metavar="N", help="act on at most N matching dead letters"
    )
    return parent


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agenttrader",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=_Formatter,
    )
    parser.add_argument(
        "--project", default=None, help="Google Cloud project (default: GOOGLE_CLOUD_PROJECT)"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common, filters = _common(), _filters()

    dlq_parser = commands.add_parser(
        "dlq",
        parents=[common],
        formatter_class=_Formatter,
        help="list, replay or purge dead-lettered user-sync messages",
        description=_wrap(
            f"Dead letters held in the pull subscription {topology.USER_SYNC_DEAD_LETTER_HOLD}"
            f" (topic {topology.USER_SYNC_DEAD_LETTER})."
        ),
    )
    dlq_commands = dlq_parser.add_subparsers(dest="dlq_command", metavar="ACTION", required=True)

    list_parser = dlq_commands.add_parser(
        "list",
        parents=[common, filters],
        formatter_class=_Formatter,
        help="show held dead letters (leaves every message in place)",
        description=_wrap(
            "Show the held dead letters, oldest first: age, uid, source, error class, delivery"
            " attempts, replay count, error.\nNothing is consumed: messages are leased for the"
            " moment of the scan and handed straight back."
        ),
        epilog=_FILTERS_EPILOG
        + "\n\nexamples:\n  agenttrader dlq list\n  agenttrader dlq list --uid alice --json\n"
        "  agenttrader dlq list --error-class AlpacaAuthError --older-than 1h",
    )
    list_parser.add_argument("--json", action="store_true", help="machine-readable output")
    list_parser.set_defaults(handler=_dlq_list)

    replay_parser = dlq_commands.add_parser(
        "replay",
        parents=[common, filters],
        formatter_class=_Formatter,
        help="republish matching dead letters to user-sync",
        description=_wrap(
            f"Republish matching dead letters to {topology.USER_SYNC} with reason 'replay', the"
            " replay count increased and a fresh requested_at.\nA dead letter is acknowledged"
            " only after its republish succeeded; interrupting (Ctrl-C, even kill -9) loses"
            " nothing, at worst one message is replayed twice, which the worker ignores."
        ),
        epilog=_FILTERS_EPILOG + "\n\nexamples:\n  agenttrader dlq replay --uid alice --dry-run\n"
        "  agenttrader dlq replay --error-class AlpacaUnavailable --rate 5\n"
        "  agenttrader dlq replay --uid alice --force   # past the replay limit",
    )
    replay_parser.add_argument(
        "--dry-run", action="store_true", help="show what would be replayed; change nothing"
    )
    replay_parser.add_argument(
        "--rate",
        type=_rate,
        default=dlq.DEFAULT_RATE,
        metavar="N",
        help=f"republishes per second (default {dlq.DEFAULT_RATE:g}; 0: no limit)",
    )
    replay_parser.add_argument(
        "--max-replays",
        type=_count,
        default=dlq.DEFAULT_MAX_REPLAYS,
        metavar="N",
        help="refuse dead letters already replayed N times (default %(default)s)",
    )
    replay_parser.add_argument(
        "--force", action="store_true", help="replay even past --max-replays"
    )
    replay_parser.add_argument("--json", action="store_true", help="machine-readable summary")
    replay_parser.set_defaults(handler=_dlq_replay)

    purge_parser = dlq_commands.add_parser(
        "purge",
        parents=[common, filters],
        formatter_class=_Formatter,
        help="delete matching dead letters (asks for confirmation)",
        description=_wrap(
            "Delete (acknowledge) the matching dead letters, after a confirmation.\n"
            "Without a terminal, --yes is required. Non-matching messages are left in place."
        ),
        epilog=_FILTERS_EPILOG
        + "\n\nexamples:\n  agenttrader dlq purge --error-class MalformedMessage\n"
        "  agenttrader dlq purge --uid deleted-user --yes",
    )
    purge_parser.add_argument(
        "-y", "--yes", action="store_true", help="do not ask for confirmation"
    )
    purge_parser.add_argument(
        "--dry-run", action="store_true", help="show what would be deleted; change nothing"
    )
    purge_parser.add_argument("--json", action="store_true", help="machine-readable summary")
    purge_parser.set_defaults(handler=_dlq_purge)

    status_parser = commands.add_parser(
        "status",
        parents=[common],
        formatter_class=_Formatter,
        help="recent pulses, failing tenants, dead-letter depth, alerts",
        description=_wrap(
            "Recent pulses (published, ok, errors, skipped, duration), the tenants whose latest"
            " sync failed, the dead-letter depth, and the alert conditions: error rate above"
            " 10 % in the last pulse, a pulse slower than 45 s, tenants with 3+ failures in a"
            " row."
        ),
        epilog="exit codes: 0, or with --check 2 when an alert is raised (for cron/monitoring).",
    )
    status_parser.add_argument(
        "--pulses",
        type=_positive_int,
        default=DEFAULT_PULSES,
        metavar="N",
        help="pulses to show (default %(default)s)",
    )
    status_parser.add_argument(
        "--tenants",
        type=_positive_int,
        default=20,
        metavar="N",
        help="failing tenants to show in the table (default %(default)s; --json has all)",
    )
    status_parser.add_argument(
        "--no-dead-letters", action="store_true", help="skip the dead-letter depth peek"
    )
    status_parser.add_argument(
        "--check", action="store_true", help="exit with 2 when any alert is raised"
    )
    status_parser.add_argument("--json", action="store_true", help="machine-readable output")
    status_parser.set_defaults(handler=_status)

    roster_parser = commands.add_parser(
        "roster",
        parents=[common],
        formatter_class=_Formatter,
        help="show or rebuild the roster of users a tick publishes to",
        description=_wrap(
            "The roster (ops/roster/shards/*) says who is eligible for the scheduled sync; the"
            " triggers on config/alpaca and status/trading keep it, ticks grow it (a shard per"
            " ~1,000 users) and drop tombstones a day old. `show` prints its size;"
            " `rebuild` records every user's eligibility again from a scan of those documents"
            " (safe while the pipeline runs: a trigger's later verdict always wins)."
        ),
    )
    roster_parser.add_argument(
        "action", choices=("show", "rebuild"), help="show: sizes; rebuild: from a scan"
    )
    roster_parser.add_argument("--json", action="store_true", help="machine-readable output")
    roster_parser.set_defaults(handler=_roster)

    tenants_parser = commands.add_parser(
        "tenants",
        parents=[common],
        formatter_class=_Formatter,
        help="remove the data of tenants whose Firebase Auth user no longer exists",
        description=_wrap("Tenants as Firestore holds them, against Firebase Auth."),
    )
    tenants_commands = tenants_parser.add_subparsers(
        dest="tenants_command", metavar="ACTION", required=True
    )
    prune_parser = tenants_commands.add_parser(
        "prune",
        parents=[common],
        formatter_class=_Formatter,
        help="delete everything under users/{uid} for users missing from Firebase Auth",
        description=_wrap(
            "Look every user id under users/ up in Firebase Auth (100 at a time) and delete"
            " everything under users/{uid} for those Auth no longer knows: credentials first,"
            " then every document at any depth, each deletion logged for operators in"
            " ops/deletions/entries (the same deletion as the delete_account callable). The"
            " roster forgets them through its triggers.\nFirestore and Auth must both be"
            " emulators (FIRESTORE_EMULATOR_HOST and FIREBASE_AUTH_EMULATOR_HOST) or both the"
            " real project. Without a terminal, --yes is required."
        ),
        epilog="examples:\n  agenttrader tenants prune --dry-run\n"
        "  agenttrader tenants prune --limit 100 --yes",
    )
    prune_parser.add_argument(
        "--dry-run", action="store_true", help="list who would be removed; change nothing"
    )
    prune_parser.add_argument(
        "--limit", type=_positive_int, metavar="N", help="remove at most N tenants"
    )
    prune_parser.add_argument(
        "-y", "--yes", action="store_true", help="do not ask for confirmation"
    )
    prune_parser.add_argument("--json", action="store_true", help="machine-readable summary")
    prune_parser.set_defaults(handler=_tenants_prune)

    _add_credentials_commands(commands, common)
    return parser


def _add_credentials_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    """``agenttrader credentials seal-existing | rewrap``."""
    credentials_parser = commands.add_parser(
        "credentials",
        parents=[common],
        formatter_class=_Formatter,
        help="seal plaintext credentials left from before; re-wrap after a KEK rotation",
        description=_wrap(
            "Tenants' users/{uid}/secrets/alpaca documents and the key-encryption key (KEK)"
            " sealing them: CREDENTIALS_KEK_URI names it (unset with FIRESTORE_EMULATOR_HOST:"
            " the local development KEK). Every change is audited in the tenant's audit trail"
            " and guarded by the document's update time, so a tenant writing new keys meanwhile"
            " wins. Both commands are idempotent: run again to resume."
        ),
    )
    credentials_commands = credentials_parser.add_subparsers(
        dest="credentials_command", metavar="ACTION", required=True
    )
    seal_parser = credentials_commands.add_parser(
        "seal-existing",
        parents=[common],
        formatter_class=_Formatter,
        help="seal every plaintext secrets document left from before sealing",
        description=_wrap(
            "Seal each plaintext users/{uid}/secrets/alpaca (one KEK operation each), keeping"
            " the credentials' version: tenants stay configured as they were. Plaintext that is"
            " not well-formed credentials cannot be sealed: it is listed, and deleted with"
            " --delete-invalid. Needs roles/cloudkms.cryptoKeyEncrypter on the KEK."
        ),
        epilog="examples:\n  agenttrader credentials seal-existing --dry-run\n"
        "  agenttrader credentials seal-existing --limit 1000",
    )
    seal_parser.add_argument(
        "--dry-run", action="store_true", help="count what would be sealed; change nothing"
    )
    seal_parser.add_argument(
        "--limit", type=_positive_int, metavar="N", help="seal at most N documents"
    )
    seal_parser.add_argument(
        "--delete-invalid",
        action="store_true",
        help="delete plaintext that is not well-formed credentials (never usable)",
    )
    seal_parser.add_argument("--json", action="store_true", help="machine-readable summary")
    seal_parser.set_defaults(handler=_credentials_seal)
    rewrap_parser = credentials_commands.add_parser(
        "rewrap",
        parents=[common],
        formatter_class=_Formatter,
        help="re-wrap every sealed document's data key under the KEK's current primary version",
        description=_wrap(
            "After a KEK rotation, re-wrap each sealed document's data key under the new"
            " primary version (two KEK operations each; the credentials are never decrypted),"
            " so the old key versions can be disabled. --wrapped-before (the rotation's time)"
            " skips what was sealed or re-wrapped since. Needs"
            " roles/cloudkms.cryptoKeyEncrypterDecrypter on the KEK."
        ),
        epilog="examples:\n  agenttrader credentials rewrap --dry-run\n"
        "  agenttrader credentials rewrap --wrapped-before 2027-03-06T06:00:00Z",
    )
    rewrap_parser.add_argument(
        "--dry-run", action="store_true", help="count what would be re-wrapped; change nothing"
    )
    rewrap_parser.add_argument(
        "--limit", type=_positive_int, metavar="N", help="re-wrap at most N documents"
    )
    rewrap_parser.add_argument(
        "--wrapped-before",
        type=_timestamp,
        metavar="TIME",
        help="only data keys wrapped before TIME (RFC 3339, e.g. the rotation's time)",
    )
    rewrap_parser.add_argument("--json", action="store_true", help="machine-readable summary")
    rewrap_parser.set_defaults(handler=_credentials_rewrap)


# --- targets and clients ------------------------------------------------------------------------


def resolve_project(flag: str | None, env: Mapping[str, str]) -> str:
    project = (flag or env.get("GOOGLE_CLOUD_PROJECT", "")).strip()
    if project:
        return project
    if env.get("PUBSUB_EMULATOR_HOST") or env.get("FIRESTORE_EMULATOR_HOST"):
        return DEFAULT_PROJECT
    raise UsageError(
        "no project: pass --project or set GOOGLE_CLOUD_PROJECT"
        " (or PUBSUB_EMULATOR_HOST / FIRESTORE_EMULATOR_HOST for the emulators)"
    )


@dataclass(frozen=True)
class Target:
    project: str

    @property
    def subscription(self) -> str:
        return f"projects/{self.project}/subscriptions/{topology.USER_SYNC_DEAD_LETTER_HOLD}"

    @property
    def user_sync_topic(self) -> str:
        return f"projects/{self.project}/topics/{topology.USER_SYNC}"


@contextlib.contextmanager
def _hold(target: Target) -> Iterator[HoldSubscription]:
    import google.cloud.pubsub_v1 as pubsub_v1

    subscriber = pubsub_v1.SubscriberClient()
    try:
        yield HoldSubscription(subscriber, target.subscription)
    finally:
        subscriber.close()


@contextlib.contextmanager
def _publisher() -> Iterator[Any]:
    import google.cloud.pubsub_v1 as pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    try:
        yield publisher
    finally:
        publisher.stop()


def _now() -> datetime:
    return datetime.now(UTC)


def _filters_of(args: argparse.Namespace) -> dlq.Filters:
    try:
        return dlq.Filters(
            uids=frozenset(args.uid),
            error_classes=frozenset(args.error_class),
            sources=frozenset(args.source),
            older_than=args.older_than,
            newer_than=args.newer_than,
        )
    except ValueError as err:
        raise UsageError(str(err)) from None


def _print_json(document: Mapping[str, Any]) -> None:
    print(json.dumps(document, indent=2, sort_keys=False))


# --- commands -----------------------------------------------------------------------------------


def _dlq_list(args: argparse.Namespace, target: Target) -> int:
    filters = _filters_of(args)
    now = _now()
    with _hold(target) as hold:
        listing = dlq.list_dead_letters(hold, filters, now=now, limit=args.limit)
    if args.json:
        _print_json(documents.listing_json(listing, now, target.subscription))
    else:
        sys.stdout.write(render.render_listing(listing, now, target.subscription))
    return EXIT_OK


def _dlq_replay(args: argparse.Namespace, target: Target) -> int:
    filters = _filters_of(args)
    progress = render.ProgressLine(sys.stderr, tty=sys.stderr.isatty())
    with _hold(target) as hold, _publisher() as publisher:
        try:
            report = dlq.replay(
                hold,
                publisher,
                target.user_sync_topic,
                filters,
                clock=_now,
                pacer=dlq.Pacer(args.rate),
                limit=args.limit,
                max_replays=args.max_replays,
                force=args.force,
                dry_run=args.dry_run,
                progress=progress,
            )
        finally:
            progress.close()
    now = _now()
    if args.json:
        _print_json(documents.report_json(report, now, target.subscription))
    else:
        sys.stdout.write(render.render_report(report, now, target.subscription, verb="replay"))
    if report.interrupted:
        return EXIT_INTERRUPTED
    failed = report.count(dlq.Status.FAILED) or report.aborted
    return EXIT_FAILED if failed else EXIT_OK


def _dlq_purge(args: argparse.Namespace, target: Target) -> int:
    filters = _filters_of(args)
    if not (args.yes or args.dry_run or sys.stdin.isatty()):
        raise UsageError(
            "refusing to purge without confirmation: stdin is not a terminal;"
            " pass --yes to confirm (or --dry-run to see what would go)"
        )
    now = _now()
    confirm = (lambda _letters: True) if args.yes else _prompt(now, target)
    with _hold(target) as hold:
        report = dlq.purge(
            hold, filters, now=now, confirm=confirm, limit=args.limit, dry_run=args.dry_run
        )
    if args.json:
        _print_json(documents.report_json(report, now, target.subscription))
    else:
        sys.stdout.write(render.render_report(report, now, target.subscription, verb="purge"))
    return EXIT_USAGE if report.cancelled else EXIT_OK


def _prompt(now: datetime, target: Target) -> Callable[[Sequence[dlq.DeadLetter]], bool]:
    def confirm(letters: Sequence[dlq.DeadLetter]) -> bool:
        listing = dlq.Listing(tuple(letters), len(letters), True)
        sys.stderr.write(render.render_listing(listing, now, target.subscription))
        sys.stderr.write(
            f"Delete these {len(letters)} dead letter(s) from {target.subscription}?"
            " This cannot be undone. [y/N] "
        )
        sys.stderr.flush()
        answer = sys.stdin.readline().strip().lower()
        return answer in {"y", "yes"}

    return confirm


def _status(args: argparse.Namespace, target: Target) -> int:
    from google.cloud import firestore

    db = firestore.Client(project=target.project)
    with _hold(target) as hold:
        status = read_status(
            db,
            now=_now(),
            peek=None if args.no_dead_letters else lambda: dlq.dead_letter_depth(hold),
            pulses=args.pulses,
        )
    if args.json:
        _print_json(documents.status_json(status, target.project, target.subscription))
    else:
        sys.stdout.write(
            render.render_status(
                status, target.project, target.subscription, max_tenants=args.tenants
            )
        )
    return EXIT_ALERT if args.check and status.alerts else EXIT_OK


def _roster(args: argparse.Namespace, target: Target) -> int:
    from google.cloud import firestore

    from agenttrader import paths
    from publisher import roster

    db = firestore.Client(project=target.project)
    loaded = roster.rebuild(db) if args.action == "rebuild" else roster.read(db)
    marker = db.document(paths.ROSTER_DOC).get()
    built_at = (marker.to_dict() or {}).get("built_at") if marker.exists else None
    summary = {
        "project": target.project,
        "built_at": built_at.isoformat() if isinstance(built_at, datetime) else None,
        "shards": loaded.shards if loaded else None,
        "users": loaded.members if loaded else None,
        "eligible": len(loaded.eligible) if loaded else None,
        "entries": loaded.entries if loaded else None,
        "fullest_shard": loaded.fullest_shard if loaded else None,
    }
    if args.json:
        _print_json(summary)
    elif loaded is None:
        print("roster: not built yet (the next tick builds it from a scan)")
    else:
        print(
            f"roster of {target.project}: {loaded.members} users, {len(loaded.eligible)} eligible,"
            f" {loaded.shards} shard{'s' if loaded.shards != 1 else ''} (fullest"
            f" {loaded.fullest_shard} entries; {loaded.entries} entries with tombstones),"
            f" built {summary['built_at']}"
        )
    return EXIT_OK


def _auth_app(project: str) -> Any:
    """A firebase-admin app for ``project``'s Auth (Application Default Credentials; the Auth
    emulator, which needs none, when ``FIREBASE_AUTH_EMULATOR_HOST`` is set)."""
    import firebase_admin

    name = f"agenttrader-operator:{project}"
    try:
        return firebase_admin.get_app(name)
    except ValueError:
        return firebase_admin.initialize_app(options={"projectId": project}, name=name)


def check_same_world(env: Mapping[str, str]) -> None:
    """Prune compares Firestore with Auth: one an emulator and the other real would find every
    user missing (and delete them all)."""
    firestore_emulated = bool(env.get("FIRESTORE_EMULATOR_HOST", "").strip())
    auth_emulated = bool(env.get("FIREBASE_AUTH_EMULATOR_HOST", "").strip())
    if firestore_emulated != auth_emulated:
        raise UsageError(
            "refusing to prune: FIRESTORE_EMULATOR_HOST and FIREBASE_AUTH_EMULATOR_HOST must"
            " both be set (the emulators) or both be unset (the real project)"
        )


def _tenants_prune(args: argparse.Namespace, target: Target) -> int:
    from firebase_admin import exceptions as firebase_exc
    from google.cloud import firestore

    from operations import tenants

    check_same_world(os.environ)
    if not (args.yes or args.dry_run or sys.stdin.isatty()):
        raise UsageError(
            "refusing to prune without confirmation: stdin is not a terminal;"
            " pass --yes to confirm (or --dry-run to see who would go)"
        )

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    def confirm(uids: Sequence[str]) -> bool:
        if args.yes:
            return True
        shown = ", ".join(uids[:20]) + (f" … and {len(uids) - 20} more" if len(uids) > 20 else "")
        sys.stderr.write(
            f"{len(uids)} tenant(s) of {target.project} have no Firebase Auth user: {shown}\n"
            "Delete everything stored under users/{uid} for them? This cannot be undone. [y/N] "
        )
        sys.stderr.flush()
        return sys.stdin.readline().strip().lower() in {"y", "yes"}

    db = firestore.Client(project=target.project)
    existing = tenants.firebase_auth_users(_auth_app(target.project))
    try:
        report = tenants.prune(
            db, existing, dry_run=args.dry_run, limit=args.limit, confirm=confirm, progress=progress
        )
    except firebase_exc.FirebaseError as err:
        print(f"agenttrader: error: Firebase Auth: {type(err).__name__}: {err}", file=sys.stderr)
        return EXIT_FAILED
    if report is None:
        print("prune cancelled; nothing was deleted", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        _print_json({"project": target.project, **report.as_json()})
    else:
        print(tenants.render(report, target.project), end="")
    return EXIT_OK


def _vault(project: str) -> Any:
    """The vault of the KEK the environment names (``CREDENTIALS_KEK_URI``); contacts
    nothing yet."""
    import dataclasses

    from agenttrader.credentials import Vault
    from agenttrader.settings import Settings

    try:
        return Vault.from_settings(dataclasses.replace(Settings.from_env(), project=project))
    except ValueError as err:
        raise UsageError(str(err)) from None


def _credentials_run(args: argparse.Namespace, target: Target, run: Callable[..., Any]) -> int:
    from google.cloud import firestore

    from agenttrader.errors import KmsUnavailable
    from operations import credentials

    vault = None if args.dry_run else _vault(target.project)
    db = firestore.Client(project=target.project)

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        report = run(db, vault, progress=progress)
    except KmsUnavailable as err:
        print(
            f"agenttrader: error: {err}; nothing more was changed, run again to resume",
            file=sys.stderr,
        )
        return EXIT_FAILED
    if args.json:
        _print_json({"project": target.project, **report.as_json()})
    else:
        print(credentials.render(report, target.project), end="")
    return EXIT_OK


def _credentials_seal(args: argparse.Namespace, target: Target) -> int:
    from operations import credentials

    return _credentials_run(
        args,
        target,
        functools.partial(
            credentials.seal_existing,
            dry_run=args.dry_run,
            limit=args.limit,
            delete_invalid=args.delete_invalid,
        ),
    )


def _credentials_rewrap(args: argparse.Namespace, target: Target) -> int:
    from operations import credentials

    return _credentials_run(
        args,
        target,
        functools.partial(
            credentials.rewrap,
            dry_run=args.dry_run,
            limit=args.limit,
            wrapped_before=args.wrapped_before,
        ),
    )


# --- entry point --------------------------------------------------------------------------------


def _raise_interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """The console script ``agenttrader``; returns the exit code."""
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exc

    parser = build_parser()
    args = parser.parse_args(argv)
    # SIGTERM ends a replay as Ctrl-C does: leases are handed back at once instead of expiring.
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_interrupt) if in_main_thread else None
    try:
        target = Target(resolve_project(args.project, os.environ))
        code: int = args.handler(args, target)
        return code
    except UsageError as err:
        parser.print_usage(sys.stderr)
        print(f"agenttrader: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(
            "\nagenttrader: interrupted; what was not acknowledged stays in the subscription",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except gexc.NotFound as err:
        print(
            f"agenttrader: error: not found: {err.message}. Is the project right and the"
            " topology applied (make run / make deploy)?",
            file=sys.stderr,
        )
        return EXIT_FAILED
    except (gexc.GoogleAPIError, auth_exc.GoogleAuthError) as err:
        print(f"agenttrader: error: {type(err).__name__}: {err}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
