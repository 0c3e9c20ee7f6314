"""VMware vSphere through vCenter with pyvmomi (read-only: only views and Retrieve calls).

CloudStack talks only to vCenter, never to an ESXi host, and so does cs-inventory: an ESXi
endpoint (``about.apiType == "HostAgent"``) is refused. Each managed-object type is gathered
through a ``ContainerView`` and ``PropertyCollector.RetrievePropertiesEx`` (following
``ContinueRetrievePropertiesEx`` pages), asking only for the properties stored. Needs a vCenter
account with the read-only role. Hosts' VMkernel NIC services, firewall rulesets, SCSI LUNs and proxy
switches come in the same host request; VMs' custom attribute values (``customValue``: CloudStack's
``cloud.vm.internal.name`` and ``cloud.vm.worker``) in the same VM request, the attributes' names once
(``CustomFieldsManager.field``). Blind spots: DRS rules and licensing per host are not read.
"""

from __future__ import annotations

import datetime
import importlib
import socket
import ssl
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from collectors.base import Calls, Collector, ConnectTimedOut, Sdk, Session
from collectors.tls_pin import pinned_context
from collectors.vmware_fast import FastPathError, retrieve_fast
from collectors.vmware_files import datastore_files
from collectors.vmware_normalise import normalise_vcenter
from collectors.vmware_slim import slim_host, slim_vm
from inventory.errors import (
    ApiError, AuthFailed, CollectorError, ConfigError, ConnectFailed, ReadOnlyRefused, TimedOut, TlsRejected,
)
from inventory.model import Inventory, JsonDict, Secret, TargetConfig
from inventory.normalise import bare_host, one_line, sha256_fingerprint

_SDK = Sdk("pyVmomi", pip="pyvmomi", extra="vmware", debian="python3-pyvmomi")
PAGE_SIZE = 1000  # objects per RetrievePropertiesEx page (pyvmomi's path)
FAST_PAGES = {"vms": 500, "hosts": 100}  # objects per page on the fast path: read while vCenter prepares others
# object type (as pyVmomi's vim names it) and the properties read, per kind of record
PROPERTIES: dict[str, tuple[str, list[str]]] = {
    "datacenters": ("Datacenter", ["name", "hostFolder"]),
    "clusters": ("ClusterComputeResource", ["name", "parent", "host", "configurationEx"]),
    "hosts": ("HostSystem", ["name", "parent", "summary.hardware", "config.product", "runtime.connectionState",
                               "runtime.inMaintenanceMode", "config.network.vswitch", "config.network.portgroup",
                               "config.network.vnic", "config.network.proxySwitch", "datastore", "hardware.cpuPkg",
                               "config.virtualNicManagerInfo.netConfig", "config.firewall",
                               "config.storageDevice.scsiLun"]),
    "vms": ("VirtualMachine", ["name", "config.instanceUuid", "config.uuid", "config.template",
                                 "config.guestFullName", "runtime.powerState", "runtime.host", "config.hardware.numCPU",
                                 "config.hardware.memoryMB", "guest.toolsRunningStatus", "config.hardware.device",
                                 "customValue"]),
    "datastores": ("Datastore", ["name", "summary", "host"]),
    "networks": ("Network", ["name"]),
    "dvportgroups": ("dvs.DistributedVirtualPortgroup", ["name", "key", "config.distributedVirtualSwitch",
                                                         "config.defaultPortConfig"]),
    "dvswitches": ("DistributedVirtualSwitch", ["name", "uuid"]),
}


@cache
def _pyvmomi() -> ModuleType:
    """pyVmomi, imported when a vCenter is read."""
    return _SDK.load("vmware")


def vim_type(name: str) -> Any:
    """``"dvs.DistributedVirtualPortgroup"`` → pyVmomi's ``vim.dvs.DistributedVirtualPortgroup``."""
    found: Any = _pyvmomi().vim
    for part in name.split("."):
        found = getattr(found, part)
    return found


