"""Celery glue: one task per consumer name, resolved in the app it runs in.

Tasks are registered with :func:`celery.shared_task`, so they reach every
Celery app of the process, including one created after the consumer was
registered. The task body captures nothing: it finds its consumer through
the Flask app it runs in (hub id from the message, consumer name = task
name). Several Flask apps sharing Celery's process-global *current* app
(Flask-CeleryExt 0.5 configures that one) therefore never run each other's
consumers.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from celery import Task, shared_task
from flask import current_app, has_app_context

from .event import Event

if TYPE_CHECKING:
    from celery import Celery
    from flask import Flask

logger = logging.getLogger("flask_notifications")

_registered: set[str] = set()
_registered_lock = threading.Lock()

#: Attribute of a Celery app naming the Flask app its consumer tasks run in.
FLASK_APP_ATTR = "flask_notifications_app"


def bind_flask_app(celery: Celery, app: Flask) -> None:
    """Make ``celery``'s consumer tasks run in ``app``'s context (the last app wins).

    :param celery: the Celery app.
    :param app: the Flask app whose hubs the tasks look up.
    """
    setattr(celery, FLASK_APP_ATTR, app)


def _flask_app_for(celery: Celery) -> Flask:
    app = getattr(celery, FLASK_APP_ATTR, None) or getattr(celery, "flask_app", None)
    if app is None:
        raise RuntimeError(
            "this Celery app serves no Flask-Notifications app: call "
            "Notifications.init_app(app, celery=...) in the worker's process"
        )
    return app  # type: ignore[no-any-return]


class ConsumerTask(Task):  # type: ignore[misc]
    """Base of consumer tasks: runs inside a Flask application context."""

    abstract = True
    ignore_result = True
    serializer = "json"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if has_app_context():
            return super().__call__(*args, **kwargs)
        with _flask_app_for(self.app).app_context():
            return super().__call__(*args, **kwargs)


def _run_consumer(task: ConsumerTask, event_json: str, hub_id: str) -> None:
    state = current_app.extensions.get("notifications")
    hub = state.extension.get_hub_by_id(hub_id) if state is not None else None
    consumer = hub.get_consumer(task.name) if hub is not None else None
    if consumer is None:
        logger.warning("no consumer %r on hub %s in this process; event skipped", task.name, hub_id)
        return
    event = Event.from_json(event_json)
    if event.is_expired():
        logger.info("event %s expired before %r ran; skipped", event["event_id"], task.name)
        return
    consumer(event)


def ensure_task(name: str) -> None:
    """Register the consumer task ``name`` on every Celery app (once per process).

    :param name: the task name, e.g. ``"app.write_to_file"``.
    """
    with _registered_lock:
        if name in _registered:
            return
        _registered.add(name)
    shared_task(name=name, base=ConsumerTask, bind=True)(_run_consumer)
