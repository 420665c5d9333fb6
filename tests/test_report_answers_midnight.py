"""A liaison's "power back" answer is counted in the report of the day it was given, even when
the outage it confirms was over before that day began (back at 23:50, confirmed at 00:10):
the daily reports add up to the week's, and the minutes to confirm run from the return."""

from __future__ import annotations

from datetime import UTC, date, datetime

from tests.test_lifecycle import ev
from tests.test_report_audit_fixes import H, M, confirm, day, restore, summary, week
from tests.test_report_audit_fixes import h as h  # noqa: F401  (the fixture)


def test_a_confirmation_after_midnight_counts_in_the_next_day(h) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    start = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)  # 22:00 in Beijing
    h.now = start
    h.feed(ev("A", "T3", start=start, device="FU2"))
    iid = h.only_incident()
    h.now = start + 110 * M  # back at 23:50
    restore(h, iid, None, "2026-11-23 23:50")
    h.now = start + 130 * M  # 00:10 the next day: the liaison confirms
    confirm(h, iid, "T3", "k-west")
    h.now = start + 2 * 24 * H
    first, second = day(h, date(2026, 11, 23)), day(h, date(2026, 11, 24))
    counts = [summary(r)["field_confirmations"] for r in (first, second,
                                                          week(h, date(2026, 11, 23)))]
    assert counts == [0, 1, 1]
    assert iid not in list(second.incidents["id"])  # not an outage of the second day
    minutes = second.by_village["confirm_minutes_median"].dropna().tolist()
    assert minutes == [20.0]


def test_two_liaisons_either_side_of_midnight_confirm_the_area_once(h) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """The area counts once, on the day of its first confirmation (23:55, 5 minutes after it
    came back): the days add up to the week, and the second liaison's word at 00:10 is no
    second confirmation."""
    start = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)  # 22:00 in Beijing
    h.now = start
    h.feed(ev("A", "T3", start=start, device="FU2"))
    iid = h.only_incident()
    h.now = start + 110 * M  # back at 23:50
    restore(h, iid, None, "2026-11-23 23:50")
    h.now = start + 115 * M  # 23:55: the first liaison
    confirm(h, iid, "T3", "k-west")
    h.now = start + 130 * M  # 00:10: another liaison, by another link
    confirm(h, iid, "T3", "k-west-2")
    h.now = start + 2 * 24 * H
    first, second = day(h, date(2026, 11, 23)), day(h, date(2026, 11, 24))
    counts = [summary(r)["field_confirmations"] for r in (first, second,
                                                          week(h, date(2026, 11, 23)))]
    assert counts == [1, 0, 1]
    assert first.by_village["confirm_minutes_median"].dropna().tolist() == [5.0]
    assert second.by_village["confirm_minutes_median"].dropna().tolist() == []
