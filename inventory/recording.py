"""Recordings: what a target's endpoints answered, written by ``scan --record`` and read by ``import recorded``.

One JSON file per target: the kind, the target's settings (never a secret, nor where one
comes from), each endpoint's outcome, and ``fetch``'s answer
per endpoint. Keys that name secrets (passwords, tokens, cookies, CHAP, private keys) are
blanked wherever they appear, so a recording can be attached to a bug report. Importing one
runs the kind's normaliser again: the same records as the live scan, offline.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from xmlrpc.client import DateTime

from inventory import registry
from inventory.config import build_target
from inventory.errors import ConfigError
from inventory.model import EndpointResult, JsonDict, Secret, TargetConfig, TargetRead
from inventory.normalise import is_unicode
from inventory.version import TOOL_VERSION

FORMAT = "cs-inventory.recording/1"
SECRET_KEYS = re.compile(r"pass(word|wd|phrase)?$|secret|token|cookie|chap|private.?key|credential|session.?id|"
                         r"api.?key|signature",
                         re.IGNORECASE)
BLANK = "(removed)"


def to_json(read: TargetRead) -> JsonDict:
    return {"format": FORMAT, "tool_version": TOOL_VERSION, "kind": read.kind,
            "target": target_settings(read.target), "endpoint": read.endpoint or None,
            "duration_s": round(read.duration_s, 3),
            "endpoints": [dataclasses.asdict(e) for e in read.endpoints], "answers": scrub(read.answers)}


def target_settings(target: TargetConfig) -> JsonDict:
    """The target's settings as its config table would hold them, without any secret reference."""
    hints = typing.get_type_hints(type(target))
    settings: JsonDict = {}
    for field in dataclasses.fields(target):
        value = getattr(target, field.name)
        if value is None or isinstance(value, Secret) or Secret in typing.get_args(hints[field.name]):
            continue
        if field.metadata.get("private"):  # an identifier kept in the config only (an API key)
            settings[field.name] = BLANK
            continue
        settings[field.name] = str(value) if isinstance(value, Path) else list(value) if isinstance(
            value, tuple) else value
    return settings


def scrub(value: Any) -> Any:
    """A copy with every value under a secret-sounding key blanked, and XML-RPC dates as text."""
    if isinstance(value, dict):
        return {key: BLANK if isinstance(key, str) and SECRET_KEYS.search(key) and value[key] not in (None, "", {}, [])
                else scrub(item) for key, item in value.items()}
    if isinstance(value, list):
        return [scrub(item) for item in value]
    if isinstance(value, DateTime):
        return value.value
    return value


def file_name(position: int, target: str) -> str:
    """``003-<name>.json``: the target's place in the scan (files sort as the config lists them), and its
    name, chosen by people, with safe characters kept and the rest percent-encoded."""
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else f"%{ord(c):02X}" for c in target)
    return f"{position:03d}-{safe}.json"


def prepare(folder: Path) -> Path:
    """Create the recording folder (owner-only) before anything is collected; say clearly if it cannot be."""
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise ConfigError(f"--record {folder}: cannot create the folder ({exc.strerror})",
                          hint="give a folder you may write to") from exc
    if not os.access(folder, os.W_OK):
        raise ConfigError(f"--record {folder}: not writable", hint="give a folder you may write to")
    return folder


def write(folder: Path, read: TargetRead, position: int = 0) -> Path:
    """Write one target's recording, owner-only (it describes the estate)."""
    path = folder / file_name(position, read.target.name)
    answer = to_json(read)
    text = json.dumps(answer, ensure_ascii=False, indent=1, default=_unknown)
    if not is_unicode(text):  # a lone surrogate, which UTF-8 cannot hold: kept as JSON's escape, as it was sent
        text = json.dumps(answer, ensure_ascii=True, indent=1, default=_unknown)
    partial = path.with_name(path.name + ".part")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text + "\n")
    partial.replace(path)
    return path


def _unknown(value: Any) -> Any:
    if isinstance(value, DateTime):
        return value.value
    raise TypeError(f"{type(value).__name__} is not JSON-safe: fetch must return plain data")


def load(path: Path) -> list[TargetRead]:
    """Every recording in a folder (or one file), as ``TargetRead``s ready to normalise."""
    files = sorted(path.glob("*.json")) if path.is_dir() else [path]
    if not path.exists():
        raise ConfigError(f"recording {path} not found", hint="give the folder `scan --record DIR` wrote")
    if not files:
        raise ConfigError(f"{path} holds no recordings (*.json)", hint="give the folder `scan --record DIR` wrote")
    return [from_json(_read_json(file), file) for file in files]


def _read_json(file: Path) -> JsonDict:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{file}: not a readable recording ({type(exc).__name__}: {exc})") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ConfigError(f"{file}: not a cs-inventory recording (format {FORMAT!r} expected)")
    return data


def from_json(data: JsonDict, file: Path) -> TargetRead:
    kind = data.get("kind")
    if not isinstance(kind, str) or kind not in registry.kinds():
        raise ConfigError(f"{file}: recorded kind {kind!r} is not installed here",
                          hint=f"installed kinds: {', '.join(registry.kinds())}")
    cls = registry.collector_class(kind)
    target = build_target(cls.Target, data.get("target"), file, f"recorded [[{kind}]]", file.parent, secrets=False)
    try:
        endpoints = [EndpointResult(**row) for row in _list(data.get("endpoints"), file)]
    except TypeError as exc:
        raise ConfigError(f"{file}: malformed endpoint rows ({exc})") from exc
    answers = data.get("answers")
    if not isinstance(answers, dict) or not all(isinstance(v, dict) for v in answers.values()):
        raise ConfigError(f"{file}: answers must map endpoints to their answers")
    return TargetRead(kind=kind, target=target, answers=answers, endpoints=endpoints,
                      duration_s=float(data.get("duration_s") or 0.0), endpoint=str(data.get("endpoint") or ""))


def _list(value: Any, file: Path) -> Iterable[Any]:
    if not isinstance(value, list):
        raise ConfigError(f"{file}: endpoints must be a list")
    return value
