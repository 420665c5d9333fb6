"""GridLAB-D ``.glm`` importer (the PNNL taxonomy feeders and the like).

Objects read: ``node``/``meter``/``load``/``triplex_node``/``triplex_meter``/``triplex_load``
(buses; ``parent`` ties a child to its parent bus; ``bustype SWING`` marks the source), links
``overhead_line``/``underground_line``/``triplex_line``/``regulator``/``series_reactor``
(connections), ``fuse``/``recloser``/``sectionalizer``/``switch`` (devices; ``status OPEN``
makes them normally open) and ``transformer``. A transformer is a *service* transformer when
its ``to`` object is a triplex object, or its configuration is ``SINGLE_PHASE_CENTER_TAPPED``,
or its configuration's ``secondary_voltage`` is below 1000 V. Customers of an area are its
``triplex_meter`` and ``meter`` objects (else its loads). Comments (``//``) are ignored,
including commented-out objects; nested objects get their enclosing object as parent.
"""

from __future__ import annotations

import re
from pathlib import Path

from outage_sentinel.importers.common import Branch, ImportError_, RawNetwork

BUS_TYPES = frozenset({"node", "meter", "load", "triplex_node", "triplex_meter", "triplex_load",
                       "capacitor"})
LINK_TYPES = frozenset({"overhead_line", "underground_line", "triplex_line", "regulator",
                        "series_reactor", "link"})
DEVICE_TYPES = {"fuse": "fuse", "recloser": "recloser", "sectionalizer": "sectionalizer",
                "switch": "switch"}
CUSTOMER_TYPES = frozenset({"triplex_meter", "meter"})
LOAD_TYPES = frozenset({"load", "triplex_load"})

_OBJ = re.compile(r"object\s+([A-Za-z_][\w]*)(?::(\w+))?\s*\{")


def _strip_comments(text: str) -> str:
    return "\n".join(line.split("//", 1)[0] for line in text.splitlines())


def _objects(text: str) -> list[tuple[str, dict[str, str]]]:
    """(type, properties) of every object, in file order, nested ones with ``parent`` set."""
    out: list[tuple[str, dict[str, str]]] = []
    stack: list[tuple[str, dict[str, str]]] = []
    i = 0
    n = len(text)
    buf = ""
    while i < n:
        m = _OBJ.match(text, i)
        if m:
            otype = m.group(1)
            props: dict[str, str] = {"__id": f"{otype}:{m.group(2)}" if m.group(2) else ""}
            if stack:
                props["__enclosing"] = stack[-1][1].get("name") or stack[-1][1]["__id"]
            stack.append((otype, props))
            i = m.end()
            buf = ""
            continue
        ch = text[i]
        if ch == "{" and stack:
            # a nested non-object block (e.g. a clock or module): skip to its end
            depth = 1
            i += 1
            while i < n and depth:
                depth += {"{": 1, "}": -1}.get(text[i], 0)
                i += 1
            buf = ""
            continue
        if ch == "}" and stack:
            otype, props = stack.pop()
            if "parent" not in props and "__enclosing" in props:
                props["parent"] = props["__enclosing"]
            out.append((otype, props))
            buf = ""
            i += 1
            continue
        if ch == ";" and stack:
            parts = buf.strip().split(None, 1)
            if parts:
                stack[-1][1][parts[0].lower()] = parts[1].strip().strip("\"'") if len(parts) > 1 \
                    else ""
            buf = ""
            i += 1
            continue
        if stack:
            buf += ch
        elif ch == "{":
            # top-level non-object block (clock, module): skip it
            depth = 1
            i += 1
            while i < n and depth:
                depth += {"{": 1, "}": -1}.get(text[i], 0)
                i += 1
            continue
        i += 1
    return out


def parse(src: str | Path) -> RawNetwork:
    """Parse a ``.glm`` file into a :class:`RawNetwork`."""
    path = Path(src)
    if not path.is_file():
        raise ImportError_(f"{path}: not a file")
    objects = _objects(_strip_comments(path.read_text(encoding="utf-8", errors="replace")))
    net = RawNetwork(name=path.stem)
    alias: dict[str, str] = {}
    for _otype, props in objects:
        name = props.get("name") or props["__id"]
        props["name"] = name
        if props["__id"]:
            alias[props["__id"]] = name
    types: dict[str, str] = {props["name"]: otype for otype, props in objects}
    configs = {props["name"]: props for otype, props in objects
               if otype == "transformer_configuration"}
    for otype, props in objects:
        if otype in BUS_TYPES and otype != "capacitor":
            _add_bus(net, otype, props, types, alias)
    for otype, props in objects:
        if otype in LINK_TYPES or otype in DEVICE_TYPES or otype == "transformer":
            _add_link(net, otype, props, types, alias, configs)
    if not net.sources:
        raise ImportError_(f"{path}: no node with 'bustype SWING' (the source)")
    return net


def _add_bus(net: RawNetwork, otype: str, props: dict[str, str], types: dict[str, str],
             alias: dict[str, str]) -> None:
    """A node, meter or load: a bus (a SWING bus is the source), linked to its parent."""
    name = props["name"]
    net.bus(name)
    if props.get("bustype", "").upper() == "SWING":
        net.sources.append((f"{name}-source", name))
    parent = props.get("parent")
    if parent:
        p = alias.get(parent, parent)
        if types.get(p) in BUS_TYPES:
            net.bus(p)
            net.branches.append(Branch(f"{name}~parent", "line", p, name))
    if otype in CUSTOMER_TYPES:
        net.customers_at[name] = net.customers_at.get(name, 0) + 1
    elif otype in LOAD_TYPES:
        net.loads_at[name] = net.loads_at.get(name, 0) + 1


def _add_link(net: RawNetwork, otype: str, props: dict[str, str], types: dict[str, str],
              alias: dict[str, str], configs: dict[str, dict[str, str]]) -> None:
    """A line, switching device or transformer between two buses."""
    name = props["name"]
    a, b = alias.get(props.get("from", ""), props.get("from", "")), \
        alias.get(props.get("to", ""), props.get("to", ""))
    if not a or not b:
        net.warnings.append(f"{otype} {name}: missing from/to; skipped")
        return
    net.bus(a)
    net.bus(b)
    if otype in DEVICE_TYPES:
        status = props.get("status", "CLOSED").upper()
        net.branches.append(Branch(name, DEVICE_TYPES[otype], a, b,
                                   normally_open=status == "OPEN"))
    elif otype == "transformer":
        cfg = configs.get(alias.get(props.get("configuration", ""),
                                    props.get("configuration", "")), {})
        net.branches.append(Branch(name, "transformer", a, b,
                                   service=_is_service(cfg, types.get(b, ""))))
    else:
        net.branches.append(Branch(name, "line", a, b))


def _is_service(cfg: dict[str, str], secondary_type: str) -> bool:
    """A service transformer: a triplex secondary, center-tapped, or under 1 kV."""
    secondary = cfg.get("secondary_voltage", "")
    try:
        sec_v = float(secondary.split()[0]) if secondary else None
    except ValueError:
        sec_v = None
    return (secondary_type.startswith("triplex")
            or cfg.get("connect_type", "").upper() == "SINGLE_PHASE_CENTER_TAPPED"
            or (sec_v is not None and sec_v < 1000.0))
