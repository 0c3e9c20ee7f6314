"""A fast reader of XML-RPC answers: what ``xmlrpc.client``'s parser gives, for the answers XAPI sends.

``xmlrpc.client`` reads an answer element by element through expat, a Python call for every start tag, text
and end tag: a pool of 10,000 VMs answers get_all_records with 75 MB, which take it 2.7 s — most of a scan. This
reads the same answers with one compiled pattern over their bytes, a token for each struct member or value (a
member holding a set or a map of texts, as most do, is one token), and builds the same Python values, in 1.1 s:
strings (with or without ``<string>``), ints, booleans, doubles, ``DateTime``, nil, arrays and structs (a repeated
member name: the last value, in the first one's place). Each text is decoded alone — an answer is never held as
bytes and as text, which for one name beyond Latin-1 would be four times its size — and a member's name once an
answer, shared by its records.

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

__all__ = ["NotRead", "loads"]


class NotRead(ValueError):
    """The answer is not in a form read here: read it with xmlrpc.client."""


_PROLOG = re.compile(rb"""<\?xml version=(['"])1\.0\1[ \t\n]*\?>[ \t\n]*<methodResponse>[ \t\n]*<params>[ \t\n]*"""
                     rb"<param>")
_EPILOG = re.compile(rb"</param>[ \t\n]*</params>[ \t\n]*</methodResponse>[ \t\n]*")  # XML's whitespace, no other
_TEXT = rb"([^<]*)"
_TYPED = rb"(string|int|i4|i8|double|boolean|dateTime\.iso8601)"
# XAPI's own form (ocaml-rpc's xmlrpc.ml: no whitespace between elements, text as an untyped <value>), read as
# bytes: each alternative ends with a group of its own that takes part whenever it matches (m.lastindex says which),
# and the last takes any one byte no other does, so the tokens cover the answer from end to end
_TOKEN = re.compile(
    rb"<member><name>" + _TEXT + rb"</name>(?:<value>" + _TEXT + rb"</value></member>()"  # 1-3: a member, text
    rb"|<value><" + _TYPED + _TEXT.join((rb">", rb"</\4></value></member>()"))  # 4-6: a member, typed
    + rb"|<value><array><data>((?:<value>[^<]*</value>)*)</data></array></value></member>()"  # 7-8: texts
    rb"|<value><struct>((?:<member><name>[^<]*</name><value>[^<]*</value></member>)*)</struct></value></member>()"
    rb"|())"  # 9-10: a map of texts; 11: a member's name, its value (a struct, an array …) follows
    rb"|</member>()"  # 12
    rb"|<value>(?:" + _TEXT + rb"</value>()|<" + _TYPED + _TEXT.join((rb">", rb"</\15></value>()"))  # 13-17
    + rb"|<struct>()|<array><data>()|<nil/></value>())"  # 18, 19, 20
    rb"|</struct></value>()|</data></array></value>()|<value/>()"  # 21, 22, 23
    rb"|([\s\S])"  # 24: anything else (whitespace between elements, a comment …)
)
_MEMBER_TEXT, _MEMBER_TYPED, _MEMBER_TEXTS, _MEMBER_MAP, _MEMBER, _MEMBER_END = 3, 6, 8, 10, 11, 12
_VALUE_TEXT, _VALUE_TYPED, _STRUCT, _ARRAY, _NIL = 14, 17, 18, 19, 20
_STRUCT_END, _ARRAY_END, _VALUE_EMPTY = 21, 22, 23
# the items of an array of texts, the members of a struct of texts (the token above has read their form)
_TEXTS = re.compile(rb"<value>([^<]*)</value>")
_MAP = re.compile(rb"<member><name>([^<]*)</name><value>([^<]*)</value></member>")
# the control characters XML 1.0 forbids, and a carriage return (expat reads CR LF as LF): expat's to judge
_CONTROLS = bytes(c for c in range(32) if c not in (0x09, 0x0A))
_NONCHARACTERS = ("\ufffe".encode(), "\uffff".encode())  # characters XML forbids
_ENTITY = re.compile(r"&(?:(amp|lt|gt|quot|apos)|#([0-9]{1,7})|#x([0-9a-fA-F]{1,6}));")
_PREDEFINED = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}
# where a token may come: in an array (a value), in a struct (a member), after a member's name (its value), after
# a member's value (its end)
_IN_ARRAY, _IN_STRUCT, _AFTER_NAME, _AFTER_VALUE = 0, 1, 2, 3
_CHUNK = 1 << 20


