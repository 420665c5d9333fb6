"""The GridLAB-D source reader of the ``.glm`` importer: a model file and what it includes,
read into objects and ``modify`` directives (:func:`read_objects`);
:mod:`outage_sentinel.importers.glm` resolves their names and builds the network.

A file is read the way GridLAB-D's loader reads it:

- ``//`` starts a comment (on a macro line only after a blank). ``${NAME}`` is replaced by a
  variable set with ``#define``/``#set``/``#setenv``, ``#include using(NAME=...)`` or
  ``global TYPE NAME VALUE;`` (the environment is not read). ``#ifdef``/``#ifndef``/
  ``#ifexist``/``#if NAME==value`` ... ``#else`` ... ``#endif`` keep or drop lines.
  ``#include "file"`` is read in place, looked for beside the including file, beside the top
  file, in the working directory, then in the three folders above the including file; a missing
  one is a warning naming both files. Other macros (``#system``, ``#wget``, ...) are never run.
- Blocks that are not objects (``clock``, ``module``, ``class``, ``schedule``, ``global``, ...)
  are skipped; ``modify NAME.PROPERTY VALUE;`` is read (the model applies it).
- Object headers ``object CLASS``, ``object MODULE.CLASS``, ``object CLASS:ID`` (referred to as
  ``CLASS:ID`` when it has no ``name``), ``object CLASS:FROM..TO`` and ``object CLASS:..COUNT``
  (several objects). A value runs to ``;`` or the end of its line, double quotes removed. A
  nested ``object`` has the enclosing object as ``parent``; ``PROPERTY object CLASS {...}``
  (e.g. an inline ``configuration``) refers to the inner object.

Rooms, in order: the preprocessor (comments, macros and conditionals, includes; warnings at
most ``WARNINGS_PER_KIND`` of each kind), tokens, and the object parser. A file that cannot be
read or an object that cannot be parsed is an :class:`ImportError_` naming the file and line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from outage_sentinel.importers.common import ImportError_

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


# -- reading: comments, macros, includes ---------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Line:
    text: str
    file: Path
    no: int

    def where(self) -> str:
        return f"{self.file}:{self.no}"


class Notes:
    """Warnings, at most ``WARNINGS_PER_KIND`` of each kind (the rest are counted)."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self.counts: dict[str, int] = {}

    def add(self, kind: str, message: str) -> None:
        """Note ``message``, a warning of the kind ``kind``."""
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if self.counts[kind] <= WARNINGS_PER_KIND:
            self.items.append(message)

    def all(self) -> list[str]:
        """The warnings noted, then a line per kind counting those left out."""
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

    def __init__(self, top: Path, notes: Notes) -> None:
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
class GlmObject:
    """One object as written: its class (``otype``), the line of its header, its ``class:id``
    when the header gives an id, the object it is nested in, its properties (lower-case
    names), the objects defined in place as property values, and its ``name`` once the model
    has resolved it."""

    otype: str
    line: _Line
    ident: str = ""  # "class:id" when the header gives an id
    enclosing: GlmObject | None = None
    props: dict[str, str] = field(default_factory=dict)
    #: property -> the object defined in place as its value
    inline: dict[str, GlmObject] = field(default_factory=dict)
    name: str = ""

    def where(self) -> str:
        """``file:line`` of its header."""
        return self.line.where()


class Modify(NamedTuple):
    """A ``modify NAME.PROPERTY VALUE;`` directive and where it is."""

    target: str  # NAME.PROPERTY
    value: str
    line: _Line


def read_objects(path: Path, notes: Notes) -> tuple[list[GlmObject], list[Modify]]:
    """The objects and ``modify`` directives of the model file ``path`` and what it includes,
    in the order written; warnings go to ``notes``. A file that cannot be read, or an object
    that cannot be parsed, is an :class:`ImportError_` naming the file (and line)."""
    reader = _Reader(path, notes)
    try:
        reader.read(path)
    except OSError as exc:
        raise ImportError_(f"{path}: cannot read: {exc}") from exc
    parser = _Parser(_tokens(reader.lines), notes)
    parser.run()
    return parser.objects, parser.modifies


class _Parser:
    """Objects and ``modify`` directives from the tokens of a model."""

    def __init__(self, toks: list[_Tok], notes: Notes) -> None:
        self.toks = toks
        self.i = 0
        self.notes = notes
        self.objects: list[GlmObject] = []
        self.modifies: list[Modify] = []

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
        self.modifies.append(Modify(target.text, value, start.line))

    def object_block(self, enclosing: GlmObject | None, depth: int) -> list[GlmObject]:
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
            obj = GlmObject(m.group(1), start.line, ident, enclosing)
            self.objects.append(obj)
            self.body(obj, depth)
            made.append(obj)
        return made

    def body(self, obj: GlmObject, depth: int) -> None:
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

    def property(self, obj: GlmObject, name: _Tok, depth: int) -> None:
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
