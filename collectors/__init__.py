"""Collectors, one module per hypervisor family; each registers itself when imported.

Adding a hypervisor is adding one module here (or in an installed package, named in the
``cs_inventory.collectors`` entry-point group) with a ``Collector`` subclass that sets ``kind``.
``inventory.registry`` loads them; a module imports its SDK only when a target is read.
"""

from __future__ import annotations

import importlib
import pkgutil

from collectors.base import Collector, registry


def load_builtin() -> None:
    """Import every collector module of this package (each registers its kind)."""
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_") and module.name != "base":
            importlib.import_module(f"{__name__}.{module.name}")


__all__ = ["Collector", "load_builtin", "registry"]
