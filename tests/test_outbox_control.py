"""The command centre's hold on one message: withdraw (never sent, kept with who and why), hold
and release, over a real Store (SQLite) and the real Deliverer with the scripted channel of
``test_delivery``. A withdrawn or held message is never claimed by the deliverer, requeued by a
retry or resent by the recovery after a crash; one being sent is left to its send."""

from __future__ import annotations

from datetime import timedelta

from outage_sentinel.channels.base import Message, Outcome, SendResult
from outage_sentinel.outgoing import Address
from outage_sentinel.store import Store
from tests.conftest import T0
from tests.test_delivery import FakeChannel, deliverer, enqueue, only, row


def test_a_withdrawn_message_is_never_sent_retried_or_recovered(sqlite_store: Store) -> None:
    (m,) = enqueue(sqlite_store, row())
    assert sqlite_store.control([m.id], "withdraw", T0, "withdrawn by board:ops: wrong village"
                                ) == [m.id]
    ch = FakeChannel()
    d = deliverer(sqlite_store, ch)
    d.run_once(T0 + timedelta(minutes=1))
    assert sqlite_store.requeue([m.id], T0, "retried by x") == []
    assert sqlite_store.requeue(None, T0, "retried by x") == []
    assert d.recover(T0) == 0
    d.run_once(T0 + timedelta(hours=1))
    got = only(sqlite_store)
    assert ch.sent == [] and got.status == "withdrawn" and got.dead_at == T0
    assert got.last_error == "withdrawn by board:ops: wrong village (was pending)"
    # a second word on it changes nothing
    assert sqlite_store.control([m.id], "release", T0, "released") == []
    assert sqlite_store.control([m.id], "withdraw", T0, "again") == []


def test_a_dead_letter_withdrawn_keeps_why_it_died(sqlite_store: Store) -> None:
    (m,) = enqueue(sqlite_store, row())
    sqlite_store.mark_dead(m.id, T0, "HTTP 500")
    sqlite_store.control([m.id], "withdraw", T0, "withdrawn by cli:li: number wrong")
    assert only(sqlite_store).last_error == \
        "withdrawn by cli:li: number wrong (was dead: HTTP 500)"


def test_a_message_being_sent_is_left_to_its_send(sqlite_store: Store) -> None:
    """The claim and the withdrawal are each one statement with a status condition: whichever
    comes first wins, and the other changes nothing."""
    (m,) = enqueue(sqlite_store, row())
    assert sqlite_store.mark_inflight(m.id, T0)
    assert sqlite_store.control([m.id], "withdraw", T0, "too late") == []
    assert sqlite_store.control([m.id], "hold", T0, "too late") == []
    sqlite_store.mark_sent(m.id, T0, "errcode 0")
    assert only(sqlite_store).status == "sent"
    assert sqlite_store.control([m.id], "withdraw", T0, "too late") == []


def test_a_message_withdrawn_after_the_deliverer_read_it_is_not_sent(sqlite_store: Store
                                                                       ) -> None:
    """The deliverer read both due messages of one group; while it sends the first, the
    command centre withdraws the second: its claim finds it withdrawn and it stays unsent."""
    first, second = enqueue(sqlite_store, row(purpose="outage"), row(purpose="update"))

    def withdraw_the_next(_msg: Message) -> SendResult:
        assert sqlite_store.control([second.id], "withdraw", T0, "withdrawn by ops: wrong")
        return SendResult(Outcome.DELIVERED, "errcode 0")

    ch = FakeChannel(script=[withdraw_the_next])
    deliverer(sqlite_store, ch).run_once(T0)
    assert [msg.key for msg in ch.sent] == [first.key]
    assert {m.id: m.status for m in sqlite_store.messages()} == {
        first.id: "sent", second.id: "withdrawn"}


def test_the_deliverers_own_writes_never_undo_a_withdrawal(sqlite_store: Store) -> None:
    """Quiet hours and rate limits put a message they read back (``mark_retry``), an unknown
    channel dead-letters it: none of them may make a withdrawn or held message pending or dead
    again."""
    a, b = enqueue(sqlite_store, row(), row("village:V2:wecom:g2"))
    sqlite_store.control([a.id], "withdraw", T0, "withdrawn")
    sqlite_store.control([b.id], "hold", T0, "held")
    for m in (a, b):
        sqlite_store.mark_retry(m.id, T0, "quiet hours")
        sqlite_store.mark_dead(m.id, T0, "channel not configured")
        sqlite_store.mark_sent(m.id, T0, "dry run")
    assert [m.status for m in sqlite_store.messages()] == ["withdrawn", "held"]


