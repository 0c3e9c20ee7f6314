"""What a CloudStack release supports and allows: its support matrix and hypervisor_capabilities limits.

Data: ``data/cloudstack_facts.json`` (copied, with its sources, from the project's reference:
compat.rst at each release tag, and the hypervisor_capabilities rows of CloudStack's DB scripts).
Limits are resolved as CloudStack does (HypervisorCapabilitiesDaoImpl.findByHypervisorTypeAndVersion): the
exact (hypervisor, version) row, else — VMware only, since 4.18.1.0 — the one parent version, else the
hypervisor's ``default`` row.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from inventory import registry
from inventory.errors import ConfigError

KVM_FAMILIES = {"ubuntu": "Ubuntu", "rocky": "Rocky Linux", "almalinux": "AlmaLinux", "ol": "Oracle Linux",
                "rhel": "RHEL", "centos": "CentOS", "debian": "Debian", "opensuse-leap": "openSUSE Leap",
                "sles": "SLES"}


@cache
def facts() -> dict[str, Any]:
    return dict(json.loads((Path(__file__).parent / "data" / "cloudstack_facts.json").read_text()))


def _version(text: str) -> tuple[int, ...]:
    numbers = re.findall(r"\d+", text.split("(")[0])
    return tuple(int(n) for n in numbers)


@dataclass(frozen=True)
class Limits:
    max_guests: int | None
    max_data_volumes: int | None
    max_hosts: int | None
    row: str  # which row applied, e.g. "XenServer 8.2.1 → default"


@dataclass(frozen=True)
class Release:
    """The CloudStack release the checks apply, resolved to the support-matrix entry that covers it."""

    asked: str
    matrix_key: str

    @property
    def support(self) -> dict[str, Any]:
        return dict(facts()["supported_versions"][self.matrix_key])

    @property
    def reference(self) -> str:
        return str(self.support["source"])

    def at_least(self, version: str) -> bool:
        return _version(self.asked) + (99,) * 4 >= _version(version)

    def limits(self, hypervisor: str, version: str | None) -> Limits:
        cs_name = registry.cloudstack_name(hypervisor)
        rows = {r["hypervisor_version"]: r for r in facts()["capabilities"]
                if r["hypervisor_type"] == cs_name and self._has(r["since_release"])}
        candidates = [version] if version and hypervisor != "kvm" else []
        if hypervisor == "vmware" and version and self.at_least("4.18.1.0"):
            candidates.append(vmware_parent_version(version) or "")
        for candidate in candidates + ["default"]:
            if candidate and candidate in rows:
                row = rows[candidate]
                vols = row["max_data_volumes_limit"] or 6
                return Limits(row["max_guests_limit"] or 50, vols, row["max_hosts_per_cluster"],
                              f"{cs_name} {version or ''} → {candidate}".replace("  ", " "))
        return Limits(50, 6, None, f"{cs_name}: column defaults")

    def _has(self, since: str) -> bool:
        numbers = _version(since)
        return not numbers or numbers <= _version(self.asked) + (99,) * 4 or since.startswith("base")


def vmware_parent_version(version: str) -> str | None:
    """CloudStackVersion.getVMwareParentVersion: the one parent CloudStack tries after the exact row —
    ``8.0.1.0`` → ``8.0.1``, ``8.0.0.2`` → ``8.0``, ``6.7.3`` → itself; none for ``8.0`` or ``6.5``."""
    parts = version.split(".")
    if len(parts) < 3:
        return None
    return ".".join(parts[:2]) if parts[2] == "0" else ".".join(parts[:3])


_SHAPE = re.compile(r"\d+\.\d+(?:\.\d+){0,2}")


def check_shape(version: str) -> None:
    """An operator's release (the config's, an option's) is written like 4.20 or 4.19.1.0: ``4.2O`` is a typo, not
    release 4.2. (A version CloudStack's API reports is read leniently by ``resolve``.)"""
    if not _SHAPE.fullmatch(version.strip()):
        raise ConfigError(f"CloudStack version {version!r} is not like 4.20 or 4.19.1.0",
                          hint="write the release as CloudStack names it, e.g. 4.20")


def resolve(version: str | None) -> Release:
    """``4.20`` → the newest 4.20 entry known; ``4.19.1.2`` → the entry covering it."""
    if not version:
        raise ConfigError("no CloudStack release to check against",
                          hint='set [cloudstack] version = "4.20" in the config, or pass --cloudstack-version')
    asked = _version(version)
    if len(asked) < 2:
        raise ConfigError(f"CloudStack version {version!r} is not like 4.20 or 4.19.1.0",
                          hint="write the release as CloudStack names it, e.g. 4.20")
    keys = sorted(facts()["supported_versions"], key=_version)
    known = [k for k in keys if _version(k)[:2] == asked[:2]]
    if not known:
        raise ConfigError(f"CloudStack {version} is not in cs-inventory's tables",
                          hint=f"known releases: {keys[0]} … {keys[-1]}")
    covering = [k for k in known if _version(k) <= asked + (99,) * (4 - len(asked))]
    return Release(asked=version, matrix_key=(covering or known)[-1])


def kvm_os_supported(release: Release, os_id: str | None, version: str | None) -> tuple[bool, str]:
    """Whether (os_id, VERSION_ID) is in the release's KVM host list; and the entry or list it was matched to."""
    family = KVM_FAMILIES.get((os_id or "").lower())
    listed = release.support["kvm_host_os"]
    if family is None or not version:
        return False, ", ".join(listed)
    wanted = version if family == "Ubuntu" else version.split(".")[0]
    for entry in listed:
        if re.match(rf"{re.escape(family)} {re.escape(wanted)}(\s|$)", entry):
            return True, entry
    return False, ", ".join(listed)


def xen_supported(release: Release, brand: str | None, version: str | None) -> tuple[str, str]:
    """('supported' | 'dropped' | 'unlisted', what it was compared with)."""
    support = release.support
    listed = support["xcp_ng"] if (brand or "").lower().startswith("xcp") else support["xenserver_citrix_hypervisor"]
    short = ".".join(str(n) for n in _version(version or "")[:2])
    for entry in listed:
        if ".".join(str(n) for n in _version(entry)[:2]) == short:
            return "supported", entry
    for line in support.get("listed_as_no_longer_supported", []):
        name = "XCP-ng" if (brand or "").lower().startswith("xcp") else "XenServer"
        if line.startswith(name) and re.search(rf"(?<![\d.]){re.escape(short)}(?![\d])", line):
            return "dropped", line
    return "unlisted", ", ".join(listed)
