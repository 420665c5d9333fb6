"""The http_json source against a real local HTTP server with scripted responses."""

from __future__ import annotations

import json
import socket
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from structlog.testing import capture_logs

from outage_sentinel.config import HttpJsonSourceConfig
from outage_sentinel.events import LEFT_LIST, PollResult
from outage_sentinel.retry import RetryPolicy
from outage_sentinel.sources.base import Source, SourceError
from outage_sentinel.sources.http_json import FeedError, HttpJsonSource, redact_url

FEEDS = Path(__file__).resolve().parent.parent / "fixtures" / "feeds"
NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def feed(name: str) -> bytes:
    return (FEEDS / name).read_bytes()


# -- the scripted server ------------------------------------------------------------------------


@dataclass
class Reply:
    """What the server sends for one request."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    #: Seconds to wait before answering (to provoke client timeouts).
    delay: float = 0.0
    #: Declared Content-Length when it should differ from ``len(body)`` (truncation).
    content_length: int | None = None
    #: Stream this many filler bytes after ``body`` in 64 KiB chunks, without Content-Length.
    stream_bytes: int = 0
    #: Seconds between the bytes of ``body`` (a server trickling its answer; Content-Length set).
    trickle: float = 0.0


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


class Scripted:
    """Replies in order; the last one repeats. ``route`` (if set) decides instead."""

    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.route: Callable[[Seen], Reply] | None = None
        self.seen: list[Seen] = []
        self.streamed = 0
        self.lock = threading.Lock()

    def next(self, request: Seen) -> Reply:
        with self.lock:
            self.seen.append(request)
            if self.route is not None:
                return self.route(request)
            if len(self.replies) > 1:
                return self.replies.pop(0)
            return self.replies[0]


def make_handler(script: Scripted) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # close-delimited bodies make streaming/truncation easy

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
            pass

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            parts = urlsplit(self.path)
            reply = script.next(Seen(self.command, parts.path, parse_qs(parts.query),
                                     dict(self.headers.items()), body))
            try:
                if reply.delay:
                    time.sleep(reply.delay)
                self.send_response(reply.status)
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                if reply.stream_bytes:
                    self.end_headers()
                    self.wfile.write(reply.body)
                    chunk = b"0," * 32768
                    sent = 0
                    while sent < reply.stream_bytes:
                        self.wfile.write(chunk)
                        sent += len(chunk)
                        script.streamed = sent
                    return
                if reply.status != 304:
                    declared = reply.content_length
                    self.send_header("Content-Length",
                                     str(declared if declared is not None else len(reply.body)))
                self.end_headers()
                if reply.trickle:
                    for i in range(len(reply.body)):
                        self.wfile.write(reply.body[i:i + 1])
                        self.wfile.flush()
                        script.streamed = i + 1
                        time.sleep(reply.trickle)
                elif reply.status != 304:
                    self.wfile.write(reply.body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout, size cap): that is what is being tested

        do_GET = _handle
        do_POST = _handle

    return Handler


@pytest.fixture
def server() -> Iterator[tuple[str, Scripted]]:
    script = Scripted()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(script))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", script
    finally:
        httpd.shutdown()
        httpd.server_close()


def json_reply(body: bytes | Any, **kw: Any) -> Reply:
    raw = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    headers = {"Content-Type": "application/json;charset=UTF-8", **kw.pop("headers", {})}
    return Reply(body=raw, headers=headers, **kw)


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def make_source(url: str, sleeps: Sleeps | None = None, **kw: Any) -> HttpJsonSource:
    data: dict[str, Any] = {"type": "http_json", "name": "feed95598", "url": url,
                            "preset": "95598_list", "timeout_seconds": 2.0,
                            "retry": {"initial_seconds": 0.5, "multiplier": 2.0,
                                      "max_seconds": 4.0, "max_attempts": 3, "jitter": 0.2}}
    data.update(kw)
    config = HttpJsonSourceConfig.model_validate(data)
    return HttpJsonSource(config, sleep=sleeps if sleeps is not None else Sleeps(),
                          default_tz="Asia/Shanghai", rand=lambda: 0.5)


# -- presets end to end -------------------------------------------------------------------------


def _validators(cursor: dict[str, Any] | None) -> dict[str, Any]:
    """The cursor without the snapshot's record lists (tested separately)."""
    return {k: v for k, v in (cursor or {}).items() if k not in ("active", "missing")}


def test_implements_the_source_protocol(server: tuple[str, Scripted]) -> None:
    url, _ = server
    source = make_source(url + "/notices")
    assert isinstance(source, Source)
    assert source.type == "http_json" and source.name == "feed95598"


def test_list_preset_over_http(server: tuple[str, Scripted]) -> None:
    url, script = server
    script.replies = [json_reply(feed("95598_list.json"))]
    source = make_source(url + "/notices")
    source.start(None)
    result = source.poll(NOW)
    assert [e.event_id for e in result.events] == [
        "3720231125000101", "3720231124000212", "3720231123000318", "3720231126000405"]
    assert [e.kind for e in result.events] == ["planned", "temporary", "fault", "planned"]
    assert result.events[2].start == datetime(2026, 11, 22, 22, 42, tzinfo=UTC)
    assert result.events[2].expected_restoration == datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
    assert result.events[2].transformers == ("王庄村1号台区", "王庄村2号台区", "王庄村3号台区")
    assert all(e.source == "feed95598" for e in result.events)
    assert result.quarantined == []
    assert result.not_modified is False
    assert script.seen[0].query == {"pageNow": ["1"]}
    assert script.seen[0].headers["Accept"] == "application/json"
    assert _validators(result.cursor) == {"pages": 1}


