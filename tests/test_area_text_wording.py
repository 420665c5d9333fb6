"""Scope wordings real notices use that were misread: places the text says are *not* off
("南谢庄村除外", "南谢庄村不停电") were told they may be; spaces inside a place's words ("王庄村 全村")
split it; "王庄全村", "王庄行政村全村", ranges and lists of area numbers ("1-3号台区") were not
understood; lines named with their substation or switch number ("马集变10kV王庄线",
"10kV王庄线911") were unknown. Demo bundle; the notices through the daemon's own processing."""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from outage_sentinel.area_text import find_feeder, qualified_feeders, resolve_area_text
from outage_sentinel.daemon import Daemon
from outage_sentinel.incidents import Incident
from outage_sentinel.topology import Topology, load_bundle
from tests.test_shared_areas import ev, feed, make_daemon, told

ROOT = Path(__file__).resolve().parents[1]
DEMO = load_bundle(ROOT / "topology")


def areas_of(name: str, *numbers: int) -> set[str]:
    """The village's areas; with ``numbers``, only its areas of those numbers."""
    vid = next(v.id for v in DEMO.villages.values() if v.name == name)
    mine = {t for t in DEMO.transformers if DEMO.nodes[t].village == vid}
    if not numbers:
        return mine
    return {t for t in mine if any(DEMO.nodes[t].name in (f"{name}{n}号台区", f"{name}{n}#公变")
                                   for n in numbers)}


NXZ, QZD, BDZ, WZ = "南谢庄村", "前赵店村", "北董寨村", "王庄村"  # V035, V036, V033, V037

#: (text, event feeder, confirmed, possible, unplaced)
EXCLUSIONS: list[tuple[str, str | None, set[str], set[str], list[str]]] = [
    ("前赵店村全村，南谢庄村除外", "MJ01", areas_of(QZD), set(), []),
    ("前赵店村全村、南谢庄村除外", "MJ01", areas_of(QZD), set(), []),
    ("前赵店村全村，南谢庄村不停电", None, areas_of(QZD), set(), []),
    ("前赵店村全村；南谢庄村正常供电；北董寨村保供电", None, areas_of(QZD), set(), []),
    ("前赵店村全村，南谢庄村不受影响", None, areas_of(QZD), set(), []),
    ("南谢庄村不停电", "MJ01", set(), set(), []),
    ("南谢庄村除外", None, set(), set(), []),
    ("马集镇（南谢庄村除外）", None, set(), set(), []),
    ("马集镇除南谢庄村、北董寨村外", None, set(), set(), []),
    ("前赵店村全村，除了南谢庄村、北董寨村", None, areas_of(QZD), set(), []),
    ("前赵店村全村，不含南谢庄村、北董寨村", None, areas_of(QZD), set(), []),
    ("南谢庄村、北董寨村除外，前赵店村全村", None, areas_of(QZD), set(), []),
    # an excluded area comes out of a confirmed or a possible village
    ("王庄村全村（1号台区除外）", None, areas_of(WZ) - areas_of(WZ, 1), set(), []),
    ("王庄村全村(1号、2号台区除外)", None, areas_of(WZ) - areas_of(WZ, 1, 2), set(), []),
    ("王庄村全村1号台区除外", None, areas_of(WZ) - areas_of(WZ, 1), set(), []),
    ("王庄村全村 不含1号台区", None, areas_of(WZ) - areas_of(WZ, 1), set(), []),
    ("王庄村（3号台区除外）", None, set(), areas_of(WZ) - areas_of(WZ, 3), []),
    ("南谢庄村部分用户，南谢庄村2#公变除外", None, set(), areas_of(NXZ) - areas_of(NXZ, 2), []),
    # what is not one place subtracts nothing and is told as unplaced, never guessed
    ("南谢庄村全村，南谢庄村东头除外", None, areas_of(NXZ), set(), ["南谢庄村东头"]),
    ("王庄村全村，王庄村12号台区除外", None, areas_of(WZ), set(), ["王庄村12号台区"]),
    # "除" inside a word is no exclusion
    ("王庄村1号台区拆除、2号台区", None, areas_of(WZ, 1, 2), set(), []),
]

