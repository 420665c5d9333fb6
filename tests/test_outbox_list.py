"""``outbox list`` as an operator sees it: phone numbers in message keys masked."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from outage_sentinel.config import load_config
from outage_sentinel.outgoing import OutboxMessage
from outage_sentinel.store import Store
from tests.e2e_helpers import make_config
from tests.test_cli import cli

PHONE = "13800001111"


def test_outbox_list_masks_phones_in_keys(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    config = load_config(cfg)
    config.state_dir.mkdir(parents=True, exist_ok=True)
    store = Store(config.database_url())
    store.migrate()
    now = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
    with store.transaction() as conn:
        store.enqueue_in(conn, [OutboxMessage(
            incident_id="INC-1", revision=1, recipient=f"village:V01:sms:{PHONE}",
            purpose="outage", channel="sms", target=PHONE, audience="liaison",
            subject="s", body="b", payload={},
        )], now)
    store.close()

    r = cli("--config", str(cfg), "outbox", "list")
    assert r.returncode == 0, r.stderr
    assert PHONE not in r.stdout
    assert "INC-1/1/village:V01:sms:138****1111/outage" in r.stdout



def _store_with(tmp_path: Path, *messages: OutboxMessage) -> tuple[Path, Store]:
    cfg = make_config(tmp_path)
    config = load_config(cfg)
    config.state_dir.mkdir(parents=True, exist_ok=True)
    store = Store(config.database_url())
    store.migrate()
    with store.transaction() as conn:
        store.enqueue_in(conn, list(messages), datetime(2026, 6, 1, 8, 0, tzinfo=UTC))
    return cfg, store


def _notice(recipient: str, purpose: str = "outage") -> OutboxMessage:
    return OutboxMessage(incident_id="INC-1", revision=1, recipient=recipient, purpose=purpose,
                         channel="wecom", target=recipient.rsplit(":", 1)[-1],
                         audience="liaison", subject="s", body="b", payload={})


def test_outbox_withdraw_hold_and_release_from_the_command_line(tmp_path: Path) -> None:
    """Each verb says what it did and why not for the rest (exit 1), keeps who and why with
    the message, and is in the audit trail with what was asked (numbers masked)."""
    cfg, store = _store_with(tmp_path, _notice("village:V01:wecom:g1"),
                             _notice("village:V02:wecom:g2"))
    a, b = (m.id for m in store.messages())
    args = ("--config", str(cfg), "outbox")
    assert cli(*args, "withdraw", str(a)).returncode == 2  # --reason is required
    r = cli(*args, "withdraw", str(a), "--reason", f"村名错 {PHONE}", "--actor", "li")
    assert r.returncode == 0 and r.stdout.strip() == f"withdrew 1: {a}", r.stderr
    r = cli(*args, "hold", str(a), str(b), "--actor", "li")
    assert r.returncode == 1 and r.stdout.strip() == f"held 1: {b}"
    assert f"{a}: withdrawn: already withdrawn" in r.stderr
    assert cli(*args, "retry", str(b)).returncode == 1  # held: released, not retried
    r = cli(*args, "release", str(b), "9999", "--actor", "li")
    assert r.returncode == 1 and "no message 9999" in r.stderr and f"released 1: {b}" in r.stdout
    got = {m.id: m for m in store.messages()}
    assert (got[a].status, got[b].status) == ("withdrawn", "pending")
    assert got[a].last_error == "withdrawn by operator:li: 村名错 138****1111 (was pending)"
    trail = [e for e in store.audit_trail() if e["kind"] == "cli"]
    assert [(e["action"], e["ok"]) for e in reversed(trail)] == [
        ("withdraw", True), ("hold", False), ("retry", False), ("release", False)]
    assert all(PHONE not in e["detail"] for e in trail)
    assert "138****1111" in trail[-1]["detail"] and f'"ids": [{a}]' in trail[-1]["detail"]
    listed = cli(*args, "list", "--status", "withdrawn").stdout
    assert "withdrawn by operator:li" in listed and PHONE not in listed
    store.close()