def test_powercut_preset_over_http(server: tuple[str, Scripted]) -> None:
    url, script = server
    script.replies = [json_reply(feed("95598_powercut.json"))]
    source = make_source(url + "/api/powercut", preset="95598_powercut")
    result = source.poll(NOW)
    assert [(e.event_id, e.kind) for e in result.events] == [
        ("PC2026112500017", "planned"), ("PC2026112300042", "fault"),
        ("PC2026112400008", "temporary"), ("PC2026112600003", "temporary")]
    assert result.events[1].area_text == "清河县马集镇；王庄村全村"
    assert result.events[1].feeder == "10kV王庄线"
    assert script.seen[0].query == {}  # no pagination in this format


def test_source_timezone_overrides_the_default(server: tuple[str, Scripted]) -> None:
    url, script = server
    script.replies = [json_reply(feed("95598_powercut.json"))]
    source = make_source(url, preset="95598_powercut", timezone="UTC")
    assert source.poll(NOW).events[0].start == datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


# -- pagination ---------------------------------------------------------------------------------


def paged(script: Scripted) -> None:
    def route(seen: Seen) -> Reply:
        page = int(seen.query.get("pageNow", ["1"])[0])
        return json_reply(feed(f"95598_list_page{page}.json"))

    script.route = route


def test_pagination_fetches_all_three_pages(server: tuple[str, Scripted]) -> None:
    url, script = server
    paged(script)
    result = make_source(url).poll(NOW)
    assert [s.query["pageNow"] for s in script.seen] == [["1"], ["2"], ["3"]]
    assert len(result.events) == 5
    assert result.events[-1].event_id == "3720231127000511"
    assert _validators(result.cursor) == {"pages": 3}


def test_pagination_stops_at_max_pages(server: tuple[str, Scripted]) -> None:
    url, script = server
    paged(script)
    with capture_logs() as logs:
        result = make_source(url, pagination={"mode": "page", "max_pages": 2,
                                              "total_pages_path": "pageModel.totalPage"}).poll(NOW)
    assert len(script.seen) == 2
    assert len(result.events) == 4
    assert any(e["event"] == "http_json.max_pages_reached" for e in logs)


def test_pagination_without_total_stops_at_an_empty_page(server: tuple[str, Scripted]) -> None:
    url, script = server

    def route(seen: Seen) -> Reply:
        page = int(seen.query["p"][0])
        if page <= 3:
            return json_reply(feed(f"95598_list_page{page}.json"))
        return json_reply({"seleList": []})

    script.route = route
    result = make_source(url, pagination={"mode": "page", "page_param": "p"}).poll(NOW)
    assert len(script.seen) == 4 and len(result.events) == 5


def test_a_record_shifting_across_pages_is_not_returned_twice(
        server: tuple[str, Scripted]) -> None:
    url, script = server
    page1 = json.loads(feed("95598_list_page1.json"))
    page2 = json.loads(feed("95598_list_page2.json"))
    page2["seleList"].insert(0, page1["seleList"][1])  # a new notice pushed one down
    page2["pageModel"]["totalPage"] = 2
    script.replies = [json_reply(page1), json_reply(page2)]
    result = make_source(url).poll(NOW)
    assert len(result.events) == 4


def test_page_number_in_a_post_body(server: tuple[str, Scripted]) -> None:
    url, script = server
    paged_bodies: list[dict[str, Any]] = []

    def route(seen: Seen) -> Reply:
        body = json.loads(seen.body)
        paged_bodies.append(body)
        return json_reply(feed(f"95598_list_page{body['pageNow']}.json"))

    script.route = route
    source = make_source(url, method="POST", body={"orgNo": "13101", "pageSize": 2},
                         pagination={"mode": "page", "page_location": "body",
                                     "total_pages_path": "pageModel.totalPage"})
    assert len(source.poll(NOW).events) == 5
    assert paged_bodies == [{"orgNo": "13101", "pageSize": 2, "pageNow": n} for n in (1, 2, 3)]
    assert all(s.method == "POST" and s.query == {} for s in script.seen)


def test_bad_total_pages_fails_the_poll(server: tuple[str, Scripted]) -> None:
    url, script = server
    script.replies = [json_reply({"seleList": [], "pageModel": {"totalPage": "many"}})]
    with pytest.raises(FeedError, match="total_pages_path 'pageModel.totalPage'"):
        make_source(url).poll(NOW)


# -- conditional GET ----------------------------------------------------------------------------


def test_etag_and_last_modified_round_trip_and_304(server: tuple[str, Scripted]) -> None:
    url, script = server
    lm = "Mon, 23 Nov 2026 07:55:00 GMT"
    body = feed("95598_powercut.json")

    def route(seen: Seen) -> Reply:
        if seen.headers.get("If-None-Match") == '"v1"':
            return Reply(status=304, headers={"ETag": '"v1"'})
        return json_reply(body, headers={"ETag": '"v1"', "Last-Modified": lm})

    script.route = route
    source = make_source(url, preset="95598_powercut")
    source.start(None)
    first = source.poll(NOW)
    assert _validators(first.cursor) == {"etag": '"v1"', "last_modified": lm, "pages": 1}
    assert "If-None-Match" not in script.seen[0].headers

    # Not yet acknowledged (the daemon has not stored the events): fetch in full again.
    again = source.poll(NOW)
    assert len(again.events) == 4
    assert "If-None-Match" not in script.seen[1].headers

    source.acknowledge(first)
    third = source.poll(NOW)
    assert third.not_modified is True and third.events == []
    assert script.seen[2].headers["If-None-Match"] == '"v1"'
    assert script.seen[2].headers["If-Modified-Since"] == lm

    # A restart resumes from the persisted cursor.
    restarted = make_source(url, preset="95598_powercut")
    restarted.start(first.cursor)
    assert restarted.poll(NOW).not_modified is True


