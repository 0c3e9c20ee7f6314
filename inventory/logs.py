"""Logging for unattended runs: ``--log-file`` in text or JSON lines; never a secret.

Events carry their fields as ``extra={"fields": {...}}``; the JSON formatter writes them as
keys, the text formatter as ``key=value``. Nothing logged here comes from a ``Secret``.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from inventory.errors import ConfigError
from inventory.normalise import printable

LOGGER_NAME = "cs_inventory"
log = logging.getLogger(LOGGER_NAME)


def event(message: str, level: int = logging.INFO, **fields: Any) -> None:
    log.log(level, message, extra={"fields": fields})


def _json_escape(char: str) -> str:
    if ord(char) > 0xFFFF:  # a pair of surrogates, as JSON writes what is beyond the BMP
        high, low = divmod(ord(char) - 0x10000, 0x400)
        return f"\\u{0xD800 + high:04x}\\u{0xDC00 + low:04x}"
    return f"\\u{ord(char):04x}"


def escaped(line: str) -> str:
    """``line`` with every control and format character, line or paragraph separator and lone surrogate written as
    JSON's ``\\uXXXX`` escape (``printable``'s characters): a log read in a terminal shows a tenant's right-to-left
    override rather than obey it, and a JSON line, all of whose text is in strings, decodes to the same text."""
    return printable(line, _json_escape)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
                 "level": record.levelname.lower(), "message": record.getMessage()}
        entry.update(getattr(record, "fields", {}) or {})
        return escaped(json.dumps(entry, default=str, ensure_ascii=False))


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", {}) or {}
        tail = " ".join(f"{k}={json.dumps(v, default=str, ensure_ascii=False)}" for k, v in fields.items())
        stamp = datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="seconds")
        return escaped(f"{stamp} {record.levelname.lower()} {record.getMessage()}" + (f" {tail}" if tail else ""))


def configure(log_file: Path | None, fmt: str = "text", debug: bool = False) -> None:
    """Send cs-inventory's events to ``log_file`` (appended, created owner-only)."""
    log.setLevel(logging.DEBUG if debug else logging.INFO)
    log.propagate = False
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()
    if log_file is None:
        log.addHandler(logging.NullHandler())
        return
    if not log_file.parent.is_dir():
        raise ConfigError(f"--log-file {log_file}: the folder {log_file.parent} does not exist",
                          hint="create it (owned by the user cron runs as), or log elsewhere")
    try:
        os.close(os.open(log_file, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600))
        # a lone surrogate (a path's byte that is not UTF-8) is written as its escape, not lost with its event
        handler = logging.FileHandler(log_file, encoding="utf-8", errors="backslashreplace")
    except OSError as exc:
        raise ConfigError(f"--log-file {log_file}: cannot append to it ({exc.strerror})",
                          hint="give a file you may write to") from exc
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    log.addHandler(handler)
