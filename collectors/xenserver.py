"""XenServer / XCP-ng pools through XenAPI on the pool master (read-only calls only).

Logs in on the configured address; a pool member answers HOST_IS_SLAVE with the master's
address, which is followed once (and recorded: CloudStack must be pointed at the master).
Reads each class with one ``get_all_records`` call — pool, host, host_cpu, host_metrics, VM,
VM_metrics, VM_guest_metrics, VBD, VDI, SR, PBD, VIF, network, PIF, PIF_metrics, Bond, VLAN,
pool_update, host_patch, pool_patch (applied updates and hotfixes; a XAPI without one of them answers
none) —
so the number of calls does not grow with the pool, the next asked for (on a second connection to the one
session) while the last answer is read; logs out at the end, also on failure.
Needs a pool account that may read (the read-only RBAC role is enough). Blind spots: dom0's
own files (network.conf, NTP) are not read — XAPI does not expose them. A pool database dump
(``xe pool-dump-database``) is read through the same normaliser: ``import xapi-dump``.
"""

from __future__ import annotations

import http.client
import re
import socket
import ssl
import threading
import time
import xmlrpc.client
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import cache, partial
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from collectors import xmlrpc_fast
from collectors.base import Calls, Collector, ConnectTimedOut, Sdk, Session, translate_common
from collectors.tls_pin import pinned_context
from collectors.xenserver_normalise import normalise_pool
from inventory.errors import (
    ApiError, AuthFailed, CollectorError, ConfigError, ConnectFailed, ReadOnlyRefused, TimedOut,
)
from inventory.model import EndpointResult, Inventory, JsonDict, Secret, TargetConfig, TargetRead
from inventory.normalise import check_url, one_line, refuse_password_in, sha256_fingerprint

_SDK = Sdk("XenAPI", pip="XenAPI", extra="xenserver", debian="python3-xenapi (or pip install XenAPI)")


@cache
def _xenapi() -> ModuleType:
    return _SDK.load("xenserver")


CLASSES = ("pool", "host", "host_cpu", "host_metrics", "VM", "VM_metrics", "VM_guest_metrics", "VBD", "VDI",
           "SR", "PBD", "VIF", "network", "PIF", "PIF_metrics", "Bond", "VLAN", "pool_update", "host_patch",
           "pool_patch")
ORIGINATOR = "cs-inventory"
# Every XML-RPC method this collector may send; the transport refuses any other before a byte goes out.
READ_CALLS = frozenset({"session.login_with_password", "session.logout",
                        *(f"{cls}.get_all_records" for cls in CLASSES)})
_METHOD = re.compile(rb"<methodName>([^<]{1,200})</methodName>")


def _method_of(body: Any) -> str:
    found = _METHOD.search(body if isinstance(body, bytes) else str(body).encode())
    return found.group(1).decode(errors="replace") if found else "(no method)"
DUMP_URL = "https://pool-database-dump.invalid"  # a dump has no URL; .invalid never resolves (RFC 2606)


@dataclass(frozen=True)
class XenTarget(TargetConfig):
    """A XenServer/XCP-ng pool, read through XenAPI on its master."""

    url: str = field(default="", metadata={"help": "pool master, e.g. https://xen-master.example", "required": True})
    username: str = field(default="root", metadata={"help": "pool account (read-only role is enough)"})
    password: Secret | None = field(default=None, metadata={"help": "password reference", "required": True})
    ca_file: Path | None = field(default=None, metadata={"help": "CA bundle for the pool's certificate"})
    fingerprint: str | None = field(default=None, metadata={"help": "pinned SHA-256 of the pool's certificate"})
    verify_tls: bool = field(default=True, metadata={"help": "false only by choice (self-signed, no pin)"})
    connect_timeout: float = field(default=10.0, metadata={"help": "seconds to connect"})
    timeout: float = field(default=120.0, metadata={"help": "seconds per API call"})
    overall_timeout: float = field(default=600.0, metadata={"help": "seconds for the whole pool, login to logout"})
    fast_parser: bool = field(default=True, metadata={
        "help": "read XAPI's answers with cs-inventory's own XML-RPC reader (false: xmlrpc.client's)"})

    def __post_init__(self) -> None:
        refuse_password_in("url", self.url, "give username, and password_env or password_file",
                           user=False)
        check_url("url", self.url, "https://xen-master.example")
        if self.fingerprint is not None:
            object.__setattr__(self, "fingerprint", sha256_fingerprint(self.fingerprint))

    @property
    def endpoint(self) -> str:
        return self.url


