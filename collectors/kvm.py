"""KVM hosts through libvirt (read-only connections) plus host facts over SSH.

Reads, per host and in parallel: capabilities, domain capabilities and node info, every domain
(active and inactive) with one bulk stats call and one XML description each, libvirt networks,
storage pools and interfaces; then host facts over SSH (see ``ssh_facts``). Needs an SSH login that
may open libvirt's read-only socket (root, or a member of the libvirt group) and run the
read-only fact commands. Blind spots: CloudStack's own database (zones, pods, traffic labels
as configured there) is not read — agent.properties on each host tells what the agent was given.
"""

from __future__ import annotations

import re
import shlex
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from collectors.base import Calls, Collector, Opener, Sdk, Session
from collectors.kvm_normalise import normalise_target
from collectors.ssh_facts import SshSession, facts_script, fetch_facts
from inventory.errors import AuthFailed, CollectorError, ConnectFailed, HostKeyRejected, TimedOut
from inventory.model import Inventory, JsonDict, TargetConfig
from inventory.normalise import is_ip_address, one_line, refuse_password_in

_LIBSSH_TRANSPORTS = {"libssh", "libssh2"}  # refused in the config: see KvmTarget
_SDK = Sdk("libvirt", pip="libvirt-python", extra="kvm", debian="python3-libvirt")


@cache
def _libvirt() -> ModuleType:
    """libvirt, imported when a KVM target is read; its errors come back as exceptions, not on stderr."""
    module = _SDK.load("kvm")
    module.registerErrorHandler(lambda _ctx, _err: None, None)
    return module


_NOT_IN_A_HOST = re.compile(r"[@/?#\s]")  # a host name, an IPv4 or IPv6 address holds none of these


@dataclass(frozen=True)
class KvmTarget(TargetConfig):
    """KVM hosts, read with libvirt (read-only) and SSH facts."""

    hosts: tuple[str, ...] = field(metadata={"help": "host names or addresses, e.g. [\"kvm01\", \"kvm02\"]"})
    cluster: str | None = field(default=None, metadata={"help": "cluster name; else agent.properties"})
    uri: str = field(default="qemu+ssh://{user}@{host}/system",
                     metadata={"help": "libvirt URI template; {host}, {user}, {port} are filled in"})
    ssh_user: str = field(default="root", metadata={"help": "SSH user for libvirt and facts"})
    ssh_port: int = field(default=22, metadata={"help": "SSH port"})
    ssh_key: Path | None = field(default=None, metadata={"help": "private key file; else the SSH agent"})
    known_hosts: Path = field(default=Path("~/.ssh/known_hosts"),
                              metadata={"help": "known_hosts file that host keys are checked against"})
    ssh_facts: bool = field(default=True, metadata={"help": "collect host facts over SSH"})
    agent_properties: str = field(default="/etc/cloudstack/agent/agent.properties",
                                  metadata={"help": "path of agent.properties on the hosts"})
    connect_timeout: float = field(default=10.0, metadata={"help": "seconds to connect (SSH, libvirt)"})
    command_timeout: float = field(default=20.0, metadata={"help": "seconds per SSH fact command"})
    host_timeout: float = field(default=120.0, metadata={"help": "overall seconds per host"})
    parallel: int = field(default=16, metadata={"help": "hosts read at once"})

    def __post_init__(self) -> None:
        refuse_password_in("uri", self.uri, "SSH logs in with a key")
        object.__setattr__(self, "known_hosts", self.known_hosts.expanduser())
        if not self.hosts:
            raise ValueError("hosts must list at least one host")
        if len(set(self.hosts)) != len(self.hosts):
            raise ValueError("hosts lists a host twice")
        if not all(host.strip() for host in self.hosts):
            raise ValueError("hosts must not hold an empty name (it would be read as this machine)")
        for number, host in enumerate(self.hosts, 1):  # the entry is not repeated: it may hold a password
            if _NOT_IN_A_HOST.search(host) or (":" in host and not is_ip_address(host)):  # IPv6: the only ":"
                raise ValueError(f"hosts entry {number} is not a host name or address (it holds a user, a port, a "
                                 "space or URI syntax): give the name only; ssh_user and ssh_port say how to log in")
        try:
            self.uri.format(host="h", user="u", port=22)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"uri template {self.uri!r} is malformed: only {{host}}, {{user}}, {{port}}") from exc
        transport = urlsplit(self.uri).scheme.partition("+")[2]
        if transport in _LIBSSH_TRANSPORTS:
            raise ValueError(f"uri {self.uri!r}: libvirt's {transport} transport is not supported — through it "
                             "getCapabilities never returns without an event loop, and takes 5 s per large answer "
                             "with one (measured on libvirt 9.0); use qemu+ssh://, whose ssh checks known_hosts the "
                             "same way")
        if self.parallel < 1 or self.connect_timeout <= 0 or self.host_timeout <= 0:
            raise ValueError("parallel and the timeouts must be positive")

    @property
    def endpoint(self) -> str:
        return ",".join(self.hosts)


