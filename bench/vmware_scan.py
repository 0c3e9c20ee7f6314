"""`cs-inventory scan` of a 10,000-VM vCenter, process start to exit, against the raw floor, in one run.

govmomi's simulator: 20 clusters × 25 hosts × 500 VMs (each with a disk and a NIC), no standalone host, HTTPS.
The raw floor is the time until every byte of the one RetrievePropertiesEx for the VMs' properties (devices
included; its Continue pages too) has arrived, replayed as plain HTTP on one connection: nothing parsed.
Then the command an operator runs — the installed console script, in a child process, collecting, storing
and checking into a fresh database — with its wall time, peak RSS (its own, from wait4) and, from its JSON
event log, how long collection + store and the checks took. Floor and scan alternate, ``--repeat`` times
each; medians are printed (the machine is shared: a single run says little), with the ratios:
scan / floor (goal ≤ 2), checks / floor (goal ≤ 0.1), peak RSS (goal ≤ 250 MiB).

Run: .venv/bin/python -m bench.vmware_scan [--clusters 20 --hosts 25 --vms 500 --repeat 5]
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
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim

from collectors.vmware import PAGE_SIZE, PROPERTIES
from collectors.vmware_fast import continue_body, retrieve_body
from fixtures.vcsim import Vcsim, start_vcsim
from fixtures.xapi.tls import self_signed

TOOL = Path(sys.executable).with_name("cs-inventory")
USER, PASSWORD = "bench", "bench"


def raw_floor(sim: Vcsim, ca: Path) -> tuple[float, int]:
    """The VMs' RetrievePropertiesEx (+ Continue pages) as plain HTTP: seconds until the last byte, and bytes."""
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
        started = time.perf_counter()
        body = retrieve_body(pc, view._moId, kind, paths, PAGE_SIZE)
        while body:
            conn.request("POST", "/sdk", body.encode(), headers)
            data = conn.getresponse().read()
            size += len(data)
            token = re.search(rb"<token>([^<]+)</token>", data[-4096:]) or re.search(rb"<token>([^<]+)</token>", data)
            body = continue_body(pc, token.group(1).decode()) if token else ""
        elapsed = time.perf_counter() - started
        conn.close()
        view.Destroy()
        return elapsed, size
    finally:
        Disconnect(si)


@dataclass
class ScanRun:
    wall_s: float
    peak_mib: float
    collect_store_s: float
    checks_s: float
    findings: int
    vms: int


def run_scan(folder: Path, config: Path, number: int, extra: list[str]) -> ScanRun:
    """The console script as a user runs it; its own peak RSS from wait4, its phases from its event log."""
    db, log = folder / f"scan-{number}.db", folder / f"scan-{number}.log"
    started = time.perf_counter()
    proc = subprocess.Popen([str(TOOL), "--log-file", str(log), "--log-format", "json", "scan", "--config",
                             str(config), "--db", str(db), "--quiet", "--fail-on", "never", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    out, errors = proc.communicate()
    if proc.returncode not in (0, 1):
        sys.exit(f"scan failed ({proc.returncode}): {(out + errors).decode()[-800:]}")
    events = [json.loads(line) for line in log.read_text().splitlines()]
    stored = next(e for e in events if e["message"] == "scan stored")
    checked = next((e for e in events if e["message"] == "checks run"), {})
    db.unlink()
    return ScanRun(wall, usage.ru_maxrss / 1024, stored["duration_s"], checked.get("duration_s", float("nan")),
                   checked.get("findings", -1), stored.get("vms", 0))


def write_config(folder: Path, sim: Vcsim, ca: Path, version: str) -> Path:
    config = folder / "bench.toml"
    config.write_text(f'[cloudstack]\nversion = "{version}"\n[database]\npath = "unused.db"\n'
                      f'[[vmware]]\nname = "vc"\nhost = "{sim.host}"\nport = {sim.port}\nusername = "{USER}"\n'
                      f'password_env = "CSI_BENCH_VC"\nca_file = "{ca}"\n')
    os.environ["CSI_BENCH_VC"] = PASSWORD
    return config


def median(values: list[float]) -> float:
    return statistics.median(values)


def measure(clusters: int, hosts: int, vms: int, repeat: int, version: str, extra: list[str]) -> dict[str, Any]:
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
            floors, scans, size = [], [], 0
            for number in range(repeat):
                floor_s, size = raw_floor(sim, ca)
                floors.append(floor_s)
                scans.append(run_scan(folder, config, number, extra))
        finally:
            sim.stop()
    startup = [_startup() for _ in range(repeat)]
    return {"boot_s": boot, "floors": floors, "scans": scans, "bytes": size, "startup": startup}


def _startup() -> float:
    started = time.perf_counter()
    subprocess.run([str(TOOL), "--version"], check=True, capture_output=True)
    return time.perf_counter() - started


def report(figures: dict[str, Any], clusters: int, hosts: int, vms: int) -> None:
    floors, scans = figures["floors"], figures["scans"]
    floor = median(floors)
    wall = median([s.wall_s for s in scans])
    checks = median([s.checks_s for s in scans])
    peak = median([s.peak_mib for s in scans])
    print(f"vcenter simulator: {clusters} clusters × {hosts} hosts × {vms} VMs = {scans[0].vms:,} VMs stored, "
          f"{scans[0].findings:,} findings (simulator up in {figures['boot_s']:.1f} s); medians of {len(scans)} runs")
    print(f"  raw floor (VMs' RetrievePropertiesEx incl. devices, {figures['bytes'] / 2**20:.0f} MiB): "
          f"{floor:.2f} s  [{', '.join(f'{f:.2f}' for f in floors)}]")
    print(f"  cs-inventory scan, process start to exit: {wall:.2f} s  [{', '.join(f'{s.wall_s:.2f}' for s in scans)}]"
          f"  = {wall / floor:.2f}× the floor (goal ≤ 2)")
    print(f"    collection + store {median([s.collect_store_s for s in scans]):.2f} s; checks {checks:.2f} s "
          f"= {checks / floor:.3f}× the floor (goal ≤ 0.1); `cs-inventory --version` "
          f"{median(figures['startup']):.2f} s")
    print(f"  peak RSS {peak:.0f} MiB  [{', '.join(f'{s.peak_mib:.0f}' for s in scans)}] (goal ≤ 250)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--clusters", type=int, default=20)
    parser.add_argument("--hosts", type=int, default=25, help="hosts per cluster")
    parser.add_argument("--vms", type=int, default=500, help="VMs per cluster")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--cloudstack-version", default="4.20")
    options, extra = parser.parse_known_args()
    figures = measure(options.clusters, options.hosts, options.vms, options.repeat, options.cloudstack_version, extra)
    report(figures, options.clusters, options.hosts, options.vms)


if __name__ == "__main__":
    main()
