"""Area numbers in Chinese numerals: the outage system and 95598 notices write "王庄村一号台区",
"二号公变", "十二号台区", "三#配变", "王庄村一至三号台区", "一、二号台区", "第三台区". Only Arabic
digits were read, so such a record placed no area and the village was not told. Numerals are
read only as area numbers — right before a designator, or in a list or range of them — never
inside a place's name ("三河村", "十里铺村", "五一村"). Demo bundle, a copy of it with names
written in Chinese numerals, and the daemon's own processing."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outage_sentinel.area_text import normalise, resolve_area_text
from outage_sentinel.daemon import Daemon
from outage_sentinel.events import OutageEvent
from outage_sentinel.incidents import Incident, resolve_event
from outage_sentinel.topology import Topology, load_bundle
from tests.conftest import T0
from tests.test_shared_areas import ev, feed, make_daemon, told

ROOT = Path(__file__).resolve().parents[1]
DEMO = load_bundle(ROOT / "topology")
DIGITS = "〇一二三四五六七八九"


def chinese(n: int) -> str:
    """1..99 the way notices write it: 三, 十, 十二, 二十, 二十一."""
    tens, units = divmod(n, 10)
    head = "" if tens == 0 else "十" if tens == 1 else DIGITS[tens] + "十"
    return head + (DIGITS[units] if units else "")


def areas_of(topo: Topology, village: str, *numbers: int) -> set[str]:
    """The areas of ``village`` (a village id); with ``numbers``, only its areas of those
    numbers — the n-th area in the bundle's order is area n in the demo county."""
    mine = [t for t in topo.transformers if topo.nodes[t].village == village]
    return set(mine) if not numbers else {mine[n - 1] for n in numbers}


WZ, NXZ, BDZ = "V037", "V035", "V033"  # 王庄村 (N号台区), 南谢庄村 (N#公变), 北董寨村


def wz(*numbers: int) -> set[str]:
    return areas_of(DEMO, WZ, *numbers)


# -- normalise: both spellings of one area compare equal; names stay as they are -------------


@pytest.mark.parametrize("n", range(1, 100))
def test_every_area_number_to_99_in_chinese_numerals_is_its_arabic_number(n: int) -> None:
    assert normalise(f"王庄村{chinese(n)}号台区") == f"王庄村{n}号台区"


@pytest.mark.parametrize(("spelled", "means"), [
    ("王庄村一号台区", "王庄村1号台区"),
    ("王庄村二号公变", "王庄村2号台区"),
    ("王庄村三#配变", "王庄村3号台区"),
    ("王庄村四号配变", "王庄村4号台区"),
    ("王庄村五号变", "王庄村5号台区"),
    ("王庄村六台区", "王庄村6号台区"),
    ("王庄村十号台区", "王庄村10号台区"),
    ("王庄村廿一号台区", "王庄村21号台区"),
    ("王庄村一〇号台区", "王庄村10号台区"),
    ("王庄村两号台区", "王庄村2号台区"),
    ("王庄村第三台区", "王庄村3号台区"),
    ("王庄村第3台区", "王庄村3号台区"),
    ("王庄村东一台区", "王庄村东1号台区"),
    ("十里铺村二号台区", "十里铺村2号台区"),
    ("五一村一号台区", "五一村1号台区"),
    ("王庄村一至三号台区", "王庄村1至3号台区"),
    ("王庄村一号至三号台区", "王庄村1号至3号台区"),
    ("王庄村一号台区至三号台区", "王庄村1号台区至3号台区"),
    ("王庄村一号二号台区", "王庄村1号2号台区"),
    ("王庄村一号", "王庄村1号"),
    ("王庄村第一至第三台区", "王庄村1至3号台区"),
    ("南谢庄村二#-五#公变", "南谢庄村2#-5号台区"),
])
def test_an_area_number_in_chinese_numerals_reads_as_its_arabic_number(spelled: str,
                                                                       means: str) -> None:
    assert normalise(spelled) == normalise(means)


