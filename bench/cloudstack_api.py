"""CloudStack's API at scale: 50,000 VMs, 500 hosts and 60,000 volumes served by the CloudStack API fixture with
5 ms latency per request, read by the cloudstack_api target; then ``reconcile`` over the 10,000-VM, 500-host
inventory that the vCenter simulator gives (20 clusters × 25 hosts, 500 VMs each, read by the VMware collector)
plus that view.

CloudStack's view is built around what the simulator runs: its 500 hosts (by name), its 10,000 VMs (by instance
name, on their hosts) and their disks as volumes, then 40,000 more VMs Running on those hosts and 50,000 more
volumes — so 40,000 VMs CloudStack calls Running are found on no host, a difference each.
Printed: API calls (pages, not objects), the target's wall time against the raw floor measured in the same run
(the same pages fetched as plain signed HTTP GETs accepting gzip as the target's client does, as CloudStack's Jetty
sends them, JSON parsed, nothing else: bytes on the wire), the reconciliation's time at half and full size (linear:
no per-VM query), and the ratios. ``--synthetic`` uses
records in the simulator's shape instead of starting it (no Go toolchain needed).
Run: .venv/bin/python -m bench.cloudstack_api [--vms 50000 --hosts 500 --volumes 60000 --latency-ms 5]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from collectors.cloudstack_api import CloudStackApiCollector, CloudStackApiTarget
from fixtures.cloudstack.server import ApiKey, Scenario, serve, sign
from inventory.matching import instance_name_of, volume_stem
from inventory.model import Host, Inventory, Secret, TargetResult, Vm, VmDisk
from inventory.reconcile import reconcile
from inventory.scan import reported_version
from inventory.store import ScanRow, open_store

KEY, SECRET = "bench-key", "bench-secret"
HOSTS_PER_CLUSTER = 25


def cloudstack(vms: int, volumes: int, hv: Inventory) -> dict[str, Any]:
    """CloudStack's view around the hypervisor side: its hosts and VMs (and their disks as volumes), then more VMs
    and volumes up to ``vms`` and ``volumes``."""
    zone = {"id": "zone-1", "name": "zone1", "networktype": "Advanced"}
    cluster_of = {key: f"cluster-{n}" for n, key in enumerate(sorted({h.cluster_key or h.target for h in hv.hosts}))}
    clusters = [{"id": cs, "name": f"c{n}", "zoneid": "zone-1", "zonename": "zone1", "hypervisortype": "VMware"}
                for n, cs in enumerate(cluster_of.values())]
    host_id = {h.key: f"host-{n}" for n, h in enumerate(hv.hosts)}
    host_rows = [{"id": host_id[h.key], "name": h.name, "type": "Routing", "ipaddress": h.address,
                  "clusterid": cluster_of[h.cluster_key or h.target], "hypervisor": "VMware",
                  "hypervisorversion": h.hypervisor_version, "state": "Up"} for h in hv.hosts]
    names = [instance_name_of(v) for v in hv.vms if not v.is_template]
    on = [host_id.get(v.host_key or "", "host-0") for v in hv.vms if not v.is_template]
    ids = [host_id[h.key] for h in hv.hosts]
    vm_rows = []
    for i in range(vms):
        hv_vm = i < len(names)
        name, host = (names[i], on[i]) if hv_vm else (f"i-2-{100000 + i}-VM", ids[i % len(ids)])
        vm_rows.append({"id": f"vm-{i}", "name": f"vm{i}", "instancename": name, "state": "Running", "hostid": host,
                        "hostname": host, "account": "admin", "hypervisor": "VMware", "cpunumber": 2, "memory": 2048,
                        "zoneid": "zone-1", "nic": [{"macaddress": f"02:00:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:"
                                                                  f"{i & 255:02x}:01",
                                                    "ipaddress": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"}]})
    vm_of = {v.key: n for n, v in enumerate(v for v in hv.vms if not v.is_template)}
    disks = [(vm_of[d.vm_key], volume_stem(d.path)) for d in hv.vm_disks if d.vm_key in vm_of and d.path]
    volume_rows = []
    for v in range(volumes):
        owner, path = disks[v] if v < len(disks) else (v % vms, f"ROOT-{v}")
        volume_rows.append({"id": f"vol-{v}", "name": f"ROOT-{v}", "type": "ROOT", "state": "Ready", "path": path,
                            "storageid": "pool-1", "storage": "primary", "virtualmachineid": f"vm-{owner}",
                            "vmname": f"vm{owner}", "size": 8 << 30, "zoneid": "zone-1"})
    return {"zones": [zone], "clusters": clusters, "hosts": host_rows, "vms": vm_rows, "volumes": volume_rows,
            "storagepools": [{"id": "pool-1", "name": "primary", "scope": "ZONE", "zoneid": "zone-1"}],
            "settings": {"default.page.size": "500"}}


def simulator_side(vms: int, hosts: int) -> TargetResult:
    """What a vCenter scan of the simulator stores: ``hosts`` hosts in clusters of 25, ``vms`` VMs among them."""
    from collectors.vmware import VmwareCollector, VmwareTarget
    from fixtures.vcsim import start_vcsim
    from fixtures.xapi.tls import self_signed

    clusters = max(1, hosts // HOSTS_PER_CLUSTER)
    with tempfile.TemporaryDirectory() as folder:
        tls = self_signed(Path(folder), name="vcenter")
        sim = start_vcsim(clusters=clusters, cluster_hosts=HOSTS_PER_CLUSTER, standalone_hosts=0,
                          vms=vms // clusters, username="bench", password="bench", tls=tls)
        try:
            os.environ["CSI_BENCH_VC"] = "bench"
            result = VmwareCollector(VmwareTarget(name="vc", host=sim.host, port=sim.port, username="bench",
                                                  password=Secret("env", "CSI_BENCH_VC"), ca_file=tls[0])).collect()
        finally:
            sim.stop()
    assert result.status == "ok", result.error
    return result


def synthetic_side(vms: int, hosts: int) -> TargetResult:
    """Records in the shape of a vCenter scan of ``vms`` VMs on ``hosts`` hosts, without the simulator."""
    inv = Inventory()
    inv.hosts = [Host(key=f"host-{h}", target="vc", cluster_key=f"domain-c{h // HOSTS_PER_CLUSTER}", name=f"esx{h}",
                      address=f"esx{h}", hypervisor="vmware", hypervisor_version="8.0.2") for h in range(hosts)]
    inv.vms = [Vm(key=f"uuid-{i}", target="vc", host_key=f"host-{i % hosts}",
                  cluster_key=f"domain-c{i % hosts // HOSTS_PER_CLUSTER}", name=f"i-2-{i}-VM", cs_role="user",
                  power_state="running") for i in range(vms)]
    inv.vm_disks = [VmDisk(vm_key=f"uuid-{i}", target="vc", device="disk-0", disk_type="disk",
                           path=f"[primary] i-2-{i}-VM/ROOT-{i}.vmdk") for i in range(vms)]
    return TargetResult(name="vc", hypervisor="vmware", endpoint="vc", status="ok", inventory=inv)


def raw_floor(url: str, calls: list[tuple[str, dict[str, str]]]) -> tuple[float, int]:
    """The same requests as plain signed GETs, accepting gzip as the target's client (requests) does, so the
    server compresses the same answers; unpacked, JSON parsed and nothing else: (seconds, bytes on the wire)."""
    started, size = time.perf_counter(), 0
    for command, extra in calls:
        params = {"command": command, "apiKey": KEY, "response": "json", **extra}
        params["signature"] = sign(params, SECRET)
        request = urllib.request.Request(f"{url}?{urlencode(params)}", headers={"Accept-Encoding": "gzip, deflate"})
        with urllib.request.urlopen(request) as answer:
            body = answer.read()
            zipped = answer.headers.get("Content-Encoding") == "gzip"
        size += len(body)
        json.loads(gzip.decompress(body) if zipped else body)
    return time.perf_counter() - started, size


def pages_of(vms: int, hosts: int, volumes: int, clusters: int, size: int) -> list[tuple[str, dict[str, str]]]:
    """The pages the target reads: two passes of VMs and volumes, hosts and clusters once."""
    def pages(command: str, total: int, **extra: str) -> list[tuple[str, dict[str, str]]]:
        return [(command, {"page": str(p), "pagesize": str(size), **extra}) for p in range(1, max(1, -(-total // size)) + 1)]
    return [*pages("listVirtualMachines", vms, listall="true"),
            *pages("listVirtualMachines", vms, listall="true", projectid="-1"),
            *pages("listVolumes", volumes, listall="true", listsystemvms="true"),
            *pages("listVolumes", volumes, listall="true", listsystemvms="true", projectid="-1"),
            *pages("listHosts", hosts, type="Routing"), *pages("listClusters", clusters)]


def run(vms: int, hosts: int, volumes: int, hv_vms: int, latency_ms: float, folder: Path,
        synthetic: bool) -> dict[str, Any]:
    started = time.perf_counter()
    hv = synthetic_side(hv_vms, hosts) if synthetic else simulator_side(hv_vms, hosts)
    hv_s = time.perf_counter() - started
    data = cloudstack(vms, volumes, hv.inventory)
    server = serve(Scenario.from_json(data), [ApiKey(KEY, SECRET)], latency_s=latency_ms / 1000)
    os.environ["BENCH_CS_SECRET"] = SECRET
    try:
        target = CloudStackApiTarget(name="mgmt", url=server.url, api_key=KEY, secret_key=Secret("env", "BENCH_CS_SECRET"))
        started = time.perf_counter()
        result = CloudStackApiCollector(target).collect()
        target_s = time.perf_counter() - started
        assert result.status == "ok", result.error
        floor_s, size = raw_floor(server.url, pages_of(vms, hosts, volumes, len(data["clusters"]), 500))
    finally:
        server.stop()
    db = folder / f"bench-{vms}-{hv_vms}.db"
    with open_store(db) as store:
        scan_id = store.write_scan(ScanRow("2026-01-01T00:00:00+00:00", "2026-01-01T00:00:01+00:00", "ok", None,
                                           reported_version([result]), "bench", None), [hv, result])
        started = time.perf_counter()
        reconciled = reconcile(store, scan_id)
        reconcile_s = time.perf_counter() - started
    kinds: dict[str, int] = {}
    for difference in reconciled.differences:
        kinds[difference["difference"]] = kinds.get(difference["difference"], 0) + 1
    return {"calls": result.api_calls, "target_s": target_s, "floor_s": floor_s, "mib": size / 2**20,
            "reconcile_s": reconcile_s, "differences": len(reconciled.differences), "hv_s": hv_s,
            "hv_vms": len(hv.inventory.vms), "hv_hosts": len(hv.inventory.hosts), "kinds": kinds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--vms", type=int, default=50_000)
    parser.add_argument("--hosts", type=int, default=500)
    parser.add_argument("--volumes", type=int, default=60_000)
    parser.add_argument("--hypervisor-vms", type=int, default=10_000)
    parser.add_argument("--latency-ms", type=float, default=5.0)
    parser.add_argument("--synthetic", action="store_true", help="records in the simulator's shape, no simulator")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        half = run(options.vms // 2, options.hosts // 2, options.volumes // 2, options.hypervisor_vms // 2,
                   options.latency_ms, Path(folder), options.synthetic)
        full = run(options.vms, options.hosts, options.volumes, options.hypervisor_vms, options.latency_ms, Path(folder),
                   options.synthetic)
    side = "records in the simulator's shape" if options.synthetic else "the vCenter simulator, scanned"
    for label, figures in (("half", half), ("full", full)):
        print(f"{label}: hypervisor side {figures['hv_vms']:.0f} VMs on {figures['hv_hosts']:.0f} hosts ({side}, "
              f"{figures['hv_s']:.1f} s); {figures['calls']:.0f} API calls; cloudstack_api target "
              f"{figures['target_s']:.2f} s against the raw floor {figures['floor_s']:.2f} s for its pages "
              f"({figures['mib']:.1f} MiB on the wire): ratio {figures['target_s'] / figures['floor_s']:.2f}; "
              f"reconcile {figures['reconcile_s']:.2f} s ({figures['differences']:.0f} differences: "
              f"{figures['kinds']})")
    print(f"full / half: target {full['target_s'] / half['target_s']:.2f}, reconcile "
          f"{full['reconcile_s'] / half['reconcile_s']:.2f} (2.0 is linear)")


if __name__ == "__main__":
    main()
