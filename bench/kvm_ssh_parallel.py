"""20 KVM host names, all reaching the real libvirtd over qemu+ssh:// through one loopback sshd.

Each name (127.0.0.1 … 127.0.0.20) is its own SSH session, libvirt connection and SSH-facts
session. Prints the scan's wall time against the sum of the per-host times measured in the
same run: in parallel, the scan should take about as long as its slowest host.
Run: .venv/bin/python -m bench.kvm_ssh_parallel
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from collectors.kvm import KvmCollector, KvmTarget
from fixtures.libvirtd import LabDomain, define_domains, ensure_libvirtd, remove_domains
from fixtures.sshd import start_sshd

DOMAINS = [LabDomain(f"i-902-{i}-VM", running=i < 2) for i in range(1, 6)]
POOL = "cs-inventory-bench"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=20)
    parser.add_argument("--parallel", type=int, default=20)
    options = parser.parse_args()
    ensure_libvirtd()
    define_domains(DOMAINS, POOL, Path("/var/lib/libvirt/images") / POOL)
    addresses = tuple(f"127.0.0.{i}" for i in range(1, options.hosts + 1))
    with tempfile.TemporaryDirectory() as tmp:
        server = start_sshd(Path(tmp), addresses=addresses)
        try:
            def scan(parallel: int) -> tuple[float, list[float], int]:
                target = KvmTarget(name="bench", hosts=addresses, ssh_port=server.port, ssh_key=server.client_key,
                                   known_hosts=server.known_hosts, parallel=parallel)
                started = time.perf_counter()
                result = KvmCollector(target).collect()
                wall = time.perf_counter() - started
                assert result.status == "ok", result.error
                return wall, [e.duration_s for e in result.endpoints], len(result.inventory.vms)

            wall, per_host, vms = scan(options.parallel)
            serial_wall, serial_hosts, _ = scan(1)
        finally:
            server.stop()
            remove_domains([d.name for d in DOMAINS], POOL)
    print(f"kvm over qemu+ssh with SSH facts: {options.hosts} host names, {vms} VMs in all")
    print(f"  parallel {options.parallel}: wall {wall:.2f} s; slowest host {max(per_host):.2f} s; "
          f"sum of per-host times {sum(per_host):.2f} s")
    print(f"  wall / slowest host = {wall / max(per_host):.2f}; sum / wall = {sum(per_host) / wall:.1f}× "
          f"(hosts overlapped)")
    print(f"  for comparison, parallel 1: wall {serial_wall:.2f} s (sum {sum(serial_hosts):.2f} s), "
          f"{serial_wall / wall:.1f}× slower; this machine has 2 cores")


if __name__ == "__main__":
    main()
