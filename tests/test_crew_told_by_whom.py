"""A crew reads who said the power is back (or called the outage off) as what that is — the
command centre, a liaison, the outage information system, the meters — never the name a
config gave the source (``feed``, ``county-95598``): "据county-95598" tells a crew nothing."""

from __future__ import annotations

import pytest

from outage_sentinel.crew import restored_by


@pytest.mark.parametrize(("source", "signal", "zh", "en"), [
    ("operator", "notice", "指挥中心", "the command centre"),
    ("field", "alive", "村联络人反馈", "the village liaison"),
    ("county-95598", "notice", "停电信息系统", "the outage information system"),
    ("ami-north", "alive", "用电信息采集（电表）", "the meters (AMI)"),
    ("ami-north", "dead", "用电信息采集（电表）", "the meters (AMI)"),
    ("workorders", "call", "95598工单", "the trouble calls"),
    ("odd", "something-new", "停电信息系统", "the outage information system"),
])
def test_who_said_so_is_named_by_what_it_is(source: str, signal: str, zh: str, en: str) -> None:
    assert restored_by(source, "zh", signal) == zh
    assert restored_by(source, "en", signal) == en
