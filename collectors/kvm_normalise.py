"""Pure normalisation of what a KVM host returned (libvirt XML + SSH facts) into records.

Nothing here talks to a host: ``normalise_host`` takes the JSON-safe dict ``kvm.fetch_host``
returns, so every rule is tested offline.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import replace
from typing import Any

from collectors.kvm_facts import AGENT_CERTIFICATES, AGENT_KEYS, cloudstack_host_os, parse_facts
from inventory.model import (
    Cluster, Host, HostNic, HostStorage, Inventory, JsonDict, Network, Storage, StorageImage, Vm, VmDisk,
    VmNic,
)
from inventory.normalise import (
    parse_instance_name, power_state_from_libvirt, prefix_to_netmask, storable, to_bytes, version_from_int,
)

SHARED_FS = {"nfs", "nfs4", "gfs2", "ocfs2", "glusterfs", "fuse.glusterfs", "ceph", "cephfs", "cifs", "smb3"}
POOL_KINDS = {"netfs": "nfs", "logical": "lvm", "iscsi": "iscsi", "iscsi-direct": "iscsi", "rbd": "rbd",
              "gluster": "gluster", "disk": "disk", "fs": "local", "scsi": "fc", "mpath": "fc", "zfs": "zfs"}
SHARED_POOL_KINDS = {"nfs", "iscsi", "rbd", "gluster", "fc", "sharedmountpoint", "cifs"}


def _xml(text: str) -> ET.Element:
    """libvirt's XML, parsed: a lone surrogate (live libvirt sends UTF-8 only; a recording is JSON and may hold one,
    which no XML parser takes) is U+FFFD first, so one odd name costs that name, not its host."""
    return ET.fromstring(storable(text))


def normalise_target(answers: dict[str, JsonDict], target: str, hosts: tuple[str, ...] | list[str],
                     cluster: str | None) -> Inventory:
    """A KVM target's records from its hosts' answers (in configured order; hosts that failed are absent).

    The cluster is the configured one, else the host's agent.properties ``cluster``, else the target.
    """
    inventories = []
    problems = []
    left_out = {}
    for address in hosts:
        if address not in answers:
            continue
        try:
            inv = normalise_host(answers[address], target, cluster)
        except Exception as exc:  # one host's answer that makes no sense leaves that host out, not the target
            left_out[address] = f"answer not understood ({type(exc).__name__}: {str(exc)[:160]}); host left out"
            continue
        if cluster is None:
            agent_cluster = inv.hosts[0].agent_cluster
            inv = _with_cluster(inv, f"agent-cluster-{agent_cluster}" if agent_cluster else target)
        inventories.append(inv)
        problems += inv.problems
    merged = merge_hosts(inventories, target)
    merged.problems = problems
    merged.left_out = left_out
    return merged


def normalise_host(raw: dict[str, Any], target: str, cluster_key: str | None) -> Inventory:
    facts = parse_facts(raw.get("facts"))
    caps = _xml(raw["capabilities"])
    key = host_key(raw, caps, target)
    pools = [_pool(p, target, key, facts) for p in raw.get("pools", [])]
    inv = Inventory()
    inv.hosts.append(_host(raw, caps, facts, key, target, cluster_key))
    for (storage, attachment), pool in zip(pools, raw.get("pools", []), strict=True):
        inv.storage.append(storage)
        inv.host_storage.append(attachment)
        for xml in pool.get("volumes") or []:
            try:
                inv.storage_images.append(_volume(xml, storage.key, target))
            except (ET.ParseError, TypeError, ValueError, AttributeError) as exc:  # one volume, not the host
                inv.problems.append(f"{raw.get('address')}: a volume of pool {storage.name} not understood "
                                    f"({type(exc).__name__}); left out")
    _mount_storage(inv, facts, key, target)
    pool_by_name = {s.name: s for s, _ in pools}
    pool_paths = sorted(((a.mount_path, a.storage_key) for _, a in pools if a.mount_path),
                        key=lambda p: -len(p[0]))
    for dom in raw.get("domains", []):
        _domain(inv, dom, target, key, cluster_key, pool_by_name, pool_paths)
    for net in raw.get("networks", []):
        inv.networks.append(_libvirt_network(net, target))
    inv.problems.extend(f"{raw.get('address')}: {problem}" for problem in facts.get("problems", ()))
    if not (facts.get("links") is not None and _links_read(inv, facts, raw, key, target)):
        inv.host_nics.extend(_libvirt_interfaces(raw.get("interfaces", []), key, target))
        inv.networks.extend(Network(key=n.network_key, target=target, name=n.device, kind="bridge",
                                    bridge=n.device) for n in inv.host_nics
                            if n.kind == "bridge" and n.network_key)
    return inv


def _links_read(inv: Inventory, facts: dict[str, Any], raw: dict[str, Any], key: str, target: str) -> bool:
    """The host's NICs and bridges from its links (``ip -j -d addr``); False, said, when they are not what iproute2
    writes: then libvirt's interfaces stand in, and nothing else of the host is lost."""
    nics, networks = len(inv.host_nics), len(inv.networks)
    try:
        _host_links(inv, facts, raw["address"], key, target)
        return True
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        del inv.host_nics[nics:], inv.networks[networks:]
        inv.problems.append(f"{raw.get('address')}: fact links: not understood ({type(exc).__name__}: "
                            f"{str(exc)[:80]}); libvirt's interfaces read instead")
        return False


