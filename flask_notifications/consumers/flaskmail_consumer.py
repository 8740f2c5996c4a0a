"""The :class:`FlaskMailConsumer`: notification e-mails through Flask-Mail."""

from __future__ import annotations

import smtplib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Self

from flask import Flask, current_app, has_app_context

from ..errors import ConfigurationError
from ._email import Email, EmailConsumer


def _flask_mail() -> Any:
    try:
        import flask_mail
    except ImportError as exc:  # pragma: no cover - the "mail" extra
        raise ConfigurationError(
            "FlaskMailConsumer needs Flask-Mail: pip install 'flask-notifications[mail]'"
        ) from exc
    return flask_mail


def _connection(flask_mail: Any, mail: Any) -> Any:
    """Flask-Mail's connection, opened with ``MAIL_TIMEOUT`` (default 30 s).

    Flask-Mail 0.10 opens its socket without a timeout, so a server that
    accepts and never answers would hold the worker (and every task queued
    behind it) for good. This repeats Flask-Mail's ``configure_host`` with a
    timeout; nothing else changes.
    """
    timeout = current_app.config.get("MAIL_TIMEOUT", 30)

    class _Connection(flask_mail.Connection):  # type: ignore[misc]
        def configure_host(self) -> smtplib.SMTP:
            cls = smtplib.SMTP_SSL if mail.use_ssl else smtplib.SMTP
            host = cls(mail.server, mail.port, timeout=timeout)
            host.set_debuglevel(int(mail.debug))
            if mail.use_tls:
                host.starttls()
            if mail.username and mail.password:
                host.login(mail.username, mail.password)
            return host

    return _Connection(mail)


class FlaskMailConsumer(EmailConsumer):
    """Sends each event as an e-mail with the app's
    `Flask-Mail <https://flask-mail.readthedocs.io/>`_ (``MAIL_SERVER``,
    ``MAIL_PORT``, ``MAIL_USE_TLS``, ``MAIL_USE_SSL``, ``MAIL_USERNAME``,
    ``MAIL_PASSWORD``, ``MAIL_DEFAULT_SENDER``...), plus ``MAIL_TIMEOUT``
    (seconds, default 30), which Flask-Mail lacks. Flask-Mail's
    ``MAIL_SUPPRESS_SEND`` and ``email_dispatched`` signal work as usual.

    See :class:`~flask_notifications.consumers._email.EmailConsumer` for the
    recipients, the templates, digests and errors.
    """

    # The Flask-Mail state of the app given to from_app().
    _mail: Any = None

    @classmethod
    def default_sender(cls, app: Flask) -> str | None:
        """``MAIL_DEFAULT_SENDER`` (a ``(name, address)`` pair is accepted).

        :param app: the Flask app.
        """
        sender = app.config.get("MAIL_DEFAULT_SENDER")
        if isinstance(sender, tuple | list):
            from email.utils import formataddr

            sender = formataddr((sender[0], sender[1]))
        return sender

    @classmethod
    def setup_app(cls, app: Flask) -> None:
        """Create the app's Flask-Mail ``Mail`` extension when it has none.

        :param app: the Flask app.
        """
        if "mail" not in app.extensions:
            _flask_mail().Mail(app)

    @classmethod
    def from_app(
        cls,
        app: Flask,
        sender: str | None = None,
        recipients: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> Self:
        """A consumer configured from ``app``, creating its Flask-Mail ``Mail``
        extension when it has none (then available as :attr:`mail`).

        :param app: the Flask app (its ``MAIL_*`` settings).
        :param sender: the ``From`` address; defaults to ``MAIL_DEFAULT_SENDER``.
        :param recipients: fixed addresses, or ``None`` for the event's recipients.
        :param kwargs: ``digest``, ``subject_prefix``, ``celery_task_name``.
        :raises ConfigurationError: if no sender is given or configured.
        """
        consumer = super().from_app(app, sender, recipients, **kwargs)
        consumer._mail = app.extensions["mail"]
        return consumer

    @property
    def mail(self) -> Any:
        """The Flask-Mail state this consumer sends with: the current app's
        ``app.extensions["mail"]``, else the one of the app given to
        :meth:`from_app` (``None`` without either). It has Flask-Mail's
        ``send``, ``connect`` and ``record_messages``, as 0.1's ``mail`` had."""
        if has_app_context():
            mail = current_app.extensions.get("mail")
            if mail is not None:
                return mail
        return self._mail

    @contextmanager
    def connect(self) -> Iterator[Callable[[Email], None]]:
        """One Flask-Mail connection for the messages of a task."""
        flask_mail = _flask_mail()
        mail = current_app.extensions.get("mail")
        if mail is None:
            mail = flask_mail.Mail(current_app._get_current_object())

        with _connection(flask_mail, mail) as connection:

            def send(email: Email) -> None:
                message = flask_mail.Message(
                    subject=email.subject,
                    recipients=[email.to],
                    body=email.text,
                    html=email.html,
                    sender=self.sender,
                    charset="utf-8",
                    extra_headers=email.headers,
                    date=email.date,
                )
                message.msgId = email.message_id
                connection.send(message)

            yield send
