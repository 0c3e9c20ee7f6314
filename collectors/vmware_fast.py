"""A fast path for vCenter's bulk types (VMs, hosts): RetrievePropertiesEx requests sent over pyvmomi's
authenticated session — a ContainerView's list, then pages of the objects named, two in flight — with the answers
read by a few compiled regular expressions instead of pyvmomi's object deserialiser (which spends ~9 s on 10,000
VMs with their devices); a host's data objects by ``vmware_fast_hosts``.

It yields the plain records ``vmware.retrieve`` makes, as ``vmware_slim`` keeps them: what the normaliser reads; a
test holds both paths to identical answers. Anything it does not understand (a SOAP fault, an unexpected value
type or element) raises, and the collector falls back to pyvmomi.
"""

from __future__ import annotations

import html
import http.client
import re
import ssl
import threading
from collections import deque
from typing import Any

from collectors.vmware_fast_hosts import SLIMMED, tree_value, xsi_type
from collectors.vmware_normalise import NIC_MODELS
from inventory.lifetime import bulk

ENVELOPE = ('<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/'
            'envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>{}</soapenv:Body>'
            '</soapenv:Envelope>')
_OBJ = re.compile(r'<obj type="([^"]+)">([^<]*)</obj>')
_TOKEN = re.compile(r"<token>([^<]+)</token>")
_FAULT = re.compile(r"<faultstring>(.*?)</faultstring>", re.S)
_FIELD_NAMES = ("key", "label", "controllerKey", "unitNumber", "fileName", "datastore", "thinProvisioned", "deviceName",
                "network", "portgroupKey", "switchUuid", "capacityInBytes", "capacityInKB", "macAddress")
_FIELDS = re.compile(rf"<({'|'.join(_FIELD_NAMES)})(?: [^>]*)?>([^<]*)</\1>")
_INTS = {"key", "controllerKey", "unitNumber", "capacityInBytes", "capacityInKB"}
_BACKING = ("fileName", "datastore", "thinProvisioned", "deviceName", "network")
_INT_TYPES = {"xsd:int", "xsd:long", "xsd:short", "xsd:byte"}


class FastPathError(Exception):
    """The answer was not what the fast path reads; use pyvmomi's path."""


def retrieve_body(pc: str, view: str, kind: str, paths: list[str], page: int) -> str:
    props = "".join(f"<pathSet>{html.escape(p)}</pathSet>" for p in paths)
    return ENVELOPE.format(
        f'<RetrievePropertiesEx xmlns="urn:vim25"><_this type="PropertyCollector">{pc}</_this><specSet>'
        f'<propSet><type>{kind}</type>{props}</propSet><objectSet><obj type="ContainerView">{view}</obj>'
        '<skip>true</skip><selectSet xsi:type="TraversalSpec"><name>view</name><type>ContainerView</type>'
        '<path>view</path><skip>false</skip></selectSet></objectSet></specSet>'
        f'<options><maxObjects>{page}</maxObjects></options></RetrievePropertiesEx>')


def continue_body(pc: str, token: str) -> str:
    return ENVELOPE.format(f'<ContinueRetrievePropertiesEx xmlns="urn:vim25"><_this type="PropertyCollector">{pc}'
                           f"</_this><token>{html.escape(token)}</token></ContinueRetrievePropertiesEx>")


def view_body(pc: str, view: str) -> str:
    """The objects a ContainerView holds (its ``view`` property): one short answer of references."""
    return ENVELOPE.format(
        f'<RetrievePropertiesEx xmlns="urn:vim25"><_this type="PropertyCollector">{pc}</_this><specSet><propSet>'
        f'<type>ContainerView</type><pathSet>view</pathSet></propSet><objectSet><obj type="ContainerView">'
        f'{html.escape(view)}</obj></objectSet></specSet><options></options></RetrievePropertiesEx>')


def objects_body(pc: str, kind: str, paths: list[str], refs: list[tuple[str, str]]) -> str:
    """The properties of these objects (type, moid), named one by one: no traversal, an answer of known size."""
    props = "".join(f"<pathSet>{html.escape(p)}</pathSet>" for p in paths)
    objects = "".join(f'<objectSet><obj type="{html.escape(t)}">{html.escape(m)}</obj></objectSet>' for t, m in refs)
    return ENVELOPE.format(
        f'<RetrievePropertiesEx xmlns="urn:vim25"><_this type="PropertyCollector">{pc}</_this><specSet><propSet>'
        f'<type>{kind}</type>{props}</propSet>{objects}</specSet><options><maxObjects>{len(refs)}</maxObjects>'
        '</options></RetrievePropertiesEx>')


