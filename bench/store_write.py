"""Store write speed: 100,000 VM rows with their disks and NICs, in one scan transaction.

Target: at least 50,000 VM rows per second on this machine. Prints seconds and rows/s.
Run: .venv/bin/python -m bench.store_write [--vms N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from inventory.model import EndpointResult, Host, Inventory, TargetResult, Vm, VmDisk, VmNic
from inventory.store import ScanRow, open_store


def build(vms: int, hosts: int = 500) -> TargetResult:
    inv = Inventory()
    inv.hosts = [Host(key=f"h{h}", target="bench", cluster_key="c", name=f"kvm{h}",
                      address=f"10.0.{h // 250}.{h % 250}", hypervisor="kvm", memory_bytes=2**38, raw_json={"i": h})
                 for h in range(hosts)]
    for i in range(vms):
        key = f"00000000-0000-4000-8000-{i:012d}"
        inv.vms.append(Vm(key=key, target="bench", host_key=f"h{i % hosts}", cluster_key="c", name=f"i-2-{i}-VM",
                          uuid=key, instance_name=f"i-2-{i}-VM", cs_role="user", cs_account_id=2, cs_id=i,
                          power_state="running", vcpus=2, memory_bytes=2**31, guest_os="CentOS 7",
                          raw_json={"domain_type": "kvm", "machine": "pc-q35"}))
        for d in range(2):
            inv.vm_disks.append(VmDisk(vm_key=key, target="bench", device=f"vd{'ab'[d]}", disk_type="disk",
                                       bus="virtio", storage_key="pool", path=f"/mnt/pool/{key}-{d}",
                                       format="qcow2", capacity_bytes=2**34, allocation_bytes=2**30))
            inv.vm_nics.append(VmNic(vm_key=key, target="bench", device=f"vnet{d}", mac=f"06:00:{i:08x}"[:17],
                                     network_key="bridge:cloudbr0", network_name="cloudbr0", model="virtio"))
    return TargetResult(name="bench", hypervisor="kvm", endpoint="bench", status="ok", inventory=inv,
                        endpoints=[EndpointResult("bench", "bench", "ok", None, 0.0, 0)])


def write_once(result: TargetResult) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(Path(tmp) / "bench.db")
        row = ScanRow("t0", "t1", "ok", None, "4.20", "bench", None)
        started = time.perf_counter()
        store.write_scan(row, [result])
        elapsed = time.perf_counter() - started
        size = sum(p.stat().st_size for p in Path(tmp).iterdir())
        store.close()
    return elapsed, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args()
    result = build(options.vms)
    rows = sum(result.inventory.counts().values())
    runs = [write_once(result) for _ in range(options.repeat)]
    times = sorted(t for t, _ in runs)
    median = times[len(times) // 2]
    print(f"store write: {options.vms:,} VMs with {len(result.inventory.vm_disks):,} disks and "
          f"{len(result.inventory.vm_nics):,} NICs ({rows:,} rows), one transaction each run")
    print(f"  runs: {', '.join(f'{t:.2f} s' for t, _ in runs)}; median {median:.2f} s")
    print(f"  {options.vms / median:,.0f} VM rows/s (target ≥ 50,000); {rows / median:,.0f} rows/s overall; "
          f"database {runs[0][1] / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
