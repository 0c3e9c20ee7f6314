"""The collector contract, and the one place that runs it.

A kind declares its ``Target`` settings and two functions: ``fetch(session)``, which only talks to
the hypervisor's API and returns JSON-safe data, and ``normalise(answers, target)``, which is pure
and turns the answers of every endpoint of a target into records. ``Collector`` owns the rest,
once for every kind: the endpoints read in parallel (KVM hosts) each within its own time and the
scan's deadline, the calls counted, progress per endpoint, SDK and socket errors translated into
the ``CollectorError`` family, a missing SDK reported as a one-line reason, and the
``TargetResult``. What ``fetch`` returned can be recorded (``TargetRead``) and normalised again
later, offline: that is how ``scan --record`` and ``import recorded`` work.
"""

from __future__ import annotations

import dataclasses
import importlib
import socket
import ssl
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from types import ModuleType
from typing import Any, ClassVar, Generic, TypeVar

from inventory.bounds import bound, unique
from inventory.errors import CollectorError, ConnectFailed, SdkMissing, TimedOut, TlsRejected
from inventory.lifetime import bulk
from inventory.model import (
    EndpointResult, Inventory, JsonDict, TargetConfig, TargetRead, TargetResult, secret_values,
)
from inventory.normalise import one_line, redact
from inventory.parallel import Outcome, run_bounded

_REGISTRY: dict[str, type[Collector[Any, Any]]] = {}

TargetT = TypeVar("TargetT", bound=TargetConfig)
SessionT = TypeVar("SessionT", bound="Session")


class Calls:
    """Remote calls made to one endpoint; a field, read whether the read succeeded or not. Calls made on several
    threads at once (XenServer's look-ahead beside its session) are all counted."""

    __slots__ = ("count", "_lock")

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def add(self, number: int = 1) -> None:
        with self._lock:
            self.count += number


class Session:
    """What ``fetch`` talks through: one endpoint's client(s), and what the base class reports.

    ``endpoint`` is what was actually read (a XenServer pool member's master, say);
    ``redirected`` says why it differs from the configured one; ``degraded`` lists what could not
    be read while the rest was (SSH facts of a KVM host): the endpoint is then ``partial``.
    """

    def __init__(self, endpoint: str, calls: Calls) -> None:
        self.endpoint = endpoint
        self.calls = calls
        self.redirected: str | None = None
        self.degraded: list[str] = []


Opener = Callable[[Any, str, Calls], AbstractContextManager[Any]]


@dataclass(frozen=True)
class Sdk:
    """A Python package a kind needs to read its targets, and where an operator gets it."""

    module: str
    pip: str
    extra: str
    debian: str

    def load(self, kind: str) -> ModuleType:
        try:
            return importlib.import_module(self.module)
        except ImportError as exc:
            raise SdkMissing(f"{kind}: the Python package {self.pip} is not installed ({exc.name or self.module})",
                             hint=f"pip install 'cs-inventory[{self.extra}]' (or {self.pip}), "
                                  f"or on Debian/Ubuntu: apt install {self.debian}") from exc


