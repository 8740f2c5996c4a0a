"""The workers' sweeper: what the broker lost is sent again.

Each worker process runs one sweeper thread (started by Celery's
``worker_ready`` signal, connected by
:func:`~flask_notifications.delivery.registry.install`). For every Flask app
bound to the worker's Celery app, it enqueues again the tasks of the outbox
past their deadline (one process at a time, under a Redis lock: see
:func:`redeliver_pending`), and sends
the model events that a web process died before sending (the model-event
outbox, :mod:`flask_notifications.inbox.model_outbox`).

A second thread runs the durable timers (scheduled sends, escalations...:
:mod:`flask_notifications.workflows.timers`) every ``NOTIFICATIONS_TIMER_POLL``
seconds, or sooner when one is due: a thread of its own, so a slow Redis
sweep (Redis restarting) never delays a timer due meanwhile.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from .._state import get_state
from . import escalation_records, records
from .apps import bound_apps

if TYPE_CHECKING:
    from celery import Celery
    from flask import Flask

logger = logging.getLogger("flask_notifications")

_SWEEPER_STOP = "flask_notifications_sweeper_stop"
_TIMERS_FALLBACK = 0.5  # seconds between tries while the database fails


def redeliver_pending(delay: float, limit: int = 1000) -> int:
    """Enqueue again the tasks still unfinished past their deadline.

    One process at a time (a Redis lock). A consumer that did finish meanwhile
    is skipped by its completion record, so nothing runs twice.

    :param delay: seconds until a redelivered task counts as lost again.
    :param limit: at most this many per call.
    :returns: how many were enqueued again.
    """
    client = records.redis_client()
    state = get_state()
    lock = state.key("sweep_lock")
    if client is None or not client.set(lock, 1, nx=True, ex=30):
        return 0
    try:
        now = time.time()
        tasks = state.celery.tasks
        count = 0
        for pending in records.pending_keys():  # one per bucket on a Redis Cluster
            members = client.zrangebyscore(pending, 0, now, start=0, num=limit - count)
            for member in members:
                task_name, target, app_key, event_id = json.loads(member)
                # A consumer's later run (an escalation) has the event as it
                # got it; else the event as sent.
                later = (
                    escalation_records.escalation_key(task_name, target, event_id)
                    if isinstance(target, str)
                    else records.pending_event_key(event_id)
                )
                event_json = next(
                    (x for x in client.mget(later, records.pending_event_key(event_id)) if x),
                    None,
                )
                if event_json is None:  # older than the dedup TTL: give it up
                    client.zrem(pending, member)
                    continue
                task = tasks.get(task_name)
                if task is None:
                    continue
                client.zadd(pending, {member: now + delay})
                event_json = event_json.decode() if isinstance(event_json, bytes) else event_json
                task.apply_async((event_json, target, app_key), serializer="json")
                count += 1
            if count >= limit:
                break
        return count
    finally:
        client.delete(lock)


def sweep_forever(celery: Celery, stop: threading.Event) -> None:
    """Sweep every app bound to ``celery`` until ``stop`` is set.

    :param celery: the worker's Celery app.
    :param stop: set when the worker shuts down.
    """
    while not stop.is_set():
        interval = 5.0
        for app in bound_apps(celery):
            with app.app_context():
                after = float(app.config["NOTIFICATIONS_REDELIVER_AFTER"])
                interval = min(interval, max(after / 2, 0.25))
                try:
                    count = redeliver_pending(after)
                except Exception:  # noqa: BLE001 - Redis down: try again later
                    logger.debug("redelivery sweep failed", exc_info=True)
                    continue
                if count:
                    logger.warning("%d unfinished task(s) enqueued again", count)
                interval = min(interval, _sweep_model_outbox(app))
        stop.wait(interval)


def sweep_timers_forever(celery: Celery, stop: threading.Event) -> None:
    """Run the due timers of every app bound to ``celery`` until ``stop`` is set.

    :param celery: the worker's Celery app.
    :param stop: set when the worker shuts down.
    """
    from ..workflows.timers import sweep

    while not stop.is_set():
        interval = 5.0
        for app in bound_apps(celery):
            try:
                interval = min(interval, sweep(app))
            except Exception:  # noqa: BLE001 - the database is down: try again later
                logger.warning("timer sweep failed; trying again", exc_info=True)
                interval = min(interval, _TIMERS_FALLBACK)
        stop.wait(interval)


def _sweep_model_outbox(app: Flask) -> float:
    """Send the model events a dead web process left in the outbox; return
    how soon to sweep again."""
    extension = app.extensions["notifications"]
    config = app.config
    if not (config["NOTIFICATIONS_MODEL_OUTBOX"] and extension._model_events.has_hooks()):
        return 5.0
    after = float(config["NOTIFICATIONS_MODEL_OUTBOX_AFTER"])
    from .._state import get_state
    from ..errors import ConfigurationError
    from ..inbox.database import inbox_engine
    from ..inbox.model_outbox import sweep
    from ..inbox.models import model_outbox

    try:
        state = get_state(app)
        sweep(extension, inbox_engine(state, model_outbox), state.prefix, after)
    except ConfigurationError as exc:  # an outbox table to migrate: say so
        logger.warning("model outbox sweep: %s", exc)
    except Exception:  # noqa: BLE001 - the database is down: try again later
        logger.debug("model outbox sweep failed", exc_info=True)
    return max(after / 2, 0.25)


def start_sweeper(sender: Any = None, **_kwargs: Any) -> None:
    """``worker_ready`` receiver: each worker sweeps what the broker may have lost.

    :param sender: the worker's consumer (its ``app`` is the Celery app).
    """
    celery = getattr(sender, "app", None)
    if celery is None or not bound_apps(celery):
        return
    stop = celery.__dict__.setdefault(_SWEEPER_STOP, threading.Event())
    stop.clear()
    threading.Thread(
        target=sweep_forever, args=(celery, stop), name="notifications-sweeper", daemon=True
    ).start()
    threading.Thread(
        target=sweep_timers_forever, args=(celery, stop), name="notifications-timers", daemon=True
    ).start()


def stop_sweeper(sender: Any = None, **_kwargs: Any) -> None:
    """``worker_shutdown`` receiver: stop the sweeper.

    :param sender: the worker (its ``app`` is the Celery app).
    """
    stop = getattr(getattr(sender, "app", None), _SWEEPER_STOP, None)
    if stop is not None:
        stop.set()