def loads(body: bytes) -> tuple[Any, ...]:
    """The params of a methodResponse, as ``xmlrpc.client.Transport.parse_response`` returns them. Read as bytes,
    each text decoded on its own (an answer is never held twice, as bytes and as text)."""
    for at in range(0, len(body), _CHUNK):  # a chunk at a time: a copy of a whole answer would double it
        chunk = body[at:at + _CHUNK + 2]  # two bytes more: a noncharacter across the chunks' edge
        if len(chunk.translate(None, _CONTROLS)) != len(chunk):
            raise NotRead("a control character or carriage return")
        if _NONCHARACTERS[0] in chunk or _NONCHARACTERS[1] in chunk:
            raise NotRead("a character XML forbids")
    if b"]]>" in body:  # XML forbids it in text; expat says so
        raise NotRead("]]> in text")
    prolog = _PROLOG.match(body)
    close = body.rfind(b"</param>")  # the last one is the param's own: text holds no "<"
    if prolog is None or close < prolog.end() or not _EPILOG.fullmatch(body, close):
        raise NotRead("not a methodResponse of one param in the form read here")
    try:
        return (_value(body, prolog.end(), close),)
    except UnicodeDecodeError as exc:
        raise NotRead("a text that is not UTF-8") from exc


def _value(body: bytes, start: int, end: int) -> Any:
    """The one value in ``body[start:end]``."""
    top: list[Any] = []
    container: Any = top  # the struct (a dict) or array (a list) being filled
    outer: list[tuple[Any, int]] = []  # the containers around it, and where each was (_IN_ARRAY or _AFTER_NAME)
    where, key = _IN_ARRAY, ""
    names: dict[bytes, str] = {}  # a member's name made text once an answer: its records share the key

    def name_of(raw: bytes) -> str:
        found = names.get(raw)
        if found is None:
            found = names[raw] = _text(raw)
        return found

    for token in _TOKEN.finditer(body, start, end):
        kind = token.lastindex
        if kind == _MEMBER_TEXT:  # most of an answer: a record's text fields
            if where != _IN_STRUCT:
                raise NotRead("a member out of place")
            raw, value = token[1], token[2]
            container[names.get(raw) or name_of(raw)] = value.decode() if b"&" not in value else _text(value)
            continue
        if kind == _MEMBER_TYPED:
            if where != _IN_STRUCT:
                raise NotRead("a member out of place")
            container[name_of(token[1])] = _typed(token[4], token[5])
            continue
        if kind == _MEMBER_TEXTS or kind == _MEMBER_MAP:  # a set of refs, an other_config: one token each
            if where != _IN_STRUCT:
                raise NotRead("a member out of place")
            inner = token[7] if kind == _MEMBER_TEXTS else token[9]
            plain = b"&" not in inner
            if kind == _MEMBER_TEXTS:
                found: Any = [item.decode() if plain else _text(item) for item in _TEXTS.findall(inner)]
            else:
                found = {names.get(k) or name_of(k): v.decode() if plain else _text(v) for k, v in _MAP.findall(inner)}
            raw = token[1]
            container[names.get(raw) or name_of(raw)] = found
            continue
        if kind == _MEMBER:
            if where != _IN_STRUCT:
                raise NotRead("a member out of place")
            key, where = name_of(token[1]), _AFTER_NAME
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
            item: Any = _text(token[13])
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


def _text(raw: bytes) -> str:
    """Character data as expat gives it: UTF-8 decoded, the five predefined entities and character references
    decoded (any other ``&`` is expat's to refuse)."""
    text = raw.decode("utf-8")
    if "&" not in text:
        return text
    decoded, references = _ENTITY.subn(_entity, text)
    if references != text.count("&"):
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


def _typed(kind: bytes, raw: bytes) -> Any:
    """A typed scalar as xmlrpc.client's Unmarshaller makes it (one it would refuse: its refusal, by it)."""
    data = _text(raw)
    if kind == b"string":
        return data
    if kind == b"boolean":
        if data not in ("0", "1"):
            raise NotRead("a boolean that is not 0 or 1")
        return data == "1"
    if kind == b"dateTime.iso8601":
        value = DateTime()
        value.decode(data)
        return value
    try:
        return float(data) if kind == b"double" else int(data)
    except ValueError as exc:
        raise NotRead(f"a {kind.decode()} that is not a number") from exc
