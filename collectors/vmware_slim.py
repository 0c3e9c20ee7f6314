"""vCenter's host and VM records reduced to what the normaliser reads, the same on the fast path and pyvmomi's.

The fast parser and pyvmomi spell nested values differently (element names for types, text for numbers and
booleans, one-element arrays as the element); a host's data objects are reduced to the same plain shape on both
paths, and to what is used (a host's firewall and SCSI LUN list are long), and a VM's devices to those the
normaliser reads. What a recording holds is this: smaller, and normalised to the same records.
"""

from __future__ import annotations

from typing import Any

from collectors.vmware_normalise import NIC_MODELS


def slim_vm(record: dict[str, Any]) -> dict[str, Any]:
    """A VM record with its devices reduced to its disks and NICs and the controller each disk names."""
    if (devices := record.get("config.hardware.device")) is not None:
        record["config.hardware.device"] = kept_devices(devices)
    return record


def kept_devices(devices: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Disks and NICs (a MAC address, or a NIC's type) with the fields the normaliser reads, and for each disk the
    device its controllerKey names — the last with that key, as the normaliser's map of controllers takes it — by
    its type and key; in their order."""
    keep = [is_kept(d.get("_type"), "macAddress" in d) for d in devices]
    named = {d.get("controllerKey") for d, kept in zip(devices, keep, strict=True)
             if kept and d.get("_type") == "VirtualDisk"}
    slim = {index: slim_device(d) for index, (d, kept) in enumerate(zip(devices, keep, strict=True)) if kept}
    if named:
        last = {d.get("key"): index for index, d in enumerate(devices)}
        for key in named:
            if key in last and last[key] not in slim:
                slim[last[key]] = {"_type": devices[last[key]].get("_type"), "key": key}
    return [slim[index] for index in sorted(slim)]


_DEVICE = ("_type", "key", "controllerKey", "unitNumber", "capacityInBytes", "capacityInKB", "macAddress")
_BACKING = ("fileName", "datastore", "thinProvisioned", "deviceName", "network")


def slim_device(device: dict[str, Any]) -> dict[str, Any]:
    """A disk or NIC with what the normaliser reads of it: its label, backing file or network, controller, size
    and MAC address."""
    slim = {k: device[k] for k in _DEVICE if k in device}
    if (label := (device.get("deviceInfo") or {}).get("label")) is not None:
        slim["deviceInfo"] = {"label": label}
    backing = device.get("backing") or {}
    kept = {k: backing[k] for k in _BACKING if k in backing}
    port = {k: v for k, v in (backing.get("port") or {}).items() if k in ("portgroupKey", "switchUuid")}
    if port:
        kept["port"] = port
    if kept:
        slim["backing"] = kept
    return slim


def is_kept(kind: Any, has_mac: bool) -> bool:
    """A device the normaliser makes a record of: a disk or a NIC."""
    return kind == "VirtualDisk" or has_mac or kind in NIC_MODELS


def slim_host(record: dict[str, Any]) -> dict[str, Any]:
    """A host record with its data objects slimmed to what the normaliser reads: hardware summary, product, virtual
    switches, port groups, VMkernel NICs and their services, firewall rulesets (their inbound TCP rules), SCSI LUNs,
    CPU packages and proxy switches."""
    if (configs := record.get("config.virtualNicManagerInfo.netConfig")) is not None:
        record["config.virtualNicManagerInfo.netConfig"] = [
            {"nicType": c.get("nicType"), "selectedVnic": [str(v) for v in _items(c.get("selectedVnic"))],
             "candidateVnic": [_slim_vnic(v) for v in _items(c.get("candidateVnic"))]} for c in _items(configs)]
    if (firewall := record.get("config.firewall")) is not None:
        record["config.firewall"] = {"ruleset": [
            {"key": r.get("key"), "enabled": _truth(r.get("enabled")),
             "rule": [{"port": _number(x.get("port")), "endPort": _number(x.get("endPort")),
                       "direction": x.get("direction"), "protocol": x.get("protocol")} for x in _items(r.get("rule"))
                      if x.get("direction") == "inbound" and x.get("protocol") == "tcp"]}  # all the normaliser reads
            for r in _items((firewall or {}).get("ruleset"))]}
    if (luns := record.get("config.storageDevice.scsiLun")) is not None:
        record["config.storageDevice.scsiLun"] = [
            {"canonicalName": x.get("canonicalName"), "lunType": x.get("lunType"), "localDisk": _truth(x.get("localDisk")),
             "block": _number((x.get("capacity") or {}).get("block")),
             "blockSize": _number((x.get("capacity") or {}).get("blockSize"))} for x in _items(luns)]
    if (hardware := record.get("summary.hardware")) is not None:
        record["summary.hardware"] = _picked(hardware, ("uuid", "cpuModel"),
                                             ("numCpuPkgs", "numCpuCores", "numCpuThreads", "cpuMhz", "memorySize"))
    if (product := record.get("config.product")) is not None:
        record["config.product"] = _picked(product, ("name", "fullName", "version", "build", "apiVersion",
                                                     "productLineId"))
    if (switches := record.get("config.network.vswitch")) is not None:
        record["config.network.vswitch"] = [_picked(x, ("name", "key"), ("mtu",)) for x in _items(switches)]
    if (groups := record.get("config.network.portgroup")) is not None:
        record["config.network.portgroup"] = [
            {**_picked(x, ("key", "vswitch")),
             **({"spec": _picked(x["spec"], ("name", "vswitchName"), ("vlanId",))} if "spec" in x else {})}
            for x in _items(groups)]
    if (vnics := record.get("config.network.vnic")) is not None:
        record["config.network.vnic"] = [
            {**_picked(x, ("device", "portgroup")), **({"spec": _slim_vnic_spec(x["spec"])} if "spec" in x else {})}
            for x in _items(vnics)]
    if (packages := record.get("hardware.cpuPkg")) is not None:
        record["hardware.cpuPkg"] = [{"vendor": x.get("vendor")} for x in _items(packages)]
    if (switches := record.get("config.network.proxySwitch")) is not None:
        record["config.network.proxySwitch"] = [{"dvsName": x.get("dvsName"), "dvsUuid": x.get("dvsUuid")}
                                                for x in _items(switches)]
    return record


def _picked(value: dict[str, Any], texts: tuple[str, ...], numbers: tuple[str, ...] = (),
            truths: tuple[str, ...] = ()) -> dict[str, Any]:
    """The fields of a data object the normaliser reads (those it has), numbers and booleans as such."""
    return {**{k: value[k] for k in texts if k in value}, **{k: _number(value[k]) for k in numbers if k in value},
            **{k: _truth(value[k]) for k in truths if k in value}}


def _slim_vnic_spec(spec: dict[str, Any]) -> dict[str, Any]:
    slim = _picked(spec, ("mac",), ("mtu",))
    if "ip" in spec:
        slim["ip"] = _picked(spec["ip"], ("ipAddress", "subnetMask"), (), ("dhcp",))
    if "distributedVirtualPort" in spec:
        slim["distributedVirtualPort"] = _picked(spec["distributedVirtualPort"], ("portgroupKey",))
    return slim


def _slim_vnic(vnic: dict[str, Any]) -> dict[str, Any]:
    spec = vnic.get("spec") or {}
    return {"device": vnic.get("device"), "key": vnic.get("key"), "portgroup": vnic.get("portgroup") or None,
            "dvPortgroupKey": (spec.get("distributedVirtualPort") or {}).get("portgroupKey")}


def _items(value: Any) -> list[Any]:
    return [] if value is None else value if isinstance(value, list) else [value]


def _truth(value: Any) -> bool | None:
    return value if isinstance(value, bool) or value is None else str(value).lower() == "true"


def _number(value: Any) -> int | None:
    return None if value is None or value == "" else int(value)
