"""A step's details on the incident page: distances rounded as the crew's texts say them, a
crew's arrival position as the field page kept it (rounded to 0.1° it was 11 km off)."""

from __future__ import annotations

from outage_sentinel.board.views import step_details


def test_coordinates_keep_their_precision_and_distances_are_rounded() -> None:
    line = step_details({"crew": "CR1", "lat": 34.256789, "lon": 117.189312,
                         "distance_km": 6.740148120322549})
    assert "lat: 34.256789" in line and "lon: 117.189312" in line
    assert "distance_km: 6.7" in line and "6.74" not in line
