"""A 64-host XCP-ng pool with 5,000 VMs (2 disks and 2 NICs each) behind the XAPI fixture server
with 1 ms latency per call: our collector (one get_all_records per class) against a naive one
that calls get_record per object. The naive walk runs on a sample of each class and is
extrapolated. Run: .venv/bin/python -m bench.xen_pool
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import XenAPI

from collectors.xenserver import CLASSES, XenServerCollector, XenTarget
from fixtures.xapi.server import serve_dump
from fixtures.xapi.synth import generate
from inventory.model import Secret


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
        take = refs[: max(1, int(len(refs) * sample))] if refs else []
        for ref in take:
            api.get_record(ref)
            calls += 1
        objects += len(refs)
    elapsed = time.perf_counter() - started
    session.xenapi.session.logout()
    return elapsed, calls, objects


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=64)
    parser.add_argument("--vms", type=int, default=5000)
    parser.add_argument("--latency-ms", type=float, default=1.0)
    parser.add_argument("--sample", type=float, default=0.05, help="share of each class the naive walk reads")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        dump = Path(tmp) / "pool.xml"
        dump.write_text(generate(options.hosts, options.vms, "xcp-ng-8.3", seed="bench"))
        small = Path(tmp) / "small.xml"
        small.write_text(generate(2, 10, "xcp-ng-8.3", seed="bench"))
        server = serve_dump(dump, latency_s=options.latency_ms / 1000)
        small_server = serve_dump(small, latency_s=options.latency_ms / 1000)
        os.environ["CSI_BENCH_PASSWORD"] = "xenroot"
        target = XenTarget(name="bench", url=server.url, password=Secret("env", "CSI_BENCH_PASSWORD"))
        started = time.perf_counter()
        result = XenServerCollector(target).collect()
        ours = time.perf_counter() - started
        small_calls = XenServerCollector(XenTarget(name="small", url=small_server.url,
                                                   password=Secret("env", "CSI_BENCH_PASSWORD"))).collect().api_calls
        naive_s, naive_calls, objects = naive_walk(server.url, options.sample)
        server.stop()
        small_server.stop()
    sampled_calls = naive_calls - 1 - len(CLASSES)
    per_call = naive_s / max(1, naive_calls - 1)
    naive_full = per_call * (1 + len(CLASSES) + objects)
    counts = result.inventory.counts()
    print(f"xenserver pool: {options.hosts} hosts, {counts['vms']:,} VMs, {counts['vm_disks']:,} disks, "
          f"{counts['vm_nics']:,} NICs; {options.latency_ms:g} ms latency per call")
    print(f"  ours: {ours:.2f} s, {result.api_calls} API calls (a 2-host, 10-VM pool: {small_calls} calls)")
    print(f"  naive get_record walk: {sampled_calls:,} records sampled in {naive_s:.2f} s "
          f"({per_call * 1000:.2f} ms per call) → {1 + len(CLASSES) + objects:,} calls, ≈ {naive_full:.1f} s "
          f"for all {objects:,} objects")
    print(f"  ratio naive / ours ≈ {naive_full / ours:.1f}×")


if __name__ == "__main__":
    main()
