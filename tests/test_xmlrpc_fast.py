"""collectors.xmlrpc_fast against xmlrpc.client's own parser: the same values, of the same types, in the same order,
for answers in XAPI's form; anything else left to xmlrpc.client by the XenServer transport, whose values or error
are then the answer's."""

from __future__ import annotations

import gzip
import http.client
import io
import math
import xmlrpc.client
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collectors import xmlrpc_fast
from collectors.base import Calls
from collectors.xenserver import XenServerCollector, XenTarget, _Endpoint, _Transport
from fixtures.xapi.server import serve_dump, xapi_response
from fixtures.xapi.synth import generate
from inventory.model import Secret


def typed(value: Any) -> Any:
    """A value with its types and order made visible: equal only to one of the same types, item for item."""
    if isinstance(value, dict):
        return ("dict", [(typed(k), typed(v)) for k, v in value.items()])
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [typed(v) for v in value])
    if isinstance(value, xmlrpc.client.DateTime):
        return ("DateTime", value.value)
    if isinstance(value, float) and math.isnan(value):
        return ("float", "nan")
    return (type(value).__name__, value)


def stock(body: bytes) -> Any:
    """What xmlrpc.client makes of an answer — its values, or the type of its error."""
    try:
        parser, unmarshaller = xmlrpc.client.getparser()
        parser.feed(body)
        parser.close()
        return typed(unmarshaller.close())
    except Exception as exc:
        return type(exc)


class _Answer(io.BytesIO):
    """An HTTP response as the transport reads it: a body, and no Content-Encoding."""

    def getheader(self, name: str, default: Any = None) -> Any:
        return default


def xen_transport(fast: bool) -> _Transport:
    """The XenServer collector's transport, its reader on or off."""
    return _Transport(XenTarget(name="t", url="http://xapi.example", password=Secret("env", "X"), fast_parser=fast),
                      _Endpoint.of("http://xapi.example", "http://xapi.example"), Calls())


def transported(body: bytes, fast: bool = True) -> Any:
    """What the XenServer collector's transport makes of an answer — its values, or the type of its error."""
    transport = xen_transport(fast)
    try:
        return typed(transport.parse_response(_Answer(body)))
    except Exception as exc:
        return type(exc)


def read_fast(body: bytes) -> Any:
    return typed(xmlrpc_fast.loads(body))


names = st.text(st.characters(codec="utf-8"), max_size=12)  # XAPI writes a member's name as it is: markup too
texts = st.text(st.characters(codec="utf-8"), max_size=20)
dates = st.from_regex(r"\A[0-9]{8}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z?\Z").map(xmlrpc.client.DateTime)


def values_of(integers: st.SearchStrategy[int]) -> st.SearchStrategy[Any]:
    scalars = st.one_of(texts, integers, st.booleans(), st.floats(), dates, st.none())
    return st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                         st.dictionaries(names, inner, max_size=4)), max_leaves=24)


values = values_of(st.integers())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values)
def test_answers_written_as_xapi_writes_them_are_read_as_xmlrpc_client_reads_them(value: Any) -> None:
    body = xapi_response({"Status": "Success", "Value": value}).encode("utf-8", "xmlcharrefreplace")
    expected = stock(body)
    assert transported(body) == transported(body, fast=False) == expected
    plain = "\r" not in body.decode("utf-8", "replace") and isinstance(expected, tuple)
    if plain and not _names_with_markup(value):
        assert read_fast(body) == expected  # read by the fast reader itself, not left to xmlrpc.client


