"""The generic webhook, the JSON-lines file sink and the console sink."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import pytest

from outage_sentinel.channels.base import Message, Outcome
from outage_sentinel.channels.console import ConsoleChannel
from outage_sentinel.channels.file import FileChannel
from outage_sentinel.channels.webhook import WebhookChannel
from tests.channels.conftest import FakeService, Reply

TOKEN = "Bearer whk-7a9c1e3f5b7d9f1a3c5e"


def msg(key: str = "I1/1/liaison:张家村/outage", **kw: object) -> Message:
    base: dict[str, object] = dict(key=key, channel="x", target="张家村", text="停电",
                                   subject="通知", mentions=("13812341234",),
                                   incident_id="I1", params={"feeder": "F1"})
    base.update(kw)
    return Message(**base)  # type: ignore[arg-type]


# -- webhook ------------------------------------------------------------------------------------


def test_webhook_posts_message_with_target_in_url(service: FakeService) -> None:
    service.default = Reply(204)
    ch = WebhookChannel("hook", url=service.url + "/notify/{target}",
                        headers={"Authorization": TOKEN}, timeout=2)
    assert ch.send(msg()).outcome is Outcome.DELIVERED
    (req,) = service.requests
    assert req.path == "/notify/%E5%BC%A0%E5%AE%B6%E6%9D%91"
    assert req.headers["Authorization"] == TOKEN
    assert req.headers["Idempotency-Key"] == "I1/1/liaison:%E5%BC%A0%E5%AE%B6%E6%9D%91/outage"
    body = req.json()
    assert body["key"] == "I1/1/liaison:张家村/outage" and body["mentions"] == ["13812341234"]
    assert body["params"] == {"feeder": "F1"}


@pytest.mark.parametrize(
    ("reply", "outcome"),
    [
        (Reply(200, {"result": {"code": 0}}), Outcome.DELIVERED),
        (Reply(200, {"result": {"code": "OK"}}), Outcome.DELIVERED),
        (Reply(200, {"result": {"code": 17}}), Outcome.PERMANENT),
        (Reply(200, {"other": 1}), Outcome.RETRY),
        (Reply(500, {"result": {"code": 0}}), Outcome.RETRY),
        (Reply(401, None, raw=b"unauthorised " + TOKEN.encode()), Outcome.PERMANENT),
    ],
)
def test_webhook_success_field(service: FakeService, reply: Reply, outcome: Outcome) -> None:
    service.reply(reply)
    ch = WebhookChannel("hook", url=service.url + "/n", headers={"Authorization": TOKEN},
                        success_field="result.code", timeout=2)
    result = ch.send(msg())
    assert result.outcome is outcome
    assert TOKEN not in str(result) and "whk-7a9c1e3f5b7d9f1a3c5e" not in str(result)


def test_webhook_refused(refused_url: str) -> None:
    assert WebhookChannel("hook", url=refused_url).send(msg()).outcome is Outcome.RETRY


# -- file ---------------------------------------------------------------------------------------


def test_file_appends_json_lines_with_masked_phones(tmp_path: Path) -> None:
    path = tmp_path / "out" / "sent.jsonl"
    ch = FileChannel("audit", path=path, clock=lambda: 1_772_323_200.0)
    assert ch.send(msg()).outcome is Outcome.DELIVERED
    assert ch.send(msg("k2")).outcome is Outcome.DELIVERED
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    rec = json.loads(lines[0])
    key = "I1/1/liaison:张家村/outage".encode()
    assert rec.pop("key_sha256") == hashlib.sha256(key).hexdigest()
    assert rec == {"key": "I1/1/liaison:张家村/outage", "channel": "x", "target": "张家村",
                   "audience": "liaison", "purpose": "outage", "incident_id": "I1",
                   "subject": "通知", "text": "停电", "mentions": ["138****1234"],
                   "sent_at": "2026-03-01T00:00:00Z"}


def test_file_already_delivered_survives_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "sent.jsonl"
    ch = FileChannel("audit", path=path)
    assert ch.already_delivered("k1") is False  # no file yet
    ch.send(msg("k1"))
    with open(path, "a", encoding="utf-8") as fh:
        fh.write('{"key": "k2", "text": "torn by a cra')  # crash mid-write
    assert ch.already_delivered("k1") is True
    assert ch.already_delivered("k2") is False
    ch.send(msg("k2"))
    assert ch.already_delivered("k2") is True
    assert all(json.loads(line) for line in path.read_text().splitlines()[-1:])


def test_file_concurrent_writers_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "sent.jsonl"
    channels = [FileChannel(f"a{i}", path=path) for i in range(4)]

    def work(ch: FileChannel, n: int) -> None:
        for j in range(50):
            ch.send(msg(f"{n}-{j}", text="长" * 2000))

    threads = [threading.Thread(target=work, args=(c, i)) for i, c in enumerate(channels)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    keys = [json.loads(line)["key"] for line in path.read_text(encoding="utf-8").splitlines()]
    assert sorted(keys) == sorted(f"{i}-{j}" for i in range(4) for j in range(50))


def test_file_never_appends_a_message_twice(tmp_path: Path) -> None:
    # A leader frozen mid-send wakes after the next one found the file without the message
    # and sent it: its late write must not add a second copy, whoever wrote the first (this
    # process, another one, before or after the file was replaced)
    path = tmp_path / "sent.jsonl"
    ch = FileChannel("audit", path=path)
    first = ch.send(msg("k1"))
    late = FileChannel("audit", path=path).send(msg("k1"))
    assert first.outcome is late.outcome is Outcome.DELIVERED
    assert "not written again" in late.detail
    with open(path, "a", encoding="utf-8") as fh:  # another process's record, then a torn one
        fh.write(json.dumps({"key_sha256": hashlib.sha256(b"k2").hexdigest()}) + "\n")
        fh.write('{"key": "k3", "key_sha256": "torn by a cra')
    ch.send(msg("k2"))
    ch.send(msg("k3"))
    ch.send(msg("k3"))
    keys = [json.loads(line).get("key") for line in path.read_text("utf-8").splitlines()
            if line.endswith("}")]
    assert keys == ["k1", None, "k3"]
    path.unlink()  # rotated away: the new file does not have k1
    ch.send(msg("k1"))
    assert [json.loads(line)["key"] for line in path.read_text("utf-8").splitlines()] == ["k1"]


def test_file_unwritable_is_retry(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    result = FileChannel("audit", path=tmp_path / "dir").send(msg())
    assert result.outcome is Outcome.RETRY


# -- console ------------------------------------------------------------------------------------


def test_console_prints_with_masked_mentions(capsys: pytest.CaptureFixture[str]) -> None:
    assert ConsoleChannel("con").send(msg()).outcome is Outcome.DELIVERED
    out = capsys.readouterr().out
    assert "[con → 张家村] outage: 通知" in out and "停电" in out
    assert "@138****1234" in out and "13812341234" not in out


def test_file_masks_sms_targets_but_still_recognises_the_message(tmp_path: Path) -> None:
    """An SMS key and target hold the phone number: shown masked, matched by hash."""
    path = tmp_path / "sent.jsonl"
    ch = FileChannel("sms", path=path)
    m = Message(key="I1/1/village:V1:sms:13812345678/outage", channel="sms",
                target="13812345678", text="停电")
    assert ch.send(m).outcome is Outcome.DELIVERED
    text = path.read_text(encoding="utf-8")
    assert "13812345678" not in text and "138****5678" in text
    assert ch.already_delivered(m.key) is True
    assert ch.already_delivered("I1/1/village:V1:sms:13899995678/outage") is False