#: (text, confirmed, possible, unplaced)
SPACES_AND_NUMBERS: list[tuple[str, set[str], set[str], list[str]]] = [
    ("王庄村 全村", areas_of(WZ), set(), []),
    ("王庄村\u3000全村", areas_of(WZ), set(), []),
    ("马集镇王庄村 全部用户", areas_of(WZ), set(), []),
    ("建设路社区 1号台区", {"T-CG01-001"}, set(), []),
    ("王庄村 1#公变", areas_of(WZ, 1), set(), []),
    ("王庄村 1号台区 2号台区", areas_of(WZ, 1, 2), set(), []),
    ("王庄村1号台区 至 3号台区", areas_of(WZ, 1, 2, 3), set(), []),
    ("南谢庄村 除外，前赵店村 全村", areas_of(QZD), set(), []),
    # a space before another place, or before words that are no qualifier, still separates
    ("王庄村 南谢庄村全村", areas_of(NXZ), areas_of(WZ), []),
    ("王庄村 东头", set(), areas_of(WZ), ["东头"]),
    # a village's name without its 村, before 全村 / 整村 / 行政村
    ("王庄全村", areas_of(WZ), set(), []),
    ("王庄整村", areas_of(WZ), set(), []),
    ("王庄行政村全村", areas_of(WZ), set(), []),
    ("王庄", set(), set(), ["王庄"]),
    # ranges and lists of one village's area numbers: exactly those
    ("王庄村1号台区至3号台区", areas_of(WZ, 1, 2, 3), set(), []),
    ("王庄村1-3号台区", areas_of(WZ, 1, 2, 3), set(), []),
    ("王庄村1~3号台区", areas_of(WZ, 1, 2, 3), set(), []),
    ("王庄村1～3号台区", areas_of(WZ, 1, 2, 3), set(), []),
    ("王庄村1到3号台区", areas_of(WZ, 1, 2, 3), set(), []),
    ("王庄村1、2、3号台区", areas_of(WZ, 1, 2, 3), set(), []),
    ("王庄村1号2号台区", areas_of(WZ, 1, 2), set(), []),
    ("南谢庄村2#-5#公变", areas_of(NXZ, 2, 3, 4, 5), set(), []),
    ("王庄村1号、4-5号台区", areas_of(WZ, 1, 4, 5), set(), []),
    ("王庄村8-11号台区", areas_of(WZ, 8, 9), set(), ["王庄村10号台区", "王庄村11号台区"]),
    # no range of areas: stays possible, as before
    ("王庄村1-3组", set(), areas_of(WZ), []),
    ("王庄村9-3号台区", set(), areas_of(WZ), []),
]


@pytest.mark.parametrize(("text", "feeder", "confirmed", "possible", "unplaced"), EXCLUSIONS,
                         ids=[w[0] for w in EXCLUSIONS])
def test_an_excluded_place_is_never_confirmed_or_possible(
        text: str, feeder: str | None, confirmed: set[str], possible: set[str],
        unplaced: list[str]) -> None:
    scope = resolve_area_text(DEMO, text, feeder)
    assert set(scope.confirmed) == confirmed
    assert set(scope.possible) == possible
    assert list(scope.unplaced) == unplaced


@pytest.mark.parametrize(("text", "confirmed", "possible", "unplaced"), SPACES_AND_NUMBERS,
                         ids=[w[0] for w in SPACES_AND_NUMBERS])
def test_spaces_short_names_and_area_numbers(text: str, confirmed: set[str], possible: set[str],
                                             unplaced: list[str]) -> None:
    scope = resolve_area_text(DEMO, text)
    assert set(scope.confirmed) == confirmed
    assert set(scope.possible) == possible
    assert list(scope.unplaced) == unplaced


@pytest.mark.parametrize("name", ["马集变10kV王庄线", "马集变王庄线", "马集变电站10kV王庄线",
                                  "10kV王庄线（马集变）", "10kV王庄线911", "马集变10kV王庄线出线",
                                  "10KV王庄线", "王庄线"])
def test_a_line_named_with_its_substation_or_number_is_found(name: str) -> None:
    assert find_feeder(DEMO, name) == "MJ02"


@pytest.mark.parametrize("name", ["柳河变10kV王庄线", "10kV王庄线（柳河变）", "10kV王庄线（主线）",
                                  "10kV王庄线段", "王庄", ""])
def test_a_line_of_another_substation_or_name_is_not_guessed(name: str) -> None:
    assert find_feeder(DEMO, name) is None


