"""The one family of errors cs-inventory raises on purpose.

Messages are one line and say what failed and where; ``hint`` says what to try.
"""

from __future__ import annotations

from inventory.normalise import storable


class InventoryError(Exception):
    exit_code = 2

    def __init__(self, message: str, *, target: str | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.target = target
        self.hint = hint

    def one_line(self) -> str:
        text = " ".join(self.message.split())
        return storable(f"{text} ({' '.join(self.hint.split())})" if self.hint else text)


class ConfigError(InventoryError):
    """The configuration file (or a command-line option) is wrong; exit code 2."""


class StoreError(InventoryError):
    """The database cannot be opened, is not ours, or has no such scan."""


class OutputError(InventoryError):
    """An export or report could not be written (a full disk, a file-size limit, an I/O error); exit code 2."""


class CollectorError(InventoryError):
    """A target (or one host of it) could not be read."""

    exit_code = 3


class ConnectFailed(CollectorError):
    """The endpoint could not be reached: refused, unresolvable, or timed out."""


class TimedOut(ConnectFailed):
    """The endpoint accepted the connection but did not answer in time."""


class AuthFailed(CollectorError):
    """Credentials were refused."""


class HostKeyRejected(CollectorError):
    """The SSH host key is unknown or does not match known_hosts."""


class TlsRejected(CollectorError):
    """The TLS certificate could not be verified."""


class NotPoolMaster(CollectorError):
    """A XenServer target was configured on a pool member."""


class SdkMissing(CollectorError):
    """The Python package a kind needs (libvirt-python, XenAPI, pyvmomi, paramiko) is not installed."""


class ReadOnlyRefused(CollectorError):
    """A call that is not a read was asked of an API; it was refused on this side, before a byte was sent."""


class ApiError(CollectorError):
    """The API answered, but not as documented (malformed or unexpected)."""


class ScanInterrupted(InventoryError):
    """SIGTERM or Ctrl-C arrived during a scan."""

    exit_code = 3
