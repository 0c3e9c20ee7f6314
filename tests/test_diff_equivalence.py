"""`diff` compares two scans in SQLite: the same drift as reading every row of both into Python and matching them
there (``tests/diff_reference.py``, the diff as it was), on stores made of random edits of one estate — rows added,
removed and changed, usage that moves, VMs that move between hosts, hosts that fail, targets that fail or vanish,
keys and names with quotes, slashes and non-ASCII text."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import Any

import pytest

from inventory import diff_scans, open_store
from inventory.model import (
    Cluster, EndpointResult, Host, HostNic, HostStorage, Inventory, Network, Storage, TargetResult, Vm, VmDisk, VmNic,
)
from inventory.store import ScanRow
from tests.diff_reference import reference_diff

NAMES = ["web", "db'1", "a/b", "ünï", "x\"y", "-rf", "%s", "{0}"]


def estate(rng: random.Random, target: str, hosts: int) -> TargetResult:
    inv = Inventory()
    inv.clusters.append(Cluster(key="c1", target=target, name="cluster", hypervisor="kvm", host_count=hosts))
    inv.networks.append(Network(key="br0", target=target, name="cloudbr0", kind="bridge", mtu=1500))
    for h in range(hosts):
        key = f"h{h}"
        inv.hosts.append(Host(key=key, target=target, cluster_key="c1", name=f"kvm{h:02}", address=f"10.0.0.{h + 1}",
                              hypervisor="kvm", memory_bytes=2**34, state="up", raw_json={"n": h}))
        inv.host_nics.append(HostNic(host_key=key, target=target, device="eth0", mac=f"52:54:00:00:00:{h:02x}",
                                     mtu=1500))
        inv.storage.append(Storage(key=f"local-{h}", target=target, name=f"local{h}", kind="dir", shared=False,
                                   capacity_bytes=10**12, free_bytes=rng.randrange(10**11, 10**12)))
        inv.host_storage.append(HostStorage(host_key=key, target=target, storage_key=f"local-{h}", attached=True))
        inv.host_storage.append(HostStorage(host_key=key, target=target, storage_key="nfs", attached=True))
    inv.storage.append(Storage(key="nfs", target=target, name="primary", kind="netfs", shared=True,
                               capacity_bytes=10**13, free_bytes=rng.randrange(10**12, 10**13)))
    for v in range(hosts * 6):
        key = f"vm-{v}-{rng.choice(NAMES)}"
        inv.vms.append(Vm(key=key, target=target, host_key=rng.choice([f"h{h}" for h in range(hosts)] + [None]),
                          cluster_key="c1", name=f"i-2-{v}-VM", power_state=rng.choice(["running", "stopped"]),
                          vcpus=rng.choice([1, 2, 4]), memory_bytes=2**30, raw_json={"v": v}))
        inv.vm_disks.append(VmDisk(vm_key=key, target=target, device="vda", storage_key="nfs", capacity_bytes=10**10,
                                   allocation_bytes=rng.randrange(10**9, 10**10), thin=rng.choice([True, None])))
        inv.vm_nics.append(VmNic(vm_key=key, target=target, device="vnet0", mac=f"52:54:00:{v // 256:02x}:{v % 256:02x}:01",
                                 network_key="br0", ip_addresses=rng.choice([None, '["10.1.0.5"]'])))
    endpoints = [EndpointResult(target, h.address or "", "ok", None, 0.1, 3) for h in inv.hosts]
    return TargetResult(name=target, hypervisor="kvm", endpoint=endpoints[0].endpoint, status="ok", inventory=inv,
                        endpoints=endpoints)


def edited(rng: random.Random, result: TargetResult) -> TargetResult:
    """The estate a while later: some of every table gone, new rows, changed values, moved VMs, failed hosts."""
    inv = Inventory()
    for table in Inventory.ALL_TABLES:
        kept = []
        for record in getattr(result.inventory, table):
            roll = rng.random()
            if roll < 0.08:
                continue  # removed
            if roll < 0.3:
                change: dict[str, Any] = {}
                for f in dataclasses.fields(record):
                    if f.name in ("target", "key", "vm_key", "host_key", "device", "storage_key") and table != "vms":
                        continue
                    value = getattr(record, f.name)
                    if f.name == "host_key" and table == "vms":
                        change[f.name] = rng.choice(["h0", "h1", "h2", None])
                    elif f.name in ("key", "target", "vm_key", "device", "storage_key"):
                        continue
                    elif isinstance(value, bool) or value is None:
                        if rng.random() < 0.3:
                            change[f.name] = rng.choice([True, False, None])
                    elif isinstance(value, int) and rng.random() < 0.4:
                        change[f.name] = value + rng.randrange(1, 1000)
                    elif isinstance(value, str) and f.name != "raw_json" and rng.random() < 0.3:
                        change[f.name] = value + rng.choice(NAMES)
                    elif isinstance(value, dict) and rng.random() < 0.5:
                        change[f.name] = {**value, "changed": True}
                record = dataclasses.replace(record, **change)
            kept.append(record)
        setattr(inv, table, kept)
    inv.vms.append(Vm(key=f"new-{rng.choice(NAMES)}", target=result.name, host_key="h1", cluster_key="c1", name="new"))
    inv.vm_disks.append(VmDisk(vm_key=inv.vms[-1].key, target=result.name, device="vda"))
    endpoints = [dataclasses.replace(e, status="failed", error="refused") if rng.random() < 0.2 else e
                 for e in result.endpoints]
    return dataclasses.replace(result, inventory=inv, endpoints=endpoints)


def row(status: str = "ok") -> ScanRow:
    return ScanRow("2026-01-01T00:00:00+00:00", "2026-01-01T00:00:01+00:00", status, None, "4.20", "test", None)


@pytest.mark.parametrize("seed", range(12))
def test_the_sql_diff_is_the_python_diff(seed: int, tmp_path: Path) -> None:
    rng = random.Random(seed)
    first = [estate(rng, target, hosts=rng.randrange(2, 6)) for target in ("kvm-a", "kvm-b", "kvm-c")]
    second = [edited(rng, result) for result in first]
    if seed % 3 == 0:  # a target failed
        second[1] = dataclasses.replace(second[1], status="failed", inventory=Inventory())
    if seed % 4 == 1:  # a target absent
        second = second[:2]
    if seed % 5 == 2:  # a target new
        second.append(estate(rng, "kvm-d", hosts=2))
    with open_store(tmp_path / "inv.db") as store:
        old = store.write_scan(row(), first)
        new = store.write_scan(row(), second)
        again = store.write_scan(row(), second)
        for pair in ((old, new), (new, old), (new, again)):
            for usage in (False, True):
                expected = reference_diff(store, *pair, include_usage=usage)
                got = diff_scans(store, *pair, include_usage=usage)
                assert got == expected, (pair, usage)
        assert diff_scans(store, old, new).changes  # the edits are seen


def endpoints_of(target: str, hosts: int, failed: tuple[int, ...] = ()) -> list[EndpointResult]:
    return [EndpointResult(target, f"10.0.0.{i + 1}", "failed" if i in failed else "ok", None, 0.1, 1)
            for i in range(hosts)]


def small(target: str, host_keys: tuple[Any, ...], vm_host: Any, vcpus: int = 1, disk: int = 1) -> Inventory:
    inv = Inventory()
    for i, key in enumerate(host_keys):
        inv.hosts.append(Host(key=key, target=target, cluster_key="c1", name=f"n{i}", address=f"10.0.0.{i + 1}",
                              hypervisor="kvm"))
        inv.host_nics.append(HostNic(host_key=key, target=target, device="eth0"))
    inv.vms.append(Vm(key="vm1", target=target, host_key=vm_host, cluster_key="c1", name="vm", vcpus=vcpus))
    inv.vm_disks.append(VmDisk(vm_key="vm1", target=target, device="vda", capacity_bytes=disk))
    inv.vm_nics.append(VmNic(vm_key="vm1", target=target, device="vnet0", mac="m"))
    return inv


def kvm(target: str, inv: Inventory, endpoints: list[EndpointResult] | None = None) -> TargetResult:
    return TargetResult(name=target, hypervisor="kvm", endpoint="x", status="ok", inventory=inv,
                        endpoints=endpoints or [EndpointResult(target, "10.0.0.1", "ok", None, 0.1, 1)])


ODD = {  # found by review: each failed (a crash, or another drift than the reference's) before it was fixed
    "a NUL in a target absent from the new scan": (
        [kvm("a", small("a", (), None)), kvm("a\x00b", small("a\x00b", (), None))],
        [kvm("a", small("a", (), None, vcpus=2))]),
    "a NUL in a failed host's key": (
        [kvm("t", small("t", ("h\x001", "h2"), "h\x001"), endpoints_of("t", 2))],
        [kvm("t", small("t", ("h\x001", "h2"), "h\x001", vcpus=2), endpoints_of("t", 2, (0,)))]),
    "two failed hosts, one with no key": (
        [kvm("t", small("t", (None, "h2"), "h2"), endpoints_of("t", 2))],
        [kvm("t", small("t", (None, "h2"), "h2"), endpoints_of("t", 2, (0, 1)))]),
    "a failed host with no key, a disk changed on another": (
        [kvm("t", small("t", (None, "h2"), "h2"), endpoints_of("t", 2))],
        [kvm("t", small("t", (None, "h2"), "h2", disk=2), endpoints_of("t", 2, (0,)))]),
    "a failed host whose key is bytes": (
        [kvm("t", small("t", (b"h1", "h2"), "h2"), endpoints_of("t", 2))],
        [kvm("t", small("t", (b"h1", "h2"), "h2"), endpoints_of("t", 2, (0,)))]),
    "a failed host keyed '' and its VM's host ''": (
        [kvm("t", small("t", ("", "h2"), ""), endpoints_of("t", 2))],
        [kvm("t", small("t", ("", "h2"), "", vcpus=2, disk=2), endpoints_of("t", 2, (0,)))]),
    "a failed host keyed '', a disk changed on a VM of no host": (  # '' and NULL are not one key
        [kvm("t", small("t", ("", "h2"), None), endpoints_of("t", 2))],
        [kvm("t", small("t", ("", "h2"), None, disk=2), endpoints_of("t", 2, (0,)))]),
    "records of no target": (
        [kvm("t", small(None, (), None))],  # type: ignore[arg-type]
        [kvm("t", small(None, (), None, disk=2))]),  # type: ignore[arg-type]
}


@pytest.mark.parametrize("case", ODD)
def test_odd_values_drift_as_the_python_diff_said(case: str, tmp_path: Path) -> None:
    first, second = ODD[case]
    with open_store(tmp_path / "inv.db") as store:
        old, new = store.write_scan(row(), first), store.write_scan(row(), second)
        for pair in ((old, new), (new, old), (new, new)):
            for usage in (False, True):
                assert diff_scans(store, *pair, include_usage=usage) == reference_diff(store, *pair,
                                                                                        include_usage=usage)


def test_many_failed_hosts(tmp_path: Path) -> None:
    """300 of 600 hosts failed in the new scan: what is on them is not compared, the rest is."""
    rng = random.Random(7)
    first = estate(rng, "big", hosts=600)
    second = edited(rng, first)
    second = dataclasses.replace(second, endpoints=[dataclasses.replace(e, status="failed") if i % 2 else e
                                                    for i, e in enumerate(first.endpoints)])
    with open_store(tmp_path / "inv.db") as store:
        old, new = store.write_scan(row(), [first]), store.write_scan(row(), [second])
        got = diff_scans(store, old, new)
        assert got == reference_diff(store, old, new) and len(got.not_compared) == 300 and got.changes


POOL = ["h0", "h1", "h2", "", "x'y", "ü", "nfs", "vm0", "br0", "c1"]  # keys shared across tables, '' among them


def pooled(rng: random.Random, target: str) -> TargetResult:
    """Records whose keys come from one small pool (a host's key a VM's, '' a key, NULL a VM's host): the review's
    fuzz, which found '' taken for NULL."""
    def some(make: Any) -> set[Any]:
        return {make() for _ in range(rng.randrange(0, 6))}
    inv = Inventory()
    for key in some(lambda: rng.choice(POOL)):
        inv.hosts.append(Host(key=key, target=target, cluster_key=rng.choice([*POOL, None]), name=rng.choice("ab"),
                              address=f"10.0.0.{rng.randrange(4)}", hypervisor="kvm", memory_bytes=rng.choice([1, 2])))
    for key in some(lambda: rng.choice(POOL)):
        inv.storage.append(Storage(key=key, target=target, name="s", kind="dir", shared=rng.choice([True, None]),
                                   free_bytes=rng.choice([1, 2])))
    for key in some(lambda: rng.choice(POOL)):
        inv.vms.append(Vm(key=key, target=target, host_key=rng.choice([*POOL, None]), cluster_key=None,
                          name=rng.choice("ab"), vcpus=rng.choice([1, 2, None])))
    for vm, device in some(lambda: (rng.choice(POOL), rng.choice(["vda", ""]))):
        inv.vm_disks.append(VmDisk(vm_key=vm, target=target, device=device, capacity_bytes=rng.choice([1, 2])))
    for vm, device in some(lambda: (rng.choice(POOL), rng.choice(["n0", ""]))):
        inv.vm_nics.append(VmNic(vm_key=vm, target=target, device=device, mac=rng.choice("ab")))
    for host, device in some(lambda: (rng.choice(POOL), rng.choice(["eth0", ""]))):
        inv.host_nics.append(HostNic(host_key=host, target=target, device=device, mtu=rng.choice([1, 2])))
    for host, storage in some(lambda: (rng.choice(POOL), rng.choice(POOL))):
        inv.host_storage.append(HostStorage(host_key=host, target=target, storage_key=storage, attached=True))
    endpoints = [EndpointResult(target, f"10.0.0.{i}", rng.choice(["ok", "ok", "failed", "partial"]), None, 0.1, 1)
                 for i in range(4)]
    return TargetResult(name=target, hypervisor="kvm", endpoint="x", status="failed" if rng.random() < 0.1 else "ok",
                        inventory=inv, endpoints=endpoints)


@pytest.mark.parametrize("seed", range(40))
def test_keys_from_one_pool_drift_as_the_python_diff_said(seed: int, tmp_path: Path) -> None:
    rng = random.Random(seed)
    scans = [[pooled(rng, target) for target in ("t", "u'ü") if rng.random() > 0.1] for _ in range(2)]
    with open_store(tmp_path / "inv.db") as store:
        old, new = store.write_scan(row(), scans[0]), store.write_scan(row(), scans[1])
        for pair in ((old, new), (new, old), (new, new)):
            for usage in (False, True):
                assert diff_scans(store, *pair, include_usage=usage) == reference_diff(store, *pair,
                                                                                        include_usage=usage)