def test_conditional_get_is_skipped_after_a_multi_page_poll(server: tuple[str, Scripted]) -> None:
    url, script = server

    def route(seen: Seen) -> Reply:
        page = int(seen.query["pageNow"][0])
        return json_reply(feed(f"95598_list_page{page}.json"), headers={"ETag": f'"p{page}"'})

    script.route = route
    source = make_source(url)
    first = source.poll(NOW)
    assert _validators(first.cursor) == {"etag": '"p1"', "pages": 3}
    source.acknowledge(first)
    source.poll(NOW)
    assert "If-None-Match" not in script.seen[3].headers


def test_garbage_cursor_is_ignored(server: tuple[str, Scripted]) -> None:
    url, script = server
    script.replies = [json_reply(feed("95598_powercut.json"))]
    source = make_source(url, preset="95598_powercut")
    source.start({"etag": 5, "last_modified": None, "pages": "x", "other": 1})
    assert len(source.poll(NOW).events) == 4
    assert "If-None-Match" not in script.seen[0].headers


# -- retries and whole-poll failures ------------------------------------------------------------


def test_http_500_then_success_within_retries(server: tuple[str, Scripted]) -> None:
    url, script = server
    script.replies = [Reply(status=500, body=b"busy"), Reply(status=503, body=b"busy"),
                      json_reply(feed("95598_powercut.json"))]
    sleeps = Sleeps()
    result = make_source(url, sleeps, preset="95598_powercut").poll(NOW)
    assert len(result.events) == 4
    assert sleeps == [0.5, 1.0]  # exponential backoff; rand=0.5 is the exact base
    assert len(script.seen) == 3


def test_http_500_always_raises_source_error(server: tuple[str, Scripted]) -> None:
    url, script = server
    script.replies = [Reply(status=500, body="服务器内部错误".encode())]
    sleeps = Sleeps()
    with capture_logs() as logs, pytest.raises(SourceError) as info:
        make_source(url + "/notices", sleeps).poll(NOW)
    err = info.value
    assert isinstance(err, FeedError)
    assert err.status == 500
    assert err.raw == "服务器内部错误"
    assert "source feed95598" in str(err) and "HTTP 500" in str(err)
    assert "gave up after 3 attempts" in str(err)
    assert f"{url}/notices" in str(err)
    assert len(script.seen) == 3 and len(sleeps) == 2
    assert [e["attempt"] for e in logs if e["event"] == "http_json.retry"] == [1, 2]


def test_http_404_is_not_retried(server: tuple[str, Scripted]) -> None:
    url, script = server
    script.replies = [Reply(status=404, body=b"not here")]
    with pytest.raises(FeedError, match="HTTP 404") as info:
        make_source(url).poll(NOW)
    assert len(script.seen) == 1 and info.value.raw == "not here"


def test_redirects_are_not_followed(server: tuple[str, Scripted]) -> None:
    url, script = server
    script.replies = [Reply(status=302, headers={"Location": "http://elsewhere.example/x?k=v"})]
    with pytest.raises(FeedError, match=r"HTTP 302 redirect to http://elsewhere.example/x\?k=\*\*\*"):
        make_source(url).poll(NOW)
    assert len(script.seen) == 1


def test_429_honours_retry_after_up_to_max_seconds(server: tuple[str, Scripted]) -> None:
    url, script = server
    script.replies = [Reply(status=429, headers={"Retry-After": "3"}),
                      Reply(status=429, headers={"Retry-After": "3600"}),
                      json_reply(feed("95598_powercut.json"))]
    sleeps = Sleeps()
    make_source(url, sleeps, preset="95598_powercut").poll(NOW)
    assert sleeps == [3.0, 4.0]


def test_timeout_raises_source_error(server: tuple[str, Scripted]) -> None:
    url, script = server
    script.replies = [Reply(delay=1.5, body=b"{}")]
    started = time.monotonic()
    with pytest.raises(SourceError, match=r"no response within 0.3s \(timeout\).*gave up after 2"):
        make_source(url, timeout_seconds=0.3,
                    retry={"max_attempts": 2, "initial_seconds": 0.1}).poll(NOW)
    assert time.monotonic() - started < 1.4  # did not wait for the server
    assert len(script.seen) == 2


def test_slow_drip_body_hits_the_download_deadline(server: tuple[str, Scripted]) -> None:
    url, script = server
    script.replies = [Reply(body=b"{", stream_bytes=10**9)]
    clock = iter(range(0, 10**6, 1))  # every clock read is one second later
    config = HttpJsonSourceConfig.model_validate({
        "type": "http_json", "name": "feed95598", "url": url, "preset": "95598_list",
        "timeout_seconds": 5, "retry": {"max_attempts": 1}})
    source = HttpJsonSource(config, sleep=Sleeps(), clock=lambda: float(next(clock)))
    with pytest.raises(FeedError, match=r"download not finished within 5s"):
        source.poll(NOW)


def test_a_body_trickled_a_byte_at_a_time_hits_the_download_deadline(
        server: tuple[str, Scripted]) -> None:
    """Each byte comes well within the read timeout, so only the whole download's deadline can
    stop it; before, the source waited for a full 64 KiB chunk and the poll job stalled."""
    url, script = server
    body = feed("95598_list.json")
    script.replies = [Reply(body=body, headers={"Content-Type": "application/json"},
                            trickle=0.02)]
    with pytest.raises(FeedError, match=r"download not finished within 0.5s"):
        make_source(url, timeout_seconds=0.5, connect_timeout_seconds=0.5,
                    retry={"max_attempts": 1}).poll(NOW)
    assert 0 < script.streamed < len(body) // 2  # gave up long before the end


def test_invalid_json_raises_with_the_raw_body(server: tuple[str, Scripted]) -> None:
    url, script = server
    page = "<html><body>系统维护中</body></html>".encode()
    script.replies = [Reply(body=page, headers={"Content-Type": "text/html; charset=utf-8"})]
    with pytest.raises(FeedError, match="invalid JSON at line 1 column 1") as info:
        make_source(url).poll(NOW)
    assert info.value.raw == page.decode()
    assert len(script.seen) == 1  # a complete but wrong body is not retried


