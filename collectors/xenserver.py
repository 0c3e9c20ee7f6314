"""XenServer / XCP-ng pools through XenAPI on the pool master (read-only calls only).

Logs in on the configured address; a pool member answers HOST_IS_SLAVE with the master's
address, which is followed once (and recorded: CloudStack must be pointed at the master).
Reads each class with one ``get_all_records`` call — pool, host, host_cpu, host_metrics, VM,
VM_metrics, VM_guest_metrics, VBD, VDI, SR, PBD, VIF, network, PIF, PIF_metrics, Bond, VLAN —
so the number of calls does not grow with the pool; logs out at the end, also on failure.
Needs a pool account that may read (the read-only RBAC role is enough). Blind spots: dom0's
own files (network.conf, NTP) are not read — XAPI does not expose them.
"""

from __future__ import annotations

import hashlib
import http.client
import socket
import ssl
import time
import xmlrpc.client
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import XenAPI

from collectors.base import Collector
from collectors.xenserver_normalise import normalise_pool
from inventory.errors import (
    ApiError, AuthFailed, CollectorError, ConfigError, ConnectFailed, TimedOut, TlsRejected,
)
from inventory.model import EndpointResult, Secret, TargetConfig, TargetResult
from inventory.normalise import one_line, sha256_fingerprint

CLASSES = ("pool", "host", "host_cpu", "host_metrics", "VM", "VM_metrics", "VM_guest_metrics", "VBD", "VDI",
           "SR", "PBD", "VIF", "network", "PIF", "PIF_metrics", "Bond", "VLAN")
ORIGINATOR = "cs-inventory"


@dataclass(frozen=True)
class XenTarget(TargetConfig):
    """A XenServer/XCP-ng pool, read through XenAPI on its master."""

    url: str = field(default="", metadata={"help": "pool master, e.g. https://xen-master.example"})
    username: str = field(default="root", metadata={"help": "pool account (read-only role is enough)"})
    password: Secret | None = field(default=None, metadata={"help": "password reference"})
    ca_file: Path | None = field(default=None, metadata={"help": "CA bundle for the pool's certificate"})
    fingerprint: str | None = field(default=None, metadata={"help": "pinned SHA-256 of the pool's certificate"})
    verify_tls: bool = field(default=True, metadata={"help": "false only by choice (self-signed, no pin)"})
    connect_timeout: float = field(default=10.0, metadata={"help": "seconds to connect"})
    timeout: float = field(default=120.0, metadata={"help": "seconds per API call"})

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url {self.url!r} must look like https://xen-master.example")
        if self.password is None:
            raise ValueError("give password_env or password_file")
        if self.fingerprint is not None:
            object.__setattr__(self, "fingerprint", sha256_fingerprint(self.fingerprint))

    @property
    def endpoint(self) -> str:
        return self.url


class _Transport(xmlrpc.client.Transport):
    """XML-RPC over HTTP(S) with timeouts, CA/pin verification, and a call counter."""

    def __init__(self, target: XenTarget, https: bool) -> None:
        super().__init__()
        self.target, self.https = target, https
        self.calls = 0

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        if self._connection[1] is not None and host == self._connection[0]:
            return self._connection[1]
        chost, self._extra_headers, _ = self.get_host_info(host)
        conn: http.client.HTTPConnection
        if self.https:
            conn = _PinnedHTTPS(chost, timeout=self.target.connect_timeout, read_timeout=self.target.timeout,
                                context=self._context(), fingerprint=self.target.fingerprint)
        else:
            conn = _TimedHTTP(chost, timeout=self.target.connect_timeout, read_timeout=self.target.timeout)
        self._connection = host, conn
        return conn

    def send_request(self, connection: Any, handler: str, request_body: Any, debug: bool) -> Any:
        self.calls += 1
        return super().send_request(connection, handler, request_body, debug)

    def _context(self) -> ssl.SSLContext:
        if self.target.fingerprint or not self.target.verify_tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE  # the pin below is the check
            return context
        return ssl.create_default_context(cafile=str(self.target.ca_file) if self.target.ca_file else None)


