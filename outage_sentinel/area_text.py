"""Scope from words: the transformer areas an outage notice's area text names. Pure.

95598 notices often give their scope only as text ("南谢庄村全村", "王庄村1号、2号台区",
"人民路社区部分用户", "10kV马集线"). :func:`resolve_area_text` reads such text against the
topology bundle's names (and ``aliases.csv``) and says which areas it names, with the precision
the words allow:

* ``confirmed``: precise wording — "XX村全村" (every area of the village), "XX台区", "XX#公变",
  "XX#变", a transformer area's name or id;
* ``possible`` (可能受影响): imprecise wording — "XX村部分用户", "XX村部分", "XX村附近", a bare
  village name: the village's areas on the named feeder (all its areas when no feeder is known
  or none of them is on it);
* ``feeder``: the first line the text names ("10kV马集线"), for events that named none;
* ``unplaced``: the fragments nothing in the bundle matched.

The rules are documented in docs/area_text.md. No I/O, no clock; the name index of a topology
is built once and cached for as long as the topology lives.
"""

from __future__ import annotations

import re
import unicodedata
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field

from outage_sentinel.topology import Topology

#: Fragment separators: Chinese and ASCII commas and semicolons, slashes, whitespace.
SEPARATORS = re.compile(r"[、，,；;/\s]+")
#: Conjunctions that separate fragments too, except inside a known name ("和平社区").
CONJUNCTIONS = ("及", "和")
#: Voltage levels stripped from the text ("10kV马集线" reads as "马集线").
_VOLTAGE = re.compile(r"(?<![\d.])(?:0\.4|10|20|35|110|220)\s*kv", re.IGNORECASE)
#: Numbered transformer designators, all read as "N号台区": "2#公变", "#2变", "2号配变", "2台区".
_NUMBERED = re.compile(r"#?(\d+)\s*(?:#|号)?\s*(?:公用变压器|公变|配变|专变|变压器|变台|台区|变)")
#: Unnumbered designators read as "台区" ("南谢庄村公变" = "南谢庄村台区").
_UNNUMBERED = re.compile(r"公用变压器|公变|配变")
#: Words saying the whole place is off.
WHOLE_WORDS = ("全村", "全部", "所有", "整村", "全体", "全域")
#: Words saying only part of it may be.
PARTIAL_WORDS = ("部分", "附近", "周边", "周围", "一带", "局部", "个别", "少数", "沿线")


@dataclass(frozen=True)
class AreaScope:
    """What an area text names. Ids are transformer-area node ids of the topology; ``possible``
    never repeats a ``confirmed`` one."""

    confirmed: tuple[str, ...] = ()
    possible: tuple[str, ...] = ()
    feeder: str | None = None
    unplaced: tuple[str, ...] = ()


