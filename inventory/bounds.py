"""Values kept within what the store, the exports and the checks can hold.

Whatever a hypervisor, a dump or a recording sent, each record field must be of its declared type:
integers within SQLite's 64 bits, floats finite, booleans real booleans, text of bounded length and
with UTF-8 (no lone surrogate), ``raw_json`` plain JSON of bounded depth and size. A value that is not
becomes NULL (text: shortened, or U+FFFD for a surrogate; ``raw_json``: a note saying why) and one line in
the target's problems — the target is then ``partial`` and the scan exits 3 — never an exception that loses
the scan.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import typing
from collections.abc import Callable
from operator import attrgetter
from typing import Any

from inventory.model import Inventory
from inventory.normalise import is_unicode, storable

INT_MIN, INT_MAX = -(2**63), 2**63 - 1
MAX_TEXT = 65_536          # characters in one text value
MAX_RAW_BYTES = 1_048_576  # bytes of one record's raw_json
MAX_DEPTH = 32             # nesting of one record's raw_json
# the store's encoding (sorted keys, text as is), but refusing what is not plain JSON rather than making it text
_encode = json.JSONEncoder(ensure_ascii=False, allow_nan=False, check_circular=False, sort_keys=True).encode

Check = Callable[[Any], str | None]  # None: fine; else why it is not


def _int(value: Any) -> str | None:
    if type(value) is int and INT_MIN <= value <= INT_MAX:
        return None
    if type(value) is int:
        return "is beyond 64 bits"
    return f"is {type(value).__name__}, not an integer"


def _float(value: Any) -> str | None:
    if type(value) in (float, int) and math.isfinite(value):
        return None
    return "is not a finite number" if isinstance(value, (float, int)) else f"is {type(value).__name__}, not a number"


def _bool(value: Any) -> str | None:
    return None if type(value) is bool else f"is {type(value).__name__} {_short(value)}, not true or false"


def _text(value: Any) -> str | None:
    if type(value) is str:
        if len(value) > MAX_TEXT:
            return f"is {len(value):,} characters long (at most {MAX_TEXT:,})"
        return None if is_unicode(value) else "is not valid Unicode (a lone surrogate, which has no UTF-8)"
    return f"is {type(value).__name__}, not text"


def _raw(value: Any) -> str | None:
    """None when ``value`` is a storable raw_json, else why it is not."""
    found = _plain_raw(value)
    return found if isinstance(found, str) else None


def _plain_raw(value: Any) -> tuple[dict[str, Any], str] | str:
    """``value`` as the store gives it back (keys sorted as text, tuples as lists, number keys as text) and the JSON
    text the store writes of it; or why it cannot be stored. Encoded and decoded again, at C speed."""
    if not isinstance(value, dict):
        return f"is {type(value).__name__}, not an object"
    if _depth(value) > MAX_DEPTH:
        return f"nests deeper than {MAX_DEPTH} levels"
    try:
        text = _encode(value)
        size = len(text) if text.isascii() else len(text.encode())  # a lone surrogate has no UTF-8
    except (TypeError, ValueError, RecursionError) as exc:
        return f"is not plain JSON ({type(exc).__name__})"
    if size > MAX_RAW_BYTES:
        return f"is {size:,} bytes (at most {MAX_RAW_BYTES:,})"
    plain = json.loads(text)
    if _NUMBER_KEY.search(text):  # a key that may have been a number, true, false or null: sorted as a number was
        text = _encode(plain)
        plain = json.loads(text)
    return plain, text


# a key as the encoder writes an int, float, true, false or null key (or a text key that looks like one)
_NUMBER_KEY = re.compile(r'"(?:-?\d[^"]*|true|false|null)": ')


def _depth(value: Any, limit: int = MAX_DEPTH, level: int = 1) -> int:
    """How deep ``value`` nests (dicts, lists and tuples: tuples are stored as lists), counting no further than one
    past ``limit`` (a value that holds itself is too deep)."""
    if level > limit:
        return level
    deepest = level
    for child in value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else ():
        if isinstance(child, (dict, list, tuple)):
            depth = _depth(child, limit, level + 1)
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    break
    return deepest


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


_CHECKS: dict[Any, Check] = {int: _int, float: _float, bool: _bool, str: _text}


_FIELDS: dict[type, tuple[tuple[str, Check, bool, Any], ...]] = {}


def _fields(record: type) -> tuple[tuple[str, Check, bool, Any], ...]:
    """(field, check, may be None, type) for every field of a record class."""
    if record in _FIELDS:
        return _FIELDS[record]
    hints = typing.get_type_hints(record)
    fields = []
    for field in dataclasses.fields(record):
        args = typing.get_args(hints[field.name])
        optional = type(None) in args
        base = next((a for a in args if a is not type(None)), hints[field.name])
        check = _raw if field.name == "raw_json" else _CHECKS.get(base)
        if check is not None:
            fields.append((field.name, check, optional, base))
    _FIELDS[record] = tuple(fields)
    return _FIELDS[record]


def bound(inventory: Inventory) -> None:
    """Make every record of ``inventory`` storable; what had to be dropped is appended to its problems.

    Columns are checked whole first (types, ranges and lengths at C speed); only a column with a bad
    value is walked record by record. Each ``raw_json`` is left as the store will give it back — plain JSON,
    keys sorted, lists for arrays — so a scan's records in memory are its records as read back
    (``inventory.bounded``).
    """
    for table in Inventory.ALL_TABLES:
        records = getattr(inventory, table)
        if not records:
            continue
        for name, check, optional, base in _fields(type(records[0])):
            values = list(map(attrgetter(name), records))
            if name == "raw_json":
                _plain_raws(inventory, table, records, values)
                continue
            if _column_fine(values, base, name, optional):
                continue
            for index, value in enumerate(values):
                if value is None and optional:
                    continue
                why = check(value)
                if why is not None:
                    record = records[index]
                    replacement, stored = _replacement(name, value, why, optional, base)
                    records[index] = dataclasses.replace(record, **{name: replacement})
                    inventory.problems.append(f"{table} {_short(_who(record))}: {name} {why}; {stored}")


    inventory.bounded = True


_SCALARS = {str, int, float, bool, type(None)}


def _plain_raws(inventory: Inventory, table: str, records: list[Any], values: list[Any]) -> None:
    """Each raw_json storable and as the store gives it back, or a note saying why it is not (and a problem)."""
    for index, raw in enumerate(values):
        if raw is None or (type(raw) is dict and _flat_and_small(raw)):
            continue  # most of them: flat, small, keys in order
        found = _plain_raw(raw)
        record = records[index]
        if isinstance(found, str):
            replacement, stored = _replacement("raw_json", raw, found, True, dict)
            records[index] = dataclasses.replace(record, raw_json=replacement)
            inventory.problems.append(f"{table} {_short(_who(record))}: raw_json {found}; {stored}")
            continue
        plain, text = found
        records[index] = dataclasses.replace(record, raw_json=plain)
        inventory.raw_texts[id(plain)] = (plain, text)  # the store writes this text rather than encode it again


def _sorted_text_keys(raw: dict[str, Any]) -> bool:
    keys = list(raw)
    return all(type(k) is str for k in keys) and keys == sorted(keys)


def is_plain(value: Any) -> bool:
    """Whether ``value`` is JSON as reading it back gives it: dicts with text keys in order, lists, scalars."""
    if type(value) is dict:
        return _sorted_text_keys(value) and all(type(v) in _SCALARS or is_plain(v) for v in value.values())
    if type(value) is list:
        return all(type(v) in _SCALARS or is_plain(v) for v in value)
    return type(value) in _SCALARS


def _column_fine(values: list[Any], base: Any, name: str, optional: bool) -> bool:
    """True when every value of a column is certainly fine (False: look closer, value by value)."""
    types = set(map(type, values))
    allowed = {base, type(None)} if optional else {base}
    if base is float:
        allowed.add(int)
    if not types <= allowed:
        return False
    # None, 0 and "" are within bounds: what is left out of these (C-speed) passes needs no look
    if base is int:
        return bool(INT_MIN <= min(filter(None, values), default=0) and max(filter(None, values), default=0) <= INT_MAX)
    if base is float:
        return all(map(math.isfinite, filter(None, values)))
    if base is str:
        texts = list(filter(None, values))
        return max(map(len, texts), default=0) <= MAX_TEXT and is_unicode("".join(texts))
    return True


def _flat_and_small(raw: dict[Any, Any]) -> bool:
    """A raw_json with only scalar values, text keys in order and short Unicode text needs no deeper look (most of
    them); any other is looked at closer (``_plain_raw``)."""
    values = raw.values()
    if not set(map(type, values)) <= _SCALARS:
        return False
    keys = list(raw)
    if not (all(type(k) is str for k in keys) and keys == sorted(keys)):
        return False
    text = "".join(keys) + "".join([v for v in values if type(v) is str])
    return len(text) <= MAX_RAW_BYTES // 4 and is_unicode(text) and all(
        INT_MIN <= v <= INT_MAX for v in values if type(v) is int) and all(
        math.isfinite(v) for v in values if type(v) is float)


def unique(inventory: Inventory) -> None:
    """Keep the first record of each key within the target (``Inventory.KEYS``); a second one is a problem.

    A normaliser makes keys unique where the hypervisor can legitimately repeat them (KVM clones); this is
    the last line against one that sends two records with one identity (two VBDs of a VM on one userdevice).
    """
    for table, key in Inventory.KEYS.items():
        records = getattr(inventory, table)
        keys = list(map(attrgetter(*key), records))
        if len(set(keys)) == len(keys):
            continue
        seen: set[Any] = set()
        kept = []
        for record, identity in zip(records, keys, strict=True):
            if identity in seen:
                inventory.problems.append(f"{table} {_short(identity)}: a second record with the same key; left out")
                continue
            seen.add(identity)
            kept.append(record)
        setattr(inventory, table, kept)


def _replacement(name: str, value: Any, why: str, optional: bool, base: Any) -> tuple[Any, str]:
    """What is stored instead, and how to say so. Text that is merely long keeps its beginning; a key or name
    that must be there keeps its text form; anything else optional becomes NULL."""
    if name == "raw_json":
        return {"dropped": f"raw_json {why}"}, "its raw_json dropped"
    if base is str and (type(value) is str or not optional):
        text = value if type(value) is str else str(value)
        marked = storable(text)
        said = "stored shortened, as text" if marked == text else "stored with U+FFFD for what is not Unicode"
        if len(marked) > MAX_TEXT:
            marked = marked[:MAX_TEXT - 1] + "…"
            said += ", shortened" if said.startswith("stored with") else ""
        return marked, said
    if optional:
        return None, "stored as NULL"
    if base is bool:
        return str(value).strip().lower() in ("true", "1", "yes"), "stored as a boolean"
    return 0, "stored as 0"


def _who(record: Any) -> str:
    """The record in words: its key, else its owner and device."""
    key = getattr(record, "key", None)
    if isinstance(key, str):
        return key
    for owner in ("vm_key", "host_key"):
        if hasattr(record, owner):
            return f"{getattr(record, owner)} {getattr(record, 'device', None) or getattr(record, 'storage_key', '')}"
    return type(record).__name__