class Collector(Generic[TargetT, SessionT]):
    """Base of every kind; a subclass with a ``kind`` registers itself.

    A subclass sets ``kind``, ``cloudstack_name``, ``Target`` and implements ``connect`` (the
    default session opener, the only place its SDK is touched), ``fetch`` and ``normalise``;
    optionally ``endpoints`` (default: the target's one endpoint), ``endpoint_timeout``,
    ``where`` and ``translate`` (its SDK's own exceptions).
    """

    kind: ClassVar[str] = ""
    cloudstack_name: ClassVar[str] = ""
    Target: ClassVar[type[TargetConfig]] = TargetConfig
    has_hosts: ClassVar[bool] = False  # endpoints are hosts: read in parallel, errors name the host
    is_hypervisor: ClassVar[bool] = True  # False: not a hypervisor (CloudStack's own API); ANY_KIND rules skip it
    timeout_hint: ClassVar[str] = "is it up and answering? raise the timeout"
    limit_hint: ClassVar[str | None] = None  # when the endpoint's whole limit ran out; else timeout_hint
    importers: ClassVar[dict[str, Callable[[Any, str], TargetRead]]] = {}  # `import FORMAT PATH`

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind:
            _REGISTRY[cls.kind] = cls

    def __init__(self, target: TargetT, *, opener: Opener | None = None) -> None:
        if not isinstance(target, self.Target):
            raise TypeError(f"{type(self).__name__} reads {self.Target.__name__}, not {type(target).__name__}")
        self.target: TargetT = target
        self.opener: Opener = opener or type(self).connect
        self.on_endpoint: Callable[[EndpointResult], None] | None = None  # progress, per endpoint

    # -- what a kind provides --------------------------------------------------------------------
    def connect(self, endpoint: str, calls: Calls) -> AbstractContextManager[SessionT]:
        """Open a session to one endpoint (log in); closing it logs out. Injectable as ``opener``."""
        raise NotImplementedError

    def fetch(self, session: SessionT) -> JsonDict:
        """Everything this kind reads from one endpoint, as JSON-safe data. Talks to the API only."""
        raise NotImplementedError

    @staticmethod
    def normalise(answers: dict[str, JsonDict], target: Any) -> Inventory:
        """Pure: the answers of a target's endpoints (by endpoint, as configured) → its records."""
        raise NotImplementedError

    def endpoints(self) -> list[str]:
        return [self.target.endpoint]

    def endpoint_timeout(self) -> float | None:
        """Seconds one endpoint may take, connect to last answer; None: only the scan's deadline."""
        return None

    def parallel(self) -> int:
        return 1

    def where(self, endpoint: str) -> str:
        """How error messages name the endpoint."""
        return endpoint

    def translate(self, exc: BaseException, where: str) -> CollectorError | None:
        """This kind's SDK exceptions as ``CollectorError``s; None leaves it to the shared translation."""
        return None

    # -- what the base class does, once for every kind -------------------------------------------
    def collect(self, deadline: float | None = None) -> TargetResult:
        """Read the target; ``deadline`` is a ``time.monotonic()`` instant to give up at."""
        return self.result(self.read(deadline))

    def read(self, deadline: float | None = None) -> TargetRead:
        """Fetch from every endpoint (in parallel where the kind has hosts), each within its time."""
        started = time.monotonic()
        endpoints = self.endpoints()
        rows: dict[int, list[EndpointResult]] = {}
        answers: dict[str, JsonDict] = {}
        calls = {index: Calls() for index in range(len(endpoints))}
        lock = threading.Lock()

        def work(index: int) -> tuple[JsonDict, Session]:
            return self._fetch_one(endpoints[index], calls[index])

        def done(outcome: Outcome[int, tuple[JsonDict, Session]]) -> None:
            endpoint_rows = self._endpoint_rows(endpoints[outcome.item], outcome, calls[outcome.item].count)
            with lock:
                rows[outcome.item] = endpoint_rows
                if outcome.result is not None and not outcome.timed_out:
                    answers[endpoints[outcome.item]] = outcome.result[0]
            for row in endpoint_rows:
                self.report(row)

        run_bounded(list(range(len(endpoints))), work, workers=self.parallel(), item_timeout=self.endpoint_timeout(),
                    deadline=deadline, on_done=done)
        return TargetRead(kind=self.kind, target=self.target, answers={e: answers[e] for e in endpoints if e in answers},
                          endpoints=[row for index in range(len(endpoints)) for row in rows[index]],
                          duration_s=time.monotonic() - started)

    def result(self, read: TargetRead) -> TargetResult:
        """Normalise what was read and decide the target's status: the same live and from a recording."""
        return result_of(type(self), read)

    def report(self, endpoint: EndpointResult) -> None:
        """Tell whoever watches (progress bars, logs) that one endpoint is done."""
        if self.on_endpoint is not None:
            self.on_endpoint(endpoint)

    def _fetch_one(self, endpoint: str, calls: Calls) -> tuple[JsonDict, Session]:
        where = self.where(endpoint)
        try:
            with self.opener(self, endpoint, calls) as session:
                return self.fetch(session), session
        except CollectorError:
            raise
        except BaseException as exc:
            error = self.translate(exc, where) or translate_common(exc, where, self.timeout_hint)
            if error is None:
                raise
            raise error from exc

    def _endpoint_rows(self, endpoint: str, outcome: Outcome[int, tuple[JsonDict, Session]],
                       calls: int) -> list[EndpointResult]:
        """The endpoint's rows; whatever a server said in them (an error, a redirect) with the target's secrets
        blanked (``redact``): the one place every kind's words pass before they are stored, logged or recorded."""
        secrets = secret_values(self.target)
        return [dataclasses.replace(row, error=redact(row.error, secrets)) if row.error else row
                for row in self._rows(endpoint, outcome, calls)]

    def _rows(self, endpoint: str, outcome: Outcome[int, tuple[JsonDict, Session]],
              calls: int) -> list[EndpointResult]:
        name = self.target.name
        if outcome.timed_out:
            limit = self.endpoint_timeout()
            if limit is not None and outcome.duration_s >= limit * 0.98:  # its own limit ran out
                said, hint = f"no answer within {limit:g}s", self.limit_hint or self.timeout_hint
            else:  # the scan's --deadline came first
                said, hint = f"stopped at the scan's deadline, after {outcome.duration_s:.1f}s", "raise --deadline"
            error = self._label(endpoint, TimedOut(said if self.has_hosts else f"{self.where(endpoint)}: {said}",
                                                   hint=hint).one_line())  # a host is named once, by _label
            return [EndpointResult(name, endpoint, "failed", error, outcome.duration_s, calls)]
        if outcome.result is None:
            return [EndpointResult(name, endpoint, "failed", self._label(endpoint, describe(outcome.error)),
                                   outcome.duration_s, calls)]
        session = outcome.result[1]
        rows = []
        if session.endpoint != endpoint:
            rows.append(EndpointResult(name, endpoint, "redirected", session.redirected, 0.0, 0))
        degraded = "; ".join(session.degraded) or None
        rows.append(EndpointResult(name, session.endpoint, "partial" if degraded else "ok",
                                   self._label(endpoint, degraded) if degraded else None, outcome.duration_s, calls))
        return rows

    def _label(self, endpoint: str, error: str) -> str:
        return f"{endpoint}: {error}" if self.has_hosts else error


