"""Scope from words: the transformer areas an outage notice's area text names. Pure.

95598 notices often give their scope only as text ("南谢庄村全村", "王庄村1号、2号台区",
"人民路社区部分用户", "10kV马集线"). :func:`resolve_area_text` reads such text against the
topology bundle's names (and ``aliases.csv``) and says which areas it names, with the precision
the words allow:

* ``confirmed``: precise wording — "XX村全村" / "XX全村" / "XX行政村全村" (every area of the
  village), "XX台区", "XX#公变", "XX#变", a transformer area's name or id, a range or list of
  one village's area numbers ("王庄村1-3号台区", "王庄村1号台区至3号台区"); area numbers in
  Chinese numerals read as in Arabic digits ("王庄村一至三号台区", "二号公变", "第三台区"), but
  only as area numbers: a place's name keeps its numerals ("三河村", "五一村");
* ``possible`` (可能受影响): imprecise wording — "XX村部分用户", "XX村部分", "XX村附近", a bare
  village name: the village's areas on the named feeder (all its areas when no feeder is known
  or none of them is on it);
* ``feeder``: the first line the text names ("10kV马集线", "马集变10kV王庄线"), for events that
  named none; a name several lines share and no substation tells apart names none;
* a whole line — "10kV马集线全线停电", "马集线整条线路停电", "马集线全部台区", or "全线停电" alone
  beside the record's own line — is every area of that line, ``confirmed`` (the areas the
  bundle has it feed); of a name several lines share, ``possible``;
* ``unplaced``: the fragments nothing in the bundle matched.

A space inside one place's words does not split it ("王庄村 全村", "建设路社区 1号台区").

Text saying a place is *not* out ("南谢庄村除外", "不含王庄村", "南谢庄村不停电",
"王庄村全村（1号台区除外）") never makes it confirmed or possible: its areas are taken out of
the scope (and listed in ``excluded``), and an excluded fragment that names no one place is
unplaced. An after-word counts only right after its place: "停电至恢复正常供电", "恢复正常供电
时间", "保供电用户" are the outage's end or customers, and the places before them stay in.
A place followed by restoration wording ("北董寨村停电，王庄村已恢复正常供电", "王庄村现已
正常供电", "王庄村已送电") is back: excluded the same way — unless every place the text names is
back, as in a restoration record's own scope ("王庄村已恢复送电"), read as named.

The rules are documented in docs/area_text.md. No I/O, no clock; the name index of a topology
is built once and cached for as long as the topology lives.
"""

from __future__ import annotations

import re
import unicodedata
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from outage_sentinel.topology import Topology

#: Fragment separators: Chinese and ASCII commas and semicolons, slashes, whitespace.
SEPARATORS = re.compile(r"[、，,；;/\s]+")
#: Conjunctions that separate fragments too, except inside a known name ("和平社区").
CONJUNCTIONS = ("及", "和")
#: Voltage levels stripped from the text ("10kV马集线" reads as "马集线").
_VOLTAGE = re.compile(r"(?<![\d.])(?:0\.4|10|20|35|110|220)\s*kv", re.IGNORECASE)
#: Numbered transformer designators, all read as "N号台区": "2#公变", "#2变", "2号配变", "2台区".
_NUMBERED = re.compile(r"#?(\d+)\s*(?:#|号)?\s*(?:公用变压器|公变|配变|专变|变压器|变台|台区|变)")
#: Chinese numerals of area numbers ("一号台区", "十二号公变", "廿一号台区", "一〇号台区").
_CN_DIGITS = {c: k for k, c in enumerate("〇一二三四五六七八九")} | {"零": 0}
_CN = "[〇零一二两三四五六七八九十廿卅]+"
_CN_TENS = re.compile("([一二三四五六七八九]?)十([一二三四五六七八九]?)|([廿卅])([一二三四五六七八九]?)")
#: What makes a number an area number right before it: a designator, maybe after 号 / #; a
#: bare 变 only after 号 / # ("城关二变" is a substation), and never 变电站 / 变电所; or 号 / #
#: ending the text ("王庄村一号", as "王庄村1号" of "王庄村1号、2号台区").
_DESIGNATOR = r"(?:#|号)?(?:公用变压器|公变|配变|专变|变压器|变台|台区)|(?:#|号)(?:变(?!电)|$)"
#: Unnumbered designators read as "台区" ("南谢庄村公变" = "南谢庄村台区").
_UNNUMBERED = re.compile(r"公用变压器|公变|配变")
#: Words saying the whole place is off.
WHOLE_WORDS = ("全村", "全部", "所有", "整村", "全体", "全域")
#: Words saying a whole line is off, right after its name ("马集线全线停电", "马集线全线路停电",
#: "马集线整条线路停电", "马集线整线停电") or alone, of the record's own line ("全线停电").
LINE_WORDS = ("全线", "整条线", "整线")
#: Words saying so right after a line's name only ("马集线全部台区", "马集线所有公变",
#: "马集线全部停电"): alone, "全部台区" may be a village's.
LINE_WHOLE_WORDS = (*LINE_WORDS, "全部", "所有", "全体")
#: Words saying only part of it may be.
PARTIAL_WORDS = ("部分", "附近", "周边", "周围", "一带", "局部", "个别", "少数", "沿线")
#: Words after places saying they are *not* off ("南谢庄村除外", "南谢庄村不停电").
EXCLUDED_AFTER = ("除外", "不停电", "不受影响", "正常供电", "照常供电", "保供电", "不在停电范围")
#: Words before places saying they are not off ("不含南谢庄村", "除了南谢庄村、王庄村");
#: a bare "除" counts only with its closing "外" ("马集镇除南谢庄村外").
EXCLUDED_BEFORE = ("除了", "不包括", "不包含", "不含", "除")
#: Words a restoration phrase after a place starts with ("王庄村 已恢复供电", "王庄村现已…").
RESTORED_WORDS = ("已", "现已", "恢复", "均已", "目前已")
#: What closes a list opened by :data:`EXCLUDED_BEFORE` ("除南谢庄村、王庄村以外").
EXCLUDED_CLOSE = ("以外", "之外", "外")
#: Between two area numbers: a range ("1号至3号台区", "1-3号台区", "2#~5#公变").
RANGE_WORDS = ("至", "到", "~", "-", "—", "–", "〜")
_RANGE = "|".join(map(re.escape, RANGE_WORDS))
#: Area numbers, maybe after 第, in a run ending right before a designator: one ("三号台区",
#: "第三台区"), or a list or range of them ("一至三号台区", "一号二号台区", "二#-五#公变"). Each
#: number but the last is followed by 号 / # / 号台区 or a range word, so a run splits one way.
_AREA_RUN = re.compile(rf"(?:第?(?:{_CN}|\d+)(?:(?:号台区|号|#)(?:{_RANGE})?|{_RANGE}))*"
                       rf"第?(?:{_CN}|\d+)(?={_DESIGNATOR})")
