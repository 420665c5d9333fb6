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
    path = Path(src)
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
    warnings: list[str] = []
    statements = _statements(path, warnings, set())
    elements: dict[str, dict[str, str]] = {}  # "class.name" -> props (lower-case keys)
    order: list[str] = []
    display: dict[str, str] = {}  # element key -> name as written
    opened: set[str] = set()
    circuit = ""
    coords_file: Path | None = None
    for line, where in statements:
        toks = _tokens(line)
        if not toks:
            continue
        verb = toks[0].lower()
        if verb == "buscoords" and len(toks) > 1:
            coords_file = where.parent / toks[1].strip("\"'")
            continue
        if verb == "open" and len(toks) > 1:
            opened.add(toks[1].split("=", 1)[-1].lower())
            continue
        if verb not in ("new", "edit"):
            continue
        args = toks[1:]
        if not args:
            continue
        first = args[0]
        if first.lower().startswith("object="):
            first = first.split("=", 1)[1]
        if "." not in first:
            continue
        key = first.lower()
        cls = key.split(".", 1)[0]
        display.setdefault(key, first.split(".", 1)[1])
        props = elements.setdefault(key, {}) if verb == "edit" else {}
        # positional / keyword properties; transformer windings are tracked with wdg=
        wdg = 1
        for a in args[1:]:
            if "=" not in a:
                continue
            k, v = a.split("=", 1)
            k = k.strip().lower()
            v = v.strip()
            if k == "like":
                base = elements.get(f"{cls}.{v.lower()}")
                if base:
                    for bk, bv in base.items():
                        props.setdefault(bk, bv)
                continue
            if k == "wdg":
                wdg = int(float(v))
                continue
            if cls == "transformer" and k in ("bus", "kv", "conn", "kva"):
                props[f"{k}{wdg}"] = v
                continue
            props[k] = v
        if cls == "circuit":
            circuit = first.split(".", 1)[1]
            props.setdefault("bus1", "sourcebus")
        if verb == "new":
            elements[key] = props
            order.append(key)
    if not circuit:
        raise ImportError_(f"{path}: no 'New Circuit' definition")
    net = RawNetwork(name=circuit)
    net.warnings = warnings

    def bus(name: str) -> str:
        return net.bus(strip_phases(name))

    circ = elements[f"circuit.{circuit.lower()}"]
    net.sources.append((circuit, bus(circ.get("bus1", "sourcebus"))))
    devices_on: dict[str, list[tuple[str, str]]] = {}
    for key in order:
        cls, name = key.split(".", 1)
        if cls in DEVICE_OF:
            props = elements[key]
            target = (props.get("monitoredobj") or props.get("switchedobj") or "").lower()
            if not target.startswith("line."):
                net.warnings.append(f"{cls}.{name}: monitors {target or 'nothing'}; skipped")
                continue
            devices_on.setdefault(target, []).append((DEVICE_OF[cls], display[key]))
    for key in order:
        cls = key.split(".", 1)[0]
        name = display[key]
        props = elements[key]
        disabled = props.get("enabled", "yes").lower() in ("no", "false", "n")
        if cls == "line":
            a = props.get("bus1", "")
            b = props.get("bus2", "")
            if not a or not b:
                continue
            ba, bb = strip_phases(a), strip_phases(b)
            is_switch = props.get("switch", "n").lower() in ("y", "yes", "true", "t")
            open_tie = False
            if bb.lower().endswith("_open"):
                bb, open_tie = bb[: -len("_open")], True
            bus(ba)
            bus(bb)
            is_open = disabled or key in opened or open_tie
            chain: list[tuple[str, str]] = []
            if is_switch:
                chain.append(("switch", name))
            chain.extend(devices_on.get(key, []))
            if not chain:
                if is_open:
                    chain.append(("switch", name))  # an open line is a tie in all but name
                else:
                    net.branches.append(Branch(name, "line", ba, bb))
                    continue
            prev = ba
            for step, (kind, dname) in enumerate(chain):
                nxt = bb if step == len(chain) - 1 else net.bus(f"{name}#{step + 1}")
                net.branches.append(Branch(dname, kind, prev, nxt,
                                           normally_open=is_open and step == 0))
                prev = nxt
        elif cls == "transformer":
            buses = _list(props["buses"]) if "buses" in props else []
            if not buses:
                buses = [props[f"bus{w}"] for w in (1, 2, 3) if f"bus{w}" in props]
            kvs = [float(x) for x in _list(props["kvs"])] if "kvs" in props else []
            if not kvs:
                kvs = [float(props[f"kv{w}"]) for w in (1, 2, 3) if f"kv{w}" in props]
            if len(buses) < 2:
                net.warnings.append(f"transformer.{name}: fewer than two buses; skipped")
                continue
            service = bool(kvs) and min(kvs) < 1.0 and max(kvs) >= 1.0
            hv = buses[kvs.index(max(kvs))] if service else buses[0]
            lv = buses[kvs.index(min(kvs))] if service else buses[1]
            if disabled:
                continue
            net.branches.append(Branch(name, "transformer", bus(hv), bus(lv), service=service))
        elif cls == "load":
            if disabled or "bus1" not in props:
                continue
            b = bus(props["bus1"])
            net.customers_at[b] = net.customers_at.get(b, 0) + 1
            net.loads_at[b] = net.loads_at.get(b, 0) + 1
    if coords_file is not None and coords_file.is_file():
        for row in coords_file.read_text(errors="replace").splitlines():
            parts = [p for p in re.split(r"[\s,]+", row.strip()) if p]
            if len(parts) >= 3 and parts[0] in net.buses:
                net.buses[parts[0]].update({"x": parts[1], "y": parts[2]})
    else:
        for cand in sorted(path.parent.glob("*[Cc]oord*")):
            for row in cand.read_text(errors="replace").splitlines():
                parts = [p for p in re.split(r"[\s,]+", row.strip()) if p]
                if len(parts) >= 3 and parts[0] in net.buses:
                    net.buses[parts[0]].update({"x": parts[1], "y": parts[2]})
            break
    return net


__all__ = ["parse"]
