"""`cs-inventory scan` of a 10,000-VM vCenter, process start to exit, against the raw floor, in one run.

govmomi's simulator: 20 clusters × 25 hosts × 500 VMs (each with a disk and a NIC), no standalone host, HTTPS.
The raw floor is the time until every byte of the one RetrievePropertiesEx for the VMs' properties (devices
included; its Continue pages too) has arrived, replayed as plain HTTP on one connection: nothing parsed.
Then the command an operator runs — the installed console script, in a child process, collecting, storing
and checking into a new database — with its wall time, peak RSS (its own, from wait4), CPU time, and, from its
JSON event log, how long the checks took (and their CPU). Floor and scan alternate, ``--repeat`` times each; medians are
printed (the machine is shared: a single run says little), with the ratios: scan / floor (goal ≤ 2),
checks / floor (goal ≤ 0.1), peak RSS (goal ≤ 250 MiB). The CPU seconds of the scan process and of the
simulator while it serves the scan are printed too: on this machine's cores their sum bounds the wall time.

Where the scan's time goes, in the same run: its phases, from its event log (start-up until the scan starts,
reading, normalising, storing and checking, exit); how many of the machine's cores were busy in each phase
(sampled from /proc/stat: a phase that leaves a core idle is one that other work could overlap); and the scan's
own requests — the ContainerView pages of VMs two in flight, the hosts' pages, the other types — sent by the
collector's own code with their answers left unread (the fast parser skipped; the simulator's work for exactly
what the scan asks for, and our process nearly idle).

``--sizes 125,250,500,1000`` (VMs per cluster) runs each size on its own simulator and prints the scale
curves (time and memory against VMs, fitted slope, local exponents).

``--compare OTHER/bin/cs-inventory`` runs another build's console script alongside, in the same run.

Run: .venv/bin/python -m bench.vmware_scan [--clusters 20 --hosts 25 --sizes 500 --repeat 5]
(reinstall first, `.venv/bin/pip install -q --no-deps --force-reinstall .`: the console script is what is timed)
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim

from bench.curves import describe
from collectors.vmware import PAGE_SIZE, PROPERTIES
from collectors.vmware_fast import continue_body, retrieve_body
from fixtures.vcsim import Vcsim, start_vcsim
from fixtures.xapi.tls import self_signed

TOOL = Path(sys.executable).with_name("cs-inventory")
USER, PASSWORD = "bench", "bench"
TICK = os.sysconf("SC_CLK_TCK")


def cpu_of(pid: int) -> float:
    """CPU seconds (user + system) a running process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _jiffies() -> tuple[int, int]:
    """The machine's CPU time so far, in clock ticks: (busy, total) over all cores (/proc/stat)."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return sum(ticks) - ticks[3] - ticks[4], sum(ticks)  # idle and iowait are not busy


class BusyCores:
    """How many of the machine's cores were busy, sampled every 20 ms on a thread while a scan runs: all the
    machine's load (ours, the simulator's, anyone else's), which is what a phase could have used."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> BusyCores:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while True:
            self.samples.append((time.time(), *_jiffies()))
            if self._stop.wait(0.02):
                return

    def between(self, start: float, end: float) -> float:
        """Busy cores on average from ``start`` to ``end`` (wall clock); NaN for a span under two samples."""
        inside = [s for s in self.samples if start <= s[0] <= end]
        if len(inside) < 2 or inside[-1][2] == inside[0][2]:
            return float("nan")
        (_, busy, total), (_, busy_end, total_end) = inside[0], inside[-1]
        return (busy_end - busy) / (total_end - total) * (os.cpu_count() or 1)


