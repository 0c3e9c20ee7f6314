"""Collectors, one module per hypervisor family; each registers itself on import.

Adding a hypervisor is adding one module here with a ``Collector`` subclass that sets ``kind``.
"""

from __future__ import annotations

import importlib
import pkgutil

from collectors.base import Collector, Outcome, registry, run_bounded

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_") and _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["Collector", "Outcome", "registry", "run_bounded"]
