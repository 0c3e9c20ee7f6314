"""The fast path's reading of a host's data objects (network, firewall, storage, CPU, product): what
``vmware_slim.slim_host`` keeps of each, taken from the XML of its value without building a tree; ElementTree for
what is left (the datastore list).

Each reader gives what ElementTree would for the elements kept (text, or a dict per data object, repeated ones as a
list) and leaves out the rest; slim_host then makes the same of it as of pyvmomi's objects. The firewall, half of a
host's answer, is read as slim_host keeps it already (its inbound TCP rules, numbers and booleans as such). The
fields of a data object come in the order vSphere's WSDL declares them (xsd:sequence), so a data object's own fields
are read before the first nested one that could hold a field of the same name. An element not taken apart as
expected raises ``HostValueNotRead`` (a ValueError): the collector reads the hosts with pyvmomi instead.
"""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET
from functools import cache
from typing import Any


class HostValueNotRead(ValueError):
    """A host value was not what the fast path reads; use pyvmomi's path."""


def xsi_type(attrs: str, default: str = "xsd:string") -> str:
    """The xsi:type in an element's attributes, whatever the prefix (the last one: a reference's own ``type``
    attribute has none)."""
    at = attrs.rfind(':type="')
    return attrs[at + 7:attrs.index('"', at + 7)] if at >= 0 else default


def _elements(text: str, tag: str) -> list[str]:
    """The content of each ``<tag>`` element of ``text`` (a tag that never nests in itself)."""
    found = []
    opening, closing = f"<{tag}", f"</{tag}>"
    at = text.find(opening)
    while at >= 0:
        follows = text[at + len(opening):at + len(opening) + 1]
        if follows == ">" or follows.isspace():
            start = text.index(">", at) + 1
            end = text.find(closing, start)
            if end < 0:
                raise HostValueNotRead(f"<{tag}> is not closed")
            found.append(text[start:end])
            at = text.find(opening, end + len(closing))
        elif follows == "/":
            raise HostValueNotRead(f"an empty <{tag}/> element")
        else:  # another element whose name begins the same (<rule… in <ruleset>)
            at = text.find(opening, at + 1)
    return found


def _leaves(text: str, tags: tuple[str, ...]) -> dict[str, str]:
    """The first text element of each of ``tags`` in ``text``, by tag (absent ones left out)."""
    found: dict[str, str] = {}
    for tag, value in _leaf_pattern(tags).findall(text):
        if tag not in found:
            found[tag] = html.unescape(value) if "&" in value else value
    return found


@cache
def _opening(tag: str) -> re.Pattern[str]:
    return re.compile(rf"<{tag}[\s>/]")


