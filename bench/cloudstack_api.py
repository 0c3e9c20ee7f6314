"""CloudStack's API at scale: 50,000 VMs, 500 hosts and 60,000 volumes served by the CloudStack API fixture with
5 ms latency per request, read by the cloudstack_api target; then ``reconcile`` over a 10,000-VM, 500-host
hypervisor inventory plus that view.

Printed: API calls (pages, not objects), the target's wall time against the raw floor measured in the same run
(the same pages fetched as plain signed HTTP GETs, JSON parsed, nothing else: bytes on the wire), the
reconciliation's time at half and full size (linear: no per-VM query), and the ratios.
Run: .venv/bin/python -m bench.cloudstack_api [--vms 50000 --hosts 500 --volumes 60000 --latency-ms 5]
"""

from __future__ import annotations

import argparse
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
from inventory.model import Host, Inventory, Secret, TargetResult, Vm, VmDisk
from inventory.reconcile import reconcile
from inventory.scan import reported_version
from inventory.store import ScanRow, open_store

KEY, SECRET = "bench-key", "bench-secret"


def cloudstack(vms: int, hosts: int, volumes: int) -> dict[str, Any]:
    zone = {"id": "zone-1", "name": "zone1", "networktype": "Advanced"}
    clusters = [{"id": f"cluster-{c}", "name": f"c{c}", "zoneid": "zone-1", "zonename": "zone1",
                 "hypervisortype": "VMware"} for c in range(hosts // 25)]
    host_rows = [{"id": f"host-{h}", "name": f"esx{h}", "type": "Routing", "ipaddress": f"esx{h}",
                  "clusterid": f"cluster-{h // 25}", "hypervisor": "VMware", "hypervisorversion": "8.0.2",
                  "state": "Up"} for h in range(hosts)]
    vm_rows = [{"id": f"vm-{i}", "name": f"vm{i}", "instancename": f"i-2-{i}-VM", "state": "Running",
                "hostid": f"host-{i % hosts}", "hostname": f"esx{i % hosts}", "account": "admin",
                "hypervisor": "VMware", "cpunumber": 2, "memory": 2048, "zoneid": "zone-1",
                "nic": [{"macaddress": f"02:00:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}:01",
                         "ipaddress": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"}]} for i in range(vms)]
    volume_rows = [{"id": f"vol-{v}", "name": f"ROOT-{v}", "type": "ROOT", "state": "Ready", "path": f"ROOT-{v}",
                    "storageid": "pool-1", "storage": "primary", "virtualmachineid": f"vm-{v % vms}",
                    "vmname": f"vm{v % vms}", "size": 8 << 30, "zoneid": "zone-1"} for v in range(volumes)]
    return {"zones": [zone], "clusters": clusters, "hosts": host_rows, "vms": vm_rows, "volumes": volume_rows,
            "storagepools": [{"id": "pool-1", "name": "primary", "scope": "ZONE", "zoneid": "zone-1"}],
            "settings": {"default.page.size": "500"}}


def hypervisor_side(vms: int, hosts: int) -> TargetResult:
    """What a vCenter scan of 10,000 VMs on 500 hosts stores (the simulator's shape)."""
    inv = Inventory()
    inv.hosts = [Host(key=f"host-{h}", target="vc", cluster_key=f"domain-c{h // 25}", name=f"esx{h}",
                      address=f"esx{h}", hypervisor="vmware", hypervisor_version="8.0.2") for h in range(hosts)]
    inv.vms = [Vm(key=f"uuid-{i}", target="vc", host_key=f"host-{i % hosts}", cluster_key=f"domain-c{i % hosts // 25}",
                  name=f"i-2-{i}-VM", cs_role="user", power_state="running") for i in range(vms)]
    inv.vm_disks = [VmDisk(vm_key=f"uuid-{i}", target="vc", device="disk-0", disk_type="disk",
                           path=f"[primary] i-2-{i}-VM/ROOT-{i}.vmdk") for i in range(vms)]
    return TargetResult(name="vc", hypervisor="vmware", endpoint="vc", status="ok", inventory=inv)


def raw_floor(url: str, calls: list[tuple[str, dict[str, str]]]) -> tuple[float, int]:
    """The same requests as plain signed GETs, JSON parsed and nothing else: (seconds, bytes)."""
    started, size = time.perf_counter(), 0
    for command, extra in calls:
        params = {"command": command, "apiKey": KEY, "response": "json", **extra}
        params["signature"] = sign(params, SECRET)
        with urllib.request.urlopen(f"{url}?{urlencode(params)}") as answer:
            body = answer.read()
        size += len(body)
        json.loads(body)
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


def run(vms: int, hosts: int, volumes: int, hv_vms: int, latency_ms: float, folder: Path) -> dict[str, float]:
    data = cloudstack(vms, hosts, volumes)
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
                                           reported_version([result]), "bench", None),
                                   [hypervisor_side(hv_vms, hosts), result])
        started = time.perf_counter()
        reconciled = reconcile(store, scan_id)
        reconcile_s = time.perf_counter() - started
    return {"calls": result.api_calls, "target_s": target_s, "floor_s": floor_s, "mib": size / 2**20,
            "reconcile_s": reconcile_s, "differences": len(reconciled.differences)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--vms", type=int, default=50_000)
    parser.add_argument("--hosts", type=int, default=500)
    parser.add_argument("--volumes", type=int, default=60_000)
    parser.add_argument("--hypervisor-vms", type=int, default=10_000)
    parser.add_argument("--latency-ms", type=float, default=5.0)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        half = run(options.vms // 2, options.hosts // 2, options.volumes // 2, options.hypervisor_vms // 2,
                   options.latency_ms, Path(folder))
        full = run(options.vms, options.hosts, options.volumes, options.hypervisor_vms, options.latency_ms, Path(folder))
    for label, figures in (("half", half), ("full", full)):
        print(f"{label}: {figures['calls']:.0f} API calls; cloudstack_api target {figures['target_s']:.2f} s against the "
              f"raw floor {figures['floor_s']:.2f} s for its pages ({figures['mib']:.1f} MiB on the wire): ratio "
              f"{figures['target_s'] / figures['floor_s']:.2f}; reconcile {figures['reconcile_s']:.2f} s "
              f"({figures['differences']:.0f} differences)")
    print(f"full / half: target {full['target_s'] / half['target_s']:.2f}, reconcile "
          f"{full['reconcile_s'] / half['reconcile_s']:.2f} (2.0 is linear)")


if __name__ == "__main__":
    main()
