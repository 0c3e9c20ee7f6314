"""Pure helpers shared by collectors: CloudStack naming, units, small parsers."""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

# CloudStack names its instances <prefix>-...-<instance.name>; instance.name defaults to "VM".
_USER_VM = re.compile(r"^i-(\d+)-(\d+)-[A-Za-z0-9]+$")
_SYSTEM_VM = re.compile(r"^([rsvb])-(\d+)-[A-Za-z0-9]+$")
# b-: an internal load balancer VM (InternalLoadBalancerVMManagerImpl names it getSystemVmName(id, instance, "b"),
# 4.18-4.22); listInternalLoadBalancerVMs lists it, so the CloudStack side calls it internal_lb too
_SYSTEM_ROLES = {"r": "router", "s": "ssvm", "v": "cpvm", "b": "internal_lb"}


@dataclass(frozen=True, slots=True)
class InstanceName:
    role: str  # user | router | internal_lb | ssvm | cpvm | unmanaged
    account_id: int | None
    cs_id: int | None


def parse_instance_name(name: str) -> InstanceName:
    """Read CloudStack's role and ids from an instance name.

    >>> parse_instance_name("i-2-10-VM")
    InstanceName(role='user', account_id=2, cs_id=10)
    >>> parse_instance_name("r-4-VM").role
    'router'
    >>> parse_instance_name("my-vm").role
    'unmanaged'
    """
    if match := _USER_VM.match(name):
        return InstanceName("user", int(match.group(1)), int(match.group(2)))
    if match := _SYSTEM_VM.match(name):
        return InstanceName(_SYSTEM_ROLES[match.group(1)], None, int(match.group(2)))
    return InstanceName("unmanaged", None, None)


_UNIT_FACTORS = {
    "b": 1, "bytes": 1,
    "k": 1024, "kib": 1024, "kb": 1000,
    "m": 1024**2, "mib": 1024**2, "mb": 1000**2,
    "g": 1024**3, "gib": 1024**3, "gb": 1000**3,
    "t": 1024**4, "tib": 1024**4, "tb": 1000**4,
    "p": 1024**5, "pib": 1024**5, "pb": 1000**5,
}


def to_bytes(value: str | int | None, unit: str | None = "KiB") -> int | None:
    """Convert a libvirt-style ``value`` + ``unit`` (unit defaults to KiB, as libvirt's) to bytes."""
    if value is None or value == "":
        return None
    factor = _UNIT_FACTORS.get((unit or "KiB").lower())
    if factor is None:
        raise ValueError(f"unknown size unit {unit!r}")
    return int(value) * factor


def version_from_int(number: int | None) -> str | None:
    """libvirt encodes versions as major * 1,000,000 + minor * 1,000 + release."""
    if not number:
        return None
    return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"


def power_state_from_libvirt(state: int | None) -> str | None:
    """libvirt's virDomainState, as the normalised power_state."""
    return {
        0: "unknown", 1: "running", 2: "running", 3: "paused", 4: "stopping",
        5: "stopped", 6: "crashed", 7: "suspended",
    }.get(state, "unknown") if state is not None else None


def prefix_to_netmask(prefix: int | None, family: str = "inet") -> str | None:
    if prefix is None:
        return None
    if family == "inet6":
        return str(prefix)
    return str(ipaddress.IPv4Network(f"0.0.0.0/{prefix}").netmask)


def parse_properties(text: str) -> dict[str, str]:
    """Parse a Java .properties file (the format of CloudStack's agent.properties)."""
    result: dict[str, str] = {}
    logical = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not logical and (not line or line[0] in "#!"):
            continue
        if line.endswith("\\") and not line.endswith("\\\\"):
            logical += line[:-1]
            continue
        logical += line
        match = re.match(r"^((?:\\.|[^=:\s])+)\s*[=:\s]\s*(.*)$", logical)
        if match:
            result[match.group(1).replace("\\", "")] = match.group(2)
        elif logical:
            result[logical] = ""
        logical = ""
    return result


def one_line(text: object, limit: int = 300) -> str:
    """Collapse whitespace so an error always fits on one line (and can be printed and stored: ``storable``)."""
    flat = storable(" ".join(str(text).split()))
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


REDACTED = "***"


_LONG_SECRET = 8  # a secret this long is blanked wherever it is; a shorter one where it stands alone