_RUN_NUMBER = re.compile(rf"第?({_CN}|\d+)")
#: Two or more area numbers of one village, in a list or a range ("1号2号台区", "1-3号台区").
_RUN = re.compile(rf"(?:#?\d+(?:号台区|号|#)?(?:{_RANGE})?)+")
_RUN_ITEM = re.compile(rf"#?(\d+)(?:号台区|号|#)?({_RANGE})?")
#: The widest range of area numbers read ("1-3号台区"; "1-500号台区" is not a village's areas).
MAX_RANGE = 50
#: What a spaced-off word may start with to still belong to the place before it ("王庄村 全村").
_QUALIFIERS = (*WHOLE_WORDS, *PARTIAL_WORDS, *EXCLUDED_AFTER, *EXCLUDED_CLOSE, *RANGE_WORDS,
               *RESTORED_WORDS, "(", "号", "行政村")
#: A substation name's own suffix ("马集变", "马集变电站", "马集站" are one substation).
_STATION_SUFFIX = re.compile(r"(?:变电站|变电所|变|站)$")
_STATION_WORD = re.compile(r"变电站|变电所|变|站")
#: A line's switch number after its name ("王庄线911").
_LINE_NUMBER = re.compile(r"#?\d{3,4}(?:开关|出线)?$")


@dataclass(frozen=True)
class AreaScope:
    """What an area text names. Ids are transformer-area node ids of the topology; ``possible``
    never repeats a ``confirmed`` one."""

    confirmed: tuple[str, ...] = ()
    possible: tuple[str, ...] = ()
    feeder: str | None = None
    unplaced: tuple[str, ...] = ()
    #: the fragments read as *not* off ("南谢庄村" of "南谢庄村除外"), in order: what the text
    #: took out of the scope stays visible, never silently gone
    excluded: tuple[str, ...] = ()


def normalise(text: str) -> str:
    """The comparable form of a name or fragment: NFKC (full-width digits, letters and ``＃``
    to half-width), voltage levels, spaces and a trailing "等" removed, "村委会" read as "村",
    numbered transformer designators ("2#公变", "#2变", "2号台区") in one form, their numbers
    in Arabic digits ("二号公变", "第二台区", "一至三号台区": see :func:`_in_arabic`)."""
    t = unicodedata.normalize("NFKC", text)
    t = _VOLTAGE.sub("", t)
    t = t.replace("村民委员会", "村").replace("村委会", "村")
    t = "".join(t.split()).rstrip("等")
    t = _AREA_RUN.sub(lambda run: _RUN_NUMBER.sub(_in_arabic, run[0]), t)
    t = _NUMBERED.sub(r"\1号台区", t)
    return _UNNUMBERED.sub("台区", t)


def _in_arabic(number: re.Match[str]) -> str:
    """An area number (maybe after 第) in Arabic digits, without 第: "三" -> "3", "十二" ->
    "12", "二十一" / "廿一" -> "21", "一〇" -> "10", "两" -> "2", "第3" -> "3". Numerals that are
    no one clean number ("一二": twelve, or one and two?; "五一二": a name's "五一" and 二?) are
    left as written: an area they would name is not guessed."""
    text = number[1]
    if text.isdigit():
        return text
    if text == "两":
        return "2"
    if tens := _CN_TENS.fullmatch(text):
        high, low = (tens[1], tens[2]) if tens[3] is None else ("二三"["廿卅".index(tens[3])],
                                                                tens[4])
        return str(_CN_DIGITS.get(high, 1) * 10 + _CN_DIGITS.get(low, 0))
    if len(text) == 1 or (len(text) == 2 and ("〇" in text or "零" in text)):
        if all(c in _CN_DIGITS for c in text):
            return "".join(str(_CN_DIGITS[c]) for c in text)
    return number[0]


@dataclass
class _Index:
    """Normalised names of one topology's transformer areas, villages and feeders."""

    areas: dict[str, tuple[str, ...]] = field(default_factory=dict)
    villages: dict[str, tuple[str, ...]] = field(default_factory=dict)
    feeders: dict[str, str] = field(default_factory=dict)
    #: village id -> its transformer areas (bundle order); only villages that have areas
    village_areas: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: transformer id -> its village id (those with one)
    area_village: dict[str, str] = field(default_factory=dict)
    #: feeder id -> the transformer areas it feeds (bundle order)
    feeder_areas: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: village id -> the name fragments after it are tried with ("2号台区" after "王庄村1号")
    village_key: dict[str, str] = field(default_factory=dict)
    #: county and township names, read as context and skipped ("马集镇王庄村")
    admin: set[str] = field(default_factory=set)
    #: a village's name without its "村" -> its name, for "王庄全村", "王庄行政村" (unique ones)
    short_villages: dict[str, str] = field(default_factory=dict)
    #: a line's name -> every feeder it may mean (a name two lines share means both)
    feeder_labels: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: feeder id -> its substation's name without "变" / "站" ("马集"), where the bundle says
    feeder_station: dict[str, str] = field(default_factory=dict)
    #: the substations of :attr:`feeder_station`
    stations: set[str] = field(default_factory=set)
    #: names containing a conjunction, never split
    protected: tuple[str, ...] = ()
    #: names containing an exclusion word ("除", "外" ...), inside which it is not one
    marked: tuple[str, ...] = ()
    longest: int = 1


