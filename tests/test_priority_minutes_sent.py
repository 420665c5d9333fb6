"""A crew dispatch, an escalation or the command centre's warning that no crew is free states
how long the outage has lasted in its priority reason (优先原因：…；已停电N分钟): held by the
command centre, or retried while a channel is down, it says how long it has lasted when it
goes (:func:`outage_sentinel.crew.duration_true_at`, called by
:func:`~outage_sentinel.crew.deadline_true_at`) — never 已停电3分钟 sent 90 minutes later,
which would tell the crew or the command centre the outage had just begun. Only that phrase
changes; counted again from what was sent, it is counted afresh; a row queued before the
outage's start was kept with it is left as it is.

End to end through the daemon (real processing, clock checks, outbox control, deliverer;
SQLite / PostgreSQL)."""

from __future__ import annotations

from datetime import datetime, timedelta

from outage_sentinel import crew as crews
from outage_sentinel import priority as prio
from outage_sentinel.events import PollResult
from outage_sentinel.store import OutboxRow
from tests.shared_setup import h as h  # noqa: F401  (the fixture)
from tests.shared_setup import h_en as h_en  # noqa: F401  (the fixture)
from tests.shared_setup import hold_then_send
from tests.test_escalation_minutes_sent import queued_escalation
from tests.test_lifecycle import T0, Harness, ev
from tests.test_waiting_for_crew_sent import queued_warning


def lasted(start: datetime, now: datetime, zh: bool = True) -> str:
    """How the priority reason words an outage of ``start`` at ``now`` (whole minutes)."""
    h, m = divmod(int((now - start).total_seconds() // 60), 60)
    if zh:
        return f"已停电{h}小时{m}分钟" if h else f"已停电{m}分钟"
    return f"off for {h} h {m} min" if h else f"off for {m} min"


def priority_line(text: str, marker: str = "优先原因：") -> str:
    (line,) = [ln for ln in text.splitlines() if ln.startswith(marker)]
    return line


def sent_as_true(h: Harness, row: OutboxRow, start: datetime, queued_at: datetime,
                 marker: str = "优先原因：", zh: bool = True) -> None:
    """``row`` was sent saying how long the outage had lasted when it went, in its text, its
    markdown and the record kept; every other line as queued."""
    was, now = lasted(start, queued_at, zh), lasted(start, h.now, zh)
    queued = priority_line(row.body, marker)
    assert was in queued and was != now
    sent = [m for m in h.channel.sent if m.purpose == row.purpose]
    assert sent, "the released message was sent"
    line = priority_line(sent[-1].text, marker)
    assert line == queued.replace(was, now), line
    if sent[-1].markdown:  # a group robot's (the crew's SMS has none)
        assert priority_line(sent[-1].markdown, marker) == line
    others = [a for a in sent[-1].text.splitlines() if a != line and not a.startswith(
        ("到达时限：", "Arrival deadline "))]
    assert others == [b for b in row.body.splitlines() if b != queued and not b.startswith(
        ("到达时限：", "Arrival deadline "))]
    (kept,) = [m for m in h.daemon.store.messages() if m.id == row.id]
    assert kept.status == "sent" and kept.body == sent[-1].text
    assert kept.payload["params"]["outage_for"] == now
    # What the SMS says of it states no duration: nothing there to go stale.
    assert not [v for v in kept.payload["params"]["sms"].values()
                if "已停电" in str(v) or "off for" in str(v)]


def test_a_held_escalation_released_90_minutes_later_says_how_long_then(h: Harness) -> None:
    row = queued_escalation(h)  # F1 (its crew taken) began at T0, queued at minute 76
    queued_at = h.now
    hold_then_send(h, row, queued_at + timedelta(minutes=90))
    sent_as_true(h, row, T0, queued_at)


def test_a_held_no_crew_warning_says_how_long_then(h: Harness) -> None:
    row = queued_warning(h)  # F1 began at T0, queued at minute 3: 已停电3分钟
    queued_at = h.now
    hold_then_send(h, row, queued_at + timedelta(minutes=90))
    sent_as_true(h, row, T0, queued_at)


def test_a_held_dispatch_says_how_long_then(h: Harness) -> None:
    h.at(3)
    h.daemon.store.ingest("feed", PollResult(events=[ev("F1", "T1", "T2", "T3")]), h.now)
    h.daemon.process()  # began at T0, seen three minutes on; not yet delivered
    (row,) = [m for m in h.daemon.store.messages() if m.purpose == "dispatch"]
    assert row.status == "pending"
    queued_at = h.now
    hold_then_send(h, row, queued_at + timedelta(minutes=90))
    sent_as_true(h, row, T0, queued_at)


def test_the_english_escalation_says_how_long_then(h_en: Harness) -> None:
    row = queued_escalation(h_en)
    queued_at = h_en.now
    hold_then_send(h_en, row, queued_at + timedelta(minutes=90))
    sent_as_true(h_en, row, T0, queued_at, "Priority: ", zh=False)


def test_the_recount_is_of_the_duration_alone_and_idempotent(h: Harness) -> None:
    row = queued_warning(h)
    params = row.payload["params"]
    assert params["outage_since"] == T0.isoformat() and params["outage_for"] == "已停电3分钟"
    # Sent at once: as queued.
    assert crews.duration_true_at(row.body, params, h.now, "zh") == (row.body, params)
    later = T0 + timedelta(minutes=93)
    body, said = crews.duration_true_at(row.body, params, later, "zh")
    assert said == {**params, "outage_for": "已停电1小时33分钟"}
    assert body == row.body.replace("；已停电3分钟", "；已停电1小时33分钟")
    # Counted again from what was sent: afresh, and the same at the same instant.
    assert crews.duration_true_at(body, said, later, "zh") == (body, said)
    again, _ = crews.duration_true_at(body, said, later + timedelta(minutes=30), "zh")
    assert again == row.body.replace("；已停电3分钟", "；已停电2小时3分钟")
    # Queued by code that kept no start: left as it is.
    old = {k: v for k, v in params.items() if k not in ("outage_since", "outage_for")}
    assert crews.duration_true_at(row.body, old, later, "zh") == (row.body, old)
    # A text that does not carry the phrase (a template of one's own): left as it is.
    plain = row.body.replace("；已停电3分钟", "")
    assert crews.duration_true_at(plain, params, later, "zh") == (plain, params)


def test_the_words_are_the_priority_reasons_own() -> None:
    assert prio.elapsed_words(93 / 60, "zh") == "已停电1小时33分钟"
    assert prio.elapsed_words(93 / 60, "en") == "off for 1 h 33 min"
    assert prio.elapsed_words(0.5 / 60, "zh") == ""
