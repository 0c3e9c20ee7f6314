"""KVM estates of libvirt test-driver hosts × 50 domains, scanned by `cs-inventory scan`, at several sizes and
`parallel` settings: wall time against the slowest host, memory, and the scale curves.

Every host is a libvirt test-driver file (libvirt's own code path, no daemon), one [[kvm]] target of them all
(one cluster), SSH facts off. The installed console script runs in a child process (reinstall first) into a new
database; its wall time and its own peak RSS and CPU come from wait4, each host's time from the `endpoints`
rows it stored. Printed per run: the wall; the slowest host; the sum of host times; the best a pool of
`parallel` workers could do (the larger of the slowest host and the sum / parallel, and never less than the sum
of the hosts' CPU over this machine's cores); and the wall over that. Then, per `parallel`, the curves against
the number of hosts. Medians of ``--repeat`` runs.
Run: .venv/bin/python -m bench.kvm_testdriver [--hosts 200,500,1000 --domains 50 --parallel 8,32,64 --repeat 3]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.curves import describe
from fixtures.testdriver import write_cluster

TOOL = Path(sys.executable).with_name("cs-inventory")


@dataclass
class Run:
    wall_s: float
    peak_mib: float
    cpu_s: float
    slowest_s: float
    host_sum_s: float
    vms: int
    findings: int


def scan_once(folder: Path, config: Path, number: int) -> Run:
    db = folder / f"scan-{number}.db"
    started = time.perf_counter()
    proc = subprocess.Popen([str(TOOL), "scan", "--config", str(config), "--db", str(db), "--quiet", "--fail-on",
                             "never"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    out, errors = proc.communicate()
    if proc.returncode not in (0, 1):
        sys.exit(f"scan failed ({proc.returncode}): {(out + errors).decode()[-800:]}")
    with sqlite3.connect(db) as conn:
        durations = [row[0] for row in conn.execute("SELECT duration_s FROM endpoints")]
        vms = conn.execute("SELECT COUNT(*) FROM vms").fetchone()[0]
        findings = conn.execute("SELECT COUNT(*) FROM finding_objects").fetchone()[0]
    for leftover in folder.glob(f"scan-{number}.db*"):
        leftover.unlink()
    return Run(wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime, max(durations), sum(durations), vms,
               findings)


def estate(folder: Path, hosts: int, domains: int, parallel: int) -> Path:
    files = folder / f"hosts-{hosts}"
    if not files.exists():
        write_cluster(files, hosts, domains)
    names = ", ".join(f'"kvm{index + 1:03d}"' for index in range(hosts))
    config = folder / f"estate-{hosts}-{parallel}.toml"
    config.write_text(f'[cloudstack]\nversion = "4.20"\n[database]\npath = "unused.db"\n[[kvm]]\nname = "estate"\n'
                      f'cluster = "c1"\nhosts = [{names}]\nuri = "test://{files}/{{host}}.xml"\nssh_facts = false\n'
                      f'parallel = {parallel}\n')
    return config


def median(runs: list[Run], field: str) -> float:
    return statistics.median(getattr(r, field) for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--hosts", default="200,500,1000")
    parser.add_argument("--domains", type=int, default=50)
    parser.add_argument("--parallel", default="8,32,64")
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args()
    sizes = [int(h) for h in options.hosts.split(",")]
    parallels = [int(p) for p in options.parallel.split(",")]
    cores = os.cpu_count() or 1
    results: dict[tuple[int, int], list[Run]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for hosts in sizes:
            configs = {p: estate(folder, hosts, options.domains, p) for p in parallels}
            for number in range(options.repeat):  # the settings alternate: the machine's load falls on all alike
                for parallel in parallels:
                    results.setdefault((hosts, parallel), []).append(scan_once(folder, configs[parallel], number))
    print(f"kvm test-driver estates, {options.domains} domains per host, one target, SSH facts off; medians of "
          f"{options.repeat} runs; {cores} cores")
    for (hosts, parallel), runs in sorted(results.items()):
        wall, slowest, total = median(runs, "wall_s"), median(runs, "slowest_s"), median(runs, "host_sum_s")
        best = max(slowest, total / parallel, median(runs, "cpu_s") / cores)
        print(f"  {hosts:5d} hosts ({runs[0].vms:,} VMs, {runs[0].findings:,} finding objects), parallel {parallel:2d}: "
              f"wall {wall:6.2f} s; slowest host {slowest:.2f} s; hosts' sum {total:7.2f} s; best possible "
              f"{best:5.2f} s → wall / best {wall / best:.2f}; CPU {median(runs, 'cpu_s'):.2f} s; peak RSS "
              f"{median(runs, 'peak_mib'):.0f} MiB")
    if len(sizes) > 1:
        print("scale curves (medians), against hosts:")
        for parallel in parallels:
            runs_by = [(float(h), results[(h, parallel)]) for h in sizes]
            print(describe(f"parallel {parallel}: wall", "s", [(h, median(r, "wall_s")) for h, r in runs_by], 100,
                           "100 hosts"))
            print(describe(f"parallel {parallel}: peak RSS", "MiB", [(h, median(r, "peak_mib")) for h, r in runs_by],
                           100, "100 hosts"))


if __name__ == "__main__":
    main()
