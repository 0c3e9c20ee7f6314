"""A fast reader of XML-RPC answers: what ``xmlrpc.client``'s parser gives, for the answers XAPI sends.

``xmlrpc.client`` reads an answer element by element through expat, a Python call for every start tag, text
and end tag: a pool of 10,000 VMs answers get_all_records with 75 MB, which take it 2.7 s — most of a scan. This
reads the same answers with one compiled pattern, a token for each struct member or value (a member holding a set
or a map of texts, as most do, is one token), and builds the same Python values, in 0.8 s: strings (with or
without ``<string>``), ints, booleans, doubles, ``DateTime``, nil, arrays and structs (a repeated member name:
the last value, in the first one's place).

Only a methodResponse of one param in XAPI's own form (its RPC library, ocaml-rpc's ``xmlrpc.ml``: no whitespace
between elements) is read here; anything else — whitespace between elements (``xmlrpc.client``'s own form), a
fault, an encoding declared, a CDATA section or comment, an entity XML does not predefine, a carriage return or a
character XML forbids, attributes, namespaces, base64, a tag out of place — raises ``NotRead``, and the caller
gives the same bytes to ``xmlrpc.client`` (the XenServer transport's ``parse_response``), whose values or error
are then the answer's. ``tests/test_xmlrpc_fast.py`` holds the two to the same values.
"""

from __future__ import annotations

import re
from typing import Any
from xmlrpc.client import DateTime

__all__ = ["NotRead", "loads", "loads_text", "text_of"]


class NotRead(ValueError):
    """The answer is not in a form read here: read it with xmlrpc.client."""


_PROLOG = re.compile(r"""<\?xml version=(['"])1\.0\1\s*\?>\s*<methodResponse>\s*<params>\s*<param>""")
_EPILOG = re.compile(r"</param>\s*</params>\s*</methodResponse>\s*")
_TEXT = r"([^<]*)"
_TYPED = r"(string|int|i4|i8|double|boolean|dateTime\.iso8601)"
# XAPI's own form (ocaml-rpc's xmlrpc.ml: no whitespace between elements, text as an untyped <value>): each
# alternative ends with a group of its own that takes part whenever it matches (m.lastindex says which), and the
# last takes any one character no other does, so the tokens cover the text from end to end
_TOKEN = re.compile(
    rf"<member><name>{_TEXT}</name>(?:<value>{_TEXT}</value></member>()"  # 1-3: a member, text
    rf"|<value><{_TYPED}>{_TEXT}</\4></value></member>()"  # 4-6: a member, typed
    r"|<value><array><data>((?:<value>[^<]*</value>)*)</data></array></value></member>()"  # 7-8: texts
    r"|<value><struct>((?:<member><name>[^<]*</name><value>[^<]*</value></member>)*)</struct></value></member>()"
    r"|())"  # 9-10: a map of texts; 11: a member's name, its value (a struct, an array …) follows
    r"|</member>()"  # 12
    rf"|<value>(?:{_TEXT}</value>()|<{_TYPED}>{_TEXT}</\15></value>()"  # 13-14: a value, text; 15-17: typed
    r"|<struct>()|<array><data>()|<nil/></value>())"  # 18, 19, 20
    r"|</struct></value>()|</data></array></value>()|<value/>()"  # 21, 22, 23
    r"|([\s\S])"  # 24: anything else (whitespace between elements, a comment …)
)
_MEMBER_TEXT, _MEMBER_TYPED, _MEMBER_TEXTS, _MEMBER_MAP, _MEMBER, _MEMBER_END = 3, 6, 8, 10, 11, 12
_VALUE_TEXT, _VALUE_TYPED, _STRUCT, _ARRAY, _NIL = 14, 17, 18, 19, 20
_STRUCT_END, _ARRAY_END, _VALUE_EMPTY = 21, 22, 23
# the items of an array of texts, the members of a struct of texts (the token above has read their form)
_TEXTS = re.compile(r"<value>([^<]*)</value>")
_MAP = re.compile(r"<member><name>([^<]*)</name><value>([^<]*)</value></member>")
# the control characters XML 1.0 forbids, and a carriage return (expat reads CR LF as LF): expat's to judge
_CONTROLS = bytes(c for c in range(32) if c not in (0x09, 0x0A))
_ENTITY = re.compile(r"&(?:(amp|lt|gt|quot|apos)|#([0-9]{1,7})|#x([0-9a-fA-F]{1,6}));")
_PREDEFINED = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}
# where a token may come: in an array (a value), in a struct (a member), after a member's name (its value), after
# a member's value (its end)
_IN_ARRAY, _IN_STRUCT, _AFTER_NAME, _AFTER_VALUE = 0, 1, 2, 3


def loads(body: bytes) -> tuple[Any, ...]:
    """The params of a methodResponse, as ``xmlrpc.client.Transport.parse_response`` returns them."""
    return loads_text(text_of(body))


def text_of(body: bytes) -> str:
    """An answer's text, when it holds nothing expat would read otherwise than as it is (else ``NotRead``)."""
    for at in range(0, len(body), _CHUNK):  # a chunk at a time: a copy of a whole answer would double it
        chunk = body[at:at + _CHUNK]
        if len(chunk.translate(None, _CONTROLS)) != len(chunk):
            raise NotRead("a control character or carriage return")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotRead("not UTF-8") from exc
    if "\ufffe" in text or "\uffff" in text:
        raise NotRead("a character XML forbids")
    if "]]>" in text:  # XML forbids it in text; expat says so
        raise NotRead("]]> in text")
    return text


