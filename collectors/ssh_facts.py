"""Host facts over SSH with paramiko: read-only commands, strict host-key checking.

Every command here only reads (cat, grep, ip -j, systemctl is-active, dpkg-query/rpm -q).
A command that is missing on the host exits 127 and its fact stays unknown; the host is
not failed for it. Host keys are checked against the target's known_hosts file only, and an
unknown or changed key is refused — never added.
"""

from __future__ import annotations

import importlib
import shlex
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from collectors.base import Calls, Sdk
from collectors.kvm_normalise import AGENT_CERTIFICATES, AGENT_KEYS
from inventory.errors import AuthFailed, CollectorError, ConnectFailed, HostKeyRejected, ReadOnlyRefused, TimedOut
from inventory.normalise import one_line, parse_properties

_SDK = Sdk("paramiko", pip="paramiko", extra="kvm", debian="python3-paramiko")


@cache
def _paramiko() -> ModuleType:
    return _SDK.load("kvm")

_NEED = "command -v {0} >/dev/null 2>&1 || exit 127; "
_BEGIN, _END = "@@cs-inventory-begin", "@@cs-inventory-end"


LIBVIRT_SOCKETS = ("libvirtd.socket", "libvirtd-ro.socket", "libvirtd-admin.socket", "libvirtd-tls.socket",
                   "libvirtd-tcp.socket", "virtqemud.socket")
LIBVIRTD_KEYS = ("listen_tls", "listen_tcp", "tls_port", "tcp_port", "auth_tcp", "mdns_adv")


def fact_commands(agent_properties: str) -> dict[str, str]:
    """The read-only commands run on every KVM host, by fact name.

    Certificates and keys are only tested for existence (``test -e``), never read; configuration files are
    grepped for a fixed list of keys.
    """
    agent_dir = shlex.quote(agent_properties.rsplit("/", 1)[0] or "/")
    return {
        "os_release": "cat /etc/os-release",
        "uname": "uname -srm",
        "cpu_virt": "grep -m1 -o -w -E 'vmx|svm' /proc/cpuinfo; test -e /dev/kvm && echo dev_kvm; exit 0",
        "agent_package": (
            "if command -v dpkg-query >/dev/null 2>&1; then "
            "dpkg-query -W -f='${Status}|${Version}' cloudstack-agent 2>/dev/null || echo not-installed; "
            "elif command -v rpm >/dev/null 2>&1; then "
            "v=$(rpm -q --qf '%{VERSION}-%{RELEASE}' cloudstack-agent 2>/dev/null) "
            "&& echo \"install ok installed|$v\" || echo not-installed; else exit 127; fi"),
        "agent_service": _NEED.format("systemctl") + "systemctl is-active cloudstack-agent 2>/dev/null; exit 0",
        "agent_properties": f"cat {shlex.quote(agent_properties)}",
        "links": _NEED.format("ip") + "ip -j -d addr show",
        "default_route": _NEED.format("ip") + "ip -j route show default",
        "ovs": _NEED.format("ovs-vsctl") + (
            "for br in $(ovs-vsctl list-br); do printf '%s:' \"$br\"; "
            "ovs-vsctl list-ports \"$br\" | tr '\\n' ' '; echo; done"),
        "mounts": "cat /proc/mounts",
        "timesync": (
            "if command -v timedatectl >/dev/null 2>&1 && timedatectl show -p NTPSynchronized --value "
            "2>/dev/null; then exit 0; fi; " + _NEED.format("chronyc") + "chronyc -n tracking"),
        "fqdn": "hostname --fqdn",
        "distro_release": (
            "if [ -f /etc/redhat-release ]; then printf 'redhat-release='; head -n 1 /etc/redhat-release; "
            "elif [ -f /etc/lsb-release ]; then grep '^DISTRIB_ID=' /etc/lsb-release; fi; exit 0"),
        "java": _NEED.format("java") + "java -version 2>&1 | head -n 1",
        "selinux": ("if command -v getenforce >/dev/null 2>&1; then echo \"mode=$(getenforce)\"; fi; "
                    "grep -s -E '^SELINUX=' /etc/selinux/config; exit 0"),
        "apparmor": ("if [ -d /sys/kernel/security/apparmor ]; then echo enabled; "
                     "grep -s -E 'libvirtd|virt-aa-helper' /sys/kernel/security/apparmor/profiles; fi; exit 0"),
        "libvirtd_conf": (
            f"grep -s -E '^[[:space:]]*({'|'.join(LIBVIRTD_KEYS)})[[:space:]]*=' /etc/libvirt/libvirtd.conf; "
            "for f in /etc/sysconfig/libvirtd /etc/default/libvirtd; do [ -f \"$f\" ] && "
            "grep -E '^[[:space:]]*(LIBVIRTD_ARGS|libvirtd_opts)=' \"$f\" | sed \"s|^|$f:|\"; done; "
            "grep -s -E '^[[:space:]]*remote_mode' /etc/libvirt/libvirt.conf | sed 's|^|libvirt.conf:|'; exit 0"),
        "libvirtd_sockets": _NEED.format("systemctl") + (
            f"for u in {' '.join(LIBVIRT_SOCKETS)}; do s=$(systemctl is-enabled \"$u\" 2>/dev/null); "
            "echo \"$u=${s:-not-found}\"; done; a=$(ps -o args= -C libvirtd 2>/dev/null | head -n 1); "
            "echo \"libvirtd.args=$a\""),
        "agent_certificates": (f"for f in {' '.join(AGENT_CERTIFICATES)} uefi.properties; do "
                               f"test -e {agent_dir}/\"$f\" && echo \"$f\"; done; exit 0"),
        "listening": _NEED.format("ss") + "ss -Hltn | awk '{print $4}'",
        "agent_connections": _NEED.format("ss") + "ss -Htn state established '( dport = :8250 )' | awk '{print $4}'",
        "firewall": ("if command -v systemctl >/dev/null 2>&1; then echo \"firewalld=$(systemctl is-active firewalld "
                     "2>/dev/null)\"; fi; grep -s -E '^(DEFAULT_FORWARD_POLICY|ENABLED)=' /etc/default/ufw "
                     "/etc/ufw/ufw.conf; exit 0"),
        "ovs_version": _NEED.format("ovs-vsctl") + "ovs-vsctl --version | head -n 1",
        "bridge_module": "test -d /sys/module/bridge && echo loaded || echo absent",
        "aria2": _NEED.format("aria2c") + "command -v aria2c",
        "routes": _NEED.format("ip") + "ip -j -4 route show",
    }