def test_cut_json_is_reported_as_truncated(server: tuple[str, Scripted]) -> None:
    url, script = server
    body = feed("95598_list.json")
    script.replies = [json_reply(body[: len(body) // 2])]
    with pytest.raises(FeedError, match="body looks truncated") as info:
        make_source(url).poll(NOW)
    assert info.value.raw is not None and info.value.raw.startswith('{\n  "seleList"')


def test_content_length_larger_than_sent_is_truncation(server: tuple[str, Scripted]) -> None:
    url, script = server
    body = feed("95598_list.json")
    script.replies = [json_reply(body[:300], content_length=len(body))]
    sleeps = Sleeps()
    # (urllib3 drops the partial data when it detects the short read, so the count may be 0)
    with pytest.raises(FeedError, match=rf"truncated body: connection closed after \d+ bytes "
                                        rf"of {len(body)}.*gave up after 3"):
        make_source(url, sleeps).poll(NOW)
    assert len(script.seen) == 3  # a cut connection may be a blip: retried


def test_truncated_then_complete_succeeds(server: tuple[str, Scripted]) -> None:
    url, script = server
    body = feed("95598_list.json")
    script.replies = [json_reply(body[:100], content_length=len(body)), json_reply(body)]
    assert len(make_source(url).poll(NOW).events) == 4


def test_50_mb_streamed_body_is_cut_off_without_reading_it(server: tuple[str, Scripted]) -> None:
    url, script = server
    script.replies = [Reply(body=b'{"seleList": [', stream_bytes=50 * 1024 * 1024,
                            headers={"Content-Type": "application/json"})]
    source = make_source(url, max_response_bytes=1024 * 1024)
    tracemalloc.start()
    try:
        with pytest.raises(FeedError, match=r"response too large: more than 1048576 bytes") as i:
            source.poll(NOW)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024, f"peak {peak} bytes"
    assert len(script.seen) == 1  # size is not retried
    assert i.value.raw is not None and len(i.value.raw) <= 64 * 1024
    assert script.streamed < 50 * 1024 * 1024


def test_declared_50_mb_is_refused_before_reading(server: tuple[str, Scripted]) -> None:
    url, script = server
    script.replies = [Reply(body=b"{}", content_length=50 * 1024 * 1024)]
    with pytest.raises(FeedError, match=r"Content-Length 52428800 bytes exceeds "
                                        r"max_response_bytes 1048576"):
        make_source(url, max_response_bytes=1024 * 1024).poll(NOW)


def test_connection_refused(server: tuple[str, Scripted]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sleeps = Sleeps()
    with pytest.raises(SourceError, match=r"connection failed: Connection refused.*3 attempts"):
        make_source(f"http://127.0.0.1:{port}/notices", sleeps).poll(NOW)
    assert sleeps == [0.5, 1.0]


def test_error_envelope_without_records_fails_the_poll(server: tuple[str, Scripted]) -> None:
    url, script = server
    script.replies = [json_reply({"code": "500", "message": "系统繁忙，请稍后再试"})]
    # The preset reads the format's own code first: the reply says why it failed.
    with pytest.raises(FeedError, match=r"success_path 'code' is '500', not a success "
                                        r"\(系统繁忙") as info:
        make_source(url, preset="95598_powercut").poll(NOW)
    assert "系统繁忙" in (info.value.raw or "")


def test_deeply_nested_json_fails_the_poll(server: tuple[str, Scripted]) -> None:
    url, script = server
    script.replies = [Reply(body=b"[" * 200_000 + b"]" * 200_000)]
    with pytest.raises(FeedError, match="nested too deeply"):
        make_source(url, max_response_bytes=10**6).poll(NOW)


def test_empty_body_fails_the_poll(server: tuple[str, Scripted]) -> None:
    url, script = server
    script.replies = [Reply(body=b"")]
    with pytest.raises(FeedError, match="empty body"):
        make_source(url).poll(NOW)


def test_gbk_body_without_charset_is_decoded(server: tuple[str, Scripted]) -> None:
    url, script = server
    text = feed("95598_powercut.json").decode("utf-8")
    script.replies = [Reply(body=text.encode("gbk"), headers={"Content-Type": "application/json"})]
    result = make_source(url, preset="95598_powercut").poll(NOW)
    assert result.events[0].cause == "线路改造"


def test_a_bom_is_read_past_whatever_charset_is_declared(
        server: tuple[str, Scripted]) -> None:
    url, script = server
    body = b"\xef\xbb\xbf" + feed("95598_powercut.json")
    for declared in ("application/json;charset=UTF-8", "application/json; charset=utf8"):
        script.replies = [Reply(body=body, headers={"Content-Type": declared})]
        result = make_source(url, preset="95598_powercut").poll(NOW)
        assert result.events[0].cause == "线路改造", declared


# -- bad records --------------------------------------------------------------------------------


def test_bad_records_are_quarantined_and_good_ones_kept(server: tuple[str, Scripted]) -> None:
    url, script = server
    script.replies = [json_reply(feed("95598_powercut_bad_records.json"))]
    result: PollResult = make_source(url, preset="95598_powercut").poll(NOW)
    assert [e.event_id for e in result.events] == ["PC2026112800001", "PC2026112800007"]
    assert result.events[1].expected_restoration is None
    reasons = [q.reason for q in result.quarantined]
    assert reasons[0] == "record 1: start (startTime): required, but missing"
    assert reasons[1] == ("record 2: event_id (poweroffId): expected a string or number, "
                          "got object")
    assert reasons[2].startswith("record 3: start (startTime): expected a time")
    assert reasons[3] == "record 4: kind (powerType): expected a string or number, got array"
    assert reasons[4] == "record 5: expected a JSON object, got string"
    assert all(q.source == "feed95598" for q in result.quarantined)
    assert result.quarantined[0].raw["poweroffId"] == "PC2026112800002"
    assert result.quarantined[4].raw == "not an object"


def test_quarantine_reason_names_the_page(server: tuple[str, Scripted]) -> None:
    url, script = server
    page1 = json.loads(feed("95598_list_page1.json"))
    page2 = json.loads(feed("95598_list_page2.json"))
    page2["pageModel"]["totalPage"] = 2
    page2["seleList"][1]["startTime"] = None
    script.replies = [json_reply(page1), json_reply(page2)]
    result = make_source(url).poll(NOW)
    assert len(result.events) == 3
    assert [q.reason for q in result.quarantined] == [
        "page 2: record 1: start (startTime): required, but empty (null)"]


# -- secrets ------------------------------------------------------------------------------------


SECRETS = ("TOPSECRETTOKEN", "URLKEY12345", "PARAMSECRET", "BODYSECRET", "hunter22")


def secret_source(url: str, sleeps: Sleeps | None = None) -> HttpJsonSource:
    return make_source(f"{url}/notices?key=URLKEY12345", sleeps,
                       headers={"Authorization": "Bearer TOPSECRETTOKEN"},
                       params={"token": "PARAMSECRET"}, method="POST",
                       body={"appSecret": "BODYSECRET"}, preset="95598_powercut")


def assert_clean(*texts: Any) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in str(text), f"{secret} leaked into {text!r}"


def test_secrets_are_sent_but_never_in_errors_or_logs(server: tuple[str, Scripted]) -> None:
    url, script = server
    echo = b"bad key URLKEY12345 / token PARAMSECRET / Bearer TOPSECRETTOKEN"
    script.replies = [Reply(status=500, body=echo)]
    with capture_logs() as logs, pytest.raises(FeedError) as info:
        secret_source(url).poll(NOW)
    seen = script.seen[0]
    assert seen.headers["Authorization"] == "Bearer TOPSECRETTOKEN"
    assert seen.query == {"key": ["URLKEY12345"], "token": ["PARAMSECRET"]}
    assert json.loads(seen.body) == {"appSecret": "BODYSECRET"}
    assert "key=***" in str(info.value)
    assert_clean(str(info.value), info.value.reason, info.value.url, info.value.raw, logs)


def test_secrets_not_in_connection_errors() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with capture_logs() as logs, pytest.raises(FeedError) as info:
        secret_source(f"http://svc:hunter22@127.0.0.1:{port}").poll(NOW)
    assert_clean(str(info.value), info.value.raw, logs)


def test_redact_url() -> None:
    assert redact_url("https://u:p@feed.example.cn:8443/api/x?key=abc&page=1") == \
        "https://feed.example.cn:8443/api/x?key=***&page=***"
    assert redact_url("http://127.0.0.1/notices") == "http://127.0.0.1/notices"


def test_the_poll_retry_delay_is_the_shared_policy_s_arithmetic() -> None:
    from outage_sentinel.config import RetryConfig

    retry = RetryPolicy.from_config(RetryConfig(initial_seconds=1.0, multiplier=2.0,
                                                max_seconds=5.0, jitter=0.5),
                                    count_attempts=True)
    assert [retry.delay(n, 0.5) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 5.0]
    assert retry.delay(2, 0.0) == pytest.approx(1.0)
    assert retry.delay(2, 0.999) == pytest.approx(2.998)
    assert retry.delay(1, 0.5, retry_after=30) == 5.0  # a hint never beyond max_seconds
    assert retry.delay(1, 0.5, retry_after=3) == 3.0


def test_close_only_closes_its_own_session(server: tuple[str, Scripted]) -> None:
    import requests

    url, _ = server
    shared = requests.Session()
    config = HttpJsonSourceConfig.model_validate(
        {"type": "http_json", "name": "f", "url": url, "preset": "95598_list"})
    HttpJsonSource(config, session=shared).close()
    assert shared.adapters  # still usable
    shared.close()


def test_a_record_gone_from_the_snapshot_becomes_a_restoration(
        server: tuple[str, Scripted]) -> None:
    """95598 lists carry no status: an outage missing from two complete lists in a row is
    over (one miss may be a record that moved across a page boundary)."""
    url, script = server
    records = json.loads(feed("95598_list.json"))["seleList"]
    first = {"seleList": records, "pageModel": {"pageNow": 1, "totalPage": 1}}
    second = {"seleList": records[1:], "pageModel": {"pageNow": 1, "totalPage": 1}}
    script.replies = [json_reply(first), json_reply(second), json_reply(second),
                      json_reply(second)]
    source = make_source(url + "/notices")
    source.start(None)
    r1 = source.poll(NOW)
    source.acknowledge(r1)
    gone_id = records[0]["powerOffId"]
    assert gone_id in {e.event_id for e in r1.events}
    r2 = source.poll(NOW)
    source.acknowledge(r2)
    assert not [e for e in r2.events if e.event_id == gone_id]  # missed once: not yet
    assert r2.cursor is not None and r2.cursor["missing"] == {gone_id: 1}
    later = NOW + timedelta(minutes=1)
    r3 = source.poll(later)
    source.acknowledge(r3)
    gone = [e for e in r3.events if e.event_id == gone_id]
    # records[0] is planned work for 2026-11-25: gone before it began, it is called off.
    assert len(gone) == 1 and gone[0].status == "cancelled" and gone[0].end is None
    assert gone[0].kind == "planned"
    r4 = source.poll(NOW)  # reported once, not at every poll
    assert not [e for e in r4.events if e.event_id == gone_id]
    # A feed that only sends changes says nothing by leaving a record out.
    script.replies = [json_reply(first), json_reply(second)]
    changes_only = make_source(url + "/notices", snapshot=False)
    changes_only.acknowledge(changes_only.poll(NOW))
    assert not [e for e in changes_only.poll(NOW).events if e.event_id == gone_id]


def polled(url: str, times: int) -> list[PollResult]:
    """A new snapshot source's polls, each acknowledged (stored) as the daemon does."""
    source = make_source(url + "/notices")
    source.start(None)
    out = []
    for _ in range(times):
        out.append(source.poll(NOW))
        source.acknowledge(out[-1])
    return out


def restored_in(polls: list[PollResult]) -> list[str]:
    """Records taken as over: restored, or (gone before their start) cancelled."""
    return [e.event_id for p in polls for e in p.events if e.status in ("restored", "cancelled")]


def listing(*rows: Any, **model: Any) -> Reply:
    return json_reply({"seleList": list(rows),
                       "pageModel": {"pageNow": 1, "totalPage": 1, **model}})


def test_work_that_leaves_the_list_before_it_starts_is_cancelled_not_restored(
        server: tuple[str, Scripted]) -> None:
    """A planned outage dropped from the list the day before it was due never took the power
    off: its villages must hear it is called off, not "恢复送电" a day before the work. A record
    gone after its start is over (restored) as before."""
    url, script = server
    tomorrow = {"powerOffId": "P1", "typeCode": "1", "startTime": "2026-11-24 08:00:00",
                "stopTime": "2026-11-24 16:00:00", "lineName": "10kV马集线",
                "pubTranName": "南谢庄村2#公变"}
    begun = dict(tomorrow, powerOffId="F1", typeCode="3", startTime="2026-11-23 15:00:00")
    script.replies = [listing(tomorrow, begun), listing(), listing()]
    polls = polled(url, 3)  # NOW is 16:00 Beijing time on the 23rd
    ended = {e.event_id: e for e in polls[2].events}
    assert ended["P1"].status == "cancelled" and ended["P1"].kind == "planned"
    assert ended["P1"].end is None  # as a feed's own "cancelled": the time it was seen counts
    assert ended["F1"].status == "restored" and ended["F1"].end == NOW
    assert not polls[1].events


def test_a_record_first_listed_as_others_leave_names_them(
        server: tuple[str, Scripted]) -> None:
    """The outage system re-issues edited work under a new id: the old id leaves the list
    as the new one appears. The new record carries the ids that left in that complete poll
    (the processor may continue the work); a record already listed carries nothing, nor
    does one first listed in a poll that did not see the whole list."""
    url, script = server
    work = {"powerOffId": "P1", "typeCode": "1", "startTime": "2026-11-24 08:00:00",
            "stopTime": "2026-11-24 16:00:00", "lineName": "10kV马集线",
            "pubTranName": "南谢庄村2#公变"}
    other = dict(work, powerOffId="P9", pubTranName="南谢庄村1#公变")
    edited = dict(work, powerOffId="P2", stopTime="2026-11-24 18:00:00")
    script.replies = [listing(work, other), listing(edited, other)]
    polls = polled(url, 2)
    (new,) = [e for e in polls[1].events if e.event_id == "P2"]
    assert new.raw[LEFT_LIST] == ["P1"]
    assert not [e for e in polls[1].events if LEFT_LIST in e.raw and e.event_id != "P2"]
    # Fewer records served than the feed counts: P1 may be the one not served.
    script.replies = [listing(work, other), listing(edited, totalCount=3)]
    polls = polled(url, 2)
    assert [e.event_id for e in polls[1].events] == ["P2"]
    assert LEFT_LIST not in polls[1].events[0].raw
    assert not polls[0].events[0].raw.get(LEFT_LIST)  # the first poll: nothing left


def test_a_record_that_moved_across_a_page_boundary_is_not_restored(
        server: tuple[str, Scripted]) -> None:
    """Another outage ends between the requests for page 1 and page 2, so a record moves up
    to page 1 after page 1 was read and is missed by this poll: it is still on, and the next
    poll lists it again."""
    url, script = server
    records = json.loads(feed("95598_list.json"))["seleList"]
    assert len(records) >= 3

    def page(rows: list[Any], n: int) -> Any:
        return json_reply({"seleList": rows[(n - 1) * 2:n * 2],
                           "pageModel": {"pageNow": n, "totalPage": (len(rows) + 1) // 2}})

    shifted = records[1:]  # records[0] ended: records[2] moved from page 2 to page 1
    script.replies = [page(records, 1), page(records, 2), page(records, 1), page(shifted, 2),
                      page(shifted, 1), page(shifted, 2)]
    assert records[2]["powerOffId"] not in restored_in(polled(url, 3))


def test_an_error_envelope_with_a_null_list_restores_nothing(
        server: tuple[str, Scripted]) -> None:
    """HTTP 200 with {"code": 500, "seleList": null, "pageModel": null} (the back end's
    database timed out) is no list of current outages, however many times it comes."""
    url, script = server
    records = json.loads(feed("95598_list.json"))["seleList"]
    listed = json_reply({"seleList": records, "pageModel": {"pageNow": 1, "totalPage": 1}})
    broken = json_reply({"code": 500, "msg": "数据库连接超时", "seleList": None,
                         "pageModel": None})
    script.replies = [listed, broken, broken, broken]
    assert not restored_in(polled(url, 4))
    # An explicit empty list with its page model is a list: two of them end every outage.
    empty = json_reply({"seleList": [], "pageModel": {"pageNow": 1, "totalPage": 0}})
    script.replies = [listed, empty]
    assert sorted(restored_in(polled(url, 3))) == sorted(r["powerOffId"] for r in records)


def polled_until_failure(source: HttpJsonSource, times: int) -> tuple[list[PollResult],
                                                                      list[str]]:
    """``times`` polls of ``source``: the results stored, and the reasons of those failed."""
    source.start(None)
    out, failed = [], []
    for _ in range(times):
        try:
            out.append(source.poll(NOW))
        except FeedError as exc:
            failed.append(exc.reason)
            continue
        source.acknowledge(out[-1])
    return out, failed


@pytest.mark.parametrize("broken, config", [
    # No success_path: a top-level "success": false is an error envelope.
    ({"success": False, "msg": "系统繁忙", "seleList": [],
      "pageModel": {"pageNow": 1, "totalPage": 0}}, {}),
    # With success_path: anything but a success code is.
    ({"code": "E500", "message": "服务异常", "seleList": [],
      "pageModel": {"pageNow": 1, "totalPage": 0}}, {"success_path": "code"}),
    ({"seleList": [], "pageModel": {"pageNow": 1, "totalPage": 0}}, {"success_path": "code"}),
])
def test_an_error_envelope_with_an_empty_list_fails_the_poll_and_restores_nothing(
        server: tuple[str, Scripted], broken: dict[str, Any], config: dict[str, Any]) -> None:
    """HTTP 200 with an empty list inside an error envelope said "no outages": two of them
    told every village with an open outage that its power was back."""
    url, script = server
    records = json.loads(feed("95598_list.json"))["seleList"]
    listed = {"seleList": records, "pageModel": {"pageNow": 1, "totalPage": 1}}
    script.replies = [json_reply({**listed, "code": 0}), *[json_reply(broken)] * 3]
    polls, failed = polled_until_failure(make_source(url + "/notices", **config), 4)
    assert len(polls) == 1 and not restored_in(polls)
    assert len(failed) == 3 and all("success" in f for f in failed), failed
    if "msg" in broken or "message" in broken:
        assert all(("系统繁忙" in f) or ("服务异常" in f) for f in failed)
    # A success code with the empty list is a list: it ends what it no longer lists.
    ok_empty = {"seleList": [], "pageModel": {"pageNow": 1, "totalPage": 0}, "code": "0000"}
    script.replies = [json_reply({**listed, "code": 0}), json_reply(ok_empty)]
    polls, failed = polled_until_failure(make_source(url + "/notices", **config), 3)
    assert not failed
    assert sorted(restored_in(polls)) == sorted(r["powerOffId"] for r in records)


def test_a_quarantined_record_with_an_id_does_not_stop_restorations(
        server: tuple[str, Scripted]) -> None:
    """A record the source cannot read (a start of 明天上午) is still listed by its id: other
    records leaving the list are still over, and it is not. One without a readable id leaves
    the poll unsure of what is listed: nothing is inferred from it."""
    url, script = server
    records = json.loads(feed("95598_list.json"))["seleList"]
    bad = dict(records[1], startTime="明天上午")
    nameless = dict(records[1], startTime="明天上午", powerOffId=None)
    script.replies = [listing(records[0], bad), listing(bad), listing(bad)]
    polls = polled(url, 3)
    assert all(len(p.quarantined) == 1 for p in polls)
    assert restored_in(polls) == [records[0]["powerOffId"]]
    script.replies = [listing(records[2]), listing(nameless), listing(nameless)]
    assert not restored_in(polled(url, 3))


# -- the feed's own count: a poll that did not see every record ends none -----------------------


def tied(pid: str) -> dict[str, Any]:
    """A fault record; three of them share one start, so the back end's order is a tie."""
    return {"powerOffId": pid, "typeCode": "3", "startTime": "2026-11-23 15:30:00",
            "stopTime": "2026-11-23 18:00:00", "lineName": "10kV马集线",
            "pubTranName": f"{pid}号台区"}


def pages_of(order: Callable[[int], list[Any]], size: int = 2, **model: Any
             ) -> Callable[[Seen], Reply]:
    """Serve page n of ``order(n)`` (the list as the back end sorts it for that request)."""
    def route(seen: Seen) -> Reply:
        n = int(seen.query.get("pageNow", ["1"])[0])
        rows = order(n)
        meta = {"pageNow": n, "totalPage": max(1, (len(rows) + size - 1) // size),
                "totalCount": len(rows), "pageSize": size}
        meta.update(model.get(str(n), {}))
        return json_reply({"seleList": rows[(n - 1) * size:n * size], "pageModel": meta})
    return route


def test_a_record_unstable_paging_never_served_is_not_restored(
        server: tuple[str, Scripted]) -> None:
    """Three records with one start time, two per page: the back end breaks the tie anew per
    request, page 1 comes from [Y, Z, X] and page 2 from [X, Y, Z], and X is served by no page
    for two polls while pageModel.totalCount says 3 each time. X is still listed: no poll that
    saw fewer records than the feed counts may end one."""
    url, script = server
    x, y, z = tied("X"), tied("Y"), tied("Z")
    source = make_source(url + "/notices")
    source.start(None)

    def poll() -> PollResult:
        r = source.poll(NOW)
        source.acknowledge(r)
        return r

    script.route = pages_of(lambda n: [x, y, z])
    assert {e.event_id for e in poll().events} == {"X", "Y", "Z"}
    script.route = pages_of(lambda n: [y, z, x] if n == 1 else [x, y, z])
    with capture_logs() as logs:
        polls = [poll(), poll()]
    assert not restored_in(polls)
    warned = [e for e in logs if e["event"] == "http_json.poll_incomplete"]
    assert len(warned) == 2 and warned[0]["source"] == "feed95598"
    assert warned[0]["records_seen"] == 2 and warned[0]["total_count"] == 3
    assert source.stats["incomplete_polls"] == 2
    script.route = pages_of(lambda n: [x, y, z])
    assert not restored_in([poll(), poll()])
    # X really ends: the feed counts 2 and two complete polls do not list it.
    script.route = pages_of(lambda n: [y, z])
    assert restored_in([poll(), poll()]) == ["X"]
    assert source.stats["incomplete_polls"] == 2


def test_a_poll_whose_pages_disagree_on_the_totals_ends_nothing(
        server: tuple[str, Scripted]) -> None:
    """The list changed between the pages of one poll (page 1 says 2 pages, page 2 says 3):
    what one poll saw is no one list, whatever the counts add up to."""
    url, script = server
    a, b, c, d = tied("A"), tied("B"), tied("C"), tied("D")
    script.route = pages_of(lambda n: [a, b, c])
    source = make_source(url + "/notices")
    source.start(None)
    source.acknowledge(source.poll(NOW))
    script.route = pages_of(lambda n: [a, b, c] if n == 1 else [a, b, d],
                            **{"2": {"totalPage": 3, "totalCount": 3},
                               "3": {"totalPage": 3, "totalCount": 3}})
    with capture_logs() as logs:
        polls = []
        for _ in range(2):
            polls.append(source.poll(NOW))
            source.acknowledge(polls[-1])
    assert not restored_in(polls)
    assert {e.get("reason") for e in logs if e["event"] == "http_json.poll_incomplete"} == {
        "the page count or total count changed between pages"}


def test_total_count_path_can_be_set_or_switched_off(server: tuple[str, Scripted]) -> None:
    url, script = server
    x, y = tied("X"), tied("Y")
    short = json_reply({"data": {"n": 5}, "seleList": [x, y],
                        "pageModel": {"pageNow": 1, "totalPage": 1, "totalCount": 2}})
    # The feed counts 5 at data.n, lists 2: the poll is incomplete.
    script.replies = [short]
    source = make_source(url + "/notices", total_count_path="data.n")
    source.start(None)
    source.acknowledge(source.poll(NOW))
    assert source.stats["incomplete_polls"] == 1
    # Switched off (null): the count is not read at all.
    off = make_source(url + "/notices", total_count_path=None)
    off.start(None)
    off.acknowledge(off.poll(NOW))
    assert off.stats["incomplete_polls"] == 0
    # A count that is no number is no count the poll can be checked against: incomplete.
    script.replies = [json_reply({"seleList": [x], "pageModel": {"pageNow": 1, "totalPage": 1,
                                                                 "totalCount": "many"}})]
    odd = make_source(url + "/notices")
    odd.start(None)
    odd.acknowledge(odd.poll(NOW))
    assert odd.stats["incomplete_polls"] == 1


# -- records without a readable id --------------------------------------------------------------


def test_a_record_without_an_id_holds_back_only_what_it_may_be(
        server: tuple[str, Scripted]) -> None:
    """A malformed record with no id used to stop every restoration of the feed for as long
    as it was listed. It was served together with B before B left: it is not B, and B is
    over. One that appears as G leaves may be G with its id broken: G stays on (a warning
    each poll, an error after HELD_ALERT_POLLS), until the unreadable record is gone."""
    url, script = server
    a, b, g = tied("A"), tied("B"), tied("G")
    bad = {"powerOffId": None, "startTime": "??"}
    script.replies = [listing(a, b, bad, totalCount=3), listing(a, bad, totalCount=2),
                      listing(a, bad, totalCount=2)]
    assert restored_in(polled(url, 3)) == ["B"]

    source = make_source(url + "/notices")
    source.start(None)
    script.replies = [listing(a, g, totalCount=2)]
    source.acknowledge(source.poll(NOW))
    script.replies = [listing(a, bad, totalCount=2)]
    with capture_logs() as logs:
        polls = []
        for _ in range(4):
            polls.append(source.poll(NOW))
            source.acknowledge(polls[-1])
    assert not restored_in(polls)
    held = [e for e in logs if e["event"] == "http_json.restoration_held"]
    assert len(held) == 4 and held[0]["event_ids"] == ["G"] and held[0]["source"] == "feed95598"
    blocked = [e for e in logs if e["event"] == "http_json.restorations_blocked"]
    assert len(blocked) == 1 and blocked[0]["log_level"] == "error"
    assert source.held_polls == 4
    # The unreadable record leaves: G is missing from two complete polls and over.
    script.replies = [listing(a, totalCount=1)]
    polls = []
    for _ in range(2):
        polls.append(source.poll(NOW))
        source.acknowledge(polls[-1])
    assert restored_in(polls) == ["G"] and source.held_polls == 0


def test_an_unreadable_record_that_changes_is_a_new_one(server: tuple[str, Scripted]) -> None:
    """Known with B, the unreadable record changes in the poll B leaves: it may now be B."""
    url, script = server
    a, b = tied("A"), tied("B")
    bad = {"powerOffId": None, "startTime": "??"}
    script.replies = [listing(a, b, bad), listing(a, dict(bad, stopTime="?")),
                      listing(a, dict(bad, stopTime="?")), listing(a, dict(bad, stopTime="?"))]
    assert not restored_in(polled(url, 4))


def test_the_poller_exports_incomplete_and_held_polls(server: tuple[str, Scripted]) -> None:
    """The command centre sees a feed whose restorations are held back on its dashboard."""
    from outage_sentinel.metrics import Metrics
    from outage_sentinel.poller import Poller
    from outage_sentinel.sources.capabilities import Snapshotting

    url, script = server
    x, y, z = tied("X"), tied("Y"), tied("Z")
    source = make_source(url + "/notices")
    source.start(None)
    assert isinstance(source, Snapshotting)
    metrics = Metrics()

    class NoStore:
        def ingest(self, *_: Any) -> Any:
            from outage_sentinel.store import IngestCounts
            return IngestCounts(0, 0, 0)

        def kv_get(self, *_: Any) -> None:
            return None

        def kv_set(self, *_: Any) -> None:
            pass

    poller = Poller(NoStore(), metrics)  # type: ignore[arg-type]
    script.route = pages_of(lambda n: [x, y, z])
    poller.poll(source, NOW)
    script.route = pages_of(lambda n: [y, z, x] if n == 1 else [x, y, z])
    poller.poll(source, NOW)
    poller.poll(source, NOW)
    value = metrics.registry.get_sample_value
    assert value("outage_sentinel_snapshot_incomplete_polls_total", {"source": "feed95598"}) == 2
    assert value("outage_sentinel_snapshot_held_polls", {"source": "feed95598"}) == 2
