"""File sink: one JSON line per message, appended and fsynced.

For dry runs, audits and tests, and as the simplest channel with an exact delivery guarantee:
:meth:`FileChannel.already_delivered` looks the key up in the file itself, so after a crash
between "written" and "marked sent" the delivery loop can tell the message is already there and
never writes it twice. :meth:`FileChannel.send` looks too, under the file's lock, right before
it appends: a leader frozen mid-send (after its last check that it still leads) that wakes
after the next leader found the file without the message and sent it would otherwise append
it a second time; the check is the sink's own, so no late writer gets past it.

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
#: Per resolved path: (inode, bytes read, key digests in them), so a send reads only what
#: was appended since (by any process) instead of the whole file. Used under the path's lock.
_SEEN: dict[str, tuple[int, int, set[str]]] = {}


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
                    held = record["key_sha256"] in _digests(fh, str(self.path.resolve()))
                    if not held:
                        _append(fh, line)
                finally:
                    if fcntl is not None:
                        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        except OSError as exc:
            # Disk full, permission denied: an operator can fix it; retry until max age.
            result = retry(f"cannot write {self.path}: {exc.strerror or type(exc).__name__}")
        else:
            result = SendResult(outcome=Outcome.DELIVERED,
                                detail=f"already in {self.path}, not written again" if held
                                else f"appended to {self.path}")
        log_result(self.name, self.type, message.target, message.key, result, self._redact)
        return result

    def already_delivered(self, key: str) -> bool | None:
        """Is a record for ``key`` in the file? ``None`` if the file can't be read."""
        try:
            with self._lock, open(self.path, "rb") as fh:
                return key_digest(key) in _digests(fh, str(self.path.resolve()))
        except FileNotFoundError:
            return False
        except OSError:
            return None

    def close(self) -> None:
        return None


def _append(fh: Any, line: str) -> None:
    """Append ``line`` and fsync; a crash mid-write can leave a partial last line, so start on
    a fresh line and keep our record parseable."""
    fh.seek(0, os.SEEK_END)
    if fh.tell() > 0:
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) != b"\n":
            fh.write(b"\n")
    fh.write(line.encode("utf-8"))
    fh.flush()
    os.fsync(fh.fileno())


def _digests(fh: Any, key: str) -> set[str]:
    """The key digests of the records in the open file ``fh`` (held under its lock), read on
    from where the last call for ``key`` stopped; a file replaced or cut short is read again
    from the start, and a torn last line (a crash mid-write) is left for the next call."""
    st = os.fstat(fh.fileno())
    inode, offset, seen = _SEEN.get(key, (st.st_ino, 0, set()))
    if inode != st.st_ino or offset > st.st_size:
        offset, seen = 0, set()
    fh.seek(offset)
    data = fh.read()
    end = data.rfind(b"\n") + 1
    for raw in data[:end].splitlines():
        try:
            seen.add(str(json.loads(raw)["key_sha256"]))
        except (ValueError, KeyError, TypeError):
            continue  # a torn line, or not one of ours
    _SEEN[key] = (st.st_ino, offset + end, seen)
    return seen
