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
trip), a consumer's own task in one pipelined write. The hash holds one
field per *batch*: the recipients that reached one status together on some
channels, as JSON (``{"t": time, "n": order, "c": [channels], "s": status,
"r": [recipients], "e": error}``), under a name of its own; reading replays
the batches in time order. A run costs a few fields whatever the number of
recipients: the recipients' list serialised once.

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
import json
import logging
import os
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
#: Several recipients that reached one status together:
#: ``(channels, status, error or None, recipients)``.
Batch = tuple[tuple[str, ...], str, str | None, list[str]]


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
    return records.event_key(event_id, "deliveries", event_id)


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


def batches_of(entries: Iterable[Entry]) -> list[Batch]:
    """``entries`` grouped: one batch per channel, status and error.

    :param entries: ``(recipient, channel, status, error)`` tuples.
    """
    groups: dict[tuple[str, str, str | None], list[str]] = {}
    for recipient, channel, status, error in entries:
        groups.setdefault((channel, status, error), []).append(recipient)
    return [((channel,), status, error, who) for (channel, status, error), who in groups.items()]


def fields(batches: Iterable[Batch], at: float | None = None) -> dict[str, str]:
    """The hash fields of ``batches``: one per batch (see the module's
    documentation), named uniquely so that no write overwrites another.

    :param batches: ``(channels, status, error, recipients)`` tuples.
    :param at: their time (epoch seconds); now by default.
    """
    when = time.time() if at is None else at
    token = os.urandom(6).hex()
    out: dict[str, str] = {}
    for n, (channels, status, error, recipients) in enumerate(batches):
        value: dict[str, Any] = {"t": when, "n": n, "c": channels, "s": status, "r": recipients}
        if error is not None:
            value["e"] = error
        out[f"{token}.{n}"] = json.dumps(value, separators=(",", ":"))
    return out


def commands(event_id: str, batches: list[Batch]) -> list[tuple[Any, ...]]:
    """The Redis commands that write ``batches`` of one event: ``HSET`` and
    ``EXPIRE`` (none for no batches).

    :param event_id: the event's id.
    :param batches: ``(channels, status, error, recipients)`` tuples.
    """
    if not batches:
        return []
    key = log_key(event_id)
    flat = [item for pair in fields(batches).items() for item in pair]
    ttl = current_app.config["NOTIFICATIONS_DELIVERY_LOG_TTL"]
    return [("HSET", key, *flat), ("EXPIRE", key, ttl)]


def write(entries: dict[str, list[Entry]]) -> None:
    """Write the entries of several events in one pipelined round trip; a
    Redis error is logged, never raised.

    :param entries: event id -> its ``(recipient, channel, status, error)`` tuples.
    """
    write_batches({event_id: batches_of(items) for event_id, items in entries.items()})


def write_batches(batches: dict[str, list[Batch]]) -> None:
    """Write the batches of several events in one pipelined round trip; a
    Redis error is logged, never raised.

    :param batches: event id -> its batches.
    """
    client = records.redis_client()
    if client is None:
        return
    try:
        pipe = client.pipeline(transaction=False)
        for event_id, items in batches.items():
            for command in commands(event_id, items):
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
) -> list[Batch]:
    """The batches of one consumer run: what it recorded, and for every
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
    noted = run.entries if run is not None else {}
    out = batches_of([(r, c, s, e) for (c, r), (s, e) in noted.items()])
    channel = consumer.channel
    if channel is None or not consumer.wants(event):
        return out
    recipients = [str(r) for r in event["recipients"]] or [BROADCAST]
    if outcome == "expired":
        status: str | None = "suppressed"
        reason: str | None = "expired before delivery"
        rest = recipients
    elif outcome == "ok":
        status = consumer.delivery_status
        reason = _UNREACHED if status == "suppressed" else None
        rest = [r for r in recipients if (channel, r) not in noted] if noted else recipients
        if rest == [BROADCAST] and any(
            s == "delivered" for (c, _), (s, _) in noted.items() if c == channel
        ):
            status, reason = "delivered", None
    else:
        status, reason = outcome, _error(error)
        rest = [
            r for r in recipients
            if (found := noted.get((channel, r))) is None or found[0] not in _DONE
        ]  # fmt: skip
    if status is not None and rest:
        out.append(((channel,), status, reason, rest))
    return out


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
    batches = []
    for field, value in raw.items():
        try:
            batch = json.loads(value)
            batches.append((float(batch["t"]), int(batch["n"]), batch))
        except (ValueError, KeyError, TypeError):
            logger.warning("delivery log of %s: unreadable field %r", event_id, field)
    batches.sort(key=lambda item: item[:2])
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for at, _, batch in batches:
        status, error = batch["s"], batch.get("e")
        for channel in batch["c"]:
            for recipient in batch["r"]:
                item = found.get((channel, recipient))
                if item is None:
                    item = found[(channel, recipient)] = {
                        "event_id": event_id,
                        "recipient": recipient,
                        "channel": channel,
                        "status": status,
                        "times": {},
                        "updated_at": None,
                        "error": None,
                    }
                item["status"] = status
                item["times"][status] = at
                if error is not None:
                    item["error"] = error
    out = []
    for key in sorted(found):
        item = found[key]
        times = item["times"]
        item["times"] = dict(sorted(times.items(), key=lambda pair: pair[1]))
        item["updated_at"] = max(times.values()) if times else None
        out.append(item)
    return out
