"""Every command's arguments are checked as they are parsed: a value the program cannot use (an id beyond a
BIGINT, a negative limit, a time that overflows in UTC, an endless duration) is a usage error, exit 2, naming
the option. Such values once reached the ledger or datetime arithmetic and ended in a traceback
(``OverflowError: Python int too large to convert to SQLite INTEGER``, ``date value out of range``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sync import cli
from sync.inbound.export import slices
from sync.model import EARLIEST, LATEST

BIGINT = 2**63 - 1


def refused(words: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_:
        cli.parser().parse_args(words)
    assert exit_.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("row_id", ["99999999999999999999", str(BIGINT + 1), "0", "-1", "one"])
def test_a_row_id_no_row_can_have_is_a_usage_error(row_id: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert "argument --id:" in refused(["ledger", "retry", "--id", "1", row_id], capsys)


def test_row_ids_up_to_a_bigint_are_taken() -> None:
    assert cli.parser().parse_args(["ledger", "retry", "--id", "1", str(BIGINT)]).ids == [1, BIGINT]


@pytest.mark.parametrize("limit", ["99999999999999999999", str(BIGINT + 1), "-1", "0", "many"])
def test_a_limit_that_lists_nothing_or_cannot_be_sent_is_a_usage_error(
        limit: str, capsys: pytest.CaptureFixture[str]) -> None:
    """``--limit -1`` listed every row (SQLite reads a negative LIMIT as none)."""
    assert "argument --limit:" in refused(["ledger", "list", "--status", "dead", "--limit", limit], capsys)


@pytest.mark.parametrize("limit", ["1", str(BIGINT)])
def test_a_limit_from_one_to_a_bigint_is_taken(limit: str) -> None:
    assert cli.parser().parse_args(["ledger", "list", "--status", "dead", "--limit", limit]).limit == int(limit)


@pytest.mark.parametrize("age", ["99999999999d", "99999999999999999999999m", f"{(LATEST - EARLIEST).days + 1}d",
                                 "-1d", "1.5d", "30"])
def test_a_purge_age_beyond_the_times_a_ledger_holds_is_a_usage_error(
        age: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert "argument --older-than:" in refused(["ledger", "purge", "--older-than", age], capsys)


NOW = datetime(2026, 11, 29, tzinfo=UTC)


@pytest.mark.parametrize(("age", "span", "cutoff"), [
    ("0d", timedelta(0), NOW),
    ("90m", timedelta(minutes=90), NOW - timedelta(minutes=90)),
    (f"{(LATEST - EARLIEST).days}d", LATEST - EARLIEST, EARLIEST),  # nothing the ledger holds is older
])
def test_a_purge_age_keeps_what_was_typed_and_cuts_off_at_a_time_the_ledger_can_hold(
        age: str, span: timedelta, cutoff: datetime) -> None:
    older_than = cli.parser().parse_args(["ledger", "purge", "--older-than", age]).older_than
    assert (older_than.text, older_than.span) == (age, span)
    assert cli.purge_before(NOW, older_than) == cutoff


TIMES_OUT_OF_RANGE = ["9999-12-31T23:59:59-05:00", "0001-01-01T00:00+05:00", "1969-12-31T23:59Z",
                      "9000-01-01T00:01", "soon", ""]


@pytest.mark.parametrize("when", TIMES_OUT_OF_RANGE)
@pytest.mark.parametrize("command", [["ledger", "replay"], ["backfill"]])
@pytest.mark.parametrize("option", ["--since", "--until"])
def test_a_time_outside_the_range_the_console_takes_is_a_usage_error(
        command: list[str], option: str, when: str, capsys: pytest.CaptureFixture[str]) -> None:
    words = [*command, "--since", "2026-11-01", option, when] if option == "--until" else [*command, option, when]
    err = refused(words, capsys)
    assert f"argument {option}:" in err and "between 1970 and 9000" in err


@pytest.mark.parametrize(("when", "moment"), [
    ("2026-11-29", datetime(2026, 11, 29, tzinfo=UTC)),
    ("2026-11-29T09:30-05:00", datetime(2026, 11, 29, 14, 30, tzinfo=UTC)),
    ("2026-11-29T09:30Z", datetime(2026, 11, 29, 9, 30, tzinfo=UTC)),
    ("1970-01-01", EARLIEST), ("9000-01-01", LATEST),
])
def test_times_in_that_range_are_taken_in_utc(when: str, moment: datetime) -> None:
    assert cli.parser().parse_args(["ledger", "replay", "--since", when]).since == moment
    assert cli.parser().parse_args(["backfill", "--since", "1970-01-01", "--until", when]).until == moment


@pytest.mark.parametrize("hours", ["1e308", "1e20", str((LATEST - EARLIEST) / timedelta(hours=1) + 1)])
def test_a_slice_longer_than_the_times_a_backfill_can_name_is_a_usage_error(
        hours: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert "argument --slice-hours:" in refused(["backfill", "--since", "2026-11-29", "--slice-hours", hours], capsys)


def test_the_longest_slice_cuts_the_latest_window_without_overflowing() -> None:
    hours = cli.parser().parse_args(["backfill", "--since", "2026-11-29", "--slice-hours",
                                     str((LATEST - EARLIEST) / timedelta(hours=1))]).slice_hours
    assert slices(LATEST - timedelta(hours=1), LATEST, hours) == [(LATEST - timedelta(hours=1), LATEST)]
    assert slices(EARLIEST, LATEST, hours) == [(EARLIEST, LATEST)]


@pytest.mark.parametrize(("option", "value"), [("--user-id", ""), ("--user-id", "   "), ("--email", "not-an-email"),
                                               ("--email", "")])
def test_forget_names_the_option_whose_value_names_no_one(
        option: str, value: str, capsys: pytest.CaptureFixture[str]) -> None:
    """``forget --user-id ''`` answered ``--email must be an email address``."""
    problem = refused(["forget", option, value], capsys).strip().splitlines()[-1]  # after the usage line
    other = {"--user-id": "--email", "--email": "--user-id"}[option]
    assert f"argument {option}:" in problem and other not in problem


@pytest.mark.parametrize(("option", "value"), [("--user-id", " u-1 "), ("--email", "Ann@Example.com")])
def test_forget_takes_a_user_id_or_an_email(option: str, value: str) -> None:
    args = cli.parser().parse_args(["forget", option, value])
    assert (args.user_id, args.email) == ((value, None) if option == "--user-id" else (None, value))
