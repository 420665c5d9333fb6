"""OpenDSS importer (``.dss`` scripts: IEEE and EPRI test feeders, SMART-DS, decks written by
utilities' tools): the master-file choice, :func:`parse`, and the network builder.

The deck is run by :mod:`outage_sentinel.importers.dss_script` the way OpenDSS runs it; this
module reads the elements it leaves defined into the network: ``New Circuit``/``Vsource`` (the
sources; several on one bus, one per phase, are one source), ``Line`` (``Switch=y`` or a
``SwtControl`` make it a switch; ``Enabled=no``, ``Open``, a ``SwtControl`` whose normal state is
open, or a far bus named ``<bus>_OPEN`` as in the IEEE 123 master file make it a normally-open
tie), ``Fuse``/``Recloser``/``Relay`` (put on the line or transformer they switch as a fuse /
recloser / breaker; normally open when their normal state is open), ``Transformer`` (windings
from ``buses``/``kvs``, ``wdg=`` with ``bus``/``kv``, or an ``XfmrCode``; a *service* transformer
when a winding is below 1 kV and another is not; service transformers sharing a primary bus and
a secondary network are one bank, one area), series ``Reactor``/``Capacitor`` (``bus2`` another
bus), ``Load`` (``NumCust`` customers each, default 1) and bus coordinates as ``x``/``y`` columns
(without a coordinates command, from the first ``*coord*`` file beside the master). A deck
without a circuit or an enabled source is an :class:`ImportError_`, and so is an element that
cannot be read into the network (naming the file and line of its ``New``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from outage_sentinel.importers.common import Branch, ImportError_, RawNetwork
from outage_sentinel.importers.dss_script import (
    TRANSFORMERS,
    Element,
    Script,
    base_bus,
    is_yes,
    line_values,
    read_text,
    unquote,
)

DEVICE_OF = {"fuse": "fuse", "recloser": "recloser", "relay": "breaker"}
SERVICE_KV = 1.0  # a winding below this is a service transformer's secondary
_SERIES = ("reactor", "capacitor")  # a series element when bus2 is another bus

# -- from the script to the network ----------------------------------------------------------------


class _Device(NamedTuple):
    kind: str
    name: str
    normally_open: bool


@dataclass
class _Xfmr:
    """A transformer's connections: primary, secondary, and further windings."""

    hv: str
    lv: str
    service: bool
    lv_more: list[str]  # other secondary windings (service transformers), joined to ``lv``
    more: list[str]  # other windings, joined to ``hv`` through the transformer


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        self.parent[self.find(a)] = self.find(b)


def _normally_open(el: Element) -> bool:
    """Normal state: ``Normal=``, else the first ``Action``/``State`` given (open or trip)."""
    state = el.props.get("normal") or el.props.get("first_state") or ""
    return state.strip()[:1].lower() in ("o", "t")


def _distinct(buses: list[str], taken: set[str]) -> list[str]:
    out: list[str] = []
    for bus in buses:
        if bus not in taken and bus not in out:
            out.append(bus)
    return out


