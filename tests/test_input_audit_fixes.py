"""Reproducers of the operator-input audit (bundle files and config keys an operator gets
wrong): each bad input is refused, or warned about, naming its file and row or its key path,
instead of loading silently and misbehaving at outage time."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest
import yaml

from outage_sentinel.config import ConfigError, load_config, parse_config
from outage_sentinel.localise import Hypothesis
from outage_sentinel.priority import (
    SPECIAL_CARE_TAGS,
    TAG_LABELS,
    affected_customers,
    special_care_customers,
)
from outage_sentinel.topology import (
    CARE_TAGS,
    KNOWN_TAGS,
    TopologyError,
    load_bundle,
    topology_from_records,
)
from outage_sentinel.topology.bundle import TopologyWarning
from tests.conftest import REPO

DEMO = REPO / "topology"


def demo_copy(tmp_path: Path) -> Path:
    bundle = tmp_path / "bundle"
    shutil.copytree(DEMO, bundle)
    return bundle


def set_field(bundle: Path, name: str, row_id: str, column: str, value: str) -> int:
    """Set ``column`` of the row whose first field is ``row_id``; returns its line number."""
    path = bundle / name
    lines = path.read_text(encoding="utf-8").split("\n")
    k = lines[0].split(",").index(column)
    for i, line in enumerate(lines):
        fields = line.split(",")
        if fields[0] == row_id:
            fields[k] = value
            lines[i] = ",".join(fields)
            path.write_text("\n".join(lines), encoding="utf-8")
            return i + 1
    raise AssertionError(row_id)


def problems_of(bundle: Path) -> list[str]:
    with pytest.raises(TopologyError) as info:
        load_bundle(bundle)
    return [str(p) for p in info.value.problems]


def loaded_quietly(bundle: Path, **kwargs: object):  # type: ignore[no-untyped-def]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TopologyWarning)
        topology = load_bundle(bundle, **kwargs)  # type: ignore[arg-type]
    return topology, [str(w.message) for w in caught if w.category is TopologyWarning]


# -- 1. care tags ----------------------------------------------------------------------------


@pytest.mark.parametrize("written", ["life_support；elderly_alone", "life-support",
                                     "Life_Support", "elderly_alone、LIFE_SUPPORT",
                                     "life_support，elderly_alone"])
def test_a_care_tag_written_another_way_keeps_the_household_on_the_list(
        tmp_path: Path, written: str) -> None:
    bundle = demo_copy(tmp_path)
    set_field(bundle, "customers.csv", "C00033", "tags", f'"{written}"')
    topology, notes = loaded_quietly(bundle)
    (c33,) = [c for c in topology.customers if c.id == "C00033"]
    assert "life_support" in c33.tags
    care = special_care_customers(affected_customers(topology, ["T-MJ02-003"]))
    assert "C00033" in [c.id for c in care]
    assert not [n for n in notes if "C00033" in n]


def test_an_unknown_tag_is_warned_about_with_file_row_and_tag(tmp_path: Path) -> None:
    bundle = demo_copy(tmp_path)
    row = set_field(bundle, "customers.csv", "C00033", "tags", "life_suport")
    _, notes = loaded_quietly(bundle)
    (note,) = [n for n in notes if "life_suport" in n]
    assert note.startswith(f"customers.csv:{row} (C00033): ") and "'life_suport'" in note


def test_known_and_configured_tags_are_not_warned_about(tmp_path: Path) -> None:
    bundle = demo_copy(tmp_path)
    set_field(bundle, "customers.csv", "C00033", "tags", "life_support;pump_station")
    _, notes = loaded_quietly(bundle)
    assert [n for n in notes if "pump_station" in n]
    _, notes = loaded_quietly(bundle, tags=["Pump-Station"])
    assert not [n for n in notes if "tag" in n]  # the demo's own tags are all known


def test_one_set_of_care_tags_is_shared() -> None:
    assert tuple(SPECIAL_CARE_TAGS) == CARE_TAGS == ("life_support", "elderly_alone")
    assert set(TAG_LABELS["zh"]) == set(TAG_LABELS["en"]) == set(KNOWN_TAGS)


def test_the_localiser_counts_only_the_shared_care_tags() -> None:
    with pytest.warns(TopologyWarning, match="customers.csv:2 \\(C1\\): tag 'medical'"):
        topology = topology_from_records(
            [{"id": "S", "kind": "source", "feeder": "F"},
             {"id": "T", "kind": "transformer", "feeder": "F", "village": "V", "customers": 3}],
            [("S", "T")], villages=[{"id": "V", "area_type": "rural"}],
            customers=[{"id": "C1", "transformer": "T", "tags": "medical"},
                       {"id": "C2", "transformer": "T", "tags": "Life-Support"}])
    hypothesis = Hypothesis(devices=("S",), probability=1.0, _topology=topology)
    assert hypothesis.important_customers == ("C2",)


# -- 2. a repeated header column -------------------------------------------------------------


def test_a_repeated_header_column_is_refused(tmp_path: Path) -> None:
    bundle = demo_copy(tmp_path)
    path = bundle / "nodes.csv"
    path.write_text(path.read_text(encoding="utf-8").replace("capacity_kva", "customers", 1),
                    encoding="utf-8")
    assert "nodes.csv:1: header repeats column 'customers' (columns 7 and 12)" in \
        problems_of(bundle)


def test_a_repeated_header_column_in_a_quoted_file_is_refused(tmp_path: Path) -> None:
    bundle = demo_copy(tmp_path)
    path = bundle / "liaisons.csv"
    lines = path.read_text(encoding="utf-8").split("\n")
    lines = [lines[0] + ",phone"] + [f'{line},"0316-1234567"' if line else line
                                     for line in lines[1:]]
    path.write_text("\n".join(lines), encoding="utf-8")
    assert "liaisons.csv:1: header repeats column 'phone' (columns 4 and 8)" in \
        problems_of(bundle)


# -- 3. coordinates of crews and villages ----------------------------------------------------


def test_a_crew_base_with_lat_and_lon_swapped_is_refused(tmp_path: Path) -> None:
    bundle = demo_copy(tmp_path)
    row = set_field(bundle, "crews.csv", "CR03", "lat", "115.653133")
    set_field(bundle, "crews.csv", "CR03", "lon", "36.575918")
    assert (f"crews.csv:{row} (CR03): lat must be a number from -90 to 90, got '115.653133'"
            in problems_of(bundle))


def test_a_village_off_the_earth_is_refused(tmp_path: Path) -> None:
    bundle = demo_copy(tmp_path)
    row = set_field(bundle, "villages.csv", "V001", "lon", "inf")
    assert (f"villages.csv:{row} (V001): lon must be a number from -180 to 180, got 'inf'"
            in problems_of(bundle))


# -- 8. customers' phones --------------------------------------------------------------------


@pytest.mark.parametrize("phone", ["1.38000060E+10", "1380000779", "138000077991"])
def test_a_customer_phone_that_is_no_number_is_warned_about(tmp_path: Path, phone: str) -> None:
    """As a liaison's phone, a customer's does not stop the bundle loading (the household must
    stay on the special-care list), but ``check`` and the log name the file and the row."""
    bundle = demo_copy(tmp_path)
    row = set_field(bundle, "customers.csv", "C00029", "phone", phone)
    _, notes = loaded_quietly(bundle)
    (note,) = [n for n in notes if "phone" in n]
    assert note.startswith(f"customers.csv:{row} (C00029): phone ")
    assert "not a phone number" in note and "more customer" not in note


def test_every_wrong_customer_phone_is_counted_in_one_warning(tmp_path: Path) -> None:
    bundle = demo_copy(tmp_path)
    row = set_field(bundle, "customers.csv", "C00029", "phone", "1.38000060E+10")
    later = set_field(bundle, "customers.csv", "C00032", "phone", "1380000779")
    _, notes = loaded_quietly(bundle)
    (note,) = [n for n in notes if "phone" in n]
    assert note.startswith(f"customers.csv:{row} (C00029): phone '1.38000060E+10'")
    assert "scientific notation" in note
    assert f"so are the phones of 1 more customer(s) (rows {later})" in note


@pytest.mark.parametrize("phone", ["", "13800006062", "+8613800006062", "0316-1234567",
                                   "03161234567", "010-12345678"])
def test_mobile_and_landline_customer_phones_load(tmp_path: Path, phone: str) -> None:
    bundle = demo_copy(tmp_path)
    set_field(bundle, "customers.csv", "C00029", "phone", phone)
    _, notes = loaded_quietly(bundle)
    assert not [n for n in notes if "phone" in n]


# -- 9. the feeder column --------------------------------------------------------------------


def test_a_node_labelled_with_another_feeder_is_refused(tmp_path: Path) -> None:
    bundle = demo_copy(tmp_path)
    row = set_field(bundle, "nodes.csv", "T-CG01-001", "feeder", "CG09X")
    crew_row = set_field(bundle, "crews.csv", "CR02", "feeders", "CG09X")
    found = problems_of(bundle)
    assert [p for p in found if p.startswith(f"nodes.csv:{row} (T-CG01-001): feeder 'CG09X'")
            and "S-CG01" in p and "'CG01'" in p]
    assert f"crews.csv:{crew_row} (CR02): unknown feeder 'CG09X'" in found


def test_a_source_needs_a_feeder(tmp_path: Path) -> None:
    bundle = demo_copy(tmp_path)
    row = set_field(bundle, "nodes.csv", "S-CG01", "feeder", "")
    found = problems_of(bundle)
    assert [p for p in found if p.startswith(f"nodes.csv:{row} (S-CG01): ")
            and "feeder" in p]


def test_a_tie_switch_naming_no_source_feeder_is_refused(tmp_path: Path) -> None:
    bundle = demo_copy(tmp_path)
    row = set_field(bundle, "nodes.csv", "TIE-01", "feeder", "CG99")
    assert [p for p in problems_of(bundle)
            if p.startswith(f"nodes.csv:{row} (TIE-01): feeder 'CG99'")]


# -- 10. a file in another encoding ----------------------------------------------------------


def test_a_gbk_file_gives_line_column_and_encoding_and_the_rest_is_checked(
        tmp_path: Path) -> None:
    bundle = demo_copy(tmp_path)
    path = bundle / "liaisons.csv"
    path.write_bytes(path.read_text(encoding="utf-8").encode("gbk"))
    crew_row = set_field(bundle, "crews.csv", "CR01", "feeders", "CG01;NOPE")
    found = problems_of(bundle)
    (gbk,) = [p for p in found if p.startswith("liaisons.csv")]
    # 卢霞 in GBK happen to be valid UTF-8 bytes (¬ϼ): the decoder stops at 兰, column 8
    assert gbk.startswith("liaisons.csv:2: column 8: not UTF-8 (byte 0xc0)")
    assert "save as UTF-8 (the file looks like GBK)" in gbk
    assert f"crews.csv:{crew_row} (CR01): unknown feeder 'NOPE'" in found


def test_a_utf16_file_is_named_as_such(tmp_path: Path) -> None:
    bundle = demo_copy(tmp_path)
    path = bundle / "villages.csv"
    path.write_bytes(path.read_text(encoding="utf-8").encode("utf-16"))
    found = problems_of(bundle)
    assert [p for p in found if p.startswith("villages.csv:1: column 1: not UTF-8")
            and "the file looks like UTF-16" in p]
    # what depends on villages.csv is not checked against a missing file
    assert not [p for p in found if p.startswith("liaisons.csv")]


# -- config ----------------------------------------------------------------------------------

MINIMAL = """\
state_dir: state
topology: topo
sources:
  - name: demo
    type: replay
    scenario: scenarios/demo.jsonl