class _TimedHTTP(http.client.HTTPConnection):
    """Connect within ``timeout``, then wait up to ``read_timeout`` for each answer."""

    def __init__(self, host: str, *, timeout: float, read_timeout: float) -> None:
        super().__init__(host, timeout=timeout)
        self.read_timeout = read_timeout

    def connect(self) -> None:
        super().connect()
        assert self.sock is not None
        self.sock.settimeout(self.read_timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host: str, *, timeout: float, read_timeout: float, context: ssl.SSLContext,
                 fingerprint: str | None) -> None:
        super().__init__(host, timeout=timeout, context=context)
        self.read_timeout = read_timeout
        self.fingerprint = fingerprint

    def connect(self) -> None:
        super().connect()
        assert isinstance(self.sock, ssl.SSLSocket)
        if self.fingerprint:
            seen = hashlib.sha256(self.sock.getpeercert(binary_form=True) or b"").hexdigest()
            if seen != self.fingerprint:
                self.close()
                raise TlsRejected(f"certificate fingerprint {seen[:16]}… is not the pinned {self.fingerprint[:16]}…",
                                  hint="if the pool's certificate was renewed, verify it and update fingerprint")
        self.sock.settimeout(self.read_timeout)


class XenServerCollector(Collector):
    """XenServer / XCP-ng: XenAPI on the pool master, one get_all_records per class."""

    kind = "xenserver"
    cloudstack_name = "XenServer"
    Target = XenTarget

    def collect(self, deadline: float | None = None) -> TargetResult:
        target = self.target
        assert isinstance(target, XenTarget)
        started = time.monotonic()
        endpoints: list[EndpointResult] = []
        try:
            raw, url, calls = fetch_pool(target)
        except CollectorError as exc:
            return self.failed(exc, target.url, started)
        normalised = normalise_pool(raw, target.name)
        inventory = normalised.inventory
        if url != target.url:  # followed HOST_IS_SLAVE
            cluster = inventory.clusters[0]
            inventory.clusters[0] = replace(cluster, raw_json={
                **(cluster.raw_json or {}), "configured_url": target.url, "configured_is_master": False,
                "master_url": url})
            endpoints.append(EndpointResult(target.name, target.url, "redirected",
                                            f"pool member (HOST_IS_SLAVE): followed to the master {url}", 0.0, 0))
        status, error = problems_outcome(normalised.problems)
        endpoints.append(EndpointResult(target.name, url, status, error, time.monotonic() - started, calls))
        self.report(endpoints[-1])
        return TargetResult(name=target.name, hypervisor=self.kind, endpoint=target.url, status=status, error=error,
                            duration_s=time.monotonic() - started, api_calls=calls, inventory=inventory,
                            endpoints=endpoints)


def problems_outcome(problems: list[str]) -> tuple[str, str | None]:
    """A pool read with malformed values is ``partial``, the first few named in one line."""
    if not problems:
        return "ok", None
    return "partial", one_line(f"{len(problems)} malformed values: " + "; ".join(problems[:5]), 1000)


def fetch_pool(target: XenTarget) -> tuple[dict[str, Any], str, int]:
    """Log in (following HOST_IS_SLAVE once), read every class, log out. Returns records, URL, calls."""
    url = target.url
    calls = 0
    for attempt in range(2):
        session, transport = _session(target, url)
        try:
            with translate_xenapi_errors(url, target):
                try:
                    session.xenapi.login_with_password(target.username, _password(target), "2.0", ORIGINATOR)
                except XenAPI.Failure as exc:
                    if exc.details and exc.details[0] == "HOST_IS_SLAVE" and attempt == 0:
                        calls += transport.calls
                        url = _master_url(url, str(exc.details[1]))
                        continue
                    raise
                try:
                    raw = {cls: _all_records(session, cls) for cls in CLASSES}
                finally:
                    _logout(session)
                return raw, url, calls + transport.calls
        except CollectorError as exc:
            exc.api_calls = calls + transport.calls  # type: ignore[attr-defined]
            raise
    raise CollectorError(f"xenapi {url}: pool master redirected more than once")