@dataclass(frozen=True)
class VmwareTarget(TargetConfig):
    """A vCenter (never an ESXi host), read through pyvmomi."""

    host: str = field(default="", metadata={"help": "vCenter address", "required": True})
    port: int = field(default=443, metadata={"help": "vCenter HTTPS port"})
    username: str = field(default="", metadata={"help": "vCenter account (read-only role is enough)", "required": True})
    password: Secret | None = field(default=None, metadata={"help": "password reference", "required": True})
    ca_file: Path | None = field(default=None, metadata={"help": "CA bundle for vCenter's certificate"})
    fingerprint: str | None = field(default=None, metadata={"help": "pinned SHA-256 of vCenter's certificate"})
    verify_tls: bool = field(default=True, metadata={"help": "false only by choice"})
    connect_timeout: float = field(default=15.0, metadata={"help": "seconds to connect"})
    timeout: float = field(default=300.0, metadata={"help": "seconds per API call"})
    fast_parser: bool = field(default=True, metadata={"help": "read bulk VM properties with the fast parser"})
    datacenters: tuple[str, ...] = field(default=(), metadata={
        "help": "only these datacenters (names; one that matches none makes the target partial)"})
    clusters: tuple[str, ...] = field(default=(), metadata={
        "help": "only these clusters (names; one that matches none makes the target partial)"})
    datastore_files: bool = field(default=False, metadata={
        "help": "list the datastores' VM disk files (a datastore search task each; needs Datastore.Browse, which "
                "the Read-only role lacks) to find disks no CloudStack volume owns"})
    files_timeout: float = field(default=60.0, metadata={"help": "seconds for all the datastore searches together"})

    def __post_init__(self) -> None:
        if not self.host:
            raise ValueError("give host (the vCenter address)")
        bare_host("host", self.host, "vcenter.example or 10.0.0.5")
        object.__setattr__(self, "host", self.host.removeprefix("[").removesuffix("]"))  # an address, as connected to
        if not self.username:
            raise ValueError("give username")
        if self.fingerprint is not None:
            object.__setattr__(self, "fingerprint", sha256_fingerprint(self.fingerprint))

    @property
    def endpoint(self) -> str:
        return f"https://{self.host}:{self.port}/sdk"


class VcenterSession(Session):
    """A logged-in pyVmomi ServiceInstance on a vCenter (never an ESXi host)."""

    def __init__(self, endpoint: str, calls: Calls, si: Any, content: Any) -> None:
        super().__init__(endpoint, calls)
        self.si = si
        self.content = content


class VmwareCollector(Collector[VmwareTarget, VcenterSession]):
    """VMware: vCenter's PropertyCollector, one paged RetrievePropertiesEx per object type."""

    kind = "vmware"
    cloudstack_name = "VMware"
    Target = VmwareTarget
    timeout_hint = "is vCenter up and answering? raise timeout"

    def endpoint_timeout(self) -> float:
        return self.target.connect_timeout + self.target.timeout

    def where(self, endpoint: str) -> str:
        return f"vmware {self.target.host}:{self.target.port}"

    @contextmanager
    def connect(self, endpoint: str, calls: Calls) -> Iterator[VcenterSession]:
        """Check TLS (and the pin) before any credential is sent, log in, refuse ESXi; log out at the end."""
        target = self.target
        _pyvmomi()  # a missing SDK is said before anything is sent
        probe_tls(target)
        si = connect(target)
        guard_read_only(si, self.where(endpoint))
        calls.add(2)
        try:
            _set_read_timeout(si, target.timeout)
            content = si.RetrieveContent()
            calls.add()
            about = content.about
            if about.apiType == "HostAgent":
                raise ConnectFailed(f"vmware {target.host}: is an ESXi host ({about.fullName}), not vCenter",
                                    hint="CloudStack manages ESXi only through vCenter: configure the vCenter address")
            yield VcenterSession(endpoint, calls, si, content)
        finally:
            try:
                importlib.import_module("pyVim.connect").Disconnect(si)
            except Exception:  # logging out is a courtesy; the data is read
                pass

    def fetch(self, session: VcenterSession) -> JsonDict:
        return fetch_vcenter(session, self.target)

    @staticmethod
    def normalise(answers: dict[str, JsonDict], target: VmwareTarget) -> Inventory:
        raw = next(iter(answers.values()))
        inventory = normalise_vcenter(raw, target.name, datacenters=target.datacenters, clusters=target.clusters)
        about = raw.get("about") or {}
        inventory.detail = {
            "product": about.get("fullName"), "version": about.get("version"), "build": about.get("build"),
            "api_type": about.get("apiType"), "instance_uuid": about.get("instanceUuid"),
            "license_editions": sorted({x.get("editionKey") for x in raw.get("licenses", []) if x.get("editionKey")}),
            "read_by": {k: v for k, v in raw.items() if k.endswith("_read_by")} or None}
        return inventory

    def translate(self, exc: BaseException, where: str) -> CollectorError | None:
        return translate_vmware_error(exc, where, self.target)


