"""A stated probability stays until it moves by STEADY_POINTS: each stated figure is a
revision and each revision a summary to the command centre, and in a storm every meter
reading moved it by a point. The figure every surface states is still the one stated."""

from __future__ import annotations

from pathlib import Path

from outage_sentinel.incidents import STEADY_POINTS, stated_percent
from tests.test_probability_statements import ev, feed, make, msgs, only_incident


def test_a_small_move_keeps_the_stated_figure_and_a_large_one_is_a_new_revision(
        tmp_path: Path) -> None:
    d = make(tmp_path)
    try:
        feed(d, 1, ev("N1", "T1", "T2"))  # the outage system: both areas of FU1 off
        iid = only_incident(d)
        first = d.processor.incident(iid)
        summaries = len(msgs(d, iid, "command", "summary"))
        assert first.estimate.devices == ("FU1",)
        stated = stated_percent(first.estimate.probability)
        # A reading on the other branch moves the model's figure by a few points only.
        feed(d, 2, ev("A5", "T5", signal="alive", source="ami"))
        now = d.processor.incident(iid)
        assert now.revision == first.revision
        assert stated_percent(now.estimate.probability) == stated
        assert len(msgs(d, iid, "command", "summary")) == summaries
        # A call from a dead area moves it well past the steady band: a new revision, stated.
        feed(d, 3, ev("C2", "T2", signal="call", source="calls"))
        later = d.processor.incident(iid)
        assert later.revision == first.revision + 1
        assert abs(stated_percent(later.estimate.probability) - stated) >= STEADY_POINTS
        assert len(msgs(d, iid, "command", "summary")) == summaries + 1
    finally:
        d.close()