def result_of(cls: type[Collector[Any, Any]], read: TargetRead) -> TargetResult:
    """A target's result from what was read: records, endpoint rows, status and the one-line error."""
    errors = []
    with bulk():  # the records live until the scan is stored
        try:
            inventory = cls.normalise(read.answers, read.target) if read.answers else Inventory()
        except Exception as exc:  # an answer this normaliser cannot make sense of fails the target, not the scan
            inventory = Inventory()
            errors.append(f"answer not understood ({describe(exc)}); nothing of this target was kept")
            read = dataclasses.replace(read, answers={})
        bound(inventory)
        unique(inventory)
    if inventory.left_out:  # an endpoint of which nothing was kept failed, as one that did not answer did
        read = _without(read, inventory.left_out, cls.has_hosts)
        rows = {e.endpoint for e in read.endpoints}  # a recording made by hand may lack an endpoint's row
        errors += [f"{endpoint}: {why}" for endpoint, why in inventory.left_out.items() if endpoint not in rows]
    errors[:0] = [e.error or e.status for e in read.endpoints if e.status in ("failed", "partial")]
    errors += inventory.unmatched
    if inventory.problems:
        errors.append(f"{len(inventory.problems)} malformed values: " + "; ".join(inventory.problems[:5]))
    status = "failed" if not read.answers else "partial" if errors else "ok"
    secrets = secret_values(read.target)  # none from a recording, which holds none
    error = redact(one_line(redact("; ".join(errors), secrets), 2000), secrets) if errors else None
    return TargetResult(name=read.target.name, hypervisor=read.kind, endpoint=read.endpoint or read.target.endpoint,
                        status=status, error=error,
                        duration_s=read.duration_s, api_calls=sum(e.api_calls for e in read.endpoints),
                        inventory=inventory, endpoints=list(read.endpoints), detail=inventory.detail)


def _without(read: TargetRead, left_out: dict[str, str], labelled: bool) -> TargetRead:
    """``read`` with these endpoints failed, for these reasons, and their answers no longer counted as read."""
    endpoints = [dataclasses.replace(e, status="failed", error=f"{e.endpoint}: {left_out[e.endpoint]}" if labelled
                                     else left_out[e.endpoint]) if e.endpoint in left_out else e
                 for e in read.endpoints]
    answers = {endpoint: answer for endpoint, answer in read.answers.items() if endpoint not in left_out}
    return dataclasses.replace(read, endpoints=endpoints, answers=answers)


class ConnectTimedOut(OSError):
    """Connecting — TCP and the TLS handshake — took longer than the target's ``connect_timeout`` (a firewall that
    drops, a host that is down, a port that accepts and never answers): not an answer that took too long."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"could not connect within {seconds:g}s")
        self.seconds = seconds


def translate_common(exc: BaseException, where: str, timeout_hint: str) -> CollectorError | None:
    """Socket, DNS, TLS and timeout errors, the same words for every kind."""
    if isinstance(exc, ConnectTimedOut):
        return TimedOut(f"{where}: could not connect within {exc.seconds:g}s (no TCP connection, or no TLS handshake)",
                        hint="is the address right, the port open to this machine, and a TLS service on it? if so, "
                             "raise connect_timeout")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return TlsRejected(f"{where}: certificate not trusted ({exc.verify_message})",
                           hint="set ca_file to the CA that signed it, or pin its SHA-256 fingerprint")
    if isinstance(exc, ssl.SSLError):
        return TlsRejected(f"{where}: TLS failed ({one_line(exc, 120)})")
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return TimedOut(f"{where}: timed out", hint=timeout_hint)
    if isinstance(exc, ConnectionRefusedError):
        return ConnectFailed(f"{where}: connection refused", hint="is the service running on that address and port?")
    if isinstance(exc, socket.gaierror):
        return ConnectFailed(f"{where}: cannot resolve host name")
    if isinstance(exc, OSError):
        return ConnectFailed(f"{where}: {exc.strerror or one_line(exc, 160)}")
    return None


def describe(exc: BaseException | None) -> str:
    if isinstance(exc, CollectorError):
        return exc.one_line()
    return f"internal error {type(exc).__name__}: {one_line(exc, 200)}"


def registry() -> dict[str, type[Collector[Any, Any]]]:
    return dict(_REGISTRY)
