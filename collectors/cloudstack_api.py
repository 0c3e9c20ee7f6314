"""CloudStack's own view of the estate, read from its management server's API (list calls only).

What CloudStack believes — zones, pods, clusters, hosts (``type=Routing``), user VMs, system VMs, virtual
routers, internal load-balancer VMs, volumes, primary storage pools, the global settings the checks use,
physical networks and their traffic labels per hypervisor, and its version (``listCapabilities``) — so
that the rules can compare it with what the hypervisors run. Signed requests through the ``cs`` client
(HMAC-SHA1, ``signatureVersion=3`` with an expiry); an allow-list refuses any command but the list calls
below before a byte is sent. Needs a root admin's API key: CloudStack shows a VM's ``instancename`` and
host, and a volume's path and pool, to root admins only. Lists are paged (``page`` + ``pagesize``) until
``count`` — a list without paging is silently cut at ``default.page.size``; a page of nothing new (a server
that repeats a page) ends the list, said as the endpoint's problem — with the page size lowered to
the server's ``default.page.size`` when that is smaller (read first; else learnt from the 431 answer). VMs,
routers, internal LB VMs and volumes are read in two passes merged by id, ``listall=true`` (every account)
and ``projectid=-1`` with ``listall=true`` (project resources: older releases list only those, the newest
both), volumes with ``listsystemvms=true`` (else system VMs' disks look unowned). Blind spots: per-zone
or per-cluster overrides of settings (the global values are read), and anything CloudStack only logs.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from collectors.base import Calls, Collector, Sdk, Session
from inventory.errors import (
    ApiError, AuthFailed, CollectorError, ConfigError, ConnectFailed, ReadOnlyRefused, TimedOut, TlsRejected,
)
from inventory.model import (
    CloudStackCluster, CloudStackHost, CloudStackSetting, CloudStackStoragePool, CloudStackTrafficLabel, CloudStackVm,
    CloudStackVolume, CloudStackZone, Inventory, JsonDict, Secret, TargetConfig,
)
from inventory.normalise import check_url, one_line, refuse_password_in, sha256_fingerprint

_SDK = Sdk("cs", pip="cs", extra="cloudstack", debian="python3-cs")

# The only commands this target sends: reads. Anything else is refused before it is signed or sent.
READ_COMMANDS = frozenset({
    "listCapabilities", "listZones", "listPods", "listClusters", "listHosts", "listVirtualMachines", "listSystemVms",
    "listRouters", "listInternalLoadBalancerVMs", "listVolumes", "listStoragePools", "listConfigurations",
    "listPhysicalNetworks", "listTrafficTypes",
})
# The global settings kept (what the checks and this reader use).
SETTINGS = frozenset({
    "default.page.size", "vmware.management.portgroup", "pool.storage.capacity.disablethreshold",
    "pool.storage.allocated.capacity.disablethreshold", "storage.overprovisioning.factor", "control.cidr",
    "instance.name", "vm.instancename.flag",
})
# listTrafficTypes' label fields, and the cs-inventory kind each is for
LABEL_FIELDS = {"kvmnetworklabel": "kvm", "xennetworklabel": "xenserver", "vmwarenetworklabel": "vmware",
                "hypervnetworklabel": "hyperv", "ovm3networklabel": "ovm3"}
_PAGE_LIMIT = re.compile(r"max allowed page size value: (\d+)")
RUNNING_STATES = ("Running", "Starting", "Stopping", "Migrating")


@cache
def _cs() -> ModuleType:
    return _SDK.load("cloudstack_api")


@dataclass(frozen=True)
class CloudStackApiTarget(TargetConfig):
    """A CloudStack management server's API, read with a root admin's API key (list calls only)."""

    url: str = field(default="", metadata={"help": "the API URL, e.g. https://cloudstack.example:8443/client/api",
                                           "required": True})
    api_key: str = field(default="", metadata={"help": "a root admin's API key (an identifier: kept in the config "
                                                       "only, never stored or recorded)", "private": True,
                                                 "required": True})
    secret_key: Secret | None = field(default=None, metadata={"help": "the API key's secret key", "required": True})
    ca_file: Path | None = field(default=None, metadata={"help": "CA bundle for the server's certificate"})
    fingerprint: str | None = field(default=None, metadata={"help": "pinned SHA-256 of the server's certificate"})
    verify_tls: bool = field(default=True, metadata={"help": "false only by choice"})
    timeout: float = field(default=60.0, metadata={"help": "seconds per API call"})
    overall_timeout: float = field(default=900.0, metadata={"help": "seconds for the whole read"})
    page_size: int = field(default=500, metadata={"help": "items per page; lowered to the server's "
                                                          "default.page.size when that is smaller"})

    def __post_init__(self) -> None:
        refuse_password_in("url", self.url, "the API is signed with api_key and secret_key_env or secret_key_file",
                           user=False)
        check_url("url", self.url, "https://cloudstack.example:8443/client/api")
        if not self.api_key:
            raise ValueError("give api_key (a root admin's API key) and secret_key_env or secret_key_file")
        if self.page_size < 1:
            raise ValueError("page_size must be at least 1")
        if self.fingerprint is not None:
            object.__setattr__(self, "fingerprint", sha256_fingerprint(self.fingerprint))

    @property
    def endpoint(self) -> str:
        return self.url


class CloudStackSession(Session):
    """A signing client for one management server that sends only the commands in ``READ_COMMANDS``."""

    def __init__(self, url: str, calls: Calls, client: Any, page_size: int) -> None:
        super().__init__(url, calls)
        self.client = client
        self.page_size = page_size

    def call(self, command: str, **params: Any) -> Any:
        """One API request; a command outside the allow-list raises before anything is signed or sent."""
        if command not in READ_COMMANDS or not command.startswith("list"):
            raise ReadOnlyRefused(f"cloudstack {self.endpoint}: {command} is not a read; cs-inventory sends list "
                                  "calls only", hint="nothing was sent")
        self.calls.add()
        try:
            return getattr(self.client, command)(**params)
        except Exception as exc:
            error = translate_cs_error(exc, f"cloudstack {self.endpoint}", command)
            if error is None:
                raise
            raise error from None  # the cause's text holds the request URL: the key and the signature

    def list_all(self, command: str, **params: Any) -> list[JsonDict]:
        """Every item of a list, page by page until ``count``; the page size follows the server's limit."""
        while True:
            try:
                return self._pages(command, params)
            except ApiError as exc:
                limit = _PAGE_LIMIT.search(exc.message)
                if limit is None or int(limit.group(1)) >= self.page_size or int(limit.group(1)) < 1:
                    raise
                self.page_size = int(limit.group(1))  # the server's default.page.size is smaller: start again

    def _pages(self, command: str, params: dict[str, Any]) -> list[JsonDict]:
        items: list[JsonDict] = []
        seen: dict[str, int] = {}  # id → the page it came on
        page = 1
        while True:
            answer = self.call(command, page=page, pagesize=self.page_size, **params)
            found = [value for key, value in answer.items() if key != "count" and isinstance(value, list)]
            batch: list[JsonDict] = found[0] if found else []
            count = answer.get("count")
            ids = [_identity(item) for item in batch]
            if ids and all(i in seen for i in ids):  # a page of nothing new: the server repeats itself
                self.degraded.append(f"{command}: page {page} repeats page {seen[ids[0]]}; {len(items)} of "
                                     f"{count if isinstance(count, int) else '?'} read")
                return items
            seen.update((i, page) for i in ids if i not in seen)
            items.extend(batch)
            if not batch or not isinstance(count, int) or len(items) >= count:
                return items
            page += 1

    def list_both(self, command: str, **params: Any) -> list[JsonDict]:
        """Two passes merged by id: every account's (``listall``) and every project's (``projectid=-1``)."""
        merged: dict[str, JsonDict] = {}
        for scope in ({"listall": True}, {"listall": True, "projectid": -1}):
            for item in self.list_all(command, **scope, **params):
                merged.setdefault(str(item.get("id")), item)
        return list(merged.values())


