"""The ``http_json`` source: polls an HTTP(S) endpoint that returns outage records as JSON.

One poll = one or more HTTP requests (pages), each with

* connect and read timeouts, and a limit on the whole download time;
* a response-size cap enforced while streaming, so a runaway body is cut off after
  ``max_response_bytes`` instead of being read into memory;
* retries with exponential backoff for HTTP 5xx/429, timeouts, refused/reset connections and
  truncated bodies (``retry.max_attempts`` attempts; ``sleep`` is injected so tests don't wait);
* a conditional GET: the ETag / Last-Modified of the last *committed* poll are sent as
  ``If-None-Match`` / ``If-Modified-Since``; a 304 gives ``PollResult(not_modified=True)``.

Each request, as the list above says, and its body read as JSON are the work of
:class:`~outage_sentinel.sources.feed_client.FeedClient`; this module pages through the feed,
maps its records and keeps the cursor. The new validators go into :attr:`PollResult.cursor`,
and the source only starts sending them after :meth:`HttpJsonSource.acknowledge` — i.e. once
the daemon has stored the events with the cursor. A crash or a failed commit in between
therefore re-fetches the body instead of getting a 304 for events that were never stored.

A poll that fails as a whole raises :class:`FeedError` (a :class:`SourceError`) whose message
names the source, the URL (query values and credentials redacted) and the reason; the raw body,
when there was one, is on ``FeedError.raw`` (at most :data:`RAW_LIMIT` characters) so the daemon
can quarantine it. One bad record does not fail the poll: it becomes a
:class:`~outage_sentinel.events.Quarantined` entry whose reason names the record and field.

With ``snapshot`` (the feed lists every current outage) a record gone from the list is over
(:func:`snapshot`), but only a poll that saw the whole list may end one: none when fewer
rows came than the feed counts (``total_count_path``), when the totals changed between pages,
when a preset's reply carries a code that is no success, or when a record without a readable
id may be the one that left. Rows of one id (a work order listed once per transformer area)
are one record: :meth:`~outage_sentinel.sources.mapping.RecordMapper.merge` joins them, or
quarantines them together when they disagree. Such polls are
logged (``http_json.poll_incomplete``, ``http_json.restoration_held``, and
``http_json.restorations_blocked`` after :data:`HELD_ALERT_POLLS` in a row) and counted in
:attr:`HttpJsonSource.stats`, which the poller exports as metrics.

Secrets — header values, query values, credentials in the URL, string values of the POST body —
never appear in messages or logs: messages are built from fixed texts plus redacted parts, and
everything is scrubbed of the configured secret values once more before it leaves.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import requests
import structlog

from outage_sentinel.config import HttpJsonSourceConfig
from outage_sentinel.events import (
    LEFT_LIST,
    UNCLASSIFIED_KIND,
    EventError,
    OutageEvent,
    PollResult,
    Quarantined,
    parse_time,
)
from outage_sentinel.retry import RetryPolicy
from outage_sentinel.sources.feed_client import (
    RAW_LIMIT,
    FeedClient,
    FeedError,
    FeedResponse,
    page_prefix,
    raw_text,
    redact_url,
)
from outage_sentinel.sources.mapping import (
    MERGED_ROWS,
    MISSING,
    RecordMapper,
    Row,
    envelope_doubt,
    envelope_failure,
    extract_records,
    get_path,
    resolve_mapping,
)

__all__ = ["FeedError", "HttpJsonSource", "RAW_LIMIT", "redact_url"]

#: Complete polls in a row a snapshot record must be missing from before it is over: a record
#: can move across a page boundary while the feed is paged (another outage ended above it),
#: and one such miss must not tell its villages that power is back.
ABSENT_POLLS = 2
#: Polls in a row that held back a record gone from the list (the poll was incomplete, or a
#: record without a readable id may be that record) before ``http_json.restorations_blocked``
#: is logged as an error; the gauge ``outage_sentinel_snapshot_held_polls`` shows the count.
HELD_ALERT_POLLS = 3
#: Key of a cursor's active record: when a complete poll first missed it (ISO time). A record
#: gone before its start was called off; the first miss says when it went, not the second.
MISSED_AT = "missed_at"
#: Distinct unclassified outage-type values logged (``feed_unknown_kind``) per source.
MAX_UNCLASSIFIED_LOGGED = 50

log = structlog.get_logger(__name__)


def _fingerprint(record: Any) -> str:
    """A short hash of a record's whole content: how a record without a readable id is told
    from another across polls (any change to it makes it a record not seen before)."""
    text = json.dumps(record, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


@dataclass
class _Listing:
    """What one poll saw of the feed's list, to tell whether it saw all of it."""

    #: every readable id served (events, quarantined records, skipped work orders)
    ids: set[str] = field(default_factory=set)
    #: every row served, by its content: the most times it came on one page (one served again
    #: on another page moved across a page boundary; listed twice on one page, it is two rows)
    rows: dict[str, int] = field(default_factory=dict)
    #: ids of the quarantined records: still listed
    held: set[str] = field(default_factory=set)
    #: fingerprints of the records whose id cannot be read
    nameless: set[str] = field(default_factory=set)
    #: the feed's count of its records, as each page gave it
    counts: set[int] = field(default_factory=set)
    #: each page's total page count (None: that page had no page model)
    page_totals: set[int | None] = field(default_factory=set)
    unreadable_count: bool = False
    #: why a reply may be an error envelope though no success check failed
    doubt: str | None = None

    def count_page(self, records: list[Any]) -> None:
        """Note the rows of one page."""
        for fp, n in Counter(_fingerprint(r) for r in records).items():
            self.rows[fp] = max(self.rows.get(fp, 0), n)

    @property
    def seen(self) -> int:
        """Rows served, as the feed counts them: a record listed once per transformer area is
        several rows of one id (counting ids, such a feed never looked complete)."""
        return sum(self.rows.values())

    @property
    def counted(self) -> int | None:
        """The largest count the feed gave during the poll."""
        return max(self.counts) if self.counts else None

    def gap(self) -> str | None:
        """Why the records served are not the whole list, or None if nothing says so."""
        if self.doubt is not None:
            return self.doubt
        if self.unreadable_count:
            return "the total count is not a non-negative integer"
        if len(self.counts) > 1 or len({t for t in self.page_totals if t is not None}) > 1:
            return "the page count or total count changed between pages"
        if self.counted is not None and self.seen < self.counted:
            return "fewer rows served than the feed counts"
        return None


