"""What the two e-mail consumers share: recipients, messages, once-only delivery.

:class:`EmailConsumer` builds one message per recipient and event from Jinja
templates; its subclasses only open an SMTP connection and send
(:class:`~flask_notifications.consumers.flaskmail_consumer.FlaskMailConsumer`
through Flask-Mail,
:class:`~flask_notifications.consumers.flaskemail_consumer.FlaskEmailConsumer`
through :mod:`smtplib`).
"""

from __future__ import annotations

import logging
import smtplib
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import timedelta
from email.utils import parseaddr
from functools import lru_cache
from typing import Any, Self

from flask import Flask, current_app

from .._state import get_state
from ..delivery import log as delivery_log
from ..delivery import records
from ..errors import ConfigurationError, MailRejected, MailServerUnavailable
from ..event import Event, category_of
from ..i18n import by_locale, in_locale, localize
from ..inbox.digests import DigestSchedule
from ..inbox.preferences import is_critical
from ._digest import DigestMixin
from ._mail import (
    Email,
    SMTPErrors,
    address_ok,
    digest_of,
    recipient_free,
    render,
    smtp_reason,
    temporary,
)
from ._recipients import allowed_recipients, preferences_on
from .consumer import Consumer

logger = logging.getLogger("flask_notifications")

#: Event field whose value groups messages into one thread in mail clients.
THREAD_FIELD = "thread"