class KvmSession(Session):
    """One host: its read-only libvirt connection and, when facts are wanted, an SSH session."""

    def __init__(self, address: str, calls: Calls, conn: Any, uri: str, translate: Callable[[], Any]) -> None:
        super().__init__(address, calls)
        self.conn = conn
        self.uri = uri
        self.libvirt_errors = translate  # the context manager that words libvirt's errors for this host
        self.ssh: SshSession | None = None
        self.ssh_error: str | None = None
        self.pool_claims: PoolClaims | None = None  # the target's, set by the collector; None: list every pool


class KvmCollector(Collector[KvmTarget, KvmSession]):
    """KVM: libvirt on every host (read-only) + SSH facts; hosts in parallel, each with a deadline."""

    kind = "kvm"
    cloudstack_name = "KVM"
    Target = KvmTarget
    has_hosts = True
    timeout_hint = "is the host up and answering?"
    limit_hint = "is the host up and answering? raise host_timeout"

    def __init__(self, target: KvmTarget, *, opener: Opener | None = None) -> None:
        super().__init__(target, opener=opener)
        self._pool_claims = PoolClaims()

    def endpoints(self) -> list[str]:
        return list(self.target.hosts)

    def endpoint_timeout(self) -> float:
        return self.target.host_timeout

    def parallel(self) -> int:
        return self.target.parallel

    @contextmanager
    def connect(self, address: str, calls: Calls) -> Iterator[KvmSession]:
        """libvirt read-only over the target's URI (ssh with the target's known_hosts), then SSH for facts."""
        libvirt = _libvirt()
        target = self.target
        with ExitStack() as wrapper:
            ssh_command = ssh_log = None
            if urlsplit(target.uri).scheme.partition("+")[2] == "ssh":  # the ssh transport runs our wrapper
                tmp = wrapper.enter_context(tempfile.TemporaryDirectory(prefix="cs-inventory-ssh-"))
                ssh_command, ssh_log = write_ssh_wrapper(target, Path(tmp), 0)
            uri = libvirt_uri(target, address, ssh_command)

            def translate() -> Any:
                return translate_libvirt_errors(uri, target.known_hosts, ssh_log)
            with translate():
                calls.add()
                conn = libvirt.openReadOnly(uri)
            session = KvmSession(address, calls, conn, uri, translate)
            try:
                if target.ssh_facts:
                    try:
                        session.ssh = SshSession(address, port=target.ssh_port, user=target.ssh_user,
                                                 key_file=target.ssh_key, known_hosts=target.known_hosts,
                                                 timeout=target.connect_timeout, command_timeout=target.command_timeout,
                                                 calls=calls, allowed=frozenset({facts_script(
                                                     target.agent_properties, target.command_timeout)}))
                    except CollectorError as exc:
                        session.ssh_error = exc.one_line()
                yield session
            finally:
                if session.ssh is not None:
                    session.ssh.close()
                conn.close()

    def fetch(self, session: KvmSession) -> JsonDict:
        session.pool_claims = self._pool_claims
        return fetch_host(session, self.target)

    @staticmethod
    def normalise(answers: dict[str, JsonDict], target: KvmTarget) -> Inventory:
        return normalise_target(answers, target.name, target.hosts, target.cluster)


def fetch_host(session: KvmSession, target: KvmTarget) -> JsonDict:
    """Everything libvirt and the host's read-only commands say about one host, as JSON-safe data."""
    with session.libvirt_errors():
        raw = fetch_libvirt(session.conn, session.endpoint, session.uri, session.calls, session.pool_claims)
    if session.ssh is not None:
        try:
            raw["facts"] = fetch_facts(session.ssh, target.agent_properties)
        except CollectorError as exc:
            session.ssh_error = exc.one_line()
    if session.ssh_error:
        raw["facts_error"] = session.ssh_error
        session.degraded.append(session.ssh_error)
    return raw


