"""The :class:`FlaskEmailConsumer`: notification e-mails on the standard library.

It reads the ``EMAIL_*`` settings that the (unmaintained) Flask-Email
package used, and sends with :mod:`smtplib` and :mod:`email`.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate
from typing import Any

from flask import Flask, current_app

from ._email import Email, EmailConsumer

#: The settings and their defaults (set on the app by ``from_app``).
EMAIL_DEFAULTS: dict[str, Any] = {
    "EMAIL_HOST": "localhost",
    "EMAIL_PORT": 25,
    "EMAIL_HOST_USER": None,
    "EMAIL_HOST_PASSWORD": None,
    "EMAIL_USE_TLS": False,
    "EMAIL_USE_SSL": False,
    "EMAIL_TIMEOUT": 30,
    "EMAIL_SSL_CAFILE": None,
    "DEFAULT_FROM_EMAIL": None,
}


class FlaskEmailConsumer(EmailConsumer):
    """Sends each event as an e-mail over SMTP with :mod:`smtplib`, no
    Flask-Mail needed. Settings: ``EMAIL_HOST``, ``EMAIL_PORT``,
    ``EMAIL_HOST_USER``, ``EMAIL_HOST_PASSWORD``, ``EMAIL_USE_TLS``
    (STARTTLS), ``EMAIL_USE_SSL`` (TLS from the start), ``EMAIL_TIMEOUT``
    (seconds), ``EMAIL_SSL_CAFILE`` (certificates to trust instead of the
    system's) and ``DEFAULT_FROM_EMAIL``. TLS always verifies the server's
    certificate.

    See :class:`~flask_notifications.consumers._email.EmailConsumer` for the
    recipients, the templates, digests and errors.
    """

    @classmethod
    def default_sender(cls, app: Flask) -> str | None:
        """``DEFAULT_FROM_EMAIL``.

        :param app: the Flask app.
        """
        return app.config.get("DEFAULT_FROM_EMAIL")  # type: ignore[no-any-return]

    @classmethod
    def setup_app(cls, app: Flask) -> None:
        """Set the defaults of the ``EMAIL_*`` settings on ``app``.

        :param app: the Flask app.
        """
        for key, value in EMAIL_DEFAULTS.items():
            app.config.setdefault(key, value)

    @contextmanager
    def connect(self) -> Iterator[Callable[[Email], None]]:
        """One SMTP connection for the messages of a task."""
        config = {**EMAIL_DEFAULTS, **current_app.config}
        host, port, timeout = (
            config["EMAIL_HOST"],
            int(config["EMAIL_PORT"]),
            config["EMAIL_TIMEOUT"],
        )
        context = None
        if config["EMAIL_USE_TLS"] or config["EMAIL_USE_SSL"]:
            context = ssl.create_default_context(cafile=config["EMAIL_SSL_CAFILE"])
        smtp: smtplib.SMTP
        if config["EMAIL_USE_SSL"]:
            smtp = smtplib.SMTP_SSL(host, port, timeout=timeout, context=context)
        else:
            smtp = smtplib.SMTP(host, port, timeout=timeout)
        try:
            if config["EMAIL_USE_TLS"]:
                smtp.starttls(context=context)
            if config["EMAIL_HOST_USER"] and config["EMAIL_HOST_PASSWORD"]:
                smtp.login(config["EMAIL_HOST_USER"], config["EMAIL_HOST_PASSWORD"])

            def send(email: Email) -> None:
                message = EmailMessage(policy=SMTP)
                message["Subject"] = email.subject
                message["From"] = self.sender
                message["To"] = email.to
                message["Message-ID"] = email.message_id
                message["Date"] = formatdate(email.date, localtime=True)
                for name, value in email.headers.items():
                    message[name] = value
                message.set_content(email.text, charset="utf-8")
                message.add_alternative(email.html, subtype="html", charset="utf-8")
                smtp.send_message(message)

            yield send
        finally:
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()
