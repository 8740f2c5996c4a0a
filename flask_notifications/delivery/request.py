"""The request side of delivery: what :meth:`Notifications.send
<flask_notifications.Notifications.send>` does in the sending process.

Validate the event, run every hub's filter, then claim the event id and
record the outbox in one Redis round trip, and enqueue one broker message:
the consumer's own task when the event has one consumer in all, else the
event task, which a worker turns into every consumer's run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import redis
from flask import current_app
from kombu.exceptions import OperationalError
from sqlalchemy.exc import SQLAlchemyError

from ..consumers.store_consumer import StoreConsumer
from ..errors import NotificationsUnavailable
from ..event import Event
from ..i18n import prepare as prepare_message
from ..signals import event_filtered, event_sent
from ..workflows import escalation, scheduled
from . import escalation_records, records
from . import log as delivery_log
from .tasks import EVENT_TASK, args_repr, celery_expiry

if TYPE_CHECKING:
    from .._state import State
    from ..event_hub import EventHub

logger = logging.getLogger("flask_notifications")

_UNAVAILABLE = (redis.RedisError, OperationalError, ConnectionError, TimeoutError)


def send(
    state: State,
    hubs: tuple[EventHub, ...],
    event: Event | str | bytes | Mapping[str, Any],
    at: datetime | None = None,
    delay: timedelta | None = None,
) -> Event:
    """Validate ``event`` and enqueue it for the consumers of every hub it
    passes, now or, with ``at`` or ``delay``, when it is due (see
    :mod:`flask_notifications.workflows.scheduled`).

    :param state: the current app's state.
    :param hubs: every hub of the extension.
    :param event: an :class:`~flask_notifications.event.Event`, its JSON form,
        or a mapping of its fields.
    :param at: when to send it (an aware datetime); a past time sends now.
    :param delay: how long from now to send it.
    :returns: the validated event.
    :raises InvalidEventError: if the event is malformed or too large
        (:class:`~flask_notifications.errors.InvalidMessageError` for its ``i18n`` field).
    :raises InvalidScheduleError: for both ``at`` and ``delay``, or a bad one.
    :raises TypeError: if ``event`` is none of the accepted types.
    :raises NotificationsUnavailable: if Redis or the broker stayed down.
    """
    max_bytes = current_app.config["NOTIFICATIONS_MAX_EVENT_BYTES"]
    due_at = None
    if at is not None or delay is not None:
        due_at = scheduled.due_time(at, delay, time.time())  # checked before the event
    if isinstance(event, Event):
        event.validate()
    elif isinstance(event, str | bytes | bytearray):
        event = Event.from_json(event, max_bytes)
    elif isinstance(event, Mapping):
        event = Event.from_dict(event)
    else:
        raise TypeError(f"send() takes an Event or its JSON, not {type(event).__name__}")
    prepare_message(event)
    payload = event.to_json(max_bytes)
    if due_at is not None and due_at > time.time():
        scheduled.schedule(event, payload, due_at)
    elif not event.is_expired():
        dispatch(state, hubs, event, payload)
    return event


def dispatch(state: State, hubs: tuple[EventHub, ...], event: Event, payload: str) -> None:
    """Enqueue ``event`` (already validated, as ``payload``) for its consumers.

    All filters run before anything is enqueued.

    :param state: the current app's state.
    :param hubs: every hub of the extension.
    :param event: the event.
    :param payload: its JSON form.
    :raises NotificationsUnavailable: if Redis or the broker stayed down.
    """
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    targets = []
    channels: dict[str, None] = {}  # the channels the delivery log shows as queued
    taken = []  # the hubs whose filter took it
    later: list[tuple[str, str, float]] = []  # consumers run if unread after a delay
    for hub in hubs:
        if hub.filter(event):
            taken.append(hub)
            consumers = hub._consumers  # .get: a consumer may be deregistered meanwhile
            targets.extend([hub.hub_id, name] for name in _stores_first(hub._names, consumers))
            for name in hub._names:
                consumer = consumers.get(name)
                if consumer is not None and consumer.channel is not None and consumer.wants(event):
                    channels[consumer.channel] = None
            if hub._escalating and event["recipients"]:  # broadcasts are not escalated
                for name, after in hub._escalating:
                    consumer = consumers.get(name)
                    if consumer is not None and consumer.wants(event):
                        later.append((hub.hub_id, name, after))
        else:
            event_filtered.send(app, event=event, hub=hub)
    if not targets:
        return
    config = app.config
    deadline = time.monotonic() + config["NOTIFICATIONS_SEND_TIMEOUT"]
    event_id = event["event_id"]
    app_key = state.app_key
    task, args = _task_for(state, targets, payload)
    due = time.time() + config["NOTIFICATIONS_REDELIVER_AFTER"]
    ttl = config["NOTIFICATIONS_DEDUP_TTL"]
    # One round trip: claim the event id and record the task in the outbox.
    outbox = [(task.name, args[1], app_key)]
    log = _queued(event, channels) if config["NOTIFICATIONS_DELIVERY_LOG"] and channels else None
    if not _retrying(
        lambda: records.claim_and_record(event_id, ttl, outbox, payload, due, log),
        deadline,
        event_id,
    ):
        logger.info("event %s was already sent; ignored", event_id)
        return
    keys = _escalations(event, payload, later) if later else []
    expires = celery_expiry(event)
    shown = args_repr(event_id, args[1], app_key)
    try:
        _retrying(
            lambda: task.apply_async(args, expires=expires, serializer="json", argsrepr=shown),
            deadline,
            event_id,
        )
    except NotificationsUnavailable:
        records.release_event_id(event_id)  # sending it again must work
        escalation.forget(keys)
        raise
    if state.metrics is not None:
        for hub in taken:
            state.metrics.sent(hub.label)
    event_sent.send(app, event=event, tasks=len(targets))


def _escalations(event: Event, payload: str, later: list[tuple[str, str, float]]) -> list[str]:
    """Add the timers of the consumers that run if the event stays unread
    (after the event id was claimed: an event sent twice adds none)."""
    try:
        return escalation.schedule(event, payload, later)
    except SQLAlchemyError as exc:
        records.release_event_id(event["event_id"])  # nothing enqueued: sending again works
        raise NotificationsUnavailable(
            f"event {event['event_id']} was not sent: the inbox database is unavailable ({exc})"
        ) from exc


def enqueue_consumer(state: State, event: Event, hub_id: str, name: str) -> bool:
    """Run one consumer of a hub on ``event`` through the delivery worker
    (records, retries, dead letters), once: an escalation's run.

    :param state: the current app's state.
    :param event: the event as the consumer gets it (its recipients narrowed).
    :param hub_id: the hub.
    :param name: the consumer's task name.
    :returns: ``False`` if this consumer's later run of the event was enqueued before.
    :raises NotificationsUnavailable: if Redis or the broker stayed down.
    """
    config = current_app.config
    deadline = time.monotonic() + config["NOTIFICATIONS_SEND_TIMEOUT"]
    event_id, app_key = event["event_id"], state.app_key
    payload = event.to_json()
    due = time.time() + config["NOTIFICATIONS_REDELIVER_AFTER"]
    ttl = config["NOTIFICATIONS_DEDUP_TTL"]
    if not _retrying(
        lambda: escalation_records.claim_escalation(name, hub_id, app_key, payload, ttl, due),
        deadline,
        event_id,
    ):
        return False
    task = state.celery.tasks[name]
    shown = args_repr(event_id, hub_id, app_key)
    try:
        _retrying(
            lambda: task.apply_async(
                (payload, hub_id, app_key),
                expires=celery_expiry(event),
                serializer="json",
                argsrepr=shown,
            ),
            deadline,
            event_id,
        )
    except NotificationsUnavailable:
        escalation_records.release_escalation(name, hub_id, app_key, event_id)
        raise
    return True


def enqueue_targets(state: State, event: Event, targets: list[list[str]]) -> bool:
    """Enqueue ``event`` for exactly ``targets`` (``[hub id, consumer task
    name]`` pairs), bypassing the hubs' filters, once: its id is claimed as
    :meth:`~flask_notifications.Notifications.send` claims it (a throttle's
    summary; see :mod:`flask_notifications.workflows.throttle`).

    :param state: the current app's state.
    :param event: the event, validated.
    :param targets: the consumers to run.
    :returns: ``False`` if the event id was sent before (nothing enqueued).
    :raises NotificationsUnavailable: if Redis or the broker stayed down.
    """
    config = current_app.config
    deadline = time.monotonic() + config["NOTIFICATIONS_SEND_TIMEOUT"]
    event_id, app_key = event["event_id"], state.app_key
    payload = event.to_json()
    task, args = _task_for(state, targets, payload)
    due = time.time() + config["NOTIFICATIONS_REDELIVER_AFTER"]
    ttl = config["NOTIFICATIONS_DEDUP_TTL"]
    outbox = [(task.name, args[1], app_key)]
    if not _retrying(
        lambda: records.claim_and_record(event_id, ttl, outbox, payload, due), deadline, event_id
    ):
        return False
    shown = args_repr(event_id, args[1], app_key)
    try:
        _retrying(
            lambda: task.apply_async(
                args, expires=celery_expiry(event), serializer="json", argsrepr=shown
            ),
            deadline,
            event_id,
        )
    except NotificationsUnavailable:
        records.release_event_id(event_id)
        raise
    return True


def _queued(event: Event, channels: dict[str, None]) -> tuple[str, int, list[str]]:
    """The delivery log's ``queued`` records of ``event`` on ``channels`` (one
    hash field for them all), for :func:`~flask_notifications.delivery.records.claim_and_record`."""
    recipients = [str(r) for r in event["recipients"]] or [delivery_log.BROADCAST]
    fields = delivery_log.fields([(tuple(channels), "queued", None, recipients)])
    ttl = current_app.config["NOTIFICATIONS_DELIVERY_LOG_TTL"]
    return delivery_log.log_key(event["event_id"]), ttl, [x for kv in fields.items() for x in kv]


def _retrying(call: Callable[[], Any], deadline: float, event_id: str) -> Any:
    """Run ``call`` until it works or ``deadline`` (monotonic) passes."""
    try:
        return records.retry_while(_UNAVAILABLE, call, deadline)
    except _UNAVAILABLE as exc:
        raise NotificationsUnavailable(
            f"event {event_id} was not sent: Redis or the broker is unavailable ({exc})"
        ) from exc


def _task_for(state: State, targets: list[list[str]], payload: str) -> tuple[Any, tuple[Any, ...]]:
    """The one task (and its arguments) that carries ``payload`` to
    ``targets``: the consumer's own task for one, else the event task, one
    message whatever the number of consumers (the worker runs them)."""
    tasks = state.celery.tasks
    if len(targets) == 1:
        ((hub_id, name),) = targets
        return tasks[name], (payload, hub_id, state.app_key)
    return tasks[EVENT_TASK], (payload, targets, state.app_key)


def _stores_first(names: list[str], consumers: dict[str, Any]) -> list[str]:
    """``names`` in registration order, but the inbox's consumers first: the
    event task runs its consumers in this order, so a stream's consumer finds
    the event stored (a grouped event goes out as the recipient's updated
    item) however the hub's consumers were registered."""
    if len(names) < 2:
        return names
    return sorted(names, key=lambda name: not isinstance(consumers.get(name), StoreConsumer))