class _Builder:
    """The RawNetwork of a run script."""

    def __init__(self, script: Script, master: Path) -> None:
        self.script, self.master = script, master
        self.net = RawNetwork(name=script.circuit)
        self.net.warnings = script.warnings
        self.ends: dict[str, tuple[str, str, bool]] = {}
        self.devices: dict[str, list[_Device]] = {}
        self.switches: dict[str, bool] = {}
        self.xfmrs: dict[str, _Xfmr] = {}
        self.merged: set[str] = set()

    def warn(self, el: Element, text: str) -> None:
        self.net.warnings.append(f"{el.where}: {el.label}: {text}")

    def elements(self, *classes: str) -> list[Element]:
        els = (self.script.elements[k] for k in self.script.order)
        return [el for el in els if el.cls in classes]

    def name_of(self, base: str) -> str:
        """A bus's name as first written (``N1`` and ``n1`` are one bus)."""
        return self.script.buses.get(base.lower(), base)

    def build(self) -> RawNetwork:
        self._sources()
        self._devices()
        self.ends = {el.key: e for el in self.elements("line") if (e := self._line_ends(el))}
        self.xfmrs = {el.key: x for el in self.elements(*TRANSFORMERS) if (x := self._xfmr(el))}
        self.merged = self._banks()
        for key in self.script.order:
            el = self.script.elements[key]
            try:
                self._element(el)
            except Exception as exc:  # a bad deck must end in a message, never in a traceback
                raise ImportError_(f"{el.where}: cannot import {el.label} "
                                   f"({type(exc).__name__}: {exc})") from exc
        self._coordinates()
        return self.net

    def _element(self, el: Element) -> None:
        if el.cls == "line":
            self._line(el)
        elif el.cls in TRANSFORMERS:
            self._transformer(el)
        elif el.cls in _SERIES:
            self._series(el)
        elif el.cls == "load":
            self._load(el)

    def _sources(self) -> None:
        """Enabled Vsources; several on one bus (one per phase) are one source."""
        for el in self.elements("vsource"):
            bus = self.name_of(base_bus(el.props.get("bus1", "SourceBus")))
            if el.enabled and all(bus != b for _, b in self.net.sources):
                name = self.script.circuit if el.key == "vsource.source" else el.name
                self.net.sources.append((name, self.net.bus(bus)))
        if not self.net.sources:
            raise ImportError_(f"{self.master}: circuit {self.script.circuit} has no enabled "
                               "source (its Vsource is disabled)")

    def _devices(self) -> None:
        """Fuses, reclosers, relays by the element they switch; SwtControl switch states."""
        for el in self.elements("swtcontrol", *DEVICE_OF):
            if not el.enabled:
                self.warn(el, "disabled; skipped")
                continue
            target = self._target(el)
            if target is None:
                continue
            if el.cls == "swtcontrol" and not target.startswith("line."):
                self.warn(el, f"switches {target}, not a line; skipped")
            elif el.cls == "swtcontrol":
                self.switches[target] = _normally_open(el)
            else:
                device = _Device(DEVICE_OF[el.cls], el.name, _normally_open(el))
                self.devices.setdefault(target, []).append(device)

    def _target(self, el: Element) -> str | None:
        raw = el.props.get("switchedobj") or ""
        cls, dot, name = unquote(raw).partition(".")
        target = f"{cls.strip().lower()}.{unquote(name).lower()}" if dot else f"line.{cls.lower()}"
        if not raw.strip():
            self.warn(el, "monitors nothing; skipped")
        elif target.split(".", 1)[0] not in ("line", *TRANSFORMERS):
            self.warn(el, f"monitors {raw}, not a line or transformer; skipped")
        elif target not in self.script.elements:
            self.warn(el, f"monitors {raw}, which is not defined; skipped")
        else:
            return target
        return None

    # -- lines -------------------------------------------------------------------------------------

    def _line_ends(self, el: Element) -> tuple[str, str, bool] | None:
        """(bus1, bus2, drawn as an open tie to ``<bus>_OPEN``), or None with a warning."""
        a, b = base_bus(el.props.get("bus1", "")), base_bus(el.props.get("bus2", ""))
        if not a or not b:
            self.warn(el, "no bus1 or bus2; skipped")
            return None
        tie = b.lower().endswith("_open")
        if tie:
            b = b[: -len("_open")]
        a, b = self.name_of(a), self.name_of(b)
        if a == b:
            self.warn(el, f"bus1 and bus2 are the same bus {a}; skipped")
            return None
        return a, b, tie

    def _line_open(self, el: Element) -> bool:
        tie = self.ends[el.key][2]
        return tie or not el.enabled or el.opened or self.switches.get(el.key, False)

    def _line(self, el: Element) -> None:
        """A line: a plain branch, or a chain of its switch and the devices on it."""
        if el.key not in self.ends:
            return
        a, b, _ = self.ends[el.key]
        is_open = self._line_open(el)
        self.net.bus(a)
        self.net.bus(b)
        chain: list[_Device] = []
        if is_yes(el.props.get("switch", "n")) or el.key in self.switches:
            chain.append(_Device("switch", el.name, False))
        chain.extend(self.devices.get(el.key, []))
        if not chain:
            if not is_open:
                self.net.branches.append(Branch(el.name, "line", a, b))
                return
            chain.append(_Device("switch", el.name, False))  # an open line is a tie in all but name
        prev = a
        for step, device in enumerate(chain):
            nxt = b if step == len(chain) - 1 else self.net.bus(f"{el.name}#{step + 1}")
            self.net.branches.append(Branch(device.name, device.kind, prev, nxt, normally_open=(
                device.normally_open or (is_open and step == 0))))
            prev = nxt

    def _series(self, el: Element) -> None:
        """A series reactor or capacitor (bus2 another bus) joins its buses like a line."""
        a, b = base_bus(el.props.get("bus1", "")), base_bus(el.props.get("bus2", ""))
        if not (a and b) or not el.enabled or el.opened:
            return
        a, b = self.name_of(a), self.name_of(b)
        if a != b:
            self.net.branches.append(Branch(el.name, "line", self.net.bus(a), self.net.bus(b)))

    # -- transformers ------------------------------------------------------------------------------

    def _xfmr(self, el: Element) -> _Xfmr | None:
        if not el.enabled:
            return None
        if el.opened:
            self.warn(el, "opened by an Open command; read as disconnected")
            return None
        wound = [(self.name_of(base_bus(w.bus)), w.kv) for w in el.windings if base_bus(w.bus)]
        if len(wound) < 2:
            self.warn(el, "fewer than two buses; skipped")
            return None
        kvs = [kv for _, kv in wound]
        if not min(kvs) < SERVICE_KV <= max(kvs):
            hv, lv = wound[0][0], wound[1][0]
            return _Xfmr(hv, lv, False, [], _distinct([b for b, _ in wound[2:]], {hv, lv}))
        hv, lv = wound[kvs.index(max(kvs))][0], wound[kvs.index(min(kvs))][0]
        low = [b for b, kv in wound if kv < SERVICE_KV]
        high = [b for b, kv in wound if kv >= SERVICE_KV]
        return _Xfmr(hv, lv, True, _distinct(low, {lv}), _distinct(high, {hv}))

    def _banks(self) -> set[str]:
        """Service transformers on one primary bus feeding one secondary network (a bank of
        single-phase units) make one area; the keys of all but the first of each bank."""
        joined = _UnionFind()
        for el in self.elements("line", *_SERIES):
            a, b = self._closed_ends(el)
            if a and b:
                joined.union(a, b)
        groups: dict[tuple[str, str], list[str]] = {}
        for key, x in self.xfmrs.items():
            if x.service and joined.find(x.lv) != joined.find(x.hv):
                groups.setdefault((x.hv, joined.find(x.lv)), []).append(key)
        banks = [members for members in groups.values() if len(members) > 1]
        if banks:
            self._warn_banks(banks)
        return {key for members in banks for key in members[1:]}

    def _closed_ends(self, el: Element) -> tuple[str, str]:
        if el.cls == "line":
            ends = self.ends.get(el.key)
            return (ends[0], ends[1]) if ends and not self._line_open(el) else ("", "")
        a, b = base_bus(el.props.get("bus1", "")), base_bus(el.props.get("bus2", ""))
        if not (a and b and el.enabled and not el.opened):
            return "", ""
        return self.name_of(a), self.name_of(b)

    def _warn_banks(self, banks: list[list[str]]) -> None:
        names = [[self.script.elements[k].name for k in members] for members in banks]
        examples = "; ".join(", ".join(n) for n in names[:3])
        self.net.warnings.append(
            f"{sum(map(len, banks))} service transformers form {len(banks)} bank(s) sharing a "
            "primary bus and a secondary network; each bank is one transformer area named after "
            f"its first transformer (devices on the others are left out): {examples}"
            + (" ..." if len(banks) > 3 else ""))

    def _transformer(self, el: Element) -> None:
        """Through the devices on it to the transformer; a service transformer becomes an area
        later, its other secondary windings joined to its secondary bus."""
        x = self.xfmrs.get(el.key)
        if x is None or el.key in self.merged:
            return
        hv = prev = self.net.bus(x.hv)
        for step, device in enumerate(self.devices.get(el.key, []), 1):
            nxt = self.net.bus(f"{el.name}#xf{step}")
            self.net.branches.append(Branch(device.name, device.kind, prev, nxt,
                                            normally_open=device.normally_open))
            prev = nxt
        lv = self.net.bus(x.lv)
        self.net.branches.append(Branch(el.name, "transformer", prev, lv, service=x.service))
        for k, bus in enumerate(x.lv_more, 2):
            self.net.branches.append(Branch(f"{el.name}#lv{k}", "line", lv, self.net.bus(bus)))
        for k, bus in enumerate(x.more, 3):
            self.net.branches.append(Branch(f"{el.name}#w{k}", "transformer", hv,
                                            self.net.bus(bus)))

    # -- loads and coordinates ---------------------------------------------------------------------

    def _load(self, el: Element) -> None:
        if not el.enabled:
            return
        base = base_bus(el.props.get("bus1", ""))
        if not base:
            self.warn(el, "no bus1; skipped")
            return
        bus = self.net.bus(self.name_of(base))
        customers = int(el.props.get("numcust", "1"))
        self.net.customers_at[bus] = self.net.customers_at.get(bus, 0) + customers
        self.net.loads_at[bus] = self.net.loads_at.get(bus, 0) + 1

    def _coordinates(self) -> None:
        """From the BusCoords/LatLongCoords files, else the first ``*coord*`` file beside."""
        files = self.script.coords
        if not files:
            try:
                beside = sorted(p for p in self.master.parent.iterdir()
                                if "coord" in p.name.lower() and p.is_file())
            except OSError:
                beside = []
            files = [(p, False) for p in beside[:1]]
        lookup = {bus.lower(): bus for bus in self.net.buses}
        for path, swap in files:
            self._read_coordinates(path, swap, lookup)

    def _read_coordinates(self, path: Path, swap: bool, lookup: dict[str, str]) -> None:
        try:
            text = read_text(path)
        except OSError as exc:
            self.net.warnings.append(f"{path}: cannot read bus coordinates ({exc.strerror}); "
                                     "skipped")
            return
        for row in text.splitlines():
            values = line_values(row)
            if len(values) < 3 or not (_is_number(values[1]) and _is_number(values[2])):
                continue
            bus = lookup.get(base_bus(values[0]).lower())
            if bus is not None:
                x, y = (values[2], values[1]) if swap else (values[1], values[2])
                self.net.buses[bus].update({"x": x, "y": y})


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# -- entry point -----------------------------------------------------------------------------------


