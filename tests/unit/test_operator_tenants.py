"""``agenttrader tenants prune`` without any emulator: the lookup in batches of 100, the limit,
ids that cannot be uids, the summary, the arguments and the same-world guard."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from operations import cli
from operations.tenants import AUTH_BATCH, PruneReport, find_missing, render


class Auth:
    """Knows ``known``; records every lookup."""

    def __init__(self, known: set[str]) -> None:
        self.known = known
        self.calls: list[list[str]] = []

    def __call__(self, uids: Sequence[str]) -> set[str]:
        assert len(uids) <= AUTH_BATCH
        self.calls.append(list(uids))
        return self.known & set(uids)


def test_users_are_looked_up_100_at_a_time() -> None:
    ids = [f"u{n:03}" for n in range(250)]
    auth = Auth(set(ids) - {"u007", "u150", "u249"})
    report = PruneReport(dry_run=True)
    lines: list[str] = []

    find_missing(ids, auth, report, limit=None, progress=lines.append)

    assert [len(c) for c in auth.calls] == [100, 100, 50]
    assert report.checked == 250 and report.missing == ["u007", "u150", "u249"]
    assert not report.limited
    assert lines[-1] == "checked 250 users: 3 without a Firebase Auth user"


def test_the_limit_stops_the_scan() -> None:
    ids = [f"u{n:03}" for n in range(300)]
    auth = Auth(set())
    report = PruneReport(dry_run=False)

    find_missing(iter(ids), auth, report, limit=5, progress=lambda _line: None)

    assert report.missing == ids[:5] and report.limited
    assert len(auth.calls) == 1


def test_ids_that_cannot_be_uids_are_skipped_not_looked_up() -> None:
    auth = Auth({"ok"})
    report = PruneReport(dry_run=True)

    find_missing(["ok", "..", "a b", "x" * 129, "gone"], auth, report, limit=None, progress=print)

    assert auth.calls == [["ok", "gone"]]
    assert report.missing == ["gone"] and report.skipped == ["..", "a b", "x" * 129]


def test_the_summary() -> None:
    dry = PruneReport(dry_run=True, checked=4, missing=["a", "b"], skipped=["?"])
    assert render(dry, "p") == (
        "tenants prune of p (dry run): checked 4 users, 2 without a Firebase Auth user\n"
        "  would remove 2 tenant(s)\n    a\n    b\n"
        "  skipped 1 id(s) that cannot be a uid\n"
    )
    done = PruneReport(dry_run=False, checked=3, missing=["a", "b"], removed={"a": 7}, spared=["b"])
    assert render(done, "p") == (
        "tenants prune of p: checked 3 users, 2 without a Firebase Auth user\n"
        "  removed 1 tenant(s), 7 documents\n"
        "  spared 1 that are back in Auth: b\n"
    )
    assert done.as_json()["documents_deleted"] == 7


@pytest.mark.parametrize(
    ("env", "refused"),
    [
        ({}, False),
        ({"FIRESTORE_EMULATOR_HOST": "h:1", "FIREBASE_AUTH_EMULATOR_HOST": "h:2"}, False),
        ({"FIRESTORE_EMULATOR_HOST": "h:1"}, True),
        ({"FIREBASE_AUTH_EMULATOR_HOST": "h:2"}, True),
        ({"FIRESTORE_EMULATOR_HOST": "h:1", "FIREBASE_AUTH_EMULATOR_HOST": " "}, True),
    ],
)
def test_firestore_and_auth_must_be_the_same_world(env: dict[str, str], refused: bool) -> None:
    if refused:
        with pytest.raises(cli.UsageError, match="both"):
            cli.check_same_world(env)
    else:
        cli.check_same_world(env)


def test_the_arguments() -> None:
    args = cli.build_parser().parse_args(["tenants", "prune", "--dry-run", "--limit", "3"])
    assert (args.dry_run, args.limit, args.yes, args.json) == (True, 3, False, False)
    assert args.handler is cli._tenants_prune
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["tenants", "prune", "--limit", "0"])


def test_without_a_terminal_a_prune_needs_yes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "p")
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert cli.main(["tenants", "prune"]) == cli.EXIT_USAGE
    assert "--yes" in capsys.readouterr().err
