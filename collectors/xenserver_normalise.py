"""Pure normalisation of a XenServer/XCP-ng pool's records (as get_all_records returns them).

Input: ``{class: {ref: record}}`` with XAPI's wire types (int64 as strings). The same function
serves the live collector and the offline dump import. A value that is missing or does not
parse becomes NULL and a line in ``problems`` — never a crash.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field
from typing import Any

from inventory.model import (
    Cluster, Host, HostNic, HostStorage, Inventory, Network, Storage, StorageImage, Vm, VmDisk, VmNic,
)
from inventory.normalise import parse_instance_name

NULL = "OpaqueRef:NULL"
POWER = {"Running": "running", "Halted": "stopped", "Paused": "paused", "Suspended": "suspended"}
SR_KINDS = {"nfs": "nfs", "lvmoiscsi": "iscsi", "gfs2": "iscsi", "lvmohba": "fc", "lvm": "local", "ext": "local",
            "iso": "iso", "udev": "removable", "smb": "cifs", "cifs": "cifs", "file": "local", "lvmofcoe": "fc",
            "cslg": "storagelink", "xfs": "local", "zfs": "local", "largeblock": "local"}


@dataclass
class XenNormalised:
    inventory: Inventory
    problems: list[str] = field(default_factory=list)


class _Reader:
    """Typed access to records that reports what is missing or malformed instead of failing."""

    def __init__(self, raw: dict[str, dict[str, dict[str, Any]]]) -> None:
        self.raw = raw
        self.problems: list[str] = []
        self._rows: dict[str, dict[str, dict[str, Any]]] = {}

    def rows(self, cls: str) -> dict[str, dict[str, Any]]:
        """A class's records by ref; one that is not a struct is left out, and listed once."""
        if cls not in self._rows:
            given = self.raw.get(cls) or {}
            if not isinstance(given, dict):
                self.problems.append(f"{cls}: not a map of records; left out")
                given = {}
            for ref, record in given.items():
                if not isinstance(record, dict):
                    self.problems.append(f"{cls} {str(ref)[:60]}: not a record; left out")
            self._rows[cls] = {ref: record for ref, record in given.items() if isinstance(record, dict)}
        return self._rows[cls]

    def get(self, cls: str, ref: Any) -> dict[str, Any]:
        if not isinstance(ref, str) or ref == NULL:
            return {}
        return self.rows(cls).get(ref, {})

    def int(self, cls: str, record: dict[str, Any], name: str) -> int | None:
        return self.number(cls, record.get(name), f"{record.get('uuid', '?')}: {name}")

    def number(self, cls: str, value: Any, where: str) -> builtins.int | None:
        """An int64 as XAPI sends it (a string of digits); a float is cut to its whole part."""
        if value is None or value == "":
            return None
        try:
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                raise ValueError
            return int(value) if isinstance(value, float) else int(str(value))
        except (ValueError, OverflowError):
            self.problems.append(f"{cls} {where} {str(value)[:30]!r} is not an integer")
            return None

    def bool(self, cls: str, record: dict[str, Any], name: str) -> builtins.bool | None:
        """A boolean; ``"true"``/``"false"`` sent as text are read (and listed), anything else is unknown."""
        value = record.get(name)
        if value is None or isinstance(value, bool):
            return value
        self.problems.append(f"{cls} {record.get('uuid', '?')}: {name} {str(value)[:30]!r} sent as text, "
                             "not a boolean")
        text = str(value).strip().lower()
        return True if text == "true" else False if text == "false" else None

    def text(self, record: dict[str, Any], name: str) -> str | None:
        value = record.get(name)
        return str(value) if isinstance(value, (str, int, float)) and value != "" else None

    def map(self, cls: str, record: dict[str, Any], name: str) -> dict[str, Any]:
        """A (string -> string) map, as every map read here is in XAPI's data model; an entry whose value is not
        text is left out and listed."""
        value = record.get(name, {})
        if not isinstance(value, dict):
            self.problems.append(f"{cls} {record.get('uuid', '?')}: {name} is not a map")
            return {}
        texts = {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}
        if len(texts) < len(value):
            left_out = ", ".join(repr(str(k)[:30]) for k in value if k not in texts)
            self.problems.append(f"{cls} {record.get('uuid', '?')}: {name} {left_out} not text; left out")
        return texts

    def refs(self, cls: str, record: dict[str, Any], name: str) -> list[str]:
        value = record.get(name, [])
        if isinstance(value, list):
            return [str(v) for v in value]
        self.problems.append(f"{cls} {record.get('uuid', '?')}: {name} is not a set")
        return []

    def require_uuid(self, cls: str, ref: str, record: dict[str, Any]) -> str | None:
        uuid = record.get("uuid")
        if not isinstance(uuid, str) or not uuid:
            self.problems.append(f"{cls} {ref}: no uuid; left out")
            return None
        return uuid