_CACHE: weakref.WeakKeyDictionary[Topology, _Index] = weakref.WeakKeyDictionary()


def _index(topology: Topology) -> _Index:
    index = _CACHE.get(topology)
    if index is None:
        index = _build_index(topology)
        _CACHE[topology] = index
    return index


def _add(table: dict[str, tuple[str, ...]], key: str, value: str) -> None:
    if key and value not in table.get(key, ()):
        table[key] = (*table.get(key, ()), value)


def _build_index(topology: Topology) -> _Index:
    ix = _Index()
    names = _index_places(ix, topology)
    _index_feeders(ix, topology)
    # Aliases are explicit: they take precedence over a clashing name.
    for alias in topology.aliases:
        key = normalise(alias.alias)
        names.append(alias.alias)
        if alias.kind == "feeder":
            ix.feeders[key] = alias.id
            ix.feeder_labels[key] = (alias.id,)
        elif alias.kind == "village" and alias.id in ix.village_areas:
            ix.villages[key] = (alias.id,)
        elif alias.kind == "transformer":
            ix.areas[key] = (alias.id,)
    ix.feeders.pop("", None)
    ix.admin -= set(ix.villages) | set(ix.areas) | set(ix.feeders)
    ix.short_villages = _short_villages(ix)
    nfkc = {unicodedata.normalize("NFKC", n) for n in names}
    ix.protected = tuple(sorted({n for n in nfkc if any(c in n for c in CONJUNCTIONS)},
                                key=len, reverse=True))
    markers = (*EXCLUDED_AFTER, *EXCLUDED_BEFORE, *EXCLUDED_CLOSE)
    ix.marked = tuple(sorted({n for n in nfkc | set(ix.villages) | set(ix.areas)
                              if any(w in n for w in markers)}, key=len, reverse=True))
    keys = [*ix.areas, *ix.villages, *ix.feeders, *ix.admin]
    ix.longest = max((len(k) for k in keys), default=1)
    return ix


def _index_places(ix: _Index, topology: Topology) -> list[str]:
    """Index the areas, villages and admin names; returns the display names indexed."""
    names: list[str] = []
    by_village: dict[str, list[str]] = {}
    by_feeder: dict[str, list[str]] = {}
    for t in topology.transformers:
        node = topology.nodes[t]
        _add(ix.areas, normalise(t), t)
        _add(ix.areas, normalise(node.name), t)
        names.append(node.name)
        by_feeder.setdefault(topology.feeder_of(t), []).append(t)
        if node.village:
            by_village.setdefault(node.village, []).append(t)
            ix.area_village[t] = node.village
    ix.village_areas = {v: tuple(ts) for v, ts in by_village.items()}
    ix.feeder_areas = {f: tuple(ts) for f, ts in by_feeder.items()}
    for vid, village in topology.villages.items():
        if vid in ix.village_areas:
            _add(ix.villages, normalise(village.name), vid)
            _add(ix.villages, normalise(vid), vid)
            ix.village_key[vid] = normalise(village.name) or normalise(vid)
            names.append(village.name)
        for admin in (village.township, village.extra.get("county", "")):
            if normalise(admin):
                ix.admin.add(normalise(admin))
    return names


def _index_feeders(ix: _Index, topology: Topology) -> None:
    """Index the lines by id and name, and the substation each one leaves from."""
    for fid in topology.feeder_ids:
        ix.feeders.setdefault(normalise(fid), fid)
        _add(ix.feeder_labels, normalise(fid), fid)
    for fid, label in topology.feeder_names.items():
        ix.feeders.setdefault(normalise(label), fid)
    for label, fid in topology.feeder_by_name.items():
        ix.feeders.setdefault(normalise(label), fid)
    for sid in topology.sources:
        node = topology.nodes[sid]
        if not node.feeder:
            continue
        for label in (node.name, node.extra.get("feeder_name") or ""):
            _add(ix.feeder_labels, normalise(label), node.feeder)
        station = station_name(node.extra.get("substation") or "")
        if station:
            ix.feeder_station.setdefault(node.feeder, station)
            ix.stations.add(station)


def _short_villages(ix: _Index) -> dict[str, str]:
    """"王庄" -> "王庄村", for each village name ending in 村 whose short form names nothing
    else and no other village."""
    shorts: dict[str, str | None] = {}
    for key, vids in ix.villages.items():
        if len(vids) == 1 and len(key) >= 3 and key.endswith("村"):
            short = key[:-1]
            shorts[short] = key if shorts.get(short, key) == key else None
    taken = set(ix.villages) | set(ix.areas) | set(ix.feeders) | ix.admin
    return {s: k for s, k in shorts.items() if k is not None and s not in taken}


def station_name(name: str) -> str:
    """A substation's name without voltage and "变" / "变电站" / "站": "马集变", "35kV马集变电站"
    and "马集站" all give "马集" (empty when nothing is left)."""
    return _STATION_SUFFIX.sub("", normalise(name))


def split_fragments(text: str, protected: Iterable[str] = ()) -> list[str]:
    """Split area text on 、，,；;/ and whitespace, and on 及/和 outside the ``protected`` names.
    Fragments are NFKC-normalised, in order, empty ones dropped."""
    out: list[str] = []
    names = tuple(protected)
    for piece in SEPARATORS.split(unicodedata.normalize("NFKC", text)):
        if not piece:
            continue
        keep = _inside_names(piece, names)
        begin = 0
        for k, ch in enumerate(piece):
            if ch in CONJUNCTIONS and not keep[k]:
                if k > begin:
                    out.append(piece[begin:k])
                begin = k + 1
        if begin < len(piece):
            out.append(piece[begin:])
    return out


def _inside_names(text: str, names: Iterable[str]) -> list[bool]:
    """For each character of ``text``, whether it lies inside an occurrence of one of
    ``names`` (a word in a name is not that word: "和平社区" has no 和)."""
    inside = [False] * len(text)
    for name in names:
        start = text.find(name)
        while start >= 0:
            for k in range(start, start + len(name)):
                inside[k] = True
            start = text.find(name, start + 1)
    return inside