def _session(target: XenTarget, url: str) -> tuple[Any, _Transport]:
    transport = _Transport(target, urlsplit(url).scheme == "https")
    return XenAPI.Session(url, transport=transport), transport


def _password(target: XenTarget) -> str:
    if target.password is None:
        raise ConfigError(f"target {target.name}: no password configured")
    return target.password.reveal()


def _all_records(session: Any, cls: str) -> dict[str, Any]:
    try:
        records = getattr(session.xenapi, cls).get_all_records()
    except XenAPI.Failure as exc:
        if exc.details and exc.details[0] == "MESSAGE_METHOD_UNKNOWN":
            return {}  # an older XAPI without this class
        raise
    if not isinstance(records, dict):
        raise ApiError(f"{cls}.get_all_records did not return a map of records")
    return records


def _logout(session: Any) -> None:
    try:
        session.xenapi.session.logout()
    except Exception:  # logging out is a courtesy; the data is already read
        pass


def _master_url(url: str, master: str) -> str:
    parts = urlsplit(url)
    host = f"[{master}]" if ":" in master and not master.startswith("[") else master  # IPv6
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


@contextmanager
def translate_xenapi_errors(url: str, target: XenTarget) -> Iterator[None]:
    where = f"xenapi {url}"
    try:
        yield
    except TlsRejected as exc:  # raised by the pinned connection, which does not know the URL
        raise TlsRejected(f"{where}: {exc.message}", hint=exc.hint) from exc
    except CollectorError:
        raise
    except XenAPI.Failure as exc:
        code = exc.details[0] if exc.details else "?"
        if code == "SESSION_AUTHENTICATION_FAILED":
            raise AuthFailed(f"{where}: user {target.username!r} was refused (SESSION_AUTHENTICATION_FAILED)",
                             hint="check username and the password reference") from exc
        if code == "HOST_IS_SLAVE":
            raise ConnectFailed(f"{where}: still a pool member after following the master") from exc
        raise ApiError(f"{where}: {code} {one_line(' '.join(map(str, exc.details[1:])), 160)}") from exc
    except xmlrpc.client.Fault as exc:
        if "valid session" in str(exc.faultString):
            raise AuthFailed(f"{where}: the session expired and could not be renewed") from exc
        raise ApiError(f"{where}: {one_line(exc.faultString, 200)}") from exc
    except ssl.SSLCertVerificationError as exc:
        raise TlsRejected(f"{where}: certificate not trusted ({exc.verify_message})",
                          hint="set ca_file to the pool's CA, or pin its SHA-256 fingerprint") from exc
    except ssl.SSLError as exc:
        raise TlsRejected(f"{where}: TLS failed ({one_line(exc, 120)})") from exc
    except (socket.timeout, TimeoutError) as exc:
        raise TimedOut(f"{where}: no answer within {target.timeout:g}s", hint="is XAPI up? raise timeout") from exc
    except ConnectionRefusedError as exc:
        raise ConnectFailed(f"{where}: connection refused", hint="is this the pool master's address?") from exc
    except socket.gaierror as exc:
        raise ConnectFailed(f"{where}: cannot resolve host name") from exc
    except (xmlrpc.client.ProtocolError, xmlrpc.client.ResponseError, http.client.HTTPException) as exc:
        raise ApiError(f"{where}: not a XenAPI answer ({one_line(exc, 160)})") from exc
    except OSError as exc:
        raise ConnectFailed(f"{where}: {exc.strerror or one_line(exc, 160)}") from exc


def result_from_dump(path: Path, name: str) -> TargetResult:
    """A pool database dump (from `xe pool-dump-database`) as if read live: the same normaliser."""
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
    normalised = normalise_pool(view.records, name)
    problems = [str(p) for p in view.problems] + normalised.problems
    status, error = problems_outcome(problems)
    endpoint = f"file:{path}"
    duration = time.monotonic() - started
    return TargetResult(name=name, hypervisor="xenserver", endpoint=endpoint, status=status, error=error,
                        duration_s=duration, api_calls=0, inventory=normalised.inventory,
                        endpoints=[EndpointResult(name, endpoint, status, error, duration, 0)])
