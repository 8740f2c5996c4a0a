"""Escalate when unread: a consumer that runs only for the recipients who have
not read the stored notification after a delay.

``hub.register_consumer(consumer, if_unread_after=timedelta(minutes=15))``
(see :meth:`EventHub.register_consumer
<flask_notifications.event_hub.EventHub.register_consumer>`) on a hub that
stores to the inbox. When an event passes the hub, that consumer is not
enqueued; :func:`schedule` adds a durable timer of kind ``escalate`` instead
(key: hub, consumer, event id). When it is due, a worker's sweeper runs
:func:`_escalate`: it finds the recipients whose stored notification of that
event is still unread, narrows the event's ``recipients`` to them and
enqueues that one consumer through the delivery worker (records, retries,
dead letters), with the event's own id.

Choices:

- A recipient without a stored row for the event counts as unread (not
  stored yet, opted out of the inbox, or replaced since by a notification of
  the same name): an escalation errs on the side of telling. Grouped events
  are read when the group's item that took them was (see
  :func:`unread_recipients`).
- Broadcasts (no recipients) are not escalated: nobody's "unread" is known.
- The consumer's later run is claimed in Redis (one per hub, consumer and
  event), so running the timer twice (a worker killed after it enqueued,
  before it deleted the timer) enqueues it once.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from ..event import Event
from ..inbox.database import get_engine
from ..inbox.models import notifications as inbox_table
from ..inbox.store import user_id
from . import timers

if TYPE_CHECKING:
    from ..extension import Notifications

__all__ = ["KIND", "forget", "schedule", "unread_recipients"]

logger = logging.getLogger("flask_notifications")

#: The kind of the escalation timers.
KIND = "escalate"
_CHUNK = 1000  # recipients per IN (...) clause


def schedule(event: Event, payload: str, later: list[tuple[str, str, float]]) -> list[str]:
    """Add the escalation timers of ``event`` (in the current app).

    :param event: the event, sent now.
    :param payload: its JSON form.
    :param later: ``(hub id, consumer task name, seconds)`` of each consumer
        to run if the event is unread after that long.
    :returns: the keys of the timers added.
    :raises sqlalchemy.exc.SQLAlchemyError: if the database fails.
    """
    now = time.time()
    event_id = event["event_id"]
    keys = []
    for hub_id, name, after in later:
        key = timers.make_key(KIND, hub_id, name, event_id)
        body = {"event_id": event_id, "event": payload, "hub_id": hub_id, "consumer": name}
        if timers.add(KIND, key, now + after, body):
            keys.append(key)
    return keys


def forget(keys: list[str]) -> None:
    """Remove escalation timers (their event could not be enqueued after all).

    :param keys: the keys :func:`schedule` returned.
    """
    for key in keys:
        try:
            timers.cancel(key)
        except Exception:  # noqa: BLE001 - the database is down: the event id is released,
            # so the escalation may run for an event that was not sent; logged.
            logger.warning("escalation timer %s of an event not sent could not be removed", key)


def unread_recipients(event: Event) -> list[str]:
    """The recipients of ``event`` who have not read its stored notification
    (a recipient without one counts as unread), in the event's order.

    A grouped event (its ``group`` set: the inbox keeps one unread item per
    recipient and group, which takes the newest event's id) is read by a
    recipient whose row of that id is read, or who has stored items of the
    group but none unread (the item that took it was read). A recipient with
    an unread item of the group counts as unread, even when the item that
    took this event was read before a newer one started it again.

    :param event: the event.
    """
    recipients = list(dict.fromkeys(user_id(r) for r in event["recipients"]))
    group = event.get("group")
    columns = inbox_table.c
    read: set[str] = set()
    grouped: set[str] = set()  # has items of the group
    grouped_unread: set[str] = set()  # has an unread item of the group
    with get_engine().connect() as conn:
        for start in range(0, len(recipients), _CHUNK):
            chunk = recipients[start : start + _CHUNK]
            read.update(
                conn.execute(
                    select(columns.recipient).where(
                        columns.event_id == event["event_id"],
                        columns.recipient.in_(chunk),
                        columns.read_at.is_not(None),
                    )
                ).scalars()
            )
            if group is not None:
                for recipient, unread in conn.execute(
                    select(columns.recipient, columns.read_at.is_(None))
                    .where(columns.group_key == group, columns.recipient.in_(chunk))
                    .distinct()
                ):
                    grouped.add(recipient)
                    if unread:
                        grouped_unread.add(recipient)
    return [r for r in recipients if r not in read and (r in grouped_unread or r not in grouped)]


@timers.handler(KIND)
def _escalate(extension: Notifications, payload: dict[str, Any]) -> None:
    """An escalation is due: run its consumer for the recipients who have not
    read the event (idempotent: the consumer's later run is claimed once)."""
    from .._state import get_state
    from ..delivery.request import enqueue_consumer

    event = Event.from_json(payload["event"])
    event_id, hub_id, name = event["event_id"], payload["hub_id"], payload["consumer"]
    if event.is_expired():
        logger.info("event %s expired before its escalation to %r; skipped", event_id, name)
        return
    hub = extension.get_hub_by_id(hub_id)
    if hub is None or hub.get_consumer(name) is None:
        logger.warning(
            "no consumer %r on hub %s in this process; escalation of event %s skipped",
            name, hub_id, event_id,
        )  # fmt: skip
        return
    unread = unread_recipients(event)
    if not unread:
        logger.info("event %s was read by every recipient; no escalation to %r", event_id, name)
        return
    event["recipients"] = unread
    if enqueue_consumer(get_state(), event, hub_id, name):
        logger.info("event %s escalated to %r for %d recipient(s)", event_id, name, len(unread))
