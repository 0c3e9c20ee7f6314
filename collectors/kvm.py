"""KVM hosts through libvirt (read-only connections) plus host facts over SSH.

Reads, per host and in parallel: capabilities and node info, every domain (active and
inactive) with one bulk stats call and one XML description each, libvirt networks, storage
pools and interfaces; then host facts over SSH (see ``ssh_facts``). Needs an SSH login that
may open libvirt's read-only socket (root, or a member of the libvirt group) and run the
read-only fact commands. Blind spots: CloudStack's own database (zones, pods, traffic labels
as configured there) is not read — agent.properties on each host tells what the agent was given.
"""

from __future__ import annotations

import shlex
import tempfile
import time
from contextlib import contextmanager
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import libvirt

from collectors.base import Collector, Outcome, run_bounded
from collectors.kvm_normalise import normalise_host
from collectors.ssh_facts import SshSession, fetch_facts
from inventory.errors import AuthFailed, CollectorError, ConnectFailed, HostKeyRejected, TimedOut
from inventory.model import Cluster, EndpointResult, Inventory, TargetConfig, TargetResult
from inventory.normalise import one_line

libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # errors come back as exceptions, not stderr

HostResult = tuple[Inventory, int, "str | None"]  # records, calls made, why SSH facts failed
_SSH_TRANSPORTS = {"ssh", "libssh", "libssh2"}
_STATS = (libvirt.VIR_DOMAIN_STATS_STATE | libvirt.VIR_DOMAIN_STATS_BLOCK)
_ALL_DOMAINS = (libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE
                | libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_INACTIVE
                | getattr(libvirt, "VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT", 0))


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
        object.__setattr__(self, "known_hosts", self.known_hosts.expanduser())
        if not self.hosts:
            raise ValueError("hosts must list at least one host")
        if len(set(self.hosts)) != len(self.hosts):
            raise ValueError("hosts lists a host twice")
        try:
            self.uri.format(host="h", user="u", port=22)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"uri template {self.uri!r} is malformed: only {{host}}, {{user}}, {{port}}") from exc
        if self.parallel < 1 or self.connect_timeout <= 0 or self.host_timeout <= 0:
            raise ValueError("parallel and the timeouts must be positive")

    @property
    def endpoint(self) -> str:
        return ",".join(self.hosts)


class KvmCollector(Collector):
    """KVM: libvirt on every host (read-only) + SSH facts; hosts in parallel, each with a deadline."""

    kind = "kvm"
    cloudstack_name = "KVM"
    Target = KvmTarget

    def __init__(self, target: TargetConfig, open_conn: Any = None) -> None:
        super().__init__(target)
        assert isinstance(target, KvmTarget)
        self.kvm: KvmTarget = target
        self.open_conn = open_conn or libvirt.openReadOnly

    def collect(self, deadline: float | None = None) -> TargetResult:
        started = time.monotonic()
        finished: dict[str, tuple[EndpointResult, Inventory | None]] = {}

        def report(outcome: Outcome[str, HostResult]) -> None:
            finished[outcome.item] = self._endpoint(outcome)
            self.report(finished[outcome.item][0])

        with tempfile.TemporaryDirectory(prefix="cs-inventory-ssh-") as tmp:
            folder = Path(tmp)
            run_bounded(list(self.kvm.hosts), lambda h: self.collect_host(h, folder),
                        workers=self.kvm.parallel, item_timeout=self.kvm.host_timeout,
                        deadline=deadline, on_done=report)
        endpoints = [finished[h][0] for h in self.kvm.hosts]
        inventories = [inv for h in self.kvm.hosts if (inv := finished[h][1]) is not None]
        failed = [e for e in endpoints if e.status != "ok"]
        status = "failed" if not inventories else "partial" if failed else "ok"
        return TargetResult(
            name=self.kvm.name, hypervisor=self.kind, endpoint=self.kvm.endpoint, status=status,
            error=one_line("; ".join(e.error or "" for e in failed), 2000) if failed else None,
            duration_s=time.monotonic() - started, api_calls=sum(e.api_calls for e in endpoints),
            inventory=merge_hosts(inventories, self.kvm), endpoints=endpoints)

    def _endpoint(self, outcome: Outcome[str, HostResult]) -> tuple[EndpointResult, Inventory | None]:
        host, name = outcome.item, self.kvm.name
        if outcome.timed_out:
            error = f"{host}: no answer within {self.kvm.host_timeout:g}s (host_timeout or scan deadline)"
            return EndpointResult(name, host, "failed", error, outcome.duration_s, 0), None
        if outcome.error is not None or outcome.result is None:
            error = f"{host}: {_describe(outcome.error)}"
            return EndpointResult(name, host, "failed", error, outcome.duration_s, 0), None
        inv, calls, facts_error = outcome.result
        if facts_error:
            return EndpointResult(name, host, "partial", f"{host}: {facts_error}", outcome.duration_s, calls), inv
        return EndpointResult(name, host, "ok", None, outcome.duration_s, calls), inv

    def collect_host(self, address: str, folder: Path) -> HostResult:
        ssh_command, ssh_log = write_ssh_wrapper(self.kvm, folder, self.kvm.hosts.index(address))
        raw, calls = fetch_libvirt(self.open_conn, libvirt_uri(self.kvm, address, ssh_command), address,
                                   self.kvm.known_hosts, ssh_log)
        facts_error = None
        if self.kvm.ssh_facts:
            try:
                session = SshSession(address, port=self.kvm.ssh_port, user=self.kvm.ssh_user,
                                     key_file=self.kvm.ssh_key, known_hosts=self.kvm.known_hosts,
                                     timeout=self.kvm.connect_timeout, command_timeout=self.kvm.command_timeout)
                try:
                    raw["facts"] = fetch_facts(session, self.kvm.agent_properties)
                finally:
                    calls += session.calls
                    session.close()
            except CollectorError as exc:
                facts_error = exc.one_line()
                raw["facts_error"] = facts_error
        cluster = self.kvm.cluster
        inv = normalise_host(raw, self.kvm.name, cluster)
        if cluster is None:
            agent_cluster = inv.hosts[0].agent_cluster
            cluster_key = f"agent-cluster-{agent_cluster}" if agent_cluster else self.kvm.name
            inv = _with_cluster(inv, cluster_key)
        return inv, calls, facts_error


