"""cs-inventory's library: configuration, scanning, the store, summaries and exports.

The CLI uses only what is listed in ``__all__``.
"""

from inventory.checks import (
    BASES, SEVERITIES, CheckSettings, Finding, Rule, by_target_and_cluster, exit_code_for, explain_rule, group_findings,
    run_checks, select_rules,
)
from inventory.config import DEFAULT_CONFIG, Config, transport_warnings
from inventory.model import Secret
from inventory.errors import (
    ApiError, AuthFailed, CollectorError, ConfigError, ConnectFailed, HostKeyRejected, InventoryError,
    NotPoolMaster, OutputError, ScanInterrupted, StoreError, TimedOut, TlsRejected,
)
from inventory.diff import ROW_COLUMNS as DIFF_COLUMNS
from inventory.diff import ScanDiff, diff_scans
from inventory.export import FORMATS, export_table, write_rows
from inventory.history import PruneResult, history, prune
from inventory.releases import check_shape as check_release_shape
from inventory.releases import resolve as resolve_release
from inventory.lock import DatabaseBusy, writer_lock
from inventory.logs import configure as configure_logging
from inventory.logs import event as log_event
from inventory.reconcile import COLUMNS as RECONCILE_COLUMNS
from inventory.reconcile import Reconciliation, reconcile
from inventory.report import ROLES, Audit, audit, scan_summary
from inventory.html_report import render_html_report
from inventory.metrics import metrics_text
from inventory.workbook import write_workbook
from inventory.datasette import datasette_metadata
from inventory.queries import QUERIES
from inventory.scan import (
    ScanResult, endpoint_count, import_formats, import_path, import_xapi_dump, load_config, scan, select_targets,
    target_kinds,
)
from inventory.schema import EXPORTABLE_TABLES, SCHEMA_VERSION
from inventory.store import Store, open_store, open_store_readonly, upgrade_store
from inventory.version import TOOL_VERSION


__all__ = [
    "DEFAULT_CONFIG", "EXPORTABLE_TABLES", "FORMATS", "ROLES", "SCHEMA_VERSION", "TOOL_VERSION",
    "ApiError", "AuthFailed", "CollectorError", "Config", "ConfigError", "ConnectFailed", "HostKeyRejected",
    "InventoryError", "NotPoolMaster", "OutputError", "ScanInterrupted", "ScanResult", "Secret", "Store", "StoreError",
    "TimedOut", "TlsRejected",
    "DIFF_COLUMNS", "DatabaseBusy", "PruneResult", "ScanDiff", "RECONCILE_COLUMNS", "Reconciliation", "reconcile",
    "BASES", "SEVERITIES", "CheckSettings", "Finding", "Rule", "by_target_and_cluster", "exit_code_for", "explain_rule",
    "group_findings", "run_checks", "select_rules",
    "check_release_shape", "configure_logging", "diff_scans", "history", "log_event", "prune", "resolve_release",
    "write_rows", "writer_lock",
    "endpoint_count", "export_table", "import_formats", "import_path", "import_xapi_dump", "load_config", "open_store",
    "open_store_readonly", "scan", "scan_summary", "select_targets", "target_kinds", "transport_warnings", "upgrade_store",
    "QUERIES", "Audit", "audit", "datasette_metadata", "metrics_text", "render_html_report", "write_workbook",
]
