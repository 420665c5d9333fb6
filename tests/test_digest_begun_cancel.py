"""Planned work called off after it began: a digest says what the notice says.

The village's own notice (and its SMS, ``cancelled_begun``) reads 「…已取消。如仍停电，请拨打95598」
once the work has begun — the area may have been off since its start. A digest merging the
village's notices (a storm, the robot's rate limit) said 「计划停电已取消…届时正常供电」 all
the same: normal supply promised for a time gone by. Only work called off before it began
may read 届时正常供电 in a digest, and a summary, which says nothing of when the work was
called off, never promises it.

The rows are the ones the daemon queues (tests/test_sms_cancel_begun.py's work on T1, 马集村),
turned into channel messages as the deliverer does (:func:`sending.message_of`).
"""

from __future__ import annotations

from dataclasses import replace

from outage_sentinel.channels.base import Message
from outage_sentinel.daemon import Daemon
from outage_sentinel.digest import build_digest
from outage_sentinel.sending import message_of
from tests.test_shared_areas import daemon as daemon  # noqa: F401  (the fixture)
from tests.test_sms_cancel_begun import work_on_t1


def digest_of(d: Daemon, audience: str, recipient: str, language: str = "zh") -> str:
    """The digest line of every message queued to ``recipient``, as the deliverer builds it."""
    rows = [m for m in d.store.messages()
            if m.audience == audience and m.recipient.startswith(recipient)]
    assert rows, recipient
    (part,) = build_digest([message_of(r) for r in rows], limit_bytes=4096,
                           language=language)  # type: ignore[arg-type]
    return part.message.text.splitlines()[1]


def test_a_digest_of_work_called_off_after_it_began_promises_no_normal_supply(
        daemon: Daemon) -> None:  # noqa: F811
    said = work_on_t1(daemon, 60)
    assert said["wecom"][1]["begun"] is True  # the notice says so, for any digest of it
    line = digest_of(daemon, "liaison", "village:V1:wecom:")
    assert line.startswith("【计划停电已取消】") and "马集村(40户)" in line, line
    assert "届时正常供电" not in line and "如仍停电请拨打95598" in line, line
    en = digest_of(daemon, "liaison", "village:V1:wecom:", "en")
    assert "no outage then" not in en and "call 95598" in en, en


def test_the_command_centre_digest_promises_no_normal_supply_either(
        daemon: Daemon) -> None:  # noqa: F811
    work_on_t1(daemon, 60)
    line = digest_of(daemon, "command", "command:")
    assert line.startswith("【计划停电已取消】"), line
    assert "届时正常供电" not in line, line


def test_a_digest_of_work_called_off_before_it_began_still_says_normal_supply(
        daemon: Daemon) -> None:  # noqa: F811
    said = work_on_t1(daemon, -120)
    assert said["wecom"][1]["begun"] is False
    line = digest_of(daemon, "liaison", "village:V1:wecom:")
    assert "马集村(40户)，届时正常供电" in line, line
    assert "如仍停电" not in line, line


def test_the_command_centre_digest_of_work_called_off_ahead_says_normal_supply(
        daemon: Daemon) -> None:  # noqa: F811
    """The summary's facts say whether the work had begun when it was called off (its end):
    work called off two hours ahead keeps its promise in the command centre's digest."""
    work_on_t1(daemon, -120)
    line = digest_of(daemon, "command", "command:")
    assert line.startswith("【计划停电已取消】") and "届时正常供电" in line, line


def cancel(key: str, village: str, begun: bool) -> Message:
    return Message(key=key, channel="wecom", target="g", text=f"【停电取消】{village}",
                   incident_id="I1", purpose="cancelled",
                   params={"village": village, "feeder": "F1", "kind": "planned",
                           "households": 10, "begun": begun})


def test_each_village_gets_the_advice_of_its_own_cancellation() -> None:
    """One work's villages may have different starts: each village's line follows its own
    notice, and the latest cancellation of a village decides."""
    msgs = [cancel("a", "东村", False), cancel("b", "西村", True)]
    (part,) = build_digest(msgs, limit_bytes=2048)
    line = part.message.text.splitlines()[1]
    assert line == ("【计划停电已取消】F1：东村(10户)，届时正常供电；"
                    "西村(10户)，如仍停电请拨打95598；I1"), line
    (part,) = build_digest([*msgs, cancel("c", "东村", True)], limit_bytes=2048)
    line = part.message.text.splitlines()[1]
    assert line == "【计划停电已取消】F1：西村(10户)、东村(10户)，如仍停电请拨打95598；I1", line


def test_a_summary_that_does_not_say_when_the_work_was_called_off_promises_nothing() -> None:
    summary = Message(key="s", channel="cc", target="指挥中心", text="【已取消】I1",
                      incident_id="I1", purpose="summary", audience="command",
                      params={"feeder": "F1", "kind": "planned", "status": "cancelled",
                              "villages": {"东村": 10}, "households": 10})
    (part,) = build_digest([summary], limit_bytes=2048)
    assert "届时正常供电" not in part.message.text, part.message.text
    ahead = replace(summary, params={**summary.params, "begun": False})
    (part,) = build_digest([ahead], limit_bytes=2048)
    assert "东村(10户)，届时正常供电" in part.message.text, part.message.text