@pytest.mark.parametrize("name", [
    "三河村", "十里铺村", "五一村", "七星社区", "二道河子村", "一号路", "八一路", "三号院",
    # a substation, not a transformer area
    "城关二变", "城关二号变电站", "马集一变电所",
    # not one clean number: a place name ending in numerals, a list written without a mark
    "五一二号台区", "八一十号台区", "王庄村一二号台区",
])
def test_numerals_in_a_place_s_name_are_left_alone(name: str) -> None:
    assert normalise(name) == name


PIECES = ["王庄村", "南谢庄村", "五一", "十", "二", "〇", "两", "廿", "第", "号", "#", "台区", "公变",
          "变", "变电站", "至", "-", "、", "，", "除外", "已恢复送电", "全村", "1", " "]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(PIECES) | st.text(max_size=2), max_size=14).map("".join))
def test_reading_numerals_never_raises_and_names_only_existing_areas(text: str) -> None:
    scope = resolve_area_text(DEMO, text)
    assert set(scope.confirmed) | set(scope.possible) <= set(DEMO.transformers)
    assert not set(scope.confirmed) & set(scope.possible)


# -- reading area text against the demo bundle (areas named with Arabic digits) ---------------

#: (text, confirmed, possible, unplaced)
WORDINGS: list[tuple[str, set[str], set[str], list[str]]] = [
    ("王庄村一号台区", wz(1), set(), []),
    ("王庄村二号公变", wz(2), set(), []),
    ("王庄村三#配变", wz(3), set(), []),
    ("王庄村第四台区", wz(4), set(), []),
    ("南谢庄村二#公变", areas_of(DEMO, NXZ, 2), set(), []),
    ("王庄村一至三号台区", wz(1, 2, 3), set(), []),
    ("王庄村一号至三号台区", wz(1, 2, 3), set(), []),
    ("王庄村一号台区至三号台区", wz(1, 2, 3), set(), []),
    ("王庄村一号台区 至 三号台区", wz(1, 2, 3), set(), []),
    ("王庄村一~三号台区", wz(1, 2, 3), set(), []),
    ("王庄村一、二号台区", wz(1, 2), set(), []),
    ("王庄村一、二、三号台区", wz(1, 2, 3), set(), []),
    ("王庄村一号、二号台区", wz(1, 2), set(), []),
    ("王庄村一号二号台区", wz(1, 2), set(), []),
    ("王庄村一号台区及三号台区", wz(1, 3), set(), []),
    ("王庄村一号、四至五号台区", wz(1, 4, 5), set(), []),
    ("南谢庄村二#-五#公变", areas_of(DEMO, NXZ, 2, 3, 4, 5), set(), []),
    ("王庄村 一号台区", wz(1), set(), []),
    ("王庄村 二号", wz(2), set(), []),
    # a number the village has no area for reads as with Arabic digits
    ("王庄村十二号台区", set(), wz(), []),
    ("王庄村八至十一号台区", wz(8, 9), set(), ["王庄村10号台区", "王庄村11号台区"]),
    # numerals that are no area number: read as before
    ("王庄村一二号台区", set(), wz(), []),
    ("王庄村三组", set(), wz(), []),
    # areas said not to be off, and back
    ("王庄村全村（一号台区除外）", wz() - wz(1), set(), []),
    ("王庄村全村（一、二号台区除外）", wz() - wz(1, 2), set(), []),
    ("王庄村全村，王庄村一、二号台区除外", wz() - wz(1, 2), set(), []),
    ("王庄村（三号台区除外）", set(), wz() - wz(3), []),
    ("王庄村全村，王庄村一号除外", wz() - wz(1), set(), []),
    ("北董寨村全村，王庄村一、二号台区已恢复送电", areas_of(DEMO, BDZ), set(), []),
]


@pytest.mark.parametrize(("text", "confirmed", "possible", "unplaced"), WORDINGS,
                         ids=[w[0] for w in WORDINGS])
