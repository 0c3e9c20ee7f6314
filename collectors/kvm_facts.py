"""What the KVM fact script's output says: its commands' outputs (``ssh_facts``) parsed into facts.

Pure, like the rest of the normaliser: a command that is missing on the host (exit 127) or failed
leaves its fact unknown, never false.
"""

from __future__ import annotations

import json
import re
from typing import Any

from inventory.normalise import parse_properties

AGENT_CERTIFICATES = ("cloud.jks", "cloud.crt", "cloud.ca.crt", "cloud.key")  # as ssh_facts tests them
# agent.properties keys worth keeping; anything else (keystore passphrases …) is never stored or recorded.
AGENT_KEYS = ("zone", "pod", "cluster", "guid", "host", "port", "resource", "hypervisor.type",
              "private.network.device", "public.network.device", "guest.network.device",
              "local.storage.uuid", "local.storage.path", "network.bridge.type", "host.cpu.manual.speed.mhz",
              "guest.cpu.mode", "guest.cpu.model", "guest.cpu.features", "host.reserved.mem.mb", "control.cidr",
              "private.bridge.name")

def parse_facts(outputs: dict[str, Any] | None) -> dict[str, Any]:
    """Turn raw command outputs ({name: {"rc": int, "out": str}}) into facts.

    A command that is missing on the host (exit 127) or failed leaves its fact out: unknown,
    not false. ``unknown`` lists those facts.
    """
    if not outputs:
        return {}
    facts: dict[str, Any] = {"unknown": [], "problems": []}

    def ok(name: str) -> str | None:
        result = outputs.get(name)
        if result is None or result["rc"] != 0:
            facts["unknown"].append(name)
            if result is not None and result["rc"] == 127:  # the host lacks the command: that too is a fact
                facts.setdefault("missing_commands", []).append(name)
            return None
        return str(result["out"])

    if (text := ok("os_release")) is not None:
        facts["os"] = {k: v.strip('"\'') for k, v in
                       (line.split("=", 1) for line in text.splitlines() if "=" in line)}
    if (text := ok("uname")) is not None and len(parts := text.split()) >= 3:
        facts["kernel"], facts["machine"] = parts[1], parts[2]
    if (text := ok("cpu_virt")) is not None:
        words = text.split()
        facts["cpu_virt"] = "vmx" in words or "svm" in words
        facts["dev_kvm"] = "dev_kvm" in words
    if (text := ok("agent_package")) is not None:
        status, _, version = text.strip().partition("|")
        if status.endswith(" installed") and version:
            facts["agent_version"] = version
        else:
            facts["agent_state"] = "not-installed"
    if "agent_state" not in facts and (text := ok("agent_service")) is not None and text.strip():
        facts["agent_state"] = text.split()[0]
    result = outputs.get("agent_properties")
    if result is not None and result["rc"] == 0:
        props = parse_properties(result["out"])
        facts["agent_properties"] = {k: props[k] for k in AGENT_KEYS if k in props}
    if (text := ok("links")) is not None and (links := _json_list(facts, "links", text)) is not None:
        facts["links"] = links
    if (text := ok("default_route")) is not None and (routes := _json_list(facts, "default_route", text)) is not None:
        dev = routes[0].get("dev") if routes and isinstance(routes[0], dict) else None
        facts["default_route_dev"] = dev if isinstance(dev, str) else None
    if (text := ok("ovs")) is not None:
        facts["ovs"] = {line.split(":", 1)[0]: line.split(":", 1)[1].split()
                        for line in text.splitlines() if ":" in line}
    if (text := ok("mounts")) is not None:
        facts["mounts"] = [{"source": f[0], "mount_path": _unescape_mount(f[1]), "fstype": f[2]}
                           for f in (line.split() for line in text.splitlines()) if len(f) >= 3]
    if (text := ok("timesync")) is not None:
        facts["time_synced"] = _time_synced(text)
    _security_facts(facts, ok)
    _libvirt_facts(facts, ok)
    _network_facts(facts, ok)
    return facts


def _pairs(text: str, sep: str = "=") -> dict[str, str]:
    return {k.strip(): v.strip().strip('"') for k, _, v in (line.partition(sep) for line in text.splitlines()) if _}


def _security_facts(facts: dict[str, Any], ok: Any) -> None:
    """FQDN, distribution release, Java, SELinux, AppArmor, the agent's certificates."""
    if (text := ok("fqdn")) is not None and text.strip():
        facts["fqdn"] = text.strip()
    if (text := ok("distro_release")) is not None:
        facts["distro_release"] = _pairs(text)
    if (text := ok("java")) is not None and (found := re.search(r'version "([^"]+)"', text)):
        facts["java_version"] = found.group(1)
    if (text := ok("selinux")) is not None:
        values = _pairs(text)
        facts["selinux_config"] = values.get("SELINUX")
        mode = values.get("mode") or values.get("SELINUX")
        facts["selinux_mode"] = mode.lower() if mode else None
    if (text := ok("apparmor")) is not None:
        lines = text.split("\n")
        if lines and lines[0].strip() == "enabled":
            profiles = {m.group(1): m.group(2) for line in lines[1:]
                        if (m := re.match(r"(\S+) \((\w+)\)", line.strip()))}
            facts["apparmor_profiles"] = profiles
            modes = sorted(set(profiles.values()))
            facts["apparmor_libvirt"] = ",".join(modes) if modes else "unloaded"
    if (text := ok("agent_certificates")) is not None:
        present = set(text.split())
        facts["agent_certificates"] = all(name in present for name in AGENT_CERTIFICATES)
        facts["uefi_properties"] = "uefi.properties" in present