def test_area_text_reads_a_line_after_its_substation() -> None:
    scope = resolve_area_text(DEMO, "马集变10kV王庄线王庄村部分用户")
    assert scope.feeder == "MJ02" and set(scope.possible) == areas_of(WZ)
    scope = resolve_area_text(DEMO, "柳河变10kV王庄线")
    assert scope.feeder is None and scope.unplaced == ("柳河变10kV王庄线",)


@pytest.fixture(scope="module")
def shared_line(tmp_path_factory: pytest.TempPathFactory) -> Topology:
    """The demo bundle where 柳河变's LH01 is called 10kV王庄线 too (MJ02 leaves 马集变)."""
    root = Path(shutil.copytree(ROOT / "topology", tmp_path_factory.mktemp("b") / "topology"))
    nodes = root / "nodes.csv"
    text = nodes.read_text("utf-8")
    assert "柳河变10kV柳河线出线" in text
    nodes.write_text(text.replace("10kV柳河线", "10kV王庄线"), encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the bundle warns of the shared name
        return load_bundle(root)


def test_a_line_name_two_substations_share_is_told_apart_only_by_the_substation(
        shared_line: Topology) -> None:
    assert find_feeder(shared_line, "马集变10kV王庄线") == "MJ02"
    assert find_feeder(shared_line, "柳河变10kV王庄线") == "LH01"
    assert find_feeder(shared_line, "10kV王庄线（柳河变）") == "LH01"
    assert set(qualified_feeders(shared_line, "10kV王庄线911")) == {"MJ02", "LH01"}
    for name in ("10kV王庄线", "10kV王庄线911"):
        assert find_feeder(shared_line, name) is None
        assert resolve_area_text(shared_line, name).feeder is None
    assert resolve_area_text(shared_line, "柳河变10kV王庄线").feeder == "LH01"


# -- through the daemon's processing --------------------------------------------------------


@pytest.fixture
def daemon(tmp_path: Path, sqlite_url: str) -> Iterator[Daemon]:
    d = make_daemon(tmp_path, sqlite_url, DEMO)
    yield d
    d.close()


def only_incident(d: Daemon) -> Incident:
    (row,) = d.store.load_incidents(open_only=False)
    return Incident.from_json(row["state"])


def liaison_bodies(d: Daemon, village: str) -> list[str]:
    return [m.body for m in d.store.messages()
            if m.audience == "liaison" and m.recipient.startswith(f"village:{village}:")]


def test_a_village_the_notice_excludes_is_not_told(daemon: Daemon) -> None:
    feed(daemon, 1, ev("F1", area_text="前赵店村全村，南谢庄村除外", feeder="MJ01"),
         ev("F2", area_text="北董寨村不停电", feeder="MJ01"))
    villages = {v for v, _, _ in told(daemon)}
    assert "V036" in villages
    assert not villages & {"V035", "V033"}
    assert liaison_bodies(daemon, "V035") == [] and liaison_bodies(daemon, "V033") == []


def test_an_excluded_area_is_not_in_the_village_notice(daemon: Daemon) -> None:
    feed(daemon, 1, ev("F1", area_text="王庄村全村（1号台区除外）"))
    (member,) = only_incident(daemon).members.values()
    assert set(member.transformers) == areas_of(WZ) - areas_of(WZ, 1)
    (body,) = liaison_bodies(daemon, "V037")[:1]
    assert "已确认停电" in body and "可能受影响" not in body


def test_a_spaced_whole_village_is_told_as_confirmed(daemon: Daemon) -> None:
    feed(daemon, 1, ev("F1", area_text="王庄村 全村"))
    (member,) = only_incident(daemon).members.values()
    assert set(member.transformers) == areas_of(WZ)
    body = liaison_bodies(daemon, "V037")[0]
    assert "已确认停电" in body and "可能受影响" not in body


# -- exclusion words that say something else: the end of the outage, customers, a verb ---------

#: (text, confirmed, possible): real outage text whose 正常供电 / 保供电 / 不停电 / 除…外 is no
#: exclusion — reading it as one left dark villages untold.
NOT_EXCLUSIONS: list[tuple[str, set[str], set[str]]] = [
    ("北董寨村、王庄村停电至恢复正常供电", set(), areas_of(BDZ) | areas_of(WZ)),
    ("王庄村南谢庄村停电直至正常供电", set(), areas_of(WZ) | areas_of(NXZ)),
    ("王庄村1号台区停电至恢复正常供电", areas_of(WZ, 1), set()),
    ("王庄村1号台区到恢复正常供电", areas_of(WZ, 1), set()),
    ("王庄村停电至正常供电为止", set(), areas_of(WZ)),
    ("王庄村停电，直至恢复正常供电", set(), areas_of(WZ)),
    ("北董寨村停电、王庄村停电至恢复正常供电", set(), areas_of(BDZ) | areas_of(WZ)),
    ("王庄村全村，恢复正常供电时间另行通知", areas_of(WZ), set()),
    ("王庄村全村，计划于16:00恢复正常供电", areas_of(WZ), set()),
    ("王庄村全村，停电期间保供电用户请自备电源", areas_of(WZ), set()),
    ("王庄村全村停电（重要用户保供电）", areas_of(WZ), set()),
    ("王庄村正常供电时间另行通知", set(), areas_of(WZ)),
    ("南谢庄村不停电作业", set(), areas_of(NXZ)),
    ("王庄村全村停电，除故障线路外，其他线路正常供电", areas_of(WZ), set()),
    ("王庄村全村，排除王庄村1号台区故障后户外送电", areas_of(WZ), set()),
    ("王庄村、北董寨村、南谢庄村因排除线路故障停电，户外作业", set(),
     areas_of(WZ) | areas_of(BDZ) | areas_of(NXZ)),
    ("王庄村、南谢庄村（采用不停电作业方式的区域除外）", set(), areas_of(WZ) | areas_of(NXZ)),
    # only some customers of the village are excepted: the village may still be dark
    ("王庄村、南谢庄村停电（保供电用户除外）", set(), areas_of(WZ) | areas_of(NXZ)),
    ("王庄村保供电用户除外，南谢庄村全村", areas_of(NXZ), areas_of(WZ)),
]


@pytest.mark.parametrize(("text", "confirmed", "possible"), NOT_EXCLUSIONS,
                         ids=[w[0] for w in NOT_EXCLUSIONS])
def test_words_of_the_outage_s_end_or_of_customers_exclude_no_place(
        text: str, confirmed: set[str], possible: set[str]) -> None:
    scope = resolve_area_text(DEMO, text)
    assert set(scope.confirmed) == confirmed
    assert set(scope.possible) == possible


#: (text, confirmed, excluded): an after-word right after its place (or ending a bracket) does
#: exclude it; a 、-list before 除外 is excluded whole, as in "（王庄村、南谢庄村除外）".
STILL_EXCLUSIONS: list[tuple[str, set[str], tuple[str, ...]]] = [
    ("前赵店村全村，南谢庄村正常供电。", areas_of(QZD), (NXZ,)),
    ("前赵店村全村，南谢庄村不在停电范围内", areas_of(QZD), (NXZ,)),
    ("南谢庄村全村不停电，前赵店村全村", areas_of(QZD), ("南谢庄村全村",)),
    ("前赵店村全村南谢庄村照常供电", areas_of(QZD), (NXZ,)),
    ("王庄村全村（1号台区不停电）", areas_of(WZ) - areas_of(WZ, 1), ("1号台区",)),
    ("前赵店村全村，王庄村、南谢庄村除外", areas_of(QZD), (WZ, NXZ)),
    ("前赵店村全村，王庄村和南谢庄村不停电", areas_of(QZD), (WZ, NXZ)),
]


@pytest.mark.parametrize(("text", "confirmed", "excluded"), STILL_EXCLUSIONS,
                         ids=[w[0] for w in STILL_EXCLUSIONS])
def test_an_exclusion_right_after_its_place_excludes_it_and_says_so(
        text: str, confirmed: set[str], excluded: tuple[str, ...]) -> None:
    scope = resolve_area_text(DEMO, text)
    assert set(scope.confirmed) == confirmed and scope.possible == ()
    assert scope.excluded == excluded


def test_an_exclusion_not_right_after_a_place_keeps_the_place_and_shows_the_words() -> None:
    """"南谢庄村东头除外" says no place is out as a whole: 南谢庄村 may be, and a person sees what
    the words except."""
    scope = resolve_area_text(DEMO, "南谢庄村东头除外")
    assert set(scope.possible) == areas_of(NXZ)
    assert scope.unplaced == ("南谢庄村东头",) and scope.excluded == ()


def test_the_outage_s_end_is_told_to_the_village(daemon: Daemon) -> None:
    feed(daemon, 1, ev("F1", area_text="王庄村1号台区停电至恢复正常供电"),
         ev("F2", area_text="北董寨村、南谢庄村停电至恢复正常供电"))
    assert {"V037", "V033", "V035"} <= {v for v, _, _ in told(daemon)}
    body = liaison_bodies(daemon, "V037")[0]
    assert "已确认停电" in body


def test_a_text_that_only_excludes_goes_to_the_command_centre_with_its_words(
        daemon: Daemon) -> None:
    feed(daemon, 1, ev("F1", area_text="王庄村、南谢庄村除外"))
    assert told(daemon) == []
    command = [m.body for m in daemon.store.messages() if m.audience == "command"]
    assert any("王庄村、南谢庄村除外" in body for body in command)


# -- a place the text says is back: restoration wording right after it ----------------------

#: (text, confirmed, possible, excluded): "XX已恢复正常供电", "XX现已正常供电", "XX已送电"… say XX
#: has power. Read as a bare place, its village heard 可能受影响 while it had power.
RESTORED: list[tuple[str, set[str], set[str], tuple[str, ...]]] = [
    ("北董寨村停电，王庄村已恢复正常供电", set(), areas_of(BDZ), (WZ,)),
    ("北董寨村全村；王庄村现已正常供电", areas_of(BDZ), set(), (WZ,)),
    ("北董寨村停电，王庄村恢复正常供电。", set(), areas_of(BDZ), (WZ,)),
    ("北董寨村全村，王庄村已恢复供电", areas_of(BDZ), set(), (WZ,)),
    ("北董寨村全村，王庄村已经恢复正常供电", areas_of(BDZ), set(), (WZ,)),
    ("北董寨村全村，王庄村已送电", areas_of(BDZ), set(), (WZ,)),
    ("北董寨村全村，王庄村已来电", areas_of(BDZ), set(), (WZ,)),
    ("北董寨村全村，王庄村 已恢复供电", areas_of(BDZ), set(), (WZ,)),
    ("北董寨村全村停电（王庄村已恢复供电）", areas_of(BDZ), set(), (WZ,)),
    ("北董寨村全村，王庄村、南谢庄村已恢复供电", areas_of(BDZ), set(), (WZ, NXZ)),
    ("北董寨村全村，王庄村1号台区已送电", areas_of(BDZ), set(), ("王庄村1号台区",)),
    ("王庄村全村，1号台区已恢复供电", areas_of(WZ) - areas_of(WZ, 1), set(), ("1号台区",)),
    # the outage's end, or a time: the places stay in the outage, as before
    ("北董寨村、王庄村停电至恢复正常供电", set(), areas_of(BDZ) | areas_of(WZ), ()),
    ("北董寨村、王庄村停电直至正常供电", set(), areas_of(BDZ) | areas_of(WZ), ()),
    ("王庄村1号台区停电至恢复正常供电", areas_of(WZ, 1), set(), ()),
    ("北董寨村全村，王庄村恢复正常供电时间另行通知", areas_of(BDZ), areas_of(WZ), ()),
    # a text naming only places that are back is a restoration record's own scope
    ("王庄村已恢复送电", set(), areas_of(WZ), ()),
]


@pytest.mark.parametrize(("text", "confirmed", "possible", "excluded"), RESTORED,
                         ids=[w[0] for w in RESTORED])
def test_a_place_said_to_be_back_is_not_in_the_outage_and_says_so(
        text: str, confirmed: set[str], possible: set[str], excluded: tuple[str, ...]) -> None:
    scope = resolve_area_text(DEMO, text)
    assert set(scope.confirmed) == confirmed
    assert set(scope.possible) == possible
    assert scope.excluded == excluded and scope.unplaced == ()


def test_a_village_said_to_be_back_is_not_told_it_may_be_off(daemon: Daemon) -> None:
    feed(daemon, 1, ev("F1", area_text="北董寨村停电，王庄村已恢复正常供电"),
         ev("F2", area_text="南谢庄村全村；前赵店村现已正常供电"))
    villages = {v for v, _, _ in told(daemon)}
    assert {"V033", "V035"} <= villages
    assert not villages & {"V037", "V036"}