def test_area_numbers_in_chinese_numerals_name_those_areas(
        text: str, confirmed: set[str], possible: set[str], unplaced: list[str]) -> None:
    scope = resolve_area_text(DEMO, text)
    assert set(scope.confirmed) == confirmed
    assert set(scope.possible) == possible
    assert list(scope.unplaced) == unplaced


@pytest.mark.parametrize(("chinese_text", "arabic_text"), [
    ("王庄村十二号台区", "王庄村12号台区"), ("王庄村八至十一号台区", "王庄村8-11号台区"),
    ("王庄村全村（二号台区除外）", "王庄村全村（2号台区除外）"),
    ("王庄村全村，王庄村十二号台区除外", "王庄村全村，王庄村12号台区除外"),
])
def test_chinese_numerals_read_as_their_arabic_numbers_do(chinese_text: str,
                                                         arabic_text: str) -> None:
    chinese_scope, arabic_scope = (resolve_area_text(DEMO, t) for t in (chinese_text, arabic_text))
    assert chinese_scope.confirmed == arabic_scope.confirmed
    assert chinese_scope.possible == arabic_scope.possible
    assert len(chinese_scope.unplaced) == len(arabic_scope.unplaced)


@pytest.mark.parametrize("text", ["王庄村全村（1、2号台区除外）", "王庄村全村，王庄村1、2号台区除外",
                                  "王庄村1、2号台区不停电，王庄村全村"])
def test_every_area_of_an_excluded_number_list_is_excluded(text: str) -> None:
    scope = resolve_area_text(DEMO, text)
    assert set(scope.confirmed) == wz() - wz(1, 2) and scope.possible == ()


@pytest.mark.parametrize("text", ["北董寨村全村，王庄村1号、2号台区除外",
                                  "北董寨村全村，王庄村1、2号台区除外",
                                  "北董寨村全村，王庄村一号、二号台区已恢复送电"])
def test_an_excluded_area_number_list_stays_in_its_own_village(text: str) -> None:
    # "2号台区" after an excluded "王庄村1号" is 王庄村's area 2, not the named 北董寨村's
    scope = resolve_area_text(DEMO, text)
    assert set(scope.confirmed) == areas_of(DEMO, BDZ) and scope.unplaced == ()


@pytest.mark.parametrize("digits", ["1" * 40, "一" * 40, "1号" * 40 + "1"])
def test_a_long_run_of_numbers_before_an_exclusion_is_read_at_once(digits: str) -> None:
    # a run of digits before junk and 除外 is unplaced; reading it once took 2^n steps, and a
    # record with 40 digits stopped the daemon's processing
    scope = resolve_area_text(DEMO, f"王庄村全村，王庄村{digits}号x除外")
    assert set(scope.confirmed) == wz() and scope.unplaced == (f"王庄村{digits}号x",)


def test_an_area_reference_in_chinese_numerals_is_that_area() -> None:
    record = OutageEvent(source="feed", event_id="E1", kind="fault", status="active", start=T0,
                         transformers=("王庄村一号台区", "南谢庄村三#公变", "王庄村 二号公变"))
    r = resolve_event(DEMO, record)
    assert set(r.transformers) == wz(1, 2) | areas_of(DEMO, NXZ, 3) and r.unknown == ()


# -- a bundle naming its areas in Chinese numerals, villages with numerals in their names -------

RENAMED = {"前赵店村": "二道河子村", "小卢堤村": "三河村", "前罗堤村": "十里铺村",
           "大蔡楼村": "五一村", "南谢庄村": "七星社区"}
V_SANHE, V_SHILI, V_WUYI, V_ERDAO, V_QIXING = "V034", "V038", "V039", "V036", "V035"