def _names_with_markup(value: Any) -> bool:
    if isinstance(value, dict):
        return any(set(k) & set("<&") or _names_with_markup(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_names_with_markup(v) for v in value)
    return False


@settings(max_examples=100, deadline=None)
@given(values_of(st.integers(-2**31, 2**31 - 1)))  # its own limits
def test_answers_in_xmlrpc_clients_own_form_are_left_to_it(value: Any) -> None:
    body = xmlrpc.client.dumps(({"Status": "Success", "Value": value},), methodresponse=True,
                               allow_none=True).encode("utf-8", "xmlcharrefreplace")
    with pytest.raises(xmlrpc_fast.NotRead):  # it writes a newline between elements
        xmlrpc_fast.loads(body)
    assert transported(body) == stock(body)


FRAGMENTS = ["<", ">", "&", "]]>", "&amp;", "&#0;", "&#65;", "&#xD800;", "&nbsp;", " ", "\n", "\r", "\t", "\x01",
             "<value>", "</value>", "<value/>", "<member>", "</member>", "<name>", "</name>", "<struct>", "</struct>",
             "<array>", "<data>", "</data></array>", "<!--x-->", "<![CDATA[x]]>", "\ufffe", "é", "\U0001f600", "<i4>",
             "</i4>", "<boolean>", "<nil/>", "<string>", "</string>", '"', "'", "<?x?>", "<v:value>", ' a="1"', "1",
             "\u00a0", "\u2028", "\x85", "\ufeff", "\ufdd0"]


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values, st.randoms(use_true_random=False), st.integers(1, 3))
def test_an_answer_broken_anywhere_reads_as_xmlrpc_client_reads_it(value: Any, chance: Any, edits: int) -> None:
    """XAPI's answer with fragments put in, and characters cut out, after tags (in a value's text, or between
    elements) and anywhere: whatever the fast reader reads, it reads as xmlrpc.client does, and what it does not is
    xmlrpc.client's to read or refuse."""
    text = xapi_response({"Status": "Success", "Value": value})
    for _ in range(edits):  # half of them anywhere: in a tag, a name, the declaration …
        at = chance.choice([i + 1 for i, c in enumerate(text) if c == ">"]) if chance.random() < 0.5 else \
            chance.randrange(len(text) + 1)
        text = text[:at] + chance.choice(FRAGMENTS) + text[at + chance.choice((0, 0, 0, 1, 2)):]
    body = text.encode("utf-8", "surrogatepass")
    assert transported(body) == stock(body)


def answer(value_xml: str, prolog: str = '<?xml version="1.0"?>') -> bytes:
    return f"{prolog}<methodResponse><params><param>{value_xml}</param></params></methodResponse>".encode()


