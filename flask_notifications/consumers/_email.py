"""What the two e-mail consumers share: recipients, rendering, digests, once-only.

:class:`EmailConsumer` builds one message per recipient and event from Jinja
templates; its subclasses only open an SMTP connection and send
(:class:`~flask_notifications.consumers.flaskmail_consumer.FlaskMailConsumer`
through Flask-Mail,
:class:`~flask_notifications.consumers.flaskemail_consumer.FlaskEmailConsumer`
through :mod:`smtplib`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import smtplib
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import timedelta
from email.utils import parseaddr
from pathlib import Path
from typing import Any, Self
from weakref import WeakKeyDictionary

import redis
from celery import shared_task
from flask import Flask, current_app
from jinja2 import ChoiceLoader, Environment, FileSystemLoader

from .. import reliability
from .._state import get_state
from .._urls import safe_link
from .._tasks import AppTask
from ..errors import ConfigurationError, MailRejected, MailServerUnavailable
from ..event import Event
from ._recipients import allowed_recipients
from .consumer import Consumer

logger = logging.getLogger("flask_notifications")

#: The task that sends a digest once its window has passed.
DIGEST_TASK = "flask_notifications.mail_digest"
#: Event field whose value groups messages into one thread in mail clients.
THREAD_FIELD = "thread"

_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
_envs: WeakKeyDictionary[Flask, Environment] = WeakKeyDictionary()


@dataclass
class Email:
    """One e-mail, ready for a transport.

    :param to: the recipient address.
    :param subject: the subject.
    :param text: the plain text body.
    :param html: the HTML alternative.
    :param message_id: the ``Message-ID`` (stable: a retried message keeps it).
    :param date: the ``Date``, in epoch seconds.
    :param headers: further headers (threading...).
    :param key: what marks it as delivered, so a retry skips it.
    """

    to: str
    subject: str
    text: str
    html: str
    message_id: str
    date: float
    headers: dict[str, str] = field(default_factory=dict)
    key: str = ""


def _jinja_env(app: Flask) -> Environment:
    """The app's Jinja environment, falling back to the package's templates:
    an app overrides ``flask_notifications/mail/notification.html`` (and the
    others) by putting a file of that name in its own templates folder."""
    env = _envs.get(app)
    if env is None:
        loader = ChoiceLoader([app.jinja_env.loader, FileSystemLoader(str(_TEMPLATES))])
        env = _envs[app] = app.jinja_env.overlay(loader=loader)
    return env


def _render(template: str, **context: Any) -> str:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    ctx: dict[str, Any] = {}
    app.update_template_context(ctx)
    ctx["safe_url"] = safe_link  # event links go into href only through it
    ctx.update(context)
    return _jinja_env(app).get_template(template).render(ctx)


def _digest_of(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def _address_ok(address: Any) -> bool:
    if not isinstance(address, str) or "\n" in address or "\r" in address:
        return False
    return "@" in parseaddr(address)[1]


class EmailConsumer(Consumer):
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
        if not _address_ok(sender):
            raise ConfigurationError(
                f"{type(self).__name__} needs a sender address (sender=... or the "
                f"app's default sender setting), got {sender!r}"
            )
        if recipients is not None:
            if isinstance(recipients, str):
                raise ConfigurationError("recipients must be a list of addresses, not a string")
            bad = [r for r in recipients if not _address_ok(r)]
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
            if not _address_ok(address):
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
        if self.digest is not None:
            if not _has_extension():
                raise ConfigurationError("digests need Notifications registered on the app")
            name = self.task_name()
            for user, address in pairs:
                self._collect(event, user, address, name)
            return len(pairs)
        mails = [self.build(event, user, address) for user, address in pairs]
        return self.deliver(mails, event["event_id"])

    def build(self, event: Event, user: str | None, address: str) -> Email:
        """The message of ``event`` for one recipient.

        :param event: the event.
        :param user: the recipient's user id, or ``None`` for a fixed address.
        :param address: the recipient's address.
        """
        context = {"event": event, "user": user, "address": address}
        headers = {"Auto-Submitted": "auto-generated"}  # RFC 3834: no auto-replies
        thread = event.get(THREAD_FIELD)
        if thread:
            # Clients thread by References/In-Reply-To: every message of the
            # thread refers to one root id derived from the thread key.
            root = self._message_id(f"thread.{_digest_of(str(thread))}")
            headers["References"] = headers["In-Reply-To"] = root
        return Email(
            to=address,
            subject=self.subject_prefix + (event["title"] or event["event_type"]),
            text=_render(self.template_text, **context),
            html=_render(self.template_html, **context),
            message_id=self._message_id(f"{event['event_id']}.{_digest_of(address)}"),
            date=event["timestamp"],
            headers=headers,
            key=_digest_of(address),
        )

    def deliver(self, mails: list[Email], batch: str, name: str | None = None) -> int:
        """Send ``mails`` on one connection, skipping those a previous run of
        the task already sent. On an app without the Notifications extension
        (a consumer called directly), there are no such records: every
        message is sent.

        :param mails: the messages.
        :param batch: what identifies them (the event id, or a digest's).
        :param name: the consumer's task name; defaults to :meth:`task_name`.
        :returns: how many were sent now.
        :raises MailServerUnavailable: transient failure (the task retries).
        :raises MailRejected: the server refused some recipients for good.
        """
        name = name or self.task_name()
        records = _has_extension()  # the once-only records live in its Redis
        done = reliability.delivered(name, batch, [m.key for m in mails]) if records else set()
        todo = [m for m in mails if m.key not in done]
        if not todo:
            return 0
        ttl = current_app.config.get("NOTIFICATIONS_DEDUP_TTL", 0)
        refused: list[str] = []
        sent = 0
        with _SMTPErrors(), self.connect() as send:
            for mail in todo:
                try:
                    send(mail)
                except (smtplib.SMTPRecipientsRefused, smtplib.SMTPDataError) as exc:
                    if _temporary(exc):
                        raise
                    refused.append(f"{mail.to}: {_reason(exc)}")
                    continue
                if records:
                    reliability.mark_delivered(name, batch, mail.key, ttl)
                sent += 1
        if refused:
            raise MailRejected(f"the SMTP server refused: {'; '.join(refused)}")
        return sent

    def _message_id(self, local: str) -> str:
        domain = parseaddr(self.sender)[1].rpartition("@")[2] or "localhost"
        return f"<{local}@{domain}>"

    # -- digests ---------------------------------------------------------------

    def _collect(self, event: Event, user: str | None, address: str, name: str) -> None:
        client = get_state().redis
        if not isinstance(client, redis.Redis):
            raise ConfigurationError("digests need the default Redis broker client")
        assert self.digest is not None
        key = get_state().key("digest", name, address)
        ttl = current_app.config["NOTIFICATIONS_DEDUP_TTL"]
        pipe = client.pipeline(transaction=True)
        pipe.rpush(key, json.dumps([user, event.to_json()]))
        pipe.expire(key, ttl)
        pipe.execute()
        self._schedule(client, address, name)

    def _schedule(self, client: redis.Redis, address: str, name: str) -> None:
        """Enqueue the digest of ``address`` unless one is already due."""
        assert self.digest is not None
        state = get_state()
        flag = state.key("digest_scheduled", name, address)
        # The flag expires, so a lost digest task is scheduled again by the
        # next event rather than blocking the address for good.
        if client.set(flag, 1, nx=True, ex=int(self.digest * 3) + 60):
            state.celery.tasks[DIGEST_TASK].apply_async(
                (state.app_key, name, address),
                countdown=self.digest,
                serializer="json",
            )

    def send_digest(self, address: str, name: str | None = None) -> int:
        """Send one mail with the events collected for ``address`` (run by the
        digest task when the window has passed).

        :param address: the recipient's address.
        :param name: the task name the consumer is registered under.
        :returns: how many events it listed.
        """
        name = name or self.task_name()
        state = get_state()
        client = state.redis
        key = state.key("digest", name, address)
        raw = client.lrange(key, 0, -1)
        if raw:
            items = [json.loads(r) for r in raw]
            events = [Event.from_json(e) for _, e in items]
            user = items[0][0]
            batch = "digest." + _digest_of(",".join(e["event_id"] for e in events))
            context = {"events": events, "user": user, "address": address}
            if len(events) == 1:
                subject = events[0]["title"] or events[0]["event_type"]
            else:
                subject = f"{len(events)} new notifications"
            mail = Email(
                to=address,
                subject=self.subject_prefix + subject,
                text=_render(self.digest_template_text, **context),
                html=_render(self.digest_template_html, **context),
                message_id=self._message_id(f"{batch}.{_digest_of(address)}"),
                date=time.time(),
                headers={"Auto-Submitted": "auto-generated"},
                key=_digest_of(address),
            )
            self.deliver([mail], batch, name)
            client.ltrim(key, len(raw), -1)  # keep what arrived meanwhile
        client.delete(state.key("digest_scheduled", name, address))
        if client.llen(key):
            self._schedule(client, address, name)
        return len(raw)


def _has_extension() -> bool:
    """Whether the current app has the Notifications extension (and so its
    Redis for the once-only records, and the e-mail resolver)."""
    return "notifications" in current_app.extensions


def _temporary(exc: smtplib.SMTPException) -> bool:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(400 <= code < 500 for code, _ in exc.recipients.values())
    code = getattr(exc, "smtp_code", 0)
    return 400 <= code < 500


def _reason(exc: smtplib.SMTPException) -> str:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return "; ".join(
            f"{code} {msg.decode(errors='replace') if isinstance(msg, bytes) else msg}"
            for code, msg in exc.recipients.values()
        )
    error = getattr(exc, "smtp_error", b"")
    text = error.decode(errors="replace") if isinstance(error, bytes) else str(error)
    return f"{getattr(exc, 'smtp_code', '?')} {text}"


class _SMTPErrors:
    """Turns smtplib's and the socket's errors into the two library errors:
    :class:`MailServerUnavailable` (retried) and :class:`MailRejected`."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        if exc is None or isinstance(exc, MailRejected | MailServerUnavailable):
            return False
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            raise MailRejected(f"SMTP authentication failed: {_reason(exc)}") from exc
        if isinstance(exc, smtplib.SMTPResponseException | smtplib.SMTPRecipientsRefused):
            if _temporary(exc):
                raise MailServerUnavailable(f"SMTP server busy: {_reason(exc)}") from exc
            raise MailRejected(f"the SMTP server refused the message: {_reason(exc)}") from exc
        if isinstance(exc, smtplib.SMTPServerDisconnected | OSError):
            raise MailServerUnavailable(f"SMTP server unreachable: {exc}") from exc
        if isinstance(exc, smtplib.SMTPException):
            raise MailRejected(f"SMTP error: {exc}") from exc
        return False


def _find_consumer(task_name: str) -> EmailConsumer | None:
    for hub in get_state().extension.hubs:
        consumer = hub.get_consumer(task_name)
        if isinstance(consumer, EmailConsumer):
            return consumer
    return None


def _digest_task(task: Any, app_key: str | None, task_name: str, address: str) -> int:
    consumer = _find_consumer(task_name)
    if consumer is None:
        logger.warning("no e-mail consumer %r in this process; digest skipped", task_name)
        return 0
    try:
        return consumer.send_digest(address, task_name)
    except MailServerUnavailable as exc:
        countdown = min(consumer.retry_backoff * 2**task.request.retries, 600)
        raise task.retry(exc=exc, countdown=countdown, max_retries=consumer.max_retries) from exc


def install_digest_task() -> None:
    """Register the digest task on every Celery app (by ``init_app``, once)."""
    shared_task(name=DIGEST_TASK, base=AppTask, bind=True)(_digest_task)