_REF = re.compile(r'<ManagedObjectReference type="([^"]+)"[^>]*>([^<]+)</ManagedObjectReference>')


IN_FLIGHT = 2  # pages asked for at once, each on its own connection: vCenter prepares them while we read one


def retrieve_fast(si: Any, content: Any, kind: Any, paths: list[str], *, context: ssl.SSLContext, timeout: float,
                  page: int = 500, nested: bool = False) -> tuple[list[dict[str, Any]], int]:
    """Plain records of every object of one type, and the calls made.

    A ContainerView lists the objects (one short answer), then their properties are asked for ``page`` objects at
    a time, ``IN_FLIGHT`` pages asked for ahead of the one being read: vCenter works while we parse, and no answer
    is ever the whole inventory at once (a vCenter that answers a whole traversal in one piece — the simulator
    does — would have us wait for all of it, then hold it all)."""
    stub = si._stub
    host, port = stub.host.rsplit(":", 1) if ":" in stub.host else (stub.host, "443")
    view = content.viewManager.CreateContainerView(content.rootFolder, [kind], True)
    calls = 1
    connections = [http.client.HTTPSConnection(host.strip("[]"), int(port), context=context, timeout=timeout)
                   for _ in range(IN_FLIGHT)]
    headers = {"Cookie": stub.cookie, "SOAPAction": getattr(stub, "versionId", None) or '"urn:vim25"',
               "Content-Type": "text/xml; charset=utf-8"}
    pc = content.propertyCollector._moId
    try:
        try:
            listed = _Fetch(connections[0], stub.path, view_body(pc, view._moId), headers).result()
            calls += 1
        finally:
            view.Destroy()  # what it holds is read: no later round trip for it
            calls += 1
        refs = [(t, html.unescape(m)) for t, m in _REF.findall(listed)]
        if listed.count("<ManagedObjectReference") != len(refs):
            raise FastPathError("a reference of the view not read")
        bodies = [objects_body(pc, kind._wsdlName, paths, refs[i:i + page]) for i in range(0, len(refs), page)]
        pages: list[list[dict[str, Any]]] = [[] for _ in bodies]  # records by page, in the view's order
        waiting = deque(enumerate(bodies))
        asked: deque[tuple[int, _Fetch, http.client.HTTPSConnection]] = deque()
        for connection in connections:
            if waiting:
                index, body = waiting.popleft()
                asked.append((index, _Fetch(connection, stub.path, body, headers), connection))
        while asked:
            index, fetch, connection = asked.popleft()
            text = fetch.result()
            calls += 1
            token = _TOKEN.search(text, max(0, len(text) - 4096)) or _TOKEN.search(text)
            if token:  # a vCenter that pages even a page of named objects: the rest of it next on this connection
                waiting.appendleft((index, continue_body(pc, token.group(1))))
            if waiting:  # ask for the next page before reading this one
                index_next, body = waiting.popleft()
                asked.append((index_next, _Fetch(connection, stub.path, body, headers), connection))
            with bulk():  # records that live until the scan is stored
                pages[index].extend(parse_objects(text, nested=nested))
            del text
    finally:
        for connection in connections:
            connection.close()
    return [record for records in pages for record in records], calls


_FAST_METHODS = ("<RetrievePropertiesEx ", "<ContinueRetrievePropertiesEx ")  # all the fast path ever sends


class _Fetch:
    """One request on its own thread (sockets release the GIL, so fetching overlaps parsing)."""

    def __init__(self, conn: http.client.HTTPSConnection, path: str, body: str, headers: dict[str, str]) -> None:
        if not body[body.find("<soapenv:Body>") + 14:].startswith(_FAST_METHODS):
            raise FastPathError("the fast path sends RetrievePropertiesEx and its Continue pages only")
        self.error: BaseException | None = None
        self.text = ""
        self.thread = threading.Thread(target=self._run, args=(conn, path, body, headers), daemon=True)
        self.thread.start()

    def _run(self, conn: http.client.HTTPSConnection, path: str, body: str, headers: dict[str, str]) -> None:
        try:
            conn.request("POST", path, body.encode(), headers)
            response = conn.getresponse()
            self.text = response.read().decode("utf-8")
            if response.status != 200 or "<faultstring>" in self.text:
                fault = _FAULT.search(self.text)
                raise FastPathError(f"HTTP {response.status}: "
                                    f"{html.unescape(fault.group(1)) if fault else self.text[:200]}")
        except BaseException as exc:  # handed to the reader
            self.error = exc

    def result(self) -> str:
        self.thread.join()
        if self.error is not None:
            raise self.error
        return self.text


