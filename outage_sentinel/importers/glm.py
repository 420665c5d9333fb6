"""GridLAB-D ``.glm`` importer (the PNNL taxonomy feeders, the GridLAB-D IEEE models and the like):
the model (names, ``class:id`` references, nesting, ``modify``), :func:`parse`, and the network
builder. The file is read by :mod:`outage_sentinel.importers.glm_source` the way GridLAB-D's
loader reads it.

Objects used: ``node``/``meter``/``load``/``triplex_node``/``triplex_meter``/``triplex_load``/
``substation``/``pqload`` (buses; ``parent`` ties a child to its parent bus; ``bustype SWING``,
else ``SWING_PQ``, marks a source), ``capacitor``/``motor`` (buses only when something connects
to them), links ``overhead_line``/``underground_line``/``triplex_line``/``regulator``/
``series_reactor``/``series_compensator``/``vfd``/``link`` (connections), devices ``fuse``/
``recloser``/``sectionalizer``/``switch`` and ``relay`` (a breaker), and ``transformer``.

A device is normally open when its ``status`` is ``OPEN`` (or 0); a switch, recloser or
sectionalizer also when its ``phase_X_state`` values open it (``operating_mode BANKED``, the default:
fewer than half of its phases closed; ``INDIVIDUAL``: all open); a fuse when all its phases are
``BLOWN``. A transformer whose primary (``primary_voltage``, else the ``from`` bus's
``nominal_voltage``) is below 1 kV is inside an area: a plain connection. Otherwise it is a
*service* transformer when its ``to`` object is a triplex object, or its configuration is
``SINGLE_PHASE_CENTER_TAPPED`` (or 5), or its secondary (``secondary_voltage`` with ``V``/``kV``
units, else the ``to`` bus's ``nominal_voltage``) is below 1 kV. Customers of an area are its
``triplex_meter`` and ``meter`` objects; where there are none, its ``house`` objects (counted
at their parent bus; what is inside a house, such as ``ZIPload``, is not counted), else its
loads. A service transformer fed from inside another one's low-voltage side (center-tapped
transformers given no voltages) is a plain connection inside that area (rule 1 of
:mod:`outage_sentinel.importers.common`).
"""

from __future__ import annotations

import re
from pathlib import Path

from outage_sentinel.importers.common import Branch, ImportError_, RawNetwork
from outage_sentinel.importers.glm_source import GlmObject, Modify, Notes, read_objects

NODE_TYPES = frozenset({"node", "meter", "load", "triplex_node", "triplex_meter", "triplex_load",
                        "substation", "pqload"})
SHUNT_TYPES = frozenset({"capacitor", "motor"})  # nodes too, but only kept when connected
LINK_TYPES = frozenset({"overhead_line", "underground_line", "triplex_line", "regulator",
                        "series_reactor", "series_compensator", "vfd", "link"})
DEVICE_TYPES = {"fuse": "fuse", "recloser": "recloser", "sectionalizer": "sectionalizer",
                "switch": "switch", "relay": "breaker"}
SWITCH_FAMILY = frozenset({"switch", "recloser", "sectionalizer"})
CUSTOMER_TYPES = frozenset({"triplex_meter", "meter"})
LOAD_TYPES = frozenset({"load", "triplex_load"})
BUS_TYPES = NODE_TYPES | SHUNT_TYPES
LV_LIMIT = 1000.0  # volts: below it a secondary is low voltage
CENTER_TAPPED = "SINGLE_PHASE_CENTER_TAPPED"
CONNECT_CODES = {"1": "WYE_WYE", "2": "DELTA_DELTA", "3": "DELTA_GWYE", "4": "SINGLE_PHASE",
                 "5": CENTER_TAPPED}
VOLT_UNITS = {"": 1.0, "V": 1.0, "v": 1.0, "kV": 1e3, "KV": 1e3, "kv": 1e3, "MV": 1e6}
_NUMBER_UNIT = re.compile(r"\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*([A-Za-z]*)")


# -- resolving names ----------------------------------------------------------------------------


