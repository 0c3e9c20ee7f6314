"""A 10,000-VM KVM estate: 200 libvirt test-driver hosts × 50 domains, scanned and stored.

Runs the real `cs-inventory scan` (installed console script) in a child process and reports
its wall time and peak memory (max RSS), plus rows stored. Run: .venv/bin/python -m bench.kvm_testdriver
"""

from __future__ import annotations

import argparse
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fixtures.testdriver import write_cluster


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--domains", type=int, default=50)
    parser.add_argument("--parallel", type=int, default=16)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        hosts = write_cluster(folder / "hosts", options.hosts, options.domains)
        config = folder / "bench.toml"
        config.write_text(
            f'[database]\npath = "bench.db"\n[[kvm]]\nname = "bench"\ncluster = "c1"\n'
            f'hosts = [{", ".join(repr(h.name).replace(chr(39), chr(34)) for h in hosts)}]\n'
            f'uri = "test://{folder / "hosts"}/{{host}}.xml"\nssh_facts = false\nparallel = {options.parallel}\n')
        tool = Path(sys.executable).with_name("cs-inventory")
        started = time.perf_counter()
        proc = subprocess.run([str(tool), "scan", "--config", str(config), "--quiet"], capture_output=True, text=True,
                              env={**os.environ})
        wall = time.perf_counter() - started
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        if proc.returncode != 0:
            sys.exit(f"scan failed ({proc.returncode}): {proc.stderr[-500:]}")
        db = sqlite3.connect(folder / "bench.db")
        tables = ("hosts", "vms", "vm_disks", "vm_nics")
        counts = {t: db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in tables}
        calls = db.execute("SELECT SUM(api_calls) FROM targets").fetchone()[0]
    print(f"kvm test-driver scan: {options.hosts} hosts × {options.domains} domains, parallel {options.parallel}")
    print(f"  wall {wall:.2f} s (process start to exit, store write included); peak RSS {peak_kib / 1024:.0f} MiB")
    print(f"  stored {counts}; {calls:,} libvirt calls; {counts['vms'] / wall:,.0f} VMs/s end to end")


if __name__ == "__main__":
    main()