def snapshot(source: str, previous_cursor: Mapping[str, Any], result: PollResult,
             cursor: dict[str, Any], now: datetime, *, complete: bool,
             held: set[str], nameless: Collection[str] = ()) -> list[str]:
    """The feed lists every current outage: a record gone from complete polls is over.

    95598 notice lists carry no status; an outage leaves the list when it ends. The
    active records are kept in the cursor (persisted with the events), and a record missing
    from :data:`ABSENT_POLLS` complete polls in a row becomes a ``restored`` revision added to
    ``result`` (end: ``now``) — or, when its start was still ahead when the first of those
    polls missed it (kept in the cursor, :data:`MISSED_AT`), a ``cancelled`` one (no end, as a
    feed's own cancellation): the work was called off, no power went off.

    No poll counts that was incomplete (``complete`` False: the page limit reached, a null
    list or a page without its page model — an error envelope looks like that —, fewer
    rows served than the feed's own total count, the totals changed between pages, a preset's
    reply with a code that is no success). A quarantined record whose id can be read (in
    ``held``) is listed: it is still on, and stays in the cursor's active records.

    A record whose id cannot be read (``nameless``: fingerprints of its whole content) might
    be any record that is missing — the one that left the list with its id broken. Counting
    cannot rule that out (the feed's count matches either way), so a missing record is ended
    only when every unreadable record of this poll was already served, with the same content,
    in an earlier poll that also listed the missing record by its id: then it is another
    record. Any other missing record is held back (kept, its misses not counted) for as long
    as the unreadable record stays; one that appears with the disappearance, or changes,
    holds back what is missing then. So a malformed record that sits in the feed no longer
    stops the restorations of the others, and still never lets one be announced that it may
    be. The cursor keeps, per unreadable fingerprint, the active ids served with it.

    A record first listed in a complete poll from which others are missing (counted, not held
    back) carries their ids (:func:`_tag_arrivals`): a re-issued record's old id leaves the
    list as its new one appears.

    Returns the ids of the missing records this poll held back (incomplete, or unreadable
    records that may be them); ``cursor["held_polls"]`` counts polls in a row that held one.
    """
    listed = {e.event_id for e in result.events} | held
    gone = sorted(k for k in dict(previous_cursor.get("active") or {}) if k not in listed)
    if complete:
        held_back = _end_missing(source, previous_cursor, result, cursor, now, gone=gone,
                                 nameless=nameless, held=held)
    else:
        held_back = _keep_missing(previous_cursor, result, cursor, listed=listed, gone=gone)
    _note_nameless(cursor, previous_cursor, listed, nameless)
    if held_back:
        cursor["held_polls"] = int(previous_cursor.get("held_polls", 0)) + 1
    return held_back