@pytest.fixture(scope="module")
def chinese_bundle(tmp_path_factory: pytest.TempPathFactory) -> Topology:
    bundle = Path(shutil.copytree(ROOT / "topology", tmp_path_factory.mktemp("cn") / "topology"))
    for name in ("nodes.csv", "villages.csv"):
        text = (bundle / name).read_text(encoding="utf-8")
        for n in range(1, 10):
            text = text.replace(f"王庄村{n}号台区", f"王庄村{chinese(n)}号台区")
        for old, new in RENAMED.items():
            text = text.replace(old, new)
        (bundle / name).write_text(text, encoding="utf-8")
    topo = load_bundle(bundle)
    assert topo.nodes["T-MJ02-001"].name == "王庄村一号台区"
    assert topo.villages[V_SANHE].name == "三河村"
    return topo


def test_arabic_area_numbers_find_areas_named_in_chinese_numerals(chinese_bundle: Topology
                                                                  ) -> None:
    areas = areas_of(chinese_bundle, WZ)
    ordered = sorted(areas)
    assert resolve_area_text(chinese_bundle, "王庄村1号台区").confirmed == (ordered[0],)
    assert resolve_area_text(chinese_bundle, "王庄村2#公变").confirmed == (ordered[1],)
    assert set(resolve_area_text(chinese_bundle, "王庄村1-3号台区").confirmed) == set(ordered[:3])
    assert set(resolve_area_text(chinese_bundle, "王庄村全村").confirmed) == areas
    record = OutageEvent(source="feed", event_id="E1", kind="fault", status="active", start=T0,
                         transformers=("王庄村1号台区", "王庄村3#公变"))
    assert resolve_event(chinese_bundle, record).transformers == (ordered[0], ordered[2])


@pytest.mark.parametrize(("text", "village", "numbers", "possible"), [
    ("三河村全村", V_SANHE, (), False),
    ("三河村二#公变", V_SANHE, (2,), False),
    ("三河村2#公变", V_SANHE, (2,), False),
    ("十里铺村一至三号台区", V_SHILI, (1, 2, 3), False),
    ("十里铺村全村", V_SHILI, (), False),
    ("五一村全村", V_WUYI, (), False),
    ("五一村二号台区", V_WUYI, (2,), False),
    ("二道河子村一号台区", V_ERDAO, (1,), False),
    ("二道河子村部分用户", V_ERDAO, (), True),
    ("七星社区三#公变", V_QIXING, (3,), False),
    ("七星社区", V_QIXING, (), True),
])
def test_villages_with_numerals_in_their_names_are_read_whole(
        chinese_bundle: Topology, text: str, village: str, numbers: tuple[int, ...],
        possible: bool) -> None:
    scope = resolve_area_text(chinese_bundle, text)
    expected = areas_of(chinese_bundle, village, *numbers)
    assert set(scope.possible if possible else scope.confirmed) == expected
    assert set(scope.confirmed if possible else scope.possible) == set()
    assert scope.unplaced == ()


# -- through the daemon: the village is told ---------------------------------------------------


@pytest.fixture
def daemon(tmp_path: Path, sqlite_url: str) -> Iterator[Daemon]:
    d = make_daemon(tmp_path, sqlite_url, DEMO)
    yield d
    d.close()


def test_a_notice_naming_areas_in_chinese_numerals_tells_the_village(daemon: Daemon) -> None:
    feed(daemon, 1, ev("F1", area_text="王庄村一至三号台区"), ev("F2", "北董寨村二号台区"))
    incidents = [Incident.from_json(r["state"]) for r in daemon.store.load_incidents()]
    placed = {t for inc in incidents for m in inc.members.values() for t in m.transformers}
    assert placed == wz(1, 2, 3) | areas_of(DEMO, BDZ, 2)
    assert {WZ, BDZ} <= {v for v, _, _ in told(daemon)}
    (body, *_) = [m.body for m in daemon.store.messages()
                  if m.audience == "liaison" and m.recipient.startswith(f"village:{WZ}:")]
    confirmed = body.split("已确认停电：")[1].split("；")[0]
    assert set(confirmed.split("、")) == {"王庄村1号台区", "王庄村2号台区", "王庄村3号台区"}