# -- exclusions and spaces: which fragments say a place is *not* off --------------------------

#: Clause separators: an exclusion list never runs past one ("南谢庄村除外，王庄村全村").
_CLAUSES = re.compile(r"[，,；;]+")
_BRACKETED = re.compile(r"\(([^()]*)\)")
#: What may follow an after-word other than 除外 for it to still say its place is not off
#: ("南谢庄村不在停电范围内。"); "正常供电时间", "保供电用户", "不停电作业" are no exclusion.
_AFTER_END = re.compile(r"(?:之内|以内|内|之列)?[。.!！]*")
#: Words between a place and its after-word that leave the place excluded ("南谢庄村全村不停电").
_QUALIFIER_TAIL = re.compile(
    "(?:" + "|".join((*WHOLE_WORDS, *PARTIAL_WORDS, "的", "用户", "村民", "居民")) + ")+$")
#: Area numbers a text ends with ("1号台区", "1-3号台区", "1号2号台区"). Each number but the
#: last is followed by 号 / # / 号台区 or a range word: a run of digits splits one way only
#: (read every way, "王庄村1111…1号x除外" took 2^n steps).
_NUMBER_TAIL = re.compile(
    rf"(?:#?\d+(?:(?:号台区|号|#)(?:{_RANGE})?|{_RANGE}))*#?\d+(?:号台区|号|#)$")
#: Characters before 除 making it a verb, no exclusion ("排除…户外", "拆除", "消除", "清除").
_REMOVAL = "排拆消清免切去删解扣剔根破废摒革"

#: Restoration wording a fragment may end with ("王庄村已恢复正常供电", "王庄村现已正常供电",
#: "王庄村已送电"); it says its place is back only with 恢复, or 已 and a 电 (see
#: :func:`_restored_at`).
_RESTORED = re.compile(r"(?:现|目前|当前|均|都|全部)*(?:已经|业已|已)?(?:恢复)?(?:正常)?"
                       r"(?:供电|送电|来电|通电)?(?:正常)?[。.!！]*")

#: What a fragment says of its place: read as named, *not* off, an exclusion that names no
#: place right before its 除外 ("南谢庄村东头除外"): read as named, and shown as unplaced; or
#: back ("王庄村已恢复供电"): *not* off, unless the text names nothing else (see
#: :func:`resolve_area_text`).
Named, Out, Doubt, Back = "named", "out", "doubt", "back"


def _pieces(text: str, ix: _Index) -> list[tuple[str, str]]:
    """The text's fragments in order, each with what it says of its place (:data:`Named`,
    :data:`Out`, :data:`Doubt`). A bracket with an exclusion word in it is a clause of its own
    ("王庄村全村（1号台区除外）")."""
    t = _join_spaced(unicodedata.normalize("NFKC", text), ix)
    t = _BRACKETED.sub(lambda m: f",{m[1]}," if _marker(m[1], ix)[0] >= 0
                       or _restored_at(ix, m[1]) is not None else m[0], t)
    out: list[tuple[str, str]] = []
    for clause in _CLAUSES.split(t):
        items = split_fragments(clause, ix.protected)
        if _marker(clause, ix)[0] >= 0:
            out.extend(_restorations(_excluding(items, ix), ix))
        else:
            out.extend(_restorations([(item, Named) for item in items], ix))
    return out


def _restorations(pieces: list[tuple[str, str]], ix: _Index) -> list[tuple[str, str]]:
    """``pieces`` of one clause, a named one ending in restoration wording right after its
    places marked :data:`Back` ("北董寨村停电，王庄村已恢复正常供电": 王庄村 has power; read
    as named, its village heard 可能受影响). Its places are taken as :func:`_exclude_before`
    takes them, a bare 、-list before it along ("王庄村、南谢庄村已送电")."""
    out: list[tuple[str, str]] = []
    for piece, says in pieces:
        at = _restored_at(ix, piece) if says == Named else None
        if at is None:
            out.append((piece, says))
        else:
            _exclude_before(out, piece[:at], ix, Back)
    return out


def _restored_at(ix: _Index, text: str) -> int | None:
    """Where restoration wording ending ``text`` begins, when places stand right before it
    ("王庄村全村已恢复送电": 5); else None. "停电至恢复正常供电" / "停电直至正常供电" is the
    outage's end, not a place that is back: the places before it stay in; "王庄村恢复正常供电
    时间另行通知" ends with other words. 正常供电 alone is :data:`EXCLUDED_AFTER`'s."""
    for at in range(1, len(text)):
        phrase = text[at:]
        if not _RESTORED.fullmatch(phrase):
            continue
        if ("恢复" in phrase or ("已" in phrase and "电" in phrase)) and \
                _tail_start(ix, text[:at]) is not None:
            return at
    return None


def _markers(text: str, ix: _Index,
             words: tuple[str, ...] = (*EXCLUDED_AFTER, *EXCLUDED_BEFORE)) -> list[tuple[int, str]]:
    """Every one of ``words`` in ``text`` outside a name containing it, as (position, word), in
    order; where two start at one position only the longest ("除外", not "除")."""
    inside = _inside_names(text, ix.marked)
    found: dict[int, str] = {}
    for word in words:
        at = text.find(word)
        while at >= 0:
            if not any(inside[at:at + len(word)]) and len(word) > len(found.get(at, "")):
                found[at] = word
            at = text.find(word, at + 1)
    return sorted(found.items())


def _marker(text: str, ix: _Index,
            words: tuple[str, ...] = (*EXCLUDED_AFTER, *EXCLUDED_BEFORE)) -> tuple[int, str]:
    """The first of :func:`_markers`; (-1, "") when there is none."""
    return next(iter(_markers(text, ix, words)), (-1, ""))


