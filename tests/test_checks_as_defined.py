"""The checks made fast (issue 13) still say exactly what their definitions say: generated estates and findings,
each compared with an oracle written from the definition alone, the plain way (every VM, every NIC, every pair)."""

from __future__ import annotations

import dataclasses
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inventory import open_store, run_checks
from inventory.checks import GROUP_AT, SHOWN_NAMES, checked, group_findings, store_findings
from inventory.model import Host, Inventory, TargetResult, Vm, VmDisk, VmNic
from inventory.releases import resolve
from inventory.rulebook import ANY_KIND, RULES, Finding, Rule, outside
from inventory.store import ScanRow

KINDS = {"kvm-a": "kvm", "xen-b": "xenserver"}
ROLES = ("user", "user", "unmanaged", "router", "worker")  # a VM's CloudStack role, by its number
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
                              name=f"i-2-{number}-VM", uuid=uuid, cs_role=ROLES[number % len(ROLES)],
                              power_state="running"))
            inv.vm_disks += [VmDisk(vm_key=f"v{number}", target=target, device=f"d{d}", disk_type=disk_type(number, d))
                             for d in range(disks)]
            inv.vm_nics += [VmNic(vm_key=f"v{number}", target=target, device=str(n), mac=mac or None)
                            for n, mac in enumerate(macs)]
        results.append(TargetResult(name=target, hypervisor=kind, endpoint=target, status="ok", inventory=inv))
    return results


def disk_type(vm: int, disk: int) -> str | None:
    """Every other VM has disks of one type ("disk"), the others a mix: "disk", none read, and CD-ROMs."""
    return "disk" if vm % 2 == 0 else ("disk", None, "cdrom")[(vm + disk) % 3]


def said(findings: list[Finding], rule_id: str) -> list[tuple[Any, ...]]:
    return sorted((f.object_key, f.target, f.message, f.observed, f.expected) for f in findings if f.rule_id == rule_id)


def data_volumes_as_defined(results: list[TargetResult], version: str) -> list[tuple[Any, ...]]:
    """Every CloudStack user VM (the only VMs a volume is attached to): its data disks (all disks but the root)
    against its host's limits, else its target's kind's."""
    release, found = resolve(version), []
    for result in results:
        hosts = {h.key: h for h in result.inventory.hosts}
        for vm in result.inventory.vms:
            if vm.cs_role != "user":
                continue
            host = hosts.get(vm.host_key or "")
            limits = release.limits(host.hypervisor, host.hypervisor_version) if host else release.limits(
                result.hypervisor, None)
            data = max(0, sum(d.vm_key == vm.key and d.disk_type in ("disk", None)
                              for d in result.inventory.vm_disks) - 1)
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


# -- a rule's statement about many objects: made, ordered and grouped in bulk, as one by one -------------------
def shown_as_defined(findings: list[Finding]) -> list[Finding]:
    """The order findings are shown in: by target, cluster (none first), severity (errors first), rule and object
    key; findings equal in all of these as they were made."""
    rank = {"error": 0, "warning": 1, "info": 2}
    return sorted(findings, key=lambda f: (f.target, f.cluster or "", rank[f.severity], f.rule_id, f.object_key))


def toy_rules(outputs: list[list[Any]]) -> dict[str, Rule]:
    """Rules of this test (one DIFF, whose plain findings choose their severity), each yielding what it is given:
    ("finding", record, message, observed, severity) or ("statement", records, said, observe)."""
    rules = {}
    for number, output in enumerate(outputs):
        diff = number % 2 == 1

        def fn(view: Any, r: Rule, output: list[Any] = output, diff: bool = diff) -> Iterator[Any]:
            for item in output:
                if item[0] == "finding":
                    _, record, message, observed, severity = item
                    yield r.finding(record, message, observed=observed, expected="x",
                                    severity=severity if diff else None)
                else:
                    _, records, said_, observe = item
                    yield r.statement(records, said_, observed=observe, expected="x")
        rule_id = f"zz-toy-{number}"
        rules[rule_id] = Rule(rule_id, ANY_KIND, "A toy requirement.", "Fix it.", "DIFF" if diff else "INF",
                              (outside("this test"),), (), None, fn, "warning" if diff else None)
    return rules


def toy_record(kind: str, key: int, name: str, target: str, cluster: str | None) -> Vm | Host:
    if kind == "vm":
        return Vm(key=f"k{key}", target=target, host_key="h", cluster_key=cluster, name=name)
    return Host(key=f"k{key}", target=target, cluster_key=cluster, name=name, address="a", hypervisor="kvm")


toy_records = st.builds(toy_record, st.sampled_from(["vm", "host"]), st.integers(0, 12),
                        st.sampled_from(["", "n1", "n2", "n3", "n4", "n5", "n6"]), st.sampled_from(["t1", "t2"]),
                        st.sampled_from([None, "", "c1", "c2"]))
