"""E-mail digests: collect a recipient's events for a window, then send one
mail listing them (a task scheduled when the first event arrives)."""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

from celery import shared_task
from flask import current_app

from .._redis import is_redis
from .._state import get_state
from ..delivery.tasks import AppTask
from ..errors import ConfigurationError, MailServerUnavailable
from ..event import Event
from ..i18n import in_locale, locales_for, localize, ngettext
from ._mail import Email, digest_of, render

if TYPE_CHECKING:
    from ._email import EmailConsumer

logger = logging.getLogger("flask_notifications")

#: The task that sends a digest once its window has passed.
DIGEST_TASK = "flask_notifications.mail_digest"


class DigestMixin:
    """The digest half of :class:`~flask_notifications.consumers.EmailConsumer`."""

    digest: float | None
    subject_prefix: str
    digest_template_text: str
    digest_template_html: str

    if TYPE_CHECKING:

        def _message_id(self, local: str) -> str: ...

        def deliver(self, mails: list[Email], batch: str, name: str | None = None) -> int: ...

        def task_name(self) -> str: ...

    def _collect(self, event: Event, user: str | None, address: str, name: str) -> None:
        client = get_state().redis
        if not is_redis(client):
            raise ConfigurationError("digests need the library's Redis client")
        assert self.digest is not None
        key = get_state().key("digest", name, address)
        ttl = current_app.config["NOTIFICATIONS_DEDUP_TTL"]
        pipe = client.pipeline(transaction=True)
        pipe.rpush(key, json.dumps([user, event.to_json()]))
        pipe.expire(key, ttl)
        pipe.execute()
        self._schedule(client, address, name)

    def _schedule(self, client: Any, address: str, name: str) -> None:
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
            user = items[0][0]
            with in_locale(locales_for([user])[user]):  # the recipient's language
                events = [localize(Event.from_json(e)) for _, e in items]
                batch = "digest." + digest_of(",".join(e["event_id"] for e in events))
                context = {"events": events, "user": user, "address": address}
                if len(events) == 1:
                    subject = events[0]["title"] or events[0]["event_type"]
                else:
                    subject = ngettext(
                        "%(num)d new notification", "%(num)d new notifications", len(events)
                    )
                mail = Email(
                    to=address,
                    subject=self.subject_prefix + subject,
                    text=render(self.digest_template_text, **context),
                    html=render(self.digest_template_html, **context),
                    message_id=self._message_id(f"{batch}.{digest_of(address)}"),
                    date=time.time(),
                    headers={"Auto-Submitted": "auto-generated"},
                    key=digest_of(address),
                )
            self.deliver([mail], batch, name)
            client.ltrim(key, len(raw), -1)  # keep what arrived meanwhile
        client.delete(state.key("digest_scheduled", name, address))
        if client.llen(key):
            self._schedule(client, address, name)
        return len(raw)


def _find_consumer(task_name: str) -> EmailConsumer | None:
    for hub in get_state().extension.hubs:
        consumer = hub.get_consumer(task_name)
        if isinstance(consumer, DigestMixin):
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
