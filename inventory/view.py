"""One stored scan as typed records, indexed the ways rules ask for them.

The store hands rows back as SQLite holds them: booleans as 0/1, ``raw_json`` as a JSON string.
The view turns each table, once and only when a rule first asks, into the frozen records of
``inventory.model`` (the store writes exactly their fields after ``scan_id``): booleans are
``bool`` again (``None`` stays ``None``: not known) and ``raw_json`` is a dict. ``targets`` and
``endpoints`` rows, which no collector record describes, become ``Target`` and ``Endpoint``.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Generic, TypeVar

from inventory.bounds import is_plain
from inventory.model import (
    CloudStackCluster, CloudStackHost, CloudStackSetting, CloudStackStoragePool, CloudStackTrafficLabel, CloudStackVm,
    CloudStackVolume, CloudStackZone, Cluster, Host, HostNic, HostStorage, HypervisorKind, JsonDict, Network, Storage,
    StorageImage, TargetResult, Vm, VmDisk, VmNic,
)
from inventory import settings
from inventory.releases import Limits, Release
from inventory.store import Store, encode_json

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Target:
    """A configured target as one scan read it (a ``targets`` row)."""

    name: str
    hypervisor: HypervisorKind
    endpoint: str
    status: str
    error: str | None = None
    duration_s: float | None = None
    api_calls: int | None = None
    detail: JsonDict | None = None


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One host or API endpoint a target contacted (an ``endpoints`` row)."""

    target: str
    endpoint: str
    status: str
    error: str | None = None
    duration_s: float | None = None
    api_calls: int | None = None


@dataclass(frozen=True, slots=True)
class HostGroup:
    """The hosts of one cluster, as checks compare them: hosts naming no cluster form one group per target
    (a KVM target without a configured cluster), keyed by the target's name."""

    kind: HypervisorKind
    target: str
    key: str
    hosts: tuple[Host, ...]

    @property
    def names_no_cluster(self) -> bool:
        return not any(h.cluster_key for h in self.hosts)


def _as_bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


def _as_dict(value: Any) -> JsonDict | None:
    return dict(json.loads(value)) if value else None