READ = {  # answers the fast reader reads itself, each as xmlrpc.client does
    "entities": answer("<value>&#65;&#x42;&apos;&quot;&lt;&gt;&amp;</value>"),
    "an empty value": answer("<value><struct><member><name>a</name><value/></member></struct></value>"),
    "a name said twice: the last value, in the first one's place": answer(
        "<value><struct><member><name>a</name><value>1</value></member><member><name>b</name><value>2</value>"
        "</member><member><name>a</name><value>3</value></member></struct></value>"),
    "typed scalars": answer(
        "<value><array><data><value><i4>-7</i4></value><value><int>8</int></value><value><i8>9</i8></value>"
        "<value><boolean>1</boolean></value><value><double>1e400</double></value><value><double>-0.5</double>"
        "</value><value><dateTime.iso8601>20261128T08:00:00Z</dateTime.iso8601></value><value><string>s</string>"
        "</value><value><nil/></value></data></array></value>"),
    "typed members, sets and maps of texts, nested": answer(
        "<value><struct><member><name>n</name><value><boolean>0</boolean></value></member><member><name>set</name>"
        "<value><array><data><value>OpaqueRef:a</value><value>x &amp; y</value></data></array></value></member>"
        "<member><name>map</name><value><struct><member><name>k&amp;</name><value>v</value></member></struct>"
        "</value></member><member><name>deep</name><value><struct><member><name>in</name><value><array><data>"
        "<value><struct></struct></value><value><array><data></data></array></value></data></array></value>"
        "</member></struct></value></member></struct></value>"),
    "text beyond the BMP, and tabs and newlines in it": answer("<value>\U0001f600 a\tb\nc é</value>"),
    "single quotes in the declaration, space after it": answer("<value>x</value>", "<?xml version='1.0'?>\n"),
    "character references with leading zeros": answer("<value>&#0065;&#x0042;</value>"),
    "noncharacters XML allows": answer("<value>\ufdd0\U0001fffe</value>"),
    "ints as Python's int() reads them": answer("<value><array><data><value><int>+5</int></value><value><int>1_0"
                                                "</int></value><value><int>\u0663</int></value></data></array>"
                                                "</value>"),
}
LEFT = {  # answers left to xmlrpc.client, which reads them (or refuses them) its own way
    "an entity XML does not predefine": answer("<value>&nbsp;</value>"),
    "a bare ampersand": answer("<value>a & b</value>"),
    "]]> in text, which XML forbids": answer("<value>a]]>b</value>"),
    "a reference to a character XML forbids": answer("<value>&#0;</value>"),
    "CDATA": answer("<value><![CDATA[<x>]]></value>"),
    "a comment": answer("<value><struct><!-- c --><member><name>a</name><value>1</value></member></struct></value>"),
    "whitespace between elements": answer("<value><struct>\n<member><name>a</name><value>1</value></member>"
                                          "</struct></value>"),
    "a value with an empty string element": answer("<value><string/></value>"),
    "a boolean that is neither 0 nor 1": answer("<value><boolean>2</boolean></value>"),
    "an int that is not one": answer("<value><int>x</int></value>"),
    "an encoding declared": answer("<value>x</value>", '<?xml version="1.0" encoding="UTF-8"?>'),
    "no declaration": answer("<value>x</value>", ""),
    "a fault": b'<?xml version="1.0"?><methodResponse><fault><value><struct><member><name>faultCode</name><value>'
               b"<int>1</int></value></member><member><name>faultString</name><value>no</value></member></struct>"
               b"</value></fault></methodResponse>",
    "a carriage return": answer("<value>a\r\nb</value>"),
    "a control character": answer("<value>a\x01b</value>"),
    "U+FFFE": answer("<value>a\ufffeb</value>"),
    "not UTF-8": answer("<value>x</value>").replace(b"x", b"\xff"),
    "a namespace": answer("<v:value xmlns:v='urn:x'>x</v:value>"),
    "attributes": answer('<value a="1">x</value>'),
    "base64": answer("<value><base64>eA==</base64></value>"),
    "a member in an array": answer("<value><array><data><member><name>a</name><value>x</value></member></data>"
                                   "</array></value>"),
    "a value in a struct without its member": answer("<value><struct><value>x</value></struct></value>"),
    "two params": answer("<value>a</value></param><param><value>b</value>"),
    "two values in the param": answer("<value>a</value><value>b</value>"),
    "a struct not closed": answer("<value><struct><member><name>a</name><value>1</value></member></value>"),
    "a member not closed": answer("<value><struct><member><name>a</name><value><struct></struct></value>"
                                  "</struct></value>"),
    "more after the answer": answer("<value>x</value>") + b"<x/>",
    "a character reference with a capital X": answer("<value>&#X41;</value>"),
    "an int of more digits than Python reads": answer(f"<value><int>{'9' * 5000}</int></value>"),
    "a byte order mark": b"\xef\xbb\xbf" + answer("<value>x</value>"),
    "no-break space after the answer": answer("<value>x</value>") + "\u00a0".encode(),
    "no-break space after the declaration": answer("<value>x</value>", '<?xml version="1.0"?>\u00a0'),
    "a line separator in the declaration": answer("<value>x</value>", '<?xml version="1.0"\u2028?>'),
    "next-line between the answer's elements": answer("<value>x</value>").replace(b"</params>", "\x85".encode()
                                                                                 + b"</params>"),
}


@pytest.mark.parametrize("case", READ)
def test_what_the_fast_reader_reads_it_reads_as_xmlrpc_client_does(case: str) -> None:
    body = READ[case]
    assert read_fast(body) == stock(body) == transported(body)