# Every vSphere method this collector may call (a property accessor is a "Fetch"); the session's stub
# refuses any other before it is serialised, let alone sent.
READ_METHODS = frozenset({
    "RetrieveServiceContent", "Login", "Logout", "SessionIsActive", "CurrentTime", "Fetch", "RetrieveContents",
    "RetrieveProperties", "RetrievePropertiesEx", "ContinueRetrievePropertiesEx", "CreateContainerView", "DestroyView",
    "SearchDatastoreSubFolders_Task",  # the datastore browser: lists files, changes nothing (collectors.vmware_files)
})


def guard_read_only(si: Any, where: str) -> None:
    """Let the session's SOAP stub send only ``READ_METHODS``: read-only enforced here, not only promised."""
    stub = si._stub
    invoke = stub.InvokeMethod

    def read_only(mo: Any, info: Any, args: Any, *rest: Any) -> Any:
        name = getattr(info, "wsdlName", None) or getattr(info, "name", "?")
        if name not in READ_METHODS:
            raise ReadOnlyRefused(f"{where}: {name} is not a read; cs-inventory calls only retrieve and view "
                                  "methods", hint="nothing was sent")
        return invoke(mo, info, args, *rest)

    stub.InvokeMethod = read_only


def tls_context(target: VmwareTarget) -> ssl.SSLContext:
    """vCenter's TLS context, for the login, every pooled connection, the fast path and the datastore browser alike:
    verified by default (against ca_file if given); with a pin, every connection's certificate is compared with it
    right after the handshake (``collectors.tls_pin``); with verify_tls = false, no verification."""
    if target.fingerprint:
        return pinned_context(target.fingerprint, f"vmware {target.host}:{target.port}", "vCenter's certificate")
    if not target.verify_tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # chosen, and warned about when the config is read
        return context
    return ssl.create_default_context(cafile=str(target.ca_file) if target.ca_file else None)


def connect(target: VmwareTarget) -> Any:
    """A pyvmomi ServiceInstance; TLS verified by default, or against ca_file, or pinned (on every connection: the
    context checks it, not pyvmomi's ``thumbprint``, which it compares only after a verification error)."""
    if target.password is None:
        raise ConfigError(f"target {target.name}: no password configured", hint="give password_env or password_file")
    smart_connect = importlib.import_module("pyVim.connect").SmartConnect
    return smart_connect(host=target.host, port=target.port, user=target.username, pwd=target.password.reveal(),
                        sslContext=tls_context(target), httpConnectionTimeout=target.connect_timeout,
                        connectionPoolTimeout=-1)


def probe_tls(target: VmwareTarget) -> None:
    """Connect and shake hands within connect_timeout, and check the pinned SHA-256 — before any credential
    is sent. (pyvmomi's own connect can wait forever on a server that accepts and never answers.)"""
    if target.fingerprint:
        context = tls_context(target)
    else:  # only the handshake's time is tried here; pyvmomi's connection verifies the certificate
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((target.host, target.port), timeout=target.connect_timeout) as raw_socket:
            with context.wrap_socket(raw_socket, server_hostname=target.host):
                pass
    except TimeoutError as exc:
        raise ConnectTimedOut(target.connect_timeout) from exc


