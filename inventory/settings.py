"""The CloudStack global settings the checks read: CloudStack's default of each, and what a value must be for the
checks to read it (CloudStack keeps every setting as text).

A value from the config that is not readable is a config error; one read from CloudStack's API is set aside for
the next source (the config's, else the default), and the finding says so (``inventory.view.InventoryView.setting``).
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable

# CloudStack's defaults for the global settings rules read (Config.java / ConfigKey declarations).
DEFAULTS = {
    "pool.storage.capacity.disablethreshold": "0.85",
    "pool.storage.allocated.capacity.disablethreshold": "0.85",
    "storage.overprovisioning.factor": "2",
    "vmware.management.portgroup": "Management Network",
    "control.cidr": "169.254.0.0/16",
    "ca.plugin.root.auth.strictness": "true",  # a fresh installation's (hosts.rst: upgraded ones keep false)
    "vmware.additional.vnc.portrange.start": "50000",
    "vmware.additional.vnc.portrange.size": "1000",
}


def _number(value: str) -> str | None:
    try:
        return None if math.isfinite(float(value)) else "is not a finite number"
    except ValueError:
        return "is not a number"


def _whole(value: str) -> str | None:
    try:
        int(value)
    except ValueError:
        return "is not a whole number"
    return None


def _network(value: str) -> str | None:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return "is not a network such as 169.254.0.0/16"
    return None


# what a value must be for the rules that read it (a setting not here is read as text)
_READ_AS: dict[str, Callable[[str], str | None]] = {
    "pool.storage.capacity.disablethreshold": _number,
    "pool.storage.allocated.capacity.disablethreshold": _number,
    "storage.overprovisioning.factor": _number,
    "control.cidr": _network,
    "vmware.additional.vnc.portrange.start": _whole,
    "vmware.additional.vnc.portrange.size": _whole,
}


def unreadable(name: str, value: str) -> str | None:
    """Why the checks cannot read this value of this setting (``is not a number``), else None."""
    check = _READ_AS.get(name)
    return check(value) if check is not None else None
