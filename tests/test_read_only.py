"""Read-only, enforced on this side for every API: a call that is not a read raises before a byte is sent.

libvirt is opened read-only (the daemon refuses writes itself); XenAPI's transport sends only login, logout and
get_all_records; the vSphere session's stub calls only retrieve and view methods; the SSH session runs only the
fixed fact script; the CloudStack client sends only list commands (tests/test_cloudstack_api.py).
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Any

import pytest

from collectors.base import Calls
from collectors.xenserver import READ_CALLS, XenServerCollector, XenTarget
from fixtures.xapi.server import serve_dump
from fixtures.xapi.synth import generate
from inventory.errors import ReadOnlyRefused
from inventory.model import Secret


def test_xenapi_sends_nothing_but_its_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dump = tmp_path / "pool.xml"
    dump.write_text(generate(1, 2, "xcp-ng-8.3", seed="ro"))
    server = serve_dump(dump)
    monkeypatch.setenv("CSI_RO_PW", "xenroot")
    collector = XenServerCollector(XenTarget(name="p", url=server.url, password=Secret("env", "CSI_RO_PW")))
    try:
        calls = Calls()
        with collector.connect(server.url, calls) as session:
            before = sum(server.api.calls.values())
            vm = next(iter(server.api.records["VM"]))
            for write in (lambda: session.api.xenapi.VM.hard_shutdown(vm), lambda: session.api.xenapi.VM.destroy(vm),
                          lambda: session.api.xenapi.pool.set_name_label(vm, "x"),
                          lambda: session.api.xenapi.VM.get_record(vm)):  # a read, but not one of ours: refused too
                with pytest.raises(ReadOnlyRefused, match="not a read"):
                    write()
            assert sum(server.api.calls.values()) == before  # nothing reached the server
            assert session.all_records("VM")  # what we do read still works
    finally:
        server.stop()
    assert all(name.startswith("session.") or name.endswith(".get_all_records") for name in server.api.calls)
    assert set(server.api.calls) <= READ_CALLS


@pytest.mark.heavy
def test_vsphere_calls_nothing_but_retrieve_and_view_methods(tmp_path: Path) -> None:
    from pyVim.connect import Disconnect, SmartConnect
    from pyVmomi import vim

    from collectors.vmware import VmwareCollector, VmwareTarget
    from fixtures.vcsim import start_vcsim
    from fixtures.xapi.tls import self_signed

    tls = self_signed(tmp_path / "tls", name="vcenter")
    sim = start_vcsim(clusters=1, cluster_hosts=1, standalone_hosts=0, vms=1, tls=tls)
    os.environ["CSI_RO_VC"] = "pw"
    target = VmwareTarget(name="vc", host=sim.host, port=sim.port, username="u", password=Secret("env", "CSI_RO_VC"),
                          ca_file=tls[0])

    def powered_on(content: Any) -> list[str]:
        view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
        states = [vm.runtime.powerState for vm in view.view]
        view.Destroy()
        return states

    try:
        with VmwareCollector(target).connect(target.endpoint, Calls()) as session:
            states = powered_on(session.content)
            view = session.content.viewManager.CreateContainerView(session.content.rootFolder, [vim.VirtualMachine], True)
            vm = view.view[0]
            for write in (vm.PowerOffVM_Task, lambda: vm.Rename_Task("x"), vm.Destroy_Task):
                with pytest.raises(ReadOnlyRefused, match="not a read"):
                    write()
        other = SmartConnect(host=sim.host, port=sim.port, user="u", pwd="pw",
                             sslContext=ssl.create_default_context(cafile=str(tls[0])))
        assert powered_on(other.RetrieveContent()) == states and "poweredOn" in states  # nothing happened
        Disconnect(other)
    finally:
        sim.stop()


@pytest.mark.heavy
def test_ssh_runs_nothing_but_the_fact_script(sshd: Any, tmp_path: Path) -> None:
    from collectors.ssh_facts import SshSession, facts_script, fetch_facts

    marker = tmp_path / "written"
    script = facts_script("/etc/cloudstack/agent/agent.properties", 5)
    session = SshSession("127.0.0.1", port=sshd.port, user="root", key_file=sshd.client_key,
                         known_hosts=sshd.known_hosts, timeout=5, command_timeout=5, allowed=frozenset({script}))
    try:
        for command in (f"touch {marker}", script + f"; touch {marker}", "reboot"):
            with pytest.raises(ReadOnlyRefused, match="not the fact script"):
                session.run(command)
        assert session.calls.count == 0 and not marker.exists()
        assert fetch_facts(session, "/etc/cloudstack/agent/agent.properties")["uname"]["rc"] == 0
    finally:
        session.close()