def normalise(text: str) -> str:
    """The comparable form of a name or fragment: NFKC (full-width digits, letters and ``＃``
    to half-width), voltage levels, spaces and a trailing "等" removed, "村委会" read as "村",
    numbered transformer designators ("2#公变", "#2变", "2号台区") in one form."""
    t = unicodedata.normalize("NFKC", text)
    t = _VOLTAGE.sub("", t)
    t = t.replace("村民委员会", "村").replace("村委会", "村")
    t = "".join(t.split()).rstrip("等")
    t = _NUMBERED.sub(r"\1号台区", t)
    return _UNNUMBERED.sub("台区", t)


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
    #: village id -> the name fragments after it are tried with ("2号台区" after "王庄村1号")
    village_key: dict[str, str] = field(default_factory=dict)
    #: county and township names, read as context and skipped ("马集镇王庄村")
    admin: set[str] = field(default_factory=set)
    #: names containing a conjunction, never split
    protected: tuple[str, ...] = ()
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
    names: list[str] = []
    by_village: dict[str, list[str]] = {}
    for t in topology.transformers:
        node = topology.nodes[t]
        _add(ix.areas, normalise(t), t)
        _add(ix.areas, normalise(node.name), t)
        names.append(node.name)
        if node.village:
            by_village.setdefault(node.village, []).append(t)
            ix.area_village[t] = node.village
    ix.village_areas = {v: tuple(ts) for v, ts in by_village.items()}
    for vid, village in topology.villages.items():
        if vid in ix.village_areas:
            _add(ix.villages, normalise(village.name), vid)
            _add(ix.villages, normalise(vid), vid)
            ix.village_key[vid] = normalise(village.name) or normalise(vid)
            names.append(village.name)
        for admin in (village.township, village.extra.get("county", "")):
            if normalise(admin):
                ix.admin.add(normalise(admin))
    for fid in topology.feeder_ids:
        ix.feeders.setdefault(normalise(fid), fid)
    for fid, label in topology.feeder_names.items():
        ix.feeders.setdefault(normalise(label), fid)
    for label, fid in topology.feeder_by_name.items():
        ix.feeders.setdefault(normalise(label), fid)
    # Aliases are explicit: they take precedence over a clashing name.
    for alias in topology.aliases:
        key = normalise(alias.alias)
        names.append(alias.alias)
        if alias.kind == "feeder":
            ix.feeders[key] = alias.id
        elif alias.kind == "village" and alias.id in ix.village_areas:
            ix.villages[key] = (alias.id,)
        elif alias.kind == "transformer":
            ix.areas[key] = (alias.id,)
    ix.feeders.pop("", None)
    ix.admin -= set(ix.villages) | set(ix.areas) | set(ix.feeders)
    ix.protected = tuple(sorted({unicodedata.normalize("NFKC", n) for n in names
                                 if any(c in n for c in CONJUNCTIONS)}, key=len, reverse=True))
    keys = [*ix.areas, *ix.villages, *ix.feeders, *ix.admin]
    ix.longest = max((len(k) for k in keys), default=1)
    return ix


def split_fragments(text: str, protected: Iterable[str] = ()) -> list[str]:
    """Split area text on 、，,；;/ and whitespace, and on 及/和 outside the ``protected`` names.
    Fragments are NFKC-normalised, in order, empty ones dropped."""
    out: list[str] = []
    names = tuple(protected)
    for piece in SEPARATORS.split(unicodedata.normalize("NFKC", text)):
        if not piece:
            continue
        keep = [False] * len(piece)
        for name in names:
            start = piece.find(name)
            while start >= 0:
                for k in range(start, start + len(name)):
                    keep[k] = True
                start = piece.find(name, start + 1)
        begin = 0
        for k, ch in enumerate(piece):
            if ch in CONJUNCTIONS and not keep[k]:
                if k > begin:
                    out.append(piece[begin:k])
                begin = k + 1
        if begin < len(piece):
            out.append(piece[begin:])
    return out


@dataclass(frozen=True)
class _Found:
    """One place a fragment names: areas (maybe ambiguous), a village, or a feeder."""

    kind: str  # area | village | feeder
    ids: tuple[str, ...]
    whole: bool = False


def _prefix(key: str, table: dict[str, tuple[str, ...]] | dict[str, str] | set[str],
            longest: int) -> int:
    """Length of the longest key of ``table`` that ``key`` starts with (0: none)."""
    for k in range(min(len(key), longest), 0, -1):
        if key[:k] in table:
            return k
    return 0


