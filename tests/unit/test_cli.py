"""The ``agenttrader`` command line without a network: help texts, argument parsing, refusals
that happen before any client is built, and the rendering of dead letters and progress."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import pytest

from agenttrader.messages import Reason, SyncRequest
from console import deadletters as dlq
from console import documents
from operations import cli, render

NOW = datetime(2025, 3, 4, 12, 0, 0, tzinfo=UTC)
KEY_ID = "PKSECRETKEYID0000042"
SECRET = "s3cr3t" * 7


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], ["dlq", "status", "GOOGLE_CLOUD_PROJECT", "exit codes", "RUNBOOK"]),
        (["dlq"], ["list", "replay", "purge", "user-sync-dead-letter-hold"]),
        (["dlq", "list"], ["--uid", "--error-class", "--older-than", "--json", "--limit"]),
        (["dlq", "replay"], ["--dry-run", "--rate", "--max-replays", "--force", "--newer-than"]),
        (["dlq", "purge"], ["--yes", "--dry-run", "--source"]),
        (["status"], ["--check", "--json", "--pulses", "45 s"]),
    ],
)
def test_help(argv: list[str], expected: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*argv, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for word in expected:
        assert word in out, word


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("30m", timedelta(minutes=30)),
        ("2h", timedelta(hours=2)),
        ("1d", timedelta(days=1)),
        ("1w", timedelta(weeks=1)),
        ("1h30m", timedelta(minutes=90)),
        ("2D", timedelta(days=2)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert cli.parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "30", "m", "-1h", "1.5h", "1y", "30m2h", "2 h"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(Exception, match="invalid duration"):
        cli.parse_duration(text)


def test_filters_from_arguments() -> None:
    args = cli.build_parser().parse_args(
        [
            "dlq",
            "replay",
            "--uid",
            "a",
            "--uid",
            "b",
            "--error-class",
            "MissingKeys",
            "--source",
            "worker",
            "--older-than",
            "30m",
            "--newer-than",
            "1d",
            "--limit",
            "5",
            "--rate",
            "2.5",
        ]
    )
    filters = cli._filters_of(args)
    assert filters == dlq.Filters(
        uids=frozenset({"a", "b"}),
        error_classes=frozenset({"MissingKeys"}),
        sources=frozenset({"worker"}),
        older_than=timedelta(minutes=30),
        newer_than=timedelta(days=1),
    )
    assert args.limit == 5 and args.rate == 2.5 and args.max_replays == 3 and not args.force


@pytest.mark.parametrize(
    "argv",
    [
        ["dlq", "list", "--older-than", "soon"],
        ["dlq", "list", "--limit", "0"],
        ["dlq", "replay", "--rate", "-1"],
        ["dlq", "replay", "--rate", "nan"],
        ["dlq", "purge", "--source", "elsewhere"],
    ],
)
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert "error" in capsys.readouterr().err


def test_contradicting_ages_are_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "some-project")
    code = cli.main(["dlq", "list", "--older-than", "2h", "--newer-than", "1h"])
    assert code == 2
    assert "nothing matches" in capsys.readouterr().err


def test_project_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    assert cli.resolve_project("flagged", {"GOOGLE_CLOUD_PROJECT": "env"}) == "flagged"
    assert cli.resolve_project(None, {"GOOGLE_CLOUD_PROJECT": "env"}) == "env"
    assert cli.resolve_project(None, {"PUBSUB_EMULATOR_HOST": "x:1"}) == "demo-agenttrader"
    with pytest.raises(cli.UsageError, match="no project"):
        cli.resolve_project(None, {})
    args = cli.build_parser().parse_args(["--project", "top", "status"])
    assert args.project == "top"
    args = cli.build_parser().parse_args(["status", "--project", "sub"])
    assert args.project == "sub"


def test_no_project_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["status"]) == 2
    assert "no project" in capsys.readouterr().err


def test_purge_refuses_without_a_terminal_or_yes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "some-project")
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))  # piped input is not a confirmation
    assert cli.main(["dlq", "purge", "--uid", "alice"]) == 2
    err = capsys.readouterr().err
    assert "refusing to purge" in err and "--yes" in err


# --- rendering ---------------------------------------------------------------------------------


def letter(
    uid: str = "alice", error: str = "Alpaca refused the keys (401)", **fields: object
) -> dlq.DeadLetter:
    values: dict[str, object] = {
        "message_id": "1234",
        "published_at": NOW - timedelta(minutes=42),
        "source": "worker",
        "uid": uid,
        "error_class": "AlpacaAuthError",
        "error": error,
        "reason": "schedule",
        "delivery_attempts": 1,
        "request": SyncRequest(uid, Reason.SCHEDULE, NOW, replay_count=2),
    }
    values.update(fields)
    return dlq.DeadLetter(**values)  # type: ignore[arg-type]


def test_render_listing() -> None:
    listing = dlq.Listing(
        (
            letter(),
            letter(
                "bob",
                error="",
                request=None,
                decode_error="message is not JSON",
                error_class="MalformedMessage",
            ),
        ),
        scanned=5,
        exhausted=True,
    )
    text = render.render_listing(listing, NOW, "hold")
    header, first, second = text.splitlines()[:3]
    assert header.split() == [
        "AGE", "UID", "SOURCE", "ERROR", "CLASS", "ATTEMPTS", "REPLAYS", "ERROR",
    ]  # fmt: skip
    assert first.split()[:7] == ["42m", "alice", "worker", "AlpacaAuthError", "1", "2", "Alpaca"]
    assert "malformed: message is not JSON" in second and " — " in second
    assert "2 matching of 5 held in hold" in text


def test_rendering_never_shows_secret_like_values() -> None:
    leaky = letter(error=f"key {KEY_ID} secret_key={SECRET} Authorization: Bearer abcdefghijkl")
    listing = dlq.Listing((leaky,), 1, True)
    outputs = [
        render.render_listing(listing, NOW, "hold"),
        json.dumps(documents.listing_json(listing, NOW, "hold")),
        render.render_report(
            dlq.Report((dlq.Item(leaky, dlq.Status.FAILED, f"boom {KEY_ID}"),), 1, True),
            NOW,
            "hold",
            verb="replay",
        ),
    ]
    for output in outputs:
        assert KEY_ID not in output and SECRET not in output and "abcdefghijkl" not in output
        assert "[REDACTED]" in output


def test_render_replay_summary() -> None:
    report = dlq.Report(
        (
            dlq.Item(letter(), dlq.Status.REPLAYED, "new-1", 3),
            dlq.Item(letter("bob"), dlq.Status.REFUSED, "already replayed 3 times (limit 3)"),
            dlq.Item(letter("carol"), dlq.Status.FAILED, "republish failed: boom"),
        ),
        scanned=10,
        exhausted=False,
    )
    text = render.render_report(report, NOW, "hold", verb="replay")
    assert "replayed 1, refused 1, failed 1, skipped (did not match) 7" in text
    assert "bob (message 1234, 42m old): already replayed 3 times" in text
    assert "carol (message 1234, 42m old): republish failed: boom" in text
    assert "may hold more" in text

    dry = dlq.Report((dlq.Item(letter(), dlq.Status.WOULD_REPLAY, replay_count=3),), 1, True, True)
    text = render.render_report(dry, NOW, "hold", verb="replay")
    assert "REPLAY AS" in text and "#3" in text
    assert "dry run: would replay 1; nothing was changed" in text


def test_progress_line() -> None:
    tty = io.StringIO()
    bar = render.ProgressLine(tty, tty=True, width=10)
    bar(dlq.Progress(total=4, replayed=1, failed=1, refused=0))
    bar.close()
    assert tty.getvalue() == "\r[#####-----] 2/4  replayed 1 · failed 1 · refused 0\n"

    plain = io.StringIO()
    lines = render.ProgressLine(plain, tty=False)
    for done in range(1, 26):
        lines(dlq.Progress(total=25, replayed=done, failed=0, refused=1))
    lines.close()
    printed = plain.getvalue().splitlines()
    assert "\r" not in plain.getvalue()
    assert printed[0] == "progress 2/25  replayed 2 · failed 0 · refused 1"
    assert printed[-1].startswith("progress 25/25") and len(printed) == 13


def test_format_age() -> None:
    assert [render.format_age(timedelta(seconds=s)) for s in (5, 119, 600, 3700, 90_000)] == [
        "5s",
        "119s",
        "10m",
        "1h01m",
        "1d01h",
    ]
    assert render.format_age(None) == "—"


def test_credentials_commands_parse() -> None:
    parser = cli.build_parser()
    seal = parser.parse_args(["credentials", "seal-existing", "--dry-run", "--limit", "5"])
    assert (seal.dry_run, seal.limit, seal.delete_invalid) == (True, 5, False)
    rewrap = parser.parse_args(["credentials", "rewrap", "--wrapped-before", "2027-03-06T06:00"])
    assert rewrap.wrapped_before == datetime(2027, 3, 6, 6, 0, tzinfo=UTC)
    zoned = parser.parse_args(["credentials", "rewrap", "--wrapped-before", "2027-03-06T06:00Z"])
    assert zoned.wrapped_before == rewrap.wrapped_before


@pytest.mark.parametrize(
    "argv",
    [
        ["credentials", "rewrap", "--wrapped-before", "yesterday"],
        ["credentials", "seal-existing", "--limit", "0"],
        ["credentials", "reseal"],
    ],
)
def test_credentials_bad_arguments_exit_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert "error" in capsys.readouterr().err
