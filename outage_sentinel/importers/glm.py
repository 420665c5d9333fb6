"""GridLAB-D ``.glm`` importer (the PNNL taxonomy feeders, the GridLAB-D IEEE models and the like).

The file is read the way GridLAB-D's loader reads it:

- ``//`` starts a comment (on a macro line only after a blank). ``${NAME}`` is replaced by a
  variable set with ``#define``/``#set``/``#setenv``, ``#include using(NAME=...)`` or
  ``global TYPE NAME VALUE;`` (the environment is not read). ``#ifdef``/``#ifndef``/
  ``#ifexist``/``#if NAME==value`` ... ``#else`` ... ``#endif`` keep or drop lines.
  ``#include "file"`` is read in place, looked for beside the including file, beside the top
  file, in the working directory, then in the three folders above the including file; a missing
  one is a warning naming both files. Other macros (``#system``, ``#wget``, ...) are never run.
- Blocks that are not objects (``clock``, ``module``, ``class``, ``schedule``, ``global``, ...)
  are skipped; ``modify NAME.PROPERTY VALUE;`` is applied.
- Object headers ``object CLASS``, ``object MODULE.CLASS``, ``object CLASS:ID`` (referred to as
  ``CLASS:ID`` when it has no ``name``), ``object CLASS:FROM..TO`` and ``object CLASS:..COUNT``
  (several objects). A value runs to ``;`` or the end of its line, double quotes removed. A
  nested ``object`` has the enclosing object as ``parent``; ``PROPERTY object CLASS {...}``
  (e.g. an inline ``configuration``) refers to the inner object.

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
loads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from outage_sentinel.importers.common import Branch, ImportError_, RawNetwork

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
MAX_INCLUDE_DEPTH = 32
ABOVE_LEVELS = 3  # folders above an including file searched for its includes
MAX_OBJECT_DEPTH = 64
MAX_RANGE = 100_000
WARNINGS_PER_KIND = 20

_MACRO = re.compile(r"#\s*([A-Za-z_]+)\s*(.*)$")
_VARIABLE = re.compile(r"\$\{([^}]*)\}")
_CONDITION = re.compile(r"([A-Za-z_]\w*)\s*(==|!=|<=|>=|<|>|=)\s*(.*)$")
_ASSIGN = re.compile(r"([A-Za-z_][\w:]*)\s*(?:=\s*(.*))?$")
_GLOBAL = re.compile(r"\s*global\s+\w+\s+([A-Za-z_]\w*)(?:\[[^\]]*\])?\s+([^;]*);")
_TOKEN = re.compile(r'([{};])|"([^"]*)"?|([^\s{};"]+)')
# CLASS, MODULE.CLASS, CLASS:ID, CLASS:FROM..TO, CLASS:..COUNT; "CLASS:" (no id) is read too
_HEADER = re.compile(r"(?:\w+\.)?([A-Za-z_]\w*)(?::(?:(\d+)|(\d+)\.\.(\d+)|\.\.(\d+))?)?")
_NUMBER_UNIT = re.compile(r"\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*([A-Za-z]*)")


# -- reading: comments, macros, includes ---------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Line:
    text: str
    file: Path
    no: int

    def where(self) -> str:
        return f"{self.file}:{self.no}"


class _Notes:
    """Warnings, at most ``WARNINGS_PER_KIND`` of each kind (the rest are counted)."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self.counts: dict[str, int] = {}

    def add(self, kind: str, message: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if self.counts[kind] <= WARNINGS_PER_KIND:
            self.items.append(message)

    def all(self) -> list[str]:
        more = [f"... and {n - WARNINGS_PER_KIND} more warning(s) of the kind: {kind}"
                for kind, n in self.counts.items() if n > WARNINGS_PER_KIND]
        return self.items + more


def _error(line: _Line, message: str) -> ImportError_:
    return ImportError_(f"{line.where()}: {message}")


def _strip_comment(text: str) -> str:
    """GridLAB-D's rule: ``//`` ends a line, on a macro line only after a blank."""
    if not text.lstrip().startswith("#"):
        return text.split("//", 1)[0]
    cuts = [k for k in (text.find(" //"), text.find("\t//")) if k >= 0]
    return text[:min(cuts)] if cuts else text


@dataclass
class _Condition:
    active: bool
    line: _Line


class _Reader:
    """The preprocessed lines of a model: macros applied, includes read in place."""

    def __init__(self, top: Path, notes: _Notes) -> None:
        self.top = top
        self.notes = notes
        self.variables: dict[str, str] = {}
        self.conditions: list[_Condition] = []
        self.chain: list[Path] = []
        self.lines: list[_Line] = []

    def active(self) -> bool:
        return all(c.active for c in self.conditions)

    def read(self, path: Path) -> None:
        self.chain.append(path.resolve())
        depth = len(self.conditions)
        with path.open(encoding="utf-8-sig", errors="replace") as fh:
            for no, raw in enumerate(fh, 1):
                self._line(_Line(raw.rstrip("\r\n"), path, no))
        for cond in self.conditions[depth:]:
            self.notes.add("unclosed #if", f"{cond.line.where()}: no #endif before the end of "
                                           f"{path.name}; closed there")
        del self.conditions[depth:]
        self.chain.pop()

    def _line(self, line: _Line) -> None:
        text = self._expand(_strip_comment(line.text), line)
        if text.lstrip().startswith("#"):
            self._macro(text.strip(), line)
        elif self.active():
            self.lines.append(_Line(text, line.file, line.no))
            declared = _GLOBAL.match(text)  # ``global TYPE NAME VALUE;`` is a variable too
            if declared:
                self.variables[declared.group(1)] = declared.group(2).strip().strip('"')

    def _expand(self, text: str, line: _Line) -> str:
        def value(m: re.Match[str]) -> str:
            name = m.group(1).strip()
            if name not in self.variables and self.active():
                self.notes.add("undefined variable",
                               f"{line.where()}: variable '{name}' is not defined; left empty")
            return self.variables.get(name, "")

        return _VARIABLE.sub(value, text)

    def _macro(self, text: str, line: _Line) -> None:
        m = _MACRO.match(text)
        word, rest = (m.group(1), m.group(2).strip()) if m else ("", text)
        if word in ("ifdef", "ifndef", "ifexist", "if", "else", "endif"):
            self._conditional(word, rest, line)
        elif not self.active():
            return
        elif word == "include":
            self._include(rest, line)
        elif word in ("define", "set", "setenv"):
            self._assign(rest, line)
        elif word == "error":
            self.notes.add("#error", f"{line.where()}: the model says '#error {rest}' (GridLAB-D "
                                     "would stop here); read on")
        elif word not in ("print", "warning", "debug", "system", "start", "option", "wget",
                          "sleep", "binpath", "libpath", "incpath"):
            self.notes.add("unknown macro", f"{line.where()}: unknown macro '{text}'; ignored")

    def _conditional(self, word: str, rest: str, line: _Line) -> None:
        if word == "endif" or word == "else":
            if not self.conditions:
                self.notes.add("stray macro", f"{line.where()}: #{word} without #if; ignored")
            elif word == "endif":
                self.conditions.pop()
            else:
                self.conditions[-1].active = not self.conditions[-1].active
            return
        name = rest.strip().strip('"')
        if word == "ifdef":
            hold = name in self.variables
        elif word == "ifndef":
            hold = name not in self.variables
        elif word == "ifexist":
            hold = self._locate(name, line.file) is not None
        else:
            hold = self._compare(rest, line)
        self.conditions.append(_Condition(hold, line))

    def _compare(self, rest: str, line: _Line) -> bool:
        m = _CONDITION.match(rest)
        if not m or m.group(1) not in self.variables:
            if self.active():
                self.notes.add("#if", f"{line.where()}: cannot evaluate '#if {rest}' (needs "
                                      "NAME==value with NAME defined); taken as false")
            return False
        left, op, right = self.variables[m.group(1)], m.group(2), m.group(3).strip().strip('"')
        ops = {"==": left == right, "=": left == right, "!=": left != right, "<": left < right,
               ">": left > right, "<=": left <= right, ">=": left >= right}
        return ops[op]

    def _assign(self, rest: str, line: _Line) -> None:
        m = _ASSIGN.match(rest)
        if not m:
            self.notes.add("macro", f"{line.where()}: cannot read '{rest}'; ignored")
            return
        value = (m.group(2) or "").strip()
        if len(value) > 1 and value[0] == value[-1] == '"':
            value = value[1:-1]
        self.variables[m.group(1)] = value

    def _include(self, rest: str, line: _Line) -> None:
        using = re.match(r"using\s*\(([^)]*)\)\s*", rest)
        if using:
            for item in using.group(1).split(","):
                self._assign(item.strip(), line)
            rest = rest[using.end():]
        quoted = re.match(r'"([^"]+)"', rest)
        if not quoted:
            if not rest.startswith("<"):  # <header.h> is C code for runtime classes
                self.notes.add("include", f"{line.where()}: #include {rest} is not read (only "
                                          '#include "file" is)')
            return
        self._read_include(quoted.group(1), line)

    def _read_include(self, name: str, line: _Line) -> None:
        target = self._locate(name, line.file)
        if target is None:
            self.notes.add("include", f"{line.where()}: included file '{name}' not found "
                                      f"(looked beside {line.file.name} and above)")
        elif target.resolve() in self.chain:
            self.notes.add("include", f"{line.where()}: '{name}' is already being read "
                                      "(an include cycle); skipped")
        elif len(self.chain) >= MAX_INCLUDE_DEPTH:
            self.notes.add("include", f"{line.where()}: includes nested more than "
                                      f"{MAX_INCLUDE_DEPTH} deep; '{name}' skipped")
        else:
            try:
                self.read(target)
            except OSError as exc:
                self.notes.add("include", f"{line.where()}: cannot read included file "
                                          f"'{target}': {exc}")

    def _locate(self, name: str, including: Path) -> Path | None:
        rel = Path(name.replace("\\", "/"))
        if rel.is_absolute():
            return rel if rel.is_file() else None
        above = list(including.resolve().parent.parents)[:ABOVE_LEVELS]
        folders = [including.parent, self.top.parent, Path.cwd(), *above]
        return next((d / rel for d in folders if (d / rel).is_file()), None)


# -- parsing: tokens, objects ----------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Tok:
    kind: str  # "word", "str", "{", "}", ";"
    text: str
    line: _Line
    start: int
    end: int


def _tokens(lines: list[_Line]) -> list[_Tok]:
    out: list[_Tok] = []
    for line in lines:
        for m in _TOKEN.finditer(line.text):
            if m.group(1):
                out.append(_Tok(m.group(1), m.group(1), line, m.start(), m.end()))
            elif m.group(3) is not None:
                out.append(_Tok("word", m.group(3), line, m.start(), m.end()))
            else:
                out.append(_Tok("str", m.group(2), line, m.start(), m.end()))
    return out


@dataclass(eq=False)
class _Obj:
    otype: str
    line: _Line
    ident: str = ""  # "class:id" when the header gives an id
    enclosing: _Obj | None = None
    props: dict[str, str] = field(default_factory=dict)
    inline: dict[str, _Obj] = field(default_factory=dict)  # property -> object defined in place
    name: str = ""

    def where(self) -> str:
        return self.line.where()


class _Parser:
    """Objects and ``modify`` directives from the tokens of a model."""

    def __init__(self, toks: list[_Tok], notes: _Notes) -> None:
        self.toks = toks
        self.i = 0
        self.notes = notes
        self.objects: list[_Obj] = []
        self.modifies: list[tuple[str, str, _Line]] = []

    def peek(self) -> _Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, opened: _Line, what: str) -> _Tok:
        tok = self.peek()
        if tok is None:
            raise _error(opened, f"{what} is not closed before the end of the model")
        self.i += 1
        return tok

    def run(self) -> None:
        namespaces = 0  # objects inside ``namespace NAME { ... }`` are read as any other
        while (tok := self.peek()) is not None:
            word = tok.text if tok.kind == "word" else ""
            if word == "object":
                self.object_block(None, 0)
            elif word == "modify":
                self.modify()
            elif word == "namespace" and self.opens_block(2):
                namespaces, self.i = namespaces + 1, self.i + 3
            elif tok.kind == "}" and namespaces:
                namespaces, self.i = namespaces - 1, self.i + 1
            elif tok.kind == "}":
                self.notes.add("stray }", f"{tok.line.where()}: '}}' without a block; ignored")
                self.i += 1
            elif tok.kind == ";":
                self.i += 1
            else:
                self.skip_statement()

    def opens_block(self, ahead: int) -> bool:
        k = self.i + ahead
        return k < len(self.toks) and self.toks[k].kind == "{"

    def skip_statement(self) -> None:
        """A top-level statement that is not an object: to its ``;`` or through its block."""
        first = self.take(self.toks[self.i].line, "statement")
        tok: _Tok | None = first
        while tok is not None and tok.kind not in (";", "{"):
            tok = self.peek()
            if tok is not None and tok.kind == "word" and tok.text == "object":
                self.notes.add("statement", f"{first.line.where()}: '{first.text} ...' not "
                                            "understood; skipped")
                return
            self.i += 1
        if tok is not None and tok.kind == "{":
            self.skip_block(first.line, f"'{first.text}' block")

    def skip_block(self, opened: _Line, what: str) -> None:
        """Skip to the ``}`` that closes a ``{`` already taken."""
        depth = 1
        while depth:
            kind = self.take(opened, what).kind
            depth += {"{": 1, "}": -1}.get(kind, 0)

    def modify(self) -> None:
        start = self.take(self.toks[self.i].line, "modify")
        target = self.take(start.line, "modify")
        value = self.value(start.line)
        self.end_statement(target, "modify")
        self.modifies.append((target.text, value, start.line))

    def object_block(self, enclosing: _Obj | None, depth: int) -> list[_Obj]:
        start = self.take(self.toks[self.i].line, "object")
        header = self.take(start.line, "object header")
        m = _HEADER.fullmatch(header.text) if header.kind == "word" else None
        if m is None:
            raise _error(header.line, f"bad object header 'object {header.text}' (expected "
                                      "CLASS, CLASS:ID, CLASS:FROM..TO or CLASS:..COUNT)")
        if depth > MAX_OBJECT_DEPTH:
            raise _error(header.line, f"objects nested more than {MAX_OBJECT_DEPTH} deep")
        if self.take(start.line, f"object {header.text}").kind != "{":
            raise _error(header.line, f"expected '{{' after 'object {header.text}'")
        body, made = self.i, []
        for ident in _identities(m, header.line):
            self.i = body
            obj = _Obj(m.group(1), start.line, ident, enclosing)
            self.objects.append(obj)
            self.body(obj, depth)
            made.append(obj)
        return made

    def body(self, obj: _Obj, depth: int) -> None:
        what = f"object {obj.otype} {obj.props.get('name', '')}".rstrip()
        while True:
            tok = self.take(obj.line, what)
            if tok.kind == "}":
                return
            if tok.kind == "{":
                self.skip_block(tok.line, what)
            elif tok.kind == "word" and tok.text == "object":
                self.i -= 1
                self.object_block(obj, depth + 1)
            elif tok.kind != ";":
                self.property(obj, tok, depth)

    def property(self, obj: _Obj, name: _Tok, depth: int) -> None:
        key = name.text.lower()
        first = self.take(obj.line, f"object {obj.otype}")
        self.i -= 1
        if first.kind == "word" and first.text == "object":
            obj.inline[key] = self.object_block(None, depth + 1)[0]
        elif first.kind == "{":
            self.i += 1
            self.skip_block(first.line, f"value of '{name.text}'")
        elif first.kind not in (";", "}"):
            obj.props[key] = self.value(first.line)
        else:
            obj.props[key] = ""
        self.end_statement(name, name.text)

    def value(self, line: _Line) -> str:
        """The rest of a line up to ``;`` (or a ``}`` closing the object), double quotes
        removed; braces inside a value (``name `m_{N:INC}`;``) are part of it."""
        first = last = self.peek()
        depth = 0
        while (tok := self.peek()) is not None and tok.line is line and tok.kind != ";":
            depth += {"{": 1, "}": -1}.get(tok.kind, 0)
            if depth < 0:
                break
            last, self.i = tok, self.i + 1
        if first is None or last is None or first is self.peek():
            return ""
        return line.text[first.start:last.end].replace('"', "").strip()

    def end_statement(self, name: _Tok, what: str) -> None:
        tok = self.peek()
        if tok is not None and tok.kind == ";":
            self.i += 1
        else:
            self.notes.add("missing ;", f"{name.line.where()}: expected ';' after '{what}'")


