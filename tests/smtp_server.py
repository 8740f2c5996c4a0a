"""A real SMTP server for the tests: aiosmtpd, optionally with TLS."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
import threading
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from flask_notifications.testing import free_port


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost: (cert, key) files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


class _Handler:
    def __init__(self, server: SMTPServer) -> None:
        self.server = server

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:  # noqa: E501, N802
        with self.server.lock:
            self.server.rcpt_seen.append(address)
        while address in self.server.stall:  # the client waits for the answer
            await asyncio.sleep(0.02)
        answer = self.server.answer_for(address)
        if answer is not None:
            return answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        message = message_from_bytes(envelope.content, policy=default)
        with self.server.lock:
            self.server.messages.append(message)  # type: ignore[arg-type]
            self.server.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
            self.server.tls_used.append(server.transport.get_extra_info("ssl_object") is not None)
        return "250 Message accepted"


class SMTPServer:
    """aiosmtpd on 127.0.0.1 and a free port, recording what it receives.

    :param tls: ``None``, ``"starttls"`` (required) or ``"ssl"`` (TLS from the start).
    :param directory: where to write the self-signed certificate.
    """

    def __init__(self, tls: str | None = None, directory: Path | None = None) -> None:
        self.port = free_port()
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.tls_used: list[bool] = []
        self.lock = threading.Lock()
        #: address -> SMTP answers to give to RCPT, consumed in order.
        self.refuse: dict[str, list[str]] = {}
        #: Addresses whose RCPT gets no answer while they are in this set.
        self.stall: set[str] = set()
        #: Every address a client gave to RCPT, in order.
        self.rcpt_seen: list[str] = []
        self.cafile: Path | None = None
        kwargs: dict[str, Any] = {}
        if tls is not None:
            assert directory is not None
            cert, key = make_certificate(directory)
            self.cafile = cert
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(cert, key)
            if tls == "starttls":
                kwargs.update(tls_context=context, require_starttls=True)
            else:
                kwargs.update(ssl_context=context, server_hostname="localhost")
        self.controller = Controller(
            _Handler(self), hostname="127.0.0.1", port=self.port, ready_timeout=5, **kwargs
        )

    def answer_for(self, address: str) -> str | None:
        with self.lock:
            answers = self.refuse.get(address)
            return answers.pop(0) if answers else None

    def start(self) -> SMTPServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def to(self, address: str) -> list[EmailMessage]:
        """The messages whose ``To`` is ``address``."""
        with self.lock:
            return [m for m in self.messages if m["To"] == address]