def host_key(raw: dict[str, Any], caps: ET.Element, target: str) -> str:
    """libvirt's host UUID (capabilities, else SMBIOS), else the configured address."""
    uuid = (caps.findtext("host/uuid") or "").strip()
    if not uuid and raw.get("sysinfo"):
        uuid = (_xml(raw["sysinfo"]).findtext("system/entry[@name='uuid']") or "").strip()
    if uuid and uuid.strip("0-"):
        return uuid.lower()
    return f"{target}:{raw['address']}"


def _host(raw: dict[str, Any], caps: ET.Element, facts: dict[str, Any], key: str, target: str,
          cluster_key: str | None) -> Host:
    info = raw["node_info"]  # [model, memory MiB, cpus, mhz, nodes, sockets, cores, threads]
    cpu = caps.find("host/cpu")
    topology = cpu.find("topology") if cpu is not None else None
    features = sorted(f.get("name", "") for f in cpu.findall("feature")) if cpu is not None else []
    guest_types = {g.findtext("os_type") for g in caps.findall("guest")}
    has_kvm_domain = caps.find("guest/arch/domain[@type='kvm']") is not None
    agent = facts.get("agent_properties") or {}
    uuid = (caps.findtext("host/uuid") or "").strip() or None
    return Host(
        key=key, target=target, cluster_key=cluster_key,
        # libvirt's test driver answers with this machine's hostname for every fake host
        name=raw["address"] if raw.get("hv_type") == "TEST" else raw.get("hostname") or raw["address"],
        address=raw["address"], hypervisor="kvm", uuid=uuid,
        hypervisor_version=version_from_int(raw.get("hv_version")), product_name=raw.get("hv_type"),
        cpu_arch=(cpu.findtext("arch") if cpu is not None else None) or facts.get("machine") or info[0],
        cpu_vendor=cpu.findtext("vendor") if cpu is not None else None,
        cpu_model=(cpu.findtext("model") if cpu is not None else None) or info[0],
        cpu_sockets=_int(topology.get("sockets")) if topology is not None else info[5] * info[4],
        cpu_cores=_int(topology.get("cores")) if topology is not None else info[6],
        cpu_threads=_int(topology.get("threads")) if topology is not None else info[7],
        cpu_mhz=info[3] or None,
        hvm=facts.get("cpu_virt") if facts.get("cpu_virt") is not None else (has_kvm_domain or None),
        libvirt_hvm="hvm" in guest_types, dev_kvm=facts.get("dev_kvm"),
        cpu_flags=" ".join(features) or None, memory_bytes=to_bytes(info[1], "MiB"), state="connected",
        os_id=facts.get("os", {}).get("ID"), os_name=facts.get("os", {}).get("NAME"),
        os_version=facts.get("os", {}).get("VERSION_ID"), kernel_version=facts.get("kernel"),
        libvirt_version=version_from_int(raw.get("lib_version")),
        agent_version=facts.get("agent_version"), agent_state=facts.get("agent_state"),
        agent_zone=agent.get("zone"), agent_pod=agent.get("pod"), agent_cluster=agent.get("cluster"),
        agent_guid=agent.get("guid"), agent_host=agent.get("host"),
        agent_private_device=agent.get("private.network.device"),
        agent_public_device=agent.get("public.network.device"),
        agent_guest_device=agent.get("guest.network.device"),
        time_synced=facts.get("time_synced"),
        raw_json={"uri": raw.get("uri"), "agent_properties": agent or None,
                  "guest_os_types": sorted(t for t in guest_types if t),
                  "facts_error": raw.get("facts_error"), "unknown_facts": facts.get("unknown", []),
                  **{k: facts[k] for k in RAW_FACTS if k in facts},
                  "uefi_loaders": uefi_loaders(raw.get("domain_capabilities"))},
        host_os=cloudstack_host_os(facts), fqdn=facts.get("fqdn"), java_version=facts.get("java_version"),
        selinux_mode=facts.get("selinux_mode"), apparmor_libvirt=facts.get("apparmor_libvirt"),
        firewall=facts.get("firewall"), ovs_version=facts.get("ovs_version"),
        agent_certificates=facts.get("agent_certificates"), libvirt_tls=facts.get("libvirt_tls"),
        agent_connected=facts.get("agent_connected"),
        uefi_firmware=None if raw.get("domain_capabilities") is None
        else bool(uefi_loaders(raw.get("domain_capabilities"))),
    )