class EmailConsumer(DigestMixin, Consumer):
    """Base of the e-mail consumers: one message per recipient and event.

    Recipients are the fixed ``recipients`` addresses when given, else the
    event's recipients (user ids) mapped through
    :meth:`Notifications.email_resolver
    <flask_notifications.Notifications.email_resolver>`, minus those who
    opted out of the event type on the ``email`` channel. A broadcast event
    (no recipients) sends nothing unless fixed recipients are given.

    :param sender: the ``From`` address.
    :param recipients: fixed addresses that get every event, or ``None``.
    :param digest: a window (seconds or :class:`~datetime.timedelta`): collect
        each address's events for that long, then send one mail listing
        them. ``None`` (the default) sends each event at once.
    :param subject_prefix: put before every subject, e.g. ``"[Microblog] "``.
    :param celery_task_name: the task name; defaults to the class's dotted path.
    """

    #: The preferences channel this consumer honours.
    channel = "email"
    #: A task of its own: an SMTP server can be slow or down for a while, and
    #: must delay no other consumer.
    own_task = True
    #: Transient: the server unreachable, a timeout, a 4xx answer.
    retry_for = (*Consumer.retry_for, MailServerUnavailable)
    #: Templates, under ``flask_notifications/mail/`` in the template path.
    template_text = "flask_notifications/mail/notification.txt"
    template_html = "flask_notifications/mail/notification.html"
    digest_template_text = "flask_notifications/mail/digest.txt"
    digest_template_html = "flask_notifications/mail/digest.html"

    def __init__(
        self,
        sender: str,
        recipients: Sequence[str] | None = None,
        *,
        digest: float | timedelta | None = None,
        subject_prefix: str = "",
        celery_task_name: str | None = None,
    ) -> None:
        if not address_ok(sender):
            raise ConfigurationError(
                f"{type(self).__name__} needs a sender address (sender=... or the "
                f"app's default sender setting), got {sender!r}"
            )
        if recipients is not None:
            if isinstance(recipients, str):
                raise ConfigurationError("recipients must be a list of addresses, not a string")
            bad = [r for r in recipients if not address_ok(r)]
            if bad:
                raise ConfigurationError(f"recipients: not e-mail addresses: {bad!r}")
        if isinstance(digest, timedelta):
            digest = digest.total_seconds()
        if digest is not None and not digest > 0:
            raise ConfigurationError(f"digest must be a positive window, not {digest!r}")
        self.sender = sender
        self.recipients = list(recipients) if recipients is not None else None
        self.digest: float | None = digest
        self.subject_prefix = subject_prefix
        self.celery_task_name = celery_task_name

    @classmethod
    def default_sender(cls, app: Flask) -> str | None:
        """The sender configured in ``app``, used when ``from_app`` gets none.

        :param app: the Flask app.
        """
        raise NotImplementedError

    @classmethod
    def setup_app(cls, app: Flask) -> None:
        """Prepare ``app`` for this transport (``from_app`` calls it).

        :param app: the Flask app.
        """

    @classmethod
    def from_app(
        cls,
        app: Flask,
        sender: str | None = None,
        recipients: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> Self:
        """A consumer configured from ``app``.

        :param app: the Flask app (its mail settings).
        :param sender: the ``From`` address; defaults to the app's default sender.
        :param recipients: fixed addresses, or ``None`` for the event's recipients.
        :param kwargs: ``digest``, ``subject_prefix``, ``celery_task_name``.
        :raises ConfigurationError: if no sender is given or configured.
        """
        cls.setup_app(app)
        return cls(sender or cls.default_sender(app) or "", recipients, **kwargs)

    # -- the transport (subclasses) ---------------------------------------------

    def connect(self) -> AbstractContextManager[Callable[[Email], None]]:
        """A context manager that opens one SMTP connection and gives a
        function sending one :class:`Email` on it."""
        raise NotImplementedError

    # -- consuming -------------------------------------------------------------

    def addresses(self, event: Event) -> list[tuple[str | None, str]]:
        """``(user id or None, address)`` pairs the event goes to.

        :param event: the event.
        """
        if self.recipients is not None:
            return [(None, address) for address in self.recipients]
        users = allowed_recipients(event, self.channel)
        if not users:
            return []
        if not _has_extension():
            raise ConfigurationError(
                f"{type(self).__name__} got an event for users but has no fixed recipients: "
                "give it recipients=[...], or register Notifications on the app with an "
                "@notifications.email_resolver"
            )
        extension = get_state().extension
        pairs = []
        for user in users:
            address = extension.resolve_email(user)
            if address is None:
                continue
            if not address_ok(address):
                logger.warning("email_resolver gave %r for user %s; skipped", address, user)
                continue
            pairs.append((user, address))
        return pairs

    def consume(self, event: Event, *args: Any, **kwargs: Any) -> int:
        """Send the event (or add it to the digests) for every recipient.

        :param event: the event.
        :returns: how many messages were sent (or events queued for a digest).
        """
        pairs = self.addresses(event)
        if not pairs:
            return 0
        held = self._held(event, pairs)
        if held:
            for user, address, schedule in held:
                self.hold(event, user, address, schedule)
            # Waiting for the digest: "delivered" once it is sent.
            delivery_log.record_many(
                event["event_id"],
                [(user or address, self.channel, "queued", None) for user, address, *_ in held],
            )
            kept = {(user, address) for user, address, *_ in held}
            pairs = [pair for pair in pairs if pair not in kept]
            if not pairs:
                return len(held)
        mails = self.build_all(event, pairs)  # grouped by locale: not in the order of pairs
        users = {digest_of(address): user or address for user, address in pairs}
        return self.deliver(mails, event["event_id"], users=users)

    def _held(
        self, event: Event, pairs: list[tuple[str | None, str]]
    ) -> list[tuple[str | None, str, DigestSchedule | None]]:
        """``(user, address, schedule)`` of the recipients whose mail waits
        for a digest: the user's own digest (:meth:`Preferences.set_digest
        <flask_notifications.inbox.Preferences.set_digest>`), else the
        consumer's ``digest=`` window. An event of a critical category waits
        for none."""
        if is_critical(category_of(event)):
            return []
        users = [user for user, _ in pairs if user is not None]
        schedules = {}
        if users and _has_extension() and preferences_on(current_app):
            schedules = get_state().extension.preferences.digests(users, self.channel)
        if not schedules and self.digest is None:
            return []
        if not _has_extension():
            raise ConfigurationError("digests need Notifications registered on the app")
        held = []
        for user, address in pairs:
            schedule = schedules.get(user) if user is not None else None
            if schedule is not None or self.digest is not None:
                held.append((user, address, schedule))
        return held

    def build_all(self, event: Event, pairs: list[tuple[str | None, str]]) -> list[Email]:
        """The messages of ``event``, each in its recipient's locale (see
        :doc:`/i18n`): recipients are grouped by locale, and the event's texts
        translated once per locale; so are the templates rendered, unless they
        use ``user`` or ``address`` (see
        :func:`~flask_notifications.consumers._mail.recipient_free`).

        :param event: the event.
        :param pairs: ``(user id or None, address)`` pairs, from :meth:`addresses`.
        """
        mails = []
        free = self._recipient_free()  # the same bodies for every recipient of a locale
        for locale, group in by_locale(pairs, lambda pair: pair[0]).items():
            with in_locale(locale):
                local = localize(event)
                shared = None
                for user, address in group:
                    mail = self.build(local, user, address, bodies=shared)
                    if shared is None and free:
                        shared = (mail.text, mail.html)
                    mails.append(mail)
        return mails

    def _recipient_free(self) -> bool:
        return recipient_free(self.template_text) and recipient_free(self.template_html)

    def build(
        self,
        event: Event,
        user: str | None,
        address: str,
        *,
        bodies: tuple[str, str] | None = None,
    ) -> Email:
        """The message of ``event`` for one recipient, rendered in the current
        locale (:meth:`build_all` sets it per recipient).

        :param event: the event (its texts already in the recipient's locale).
        :param user: the recipient's user id, or ``None`` for a fixed address.
        :param address: the recipient's address.
        :param bodies: the text and HTML bodies when already rendered for
            another recipient of the same locale.
        """
        context = {"event": event, "user": user, "address": address}
        headers = {"Auto-Submitted": "auto-generated"}  # RFC 3834: no auto-replies
        thread = event.get(THREAD_FIELD)
        if thread:
            # Clients thread by References/In-Reply-To: every message of the
            # thread refers to one root id derived from the thread key.
            root = self._message_id(f"thread.{digest_of(str(thread))}")
            headers["References"] = headers["In-Reply-To"] = root
        return Email(
            to=address,
            subject=self.subject_prefix + (event["title"] or event["event_type"]),
            text=bodies[0] if bodies else render(self.template_text, **context),
            html=bodies[1] if bodies else render(self.template_html, **context),
            message_id=self._message_id(f"{event['event_id']}.{digest_of(address)}"),
            date=event["timestamp"],
            headers=headers,
            key=digest_of(address),
        )

    @property
    def delivery_status(self) -> str | None:  # type: ignore[override]
        """The delivery log's status of the recipients a run did not mail:
        ``"suppressed"`` (no address); ``None`` with fixed recipients (the
        event's recipients are not this consumer's)."""
        return None if self.recipients is not None else "suppressed"

    def deliver(
        self,
        mails: list[Email],
        batch: str,
        name: str | None = None,
        users: dict[str, str] | None = None,
    ) -> int:
        """Send ``mails`` on one connection, skipping those a previous run of
        the task already sent. On an app without the Notifications extension
        (a consumer called directly), there are no such records: every
        message is sent.

        :param mails: the messages.
        :param batch: what identifies them (the event id, or a digest's).
        :param name: the consumer's task name; defaults to :meth:`task_name`.
        :param users: the recipient (user id, or the address when fixed) of
            each message's key, to record its delivery in the delivery log
            under ``batch`` (an event id); ``None`` records nothing.
        :returns: how many were sent now.
        :raises MailServerUnavailable: transient failure (the task retries).
        :raises MailRejected: the server refused some recipients for good.
        """
        name = name or self.task_name()
        keep = _has_extension()  # the once-only records live in its Redis
        done = records.delivered(name, batch, [m.key for m in mails]) if keep else set()
        todo = [m for m in mails if m.key not in done]
        if not todo:
            return 0
        ttl = current_app.config.get("NOTIFICATIONS_DEDUP_TTL", 0)
        refused: list[str] = []
        sent = 0
        with SMTPErrors(), self.connect() as send:
            for mail in todo:
                try:
                    send(mail)
                except (smtplib.SMTPRecipientsRefused, smtplib.SMTPDataError) as exc:
                    if temporary(exc):
                        raise
                    refused.append(f"{mail.to}: {smtp_reason(exc)}")
                    continue
                if keep:
                    records.mark_delivered(name, batch, mail.key, ttl)
                if users is not None:  # the server answered 250
                    delivery_log.record(batch, users[mail.key], self.channel, "delivered")
                sent += 1
        if refused:
            raise MailRejected(f"the SMTP server refused: {'; '.join(refused)}")
        return sent

    def _message_id(self, local: str) -> str:
        return f"<{local}@{_domain_of(self.sender)}>"


@lru_cache(maxsize=64)
def _domain_of(sender: str) -> str:
    """The domain of the ``From`` address, for message ids: parsed once per
    sender (parsing took most of the time of building one message)."""
    return parseaddr(sender)[1].rpartition("@")[2] or "localhost"


def _has_extension() -> bool:
    """Whether the current app has the Notifications extension (and so its
    Redis for the once-only records, and the e-mail resolver)."""
    return "notifications" in current_app.extensions


__all__ = ["Email", "EmailConsumer"]
