"""A production-style app factory behind nginx (see docs/deploying.rst).

Every process calls :func:`create_app`: each gunicorn process
(``gunicorn -k gevent 'examples.deploy.app:create_app()'``, or
``examples.deploy.wsgi:app``) and the Celery worker
(``celery -A examples.deploy.celery_app:celery worker``). Settings come from
the environment:

- ``REDIS_URL``: the Redis server of the notifications and of the Celery queue;
- ``SECRET_KEY``: signs the session cookie; the same in every process;
- ``TRUSTED_PROXIES``: how many proxies (nginx) stand in front of the app
  (default 1; 0 when clients connect to gunicorn directly);
- ``FLASK_<KEY>``: any other setting, e.g.
  ``FLASK_NOTIFICATIONS_REDIS_PREFIX=shop`` or
  ``FLASK_NOTIFICATIONS_STREAMS_PER_USER=200`` (Flask's
  :meth:`~flask.Config.from_prefixed_env`).

Two hubs: ``Inbox``, private (each signed-in user gets the messages sent to
them), and ``News``, public (everyone, signed in or not, gets its broadcasts).
``/login/<name>`` stands in for a real login view: it puts the name in the
signed session cookie, which is the identity of the user's streams.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from flask import Flask, abort, current_app, session
from werkzeug.middleware.proxy_fix import ProxyFix

from flask_notifications import Event, Notifications
from flask_notifications.consumers import PushConsumer
from flask_notifications.filters import WithEventType


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the application.

    :param config: settings applied last (tests); the environment otherwise.
    :raises RuntimeError: without a ``SECRET_KEY``.
    """
    app = Flask(__name__)
    app.config["NOTIFICATIONS_REDIS_URL"] = os.environ.get("REDIS_URL", "redis://localhost:6379/0")
    app.config["SECRET_KEY"] = os.environ.get("SECRET_KEY")
    # Streams per process: below gunicorn's worker_connections (gunicorn.conf.py).
    app.config["NOTIFICATIONS_MAX_STREAMS"] = 10_000
    app.config.from_prefixed_env()  # FLASK_NOTIFICATIONS_..., FLASK_SECRET_KEY
    app.config.update(config or {})
    if not app.config["SECRET_KEY"]:
        raise RuntimeError("set SECRET_KEY, the same in every process: it signs the sessions")

    # Behind nginx, the peer of every request is nginx itself: ProxyFix takes
    # the client's address and scheme from the headers nginx adds, trusting
    # exactly as many proxies as there are (a client can prepend forged
    # X-Forwarded-For entries, never append them). Anonymous streams are
    # counted per address (NOTIFICATIONS_STREAMS_PER_ADDRESS): without
    # ProxyFix, every anonymous client would count against nginx's address.
    proxies = int(os.environ.get("TRUSTED_PROXIES", "1"))
    if proxies:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies)  # type: ignore[method-assign]

    # One extension per app: its own Redis client and Celery app.
    notifications = Notifications(app)
    redis = notifications.redis

    # Private: a message reaches its recipients' streams; a broadcast (an
    # event without recipients) reaches every signed-in user's.
    inbox = notifications.create_hub("Inbox", readers=lambda user: user is not None)
    inbox.filter_by(WithEventType("message"))
    inbox.register_consumer(PushConsumer(redis, inbox.hub_id))

    news = notifications.create_hub("News", public=True)
    news.filter_by(WithEventType("news"))
    news.register_consumer(PushConsumer(redis, news.hub_id))

    @notifications.identity_loader
    def current_user() -> str | None:
        return session.get("user")  # None: anonymous

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"pid": os.getpid()}

    @app.get("/login/<name>")
    def login(name: str) -> dict[str, str]:
        session["user"] = name  # stands in for your real login view
        return {"user": name}

    @app.post("/logout")
    def logout() -> dict[str, None]:
        session.pop("user", None)
        return {"user": None}

    @app.post("/message/<recipient>")
    def message(recipient: str) -> dict[str, str]:
        """Send a private message from the signed-in user to ``recipient``."""
        sender = session.get("user")
        if sender is None:
            abort(401)
        event = Event(
            None, "message", f"From {sender}", "Hi!", sender=sender, recipients=[recipient]
        )
        sent = current_app.extensions["notifications"].send(event)
        return {"event_id": sent["event_id"]}

    return app
