"""Host setup: how each host is prepared for CloudStack — its name, Java, security policies, libvirtd's
listeners, the agent's certificates, the firewall, firmware and tools a feature needs."""

from __future__ import annotations

import re
from collections.abc import Iterator

from inventory.model import Host
from inventory.rulebook import Finding, InventoryView, Rule, code, doc, rule
from inventory.rules.common import raw_of, version_tuple

KVM = "installguide/hypervisor/kvm.rst"
ALL_TAGS = "4.18.0.0–4.22.0.1"
EL = {"rhel", "rocky", "almalinux", "ol", "centos"}


@rule("kvm-fqdn", hypervisors={"kvm"}, basis="DOC",
      sources=[doc(KVM, "115-123", ALL_TAGS + " (117-125 at 4.18.0.0–4.20.1.0, 117-125 at 4.21.0.0)")],
      evidence=["hosts.fqdn"],
      remediation="Give the host a fully qualified name (e.g. kvm1.lab.example.org), in /etc/hosts if DNS lacks it.")
def kvm_fqdn(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """`hostname --fqdn` gives a fully qualified name.

    cloudstack-setup-agent itself only needs the command to succeed; the installation guide asks for a
    name with a domain.
    """
    for host in view.hosts_of("kvm"):
        if host.fqdn is not None and "." not in host.fqdn.strip("."):
            yield r.finding(host, f"{host.name}: hostname --fqdn says {host.fqdn!r}, no domain", observed=host.fqdn,
                            expected="a name with a domain, e.g. kvm1.lab.example.org")


def java_major(version: str) -> int | None:
    """17 for "17.0.11", 11 for "11.0.2", 8 for "1.8.0_292"."""
    numbers = version_tuple(re.split(r"[_+-]", version)[0])
    if not numbers:
        return None
    return numbers[1] if numbers[0] == 1 and len(numbers) > 1 else numbers[0]


@rule("kvm-java-version", hypervisors={"kvm"}, basis="DOC",
      sources=[doc(KVM, "161-164", "4.20.0.0–4.22.0.1: Java 17 (163-166 at 4.20.0.0–4.20.1.0, 163-166 at 4.21.0.0)"),
               doc(KVM, "163-166", "4.18.0.0–4.19.3.0: Java 11")],
      evidence=["hosts.java_version"],
      remediation="Install the JRE the release needs (11 for 4.18/4.19, 17 from 4.20) and make it the default "
                  "(alternatives --config java).")
def kvm_java_version(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """The host's default Java is the major version the release's agent needs: 11 up to 4.19, 17 from 4.20."""
    wanted = 17 if view.release.at_least("4.20.0.0") else 11
    for host in view.hosts_of("kvm"):
        major = java_major(host.java_version) if host.java_version else None
        if major is not None and major != wanted:
            yield r.finding(host, f"{host.name}: default java is {host.java_version}; CloudStack "
                            f"{view.release.asked} needs Java {wanted}", observed=host.java_version,
                            expected=f"Java {wanted}")


@rule("kvm-security-policies", hypervisors={"kvm"}, basis="DOC",
      sources=[doc(KVM, "543-624", ALL_TAGS + " (383-464 at 4.18.0.0–4.19.3.0, 491-572 at 4.20.0.0, 497-578 at 4.20.1.0, "
                                              "495-576 at 4.20.2.0, 542-623 at 4.20.3.0, 545-626 at 4.21.0.0)")],
      evidence=["hosts.selinux_mode", "hosts.apparmor_libvirt", "hosts.raw_json.apparmor_profiles"],
      remediation="Set SELinux to permissive (/etc/selinux/config and setenforce permissive), or disable AppArmor's "
                  "libvirtd and virt-aa-helper profiles — or write policies that let the agent do its work.")
def kvm_security_policies(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """SELinux is not enforcing and AppArmor's libvirt profiles are not loaded.

    The guide disables both so the agent has the permissions it needs; it notes that production may keep
    SELinux enforcing with policies written for CloudStack, which a scan cannot judge.
    """
    for host in view.hosts_of("kvm"):
        if host.selinux_mode == "enforcing":
            yield r.finding(host, f"{host.name}: SELinux is enforcing", observed="enforcing",
                            expected="permissive")
        if host.apparmor_libvirt and host.apparmor_libvirt != "unloaded":
            profiles = raw_of(host).get("apparmor_profiles") or {}
            yield r.finding(host, f"{host.name}: AppArmor profiles for libvirt are loaded "
                            f"({', '.join(f'{k} {v}' for k, v in sorted(profiles.items()))})",
                            observed=host.apparmor_libvirt, expected="libvirtd and virt-aa-helper profiles disabled")


@rule("kvm-libvirtd-config", hypervisors={"kvm"}, basis="DOC",
      sources=[doc(KVM, "449-531", "4.18.0.0–4.22.0.1 (each tag's own steps; 301-372 at 4.18.0.0)"),
               doc(KVM, "496", "4.20.1.0–4.22.0.1: mask the sockets on RHEL 8 / CentOS 8 / SUSE / Ubuntu / Debian (SUSE and "
                               "EL 8 only to 4.20.0.0; 450 at 4.20.1.0, 448 at 4.20.2.0, 495 at 4.20.3.0, 498 at 4.21.0.0)"),
               doc(KVM, "521-525", "4.20.0.0–4.22.0.1: remote_mode=\"legacy\" (EL9 and Ubuntu 24.04; SUSE 15 SP7 "
                   "from 4.21.0.0; 475-479 at 4.20.0.0–4.20.1.0, 473-477 at 4.20.2.0, 520-524 at 4.20.3.0, 523-527 "
                   "at 4.21.0.0)")],
      evidence=["hosts.raw_json.libvirtd", "hosts.os_id", "hosts.os_version"],
      remediation="Configure libvirtd as the guide says: listen_tcp = 0 and mdns_adv = 0 in libvirtd.conf, start it "
                  "with --listen, mask its socket units, and set remote_mode=\"legacy\" in libvirt.conf on newer "
                  "distributions; restart libvirtd.")
def kvm_libvirtd_config(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """libvirtd is set up as the installation guide of the release says, for the host's distribution.

    No insecure TCP listener or mDNS adverts (libvirtd.conf), libvirtd started with --listen, its socket
    units masked (EL 8+ and SUSE in every release; Ubuntu and Debian from 4.20.1.0), and on EL 9+ and
    Ubuntu 24.04+ (from 4.20.0.0) and SUSE 15 SP7 (from 4.21.0.0) libvirt.conf's remote_mode="legacy".
    """
    for host in view.hosts_of("kvm"):
        libvirtd = raw_of(host).get("libvirtd")
        if not libvirtd:
            continue
        for problem, observed, expected in _libvirtd_problems(view, host, libvirtd):
            yield r.finding(host, f"{host.name}: {problem}", observed=observed, expected=expected)


def _libvirtd_problems(view: InventoryView, host: Host, libvirtd: dict[str, object]) -> Iterator[tuple[str, str, str]]:
    conf = libvirtd.get("conf") or {}
    assert isinstance(conf, dict)
    for key in ("listen_tcp", "mdns_adv"):
        if str(conf.get(key, "0")).strip('"') not in ("0", ""):
            yield f"libvirtd.conf {key} = {conf[key]}", f"{key} = {conf[key]}", f"{key} = 0"
    args = libvirtd.get("args")
    if isinstance(args, str) and args and not re.search(r"(^|\s)(--listen|-l)(\s|$)", args):
        yield "libvirtd runs without --listen", args, "libvirtd --listen"
    family, major, version = _distribution(host)
    sockets = libvirtd.get("sockets") or {}
    assert isinstance(sockets, dict)
    mask = (family in ("el", "suse") and (family == "suse" or major >= 8)) or \
        (family in ("ubuntu", "debian") and view.release.at_least("4.20.1.0"))
    if mask:
        live = sorted(u for u, state in sockets.items() if u.startswith("libvirtd") and state in ("enabled", "static",
                                                                                             "indirect"))
        if live:
            yield f"libvirtd socket units not masked: {', '.join(live)}", ", ".join(live), "masked"
    release = view.release
    legacy = release.at_least("4.20.0.0") and ((family == "el" and major >= 9) or (
        family == "ubuntu" and version >= (24, 4))) or (
        release.at_least("4.21.0.0") and family == "suse" and version >= (15, 7))
    if legacy and conf.get("remote_mode", "").strip('"') != "legacy":
        yield "libvirt.conf has no remote_mode=\"legacy\"", conf.get("remote_mode") or "unset", "legacy"


def _distribution(host: Host) -> tuple[str | None, int, tuple[int, ...]]:
    os_id = (host.os_id or "").lower()
    version = version_tuple(host.os_version)
    family = "el" if os_id in EL else "suse" if os_id in ("sles", "opensuse-leap", "sled") else os_id or None
    return family, version[0] if version else 0, version


def agent_configured(host: Host) -> bool:
    """CloudStack has set the host up: the agent has a guid (given when the host is added)."""
    return bool(host.agent_guid)


@rule("kvm-agent-tls", hypervisors={"kvm"}, basis="DOC",
      sources=[doc("adminguide/hosts.rst", "823-841", ALL_TAGS + " (734-752 at 4.18.0.0, 768-786 at 4.18.1.0–4.19.0.2, "
                                                                 "767-785 at 4.19.1.0–4.20.3.0)"),
               doc("adminguide/hosts.rst", "795-807", ALL_TAGS + " (ca.plugin.root.auth.strictness; 706-718 at 4.18.0.0, "
                                                                 "740-752 at 4.18.1.0–4.19.0.2, 739-751 at "
                                                                 "4.19.1.0–4.20.3.0)"),
               doc(KVM, "468", ALL_TAGS + " (tls_port 16514; 321 at 4.18.0.0–4.19.3.0, 422 at 4.20.0.0–4.20.1.0, 420 at "
                                          "4.20.2.0, 467 at 4.20.3.0, 470 at 4.21.0.0)")],
      evidence=["hosts.agent_certificates", "hosts.libvirt_tls", "hosts.agent_guid",
                "setting ca.plugin.root.auth.strictness"],
      remediation="Provision the host's certificates (provisionCertificate, or keystore-setup and "
                  "keystore-cert-import) and restart libvirtd so it listens on 16514.")
def kvm_agent_tls(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """A host CloudStack set up has its keystore and certificates, and libvirtd listens for TLS on 16514.

    When the host is added, CloudStack's CA issues cloud.jks, cloud.crt, cloud.ca.crt and cloud.key in the
    agent's directory (the scan tests they exist, never reads them); with
    ca.plugin.root.auth.strictness true — the default of fresh installations — an agent without them
    cannot connect. Secured hosts migrate over libvirt's TLS port 16514.
    """
    strict = view.setting("ca.plugin.root.auth.strictness")
    for host in view.hosts_of("kvm"):
        if not agent_configured(host):
            continue  # cloudstack-setup-agent provisions them when the host is added
        if host.agent_certificates is False and strict.value.lower() == "true":
            yield r.finding(host, f"{host.name}: the agent has no keystore/certificates ({strict.name} "
                            f"{strict.value}, {strict.source})", observed="missing",
                            expected="cloud.jks, cloud.crt, cloud.ca.crt, cloud.key")
        if host.agent_certificates and host.libvirt_tls is False:
            yield r.finding(host, f"{host.name}: nothing listens on 16514 (libvirt TLS)", observed="not listening",
                            expected="libvirtd on 16514")


@rule("kvm-firewalld-off", hypervisors={"kvm"}, basis="BP",
      sources=[doc(KVM, "1552-1554", ALL_TAGS + " (1342-1344 at 4.18.0.0–4.18.2.5, 1388-1390 at 4.19.0.0–4.19.3.0, "
                                                "1500-1502 at 4.20.0.0, 1506-1508 at 4.20.1.0, 1568-1570 at 4.20.2.0, "
                                                "1615-1617 at 4.20.3.0, 1554-1556 at 4.21.0.0)")],
      evidence=["hosts.firewall"],
      remediation="Stop and disable firewalld (systemctl disable --now firewalld), opening the ports with iptables.")
def kvm_firewalld_off(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """firewalld is not running on EL and SUSE hosts (the guide recommends disabling it)."""
    for host in view.hosts_of("kvm"):
        if host.firewall == "firewalld":
            yield r.finding(host, f"{host.name}: firewalld is active", observed="active", expected="disabled")


@rule("kvm-ufw-forward-policy", hypervisors={"kvm"}, basis="DOC", since="4.21.0.0",
      sources=[doc(KVM, "1589-1597", "4.21.0.0–4.22.0.1 (1591-1599 at 4.21.0.0)")],
      evidence=["hosts.firewall", "hosts.raw_json.firewall_settings"],
      remediation="Set DEFAULT_FORWARD_POLICY=\"ACCEPT\" in /etc/default/ufw and reload UFW.")
def kvm_ufw_forward_policy(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """Where UFW is enabled, its default forward policy is ACCEPT (Ubuntu 22.04 made it DROP)."""
    for host in view.hosts_of("kvm"):
        policy = (raw_of(host).get("firewall_settings") or {}).get("DEFAULT_FORWARD_POLICY")
        if host.firewall == "ufw" and policy and policy.upper() != "ACCEPT":
            yield r.finding(host, f"{host.name}: UFW forwards with policy {policy}", observed=policy,
                            expected="ACCEPT")


@rule("kvm-uefi-firmware", hypervisors={"kvm"}, basis="DOC", since="4.19.1.0",
      sources=[doc(KVM, "1641-1648", "4.19.1.0–4.22.0.1 (1477-1484 at 4.19.1.0–4.19.3.0, 1589-1596 at 4.20.0.0, 1595-1602 "
                                     "at 4.20.1.0, 1657-1664 at 4.20.2.0, 1707-1714 at 4.20.3.0, 1643-1650 at 4.21.0.0)")],
      evidence=["hosts.uefi_firmware", "hosts.raw_json.uefi_loaders", "vms.raw_json.uefi"],
      remediation="Install ovmf (Debian, Ubuntu) or edk2-ovmf (EL) on every host of a cluster that runs UEFI "
                  "instances.")
def kvm_uefi_firmware(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """Hosts of a cluster that runs UEFI instances have UEFI firmware (ovmf or edk2-ovmf).

    UEFI is an optional feature: the requirement holds where an instance of the cluster boots UEFI, so
    that it can start (or migrate) on any host of it.
    """
    uefi_clusters = {(vm.target, vm.cluster_key) for vm in view.vms if (vm.raw_json or {}).get("uefi")}
    for group in view.groups_of("kvm"):
        if (group.target, group.key) not in uefi_clusters and not any(
                (group.target, h.cluster_key) in uefi_clusters for h in group.hosts):
            continue
        for host in group.hosts:
            if host.uefi_firmware is False:
                yield r.finding(host, f"{host.name}: libvirt offers no UEFI loader, and the cluster runs UEFI "
                                "instances", observed="no loader", expected="ovmf / edk2-ovmf", cluster=group.key)


@rule("kvm-aria2", hypervisors={"kvm"}, basis="DOC",
      sources=[doc(KVM, "1608-1617", ALL_TAGS + " (1398-1407 at 4.18.0.0–4.18.2.5, 1444-1453 at 4.19.0.0–4.19.3.0, "
                                                "1556-1565 at 4.20.0.0, 1562-1571 at 4.20.1.0, 1624-1633 at 4.20.2.0, "
                                                "1671-1680 at 4.20.3.0, 1610-1619 at 4.21.0.0)")],
      evidence=["hosts.raw_json.aria2", "hosts.raw_json.missing_commands", "[cloudstack] features"],
      remediation="Install aria2 on every KVM host (from your preferred source if the distribution lacks it).")
def kvm_aria2(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """With direct-download templates, every KVM host has aria2.

    Checked when the config says the estate uses the feature ([cloudstack] features =
    ["direct-download"]): a host scan cannot tell whether templates bypass secondary storage.
    """
    if not view.uses("direct-download"):
        return
    for host in view.hosts_of("kvm"):
        if "aria2" in (raw_of(host).get("missing_commands") or []):
            yield r.finding(host, f"{host.name}: aria2c is not installed", observed="missing", expected="aria2c")


# the rulesets CloudStack enables itself (HostMO.enableVncOnHostFirewall): their ports count though disabled now
VNC_RULESETS_CLOUDSTACK_ENABLES = {"vncserver", "gdbserver"}


@rule("vmware-vnc-firewall", hypervisors={"vmware"}, basis="DOC",
      sources=[doc("installguide/hypervisor/vsphere.rst", "348-358", "4.18.0.0–4.22.0.1 (350-360 at 4.18.0.0–4.20.3.0)"),
               code("vmware-base/src/main/java/com/cloud/hypervisor/vmware/mo/HostMO.java",
                    "enableVncOnHostFirewall (enables vncServer and gdbserver)", "≤4.11–4.22")],
      evidence=["hosts.raw_json.firewall", "setting vmware.additional.vnc.portrange.start",
                "setting vmware.additional.vnc.portrange.size"],
      remediation="Open the console proxy's port range in every ESXi firewall: a custom ruleset (written from "
                  "/etc/rc.local.d/local.sh so it survives reboots) for the ports the default rulesets do not cover.")
def vmware_vnc_firewall(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """The ESXi firewall admits the console proxy's additional VNC port range.

    The range is vmware.additional.vnc.portrange.start and .size (50000, 1000: what ESXi's gdbserver
    ruleset opens, and CloudStack enables gdbserver and vncServer itself); a larger range needs a
    ruleset of the operator's, enabled.
    """
    start = view.setting("vmware.additional.vnc.portrange.start")
    size = view.setting("vmware.additional.vnc.portrange.size")
    first, last = int(start.value), int(start.value) + int(size.value) - 1
    for host in view.hosts_of("vmware"):
        rulesets = raw_of(host).get("firewall")
        if rulesets is None:
            continue
        # the open ranges that meet the console's: one that misses it opens none of it (_uncovered); a ruleset with
        # no ports (most of them) is passed over first, and the ports of one that is off are not read
        open_ranges = [(a, b) for rs in rulesets if rs.get("ports") and (rs.get("enabled") or str(rs.get("key")).lower()
                       in VNC_RULESETS_CLOUDSTACK_ENABLES) for a, b in rs["ports"] if a <= last and b >= first]
        gaps = _uncovered(first, last, open_ranges)
        if gaps:
            shown = ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in gaps[:3])
            yield r.finding(host, f"{host.name}: the firewall does not admit VNC ports {shown} "
                            f"({start.name} {start.value}, {size.name} {size.value}, {size.source})",
                            observed=f"closed: {shown}", expected=f"{first}-{last} open")


def _uncovered(first: int, last: int, ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    gaps, at = [], first
    for a, b in sorted(ranges):
        if b < at:
            continue
        if a > at:
            gaps.append((at, min(a - 1, last)))
        at = max(at, b + 1)
        if at > last:
            break
    if at <= last:
        gaps.append((at, last))
    return [g for g in gaps if g[0] <= last]