def parse_objects(text: str, nested: bool = False) -> list[dict[str, Any]]:
    """The objects of an answer as plain records. ``nested``: data-object properties (host network config …) are
    read too, for what the collector keeps of them. An object is read where it lies in the answer, not copied out
    (an answer of 500 VMs is 4 MB)."""
    records = []
    at = text.find("<objects>")
    while at >= 0:
        following = text.find("<objects>", at + 9)
        end = following if following >= 0 else len(text)
        obj = _OBJ.search(text, at, end)
        if obj is None:
            raise FastPathError("an object without <obj>")
        record: dict[str, Any] = {"_moid": obj.group(2), "_type": obj.group(1)}
        if not nested:  # structured values (devices, custom attributes) are read apart, the text ones around them
            cursor = at
            for start, name in sorted((found, name) for name, marker in _APART_STARTS.items()
                                      if (found := text.find(marker, at, end)) >= 0):
                _scalars(record, text, cursor, start)
                record[name], cursor = _apart(name, text, start, end)
            _scalars(record, text, cursor, end)
        else:
            for name, attrs, value in _properties(text[at:end]):
                structured = "<" in value or xsi_type(attrs).startswith("ArrayOf")  # an empty array has no elements
                if not structured:
                    record[name] = _value(name, attrs, value)
                elif name in SLIMMED:
                    record[name] = SLIMMED[name](value)
                else:
                    record[name] = tree_value(attrs, value)
        records.append(record)
        at = following
    return records


def _properties(chunk: str) -> list[tuple[str, str, str]]:
    """Each property of an object: name, the attributes of its value element, and the value's content."""
    found = []
    at = chunk.find("<propSet><name>")
    while at >= 0:
        name_end = chunk.index("</name>", at)
        value_at = name_end + len("</name>")
        if not chunk.startswith("<val", value_at):
            raise FastPathError("a property without its value")
        opened = chunk.index(">", value_at)
        closed = chunk.index("</val></propSet>", opened)
        found.append((chunk[at + len("<propSet><name>"):name_end], chunk[value_at + 4:opened], chunk[opened + 1:closed]))
        at = chunk.find("<propSet><name>", closed)
    return found


# a property whose value is text: its name, its type (the last xsi:type of the element, whatever the prefix: a
# reference's own type attribute has none) and the text
_SCALAR = re.compile(r'<propSet><name>([^<]+)</name><val(?:[^>]*:type="([^"]*)")?[^>/]*(?:/>|>([^<]*)</val>)'
                     r'</propSet>')  # a value, or one tag (<val …/>: an empty array or text)
_NAMES: dict[str, str] = {}


def _scalars(record: dict[str, Any], chunk: str, start: int, end: int) -> None:
    """The properties in ``chunk[start:end]``, each a text value (anything else fails the fast path)."""
    found = _SCALAR.findall(chunk, start, end)
    if len(found) != chunk.count("<propSet>", start, end):
        raise FastPathError("a property that is not text")
    for name, kind, value in found:
        name = _NAMES.setdefault(name, name)  # one string per property name, however many objects
        if kind.startswith("ArrayOf") and not value:
            record[name] = []  # an empty array, as pyvmomi gives it
        elif kind in _INT_TYPES:
            record[name] = int(value)
        elif kind == "xsd:boolean":
            record[name] = value == "true"
        elif kind.startswith("ArrayOf"):
            raise FastPathError(f"{name}: {kind} is not read by the fast path")
        else:  # xsd:string, enumerations, references — and no type at all: text
            record[name] = html.unescape(value) if "&" in value else value


def _value(name: str, attrs: str, value: str) -> Any:
    kind = xsi_type(attrs)
    if kind == "ArrayOfVirtualDevice":
        return _devices(value)
    if kind == "ArrayOfCustomFieldValue":
        return _custom_values(value)
    if kind in _INT_TYPES:
        return int(value)
    if kind == "xsd:boolean":
        return value == "true"
    if kind.startswith("ArrayOf") or "<" in value:
        raise FastPathError(f"{name}: {kind} is not read by the fast path")
    return html.unescape(value) if "&" in value else value


_CUSTOM_START = "<propSet><name>customValue</name>"
_APART_STARTS = {"config.hardware.device": "<propSet><name>config.hardware.device</name>", "customValue": _CUSTOM_START}


