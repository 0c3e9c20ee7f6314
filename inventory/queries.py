"""Example SQL over the newest scan, declared once: docs/database.md shows it and Datasette offers it.

Each query is a Datasette canned query (``name`` is its address, ``/<database>/<name>``) and a
commented statement in the database page's generated SQL block.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Query:
    name: str
    title: str
    sql: str


QUERIES: tuple[Query, ...] = (
    Query("vms-per-host", "VMs per host in the newest scan",
          "SELECT h.name, COUNT(v.key) AS vms FROM latest_hosts h LEFT JOIN latest_vms v ON v.host_key = h.key\n"
          "GROUP BY h.key ORDER BY vms DESC"),
    Query("unmanaged-vms", "VMs on CloudStack hosts that CloudStack does not manage",
          "SELECT target, host_key, name, power_state FROM latest_vms WHERE cs_role = 'unmanaged'"),
    Query("agent-not-running", "KVM hosts whose cloudstack-agent was read and is not running (agent_state NULL: not "
                               "read; XenServer and VMware run no agent)",
          "SELECT target, name, agent_state, agent_version FROM latest_hosts\n"
          "WHERE hypervisor = 'kvm' AND agent_state IS NOT NULL AND agent_state <> 'active'"),
    Query("storage-above-85-percent", "primary storage at or above 85 % used, as CloudStack counts it (a KVM pool's "
                                      "libvirt allocation, else capacity - free)",
          "SELECT target, name, kind, ROUND(100.0 * used / capacity_bytes, 1) AS used_pct FROM (\n"
          "  SELECT target, name, kind, capacity_bytes,\n"
          "         COALESCE(json_extract(raw_json, '$.allocation'), capacity_bytes - free_bytes) AS used\n"
          "  FROM latest_storage WHERE capacity_bytes > 0 AND COALESCE(kind, '') NOT IN ('iso', 'removable'))\n"
          "WHERE used >= 0.85 * capacity_bytes ORDER BY used_pct DESC"),
    Query("vms-per-scan", "how many VMs each scan saw, over time",
          "SELECT s.id, s.started_at, s.status, COUNT(v.key) AS vms FROM scans s LEFT JOIN vms v ON v.scan_id = s.id\n"
          "GROUP BY s.id ORDER BY s.id"),
    Query("findings-by-rule", "findings of the newest scan by rule and severity, and the objects they are about",
          "SELECT rule_id, severity, COUNT(*) AS findings, SUM(object_count) AS objects FROM latest_findings\n"
          "GROUP BY rule_id, severity\n"
          "ORDER BY CASE severity WHEN 'error' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END, objects DESC"),
    Query("finding-objects", "every object of the newest scan's findings, with what is said of it",
          "SELECT rule_id, severity, target, cluster, object_type, object_name, object_key, message\n"
          "FROM latest_finding_objects ORDER BY rule_id, target, cluster, object_name"),
)


def markdown() -> str:
    """The database page's SQL block (docs/database.md), from ``QUERIES``."""
    body = "\n".join(f"-- {q.title} (Datasette: {q.name})\n{q.sql};" for q in QUERIES)
    return f"```sql\n{body}\n```"