def fetch_vcenter(session: VcenterSession, target: VmwareTarget) -> JsonDict:
    """Every type's properties, in pages, as plain data; licences by edition only (never their keys)."""
    content = session.content
    raw: dict[str, Any] = {"about": plain(content.about),
                           "licenses": [{"editionKey": x.editionKey, "name": x.name}
                                        for x in content.licenseManager.licenses],
                           "custom_fields": custom_fields(content)}
    session.calls.add(2)
    # VMs on this thread, everything else on another: vCenter prepares one answer while we read the other
    results: dict[str, tuple[list[dict[str, Any]], int, str | None]] = {}
    failures: list[BaseException] = []

    def read_others() -> None:
        try:
            for name in PROPERTIES:
                if name != "vms":
                    results[name] = _read_type(session.si, content, target, name)
            if target.datastore_files:  # while the VMs are still being read
                raw["datastore_files"], raw["datastore_problems"] = datastore_files(
                    session.si._stub, results["datastores"][0], target.files_timeout, session.calls, _pyvmomi().vim)
        except BaseException as exc:  # re-raised on the calling thread below
            failures.append(exc)

    others = threading.Thread(target=read_others, daemon=True)
    others.start()
    results["vms"] = _read_type(session.si, content, target, "vms")
    others.join()
    for name in PROPERTIES:
        if name in results:
            session.calls.add(results[name][1])
    if failures:
        raise failures[0]
    for name in PROPERTIES:
        raw[name], _, fallback = results[name]
        if fallback:
            raw[f"{name}_read_by"] = fallback
    return raw


def custom_fields(content: Any) -> list[dict[str, Any]]:
    """The custom attributes defined in vCenter (key, name, object type): a VM's ``customValue`` names them by key."""
    manager = content.customFieldsManager
    fields = [plain(f) for f in (manager.field if manager is not None else None) or []]
    return [{k: f[k] for k in ("key", "name", "managedObjectType") if k in f} for f in fields]


SLIM = {"hosts": slim_host, "vms": slim_vm}  # both paths keep the same of these: what the normaliser reads


def _read_type(si: Any, content: Any, target: VmwareTarget, name: str) -> tuple[list[dict[str, Any]], int, str | None]:
    """One object type: the fast path for the bulk types, pyvmomi for the rest (and as the fallback)."""
    type_name, paths = PROPERTIES[name]
    kind = vim_type(type_name)
    fallback = None
    if name in ("vms", "hosts") and target.fast_parser:
        try:
            objects, used = retrieve_fast(si, content, kind, paths, context=tls_context(target),
                                          timeout=target.timeout, page=FAST_PAGES[name], nested=name == "hosts")
            # the fast path reads a VM's devices as slim_vm keeps them; a host's data objects it takes apart
            return [slim_host(o) for o in objects] if name == "hosts" else objects, used, None
        except (FastPathError, ValueError, ET.ParseError) as exc:  # pyvmomi reads it below; say so
            fallback = f"pyvmomi (fast path: {one_line(exc, 200)})"
    objects, used = retrieve(content, kind, paths)
    return [SLIM[name](o) for o in objects] if name in SLIM else objects, used, fallback


def retrieve(content: Any, vim_type: Any, paths: list[str]) -> tuple[list[dict[str, Any]], int]:
    """One ContainerView over the whole inventory, RetrievePropertiesEx + Continue pages."""
    pyvmomi = _pyvmomi()
    vim, vmodl = pyvmomi.vim, pyvmomi.vmodl
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
    VmomiSupport = _pyvmomi().VmomiSupport
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


def translate_vmware_error(exc: BaseException, where: str, target: VmwareTarget) -> CollectorError | None:
    """pyVmomi's faults in one line; sockets and TLS are left to the shared words."""
    pyvmomi = _pyvmomi()
    cause = exc.__cause__ or exc.__context__
    if isinstance(exc, pyvmomi.vmodl.MethodFault) and isinstance(cause, CollectorError):
        return cause  # pyVim's connect wraps what failed (a pin refused) in a HostConnectFault: said as it was
    if isinstance(exc, pyvmomi.vim.fault.InvalidLogin):
        return AuthFailed(f"{where}: user {target.username!r} was refused (InvalidLogin)",
                          hint="check username and the password reference")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return TlsRejected(f"{where}: certificate not trusted ({exc.verify_message})",
                           hint="set ca_file to vCenter's CA, or pin its SHA-256 fingerprint")
    if isinstance(exc, TimeoutError):
        return TimedOut(f"{where}: no answer within {target.timeout:g}s", hint="is vCenter up? raise timeout")
    if isinstance(exc, pyvmomi.vmodl.MethodFault):
        return ApiError(f"{where}: {type(exc).__name__}: {one_line(getattr(exc, 'msg', exc), 160)}")
    if "thumbprint" in str(exc).lower():
        return TlsRejected(f"{where}: certificate fingerprint is not the pinned one",
                           hint="if vCenter's certificate was renewed, verify it and update fingerprint")
    return None