# facts kept as they are in the host's raw_json (what rules read beyond the columns)
RAW_FACTS = ("libvirtd", "firewall_settings", "bridge_module", "aria2", "uefi_properties", "listening_ports",
             "agent_peers", "routes", "selinux_config", "apparmor_profiles", "distro_release", "missing_commands")


def uefi_loaders(domain_capabilities: str | None) -> list[str]:
    """The UEFI firmware files libvirt offers (domain capabilities, os/loader), when it supports a loader."""
    if not domain_capabilities:
        return []
    loader = _xml(domain_capabilities).find("os/loader")
    if loader is None or loader.get("supported") != "yes":
        return []
    return [v.text or "" for v in loader.findall("value") if v.text]


def _domain(inv: Inventory, dom: dict[str, Any], target: str, host: str, cluster_key: str | None,
            pool_by_name: dict[str, Storage], pool_paths: list[tuple[str, str]]) -> None:
    root = _xml(dom["xml"])
    stats = dom.get("stats") or {}
    name = root.findtext("name") or ""
    uuid = (root.findtext("uuid") or "").lower()
    parsed = parse_instance_name(name)
    vcpu = root.find("vcpu")
    vcpus = _int(vcpu.get("current")) or _int(vcpu.text) if vcpu is not None else None
    memory = root.find("currentMemory")
    if memory is None:
        memory = root.find("memory")
    os_type = root.find("os/type")
    cpu = root.find("cpu")
    inv.vms.append(Vm(
        key=uuid or f"{host}:{name}", target=target, host_key=host, cluster_key=cluster_key, name=name,
        uuid=uuid or None, instance_name=name if parsed.role != "unmanaged" else None,
        cs_role=parsed.role, cs_account_id=parsed.account_id, cs_id=parsed.cs_id,
        power_state=power_state_from_libvirt(stats.get("state.state")), vcpus=vcpus,
        memory_bytes=to_bytes(memory.text, memory.get("unit")) if memory is not None else None,
        guest_os=(root.findtext("description") or "").strip() or None,
        raw_json={"domain_type": root.get("type"), "persistent": dom.get("persistent"),
                  "os_type": os_type.text if os_type is not None else None,
                  "machine": os_type.get("machine") if os_type is not None else None,
                  "arch": os_type.get("arch") if os_type is not None else None,
                  "cpu_mode": cpu.get("mode") if cpu is not None else None,
                  "uefi": root.find("os/loader") is not None or root.find("os[@firmware='efi']") is not None},
    ))
    vm_key = inv.vms[-1].key
    blocks = _block_stats(stats)
    for disk in root.findall("devices/disk"):
        inv.vm_disks.append(_disk(disk, vm_key, target, blocks, pool_by_name, pool_paths))
    for index, nic in enumerate(root.findall("devices/interface")):
        inv.vm_nics.append(_nic(nic, index, vm_key, target))


