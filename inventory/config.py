"""Typed configuration from TOML; secrets only by reference.

Each collector declares its ``Target`` dataclass (a ``TargetConfig``); this module turns a
``[[kind]]`` table into one, checking every key and type, and names the file, the entry and
the key in every error. Relative paths are resolved against the config file's folder, so a
config file means the same thing whichever directory cron starts in.
"""

from __future__ import annotations

import dataclasses
import math
import os
import ssl
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inventory import settings as setting_values
from inventory.errors import ConfigError
from inventory.model import Secret, TargetConfig
from inventory.releases import check_shape

DEFAULT_CONFIG = "cs-inventory.toml"
DEFAULT_DATABASE = "cs-inventory.db"
# Optional CloudStack features whose requirements hold only where they are used; a host scan cannot tell.
FEATURES = ("security-groups", "direct-download")


@dataclass(frozen=True)
class Config:
    path: Path | None
    database_path: Path
    cloudstack_version: str | None = None
    traffic_labels: Mapping[str, str] = field(default_factory=dict)
    settings: Mapping[str, str] = field(default_factory=dict)  # CloudStack global settings, as the operator states them
    features: tuple[str, ...] = ()  # optional CloudStack features in use (their conditional requirements are checked)
    targets: tuple[TargetConfig, ...] = ()
    warnings: tuple[str, ...] = ()


def load_config(path: Path, target_types: Mapping[str, type[TargetConfig]]) -> Config:
    """Read and check a config file; raise ``ConfigError`` naming file, entry and key."""
    try:
        text = path.read_text(encoding="utf-8")  # TOML is UTF-8, whatever the locale says
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[:exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}: not UTF-8: byte 0x{exc.object[exc.start]:02x} on line {line}",
                          hint="TOML files are UTF-8: save it as UTF-8") from exc
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} not found",
                          hint="pass --config PATH, or create cs-inventory.toml (see docs/configuration.md)") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    config = parse_config(data, path, target_types)
    return dataclasses.replace(config, warnings=permission_warnings(path, config) + setting_warnings(config))


def transport_warnings(targets: Sequence[TargetConfig]) -> tuple[str, ...]:
    """A target read without TLS verification (``verify_tls = false`` and no pinned ``fingerprint``) or over plain
    ``http://`` is the operator's choice, and said on every scan: a password or signed requests anyone between can
    read. One line per target and key, for the targets a scan reads."""
    warnings = []
    for target in targets:
        url = getattr(target, "url", None)
        if isinstance(url, str) and url.lower().startswith("http://"):
            warnings.append(f"target {target.name}: url is http://: the password (or the signed requests) and every "
                            "answer travel unencrypted; use https://")
        elif getattr(target, "verify_tls", True) is False and not getattr(target, "fingerprint", None):
            warnings.append(f"target {target.name}: verify_tls = false: the server's certificate is not checked, so "
                            "whoever is in between can read the password; give ca_file or pin its fingerprint")
    return tuple(warnings)


def setting_warnings(config: Config) -> tuple[str, ...]:
    """A setting the checks do not read (a misspelt name, most likely) is left aside, and said to be."""
    return tuple(f"[cloudstack.settings] {name} is not a setting the checks read; it is ignored (they read "
                 f"{', '.join(setting_values.DEFAULTS)})" for name in config.settings
                 if name not in setting_values.DEFAULTS)


def permission_warnings(path: Path, config: Config) -> tuple[str, ...]:
    """Secret files (and a config naming them) should be readable by their owner only."""
    secrets = [value for target in config.targets for value in vars(target).values()
               if isinstance(value, Secret) and value.reference.startswith("file:")]
    warnings = []
    if secrets and path.exists() and path.stat().st_mode & 0o077:
        warnings.append(f"{path} is readable by other users and names password files; chmod 600 {path}")
    for secret in secrets:
        secret_path = Path(secret.reference.removeprefix("file:"))
        if secret_path.exists() and secret_path.stat().st_mode & 0o077:
            warnings.append(f"password file {secret_path} is readable by other users; chmod 600 {secret_path}")
    return tuple(warnings)


