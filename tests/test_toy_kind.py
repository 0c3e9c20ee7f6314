"""A fourth hypervisor is one module: a toy kind, installed as a plug-in (one module and an entry point in
the ``cs_inventory.collectors`` group), gets everything without an edit to cs-inventory: its config table,
``--only``, a stored scan, recordings, exports, ``show``, ``diff`` and the rules that apply to every kind."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.conftest import TOOL

TOY_MODULE = '''
"""A toy hypervisor: its "API" is a JSON file listing hosts, VMs and storage."""

import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from collectors.base import Collector, Session
from inventory.model import Cluster, Host, HostStorage, Inventory, Storage, Vm, VmNic, TargetConfig
from inventory.normalise import parse_instance_name


@dataclass(frozen=True)
class ToyTarget(TargetConfig):
    """A toy estate, read from a JSON file."""

    path: Path = field(default=Path("toy.json"), metadata={"help": "the estate file"})

    @property
    def endpoint(self):
        return str(self.path)


class ToyCollector(Collector):
    """Reads a toy estate file (read-only, obviously)."""

    kind = "toy"
    cloudstack_name = "Toy"
    Target = ToyTarget

    @contextmanager
    def connect(self, endpoint, calls):
        yield Session(endpoint, calls)

    def fetch(self, session):
        session.calls.add()
        return json.loads(Path(session.endpoint).read_text())

    @staticmethod
    def normalise(answers, target):
        (estate,) = answers.values()
        name = target.name
        inv = Inventory()
        inv.clusters.append(Cluster(key="c1", target=name, name="toy cluster", hypervisor="toy",
                                    host_count=len(estate["hosts"])))
        for host in estate["hosts"]:
            inv.hosts.append(Host(key=host["id"], target=name, cluster_key="c1", name=host["name"],
                                  address=host["name"], hypervisor="toy", cpu_vendor="Intel",
                                  cpu_model=host["cpu"], memory_bytes=64 * 2**30, state="connected"))
        for vm in estate["vms"]:
            role = parse_instance_name(vm["name"])
            inv.vms.append(Vm(key=vm["id"], target=name, host_key=vm["host"], cluster_key="c1", name=vm["name"],
                              uuid=vm["id"], cs_role=role.role, cs_id=role.cs_id, power_state="running"))
            inv.vm_nics.append(VmNic(vm_key=vm["id"], target=name, device="nic0", mac=vm["mac"]))
        inv.storage.append(Storage(key="nfs1", target=name, name="primary", kind="nfs", shared=True,
                                   capacity_bytes=100 * 2**30, free_bytes=5 * 2**30))
        inv.host_storage.append(HostStorage(host_key=estate["hosts"][0]["id"], target=name, storage_key="nfs1",
                                            attached=True))
        return inv
'''

ESTATE = {
    "hosts": [{"id": "h1", "name": "toy-host-1", "cpu": "Xeon Gold 6338"},
              {"id": "h2", "name": "toy-host-2", "cpu": "Xeon Gold 5318"}],
    "vms": [{"id": "v1", "name": "i-2-10-VM", "host": "h1", "mac": "02:00:00:00:00:01"},
            {"id": "v2", "name": "i-2-11-VM", "host": "h2", "mac": "02:00:00:00:00:01"},
            {"id": "v3", "name": "someones pet [vm]", "host": "h2", "mac": "02:00:00:00:00:03"}],
}


def install_toy(folder: Path) -> dict[str, str]:
    """The toy kind as an installed package would be: one module, one entry point. Nothing else."""
    site = folder / "site"
    (site / "cs_toy-0.1.dist-info").mkdir(parents=True)
    (site / "cs_toy.py").write_text(TOY_MODULE)
    (site / "cs_toy-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: cs-toy\nVersion: 0.1\n")
    (site / "cs_toy-0.1.dist-info" / "entry_points.txt").write_text("[cs_inventory.collectors]\ntoy = cs_toy\n")
    return {**os.environ, "PYTHONPATH": str(site)}


def tool(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(TOOL), *args], capture_output=True, text=True, timeout=60, env=env)


def test_a_toy_kind_in_one_module_gets_everything(tmp_path: Path) -> None:
    env = install_toy(tmp_path)
    estate = tmp_path / "toy.json"
    estate.write_text(json.dumps(ESTATE))
    config = tmp_path / "c.toml"
    config.write_text('[database]\npath = "inv.db"\n[cloudstack]\nversion = "4.20"\n'
                      f'[[toy]]\nname = "playroom"\npath = "{estate}"\n')
    first = tool(env, "scan", "--config", str(config), "--only", "toy", "--record", str(tmp_path / "rec"),
                 "--fail-on", "never")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "playroom" in first.stdout and "toy" in first.stdout

    hosts = json.loads(tool(env, "export", "--config", str(config), "--table", "hosts", "--format", "json").stdout)
    assert sorted(h["name"] for h in hosts) == ["toy-host-1", "toy-host-2"] and {h["hypervisor"] for h in hosts} == {"toy"}
    shown = tool(env, "show", "--config", str(config))
    assert "playroom" in shown.stdout and "someones pet" not in shown.stderr, shown.stderr

    # the rules that apply to every kind, applied to this one
    checked = tool(env, "check", "--config", str(config), "--format", "json", "--fail-on", "never")
    findings = json.loads(checked.stdout)["findings"]
    rules = {f["rule_id"] for f in findings}
    assert {"cluster-same-cpu", "duplicate-mac", "shared-storage-on-every-host", "storage-capacity",
            "unmanaged-vms"} <= rules, rules
    assert not {r for r in rules if r.startswith(("kvm-", "xen-", "vmware-"))}

    # drift: a VM goes, the next scan says so
    ESTATE_AFTER = dict(ESTATE, vms=ESTATE["vms"][:2])
    estate.write_text(json.dumps(ESTATE_AFTER))
    assert tool(env, "scan", "--config", str(config), "--quiet", "--fail-on", "never").returncode == 0
    drift = tool(env, "diff", "--config", str(config), "--format", "json")
    changes = json.loads(drift.stdout)["changes"]
    assert [(c["table"], c["change"], c["key"]) for c in changes if c["table"] == "vms"] == [("vms", "removed", "v3")]

    # a recording of the toy kind replays like any other
    replayed = tool(env, "import", "recorded", str(tmp_path / "rec"), "--config", str(config))
    assert replayed.returncode == 0, replayed.stderr
    unknown = tool({**os.environ}, "import", "recorded", str(tmp_path / "rec"), "--db", str(tmp_path / "x.db"))
    assert unknown.returncode == 2 and "recorded kind 'toy' is not installed" in unknown.stderr
