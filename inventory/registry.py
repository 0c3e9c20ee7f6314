"""The hypervisor kinds cs-inventory knows, and the one place that loads their collectors.

A kind is a ``Collector`` subclass with a ``kind``: every module of the ``collectors`` package,
and any installed package that names a module in the ``cs_inventory.collectors`` entry-point
group. Loading a collector module is cheap: SDKs (libvirt, XenAPI, pyVmomi, paramiko) are
imported only when a target of that kind is read. Everything else in ``inventory`` asks this
module about kinds, so a new kind needs no edit outside its own module.
"""

from __future__ import annotations

import threading
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from inventory.errors import ConfigError
from inventory.model import TargetConfig

if TYPE_CHECKING:
    from collectors.base import Collector

ENTRY_POINT_GROUP = "cs_inventory.collectors"
_lock = threading.Lock()
_loaded = False
_plugin_errors: list[str] = []


def _ensure_loaded() -> None:
    global _loaded
    with _lock:
        if _loaded:
            return
        import collectors

        collectors.load_builtin()
        for entry in entry_points(group=ENTRY_POINT_GROUP):
            try:
                entry.load()  # importing the module registers its Collector subclass
            except Exception as exc:  # a broken plug-in must not take the built-in kinds down
                _plugin_errors.append(f"collector plug-in {entry.name} ({entry.value}): "
                                      f"{type(exc).__name__}: {exc}")
        _loaded = True


def collector_classes() -> dict[str, type[Collector[Any, Any]]]:
    """Every kind's collector class, by kind (``kvm``, ``xenserver``, ``vmware``, plug-ins …)."""
    _ensure_loaded()
    import collectors

    found = collectors.registry()  # in import order, which tests and plug-ins change: built-ins first, by name

    def order(kind: str) -> tuple[bool, str]:
        return not found[kind].__module__.startswith("collectors."), kind
    return {kind: found[kind] for kind in sorted(found, key=order)}


def kinds() -> tuple[str, ...]:
    return tuple(collector_classes())


def collector_class(kind: str) -> type[Collector[Any, Any]]:
    classes = collector_classes()
    if kind not in classes:
        raise ConfigError(f"no hypervisor kind {kind!r}", hint=f"kinds: {', '.join(classes)}")
    return classes[kind]


def cloudstack_name(kind: str) -> str:
    """CloudStack's name for the kind's hypervisor type (``KVM``, ``XenServer``, ``VMware`` …)."""
    cls = collector_classes().get(kind)
    return cls.cloudstack_name if cls is not None and cls.cloudstack_name else kind


def hypervisor_kinds() -> tuple[str, ...]:
    """The kinds whose targets are hypervisors (not CloudStack's own view, a ``cloudstack_api`` target)."""
    return tuple(kind for kind, cls in collector_classes().items() if cls.is_hypervisor)


def is_hypervisor_kind(kind: str) -> bool:
    """A kind the registry does not know (its plug-in was removed) is taken for a hypervisor: its rows remain."""
    cls = collector_classes().get(kind)
    return cls is None or cls.is_hypervisor


def target_types() -> dict[str, type[TargetConfig]]:
    """The ``Target`` dataclass of every kind: what a ``[[kind]]`` config table may hold."""
    return {kind: cls.Target for kind, cls in collector_classes().items()}


def kind_of(target: TargetConfig) -> str:
    return next(kind for kind, cls in collector_classes().items() if type(target) is cls.Target)


def plugin_errors() -> list[str]:
    """Plug-ins that failed to load (their kinds are missing), one line each."""
    _ensure_loaded()
    return list(_plugin_errors)
