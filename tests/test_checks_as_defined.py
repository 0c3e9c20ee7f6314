"""The checks made fast (issue 13) still say exactly what their definitions say: generated estates and findings,
each compared with an oracle written from the definition alone, the plain way (every VM, every NIC, every pair)."""

from __future__ import annotations

import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inventory import open_store, run_checks
from inventory.checks import GROUP_AT, SHOWN_NAMES, group_findings
from inventory.model import Host, Inventory, TargetResult, Vm, VmDisk, VmNic
from inventory.releases import resolve
from inventory.rulebook import RULES, Finding
from inventory.store import ScanRow

KINDS = {"kvm-a": "kvm", "xen-b": "xenserver"}
VERSIONS = {"kvm": [None, "8.2.0", "9.0.0"], "xenserver": [None, "8.2.1", "8.4.0"]}

vm_plans = st.lists(st.tuples(
    st.sampled_from(sorted(KINDS)),  # target
    st.integers(0, 4),               # host: 0-2 in the scan, 3-4 not
    st.integers(0, 40),              # disks
    st.lists(st.sampled_from(["", "m1", "m2", "m3", "m4"]), max_size=3),  # NICs' MACs ("" = none read)
    st.sampled_from([None, "u1", "u2", "u3"]),  # UUID (shared: the same VM seen twice)
), max_size=14)
host_versions = st.lists(st.sampled_from([0, 1, 2]), min_size=3, max_size=3)


def estate(plans: list[tuple[str, int, int, list[str], str | None]], versions: list[int]) -> list[TargetResult]:
    results = []
    for target, kind in KINDS.items():
        inv = Inventory()
        for h in range(3):
            inv.hosts.append(Host(key=f"h{h}", target=target, cluster_key="c", name=f"host{h}", address=f"10.0.0.{h}",
                                  hypervisor=kind, hypervisor_version=VERSIONS[kind][versions[h]],
                                  uuid=f"hu{versions[h]}" if h else None))
        for number, (where, host, disks, macs, uuid) in enumerate(plans):
            if where != target:
                continue
            inv.vms.append(Vm(key=f"v{number}", target=target, host_key=f"h{host}", cluster_key="c",
                              name=f"i-2-{number}-VM", uuid=uuid, cs_role="user", power_state="running"))
            inv.vm_disks += [VmDisk(vm_key=f"v{number}", target=target, device=f"d{d}", disk_type="disk")
                             for d in range(disks)]
            inv.vm_nics += [VmNic(vm_key=f"v{number}", target=target, device=str(n), mac=mac or None)
                            for n, mac in enumerate(macs)]
        results.append(TargetResult(name=target, hypervisor=kind, endpoint=target, status="ok", inventory=inv))
    return results


def said(findings: list[Finding], rule_id: str) -> list[tuple[Any, ...]]:
    return sorted((f.object_key, f.target, f.message, f.observed, f.expected) for f in findings if f.rule_id == rule_id)


def data_volumes_as_defined(results: list[TargetResult], version: str) -> list[tuple[Any, ...]]:
    """Every VM: its data disks (all disks but the root) against its host's limits, else its target's kind's."""
    release, found = resolve(version), []
    for result in results:
        hosts = {h.key: h for h in result.inventory.hosts}
        for vm in result.inventory.vms:
            host = hosts.get(vm.host_key or "")
            limits = release.limits(host.hypervisor, host.hypervisor_version) if host else release.limits(
                result.hypervisor, None)
            data = max(0, sum(d.vm_key == vm.key for d in result.inventory.vm_disks) - 1)
            if limits.max_data_volumes is not None and data > limits.max_data_volumes:
                found.append((vm.key, vm.target, f"{vm.name} has {data} data volumes; {limits.row} allows "
                              f"{limits.max_data_volumes}", str(data), f"≤ {limits.max_data_volumes}"))
    return sorted(found)