def parse_config(data: Mapping[str, Any], path: Path,
                 target_types: Mapping[str, type[TargetConfig]]) -> Config:
    base = path.parent
    known = {"database", "cloudstack", *target_types}
    for key in data:
        if key not in known:
            raise ConfigError(f"{path}: unknown table [{key}]",
                              hint=f"accepted: {', '.join(sorted(known))}")
    database = _table(data, "database", path)
    _check_keys(database, {"path"}, path, "[database]")
    cloudstack = _table(data, "cloudstack", path)
    _check_keys(cloudstack, {"version", "traffic_labels", "settings", "features"}, path, "[cloudstack]")
    version = cloudstack.get("version")
    if version is not None and not isinstance(version, str):
        raise ConfigError(f"{path}: [cloudstack] version must be a string like \"4.20\"")
    if version is not None:
        try:
            check_shape(version)
        except ConfigError as exc:
            raise ConfigError(f"{path}: [cloudstack] version: {exc.message}", hint=exc.hint) from None
    labels = cloudstack.get("traffic_labels", {})
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise ConfigError(f"{path}: [cloudstack.traffic_labels] must map traffic types to label strings")
    settings = cloudstack.get("settings", {})
    if not isinstance(settings, dict) or not all(isinstance(v, (str, int, float, bool)) for v in settings.values()):
        raise ConfigError(f"{path}: [cloudstack.settings] must map CloudStack setting names to values",
                          hint='e.g. "pool.storage.capacity.disablethreshold" = 0.9')
    stated = {name: _setting_text(value) for name, value in settings.items()}
    for name, value in stated.items():
        why = setting_values.unreadable(name, value)
        if why is not None:
            raise ConfigError(f"{path}: [cloudstack.settings] {name}: {value!r} {why}",
                              hint=f"write it as CloudStack holds it; its default is "
                                   f"{setting_values.DEFAULTS[name]}")
    features = cloudstack.get("features", [])
    if not isinstance(features, list) or not all(f in FEATURES for f in features):
        raise ConfigError(f"{path}: [cloudstack] features must list some of: {', '.join(FEATURES)}")
    db_path = database.get("path", DEFAULT_DATABASE)
    if not isinstance(db_path, str):
        raise ConfigError(f"{path}: [database] path must be a string")

    targets: list[TargetConfig] = []
    names: set[str] = set()
    for kind, cls in target_types.items():
        entries = data.get(kind, [])
        if not isinstance(entries, list):
            raise ConfigError(f"{path}: write targets as [[{kind}]] (an array of tables)")
        for index, entry in enumerate(entries, start=1):
            target = build_target(cls, entry, path, f"[[{kind}]] #{index}", base)
            if target.name in names:
                raise ConfigError(f"{path}: target name {target.name!r} is used twice",
                                  hint="every target needs a unique name")
            names.add(target.name)
            targets.append(target)
    return Config(path=path, database_path=resolve_path(db_path, base), cloudstack_version=version,
                  traffic_labels=dict(labels), settings=stated,
                  features=tuple(features), targets=tuple(targets))