def fetch_libvirt(open_conn: Any, uri: str, address: str, known_hosts: Path | None = None,
                  ssh_log: Path | None = None) -> tuple[dict[str, Any], int]:
    """Everything libvirt says about one host, as JSON-safe data; and the number of calls made."""
    calls = 0

    def call(fn: Any, *args: Any) -> Any:
        nonlocal calls
        calls += 1
        return fn(*args)

    with translate_libvirt_errors(uri, known_hosts, ssh_log):
        conn = call(open_conn, uri)
        try:
            raw: dict[str, Any] = {
                "address": address, "uri": redact_uri(uri),
                "capabilities": call(conn.getCapabilities), "node_info": call(conn.getInfo),
                "lib_version": call(conn.getLibVersion), "hv_version": call(conn.getVersion),
                "hv_type": call(conn.getType), "hostname": call(conn.getHostname),
                "sysinfo": _optional(call, conn.getSysinfo, 0),
            }
            raw["domains"] = _domains(conn, call)
            raw["networks"] = [{"xml": call(n.XMLDesc, 0), "active": bool(call(n.isActive))}
                               for n in call(conn.listAllNetworks, 0)]
            raw["pools"] = [{"xml": call(p.XMLDesc, 0), "active": bool(call(p.isActive)),
                             "autostart": bool(_optional(call, p.autostart)), "info": call(p.info)}
                            for p in call(conn.listAllStoragePools, 0)]
            raw["interfaces"] = [{"xml": call(i.XMLDesc, 0), "active": bool(call(i.isActive))}
                                 for i in _optional(call, conn.listAllInterfaces, 0) or []]
        finally:
            conn.close()
    return raw, calls


def _domains(conn: Any, call: Any) -> list[dict[str, Any]]:
    try:
        pairs = call(conn.getAllDomainStats, _STATS, _ALL_DOMAINS)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_SUPPORT:
            raise
        pairs = [(d, {"state.state": call(d.state)[0]}) for d in call(conn.listAllDomains, 0)]
    return [{"xml": call(dom.XMLDesc, 0), "stats": stats, "persistent": bool(call(dom.isPersistent))}
            for dom, stats in pairs]


def _optional(call: Any, fn: Any, *args: Any) -> Any:
    try:
        return call(fn, *args)
    except libvirt.libvirtError:
        return None