def _identities(m: re.Match[str], line: _Line) -> list[str]:
    """The ``class:id`` of each object an object header makes ("" for an anonymous one)."""
    cls, one, low, high, count = m.groups()
    if one is not None:
        return [f"{cls}:{one}"]
    if low is not None:
        ids = range(int(low), int(high) + 1)
    elif count is not None:
        ids = range(int(count))
    else:
        return [""]
    if len(ids) > MAX_RANGE:
        raise _error(line, f"object {m.group(0)} makes more than {MAX_RANGE} objects")
    return [f"{cls}:{k}" if low is not None else "" for k in ids]


# -- resolving names ----------------------------------------------------------------------------


class _Model:
    """Named objects: names, ``class:id`` and ``id:N`` references, nesting and ``modify``."""

    def __init__(self, objects: list[_Obj], notes: _Notes) -> None:
        self.objects = objects
        self.notes = notes
        self.index: dict[str, _Obj] = {}
        for k, obj in enumerate(objects, 1):
            self._name(obj, k)
        for obj in objects:
            for key, inner in obj.inline.items():
                obj.props[key] = inner.name
            if obj.enclosing is not None and "parent" not in obj.props:
                obj.props["parent"] = obj.enclosing.name
            if "root" in obj.props:
                obj.props.pop("parent", None)

    def _name(self, obj: _Obj, k: int) -> None:
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

    def find(self, ref: str) -> _Obj | None:
        ref = ref.strip()
        found = self.index.get(ref)
        if found is None and ":" in ref:
            cls, _, num = ref.rpartition(":")
            found = self.index.get(f"{cls.rsplit('.', 1)[-1]}:{num}")
        return found

    def apply(self, modifies: list[tuple[str, str, _Line]]) -> None:
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
    notes = _Notes()
    reader = _Reader(path, notes)
    try:
        reader.read(path)
    except OSError as exc:
        raise ImportError_(f"{path}: cannot read: {exc}") from exc
    parser = _Parser(_tokens(reader.lines), notes)
    parser.run()
    model = _Model(parser.objects, notes)
    model.apply(parser.modifies)
    net = _Builder(model, notes, path.stem).build()
    if not net.sources:
        raise ImportError_(f"{path}: no node with 'bustype SWING' (the source)")
    net.warnings.extend(notes.all())
    return net


