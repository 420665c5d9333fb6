"""A village's notice gathered in a round says the state the round ended in.

In a storm replay on the demo county 薛店村's 【停电信息更新】 said "已确认停电：2#、6#、7#，388户"
while area 2# had come back later in the same round (the round ended with 6# and 7# off): the
round's one update per village was written from the last revision with news for the village,
and a later revision of the round (an area back, no news on its own) was not in it. Each owed
notice now says the incident's last revision of the round.

Everything runs through the real path: the demo bundle, a real SQLite store, the processor
built as the daemon builds it, and the deliverer sending to recording channels.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from outage_sentinel.events import PollResult
from outage_sentinel.store import Store
from outage_sentinel.topology import Topology
from tests.shared_setup import demo as demo  # noqa: F401  (the fixture)
from tests.shared_setup import store as store  # noqa: F401  (the fixture)
from tests.test_storm_notice_flood import NOW, Rig, feed, sent_per_recipient


def test_the_update_says_the_rounds_final_state_not_its_last_news(
        tmp_path: Path, store: Store, demo: Topology) -> None:
    rig = Rig(tmp_path, store, demo)
    areas = rig.areas()
    a, b, c = areas[0], areas[1], areas[-1]  # C: beyond what A and B put off
    name = {t: demo.nodes[t].name for t in (a, b, c)}
    store.ingest("feed", PollResult(events=[feed("NA", a), feed("NB", b)]), NOW)
    rig.process(NOW)
    told = rig.deliver(NOW)
    assert {m.purpose for m in told} == {"outage"}
    assert set(sent_per_recipient(told).values()) == {1}
    # One poll: C reported off (news: an update), then A's record ends — an area back is
    # no news on its own, so the revision with news for the village is not the round's last.
    later = NOW + timedelta(minutes=10)
    store.ingest("feed", PollResult(events=[feed("NC", c), feed("NA", a, "restored", later)]),
                 later)
    assert rig.process(later) == 2
    [row] = store.load_incidents(open_only=False)
    assert row["status"] == "active" and a in row["state"]["restored"]
    sent = rig.deliver(later)[len(told):]
    per = sent_per_recipient(sent)
    assert len(per) == 3 and set(per.values()) == {1}, per
    assert {m.purpose for m in sent} == {"update"}
    for m in sent:  # the round ended with B and C off: A is not said to be off
        confirmed = m.text.split("已确认停电", 1)[1].split("\n", 1)[0]
        assert name[b] in confirmed and name[c] in confirmed, m.text
        assert name[a] not in confirmed, m.text
        assert f"本村{demo.customers_of([b, c])}户" in confirmed, m.text
        assert int(m.key.split("/")[1]) == row["state"]["revision"], m.key