@contextmanager
def translate_libvirt_errors(uri: str, known_hosts: Path | None = None,
                             ssh_log: Path | None = None) -> Iterator[None]:
    """libvirt (and the ssh it runs) speak in many voices; say one line that points at the fix.

    ssh's own words (kept in ``ssh_log`` by the wrapper) are read first: libvirt reports an ssh
    that quit as a mere read error.
    """
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
    """Fill the URI template and add what makes SSH transports safe and non-interactive.

    The target's known_hosts governs the libvirt connection as it governs paramiko: the ``ssh``
    transport runs a wrapper that passes it to ssh with strict checking and BatchMode; the
    ``libssh``/``libssh2`` transports get ``known_hosts`` and ``known_hosts_verify=normal``.
    """
    host_part = f"[{host}]" if ":" in host and not host.startswith("[") else host
    uri = target.uri.format(host=host_part, user=quote(target.ssh_user, safe=""), port=target.ssh_port)
    parts = urlsplit(uri)
    transport = parts.scheme.partition("+")[2]
    if transport not in _SSH_TRANSPORTS:
        return uri
    netloc = parts.netloc
    if "{port}" not in target.uri and parts.port is None and target.ssh_port != 22:
        netloc = f"{netloc}:{target.ssh_port}"
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    if target.ssh_key is not None:
        params.setdefault("keyfile", str(target.ssh_key))
    if transport == "ssh":
        if ssh_command is not None:
            params.setdefault("command", str(ssh_command))
        params.setdefault("no_tty", "1")
    else:
        params.setdefault("known_hosts", str(target.known_hosts))
        params.setdefault("known_hosts_verify", "normal")
        params.setdefault("sshauth", "privkey,agent")
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


def merge_hosts(inventories: list[Inventory], target: KvmTarget) -> Inventory:
    """One target's inventory from its hosts': keys made unique, shared objects once, clusters counted."""
    merged = Inventory()
    host_keys: set[str] = set()
    vm_keys: set[str] = set()
    networks: set[str] = set()
    storage: set[str] = set()
    for inv in inventories:
        host = inv.hosts[0]
        if host.key in host_keys:
            inv = _rekey_host(inv, f"{host.key}@{host.address}")
        host_keys.add(inv.hosts[0].key)
        inv = _unique_vms(inv, vm_keys)
        merged.hosts += inv.hosts
        merged.vms += inv.vms
        merged.vm_disks += inv.vm_disks
        merged.vm_nics += inv.vm_nics
        merged.host_nics += inv.host_nics
        merged.host_storage += inv.host_storage
        merged.networks += [n for n in inv.networks if n.key not in networks]
        networks.update(n.key for n in inv.networks)
        merged.storage += [s for s in inv.storage if s.key not in storage]
        storage.update(s.key for s in inv.storage)
    counts: dict[str, int] = {}
    for host in merged.hosts:
        counts[host.cluster_key or ""] = counts.get(host.cluster_key or "", 0) + 1
    merged.clusters = [Cluster(key=key, target=target.name, name=key, hypervisor="kvm", host_count=count)
                       for key, count in counts.items() if key]
    return merged


def _with_cluster(inv: Inventory, cluster_key: str) -> Inventory:
    inv.hosts = [replace(h, cluster_key=cluster_key) for h in inv.hosts]
    inv.vms = [replace(v, cluster_key=cluster_key) for v in inv.vms]
    return inv


def _rekey_host(inv: Inventory, key: str) -> Inventory:
    inv.hosts = [replace(h, key=key) for h in inv.hosts]
    inv.vms = [replace(v, host_key=key) for v in inv.vms]
    inv.host_nics = [replace(n, host_key=key) for n in inv.host_nics]
    inv.host_storage = [replace(s, host_key=key) for s in inv.host_storage]
    return inv


def _unique_vms(inv: Inventory, seen: set[str]) -> Inventory:
    """A domain defined on two hosts (say, left behind by a migration) keeps both rows."""
    renamed = {v.key: f"{v.key}@{v.host_key}" for v in inv.vms if v.key in seen}
    seen.update(renamed.get(v.key, v.key) for v in inv.vms)
    if renamed:
        inv.vms = [replace(v, key=renamed.get(v.key, v.key)) for v in inv.vms]
        inv.vm_disks = [replace(d, vm_key=renamed.get(d.vm_key, d.vm_key)) for d in inv.vm_disks]
        inv.vm_nics = [replace(n, vm_key=renamed.get(n.vm_key, n.vm_key)) for n in inv.vm_nics]
    return inv


def _describe(exc: BaseException | None) -> str:
    if isinstance(exc, CollectorError):
        return exc.one_line()
    return f"internal error {type(exc).__name__}: {one_line(exc, 200)}"