def normalise_pool(raw: dict[str, dict[str, dict[str, Any]]], target: str) -> XenNormalised:
    r = _Reader(raw)
    inv = Inventory()
    pool_ref, pool = next(iter(r.rows("pool").items()), ("", {}))
    hosts = {ref: uuid for ref, rec in r.rows("host").items() if (uuid := r.require_uuid("host", ref, rec))}
    master_ref = pool.get("master")
    cluster_key = r.text(pool, "uuid") or pool_ref or target
    master_name = r.text(r.get("host", master_ref), "hostname") or r.text(r.get("host", master_ref), "name_label")
    inv.clusters.append(Cluster(
        key=cluster_key, target=target, name=r.text(pool, "name_label") or f"pool of {master_name or '?'}",
        hypervisor="xenserver", master_host_key=hosts.get(str(master_ref)), ha_enabled=r.bool("pool", pool, "ha_enabled"),
        host_count=len(hosts),
        raw_json={"ha_host_failures_to_tolerate": pool.get("ha_host_failures_to_tolerate"),
                  "default_SR": r.get("SR", pool.get("default_SR")).get("uuid")}))
    control_domains = {}
    kinds = {ref: (r.bool("VM", vm, "is_a_template"), r.bool("VM", vm, "is_a_snapshot"),
                   r.bool("VM", vm, "is_control_domain")) for ref, vm in r.rows("VM").items()}
    for ref, vm in r.rows("VM").items():
        if kinds[ref][2]:
            control_domains[str(vm.get("resident_on"))] = vm
    for ref, host_uuid in hosts.items():
        inv.hosts.append(_host(r, ref, host_uuid, target, cluster_key, ref == master_ref, control_domains.get(ref)))
    networks = _networks(r, target, inv)
    _host_nics(r, hosts, networks, target, inv)
    srs = _storage(r, hosts, target, inv)
    for ref, vm in r.rows("VM").items():
        if any(kinds[ref]):  # templates, snapshots and control domains are not VMs
            continue
        uuid = r.require_uuid("VM", ref, vm)
        if uuid:
            _vm(r, ref, vm, uuid, hosts, networks, srs, target, cluster_key, inv)
    return XenNormalised(inv, r.problems)