def raw_floor(sim: Vcsim, ca: Path) -> tuple[float, int, float]:
    """The VMs' RetrievePropertiesEx (+ Continue pages) as plain HTTP: seconds until the last byte, bytes, and the
    simulator's CPU seconds for it."""
    context = ssl.create_default_context(cafile=str(ca))
    si = SmartConnect(host=sim.host, port=sim.port, user=USER, pwd=PASSWORD, sslContext=context)
    try:
        content = si.RetrieveContent()
        kind, paths = PROPERTIES["vms"]
        view = content.viewManager.CreateContainerView(content.rootFolder, [getattr(vim, kind)], True)
        pc = content.propertyCollector._moId
        headers = {"Cookie": si._stub.cookie, "SOAPAction": '"urn:vim25/6.5"',
                   "Content-Type": "text/xml; charset=utf-8"}
        conn = http.client.HTTPSConnection(sim.host, sim.port, context=context, timeout=600)
        size = 0
        server_cpu = cpu_of(sim.process.pid)
        started = time.perf_counter()
        body = retrieve_body(pc, view._moId, kind, paths, PAGE_SIZE)
        while body:
            conn.request("POST", "/sdk", body.encode(), headers)
            data = conn.getresponse().read()
            size += len(data)
            token = re.search(rb"<token>([^<]+)</token>", data[-4096:]) or re.search(rb"<token>([^<]+)</token>", data)
            body = continue_body(pc, token.group(1).decode()) if token else ""
        elapsed = time.perf_counter() - started
        server_cpu = cpu_of(sim.process.pid) - server_cpu
        conn.close()
        view.Destroy()
        return elapsed, size, server_cpu
    finally:
        Disconnect(si)


def requests_unread(sim: Vcsim, config: Path) -> tuple[float, float]:
    """The scan's own requests (``fetch_vcenter``, as the collector sends them) with the answers left unread: the
    fast path's parser returns nothing. Seconds from logged in to the last answer, and the simulator's CPU seconds.
    What is left of our process's work: pyvmomi reading the small types, and the answers' bytes decoded."""
    from collectors import vmware, vmware_fast
    from collectors.base import Calls
    from inventory.scan import load_config

    (target,) = load_config(config).targets
    collector = vmware.VmwareCollector(target)
    parse, slim = vmware_fast.parse_objects, vmware.slim_host
    vmware_fast.parse_objects = lambda text, nested=False: []  # type: ignore[assignment]
    vmware.slim_host = lambda record: record  # type: ignore[assignment]
    try:
        with collector.connect(target.endpoint, Calls()) as session:
            server_cpu = cpu_of(sim.process.pid)
            started = time.perf_counter()
            vmware.fetch_vcenter(session, target)
            return time.perf_counter() - started, cpu_of(sim.process.pid) - server_cpu
    finally:
        vmware_fast.parse_objects, vmware.slim_host = parse, slim


@dataclass
class ScanRun:
    wall_s: float
    peak_mib: float
    cpu_s: float
    server_cpu_s: float
    checks_s: float
    checks_cpu_s: float
    findings: int
    vms: int
    phases: tuple[float, ...]  # seconds: start-up, reading, normalising, storing + checks, exit (PHASES)
    busy_cores: tuple[float, ...]  # the machine's busy cores in each phase (exit: NaN, too short to sample)


# the events a scan logs, in order; the phases are the times between them (process start and exit around them)
PHASE_EVENTS = ("scan started", "endpoint read", "target read", "scan stored")
PHASES = ("start-up", "reading", "normalising", "storing + checks", "exit")


def phase_marks(events: list[dict[str, Any]], started: float, ended: float) -> list[float]:
    """When each phase began, and the exit (wall clock), from a scan's JSON events (to the millisecond)."""
    at = {e["message"]: datetime.fromisoformat(e["time"]).timestamp() for e in events}
    return [started, *(at[name] for name in PHASE_EVENTS), ended]


def phases_of(events: list[dict[str, Any]], started: float, ended: float) -> tuple[float, ...]:
    """The phases' seconds from a scan's JSON events."""
    return tuple(later - earlier for earlier, later in pairwise(phase_marks(events, started, ended)))


