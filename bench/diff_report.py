"""`diff` and `report` of two scans of a big estate: 25,000 / 50,000 / 100,000 VMs, process start to exit.

Two scans of the synthetic KVM estate of ``bench.store_checks``, checked, in one database; between them 1 % of
the VMs (with their disks and NIC) went away, 1 % are new and 2 % were stopped or started. Then the console
script as an operator runs it: `cs-inventory diff` (the last two scans) and `cs-inventory report` (which diffs
them too), each in a child process with its wall time and peak RSS (wait4). The floor: SQLite decoding every row
of both scans in the tables a diff compares (the page cache warm, as it is for the commands).
``--compare OTHER/bin/cs-inventory`` runs another build's console script alongside, in the same run.
Run: .venv/bin/python -m bench.diff_report [--vms 25000,50000,100000 --repeat 3]
(reinstall first, `.venv/bin/pip install -q --no-deps --force-reinstall .`: the console script is what is timed)
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.curves import describe
from bench.store_checks import estate

TOOL = Path(sys.executable).with_name("cs-inventory")
COMMANDS = (("diff", ["diff"]), ("report", ["report"]))


def write_database(path: Path, vms: int) -> None:
    """Two checked scans of the estate, the second a while later."""
    from inventory import open_store, run_checks
    from inventory.bounds import bound, unique
    from inventory.store import ScanRow

    first = estate(vms)
    second = estate(vms)
    inv = second.inventory
    gone = {vm.key for index, vm in enumerate(inv.vms) if index % 100 == 7}
    inv.vms = [dataclasses.replace(vm, power_state="stopped" if vm.power_state == "running" else "running")
               if index % 50 == 3 else vm for index, vm in enumerate(inv.vms) if vm.key not in gone]
    inv.vm_disks = [d for d in inv.vm_disks if d.vm_key not in gone]
    inv.vm_nics = [n for n in inv.vm_nics if n.vm_key not in gone]
    for index in range(len(gone)):
        vm = dataclasses.replace(inv.vms[index], key=f"new-{index}", uuid=f"new-{index}",
                                 name=f"i-2-{10**7 + index}-VM")
        inv.vms.append(vm)
        mac = f"06:ff:00:{index >> 8 & 255:02x}:{index & 255:02x}:01"
        inv.vm_nics.append(dataclasses.replace(inv.vm_nics[index], vm_key=vm.key, mac=mac))
    with open_store(path) as store:
        for number, result in enumerate((first, second)):
            bound(result.inventory)
            unique(result.inventory)
            scan_id = store.write_scan(ScanRow(f"2026-11-2{number}T00:00:00+00:00", f"2026-11-2{number}T00:01:00+00:00",
                                               "ok", None, "4.20", "bench", None), [result])
            run_checks(store, scan_id, "4.20", scanned=[result])


def floor(path: Path) -> float:
    """Seconds for SQLite to decode every row of the two scans in the tables a diff compares, in one process
    already started, nothing made of them (each row's last column read: the whole record)."""
    import sqlite3

    from inventory.diff import KEYS
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        started = time.perf_counter()
        for table in KEYS:
            last = [row[1] for row in conn.execute(f"PRAGMA table_info({table})")][-1]
            conn.execute(f"SELECT count(*) FROM {table} WHERE scan_id IN (1, 2) AND quote({last}) IS NOT NULL").fetchone()
        return time.perf_counter() - started
    finally:
        conn.close()


def run(tool: Path, arguments: list[str], db: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one command, its output thrown away."""
    started = time.perf_counter()
    proc = subprocess.Popen([str(tool), *arguments, "--db", str(db)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    errors = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) not in (0, 1):
        sys.exit(f"{tool} {' '.join(arguments)} failed: {errors[-800:]}")
    return wall, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--vms", default="25000,50000,100000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--compare", action="append", type=Path, default=[], metavar="CS_INVENTORY",
                        help="another build's console script, run alongside (e.g. an older release's venv)")
    parser.add_argument("--write", nargs=2, metavar=("DB", "VMS"), help=argparse.SUPPRESS)  # a child: one database
    options = parser.parse_args()
    if options.write:
        write_database(Path(options.write[0]), int(options.write[1]))
        return
    sizes = [int(v) for v in options.vms.split(",")]
    tools = [TOOL, *options.compare]
    medians: dict[tuple[str, str, int], tuple[float, float]] = {}
    floors: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for vms in sizes:
            db = Path(tmp) / f"estate-{vms}.db"
            # in a child: this process stays small, so the commands' peak RSS is theirs (a fork starts as its parent)
            subprocess.run([sys.executable, "-m", "bench.diff_report", "--write", str(db), str(vms)], check=True)
            runs: dict[tuple[str, str], list[tuple[float, float]]] = {}
            floor_runs = []
            for _ in range(options.repeat):  # floor and every build in turn: the machine's load falls on all alike
                floor_runs.append(floor(db))
                for tool in tools:
                    for name, arguments in COMMANDS:
                        runs.setdefault((str(tool), name), []).append(run(tool, arguments, db))
            floors[vms] = statistics.median(floor_runs)
            print(f"{vms:,} VMs, two scans: database {db.stat().st_size / 2**20:.0f} MiB, its rows decoded by SQLite "
                  f"in {floors[vms]:.3f} s (the floor); medians of {options.repeat} runs")
            for (tool, name), values in runs.items():
                wall = statistics.median(v[0] for v in values)
                peak = statistics.median(v[1] for v in values)
                medians[(tool, name, vms)] = (wall, peak)
                each = ", ".join(f"{v[0]:.2f}" for v in values)
                print(f"  {name:6} {wall:6.2f} s = {wall / floors[vms]:5.1f}× the floor  [{each}]  peak RSS {peak:4.0f} MiB"
                      f"  ({tool})")
            db.unlink()
    if len(sizes) > 1:
        print("scale curves (medians, this build):")
        for name, _ in COMMANDS:
            print(describe(f"{name} wall", "s", [(float(v), medians[(str(TOOL), name, v)][0]) for v in sizes],
                           10_000, "10,000 VMs"))
            print(describe(f"{name} peak RSS", "MiB", [(float(v), medians[(str(TOOL), name, v)][1]) for v in sizes],
                           10_000, "10,000 VMs"))


if __name__ == "__main__":
    main()