def duplicate_macs_as_defined(results: list[TargetResult]) -> list[tuple[Any, ...]]:
    """Every MAC read: the VMs (by UUID, else key) whose NICs have it; two or more is a finding."""
    owners: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for result in results:
        uuid_of = {v.key: v.uuid or v.key for v in result.inventory.vms}
        for nic in result.inventory.vm_nics:
            if nic.mac:
                owners[nic.mac].add((nic.target, uuid_of[nic.vm_key]))
    found = []
    for mac, vms in owners.items():
        if len(vms) > 1:
            target, vm = min(vms)
            found.append((vm, target, f"MAC {mac} is used by {len(vms)} VMs", ", ".join(sorted(v for _, v in vms)),
                          "one VM per MAC"))
    return sorted(found)


def duplicate_uuids_as_defined(results: list[TargetResult]) -> list[tuple[Any, ...]]:
    """Every UUID read, of VMs and of hosts: two records or more with it is a finding about the first."""
    found = []
    for what in ("vm", "host"):
        records = [r for result in results for r in (result.inventory.vms if what == "vm" else result.inventory.hosts)]
        for uuid in {r.uuid for r in records if r.uuid}:
            dupes = [r for r in records if r.uuid == uuid]
            if len(dupes) > 1:
                names = ", ".join(sorted(str(d.name) for d in dupes))
                found.append((dupes[0].key, dupes[0].target, f"{what} UUID {uuid} appears {len(dupes)} times ({names})",
                              str(len(dupes)), "1"))
    return sorted(found)


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(vm_plans, host_versions, st.sampled_from(["4.18", "4.20", "4.22"]))
def test_data_volumes_and_duplicate_macs_say_what_their_definitions_say(
        plans: list[tuple[str, int, int, list[str], str | None]], versions: list[int], version: str) -> None:
    results = estate(plans, versions)
    with tempfile.TemporaryDirectory() as folder:
        with open_store(Path(folder) / "x.db") as store:
            scan_id = store.write_scan(ScanRow("t0", "t1", "ok", None, version, "test", None), results)
            findings = run_checks(store, scan_id, version, only=["data-volumes-per-vm", "duplicate-mac",
                                                                  "duplicate-uuid"], scanned=results)
    assert said(findings, "data-volumes-per-vm") == data_volumes_as_defined(results, version)
    assert said(findings, "duplicate-mac") == duplicate_macs_as_defined(results)
    assert said(findings, "duplicate-uuid") == duplicate_uuids_as_defined(results)


def grouped_as_defined(findings: list[Finding]) -> list[Finding]:
    """Findings whose message is their object's name, then " " or ": ", and the same rest — same rule, severity,
    target, cluster, object type and expected — about GROUP_AT or more VMs or hosts are one, where the first stood."""
    def statement(f: Finding) -> tuple[Any, ...] | None:
        name = f.object_name
        if f.object_type not in ("vm", "host") or not name or not f.message.startswith(name):
            return None
        rest = f.message[len(name):]
        if not (rest.startswith(" ") or rest.startswith(": ")):
            return None
        return (f.rule_id, f.severity, f.target, f.cluster, f.object_type, f.expected, rest)
    members: dict[tuple[Any, ...], list[Finding]] = defaultdict(list)
    for f in findings:
        if (key := statement(f)) is not None:
            members[key].append(f)
    out = []
    for f in findings:
        key = statement(f)
        if key is None or len(members[key]) < GROUP_AT:
            out.append(f)
            continue
        group = members[key]
        if group[0] is not f:
            continue
        names = sorted(str(g.object_name) for g in group)
        more = f" and {len(names) - SHOWN_NAMES} more" if len(names) > SHOWN_NAMES else ""
        rest = key[-1]
        words = rest[2:] if rest.startswith(": ") else "each" + rest
        plural = "VMs" if f.object_type == "vm" else "hosts"
        observed = f.observed if all(g.observed == f.observed for g in group) else None
        kind, key_of = ("cluster", f.cluster) if f.cluster is not None else ("target", f.target)
        out.append(Finding(f.rule_id, f.severity, kind, key_of, f.target,
                           f"{len(group)} {plural} ({', '.join(names[:SHOWN_NAMES])}{more}): {words}", observed,
                           f.expected, f.remediation, f.reference, f.cluster, f.basis, None, tuple(group)))
    return out


