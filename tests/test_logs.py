"""Logs: phone numbers masked and registered secrets redacted in every value that is logged."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from outage_sentinel import logs
from outage_sentinel.logs import configure, get_logger, mask_phones, redact, register_secret


@pytest.fixture(autouse=True)
def isolated_secrets(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts with no registered secrets and leaves structlog as it found it."""
    monkeypatch.setattr(logs, "_secrets", set())
    yield
    structlog.reset_defaults()
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_outage_sentinel", False)]:
        root.removeHandler(handler)


@pytest.mark.parametrize(("text", "masked"), [
    ("13812345678", "138****5678"),
    ("call 13812345678 now", "call 138****5678 now"),
    ("张三13812345678，李四19987654321", "张三138****5678，李四199****4321"),
    ("tel:15900001111;", "tel:159****1111;"),
    ("+86 13812345678", "+86 138****5678"),
    ("+86-13812345678", "+86-138****5678"),
    # landlines: a household on the care list may give one
    ("0571-87654321", "0571-****4321"),
    ("电话03165551234", "电话0316****1234"),
    ("010 88889999", "010 ****9999"),
    ("(0316)5551234", "(0316)****1234"),
    ("分机0316-5551234-802", "分机0316-****1234"),
    ("0316 555 1234", "0316 ****1234"),
    ("0316－5551234", "0316－****1234"),
    ("0755 23456789", "0755 ****6789"),
    # as a Chinese input method types them: full-width digits and separators; dotted groups
    ("报修人电话１３８１２３４５６７８", "报修人电话１３８****５６７８"),
    ("１号台区，电话１３９－１１１１－００１１", "１号台区，电话１３９****００１１"),
    ("联系电话138.1234.5678", "联系电话138****5678"),
    ("座机０３１６－５５５１２３４", "座机０３１６－****１２３４"),
    ("＋８６１３８１２３４５６７８", "＋８６１３８****５６７８"),
])
def test_mobile_numbers_are_masked(text: str, masked: str) -> None:
    assert mask_phones(text) == masked


@pytest.mark.parametrize("text", [
    "12812345678",                 # no mainland mobile starts with 12
    "1381234567",                  # 10 digits
    "138123456789",                # 12 digits: part of a longer number, not a phone
    "110101199003071234",          # an ID-card number containing 1990030712...
    "95598", "400-600-1234",       # service numbers
    "meter 000123456789",          # no area code starts with 00
    "0316-555123",                 # 6 digits after the area code
    "T_0312345678", "WO0316555123", "ab0312345678cd",  # inside ids and hashes
    "p=0.0512345678", "lat 39.0512345678",            # decimals
    '"meter_id": "053123456789"',  # twelve digits unbroken: an id more likely than a phone
    "order 2026030113812345678",   # digits glued to a longer number
    "INC-20260301-0001",
    "电表号１２３４５６７８９０１２", "１２８１２３４５６７８", "v1.2.3", "123.4567.8901",
])
def test_other_numbers_are_left_alone(text: str) -> None:
    assert mask_phones(text) == text


def test_country_code_prefix_without_separator_is_masked() -> None:
    assert mask_phones("+8613812345678") == "+86138****5678"
    assert mask_phones("8613812345678") == "86138****5678"
    assert mask_phones("008613812345678") == "0086138****5678"
    assert "12345678" not in mask_phones("mentioned_mobile_list=[\"+8613812345678\"]")


def test_registered_secrets_are_redacted() -> None:
    register_secret("wecom-key-0123456789")
    register_secret("abc")  # too short: would hit ordinary words
    register_secret(None)
    register_secret("")
    text = "POST https://qyapi/send?key=wecom-key-0123456789 abc 13812345678"
    assert redact(text) == "POST https://qyapi/send?key=*** abc 138****5678"


def test_longer_secret_wins_over_its_prefix() -> None:
    register_secret("token")
    register_secret("token-extended-part")
    assert redact("x=token-extended-part y=token") == "x=*** y=***"


