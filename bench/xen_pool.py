"""A 64-host XCP-ng pool at 2,500 / 5,000 / 10,000 VMs (2 disks and 2 NICs each) behind the XAPI fixture server
(its own process, 1 ms latency per call), scanned by `cs-inventory scan`; and at the largest size a naive
client that calls get_record per object, on a sample of each class, extrapolated.

Per size: the console script's wall time (process start to exit, into a new database, checks included), its
own peak RSS and CPU (wait4), the fixture server's CPU while it answered (it is Python; it writes the next class's
answer while the scan reads the last, so the wall time is less than the two CPU times added), and the API calls
stored; then the curves against VMs. ``--compare OTHER/bin/cs-inventory`` runs another build's console
script alongside, in the same run, against the same server. Medians of ``--repeat`` runs (reinstall first: the
console script is what is timed).
Run: .venv/bin/python -m bench.xen_pool [--hosts 64 --vms 2500,5000,10000 --latency-ms 1 --repeat 3]
[--compare OTHER/bin/cs-inventory]
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

import XenAPI

from bench.curves import describe
from collectors.xenserver import CLASSES
from fixtures.xapi.synth import generate

TOOL = Path(sys.executable).with_name("cs-inventory")
TICK = os.sysconf("SC_CLK_TCK")


def cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


@dataclass
class Run:
    wall_s: float
    peak_mib: float
    cpu_s: float
    server_cpu_s: float
    calls: int
    vms: int


def serve(dump: Path, latency_ms: float) -> tuple[subprocess.Popen[str], str]:
    server = subprocess.Popen([sys.executable, "-m", "fixtures.xapi.server", "--dump", str(dump), "--latency-ms",
                               str(latency_ms)], stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    return server, server.stdout.readline().strip()


def scan_once(folder: Path, config: Path, server: subprocess.Popen[str], number: int, tool: Path = TOOL) -> Run:
    db = folder / f"scan-{number}.db"
    server_cpu = cpu_of(server.pid)
    started = time.perf_counter()
    proc = subprocess.Popen([str(tool), "scan", "--config", str(config), "--db", str(db), "--quiet", "--fail-on",
                             "never"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    server_cpu = cpu_of(server.pid) - server_cpu
    proc.returncode = os.waitstatus_to_exitcode(status)
    out, errors = proc.communicate()
    if proc.returncode not in (0, 1):
        sys.exit(f"scan failed ({proc.returncode}): {(out + errors).decode()[-800:]}")
    with sqlite3.connect(db) as conn:
        calls = conn.execute("SELECT SUM(api_calls) FROM targets").fetchone()[0]
        vms = conn.execute("SELECT COUNT(*) FROM vms").fetchone()[0]
    for leftover in folder.glob(f"scan-{number}.db*"):
        leftover.unlink()
    return Run(wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime, server_cpu, calls, vms)


def naive_walk(url: str, sample: float) -> tuple[float, int, int]:
    """get_all + get_record per object, as many scripts do; returns (seconds, calls, objects) for the sample."""
    session = XenAPI.Session(url)
    session.xenapi.login_with_password("root", "xenroot", "2.0", "bench")
    calls, objects = 1, 0
    started = time.perf_counter()
    for cls in CLASSES:
        api = getattr(session.xenapi, cls)
        refs = api.get_all()
        calls += 1
        for ref in refs[: max(1, int(len(refs) * sample))] if refs else []:
            api.get_record(ref)
            calls += 1
        objects += len(refs)
    elapsed = time.perf_counter() - started
    session.xenapi.session.logout()
    return elapsed, calls, objects


def median(runs: list[Run], field: str) -> float:
    return statistics.median(getattr(r, field) for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--hosts", type=int, default=64)
    parser.add_argument("--vms", default="2500,5000,10000")
    parser.add_argument("--latency-ms", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sample", type=float, default=0.02, help="share of each class the naive walk reads (0: none)")
    parser.add_argument("--compare", action="append", type=Path, default=[], metavar="CS_INVENTORY",
                        help="another build's console script, run alongside (e.g. an older release's venv)")
    options = parser.parse_args()
    sizes = [int(v) for v in options.vms.split(",")]
    os.environ["CSI_BENCH_PASSWORD"] = "xenroot"
    results: dict[int, list[Run]] = {}
    compared: dict[tuple[int, Path], list[Run]] = {}
    naive: tuple[float, int, int] | None = None
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for vms in sizes:
            dump = folder / f"pool-{vms}.xml"
            dump.write_text(generate(options.hosts, vms, "xcp-ng-8.3", seed="bench"))
            server, url = serve(dump, options.latency_ms)
            try:
                config = folder / "bench.toml"
                config.write_text(f'[cloudstack]\nversion = "4.20"\n[database]\npath = "unused.db"\n[[xenserver]]\n'
                                  f'name = "pool"\nurl = "{url}"\npassword_env = "CSI_BENCH_PASSWORD"\n')
                results[vms] = []
                for number in range(options.repeat):  # each build in turn: the machine's load falls on all alike
                    results[vms].append(scan_once(folder, config, server, number))
                    for tool in options.compare:
                        compared.setdefault((vms, tool), []).append(scan_once(folder, config, server, number, tool))
                if vms == max(sizes) and options.sample > 0:
                    naive = naive_walk(url, options.sample)
            finally:
                server.terminate()
                server.wait()
    print(f"xenserver pool of {options.hosts} hosts behind the XAPI fixture server ({options.latency_ms:g} ms per "
          f"call), `cs-inventory scan` end to end; medians of {options.repeat} runs")
    for vms, runs in results.items():
        print(f"  {runs[0].vms:6,} VMs: wall {median(runs, 'wall_s'):.2f} s, {runs[0].calls} API calls; scan CPU "
              f"{median(runs, 'cpu_s'):.2f} s, fixture server CPU {median(runs, 'server_cpu_s'):.2f} s; peak RSS "
              f"{median(runs, 'peak_mib'):.0f} MiB")
        for tool in options.compare:
            other = compared[(vms, tool)]
            print(f"          compared, in the same run: {tool}: wall {median(other, 'wall_s'):.2f} s, scan CPU "
                  f"{median(other, 'cpu_s'):.2f} s, fixture server CPU {median(other, 'server_cpu_s'):.2f} s; "
                  f"peak RSS {median(other, 'peak_mib'):.0f} MiB")
    if naive is not None:
        seconds, calls, objects = naive
        per_call = seconds / max(1, calls - 1)
        full = per_call * (1 + len(CLASSES) + objects)
        print(f"  naive get_record walk at {max(sizes):,} VMs: {calls - 1 - len(CLASSES):,} records sampled, "
              f"{per_call * 1000:.2f} ms per call → {1 + len(CLASSES) + objects:,} calls, ≈ {full:.0f} s: "
              f"{full / median(results[max(sizes)], 'wall_s'):.0f}× our scan")
    if len(sizes) > 1:
        print("scale curves (medians):")
        print(describe("scan wall", "s", [(float(v), median(r, "wall_s")) for v, r in results.items()], 1000,
                       "1,000 VMs"))
        print(describe("peak RSS", "MiB", [(float(v), median(r, "peak_mib")) for v, r in results.items()], 1000,
                       "1,000 VMs"))
        print(describe("scan CPU", "s", [(float(v), median(r, "cpu_s")) for v, r in results.items()], 1000,
                       "1,000 VMs"))


if __name__ == "__main__":
    main()