@contextmanager
def translate_ssh_errors(where: str, known_hosts: Path | None) -> Iterator[None]:
    """Turn paramiko and socket errors into one-line ``CollectorError``s."""
    paramiko = _paramiko()
    try:
        yield
    except paramiko.BadHostKeyException as exc:
        raise HostKeyRejected(f"ssh {where}: host key mismatch (offered {exc.key.get_name()} "
                              f"{exc.key.get_fingerprint().hex()[:16]}…)",
                              hint=f"if the host was reinstalled, verify and update {known_hosts}") from exc
    except paramiko.AuthenticationException as exc:
        raise AuthFailed(f"ssh {where}: key refused ({one_line(exc, 120)})",
                         hint="check ssh_user and ssh_key, and the host's authorized_keys") from exc
    except socket.timeout as exc:
        raise TimedOut(f"ssh {where}: timed out", hint="is the host up and sshd answering?") from exc
    except ConnectionRefusedError as exc:
        raise ConnectFailed(f"ssh {where}: connection refused", hint="is sshd running on that port?") from exc
    except socket.gaierror as exc:
        raise ConnectFailed(f"ssh {where}: cannot resolve host name ({exc.strerror})") from exc
    except paramiko.SSHException as exc:
        text = str(exc)
        if "not found in known_hosts" in text:
            raise HostKeyRejected(f"ssh {where}: host key not in {known_hosts}",
                                  hint="verify the host's key and add it (ssh-keyscan) to known_hosts") from exc
        if "banner" in text.lower() or "timeout" in text.lower():
            raise TimedOut(f"ssh {where}: no SSH answer ({one_line(text, 120)})") from exc
        raise CollectorError(f"ssh {where}: {one_line(text, 200)}") from exc
    except OSError as exc:
        raise ConnectFailed(f"ssh {where}: {exc.strerror or one_line(exc, 200)}") from exc


