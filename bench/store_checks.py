"""The store and the checks at scale: a synthetic KVM estate of 25,000 / 50,000 / 100,000 VMs, written as one scan
and checked, each size in its own process (its own peak RSS).

The estate has the shape the rules look at: 50 VMs per host, 20 hosts per cluster, four shared NFS pools per
cluster attached on all its hosts (one detached somewhere), a local pool per host, four host NICs, CloudStack
user VMs and routers with a fifth of the VMs unmanaged and running, two disks and a NIC per VM, a few MACs used
twice. Per size: the write (one transaction), the checks on the records in memory (what `scan` runs) and read
back from the database (what `check` runs), the findings and the objects they are about, and the process's peak
RSS; then the curves (time and memory against VMs, fitted slope, local exponents: any above 1 is a rule or a
write worse than linear). Medians of ``--repeat`` runs per size.
Run: .venv/bin/python -m bench.store_checks [--vms 25000,50000,100000 --repeat 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.curves import describe


def estate(vms: int) -> Any:
    from inventory.model import (
        Cluster, EndpointResult, Host, HostNic, HostStorage, Inventory, Network, Storage, TargetResult, Vm, VmDisk,
        VmNic,
    )
    inv = Inventory()
    hosts = max(1, vms // 50)
    clusters = max(1, hosts // 20)
    inv.clusters = [Cluster(key=f"c{c}", target="estate", name=f"cluster{c}", hypervisor="kvm", host_count=20)
                    for c in range(clusters)]
    inv.networks = [Network(key=f"bridge:cloudbr{n}", target="estate", name=f"cloudbr{n}", kind="bridge")
                    for n in range(2)]
    for h in range(hosts):
        cluster = f"c{h % clusters}"
        inv.hosts.append(Host(key=f"h{h}", target="estate", cluster_key=cluster, name=f"kvm{h:05d}",
                              address=f"10.{h >> 16 & 255}.{h >> 8 & 255}.{h & 255}", hypervisor="kvm",
                              uuid=f"00000000-0000-4000-8000-{h:012d}", hypervisor_version="8.0.0",
                              cpu_arch="x86_64", cpu_vendor="Intel", cpu_model="Skylake", cpu_sockets=2, cpu_cores=16,
                              cpu_threads=2, memory_bytes=2**38, state="running", hvm=True, libvirt_hvm=True,
                              dev_kvm=True, os_id="ubuntu", os_name="Ubuntu", os_version="22.04",
                              kernel_version="5.15.0", libvirt_version="8.0.0", agent_version="4.20.0.0",
                              agent_state="active", time_synced=True, raw_json={"i": h}))
        inv.host_nics += [HostNic(host_key=f"h{h}", target="estate", device=device, kind=kind, mtu=1500,
                                  link_up=True) for device, kind in
                          (("eth0", "ethernet"), ("eth1", "ethernet"), ("cloudbr0", "bridge"), ("cloudbr1", "bridge"))]
        inv.storage.append(Storage(key=f"local-{h}", target="estate", name=f"local-{h}", kind="local", shared=False,
                                   capacity_bytes=2**40, free_bytes=2**39))
        inv.host_storage.append(HostStorage(host_key=f"h{h}", target="estate", storage_key=f"local-{h}", attached=True))
        for p in range(4):
            inv.host_storage.append(HostStorage(host_key=f"h{h}", target="estate", storage_key=f"nfs-{cluster}-{p}",
                                                attached=not (h % 997 == 0 and p == 0)))
    inv.storage += [Storage(key=f"nfs-c{c}-{p}", target="estate", name=f"primary-{c}-{p}", kind="nfs", shared=True,
                            capacity_bytes=2**44, free_bytes=2**43) for c in range(clusters) for p in range(4)]
    for i in range(vms):
        h = i // 50
        key = f"{i:08x}-0000-4000-8000-{i:012d}"
        name = f"i-{2 + i % 7}-{i}-VM" if i % 5 else f"app-server-{i}"
        role = "user" if i % 5 else "unmanaged"
        if i % 5 and i % 10 == 9:
            name, role = f"r-{i}-VM", "router"
        inv.vms.append(Vm(key=key, target="estate", host_key=f"h{h}", cluster_key=f"c{h % clusters}", name=name,
                          uuid=key, instance_name=None if role == "unmanaged" else name, cs_role=role,
                          power_state="running" if i % 4 else "stopped", vcpus=2, memory_bytes=2**31,
                          guest_os="Ubuntu", raw_json={"domain_type": "kvm"}))
        for d in range(2):
            inv.vm_disks.append(VmDisk(vm_key=key, target="estate", device=f"vd{'ab'[d]}", disk_type="disk",
                                       bus="virtio", storage_key=f"nfs-c{h % clusters}-{d}", path=f"/mnt/{key}-{d}",
                                       format="qcow2", capacity_bytes=2**34, allocation_bytes=2**30))
        inv.vm_nics.append(VmNic(vm_key=key, target="estate", device="vnet0", network_key="bridge:cloudbr1",
                                 network_name="cloudbr1", model="virtio",
                                 mac=f"06:00:{(i if i % 1000 else 0) >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}:01"))
    return TargetResult(name="estate", hypervisor="kvm", endpoint="estate", status="ok", inventory=inv,
                        endpoints=[EndpointResult("estate", f"kvm{h:05d}", "ok", None, 0.1, 10) for h in range(hosts)])


def one(vms: int) -> dict[str, float]:
    """One size, in this process: write, check in memory, check from the database."""
    import gc

    from collectors.base import Collector
    from inventory import open_store, run_checks
    from inventory.bounds import bound, unique
    from inventory.store import ScanRow
    gc.set_threshold(700, 10, 1000)  # as the console script runs
    result = estate(vms)
    started = time.perf_counter()
    bound(result.inventory)
    unique(result.inventory)
    bounded = time.perf_counter() - started
    assert Collector is not None
    with tempfile.TemporaryDirectory() as tmp, open_store(Path(tmp) / "estate.db") as store:
        started = time.perf_counter()
        scan_id = store.write_scan(ScanRow("t0", "t1", "ok", None, "4.20", "bench", None), [result])
        written = time.perf_counter() - started
        started = time.perf_counter()
        in_memory = run_checks(store, scan_id, "4.20", scanned=[result])
        checked_memory = time.perf_counter() - started
        started = time.perf_counter()
        read_back = run_checks(store, scan_id, "4.20")
        checked_read = time.perf_counter() - started
        assert read_back == in_memory
        stored = store.query("SELECT COUNT(*) AS n FROM findings WHERE scan_id = ?", [scan_id])[0]["n"]
    return {"vms": vms, "bound_s": bounded, "write_s": written, "checks_memory_s": checked_memory,
            "checks_read_s": checked_read, "objects": len(in_memory), "findings": stored,
            "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--vms", default="25000,50000,100000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a child: one size, figures as JSON
    options = parser.parse_args()
    if options.one:
        print(json.dumps(one(options.one)))
        return
    sizes = [int(v) for v in options.vms.split(",")]
    runs: dict[int, list[dict[str, float]]] = {v: [] for v in sizes}
    for _ in range(options.repeat):
        for vms in sizes:
            child = subprocess.run([sys.executable, "-m", "bench.store_checks", "--one", str(vms)], check=True,
                                   capture_output=True, text=True)
            runs[vms].append(json.loads(child.stdout))

    def med(vms: int, field: str) -> float:
        return statistics.median(r[field] for r in runs[vms])
    print(f"store and checks, synthetic KVM estate (50 VMs per host, 20 hosts per cluster); medians of {options.repeat}"
          " runs, each size in its own process")
    for vms in sizes:
        print(f"  {vms:7,} VMs: bound {med(vms, 'bound_s'):.2f} s; write {med(vms, 'write_s'):.2f} s "
              f"({vms / med(vms, 'write_s'):,.0f} VMs/s); checks in memory {med(vms, 'checks_memory_s'):.2f} s, read "
              f"back {med(vms, 'checks_read_s'):.2f} s; {med(vms, 'findings'):,.0f} findings about "
              f"{med(vms, 'objects'):,.0f} objects; peak RSS {med(vms, 'peak_mib'):.0f} MiB")
    if len(sizes) > 1:
        print("scale curves (medians):")
        for field, label, unit in (("write_s", "write", "s"), ("checks_memory_s", "checks in memory", "s"),
                                   ("checks_read_s", "checks read back", "s"), ("peak_mib", "peak RSS", "MiB")):
            print(describe(label, unit, [(float(v), med(v, field)) for v in sizes], 10_000, "10,000 VMs"))


if __name__ == "__main__":
    main()
