"""The audit report as one self-contained HTML file, for the morning mail.

Jinja2 renders ``templates/report.html.j2`` with autoescaping on: host, VM and pool names are chosen
by tenants and administrators, so everything from the database is text, never markup. The page needs
nothing outside itself (no links to fetch, no fonts, no images: the pictures are inline SVG) and reads
the same in a mail client that strips scripts and styles; where scripts run, its tables sort on a click.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cache
from typing import TYPE_CHECKING, Any

from inventory.normalise import printable, storable
from inventory.report import ROLES, Audit
from inventory.rules.reconciliation import cloudstack_side
from inventory.version import TOOL_VERSION

if TYPE_CHECKING:  # Jinja2 is imported when a report is written: every other command starts faster without it
    import jinja2

MAX_BARS = 60  # hosts or pools drawn in a picture; the table beside it has them all
MAX_ROWS = 50  # findings shown per rule, changes per table: the rest is a command away
LABEL_W, BAR_W, ROW_H, TOP = 290, 400, 20, 28
CHART_W = LABEL_W + BAR_W + 120


@dataclass(frozen=True, slots=True)
class Bar:
    """One row of a horizontal bar chart: its label, a tooltip, and coloured segments (x, width, css class)."""

    label: str
    title: str
    y: int
    segments: tuple[tuple[float, float, str], ...]
    value: str


@dataclass(frozen=True, slots=True)
class Chart:
    bars: tuple[Bar, ...]
    height: int
    shown: int
    total: int
    marker_x: float | None = None  # a vertical line (storage: CloudStack's threshold)


def host_chart(host_vms: list[dict[str, Any]]) -> Chart:
    """VMs per host, running and not, the busiest ``MAX_BARS`` hosts in scan order."""
    busiest = sorted(sorted(host_vms, key=lambda h: -h["vms"])[:MAX_BARS], key=host_vms.index)
    scale = BAR_W / max([h["vms"] for h in busiest] + [1])
    bars = []
    for i, h in enumerate(busiest):
        running, other = h["running"] * scale, (h["vms"] - h["running"]) * scale
        label = f"{h['target']} / {h['name']}"
        bars.append(Bar(_short(label), f"{label} ({h['cluster'] or 'no cluster'}): {h['vms']} VMs, "
                        f"{h['running']} running", TOP + i * ROW_H,
                        ((LABEL_W, running, "running"), (LABEL_W + running, other, "other")),
                        f"{h['vms']} ({h['running']} running)"))
    return Chart(tuple(bars), TOP + len(bars) * ROW_H + 6, len(bars), len(host_vms))


def storage_chart(storage: list[dict[str, Any]], threshold: float) -> Chart:
    """Used share of each pool (fullest first) against CloudStack's threshold."""
    bars = []
    for i, s in enumerate(storage[:MAX_BARS]):
        level = "above" if s["above"] else "near" if s["used"] > threshold - 0.1 else "fine"
        label = f"{s['target']} / {s['name']}"
        bars.append(Bar(_short(label), f"{label} ({s['kind']}): {s['used']:.1%} of {size(s['capacity_bytes'])} used",
                        TOP + i * ROW_H, ((LABEL_W, BAR_W, "capacity"), (LABEL_W, min(s["used"], 1.0) * BAR_W, level)),
                        f"{s['used']:.0%} of {size(s['capacity_bytes'])}"))
    return Chart(tuple(bars), TOP + len(bars) * ROW_H + 6, len(bars), len(storage), LABEL_W + threshold * BAR_W)


def _short(text: str, limit: int = 38) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def size(value: int | None) -> str:
    """Bytes in binary units, one decimal: 10995116277760 → ``10.0 TiB``."""
    if value is None:
        return ""
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(amount) < 1024 or unit == "TiB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{amount:.1f} PiB"  # pragma: no cover - the loop returns at TiB


def one_line(value: Any) -> str:
    """Names may hold newlines, control and format characters: shown, on one line (↵ for a newline), and as the
    console shows them (``printable``): a right-to-left override must not turn the rest of the page around."""
    return printable("" if value is None else str(value).replace("\n", "↵"))


@cache
def _environment() -> jinja2.Environment:
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("inventory", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(size=size, text=one_line)
    return env


def render_html_report(audit: Audit, *, database: str = "", now: datetime | None = None) -> str:
    """The report of one scan's audit as a complete HTML document."""
    threshold = float(audit.threshold.value)
    return _environment().get_template("report.html.j2").render(
        a=audit, figures=audit.figures, scan=audit.scan, database=storable(database), version=TOOL_VERSION,
        generated=(now or datetime.now(timezone.utc)).strftime("%Y-%m-%d %H:%M UTC"),
        hosts_chart=host_chart(audit.host_vms), storage_chart=storage_chart(audit.storage, threshold),
        roles=ROLES, cloudstack_side=cloudstack_side,
        threshold=threshold, max_rows=MAX_ROWS, label_w=LABEL_W, bar_w=BAR_W, chart_w=CHART_W, top=TOP, row_h=ROW_H)
