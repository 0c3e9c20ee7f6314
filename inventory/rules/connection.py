"""Connection model: the address a target names, and how CloudStack's agents and masters are reached."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from inventory.rulebook import Finding, InventoryView, Rule, rule
from inventory.rules.common import raw_of


@rule("xen-target-is-master", severity="warning", hypervisors={"xenserver"}, basis="CODE",
      remediation="Configure the pool master's address (CloudStack follows HOST_IS_SLAVE too, but the master must "
                  "be reachable and enabled).",
      reference="apache/cloudstack XenServerConnectionPool.java (HOST_IS_SLAVE handling); xenserver.rst")
def xen_target_is_master(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """A XenServer target should be the pool master, not a member."""
    for cluster in view.clusters_of("xenserver"):
        pool = raw_of(cluster)
        if pool.get("configured_is_master") is False:
            yield r.finding(view.target_by_name[cluster.target],
                            f"configured on a pool member; the master is {pool.get('master_url')}",
                            observed=pool.get("configured_url"), expected=pool.get("master_url"), cluster=cluster.key)


@rule("xen-master-enabled", severity="error", hypervisors={"xenserver"}, basis="CODE",
      remediation="Enable the pool master (xe host-enable) or designate a new master.",
      reference="apache/cloudstack XenServerConnectionPool.java (≤4.11)")
def xen_master_enabled(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """The pool master must be enabled."""
    for host in view.hosts_of("xenserver"):
        if host.is_pool_master and host.state != "connected":
            yield r.finding(host, f"pool master {host.name} is {host.state}", observed=host.state, expected="connected")


@rule("kvm-agent-running", severity="error", hypervisors={"kvm"}, basis="CODE",
      remediation="Install cloudstack-agent (the management server does it when adding the host) and start it: "
                  "systemctl enable --now cloudstack-agent.",
      reference="cloudstack-documentation installguide/hypervisor/kvm.rst; LibvirtServerDiscoverer.java")
def kvm_agent_running(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """A KVM host in CloudStack runs the cloudstack-agent."""
    for host in view.hosts_of("kvm"):
        state = host.agent_state
        if state is not None and state != "active":
            what = "is not installed" if state == "not-installed" else f"is {state}"
            yield r.finding(host, f"{host.name}: cloudstack-agent {what}", observed=state, expected="active")


@rule("kvm-agent-settings-agree", severity="error", hypervisors={"kvm"}, basis="CODE",
      remediation="Re-add the host to the right cluster, or fix zone/pod/cluster in agent.properties and restart "
                  "the agent; every host needs its own guid.",
      reference="apache/cloudstack agent/src/main/java/com/cloud/agent/properties/AgentProperties.java")
def kvm_agent_settings_agree(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """Hosts of one cluster have the same zone, pod and cluster in agent.properties, and unique guids."""
    for group in view.groups_of("kvm"):
        for setting in ("agent_zone", "agent_pod", "agent_cluster"):
            values = Counter(getattr(h, setting) for h in group.hosts if getattr(h, setting) is not None)
            if len(values) > 1:
                common = values.most_common(1)[0][0]
                for host in group.hosts:
                    value = getattr(host, setting)
                    if value is not None and value != common:
                        yield r.finding(host, f"{host.name}: agent.properties {setting[6:]}={value}, its cluster "
                                        f"mates say {common}", observed=value, expected=common, cluster=group.key)
    hosts = view.hosts_of("kvm")
    guids = Counter(h.agent_guid for h in hosts if h.agent_guid)
    for host in hosts:
        if host.agent_guid and guids[host.agent_guid] > 1:
            yield r.finding(host, f"{host.name}: agent guid {host.agent_guid} is used by {guids[host.agent_guid]} "
                            "hosts", observed=host.agent_guid, expected="unique")


@rule("vmware-target-is-vcenter", severity="error", hypervisors={"vmware"}, basis="CODE + DOC",
      remediation="Configure the vCenter that manages the host: CloudStack adds ESXi hosts only through vCenter.",
      reference="cloudstack-documentation installguide/hypervisor/vsphere.rst; VmwareServerDiscoverer.java")
def vmware_target_is_vcenter(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """A VMware target is a vCenter, not an ESXi host."""
    for target in view.targets:
        if target.hypervisor == "vmware" and "is an ESXi host" in (target.error or ""):
            yield r.finding(target, f"{target.endpoint} is an ESXi host", observed="ESXi (HostAgent)",
                            expected="vCenter (VirtualCenter)")