def _libvirt_facts(facts: dict[str, Any], ok: Any) -> None:
    """libvirtd's listening settings, its socket units and its command line; Open vSwitch; aria2."""
    libvirtd: dict[str, Any] = {}
    if (text := ok("libvirtd_conf")) is not None:
        conf: dict[str, str] = {}
        defaults: dict[str, str] = {}
        for line in text.splitlines():
            where, _, rest = line.partition(":") if line.startswith(("/", "libvirt.conf:")) else ("", "", line)
            key, _, value = rest.partition("=")
            if not _:
                continue
            target = defaults if where.startswith("/") else conf
            target[key.strip() if not where.startswith("libvirt.conf") else "remote_mode"] = value.strip().strip('"')
        libvirtd.update(conf=conf, startup=defaults)
    if (text := ok("libvirtd_sockets")) is not None:
        values = _pairs(text)
        libvirtd["args"] = values.pop("libvirtd.args", None)
        libvirtd["sockets"] = values
    if libvirtd:
        facts["libvirtd"] = libvirtd
    if (text := ok("ovs_version")) is not None and (found := re.search(r"(\d+\.\d+(\.\d+)?)", text)):
        facts["ovs_version"] = found.group(1)
    if (text := ok("bridge_module")) is not None:
        facts["bridge_module"] = text.strip()
    if (text := ok("aria2")) is not None:
        facts["aria2"] = text.strip()


def _network_facts(facts: dict[str, Any], ok: Any) -> None:
    """What listens, the agent's connections to port 8250, the firewall, the IPv4 routes."""
    if (text := ok("listening")) is not None:
        ports = sorted({int(p) for a in text.split() if (p := a.rsplit(":", 1)[-1]).isdigit()})
        facts["listening_ports"] = ports
        facts["libvirt_tls"] = 16514 in ports
    if (text := ok("agent_connections")) is not None:
        facts["agent_peers"] = text.split()
        facts["agent_connected"] = any(a.rsplit(":", 1)[-1] == "8250" for a in text.split())
    if (text := ok("firewall")) is not None:
        settings = {k.rsplit(":", 1)[-1]: v for k, v in _pairs(text).items()}
        facts["firewall_settings"] = settings
        if settings.get("firewalld") == "active":
            facts["firewall"] = "firewalld"
        elif settings.get("ENABLED", "").lower() == "yes":
            facts["firewall"] = "ufw"
        elif settings.get("firewalld") or "ENABLED" in settings:
            facts["firewall"] = "none"
    if (text := ok("routes")) is not None and (routes := _json_list(facts, "routes", text)) is not None:
        facts["routes"] = [{"dst": r.get("dst"), "dev": r.get("dev")} for r in routes if isinstance(r, dict)]


def _json_list(facts: dict[str, Any], name: str, text: str) -> list[Any] | None:
    """A command's JSON list (``ip -j …``); one that is not (iproute2 5.9 wrote invalid JSON for ERSPAN links)
    leaves the fact unknown and says so, and costs nothing else."""
    try:
        value = json.loads(text or "[]")
    except ValueError as exc:
        facts["unknown"].append(name)
        facts["problems"].append(f"fact {name}: not JSON ({exc}); left unknown")
        return None
    if not isinstance(value, list):
        facts["unknown"].append(name)
        facts["problems"].append(f"fact {name}: not a list; left unknown")
        return None
    return value


def _time_synced(text: str) -> bool | None:
    value = text.strip().lower()
    if value in ("yes", "no"):
        return value == "yes"
    for line in text.splitlines():
        if line.lower().startswith("leap status"):
            return "normal" in line.lower()
    return None


def _unescape_mount(path: str) -> str:
    return path.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")



def cloudstack_host_os(facts: dict[str, Any]) -> str | None:
    """Host.OS as CloudStack's agent reports it: /etc/redhat-release up to " release", else lsb-release's
    DISTRIB_ID, else os-release's NAME."""
    release = facts.get("distro_release") or {}
    if release.get("redhat-release"):
        return str(release["redhat-release"]).split(" release", 1)[0].strip() or None
    if release.get("DISTRIB_ID"):
        return str(release["DISTRIB_ID"]).strip().strip('"') or None
    name = (facts.get("os") or {}).get("NAME")
    return str(name) if name else None