class _Reader:
    """Reads fragments in order, remembering the last village named (for "2号台区")."""

    def __init__(self, ix: _Index) -> None:
        self.ix = ix
        self.village: str | None = None
        self.found: list[_Found] = []

    def read(self, key: str, depth: int = 0) -> bool:
        """Record what ``key`` names; False when it names nothing known."""
        ix = self.ix
        while (n := _prefix(key, ix.admin, ix.longest)) and not (
                _prefix(key, ix.villages, ix.longest) >= n):
            key = key[n:]
        if not key:
            return True  # only a county or township: context, not a place
        lengths = [_prefix(key, ix.areas, ix.longest), _prefix(key, ix.villages, ix.longest),
                   _prefix(key, ix.feeders, ix.longest)]
        best = max(lengths)
        if best == 0 or depth > 8:
            return self._in_village(key)
        rest = key[best:]
        if lengths[0] == best:
            ids = ix.areas[key[:best]]
            if self.village is not None and len(ids) > 1:
                ids = tuple(t for t in ids if t in ix.village_areas.get(self.village, ())) or ids
            self.found.append(_Found("area", ids))
            villages = {ix.area_village.get(t) for t in ids}
            if len(villages) == 1:
                self.village = villages.pop()
            self._rest(rest, depth)
        elif lengths[1] == best:
            vids = ix.villages[key[:best]]
            self.village = vids[0] if len(vids) == 1 else None
            if rest and self._in_village(rest):
                return True  # "王庄村1号": one of its areas, named without "台区"
            whole = any(w in rest for w in WHOLE_WORDS) and not any(
                w in rest for w in PARTIAL_WORDS)
            self.found.append(_Found("village", vids, whole))
            if rest and not whole and not any(w in rest for w in PARTIAL_WORDS):
                self._rest(rest, depth)
        else:
            self.found.append(_Found("feeder", (ix.feeders[key[:best]],)))
            self._rest(rest, depth)
        return True

    def _rest(self, rest: str, depth: int) -> None:
        """What follows a place: another place without a separator, or (ignored) wording."""
        if rest:
            self.read(rest, depth + 1)

    def _in_village(self, key: str) -> bool:
        """A fragment like "2号台区" after "王庄村1号台区": an area of the last village named."""
        if self.village is None:
            return False
        own = self.ix.village_key[self.village]
        mine = self.ix.village_areas[self.village]
        for full in (own + key, normalise(own + key + "台区")):
            n = _prefix(full, self.ix.areas, self.ix.longest)
            ids = tuple(t for t in self.ix.areas[full[:n]] if t in mine) if n > len(own) else ()
            if ids:
                self.found.append(_Found("area", ids))
                return True
        return False


def resolve_area_text(topology: Topology, text: str, feeder: str | None = None) -> AreaScope:
    """The areas ``text`` names (see the module doc). ``feeder`` is the event's resolved feeder
    id, if any: it narrows imprecise wording to the village's areas on that feeder. Never raises
    on any text; only returns ids that exist in ``topology``."""
    if not text or not text.strip():
        return AreaScope()
    ix = _index(topology)
    reader = _Reader(ix)
    unplaced: list[str] = []
    for fragment in split_fragments(text, ix.protected):
        if not reader.read(normalise(fragment)):
            unplaced.append(fragment)
    named = next((f.ids[0] for f in reader.found if f.kind == "feeder"), None)
    on = feeder or named
    confirmed: dict[str, None] = {}
    possible: dict[str, None] = {}
    for f in reader.found:
        if f.kind == "area":
            ids = f.ids
            if len(ids) > 1 and on is not None:
                ids = tuple(t for t in ids if topology.feeder_of(t) == on) or ids
            (confirmed if len(ids) == 1 else possible).update(dict.fromkeys(ids))
        elif f.kind == "village":
            vids = f.ids
            if len(vids) > 1 and on is not None:
                vids = tuple(v for v in vids if _on_feeder(topology, ix.village_areas[v], on)
                             ) or vids
            if f.whole and len(vids) == 1:
                confirmed.update(dict.fromkeys(ix.village_areas[vids[0]]))
                continue
            for v in vids:
                areas = ix.village_areas[v]
                narrowed = _on_feeder(topology, areas, on) if on is not None else ()
                possible.update(dict.fromkeys(narrowed or areas))
    return AreaScope(
        confirmed=tuple(confirmed),
        possible=tuple(t for t in possible if t not in confirmed),
        feeder=named,
        unplaced=tuple(unplaced),
    )


def _on_feeder(topology: Topology, areas: Iterable[str], feeder: str) -> tuple[str, ...]:
    return tuple(t for t in areas if topology.feeder_of(t) == feeder)


def find_feeder(topology: Topology, name: str) -> str | None:
    """The feeder id a line name means, compared in normalised form ("10KV马集线", "马集线",
    an alias), or None."""
    return _index(topology).feeders.get(normalise(name)) if name else None
