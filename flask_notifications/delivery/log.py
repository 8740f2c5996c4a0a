"""The delivery log: the status of every (event, recipient, channel).

What happened to an event, recipient by recipient and channel by channel,
kept in Redis for ``NOTIFICATIONS_DELIVERY_LOG_TTL`` seconds (7 days by
default; ``NOTIFICATIONS_DELIVERY_LOG = False`` turns it off).

Statuses (:data:`STATUSES`):

- ``queued``: :meth:`~flask_notifications.Notifications.send` enqueued it
  (written in the round trip that claims the event id);
- ``sent``: handed to a channel that gives no receipt (the live stream:
  published for the open streams);
- ``delivered``: a receiver took it (the inbox stored it, the SMTP server
  answered 250, a push service 201);
- ``read``: the recipient marked it read in the inbox;
- ``failed``: the consumer failed and will be retried (``error`` says why);
- ``dead``: the consumer failed for good and left a dead letter (``error``);
- ``suppressed``: not sent on purpose: an opt-out (preferences), a throttle,
  nowhere to send it (no e-mail address, subscription or device), or the
  event expired in the queue; ``error`` says which.

Each record keeps the time of each status it went through (the last time,
for a status it reached twice) and the last error, cleaned with
:func:`~flask_notifications._text.printable` and cut to
:data:`ERROR_LIMIT` characters. A broadcast event (no recipients) has one
record per channel, for recipient ``"*"``.

Storage: one Redis hash per event (``<prefix>:deliveries:<event id>``, in the
event's hash slot on a Redis Cluster, see
:mod:`~flask_notifications.delivery.records`), its time to live set again on
every write. A consumer run writes its records once, after the run: the
event task adds them to the transaction that ends the event (no extra round
trip), a consumer's own task in one pipelined write. Fields:
``s|<channel>|<recipient>`` (the status), ``t.<status>|<channel>|<recipient>``
(when) and ``e|<channel>|<recipient>`` (the last error).

Recording, for other parts of the library (one line each)::

    from flask_notifications.delivery import log as delivery_log

    delivery_log.record(event_id, recipient, "email", "suppressed", error="throttled")
    delivery_log.record_many(event_id, [(recipient, "email", "sent", None), ...])

Inside a consumer run (in a worker), both only collect: the worker writes
them with the run's own records, and the consumer's outcome fills in the
recipients it did not record (see :func:`finish_run`). Outside one, they
write at once (one round trip). Neither ever raises for Redis being down
(the log is an aid, never a reason to fail a delivery); both raise
:class:`~flask_notifications.errors.InvalidQueryError` for a status not in
:data:`STATUSES` or a channel with ``|``.

Reading: :func:`deliveries` (also ``notifications.deliveries(event_id)``,
``GET <prefix>/<event id>/deliveries`` for the signed-in recipient's own, and
``flask notifications status EVENT_ID``).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import redis
from flask import current_app

from .._state import has_state
from .._text import printable
from ..errors import InvalidQueryError
from . import records

if TYPE_CHECKING:
    from ..consumers.consumer import Consumer
    from ..event import Event

__all__ = [
    "BROADCAST",
    "ERROR_LIMIT",
    "STATUSES",
    "deliveries",
    "enabled",
    "log_key",
    "record",
    "record_many",
]

logger = logging.getLogger("flask_notifications")

#: Every status a record can have.
STATUSES = ("queued", "sent", "delivered", "read", "failed", "dead", "suppressed")
#: The recipient of the records of a broadcast event (one without recipients).
BROADCAST = "*"
#: The most characters of an error kept.
ERROR_LIMIT = 500
#: Statuses that end a delivery well: a failure does not overwrite them.
_DONE = frozenset(("sent", "delivered", "read", "suppressed"))
#: One entry: ``(recipient, channel, status, error or None)``.
Entry = tuple[str, str, str, str | None]


class _Run:
    """The entries one consumer run collected, for one event."""

    def __init__(self, event_id: str) -> None:
        self.event_id = event_id
        #: ``(channel, recipient) -> (status, error)``, the last one wins.
        self.entries: dict[tuple[str, str], tuple[str, str | None]] = {}


_run: ContextVar[_Run | None] = ContextVar("flask_notifications_delivery_log", default=None)


def enabled() -> bool:
    """Whether the current app keeps a delivery log (``NOTIFICATIONS_DELIVERY_LOG``
    and a Redis client the records can use)."""
    return (
        has_state()
        and bool(current_app.config.get("NOTIFICATIONS_DELIVERY_LOG", False))
        and records.redis_client() is not None
    )


def log_key(event_id: str) -> str:
    """The Redis hash of an event's delivery records (in its hash slot).

    :param event_id: the event's id.
    """
    return records._event_key(event_id, "deliveries", event_id)


def _check(channel: str, status: str) -> None:
    if status not in STATUSES:
        raise InvalidQueryError(
            f"a delivery status must be one of {', '.join(STATUSES)}, not {status!r}"
        )
    if not isinstance(channel, str) or not channel or "|" in channel:
        raise InvalidQueryError(f"a delivery channel must be a name without '|', not {channel!r}")


def record(
    event_id: str, recipient: str | int, channel: str, status: str, error: object = None
) -> None:
    """Record that ``event_id`` reached ``status`` for ``recipient`` on ``channel``.

    :param event_id: the event's id.
    :param recipient: the user id (``"*"``: every recipient of a broadcast).
    :param channel: ``"inbox"``, ``"stream"``, ``"email"``, ``"webpush"``,
        ``"mobile"``... (a consumer's :attr:`~flask_notifications.consumers.Consumer.channel`).
    :param status: one of :data:`STATUSES`.
    :param error: the last error (an exception or text), or ``None``.
    :raises InvalidQueryError: for an unknown status or a channel with ``|``.
    """
    record_many(event_id, [(str(recipient), channel, status, error)])  # type: ignore[list-item]


def record_many(event_id: str, entries: Iterable[tuple[Any, str, str, Any]]) -> None:
    """Record several statuses of one event at once (one write, or none
    inside a consumer run, see the module's documentation).

    :param event_id: the event's id.
    :param entries: ``(recipient, channel, status, error or None)`` tuples.
    :raises InvalidQueryError: for an unknown status or a channel with ``|``.
    """
    cleaned: list[Entry] = []
    for recipient, channel, status, error in entries:
        _check(channel, status)
        cleaned.append((str(recipient), channel, status, _error(error)))
    run = _run.get()
    if run is not None and run.event_id == event_id:
        for recipient, channel, status, error in cleaned:
            run.entries[(channel, recipient)] = (status, error)
        return
    if cleaned and enabled():
        write({event_id: cleaned})


def _error(error: object) -> str | None:
    if error is None:
        return None
    if isinstance(error, BaseException):
        error = f"{type(error).__name__}: {error}"
    return printable(error, ERROR_LIMIT)


def fields(entries: Iterable[Entry], at: float | None = None) -> dict[str, str]:
    """The hash fields of ``entries`` (see the module's documentation).

    :param entries: ``(recipient, channel, status, error)`` tuples.
    :param at: their time (epoch seconds); now by default.
    """
    when = repr(time.time() if at is None else at)
    out: dict[str, str] = {}
    for recipient, channel, status, error in entries:
        who = f"{channel}|{recipient}"
        out["s|" + who] = status
        out[f"t.{status}|{who}"] = when
        if error is not None:
            out["e|" + who] = error
    return out


def commands(event_id: str, entries: Iterable[Entry]) -> list[tuple[Any, ...]]:
    """The Redis commands that write ``entries`` of one event: ``HSET`` and
    ``EXPIRE`` (none for no entries).

    :param event_id: the event's id.
    :param entries: ``(recipient, channel, status, error)`` tuples.
    """
    mapping = fields(entries)
    if not mapping:
        return []
    key = log_key(event_id)
    flat = [item for pair in mapping.items() for item in pair]
    ttl = current_app.config["NOTIFICATIONS_DELIVERY_LOG_TTL"]
    return [("HSET", key, *flat), ("EXPIRE", key, ttl)]


def write(batches: dict[str, list[Entry]]) -> None:
    """Write the entries of several events in one pipelined round trip; a
    Redis error is logged, never raised.

    :param batches: event id -> its entries.
    """
    client = records.redis_client()
    if client is None:
        return
    try:
        pipe = client.pipeline(transaction=False)
        for event_id, entries in batches.items():
            for command in commands(event_id, entries):
                pipe.execute_command(*command)
        pipe.execute()
    except redis.RedisError as exc:
        logger.warning("the delivery log was not written (%s)", exc)


# -- the worker's side --------------------------------------------------------------


@contextlib.contextmanager
def collecting(event_id: str) -> Iterator[_Run]:
    """Collect what a consumer run records for ``event_id`` (see :func:`finish_run`).

    :param event_id: the event the consumer runs on.
    """
    run = _Run(event_id)
    token = _run.set(run)
    try:
        yield run
    finally:
        _run.reset(token)


def finish_run(
    run: _Run | None,
    consumer: Consumer,
    event: Event,
    outcome: str,
    error: BaseException | None = None,
) -> list[Entry]:
    """The entries of one consumer run: what it recorded, and for every
    recipient it did not, the outcome's status.

    A run that ended well gives the consumer's
    :attr:`~flask_notifications.consumers.Consumer.delivery_status`
    (``"delivered"`` by default; a broadcast's ``"*"`` gets ``"delivered"``
    when the run recorded a delivery for someone); a failure gives
    ``"failed"`` (to be retried) or ``"dead"``, with the error, to every
    recipient the run did not finish with. A consumer without a
    :attr:`~flask_notifications.consumers.Consumer.channel`, or that the
    event's ``channels`` leave out, adds nothing.

    :param run: what the run collected (``None``: nothing, it did not run).
    :param consumer: the consumer.
    :param event: the event.
    :param outcome: ``"ok"``, ``"failed"``, ``"dead"``, or ``"expired"`` (the
        event expired before the consumer ran: ``suppressed``, ``expired``).
    :param error: the exception, for ``"failed"`` and ``"dead"``.
    """
    entries = dict(run.entries) if run is not None else {}
    channel = consumer.channel
    if channel is not None and consumer.wants(event):
        recipients = [str(r) for r in event["recipients"]] or [BROADCAST]
        if outcome == "expired":
            for recipient in recipients:
                entries[(channel, recipient)] = ("suppressed", "expired before delivery")
        elif outcome == "ok":
            status = consumer.delivery_status
            if status is not None:
                reason = _UNREACHED if status == "suppressed" else None
                for recipient in recipients:
                    if (channel, recipient) in entries:
                        continue
                    if recipient == BROADCAST and any(
                        s == "delivered" for (c, _), (s, _) in entries.items() if c == channel
                    ):
                        entries[(channel, recipient)] = ("delivered", None)
                    else:
                        entries[(channel, recipient)] = (status, reason)
        else:
            text = _error(error)
            for recipient in recipients:
                found = entries.get((channel, recipient))
                if found is None or found[0] not in _DONE:
                    entries[(channel, recipient)] = (outcome, text)
    return [(r, c, s, e) for (c, r), (s, e) in entries.items()]


_UNREACHED = "nowhere to deliver on this channel (no address, subscription or device)"


# -- reading -------------------------------------------------------------------------


def deliveries(event_id: str) -> list[dict[str, Any]]:
    """The delivery records of an event, by channel then recipient.

    Each is a dict: ``event_id``, ``recipient`` (``"*"`` for a broadcast),
    ``channel``, ``status`` (one of :data:`STATUSES`), ``times`` (status ->
    epoch seconds it was last reached), ``updated_at`` (the latest of
    ``times``) and ``error`` (the last error, or ``None``). An empty list when
    nothing is recorded (an unknown or expired event, or the log turned off).

    :param event_id: the event's id.
    """
    client = records.redis_client()
    if client is None or not isinstance(event_id, str) or not event_id:
        return []
    raw = client.hgetall(log_key(event_id))
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for field, value in raw.items():
        field = field.decode() if isinstance(field, bytes) else field
        value = value.decode() if isinstance(value, bytes) else value
        kind, _, rest = field.partition("|")
        channel, _, recipient = rest.partition("|")
        item = found.setdefault(
            (channel, recipient),
            {
                "event_id": event_id,
                "recipient": recipient,
                "channel": channel,
                "status": None,
                "times": {},
                "updated_at": None,
                "error": None,
            },
        )
        if kind == "s":
            item["status"] = value
        elif kind == "e":
            item["error"] = value
        elif kind.startswith("t."):
            item["times"][kind[2:]] = float(value)
    out = []
    for key in sorted(found):
        item = found[key]
        times = item["times"]
        item["times"] = dict(sorted(times.items(), key=lambda pair: pair[1]))
        item["updated_at"] = max(times.values()) if times else None
        out.append(item)
    return out
