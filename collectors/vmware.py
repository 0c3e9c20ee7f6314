"""VMware vSphere through vCenter with pyvmomi (read-only: only views and Retrieve calls).

CloudStack talks only to vCenter, never to an ESXi host, and so does cs-inventory: an ESXi
endpoint (``about.apiType == "HostAgent"``) is refused. Each managed-object type is gathered
through a ``ContainerView`` and ``PropertyCollector.RetrievePropertiesEx`` (following
``ContinueRetrievePropertiesEx`` pages), asking only for the properties stored. Needs a vCenter
account with the read-only role. Blind spots: host firewall rules, DRS rules and licensing per
host are not read.
"""

from __future__ import annotations

import datetime
import hashlib
import socket
import ssl
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import VmomiSupport, vim, vmodl

from collectors.base import Collector, run_bounded
from collectors.vmware_fast import FastPathError, retrieve_fast
from collectors.vmware_normalise import normalise_vcenter
from inventory.errors import ApiError, AuthFailed, CollectorError, ConnectFailed, TimedOut, TlsRejected
from inventory.model import EndpointResult, Secret, TargetConfig, TargetResult
from inventory.normalise import one_line, sha256_fingerprint

PAGE_SIZE = 1000
PROPERTIES: dict[str, tuple[Any, list[str]]] = {
    "datacenters": (vim.Datacenter, ["name", "hostFolder"]),
    "clusters": (vim.ClusterComputeResource, ["name", "parent", "host", "configurationEx"]),
    "hosts": (vim.HostSystem, ["name", "parent", "summary.hardware", "config.product", "runtime.connectionState",
                               "runtime.inMaintenanceMode", "config.network.vswitch", "config.network.portgroup",
                               "config.network.vnic", "datastore", "hardware.cpuPkg"]),
    "vms": (vim.VirtualMachine, ["name", "config.instanceUuid", "config.uuid", "config.template",
                                 "config.guestFullName", "runtime.powerState", "runtime.host", "config.hardware.numCPU",
                                 "config.hardware.memoryMB", "guest.toolsRunningStatus", "config.hardware.device"]),
    "datastores": (vim.Datastore, ["name", "summary", "host"]),
    "networks": (vim.Network, ["name"]),
    "dvportgroups": (vim.dvs.DistributedVirtualPortgroup, ["name", "key", "config.distributedVirtualSwitch",
                                                           "config.defaultPortConfig"]),
    "dvswitches": (vim.DistributedVirtualSwitch, ["name", "uuid"]),
}


@dataclass(frozen=True)
class VmwareTarget(TargetConfig):
    """A vCenter (never an ESXi host), read through pyvmomi."""

    host: str = field(default="", metadata={"help": "vCenter address"})
    port: int = field(default=443, metadata={"help": "vCenter HTTPS port"})
    username: str = field(default="", metadata={"help": "vCenter account (read-only role is enough)"})
    password: Secret | None = field(default=None, metadata={"help": "password reference"})
    ca_file: Path | None = field(default=None, metadata={"help": "CA bundle for vCenter's certificate"})
    fingerprint: str | None = field(default=None, metadata={"help": "pinned SHA-256 of vCenter's certificate"})
    verify_tls: bool = field(default=True, metadata={"help": "false only by choice"})
    connect_timeout: float = field(default=15.0, metadata={"help": "seconds to connect"})
    timeout: float = field(default=300.0, metadata={"help": "seconds per API call"})
    fast_parser: bool = field(default=True, metadata={"help": "read bulk VM properties with the fast parser"})
    datacenters: tuple[str, ...] = field(default=(), metadata={"help": "only these datacenters (names)"})
    clusters: tuple[str, ...] = field(default=(), metadata={"help": "only these clusters (names)"})

    def __post_init__(self) -> None:
        if not self.host:
            raise ValueError("give host (the vCenter address)")
        if not self.username:
            raise ValueError("give username")
        if self.password is None:
            raise ValueError("give password_env or password_file")
        if self.fingerprint is not None:
            object.__setattr__(self, "fingerprint", sha256_fingerprint(self.fingerprint))

    @property
    def endpoint(self) -> str:
        return f"https://{self.host}:{self.port}/sdk"