def _active_records(result: PollResult) -> dict[str, Any]:
    """What the cursor keeps of each active record served: enough to end it later, and the
    rows it was listed on when more than one (:meth:`HttpJsonSource._hold_partial`)."""
    return {e.event_id: {"kind": e.kind, "start": e.start.isoformat(), "feeder": e.feeder,
                         **({"rows": _rows_of(e)} if _rows_of(e) > 1 else {})}
            for e in result.events if e.status == "active"}


def _int_or(value: Any, default: int) -> int:
    """A cursor's count, or ``default`` when it holds none (a damaged cursor fails nothing)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _rows_of(event: OutageEvent) -> int:
    """The distinct rows of the feed an event was merged from."""
    return 1 + len(event.raw.get(MERGED_ROWS) or ())


def _keep_missing(previous_cursor: Mapping[str, Any], result: PollResult,
                  cursor: dict[str, Any], *, listed: set[str], gone: list[str]) -> list[str]:
    """An incomplete poll ends nothing: every missing record is kept and held back, its misses
    not counted (those of the records listed again are forgotten)."""
    previous: dict[str, Any] = dict(previous_cursor.get("active") or {})
    missed: dict[str, int] = dict(previous_cursor.get("missing") or {})
    cursor["active"] = {**previous, **_active_records(result)}
    cursor["missing"] = {k: n for k, n in missed.items() if k not in listed}
    return gone


def _end_missing(source: str, previous_cursor: Mapping[str, Any], result: PollResult,
                 cursor: dict[str, Any], now: datetime, *, gone: list[str],
                 nameless: Collection[str], held: Collection[str]) -> list[str]:
    """A complete poll: end each missing record gone from :data:`ABSENT_POLLS` complete polls
    in a row, hold back those an unreadable record may be, and tag the arrivals; returns the
    ids held back. A record still listed but quarantined (``held``) stays active: when it
    leaves the list later, it is ended like any other."""
    previous: dict[str, Any] = dict(previous_cursor.get("active") or {})
    missed: dict[str, int] = dict(previous_cursor.get("missing") or {})
    together: Mapping[str, Any] = previous_cursor.get("nameless") or {}
    current = _active_records(result)
    held_back: list[str] = []
    kept: dict[str, Any] = {}
    cursor["missing"] = {}
    for event_id in gone:
        info = previous[event_id]
        if any(event_id not in together.get(fp, ()) for fp in nameless):
            held_back.append(event_id)  # an unreadable record may be this one
            kept[event_id] = info
            if event_id in missed:
                cursor["missing"][event_id] = missed[event_id]
            continue
        misses = missed.get(event_id, 0) + 1
        if misses < ABSENT_POLLS:
            # The first miss is when the record left the list: kept to judge it by.
            kept[event_id] = {**info, MISSED_AT: now.isoformat()} if misses == 1 else info
            cursor["missing"][event_id] = misses
            continue
        _end(source, event_id, info, result, now)
    still = {k: previous[k] for k in held if k in previous}
    cursor["active"] = {**kept, **still, **current}
    _tag_arrivals(result, previous, [k for k in gone if k not in held_back])
    return held_back


def _note_nameless(cursor: dict[str, Any], previous_cursor: Mapping[str, Any],
                   listed: set[str], nameless: Collection[str]) -> None:
    """Keep, per unreadable fingerprint, the active ids served with it (in this poll or the
    earlier ones it was served in)."""
    together: Mapping[str, Any] = previous_cursor.get("nameless") or {}
    # What each unreadable record was served with: evidence that it is none of those.
    active = set(cursor["active"])
    cursor["nameless"] = {fp: sorted((set(together.get(fp, ())) | listed) & active)
                          for fp in sorted(nameless)}
    if not cursor["nameless"]:
        del cursor["nameless"]


def _tag_arrivals(result: PollResult, previous: Mapping[str, Any], left: list[str]) -> None:
    """Tag the records first listed in this complete poll with the ids that left the list in
    it (``raw[LEFT_LIST]``): the outage system may have re-issued one of those under the new
    id, and the processor continues that work instead of announcing another."""
    if not left:
        return
    result.events[:] = [
        replace(e, raw={**e.raw, LEFT_LIST: list(left)})
        if e.status == "active" and e.event_id not in previous else e for e in result.events]


def _end(source: str, event_id: str, info: Mapping[str, Any], result: PollResult,
         now: datetime) -> None:
    """Add the revision that ends a record gone from the list to ``result``."""
    try:
        start = parse_time(info["start"], "start")
        # Gone before its start, the outage never took the power off: it was called off
        # (a village must not hear "恢复送电" the day before the work). Like a feed's own
        # "cancelled", it carries no end: the incident ends when the cancellation was seen.
        # Judged at the first miss, when the record left: work called off at 10:05 for
        # 10:10 is no restoration because the confirming miss came at 10:12.
        before_start = start > _first_missed(info, now)
        result.events.append(OutageEvent(
            source=source, event_id=event_id, kind=info.get("kind", "fault"),
            status="cancelled" if before_start else "restored", start=start,
            end=None if before_start else now, feeder=info.get("feeder"),
            raw={"inferred": "record left the feed"
                 + (" before its start" if before_start else "")}))
    except (EventError, KeyError, TypeError):
        pass  # a damaged cursor entry: forget it rather than fail the poll


def _first_missed(info: Mapping[str, Any], now: datetime) -> datetime:
    """When a record ending now was first missing from the list (:data:`MISSED_AT`); ``now``
    for a cursor written before that was kept, or a damaged one."""
    try:
        return min(parse_time(info[MISSED_AT], "missed_at"), now)
    except (EventError, KeyError, TypeError):
        return now


class HttpJsonSource:
    """An outage feed served as JSON over HTTP(S); see the module docstring for the contract.

    ``session`` may be passed to share connection pools or to swap the transport in tests;
    otherwise the source owns one and closes it in :meth:`close`. ``default_tz`` (a
    ``tzinfo`` or IANA name) reads naive feed times unless the source config sets ``timezone``.
    """

    type = "http_json"

    def __init__(self, config: HttpJsonSourceConfig, *, session: requests.Session | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 default_tz: tzinfo | str = "Asia/Shanghai",
                 clock: Callable[[], float] = time.monotonic,
                 rand: Callable[[], float] = random.random) -> None:
        self.config = config
        #: The same policy value as message delivery; here attempts within one poll count.
        self.retry = RetryPolicy.from_config(config.retry, count_attempts=True)
        self.name: str = config.name
        mapping = resolve_mapping(config)
        self.records_path = mapping.records_path
        self.fields = mapping.fields
        self.pagination = mapping.pagination
        self.total_count_path = mapping.total_count_path
        self.success_path = mapping.success_path
        self.success_values = mapping.success_values
        self.success_optional = mapping.success_optional
        tz_spec: tzinfo | str = config.timezone if config.timezone is not None else default_tz
        self.tz: tzinfo = ZoneInfo(tz_spec) if isinstance(tz_spec, str) else tz_spec
        self._mapper = RecordMapper(config.name, self.fields, self.tz)
        #: Records skipped as no outage evidence (work orders of other categories).
        self.skipped = 0
        #: Outage-type values no mapping classifies, each logged once (at most
        #: :data:`MAX_UNCLASSIFIED_LOGGED`).
        self.unclassified_seen: set[str] = set()
        #: Counters for metrics: snapshot polls that were incomplete (no record may be ended
        #: from them), and polls in a row (so far) that held back a record gone from the list.
        self.stats: dict[str, int] = {"incomplete_polls": 0, "held_polls": 0}
        #: The HTTP side: requests, retries, limits, the body as JSON, errors without secrets.
        self._client = FeedClient(config, self.pagination, self.retry, session=session,
                                  sleep=sleep, clock=clock, rand=rand)
        self._cursor: dict[str, Any] = {}
        self.url_redacted = self._client.url_redacted

    # -- Source protocol --------------------------------------------------------------------

    def start(self, cursor: Mapping[str, Any] | None) -> None:
        """Take the cursor persisted with the last committed poll (ETag, Last-Modified, pages)."""
        self._cursor = self._clean_cursor(cursor)
        self.stats["held_polls"] = int(self._cursor.get("held_polls", 0))

    @property
    def incomplete_polls(self) -> int:
        """Snapshot polls so far that were incomplete (see :class:`Snapshotting`)."""
        return self.stats["incomplete_polls"]

    @property
    def held_polls(self) -> int:
        """Polls in a row that held back a record gone from the list."""
        return self.stats["held_polls"]

    def poll(self, now: datetime) -> PollResult:
        """Fetch every page, map the records; raise :class:`FeedError` if the poll failed."""
        conditional = self._conditional_headers()
        result = PollResult()
        new_cursor: dict[str, Any] = {}
        #: what this poll saw of the list, for the snapshot's accounting
        seen_list = _Listing()
        read = self._read_pages(conditional, result, new_cursor, seen_list)
        if read is None:
            return PollResult(not_modified=True, cursor=dict(self._cursor) or None)
        page, gap = read
        gap = gap or seen_list.gap()
        new_cursor["pages"] = page
        if self.config.snapshot:
            if gap is not None:
                self._hold_partial(result, seen_list)
            self._snapshot(result, new_cursor, now, seen_list, gap, page)
        result.cursor = new_cursor
        return result

    def _read_pages(self, conditional: dict[str, str], result: PollResult,
                    new_cursor: dict[str, Any], seen_list: _Listing
                    ) -> tuple[int, str | None] | None:
        """Fetch and map page after page into ``result``; None if the feed is not modified.

        Returns the pages read and why they may not be the whole list (None: nothing says so).
        """
        #: the rows of each id served, merged into one event once every page is read
        groups: dict[str, list[Row]] = {}
        paged = self.pagination.mode == "page"
        page = 1
        total: int | None = None
        #: the feed did not say what it lists (a null list, a page without its page model)
        unsure = False
        while True:
            number = page if paged else None
            response = self._client.fetch(number, conditional if page == 1 else {})
            if self._not_modified(response, page, conditional):
                return None
            if page == 1:
                self._note_validators(response, new_cursor)
            payload, records = self._page_records(response, number, seen_list)
            self._map_records(records, number, result, groups, seen_list)
            unsure = unsure or get_path(payload, self.records_path) is None
            self._read_count(payload, seen_list)
            if not paged:
                break
            total = self._total_pages(payload, page, response)
            unsure = unsure or (bool(records) and self._no_page_model(payload))
            seen_list.page_totals.add(None if self._no_page_model(payload) else total)
            if self._last_page(page, total, records):
                break
            page += 1
        self._merge_rows(groups, result, seen_list)
        gap = "the list was null or a page had no page model" if unsure else None
        if paged and page >= self.pagination.max_pages and (total is None or total > page):
            gap = "pagination.max_pages reached"
        return page, gap

    def _not_modified(self, response: FeedResponse, page: int, conditional: dict[str, str]) -> bool:
        """Whether the response is a 304 to page 1's conditional request; a 304 to anything
        else fails the poll."""
        if response.status != 304:
            return False
        if page == 1 and conditional:
            return True
        raise self._client.error(f"HTTP 304 for page {page} without a conditional request")

    @staticmethod
    def _note_validators(response: FeedResponse, new_cursor: dict[str, Any]) -> None:
        """Keep page 1's ETag and Last-Modified for the next conditional request."""
        if response.etag:
            new_cursor["etag"] = response.etag
        if response.last_modified:
            new_cursor["last_modified"] = response.last_modified

    def _page_records(self, response: FeedResponse, page: int | None,
                      seen_list: _Listing) -> tuple[Any, list[Any]]:
        """A page's payload and its records; an error envelope or no record list fails the
        poll."""
        payload = self._client.parse(response, page)
        failure = envelope_failure(payload, self.success_path, self.success_values,
                                   optional=self.success_optional)
        if failure is not None:
            raise self._client.error(page_prefix(page) + failure,
                                     raw=raw_text(response.body, response.charset))
        self._note_doubt(payload, page, seen_list)
        try:
            records = extract_records(payload, self.records_path)
        except EventError as exc:
            raise self._client.error(page_prefix(page) + str(exc),
                                     raw=raw_text(response.body, response.charset)) from None
        return payload, records

    def _note_doubt(self, payload: Any, page: int | None, seen_list: _Listing) -> None:
        """A preset's reply whose code no success check read says it is no success: the poll
        goes on (its records are kept) but is not the whole list, so it ends no record."""
        if self.config.preset is None or (self.success_path is not None
                                          and not self.success_optional):
            return  # a configured source's check is what its config says (docs/sources_http.md)
        doubt = envelope_doubt(payload, self.success_values)
        if doubt is not None and seen_list.doubt is None:
            seen_list.doubt = page_prefix(page) + doubt

    def _last_page(self, page: int, total: int | None, records: list[Any]) -> bool:
        """Whether ``page`` is the last to fetch: an empty page without a page count, the last
        page counted, or ``pagination.max_pages`` reached (logged)."""
        if total is None and not records:
            return True
        if total is not None and page >= total:
            return True
        if page >= self.pagination.max_pages:
            log.warning("http_json.max_pages_reached", source=self.name, pages=page,
                        total_pages=total, max_pages=self.pagination.max_pages)
            return True
        return False

    def _snapshot(self, result: PollResult, cursor: dict[str, Any], now: datetime,
                  seen_list: _Listing, gap: str | None, pages: int) -> None:
        """Infer the records that left the list (:func:`snapshot`); log and count a poll that
        saw less than the whole list (``gap`` says why) and the records held back."""
        if gap is not None:
            self.stats["incomplete_polls"] += 1
            log.warning("http_json.poll_incomplete", source=self.name, reason=gap,
                        records_seen=seen_list.seen, total_count=seen_list.counted,
                        pages=pages)
        held_back = snapshot(self.name, self._cursor, result, cursor, now,
                             complete=gap is None, held=seen_list.held,
                             nameless=seen_list.nameless)
        self._report_held(held_back, cursor, seen_list, gap)

    def _report_held(self, held_back: list[str], cursor: Mapping[str, Any],
                     seen_list: _Listing, gap: str | None) -> None:
        """Log and count the records gone from the list that this poll could not end."""
        polls = int(cursor.get("held_polls", 0))
        self.stats["held_polls"] = polls
        if held_back and gap is None:  # an incomplete poll was logged as such already
            log.warning("http_json.restoration_held", source=self.name,
                        event_ids=held_back[:20], unreadable_records=len(seen_list.nameless),
                        polls=polls)
        if polls == HELD_ALERT_POLLS:
            log.error("http_json.restorations_blocked", source=self.name, polls=polls,
                      event_ids=held_back[:20], reason=gap or "a record without a readable id "
                      "may be the one that left the list")

    def _read_count(self, payload: Any, seen_list: _Listing) -> None:
        """Note the feed's count of its records (``total_count_path``) on this page."""
        path = self.total_count_path
        if path is None:
            return
        value = get_path(payload, path)
        if value is MISSING or value is None or value == "":
            return
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            seen_list.unreadable_count = True
            return
        seen_list.counts.add(value)

    def _no_page_model(self, payload: Any) -> bool:
        """Whether the page's model (``pagination.total_pages_path``) is absent."""
        path = self.pagination.total_pages_path
        return path is not None and get_path(payload, path) in (MISSING, None, "")

    def acknowledge(self, result: PollResult) -> None:
        """The result is stored: from now on send its validators in conditional requests."""
        if result.cursor is not None:
            self._cursor = self._clean_cursor(result.cursor)

    def close(self) -> None:
        """Close the HTTP session if this source created it."""
        self._client.close()

    # -- helpers ----------------------------------------------------------------------------

    @staticmethod
    def _clean_cursor(cursor: Mapping[str, Any] | None) -> dict[str, Any]:
        if not cursor:
            return {}
        clean: dict[str, Any] = {}
        for key in ("etag", "last_modified"):
            value = cursor.get(key)
            if isinstance(value, str) and value:
                clean[key] = value
        pages = cursor.get("pages")
        if isinstance(pages, int) and not isinstance(pages, bool) and pages >= 1:
            clean["pages"] = pages
        active = cursor.get("active")
        if isinstance(active, dict):
            clean["active"] = {str(k): v for k, v in active.items() if isinstance(v, dict)}
        missing = cursor.get("missing")
        if isinstance(missing, dict):
            clean["missing"] = {str(k): v for k, v in missing.items()
                                if isinstance(v, int) and not isinstance(v, bool) and v > 0}
        nameless = cursor.get("nameless")
        if isinstance(nameless, dict):
            clean["nameless"] = {str(k): [str(i) for i in v] for k, v in nameless.items()
                                 if isinstance(v, list)}
        held_polls = cursor.get("held_polls")
        if isinstance(held_polls, int) and not isinstance(held_polls, bool) and held_polls > 0:
            clean["held_polls"] = held_polls
        return clean

    def _conditional_headers(self) -> dict[str, str]:
        # A page-1 validator says nothing about pages 2..n, so a feed that had several pages
        # last time is fetched in full; conditional GET is only trusted for single-page feeds.
        if self.pagination.mode == "page" and self._cursor.get("pages", 1) != 1:
            return {}
        headers: dict[str, str] = {}
        if "etag" in self._cursor:
            headers["If-None-Match"] = self._cursor["etag"]
        if "last_modified" in self._cursor:
            headers["If-Modified-Since"] = self._cursor["last_modified"]
        return headers

    def _total_pages(self, payload: Any, page: int, response: FeedResponse) -> int | None:
        path = self.pagination.total_pages_path
        if path is None:
            return None
        value = get_path(payload, path)
        if value is MISSING or value is None or value == "":
            # No page model (some back ends drop it on an empty result): this is the last page.
            return page
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self._client.error(f"page {page}: pagination.total_pages_path {path!r}: "
                                     f"expected a non-negative integer, got {value!r}"[:300],
                                     raw=raw_text(response.body, response.charset))
        return value

    def _map_records(self, records: list[Any], page: int | None, result: PollResult,
                     groups: dict[str, list[Row]], seen_list: _Listing) -> None:
        """Map a page's records, each event into the rows of its id in ``groups``, and note in
        ``seen_list`` what was listed: every row, every readable id, the ids of the records
        quarantined, and a fingerprint of each record whose id cannot be read."""
        where = page_prefix(page)
        seen_list.count_page(records)
        for index, record in enumerate(records):
            try:
                event = self._mapper.map(record)
            except EventError as exc:
                result.quarantined.append(
                    Quarantined(self.name, f"{where}record {index}: {exc}", record))
                self._note_unmapped(record, seen_list, held=True)
                continue
            if event is None:  # a work order that reports no outage
                self.skipped += 1
                self._note_unmapped(record, seen_list, held=False)
                continue
            seen_list.ids.add(event.event_id)
            groups.setdefault(event.event_id, []).append((f"{where}record {index}", event))

    def _note_unmapped(self, record: Any, seen_list: _Listing, *, held: bool) -> None:
        """Note a record that gave no event as listed: by its id when it can be read (``held``:
        quarantined, so still on), else by its fingerprint."""
        rid = self._mapper.record_id(record)
        if rid is None:
            seen_list.nameless.add(_fingerprint(record))
            return
        seen_list.ids.add(rid)
        if held:
            seen_list.held.add(rid)

    def _merge_rows(self, groups: dict[str, list[Row]], result: PollResult,
                    seen_list: _Listing) -> None:
        """One event per id of the poll (:meth:`RecordMapper.merge`): a record listed once
        per area, or served twice across a page boundary, is one record. Rows of one id that
        disagree are quarantined together, the id still listed (held)."""
        for event_id, rows in groups.items():
            try:
                event = self._mapper.merge(rows)
            except EventError as exc:
                result.quarantined.append(
                    Quarantined(self.name, str(exc), [dict(e.raw) for _, e in rows]))
                seen_list.held.add(event_id)
                continue
            self._note_unclassified(event)
            result.events.append(event)

    def _hold_partial(self, result: PollResult, seen_list: _Listing) -> None:
        """In a poll that did not see the whole list, hold back a record served on fewer rows
        than it was listed on before: its other rows may be the ones not served, and an event
        without their areas would tell those villages the work was called off."""
        previous: Mapping[str, Any] = self._cursor.get("active") or {}
        partial = [e for e in result.events
                   if _rows_of(e) < _int_or(previous.get(e.event_id, {}).get("rows"), 1)]
        if not partial:
            return
        for event in partial:
            result.events.remove(event)
            seen_list.held.add(event.event_id)
        log.warning("http_json.rows_held", source=self.name,
                    event_ids=[e.event_id for e in partial][:20],
                    reason="the poll did not see the whole list")

    def _note_unclassified(self, event: OutageEvent) -> None:
        """Log an outage-type value no mapping classifies, once per value: its records are
        handled as ``default_kind`` and announced as a neutral 停电通知."""
        value = event.raw.get(UNCLASSIFIED_KIND)
        if (value is None or value in self.unclassified_seen
                or len(self.unclassified_seen) >= MAX_UNCLASSIFIED_LOGGED):
            return
        self.unclassified_seen.add(str(value))
        log.warning("feed_unknown_kind", source=self.name, value=str(value)[:64],
                    field=self.fields.kind, handled_as=event.kind, event_id=event.event_id,
                    hint="announced as 停电通知 (no kind); map it under fields.kind_values")
