"""No data is not "nothing reported": a case without an alive-report source or without
telemetry (docs/localisation.md, "No data")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from outage_sentinel.localise import Evidence, LocaliserParams, LocateResult, localise
from outage_sentinel.locate import CaseError, evidence_of
from outage_sentinel.topology import Topology
from tests.localise_fixture import build

SPLIT = frozenset({"T1", "T3"})  # under F1 and F2: R1, or two fuses, or B1 ...
OTHER_ALIVE_PRIOR = LocaliserParams(alive_report_a=5.0, alive_report_b=1.0)


@pytest.fixture(scope="module")
def topo() -> Topology:
    return build()


def answer(result: LocateResult) -> list[tuple[tuple[str, ...], float]]:
    return [(h.devices, round(h.probability, 9)) for h in result.hypotheses]


def test_without_an_alive_source_the_alive_model_says_nothing(topo: Topology) -> None:
    # no alive report at all: the alive-report rate cannot matter, whatever its prior
    plain = localise(topo, Evidence(dead=SPLIT))
    assert answer(plain) == answer(localise(topo, Evidence(dead=SPLIT), OTHER_ALIVE_PRIOR))


def test_a_watching_alive_source_that_heard_nothing_is_evidence(topo: Topology) -> None:
    # an alive source that was there and heard from nobody: every area energised stayed
    # silent, which a high alive-report rate makes unlikely (a bigger dead region likelier)
    watched = Evidence(dead=SPLIT, alive_observed=True)
    default = localise(topo, watched)
    eager = localise(topo, watched, OTHER_ALIVE_PRIOR)
    assert answer(default) != answer(eager)
    assert answer(default) != answer(localise(topo, Evidence(dead=SPLIT)))


def r1_probability(result: LocateResult) -> float:
    return sum(h.probability for h in result.hypotheses if h.devices == ("R1",))


def test_telemetry_that_did_not_report_a_recloser_weighs_against_it(topo: Topology) -> None:
    dead = {"T1", "T2", "T3", "T4"}
    blind = localise(topo, Evidence(dead=dead))
    watched = localise(topo, Evidence(dead=dead, open_observed=True))
    assert blind.hypotheses[0].devices == ("R1",)
    assert r1_probability(watched) < r1_probability(blind)
    untelemetered = LocaliserParams(telemetered_kinds=())
    assert answer(localise(topo, Evidence(dead=dead, open_observed=True), untelemetered)) == \
        answer(blind)


def test_a_recloser_reported_open_is_not_penalised_by_its_own_telemetry(topo: Topology) -> None:
    dead = {"T1", "T2", "T3", "T4"}
    reported = localise(topo, Evidence(dead=dead, open_devices={"R1"}))
    assert reported.hypotheses[0].devices == ("R1",)
    assert r1_probability(reported) > r1_probability(localise(topo, Evidence(dead=dead)))


@pytest.mark.parametrize("key", ["alive_observed", "open_observed"])
def test_locate_cases_carry_the_observed_flags(key: str) -> None:
    ev = evidence_of({"id": "x", "dead": ["T1"], key: True}, 1)
    assert getattr(ev, key) is True
    with pytest.raises(CaseError, match=key):
        evidence_of({"id": "x", "dead": ["T1"], key: "yes"}, 3)


def test_locate_case_without_the_flags_infers_them(tmp_path: Path) -> None:
    ev = evidence_of(json.loads('{"id": "x", "dead": ["T1"]}'), 1)
    assert ev.alive_observed is None and ev.open_observed is None


def test_config_carries_the_new_model_keys() -> None:
    from outage_sentinel.config import LocalisationConfig

    params = LocalisationConfig(telemetered_kinds=["breaker"], quiet_call_weight=0.2,
                                storm_weight=0.1).to_params()
    assert params.telemetered_kinds == ("breaker",)
    assert (params.quiet_call_weight, params.storm_weight) == (0.2, 0.1)
    with pytest.raises(ValueError, match="telemetered_kinds"):
        LocalisationConfig(telemetered_kinds=["transformer"])  # type: ignore[list-item]
