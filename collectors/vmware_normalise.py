"""Pure normalisation of what vCenter returned (plain data from ``vmware.fetch_vcenter``).

A vSphere cluster is a cluster; standard port groups and dvPortgroups are networks (and
distributed switches too); host vSwitch membership (port groups per host) and VMkernel NICs are
host NICs; datastores are storage with per-host mounts. VM keys are instance UUIDs. CloudStack marks its VMs
with custom attributes (``vmware-base/.../mo/CustomFieldConstants.java``): ``cloud.vm.internal.name`` is the
instance name (the vSphere name may be the display name), ``cloud.vm.worker = true`` a helper VM of its own
(role ``worker``); every ``cloud.*`` attribute a VM carries is kept in its ``raw_json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from inventory.model import (
    Cluster, Host, HostNic, HostStorage, Inventory, Network, Storage, StorageImage, Vm, VmDisk, VmNic,
)
from inventory.normalise import parse_instance_name

CLOUDSTACK_ATTRIBUTE = "cloud."  # CloudStack's custom attributes (CustomFieldConstants) share this prefix
INTERNAL_NAME, WORKER = "cloud.vm.internal.name", "cloud.vm.worker"
POWER = {"poweredOn": "running", "poweredOff": "stopped", "suspended": "suspended"}
DS_KINDS = {"VMFS": "vmfs", "NFS": "nfs", "NFS41": "nfs", "vsan": "vsan", "VVOL": "vvol", "PMEM": "pmem"}
NIC_MODELS = {"VirtualE1000": "e1000", "VirtualE1000e": "e1000e", "VirtualVmxnet3": "vmxnet3",
              "VirtualVmxnet2": "vmxnet2", "VirtualPCNet32": "pcnet32", "VirtualSriovEthernetCard": "sriov",
              "VirtualVmxnet3Vrdma": "vmxnet3-vrdma"}


def normalise_vcenter(raw: dict[str, Any], target: str, *, datacenters: Sequence[str] = (),
                      clusters: Sequence[str] = ()) -> Inventory:
    inv = Inventory()
    dc_of_folder = {d.get("hostFolder"): d.get("name") for d in raw.get("datacenters", [])}
    cluster_rows = {c["_moid"]: c for c in raw.get("clusters", [])}
    host_cluster = {h["_moid"]: h.get("parent") if h.get("parent") in cluster_rows else None
                    for h in raw.get("hosts", [])}

    def wanted_cluster(moid: str | None) -> bool:
        row = cluster_rows.get(moid or "")
        if datacenters and (row is None or dc_of_folder.get(row.get("parent")) not in datacenters):
            return False
        return not clusters or (row is not None and row.get("name") in clusters)

    inv.unmatched += _unmatched("datacenters", datacenters, [str(d.get("name")) for d in raw.get("datacenters", [])],
                                "this vCenter")
    chosen = [str(c.get("name")) for c in cluster_rows.values()
              if not datacenters or dc_of_folder.get(c.get("parent")) in datacenters]
    where = f"this vCenter's datacenters {', '.join(datacenters)}" if datacenters else "this vCenter"
    inv.unmatched += _unmatched("clusters", clusters, chosen, where)
    wanted_hosts = {h for h, c in host_cluster.items() if wanted_cluster(c) or (c is None and not clusters
                                                                                 and not datacenters)}
    for moid, row in cluster_rows.items():
        if wanted_cluster(moid):
            inv.clusters.append(_cluster(row, target, dc_of_folder, len([h for h in row.get("host", [])
                                                                          if h in wanted_hosts])))
    network_names = {n["_moid"]: n.get("name") for n in raw.get("networks", [])}
    name_to_network = {name: moid for moid, name in network_names.items()}
    # a dvPortgroup is known by its key in a VMkernel NIC's port connection, which is also its moid
    dv_names = {**{p["_moid"]: p.get("name") for p in raw.get("dvportgroups", [])},
                **{p.get("key"): p.get("name") for p in raw.get("dvportgroups", []) if p.get("key")}}
    for row in raw.get("hosts", []):
        if row["_moid"] in wanted_hosts:
            services = vnic_services(row)
            inv.hosts.append(_host(row, target, host_cluster.get(row["_moid"]), services, dv_names, inv.problems))
            inv.host_nics.extend(_host_nics(row, target, name_to_network, services))
    _networks(raw, target, inv)
    _datastores(raw, target, wanted_hosts, inv)
    _disk_files(raw, target, wanted_hosts, inv)
    fields = {f.get("key"): str(f.get("name")) for f in raw.get("custom_fields") or []
              if str(f.get("name")).startswith(CLOUDSTACK_ATTRIBUTE)}
    for row in raw.get("vms", []):
        host = row.get("runtime.host")
        if host in wanted_hosts or (host is None and not clusters and not datacenters):
            _vm(row, target, host, host_cluster.get(host or ""), network_names, fields, inv)
    return inv


def _unmatched(key: str, asked: Sequence[str], present: list[str], where: str) -> list[str]:
    """The names a filter asks for that this vCenter does not have (a typo, a renamed cluster), said with those
    it has: the target is then partial, not an `ok` of fewer hosts than meant."""
    missing = [name for name in asked if name not in present]
    if not missing:
        return []
    have = sorted(set(present))
    shown = ", ".join(have[:10]) + (f" … ({len(have)})" if len(have) > 10 else "")
    they = "they have" if where != "this vCenter" else "it has"
    return [f"{key} {', '.join(repr(m) for m in missing)} match no {key[:-1]} of {where} ({they}: {shown or 'none'})"]


def _cluster(row: dict[str, Any], target: str, dc_of_folder: dict[Any, Any], host_count: int) -> Cluster:
    config = row.get("configurationEx") or {}
    drs = config.get("drsConfig") or {}
    das = config.get("dasConfig") or {}
    return Cluster(key=row["_moid"], target=target, name=row.get("name") or row["_moid"], hypervisor="vmware",
                   drs_enabled=drs.get("enabled"), drs_behavior=drs.get("defaultVmBehavior"),
                   ha_enabled=das.get("enabled"), host_count=host_count,
                   raw_json={"admission_control": das.get("admissionControlEnabled"),
                             "datacenter": dc_of_folder.get(row.get("parent"))})


def vnic_services(row: dict[str, Any]) -> dict[str, list[str]] | None:
    """VMkernel NIC → the services selected on it (management, vmotion …); None when the host did not say."""
    configs = row.get("config.virtualNicManagerInfo.netConfig")
    if configs is None:
        return None
    services: dict[str, list[str]] = {}
    for config in configs:
        devices = {v.get("key"): v.get("device") for v in config.get("candidateVnic") or []}
        for key in config.get("selectedVnic") or []:
            device = devices.get(key) or str(key).rsplit("-", 1)[-1]
            services.setdefault(device, []).append(str(config.get("nicType")))
    return services


def _management_vnics(row: dict[str, Any], dv_names: dict[Any, Any],
                      problems: list[str]) -> list[dict[str, Any]] | None:
    """The VMkernel NICs that may carry management (HostMO.getHyperHostNetworkSummary's candidates), with their
    port group: the standard one, else the dvPortgroup's name."""
    configs = row.get("config.virtualNicManagerInfo.netConfig")
    if configs is None:
        return None
    found = []
    for config in configs:
        if config.get("nicType") == "management":
            for vnic in config.get("candidateVnic") or []:
                key = vnic.get("dvPortgroupKey")
                portgroup = vnic.get("portgroup") or dv_names.get(key)
                found.append({"device": _text(vnic.get("device"), row, "a VMkernel NIC's device", problems),
                              "distributed": not vnic.get("portgroup") and key is not None,
                              "portgroup": _text(portgroup, row, "a VMkernel NIC's port group", problems)})
    return found


def _text(value: Any, row: dict[str, Any], what: str, problems: list[str]) -> str | None:
    """A string the API types as one; anything else is left out (None) and listed."""
    if value is None or isinstance(value, str):
        return value
    problems.append(f"host {row.get('_moid')}: {what} {str(value)[:30]!r} is not text; left out")
    return None


def _firewall(row: dict[str, Any], problems: list[str]) -> list[dict[str, Any]] | None:
    """Firewall rulesets with their inbound TCP port ranges; a port that is not one is left out and listed."""
    firewall = row.get("config.firewall")
    if firewall is None:
        return None
    found = []
    for ruleset in firewall.get("ruleset") or []:
        ranges = []
        for x in ruleset.get("rule") or []:
            if not x.get("port") or x.get("direction") != "inbound" or x.get("protocol") != "tcp":
                continue
            first, last = x["port"], x.get("endPort") or x["port"]
            if _is_port(first) and _is_port(last) and first <= last:
                ranges.append([first, last])
            else:
                problems.append(f"host {row['_moid']}: firewall ruleset {str(ruleset.get('key'))[:40]!r} port "
                                f"{str(first)[:12]!r}-{str(last)[:12]!r} is not a port range; left out")
        found.append({"enabled": ruleset.get("enabled"), "key": ruleset.get("key"), "ports": ranges})
    return found


def _is_port(value: Any) -> bool:
    return type(value) is int and 0 < value < 65536


def _local_disk_bytes(row: dict[str, Any]) -> int | None:
    luns = row.get("config.storageDevice.scsiLun")
    if luns is None:
        return None
    return sum((x.get("block") or 0) * (x.get("blockSize") or 0) for x in luns
               if x.get("lunType") == "disk" and x.get("localDisk"))


def _host(row: dict[str, Any], target: str, cluster: str | None, services: dict[str, list[str]] | None,
          dv_names: dict[Any, Any], problems: list[str]) -> Host:
    hardware = row.get("summary.hardware") or {}
    product = row.get("config.product") or {}
    packages = row.get("hardware.cpuPkg") or []
    state = row.get("runtime.connectionState")
    if row.get("runtime.inMaintenanceMode"):
        state = "maintenance"
    sockets = hardware.get("numCpuPkgs")
    cores = hardware.get("numCpuCores")
    threads = hardware.get("numCpuThreads")
    return Host(
        key=row["_moid"], target=target, cluster_key=cluster, name=row.get("name") or row["_moid"],
        address=row.get("name") or "", hypervisor="vmware", uuid=hardware.get("uuid"),
        hypervisor_version=product.get("version"), product_name=product.get("name"), build=product.get("build"),
        cpu_arch="x86_64", cpu_vendor=packages[0].get("vendor") if packages else None,
        cpu_model=hardware.get("cpuModel"), cpu_sockets=sockets,
        cpu_cores=cores // sockets if cores and sockets else None,
        cpu_threads=threads // cores if threads and cores else None, cpu_mhz=hardware.get("cpuMhz"),
        memory_bytes=hardware.get("memorySize"), state=state,
        raw_json={"api_version": product.get("apiVersion"), "datastores": row.get("datastore", []),  # keys sorted:
                  "firewall": _firewall(row, problems), "full_name": product.get("fullName"),  # as the store reads
                  "management_vnics": _management_vnics(row, dv_names, problems),
                  "proxy_switches": None if row.get("config.network.proxySwitch") is None
                  else [x.get("dvsName") for x in row["config.network.proxySwitch"]],
                  "standalone": cluster is None,
                  "vnic_services": None if services is None else dict(sorted(services.items()))},
        product_line=product.get("productLineId"), local_disk_bytes=_local_disk_bytes(row),
    )


def _host_nics(row: dict[str, Any], target: str, name_to_network: dict[Any, str],
               services: dict[str, list[str]] | None) -> list[HostNic]:
    nics = []
    vswitch_names = {v.get("key"): v.get("name") for v in row.get("config.network.vswitch") or []}
    for vswitch in row.get("config.network.vswitch") or []:
        nics.append(HostNic(host_key=row["_moid"], target=target, device=vswitch.get("name", "?"), kind="vswitch",
                            mtu=vswitch.get("mtu"), ip_addresses=None))
    for group in row.get("config.network.portgroup") or []:
        spec = group.get("spec") or {}
        vswitch = spec.get("vswitchName") or vswitch_names.get(group.get("vswitch"))
        name = spec.get("name") or str(group.get("key", "")).split("-", 3)[-1]
        nics.append(HostNic(host_key=row["_moid"], target=target, device=f"{vswitch}/{name}", kind="portgroup",
                            network_key=name_to_network.get(name), vlan=spec.get("vlanId") or None,
                            bond=vswitch))
    for vnic in row.get("config.network.vnic") or []:
        spec = vnic.get("spec") or {}
        ip = spec.get("ip") or {}
        group = vnic.get("portgroup")
        nics.append(HostNic(
            host_key=row["_moid"], target=target, device=vnic.get("device", "vmk?"), kind="vmk",
            network_key=name_to_network.get(group) if group else (spec.get("distributedVirtualPort") or {}).get(
                "portgroupKey"),
            mac=spec.get("mac"), ip=ip.get("ipAddress"), netmask=ip.get("subnetMask"),
            is_dhcp=ip.get("dhcp"), mtu=spec.get("mtu"),
            is_management=(group == "Management Network" or None) if services is None
            else "management" in services.get(vnic.get("device", ""), []),
            bond=group))
    return nics


def _networks(raw: dict[str, Any], target: str, inv: Inventory) -> None:
    dv_keys = {p["_moid"] for p in raw.get("dvportgroups", [])}
    switches = {s["_moid"]: s for s in raw.get("dvswitches", [])}
    vlans: dict[str, int] = {}
    for host in inv.host_nics:
        if host.kind == "portgroup" and host.network_key and host.vlan:
            vlans.setdefault(host.network_key, host.vlan)
    for row in raw.get("networks", []):
        if row["_moid"] in dv_keys:
            continue
        inv.networks.append(Network(key=row["_moid"], target=target, name=row.get("name") or row["_moid"],
                                    kind="portgroup", vlan=vlans.get(row["_moid"])))
    for row in raw.get("dvportgroups", []):
        port = row.get("config.defaultPortConfig") or {}
        vlan = (port.get("vlan") or {}).get("vlanId")
        switch = switches.get(row.get("config.distributedVirtualSwitch") or "", {})
        inv.networks.append(Network(key=row["_moid"], target=target, name=row.get("name") or row["_moid"],
                                    kind="dvportgroup", bridge=switch.get("name"),
                                    vlan=vlan if isinstance(vlan, int) and vlan else None,
                                    raw_json={"dvs_uuid": switch.get("uuid"), "key": row.get("key")}))
    for moid, row in switches.items():
        inv.networks.append(Network(key=moid, target=target, name=row.get("name") or moid, kind="dvswitch",
                                    raw_json={"uuid": row.get("uuid")}))


def _datastores(raw: dict[str, Any], target: str, hosts: set[str], inv: Inventory) -> None:
    for row in raw.get("datastores", []):
        summary = row.get("summary") or {}
        mounts = [m for m in row.get("host") or [] if m.get("key") in hosts]
        if hosts and not mounts and row.get("host"):
            continue  # a datastore of hosts outside the filter
        inv.storage.append(Storage(
            key=row["_moid"], target=target, name=row.get("name") or summary.get("name") or row["_moid"],
            kind=DS_KINDS.get(summary.get("type", ""), str(summary.get("type", "")).lower()),
            shared=summary.get("multipleHostAccess"), capacity_bytes=summary.get("capacity"),
            free_bytes=summary.get("freeSpace"), source=summary.get("url"),
            raw_json={"accessible": summary.get("accessible"), "maintenance_mode": summary.get("maintenanceMode")}))
        for mount in mounts:
            info = mount.get("mountInfo") or {}
            inv.host_storage.append(HostStorage(
                host_key=mount["key"], target=target, storage_key=row["_moid"],
                attached=bool(info.get("mounted", True) and info.get("accessible", True)), mount_path=info.get("path")))


def _disk_files(raw: dict[str, Any], target: str, wanted_hosts: set[str], inv: Inventory) -> None:
    """The datastores' VM disk files (``collectors.vmware_files``) as images, for the datastores only wanted hosts
    mount (another host's VMs, not read, may use the rest).

    A file in a folder that holds a disk of any VM (read or filtered out) is kind ``vm-file``: a VM's snapshot
    chain, the base a template's or a linked clone's disk grows on — VMware keeps a VM's disk files together, and
    which of them a chain needs only the VM's file layout says. Our inference, kept on the safe side: a disk left
    in such a folder is not judged a leak."""
    mounted_elsewhere = {row["_moid"] for row in raw.get("datastores", [])
                         if any(_mount_host(m) not in wanted_hosts for m in row.get("host") or [])}
    stored = {s.key for s in inv.storage} - mounted_elsewhere
    listed = raw.get("datastore_files")
    # every VM disk's folder: read only when files were listed (off by default, and 10,000 VMs' devices to walk)
    vm_folders = {_folder(backing.get("fileName")) for row in raw.get("vms", [])
                  for device in row.get("config.hardware.device") or [] if isinstance(device, dict)
                  and isinstance(backing := device.get("backing"), dict)
                  and isinstance(backing.get("fileName"), str)} if isinstance(listed, dict) and listed else set()
    vm_folders.discard("")
    for moid, files in (listed.items() if isinstance(listed, dict) else ()):
        if moid not in stored or not isinstance(files, list):
            continue
        for file in files:
            path = file.get("path") if isinstance(file, dict) else None
            if isinstance(path, str) and path:
                inv.storage_images.append(StorageImage(
                    storage_key=moid, target=target, path=path, name=path.rsplit("/", 1)[-1].rsplit("] ", 1)[-1],
                    kind="vm-file" if _folder(path) in vm_folders else "disk", format="vmdk",
                    allocation_bytes=_size(file.get("size"))))
    problems = raw.get("datastore_problems")
    inv.problems.extend(str(why) for moid, why in (problems.items() if isinstance(problems, dict) else ())
                        if moid in stored)


def _mount_host(mount: Any) -> Any:
    return mount.get("key") if isinstance(mount, dict) else mount


def _folder(path: str | None) -> str:
    """``[ds] dir/file.vmdk`` → ``[ds] dir``; a file at the datastore's root has no folder of a VM."""
    return path.rsplit("/", 1)[0] if path and "/" in path else ""


def _size(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def cloudstack_attributes(row: dict[str, Any], fields: dict[Any, str]) -> dict[str, str]:
    """The VM's CloudStack attributes by name; a key set twice keeps its last value (as vCenter shows one)."""
    found: dict[str, str] = {}
    for value in row.get("customValue") or []:
        name = fields.get(value.get("key"))
        if name is not None and value.get("value") is not None:
            found[name] = str(value["value"])
    return found


def _vm(row: dict[str, Any], target: str, host: str | None, cluster: str | None, network_names: dict[Any, Any],
        fields: dict[Any, str], inv: Inventory) -> None:
    get = row.get
    name = get("name") or row["_moid"]
    key = get("config.instanceUuid") or row["_moid"]
    attributes = cloudstack_attributes(row, fields)
    internal = attributes.get(INTERNAL_NAME) or None
    parsed = parse_instance_name(internal or name)
    role = parsed.role if parsed.role != "unmanaged" or internal is None else "user"  # CloudStack says it is its own
    if attributes.get(WORKER, "").lower() == "true":
        role = "worker"
    memory = get("config.hardware.memoryMB")
    inv.vms.append(Vm(
        key=key, target=target, host_key=host, cluster_key=cluster, name=name, uuid=get("config.uuid"),
        instance_name=internal or (name if parsed.role != "unmanaged" else None), cs_role=role,
        cs_account_id=parsed.account_id, cs_id=parsed.cs_id,
        power_state=POWER.get(get("runtime.powerState") or "", "unknown"), vcpus=get("config.hardware.numCPU"),
        memory_bytes=memory * 2**20 if memory is not None else None, guest_os=get("config.guestFullName"),
        tools_state=get("guest.toolsRunningStatus"), is_template=bool(get("config.template")),
        raw_json=dict(sorted({"moid": row["_moid"], **attributes}.items()))))  # keys sorted, as the store keeps them
    devices = get("config.hardware.device") or []
    controllers: dict[Any, Any] | None = None  # key → type, made when a disk needs its controller's
    for device in devices:
        kind = device.get("_type", "")
        if kind == "VirtualDisk":
            if controllers is None:
                controllers = {d.get("key"): d.get("_type") for d in devices}
            backing = device.get("backing") or {}
            capacity = device.get("capacityInBytes") or (device.get("capacityInKB") or 0) * 1024 or None
            inv.vm_disks.append(VmDisk(
                vm_key=key, target=target, device=_label(device), disk_type="disk",
                bus=_bus(controllers.get(device.get("controllerKey"))), storage_key=backing.get("datastore"),
                path=backing.get("fileName"), format="vmdk", capacity_bytes=capacity, thin=backing.get("thinProvisioned")))
        elif "macAddress" in device or kind in NIC_MODELS:
            backing = device.get("backing") or {}
            port = backing.get("port") or {}
            network = backing.get("network") or port.get("portgroupKey")
            inv.vm_nics.append(VmNic(
                vm_key=key, target=target, device=_label(device), mac=(device.get("macAddress") or "").lower() or None,
                network_key=network, network_name=network_names.get(network) or backing.get("deviceName"),
                model=NIC_MODELS.get(kind, kind)))


def _label(device: dict[str, Any]) -> str:
    return (device.get("deviceInfo") or {}).get("label") or str(device.get("key"))


@cache
def _bus(controller: str | None) -> str | None:
    if not controller:
        return None
    for word, bus in (("SCSI", "scsi"), ("IDE", "ide"), ("SATA", "sata"), ("NVME", "nvme")):
        if word in controller.upper():
            return bus
    return None

