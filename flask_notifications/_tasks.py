"""Celery glue: one task per consumer name, resolved in the app it runs in.

Tasks are registered with :func:`celery.shared_task`, so they reach every
Celery app of the process, including one created after the consumer was
registered. The task body captures nothing: it finds its consumer through
the Flask app it runs in (hub id from the message, consumer name = task
name, app key from the message: see :mod:`flask_notifications._celery`).
Several Flask apps in one process therefore never run each other's consumers.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from celery import Task, shared_task
from celery.signals import worker_ready, worker_shutdown
from celery.utils.time import get_exponential_backoff_interval
from flask import current_app, has_app_context

from . import reliability
from ._celery import bound_apps, flask_app_for
from ._state import get_state, has_state
from .event import Event
from .signals import consumer_failed, event_consumed

if TYPE_CHECKING:
    from celery import Celery
    from flask import Flask

logger = logging.getLogger("flask_notifications")

_registered: set[str] = set()
_registered_lock = threading.Lock()

#: The task that enqueues an event's consumer tasks when it has several.
FAN_OUT_TASK = "flask_notifications.fan_out"


class ConsumerTask(Task):  # type: ignore[misc]
    """Base of consumer tasks: runs inside a Flask application context.

    At least once: the message is acknowledged after the task ends
    (``acks_late``), and a worker killed mid-task leaves it to be delivered
    again (``reject_on_worker_lost``).
    """

    abstract = True
    ignore_result = True
    serializer = "json"
    acks_late = True
    reject_on_worker_lost = True

    def __call__(self, event_json: str, hub_id: str, app_key: str | None = None) -> Any:
        if has_app_context():
            return super().__call__(event_json, hub_id, app_key)
        with flask_app_for(self.app, app_key).app_context():
            return super().__call__(event_json, hub_id, app_key)


class AppTask(Task):  # type: ignore[misc]
    """Base of the library's helper tasks (e-mail digests...): the first
    argument is the Flask app's key, and the task runs in that app's context."""

    abstract = True
    ignore_result = True
    serializer = "json"
    acks_late = True
    reject_on_worker_lost = True

    def __call__(self, app_key: str | None, *args: Any, **kwargs: Any) -> Any:
        if has_app_context():
            return super().__call__(app_key, *args, **kwargs)
        with flask_app_for(self.app, app_key).app_context():
            return super().__call__(app_key, *args, **kwargs)


def _run_consumer(
    task: ConsumerTask, event_json: str, hub_id: str, app_key: str | None = None
) -> None:
    state = get_state() if has_state() else None
    hub = state.extension.get_hub_by_id(hub_id) if state is not None else None
    consumer = hub.get_consumer(task.name) if hub is not None else None
    if state is None or consumer is None:
        logger.warning("no consumer %r on hub %s in this process; event skipped", task.name, hub_id)
        return
    app = current_app._get_current_object()
    app_key = app_key or state.app_key
    try:
        event = Event.from_json(event_json)
    except ValueError as exc:  # cannot get better by retrying
        _give_up(task, consumer, hub, app_key, event_json, None, exc)
        return
    event_id = event["event_id"]
    if event.is_expired():
        logger.info("event %s expired before %r ran; skipped", event_id, task.name)
        reliability.finish_pending(task.name, hub_id, app_key, event_id)
        return
    if reliability.is_done(task.name, hub_id, event_id):
        logger.info("event %s already consumed by %r; redelivery skipped", event_id, task.name)
        reliability.finish_pending(task.name, hub_id, app_key, event_id)
        return
    try:
        consumer(event)
    except Exception as exc:
        retries = task.request.retries
        if isinstance(exc, consumer.retry_for) and retries < consumer.max_retries:
            countdown = get_exponential_backoff_interval(
                consumer.retry_backoff, retries, consumer.retry_backoff_max, consumer.retry_jitter
            )
            logger.warning(
                "consumer %r failed on event %s (%s); retry %d/%d in %ss",
                task.name, event_id, exc, retries + 1, consumer.max_retries, countdown,
            )  # fmt: skip
            later = time.time() + countdown + current_app.config["NOTIFICATIONS_REDELIVER_AFTER"]
            reliability.postpone_pending(task.name, hub_id, app_key, event_id, later)
            raise task.retry(
                exc=exc, countdown=countdown, max_retries=consumer.max_retries
            ) from exc
        _give_up(task, consumer, hub, app_key, event_json, event, exc)
        return
    ttl = current_app.config["NOTIFICATIONS_DEDUP_TTL"]
    reliability.mark_done(task.name, hub_id, app_key, event_id, ttl)
    event_consumed.send(app, event=event, hub=hub, consumer=consumer)


def _give_up(
    task: ConsumerTask,
    consumer: Any,
    hub: Any,
    app_key: str,
    event_json: str,
    event: Event | None,
    exc: BaseException,
) -> None:
    """Record a task that failed for good: log, dead letter, signal."""
    event_id = event["event_id"] if event is not None else "?"
    logger.error(
        "consumer %r failed for good on event %s of hub %s: %s; kept as a dead letter",
        task.name, event_id, hub.hub_id, exc, exc_info=exc,
    )  # fmt: skip
    reliability.add_dead_letter(task.name, hub.hub_id, app_key, event_json, exc)
    if event is not None:
        reliability.finish_pending(task.name, hub.hub_id, app_key, event["event_id"])
    consumer_failed.send(
        current_app._get_current_object(), event=event, hub=hub, consumer=consumer, exception=exc
    )


def celery_expiry(event: Event) -> datetime | None:
    """The event's ``expiration_datetime`` for Celery's ``expires=`` (aware;
    a naive one means local time), or ``None``.

    :param event: the event.
    """
    expires: datetime | None = event["expiration_datetime"]
    if expires is not None and expires.tzinfo is None:
        expires = expires.astimezone()
    return expires


def _fan_out(
    task: ConsumerTask, event_json: str, targets: list[list[str]], app_key: str | None = None
) -> None:
    """Enqueue one consumer task per ``[hub id, task name]`` of ``targets``.

    ``send()`` enqueues this one task instead of one per consumer, so a
    request pays for a single enqueue however many consumers an event has.
    The consumer tasks enter the outbox before this task leaves it (one
    transaction), so a worker dying half way loses nothing: the broker
    delivers this task again, or the sweeper enqueues the consumer tasks, and
    completion records keep any consumer from running twice.
    """
    app_key = app_key or get_state().app_key
    event = Event.from_json(event_json)  # validated by send(): cannot fail here
    event_id = event["event_id"]
    if event.is_expired():
        logger.info("event %s expired before its consumer tasks were enqueued", event_id)
        reliability.finish_pending(task.name, targets, app_key, event_id)
        return
    due = time.time() + current_app.config["NOTIFICATIONS_REDELIVER_AFTER"]
    reliability.hand_over(task.name, targets, app_key, event_id, due)
    expires = celery_expiry(event)
    tasks = task.app.tasks
    for hub_id, name in targets:
        consumer_task = tasks.get(name)
        if consumer_task is None:  # the worker does not import that consumer
            logger.warning("no task %r in this worker; event %s skipped for it", name, event_id)
            reliability.finish_pending(name, hub_id, app_key, event_id)
            continue
        consumer_task.apply_async((event_json, hub_id, app_key), expires=expires, serializer="json")


def ensure_task(name: str) -> None:
    """Register the consumer task ``name`` on every Celery app (once per process).

    :param name: the task name, e.g. ``"app.write_to_file"``.
    """
    with _registered_lock:
        if name in _registered:
            return
        _registered.add(name)
    shared_task(name=name, base=ConsumerTask, bind=True)(_run_consumer)


def install() -> None:
    """Register the library's own tasks and the workers' sweeper (once per
    process). Called by ``init_app``: importing the package registers nothing."""
    with _registered_lock:
        if FAN_OUT_TASK in _registered:
            return
        _registered.add(FAN_OUT_TASK)
    shared_task(name=FAN_OUT_TASK, base=ConsumerTask, bind=True)(_fan_out)
    worker_ready.connect(_start_sweeper, weak=False, dispatch_uid="flask_notifications.sweeper")
    worker_shutdown.connect(_stop_sweeper, weak=False, dispatch_uid="flask_notifications.sweeper")
    from .consumers._digest import install_digest_task

    install_digest_task()


# -- the redelivery sweeper, in worker processes ------------------------------------


def _sweep_forever(celery: Celery, stop: threading.Event) -> None:
    while not stop.is_set():
        interval = 5.0
        for app in bound_apps(celery):
            with app.app_context():
                after = float(app.config["NOTIFICATIONS_REDELIVER_AFTER"])
                interval = min(interval, max(after / 2, 0.25))
                try:
                    count = reliability.redeliver_pending(after)
                except Exception:  # noqa: BLE001 - Redis down: try again later
                    logger.debug("redelivery sweep failed", exc_info=True)
                    continue
                if count:
                    logger.warning("%d unfinished consumer task(s) enqueued again", count)
                interval = min(interval, _sweep_model_outbox(app))
        stop.wait(interval)


def _sweep_model_outbox(app: Flask) -> float:
    """Send the model events a dead web process left in the outbox; return
    how soon to sweep again."""
    extension = app.extensions["notifications"]
    config = app.config
    if not (config["NOTIFICATIONS_MODEL_OUTBOX"] and extension._model_events.has_hooks()):
        return 5.0
    after = float(config["NOTIFICATIONS_MODEL_OUTBOX_AFTER"])
    from .inbox.database import get_engine
    from .inbox.model_outbox import sweep

    try:
        sweep(extension, get_engine(), after)
    except Exception:  # noqa: BLE001 - the database is down: try again later
        logger.debug("model outbox sweep failed", exc_info=True)
    return max(after / 2, 0.25)


_SWEEPER_STOP = "flask_notifications_sweeper_stop"


def _start_sweeper(sender: Any = None, **_kwargs: Any) -> None:
    """Each worker sweeps the pending tasks the broker may have lost."""
    celery = getattr(sender, "app", None)
    if celery is None or not bound_apps(celery):
        return
    stop = celery.__dict__.setdefault(_SWEEPER_STOP, threading.Event())
    stop.clear()
    threading.Thread(
        target=_sweep_forever, args=(celery, stop), name="notifications-sweeper", daemon=True
    ).start()


def _stop_sweeper(sender: Any = None, **_kwargs: Any) -> None:
    stop = getattr(getattr(sender, "app", None), _SWEEPER_STOP, None)
    if stop is not None:
        stop.set()