class VmwareCollector(Collector):
    """VMware: vCenter's PropertyCollector, one paged RetrievePropertiesEx per object type."""

    kind = "vmware"
    cloudstack_name = "VMware"
    Target = VmwareTarget

    def collect(self, deadline: float | None = None) -> TargetResult:
        target = self.target
        assert isinstance(target, VmwareTarget)
        started = time.monotonic()
        budget = target.connect_timeout + target.timeout
        (outcome,) = run_bounded([target], fetch_vcenter, workers=1, item_timeout=budget, deadline=deadline)
        try:
            if outcome.timed_out:
                raise TimedOut(f"vmware {target.host}:{target.port}: no answer within {budget:g}s",
                               hint="is vCenter up and answering? raise timeout")
            if outcome.error is not None:
                raise outcome.error
            assert outcome.result is not None
            raw, calls = outcome.result
        except CollectorError as exc:
            return self.failed(exc, target.endpoint, started)
        inventory = normalise_vcenter(raw, target.name, datacenters=target.datacenters, clusters=target.clusters)
        endpoint = EndpointResult(target.name, target.endpoint, "ok", None, time.monotonic() - started, calls)
        self.report(endpoint)
        about = raw.get("about") or {}
        detail = {"product": about.get("fullName"), "version": about.get("version"), "build": about.get("build"),
                  "api_type": about.get("apiType"), "instance_uuid": about.get("instanceUuid"),
                  "license_editions": sorted({x.get("editionKey") for x in raw.get("licenses", []) if x.get("editionKey")}),
                  "read_by": {k: v for k, v in raw.items() if k.endswith("_read_by")} or None}
        return TargetResult(name=target.name, hypervisor=self.kind, endpoint=target.endpoint, status="ok",
                            duration_s=endpoint.duration_s, api_calls=calls, inventory=inventory, endpoints=[endpoint],
                            detail=detail)


def tls_context(target: VmwareTarget) -> ssl.SSLContext:
    if target.fingerprint or not target.verify_tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # a pin was checked by probe_tls
        return context
    return ssl.create_default_context(cafile=str(target.ca_file) if target.ca_file else None)


def connect(target: VmwareTarget) -> Any:
    """A pyvmomi ServiceInstance; TLS verified by default, or against ca_file, or pinned."""
    if target.password is None:
        raise CollectorError(f"target {target.name}: no password")
    context: ssl.SSLContext
    thumbprint = None
    if target.fingerprint or not target.verify_tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        thumbprint = target.fingerprint
    else:
        context = ssl.create_default_context(cafile=str(target.ca_file) if target.ca_file else None)
    return SmartConnect(host=target.host, port=target.port, user=target.username, pwd=target.password.reveal(),
                        sslContext=context, thumbprint=thumbprint, httpConnectionTimeout=target.connect_timeout,
                        connectionPoolTimeout=-1)


def probe_tls(target: VmwareTarget) -> None:
    """Connect and shake hands within connect_timeout, and check the pinned SHA-256 — before any credential
    is sent. (pyvmomi's own connect can wait forever on a server that accepts and never answers.)"""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((target.host, target.port), timeout=target.connect_timeout) as raw_socket:
        with context.wrap_socket(raw_socket, server_hostname=target.host) as tls_socket:
            seen = hashlib.sha256(tls_socket.getpeercert(binary_form=True) or b"").hexdigest()
    if target.fingerprint and seen != target.fingerprint:
        raise TlsRejected(f"vmware {target.host}:{target.port}: certificate fingerprint {seen[:16]}… is not the pinned "
                          f"{(target.fingerprint or '')[:16]}…",
                          hint="if vCenter's certificate was renewed, verify it and update fingerprint")


def fetch_vcenter(target: VmwareTarget) -> tuple[dict[str, Any], int]:
    """Log in, refuse ESXi, read every type's properties in pages, log out. Returns plain data and calls."""
    calls = 0
    with translate_vmware_errors(target) as counter:
        probe_tls(target)
        si = connect(target)
        calls += 2
        try:
            _set_read_timeout(si, target.timeout)
            content = si.RetrieveContent()
            about = content.about
            calls += 1
            if about.apiType == "HostAgent":
                raise ConnectFailed(f"vmware {target.host}: is an ESXi host ({about.fullName}), not vCenter",
                                    hint="CloudStack manages ESXi only through vCenter: configure the vCenter address")
            raw: dict[str, Any] = {"about": plain(about), "licenses": [plain(x) for x in content.licenseManager.licenses]}
            calls += 1
            # VMs on this thread, everything else on another: vCenter prepares one answer while we read the other
            results: dict[str, tuple[list[dict[str, Any]], int, str | None]] = {}
            failures: list[BaseException] = []

            def read_others() -> None:
                try:
                    for name in PROPERTIES:
                        if name != "vms":
                            results[name] = _read_type(si, content, target, name)
                except BaseException as exc:  # re-raised on the calling thread below
                    failures.append(exc)

            others = threading.Thread(target=read_others, daemon=True)
            others.start()
            results["vms"] = _read_type(si, content, target, "vms")
            others.join()
            if failures:
                raise failures[0]
            for name in PROPERTIES:
                raw[name], used, fallback = results[name]
                calls += used
                if fallback:
                    raw[f"{name}_read_by"] = fallback
            return raw, calls
        finally:
            counter.calls = calls
            try:
                Disconnect(si)
            except Exception:  # logging out is a courtesy; the data is read
                pass


def _read_type(si: Any, content: Any, target: VmwareTarget, name: str) -> tuple[list[dict[str, Any]], int, str | None]:
    """One object type: the fast path for the bulk types, pyvmomi for the rest (and as the fallback)."""
    vim_type, paths = PROPERTIES[name]
    fallback = None
    if name in ("vms", "hosts") and target.fast_parser:
        try:
            objects, used = retrieve_fast(si, content, vim_type, paths, context=tls_context(target),
                                          timeout=target.timeout, page=PAGE_SIZE, nested=name == "hosts")
            return objects, used, None
        except (FastPathError, ValueError, ET.ParseError) as exc:  # pyvmomi reads it below; say so
            fallback = f"pyvmomi (fast path: {one_line(exc, 200)})"
    objects, used = retrieve(content, vim_type, paths)
    return objects, used, fallback