def parse(src: str | Path) -> RawNetwork:
    """Parse a DSS master file (or a directory holding one) into a :class:`RawNetwork`."""
    path = _master(Path(src))
    script = Script()
    script.run_file(path)
    if script.redefined:
        script.warnings.append(
            f"{len(script.redefined)} element(s) defined again by a second New, read as edits of "
            f"the first as OpenDSS does: {'; '.join(script.redefined[:3])}"
            + (" ..." if len(script.redefined) > 3 else ""))
    if not script.circuit:
        raise ImportError_(f"{path}: no 'New Circuit' definition")
    return _Builder(script, path).build()


def _master(path: Path) -> Path:
    """The master file: ``path`` itself, or the one a directory holds."""
    if path.is_dir():
        path = _pick_master(path)
    if not path.is_file():
        raise ImportError_(f"{path}: not a file")
    return path


def _pick_master(folder: Path) -> Path:
    """``*master*.dss`` (not a ``Run_*`` script), else the first file with ``New Circuit``."""
    try:
        files = sorted((p for p in folder.iterdir() if p.suffix.lower() == ".dss" and p.is_file()),
                       key=lambda p: p.name.lower())
    except OSError as exc:
        raise ImportError_(f"{folder}: cannot list ({exc.strerror})") from exc
    masters = sorted((p for p in files if "master" in p.name.lower()),
                     key=lambda p: p.name.lower().startswith("run"))
    masters = masters or [p for p in files if _defines_circuit(p)]
    if not masters:
        raise ImportError_(f"{folder}: no OpenDSS master file (*master*.dss or one with "
                           "'New Circuit') found")
    return masters[0]


def _defines_circuit(path: Path) -> bool:
    try:
        text = read_text(path)
    except OSError:
        return False
    return re.search(r"new\s+(object\s*=\s*)?[\"']?circuit\.", text, re.I) is not None


__all__ = ["parse"]