class _Builder:
    """Buses, sources, links and customer counts of the model, by the rules of the docstring."""

    def __init__(self, model: _Model, notes: _Notes, name: str) -> None:
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
        _unnest_service_transformers(self.net, self.notes)
        return self.net

    def bus(self, obj: _Obj) -> None:
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

    def parent_bus(self, obj: _Obj) -> str | None:
        ref = obj.props.get("parent", "")
        if not ref:
            return None
        parent = self.model.find(ref)
        if parent is None:
            self.notes.add("reference", f"{obj.where()}: {obj.otype} {obj.name}: parent '{ref}' "
                                        "not found")
            return None
        return parent.name if parent.name in self.buses else None

    def end(self, obj: _Obj, key: str) -> _Obj | None:
        """The object at the ``from``/``to`` end of a link (a phantom bus when undefined)."""
        ref = obj.props.get(key, "")
        found = self.model.find(ref) if ref else None
        if found is None and ref:
            self.notes.add("reference", f"{obj.where()}: {obj.otype} {obj.name}: {key} '{ref}' "
                                        "not found; kept as a bus of that name")
            found = _Obj("node", obj.line, name=ref)
        elif found is not None and found.name not in self.buses:
            self.notes.add("reference", f"{obj.where()}: {obj.otype} {obj.name}: {key} "
                                        f"'{ref}' is a {found.otype}, not a node")
        return found

    def link(self, obj: _Obj) -> None:
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

    def configuration(self, obj: _Obj) -> dict[str, str]:
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