def test_a_held_message_waits_until_released_and_holds_nobody_up(sqlite_store: Store) -> None:
    outage, update = enqueue(sqlite_store, row(purpose="outage"), row(purpose="update"))
    assert sqlite_store.control([outage.id], "hold", T0, "held by board:ops: check ETR") == [
        outage.id]
    ch = FakeChannel()
    d = deliverer(sqlite_store, ch)
    d.run_once(T0 + timedelta(minutes=1))
    assert [msg.key for msg in ch.sent] == [update.key]  # a held one holds nothing up
    assert d.recover(T0) == 0
    assert sqlite_store.requeue([outage.id], T0, "retried") == []  # release, not retry
    later = T0 + timedelta(minutes=5)
    assert sqlite_store.control([outage.id], "release", later, "released by board:ops") == [
        outage.id]
    d.run_once(later)
    assert [msg.key for msg in ch.sent] == [update.key, outage.key]
    assert next(m for m in sqlite_store.messages() if m.id == outage.id).status == "sent"


def test_a_message_re_addressed_while_the_deliverer_holds_its_copy_goes_to_the_new_address(
        sqlite_store: Store) -> None:
    """The deliverer read two messages for group g1; while it sends the first, the operator
    holds the second and releases it to the liaisons' corrected group. The copy in hand (old
    address) is not sent: the next run sends the stored one, to the new address."""
    first, second = enqueue(sqlite_store, row("village:V1:wecom:g1", incident_id="INC-1"),
                            row("village:V2:wecom:g1", incident_id="INC-2", target="g1"))

    def operator_acts(_m: Message) -> SendResult:
        assert sqlite_store.control([second.id], "hold", T0, "held by ops") == [second.id]
        assert sqlite_store.control([second.id], "release", T0, "released by ops",
                                    {second.id: Address("g1-new", ("13811112222",))}) \
            == [second.id]
        return SendResult(Outcome.DELIVERED, "errcode 0")

    ch = FakeChannel(script=[operator_acts])
    d = deliverer(sqlite_store, ch)
    d.run_once(T0)
    assert [m.target for m in ch.sent] == ["g1"]  # the first only
    d.run_once(T0 + timedelta(seconds=5))
    assert [m.target for m in ch.sent] == ["g1", "g1-new"]
    assert ch.sent[1].mentions == ("13811112222",)


def test_only_the_command_centres_withdrawal_before_sending_says_a_recipient_gets_none(
        sqlite_store: Store) -> None:
    """A care notice the command centre withdrew while pending or held is its word that the
    recipient gets none; a dead letter it tidied away, or one the daemon took back itself,
    is not (a later dispatch may send it a new one)."""
    rows = [row(f"village:V{i}:wecom:g{i}", purpose="care") for i in range(1, 6)]
    m = enqueue(sqlite_store, *rows)
    ids = {r.recipient: r.id for r in m}
    sqlite_store.control([ids["village:V1:wecom:g1"]], "withdraw", T0,
                         "withdrawn by board:ops: 名单待核实")
    sqlite_store.control([ids["village:V2:wecom:g2"]], "hold", T0, "held by board:ops")
    sqlite_store.control([ids["village:V2:wecom:g2"]], "withdraw", T0, "withdrawn by cli:li: x")
    sqlite_store.mark_dead(ids["village:V3:wecom:g3"], T0, "HTTP 500")
    sqlite_store.control([ids["village:V3:wecom:g3"]], "withdraw", T0, "withdrawn by cli:li: y")
    with sqlite_store.transaction() as conn:
        sqlite_store.withdraw_pending_in(conn, "INC-1", ("care",), T0,
                                         "another crew holds the list",
                                         recipients=("village:V4:wecom:g4",))
        refused = sqlite_store.withdrawn_by_command_in(conn, "INC-1", ("care",))
        taken_back = sqlite_store.taken_back_in(conn, "INC-1", ("care",))
    assert refused == {"village:V1:wecom:g1", "village:V2:wecom:g2"}
    assert taken_back == {f"village:V{i}:wecom:g{i}" for i in range(1, 5)}