class _Transport(xmlrpc.client.Transport):
    """XML-RPC over HTTP(S) to one ``_Endpoint`` with timeouts, CA/pin verification (a pin that does not match is
    refused by ``collectors.tls_pin``, in the endpoint's words), and a call counter."""

    def __init__(self, target: XenTarget, endpoint: _Endpoint, calls: Calls, *, unread: bool = False) -> None:
        super().__init__()
        self.target, self.endpoint = target, endpoint
        self.https = urlsplit(endpoint.url).scheme == "https"
        self.calls = calls
        self.unread = unread

    def twin(self) -> _Transport:
        """Another transport to the same endpoint, whose answers come back unread (bytes), counted with this one's."""
        return _Transport(self.target, self.endpoint, self.calls, unread=True)

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        if self._connection[1] is not None and host == self._connection[0]:
            return self._connection[1]
        chost, self._extra_headers, _ = self.get_host_info(host)
        conn: http.client.HTTPConnection
        if self.https:
            conn = _TimedHTTPS(chost, timeout=self.target.connect_timeout, read_timeout=self.target.timeout,
                               context=self._context())
        else:
            conn = _TimedHTTP(chost, timeout=self.target.connect_timeout, read_timeout=self.target.timeout)
        self._connection = host, conn
        return conn

    def send_request(self, connection: Any, handler: str, request_body: Any, debug: bool) -> Any:
        method = _method_of(request_body)
        if method not in READ_CALLS:
            raise ReadOnlyRefused(f"xenapi: {method} is not a read; cs-inventory sends only login, logout and "
                                  "get_all_records", hint="nothing was sent")
        self.calls.add()
        return super().send_request(connection, handler, request_body, debug)

    def parse_response(self, response: Any) -> tuple[Any, ...]:
        """The answer's params (``read_answer``); on a transport made ``unread``, its bytes, for the caller to read
        on its own thread."""
        gzipped = hasattr(response, "getheader") and response.getheader("Content-Encoding", "") == "gzip"
        stream = xmlrpc.client.GzipDecodedResponse(response) if gzipped else response
        try:  # read as xmlrpc.client reads it (a part at a time: an answer shorter than it said ends, as there)
            body = b"".join(iter(lambda: stream.read(1 << 16), b""))
        finally:
            if stream is not response:
                stream.close()
        return (body,) if self.unread else read_answer(body, self.target.fast_parser)

    def abort(self) -> None:
        """End a call in flight on another thread: its socket shut, so the read waiting on it returns at once."""
        sock = getattr(self._connection[1], "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:  # not connected yet, or already closed
                pass

    def _context(self) -> ssl.SSLContext:
        if self.target.fingerprint:
            return pinned_context(self.target.fingerprint, self.endpoint.where, "the pool's certificate",
                                  self.endpoint.pin_hint)
        if not self.target.verify_tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE  # chosen, and warned about when the config is read
            return context
        return ssl.create_default_context(cafile=str(self.target.ca_file) if self.target.ca_file else None)


def read_answer(body: bytes, fast: bool) -> tuple[Any, ...]:
    """An answer's params: read by ``xmlrpc_fast`` when it is in XAPI's own form (2.5× faster than xmlrpc.client on
    a large pool), otherwise — and with ``fast`` false — by xmlrpc.client's parser, from the same bytes, whose values
    or error are then the answer's."""
    if fast:
        try:
            return xmlrpc_fast.loads(body)
        except xmlrpc_fast.NotRead:
            pass
    parser, unmarshaller = xmlrpc.client.getparser()
    parser.feed(body)
    parser.close()
    return unmarshaller.close()


class _TimedHTTP(http.client.HTTPConnection):
    """Connect within ``timeout``, then wait up to ``read_timeout`` for each answer."""

    def __init__(self, host: str, *, timeout: float, read_timeout: float) -> None:
        super().__init__(host, timeout=timeout)
        self.read_timeout = read_timeout

    def connect(self) -> None:
        try:
            super().connect()
        except TimeoutError as exc:
            raise ConnectTimedOut(self.timeout or 0) from exc
        assert self.sock is not None
        self.sock.settimeout(self.read_timeout)


class _TimedHTTPS(http.client.HTTPSConnection):
    """Connect and shake hands within ``timeout`` (a pinned context checks the pin then), then wait up to
    ``read_timeout`` for each answer."""

    def __init__(self, host: str, *, timeout: float, read_timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(host, timeout=timeout, context=context)
        self.read_timeout = read_timeout

    def connect(self) -> None:
        try:
            super().connect()
        except TimeoutError as exc:
            raise ConnectTimedOut(self.timeout or 0) from exc
        assert self.sock is not None
        self.sock.settimeout(self.read_timeout)


@dataclass(frozen=True)
class _Endpoint:
    """Where calls go, how a failure there is said, and a pin's hint there: a master a configured member named is
    said as that member's master (each host of a pool has a certificate of its own)."""

    url: str
    where: str
    pin_hint: str | None = None

    @classmethod
    def of(cls, url: str, configured: str) -> _Endpoint:
        if url == configured:
            return cls(url, f"xenapi {url}")
        return cls(url, f"xenapi {url} (the master of pool member {configured})",
                   "each host of a pool has a certificate of its own: pin the master's, or configure its address")


class XenSession(Session):
    """A logged-in XenAPI session on the pool master; ``endpoint`` is the master's URL."""

    def __init__(self, calls: Calls, api: Any, transport: _Transport) -> None:
        super().__init__(transport.endpoint.url, calls)
        self.api = api
        self.transport = transport

    def all_records(self, cls: str) -> Any:
        return getattr(self.api.xenapi, cls).get_all_records()

    def connection(self) -> xmlrpc.client.ServerProxy:
        """Another connection to the master on this session, whose answers come back unread (bytes): its own
        transport (the same TLS checks, reads only, the calls counted with the session's)."""
        return xmlrpc.client.ServerProxy(self.endpoint, allow_none=True, transport=self.transport.twin())

    def answer_on(self, connection: xmlrpc.client.ServerProxy, cls: str) -> bytes:
        """A class's get_all_records on a ``connection``, the session's handle sent as XenAPI sends it: the answer's
        bytes, unread."""
        body = getattr(connection, f"{cls}.get_all_records")(self.api.handle)
        assert isinstance(body, bytes)
        return body

    def records_of(self, body: bytes, cls: str) -> Any:
        """``all_records`` from an answer's bytes (``answer_on``), taken as XenAPI takes an answer: its value, a
        Failure raised as XenAPI's ``Failure``, and a session XAPI no longer knows (it was restarted) asked again
        through XenAPI's own session, which logs in again."""
        params = read_answer(body, self.transport.target.fast_parser)
        answer = params[0] if len(params) == 1 else params  # as xmlrpc.client's ServerProxy gives it
        if not isinstance(answer, dict) or "Status" not in answer:  # XenAPI's own words, each
            raise xmlrpc.client.Fault(500, "Missing Status in response from server")
        if answer["Status"] == "Success":
            if "Value" not in answer:
                raise xmlrpc.client.Fault(500, "Missing Value in response from server")
            return answer["Value"]
        if not answer.get("ErrorDescription"):
            raise xmlrpc.client.Fault(500, "Missing ErrorDescription in response from server")
        if answer["ErrorDescription"][0] == "SESSION_INVALID":
            return self.all_records(cls)
        raise _xenapi().Failure(answer["ErrorDescription"])


def _every_class(session: XenSession) -> dict[str, Any]:
    """Each class's records, the next class asked for (on a second connection, on a thread of its own) before this
    one's answer is read: the pool writes one answer (20 MB of XML for 10,000 VMs) while we read the last. The same
    answers, in the same order, as one at a time: every answer read on this thread (records made on two threads
    take more memory: a heap for each). A failure is the pool's at once: the class asked ahead is not waited for,
    its call cut off."""
    connection = session.connection()
    asked: Future[Any] | None = None
    try:
        asked = _ahead(session.answer_on, connection, CLASSES[0])
        records: dict[str, Any] = {}
        for number, cls in enumerate(CLASSES):
            body = asked.result()
            if number + 1 < len(CLASSES):
                asked = _ahead(session.answer_on, connection, CLASSES[number + 1])
            records[cls] = _all_records(partial(session.records_of, body, cls), cls, session.transport.endpoint.where)
            del body  # read: its records are what is kept
        return records
    finally:
        if asked is not None and not asked.done():
            transport = connection("transport")
            assert isinstance(transport, _Transport)
            transport.abort()
        connection("close")()


def _ahead(call: Callable[..., Any], *args: Any) -> Future[Any]:
    """``call(*args)`` on a daemon thread: a scan that gives up on the pool (its deadline) is not held by it, nor is
    the process's exit."""
    future: Future[Any] = Future()

    def run() -> None:
        try:
            future.set_result(call(*args))
        except BaseException as exc:  # handed to whoever waits on it
            future.set_exception(exc)
    threading.Thread(target=run, name="xapi-ahead", daemon=True).start()
    return future


class XenServerCollector(Collector[XenTarget, XenSession]):
    """XenServer / XCP-ng: XenAPI on the pool master, one get_all_records per class."""

    kind = "xenserver"
    cloudstack_name = "XenServer"
    Target = XenTarget
    timeout_hint = "is XAPI up? raise timeout"
    limit_hint = "is XAPI up? raise overall_timeout"

    def endpoint_timeout(self) -> float:
        return self.target.overall_timeout

    def where(self, endpoint: str) -> str:
        return _Endpoint.of(endpoint, endpoint).where

    @contextmanager
    def connect(self, url: str, calls: Calls) -> Iterator[XenSession]:
        """Log in (following HOST_IS_SLAVE once); log out when done, also on failure."""
        xenapi = _xenapi()
        configured = url
        for attempt in range(2):
            transport = _Transport(self.target, _Endpoint.of(url, configured), calls)
            api = xenapi.Session(url, transport=transport)
            try:
                try:
                    api.xenapi.login_with_password(self.target.username, _password(self.target), "2.0", ORIGINATOR)
                except xenapi.Failure as exc:
                    if exc.details and exc.details[0] == "HOST_IS_SLAVE" and attempt == 0:
                        url = _master_url(url, str(exc.details[1]))
                        continue
                    raise
                session = XenSession(calls, api, transport)
                if url != configured:
                    session.redirected = f"pool member (HOST_IS_SLAVE): followed to the master {url}"
                try:
                    yield session
                finally:
                    _logout(api)
                return
            except Exception as exc:  # a failure on the master after a member's redirect is said as the master's
                if url != configured:
                    setattr(exc, _SAID_AT, transport.endpoint.where)
                raise
            finally:  # XAPI keeps a connection for the next call until the client closes it
                transport.close()
        raise CollectorError(f"xenapi {configured}: pool master redirected more than once")

    def fetch(self, session: XenSession) -> JsonDict:
        return {"url": session.endpoint, "records": _every_class(session)}

    @staticmethod
    def normalise(answers: dict[str, JsonDict], target: XenTarget) -> Inventory:
        return normalise_answer(next(iter(answers.values())), target.name, target.url)

    def translate(self, exc: BaseException, where: str) -> CollectorError | None:
        said_at = getattr(exc, _SAID_AT, None)
        if said_at is None:
            return translate_xenapi_error(exc, where, self.target)
        return translate_xenapi_error(exc, said_at, self.target) or translate_common(exc, said_at, self.timeout_hint)


def normalise_answer(answer: JsonDict, name: str, configured_url: str) -> Inventory:
    """A pool's records; a pool read through a member says so on its cluster."""
    normalised = normalise_pool(answer["records"], name)
    inventory = normalised.inventory
    inventory.problems = [*answer.get("problems", []), *normalised.problems]
    url = answer.get("url", configured_url)
    if url != configured_url and inventory.clusters:
        cluster = inventory.clusters[0]
        inventory.clusters[0] = replace(cluster, raw_json={
            **(cluster.raw_json or {}), "configured_url": configured_url, "configured_is_master": False,
            "master_url": url})
    return inventory


def _password(target: XenTarget) -> str:
    if target.password is None:
        raise ConfigError(f"target {target.name}: no password configured", hint="give password_env or password_file")
    return target.password.reveal()


def _all_records(call: Callable[[], Any], cls: str, where: str) -> dict[str, Any]:
    try:
        records = call()
    except _xenapi().Failure as exc:
        if exc.details and exc.details[0] == "MESSAGE_METHOD_UNKNOWN":
            return {}  # an older XAPI without this class
        raise
    if not isinstance(records, dict):
        raise ApiError(f"{where}: {cls}.get_all_records did not return a map of records")
    return records


def _logout(api: Any) -> None:
    try:
        api.xenapi.session.logout()
    except Exception:  # logging out is a courtesy; the data is already read
        pass


def _master_url(url: str, master: str) -> str:
    parts = urlsplit(url)
    host = f"[{master}]" if ":" in master and not master.startswith("[") else master  # IPv6
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


# set on an error raised on the pool's master, reached by a member's HOST_IS_SLAVE: how to name where it happened
_SAID_AT = "xenapi_said_at"


def translate_xenapi_error(exc: BaseException, where: str, target: XenTarget) -> CollectorError | None:
    """XenAPI's failures and XML-RPC's errors in one line; sockets and TLS are left to the shared words."""
    xenapi = _xenapi()
    if isinstance(exc, xenapi.Failure):
        code = exc.details[0] if exc.details else "?"
        if code == "SESSION_AUTHENTICATION_FAILED":
            return AuthFailed(f"{where}: user {target.username!r} was refused (SESSION_AUTHENTICATION_FAILED)",
                              hint="check username and the password reference")
        if code == "HOST_IS_SLAVE":
            return ConnectFailed(f"{where}: still a pool member after following the master")
        return ApiError(f"{where}: {code} {one_line(' '.join(map(str, exc.details[1:])), 160)}")
    if isinstance(exc, xmlrpc.client.Fault):
        if "valid session" in str(exc.faultString):
            return AuthFailed(f"{where}: the session expired and could not be renewed")
        return ApiError(f"{where}: {one_line(exc.faultString, 200)}")
    if isinstance(exc, TimeoutError):
        return TimedOut(f"{where}: no answer within {target.timeout:g}s", hint="is XAPI up? raise timeout")
    if isinstance(exc, ConnectionRefusedError):
        return ConnectFailed(f"{where}: connection refused", hint="is this the pool master's address?")
    if isinstance(exc, (xmlrpc.client.ProtocolError, xmlrpc.client.ResponseError, http.client.HTTPException)):
        return ApiError(f"{where}: not a XenAPI answer ({one_line(exc, 160)})")
    return None


def read_dump(path: Path, name: str) -> TargetRead:
    """A pool database dump (from `xe pool-dump-database`) as if read live: the same answer, the same normaliser."""
    from collectors.xapi_dump import DumpError, load_dump, to_api

    started = time.monotonic()
    try:
        view = to_api(load_dump(path))
    except DumpError as exc:
        raise ConfigError(f"{path}: not a pool database dump: {exc}",
                          hint="take one on the pool master with: xe pool-dump-database file-name=pool.db") from exc
    if not view.records.get("pool") or not view.records.get("host"):
        raise ConfigError(f"{path}: the dump holds no pool or host records",
                          hint="is it from xe pool-dump-database?")
    endpoint = f"file:{path}"
    target = XenTarget(name=name, url=DUMP_URL)
    answer = {"url": target.url, "records": view.records, "problems": [str(p) for p in view.problems]}
    row = EndpointResult(name, endpoint, "ok", None, time.monotonic() - started, 0)
    return TargetRead(kind="xenserver", target=target, answers={target.url: answer}, endpoints=[row],
                      duration_s=row.duration_s, endpoint=endpoint)


XenServerCollector.importers = {"xapi-dump": read_dump}
