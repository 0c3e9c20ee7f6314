"""Neutral, frozen records every collector produces and the store writes.

Units are in the names: ``*_bytes`` are bytes, ``*_mhz`` megahertz, ``*_s`` seconds.
A ``None`` means "not known" (the hypervisor did not say, or the fact could not be read),
never "zero" or "false".
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from inventory.errors import ConfigError

HypervisorKind = str  # "kvm", "xenserver", "vmware", ... — a registry key, not an Enum
JsonDict = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Cluster:
    key: str
    target: str
    name: str
    hypervisor: HypervisorKind
    master_host_key: str | None = None
    drs_enabled: bool | None = None
    drs_behavior: str | None = None
    ha_enabled: bool | None = None
    host_count: int | None = None
    raw_json: JsonDict | None = None


@dataclass(frozen=True, slots=True)
class Host:
    key: str
    target: str
    cluster_key: str | None
    name: str
    address: str
    hypervisor: HypervisorKind
    uuid: str | None = None
    hypervisor_version: str | None = None
    product_name: str | None = None
    build: str | None = None
    cpu_arch: str | None = None
    cpu_vendor: str | None = None
    cpu_model: str | None = None
    cpu_sockets: int | None = None
    cpu_cores: int | None = None
    cpu_threads: int | None = None
    cpu_mhz: int | None = None
    hvm: bool | None = None
    libvirt_hvm: bool | None = None
    dev_kvm: bool | None = None
    cpu_flags: str | None = None
    memory_bytes: int | None = None
    state: str | None = None
    is_pool_master: bool | None = None
    os_id: str | None = None
    os_name: str | None = None
    os_version: str | None = None
    kernel_version: str | None = None
    libvirt_version: str | None = None
    agent_version: str | None = None
    agent_state: str | None = None
    agent_zone: str | None = None
    agent_pod: str | None = None
    agent_cluster: str | None = None
    agent_guid: str | None = None
    agent_host: str | None = None
    agent_private_device: str | None = None
    agent_public_device: str | None = None
    agent_guest_device: str | None = None
    time_synced: bool | None = None
    raw_json: JsonDict | None = None
    product_line: str | None = None
    local_disk_bytes: int | None = None
    host_os: str | None = None
    fqdn: str | None = None
    java_version: str | None = None
    selinux_mode: str | None = None
    apparmor_libvirt: str | None = None
    firewall: str | None = None
    ovs_version: str | None = None
    agent_certificates: bool | None = None
    libvirt_tls: bool | None = None
    agent_connected: bool | None = None
    uefi_firmware: bool | None = None
    applied_updates: str | None = None


@dataclass(frozen=True, slots=True)
class Vm:
    key: str
    target: str
    host_key: str | None
    cluster_key: str | None
    name: str
    uuid: str | None = None
    instance_name: str | None = None
    cs_role: str = "unmanaged"
    cs_account_id: int | None = None
    cs_id: int | None = None
    power_state: str | None = None
    vcpus: int | None = None
    memory_bytes: int | None = None
    guest_os: str | None = None
    tools_state: str | None = None
    is_template: bool = False
    raw_json: JsonDict | None = None


@dataclass(frozen=True, slots=True)
class VmDisk:
    vm_key: str
    target: str
    device: str
    disk_type: str | None = None
    bus: str | None = None
    storage_key: str | None = None
    path: str | None = None
    format: str | None = None
    capacity_bytes: int | None = None
    allocation_bytes: int | None = None
    thin: bool | None = None


@dataclass(frozen=True, slots=True)
class VmNic:
    vm_key: str
    target: str
    device: str
    mac: str | None = None
    network_key: str | None = None
    network_name: str | None = None
    model: str | None = None
    ip_addresses: str | None = None


@dataclass(frozen=True, slots=True)
class Network:
    key: str
    target: str
    name: str
    kind: str
    bridge: str | None = None
    vlan: int | None = None
    mtu: int | None = None
    label: str | None = None
    raw_json: JsonDict | None = None


@dataclass(frozen=True, slots=True)
class HostNic:
    host_key: str
    target: str
    device: str
    kind: str | None = None
    network_key: str | None = None
    mac: str | None = None
    ip: str | None = None
    netmask: str | None = None
    ip_addresses: str | None = None
    is_dhcp: bool | None = None
    mtu: int | None = None
    vlan: int | None = None
    is_management: bool | None = None
    bond: str | None = None
    link_up: bool | None = None
    speed: int | None = None


@dataclass(frozen=True, slots=True)
class Storage:
    key: str
    target: str
    name: str
    kind: str
    shared: bool | None = None
    capacity_bytes: int | None = None
    free_bytes: int | None = None
    source: str | None = None
    content: str | None = None
    raw_json: JsonDict | None = None


@dataclass(frozen=True, slots=True)
class HostStorage:
    host_key: str
    target: str
    storage_key: str
    attached: bool | None = None
    mount_path: str | None = None


@dataclass(frozen=True, slots=True)
class StorageImage:
    """A disk image as the storage lists it, attached to a VM or not: a libvirt pool's volume, an SR's VDI."""
    storage_key: str
    target: str
    path: str  # the image's identity on its storage: a file path (libvirt), a VDI uuid (XAPI)
    name: str | None = None
    kind: str | None = None  # disk, iso, snapshot, or what the hypervisor calls it (XAPI VDI types)
    format: str | None = None
    capacity_bytes: int | None = None
    allocation_bytes: int | None = None
    backing: str | None = None  # the image it is based on (qcow2 backing file, VHD parent), same identity as path


# -- CloudStack's own view, read from its API by a cloudstack_api target -------------------------
# Keys are CloudStack's UUIDs; CloudStack's names for states and types are kept as it sends them
# (``Running``, ``Routing``, ``KVM``), so a row can be compared with the API's documentation.


@dataclass(frozen=True, slots=True)
class CloudStackZone:
    key: str
    target: str
    name: str
    network_type: str | None = None
    allocation_state: str | None = None
    raw_json: JsonDict | None = None


@dataclass(frozen=True, slots=True)
class CloudStackCluster:
    key: str
    target: str
    name: str
    zone_key: str | None = None
    zone_name: str | None = None
    pod_key: str | None = None
    pod_name: str | None = None
    hypervisor: str | None = None
    cluster_type: str | None = None
    allocation_state: str | None = None
    managed_state: str | None = None
    raw_json: JsonDict | None = None


@dataclass(frozen=True, slots=True)
class CloudStackHost:
    key: str
    target: str
    name: str
    cluster_key: str | None = None
    zone_key: str | None = None
    pod_key: str | None = None
    address: str | None = None
    hypervisor: str | None = None
    hypervisor_version: str | None = None
    state: str | None = None
    resource_state: str | None = None
    agent_version: str | None = None
    raw_json: JsonDict | None = None


@dataclass(frozen=True, slots=True)
class CloudStackVm:
    key: str
    target: str
    name: str
    role: str  # user | router | ssvm | cpvm | internal_lb
    instance_name: str | None = None
    display_name: str | None = None
    state: str | None = None
    host_key: str | None = None
    host_name: str | None = None
    zone_key: str | None = None
    hypervisor: str | None = None
    account: str | None = None
    project: str | None = None
    vcpus: int | None = None
    memory_bytes: int | None = None
    raw_json: JsonDict | None = None


@dataclass(frozen=True, slots=True)
class CloudStackVolume:
    key: str
    target: str
    name: str
    volume_type: str | None = None
    state: str | None = None
    path: str | None = None
    pool_key: str | None = None
    pool_name: str | None = None
    vm_key: str | None = None
    vm_name: str | None = None
    zone_key: str | None = None
    size_bytes: int | None = None
    hypervisor: str | None = None
    raw_json: JsonDict | None = None


@dataclass(frozen=True, slots=True)
class CloudStackStoragePool:
    key: str
    target: str
    name: str
    pool_type: str | None = None
    scope: str | None = None
    address: str | None = None
    path: str | None = None
    cluster_key: str | None = None
    zone_key: str | None = None
    state: str | None = None
    hypervisor: str | None = None
    capacity_bytes: int | None = None
    used_bytes: int | None = None
    allocated_bytes: int | None = None
    raw_json: JsonDict | None = None


@dataclass(frozen=True, slots=True)
class CloudStackSetting:
    name: str
    target: str
    value: str | None = None
    category: str | None = None
    is_default: bool | None = None


@dataclass(frozen=True, slots=True)
class CloudStackTrafficLabel:
    physical_network_key: str
    target: str
    traffic_type: str
    hypervisor: str  # cs-inventory's kind: kvm, xenserver, vmware, …
    label: str | None = None
    physical_network: str | None = None
    zone_key: str | None = None


@dataclass(slots=True)
class Inventory:
    """Everything one target (or one host of it) yielded, ready for the store."""

    clusters: list[Cluster] = field(default_factory=list)
    hosts: list[Host] = field(default_factory=list)
    vms: list[Vm] = field(default_factory=list)
    vm_disks: list[VmDisk] = field(default_factory=list)
    vm_nics: list[VmNic] = field(default_factory=list)
    networks: list[Network] = field(default_factory=list)
    host_nics: list[HostNic] = field(default_factory=list)
    storage: list[Storage] = field(default_factory=list)
    host_storage: list[HostStorage] = field(default_factory=list)
    storage_images: list[StorageImage] = field(default_factory=list)
    cloudstack_zones: list[CloudStackZone] = field(default_factory=list)
    cloudstack_clusters: list[CloudStackCluster] = field(default_factory=list)
    cloudstack_hosts: list[CloudStackHost] = field(default_factory=list)
    cloudstack_vms: list[CloudStackVm] = field(default_factory=list)
    cloudstack_volumes: list[CloudStackVolume] = field(default_factory=list)
    cloudstack_storage_pools: list[CloudStackStoragePool] = field(default_factory=list)
    cloudstack_settings: list[CloudStackSetting] = field(default_factory=list)
    cloudstack_traffic_labels: list[CloudStackTrafficLabel] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # values that were missing or malformed (now NULL)
    # what the target's own settings asked for and the answer does not have (a cluster filter matching none)
    unmatched: list[str] = field(default_factory=list)
    # endpoints whose answer made no sense as a whole, and why: nothing of them was kept (they count as failed)
    left_out: dict[str, str] = field(default_factory=dict)
    detail: JsonDict | None = None  # what the endpoint says about itself (product, version, licence …)
    bounded: bool = False  # inventory.bounds.bound made every record storable, each raw_json as the store gives it back
    # the JSON text bound made of a nested raw_json, by id(raw_json) with the raw_json itself: the store's text of it
    # (a raw_json is not changed in place after bound: replace it, and the store encodes the new one)
    raw_texts: dict[int, tuple[JsonDict, str]] = field(default_factory=dict, repr=False, compare=False)

    TABLES = (  # what the hypervisors run
        "clusters", "hosts", "vms", "vm_disks", "vm_nics",
        "networks", "host_nics", "storage", "host_storage", "storage_images",
    )
    CLOUDSTACK_TABLES = (  # what CloudStack believes (a cloudstack_api target)
        "cloudstack_zones", "cloudstack_clusters", "cloudstack_hosts", "cloudstack_vms", "cloudstack_volumes",
        "cloudstack_storage_pools", "cloudstack_settings", "cloudstack_traffic_labels",
    )
    ALL_TABLES = TABLES + CLOUDSTACK_TABLES
    # what identifies a record within its target: no two records of one target share it
    KEYS: ClassVar[dict[str, tuple[str, ...]]] = {
        "clusters": ("key",), "hosts": ("key",), "vms": ("key",), "vm_disks": ("vm_key", "device"),
        "vm_nics": ("vm_key", "device"), "networks": ("key",), "host_nics": ("host_key", "device"),
        "storage": ("key",), "host_storage": ("host_key", "storage_key"), "storage_images": ("storage_key", "path"),
        "cloudstack_zones": ("key",), "cloudstack_clusters": ("key",), "cloudstack_hosts": ("key",),
        "cloudstack_vms": ("key",), "cloudstack_volumes": ("key",), "cloudstack_storage_pools": ("key",),
        "cloudstack_settings": ("name",),
        "cloudstack_traffic_labels": ("physical_network_key", "traffic_type", "hypervisor")}

    def extend(self, other: Inventory) -> None:
        for table in self.ALL_TABLES:
            getattr(self, table).extend(getattr(other, table))
        self.unmatched.extend(other.unmatched)
        self.raw_texts.update(other.raw_texts)

    def counts(self) -> dict[str, int]:
        """Rows per table: every hypervisor table, and the CloudStack tables that hold any."""
        counts = {table: len(getattr(self, table)) for table in self.TABLES}
        counts.update({table: len(getattr(self, table)) for table in self.CLOUDSTACK_TABLES if getattr(self, table)})
        return counts


@dataclass(frozen=True, slots=True)
class EndpointResult:
    """One address a collector talked to (a KVM host, a pool master, a vCenter)."""

    target: str
    endpoint: str
    status: str  # "ok" | "partial" | "failed"
    error: str | None
    duration_s: float
    api_calls: int


@dataclass(slots=True)
class TargetResult:
    """What one configured target produced: records, per-endpoint outcomes, and its status."""

    name: str
    hypervisor: HypervisorKind
    endpoint: str
    status: str  # "ok" | "partial" | "failed"
    error: str | None = None
    duration_s: float = 0.0
    api_calls: int = 0
    inventory: Inventory = field(default_factory=Inventory)
    endpoints: list[EndpointResult] = field(default_factory=list)
    detail: JsonDict | None = None


@dataclass(slots=True)
class TargetRead:
    """What ``fetch`` brought back from a target's endpoints, before normalising: what a recording holds.

    ``answers`` maps each endpoint (as configured) that answered to ``fetch``'s JSON-safe data.
    """

    kind: HypervisorKind
    target: TargetConfig
    answers: dict[str, JsonDict]
    endpoints: list[EndpointResult]
    duration_s: float
    endpoint: str = ""  # what the targets row names, when not the target's own endpoint (a dump file)


@dataclass(frozen=True)
class TargetConfig:
    """Base of every collector's target settings; ``name`` is unique across the config file."""

    name: str

    @property
    def endpoint(self) -> str:
        """What the target talks to, for the ``targets`` row (no secrets)."""
        return self.name