def _conversion(hint: Any) -> Callable[[Any], Any] | None:
    """How a column's value becomes the field's: 0/1 to bool, JSON text to dict, else as it is."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if bool in options:
        return _as_bool
    if any(typing.get_origin(o) is dict for o in options):
        return _as_dict
    return None


@dataclass(frozen=True, slots=True)
class RecordReader(Generic[R]):
    """How a table's rows become ``R`` records: the columns to select (the record's fields, in order) and
    the function that turns one such row into a record."""

    columns: tuple[str, ...]
    make: Callable[[Sequence[Any]], R]

    @classmethod
    def of(cls, record: type[R]) -> RecordReader[R]:
        hints = typing.get_type_hints(record)
        columns = tuple(f.name for f in dataclasses.fields(record))  # type: ignore[arg-type]
        conversions = [(i, convert) for i, name in enumerate(columns) if (convert := _conversion(hints[name]))]

        def make(row: Sequence[Any]) -> R:
            values = list(row)
            for i, convert in conversions:
                values[i] = convert(values[i])
            return record(*values)
        return cls(columns, make)


_readers: dict[type, RecordReader[Any]] = {}


def reader_of(record: type[R]) -> RecordReader[R]:
    if record not in _readers:
        _readers[record] = RecordReader.of(record)
    return _readers[record]


# -- the records of a scan as the store gives them back, from the results it was given --------------------------
def as_stored(table: str, record: type[R], results: Sequence[TargetResult]) -> tuple[R, ...]:
    """A table's records as reading them back from the store gives them, made from the results written: the same
    objects — a collector's result went through ``inventory.bounds.bound``, which leaves each raw_json as the store
    gives it back — else, where a JSON field would change on the way, one with that field as the store writes it
    (``store.encode_json``: keys sorted, tuples as lists …)."""
    records: list[Any]
    if table == "targets":
        records = [Target(r.name, r.hypervisor, r.endpoint, r.status, r.error, float(round(r.duration_s, 3)),
                          r.api_calls, None if r.detail is None else _as_dict(encode_json(r.detail))) for r in results]
        return tuple(records)
    if table == "endpoints":
        records = [Endpoint(e.target, e.endpoint, e.status, e.error, float(round(e.duration_s, 3)), e.api_calls)
                   for r in results for e in r.endpoints]
        return tuple(records)
    json_fields = _json_fields(record)
    stored = []
    for result in results:
        records = getattr(result.inventory, table)
        if json_fields and not result.inventory.bounded:  # records made elsewhere than by a collector
            records = [_stored_form(rec, json_fields) for rec in records]
        stored += records
    return tuple(stored)


def _stored_form(rec: R, json_fields: tuple[str, ...]) -> R:
    changed = {}
    for name in json_fields:
        value = getattr(rec, name)
        if value is not None and not is_plain(value):
            changed[name] = _as_dict(encode_json(value))
    return dataclasses.replace(rec, **changed) if changed else rec  # type: ignore[type-var]


_JSON_FIELDS: dict[type, tuple[str, ...]] = {}


def _json_fields(record: type) -> tuple[str, ...]:
    if record not in _JSON_FIELDS:
        hints = typing.get_type_hints(record)
        _JSON_FIELDS[record] = tuple(f.name for f in dataclasses.fields(record) if _conversion(hints[f.name]) is _as_dict)
    return _JSON_FIELDS[record]


@dataclass(frozen=True, slots=True)
class Setting:
    """A CloudStack setting a rule compares with, and where its value came from (said in the finding)."""

    name: str
    value: str
    source: str  # "CloudStack's default", "[cloudstack] in the config", or the CloudStack API target it was read from


SETTING_DEFAULTS = settings.DEFAULTS


@dataclass
class InventoryView:
    """One scan's records, each table read once on first use, with the indexes rules share.

    ``scanned``: the target results the scan stored under ``scan_id``, when the caller still has them (``scan``
    followed by the checks): the records are taken from them as the store gives them back, and not read again.
    """

    store: Store
    scan_id: int
    release: Release
    traffic_labels: Mapping[str, str] = field(default_factory=dict)
    settings: Mapping[str, str] = field(default_factory=dict)  # stated by the operator ([cloudstack.settings])
    features: frozenset[str] = frozenset()  # optional CloudStack features in use ([cloudstack] features)
    scanned: Sequence[TargetResult] | None = None
    _limits: dict[tuple[str, str | None], Limits] = field(default_factory=dict, init=False, repr=False)
    derived: dict[str, Any] = field(default_factory=dict, init=False, repr=False)  # built once by rules that share it

    def _records(self, table: str, record: type[R]) -> tuple[R, ...]:
        if self.scanned is not None:
            return as_stored(table, record, self.scanned)
        reader = reader_of(record)
        rows = self.store.db.execute(f"SELECT {', '.join(reader.columns)} FROM {table} WHERE scan_id = ? "
                                     "ORDER BY rowid", [self.scan_id])  # tuples: no dict per row on the way
        return tuple(map(reader.make, rows))

    # -- what CloudStack itself is set to ------------------------------------------------------
    def setting(self, name: str) -> Setting:
        """A CloudStack global setting for rules, and where it came from: the live value when the scan read one
        from a ``cloudstack_api`` target (the first that answered, in config order), else the value the config
        states (``[cloudstack.settings]``), else CloudStack's default."""
        aside = ""  # a live value the rules cannot read, set aside for the next source, and said
        for row in self.cloudstack_settings:
            if row.name == name and row.value is not None:
                why = settings.unreadable(name, row.value)
                if why is None:
                    return Setting(name, row.value, f"CloudStack API target {row.target}")
                aside = f"; CloudStack API target {row.target} has {row.value!r}, which {why}"
                break
        if name in self.settings:  # the config's values are checked as it loads
            return Setting(name, self.settings[name], "[cloudstack.settings] in the config" + aside)
        return Setting(name, SETTING_DEFAULTS[name], "CloudStack's default" + aside)

    def uses(self, feature: str) -> bool:
        """Whether the estate uses an optional CloudStack feature (``[cloudstack] features``)."""
        return feature in self.features

    def traffic_labels_for(self, kind: HypervisorKind) -> Mapping[str, str]:
        """The traffic labels (traffic type → label) CloudStack uses for this hypervisor kind's hosts: the live
        ones when the scan read a ``cloudstack_api`` target, else the config's ``[cloudstack.traffic_labels]``.

        Traffic types are lower case (``management``, ``guest`` …); a type whose label differs between physical
        networks appears once per network, as ``guest (physical network name)``.
        """
        rows = [r for r in self.cloudstack_traffic_labels if r.hypervisor == kind and r.label]
        if not self.cloudstack_traffic_labels:
            return self.traffic_labels
        labels: dict[str, set[str]] = defaultdict(set)
        for row in rows:
            labels[row.traffic_type.lower()].add(row.label or "")
        found: dict[str, str] = {}
        for row in rows:
            traffic = row.traffic_type.lower()
            key = traffic if len(labels[traffic]) == 1 else f"{traffic} ({row.physical_network or row.physical_network_key})"
            found.setdefault(key, row.label or "")
        return found

    def traffic_labels_source(self) -> str:
        """Where ``traffic_labels_for`` takes its labels from, for a finding to say."""
        targets = sorted({r.target for r in self.cloudstack_traffic_labels})
        return f"CloudStack API target {', '.join(targets)}" if targets else "[cloudstack.traffic_labels] in the config"

    @cached_property
    def cloudstack_version(self) -> str | None:
        """The version a ``cloudstack_api`` target of this scan reported (listCapabilities), if any."""
        for target in self.targets:
            if target.detail and target.detail.get("cloudstack_version"):
                return str(target.detail["cloudstack_version"])
        return None

    # -- tables ------------------------------------------------------------------------------
    @cached_property
    def targets(self) -> tuple[Target, ...]:
        return self._records("targets", Target)

    @cached_property
    def endpoints(self) -> tuple[Endpoint, ...]:
        return self._records("endpoints", Endpoint)

    @cached_property
    def clusters(self) -> tuple[Cluster, ...]:
        return self._records("clusters", Cluster)

    @cached_property
    def hosts(self) -> tuple[Host, ...]:
        return self._records("hosts", Host)

    @cached_property
    def vms(self) -> tuple[Vm, ...]:
        return self._records("vms", Vm)

    @cached_property
    def vm_disks(self) -> tuple[VmDisk, ...]:
        return self._records("vm_disks", VmDisk)

    @cached_property
    def vm_nics(self) -> tuple[VmNic, ...]:
        return self._records("vm_nics", VmNic)

    @cached_property
    def networks(self) -> tuple[Network, ...]:
        return self._records("networks", Network)

    @cached_property
    def host_nics(self) -> tuple[HostNic, ...]:
        return self._records("host_nics", HostNic)

    @cached_property
    def storage(self) -> tuple[Storage, ...]:
        return self._records("storage", Storage)

    @cached_property
    def host_storage(self) -> tuple[HostStorage, ...]:
        return self._records("host_storage", HostStorage)

    @cached_property
    def storage_images(self) -> tuple[StorageImage, ...]:
        return self._records("storage_images", StorageImage)

    # -- CloudStack's own view (cloudstack_api targets) -----------------------------------------
    @cached_property
    def cloudstack_zones(self) -> tuple[CloudStackZone, ...]:
        return self._records("cloudstack_zones", CloudStackZone)

    @cached_property
    def cloudstack_clusters(self) -> tuple[CloudStackCluster, ...]:
        return self._records("cloudstack_clusters", CloudStackCluster)

    @cached_property
    def cloudstack_hosts(self) -> tuple[CloudStackHost, ...]:
        return self._records("cloudstack_hosts", CloudStackHost)

    @cached_property
    def cloudstack_vms(self) -> tuple[CloudStackVm, ...]:
        return self._records("cloudstack_vms", CloudStackVm)

    @cached_property
    def cloudstack_volumes(self) -> tuple[CloudStackVolume, ...]:
        return self._records("cloudstack_volumes", CloudStackVolume)

    @cached_property
    def cloudstack_storage_pools(self) -> tuple[CloudStackStoragePool, ...]:
        return self._records("cloudstack_storage_pools", CloudStackStoragePool)

    @cached_property
    def cloudstack_settings(self) -> tuple[CloudStackSetting, ...]:
        return self._records("cloudstack_settings", CloudStackSetting)

    @cached_property
    def cloudstack_traffic_labels(self) -> tuple[CloudStackTrafficLabel, ...]:
        return self._records("cloudstack_traffic_labels", CloudStackTrafficLabel)

    @cached_property
    def cloudstack_targets(self) -> tuple[Target, ...]:
        """The scan's ``cloudstack_api`` targets (whatever their status)."""
        return tuple(t for t in self.targets if t.hypervisor == "cloudstack_api")

    @cached_property
    def has_cloudstack_view(self) -> bool:
        """A ``cloudstack_api`` target of this scan was read: CloudStack's lists are here to compare with."""
        return any(t.status == "ok" for t in self.cloudstack_targets)

    # -- indexes -----------------------------------------------------------------------------
    @cached_property
    def kinds(self) -> frozenset[HypervisorKind]:
        """The hypervisor kinds of the scan's targets."""
        return frozenset(t.hypervisor for t in self.targets)

    @cached_property
    def target_by_name(self) -> dict[str, Target]:
        return {t.name: t for t in self.targets}

    @cached_property
    def host_by_key(self) -> dict[tuple[str, str], Host]:
        return {(h.target, h.key): h for h in self.hosts}

    @cached_property
    def network_by_key(self) -> dict[tuple[str, str], Network]:
        return {(n.target, n.key): n for n in self.networks}

    @cached_property
    def nics_by_host(self) -> dict[tuple[str, str], list[HostNic]]:
        return _index(self.host_nics, lambda nic: (nic.target, nic.host_key))

    @cached_property
    def hosts_by_cluster(self) -> dict[tuple[str, str | None], list[Host]]:
        """Hosts by (target, cluster_key), in scan order."""
        return _index(self.hosts, lambda host: (host.target, host.cluster_key))

    @cached_property
    def host_groups(self) -> tuple[HostGroup, ...]:
        """Every kind's hosts grouped by cluster (see ``HostGroup``), in the order their first host comes."""
        groups = _index(self.hosts, lambda h: (h.hypervisor, h.target, h.cluster_key or h.target))
        return tuple(HostGroup(kind, target, key, tuple(hosts)) for (kind, target, key), hosts in groups.items())

    def hosts_of(self, kind: HypervisorKind) -> list[Host]:
        return [h for h in self.hosts if h.hypervisor == kind]

    def clusters_of(self, kind: HypervisorKind) -> list[Cluster]:
        return [c for c in self.clusters if c.hypervisor == kind]

    def groups_of(self, kind: HypervisorKind) -> list[HostGroup]:
        return [g for g in self.host_groups if g.kind == kind]

    def kind_of_target(self, name: str) -> HypervisorKind | None:
        target = self.target_by_name.get(name)
        return None if target is None else target.hypervisor

    def limits(self, kind: HypervisorKind, version: str | None) -> Limits:
        """The release's limits for a kind and version (``Release.limits``), looked up once per pair."""
        key = (kind, version)
        if key not in self._limits:
            self._limits[key] = self.release.limits(kind, version)
        return self._limits[key]


K = TypeVar("K")


def _index(records: Iterable[R], key: Callable[[R], K]) -> dict[K, list[R]]:
    index: dict[K, list[R]] = defaultdict(list)
    for record in records:
        index[key(record)].append(record)
    return dict(index)