def _excluding(items: list[str], ix: _Index) -> list[tuple[str, str]]:
    """The fragments of one clause with an exclusion word, each marked what it says: "XX除外" /
    "XX不停电" exclude XX (see :func:`_exclusion`); "除XX外", "除了XX", "不含XX" exclude what
    follows up to the closing "外" (or the clause's end)."""
    out: list[tuple[str, str]] = []
    queue, listing = list(items), False
    while queue:
        item = queue.pop(0)
        if listing:
            at, word = _marker(item, ix, EXCLUDED_CLOSE)
            if at < 0:
                out.append((item, Out))
                continue
            out.append((item[:at], Out))
            item, listing = item[at + len(word):], False
        at, word, says = _exclusion(item, queue, ix, _bare(ix, out))
        if at < 0:
            out.append((item, Named))
            continue
        rest = item[at + len(word):]
        if says == Doubt:
            out.append((item[:at], Doubt))
        elif word in EXCLUDED_AFTER:
            _exclude_before(out, item[:at], ix, Out)
            rest = rest if word == "除外" else ""
        else:
            out.append((item[:at], Named))
            listing = True
        queue.insert(0, rest)
    return [(f, says) for f, says in out if f]


def _exclusion(item: str, queue: list[str], ix: _Index, after_place: bool
               ) -> tuple[int, str, str]:
    """The first word in ``item`` that does say a place is not off, as (position, word, what
    the place before it is: :data:`Out`, or :data:`Doubt` for a 除外 no place stands right
    before); (-1, "", "") when none does. ``after_place``: the fragment before ``item`` is a
    bare place ("南谢庄村 除外").

    Words saying so also say other things: "停电至恢复正常供电" is when power comes back, "保供电
    用户" are customers, "排除故障" removes one. Reading those as exclusions dropped the dark
    villages before them, so an after-word counts only right after a place (and, but for 除外,
    ending its fragment), a bare 除 only with its closing 外 and never as part of a verb."""
    for at, word in _markers(item, ix):
        before, rest = item[:at], item[at + len(word):]
        if word in EXCLUDED_BEFORE:
            if word.startswith("除") and at and item[at - 1] in _REMOVAL:
                continue
            if word == "除" and not any(
                    _marker(x, ix, EXCLUDED_CLOSE)[0] >= 0 for x in (rest, *queue)):
                continue
            return at, word, Out
        placed = _tail_start(ix, before) is not None if before else after_place
        if placed and (
                word == "除外" or _AFTER_END.fullmatch(rest)):
            return at, word, Out
        if word == "除外":
            return at, word, Doubt
    return -1, "", ""


def _bare(ix: _Index, out: list[tuple[str, str]]) -> bool:
    """Whether the last fragment of ``out`` is read as named and is only places — or area
    numbers listed before more ("1、2号台区除外", "王庄村一、二号台区除外": "1", "王庄村一")."""
    if not out or out[-1][1] != Named:
        return False
    fragment = out[-1][0]
    return any(_only_places(ix, normalise(f), False)
               for f in (fragment, fragment.rstrip("号#") + "号台区"))


def _exclude_before(out: list[tuple[str, str]], before: str, ix: _Index, says: str) -> None:
    """"…XX除外": XX is the places ``before`` ends with (after any 全村 / 部分 word: "王庄村全村
    1号台区除外" excludes area 1); when they are all of ``before``, the bare places listed just
    before it go with them ("南谢庄村、北董寨村除外": a 、-list is one subject of 除外, as in
    "（王庄村、南谢庄村除外）"); a fragment with other words ("王庄村全村", "王庄村停电") never does.
    XX is marked ``says`` (:data:`Out`, or :data:`Back` for restoration wording)."""
    cut = _tail_start(ix, before) or 0
    if cut:
        out.extend([(before[:cut], Named), (before[cut:], says)])
        return
    k = len(out)
    while _bare(ix, out[:k]):
        k -= 1
    out[k:] = [(f, says) for f, _ in out[k:]]
    out.append((before, says))


def _tail_start(ix: _Index, text: str) -> int | None:
    """Where the places ``text`` ends with begin ("王庄村全村1号台区": at "1号台区"), maybe with
    whole or partial words after them ("南谢庄村全村"); None when it ends with other words
    ("王庄村停电至恢复", "南谢庄村东头")."""
    return next((k for k in range(len(text))
                 if _only_places(ix, normalise(text[k:]), True)), None)


def _only_places(ix: _Index, key: str, qualified: bool) -> bool:
    """Whether ``key`` (normalised) is one or more places and nothing else — names, area
    numbers ("王庄村1号"), a township before them; with ``qualified``, whole or partial words
    may end it ("南谢庄村全村", "南谢庄村部分用户")."""
    if qualified:
        key = _QUALIFIER_TAIL.sub("", key)
    if not key:
        return False
    while key:
        n = _place_suffix(ix, key)
        if not n:
            return False
        key = key[:-n]
    return True


def _place_suffix(ix: _Index, key: str) -> int:
    """Length of the longest place name or run of area numbers ``key`` ends with (0: none)."""
    numbers = _NUMBER_TAIL.search(key)
    tables = (ix.areas, ix.villages, ix.feeders, ix.admin, ix.short_villages)
    named = next((k for k in range(min(len(key), ix.longest), 0, -1)
                  if any(key[-k:] in table for table in tables)), 0)
    return max(named, len(numbers[0]) if numbers else 0)


def _join_spaced(text: str, ix: _Index) -> str:
    """Drop the spaces inside one place's words ("王庄村 全村", "建设路社区 1号台区",
    "1号台区 至 3号台区"); a space before another place, or before words that are no
    qualifier, still separates."""
    parts = re.split(r"(\s+)", text)
    out = parts[0]
    for gap, word in zip(parts[1::2], parts[2::2], strict=True):
        left = SEPARATORS.split(out)[-1]
        out += word if _joins(ix, normalise(left), normalise(word)) else gap + word
    return out