class _Model:
    """Named objects: names, ``class:id`` and ``id:N`` references, nesting and ``modify``."""

    def __init__(self, objects: list[GlmObject], notes: Notes) -> None:
        self.objects = objects
        self.notes = notes
        self.index: dict[str, GlmObject] = {}
        for k, obj in enumerate(objects, 1):
            self._name(obj, k)
        for obj in objects:
            for key, inner in obj.inline.items():
                obj.props[key] = inner.name
            if obj.enclosing is not None and "parent" not in obj.props:
                obj.props["parent"] = obj.enclosing.name
            if "root" in obj.props:
                obj.props.pop("parent", None)

    def _name(self, obj: GlmObject, k: int) -> None:
        if "id" in obj.props and not obj.ident and obj.props["id"].isdigit():
            obj.ident = f"{obj.otype}:{obj.props['id']}"
        if obj.ident:
            self.index.setdefault(obj.ident, obj)
            self.index.setdefault("id:" + obj.ident.rsplit(":", 1)[1], obj)
        given = obj.props.get("name", "")
        obj.name = given or obj.ident or f"{obj.otype}@{k}"
        if given and self.index.get(given, obj) is not obj:
            self.notes.add("duplicate name", f"{obj.where()}: name '{given}' is already used at "
                                             f"{self.index[given].where()}; this one is "
                                             f"'{given}~{k}'")
            obj.name = f"{given}~{k}"
        self.index.setdefault(obj.name, obj)

    def find(self, ref: str) -> GlmObject | None:
        ref = ref.strip()
        found = self.index.get(ref)
        if found is None and ":" in ref:
            cls, _, num = ref.rpartition(":")
            found = self.index.get(f"{cls.rsplit('.', 1)[-1]}:{num}")
        return found

    def apply(self, modifies: list[Modify]) -> None:
        for target, value, line in modifies:
            name, _, prop = target.rpartition(".")
            obj = self.find(name)
            if obj is None or not prop:
                self.notes.add("modify", f"{line.where()}: modify {target}: no such object")
            else:
                obj.props[prop.lower()] = value


# -- the network ----------------------------------------------------------------------------------


def parse(src: str | Path) -> RawNetwork:
    """Parse a ``.glm`` file (and what it includes) into a :class:`RawNetwork`."""
    path = Path(src)
    if not path.is_file():
        raise ImportError_(f"{path}: not a file")
    notes = Notes()
    objects, modifies = read_objects(path, notes)
    model = _Model(objects, notes)
    model.apply(modifies)
    net = _Builder(model, notes, path.stem).build()
    if not net.sources:
        raise ImportError_(f"{path}: no node with 'bustype SWING' (the source)")
    net.warnings.extend(notes.all())
    return net