def run_scan(folder: Path, config: Path, number: int, sim: Vcsim, tool: Path = TOOL) -> ScanRun:
    """The console script as a user runs it; its own peak RSS and CPU from wait4, the checks from its event log."""
    db, log = folder / f"scan-{number}.db", folder / f"scan-{number}.log"
    log.unlink(missing_ok=True)  # each run reads its own events
    server_cpu = cpu_of(sim.process.pid)
    with BusyCores() as cores:
        started, clock = time.perf_counter(), time.time()
        proc = subprocess.Popen([str(tool), "--log-file", str(log), "--log-format", "json", "scan", "--config",
                                 str(config), "--db", str(db), "--quiet", "--fail-on", "never"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
    ended = clock + wall
    server_cpu = cpu_of(sim.process.pid) - server_cpu
    proc.returncode = os.waitstatus_to_exitcode(status)
    out, errors = proc.communicate()
    if proc.returncode not in (0, 1):
        sys.exit(f"scan failed ({proc.returncode}): {(out + errors).decode()[-800:]}")
    events = [json.loads(line) for line in log.read_text().splitlines()]
    stored = next(e for e in events if e["message"] == "scan stored")
    checked = next((e for e in events if e["message"] == "checks run"), {})
    for leftover in folder.glob(f"scan-{number}.db*"):
        leftover.unlink()
    return ScanRun(wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime, server_cpu,
                   checked.get("duration_s", float("nan")), checked.get("cpu_s", float("nan")),
                   checked.get("findings", -1), stored.get("vms", 0), phases_of(events, clock, ended),
                   tuple(cores.between(*span) for span in pairwise(phase_marks(events, clock, ended))))


def write_config(folder: Path, sim: Vcsim, ca: Path, version: str) -> Path:
    config = folder / "bench.toml"
    config.write_text(f'[cloudstack]\nversion = "{version}"\n[database]\npath = "unused.db"\n'
                      f'[[vmware]]\nname = "vc"\nhost = "{sim.host}"\nport = {sim.port}\nusername = "{USER}"\n'
                      f'password_env = "CSI_BENCH_VC"\nca_file = "{ca}"\n')
    os.environ["CSI_BENCH_VC"] = PASSWORD
    return config


@dataclass
class Size:
    clusters: int
    hosts: int
    vms: int  # per cluster
    boot_s: float
    floors: list[tuple[float, int, float]]
    scans: list[ScanRun]
    unread: list[tuple[float, float]]  # the scan's requests, answers unread: seconds, simulator CPU seconds
    others: dict[str, list[ScanRun]]  # other builds' console scripts, run alongside (--compare)

    @property
    def floor(self) -> float:
        return statistics.median(f[0] for f in self.floors)

    def median(self, field: str) -> float:
        return statistics.median(getattr(s, field) for s in self.scans)


def measure(clusters: int, hosts: int, vms: int, repeat: int, version: str, compare: list[Path]) -> Size:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ca, _ = tls = self_signed(folder / "tls", name="vcenter")
        started = time.perf_counter()
        sim = start_vcsim(clusters=clusters, cluster_hosts=hosts, standalone_hosts=0, vms=vms, username=USER,
                          password=PASSWORD, tls=tls)
        boot = time.perf_counter() - started
        try:
            config = write_config(folder, sim, ca, version)
            raw_floor(sim, ca)  # warm-up: the simulator's first answer builds caches
            floors, scans, unread = [], [], []
            others: dict[str, list[ScanRun]] = {str(tool): [] for tool in compare}
            for number in range(repeat):  # floor and each build in turn: the machine's load falls on all alike
                floors.append(raw_floor(sim, ca))
                unread.append(requests_unread(sim, config))
                scans.append(run_scan(folder, config, number, sim))
                for tool in compare:
                    others[str(tool)].append(run_scan(folder, config, number, sim, tool))
        finally:
            sim.stop()
    return Size(clusters, hosts, vms, boot, floors, scans, unread, others)


def startup(repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run([str(TOOL), "--version"], check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def report(size: Size) -> None:
    floor, scans = size.floor, size.scans
    wall, checks = size.median("wall_s"), size.median("checks_s")
    cpu, server = size.median("cpu_s"), size.median("server_cpu_s")
    print(f"vcenter simulator: {size.clusters} clusters × {size.hosts} hosts × {size.vms} VMs = {scans[0].vms:,} VMs "
          f"stored, {scans[0].findings:,} findings (simulator up in {size.boot_s:.1f} s); medians of {len(scans)} runs")
    print(f"  raw floor (VMs' RetrievePropertiesEx incl. devices, {size.floors[0][1] / 2**20:.0f} MiB): {floor:.2f} s  "
          f"[{', '.join(f'{f[0]:.2f}' for f in size.floors)}]; the simulator's CPU for it "
          f"{statistics.median(f[2] for f in size.floors):.2f} s")
    print(f"  cs-inventory scan, process start to exit: {wall:.2f} s  [{', '.join(f'{s.wall_s:.2f}' for s in scans)}]"
          f"  = {wall / floor:.2f}× the floor (goal ≤ 2)")
    checks_cpu = size.median("checks_cpu_s")
    print(f"    checks {checks:.3f} s ({checks_cpu:.3f} s of CPU) = {checks / floor:.3f}× the floor (goal ≤ 0.1); peak "
          f"RSS {size.median('peak_mib'):.0f} MiB [{', '.join(f'{s.peak_mib:.0f}' for s in scans)}] (goal ≤ 250)")
    bound = (cpu + server) / (os.cpu_count() or 1)  # both processes' work, every core busy from start to exit
    print(f"    CPU: the scan process {cpu:.2f} s, the simulator serving it {server:.2f} s: on {os.cpu_count()} cores "
          f"no less than {bound:.2f} s of wall = {bound / floor:.2f}× the floor, the scan {wall / bound:.2f}× that")
    phases = [statistics.median(s.phases[i] for s in scans) for i in range(len(PHASES))]
    said = [f"{name} {seconds:.2f} s" for name, seconds in zip(PHASES, phases, strict=True)]
    print("    phases (medians): " + ", ".join(said))
    busy = [statistics.median(s.busy_cores[i] for s in scans) for i in range(len(PHASES) - 1)]  # exit: too short
    print("    the machine's busy cores in each phase (medians; all its load, ours and the simulator's): " + ", ".join(
        f"{name} {cores:.1f}" for name, cores in zip(PHASES, busy, strict=False)) + f" of {os.cpu_count()}")
    unread = statistics.median(u[0] for u in size.unread)
    print(f"  the scan's own requests, answers unread: {unread:.2f} s = {unread / floor:.2f}× the floor "
          f"[{', '.join(f'{u[0]:.2f}' for u in size.unread)}]; the simulator's CPU for them "
          f"{statistics.median(u[1] for u in size.unread):.2f} s")
    for tool, runs in size.others.items():
        wall = statistics.median(r.wall_s for r in runs)
        print(f"  compared, in the same run: {tool}: {wall:.2f} s  [{', '.join(f'{r.wall_s:.2f}' for r in runs)}] = "
              f"{wall / floor:.2f}× the floor; checks {statistics.median(r.checks_s for r in runs):.3f} s "
              f"({statistics.median(r.findings for r in runs):,.0f} findings); peak RSS "
              f"{statistics.median(r.peak_mib for r in runs):.0f} MiB; CPU {statistics.median(r.cpu_s for r in runs):.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--clusters", type=int, default=20)
    parser.add_argument("--hosts", type=int, default=25, help="hosts per cluster")
    parser.add_argument("--sizes", default="500", help="VMs per cluster, comma-separated (several: scale curves)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--cloudstack-version", default="4.20")
    parser.add_argument("--compare", action="append", type=Path, default=[], metavar="CS_INVENTORY",
                        help="another build's console script, run alongside (e.g. an older release's venv)")
    options = parser.parse_args()
    sizes = [measure(options.clusters, options.hosts, int(v), options.repeat, options.cloudstack_version,
                     options.compare) for v in options.sizes.split(",")]
    for size in sizes:
        report(size)
    print(f"  `cs-inventory --version`: {startup(options.repeat):.2f} s")
    if len(sizes) > 1:
        vms = [s.scans[0].vms for s in sizes]

        def curve(values: list[float]) -> list[tuple[float, float]]:
            return [(float(n), v) for n, v in zip(vms, values, strict=True)]
        print("scale curves (medians):")
        print(describe("scan wall", "s", curve([s.median("wall_s") for s in sizes]), 1000, "1,000 VMs"))
        print(describe("scan / floor", "×", curve([s.median("wall_s") / s.floor for s in sizes]), 1000, "1,000 VMs"))
        print(describe("peak RSS", "MiB", curve([s.median("peak_mib") for s in sizes]), 1000, "1,000 VMs"))
        print(describe("checks", "s", curve([s.median("checks_s") for s in sizes]), 1000, "1,000 VMs"))

if __name__ == "__main__":
    main()
