"""File sink: one JSON line per message, appended and fsynced.

For dry runs, audits and tests, and as the simplest channel with an exact delivery guarantee:
:meth:`FileChannel.already_delivered` looks the key up in the file itself, so after a crash
between "written" and "marked sent" the delivery loop can tell the message is already there and
never writes it twice.

Writes from threads of this process are serialised by one lock per resolved path; writes from
other processes by ``flock`` where the OS has it, so lines never interleave.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from outage_sentinel.channels.base import Message, Outcome, SendResult
from outage_sentinel.channels.common import Redactor, log_result, mask_number, retry
from outage_sentinel.logs import mask_phones

try:  # POSIX only; on other systems the in-process lock is all we have.
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _lock_for(path: Path) -> threading.Lock:
    key = str(path.resolve())
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(key, threading.Lock())


def key_digest(key: str) -> str:
    """What identifies a message in the file: its key may hold a phone number (SMS targets),
    which the file shows masked, so recovery matches on a hash of the full key."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def file_record(message: Message, sent_at: datetime) -> dict[str, Any]:
    """The JSON line for ``message``; phone numbers masked (the file is read by people)."""
    return {
        "key": mask_phones(message.key),
        "key_sha256": key_digest(message.key),
        "channel": message.channel,
        "target": mask_phones(message.target),
        "audience": message.audience,
        "purpose": message.purpose,
        "incident_id": message.incident_id,
        "subject": message.subject,
        "text": message.text,
        "mentions": [mask_number(m) for m in message.mentions],
        "sent_at": sent_at.isoformat().replace("+00:00", "Z"),
    }


class FileChannel:
    type = "file"

    def __init__(self, name: str, *, path: Path,
                 clock: Callable[[], float] = time.time) -> None:
        self.name = name
        self.path = Path(path)
        self.rate_limits: tuple[Any, ...] = ()
        self._clock = clock
        self._lock = _lock_for(self.path)
        self._redact = Redactor(())

    def __repr__(self) -> str:
        return f"FileChannel(name={self.name!r}, path={str(self.path)!r})"

    def rate_keys(self, message: Message) -> tuple[str, ...]:
        return (message.target,)

    def send(self, message: Message) -> SendResult:
        record = file_record(message, datetime.fromtimestamp(self._clock(), UTC))
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._lock, open(self.path, "a+b") as fh:
                if fcntl is not None:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
                try:
                    # A crash mid-write can leave a partial last line; start on a fresh line
                    # so that our record stays parseable.
                    fh.seek(0, os.SEEK_END)
                    if fh.tell() > 0:
                        fh.seek(-1, os.SEEK_END)
                        if fh.read(1) != b"\n":
                            fh.write(b"\n")
                    fh.write(line.encode("utf-8"))
                    fh.flush()
                    os.fsync(fh.fileno())
                finally:
                    if fcntl is not None:
                        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        except OSError as exc:
            # Disk full, permission denied: an operator can fix it; retry until max age.
            result = retry(f"cannot write {self.path}: {exc.strerror or type(exc).__name__}")
        else:
            result = SendResult(outcome=Outcome.DELIVERED, detail=f"appended to {self.path}")
        log_result(self.name, self.type, message.target, message.key, result, self._redact)
        return result

    def already_delivered(self, key: str) -> bool | None:
        """Is a record for ``key`` in the file? ``None`` if the file can't be read."""
        needle = key_digest(key)
        try:
            with self._lock, open(self.path, encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    if needle not in line:  # cheap pre-filter before parsing
                        continue
                    try:
                        if json.loads(line).get("key_sha256") == needle:
                            return True
                    except (ValueError, AttributeError):
                        continue  # a torn line from a crash
        except FileNotFoundError:
            return False
        except OSError:
            return None
        return False

    def close(self) -> None:
        return None