@pytest.mark.parametrize("case", LEFT)
def test_what_it_does_not_read_is_left_to_xmlrpc_client(case: str) -> None:
    body = LEFT[case]
    with pytest.raises(xmlrpc_fast.NotRead):
        xmlrpc_fast.loads(body)
    assert transported(body) == transported(body, fast=False) == stock(body)


class _Socket:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def makefile(self, *_: Any, **__: Any) -> io.BytesIO:
        return io.BytesIO(self.data)


def http_answer(payload: bytes, *, length: int | None = None, gzipped: bool = False) -> http.client.HTTPResponse:
    head = (f"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {len(payload) if length is None else length}"
            f"\r\n{'Content-Encoding: gzip' + chr(13) + chr(10) if gzipped else ''}\r\n")
    response = http.client.HTTPResponse(_Socket(head.encode() + payload))  # type: ignore[arg-type]
    response.begin()
    return response


ANSWER = xapi_response({"Status": "Success", "Value": {"OpaqueRef:a": {"uuid": "u", "VBDs": ["OpaqueRef:b"]}}}).encode()
HTTP = {  # an answer as HTTP brings it: whole, gzipped, shorter than it says, cut off
    "whole": lambda: http_answer(ANSWER),
    "gzipped": lambda: http_answer(gzip.compress(ANSWER), gzipped=True),
    "a byte shorter than its Content-Length": lambda: http_answer(ANSWER, length=len(ANSWER) + 1),
    "cut off, its Content-Length whole": lambda: http_answer(ANSWER[:60], length=len(ANSWER)),
    "gzipped, cut off": lambda: http_answer(gzip.compress(ANSWER)[:-6], gzipped=True),
    "not gzip, said to be": lambda: http_answer(ANSWER, gzipped=True),
}


@pytest.mark.parametrize("case", HTTP)
def test_the_transport_reads_an_http_answer_as_xmlrpc_client_does(case: str) -> None:
    def outcome(transport: Any) -> Any:
        try:
            return typed(transport.parse_response(HTTP[case]()))
        except Exception as exc:
            return type(exc)
    ours = [outcome(xen_transport(fast)) for fast in (True, False)]
    stock_transport = xmlrpc.client.Transport()
    stock_transport.verbose = False  # as request() sets it before reading
    assert ours == [outcome(stock_transport)] * 2


def test_a_pool_is_read_by_the_fast_reader_to_the_same_answers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fixture server writes XAPI's own form: every answer of a scan is read by the fast reader, and the
    collector's answers and records are those xmlrpc.client's parser makes of the same pool."""
    dump = tmp_path / "pool.xml"
    dump.write_text(generate(3, 24, "xcp-ng-8.3", seed="fast-reader"))
    monkeypatch.setenv("CSI_FAST_XEN", "xenroot")
    left: list[str] = []
    loads = xmlrpc_fast.loads

    def counted(body: bytes) -> tuple[Any, ...]:
        try:
            return loads(body)
        except xmlrpc_fast.NotRead as exc:
            left.append(str(exc))
            raise
    monkeypatch.setattr(xmlrpc_fast, "loads", counted)
    server = serve_dump(dump)
    try:
        reads = [XenServerCollector(XenTarget(name="pool", url=server.url, password=Secret("env", "CSI_FAST_XEN"),
                                              fast_parser=fast)).read() for fast in (True, False)]
    finally:
        server.stop()
    assert left == []
    fast, slow = ([answers for answers in read.answers.values()] for read in reads)
    assert typed(fast) == typed(slow) and len(fast[0]["records"]["VM"]) > 24
    results = [XenServerCollector(read.target).result(read) for read in reads]
    assert results[0].status == results[1].status == "ok"
    for table in ("vms", "vm_disks", "vm_nics", "hosts", "host_nics", "storage", "networks"):
        assert repr(getattr(results[0].inventory, table)) == repr(getattr(results[1].inventory, table)), table