def _joins(ix: _Index, left: str, right: str) -> bool:
    """Whether ``right`` (normalised, naming no place) continues ``left`` across a space: a
    qualifier or area number after a lone village name ("王庄村 全村", "王庄村 1号台区"), a
    whole-line word after a lone line name ("马集线 全线停电"), or a range ("1号台区 至
    3号台区"). Anything else stays a fragment of its own, as before."""
    if not left or not right or _names_any(ix, right):
        return False
    if left.endswith(RANGE_WORDS) or right.startswith(RANGE_WORDS):
        return True
    key = _skip_context(ix, left)[0]
    if key and _prefix(key, ix.feeders, ix.longest) == len(key) and _whole_line(right):
        return True
    n = _prefix(key, ix.villages, ix.longest)
    return (bool(key) and n == len(key) and _prefix(key, ix.areas, ix.longest) < n
            and (_area_number_first(right) or right.startswith(_QUALIFIERS)))


def _area_number_first(text: str) -> bool:
    """Whether ``text`` (normalised) starts with an area number: "2号", "二号", "三#"."""
    return text[0].isdigit() or normalise(text + "台区")[0].isdigit()


def _names_any(ix: _Index, text: str) -> bool:
    """Whether a place's name (area, village, line, county or township) occurs in ``text``."""
    tables = (ix.areas, ix.villages, ix.feeders, ix.admin)
    return any(_prefix(text[k:], table, ix.longest) for k in range(len(text)) for table in tables)


# -- reading fragments ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Found:
    """One place a fragment names: areas (maybe ambiguous), a village, or a feeder."""

    kind: str  # area | village | feeder
    #: a feeder's: empty for the record's own line ("全线停电" alone)
    ids: tuple[str, ...]
    #: a whole village ("全村"), or a whole line ("全线停电": every area of it)
    whole: bool = False
    #: a village named with nothing after it but whole words ("南谢庄村", "南谢庄村全村")
    exact: bool = False
    #: named as *not* off ("南谢庄村除外"); ``text`` is its fragment
    excluded: bool = False
    text: str = ""


def _prefix(key: str, table: dict[str, tuple[str, ...]] | dict[str, str] | set[str],
            longest: int) -> int:
    """Length of the longest key of ``table`` that ``key`` starts with (0: none)."""
    for k in range(min(len(key), longest), 0, -1):
        if key[:k] in table:
            return k
    return 0


def _skip_context(ix: _Index, key: str) -> tuple[str, str]:
    """``key`` without the county, township and substation names it starts with: context, not
    a place ("马集镇王庄村", "马集变王庄线"); and the substation's name ("马集"), if one was
    skipped. A substation counts only before a line leaving it."""
    station = ""
    while True:
        n = _prefix(key, ix.admin, ix.longest)
        if n and _prefix(key, ix.villages, ix.longest) >= n:
            n = 0
        if not n and (n := _station_prefix(ix, key)):
            station = _STATION_WORD.split(key[:n])[0]
        if not n:
            return key, station
        key = key[n:]


def _station_prefix(ix: _Index, key: str, line_follows: bool = True) -> int:
    """Length of the substation name ``key`` starts with ("马集变", "马集变电站"), 0 if none;
    with ``line_follows``, only when a line leaving that substation follows it."""
    for m in _STATION_WORD.finditer(key):
        station, n = key[:m.start()], m.end()
        if not station or station not in ix.stations:
            continue
        if not line_follows:
            return n
        k = _prefix(key[n:], ix.feeders, ix.longest)
        if k and any(ix.feeder_station.get(f) == station
                     for f in ix.feeder_labels.get(key[n:n + k], ())):
            return n
    return 0


def _long_form(ix: _Index, key: str) -> str | None:
    """"王庄全村" and "王庄行政村…" spelled with the village's name ("王庄村全村"), or None."""
    for k in range(min(len(key), ix.longest), 1, -1):
        full = ix.short_villages.get(key[:k])
        if full is None:
            continue
        tail = key[k:]
        if tail.startswith("行政村"):
            return full + tail[3:]
        if tail.startswith(("全村", "整村")):
            return full + tail
    return None


def area_numbers(text: str) -> tuple[list[int], int] | None:
    """The area numbers ``text`` (normalised) starts with when it lists two or more of them,
    singly or as a range, ending in "号台区" ("1-3号台区", "1号至3号台区", "1号2号台区"), and the
    length read; None otherwise (one number, a reversed or too wide range, "1-3组")."""
    run = _RUN.match(text)
    end = run.group().rfind("号台区") if run else -1
    if run is None or end < 0:
        return None
    items = list(_RUN_ITEM.finditer(run.group()[:end + 3]))
    numbers: list[int] = []
    for item, after in zip(items, [*items[1:], None], strict=True):
        low = int(item[1])
        if item[2] and after is not None:
            high = int(after[1])
            if not low < high <= low + MAX_RANGE:
                return None
            numbers.extend(range(low, high))
        else:
            numbers.append(low)
    return (numbers, end + 3) if len(items) > 1 else None