def retrieve(content: Any, vim_type: Any, paths: list[str]) -> tuple[list[dict[str, Any]], int]:
    """One ContainerView over the whole inventory, RetrievePropertiesEx + Continue pages."""
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim_type], True)
    calls = 1
    try:
        pc = content.propertyCollector
        spec = vmodl.query.PropertyCollector.FilterSpec(
            objectSet=[vmodl.query.PropertyCollector.ObjectSpec(
                obj=view, skip=True, selectSet=[vmodl.query.PropertyCollector.TraversalSpec(
                    name="view", type=vim.view.ContainerView, path="view", skip=False)])],
            propSet=[vmodl.query.PropertyCollector.PropertySpec(type=vim_type, pathSet=paths)])
        result = pc.RetrievePropertiesEx([spec], vmodl.query.PropertyCollector.RetrieveOptions(maxObjects=PAGE_SIZE))
        calls += 1
        objects: list[dict[str, Any]] = []
        while result is not None:
            objects.extend(object_record(o, vim_type) for o in result.objects)
            if not result.token:
                break
            result = pc.ContinueRetrievePropertiesEx(result.token)
            calls += 1
        return objects, calls
    finally:
        view.Destroy()
        calls += 1


def object_record(content: Any, vim_type: Any) -> dict[str, Any]:
    record: dict[str, Any] = {"_moid": content.obj._moId, "_type": type(content.obj).__name__.rsplit(".", 1)[-1]}
    for prop in content.propSet:
        record[prop.name] = plain(prop.val)
    return record


def plain(value: Any) -> Any:
    """pyvmomi values as plain JSON-safe data: objects → dicts (set fields only, with _type), refs → moids."""
    if value is None:
        return None
    if isinstance(value, VmomiSupport.ManagedObject):
        return value._moId
    if isinstance(value, VmomiSupport.DataObject):
        out: dict[str, Any] = {"_type": type(value)._wsdlName}
        for info in value._GetPropertyList():
            if info.name in ("dynamicType", "dynamicProperty"):
                continue
            item = plain(getattr(value, info.name))
            if item is not None and item != []:
                out[info.name] = item
        return out
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    if isinstance(value, type):
        return getattr(value, "_wsdlName", value.__name__)
    return str(value)


def _set_read_timeout(si: Any, seconds: float) -> None:
    stub = si._stub
    if hasattr(stub, "poolSize"):
        stub.connectionPoolTimeout = -1
    scheme = getattr(stub, "schemeArgs", None)
    if isinstance(scheme, dict):
        scheme["timeout"] = seconds


class _Counter:
    calls = 0


@contextmanager
def translate_vmware_errors(target: VmwareTarget) -> Iterator[_Counter]:
    where = f"vmware {target.host}:{target.port}"
    counter = _Counter()
    try:
        yield counter
    except CollectorError as exc:
        exc.api_calls = counter.calls  # type: ignore[attr-defined]
        raise
    except vim.fault.InvalidLogin as exc:
        raise _with_calls(AuthFailed(f"{where}: user {target.username!r} was refused (InvalidLogin)",
                                     hint="check username and the password reference"), counter) from exc
    except ssl.SSLCertVerificationError as exc:
        raise _with_calls(TlsRejected(f"{where}: certificate not trusted ({exc.verify_message})",
                                      hint="set ca_file to vCenter's CA, or pin its SHA-256 fingerprint"), counter) from exc
    except (socket.timeout, TimeoutError) as exc:
        raise _with_calls(TimedOut(f"{where}: no answer within {target.timeout:g}s",
                                   hint="is vCenter up? raise timeout"), counter) from exc
    except ConnectionRefusedError as exc:
        raise _with_calls(ConnectFailed(f"{where}: connection refused"), counter) from exc
    except socket.gaierror as exc:
        raise _with_calls(ConnectFailed(f"{where}: cannot resolve host name"), counter) from exc
    except ssl.SSLError as exc:
        raise _with_calls(TlsRejected(f"{where}: TLS failed ({one_line(exc, 120)})"), counter) from exc
    except vmodl.MethodFault as exc:
        raise _with_calls(ApiError(f"{where}: {type(exc).__name__}: {one_line(getattr(exc, 'msg', exc), 160)}"),
                          counter) from exc
    except Exception as exc:
        if "thumbprint" in str(exc).lower():
            raise _with_calls(TlsRejected(f"{where}: certificate fingerprint is not the pinned one",
                                          hint="if vCenter's certificate was renewed, verify it and update fingerprint"),
                              counter) from exc
        if isinstance(exc, OSError):
            raise _with_calls(ConnectFailed(f"{where}: {exc.strerror or one_line(exc, 160)}"), counter) from exc
        raise


def _with_calls(error: CollectorError, counter: _Counter) -> CollectorError:
    error.api_calls = counter.calls  # type: ignore[attr-defined]
    return error
