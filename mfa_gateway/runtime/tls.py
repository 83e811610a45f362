"""The injector's serving certificate, replaced while it serves: new TLS handshakes get the newest pair loaded.

The listening socket keeps one ``ssl.SSLContext`` for its whole life (``ServingCertificate.context``); each handshake
is handed, from its ClientHello (the SNI callback, which OpenSSL calls with or without a server name), to the context
of the newest pair that loaded. A pair is loaded into a fresh context, so one that fails (a half-written file, a key
that does not match its certificate) leaves the served one as it was. Connections already open keep theirs.

Two sources feed it: :class:`CertificateFiles` (``tls.cert_file``/``key_file``, e.g. a mounted cert-manager Secret),
which polls the files' ``stat`` every ``interval`` seconds and loads a changed pair; and the generate mode's keeper
(``runtime.injector``), which hands it PEM bytes. Either way the bytes are read once and loaded from memory (a
``memfd``; the ``ssl`` module loads keys only from a path): what was checked is what is served, and no key is written
to disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from cryptography import x509

from mfa_gateway import logs

log = logging.getLogger("mfa_gateway.injector")

CERT_POLL_INTERVAL = 10.0
"""Seconds between two looks at ``tls.cert_file``/``key_file`` (a mounted Secret's update takes about a minute)."""


class ServingCertificate:
    """The certificate the injector serves; ``loaded`` once a pair has (readiness)."""

    def __init__(self) -> None:
        self.context = _server_context()
        self.context.sni_callback = self._hand_over
        self._current: ssl.SSLContext | None = None
        self.not_after: datetime | None = None

    @property
    def loaded(self) -> bool:
        return self._current is not None

    def load_pem(self, cert_pem: bytes, key_pem: bytes) -> datetime:
        """Serve this pair to new handshakes; its expiry. ``ssl.SSLError``/``ValueError`` (what is served stays) if
        it does not load: not PEM, a key that does not match, an encrypted key."""
        logs.register_secret(key_pem.decode("ascii", "replace"))  # never in a log line, whatever logs it
        leaf = x509.load_pem_x509_certificate(cert_pem)  # ValueError if the first certificate does not parse
        context = _server_context()
        with _in_memory(cert_pem) as cert_path, _in_memory(key_pem) as key_path:
            context.load_cert_chain(cert_path, key_path, password=_no_password)
        self._current, self.not_after = context, leaf.not_valid_after_utc
        return leaf.not_valid_after_utc

    def _hand_over(self, connection: ssl.SSLObject, server_name: str | None, context: ssl.SSLContext) -> None:
        current = self._current
        if current is not None:
            connection.context = current  # without a pair loaded the handshake fails: not ready


def _server_context() -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _no_password() -> bytes:
    """An encrypted key is refused rather than asked a password for (on a terminal, OpenSSL would prompt)."""
    raise ValueError("the key is encrypted; give an unencrypted PEM key")


@contextlib.contextmanager
def _in_memory(data: bytes) -> Iterator[str]:
    """A path to ``data`` for ``load_cert_chain``: an anonymous in-memory file, or where there is none (not Linux)
    a file only this user can read, in a folder removed afterwards."""
    if not hasattr(os, "memfd_create"):
        with tempfile.TemporaryDirectory(prefix="mfa-gateway-tls-") as folder:
            path = Path(folder) / "pem"
            path.touch(mode=0o600)
            path.write_bytes(data)
            yield str(path)
        return
    fd = os.memfd_create("mfa-gateway-tls", os.MFD_CLOEXEC)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


class CertificateFiles:
    """``tls.cert_file`` and ``tls.key_file``, loaded into ``certificate`` at start and again whenever they change."""

    def __init__(self, cert_file: Path, key_file: Path, certificate: ServingCertificate, interval: float) -> None:
        self.cert_file, self.key_file = cert_file, key_file
        self.certificate = certificate
        self.interval = interval
        self._tried: object = None

    def check(self) -> bool:
        """Load the pair if either file changed since the last attempt (a failed one included: it is not retried,
        nor warned about again, until a file changes); True if a new certificate is now served."""
        file_state = (_stat(self.cert_file), _stat(self.key_file))
        if file_state == self._tried:
            return False
        self._tried = file_state  # taken before reading: a write that lands while reading changes it again
        try:
            not_after = self.certificate.load_pem(self.cert_file.read_bytes(), self.key_file.read_bytes())
        except (OSError, ssl.SSLError, ValueError) as exc:
            kept = "keeping the previous certificate" if self.certificate.loaded else "not ready until they load"
            log.warning(
                "tls.cert_file %s and tls.key_file %s do not load (%s); %s",
                self.cert_file,
                self.key_file,
                _reason(exc),
                kept,
            )
            return False
        log.info("serving the certificate of %s, valid until %s", self.cert_file, not_after.isoformat())
        return True

    async def run(self, stop: asyncio.Event) -> None:
        """Look at the files every ``interval`` seconds until ``stop`` is set."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)
            if not stop.is_set():
                self.check()


def _stat(path: Path) -> tuple[int, int, int, int] | str:
    """What changes when a file is rewritten or its mounted Secret's symlink moves; the error when it is missing."""
    try:
        found = path.stat()
    except OSError as exc:
        return exc.strerror or "unreadable"
    return (found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns)


def _reason(exc: BaseException) -> str:
    """Why a pair did not load, in one phrase (never the files' contents: ssl and OS errors carry none)."""
    if isinstance(exc, OSError) and not isinstance(exc, ssl.SSLError):
        return f"{exc.strerror or 'cannot read'}: {exc.filename}" if exc.filename else (exc.strerror or str(exc))
    return str(exc) or type(exc).__name__
