"""E-mail digests: events held in the inbox database, sent as one mail by a
durable timer.

One mechanism serves both kinds of digest:

- a consumer's ``digest=`` window: the first event held for an address
  schedules its digest ``window`` seconds later;
- a user's digest (:meth:`Preferences.set_digest
  <flask_notifications.inbox.Preferences.set_digest>`): the next due time of
  the user's schedule, on the user's clock.

Held events are rows of ``flask_notification_digest_items`` (one per
consumer, address and event; a retried consumer run holds nothing twice).
The first of an address schedules a timer of kind ``"digest"``
(:mod:`flask_notifications.workflows.timers`, swept by every worker); when
it is due, :meth:`DigestMixin.send_digest` sends one mail listing every held
event of that address, then deletes them. The mail is sent once: its
once-only record is keyed by the events it lists, so a worker killed after
sending and before deleting sends nothing again when the timer runs again.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from celery import shared_task
from sqlalchemy import delete, select

from .._state import get_state
from ..delivery import log as delivery_log
from ..delivery.tasks import AppTask
from ..errors import MailServerUnavailable
from ..event import Event
from ..i18n import in_locale, locales_for, localize, ngettext
from ..inbox.database import inbox_engine, insert_ignore
from ..inbox.digests import DigestSchedule
from ..inbox.models import digest_items as items
from ..workflows import timers
from ._mail import Email, digest_of, render

if TYPE_CHECKING:
    from ..extension import Notifications
    from ._email import EmailConsumer

logger = logging.getLogger("flask_notifications")

#: The kind of the digests' timers.
KIND = "digest"
#: The Celery task of the digests before 0.2's timers; still registered, so
#: that a message queued by an older version is handled.
DIGEST_TASK = "flask_notifications.mail_digest"
#: At most this many events in one digest mail; more go in the next one, at once.
MAX_EVENTS = 500


class DigestMixin:
    """The digest half of :class:`~flask_notifications.consumers.EmailConsumer`."""

    digest: float | None
    channel: str
    subject_prefix: str
    digest_template_text: str
    digest_template_html: str

    if TYPE_CHECKING:

        def _message_id(self, local: str) -> str: ...

        def deliver(
            self,
            mails: list[Email],
            batch: str,
            name: str | None = None,
            users: dict[str, str] | None = None,
        ) -> int: ...

        def task_name(self) -> str: ...

    def hold(
        self,
        event: Event,
        user: str | None,
        address: str,
        schedule: DigestSchedule | None = None,
    ) -> None:
        """Hold ``event`` for the digest of ``address``, and make sure a timer
        sends that digest: due at the next due time of ``schedule`` after the
        oldest event held for the address, or (``schedule=None``) the
        consumer's window after it.

        The due time derives from the oldest held event, so every event of
        one digest asks for the same timer (its key has the due time: adding
        it again is a no-op), and a timer that was lost (a dead letter after
        the SMTP server refused for good) is added again, due at once, by the
        next event held.

        :param event: the event.
        :param user: the recipient's user id, or ``None`` for a fixed address.
        :param address: the address.
        :param schedule: the user's digest schedule, or ``None`` for the
            consumer's window.
        """
        name = self.task_name()
        row = {
            "scope": get_state().prefix,
            "consumer": name,
            "address": address,
            "recipient": user or "",
            "channel": self.channel,
            "event_id": event["event_id"],
            "event": event.to_json(),
            "created_at": time.time(),
        }
        with _engine().begin() as conn:
            insert_ignore(conn, items, [row])
        oldest = _oldest(name, address)
        if oldest is not None:
            _schedule(name, address, self._due(schedule, oldest), user, schedule)

    def send_digest(self, address: str, name: str | None = None) -> int:
        """Send one mail listing the events held for ``address``, then delete
        them (run by the digest's timer). Events held while it was sending
        get a digest of their own, scheduled here.

        :param address: the recipient's address.
        :param name: the task name the consumer is registered under.
        :returns: how many events it listed (0: nothing was held).
        """
        name = name or self.task_name()
        engine = _engine()
        with engine.connect() as conn:
            rows = conn.execute(
                select(items.c.id, items.c.recipient, items.c.event)
                .where(_mine(), items.c.consumer == name, items.c.address == address)
                .order_by(items.c.id)
                .limit(MAX_EVENTS)
            ).all()
        if not rows:
            return 0
        user = rows[0].recipient or None
        with in_locale(locales_for([user])[user]):  # the recipient's language
            events = [localize(Event.from_json(r.event)) for r in rows]
            batch = "digest." + digest_of(",".join(e["event_id"] for e in events))
            mail = self._digest_mail(events, user, address, batch)
        self.deliver([mail], batch, name)  # once: keyed by the events it lists
        for event in events:
            delivery_log.record(event["event_id"], user or address, self.channel, "delivered")
        with engine.begin() as conn:
            conn.execute(delete(items).where(items.c.id.in_([r.id for r in rows])))
        oldest = _oldest(name, address)
        if oldest is not None:  # held meanwhile, or more than MAX_EVENTS
            schedule = None
            if user is not None:
                found = get_state().extension.preferences.digests([user], self.channel)
                schedule = found.get(user)
            # A key of its own: this timer's row exists until this handler returns.
            due_at = self._due(schedule, oldest)
            _schedule(name, address, due_at, user, schedule, again=True)
        return len(rows)

    def _digest_mail(
        self, events: list[Event], user: str | None, address: str, batch: str
    ) -> Email:
        context = {"events": events, "user": user, "address": address}
        if len(events) == 1:
            subject = events[0]["title"] or events[0]["event_type"]
        else:
            subject = ngettext("%(num)d new notification", "%(num)d new notifications", len(events))
        return Email(
            to=address,
            subject=self.subject_prefix + subject,
            text=render(self.digest_template_text, **context),
            html=render(self.digest_template_html, **context),
            message_id=self._message_id(f"{batch}.{digest_of(address)}"),
            date=time.time(),
            headers={"Auto-Submitted": "auto-generated"},
            key=digest_of(address),
        )

    def _due(self, schedule: DigestSchedule | None, since: float) -> float:
        """When the digest of events held since ``since`` goes out."""
        if schedule is not None:
            return schedule.next_after(since)
        return since + (self.digest or 0.0)


def _engine() -> Any:
    """The inbox engine, for the held events (a clear ``ConfigurationError``
    if their table predates its ``scope`` column)."""
    return inbox_engine(table=items)


def _mine() -> Any:
    """The current app's held events: those of its scope (its
    ``NOTIFICATIONS_REDIS_PREFIX``), not those of other apps sharing the database."""
    return items.c.scope == get_state().prefix


def _oldest(name: str, address: str) -> float | None:
    """When the oldest event held for ``address`` was held, or ``None``."""
    with _engine().connect() as conn:
        return conn.execute(  # type: ignore[no-any-return]
            select(items.c.created_at)
            .where(_mine(), items.c.consumer == name, items.c.address == address)
            .order_by(items.c.id)
            .limit(1)
        ).scalar()


def _schedule(
    name: str,
    address: str,
    due_at: float,
    user: str | None = None,
    schedule: DigestSchedule | None = None,
    again: bool = False,
) -> None:
    """Add the timer of a digest; one per consumer, address and due second
    (``again``: the one a digest adds for what was held while it was sent).
    The payload carries the user's schedule, so that a timer left from a
    schedule the user has changed since sends nothing (see :func:`run_digest`)."""
    parts = [KIND, name, digest_of(address), f"{due_at:.0f}"] + (["again"] if again else [])
    key = timers.make_key(*parts)
    payload = {"consumer": name, "address": address, "user": user, "schedule": None}
    if schedule is not None:
        payload["schedule"] = schedule.to_dict()
    timers.add(KIND, key, due_at, payload)


def flush(user: str, channel: str) -> int:
    """Send at once what is held for ``user`` on ``channel`` (their digest
    was changed or turned off): one timer due now per held address.

    :param user: the user id.
    :param channel: the channel.
    :returns: how many digests were scheduled.
    """
    with _engine().connect() as conn:
        pairs = conn.execute(
            select(items.c.consumer, items.c.address)
            .where(_mine(), items.c.recipient == user, items.c.channel == channel)
            .distinct()
        ).all()
    now = time.time()
    for name, address in pairs:
        _schedule(name, address, now)
    return len(pairs)


def _find_consumer(task_name: str) -> EmailConsumer | None:
    for hub in get_state().extension.hubs:
        consumer = hub.get_consumer(task_name)
        if isinstance(consumer, DigestMixin):
            return consumer  # type: ignore[return-value]
    return None


@timers.handler(KIND)
def run_digest(extension: Notifications, payload: dict[str, Any]) -> None:
    """The ``"digest"`` timers' handler: send the digest of ``payload``'s
    consumer and address. Idempotent (see :meth:`DigestMixin.send_digest`);
    a failure (the SMTP server down) raises, and the timer is retried.

    A timer scheduled for a user's digest whose schedule has changed since
    is stale and sends nothing: the change sent what was held at once
    (:func:`flush`), and what was held afterwards has a timer of the new
    schedule.

    :param extension: the app's extension.
    :param payload: ``{"consumer": task name, "address": ..., "user": ...,
        "schedule": the user's schedule or None}``.
    """
    consumer = _find_consumer(payload["consumer"])
    schedule, user = payload.get("schedule"), payload.get("user")
    if schedule is not None and consumer is not None and user is not None:
        current = extension.preferences.digests([user], consumer.channel).get(user)
        if current is None or current.to_dict() != schedule:
            logger.info("digest timer of %s for an older schedule: nothing to do", user)
            return
    if consumer is None:
        raise LookupError(f"no e-mail consumer {payload['consumer']!r} in this process")
    consumer.send_digest(payload["address"], payload["consumer"])


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
