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