toy_saids = st.sampled_from([" is odd", ": is odd", " is even"])
toy_observe = st.sampled_from([None, lambda o: o.name, lambda o: 1])
toy_items = st.one_of(
    st.tuples(st.just("finding"), toy_records, st.sampled_from(["", "n1", "n2 ", "x"]).flatmap(
        lambda head: toy_saids.map(lambda tail: head + tail)), st.sampled_from([None, "n1", 1]),
        st.sampled_from(["error", "warning", "info"])).map(
        lambda t: (t[0], t[1], (t[1].name + t[2][2:]) if t[2].startswith("n2") else t[2], t[3], t[4])),
    st.tuples(st.just("statement"), st.lists(toy_records, max_size=12), toy_saids, toy_observe))


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(toy_items, max_size=6), min_size=1, max_size=3))
def test_statements_are_checked_as_their_findings_one_by_one(outputs: list[list[Any]]) -> None:
    """A rule's statements and findings, mixed — unnamed objects, the same object twice, a plain finding saying
    what a statement says, clusters none and "", VMs and hosts in one statement — are ordered and grouped exactly
    as each statement's findings made one by one where it stood."""
    rules = toy_rules(outputs)
    view = SimpleNamespace(kinds={"kvm"}, release=resolve("4.20"))
    with patch.dict(RULES, rules):
        one_by_one = [f for r in rules.values() for f in r.findings(view)]  # type: ignore[arg-type]
        per_object, grouped = checked(view, only=list(rules))  # type: ignore[arg-type]
    expected = shown_as_defined(one_by_one)
    assert per_object == expected
    assert grouped == grouped_as_defined(expected)


def test_a_statement_says_what_each_of_its_findings_would(tmp_path: Path) -> None:
    """`unmanaged-vms` states one thing of every stranger's VM: stored, each VM's own finding is the one the rule
    would have made one by one; fewer than GROUP_AT in a cluster stand alone."""
    results = estate([("kvm-a", 0, 1, [], None)] * 5 + [("xen-b", 1, 1, [], None)] * 2, [0, 0, 0])
    for result in results:
        result.inventory.vms = [dataclasses.replace(vm, cs_role="unmanaged", name=f"web{vm.key}")
                                for vm in result.inventory.vms]
    r = RULES["unmanaged-vms"]
    by_hand = [r.finding(vm, f"{vm.name} is running and is not a CloudStack instance", observed=vm.name,
                         expected="only i-/r-/s-/v- instances running")
               for result in results for vm in result.inventory.vms]
    with open_store(tmp_path / "s.db") as store:
        scan_id = store.write_scan(ScanRow("t0", "t1", "ok", None, "4.20", "test", None), results)
        findings = run_checks(store, scan_id, "4.20", only=["unmanaged-vms"], scanned=results)
        rows = store.query("SELECT object_type, object_key, object_count, message FROM findings ORDER BY number")
        per_object = [{k: v for k, v in f.items() if k != "scan_id"} for f in store.finding_objects(scan_id)]
    assert findings == shown_as_defined(by_hand)
    assert [(r["object_type"], r["object_key"], r["object_count"]) for r in rows] == [
        ("cluster", "c", 5), ("vm", "v5", 1), ("vm", "v6", 1)]
    assert rows[0]["message"] == ("5 VMs (webv0, webv1, webv2, webv3, webv4): each is running and is not a "
                                  "CloudStack instance")
    assert per_object == [f.as_row() for f in shown_as_defined(by_hand)]


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(findings_to_group, st.sampled_from(["n'; --", "n%s", "ñ€", ""]))
def test_a_group_stored_at_once_keeps_every_object_as_made(findings: list[Finding], prefix: str) -> None:
    """A group's objects share all but the object, and are written as one statement: each stored row is still the
    object's own finding, column for column (names with quotes or "%s", no observed value, no cluster)."""
    findings = [f._replace(object_name=prefix + f.object_name, message=prefix + f.message) if f.object_name else f
                for f in findings]
    grouped = group_findings(findings)
    with tempfile.TemporaryDirectory() as folder:
        with open_store(Path(folder) / "g.db") as store:
            scan_id = store.write_scan(ScanRow("t0", "t1", "ok", None, "4.20", "test", None), [])
            store_findings(store, scan_id, findings)
            stored = [{k: v for k, v in row.items() if k != "scan_id"} for row in store.finding_objects(scan_id)]
            numbers = [row["finding"] for row in store.query("SELECT finding FROM finding_objects ORDER BY rowid")]
    assert stored == [o.as_row() for f in grouped for o in (f.objects or (f,))]
    assert numbers == [n for n, f in enumerate(grouped, 1) for _ in (f.objects or (f,))]


@pytest.mark.parametrize("version", ["4.18", "4.20", "4.22"])
def test_data_volumes_at_the_fewest_limit_and_one_over(version: str, tmp_path: Path) -> None:
    """A VM with exactly the fewest limit's data volumes, and one with one more, on each host: the second is over
    (the early "no VM can be over" must not stop at the limit itself)."""
    release = resolve(version)
    fewest = min(limits.max_data_volumes for kind, versions in VERSIONS.items() for v in versions
                 if (limits := release.limits(kind, v)).max_data_volumes is not None)
    plans = [(target, host, fewest + 1 + extra, [], None) for target in KINDS for host in range(3) for extra in (0, 1)]
    results = estate(plans, [0, 1, 2])
    for result in results:  # every disk a data disk but the first, every VM a CloudStack user VM
        result.inventory.vm_disks = [dataclasses.replace(d, disk_type="disk") for d in result.inventory.vm_disks]
        result.inventory.vms = [dataclasses.replace(vm, cs_role="user") for vm in result.inventory.vms]
    with open_store(tmp_path / "x.db") as store:
        scan_id = store.write_scan(ScanRow("t0", "t1", "ok", None, version, "test", None), results)
        findings = run_checks(store, scan_id, version, only=["data-volumes-per-vm"], scanned=results)
    assert said(findings, "data-volumes-per-vm") == data_volumes_as_defined(results, version) != []