def _identity(item: Any) -> str:
    """What tells a listed item from another: its id, else (settings, traffic types) the whole item."""
    if isinstance(item, dict) and item.get("id") is not None:
        return f"id {item['id']}"
    return json.dumps(item, sort_keys=True, default=str)


class CloudStackApiCollector(Collector[CloudStackApiTarget, CloudStackSession]):
    """CloudStack's API: what the management server believes, to reconcile with what the hypervisors run."""

    kind = "cloudstack_api"
    cloudstack_name = "CloudStack"
    Target = CloudStackApiTarget
    is_hypervisor = False
    timeout_hint = "is the management server up? raise timeout"
    limit_hint = "is the management server up? raise overall_timeout"

    def endpoint_timeout(self) -> float:
        return self.target.overall_timeout

    def where(self, endpoint: str) -> str:
        return f"cloudstack {endpoint}"

    @contextmanager
    def connect(self, endpoint: str, calls: Calls) -> Iterator[CloudStackSession]:
        """A signing client (``cs``) over a requests session that verifies TLS, or pins the certificate."""
        cs = _cs()
        target = self.target
        if target.secret_key is None:
            raise ConfigError(f"target {target.name}: no secret key configured",
                              hint="give secret_key_env or secret_key_file")
        http = _http_session(target)
        verify: bool | str = str(target.ca_file) if target.ca_file else target.verify_tls and not target.fingerprint
        client = cs.CloudStack(endpoint=endpoint, key=target.api_key, secret=target.secret_key.reveal(),
                               timeout=max(1, round(target.timeout)), verify=verify, session=http, retry=0,
                               dangerous_no_tls_verify=verify is False)  # cs reads verify=False as "default"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # verify_tls = false was chosen: no warning per request
                yield CloudStackSession(endpoint, calls, client, target.page_size)
        finally:
            http.close()

    def fetch(self, session: CloudStackSession) -> JsonDict:
        return fetch_cloudstack(session)

    @staticmethod
    def normalise(answers: dict[str, JsonDict], target: CloudStackApiTarget) -> Inventory:
        return normalise_cloudstack(next(iter(answers.values())), target.name)

    def translate(self, exc: BaseException, where: str) -> CollectorError | None:
        return translate_cs_error(exc, where, None)