class _Reader:
    """Reads fragments in order, remembering the last village named (for "2号台区")."""

    def __init__(self, ix: _Index) -> None:
        self.ix = ix
        self.village: str | None = None
        #: the village of the excluded fragment just read, for an excluded "2号台区" after it
        self.out_village: str | None = None
        self.found: list[_Found] = []
        self.unplaced: list[str] = []

    def read_piece(self, fragment: str, says: str) -> None:
        """Read one fragment; an excluded one's places are marked so, and it does not change
        which village a following "2号台区" belongs to — but for an excluded one right after it
        ("北董寨村全村，王庄村1号、2号台区除外": 王庄村's area 2). A doubtful exclusion's places
        are read as named, and the fragment is unplaced too: a person reads what it may exclude."""
        start, village = len(self.found), self.village
        if says == Out and self.out_village is not None:
            self.village = self.out_village
        placed = self.read(normalise(fragment))
        self.found[start:] = [replace(f, text=fragment) if f.kind == "feeder" and not f.ids
                              else f for f in self.found[start:]]
        self.out_village = self.village if says == Out else None
        if says == Out:
            self.village = village
            self.found[start:] = [_Found(f.kind, f.ids, f.whole, f.exact, True, fragment)
                                  for f in self.found[start:]]
        if (not placed or says == Doubt) and fragment not in self.unplaced:
            self.unplaced.append(fragment)

    def read(self, key: str, depth: int = 0) -> bool:
        """Record what ``key`` names; False when it names nothing known."""
        ix = self.ix
        key, station = _skip_context(ix, key)
        if not key:
            return True  # only a county, township or substation: context, not a place
        if self._numbered(key, depth):
            return True
        if depth == 0 and _whole_line(key, LINE_WORDS):
            self.found.append(_Found("feeder", (), whole=True))  # the record's own line
            return True
        lengths = [_prefix(key, ix.areas, ix.longest), _prefix(key, ix.villages, ix.longest),
                   _prefix(key, ix.feeders, ix.longest)]
        best = max(lengths)
        if best == 0 or depth > 8:
            longer = _long_form(ix, key) if depth <= 8 else None
            return self.read(longer, depth + 1) if longer else self._in_village(key, depth)
        rest = key[best:]
        if lengths[0] == best:
            self._area(ix.areas[key[:best]], rest, depth)
        elif lengths[1] == best:
            self._village(ix.villages[key[:best]], rest, depth)
        else:
            return self._feeder(key[:best], rest, station, depth)
        return True

    def _feeder(self, label: str, rest: str, station: str, depth: int) -> bool:
        """A line, narrowed by the substation named before or after it ("马集变王庄线",
        "王庄线（马集变）") when several lines share its name; False when none of them leaves the
        substation named."""
        ix = self.ix
        ids = ix.feeder_labels.get(label) or (ix.feeders[label],)
        after = _BRACKETED.match(rest)
        if after and station_name(after[1]) in ix.stations:
            station, rest = station_name(after[1]), rest[after.end():]
        if station:
            ids = tuple(f for f in ids if ix.feeder_station.get(f) == station)
        if not ids:
            return False
        self.found.append(_Found("feeder", ids, whole=_whole_line(rest)))
        self._rest(rest, depth)
        return True

    def _area(self, ids: tuple[str, ...], rest: str, depth: int) -> None:
        ix = self.ix
        if self.village is not None and len(ids) > 1:
            ids = tuple(t for t in ids if t in ix.village_areas.get(self.village, ())) or ids
        self.found.append(_Found("area", ids))
        villages = {ix.area_village.get(t) for t in ids}
        if len(villages) == 1:
            self.village = villages.pop()
        self._rest(rest, depth)

    def _village(self, vids: tuple[str, ...], rest: str, depth: int) -> None:
        self.village = vids[0] if len(vids) == 1 else None
        if rest and self._in_village(rest, depth):
            return  # "王庄村1号": one of its areas, named without "台区"
        partial = any(w in rest for w in PARTIAL_WORDS)
        whole = any(w in rest for w in WHOLE_WORDS) and not partial
        self.found.append(_Found("village", vids, whole, exact=whole or not rest))
        if rest and not whole and not partial:
            self._rest(rest, depth)

    def _rest(self, rest: str, depth: int) -> None:
        """What follows a place: another place without a separator, or (ignored) wording."""
        if rest:
            self.read(rest, depth + 1)

    def _numbered(self, key: str, depth: int) -> bool:
        """"王庄村1-3号台区", "王庄村1号台区至3号台区": several areas of one village."""
        ix = self.ix
        n = _prefix(key, ix.villages, ix.longest)
        vids = ix.villages[key[:n]] if n else ()
        if len(vids) == 1 and self._run(vids[0], key[n:], depth):
            self.village = vids[0]
            return True
        return False

    def _run(self, village: str, text: str, depth: int) -> bool:
        """Confirm the areas a run of numbers names in ``village``; a number it has no area
        for is unplaced, by name ("王庄村12号台区")."""
        parsed = area_numbers(text)
        if parsed is None:
            return False
        numbers, used = parsed
        own, mine = self.ix.village_key[village], self.ix.village_areas[village]
        for number in dict.fromkeys(numbers):
            name = f"{own}{number}号台区"
            ids = tuple(t for t in self.ix.areas.get(name, ()) if t in mine)
            if ids:
                self.found.append(_Found("area", ids))
            else:
                self.unplaced.append(name)
        self._rest(text[used:], depth)
        return True

    def _in_village(self, key: str, depth: int) -> bool:
        """A fragment like "2号台区" after "王庄村1号台区": an area of the last village named."""
        if self.village is None:
            return False
        if self._run(self.village, key, depth):
            return True
        own = self.ix.village_key[self.village]
        mine = self.ix.village_areas[self.village]
        for full in (own + key, normalise(own + key + "台区")):
            n = _prefix(full, self.ix.areas, self.ix.longest)
            ids = tuple(t for t in self.ix.areas[full[:n]] if t in mine) if n > len(own) else ()
            if ids:
                self.found.append(_Found("area", ids))
                return True
        return False


def _whole_line(text: str, words: tuple[str, ...] = LINE_WHOLE_WORDS) -> bool:
    """Whether ``text`` (normalised, what follows a line's name) says the whole line is off:
    it starts with one of ``words`` and says nothing of a part ("全线部分停电")."""
    return text.startswith(words) and not any(w in text for w in PARTIAL_WORDS)


def resolve_area_text(topology: Topology, text: str, feeder: str | None = None) -> AreaScope:
    """The areas ``text`` names (see the module doc). ``feeder`` is the event's resolved feeder
    id, if any: it narrows imprecise wording to the village's areas on that feeder. Never raises
    on any text; only returns ids that exist in ``topology``."""
    if not text or not text.strip():
        return AreaScope()
    ix = _index(topology)
    pieces, reader = _read_pieces(ix, _pieces(text, ix))
    named = next((f.ids[0] for f in reader.found
                  if f.kind == "feeder" and not f.excluded and len(f.ids) == 1), None)
    on = feeder or named
    confirmed, possible = _scope(topology, ix, [f for f in reader.found if not f.excluded], on)
    off, unclear = _excluded(topology, ix, [f for f in reader.found if f.excluded], on)
    if on is None:  # "全线停电" of no line known: a person reads it
        unclear.extend(f.text for f in reader.found if f.kind == "feeder" and not f.ids)
    return AreaScope(
        confirmed=tuple(t for t in confirmed if t not in off),
        possible=tuple(t for t in possible if t not in confirmed and t not in off),
        feeder=named,
        unplaced=(*reader.unplaced, *(f for f in dict.fromkeys(unclear)
                                      if f not in reader.unplaced)),
        excluded=tuple(dict.fromkeys(f for f, says in pieces if says == Out)),
    )


