"""The same bad record is one quarantine row whatever its place in the batch: a feed that lists
its records in another order (a snapshot feed re-sorted, a record moved to another page) sends
the same bad record at another position, and each position was a new row. The row says where
it was last found; distinct records (another payload, another problem) stay rows of their own."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from outage_sentinel.events import Quarantined
from outage_sentinel.store import Store
from tests.test_http_json import FEEDS, NOW, Scripted, json_reply, make_source
from tests.test_http_json import server as server  # noqa: F401  (the fixture)

GOOD = json.loads((FEEDS / "95598_list.json").read_text("utf-8"))["seleList"]
BAD = {**GOOD[0], "powerOffId": "3720231125009999", "startTime": "明天上午"}


def listing(at: int) -> dict[str, Any]:
    records = [dict(r) for r in GOOD]
    records.insert(at, BAD)
    return {"seleList": records}


def test_the_same_bad_record_at_other_positions_is_one_row_with_its_repeats(
        server: tuple[str, Scripted], store: Store) -> None:  # noqa: F811
    url, script = server
    script.replies = [json_reply(listing(3)), json_reply(listing(0)), json_reply(listing(2))]
    source = make_source(url + "/notices")
    source.start(None)
    reasons = []
    for minutes in (0, 5, 10):
        result = source.poll(NOW + timedelta(minutes=minutes))
        (bad,) = result.quarantined
        reasons.append(bad.reason)
        store.ingest(source.name, result, NOW + timedelta(minutes=minutes))
    assert [r.split(": ")[1] for r in reasons] == ["record 3", "record 0", "record 2"]
    (row,) = store.quarantined()
    assert row["repeats"] == 2
    assert json.loads(row["raw"])["powerOffId"] == BAD["powerOffId"]
    # the operator sees where it was found last (and since when it keeps coming)
    assert row["reason"] == reasons[-1]
    assert row["last_seen"].replace(tzinfo=None) == \
        (NOW + timedelta(minutes=10)).replace(tzinfo=None)


def test_positions_of_every_source_shape_are_one_row(store: Store) -> None:
    shapes = [("page 2: record 1: start (startTime): bad", "page 1: record 4: start (startTime): bad"),
              ("orders.csv row 5: bad CSV: x", "orders.csv row 9: bad CSV: x"),
              ("orders.jsonl line 3 item 1: time: bad", "orders.jsonl line 7 item 0: time: bad"),
              ("topic ami/x line 2 record 3: time: bad", "topic ami/x line 1 record 1: time: bad")]
    for n, (first, then) in enumerate(shapes):
        raw = {"n": n}
        store.quarantine(Quarantined("feed", first, raw), NOW)
        store.quarantine(Quarantined("feed", then, raw), NOW + timedelta(minutes=1))
    rows = store.quarantined()
    assert sorted((r["reason"], r["repeats"]) for r in rows) == sorted(
        (then, 1) for _, then in shapes)


def test_distinct_records_and_problems_stay_rows_of_their_own(store: Store) -> None:
    store.quarantine(Quarantined("feed", "record 1: start (startTime): bad", {"id": 1}), NOW)
    store.quarantine(Quarantined("feed", "record 2: start (startTime): bad", {"id": 2}), NOW)
    store.quarantine(Quarantined("feed", "record 1: stop (stopTime): bad", {"id": 1}), NOW)
    store.quarantine(Quarantined("other", "record 1: start (startTime): bad", {"id": 1}), NOW)
    rows = store.quarantined()
    assert len(rows) == 4 and all(r["repeats"] == 0 for r in rows)
    # the same problem and payload at the same place is a repeat, as before
    store.quarantine(Quarantined("feed", "record 1: start (startTime): bad", {"id": 1}),
                     NOW + timedelta(minutes=1))
    assert len(store.quarantined()) == 4