def _setting_text(value: str | int | float | bool) -> str:
    """CloudStack keeps settings as text; booleans as true/false."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def build_target(cls: type[TargetConfig], entry: Any, path: Path, where: str, base: Path, *,
                 secrets: bool = True) -> TargetConfig:
    """Check one ``[[kind]]`` table against ``cls``'s fields and build it.

    ``secrets=False`` builds a target without its secrets (from a recording, which never holds one).
    """
    if not isinstance(entry, dict):
        raise ConfigError(f"{path}: {where} must be a table")
    name = entry.get("name")
    if isinstance(name, str):
        where = f"{where} (name {name!r})"
        if not name.strip():
            raise ConfigError(f"{path}: {where}: name must not be empty",
                              hint="scans, exports and findings tell targets apart by name")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    accepted = accepted_keys(cls)
    unknown = sorted(set(entry) - set(accepted))
    if unknown:
        raise ConfigError(f"{path}: {where}: unknown key {unknown[0]!r}",
                          hint=f"accepted keys: {', '.join(accepted)}")
    values: dict[str, Any] = {}
    for fname, f in fields.items():
        hint = hints[fname]
        if _is_secret(hint):
            values[fname] = _secret(entry, fname, path, where, base) if secrets else None
            if values[fname] is None and secrets and f.metadata.get("required"):
                raise ConfigError(f"{path}: {where}: give {fname}_env or {fname}_file",
                                  hint=f"{fname}_env names an environment variable, {fname}_file a file holding it")
            continue
        if fname not in entry:
            if (f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING) or (
                    secrets and f.metadata.get("required")):
                raise ConfigError(f"{path}: {where}: missing key {fname!r}",
                                  hint=_describe(f))
            continue
        values[fname] = _coerce(entry[fname], hint, path, where, fname, base)
        _check_range(fname, values[fname], path, where)
    try:
        return cls(**values)
    except ValueError as exc:  # a Target's own __post_init__ validation
        raise ConfigError(f"{path}: {where}: {exc}") from exc


def _check_range(key: str, value: Any, path: Path, where: str) -> None:
    """What every kind's numbers mean, checked the same way: timeouts are seconds above 0, ports are ports,
    counts of things at once are at least 1."""
    if key.endswith("timeout") and isinstance(value, (int, float)) and not value > 0:
        raise ConfigError(f"{path}: {where}: {key} must be more than 0 seconds, not {value:g}")
    if key.endswith("port") and isinstance(value, int) and not 0 < value < 65536:
        raise ConfigError(f"{path}: {where}: {key} must be a TCP port (1-65535), not {value}")
    if key in ("parallel", "page_size") and isinstance(value, int) and value < 1:
        raise ConfigError(f"{path}: {where}: {key} must be at least 1, not {value}")


def check_secrets(config: Config, targets: Sequence[TargetConfig]) -> None:
    """Read every secret these targets reference (and forget it): an unset variable, a missing, unreadable or
    empty file is a configuration error before anything is collected, naming the target and the key."""
    for target in targets:
        for setting in dataclasses.fields(target):
            secret = getattr(target, setting.name)
            if not isinstance(secret, Secret):
                continue
            where = f"{config.path}: target {target.name!r}: {setting.name}_{secret.reference.split(':', 1)[0]}"
            try:
                value = secret.reveal()
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc.message}", hint=exc.hint) from None
            if not value:
                raise ConfigError(f"{where}: {secret.reference.split(':', 1)[1]} is empty",
                                  hint="put the secret there, or point the key at the right variable or file")


def check_files(config: Config, targets: Sequence[TargetConfig]) -> None:
    """A ``ca_file`` these targets name that is missing, unreadable or holds no PEM certificate is a configuration
    error before anything is collected, naming the target, the key and the path (as a password file's is)."""
    for target in targets:
        ca_file = getattr(target, "ca_file", None)
        if not isinstance(ca_file, Path):
            continue
        where = f"{config.path}: target {target.name!r}: ca_file {ca_file}"
        hint = "point ca_file at the PEM file of the CA that signed the server's certificate, or pin its fingerprint"
        if not ca_file.is_file():
            raise ConfigError(f"{where}: {'missing' if not ca_file.exists() else 'not a file'}", hint=hint)
        try:
            ssl.create_default_context(cafile=str(ca_file))
        except OSError as exc:  # ssl.SSLError too
            why = exc.strerror if exc.strerror and not isinstance(exc, ssl.SSLError) else "not a certificate (PEM)"
            raise ConfigError(f"{where}: {why}", hint=hint) from None


def accepted_keys(cls: type[TargetConfig]) -> list[str]:
    hints = typing.get_type_hints(cls)
    keys: list[str] = []
    for f in dataclasses.fields(cls):
        if _is_secret(hints[f.name]):
            keys += [f"{f.name}_env", f"{f.name}_file"]
        else:
            keys.append(f.name)
    return keys


def resolve_path(value: str, base: Path) -> Path:
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() else base / path


def _table(data: Mapping[str, Any], name: str, path: Path) -> dict[str, Any]:
    table = data.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [{name}] must be a table")
    return table


def _check_keys(table: Mapping[str, Any], allowed: set[str], path: Path, where: str) -> None:
    for key in table:
        if key not in allowed:
            raise ConfigError(f"{path}: {where}: unknown key {key!r}",
                              hint=f"accepted keys: {', '.join(sorted(allowed))}")


def _is_secret(hint: Any) -> bool:
    return Secret in typing.get_args(hint) or hint is Secret


def _secret(entry: Mapping[str, Any], fname: str, path: Path, where: str, base: Path) -> Secret | None:
    env, file = entry.get(f"{fname}_env"), entry.get(f"{fname}_file")
    if env is not None and file is not None:
        raise ConfigError(f"{path}: {where}: give {fname}_env or {fname}_file, not both")
    if env is not None:
        if not isinstance(env, str) or not env:
            raise ConfigError(f"{path}: {where}: {fname}_env must name an environment variable")
        return Secret("env", env)
    if file is not None:
        if not isinstance(file, str) or not file:
            raise ConfigError(f"{path}: {where}: {fname}_file must be a path")
        return Secret("file", str(resolve_path(file, base)))
    return None


def _describe(f: dataclasses.Field[Any]) -> str:
    return str(f.metadata.get("help", "see docs/configuration.md"))


def _coerce(value: Any, hint: Any, path: Path, where: str, key: str, base: Path) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], path, where, key, base)
    if origin is tuple:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{path}: {where}: {key} must be a list of strings")
        return tuple(value)
    if hint is Path:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: {where}: {key} must be a path string")
        return resolve_path(value, base)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: {where}: {key} must be true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: {where}: {key} must be a whole number")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{path}: {where}: {key} must be a number (seconds)")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: {where}: {key} must be a string")
        return value
    raise TypeError(f"unsupported config field type {hint!r}")  # a programming error, not the user's