findings_to_group = st.lists(st.builds(
    lambda rule_id, kind, number, cluster, rest, observed, named: RULES[rule_id].finding(
        (Vm if kind == "vm" else Host)(key=f"k{number}", target="t", cluster_key=cluster, name=f"n{number % 9}",
                                       **({"host_key": "h"} if kind == "vm" else {"address": "a", "hypervisor": "toy"})),
        (f"n{number % 9}" if named else f"x{number % 9}") + rest, observed=observed),
    st.sampled_from(["host-local-disk", "unmanaged-vms"]), st.sampled_from(["vm", "host"]), st.integers(0, 30),
    st.sampled_from([None, "c1", "c2"]), st.sampled_from([" is odd", ": is odd", " is even", "is", ":x"]),
    st.sampled_from([None, "1", "2"]), st.booleans()), max_size=40)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(findings_to_group)
def test_grouping_is_what_its_definition_says(findings: list[Finding]) -> None:
    assert group_findings(findings) == grouped_as_defined(findings)


VNC_FIRST, VNC_SIZE = 50000, 1000
rulesets = st.lists(st.fixed_dictionaries({
    "key": st.sampled_from(["gdbserver", "vncServer", "sshServer", "custom"]),
    "enabled": st.booleans(),
    "ports": st.lists(st.tuples(st.integers(49990, 51010), st.integers(0, 400)).map(lambda p: [p[0], p[0] + p[1]]),
                      max_size=3)}), max_size=5)


def closed_as_defined(sets: list[dict[str, Any]]) -> str | None:
    """Port by port: open when an enabled ruleset (or one CloudStack enables) has a range holding it; the closed
    runs, the first three shown."""
    last = VNC_FIRST + VNC_SIZE - 1
    def is_open(port: int) -> bool:
        return any((rs["enabled"] or rs["key"].lower() in ("vncserver", "gdbserver")) and a <= port <= b
                   for rs in sets for a, b in rs["ports"])
    runs: list[list[int]] = []
    for port in range(VNC_FIRST, last + 1):
        if not is_open(port):
            if runs and runs[-1][1] == port - 1:
                runs[-1][1] = port
            else:
                runs.append([port, port])
    return "closed: " + ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in runs[:3]) if runs else None


@settings(max_examples=80, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(rulesets, min_size=1, max_size=4))
def test_the_vnc_firewall_rule_finds_the_closed_ports_its_definition_finds(hosts: list[list[dict[str, Any]]]) -> None:
    inv = Inventory()
    inv.hosts += [Host(key=f"h{i}", target="vc", cluster_key="c", name=f"esx{i}", address="a", hypervisor="vmware",
                       raw_json={"firewall": sets}) for i, sets in enumerate(hosts)]
    results = [TargetResult(name="vc", hypervisor="vmware", endpoint="vc", status="ok", inventory=inv)]
    with tempfile.TemporaryDirectory() as folder:
        with open_store(Path(folder) / "x.db") as store:
            scan_id = store.write_scan(ScanRow("t0", "t1", "ok", None, "4.20", "test", None), results)
            findings = run_checks(store, scan_id, "4.20", only=["vmware-vnc-firewall"], scanned=results)
    assert {f.object_key: f.observed for f in findings} == {
        f"h{i}": closed for i, sets in enumerate(hosts) if (closed := closed_as_defined(sets)) is not None}


def test_the_vnc_firewall_rule_reads_no_ports_of_a_ruleset_that_is_off() -> None:
    """A database written before the normaliser checked ports may hold odd ones: a ruleset that is off opens
    nothing, and what its ports hold is not read."""
    odd = [{"key": "custom", "enabled": False, "ports": [["50000", "50010"]]},
           {"key": "other", "enabled": False, "ports": [[50000]]},
           {"key": "gdbserver", "enabled": False, "ports": [[50000, 50999]]}]
    inv = Inventory()
    inv.hosts.append(Host(key="h0", target="vc", cluster_key="c", name="esx0", address="a", hypervisor="vmware",
                          raw_json={"firewall": odd}))
    results = [TargetResult(name="vc", hypervisor="vmware", endpoint="vc", status="ok", inventory=inv)]
    with tempfile.TemporaryDirectory() as folder:
        with open_store(Path(folder) / "x.db") as store:
            scan_id = store.write_scan(ScanRow("t0", "t1", "ok", None, "4.20", "test", None), results)
            assert run_checks(store, scan_id, "4.20", only=["vmware-vnc-firewall"], scanned=results) == []