def _http_session(target: CloudStackApiTarget) -> Any:
    """requests' session; with a pinned fingerprint, urllib3 checks the certificate's SHA-256 on every connection."""
    import requests
    from requests.adapters import HTTPAdapter

    class _Pinned(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            kwargs["assert_fingerprint"] = target.fingerprint
            super().init_poolmanager(*args, **kwargs)

    http = requests.Session()
    http.trust_env = False  # no proxy or netrc from the environment: the configured URL is what is read
    if target.fingerprint:
        http.mount("https://", _Pinned())
    return http


def fetch_cloudstack(session: CloudStackSession) -> JsonDict:
    """Every list the reconciliation and the checks use, as the API answered them (items as JSON)."""
    capability = session.call("listCapabilities").get("capability") or {}
    settings = _settings(session)
    limit = str(((settings or {}).get("default.page.size") or {}).get("value"))
    if limit.isdigit() and 0 < int(limit) < session.page_size:
        session.page_size = int(limit)
    vms = session.list_both("listVirtualMachines")
    if any("instancename" not in vm for vm in vms):
        raise AuthFailed(f"cloudstack {session.endpoint}: the API key is not a root admin's (VMs come without "
                         "instancename and host)", hint="use a root admin's API key: CloudStack shows instance names, "
                                                         "hosts and volume paths to root admins only")
    lists: dict[str, Any] = {
        "zones": session.list_all("listZones"), "pods": session.list_all("listPods"),
        "clusters": session.list_all("listClusters"), "hosts": session.list_all("listHosts", type="Routing"),
        "vms": vms, "systemvms": session.list_all("listSystemVms"), "routers": session.list_both("listRouters"),
        "internallbvms": session.list_both("listInternalLoadBalancerVMs"),
        "volumes": session.list_both("listVolumes", listsystemvms=True),
        "storagepools": session.list_all("listStoragePools"),
        "physicalnetworks": session.list_all("listPhysicalNetworks"),
    }
    if settings is None:
        settings = _settings(session, required=True)  # says why a key that may not read them cannot be used
    lists["traffictypes"] = [dict(t, physicalnetworkid=t.get("physicalnetworkid") or net.get("id"))
                             for net in lists["physicalnetworks"]
                             for t in _items(session.call("listTrafficTypes", physicalnetworkid=net.get("id")))]
    return {"url": session.endpoint, "version": capability.get("cloudstackversion"), "page_size": session.page_size,
            "settings": settings, "lists": lists}


def _settings(session: CloudStackSession, required: bool = False) -> dict[str, Any] | None:
    """The global settings kept (``SETTINGS``); None for a key that may not list them (found out with the VMs)."""
    try:
        rows = session.list_all("listConfigurations")
    except AuthFailed:
        if required:
            raise
        return None
    return {str(r.get("name")): {"value": r.get("value"), "category": r.get("category"),
                                 "is_default": r.get("isdefault") if "isdefault" in r else None}
            for r in rows if r.get("name") in SETTINGS}


def _items(answer: Any) -> list[JsonDict]:
    found = [v for k, v in (answer or {}).items() if k != "count" and isinstance(v, list)]
    return found[0] if found else []


def translate_cs_error(exc: BaseException, where: str, command: str | None) -> CollectorError | None:
    """The cs client's and requests' errors in one line, never with the request's URL (it holds the key and the
    signature): CloudStack's own ``errortext`` and code, or what went wrong on the way."""
    if isinstance(exc, CollectorError):
        return exc
    cs = _cs()
    doing = f" ({command})" if command else ""
    if isinstance(exc, cs.CloudStackApiException):
        error = exc.error if isinstance(exc.error, dict) else {}
        code = error.get("errorcode") or getattr(exc.response, "status_code", "?")
        text = one_line(error.get("errortext") or "no error text", 300)
        if code == 401:
            return AuthFailed(f"{where}: signature refused (401){doing}: {text}",
                              hint="check api_key and the secret key reference; the key's user must be enabled, "
                                   "and this machine's clock right (requests expire after 10 minutes)")
        if code == 432:
            return AuthFailed(f"{where}: the API key may not call {command or 'this'} (432): {text}",
                              hint="use a root admin's API key: reconciliation reads what only root admins see")
        return ApiError(f"{where}{doing}: CloudStack answered {code}: {text}")
    if isinstance(exc, cs.CloudStackException):
        response = getattr(exc, "response", None)
        status = getattr(response, "status_code", None)
        kind = (getattr(response, "headers", None) or {}).get("Content-Type", "no content type")
        return ApiError(f"{where}{doing}: not CloudStack's API (HTTP {status}, {one_line(kind, 60)} instead of JSON)",
                        hint="is url the API's, ending in /client/api (not the UI's /client/)?")
    requests = __import__("requests")
    if isinstance(exc, requests.exceptions.SSLError):
        text = str(exc)
        if "ingerprint" in text:
            return TlsRejected(f"{where}: certificate fingerprint is not the pinned one",
                               hint="if the server's certificate was renewed, verify it and update fingerprint")
        why = "certificate not trusted" if "CERTIFICATE_VERIFY_FAILED" in text else "TLS failed"
        return TlsRejected(f"{where}: {why}", hint="set ca_file to the CA that signed it, or pin its SHA-256 "
                                                   "fingerprint")
    if isinstance(exc, requests.exceptions.Timeout):
        return TimedOut(f"{where}: no answer in time{doing}", hint="is the management server up? raise timeout")
    if isinstance(exc, requests.exceptions.ConnectionError):
        refused = "refused" in str(exc).lower()
        return ConnectFailed(f"{where}: {'connection refused' if refused else 'cannot connect'}",
                             hint="is the management server running on that address and port?")
    if isinstance(exc, requests.exceptions.RequestException):
        return ApiError(f"{where}{doing}: request failed ({type(exc).__name__})")
    if isinstance(exc, (KeyError, TypeError, AttributeError, ValueError)):
        return ApiError(f"{where}{doing}: unexpected answer ({type(exc).__name__})")
    return None


# -- normalising: pure ------------------------------------------------------------------------------
def normalise_cloudstack(answer: JsonDict, target: str) -> Inventory:
    """What CloudStack listed, as cloudstack_* records; the version and page size in the target's detail."""
    lists = answer.get("lists") or {}
    inv = Inventory()
    zones = {z.get("id"): z for z in lists.get("zones", [])}
    pods = {p.get("id"): p for p in lists.get("pods", [])}
    for z in zones.values():
        inv.cloudstack_zones.append(CloudStackZone(
            key=str(z.get("id")), target=target, name=str(z.get("name")), network_type=z.get("networktype"),
            allocation_state=z.get("allocationstate"), raw_json=_raw(z, "description", "dns1", "internaldns1")))
    for c in lists.get("clusters", []):
        inv.cloudstack_clusters.append(CloudStackCluster(
            key=str(c.get("id")), target=target, name=str(c.get("name")), zone_key=c.get("zoneid"),
            zone_name=c.get("zonename") or (zones.get(c.get("zoneid")) or {}).get("name"), pod_key=c.get("podid"),
            pod_name=c.get("podname") or (pods.get(c.get("podid")) or {}).get("name"),
            hypervisor=c.get("hypervisortype"), cluster_type=c.get("clustertype"),
            allocation_state=c.get("allocationstate"), managed_state=c.get("managedstate"), raw_json=None))
    for h in lists.get("hosts", []):
        inv.cloudstack_hosts.append(CloudStackHost(
            key=str(h.get("id")), target=target, name=str(h.get("name")), cluster_key=h.get("clusterid"),
            zone_key=h.get("zoneid"), pod_key=h.get("podid"), address=h.get("ipaddress"), hypervisor=h.get("hypervisor"),
            hypervisor_version=h.get("hypervisorversion"), state=h.get("state"), resource_state=h.get("resourcestate"),
            agent_version=h.get("version"), raw_json=_raw(h, "clustername", "lastpinged", "managementserverid")))
    for vm in lists.get("vms", []):
        inv.cloudstack_vms.append(_vm(vm, target, "user", vm.get("instancename")))
    for vm in lists.get("systemvms", []):
        role = {"consoleproxy": "cpvm", "secondarystoragevm": "ssvm"}.get(str(vm.get("systemvmtype")), "system")
        inv.cloudstack_vms.append(_vm(vm, target, role, vm.get("name")))
    for vm in lists.get("routers", []):
        inv.cloudstack_vms.append(_vm(vm, target, "router", vm.get("name")))
    for vm in lists.get("internallbvms", []):
        inv.cloudstack_vms.append(_vm(vm, target, "internal_lb", vm.get("name")))
    for v in lists.get("volumes", []):
        inv.cloudstack_volumes.append(CloudStackVolume(
            key=str(v.get("id")), target=target, name=str(v.get("name")), volume_type=v.get("type"),
            state=v.get("state"), path=v.get("path"), pool_key=v.get("storageid"), pool_name=v.get("storage"),
            vm_key=v.get("virtualmachineid"), vm_name=v.get("vmname"), zone_key=v.get("zoneid"),
            size_bytes=_int(v.get("size")), hypervisor=v.get("hypervisor"),
            raw_json=_raw(v, "vmstate", "vmtype", "account", "project", "provisioningtype", "deviceid")))
    for p in lists.get("storagepools", []):
        inv.cloudstack_storage_pools.append(CloudStackStoragePool(
            key=str(p.get("id")), target=target, name=str(p.get("name")), pool_type=p.get("type"), scope=p.get("scope"),
            address=p.get("ipaddress"), path=p.get("path"), cluster_key=p.get("clusterid"), zone_key=p.get("zoneid"),
            state=p.get("state"), hypervisor=p.get("hypervisor"), capacity_bytes=_int(p.get("disksizetotal")),
            used_bytes=_int(p.get("disksizeused")), allocated_bytes=_int(p.get("disksizeallocated")),
            raw_json=_raw(p, "provider", "tags", "overprovisionfactor")))
    for name, setting in sorted((answer.get("settings") or {}).items()):
        inv.cloudstack_settings.append(CloudStackSetting(
            name=name, target=target, value=None if setting.get("value") is None else str(setting.get("value")),
            category=setting.get("category"), is_default=setting.get("is_default")))
    networks = {n.get("id"): n for n in lists.get("physicalnetworks", [])}
    for t in lists.get("traffictypes", []):
        network = networks.get(t.get("physicalnetworkid")) or {}
        for label_field, kind in LABEL_FIELDS.items():
            if kind in ("kvm", "xenserver", "vmware") or t.get(label_field):
                inv.cloudstack_traffic_labels.append(CloudStackTrafficLabel(
                    physical_network_key=str(t.get("physicalnetworkid")), target=target,
                    traffic_type=str(t.get("traffictype")), hypervisor=kind, label=t.get(label_field) or None,
                    physical_network=network.get("name"), zone_key=network.get("zoneid")))
    inv.detail = {"product": "Apache CloudStack", "cloudstack_version": answer.get("version"),
                  "page_size": answer.get("page_size"), "api": "list calls only"}
    return inv


def _vm(vm: JsonDict, target: str, role: str, instance_name: Any) -> CloudStackVm:
    memory = _int(vm.get("memory"))
    return CloudStackVm(
        key=str(vm.get("id")), target=target, name=str(vm.get("name")), role=role,
        instance_name=str(instance_name) if instance_name else None, display_name=vm.get("displayname"),
        state=vm.get("state"), host_key=vm.get("hostid"), host_name=vm.get("hostname"), zone_key=vm.get("zoneid"),
        hypervisor=vm.get("hypervisor"), account=vm.get("account"), project=vm.get("project"),
        vcpus=_int(vm.get("cpunumber")), memory_bytes=memory * 2**20 if memory is not None else None,
        raw_json=_raw(vm, "systemvmtype", "redundantstate", "lastupdated", "haenable", "privateip", "linklocalip",
                      "nic"))


def _raw(record: JsonDict, *names: str) -> JsonDict | None:
    kept = {name: record[name] for name in names if record.get(name) not in (None, "", [])}
    if "nic" in kept:
        kept["nic"] = [{k: n.get(k) for k in ("macaddress", "ipaddress", "networkid", "isolationuri") if n.get(k)}
                       for n in kept["nic"] if isinstance(n, dict)]
    return kept or None


def _int(value: Any) -> int | None:
    try:
        return None if value is None or value == "" else int(value)
    except (TypeError, ValueError):
        return None
