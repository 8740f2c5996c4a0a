"""Celery task classes and names: what every delivery task shares.

- :class:`ConsumerTask` runs the event task and the consumer tasks, inside
  the Flask app named by the message's app key (see
  :mod:`flask_notifications.delivery.apps`), acknowledged late.
- :class:`AppTask` runs the library's helper tasks (e-mail digests).
- :func:`running_consumer` tells a consumer which name it runs under while
  the worker runs it (an event task runs several consumers).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import datetime
from typing import TYPE_CHECKING, Any

from celery import Task
from flask import has_app_context

from .apps import ForeignTask, flask_app_for

if TYPE_CHECKING:
    from ..event import Event

#: The event task: runs the consumers of one event (args: the event's JSON,
#: its ``[hub id, consumer name]`` targets, the app key).
EVENT_TASK = "flask_notifications.deliver"
#: The event task's name before 0.2 (when it only enqueued one task per
#: consumer): still registered, so messages and outbox records left by an
#: older version run.
FAN_OUT_TASK = "flask_notifications.fan_out"

logger = logging.getLogger("flask_notifications")

#: Seconds before a task of another app (see :class:`~.apps.ForeignTask`) is
#: put back in the queue, for a worker of its own app to take.
FOREIGN_DELAY = 2.0

_running: ContextVar[str | None] = ContextVar("flask_notifications_consumer", default=None)


class ConsumerTask(Task):  # type: ignore[misc]
    """Base of the event task and of the consumer tasks: runs inside a Flask
    application context.

    At least once: the message is acknowledged after the task ends
    (``acks_late``), and a worker killed mid-task leaves it to be delivered
    again (``reject_on_worker_lost``).
    """

    abstract = True
    ignore_result = True
    serializer = "json"
    acks_late = True
    reject_on_worker_lost = True

    def __call__(self, event_json: str, target: Any, app_key: str | None = None) -> Any:
        if has_app_context():
            return super().__call__(event_json, target, app_key)
        try:
            app = flask_app_for(self.app, app_key)
        except ForeignTask as exc:
            return _hand_back(self, (event_json, target, app_key), exc)
        with app.app_context():
            return super().__call__(event_json, target, app_key)


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
        try:
            app = flask_app_for(self.app, app_key)
        except ForeignTask as exc:
            return _hand_back(self, (app_key, *args), exc, kwargs)
        with app.app_context():
            return super().__call__(app_key, *args, **kwargs)


def _hand_back(
    task: Task, args: tuple[Any, ...], exc: ForeignTask, kwargs: dict[str, Any] | None = None
) -> None:
    """Put a task of another app back in the queue, a little later, for a
    worker of that app: never run it with this app's hubs and consumers.
    (Rejecting it for an immediate requeue would spin when only this app's
    workers are up.)"""
    logger.warning("%s; %s handed back to the queue", exc, task.name)
    task.apply_async(args, kwargs or None, countdown=FOREIGN_DELAY, serializer="json")


@contextlib.contextmanager
def consumer_running(name: str) -> Iterator[None]:
    """Mark ``name`` as the consumer the worker runs now (see :func:`running_consumer`).

    :param name: the consumer's task name on its hub.
    """
    token = _running.set(name)
    try:
        yield
    finally:
        _running.reset(token)


def running_consumer() -> str | None:
    """The task name of the consumer the worker is running in this context, or
    ``None`` outside one. Consumers key their delivery records by it."""
    return _running.get()


def args_repr(event_id: str, target: Any, app_key: str) -> str:
    """What a task message shows of its arguments (Celery's ``argsrepr``, seen
    by monitoring tools): the event id, not the event, which may be personal
    and is long to format for every message.

    :param event_id: the event's id.
    :param target: the hub id, or the event task's targets.
    :param app_key: the Flask app's key.
    """
    where = target if isinstance(target, str) else f"{len(target)} consumers"
    return f"(<event {event_id}>, {where!r}, {app_key!r})"


def celery_expiry(event: Event) -> datetime | None:
    """The event's ``expiration_datetime`` for Celery's ``expires=`` (aware;
    a naive one means local time), or ``None``.

    :param event: the event.
    """
    expires: datetime | None = event["expiration_datetime"]
    if expires is not None and expires.tzinfo is None:
        expires = expires.astimezone()
    return expires
