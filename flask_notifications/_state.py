"""Per-application state, stored in ``app.extensions["notifications"]``."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flask import current_app

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
    redis: Any
    backend_class: type[Backend]
    #: This process's dispatcher, started by the first stream.
    dispatcher: Dispatcher | None = None
    #: The inbox's SQLAlchemy engine, built on first use.
    engine: Any = None
    #: A backend for direct publishing (unread counts), built on first use.
    publisher: Backend | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


def get_state() -> State:
    """Return the current app's state.

    :raises RuntimeError: outside an app context, or if the extension is not
        registered on the current app.
    """
    state = current_app.extensions.get("notifications")
    if state is None:
        raise RuntimeError(
            "Flask-Notifications is not initialised on this app: call "
            "Notifications(app) or notifications.init_app(app) first"
        )
    return state  # type: ignore[no-any-return]
