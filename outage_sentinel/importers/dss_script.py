"""The DSS script interpreter of the OpenDSS importer: a deck run the way OpenDSS runs it, into
the elements it leaves defined (:class:`Script`); :mod:`outage_sentinel.importers.opendss` builds
the network from them.

One command per line: ``New``/``Edit``/``More``/``~`` (``object=`` and ``Class.Name.prop=value``
forms too, a name without class taking the last class used), ``Redirect``/``Compile`` (relative
to the file holding the command; ``\\`` separators, any letter case, parentheses or quotes,
``.dss`` added to a bare name, a Windows absolute path looked for beside the deck; UTF-8 or
UTF-16; a missing file is a warning naming it and the line), ``Open``/``Close``,
``Enable``/``Disable`` (``Class.*`` too), ``Clear``, ``BusCoords`` and ``LatLongCoords``. Names
of elements, buses and properties are case-insensitive (a bus keeps its first spelling),
properties may be abbreviated or given by position in OpenDSS's order, and numbers in brackets
are OpenDSS inline math (``kv=(24.9 3 sqrt /)``). A bad value is a warning naming the file and
line; a command that cannot be read at all is an :class:`ImportError_` naming them.

Rooms, in order: OpenDSS's vocabulary (commands, property names in order), the lexer and inline
math, files (reading, finding a redirected file as Windows would), and the script (elements,
windings, commands, properties).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import NamedTuple

from outage_sentinel.importers.common import ImportError_, strip_phases

DEFAULT_KV = 12.47  # OpenDSS's rating of a winding whose kV is not given
MAX_WINDINGS = 12  # more is a typo, not a transformer
#: The classes of transformers (the elements with windings and buses).
TRANSFORMERS = ("transformer", "autotrans")

# -- OpenDSS's vocabulary --------------------------------------------------------------------------

#: Executive commands in OpenDSS's own order up to BusCoords, then LatLongCoords: an abbreviation
#: means the first command it begins (``comp`` is Compile, ``cl`` is Close).
_COMMANDS = (
    "new", "edit", "more", "m", "~", "select", "save", "show", "solve", "enable", "disable",
    "plot", "reset", "compile", "set", "dump", "open", "close", "//", "redirect", "help", "quit",
    "?", "next", "panel", "sample", "clear", "about", "calcvoltagebases", "setkvbase", "buildy",
    "get", "init", "export", "fileedit", "voltages", "currents", "powers", "seqvoltages",
    "seqcurrents", "seqpowers", "losses", "phaselosses", "cktlosses", "allocateloads", "formedit",
    "totals", "capacity", "classes", "userclasses", "zsc", "zsc10", "zscrefresh", "ysc",
    "puvoltages", "varvalues", "varnames", "buscoords", "latlongcoords",
)
_PD_TAIL = ("normamps", "emergamps", "faultrate", "pctperm", "repair", "basefreq", "enabled", "like")
_PC_TAIL = ("spectrum", "basefreq", "enabled", "like")
_CONTROL_TAIL = ("basefreq", "enabled", "like")
_TRANSFORMER = (
    "phases", "windings", "wdg", "bus", "conn", "kv", "kva", "tap", "%r", "rneut", "xneut", "buses",
    "conns", "kvs", "kvas", "taps", "xhl", "xht", "xlt", "xscarray", "thermal", "n", "m", "flrise",
    "hsrise", "%loadloss", "%noloadloss", "normhkva", "emerghkva", "sub", "maxtap", "mintap",
    "numtaps", "subname", "%imag", "ppm_antifloat", "%rs", "bank", "xfmrcode", "xrconst", "x12",
    "x13", "x23", "leadlag", "wdgcurrents", "core", "rdcohms", "seasons", "ratings",
)
#: Property names of the classes read, in OpenDSS's order (positional values follow it; an
#: abbreviation means the first property it begins). Other classes keep their names as written.
_PROPS: dict[str, tuple[str, ...]] = {
    "line": (
        "bus1", "bus2", "linecode", "length", "phases", "r1", "x1", "r0", "x0", "c1", "c0",
        "rmatrix", "xmatrix", "cmatrix", "switch", "rg", "xg", "rho", "geometry", "units",
        "spacing", "wires", "earthmodel", "cncables", "tscables", "b1", "b0", "seasons", "ratings",
        "linetype") + _PD_TAIL,
    "transformer": _TRANSFORMER + _PD_TAIL,
    "autotrans": (
        "phases", "windings", "wdg", "bus", "conn", "kv", "kva", "tap", "%r", "rdcohms", "core",
        "buses", "conns", "kvs", "kvas", "taps", "xhx", "xht", "xxt", "xscarray", "thermal", "n",
        "m", "flrise", "hsrise", "%loadloss", "%noloadloss", "normhkva", "emerghkva", "sub",
        "maxtap", "mintap", "numtaps", "subname", "%imag", "ppm_antifloat", "%rs", "xrconst",
        "leadlag", "wdgcurrents") + _PD_TAIL,
    "xfmrcode": (
        "phases", "windings", "wdg", "conn", "kv", "kva", "tap", "%r", "rneut", "xneut", "conns",
        "kvs", "kvas", "taps", "xhl", "xht", "xlt", "xscarray", "thermal", "n", "m", "flrise",
        "hsrise", "%loadloss", "%noloadloss", "normhkva", "emerghkva", "maxtap", "mintap",
        "numtaps", "%imag", "ppm_antifloat", "%rs", "x12", "x13", "x23", "rdcohms", "seasons",
        "ratings", "like"),
    "load": (
        "phases", "bus1", "kv", "kw", "pf", "model", "yearly", "daily", "duty", "growth", "conn",
        "kvar", "rneut", "xneut", "status", "class", "vminpu", "vmaxpu", "vminnorm", "vminemerg",
        "xfkva", "allocationfactor", "kva", "%mean", "%stddev", "cvrwatts", "cvrvars", "kwh",
        "kwhdays", "cfactor", "cvrcurve", "numcust", "relweight", "vlowpu", "puxharm",
        "xrharm") + _PC_TAIL,
    "vsource": (
        "bus1", "basekv", "pu", "angle", "frequency", "phases", "mvasc3", "mvasc1", "x1r1", "x0r0",
        "isc3", "isc1", "r1", "x1", "r0", "x0", "scantype", "sequence", "bus2", "z1", "z0", "z2",
        "puz1", "puz0", "puz2", "basemva", "yearly", "daily", "duty", "model",
        "puzideal") + _PC_TAIL,
    "fuse": (
        "monitoredobj", "monitoredterm", "switchedobj", "switchedterm", "fusecurve",
        "ratedcurrent", "delay", "action", "normal", "state") + _CONTROL_TAIL,
    "recloser": (
        "monitoredobj", "monitoredterm", "switchedobj", "switchedterm", "numfast", "phasefast",
        "phasedelayed", "groundfast", "grounddelayed", "phasetrip", "groundtrip", "phaseinst",
        "groundinst", "reset", "shots", "recloseintervals", "delay", "action", "tdphfast",
        "tdgrfast", "tdphdelayed", "tdgrdelayed", "normal", "state") + _CONTROL_TAIL,
    "relay": (
        "monitoredobj", "monitoredterm", "switchedobj", "switchedterm", "type", "phasecurve",
        "groundcurve", "phasetrip", "groundtrip", "tdphase", "tdground", "phaseinst", "groundinst",
        "reset", "shots", "recloseintervals", "delay", "overvoltcurve", "undervoltcurve", "kvbase",
        "47%pickup", "46baseamps", "46%pickup", "46isqt", "variable", "overtrip", "undertrip",
        "breakertime", "action", "z1mag", "z1ang", "z0mag", "z0ang", "mphase", "mground",
        "eventlog", "debugtrace", "distreverse", "normal", "state") + _CONTROL_TAIL,
    "swtcontrol": (
        "switchedobj", "switchedterm", "action", "lock", "delay", "normal", "state",
        "reset") + _CONTROL_TAIL,
    "capacitor": (
        "bus1", "bus2", "phases", "kvar", "kv", "conn", "cmatrix", "cuf", "r", "xl", "harm",
        "numsteps", "states") + _PD_TAIL,
    "reactor": (
        "bus1", "bus2", "phases", "kvar", "kv", "conn", "rmatrix", "xmatrix", "parallel", "r", "x",
        "rp", "z1", "z2", "z0", "z", "rcurve", "lcurve", "lmh") + _PD_TAIL,
}
_WOUND = (*TRANSFORMERS, "xfmrcode")  # classes with windings
#: Protection whose SwitchedObj is its MonitoredObj unless given.
_MONITORING = frozenset({"fuse", "recloser", "relay"})
#: Classes that are not circuit elements: they live outside a circuit and survive a new one.
_GENERAL = frozenset({
    "xfmrcode", "linecode", "loadshape", "growthshape", "tcc_curve", "spectrum", "wiredata",
    "cndata", "tsdata", "linegeometry", "linespacing", "xycurve", "tshape", "priceshape"})
_BUS_PROPS = frozenset({"bus1", "bus2", "bus", "buses"})
_ARRAY_WINDING = frozenset({"buses", "conns", "kvs", "kvas", "taps", "%rs"})
_WINDING_PROPS = frozenset({"windings", "wdg", "xfmrcode", "bus", "kv", "buses", "kvs"})

# -- the lexer and inline math ---------------------------------------------------------------------

_QUOTE_END = {"(": ")", '"': '"', "'": "'", "[": "]", "{": "}"}
_BLANK = " \t\r\f\v"


class _Param(NamedTuple):
    """One ``name=value`` (``name`` empty when the value is given by position)."""

    name: str
    value: str
    quoted: bool  # written in quotes or brackets: a number there is inline RPN math


class _Lexer:
    """OpenDSS's command parser: tokens end at a blank, ``,`` or ``=``; a token opening with
    ``( " ' [ {`` runs to the matching close (not nested); ``!`` or ``//`` ends the line."""

    def __init__(self, text: str, delims: str = ",=") -> None:
        self.text, self.delims, self.pos = text, delims, 0
        while self.pos < len(text) and text[self.pos] in _BLANK:
            self.pos += 1

    def params(self, stop_at_empty: bool = True) -> list[_Param]:
        """The parameters in order; an empty value ends a command line (as in OpenDSS), while
        an array keeps its empty items in place."""
        out: list[_Param] = []
        while self.pos < len(self.text):
            token, quoted, delim = self._token()
            name = ""
            if delim == "=":
                name = token
                token, quoted, _ = self._token()
            if not token and stop_at_empty:
                break
            out.append(_Param(name, token, quoted))
        return out

    def _token(self) -> tuple[str, bool, str]:
        """The next token, whether it was quoted, and the delimiter that followed it."""
        text, i = self.text, self.pos
        if i >= len(text):
            return "", False, ""
        if text[i] in _QUOTE_END:
            end = text.find(_QUOTE_END[text[i]], i + 1)
            end = len(text) if end < 0 else end
            return text[i + 1:end], True, self._after(end + 1)
        stop = _stops(self.delims).search(text, i)
        end = stop.start() if stop else len(text)
        return text[i:end], False, self._after(end)

    def _after(self, i: int) -> str:
        """Step past blanks and one delimiter; the delimiter (``" "`` for a blank)."""
        text = self.text
        if i < len(text) and _comment_at(text, i):
            self.pos = len(text)
            return "!"
        while i < len(text) and text[i] in _BLANK:
            i += 1
        delim = " "
        if i < len(text) and text[i] in self.delims:
            delim, i = text[i], i + 1
        while i < len(text) and text[i] in _BLANK:
            i += 1
        self.pos = i
        return delim


def _comment_at(text: str, i: int) -> bool:
    return text[i] == "!" or text.startswith("//", i)


_STOPS: dict[str, re.Pattern[str]] = {}


def _stops(delims: str) -> re.Pattern[str]:
    """Where an unquoted token ends: a blank, a delimiter, or a comment."""
    if delims not in _STOPS:
        _STOPS[delims] = re.compile(f"[{re.escape(_BLANK + delims)}!]|//")
    return _STOPS[delims]


def _items(value: str) -> list[_Param]:
    """An array's items (``[a b c]``, ``"a, b, "``, rows split by ``|``), empty ones in place."""
    return _Lexer(value, ",=|").params(stop_at_empty=False)


def line_values(text: str) -> list[str]:
    """The values of one line read as a command's parameters, in order (names left out): the
    fields of a bus coordinates row, split as OpenDSS splits them."""
    return [p.value for p in _Lexer(text).params()]


def unquote(text: str) -> str:
    """``text`` without blanks around it and without one pair of enclosing quotes or
    brackets (``"a b"``, ``(x)``, ``[1 2]``)."""
    text = text.strip()
    if len(text) >= 2 and text[0] in _QUOTE_END and text[-1] == _QUOTE_END[text[0]]:
        return text[1:-1].strip()
    return text


def is_yes(value: str) -> bool:
    """OpenDSS's yes/no: true when it starts with ``y`` or ``t``."""
    return value.strip()[:1].lower() in ("y", "t")


def base_bus(bus: str) -> str:
    """A bus as written in a property, without quotes and node suffixes: ``632.1.2.3`` ->
    ``632``."""
    return strip_phases(unquote(bus)).strip()


def _number(param: _Param) -> float:
    """A number; quoted or bracketed, it is OpenDSS inline math in RPN (``(24.9 3 sqrt /)``)."""
    return _rpn(param.value) if param.quoted else float(param.value)


def _deg(fn: Callable[[float], float]) -> Callable[[float], float]:
    return lambda x: fn(math.radians(x))


_RPN_BINARY: dict[str, Callable[[float, float], float]] = {
    "+": lambda y, x: y + x, "-": lambda y, x: y - x, "*": lambda y, x: y * x,
    "/": lambda y, x: y / x, "^": math.pow,
    "atan2": lambda y, x: math.degrees(math.atan2(y, x)),
}
_RPN_UNARY: dict[str, Callable[[float], float]] = {
    "sqrt": math.sqrt, "sqr": lambda x: x * x, "ln": math.log, "log10": math.log10,
    "exp": math.exp, "inv": lambda x: 1.0 / x, "sin": _deg(math.sin), "cos": _deg(math.cos),
    "tan": _deg(math.tan), "asin": lambda x: math.degrees(math.asin(x)),
    "acos": lambda x: math.degrees(math.acos(x)), "atan": lambda x: math.degrees(math.atan(x)),
}


def _rpn(text: str) -> float:
    stack: list[float] = []
    for item in _items(text):
        word = item.value.lower()
        if not word:
            continue
        if word in _RPN_BINARY:
            x, y = _pop(stack), _pop(stack)
            stack.append(_RPN_BINARY[word](y, x))
        elif word in _RPN_UNARY:
            stack.append(_RPN_UNARY[word](_pop(stack)))
        elif word == "pi":
            stack.append(math.pi)
        elif word == "swap":
            x, y = _pop(stack), _pop(stack)
            stack += [x, y]
        else:
            stack.append(_number(item))
    return stack[-1] if stack else 0.0


def _pop(stack: list[float]) -> float:
    return stack.pop() if stack else 0.0


# -- files -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Line:
    """A command line and where it is."""

    text: str
    path: Path
    number: int

    @property
    def where(self) -> str:
        return f"{self.path}:{self.number}"


def read_text(path: Path) -> str:
    """A text file as Windows tools write it: UTF-8 (with or without BOM) or UTF-16 with BOM."""
    data = path.read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", errors="replace")
    return data.decode("utf-8-sig", errors="replace")


def _read_lines(path: Path) -> list[tuple[int, str]]:
    """Numbered non-blank lines, ``/* ... */`` blocks left out."""
    text = read_text(path)
    out: list[tuple[int, str]] = []
    in_block = False
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if in_block:
            if "*/" not in line:
                continue
            in_block, line = False, line.split("*/", 1)[1].strip()
        elif line.startswith("/*"):
            in_block = "*/" not in line
            continue
        if line:
            out.append((number, line))
    return out


_WINDOWS_PATH = re.compile(r"^[A-Za-z]:[\\/]")


def _resolve(target: str, folder: Path) -> Path | None:
    """A file named in a command as OpenDSS on Windows finds it: ``\\`` separators, any letter
    case, ``.dss`` added to a name without extension; relative to ``folder``. A Windows absolute
    path that does not exist here is looked for beside the deck."""
    text = unquote(target).replace("\\", "/")
    if not text:
        return None
    names = [text]
    if _WINDOWS_PATH.match(text):
        names.append(PurePosixPath(text).name)
    for name in names:
        for candidate in (name, name + ".dss") if "." not in PurePosixPath(name).name else (name,):
            found = _find_file(PurePosixPath(candidate), folder)
            if found is not None:
                return found
    return None


def _find_file(rel: PurePosixPath, folder: Path) -> Path | None:
    current: Path | None = Path(rel.anchor) if rel.is_absolute() else folder
    for part in rel.parts[1:] if rel.is_absolute() else rel.parts:
        current = _child(current, part) if current is not None else None
    return current if current is not None and current.is_file() else None


def _child(folder: Path, part: str) -> Path | None:
    """``folder/part``, or the entry whose name differs only in letter case."""
    if part in ("", "."):
        return folder
    if part == "..":
        return folder.parent
    exact = folder / part
    if exact.exists():
        return exact
    try:
        matches = sorted(c for c in folder.iterdir() if c.name.lower() == part.lower())
    except OSError:
        return None
    return matches[0] if matches else None


# -- the script ------------------------------------------------------------------------------------


@dataclass
class _Winding:
    bus: str = ""
    kv: float = DEFAULT_KV


@dataclass
class Element:
    """An element as the script leaves it: properties under OpenDSS's full names (``key`` is
    ``class.name`` in lower case, ``where`` the file and line of its ``New``)."""

    cls: str
    name: str  # as first written
    where: str  # file:line of its New
    props: dict[str, str] = field(default_factory=dict)
    windings: list[_Winding] = field(default_factory=list)
    wdg: int = 1  # the active winding
    enabled: bool = True
    opened: bool = False  # by an Open command

    @property
    def key(self) -> str:
        """``class.name`` in lower case: how elements are looked up."""
        return f"{self.cls}.{self.name.lower()}"

    @property
    def label(self) -> str:
        """``class.name`` as first written: how warnings name it."""
        return f"{self.cls}.{self.name}"

    def set_windings(self, count: int) -> None:
        """New windings at default ratings; the buses already given stay."""
        old = self.windings
        self.windings = [_Winding(old[i].bus if i < len(old) else "") for i in range(count)]
        self.wdg = min(self.wdg, count)


def _command(word: str) -> str:
    word = word.lower()
    if word in _COMMANDS:
        return word
    return next((c for c in _COMMANDS if c.startswith(word)), "")


_INDEX = {cls: {name: i for i, name in enumerate(names)} for cls, names in _PROPS.items()}


def _property(cls: str, given: str) -> tuple[str, int]:
    """OpenDSS's name for a property as written (exact, else the first it abbreviates) and its
    position (0 when the class has no such property)."""
    low = given.lower()
    index = _INDEX.get(cls)
    if index is None or low in index:
        return low, index[low] + 1 if index else 0
    name = next((n for n in _PROPS[cls] if n.startswith(low)), low)
    return name, index[name] + 1 if name in index else 0


class Script:
    """The elements a DSS script leaves defined, run command by command as OpenDSS runs it.

    After :meth:`run_file`: ``elements`` by key in definition order (``order``), the
    ``circuit``'s name, ``buses`` (lower case -> first spelling), the bus ``coords`` files the
    script named, ``warnings``, and the elements ``redefined`` by a second ``New``."""

    def __init__(self) -> None:
        self.warnings: list[str] = []
        self.elements: dict[str, Element] = {}
        self.order: list[str] = []  # element keys in definition order
        self.circuit = ""
        self.active: Element | None = None
        self.last_class = ""
        self.buses: dict[str, str] = {}  # lower-case bus -> first spelling
        self.coords: list[tuple[Path, bool]] = []  # (file, latitude first)
        self.redefined: list[str] = []  # a second New of an element (read as an edit)
        self.handlers = self._handlers()

    def warn(self, line: _Line, text: str) -> None:
        self.warnings.append(f"{line.where}: {text}")

    def clear(self, keep_general: bool = False) -> None:
        """Forget the circuit (``Clear``, or a second ``New Circuit`` keeping general objects)."""
        keep = [k for k in self.order if keep_general and self.elements[k].cls in _GENERAL]
        self.elements = {k: self.elements[k] for k in keep}
        self.order, self.circuit, self.active = keep, "", None
        if not keep_general:
            self.buses, self.coords = {}, []

    def run_file(self, path: Path, chain: tuple[Path, ...] = ()) -> None:
        """Run the commands of ``path`` (``chain``: the files redirecting to it, outermost
        first)."""
        real = path.resolve()
        if real in chain:
            self.warnings.append(f"{path}: redirects back into itself; not read again")
            return
        try:
            lines = _read_lines(path)
        except OSError as exc:
            self.warnings.append(f"{path}: cannot read ({exc.strerror or exc}); skipped")
            return
        for number, text in lines:
            self._run_guarded(_Line(text, path, number), chain + (real,))

    def _run_guarded(self, line: _Line, chain: tuple[Path, ...]) -> None:
        """Run one line; anything it breaks becomes an error naming the file and line."""
        try:
            self.run(line, chain)
        except ImportError_:
            raise
        except RecursionError as exc:
            raise ImportError_(f"{line.where}: files redirect to each other too deeply") from exc
        except Exception as exc:  # a bad deck must end in a message, never in a traceback
            raise ImportError_(f"{line.where}: cannot read {line.text[:120]!r} "
                               f"({type(exc).__name__}: {exc})") from exc

    def run(self, line: _Line, chain: tuple[Path, ...]) -> None:
        text = line.text
        if text.startswith("~") and len(text) > 1 and text[1] not in _BLANK:
            text = "~ " + text[1:]  # "~bus2=x": OpenDSS would reject it, the intent is clear
        params = _Lexer(text).params()
        if not params:
            return
        head, rest = params[0], params[1:]
        if head.name:  # Line.L1.enabled=no: Edit is the default command
            self._assign(head, rest, line)
            return
        handler = self.handlers.get(_command(head.value))
        if handler is not None:
            handler(rest, line, chain)

    def _handlers(self) -> dict[str, Callable[[list[_Param], _Line, tuple[Path, ...]], None]]:
        return {
            "new": self._new, "edit": self._edit, "more": self._more, "m": self._more,
            "~": self._more, "select": self._select, "enable": self._enable,
            "disable": self._disable, "open": self._open, "close": self._close,
            "redirect": self._redirect, "compile": self._redirect, "clear": self._clear,
            "buscoords": self._buscoords, "latlongcoords": self._latlongcoords,
        }

    # -- commands ----------------------------------------------------------------------------------

    def _new(self, rest: list[_Param], line: _Line, chain: tuple[Path, ...]) -> None:
        found = self._object(rest[0], line) if rest else None
        if found is None:
            return
        cls, name = found
        if cls == "circuit":
            self._new_circuit(name, rest[1:], line)
            return
        el = self.elements.get(f"{cls}.{name.lower()}")
        if el is not None:
            self.redefined.append(f"{line.where}: {el.label} (first at {el.where})")
        elif not self.circuit and cls not in _GENERAL:
            self.warn(line, f"{cls}.{name} comes before New Circuit (OpenDSS rejects it); skipped")
            return
        else:
            el = self._create(cls, name, line)
        self.active = el
        self._apply(el, rest[1:], line)

    def _new_circuit(self, name: str, rest: list[_Param], line: _Line) -> None:
        if self.circuit:
            self.warn(line, f"a new circuit {name} starts here; circuit {self.circuit} before it "
                            "is dropped")
        self.clear(keep_general=True)
        self.circuit = name
        source = self._create("vsource", "source", line)
        self.active = source  # as OpenDSS: New Vsource.source Bus1=SourceBus <the rest>
        self._apply(source, [_Param("bus1", "SourceBus", False), *rest], line)

    def _create(self, cls: str, name: str, line: _Line) -> Element:
        el = Element(cls, name, line.where)
        if cls in _WOUND:
            el.set_windings(2)
        self.elements[el.key] = el
        self.order.append(el.key)
        return el

    def _edit(self, rest: list[_Param], line: _Line, chain: tuple[Path, ...]) -> None:
        el = self._find(rest[0], line, "Edit") if rest else None
        if el is not None:
            self.active = el
            self._apply(el, rest[1:], line)

    def _more(self, rest: list[_Param], line: _Line, chain: tuple[Path, ...]) -> None:
        if self.active is None:
            self.warn(line, "a continuation with no element before it; skipped")
            return
        self._apply(self.active, rest, line)

    def _select(self, rest: list[_Param], line: _Line, chain: tuple[Path, ...]) -> None:
        el = self._find(rest[0], line, "Select") if rest else None
        if el is not None:
            self.active = el

    def _enable(self, rest: list[_Param], line: _Line, chain: tuple[Path, ...]) -> None:
        self._set_enabled(rest, line, True)

    def _disable(self, rest: list[_Param], line: _Line, chain: tuple[Path, ...]) -> None:
        self._set_enabled(rest, line, False)

    def _set_enabled(self, rest: list[_Param], line: _Line, value: bool) -> None:
        found = self._object(rest[0], line) if rest else None
        if found is not None and found[1] == "*":
            for el in self.elements.values():
                el.enabled = value if el.cls == found[0] else el.enabled
            return
        target = self._find(rest[0], line, "Enable" if value else "Disable") if found else None
        if target is not None:
            target.enabled = value

    def _open(self, rest: list[_Param], line: _Line, chain: tuple[Path, ...]) -> None:
        el = self._find(rest[0], line, "Open") if rest else None
        if el is not None:
            el.opened = True

    def _close(self, rest: list[_Param], line: _Line, chain: tuple[Path, ...]) -> None:
        el = self._find(rest[0], line, "Close") if rest else None
        if el is not None:
            el.opened = False

    def _redirect(self, rest: list[_Param], line: _Line, chain: tuple[Path, ...]) -> None:
        path = self._locate(rest, line, "redirected file")
        if path is not None:
            self.run_file(path, chain)

    def _locate(self, rest: list[_Param], line: _Line, what: str) -> Path | None:
        """The file a command names, or None with a warning naming it."""
        target = rest[0].value if rest else ""
        path = _resolve(target, line.path.parent)
        if path is None:
            self.warn(line, f"{what} {target!r} not found; skipped")
        elif _WINDOWS_PATH.match(target.strip()) and not Path(target).is_file():
            self.warn(line, f"{what} {target!r} is a Windows path; read {path} instead")
        return path

    def _clear(self, rest: list[_Param], line: _Line, chain: tuple[Path, ...]) -> None:
        self.clear()

    def _buscoords(self, rest: list[_Param], line: _Line, chain: tuple[Path, ...]) -> None:
        self._coords(rest, line, False)

    def _latlongcoords(self, rest: list[_Param], line: _Line, chain: tuple[Path, ...]) -> None:
        self._coords(rest, line, True)

    def _coords(self, rest: list[_Param], line: _Line, swap: bool) -> None:
        path = self._locate(rest, line, "bus coordinates file")
        if path is not None:
            self.coords.append((path, swap))

    def _assign(self, head: _Param, rest: list[_Param], line: _Line) -> None:
        """``Class.Name.prop=value`` (or ``Name.prop=`` / ``prop=`` for the active element)."""
        parts = head.name.split(".", 2)
        obj, prop = (".".join(parts[:-1]), parts[-1]) if len(parts) > 1 else ("", parts[0])
        el = self._find(_Param("", obj, False), line, "Setting") if obj else self.active
        if el is None:
            if not obj:
                self.warn(line, f"{head.name}= with no element before it; skipped")
            return
        self.active = el
        self._apply(el, [_Param(prop, head.value, True), *rest], line)

    # -- naming ------------------------------------------------------------------------------------

    def _object(self, param: _Param, line: _Line) -> tuple[str, str] | None:
        """(class, name) of ``[object=]Class.Name``; without a class, the last class used."""
        if param.name and not "object".startswith(param.name.lower()):
            self.warn(line, f"expected object=Class.Name, found {param.name}=; skipped")
            return None
        cls, dot, name = unquote(param.value).partition(".")
        if not dot:
            cls, name = self.last_class, cls
        cls, name = cls.strip().lower(), unquote(name)
        if not cls or not name:
            self.warn(line, f"{param.value!r} is not a Class.Name; skipped")
            return None
        self.last_class = cls
        return cls, name

    def _find(self, param: _Param, line: _Line, verb: str) -> Element | None:
        found = self._object(param, line)
        if found is None:
            return None
        cls, name = found
        if cls == "circuit":
            return None
        el = self.elements.get(f"{cls}.{name.lower()}")
        if el is None:
            self.warn(line, f"{verb} {unquote(param.value)}: not defined at this point (OpenDSS "
                            "rejects this); ignored")
        return el

    def _note_bus(self, bus: str) -> None:
        base = base_bus(bus)
        if base:
            self.buses.setdefault(base.lower(), base)

    # -- properties --------------------------------------------------------------------------------

    def _apply(self, el: Element, params: list[_Param], line: _Line) -> None:
        """Named or positional properties, in order, as OpenDSS's editors take them."""
        names = _PROPS.get(el.cls)
        pointer = 0
        for param in params:
            if param.name:
                prop, pointer = _property(el.cls, param.name)
            elif names is not None and pointer < len(names):
                prop, pointer = names[pointer], pointer + 1
            else:
                continue
            self._set(el, prop, param, line)

    def _set(self, el: Element, prop: str, param: _Param, line: _Line) -> None:
        if prop == "like":
            self._like(el, param.value, line)
            return
        if prop == "enabled":
            el.enabled = is_yes(param.value)
            return
        if el.windings and self._set_winding(el, prop, param, line):
            return
        if prop in _BUS_PROPS:
            self._note_bus(param.value)
        elif prop == "numcust":
            count = self._whole(el, prop, param, line)
            if count is None:
                return
            param = param._replace(value=str(count))
        elif prop == "monitoredobj" and el.cls in _MONITORING:
            el.props["switchedobj"] = param.value  # OpenDSS: switched defaults to monitored
        elif prop in ("action", "state"):
            el.props.setdefault("first_state", param.value)  # the normal state if none is given
        el.props[prop] = param.value

    def _set_winding(self, el: Element, prop: str, param: _Param, line: _Line) -> bool:
        """Winding properties of transformers and XfmrCodes; False for the others."""
        if prop in ("windings", "wdg"):
            self._winding_count(el, prop, param, line)
        elif prop == "xfmrcode":
            self._xfmrcode(el, param.value, line)
        elif prop in ("bus", "kv"):
            self._winding_value(el, el.windings[el.wdg - 1], prop, param, line)
        elif prop in ("buses", "kvs"):
            for winding, item in zip(el.windings, _items(param.value), strict=False):
                if item.value:
                    self._winding_value(el, winding, "bus" if prop == "buses" else "kv", item, line)
        if prop in _ARRAY_WINDING:
            el.wdg = len(el.windings)  # OpenDSS walks the windings and stays on the last
        return prop in _WINDING_PROPS

    def _winding_count(self, el: Element, prop: str, param: _Param, line: _Line) -> None:
        """``windings=`` (2 to MAX_WINDINGS) or ``wdg=`` (an existing winding)."""
        number = self._whole(el, prop, param, line)
        if number is None:
            return
        if prop == "windings" and 2 <= number <= MAX_WINDINGS:
            el.set_windings(number)
        elif prop == "wdg" and 1 <= number <= len(el.windings):
            el.wdg = number
        else:
            self.warn(line, f"{el.label}: {prop}={number} is out of range; ignored")

    def _winding_value(self, el: Element, winding: _Winding, what: str, param: _Param,
                       line: _Line) -> None:
        if what == "bus":
            winding.bus = param.value
            self._note_bus(param.value)
            return
        try:
            winding.kv = _number(param)
        except (ValueError, TypeError, ArithmeticError):
            self.warn(line, f"{el.label}: kV {param.value!r} is not a number; ignored")

    def _whole(self, el: Element, prop: str, param: _Param, line: _Line) -> int | None:
        """A whole number not below 0, or None with a warning."""
        try:
            number = round(_number(param))
        except (ValueError, TypeError, ArithmeticError):
            self.warn(line, f"{el.label}: {prop}={param.value!r} is not a number; ignored")
            return None
        if number < 0:
            self.warn(line, f"{el.label}: {prop}={param.value!r} is negative; ignored")
            return None
        return number

    def _xfmrcode(self, el: Element, code: str, line: _Line) -> None:
        """Windings and ratings from an XfmrCode defined before (buses stay)."""
        source = self.elements.get(f"xfmrcode.{unquote(code).lower()}")
        if source is None:
            self.warn(line, f"{el.label}: XfmrCode {code!r} is not defined before it; ignored")
            return
        el.props["xfmrcode"] = code
        el.set_windings(len(source.windings))
        for winding, template in zip(el.windings, source.windings, strict=True):
            winding.kv = template.kv

    def _like(self, el: Element, other: str, line: _Line) -> None:
        """OpenDSS's like=: everything but the connections; the copy is enabled."""
        source = self.elements.get(f"{el.cls}.{unquote(other).lower()}")
        if source is None:
            self.warn(line, f"{el.label}: like={other!r}: no such {el.cls} before it; ignored")
            return
        el.props.update({k: v for k, v in source.props.items() if k not in _BUS_PROPS})
        if source.windings:
            el.set_windings(len(source.windings))
            for winding, template in zip(el.windings, source.windings, strict=True):
                winding.kv = template.kv
        el.enabled = True