def _host(r: _Reader, ref: str, uuid: str, target: str, cluster_key: str, is_master: bool,
          dom0: dict[str, Any] | None) -> Host:
    rec = r.get("host", ref)
    software = r.map("host", rec, "software_version")
    cpu = r.map("host", rec, "cpu_info")
    cpus = [c for c in r.rows("host_cpu").values() if c.get("host") == ref]
    first_cpu = cpus[0] if cpus else {}
    metrics = r.get("host_metrics", rec.get("metrics"))
    cpu_count = r.int("host", cpu, "cpu_count") if cpu else len(cpus) or None
    sockets = r.int("host", cpu, "socket_count") if cpu.get("socket_count") else None
    enabled = r.bool("host", rec, "enabled")
    live = r.bool("host_metrics", metrics, "live")
    state = "disabled" if enabled is False else "disconnected" if live is False else "connected"
    capabilities = [c for c in r.refs("host", rec, "capabilities") if c]  # a set of strings, like refs
    return Host(
        key=uuid, target=target, cluster_key=cluster_key,
        name=r.text(rec, "hostname") or r.text(rec, "name_label") or uuid,
        address=r.text(rec, "address") or "", hypervisor="xenserver", uuid=uuid,
        hypervisor_version=software.get("product_version") or software.get("platform_version"),
        product_name=software.get("product_brand") or software.get("platform_name"),
        build=software.get("build_number"), cpu_arch="x86_64",
        cpu_vendor=cpu.get("vendor") or first_cpu.get("vendor"),
        cpu_model=cpu.get("modelname") or first_cpu.get("modelname"),
        cpu_sockets=sockets, cpu_cores=(cpu_count // sockets) if cpu_count and sockets else None,
        cpu_mhz=r.number("host", _whole(cpu.get("speed") or first_cpu.get("speed")), f"{uuid}: cpu speed") or None,
        hvm=any(c.startswith("hvm") for c in capabilities) if capabilities else None,
        cpu_flags=" ".join(sorted(set(str(cpu.get("flags") or first_cpu.get("flags") or "").split()))) or None,
        memory_bytes=r.int("host_metrics", metrics, "memory_total"), state=state, is_pool_master=is_master,
        raw_json={"xen_version": software.get("xen"), "cpu_count": cpu_count,
                  "platform_version": software.get("platform_version"),
                  "product_version_text_short": software.get("product_version_text_short"),
                  "network_backend": software.get("network_backend"),
                  "capabilities": capabilities, "tags": rec.get("tags"),
                  "dom0_memory_bytes": r.int("VM", dom0, "memory_static_max") if dom0 else None,
                  "dom0_vcpus": r.int("VM", dom0, "VCPUs_at_startup") if dom0 else None,
                  "multipathing": r.map("host", rec, "other_config").get("multipathing"),
                  "software": {k: software.get(k) for k in ("xapi", "xen", "linux", "product_version_text")
                               if software.get(k)},
                  "bonds": _bonds(r, ref)},
        applied_updates=_applied_updates(r, ref, rec),
    )


def _applied_updates(r: _Reader, ref: str, rec: dict[str, Any]) -> str | None:
    """The updates (pool_update) and hotfixes (host_patch) applied to a host; None when XAPI told neither."""
    if not r.rows("pool_update") and not r.rows("host_patch"):
        return None
    names = {r.text(r.get("pool_update", u), "name_label") or str(u) for u in r.refs("host", rec, "updates")}
    names |= {r.text(p, "name_label") or r.text(r.get("pool_patch", p.get("pool_patch")), "name_label")
              or str(p.get("uuid", "?")) for p in r.rows("host_patch").values()
              if p.get("host") == ref and p.get("applied") is not False}  # a hotfix is named by its pool_patch
    return ", ".join(sorted(names))


def _bonds(r: _Reader, host_ref: str) -> dict[str, Any]:
    """The host's bonds by the network they carry: mode and member devices (how the host is cabled)."""
    bonds = {}
    for bond in r.rows("Bond").values():
        master = r.get("PIF", bond.get("master"))
        if master.get("host") != host_ref:
            continue
        network = r.text(r.get("network", master.get("network")), "name_label") or r.text(master, "device") or "?"
        members = sorted(r.text(r.get("PIF", s), "device") or "?" for s in r.refs("Bond", bond, "slaves"))
        bonds[network] = {"mode": r.text(bond, "mode"), "members": members}
    return bonds


def _networks(r: _Reader, target: str, inv: Inventory) -> dict[str, str]:
    keys = {}
    for ref, net in r.rows("network").items():
        uuid = r.require_uuid("network", ref, net)
        if not uuid:
            continue
        keys[ref] = uuid
        vlans = {v for p in r.refs("network", net, "PIFs")
                 if (v := r.int("PIF", r.get("PIF", p), "VLAN")) is not None and v != -1}
        inv.networks.append(Network(
            key=uuid, target=target, name=r.text(net, "name_label") or uuid, kind="xen-network",
            bridge=r.text(net, "bridge"), vlan=min(vlans) if vlans else None, mtu=r.int("network", net, "MTU"),
            label=r.text(net, "name_description"),
            raw_json={"other_config": r.map("network", net, "other_config")}))
    return keys


def _host_nics(r: _Reader, hosts: dict[str, str], networks: dict[str, str], target: str, inv: Inventory) -> None:
    bonds = {ref: b for ref, b in r.rows("Bond").items()}
    for ref, pif in r.rows("PIF").items():
        host = hosts.get(str(pif.get("host")))
        if host is None:
            continue
        vlan = r.int("PIF", pif, "VLAN")
        device = r.text(pif, "device") or ref
        metrics = r.get("PIF_metrics", pif.get("metrics"))
        bond_of = bonds.get(str(pif.get("bond_slave_of")), {})
        bond_master = r.get("PIF", bond_of.get("master")).get("device") if bond_of else None
        kind = ("vlan" if vlan not in (None, -1) else "bond" if r.refs("PIF", pif, "bond_master_of")
                else "physical" if r.bool("PIF", pif, "physical") else "pif")
        inv.host_nics.append(HostNic(
            host_key=host, target=target, device=f"{device}.{vlan}" if kind == "vlan" else device, kind=kind,
            network_key=networks.get(str(pif.get("network"))), mac=r.text(pif, "MAC"), ip=r.text(pif, "IP"),
            netmask=r.text(pif, "netmask"), is_dhcp=pif.get("ip_configuration_mode") == "DHCP"
            if pif.get("ip_configuration_mode") not in (None, "None") else None,
            mtu=r.int("PIF", pif, "MTU"), vlan=vlan if vlan not in (None, -1) else None,
            is_management=r.bool("PIF", pif, "management"), bond=str(bond_master) if bond_master else None,
            link_up=r.bool("PIF_metrics", metrics, "carrier") if metrics else r.bool("PIF", pif, "currently_attached"),
            speed=r.int("PIF_metrics", metrics, "speed") if metrics else None))


def _storage(r: _Reader, hosts: dict[str, str], target: str, inv: Inventory) -> dict[str, str]:
    keys = {}
    for ref, sr in r.rows("SR").items():
        uuid = r.require_uuid("SR", ref, sr)
        if not uuid:
            continue
        keys[ref] = uuid
        pbds = [r.get("PBD", p) for p in r.refs("SR", sr, "PBDs")]
        config = r.map("PBD", pbds[0], "device_config") if pbds else {}
        size, used = r.int("SR", sr, "physical_size"), r.int("SR", sr, "physical_utilisation")
        sr_type = str(sr.get("type") or "")
        inv.storage.append(Storage(
            key=uuid, target=target, name=r.text(sr, "name_label") or uuid, kind=SR_KINDS.get(sr_type, sr_type),
            shared=r.bool("SR", sr, "shared"), capacity_bytes=size,
            free_bytes=size - used if size is not None and used is not None else None,
            source=_sr_source(config), content=r.text(sr, "content_type"),
            raw_json={"type": sr_type, "virtual_allocation": r.int("SR", sr, "virtual_allocation")}))
        for pbd in pbds:
            host = hosts.get(str(pbd.get("host")))
            if host:
                inv.host_storage.append(HostStorage(host_key=host, target=target, storage_key=uuid,
                                                    attached=r.bool("PBD", pbd, "currently_attached")))
    _images(r, keys, target, inv)
    return keys


def _images(r: _Reader, srs: dict[str, str], target: str, inv: Inventory) -> None:
    """Every managed VDI on a known SR, by its uuid (what a CloudStack volume's path holds on XenServer). Hidden
    VHD parents (managed false) are XAPI's own and left out."""
    iso_srs = {ref for ref, sr in r.rows("SR").items() if sr.get("content_type") == "iso"}
    for vdi in r.rows("VDI").values():
        storage_key, uuid = srs.get(str(vdi.get("SR"))), r.text(vdi, "uuid")
        if storage_key is None or uuid is None or r.bool("VDI", vdi, "managed") is False:
            continue
        kind = ("snapshot" if r.bool("VDI", vdi, "is_a_snapshot") else "iso" if vdi.get("SR") in iso_srs
                or r.bool("VDI", vdi, "is_tools_iso") else r.text(vdi, "type"))
        sm_config = r.map("VDI", vdi, "sm_config")
        inv.storage_images.append(StorageImage(
            storage_key=storage_key, target=target, path=uuid, name=r.text(vdi, "name_label"), kind=kind,
            format=sm_config.get("image-format") or None, capacity_bytes=r.int("VDI", vdi, "virtual_size"),
            allocation_bytes=r.int("VDI", vdi, "physical_utilisation"), backing=sm_config.get("vhd-parent") or None))


def _sr_source(config: dict[str, Any]) -> str | None:
    if config.get("server"):
        return f"{config['server']}:{config.get('serverpath', '')}"
    if config.get("target"):
        return f"{config['target']}:{config.get('targetIQN', '')}"
    return config.get("SCSIid") or config.get("device") or config.get("location")


def _vm(r: _Reader, ref: str, vm: dict[str, Any], uuid: str, hosts: dict[str, str], networks: dict[str, str],
        srs: dict[str, str], target: str, cluster_key: str, inv: Inventory) -> None:
    name = r.text(vm, "name_label") or uuid
    resident_on = vm.get("resident_on")
    if isinstance(resident_on, str) and resident_on != NULL and resident_on not in hosts:
        r.problems.append(f"VM {uuid}: resident_on names no host of this pool ({resident_on[:60]}); its host is "
                          "left empty")
    parsed = parse_instance_name(name)
    guest = r.get("VM_guest_metrics", vm.get("guest_metrics"))
    os_version = r.map("VM_guest_metrics", guest, "os_version") if guest else {}
    pv = r.map("VM_guest_metrics", guest, "PV_drivers_version") if guest else {}
    addresses = r.map("VM_guest_metrics", guest, "networks") if guest else {}
    inv.vms.append(Vm(
        key=uuid, target=target, host_key=hosts.get(str(vm.get("resident_on"))), cluster_key=cluster_key, name=name,
        uuid=uuid, instance_name=name if parsed.role != "unmanaged" else None, cs_role=parsed.role,
        cs_account_id=parsed.account_id, cs_id=parsed.cs_id,
        power_state=POWER.get(str(vm.get("power_state")), "unknown"), vcpus=r.int("VM", vm, "VCPUs_at_startup"),
        memory_bytes=r.int("VM", vm, "memory_static_max"),
        guest_os=os_version.get("name") or r.map("VM", vm, "other_config").get("base_template_name"),
        tools_state=(f"{pv.get('major')}.{pv.get('minor')}" if pv.get("major") else None),
        raw_json={"affinity": hosts.get(str(vm.get("affinity"))), "HVM_boot_policy": vm.get("HVM_boot_policy"),
                  "ha_restart_priority": vm.get("ha_restart_priority"), "tags": vm.get("tags")}))
    for vbd_ref in r.refs("VM", vm, "VBDs"):
        vbd = r.get("VBD", vbd_ref)
        if not vbd:
            continue
        vdi = r.get("VDI", vbd.get("VDI"))
        inv.vm_disks.append(VmDisk(
            vm_key=uuid, target=target, device=r.text(vbd, "userdevice") or r.text(vbd, "device") or vbd_ref,
            disk_type="cdrom" if vbd.get("type") == "CD" else "disk", bus=r.text(vbd, "device"),
            storage_key=srs.get(str(vdi.get("SR"))) if vdi else None,
            path=r.text(vdi, "uuid") if vdi else None, format=None,
            capacity_bytes=r.int("VDI", vdi, "virtual_size") if vdi else None,
            allocation_bytes=r.int("VDI", vdi, "physical_utilisation") if vdi else None))
    for vif_ref in r.refs("VM", vm, "VIFs"):
        vif = r.get("VIF", vif_ref)
        if not vif:
            continue
        device = r.text(vif, "device") or vif_ref
        network = r.get("network", vif.get("network"))
        ips = [str(v) for k, v in addresses.items() if k.startswith(f"{device}/ip")]
        inv.vm_nics.append(VmNic(
            vm_key=uuid, target=target, device=device, mac=(r.text(vif, "MAC") or "").lower() or None,
            network_key=networks.get(str(vif.get("network"))), network_name=r.text(network, "name_label"),
            ip_addresses=",".join(ips) or None))


def _whole(value: Any) -> Any:
    """XAPI's CPU speed is a decimal text ("2394.560"): its whole MHz, or the value as it came when it is not one."""
    try:
        return int(float(value)) if isinstance(value, str) and value else value
    except (ValueError, OverflowError):
        return value