class KnownHosts:
    """A known_hosts file read line by line, as OpenSSH writes it: plain lines are the trusted keys; ``@revoked``
    lines' keys are refused, for any host, even if a plain line lists them too; ``@cert-authority`` lines are
    skipped (paramiko checks plain host keys only) and counted, to be said when a host's key is not found. A plain
    line not understood is skipped, as OpenSSH skips it (it trusts nothing), and said when a host's key is not
    found; an ``@revoked`` line not understood, or a marker we do not know, is a ``HostKeyRejected`` naming the file
    and the line: the host's SSH facts are not read, the rest of the host is."""

    def __init__(self) -> None:
        self.trusted: list[tuple[list[str], Any]] = []
        self.revoked: set[bytes] = set()
        self.authorities = 0
        self.not_understood: list[int] = []  # plain lines skipped, as OpenSSH skips them: they trust nothing

    @classmethod
    def load(cls, path: Path) -> KnownHosts:
        known = cls()
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError as exc:
            raise HostKeyRejected(f"known_hosts {path} cannot be read: {exc.strerror}") from exc
        trusted: list[tuple[list[str], Any]] = []
        for number, raw in enumerate(lines, start=1):
            line = " ".join(raw.split())
            if not line or line.startswith("#"):
                continue
            marker = None
            if line.startswith("@"):
                marker, _, line = line.partition(" ")
                if marker == "@cert-authority":
                    known.authorities += 1
                    continue
                if marker != "@revoked":
                    raise _not_understood(path, number, f"marker {marker[:20]!r} is not @cert-authority or @revoked")
            try:
                entry = _entry(path, number, line)
            except HostKeyRejected:
                if marker == "@revoked":  # a revocation unread might be this host's: never skipped
                    raise
                known.not_understood.append(number)
                continue
            if entry is None:
                continue  # a key type paramiko does not know: it could not be this host's key
            if marker == "@revoked":
                known.revoked.add(entry[1].asbytes())
            else:
                trusted.append(entry)
        known.trusted = [(names, key) for names, key in trusted if key.asbytes() not in known.revoked]
        return known


def _entry(path: Path, number: int, line: str) -> tuple[list[str], Any] | None:
    """One known_hosts line's host patterns and key; None for a key type paramiko does not know."""
    hostkeys = importlib.import_module("paramiko.hostkeys")
    if len(line.split(" ")) < 3:
        raise _not_understood(path, number, "not host names, key type and key")
    try:
        entry = hostkeys.HostKeyEntry.from_line(line, number)
    except Exception as exc:  # InvalidHostKey (not base64), SSHException (a key that does not parse)
        raise _not_understood(path, number, f"the key is not understood ({type(exc).__name__})") from exc
    return None if entry is None else (list(entry.hostnames), entry.key)


def _not_understood(path: Path, number: int, why: str) -> HostKeyRejected:
    return HostKeyRejected(f"known_hosts {path} line {number} is not understood: {why}",
                           hint="fix or remove that line (ssh-keygen -R HOST -f FILE removes a host's lines)")


class _Refuse:
    """paramiko's policy for a key known_hosts does not trust: refused, in words that say why (revoked, unknown —
    and that @cert-authority lines are not used, if the file has some)."""

    def __init__(self, where: str, path: Path | None, known: KnownHosts) -> None:
        self.where, self.path, self.known = where, path, known

    def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
        offered = f"{key.get_name()} {key.get_fingerprint().hex()[:16]}…"
        if key.asbytes() in self.known.revoked:
            raise HostKeyRejected(f"ssh {self.where}: host key {offered} is marked @revoked in {self.path}",
                                  hint="the host must get a new key; verify it and add it to known_hosts")
        unused = (f"; its {self.known.authorities} @cert-authority line(s) are not used: SSH facts check plain host "
                  "keys only") if self.known.authorities else ""
        lines = self.known.not_understood
        if lines:
            unused += f"; line {', '.join(map(str, lines[:5]))}{' …' if len(lines) > 5 else ''} not understood, skipped"
        raise HostKeyRejected(f"ssh {self.where}: host key {offered} not in {self.path}{unused}",
                              hint="verify the host's key and add it (ssh-keyscan) to known_hosts")