def _read_pieces(ix: _Index, pieces: list[tuple[str, str]]
                 ) -> tuple[list[tuple[str, str]], _Reader]:
    """Read ``pieces``, the places said to be back (:data:`Back`) as *not* off — unless
    nothing else is left in: "王庄村已恢复送电" alone is a restoration record's own scope (the
    areas that came back), which must still name them. Returns the pieces as read."""
    read = [(f, Out if says == Back else says) for f, says in pieces]
    reader = _read(ix, read)
    if any(says == Back for _, says in pieces) and all(f.excluded for f in reader.found):
        read = [(f, Named if says == Back else says) for f, says in pieces]
        reader = _read(ix, read)
    return read, reader


def _read(ix: _Index, pieces: list[tuple[str, str]]) -> _Reader:
    reader = _Reader(ix)
    for fragment, says in pieces:
        reader.read_piece(fragment, says)
    return reader


def _scope(topology: Topology, ix: _Index, found: list[_Found], on: str | None
           ) -> tuple[dict[str, None], dict[str, None]]:
    """The confirmed and the possible areas of what was found (ordered, without repeats)."""
    confirmed: dict[str, None] = {}
    possible: dict[str, None] = {}
    for f in found:
        if f.kind == "area":
            ids = _narrow(topology, f.ids, on)
            (confirmed if len(ids) == 1 else possible).update(dict.fromkeys(ids))
        elif f.kind == "feeder" and f.whole:
            lines = _whole_lines(f.ids, on)
            fed = (t for line in lines for t in ix.feeder_areas.get(line, ()))
            (confirmed if len(lines) == 1 else possible).update(dict.fromkeys(fed))
        elif f.kind == "village":
            vids = _narrow_villages(topology, ix, f.ids, on)
            if f.whole and len(vids) == 1:
                confirmed.update(dict.fromkeys(ix.village_areas[vids[0]]))
                continue
            for v in vids:
                areas = ix.village_areas[v]
                narrowed = _on_feeder(topology, areas, on) if on is not None else ()
                possible.update(dict.fromkeys(narrowed or areas))
    return confirmed, possible


def _whole_lines(ids: tuple[str, ...], on: str | None) -> tuple[str, ...]:
    """The lines a whole-line wording means: those named (of several sharing a name, the
    record's line ``on`` if it is one of them), or, named none, the record's line."""
    if not ids:
        return (on,) if on is not None else ()
    return (on,) if len(ids) > 1 and on in ids else ids


def _excluded(topology: Topology, ix: _Index, found: list[_Found], on: str | None
              ) -> tuple[set[str], list[str]]:
    """The areas the text says are not off, and the excluded fragments that name no one area
    or whole village (ambiguous, "南谢庄村东头除外"): those are unplaced, never guessed."""
    off: set[str] = set()
    unclear: dict[str, None] = {}
    for f in found:
        if f.kind == "area":
            ids = _narrow(topology, f.ids, on)
            if len(ids) == 1:
                off.update(ids)
            else:
                unclear[f.text] = None
        elif f.kind == "village":
            vids = _narrow_villages(topology, ix, f.ids, on)
            if len(vids) == 1 and f.exact:
                off.update(ix.village_areas[vids[0]])
            else:
                unclear[f.text] = None
    return off, list(unclear)


def _narrow(topology: Topology, ids: tuple[str, ...], on: str | None) -> tuple[str, ...]:
    """Areas sharing a name: those on the line ``on``, if any is."""
    if len(ids) > 1 and on is not None:
        return tuple(t for t in ids if topology.feeder_of(t) == on) or ids
    return ids


def _narrow_villages(topology: Topology, ix: _Index, vids: tuple[str, ...], on: str | None
                     ) -> tuple[str, ...]:
    """Villages sharing a name: those with an area on the line ``on``, if any has."""
    if len(vids) > 1 and on is not None:
        return tuple(v for v in vids if _on_feeder(topology, ix.village_areas[v], on)) or vids
    return vids


def _on_feeder(topology: Topology, areas: Iterable[str], feeder: str) -> tuple[str, ...]:
    return tuple(t for t in areas if topology.feeder_of(t) == feeder)


def find_feeder(topology: Topology, name: str) -> str | None:
    """The feeder id a line name means, compared in normalised form ("10KV马集线", "马集线",
    an alias), also with its substation or switch number ("马集变10kV王庄线", "10kV王庄线
    （马集变）", "10kV王庄线911"), or None. Feeds write lines all these ways; a name that fits
    two lines is None, never a guess, and a substation named must be the line's own."""
    if not name:
        return None
    ix = _index(topology)
    key = normalise(name)
    fits = ix.feeder_labels.get(key) or qualified_feeders(topology, name)
    return fits[0] if len(fits) == 1 else None


def qualified_feeders(topology: Topology, name: str) -> tuple[str, ...]:
    """Every feeder a line name with its substation or switch number may mean, once those are
    set aside ("马集变10kV王庄线", "10kV王庄线（马集变）", "10kV王庄线911"): the lines of that
    name, leaving the substation named if one is. Empty when the name has no such part."""
    ix = _index(topology)
    key = normalise(name)
    station = ""
    if (bracket := _BRACKETED.search(key)) and bracket.end() == len(key):
        station, key = station_name(bracket[1]), key[:bracket.start()]
        if station not in ix.stations:
            return ()
    elif n := _station_prefix(ix, key, line_follows=False):
        station, key = station_name(key[:n]), key[n:]
    line = _LINE_NUMBER.sub("", key)
    line = line[:-2] if line.endswith("出线") else line
    if line == normalise(name):
        return ()
    return tuple(f for f in ix.feeder_labels.get(line, ())
                 if not station or ix.feeder_station.get(f) == station)
