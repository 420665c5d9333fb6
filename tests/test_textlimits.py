"""UTF-8 byte limits: never over the limit, never a broken character, nothing lost on split."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from outage_sentinel.textlimits import TRIM_MARK, split_bytes, trim_bytes, utf8_len

texts = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x1FAFF, exclude_categories=["Cs"]),
    max_size=400,
)


def test_trim_keeps_short_text() -> None:
    assert trim_bytes("停电", 6) == "停电"


def test_trim_counts_bytes_not_characters() -> None:
    out = trim_bytes("停电通知张家村", 10)
    assert utf8_len(out) <= 10
    assert out == "停电" + TRIM_MARK  # 6 bytes + 3-byte mark; a third 3-byte char won't fit


def test_trim_keeps_combining_mark_with_base() -> None:
    text = "abce\u0301f"  # e + combining acute
    out = trim_bytes(text, 4 + 1 + len(TRIM_MARK.encode()))
    assert "\u0301" not in out or "e\u0301" in out


@given(texts, st.integers(min_value=3, max_value=300))
def test_trim_property(text: str, limit: int) -> None:
    out = trim_bytes(text, limit)
    assert utf8_len(out) <= limit
    out.encode("utf-8")  # valid
    if utf8_len(text) <= limit:
        assert out == text
    else:
        assert out.endswith(TRIM_MARK)
        assert text.startswith(out[: -len(TRIM_MARK)].rstrip())


def test_split_prefers_line_breaks() -> None:
    text = "\n".join(f"{i}号台区 张家村 停电" for i in range(40))
    parts = split_bytes(text, 200)
    assert all(utf8_len(p) <= 200 for p in parts)
    assert all(p.endswith("停电") for p in parts)


def _squash(s: str) -> str:
    return "".join(s.split())


@given(texts, st.integers(min_value=4, max_value=300))
def test_split_property(text: str, limit: int) -> None:
    parts = split_bytes(text, limit)
    assert all(utf8_len(p) <= limit for p in parts)
    # Nothing lost except the line breaks/whitespace a cut consumed.
    assert _squash("".join(parts)) == _squash(text)


def test_split_numbered() -> None:
    text = "村" * 1000
    parts = split_bytes(text, 500, number=True)
    n = len(parts)
    assert n > 1
    for i, p in enumerate(parts, 1):
        assert p.endswith(f" ({i}/{n})")
        assert utf8_len(p) <= 500
    assert "".join(p.rsplit(" (", 1)[0] for p in parts) == text