class SshSession:
    """One paramiko connection to a host; ``run`` executes a command of ``allowed`` (the fixed, read-only fact
    script) and refuses any other before anything is sent."""

    def __init__(self, host: str, *, port: int, user: str, key_file: Path | None, known_hosts: Path | None,
                 timeout: float, command_timeout: float, calls: Calls | None = None,
                 allowed: frozenset[str] = frozenset()) -> None:
        paramiko = _paramiko()
        self.allowed = allowed
        self.where = f"{user}@{host}:{port}"
        self.known_hosts = known_hosts
        self.command_timeout = command_timeout
        self.calls = calls or Calls()
        self.client = paramiko.SSHClient()
        known = KnownHosts.load(known_hosts) if known_hosts is not None and known_hosts.exists() else KnownHosts()
        trusted = self.client.get_host_keys()
        for names, key in known.trusted:
            for name in names:
                trusted.add(name, key.get_name(), key)
        self.client.set_missing_host_key_policy(_Refuse(self.where, known_hosts, known))
        try:
            with translate_ssh_errors(self.where, known_hosts):
                self.client.connect(host, port=port, username=user,
                                    key_filename=str(key_file) if key_file else None,
                                    look_for_keys=key_file is None, allow_agent=True, timeout=timeout,
                                    banner_timeout=timeout, auth_timeout=timeout, channel_timeout=timeout)
        except BaseException:
            self.client.close()
            raise

    def run(self, command: str, timeout: float | None = None) -> dict[str, Any]:
        """Run a command; return its exit code and standard output (rc 124 on timeout)."""
        if command not in self.allowed:
            raise ReadOnlyRefused(f"ssh {self.where}: refused to run a command that is not the fact script "
                                  f"({one_line(command, 60)})", hint="nothing was sent")
        self.calls.add()
        timeout = timeout or self.command_timeout
        with translate_ssh_errors(self.where, self.known_hosts):
            transport = self.client.get_transport()
            assert transport is not None
            channel = transport.open_session(timeout=self.command_timeout)
            channel.settimeout(timeout)
            channel.exec_command(command)
            deadline = time.monotonic() + timeout
            chunks = []
            try:
                while True:
                    data = channel.recv(65536)
                    if not data:
                        break
                    chunks.append(data)
                    if time.monotonic() > deadline:
                        raise socket.timeout()
                if not channel.status_event.wait(max(0.0, deadline - time.monotonic())):
                    raise socket.timeout()
            except socket.timeout:
                channel.close()
                return {"rc": 124, "out": b"".join(chunks).decode("utf-8", "replace")}
            rc = channel.recv_exit_status()
            channel.close()
        return {"rc": rc, "out": b"".join(chunks).decode("utf-8", "replace")}

    def close(self) -> None:
        self.client.close()


def fact_script(commands: dict[str, str], command_timeout: float) -> str:
    """One shell script running every fact command, each under ``timeout``, between markers.

    One SSH exec instead of one per fact: a round trip per host, not a dozen.
    """
    lines = [f"if command -v timeout >/dev/null 2>&1; then T='timeout -k 1 {max(1, int(command_timeout))}'; "
             "else T=''; fi"]
    for name, command in commands.items():
        lines.append(f"printf '{_BEGIN} %s\\n' {name}; $T sh -c {shlex.quote(command)} 2>/dev/null </dev/null; "
                     f"printf '\\n{_END} %s %s\\n' {name} $?")
    return "\n".join(lines) + "\n"


def parse_script_output(text: str, names: list[str]) -> dict[str, dict[str, Any]]:
    """Split ``fact_script`` output back into {name: {rc, out}}; a fact cut off is rc 124."""
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        begin = text.find(f"{_BEGIN} {name}\n")
        if begin < 0:
            results[name] = {"rc": 124, "out": ""}
            continue
        body_start = begin + len(f"{_BEGIN} {name}\n")
        end = text.find(f"\n{_END} {name} ", body_start)
        if end < 0:
            results[name] = {"rc": 124, "out": ""}
            continue
        rc_text = text[end + len(f"\n{_END} {name} "):].split("\n", 1)[0]
        results[name] = {"rc": int(rc_text) if rc_text.strip().isdigit() else 124,
                         "out": text[body_start:end]}
    return results


def facts_script(agent_properties: str, command_timeout: float) -> str:
    """The one script a KVM host is ever asked to run."""
    return fact_script(fact_commands(agent_properties), command_timeout)


def fetch_facts(session: SshSession, agent_properties: str) -> dict[str, dict[str, Any]]:
    commands = fact_commands(agent_properties)
    budget = session.command_timeout * len(commands) + 5
    result = session.run(facts_script(agent_properties, session.command_timeout), timeout=budget)
    if result["rc"] == 124 and not result["out"]:
        raise TimedOut(f"ssh {session.where}: fact commands gave no answer within {budget:g}s")
    outputs = parse_script_output(result["out"], list(commands))
    properties = outputs.get("agent_properties")
    if properties is not None and properties["rc"] == 0:
        properties["out"] = kept_properties(properties["out"])
    return outputs


def kept_properties(text: str) -> str:
    """agent.properties reduced to the keys cs-inventory stores: nothing else is kept or recorded."""
    values = parse_properties(text)
    return "".join(f"{key}={values[key]}\n" for key in AGENT_KEYS if key in values)
