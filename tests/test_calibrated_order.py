"""A calibration map lowers the probability of the answer given; the alternatives take the
rest, but none is ever stated above the fault point named (crews read "另一可能：…（可能性约45%）"
under a fault point "可能性约30%")."""

from __future__ import annotations

from outage_sentinel.localise import Evidence, LocaliserParams, localise
from tests.conftest import build_grid

GRID = build_grid()
#: An outage-system record for T1 alone: FU1, R1 and B1 all explain it, FU1 the most likely.
LONE = Evidence(dead=frozenset({"T1"}))


def test_no_alternative_is_stated_above_the_answer_after_a_map() -> None:
    raw = localise(GRID, LONE).hypotheses
    assert [h.devices for h in raw[:3]] == [("FU1",), ("R1",), ("B1",)]
    steep = ((0.0, 0.0), (0.8, 0.4), (1.0, 0.6))  # a map a history of wrong answers gives
    mapped = localise(GRID, LONE, LocaliserParams(calibration=steep)).hypotheses
    assert mapped[0].devices == ("FU1",)
    top = mapped[0].probability
    assert top < raw[0].probability
    assert all(h.probability <= top for h in mapped[1:])
    assert sum(h.probability for h in mapped) <= 1.0 + 1e-9
    # The order of the others is the model's: their shares of the rest are scaled alike.
    assert [h.devices for h in mapped[:3]] == [h.devices for h in raw[:3]]


def test_a_gentle_map_scales_the_alternatives_as_before() -> None:
    raw = localise(GRID, LONE).hypotheses
    gentle = ((0.0, 0.0), (1.0, 0.9))
    mapped = localise(GRID, LONE, LocaliserParams(calibration=gentle)).hypotheses
    scale = (1.0 - mapped[0].probability) / (1.0 - raw[0].probability)
    for before, after in zip(raw[1:], mapped[1:], strict=True):
        assert after.probability == before.probability * scale
