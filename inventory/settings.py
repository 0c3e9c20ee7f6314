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


def _fraction(value: str) -> str | None:
    """A threshold: CloudStack's updateConfiguration refuses one outside 0-1 (ConfigurationManagerImpl
    .validateConfigurationValue, its weight-based parameters, 4.18-4.22)."""
    return _number(value) or (None if 0 <= float(value) <= 1 else "is not between 0 and 1 (0.85 is 85 %)")


def _factor(value: str) -> str | None:
    """An overprovisioning factor: CloudStack refuses one of 0 or less (the same method, its overprovisioning
    factors)."""
    return _number(value) or (None if float(value) > 0 else "is not more than 0")


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
    "pool.storage.capacity.disablethreshold": _fraction,
    "pool.storage.allocated.capacity.disablethreshold": _fraction,
    "storage.overprovisioning.factor": _factor,
    "control.cidr": _network,
    "vmware.additional.vnc.portrange.start": _whole,
    "vmware.additional.vnc.portrange.size": _whole,
}


# what each value must be, in the documentation's words
ACCEPTED: dict[Callable[[str], str | None], str] = {
    _fraction: "a number from 0 to 1 (0.85 is 85 %)", _factor: "a number above 0",
    _network: "a network, e.g. 169.254.0.0/16", _whole: "a whole number"}


def accepted(name: str) -> str:
    """What a value of this setting must be, for the configuration page."""
    check = _READ_AS.get(name)
    if check is not None:
        return ACCEPTED[check]
    if DEFAULTS.get(name) in ("true", "false"):  # Boolean.parseBoolean, as CloudStack reads a Boolean ConfigKey
        return "true or false (anything else reads as false, as in CloudStack)"
    return "text"


def unreadable(name: str, value: str) -> str | None:
    """Why the checks cannot read this value of this setting (``is not a number``), else None."""
    check = _READ_AS.get(name)
    return check(value) if check is not None else None
