"""Connection model: the address a target names, and how CloudStack's agents and masters are reached."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from inventory.rulebook import Finding, InventoryView, Rule, code, doc, rule
from inventory.rules.common import raw_of

XEN_POOL = ("plugins/hypervisors/xenserver/src/main/java/com/cloud/hypervisor/xenserver/resource/"
            "XenServerConnectionPool.java")


@rule("xen-target-is-master", hypervisors={"xenserver"}, basis="INF",
      sources=[code(XEN_POOL, "getConnect (HOST_IS_SLAVE: reconnects to the master)", "≤4.11–4.22")],
      evidence=["clusters.raw_json.configured_is_master", "clusters.raw_json.master_url"],
      remediation="Configure the pool master's address (CloudStack follows HOST_IS_SLAVE too, but the master must "
                  "be reachable from the management server).")
def xen_target_is_master(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """A XenServer target should be the pool master, not a member.

    CloudStack itself follows a member's HOST_IS_SLAVE answer to the master, so a member's address
    works as long as the master is reachable: an inference, reported for the operator's information.
    """
    for cluster in view.clusters_of("xenserver"):
        pool = raw_of(cluster)
        if pool.get("configured_is_master") is False:
            yield r.finding(view.target_by_name[cluster.target],
                            f"configured on a pool member; the master is {pool.get('master_url')}",
                            observed=pool.get("configured_url"), expected=pool.get("master_url"), cluster=cluster.key)


@rule("xen-master-enabled", hypervisors={"xenserver"}, basis="INF",
      sources=[code(XEN_POOL, "getConnect (talks to the master only)", "≤4.11–4.22")],
      evidence=["hosts.is_pool_master", "hosts.state"],
      remediation="Enable the pool master (xe host-enable) or designate a new master.")
def xen_master_enabled(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """The pool master is enabled and live.

    No CloudStack code was found that refuses a disabled master; since CloudStack drives the whole
    pool through the master, a master that is disabled or not live is inferred to stop it.
    """
    for host in view.hosts_of("xenserver"):
        if host.is_pool_master and host.state != "connected":
            yield r.finding(host, f"pool master {host.name} is {host.state}", observed=host.state, expected="connected")


@rule("kvm-agent-running", hypervisors={"kvm"}, basis="CODE",
      sources=[code("server/src/main/java/com/cloud/hypervisor/kvm/discoverer/LibvirtServerDiscoverer.java",
                    "find / waitForHostConnect (no agent connection: the add fails)", "≤4.11–4.22"),
               doc("installguide/hypervisor/kvm.rst", "280", "4.18.0.0–4.22.0.1 (\"Install and configure the Agent\"; 168 "
                                                             "at 4.18.0.0–4.19.3.0, 269 at 4.20.0.0–4.20.1.0, 267 at "
                                                             "4.20.2.0–4.20.3.0, 282 at 4.21.0.0)")],
      evidence=["hosts.agent_state", "hosts.agent_version"],
      remediation="Install cloudstack-agent (the management server does it when adding the host) and start it: "
                  "systemctl enable --now cloudstack-agent.")
def kvm_agent_running(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """A KVM host in CloudStack runs the cloudstack-agent."""
    for host in view.hosts_of("kvm"):
        state = host.agent_state
        if state is not None and state != "active":
            what = "is not installed" if state == "not-installed" else f"is {state}"
            yield r.finding(host, f"{host.name}: cloudstack-agent {what}", observed=state, expected="active")


@rule("kvm-agent-settings-agree", hypervisors={"kvm"}, basis="INF",
      sources=[code("agent/src/main/java/com/cloud/agent/properties/AgentProperties.java", "ZONE, POD, CLUSTER, GUID",
                    "4.18–4.22")],
      evidence=["hosts.agent_zone", "hosts.agent_pod", "hosts.agent_cluster", "hosts.agent_guid"],
      remediation="Re-add the host to the right cluster, or fix zone/pod/cluster in agent.properties and restart "
                  "the agent; every host needs its own guid.")
def kvm_agent_settings_agree(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """Hosts of one cluster have the same zone, pod and cluster in agent.properties, and unique guids.

    The keys are CloudStack's; that hosts scanned as one cluster should agree on them is inferred.
    """
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


@rule("vmware-target-is-vcenter", hypervisors={"vmware"}, basis="DOC",
      sources=[doc("installguide/hypervisor/vsphere.rst", "140", "4.18.0.0–4.22.0.1")],
      evidence=["targets.error"],
      remediation="Configure the vCenter that manages the host: CloudStack adds ESXi hosts only through vCenter.")
def vmware_target_is_vcenter(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """A VMware target is a vCenter, not an ESXi host."""
    for target in view.targets:
        if target.hypervisor == "vmware" and "is an ESXi host" in (target.error or ""):
            yield r.finding(target, f"{target.endpoint} is an ESXi host", observed="ESXi (HostAgent)",
                            expected="vCenter (VirtualCenter)")
