"""Scan history and pruning."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from inventory import schema
from inventory.errors import ConfigError
from inventory.store import Store, writing


def history(store: Store, limit: int = 50) -> list[dict[str, Any]]:
    """Scans, newest first, with counts, findings by severity (objects found) and failed targets."""
    return store.query(
        "SELECT s.id, s.started_at, s.finished_at, s.status, s.error, s.cloudstack_version, "
        " (SELECT COUNT(*) FROM hosts h WHERE h.scan_id = s.id) AS hosts, "
        " (SELECT COUNT(*) FROM vms v WHERE v.scan_id = s.id) AS vms, "
        " (SELECT COUNT(*) FROM targets t WHERE t.scan_id = s.id) AS targets, "
        " (SELECT group_concat(t.name, ', ') FROM targets t WHERE t.scan_id = s.id AND t.status = 'failed') "
        "   AS targets_failed, "
        " (SELECT COUNT(*) FROM finding_objects f WHERE f.scan_id = s.id AND f.severity = 'error') AS errors, "
        " (SELECT COUNT(*) FROM finding_objects f WHERE f.scan_id = s.id AND f.severity = 'warning') AS warnings, "
        " (SELECT COUNT(*) FROM finding_objects f WHERE f.scan_id = s.id AND f.severity = 'info') AS infos "
        "FROM scans s ORDER BY s.id DESC LIMIT ?", [limit])


def parse_age(text: str) -> timedelta:
    """``30d``, ``12h``, ``2w`` → a timedelta."""
    match = re.fullmatch(r"\s*(\d+)\s*([hdw])\s*", text)
    if not match:
        raise ConfigError(f"--older-than {text!r} is not an age", hint="use e.g. 30d, 12h or 2w")
    number, unit = int(match.group(1)), match.group(2)
    try:
        return {"h": timedelta(hours=number), "d": timedelta(days=number), "w": timedelta(weeks=number)}[unit]
    except OverflowError:
        raise _too_old(text) from None


def _too_old(text: str) -> ConfigError:
    return ConfigError(f"--older-than {text!r} is further back than any date", hint="use e.g. 30d, 12h or 2w")


@dataclass(frozen=True)
class PruneResult:
    removed: list[int]
    kept: list[int]
    protected: list[int]
    bytes_before: int
    bytes_after: int


def prune(store: Store, *, keep: int | None = None, older_than: str | None = None,
          dry_run: bool = False, now: datetime | None = None) -> PruneResult:
    """Delete old scans (``keep`` newest, or those older than an age), then reclaim the space.

    The latest complete scan (status ``ok``) and the latest stored scan the ``latest_*`` views
    show are never deleted, whatever the options say.
    """
    store.require_writable()
    if (keep is None) == (older_than is None):
        raise ConfigError("prune needs exactly one of --keep N or --older-than AGE")
    if keep is not None and keep < 1:
        raise ConfigError("--keep must be at least 1")
    scans = store.query("SELECT id, started_at, status FROM scans ORDER BY id DESC")
    latest_ok = next((r["id"] for r in scans if r["status"] == "ok"), None)
    protected = {i for i in (latest_ok, store.latest_scan_id()) if i is not None}
    if keep is not None:
        doomed = [r["id"] for r in scans[keep:]]
    else:
        age = parse_age(older_than or "")
        try:
            cutoff = (now or datetime.now(timezone.utc)) - age
        except OverflowError:
            raise _too_old(older_than or "") from None
        doomed = [r["id"] for r in scans if datetime.fromisoformat(r["started_at"]) < cutoff]
    removed = sorted(i for i in doomed if i not in protected)
    before = _size(store)
    if removed and not dry_run:
        marks = ", ".join("?" * len(removed))
        with writing(store.path), store.db.atomic():
            for table in schema.TABLES:
                column = "id" if table.name == "scans" else "scan_id"
                store.db.execute(f"DELETE FROM {table.name} WHERE {column} IN ({marks})", removed)
        with writing(store.path, f"scans {', '.join(map(str, removed))} were removed, but the space they held was "
                                 "not given back (VACUUM needs room for a copy of the database)"):
            store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            store.db.execute("VACUUM")
    return PruneResult(removed=removed, kept=[r["id"] for r in scans if r["id"] not in removed],
                       protected=sorted(protected), bytes_before=before, bytes_after=_size(store))


def _size(store: Store) -> int:
    page_count = store.db.execute("PRAGMA page_count").fetchone()[0]
    page_size = store.db.execute("PRAGMA page_size").fetchone()[0]
    return int(page_count * page_size)
