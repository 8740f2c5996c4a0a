"""Scheduled sends: ``notifications.send(event, at=...)`` or ``delay=...``.

The event is validated at once, and kept as a durable timer of kind
``send`` (key ``send:<event id>``, see :mod:`~flask_notifications.workflows.timers`).
When it is due, a worker's sweeper sends it as
:meth:`Notifications.send() <flask_notifications.Notifications.send>` does
(hub filters, consumers, Celery), deduplicated by event id: scheduling an id
twice keeps the first schedule, scheduling an id already sent does nothing,
and an id sent by other means before the due time is not sent again then.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import redis

from ..errors import InvalidQueryError, InvalidScheduleError
from ..event import Event
from . import timers

if TYPE_CHECKING:
    from ..extension import Notifications

__all__ = ["KIND", "cancel", "due_time", "schedule", "scheduled"]

logger = logging.getLogger("flask_notifications")

#: The kind of the timers of scheduled sends.
KIND = "send"


def due_time(at: datetime | None, delay: timedelta | None, now: float) -> float:
    """When to send: ``at`` or ``now + delay``, as epoch seconds.

    :param at: an aware datetime (naive ones are refused: their time zone is
        a guess).
    :param delay: a timedelta from ``now``.
    :param now: the current time (epoch seconds).
    :raises InvalidScheduleError: for both or a bad value.
    """
    if at is not None and delay is not None:
        raise InvalidScheduleError("give at= or delay=, not both")
    if at is not None:
        if not isinstance(at, datetime):
            raise InvalidScheduleError(f"at must be a datetime, not {type(at).__name__}")
        if at.tzinfo is None or at.tzinfo.utcoffset(at) is None:
            raise InvalidScheduleError(
                "at must be an aware datetime (e.g. datetime.now(UTC) + ...), not a naive one"
            )
        return at.timestamp()
    if not isinstance(delay, timedelta):
        raise InvalidScheduleError(f"delay must be a timedelta, not {type(delay).__name__}")
    return now + delay.total_seconds()


def schedule(event: Event, payload: str, due_at: float) -> bool:
    """Keep ``event`` to be sent at ``due_at`` (in the current app).

    :param event: the validated event.
    :param payload: its JSON form.
    :param due_at: when (epoch seconds, in the future).
    :returns: whether it was scheduled: ``False`` when the event expires
        before ``due_at``, its id was already sent, or it is already scheduled.
    """
    event_id = event["event_id"]
    if event.is_expired(now=due_at):
        logger.info("event %s expires before its delivery time; not scheduled", event_id)
        return False
    if _already_sent(event_id):
        logger.info("event %s was already sent; not scheduled", event_id)
        return False
    body = {"event_id": event_id, "event": payload}
    if not timers.add(KIND, _key(event_id), due_at, body):
        logger.info("event %s is already scheduled; the first schedule is kept", event_id)
        return False
    return True


def cancel(event_id: str | int) -> bool:
    """Cancel the scheduled send of ``event_id`` (in the current app).

    :param event_id: the event's id.
    :returns: ``True`` if it was pending and will not be sent; ``False`` if it
        was sent already (or is being sent now), or was never scheduled.
    :raises InvalidQueryError: for an id that is not a string or an integer.
    """
    if isinstance(event_id, bool) or not isinstance(event_id, str | int) or event_id == "":
        raise InvalidQueryError(f"an event id must be a non-empty string, not {event_id!r}")
    return timers.cancel(_key(str(event_id)))


def scheduled(limit: int = 1000) -> list[dict[str, Any]]:
    """The scheduled sends of the current app, soonest first.

    :param limit: at most this many.
    :returns: dicts with ``event_id``, ``due_at`` (epoch seconds), ``due``
        (an aware UTC datetime), ``event_type``, ``title``, ``recipients``,
        ``attempts`` and ``running``.
    """
    found = []
    for timer in timers.pending(kind=KIND, limit=limit):
        event = json.loads(timer["payload"]["event"])
        found.append(
            {
                "event_id": event.get("event_id"),
                "due_at": timer["due_at"],
                "due": datetime.fromtimestamp(timer["due_at"], UTC),
                "event_type": event.get("event_type"),
                "title": event.get("title"),
                "recipients": event.get("recipients") or [],
                "attempts": timer["attempts"],
                "running": timer["running"],
            }
        )
    return found


@timers.handler(KIND)
def _send_due(extension: Notifications, payload: dict[str, Any]) -> None:
    """A scheduled send is due: send it (idempotent: ``send()`` ignores an id
    it has already sent, so a second run sends nothing)."""
    event = Event.from_json(payload["event"])
    if event.is_expired():
        logger.info("scheduled event %s expired before it was due; not sent", event["event_id"])
        return
    extension.send(event)


def _key(event_id: str) -> str:
    return timers.make_key(KIND, event_id)


def _already_sent(event_id: str) -> bool:
    """Whether ``send()`` already sent ``event_id`` (its dedup record); ``False``
    when Redis does not answer (the send at the due time still deduplicates)."""
    from ..delivery import records

    client = records.redis_client()
    if client is None:
        return False
    try:
        return bool(client.exists(records.sent_key(event_id)))
    except redis.RedisError:
        return False