@cache
def _leaf_pattern(tags: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile(rf"<({'|'.join(tags)})(?:\s[^>]*)?>([^<]*)</\1>")


def _before(text: str, *tags: str) -> str:
    """``text`` up to the first of these nested elements: a data object's own fields."""
    cut = min((at for tag in tags if (at := text.find(f"<{tag}")) >= 0), default=len(text))
    return text[:cut]


def _nested(text: str, tag: str) -> str | None:
    found = _elements(text, tag)
    return found[0] if found else None


# the firewall is half of a host's answer, and most of its rules are not inbound TCP. One pass reads each ruleset's
# key (its first field), each rule whole (HostFirewallRule's fields in the WSDL's order: port, endPort, direction,
# portType, protocol) and each ruleset's enabled (after its rules); a rule written otherwise is not matched, and
# the counts below send the host to pyvmomi
_FIREWALL = re.compile(r"<(ruleset)><key>([^<]*)</key>"
                       r"|<(rule)><port>([^<]*)</port>(?:<endPort>([^<]*)</endPort>)?<direction>([^<]*)</direction>"
                       r"(?:<portType>[^<]*</portType>)?<protocol>([^<]*)</protocol></rule>"
                       r"|<enabled>([^<]*)</enabled>")


_INBOUND_TCP = ("inbound", "tcp")


def _firewall(value: str) -> dict[str, Any]:
    """The rulesets as ``vmware_slim.slim_host`` keeps them: key, enabled, and only their inbound TCP rules."""
    rulesets: list[dict[str, Any]] = []
    ruleset: dict[str, Any] = {}
    rules_read = 0
    for opened, key, rule, port, end, direction, protocol, state in _FIREWALL.findall(value):
        if opened:
            ruleset = {"key": _unescaped(key), "enabled": None, "rule": []}
            rulesets.append(ruleset)
        elif not rulesets:
            raise HostValueNotRead("a firewall rule or enabled outside a ruleset")
        elif rule:
            rules_read += 1
            if (direction, protocol) == _INBOUND_TCP or ("&" in direction + protocol and (
                    _unescaped(direction), _unescaped(protocol)) == _INBOUND_TCP):  # all the normaliser reads
                ruleset["rule"].append({"port": _int(port), "endPort": _int(end), "direction": "inbound",
                                        "protocol": "tcp"})
        elif ruleset["enabled"] is None:
            ruleset["enabled"] = _unescaped(state).lower() == "true"
    if len(rulesets) != len(_opening("ruleset").findall(value)) or rules_read != len(_opening("rule").findall(value)):
        raise HostValueNotRead("a firewall ruleset or rule not read")
    return {"ruleset": rulesets}


def _unescaped(text: str) -> str:
    return html.unescape(text) if "&" in text else text


def _int(text: str) -> int | None:
    """A number field's text as slim_host makes it (none when empty; not a number: ValueError, to pyvmomi)."""
    return int(_unescaped(text)) if text else None


def _net_config(value: str) -> list[dict[str, Any]]:
    configs = []
    for config in _elements(value, "VirtualNicManagerNetConfig"):
        candidates = []
        for vnic in _elements(config, "candidateVnic"):
            own = _leaves(_before(vnic, "spec"), ("device", "key", "portgroup"))
            port = _nested(vnic, "distributedVirtualPort")
            if port is not None:
                own["spec"] = {"distributedVirtualPort": _leaves(port, ("portgroupKey",))}  # type: ignore[assignment]
            candidates.append(own)
        selected = _elements(config, "selectedVnic")
        configs.append({"nicType": _leaves(_before(config, "candidateVnic"), ("nicType",)).get("nicType"),
                        "candidateVnic": candidates,
                        "selectedVnic": [html.unescape(v) if "&" in v else v for v in selected]})
    return configs


def _scsi_luns(value: str) -> list[dict[str, Any]]:
    luns = []
    for lun in _elements(value, "ScsiLun"):
        found: dict[str, Any] = _leaves(lun, ("canonicalName", "lunType", "localDisk"))
        capacity = _nested(lun, "capacity")
        if capacity is not None:
            found["capacity"] = _leaves(capacity, ("block", "blockSize"))
        luns.append(found)
    return luns


def _cpu_packages(value: str) -> list[dict[str, Any]]:
    return [_leaves(_before(package, "cpuFeature"), ("vendor",)) for package in _elements(value, "HostCpuPackage")]


def _proxy_switches(value: str) -> list[dict[str, Any]]:
    return [_leaves(_before(switch, "uplinkPort", "spec", "hostLag"), ("dvsName", "dvsUuid"))
            for switch in _elements(value, "HostProxySwitch")]


_HARDWARE = ("uuid", "cpuModel", "numCpuPkgs", "numCpuCores", "numCpuThreads", "cpuMhz", "memorySize")
_PRODUCT = ("name", "fullName", "version", "build", "apiVersion", "productLineId")


def _hardware(value: str) -> dict[str, Any]:
    return _leaves(value, _HARDWARE)  # its one nested array (otherIdentifyingInfo) has none of these


def _product(value: str) -> dict[str, Any]:
    return _leaves(value, _PRODUCT)


def _vswitches(value: str) -> list[dict[str, Any]]:
    return [_leaves(_before(switch, "portgroup", "pnic", "spec"), ("name", "key", "mtu"))
            for switch in _elements(value, "HostVirtualSwitch")]


def _port_groups(value: str) -> list[dict[str, Any]]:
    groups = []
    for group in _elements(value, "HostPortGroup"):
        found: dict[str, Any] = _leaves(_before(group, "port", "computedPolicy", "spec"), ("key",))
        found.update(_leaves(_before(group, "computedPolicy", "spec"), ("vswitch",)))
        spec = _nested(group, "spec")
        if spec is not None:
            found["spec"] = _leaves(_before(spec, "policy"), ("name", "vlanId", "vswitchName"))
        groups.append(found)
    return groups


def _vnics(value: str) -> list[dict[str, Any]]:
    nics = []
    for vnic in _elements(value, "HostVirtualNic"):
        found: dict[str, Any] = _leaves(_before(vnic, "spec"), ("device", "portgroup"))
        spec_text = _nested(vnic, "spec")
        if spec_text is not None:
            spec: dict[str, Any] = _leaves(spec_text, ("mac", "mtu"))  # no nested object of the spec has these
            ip = _nested(spec_text, "ip")
            if ip is not None:
                spec["ip"] = _leaves(_before(ip, "ipV6Config"), ("dhcp", "ipAddress", "subnetMask"))
            port = _nested(spec_text, "distributedVirtualPort")
            if port is not None:
                spec["distributedVirtualPort"] = _leaves(port, ("portgroupKey",))
            found["spec"] = spec
        nics.append(found)
    return nics


SLIMMED = {"config.firewall": _firewall, "config.virtualNicManagerInfo.netConfig": _net_config,
            "config.storageDevice.scsiLun": _scsi_luns, "hardware.cpuPkg": _cpu_packages,
            "config.network.proxySwitch": _proxy_switches, "summary.hardware": _hardware,
            "config.product": _product, "config.network.vswitch": _vswitches, "config.network.portgroup": _port_groups,
            "config.network.vnic": _vnics}


_XSI = "http://www.w3.org/2001/XMLSchema-instance"
_XSI_ATTR = f"{{{_XSI}}}type"
_WRAP = f'<v xmlns:xsi="{_XSI}" xmlns:XMLSchema-instance="{_XSI}">{{}}</v>'
# fields the normaliser reads as numbers or booleans inside data objects (others stay text)
_TREE_INTS = {"cpuMhz", "numCpuPkgs", "numCpuCores", "numCpuThreads", "memorySize", "mtu", "vlanId", "numPorts",
              "numPortsAvailable", "index", "hz", "busHz", "numNics", "numHBAs", "capacity", "freeSpace"}
_TREE_BOOLS = {"dhcp", "accessible", "mounted", "multipleHostAccess"}


def tree_value(attrs: str, value: str) -> Any:
    """A data object's (or an array's) XML as ElementTree gives it: a dict per object, a list per array."""
    kind = xsi_type(attrs, "")
    root = ET.fromstring(_WRAP.format(value))
    if kind.startswith("ArrayOf"):
        return [_element(child) for child in root]
    return _element(root, kind)


def _element(element: ET.Element, kind: str = "") -> Any:
    children = list(element)
    name = element.tag.rsplit("}", 1)[-1]
    if not children:
        text = element.text or ""
        if name in _TREE_INTS:
            return int(text)
        if name in _TREE_BOOLS:
            return text == "true"
        return text
    out: dict[str, Any] = {"_type": element.get(_XSI_ATTR) or kind or name}
    for child in children:
        key = child.tag.rsplit("}", 1)[-1]
        item = _element(child)
        if key in out and key != "_type":
            existing = out[key]
            out[key] = existing + [item] if isinstance(existing, list) else [existing, item]
        else:
            out[key] = item
    return out