class Secret:
    """A password reference (``*_env`` or ``*_file``); its value is read only when used."""

    __slots__ = ("_source", "_reference")

    def __init__(self, source: str, reference: str) -> None:
        self._source = source  # "env" | "file"
        self._reference = reference

    def reveal(self) -> str:
        if self._source == "env":
            value = os.environ.get(self._reference)
            if value is None:
                raise ConfigError(f"environment variable {self._reference} is not set",
                                  hint="export it before running, or use password_file")
            return value
        try:
            return Path(self._reference).read_text().rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(f"cannot read password file {self._reference}: {exc.strerror}") from exc

    @property
    def reference(self) -> str:
        """Where the secret comes from, safe to show."""
        return f"{self._source}:{self._reference}"

    def __repr__(self) -> str:
        return f"Secret({self.reference}, value=***)"

    __str__ = __repr__


def secret_values(target: TargetConfig) -> tuple[str, ...]:
    """The secrets a target uses, as values — its passwords and keys (``Secret`` fields) and the identifiers kept in
    the config only (fields marked ``private``: an API key) — to blank wherever a server echoes them. A secret that
    cannot be read (an unset variable) is one no server was sent."""
    values = []
    for setting in dataclasses.fields(target):
        value = getattr(target, setting.name)
        if isinstance(value, Secret):
            try:
                values.append(value.reveal())
            except ConfigError:
                continue
        elif setting.metadata.get("private") and isinstance(value, str):
            values.append(value)
    return tuple(v for v in values if v)