def loads_text(text: str) -> tuple[Any, ...]:
    """``loads`` of an answer's text (``text_of``)."""
    prolog = _PROLOG.match(text)
    close = text.rfind("</param>")  # the last one is the param's own: text holds no "<"
    if prolog is None or close < prolog.end() or not _EPILOG.fullmatch(text, close):
        raise NotRead("not a methodResponse of one param in the form read here")
    return (_value(text, prolog.end(), close),)


_CHUNK = 1 << 20


def _value(text: str, start: int, end: int) -> Any:
    """The one value in ``text[start:end]``."""
    top: list[Any] = []
    container: Any = top  # the struct (a dict) or array (a list) being filled
    outer: list[tuple[Any, int]] = []  # the containers around it, and where each was (_IN_ARRAY or _AFTER_NAME)
    where, key = _IN_ARRAY, ""
    for token in _TOKEN.finditer(text, start, end):
        kind = token.lastindex
        if kind == _MEMBER_TEXT:  # most of an answer: a record's text fields
            if where != _IN_STRUCT:
                raise NotRead("a member out of place")
            name, value = token[1], token[2]
            container[_text(name) if "&" in name else name] = _text(value) if "&" in value else value
            continue
        if kind == _MEMBER_TYPED:
            if where != _IN_STRUCT:
                raise NotRead("a member out of place")
            name = token[1]
            container[_text(name) if "&" in name else name] = _typed(token[4], token[5])
            continue
        if kind == _MEMBER_TEXTS or kind == _MEMBER_MAP:  # a set of refs, an other_config: one token each
            if where != _IN_STRUCT:
                raise NotRead("a member out of place")
            name, inner = token[1], token[7 if kind == _MEMBER_TEXTS else 9]
            if kind == _MEMBER_TEXTS:
                found: Any = _TEXTS.findall(inner) if "&" not in inner else [_text(x) for x in _TEXTS.findall(inner)]
            else:
                found = dict(_MAP.findall(inner)) if "&" not in inner else {
                    _text(k): _text(v) for k, v in _MAP.findall(inner)}
            container[_text(name) if "&" in name else name] = found
            continue
        if kind == _MEMBER:
            if where != _IN_STRUCT:
                raise NotRead("a member out of place")
            key, where = _text(token[1]), _AFTER_NAME
            continue
        if kind == _MEMBER_END:
            if where != _AFTER_VALUE:
                raise NotRead("</member> out of place")
            where = _IN_STRUCT
            continue
        if kind == _STRUCT_END or kind == _ARRAY_END:
            if not outer or where != (_IN_STRUCT if kind == _STRUCT_END else _IN_ARRAY):
                raise NotRead("a struct or array closed out of place")
            container, where = outer.pop()
            if where == _AFTER_NAME:
                where = _AFTER_VALUE
            continue
        # a value: an array's next item, or the value of the member named last
        if where != _IN_ARRAY and where != _AFTER_NAME:
            raise NotRead("a value out of place")
        if kind == _VALUE_TEXT:
            value = token[13]
            item: Any = _text(value) if "&" in value else value
        elif kind == _VALUE_TYPED:
            item = _typed(token[15], token[16])
        elif kind == _VALUE_EMPTY:
            item = ""
        elif kind == _NIL:
            item = None
        elif kind == _STRUCT:
            item = {}
        elif kind == _ARRAY:
            item = []
        else:
            raise NotRead("an element or text not read here")
        if where == _AFTER_NAME:
            container[key] = item
        elif container is top and top:
            raise NotRead("more than one value in the param")
        else:
            container.append(item)
        if kind == _STRUCT or kind == _ARRAY:
            outer.append((container, where))
            container, where = item, _IN_STRUCT if kind == _STRUCT else _IN_ARRAY
        elif where == _AFTER_NAME:
            where = _AFTER_VALUE
    if outer or len(top) != 1:
        raise NotRead("the param's value is not whole")
    return top[0]


def _text(raw: str) -> str:
    """Character data as expat gives it: the five predefined entities and character references decoded (any
    other ``&`` is expat's to refuse)."""
    if "&" not in raw:
        return raw
    decoded, references = _ENTITY.subn(_entity, raw)
    if references != raw.count("&"):
        raise NotRead("an entity XML does not predefine, or a bare &")
    return decoded


def _entity(found: re.Match[str]) -> str:
    if found[1]:
        return _PREDEFINED[found[1]]
    number = int(found[2]) if found[2] else int(found[3], 16)
    if not (number in (0x9, 0xA, 0xD) or 0x20 <= number <= 0xD7FF or 0xE000 <= number <= 0xFFFD
            or 0x10000 <= number <= 0x10FFFF):
        raise NotRead("a character reference XML forbids")
    return chr(number)


def _typed(kind: str, raw: str) -> Any:
    """A typed scalar as xmlrpc.client's Unmarshaller makes it (one it would refuse: its refusal, by it)."""
    data = _text(raw)
    if kind == "string":
        return data
    if kind == "boolean":
        if data not in ("0", "1"):
            raise NotRead("a boolean that is not 0 or 1")
        return data == "1"
    if kind == "dateTime.iso8601":
        value = DateTime()
        value.decode(data)
        return value
    try:
        return float(data) if kind == "double" else int(data)
    except ValueError as exc:
        raise NotRead(f"a {kind} that is not a number") from exc