class _Builder:
    """Buses, sources, links and customer counts of the model, by the rules of the docstring."""

    def __init__(self, model: _Model, notes: Notes, name: str) -> None:
        self.model = model
        self.notes = notes
        self.net = RawNetwork(name=name)
        self.buses = {o.name for o in model.objects if o.otype in NODE_TYPES}
        self.buses |= self._connected_shunts()

    def _connected_shunts(self) -> set[str]:
        ends = [o.props.get(k, "") for o in self.model.objects for k in ("from", "to", "parent")
                if o.otype in LINK_TYPES or o.otype in DEVICE_TYPES or o.otype == "transformer"
                or (k == "parent" and o.otype in NODE_TYPES)]
        found = (self.model.find(ref) for ref in ends if ref)
        return {o.name for o in found if o is not None and o.otype in SHUNT_TYPES}

    def build(self) -> RawNetwork:
        swing: dict[str, list[str]] = {"SWING": [], "SWING_PQ": []}
        for obj in self.model.objects:
            if obj.name in self.buses and obj.otype in BUS_TYPES:
                self.bus(obj)
                swing.get(obj.props.get("bustype", "").strip().upper(), []).append(obj.name)
            elif obj.otype in LINK_TYPES or obj.otype in DEVICE_TYPES or obj.otype == "transformer":
                self.link(obj)
        if not swing["SWING"] and swing["SWING_PQ"]:
            self.notes.add("source", "no SWING bus: the SWING_PQ bus(es) are the source(s)")
        self.net.sources = [(f"{b}-source", b) for b in swing["SWING"] or swing["SWING_PQ"]]
        self.count_houses()
        return self.net

    def bus(self, obj: GlmObject) -> None:
        net, name = self.net, obj.name
        net.bus(name)
        parent = self.parent_bus(obj)
        if parent is not None:
            net.bus(parent)
            net.branches.append(Branch(f"{name}~parent", "line", parent, name))
        if obj.otype in CUSTOMER_TYPES:
            net.customers_at[name] = net.customers_at.get(name, 0) + 1
        elif obj.otype in LOAD_TYPES:
            net.loads_at[name] = net.loads_at.get(name, 0) + 1

    def parent_bus(self, obj: GlmObject) -> str | None:
        ref = obj.props.get("parent", "")
        if not ref:
            return None
        parent = self.model.find(ref)
        if parent is None:
            self.notes.add("reference", f"{obj.where()}: {obj.otype} {obj.name}: parent '{ref}' "
                                        "not found")
            return None
        return parent.name if parent.name in self.buses else None

    def end(self, obj: GlmObject, key: str) -> GlmObject | None:
        """The object at the ``from``/``to`` end of a link (a phantom bus when undefined)."""
        ref = obj.props.get(key, "")
        found = self.model.find(ref) if ref else None
        if found is None and ref:
            self.notes.add("reference", f"{obj.where()}: {obj.otype} {obj.name}: {key} '{ref}' "
                                        "not found; kept as a bus of that name")
            found = GlmObject("node", obj.line, name=ref)
        elif found is not None and found.name not in self.buses:
            self.notes.add("reference", f"{obj.where()}: {obj.otype} {obj.name}: {key} "
                                        f"'{ref}' is a {found.otype}, not a node")
        return found

    def link(self, obj: GlmObject) -> None:
        a, b = self.end(obj, "from"), self.end(obj, "to")
        if a is None or b is None:
            self.notes.add("link", f"{obj.where()}: {obj.otype} {obj.name}: missing from/to; "
                                   "skipped")
            return
        self.net.bus(a.name)
        self.net.bus(b.name)
        if obj.otype in DEVICE_TYPES:
            branch = Branch(obj.name, DEVICE_TYPES[obj.otype], a.name, b.name,
                            normally_open=_is_open(obj))
        elif obj.otype == "transformer":
            branch = Branch(obj.name, "transformer", a.name, b.name,
                            service=_is_service(self.configuration(obj), a, b))
        else:
            branch = Branch(obj.name, "line", a.name, b.name)
        self.net.branches.append(branch)

    def configuration(self, obj: GlmObject) -> dict[str, str]:
        ref = obj.props.get("configuration", "")
        cfg = self.model.find(ref) if ref else None
        if cfg is None:
            self.notes.add("configuration", f"{obj.where()}: transformer {obj.name}: "
                                            f"configuration '{ref}' not found")
            return {}
        return cfg.props

    def count_houses(self) -> None:
        """A bus's houses stand for its loads: customers where there are no meters."""
        houses: dict[str, int] = {}
        for obj in self.model.objects:
            if obj.otype != "house":
                continue
            bus = self.parent_bus(obj)
            if bus is None:
                self.notes.add("house", f"{obj.where()}: house {obj.name} has no parent meter or "
                                        "node; not counted")
            else:
                houses[bus] = houses.get(bus, 0) + 1
        self.net.loads_at.update(houses)


def _phases(obj: GlmObject) -> list[str]:
    return [p for p in "ABC" if p in obj.props.get("phases", "").upper()] or ["A", "B", "C"]


def _is_open(obj: GlmObject) -> bool:
    """GridLAB-D's state of a device at the start of a run (see the module docstring)."""
    props = obj.props
    if props.get("status", "CLOSED").strip().upper() in ("OPEN", "0"):
        return True
    phases = _phases(obj)
    if obj.otype == "fuse":
        states = [props.get(f"phase_{p.lower()}_status", "").upper() for p in phases]
        return all(s in ("BLOWN", "0") for s in states)
    if obj.otype not in SWITCH_FAMILY:
        return False
    is_open = [props.get(f"phase_{p.lower()}_state", "CLOSED").strip().upper() in ("OPEN", "0")
               for p in phases]
    if props.get("operating_mode", "BANKED").strip().upper() in ("INDIVIDUAL", "0"):
        return all(is_open)
    return is_open.count(False) / len(is_open) < 0.5


def _volts(text: str) -> float | None:
    """``120``, ``120 V``, ``0.24 kV``, ``240V`` -> volts; None when unreadable."""
    m = _NUMBER_UNIT.match(text)
    scale = VOLT_UNITS.get(m.group(2)) if m else None
    return float(m.group(1)) * scale if m and scale is not None else None


def _is_service(cfg: dict[str, str], primary: GlmObject, secondary: GlmObject) -> bool:
    """A service transformer: below 1 kV on its secondary side only (see the docstring)."""
    high = _volts(cfg.get("primary_voltage", "")) or _volts(primary.props.get("nominal_voltage", ""))
    if high is not None and high < LV_LIMIT:
        return False
    connect = cfg.get("connect_type", "").strip().upper()
    if secondary.otype.startswith("triplex") or CONNECT_CODES.get(connect, connect) == CENTER_TAPPED:
        return True
    low = _volts(cfg.get("secondary_voltage", "")) or _volts(secondary.props.get("nominal_voltage",
                                                                                  ""))
    return low is not None and low < LV_LIMIT

