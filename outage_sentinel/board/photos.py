"""Crews' photos: checked, re-encoded and kept under the state directory.

An upload must be an image Pillow can read (JPEG, PNG, WebP, …), at most :data:`MAX_BYTES`
and :data:`MAX_PIXELS`. It is decoded, turned upright by its EXIF orientation, scaled to at
most :data:`MAX_SIDE` pixels and written again as a plain JPEG: nothing of the original file
survives but its pixels — no EXIF, no GPS position, no embedded payload. Photos older than the
retention period are deleted.
"""

from __future__ import annotations

import io
import re
import time
import uuid
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

MAX_BYTES = 10 * 1024 * 1024
MAX_PIXELS = 40_000_000
MAX_SIDE = 2000
#: The board's thumbnails: at most this many pixels a side (made once, kept beside the photo).
THUMB_SIDE = 320
NAME = re.compile(r"^[0-9a-f]{32}\.jpg$")


class PhotoError(ValueError):
    """An upload that is not an acceptable image (the message says why)."""


def store_photo(root: Path, incident_id: str, data: bytes) -> str:
    """Keep ``data`` as a clean JPEG of ``incident_id``; returns its file name."""
    if not data:
        raise PhotoError("an empty upload")
    if len(data) > MAX_BYTES:
        raise PhotoError(f"a photo may be {MAX_BYTES // (1024 * 1024)} MB at most")
    try:
        with Image.open(io.BytesIO(data)) as probe:
            if probe.width * probe.height > MAX_PIXELS:
                raise PhotoError("the photo has too many pixels")
            probe.verify()
        with Image.open(io.BytesIO(data)) as img:
            clean = ImageOps.exif_transpose(img).convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError):
        raise PhotoError("not an image this page can take (JPEG, PNG, WebP)") from None
    clean.thumbnail((MAX_SIDE, MAX_SIDE))
    folder = root / safe(incident_id)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{uuid.uuid4().hex}.jpg"
    clean.save(folder / name, "JPEG", quality=85)  # no exif= argument: none is written
    return name


def photo_path(root: Path, incident_id: str, name: str) -> Path | None:
    """The file of a kept photo, or None (a name never leaves the incident's folder)."""
    if not NAME.match(name):
        return None
    path = root / safe(incident_id) / name
    return path if path.is_file() else None


def thumbnail(root: Path, incident_id: str, name: str) -> Path | None:
    """A small copy of a kept photo (``<name>.thumb.jpg``, deleted with it by :func:`prune`),
    made on first use; None when there is no such photo."""
    path = photo_path(root, incident_id, name)
    if path is None:
        return None
    thumb = path.with_suffix(".thumb.jpg")
    if not thumb.is_file():
        with Image.open(path) as img:
            small = img.convert("RGB")
            small.thumbnail((THUMB_SIDE, THUMB_SIDE))
            partial = thumb.with_suffix(".part")
            small.save(partial, "JPEG", quality=80)
            partial.replace(thumb)
    return thumb


def photos_of(root: Path, incident_id: str) -> list[str]:
    folder = root / safe(incident_id)
    if not folder.is_dir():
        return []
    files = sorted(folder.glob("*.jpg"), key=lambda p: p.stat().st_mtime)
    return [p.name for p in files if NAME.match(p.name)]


def prune(root: Path, keep_days: float, now: float | None = None) -> int:
    """Delete photos older than ``keep_days``; returns how many went."""
    cutoff = (now if now is not None else time.time()) - keep_days * 86400
    gone = 0
    for path in root.glob("*/*.jpg") if root.is_dir() else ():
        if path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)
            gone += 1
    return gone


def safe(incident_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", incident_id)[:60] or "_"