def _unnest_service_transformers(net: RawNetwork, notes: _Notes) -> None:
    """A service transformer fed from inside another one's low-voltage side (e.g. 480 V to
    240/120 V in a building, with no voltages given) is a plain connection inside that area."""
    adjacency: dict[str, set[str]] = {}
    for br in net.branches:
        if not (br.kind == "transformer" and br.service):
            adjacency.setdefault(br.a, set()).add(br.b)
            adjacency.setdefault(br.b, set()).add(br.a)
    sources = {bus for _, bus in net.sources}
    services = [br for br in net.branches if br.kind == "transformer" and br.service]
    owner: dict[str, str] = {}
    for br in services:
        for bus in _low_side(adjacency, br, sources):
            owner.setdefault(bus, br.name)
    for br in services:
        if owner.get(br.a, br.name) != br.name:
            br.service = False
            notes.add("nested transformer", f"transformer {br.name}: fed from the low-voltage side "
                                            f"of {owner[br.a]}; a plain connection in that area")


def _low_side(adjacency: dict[str, set[str]], br: Branch, sources: set[str]) -> set[str]:
    """The buses behind a service transformer's secondary (empty when they reach a source)."""
    seen, stack = {br.b}, [br.b]
    while stack:
        for v in adjacency.get(stack.pop(), ()):
            if v in sources:
                return set()
            if v not in seen and v != br.a:
                seen.add(v)
                stack.append(v)
    return seen - sources


def _phases(obj: _Obj) -> list[str]:
    return [p for p in "ABC" if p in obj.props.get("phases", "").upper()] or ["A", "B", "C"]


def _is_open(obj: _Obj) -> bool:
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


def _is_service(cfg: dict[str, str], primary: _Obj, secondary: _Obj) -> bool:
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