channels:
  sink:
    type: file
    path: out/notices.jsonl
"""


def config_problems(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> list[str]:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path, env=env or {})
    return info.value.problems


def test_quiet_hours_that_never_end_are_refused(tmp_path: Path) -> None:
    (line,) = config_problems(tmp_path, MINIMAL + "notify:\n  quiet_hours: "
                              "{liaison: '22:00-07:00', crew: '22:00-22:00'}\n")
    assert line.startswith("notify.quiet_hours.crew: ") and "22:00-22:00" in line


@pytest.mark.parametrize("template", ["https://m.example/?p={lon.x},{lat}",
                                      "https://m.example/?p={lon[0]},{lat}",
                                      "https://m.example/?p={lon!r},{lat}",
                                      "https://m.example/?p={0},{lat}",
                                      "https://m.example/?p={lng},{lat}"])
def test_a_map_template_with_other_fields_is_refused_by_key(tmp_path: Path,
                                                            template: str) -> None:
    (line,) = config_problems(tmp_path, MINIMAL + f"dispatch:\n  map_url_template: '{template}'\n")
    assert line.startswith("dispatch.map_url_template: ")
    assert "{lat}, {lon} and {label}" in line


def test_cross_field_problems_name_their_key(tmp_path: Path) -> None:
    found = config_problems(tmp_path, MINIMAL + "timezone: Asia/Beijing\n"
                            "command_centre:\n  channel: wecon\n")
    assert [p for p in found if p.startswith("timezone: ") and "Asia/Beijing" in p]
    assert [p for p in found if p.startswith("command_centre.channel: ") and "wecon" in p]
    assert not [p for p in found if "<root>" in p or "Value error" in p]


def test_metrics_and_board_on_one_port_are_refused(tmp_path: Path) -> None:
    found = config_problems(tmp_path, MINIMAL + "metrics:\n  port: 8088\n"
                            "board:\n  enabled: true\n  port: 8088\n")
    assert [p for p in found if p.startswith("metrics.port: ") and "board.port" in p]


def test_a_set_but_empty_variable_gives_the_default() -> None:
    data = yaml.safe_load(MINIMAL)
    data["timezone"] = "${TZ_NAME:-Asia/Shanghai}"
    assert parse_config(data, env={"TZ_NAME": ""}).timezone == "Asia/Shanghai"
    data["timezone"] = "${TZ_NAME}UTC"
    assert parse_config(data, env={"TZ_NAME": ""}).timezone == "UTC"  # no default: empty


def test_extra_tags_are_keyed_as_the_bundle_reads_tags() -> None:
    data = yaml.safe_load(MINIMAL)
    data["priority"] = {"extra_tags": {"Cold-Storage": 30}}
    assert parse_config(data, env={}).priority.extra_tags == {"cold_storage": 30}
    data["priority"] = {"extra_tags": {"Cold-Storage": 30, "cold_storage": 5}}
    with pytest.raises(ConfigError) as info:
        parse_config(data, env={})
    (line,) = info.value.problems
    assert line.startswith("priority.extra_tags: 'Cold-Storage' and 'cold_storage' are both")


@pytest.mark.parametrize("count", ["1_2", "１２"])
def test_a_customer_count_python_reads_but_nobody_writes_is_refused(tmp_path: Path,
                                                                   count: str) -> None:
    bundle = demo_copy(tmp_path)
    row = set_field(bundle, "nodes.csv", "T-CG01-001", "customers", count)
    assert (f"nodes.csv:{row} (T-CG01-001): customers must be a whole number >= 0, "
            f"got {count!r}") in problems_of(bundle)


def test_a_source_without_a_feeder_is_the_one_problem(tmp_path: Path) -> None:
    """What names the source's line (crews, a tie switch) is not refused as well."""
    bundle = demo_copy(tmp_path)
    set_field(bundle, "nodes.csv", "S-CG01", "feeder", "")
    (line,) = problems_of(bundle)
    assert line.startswith("nodes.csv:2 (S-CG01): a source needs a feeder")
