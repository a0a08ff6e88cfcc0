"""Backfill's windows: a slice of no length, or none at all, is a usage error, never a loop without end (a
`--slice-hours 0` once grew until the kernel killed the process)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sync import cli
from sync.inbound.export import slices

SINCE, UNTIL = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 3, tzinfo=UTC)


@pytest.mark.parametrize("hours", ["0", "-1", "0.001", "nan", "inf", "-inf", "soon", ""])
def test_a_slice_that_would_never_end_a_window_is_a_usage_error(hours: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.parser().parse_args(["backfill", "--since", "2026-01-01", "--slice-hours", hours])
    assert exit_.value.code == 2
    assert "--slice-hours" in capsys.readouterr().err


@pytest.mark.parametrize(("hours", "windows"), [("24", 2), ("0.5", 96), ("1e6", 1), ("0.0167", 2875)])
def test_a_slice_of_at_least_a_minute_cuts_the_window(hours: str, windows: int) -> None:
    args = cli.parser().parse_args(["backfill", "--since", "2026-01-01", "--slice-hours", hours])
    assert len(slices(SINCE, UNTIL, args.slice_hours)) == windows


@pytest.mark.parametrize("hours", [0.0, -2.0, float("nan"), float("inf")])
def test_slices_refuse_a_window_of_no_length(hours: float) -> None:
    with pytest.raises(ValueError, match="positive, finite"):
        slices(SINCE, UNTIL, hours)