def redact(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with every one of ``secrets`` (the passwords and keys a target uses) shown as ``***``: what a server
    echoes (a login's parameters in its error) is never stored, logged, printed or recorded. A text cut short by
    ``one_line`` (it ends in "…") loses a secret's cut-off beginning too."""
    # one_line squeezes a secret's runs of whitespace ("a  b" → "a b") before it is redacted: blank both forms
    forms = {form for s in secrets if s for form in (s, " ".join(s.split())) if form}
    for secret in sorted(forms, key=len, reverse=True):
        if len(secret) >= _LONG_SECRET:
            text = text.replace(secret, REDACTED)
        else:  # a short one inside a word of ours ("x" in "xenapi") is not what a server echoed
            text = re.sub(rf"(?<![^\W_]){re.escape(secret)}(?![^\W_])", REDACTED, text)
        if text.endswith("…"):
            body = text[:-1]
            for length in range(len(secret) - 1, 2, -1):
                if body.endswith(secret[:length]):
                    text = body[:-length] + REDACTED + "…"
                    break
    return text


_SURROGATES = re.compile("[\ud800-\udfff]")  # what JSON's "\\ud800" decodes to on its own: no UTF-8 for it


def is_unicode(text: str) -> bool:
    """Whether ``text`` can be printed and stored (encoded as UTF-8): it holds no lone surrogate."""
    return text.isascii() or _SURROGATES.search(text) is None


def storable(text: str) -> str:
    """``text`` with U+FFFD for each lone surrogate (which has no UTF-8)."""
    return text if is_unicode(text) else _SURROGATES.sub("\ufffd", text)


def sha256_fingerprint(value: str) -> str:
    """A certificate pin as 64 lower-case hex digits; colons and case are forgiven."""
    normal = value.replace(":", "").lower()
    if len(normal) != 64 or any(c not in "0123456789abcdef" for c in normal):
        raise ValueError("fingerprint must be a SHA-256 hex digest (64 hex digits, colons allowed)")
    return normal


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_HOST_NAME = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,252})$")


def refuse_password_in(key: str, url: str, instead: str, *, user: bool = True) -> None:
    """Secrets are never values in the config: a URL with a password in its user part (``https://root:pw@host``,
    also written wrongly: ``root:pw@host``, ``https:/root:pw@host``) is refused, in words that never repeat the URL
    (it would reach the console, the database and the logs). ``user=False``: no ``user@`` part at all (the user is
    a key of its own). Looked for in the text itself, before any parsing a malformed URL could slip by."""
    before_query = re.split(r"[?#]", url, maxsplit=1)[0]  # an "@" in a query (a key file's path) is no user part
    head, at, _ = before_query.partition("@")
    userinfo = _SCHEME.sub("", head, count=1)
    if at and (not user or ":" in userinfo):
        said = "a password in the URL is not accepted" + ("" if user else ", nor a user@ part")
        fine = " (user@host is fine)" if user else ""
        raise ValueError(f"{key}: {said}; leave it out{fine}, the URL is shown and stored: {instead}")


def check_url(key: str, url: str, example: str) -> None:
    """An http(s) URL with a host (and a port that is a number), or a one-line error that never repeats it: a URL
    written wrongly may hold what was meant to be a password (``host:443:root:pw``)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  # a port that is not a number raises, with the URL in its words
    except ValueError:
        raise ValueError(f"{key} must look like {example} (a port, if given, is a number)") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{key} must look like {example} (http:// or https://, then the host)")


def is_ip_address(host: str) -> bool:
    """An IPv4 or IPv6 address (an IPv6 one with or without its URL brackets)."""
    try:
        ipaddress.ip_address(host.removeprefix("[").removesuffix("]"))
    except ValueError:
        return False
    return True


def bare_host(key: str, host: str, example: str) -> None:
    """A host name or an IP address, nothing more — no scheme, user, password, port or path; else a one-line error
    that does not repeat the value (it may hold a password: ``https://user:pw@vcenter``)."""
    if is_ip_address(host):
        return
    try:
        ascii_name = host.encode("idna").decode("ascii")  # an IDN name as DNS knows it (xn--…)
    except UnicodeError:
        ascii_name = ""
    if not _HOST_NAME.match(ascii_name):
        raise ValueError(f"{key} must be a bare host name or address, like {example}: no scheme, user, password, "
                         "port or path (the port is a key of its own)")


# what no name is shown as: controls, format characters (bidi overrides, zero-width), line and paragraph separators,
# lone surrogates (and noncharacters, ``_noncharacter``)
UNSHOWN = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


def shown_escape(char: str) -> str:
    """How ``printable`` shows a character it does not print: ``\\x1b``, ``\\u202e``."""
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(value: object, escape: Callable[[str], str] = shown_escape) -> str:
    """``value`` as text with every control and format character (Unicode Cc, Cf; newlines too: a name must not
    start a line of its own that reads like ours) shown as an escape, and every lone surrogate (Cs: a path's byte
    that is not UTF-8, JSON's ``\\ud800`` on its own), which no terminal could be sent, too. ``escape`` writes one
    such character (the logs write JSON's escapes)."""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(escape(char) if unicodedata.category(char) in UNSHOWN or _noncharacter(char) else char
                   for char in text)


def _noncharacter(char: str) -> bool:
    """U+FDD0..U+FDEF and the last two code points of every plane (U+FFFE, U+FFFF, …): never text, a parse error
    in HTML, and U+FFFE/U+FFFF are not XML characters."""
    code = ord(char)
    return 0xFDD0 <= code <= 0xFDEF or code & 0xFFFE == 0xFFFE