def _block_stats(stats: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``block.<i>.<field>`` stats by device name, from the keys that are there (never from ``block.count``,
    which a host could state as anything)."""
    by_index: dict[str, dict[str, Any]] = {}
    for key, value in stats.items():
        prefix, _, rest = key.partition(".")
        index, _, name = rest.partition(".")
        if prefix == "block" and index.isdigit() and name:
            by_index.setdefault(index, {})[name] = value
    return {device: fields for fields in by_index.values() if isinstance(device := fields.get("name"), str) and device}


def _disk(disk: ET.Element, vm_key: str, target: str, blocks: dict[str, dict[str, Any]],
          pool_by_name: dict[str, Storage], pool_paths: list[tuple[str, str]]) -> VmDisk:
    tgt = disk.find("target")
    dev = tgt.get("dev", "") if tgt is not None else ""
    source = disk.find("source")
    path = storage_key = None
    if source is not None:
        if source.get("pool"):
            pool = pool_by_name.get(source.get("pool", ""))
            storage_key = pool.key if pool else None
            path = f"{source.get('pool')}/{source.get('volume')}"
        else:
            path = source.get("file") or source.get("dev") or source.get("dir")
            if path is None and source.get("protocol"):
                path = f"{source.get('protocol')}:{source.get('name')}"
            if path and path.startswith("/"):
                storage_key = next((key for mount, key in pool_paths
                                    if path.startswith(mount.rstrip("/") + "/")), None)
    driver = disk.find("driver")
    block = blocks.get(dev, {})
    return VmDisk(vm_key=vm_key, target=target, device=dev, disk_type=disk.get("device"),
                  bus=tgt.get("bus") if tgt is not None else None, storage_key=storage_key, path=path,
                  format=driver.get("type") if driver is not None else None,
                  capacity_bytes=_int(block.get("capacity")), allocation_bytes=_int(block.get("allocation")))


def _nic(nic: ET.Element, index: int, vm_key: str, target: str) -> VmNic:
    source = nic.find("source")
    kind = nic.get("type")
    name = None
    key = None
    if source is not None:
        if kind == "network":
            name = source.get("network")
            key = f"libvirt:{name}"
        else:
            name = source.get("bridge") or source.get("dev")
            key = f"bridge:{name}" if name and kind == "bridge" else None
    mac = nic.find("mac")
    model = nic.find("model")
    # the tap name (vnetN) exists only while the domain runs: the NIC's place is its stable identity
    return VmNic(vm_key=vm_key, target=target, device=f"net{index}",
                 mac=(mac.get("address") or "").lower() or None if mac is not None else None,
                 network_key=key, network_name=name, model=model.get("type") if model is not None else None)


def _pool(pool: dict[str, Any], target: str, host: str, facts: dict[str, Any]) -> tuple[Storage, HostStorage]:
    root = _xml(pool["xml"])
    ptype = root.get("type", "")
    fmt = root.find("source/format")
    kind = POOL_KINDS.get(ptype, ptype)
    if ptype == "netfs" and fmt is not None and fmt.get("type") not in (None, "auto", "nfs"):
        kind = str(fmt.get("type"))
    path = root.findtext("target/path")
    if ptype == "dir":
        kind = "sharedmountpoint" if _on_shared_mount(path, facts.get("mounts", [])) else "local"
    source_host = root.find("source/host")
    source_path = root.find("source/dir") if root.find("source/dir") is not None else root.find("source/device")
    source = None
    if source_host is not None:
        source = f"{source_host.get('name')}:{source_path.get('path') if source_path is not None else ''}"
    elif source_path is not None:
        source = source_path.get("path")
    elif root.findtext("source/name"):
        source = root.findtext("source/name")
    info = pool.get("info") or [None, None, None, None]
    uuid = (root.findtext("uuid") or "").lower()
    key = uuid or f"{host}:pool:{root.findtext('name')}"
    storage = Storage(key=key, target=target, name=root.findtext("name") or key, kind=kind,
                      shared=kind in SHARED_POOL_KINDS, capacity_bytes=_int(info[1]),
                      free_bytes=_int(info[3]), source=source,
                      raw_json={"libvirt_type": ptype, "target_path": path, "autostart": pool.get("autostart"),
                                "allocation": _int(info[2])})  # what CloudStack's agent reports as the pool's used
    return storage, HostStorage(host_key=host, target=target, storage_key=key,
                                attached=bool(pool.get("active")), mount_path=path)


def _volume(xml: str, storage_key: str, target: str) -> StorageImage:
    """A pool's volume: its path (what a domain's disk names as its source), format, sizes and backing file."""
    root = _xml(xml)
    name = root.findtext("name")
    path = root.findtext("target/path") or root.findtext("key") or f"{storage_key}/{name}"
    fmt = root.find("target/format")
    form = fmt.get("type") if fmt is not None else None
    kind = "directory" if root.get("type") == "dir" else "iso" if form == "iso" or (name or "").lower().endswith(
        ".iso") else "disk"
    return StorageImage(storage_key=storage_key, target=target, path=path, name=name, kind=kind, format=form,
                        capacity_bytes=_int(root.findtext("capacity")),
                        allocation_bytes=_int(root.findtext("allocation")),
                        backing=root.findtext("backingStore/path") or None)


def _on_shared_mount(path: str | None, mounts: list[dict[str, str]]) -> bool:
    if not path:
        return False
    for mount in mounts:
        point = mount["mount_path"].rstrip("/") or "/"
        if mount["fstype"] in SHARED_FS and (path == point or path.startswith(point + "/")):
            return True
    return False


def _mount_storage(inv: Inventory, facts: dict[str, Any], host: str, target: str) -> None:
    """Shared mounts no libvirt pool covers (CloudStack mounts NFS pools itself)."""
    covered = {a.mount_path for a in inv.host_storage if a.mount_path}
    covered_sources = {s.source for s in inv.storage if s.source}
    for mount in facts.get("mounts", []):
        if mount["fstype"] not in SHARED_FS or mount["mount_path"] in covered:
            continue
        if mount["source"] in covered_sources:
            continue
        key = f"mount:{mount['source']}"
        kind = "nfs" if mount["fstype"].startswith("nfs") else "sharedmountpoint"
        inv.storage.append(Storage(key=key, target=target, name=mount["source"], kind=kind, shared=True,
                                   source=mount["source"], raw_json={"fstype": mount["fstype"]}))
        inv.host_storage.append(HostStorage(host_key=host, target=target, storage_key=key, attached=True,
                                            mount_path=mount["mount_path"]))


def _libvirt_network(net: dict[str, Any], target: str) -> Network:
    root = _xml(net["xml"])
    name = root.findtext("name") or ""
    bridge = root.find("bridge")
    mtu = root.find("mtu")
    forward = root.find("forward")
    vlan = root.find("vlan/tag")
    return Network(key=f"libvirt:{name}", target=target, name=name, kind="libvirt",
                   bridge=bridge.get("name") if bridge is not None else None,
                   vlan=_int(vlan.get("id")) if vlan is not None else None,
                   mtu=_int(mtu.get("size")) if mtu is not None else None,
                   raw_json={"forward": forward.get("mode", "nat") if forward is not None else None,
                             "active": net.get("active")})


def _libvirt_interfaces(interfaces: list[dict[str, Any]], host: str, target: str) -> list[HostNic]:
    nics = []
    for iface in interfaces:
        root = _xml(iface["xml"])
        name = root.get("name", "")
        kind = root.get("type")
        ip = root.find("protocol/ip")
        mac = root.find("mac")
        nics.append(HostNic(host_key=host, target=target, device=name,
                            kind="physical" if kind == "ethernet" else kind,
                            network_key=f"bridge:{name}" if kind == "bridge" else None,
                            mac=mac.get("address") if mac is not None else None,
                            ip=ip.get("address") if ip is not None else None,
                            netmask=prefix_to_netmask(_int(ip.get("prefix"))) if ip is not None else None,
                            link_up=bool(iface.get("active"))))
        for port in root.findall("bridge/interface"):
            port_mac = port.find("mac")
            nics.append(HostNic(host_key=host, target=target, device=port.get("name", ""), kind="physical",
                                network_key=f"bridge:{name}",
                                mac=port_mac.get("address") if port_mac is not None else None))
    return nics


def _host_links(inv: Inventory, facts: dict[str, Any], address: str, host: str, target: str) -> None:
    ovs_ports = {port: bridge for bridge, ports in facts.get("ovs", {}).items() for port in ports}
    links = facts["links"]
    bridges = {link["ifname"] for link in links if _link_kind(link) == "bridge"} | set(facts.get("ovs", {}))
    default_dev = facts.get("default_route_dev")
    agent_dev = (facts.get("agent_properties") or {}).get("private.network.device")
    carriers = {link["ifname"] for link in links if link["ifname"] != "lo"
                if any(a.get("local") == address for a in link.get("addr_info", []))}
    management = carriers or ({agent_dev} if agent_dev else set()) or ({default_dev} if default_dev else set())
    for name in sorted(bridges):
        link: dict[str, Any] = next((item for item in links if item["ifname"] == name), {})
        inv.networks.append(Network(key=f"bridge:{name}", target=target, name=name,
                                    kind="ovs" if name in facts.get("ovs", {}) else "bridge", bridge=name,
                                    mtu=link.get("mtu")))
    for link in links:
        name = link["ifname"]
        if name == "lo" or link.get("link_type") == "loopback" or _link_kind(link) == "tun":
            continue  # loopback, and the tap devices of running guests (they are the guests' NICs)
        kind = "ovs" if name in facts.get("ovs", {}) else _link_kind(link)
        master = link.get("master")
        bridge = name if name in bridges else ovs_ports.get(name) or (master if master in bridges else None)
        addrs = [a for a in link.get("addr_info", []) if a.get("scope") != "link"]
        first = next((a for a in addrs if a.get("family") == "inet"), addrs[0] if addrs else None)
        info = (link.get("linkinfo") or {}).get("info_data") or {}
        inv.host_nics.append(HostNic(
            host_key=host, target=target, device=name, kind=kind,
            network_key=f"bridge:{bridge}" if bridge else None, mac=link.get("address"),
            ip=first.get("local") if first else None,
            netmask=prefix_to_netmask(first.get("prefixlen"), first.get("family", "inet")) if first else None,
            ip_addresses=",".join(f"{a['local']}/{a.get('prefixlen')}" for a in addrs) or None,
            is_dhcp=bool(first.get("dynamic")) if first else None, mtu=link.get("mtu"),
            vlan=info.get("id") if kind == "vlan" else None, is_management=name in management,
            bond=master if master and master not in bridges and master != "ovs-system" else None,
            link_up="UP" in link.get("flags", []) and "LOWER_UP" in link.get("flags", []),
        ))


def _link_kind(link: dict[str, Any]) -> str:
    info = link.get("linkinfo") or {}
    kind = info.get("info_kind")
    if kind == "openvswitch":
        return "ovs"
    if kind:
        return str(kind)
    return "physical" if link.get("link_type") == "ether" else str(link.get("link_type", "unknown"))


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None


def merge_hosts(inventories: list[Inventory], target: str) -> Inventory:
    """One target's inventory from its hosts': keys made unique, shared objects once, clusters counted."""
    merged = Inventory()
    host_keys: set[str] = set()
    vm_keys: set[str] = set()
    networks: set[str] = set()
    storage: set[str] = set()
    images: set[tuple[str, str]] = set()
    for inv in inventories:
        host = inv.hosts[0]
        if host.key in host_keys:
            inv = _rekey_host(inv, f"{host.key}@{host.address}")
        host_keys.add(inv.hosts[0].key)
        inv = _unique_vms(inv, vm_keys)
        merged.hosts += inv.hosts
        merged.vms += inv.vms
        merged.vm_disks += inv.vm_disks
        merged.vm_nics += inv.vm_nics
        merged.host_nics += inv.host_nics
        merged.host_storage += inv.host_storage
        merged.networks += [n for n in inv.networks if n.key not in networks]
        networks.update(n.key for n in inv.networks)
        merged.storage += [s for s in inv.storage if s.key not in storage]
        storage.update(s.key for s in inv.storage)
        merged.storage_images += [i for i in inv.storage_images if (i.storage_key, i.path) not in images]
        images.update((i.storage_key, i.path) for i in inv.storage_images)
    counts: dict[str, int] = {}
    for host in merged.hosts:
        counts[host.cluster_key or ""] = counts.get(host.cluster_key or "", 0) + 1
    merged.clusters = [Cluster(key=key, target=target, name=key, hypervisor="kvm", host_count=count)
                       for key, count in counts.items() if key]
    return merged


def _with_cluster(inv: Inventory, cluster_key: str) -> Inventory:
    inv.hosts = [replace(h, cluster_key=cluster_key) for h in inv.hosts]
    inv.vms = [replace(v, cluster_key=cluster_key) for v in inv.vms]
    return inv


def _rekey_host(inv: Inventory, key: str) -> Inventory:
    inv.hosts = [replace(h, key=key) for h in inv.hosts]
    inv.vms = [replace(v, host_key=key) for v in inv.vms]
    inv.host_nics = [replace(n, host_key=key) for n in inv.host_nics]
    inv.host_storage = [replace(s, host_key=key) for s in inv.host_storage]
    return inv


def _unique_vms(inv: Inventory, seen: set[str]) -> Inventory:
    """A domain defined on two hosts (say, left behind by a migration) keeps both rows."""
    renamed = {v.key: f"{v.key}@{v.host_key}" for v in inv.vms if v.key in seen}
    seen.update(renamed.get(v.key, v.key) for v in inv.vms)
    if renamed:
        inv.vms = [replace(v, key=renamed.get(v.key, v.key)) for v in inv.vms]
        inv.vm_disks = [replace(d, vm_key=renamed.get(d.vm_key, d.vm_key)) for d in inv.vm_disks]
        inv.vm_nics = [replace(n, vm_key=renamed.get(n.vm_key, n.vm_key)) for n in inv.vm_nics]
    return inv


__all__ = ["AGENT_CERTIFICATES", "AGENT_KEYS", "host_key", "merge_hosts", "normalise_host", "normalise_target",
           "parse_facts"]
