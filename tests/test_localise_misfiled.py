"""Evidence filed under the area beside the dead region (``misfiled_rate``), and its fit.

A county whose GIS registers customers or meters under the neighbouring transformer sees a
breaker reported open, its own area silent, and the area beside it reporting dead and calling.
With ``misfiled_rate`` 0 (no such errors, the default) that is the neighbour's fault and a
false open report; with the county's rate, the breaker its telemetry names.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from outage_sentinel.fitting import beside_region, fit, solved_case
from outage_sentinel.localise import Evidence, LocaliserParams, localise
from outage_sentinel.topology import Topology, topology_from_records

N = 8


@pytest.fixture(scope="module")
def street() -> Topology:
    """Source S, feeder breaker B0, a bus J, and N breakers TB1..TBN each before its area."""
    edges = [("S", "B0"), ("B0", "J")]
    kinds = {"S": "source", "B0": "breaker", "J": "junction"}
    for k in range(1, N + 1):
        edges += [("J", f"TB{k}"), (f"TB{k}", f"T{k}")]
        kinds[f"TB{k}"] = "breaker"
    names = sorted({a for e in edges for a in e})
    nodes = [{"id": n, "kind": kinds.get(n, "transformer"), "name": n, "feeder": "FD",
              "normally_open": 0, "village": "V" if kinds.get(n) is None else "",
              "customers": 40 if kinds.get(n) is None else 0, "lat": "", "lon": ""}
             for n in names]
    villages = [{"id": "V", "name": "V", "township": "t", "grid": "g", "area_type": "urban"}]
    return topology_from_records(nodes, edges, villages)


def in_order(topo: Topology) -> list[str]:
    return [topo.ids[i] for i in topo.transformer_by_tin]


def test_the_open_breaker_wins_when_the_county_misfiles(street: Topology) -> None:
    areas = in_order(street)
    own, beside = areas[2], areas[3]  # the breaker's area sent nothing; the next one did
    breaker = "TB" + own[1:]
    ev = Evidence(dead={beside}, calls={beside: 7}, open_devices={breaker},
                  alive={areas[0], areas[6]})
    assert localise(street, ev).hypotheses[0].devices == ("TB" + beside[1:],)
    top = localise(street, ev, LocaliserParams(misfiled_rate=0.05)).hypotheses[0]
    assert top.devices == (breaker,)
    assert top.transformers == (own,)


def test_an_area_two_away_is_not_explained_by_misfiling(street: Topology) -> None:
    areas = in_order(street)
    far = areas[5]
    ev = Evidence(dead={far}, calls={far: 7}, open_devices={"TB" + areas[2][1:]},
                  alive={areas[0], areas[6]})
    top = localise(street, ev, LocaliserParams(misfiled_rate=0.05)).hypotheses[0]
    assert top.devices == ("TB" + far[1:],)


def history(topo: Topology, misfiled: float, cases: int, seed: int) -> list:
    """Close-outs of single breaker faults: the area reported dead (80 %) and calling;
    with probability ``misfiled`` its evidence is filed under the next area; one false dead
    report in ten cases elsewhere."""
    rng = random.Random(seed)
    areas = in_order(topo)
    out = []
    for _ in range(cases):
        k = rng.randrange(len(areas))
        area = areas[k]
        filed = areas[(k + 1) % len(areas)] if rng.random() < misfiled else area
        dead = {filed} if rng.random() < 0.8 else set()
        calls = {filed: rng.randint(1, 8)}
        if rng.random() < 0.1:
            dead.add(rng.choice(areas))
        alive = {a for a in areas if a != area and rng.random() < 0.3}
        ev = Evidence(dead=dead, calls=calls, alive=alive)
        out.append(solved_case(topo, ev, ["TB" + area[1:]], "case"))
    return out


def test_the_fit_learns_the_rate_from_close_outs(street: Topology) -> None:
    learnt = fit(street, history(street, 0.3, 400, 1), LocaliserParams()).params
    assert 0.1 < learnt.misfiled_rate < 0.5
    clean = fit(street, history(street, 0.0, 400, 2), LocaliserParams()).params
    assert clean.misfiled_rate == 0.0


def test_the_neighbours_of_a_region_are_outside_it_and_on_its_feeder(street: Topology) -> None:
    areas = in_order(street)
    assert beside_region(street, ["TB" + areas[3][1:]]) == {areas[2], areas[4]}
    assert beside_region(street, ["TB" + areas[0][1:]]) == {areas[1]}
    assert beside_region(street, ["B0"]) == set()


def test_a_parameters_file_sets_the_rate_and_refuses_a_bad_one(tmp_path: Path) -> None:
    from outage_sentinel.config import ConfigError, load_localisation

    good = tmp_path / "params.yaml"
    good.write_text("misfiled_rate: 0.04\n")
    assert load_localisation(good).to_params().misfiled_rate == 0.04
    bad = tmp_path / "bad.yaml"
    bad.write_text("misfiled_rate: 0.7\n")
    with pytest.raises(ConfigError) as err:
        load_localisation(bad)
    assert "misfiled_rate" in str(err.value) and "bad.yaml" in str(err.value)
