"""Fit texts into the services' UTF-8 byte limits without breaking characters.

Pure functions. The services count *bytes* of UTF-8 (WeCom text 2048, markdown 4096, Feishu a
20 KB body), and a Chinese character is 3 bytes, so ``len(text)`` is the wrong measure: a
1000-character notice is 3000 bytes. Cutting the encoded bytes at an arbitrary offset would
leave half a character (which WeCom rejects as invalid UTF-8), so every cut here lands on a
code-point boundary, and a combining mark or variation selector stays with its base character.
"""

from __future__ import annotations

import unicodedata

#: Appended to a trimmed text so the reader knows something is missing.
TRIM_MARK = "…"


def utf8_len(text: str) -> int:
    """Length of ``text`` encoded as UTF-8, in bytes."""
    return len(text.encode("utf-8"))


def _is_joiner(ch: str) -> bool:
    """True for code points that belong to the character before them.

    Cutting between a base and one of these would change what the reader sees (an accent or
    emoji modifier moved to the next part), so cuts are moved back before the base.
    """
    if ch in ("\u200d", "\ufe0e", "\ufe0f"):  # zero-width joiner, variation selectors
        return True
    if "\U0001f3fb" <= ch <= "\U0001f3ff":  # emoji skin-tone modifiers
        return True
    return unicodedata.combining(ch) != 0


def _code_points_within(text: str, limit: int) -> int:
    """Number of leading code points of ``text`` whose UTF-8 form fits in ``limit`` bytes,
    ignoring joiners (the byte limit is all that counts here)."""
    if limit <= 0:
        return 0
    encoded = text.encode("utf-8")
    if len(encoded) <= limit:
        return len(text)
    # Decoding a cut prefix with errors="ignore" drops the partial trailing character.
    return len(encoded[:limit].decode("utf-8", errors="ignore"))


def _prefix_within(text: str, limit: int) -> int:
    """Number of leading code points of ``text`` whose UTF-8 form fits in ``limit`` bytes,
    cut before a base character rather than between it and its combining marks / joiners.

    Returns 0 when the first cluster (a base and its joiners) does not fit as a whole.
    """
    n = _code_points_within(text, limit)
    while 0 < n < len(text) and _is_joiner(text[n]):
        n -= 1
    return n


def trim_bytes(text: str, limit: int, mark: str = TRIM_MARK) -> str:
    """Return ``text`` if it fits in ``limit`` bytes, else a prefix plus ``mark`` that fits.

    >>> trim_bytes("停电通知", 7)
    '停电…'
    """
    if limit < 0:
        raise ValueError("limit must be >= 0")
    if utf8_len(text) <= limit:
        return text
    room = limit - utf8_len(mark)
    if room <= 0:
        # Not even the mark fits: return as much of the mark as fits (never over the limit).
        return mark[: _prefix_within(mark, limit)]
    return text[: _prefix_within(text, room)].rstrip() + mark


def split_bytes(text: str, limit: int, *, number: bool = False) -> list[str]:
    """Split ``text`` into parts of at most ``limit`` bytes each.

    Cuts prefer a line break, then a space or Chinese/Latin punctuation, and only then fall
    back to a plain character boundary, so a notice splits between lines rather than inside a
    village name. With ``number=True`` each part ends with `` (i/n)`` (counted in the limit),
    so the reader sees that more parts exist. Always returns at least one part.
    """
    if limit <= 0:
        raise ValueError("limit must be > 0")
    if utf8_len(text) <= limit:
        return [text]
    if not number:
        return _split(text, limit)
    # The suffix length depends on the number of parts, which depends on the suffix length;
    # iterate until stable (a couple of rounds at most in practice).
    parts_guess = 2
    for _ in range(8):
        suffix_room = utf8_len(f" ({parts_guess}/{parts_guess})")
        # Below 4 bytes of room a 4-byte character could not fit in a part at all.
        if limit - suffix_room < 4:
            raise ValueError(f"limit {limit} is too small to number the parts")
        parts = _split(text, limit - suffix_room)
        if len(parts) <= parts_guess and len(str(len(parts))) == len(str(parts_guess)):
            n = len(parts)
            return [f"{p} ({i}/{n})" for i, p in enumerate(parts, 1)]
        parts_guess = len(parts)
    n = len(parts)  # pragma: no cover - only reached for pathological inputs
    return [f"{p} ({i}/{n})" for i, p in enumerate(parts, 1)]  # pragma: no cover


_SOFT_BREAKS = (" ", "\t", "，", "。", "；", "、", ",", ";", ".")


def _split(text: str, limit: int) -> list[str]:
    parts: list[str] = []
    rest = text
    while utf8_len(rest) > limit:
        hard = _prefix_within(rest, limit)
        if hard == 0:
            # The first cluster (a base with its combining marks / joiners, e.g. "\x80\u0859"
            # = 5 bytes) is bigger than the limit. The limit is the service's hard rule, so the
            # cluster is cut between its code points: as many as fit, at least one so the loop
            # progresses. (One code point is at most 4 bytes, so a part can exceed the limit
            # only when the limit itself is below 4 bytes.)
            hard = max(_code_points_within(rest, limit), 1)
            parts.append(rest[:hard])
            rest = rest[hard:]
            continue
        window = rest[:hard]
        cut = window.rfind("\n") + 1
        # Only accept a break that keeps the part reasonably full, else parts get tiny; and
        # never a cut at 0, which would make no progress.
        floor = max(hard // 2, 1)
        if cut < floor:
            soft = max(window.rfind(ch) for ch in _SOFT_BREAKS) + 1
            cut = soft if soft >= floor else hard
        parts.append(rest[:cut].rstrip("\n"))
        rest = rest[cut:].lstrip("\n")
    if rest or not parts:
        parts.append(rest)
    return parts
