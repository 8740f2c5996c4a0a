"""Per-application state, kept by the extension for each app it is registered on.

``app.extensions["notifications"]`` is the :class:`~flask_notifications.Notifications`
object itself (as in the original project and Flask-SQLAlchemy 3); what
belongs to one app (its Celery app, Redis clients, dispatcher, database
engine) is a :class:`State` the extension keeps per app, never in a module
global and never keyed by ``app.name``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app, has_app_context

if TYPE_CHECKING:
    from celery import Celery

    from .extension import Notifications
    from .pubsub.backend import Backend
    from .stream.dispatcher import Dispatcher


@dataclass(eq=False)
class State:
    """What one Flask app needs: built once by ``init_app``, never per request."""

    extension: Notifications
    celery: Celery
    #: The library's client: a Redis client on a pool the library sized itself
    #: (built from the settings of a client given as ``broker=``), or the
    #: broker object as given when it is not a plain Redis client.
    redis: Any
    backend_class: type[Backend]
    #: Namespace of every Redis key and channel (``NOTIFICATIONS_REDIS_PREFIX``).
    prefix: str
    #: Tells this app apart in task messages: its prefix and name, the same in
    #: the web process and the worker that imports the same app.
    app_key: str
    #: The client passed as ``init_app(broker=...)``, or ``None``.
    broker: Any = None
    #: This process's dispatcher, started by the first stream.
    dispatcher: Dispatcher | None = None
    #: The inbox's SQLAlchemy engine, built on first use.
    engine: Any = None
    #: Why each table of the inbox database that cannot be used (an old
    #: schema) cannot: table name -> the error's message.
    schema_errors: dict[str, str] = field(default_factory=dict)
    #: A backend for direct publishing (unread counts), built on first use.
    publisher: Backend | None = None
    #: Translation state (the package's Flask-Babel domain), built on first use.
    i18n: Any = None
    #: This app's Prometheus metrics (:class:`~flask_notifications.metrics.AppMetrics`),
    #: or ``None`` when they are off.
    metrics: Any = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def key(self, *parts: str) -> str:
        """A Redis key in this app's namespace: ``<prefix>:<part>:<part>...``.

        :param parts: the key's components.
        """
        return ":".join((self.prefix, *parts))


def get_state(app: Flask | None = None) -> State:
    """Return the state of ``app``, by default the current app.

    :param app: the Flask app; the current one when omitted.
    :raises RuntimeError: outside an app context without ``app``, or if the
        extension is not registered on the app.
    """
    if app is None:
        if not has_app_context():
            raise RuntimeError(
                "Flask-Notifications needs an application context here: use "
                "`with app.app_context():`, or bind the extension to one app"
            )
        app = current_app._get_current_object()  # type: ignore[attr-defined]
    extension = app.extensions.get("notifications")
    state = extension._states.get(app) if extension is not None else None
    if state is None:
        raise RuntimeError(
            "Flask-Notifications is not initialised on this app: call "
            "Notifications(app) or notifications.init_app(app) first"
        )
    return state  # type: ignore[no-any-return]


def has_state() -> bool:
    """Whether the current app (if any) has the extension registered."""
    if not has_app_context():
        return False
    extension = current_app.extensions.get("notifications")
    return extension is not None and current_app._get_current_object() in extension._states  # type: ignore[attr-defined]