def fetch_libvirt(conn: Any, address: str, uri: str, calls: Calls, claims: PoolClaims | None = None) -> JsonDict:
    """Everything libvirt says about one host through an open read-only connection. A pool's volumes are listed
    when ``claims`` grants its UUID: once per target, as the hosts of a cluster share their primary storage."""

    def call(fn: Any, *args: Any) -> Any:
        calls.add()
        return fn(*args)

    raw: dict[str, Any] = {
        "address": address, "uri": redact_uri(uri),
        "capabilities": call(conn.getCapabilities), "node_info": call(conn.getInfo),
        "lib_version": call(conn.getLibVersion), "hv_version": call(conn.getVersion),
        "hv_type": call(conn.getType), "hostname": call(conn.getHostname),
        "sysinfo": _optional(call, conn.getSysinfo, 0),
        # libvirt's default emulator, machine and virt type: whether it offers UEFI loaders (OVMF/edk2)
        "domain_capabilities": _optional(call, conn.getDomainCapabilities, None, None, None, None, 0),
    }
    raw["domains"] = _domains(conn, call)
    raw["networks"] = _described(call, call(conn.listAllNetworks, 0), "VIR_ERR_NO_NETWORK")
    raw["pools"] = _pools(conn, call, claims)
    raw["interfaces"] = _described(call, _optional(call, conn.listAllInterfaces, 0) or [], "VIR_ERR_NO_INTERFACE")
    return raw


def _described(call: Any, listed: list[Any], gone: str) -> list[dict[str, Any]]:
    """Each listed network or interface: its XML and whether it is active. One removed between the listing and
    these reads (libvirt's error ``gone``) is left out, as a domain is (``_domains``)."""
    return [{"xml": xml, "active": bool(active)} for item in listed
            if (xml := _unless_gone(call, gone, item.XMLDesc, 0)) is not None
            and (active := _unless_gone(call, gone, item.isActive)) is not None]


def _pools(conn: Any, call: Any, claims: PoolClaims | None) -> list[dict[str, Any]]:
    """The host's storage pools; one removed while it is read is left out, as a domain is (``_domains``)."""
    libvirt = _libvirt()
    found = []
    for pool in call(conn.listAllStoragePools, 0):
        try:
            found.append(_pool(pool, call, claims))
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_POOL:
                raise
    return found


def _pool(pool: Any, call: Any, claims: PoolClaims | None) -> dict[str, Any]:
    """A storage pool; with its volumes' XML when it is active and no other host of the target listed them (as
    libvirt last refreshed the pool: a read-only connection may not refresh it). ``volumes`` absent: not listed."""
    active = bool(call(pool.isActive))
    found = {"xml": call(pool.XMLDesc, 0), "active": active, "autostart": bool(_optional(call, pool.autostart)),
             "info": call(pool.info)}
    uuid = pool.UUIDString()
    if active and (claims is None or claims.claim(uuid)):
        volumes = _optional(call, pool.listAllVolumes, 0)
        if volumes is not None:  # a volume deleted between the listing and its XML is left out
            found["volumes"] = [xml for v in volumes if (xml := _optional(call, v.XMLDesc, 0)) is not None]
        elif claims is not None:  # another host of the target may list it
            claims.release(uuid)
    return found


