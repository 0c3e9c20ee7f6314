"""The documentation's generated sections: the configuration reference, the database schema and its example
SQL, the rules.

``python -m inventory.docs`` rewrites them in place in ``docs/``; the docs test fails when they
are stale, so the documentation never drifts from the code.
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from pathlib import Path

from inventory import ledger, queries, schema, settings
from inventory.checks import select_rules
from inventory.model import Secret
from inventory.registry import target_types

SECTIONS = {"config": "configuration.md", "settings": "configuration.md", "schema": "database.md",
            "queries": "database.md", "rules": "checks.md",
            "ledger": "checks.md"}  # section → page in docs/


def config_reference() -> str:
    lines = []
    for kind, cls in target_types().items():
        lines += [f"`[[{kind}]]` — {(cls.__doc__ or '').strip().splitlines()[0] if cls.__doc__ else ''}".rstrip(" —"),
                  "", "| key | default | meaning |", "| --- | --- | --- |"]
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            help_text = field.metadata.get("help", "unique target name" if field.name == "name" else "")
            if Secret in typing.get_args(hints[field.name]):
                default = "required" if field.metadata.get("required") else "—"
                lines.append(f"| `{field.name}_env` / `{field.name}_file` | {default} | {help_text} |")
                continue
            if field.default is dataclasses.MISSING or field.metadata.get("required"):
                default = "required"
            else:
                default = "—" if field.default is None else f"`{_toml(field.default)}`"
            lines.append(f"| `{field.name}` | {default} | {help_text} |")
        lines.append("")
    return "\n".join(lines)


def settings_reference() -> str:
    lines = ["| setting | CloudStack's default | a value must be |", "| --- | --- | --- |"]
    lines += [f"| `{name}` | `{default}` | {settings.accepted(name)} |" for name, default in settings.DEFAULTS.items()]
    return "\n".join(lines)


def _toml(value: object) -> str:
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(f'"{v}"' if isinstance(v, str) else _toml(v) for v in value) + "]"
    return str(value).lower() if isinstance(value, bool) else str(value)


def rules_table() -> str:
    lines = ["| rule | basis | severity | hypervisors | requirement | sources |", "| --- | --- | --- | --- | --- | --- |"]
    for r in select_rules():
        since = f" (from {r.since})" if r.since else ""
        sources = "<br>".join(str(s).replace("|", "\\|") for s in r.sources)
        lines.append(f"| `{r.id}` | {r.basis} | {r.severity} | {r.hypervisors_shown} | {r.requirement}{since} "
                     f"| {sources} |")
    return "\n".join(lines)


def render(section: str) -> str:
    return {"config": config_reference, "settings": settings_reference, "schema": schema.markdown,
            "queries": queries.markdown, "rules": rules_table, "ledger": ledger.markdown}[section]().strip()


def update(text: str, section: str) -> str:
    start, end = f"<!-- generated:{section} -->", f"<!-- end:{section} -->"
    if start not in text or end not in text:
        raise ValueError(f"the page lacks the markers {start} … {end}")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{render(section)}\n{end}{tail}"


def main(argv: list[str]) -> int:
    folder = Path(argv[0] if argv else "docs")
    for section, page in SECTIONS.items():
        path = folder / page
        text = path.read_text()
        new = update(text, section)
        if new != text:
            path.write_text(new)
            print(f"updated {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
