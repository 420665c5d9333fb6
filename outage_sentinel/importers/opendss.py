"""OpenDSS importer (``.dss`` scripts: the IEEE test feeders and the like).

Read: ``New Circuit``/``Vsource`` (the source bus), ``Line`` (``Switch=y`` makes it a switch),
``Fuse``/``Recloser``/``Relay`` (put on their ``MonitoredObj`` line as a fuse / recloser /
breaker), ``Transformer`` (a *service* transformer when its lowest winding is below 1 kV),
``Load`` (one customer each), ``Redirect``/``Compile`` (relative files; missing ones are
warned about), ``Open <element>`` and ``Enabled=no``/``Open`` lines (normally open), ``~``/``More``
continuations, ``like=`` copies and ``!``/``//`` comments. A switch whose far bus is named
``<bus>_OPEN`` (the IEEE 123 master file's way of drawing an open tie) is read as a normally-open
tie to ``<bus>``. Bus coordinates from a ``BusCoords`` file are kept as ``x``/``y`` columns.
"""

from __future__ import annotations

import re
from pathlib import Path

from outage_sentinel.importers.common import Branch, ImportError_, RawNetwork, strip_phases

_COMMENT = re.compile(r"(!|//).*$")
DEVICE_OF = {"fuse": "fuse", "recloser": "recloser", "relay": "breaker"}


def _tokens(text: str) -> list[str]:
    """Split a DSS line into tokens, keeping bracketed / quoted / parenthesised groups whole."""
    out: list[str] = []
    buf = ""
    depth = 0
    quote = ""
    for ch in text:
        if quote:
            buf += ch
            if ch == quote:
                quote = ""
            continue
        if ch in "\"'":
            quote = ch
            buf += ch
        elif ch in "[(":
            depth += 1
            buf += ch
        elif ch in "])":
            depth -= 1
            buf += ch
        elif (ch.isspace() or ch == ",") and depth == 0:
            if buf:
                out.append(buf)
            buf = ""
        else:
            buf += ch
    if buf:
        out.append(buf)
    return out


def _list(value: str) -> list[str]:
    v = value.strip().strip("[]()\"'")
    return [x for x in re.split(r"[\s,]+", v) if x]