def _apart(name: str, text: str, start: int, end: int) -> tuple[Any, int]:
    """A structured property read apart: its value, and where the text after it starts."""
    tag_end = text.index(">", start + len(_APART_STARTS[name])) + 1
    if text[tag_end - 2] == "/":  # <val …/>: an empty array
        return [], text.index("</propSet>", tag_end, end) + len("</propSet>")
    value_end = text.index("</val></propSet>", tag_end, end)
    reader = _devices if name == "config.hardware.device" else _custom_values
    return reader(text, tag_end, value_end), value_end + len("</val></propSet>")


_CUSTOM_VALUE = re.compile(r'<CustomFieldValue(?: [^>]*?:type="([^"]+)")?[^>]*>(.*?)</CustomFieldValue>', re.S)
_CUSTOM_KEY = re.compile(r"<key>(-?\d+)</key>")
_CUSTOM_TEXT = re.compile(r"<value>([^<]*)</value>|<value\s*/>")


def _custom_values(text: str, start: int = 0, end: int | None = None) -> list[dict[str, Any]]:
    """Custom attribute values (``customValue``) as pyvmomi's plain records: type, key, text."""
    end = len(text) if end is None else end
    values: list[dict[str, Any]] = []
    for found in _CUSTOM_VALUE.finditer(text, start, end):
        kind, body = found.group(1), found.group(2)
        key = _CUSTOM_KEY.match(body)
        if key is None:
            raise FastPathError("customValue: a value without its key first")
        item: dict[str, Any] = {"_type": kind or "CustomFieldValue", "key": int(key.group(1))}
        if value := _CUSTOM_TEXT.search(body):
            raw = value.group(1) or ""
            item["value"] = html.unescape(raw) if "&" in raw else raw
        values.append(item)
    if len(values) != text.count("<CustomFieldValue", start, end):
        raise FastPathError("customValue: a value the fast path does not read")
    return values


_DEVICE_HEADS = re.compile(r'<VirtualDevice [^>]*:type="([^"]+)"[^>]*><key>(-?\d+)</key>')
_KINDS: dict[str, str] = {}


def _devices(text: str, start: int = 0, end: int | None = None) -> list[dict[str, Any]]:
    """The devices of ``text[start:end]`` (a device array) as ``vmware_slim.kept_devices`` keeps them: disks and
    NICs with what the normaliser reads, and each disk's controller by its type and key."""
    end = len(text) if end is None else end
    heads = list(_DEVICE_HEADS.finditer(text, start, end))  # every device's type and key, in order, in one pass
    if text.count("<VirtualDevice", start, end) != len(heads):
        raise FastPathError("a device without its type and key first")
    kept: dict[int, dict[str, Any]] = {}
    for index, head in enumerate(heads):
        kind = head.group(1)
        part_end = heads[index + 1].start() if index + 1 < len(heads) else end
        if kind == "VirtualDisk" or kind in NIC_MODELS or text.find("<macAddress>", head.end(), part_end) >= 0:
            kept[index] = _device(_KINDS.setdefault(kind, kind), text[head.start():part_end])
    named = {d.get("controllerKey") for d in kept.values() if d["_type"] == "VirtualDisk"}
    if named:
        last = {int(head.group(2)): index for index, head in enumerate(heads)}
        for number in named:
            found = last.get(number) if isinstance(number, int) else None
            if found is not None and found not in kept:
                kind = heads[found].group(1)
                kept[found] = {"_type": _KINDS.setdefault(kind, kind), "key": number}
    return [kept[index] for index in sorted(kept)]


def _device(kind: str, part: str) -> dict[str, Any]:
    """A disk or NIC as ``vmware_slim.slim_device`` keeps it."""
    device: dict[str, Any] = {"_type": kind}
    found = dict(reversed(_FIELDS.findall(part)))  # the first of each is the device's own (a nested <key> comes later)
    backing_at = part.find("<backing")
    for name, raw in found.items():
        value: Any = int(raw) if name in _INTS else html.unescape(raw) if "&" in raw else raw
        if name == "thinProvisioned":
            value = raw == "true"
        if name == "label":
            device["deviceInfo"] = {"label": value}
        elif name in _BACKING or name in ("portgroupKey", "switchUuid"):
            if backing_at < 0:
                continue
            backing = device.setdefault("backing", {})
            if name in ("portgroupKey", "switchUuid"):
                backing.setdefault("port", {})[name] = value
            else:
                backing[name] = value
        else:
            device[name] = value
    return device
