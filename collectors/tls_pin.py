"""A pinned certificate, checked on every TLS connection: an ``ssl.SSLContext`` whose ``wrap_socket`` compares the
peer certificate's SHA-256 with the pin right after the handshake, and closes the socket otherwise — before a byte
of a request (a login, a session cookie) is written. Whoever opens a connection with this context (pyvmomi's stub
and its connection pool, the fast path's own connections, the datastore browser on the stub) gets the check."""

from __future__ import annotations

import hashlib
import socket
import ssl
from typing import Any

from inventory.errors import TlsRejected


class PinnedContext(ssl.SSLContext):
    """No CA verification (the pin is the trust), and a socket whose certificate is not the pin is refused."""

    pin: str = ""
    where: str = ""
    renewed: str = "the certificate"
    hint: str | None = None

    def wrap_socket(self, sock: socket.socket, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        tls = super().wrap_socket(sock, *args, **kwargs)
        try:
            if not kwargs.get("do_handshake_on_connect", True):
                tls.do_handshake()
            check_pin(tls, self.pin, self.where, self.renewed, self.hint)
        except BaseException:
            tls.close()
            raise
        return tls


def pinned_context(fingerprint: str, where: str, renewed: str = "the certificate",
                   hint: str | None = None) -> PinnedContext:
    """A client context that trusts exactly the certificate whose SHA-256 is ``fingerprint`` (64 lower-case hex).
    ``where`` begins the error; ``hint``, when given, replaces "if ``renewed`` was renewed, …"."""
    context = PinnedContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the pin, checked in wrap_socket, is the check
    context.pin, context.where, context.renewed, context.hint = fingerprint, where, renewed, hint
    return context


def check_pin(tls: ssl.SSLSocket, fingerprint: str, where: str, renewed: str = "the certificate",
              hint: str | None = None) -> None:
    seen = hashlib.sha256(tls.getpeercert(binary_form=True) or b"").hexdigest()
    if seen != fingerprint:
        raise TlsRejected(f"{where}: certificate fingerprint {seen[:16]}… is not the pinned {fingerprint[:16]}…; "
                          "nothing was sent", hint=hint or f"if {renewed} was renewed, verify it and update fingerprint")