def _statements(path: Path, warnings: list[str], seen: set[Path]) -> list[tuple[str, Path]]:
    """The file's commands with continuations joined and redirects followed, in order."""
    path = path.resolve()
    if path in seen:
        return []
    seen.add(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        warnings.append(f"{path}: cannot read ({exc.strerror}); skipped")
        return []
    out: list[tuple[str, Path]] = []
    in_block = False
    for raw in text.splitlines():
        line = raw.strip()
        if in_block:
            if "*/" in line:
                in_block = False
                line = line.split("*/", 1)[1]
            else:
                continue
        if line.startswith("/*"):
            in_block = "*/" not in line
            continue
        line = _COMMENT.sub("", line).strip()
        if not line:
            continue
        low = line.lower()
        if line.startswith("~") or low.startswith("more ") or low == "more":
            rest = line[1:] if line.startswith("~") else line[4:]
            if out:
                out[-1] = (out[-1][0] + " " + rest.strip(), out[-1][1])
            continue
        word = low.split(None, 1)[0]
        if word in ("redirect", "compile"):
            target = line.split(None, 1)[1].strip().strip("\"'") if " " in line else ""
            if target:
                out.extend(_statements(path.parent / target, warnings, seen))
            continue
        out.append((line, path))
    return out


def parse(src: str | Path) -> RawNetwork:
    """Parse a DSS master file (or a directory holding one) into a :class:`RawNetwork`."""
    path = _master(Path(src))
    warnings: list[str] = []
    script = _Script()
    for line, where in _statements(path, warnings, set()):
        script.add(line, where)
    if not script.circuit:
        raise ImportError_(f"{path}: no 'New Circuit' definition")
    net = RawNetwork(name=script.circuit)
    net.warnings = warnings
    circ = script.elements[f"circuit.{script.circuit.lower()}"]
    net.sources.append((script.circuit, net.bus(strip_phases(circ.get("bus1", "sourcebus")))))
    devices_on = _devices_on(script, net)
    for key in script.order:
        cls = key.split(".", 1)[0]
        props = script.elements[key]
        disabled = props.get("enabled", "yes").lower() in ("no", "false", "n")
        if cls == "line":
            _add_line(net, key, script.display[key], props,
                      disabled or key in script.opened, devices_on.get(key, []))
        elif cls == "transformer" and not disabled:
            _add_transformer(net, script.display[key], props)
        elif cls == "transformer":
            _transformer_buses(net, script.display[key], props)  # warns as before
        elif cls == "load" and not disabled and "bus1" in props:
            b = net.bus(strip_phases(props["bus1"]))
            net.customers_at[b] = net.customers_at.get(b, 0) + 1
            net.loads_at[b] = net.loads_at.get(b, 0) + 1
    _coordinates(net, script.coords_file, path)
    return net


def _master(path: Path) -> Path:
    """The master file: ``path`` itself, or the one a directory holds."""
    if path.is_dir():
        masters = sorted(p for p in path.iterdir() if p.suffix.lower() == ".dss"
                         and "master" in p.name.lower())
        if not masters:
            masters = sorted(p for p in path.iterdir() if p.suffix.lower() == ".dss"
                             and re.search(r"new\s+(object\s*=\s*)?circuit\.",
                                           p.read_text(errors="replace"), re.I))
        if not masters:
            raise ImportError_(f"{path}: no OpenDSS master file (*master*.dss or one with "
                               "'New Circuit') found")
        path = masters[0]
    if not path.is_file():
        raise ImportError_(f"{path}: not a file")
    return path


class _Script:
    """The elements a DSS script defines, in order, with what it opens and where its bus
    coordinates are."""

    def __init__(self) -> None:
        self.elements: dict[str, dict[str, str]] = {}  # "class.name" -> props (lower-case keys)
        self.order: list[str] = []
        self.display: dict[str, str] = {}  # element key -> name as written
        self.opened: set[str] = set()
        self.circuit = ""
        self.coords_file: Path | None = None

    def add(self, line: str, where: Path) -> None:
        toks = _tokens(line)
        if not toks:
            return
        verb = toks[0].lower()
        if verb == "buscoords" and len(toks) > 1:
            self.coords_file = where.parent / toks[1].strip("\"'")
        elif verb == "open" and len(toks) > 1:
            self.opened.add(toks[1].split("=", 1)[-1].lower())
        elif verb in ("new", "edit") and len(toks) > 1:
            self._define(verb, toks[1:])

    def _define(self, verb: str, args: list[str]) -> None:
        first = args[0]
        if first.lower().startswith("object="):
            first = first.split("=", 1)[1]
        if "." not in first:
            return
        key = first.lower()
        cls = key.split(".", 1)[0]
        self.display.setdefault(key, first.split(".", 1)[1])
        props = self.elements.setdefault(key, {}) if verb == "edit" else {}
        self._properties(cls, args[1:], props)
        if cls == "circuit":
            self.circuit = first.split(".", 1)[1]
            props.setdefault("bus1", "sourcebus")
        if verb == "new":
            self.elements[key] = props
            self.order.append(key)

    def _properties(self, cls: str, args: list[str], props: dict[str, str]) -> None:
        """Keyword properties; ``like=`` copies another element's; transformer windings are
        tracked with ``wdg=``."""
        wdg = 1
        for a in args:
            if "=" not in a:
                continue
            k, v = a.split("=", 1)
            k, v = k.strip().lower(), v.strip()
            if k == "like":
                for bk, bv in self.elements.get(f"{cls}.{v.lower()}", {}).items():
                    props.setdefault(bk, bv)
            elif k == "wdg":
                wdg = int(float(v))
            elif cls == "transformer" and k in ("bus", "kv", "conn", "kva"):
                props[f"{k}{wdg}"] = v
            else:
                props[k] = v


def _devices_on(script: _Script, net: RawNetwork) -> dict[str, list[tuple[str, str]]]:
    """Protective devices (reclosers, fuses, relays ...) by the line they monitor."""
    devices_on: dict[str, list[tuple[str, str]]] = {}
    for key in script.order:
        cls, name = key.split(".", 1)
        if cls not in DEVICE_OF:
            continue
        props = script.elements[key]
        target = (props.get("monitoredobj") or props.get("switchedobj") or "").lower()
        if not target.startswith("line."):
            net.warnings.append(f"{cls}.{name}: monitors {target or 'nothing'}; skipped")
            continue
        devices_on.setdefault(target, []).append((DEVICE_OF[cls], script.display[key]))
    return devices_on


def _add_line(net: RawNetwork, key: str, name: str, props: dict[str, str], is_open: bool,
              devices: list[tuple[str, str]]) -> None:
    """A line: a plain branch, or a chain of its switch and the devices on it."""
    a, b = props.get("bus1", ""), props.get("bus2", "")
    if not a or not b:
        return
    ba, bb = strip_phases(a), strip_phases(b)
    if bb.lower().endswith("_open"):
        bb, is_open = bb[: -len("_open")], True
    net.bus(ba)
    net.bus(bb)
    chain: list[tuple[str, str]] = []
    if props.get("switch", "n").lower() in ("y", "yes", "true", "t"):
        chain.append(("switch", name))
    chain.extend(devices)
    if not chain:
        if not is_open:
            net.branches.append(Branch(name, "line", ba, bb))
            return
        chain.append(("switch", name))  # an open line is a tie in all but name
    prev = ba
    for step, (kind, dname) in enumerate(chain):
        nxt = bb if step == len(chain) - 1 else net.bus(f"{name}#{step + 1}")
        net.branches.append(Branch(dname, kind, prev, nxt, normally_open=is_open and step == 0))
        prev = nxt


def _transformer_buses(net: RawNetwork, name: str, props: dict[str, str]
                       ) -> tuple[list[str], list[float]] | None:
    buses = _list(props["buses"]) if "buses" in props else []
    if not buses:
        buses = [props[f"bus{w}"] for w in (1, 2, 3) if f"bus{w}" in props]
    kvs = [float(x) for x in _list(props["kvs"])] if "kvs" in props else []
    if not kvs:
        kvs = [float(props[f"kv{w}"]) for w in (1, 2, 3) if f"kv{w}" in props]
    if len(buses) < 2:
        net.warnings.append(f"transformer.{name}: fewer than two buses; skipped")
        return None
    return buses, kvs


def _add_transformer(net: RawNetwork, name: str, props: dict[str, str]) -> None:
    """A transformer; a service transformer (one side below 1 kV) becomes an area later."""
    found = _transformer_buses(net, name, props)
    if found is None:
        return
    buses, kvs = found
    service = bool(kvs) and min(kvs) < 1.0 and max(kvs) >= 1.0
    hv = buses[kvs.index(max(kvs))] if service else buses[0]
    lv = buses[kvs.index(min(kvs))] if service else buses[1]
    net.branches.append(Branch(name, "transformer", net.bus(strip_phases(hv)),
                               net.bus(strip_phases(lv)), service=service))


def _coordinates(net: RawNetwork, coords_file: Path | None, master: Path) -> None:
    """Bus coordinates from the BusCoords file, else the first ``*coord*`` file beside."""
    if coords_file is not None and coords_file.is_file():
        files = [coords_file]
    else:
        files = sorted(master.parent.glob("*[Cc]oord*"))[:1]
    for cand in files:
        for row in cand.read_text(errors="replace").splitlines():
            parts = [p for p in re.split(r"[\s,]+", row.strip()) if p]
            if len(parts) >= 3 and parts[0] in net.buses:
                net.buses[parts[0]].update({"x": parts[1], "y": parts[2]})


__all__ = ["parse"]
