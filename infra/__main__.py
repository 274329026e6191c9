"""``python -m infra``: plan, apply, and the helpers docs/DEPLOY.md points to.

python -m infra plan  --project P --region R [--schedule CRON] [--firestore-location L]
                      [--sync-schedule market-hours|always] [--set NAME=VALUE ...]
                      [--alert-email ADDRESS]
python -m infra apply (same options)
python -m infra apis --project P     the `gcloud services enable` command to run once
python -m infra indexes              the content of firestore.indexes.json
python -m infra monitoring           write infra/cloud-monitoring/: metrics, alerts, dashboard
python -m infra roles                the least-privilege table (Markdown)
python -m infra source --list        the files `--source=.` uploads, one path per line
python -m infra source --digest      their digest (part of every function's fingerprint)
python -m infra source --stage stream-gateway   stage the gateway's source for its deploy
python -m infra next-rotation-time   when the KEK created now first rotates (RFC 3339, UTC)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from agenttrader.settings import SyncSchedule
from infra import iam, indexes, monitoring, resources, source
from infra.apply import SubprocessRunner, apply
from infra.model import shell
from infra.plan import DeployConfig, PlanError, build_plan, deployed


def _pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name.strip(), value.strip()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m infra", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("plan", "print every command a deployment runs (no credentials needed)"),
        ("apply", "check the preconditions, then deploy idempotently"),
    ):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("--project", required=True)
        sub.add_argument("--region", required=True)
        sub.add_argument(
            "--schedule",
            default=resources.DEFAULT_SCHEDULE,
            help="cron schedule of sync-tick (UTC), default every minute",
        )
        sub.add_argument(
            "--sync-schedule",
            choices=[s.value for s in SyncSchedule],
            default=resources.PRODUCTION_SYNC_SCHEDULE.value,
            help="when ticks publish: while Alpaca's /v2/clock says the market is open"
            " (default) or around the clock",
        )
        sub.add_argument(
            "--firestore-location",
            help="location of the Firestore database (default: read from the project)",
        )
        sub.add_argument(
            "--alert-email",
            help="where the alert policies notify (an e-mail notification channel)",
        )
        sub.add_argument(
            "--set",
            dest="env",
            action="append",
            type=_pair,
            default=[],
            metavar="NAME=VALUE",
            help="a setting of the functions, e.g. VERTEX_AI_LOCATION=europe-west1",
        )
    apis = commands.add_parser("apis", help="print the command enabling the required APIs")
    apis.add_argument("--project", required=True)
    commands.add_parser("indexes", help="print firestore.indexes.json")
    commands.add_parser("monitoring", help="write infra/cloud-monitoring/ from infra/monitoring.py")
    commands.add_parser("roles", help="print the least-privilege table")
    upload = commands.add_parser("source", help="print what `--source=.` uploads, or its digest")
    shown = upload.add_mutually_exclusive_group(required=True)
    shown.add_argument("--list", action="store_true", help="the uploaded files, one per line")
    shown.add_argument(
        "--digest", action="store_true", help="their digest, as in the functions' fingerprints"
    )
    shown.add_argument(
        "--stage",
        metavar="SERVICE",
        choices=[svc.name for svc in resources.SERVICES],
        help="copy a service's source (shared core, its package, requirements, Procfile) to "
        f"{source.STAGE_ROOT}/SERVICE, what `gcloud run deploy --source` uploads",
    )
    commands.add_parser(
        "next-rotation-time",
        help="print when a KEK created now first rotates (apply resolves the key's flag so)",
    )
    return parser


def next_rotation_time(now: datetime) -> str:
    """``now`` plus the KEK's rotation period, as ``--next-rotation-time`` takes it."""
    first = now.astimezone(UTC) + timedelta(days=resources.KEK_ROTATION_DAYS)
    return first.replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "apis":
        enable = ("gcloud", "services", "enable", *resources.REQUIRED_APIS)
        print(shell((*enable, f"--project={args.project}")))
        return 0
    if args.command == "indexes":
        sys.stdout.write(indexes.render_text())
        return 0
    if args.command == "next-rotation-time":
        print(next_rotation_time(datetime.now(UTC)))
        return 0
    if args.command == "monitoring":
        for path in monitoring.write(source.REPO_ROOT, deployed()):
            print(path.relative_to(source.REPO_ROOT))
        return 0
    if args.command == "roles":
        sys.stdout.write(iam.markdown_table())
        return 0
    if args.command == "source":
        if args.stage:
            service = next(svc for svc in resources.SERVICES if svc.name == args.stage)
            dest = source.REPO_ROOT / source.STAGE_ROOT / service.name
            staged = source.stage(service.package, dest)
            print(f"staged {len(staged)} files of {service.name} in {dest}")
            return 0
        if args.list:
            sys.stdout.write("".join(f"{path}\n" for path in source.upload_files()))
        else:
            print(source.digest())
        return 0
    config = DeployConfig(
        project=args.project,
        region=args.region,
        schedule=args.schedule,
        firestore_location=args.firestore_location,
        env=tuple(sorted(dict(args.env).items())),
        source_digest=source.digest(),
        service_digests=tuple(
            (svc.name, source.service_digest(svc.package)) for svc in resources.SERVICES
        ),
        sync_schedule=args.sync_schedule,
        alert_email=args.alert_email,
    )
    try:
        plan = build_plan(config)
    except PlanError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.command == "plan":
        sys.stdout.write(plan.render())
        return 0
    return apply(plan, SubprocessRunner(source.REPO_ROOT), root=source.REPO_ROOT, out=sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
