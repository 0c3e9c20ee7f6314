"""XAPI pool database dumps (the XML `xe pool-dump-database` writes, and xapi's state.db).

``load_dump`` reads one into ``{class: {ref: {api_field: text}}}``; ``to_api`` gives each value
the type XAPI puts on the wire (int64 as strings, sets as lists, maps as dicts, booleans,
doubles, dates), using the field types in ``xenapi_fields.json`` (from xen-api's own API
reference). One-to-many sets older dumps leave out (``VM.VBDs`` …) are computed from the
foreign keys, as xapi does. A value that does not parse is kept as text and reported.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from xmlrpc.client import DateTime

NULL_REF = "OpaqueRef:NULL"
Dump = dict[str, dict[str, dict[str, str]]]
ApiRecords = dict[str, dict[str, dict[str, Any]]]


@cache
def field_types() -> dict[str, dict[str, str]]:
    data = json.loads((Path(__file__).with_name("xenapi_fields.json")).read_text())
    return dict(data["classes"])


class DumpError(ValueError):
    """The file is not a pool database dump."""


def load_dump(source: Path | str) -> Dump:
    """Parse a dump from a path or from XML text."""
    try:
        root = ET.parse(source).getroot() if isinstance(source, Path) else ET.fromstring(source)
    except ET.ParseError as exc:
        raise DumpError(f"not XML: {exc}") from exc
    except OSError as exc:
        raise DumpError(f"cannot read: {exc.strerror}") from exc
    if root.tag != "database":
        raise DumpError(f"the root element is <{root.tag}>, not <database> (is it from xe pool-dump-database?)")
    dump: Dump = {}
    for table in root.findall("table"):
        rows = dump.setdefault(table.get("name", ""), {})
        for row in table.findall("row"):
            ref = row.get("ref") or row.get("_ref")
            if not ref:
                continue
            rows[ref] = {api_name(k): unescape(v) for k, v in row.attrib.items()
                         if not k.startswith("_") and k != "ref"}
    return dump


def api_name(db_name: str) -> str:
    """The database stores name_label as name__label (namespaces joined by a double underscore)."""
    return db_name.replace("__", "_")


def unescape(value: str) -> str:
    """xapi protects whitespace in attributes: %n newline, %t tab, %r CR, %_ space, %% percent."""
    if "%" not in value:
        return value
    return re.sub(r"%(.)", lambda m: {"n": "\n", "t": "\t", "r": "\r", "_": " ", "%": "%"}.get(m.group(1), m.group(0)),
                  value)


def parse_sexpr(text: str) -> Any:
    """xapi's S-expressions: ``('a' 'b')`` a set, ``(('k' 'v'))`` a map, strings with \\' and \\\\ escapes."""
    position = 0

    def parse() -> Any:
        nonlocal position
        while position < len(text) and text[position].isspace():
            position += 1
        if position >= len(text):
            raise ValueError("unexpected end")
        char = text[position]
        if char == "(":
            position += 1
            items: list[Any] = []
            while True:
                while position < len(text) and text[position].isspace():
                    position += 1
                if position >= len(text):
                    raise ValueError("unclosed (")
                if text[position] == ")":
                    position += 1
                    return items
                items.append(parse())
        if char == "'":
            position += 1
            out = []
            while position < len(text):
                c = text[position]
                if c == "\\" and position + 1 < len(text):
                    out.append(text[position + 1])
                    position += 2
                    continue
                if c == "'":
                    position += 1
                    return "".join(out)
                out.append(c)
                position += 1
            raise ValueError("unclosed string")
        raise ValueError(f"unexpected {char!r}")

    value = parse()
    if text[position:].strip():
        raise ValueError("trailing text")
    return value


@dataclass
class Problem:
    cls: str
    ref: str
    field: str
    value: str
    expected: str

    def __str__(self) -> str:
        return f"{self.cls} {self.ref} {self.field}: {self.value[:40]!r} is not a valid {self.expected}"


@dataclass
class ApiView:
    records: ApiRecords
    problems: list[Problem] = field(default_factory=list)


def to_api(dump: Dump) -> ApiView:
    """Every record as XAPI's get_all_records would send it."""
    types = field_types()
    view = ApiView({})
    for cls, rows in dump.items():
        cls_types = types.get(cls, {})
        view.records[cls] = {
            ref: {name: _typed(cls, ref, name, raw, cls_types.get(name, "string"), view.problems)
                  for name, raw in row.items()}
            for ref, row in rows.items()}
    _fill_reverse_sets(view.records, types)
    return view


def _typed(cls: str, ref: str, name: str, raw: str, type_: str, problems: list[Problem]) -> Any:
    try:
        return wire_value(raw, type_)
    except (ValueError, TypeError):
        problems.append(Problem(cls, ref, name, raw, type_))
        return raw


def wire_value(raw: str, type_: str) -> Any:
    if type_.endswith(" set"):
        items = parse_sexpr(raw)
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise ValueError("not a set")
        return [wire_value(item, type_[:-4]) for item in items]
    if type_.endswith(" map"):
        pairs = parse_sexpr(raw)
        match = re.fullmatch(r"\((.+) -> (.+)\) map", type_)
        value_type = match.group(2) if match else "string"
        if not isinstance(pairs, list) or not all(isinstance(p, list) and len(p) == 2 for p in pairs):
            raise ValueError("not a map")
        return {str(k): wire_value(v, value_type) for k, v in pairs}
    if type_ == "int":
        return str(int(raw))  # XAPI sends int64 as a string
    if type_ == "float":
        return float(raw)
    if type_ == "bool":
        if raw not in ("true", "false"):
            raise ValueError("not a bool")
        return raw == "true"
    if type_ == "datetime":
        if not re.fullmatch(r"\d{8}T\d{2}:\d{2}:\d{2}Z?", raw):
            raise ValueError("not a date")
        return DateTime(raw)
    return raw  # string, enum, ref, records and options travel as text


def _fill_reverse_sets(records: ApiRecords, types: dict[str, dict[str, str]]) -> None:
    """Older (5.x) dumps store only the foreign key (VBD.VM), not the set (VM.VBDs): compute it."""
    for cls, rows in records.items():
        for name, type_ in types.get(cls, {}).items():
            match = re.fullmatch(r"(\w+) ref set", type_)
            if not match or not rows or any(name in row for row in rows.values()):
                continue
            other = match.group(1)
            back = [f for f, t in types.get(other, {}).items() if t == f"{cls} ref"]
            if len(back) != 1 or other not in records:
                continue
            for row in rows.values():
                row[name] = []
            for other_ref, other_row in records[other].items():
                target = other_row.get(back[0])
                if isinstance(target, str) and target in rows:
                    rows[target][name].append(other_ref)
