"""What :meth:`Notifications.send <flask_notifications.Notifications.send>` does
with a valid event: pick the hubs and consumers, claim the event id and
record the outbox in one round trip, enqueue one Celery message."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import redis
from flask import current_app
from kombu.exceptions import OperationalError

from . import reliability
from ._tasks import FAN_OUT_TASK, celery_expiry
from .errors import NotificationsUnavailable
from .signals import event_filtered, event_sent

if TYPE_CHECKING:
    from ._state import State
    from .event import Event
    from .event_hub import EventHub

logger = logging.getLogger("flask_notifications")

_UNAVAILABLE = (redis.RedisError, OperationalError, ConnectionError, TimeoutError)


def dispatch(state: State, hubs: tuple[EventHub, ...], event: Event, payload: str) -> None:
    """Enqueue the consumer tasks of ``event`` (already validated, as ``payload``).

    :param state: the current app's state.
    :param hubs: every hub of the extension.
    :param event: the event.
    :param payload: its JSON form.
    :raises NotificationsUnavailable: if Redis or the broker stayed down.
    """
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    targets = []
    for hub in hubs:
        if hub.filter(event):
            targets.extend([hub.hub_id, name] for name in hub._names)
        else:
            event_filtered.send(app, event=event, hub=hub)
    if not targets:
        return
    config = app.config
    deadline = time.monotonic() + config["NOTIFICATIONS_SEND_TIMEOUT"]
    event_id = event["event_id"]
    app_key = state.app_key
    tasks = state.celery.tasks
    if len(targets) == 1:
        ((hub_id, name),) = targets
        task, args = tasks[name], (payload, hub_id, app_key)
    else:
        # One message, whatever the number of consumers: a worker's fan-out
        # task enqueues the consumer tasks, so the request does not wait
        # for n enqueues (docs/benchmarks.md measures the difference).
        task, args = tasks[FAN_OUT_TASK], (payload, targets, app_key)
    due = time.time() + config["NOTIFICATIONS_REDELIVER_AFTER"]
    ttl = config["NOTIFICATIONS_DEDUP_TTL"]
    # One round trip: claim the event id and record the task in the outbox.
    outbox = [(task.name, args[1], app_key)]
    if not _retrying(
        lambda: reliability.claim_and_record(event_id, ttl, outbox, payload, due),
        deadline,
        event_id,
    ):
        logger.info("event %s was already sent; ignored", event_id)
        return
    expires = celery_expiry(event)
    try:
        _retrying(
            lambda: task.apply_async(args, expires=expires, serializer="json"),
            deadline,
            event_id,
        )
    except NotificationsUnavailable:
        reliability.release_event_id(event_id)  # sending it again must work
        raise
    event_sent.send(app, event=event, tasks=len(targets))


def _retrying(call: Callable[[], Any], deadline: float, event_id: str) -> Any:
    """Run ``call`` until it works or ``deadline`` (monotonic) passes."""
    delay = 0.05
    while True:
        try:
            return call()
        except _UNAVAILABLE as exc:
            if time.monotonic() + delay > deadline:
                raise NotificationsUnavailable(
                    f"event {event_id} was not sent: Redis or the broker is unavailable ({exc})"
                ) from exc
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
