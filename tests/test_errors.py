"""Exception chains and Retry-After, read once for every channel and source."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from outage_sentinel.errors import exception_chain, parse_retry_after

NOW = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)


class Wrapper(Exception):
    def __init__(self, message: str, reason: BaseException | None = None) -> None:
        super().__init__(message)
        self.reason = reason


def test_the_chain_follows_args_causes_contexts_and_reasons_each_once() -> None:
    refused = ConnectionRefusedError(111, "Connection refused")
    pool = Wrapper("pool exhausted", reason=refused)
    outer = RuntimeError(pool)
    try:
        try:
            raise ValueError("inner")
        except ValueError as inner:
            raise outer from inner
    except RuntimeError as exc:
        chain = list(exception_chain(exc))
    assert chain[0] is outer and pool in chain and refused in chain
    assert any(isinstance(e, ValueError) for e in chain)
    assert len(chain) == len({id(e) for e in chain})


def test_a_cyclic_or_endless_chain_is_bounded() -> None:
    a, b = Exception("a"), Exception("b")
    a.__cause__, b.__cause__ = b, a
    assert [str(e) for e in exception_chain(a)] == ["a", "b"]
    deep: BaseException = Exception("0")
    for i in range(1, 1000):
        deep = Exception(str(i), deep)
    assert len(list(exception_chain(deep, limit=32))) == 32


@pytest.mark.parametrize(("value", "seconds"), [
    (None, None), ("", None), ("soon", None), ("nan", None),
    ("0", 0.0), ("30", 30.0), ("2.5", 2.5), ("-5", 0.0), ("99999999", 3600.0), ("inf", 3600.0),
    ("Thu, 03 Dec 2026 08:02:00 GMT", 120.0),
    ("Thu, 03 Dec 2026 07:00:00 GMT", 0.0),  # in the past: now
    ("Fri, 01 Jan 2100 00:00:00 GMT", 3600.0),  # capped
])
def test_retry_after_in_seconds_or_as_a_date_and_capped(value: str | None,
                                                        seconds: float | None) -> None:
    assert parse_retry_after(value, NOW) == seconds