class PoolClaims:
    """The pools whose volumes a host of one target lists: a pool the hosts share (same UUID) is listed by the first
    host to reach it; one whose listing failed is released for the next."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listed: set[str] = set()

    def claim(self, uuid: str) -> bool:
        with self._lock:
            if uuid in self._listed:
                return False
            self._listed.add(uuid)
            return True

    def release(self, uuid: str) -> None:
        with self._lock:
            self._listed.discard(uuid)


def _domains(conn: Any, call: Any) -> list[dict[str, Any]]:
    libvirt = _libvirt()
    stats = libvirt.VIR_DOMAIN_STATS_STATE | libvirt.VIR_DOMAIN_STATS_BLOCK
    every = (libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE | libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_INACTIVE
             | getattr(libvirt, "VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT", 0))
    try:
        pairs = call(conn.getAllDomainStats, stats, every)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_SUPPORT:
            raise
        pairs = [(d, {"state.state": call(d.state)[0]}) for d in call(conn.listAllDomains, 0)]
    # CloudStack expunges VMs while a scan runs: a domain gone between the listing and its XML is left out (it is
    # no longer on the host), not a reason to lose the host's answer
    found = []
    for dom, stats in pairs:
        xml = _unless_gone(call, "VIR_ERR_NO_DOMAIN", dom.XMLDesc, 0)
        persistent = _unless_gone(call, "VIR_ERR_NO_DOMAIN", dom.isPersistent) if xml is not None else None
        if persistent is not None:
            found.append({"xml": xml, "stats": stats, "persistent": bool(persistent)})
    return found


def _unless_gone(call: Any, gone: str, fn: Any, *args: Any) -> Any:
    """``call(fn, *args)``, or None when libvirt says the object no longer exists (error ``gone``); any other
    error is raised."""
    libvirt = _libvirt()
    try:
        return call(fn, *args)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != getattr(libvirt, gone):
            raise
        return None


def _optional(call: Any, fn: Any, *args: Any) -> Any:
    try:
        return call(fn, *args)
    except _libvirt().libvirtError:
        return None


@contextmanager
def translate_libvirt_errors(uri: str, known_hosts: Path | None = None,
                             ssh_log: Path | None = None) -> Iterator[None]:
    """libvirt (and the ssh it runs) speak in many voices; say one line that points at the fix.

    ssh's own words (kept in ``ssh_log`` by the wrapper) are read first: libvirt reports an ssh
    that quit as a mere read error.
    """
    libvirt = _libvirt()
    try:
        yield
    except libvirt.libvirtError as exc:
        ssh_said = ssh_log.read_text(errors="replace") if ssh_log and ssh_log.exists() else ""
        text = " ".join(ssh_said.split()[-60:]) or exc.get_error_message() or str(exc)
        where = f"libvirt {redact_uri(uri)}"
        lowered = text.lower()
        if "has changed" in lowered and "host" in lowered:
            raise HostKeyRejected(f"{where}: host key mismatch: the host offered a key that {known_hosts} "
                                  "does not hold for it",
                                  hint="if the host was reinstalled, verify its key and update known_hosts") from exc
        if "host key verification failed" in lowered or "host key is known" in lowered:
            raise HostKeyRejected(f"{where}: host key not in {known_hosts}",
                                  hint="verify the host's key and add it to known_hosts (ssh-keyscan)") from exc
        if "permission denied" in lowered or "authentication" in lowered:
            raise AuthFailed(f"{where}: login refused ({one_line(text, 160)})",
                             hint="check ssh_user/ssh_key and that the user may use libvirt") from exc
        if "connection refused" in lowered:
            raise ConnectFailed(f"{where}: connection refused", hint="is sshd/libvirtd running there?") from exc
        if "timed out" in lowered or "timeout" in lowered:
            raise TimedOut(f"{where}: timed out", hint="is the host up and answering?") from exc
        if "could not resolve" in lowered or "name or service not known" in lowered:
            raise ConnectFailed(f"{where}: cannot resolve host name") from exc
        raise CollectorError(f"{where}: {one_line(text, 240)}") from exc


def libvirt_uri(target: KvmTarget, host: str, ssh_command: Path | None) -> str:
    """Fill the URI template and add what makes the ssh transport safe and non-interactive.

    The target's known_hosts governs the libvirt connection as it governs paramiko: the ``ssh``
    transport runs a wrapper that passes it to ssh with strict checking and BatchMode (the libssh
    transports are refused by ``KvmTarget``).
    """
    host_part = f"[{host}]" if ":" in host and not host.startswith("[") else host
    uri = target.uri.format(host=host_part, user=quote(target.ssh_user, safe=""), port=target.ssh_port)
    parts = urlsplit(uri)
    if parts.scheme.partition("+")[2] != "ssh":
        return uri
    netloc = parts.netloc
    if "{port}" not in target.uri and parts.port is None and target.ssh_port != 22:
        netloc = f"{netloc}:{target.ssh_port}"
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    if target.ssh_key is not None:
        params.setdefault("keyfile", str(target.ssh_key))
    if ssh_command is not None:
        params.setdefault("command", str(ssh_command))
    params.setdefault("no_tty", "1")
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(params), parts.fragment))


def write_ssh_wrapper(target: KvmTarget, folder: Path, index: int) -> tuple[Path, Path]:
    """An ``ssh`` for libvirt's ssh transport that checks host keys against the target's known_hosts.

    Returns the wrapper and the file its ssh writes its complaints to (one pair per host).
    """
    path = folder / f"ssh-{index}"
    log = folder / f"ssh-{index}.log"
    options = {
        "BatchMode": "yes", "StrictHostKeyChecking": "yes", "UserKnownHostsFile": str(target.known_hosts),
        "GlobalKnownHostsFile": "/dev/null", "ConnectTimeout": str(max(1, int(target.connect_timeout))),
        "ServerAliveInterval": "5", "ServerAliveCountMax": "3", "LogLevel": "ERROR",
    }
    args = " ".join(f"-o {shlex.quote(f'{k}={v}')}" for k, v in options.items())
    path.write_text(f"#!/bin/sh\nexec ssh {args} \"$@\" 2>>{shlex.quote(str(log))}\n")
    path.chmod(0o700)
    return path, log


def redact_uri(uri: str) -> str:
    """The URI without its query (key paths, wrapper paths): short and safe to show."""
    return uri.split("?", 1)[0].split("#", 1)[0]