def test_scrub_processor_walks_nested_values() -> None:
    register_secret("s3cr3t-value")
    event = {
        "event": "sent 13812345678",
        "payload": {"mentions": ["13900001111", "all"], "auth": "Bearer s3cr3t-value"},
        "tuple": ("13700002222",),
        "count": 3,
        "error": ValueError("bad key s3cr3t-value for 13600003333"),
    }
    out = logs.scrub_processor(None, "info", event)
    assert out["event"] == "sent 138****5678"
    assert out["payload"] == {"mentions": ["139****1111", "all"], "auth": "Bearer ***"}
    assert out["tuple"] == ["137****2222"]
    assert out["count"] == 3
    assert out["error"] == "ValueError: bad key *** for 136****3333"


def test_json_log_lines_are_scrubbed_end_to_end() -> None:
    register_secret("dingtalk-secret-xyz")
    stream = io.StringIO()
    configure(level="INFO", fmt="json", stream=stream)
    log = get_logger(component="test", target="13812345678")
    log.info("delivered", url="https://oapi/robot?sign=dingtalk-secret-xyz", village="马集村")
    log.debug("hidden at INFO")
    try:
        raise RuntimeError("send to 13912345678 failed with dingtalk-secret-xyz")
    except RuntimeError:
        log.exception("send_failed")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first["event"] == "delivered" and first["level"] == "info"
    assert first["target"] == "138****5678"
    assert first["url"] == "https://oapi/robot?sign=***"
    assert first["village"] == "马集村"  # UTF-8, not \\u escapes
    assert "马集村" in lines[0]
    assert first["component"] == "test" and "timestamp" in first
    second = json.loads(lines[1])
    assert "RuntimeError" in second["exception"]
    assert "139****5678" in second["exception"]
    whole = stream.getvalue()
    for leaked in ("dingtalk-secret-xyz", "13812345678", "13912345678"):
        assert leaked not in whole


def test_library_records_join_the_json_stream_scrubbed() -> None:
    """APScheduler and paho log through the standard library: their records come out as the
    same JSON lines, with secrets and phones scrubbed; the scheduler's own skip warnings are
    left to the daemon's structured job_skipped lines."""
    register_secret("wecom-key-abc")
    stream = io.StringIO()
    configure(level="INFO", fmt="json", stream=stream)
    try:
        raise ValueError("webhook key=wecom-key-abc")
    except ValueError:
        logging.getLogger("apscheduler.executors.default").exception(
            "Job poll:feed raised an exception (crew 13812345678)")
    logging.getLogger("apscheduler.scheduler").warning(
        "Execution of job skipped: maximum number of running instances reached (1)")
    logging.getLogger("paho.mqtt").debug("hidden at INFO")
    logging.getLogger("apscheduler.executors.default").info(
        'Running job "Daemon._deliver_job" (every run of every job: not for the log)')
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["logger"] == "apscheduler.executors.default" and record["level"] == "error"
    assert record["event"] == "Job poll:feed raised an exception (crew 138****5678)"
    assert "ValueError: webhook key=***" in record["exception"]
    assert "wecom-key-abc" not in stream.getvalue()
    configure(level="INFO", fmt="json", stream=io.StringIO())  # configuring again replaces it
    assert sum(getattr(h, "_outage_sentinel", False) for h in logging.getLogger().handlers) == 1


def test_log_file_is_created(tmp_path: pytest.TempPathFactory) -> None:
    path = tmp_path / "logs" / "sentinel.log"  # type: ignore[operator]
    configure(level="WARNING", fmt="json", file=path)
    get_logger().warning("poll_failed", source="feed", phone="15012345678")
    record = json.loads(path.read_text(encoding="utf-8").splitlines()[-1])
    assert record["phone"] == "150****5678" and record["source"] == "feed"


def test_a_python_warning_joins_the_json_stream() -> None:
    """A bundle's names several nodes share are a TopologyWarning: the daemon's log carries
    it as a JSON line (it was bare text on stderr, which a log collector drops)."""
    import warnings

    from outage_sentinel.topology.bundle import TopologyWarning

    stream = io.StringIO()
    configure(level="INFO", fmt="json", stream=stream)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn("nodes.csv row 498 (王庄村1号台区): shared", TopologyWarning,
                          stacklevel=1)
    finally:
        logging.captureWarnings(False)
    (line,) = stream.getvalue().splitlines()
    record = json.loads(line)
    assert record["logger"] == "py.warnings" and record["level"] == "warning"
    assert "TopologyWarning" in record["event"] and "王庄村1号台区" in record["event"]
