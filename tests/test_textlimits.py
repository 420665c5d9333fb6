"""UTF-8 byte limits: never over the limit, never a broken character, nothing lost on split."""

from __future__ import annotations

import random

import pytest
from hypothesis import example, given, seed, settings
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


def check_split(text: str, limit: int) -> None:
    """The split property: no part over the limit, nothing lost but cut whitespace."""
    parts = split_bytes(text, limit)
    assert all(utf8_len(p) <= limit for p in parts), [utf8_len(p) for p in parts]
    # Nothing lost except the line breaks/whitespace a cut consumed.
    assert _squash("".join(parts)) == _squash(text)


def test_split_cuts_a_cluster_bigger_than_the_limit() -> None:
    # The CI failure: U+0080 (2 bytes) + combining U+0859 (3 bytes) = one 5-byte cluster.
    # The byte limit is the service's hard rule, so the cluster is cut between code points.
    assert split_bytes("\x80\u0859", 4) == ["\x80", "\u0859"]
    assert [utf8_len(p) for p in split_bytes("a" + "\u0301" * 20, 4)] == [3, 4, 4, 4, 4, 4, 4, 4, 4, 4, 2]


# Fixed, once-random seeds: each CI run explores the same 50 x 2,000 examples, so a failure
# reproduces, while together they cover far more ground than hypothesis's default 100.
SPLIT_SEEDS = [random.Random(20261203 + i).getrandbits(32) for i in range(50)]


@pytest.mark.parametrize("seed_value", SPLIT_SEEDS)
def test_split_property(seed_value: int) -> None:
    @seed(seed_value)
    @settings(max_examples=2000, derandomize=False, database=None, deadline=None)
    @given(texts, st.integers(min_value=4, max_value=300))
    @example("\x80\u0859", 4)
    def prop(text: str, limit: int) -> None:
        check_split(text, limit)

    prop()


@given(texts, st.integers(min_value=30, max_value=300))
def test_split_numbered_property(text: str, limit: int) -> None:
    # 30 bytes leave room for " (1600/1600)" and a 4-byte character (400 characters at most).
    parts = split_bytes(text, limit, number=True)
    assert all(utf8_len(p) <= limit for p in parts)
    n = len(parts)
    assert all(p.endswith(f" ({i}/{n})") for i, p in enumerate(parts, 1)) or n == 1


def test_split_numbered_refuses_a_limit_without_room() -> None:
    with pytest.raises(ValueError, match="too small"):
        split_bytes("村" * 10, 9, number=True)


def test_split_numbered() -> None:
    text = "村" * 1000
    parts = split_bytes(text, 500, number=True)
    n = len(parts)
    assert n > 1
    for i, p in enumerate(parts, 1):
        assert p.endswith(f" ({i}/{n})")
        assert utf8_len(p) <= 500
    assert "".join(p.rsplit(" (", 1)[0] for p in parts) == text
