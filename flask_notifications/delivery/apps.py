"""Celery wiring: one Celery app per Flask app, and which Flask app a task runs in.

Flask-CeleryExt's default factory configures Celery's *current* app, a
process global: with an app factory, the second ``create_app()`` rewrote the
first app's broker. The library therefore hands Flask-CeleryExt a factory
that builds a Celery app of its own for each Flask app.

Task messages carry the sending app's *key* (``"<prefix>/<name>"``, see
``State.app_key``), the same in
the web process and in the worker that imports the same app. Two Flask apps
sharing one Celery app are told apart by it; a Flask app with a Celery app of
its own needs nothing more.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from celery import Celery

from .._redis import celery_broker

if TYPE_CHECKING:
    from flask import Flask

#: Attribute of a Celery app: the Flask apps its tasks run in, by app key.
FLASK_APPS_ATTR = "flask_notifications_apps"

_CELERY_BROKER_KEYS = ("CELERY_BROKER_URL", "BROKER_URL", "broker_url")


def bind_flask_app(celery: Celery, app: Flask, app_key: str) -> None:
    """Let ``celery``'s tasks carrying ``app_key`` run in ``app``'s context.

    A task whose key is unknown runs in the newest app with the key's prefix
    (see :func:`flask_app_for`).

    :param celery: the Celery app.
    :param app: the Flask app whose hubs the tasks look up.
    :param app_key: the app's key.
    """
    apps = celery.__dict__.setdefault(FLASK_APPS_ATTR, {})
    apps.pop(app_key, None)  # re-insert so the newest binding is last
    apps[app_key] = app


def bound_apps(celery: Celery) -> list[Flask]:
    """The Flask apps bound to ``celery``, oldest first.

    :param celery: the Celery app.
    """
    return list(getattr(celery, FLASK_APPS_ATTR, {}).values())


class ForeignTask(LookupError):
    """A task message of an app this worker does not serve (another
    ``NOTIFICATIONS_REDIS_PREFIX``): two apps share a Celery queue."""


def _prefix_of(app_key: str) -> str:
    return app_key.rpartition("/")[0]


def flask_app_for(celery: Celery, app_key: str | None) -> Flask:
    """The Flask app a task of ``celery`` carrying ``app_key`` runs in: the
    app with that key; else the newest bound app with the key's prefix (a
    worker's app may be named differently from the web app: the prefix is
    what makes them one application); else, for a message without a key (an
    older sender), the newest bound app.

    :param celery: the task's Celery app.
    :param app_key: the key in the message, or ``None``.
    :raises ForeignTask: the key's prefix is none of the bound apps': the
        message belongs to another application, whose hubs and consumers it
        must never run with.
    :raises RuntimeError: if no Flask app is bound to ``celery``.
    """
    apps: dict[str, Flask] = getattr(celery, FLASK_APPS_ATTR, {})
    app = apps.get(app_key) if app_key is not None else None
    if app is None and apps:
        if app_key is None:
            app = next(reversed(apps.values()))
        else:
            prefix = _prefix_of(app_key)
            same = [a for key, a in apps.items() if _prefix_of(key) == prefix]
            if not same:
                raise ForeignTask(
                    f"a task of the app {app_key!r} reached a worker of "
                    f"{', '.join(map(repr, apps))}: apps that share a broker need a "
                    "queue each (CELERY_TASK_DEFAULT_QUEUE), see 'Several apps on one Redis'"
                )
            app = same[-1]
    if app is None:
        app = getattr(celery, "flask_app", None)  # set by Flask-CeleryExt
    if app is None:
        raise RuntimeError(
            "this Celery app serves no Flask-Notifications app: call "
            "Notifications.init_app(app, celery=...) in the worker's process"
        )
    return app


def celery_for(app: Flask) -> Celery:
    """The app's Flask-CeleryExt Celery app, or a new one made with
    Flask-CeleryExt for this app alone, with the notifications Redis as broker
    unless one is configured.

    :param app: the Flask app.
    :raises ConfigurationError: when no broker is configured and
        ``NOTIFICATIONS_REDIS_URL`` is a Redis Cluster.
    """
    existing = app.extensions.get("flask-celeryext")
    if existing is not None and existing.celery is not None:
        return unproxy(existing.celery)
    from flask_celeryext import FlaskCeleryExt

    config = app.config
    if not any(key in config for key in _CELERY_BROKER_KEYS):
        # The documentation's set-up: Redis carries both pub/sub and the Celery
        # queue (through kombu's Sentinel transport for a Sentinel URL; a Redis
        # Cluster cannot: ConfigurationError).
        url, options = celery_broker(config["NOTIFICATIONS_REDIS_URL"])
        config["CELERY_BROKER_URL"] = url
        if options:
            key = next(
                (
                    k
                    for k in ("broker_transport_options", "BROKER_TRANSPORT_OPTIONS")
                    if k in config
                ),
                "CELERY_BROKER_TRANSPORT_OPTIONS",
            )
            config[key] = {**options, **(config.get(key) or {})}
    config.setdefault("CELERY_ACCEPT_CONTENT", ["json"])
    config.setdefault("CELERY_TASK_SERIALIZER", "json")
    config.setdefault("CELERY_RESULT_SERIALIZER", "json")
    # Celery 5's behaviour, stated so workers do not warn that it will change.
    config.setdefault("broker_connection_retry_on_startup", True)
    return unproxy(FlaskCeleryExt(app, create_celery_app=_own_celery_app).celery)


def _own_celery_app(app: Flask) -> Celery:
    """Flask-CeleryExt's factory, minus the process global: a new Celery app
    configured from ``app`` (never Celery's current app, which another
    ``create_app()`` would reconfigure)."""
    from flask_celeryext._mapping import FLASK_TO_CELERY_MAPPING
    from flask_celeryext.app import AppContextTask, map_invenio_to_celery

    celery = Celery(app.import_name, set_as_current=False)
    celery.config_from_object(map_invenio_to_celery(app.config, FLASK_TO_CELERY_MAPPING))
    celery.Task = AppContextTask
    celery.flask_app = app  # type: ignore[attr-defined]
    return celery


def unproxy(celery: Any) -> Celery:
    """The Celery app behind ``celery`` when it is Celery's current-app proxy.

    :param celery: a Celery app or a proxy to one.
    """
    # Flask-CeleryExt hands out Celery's *current app* proxy: keep the object it
    # points to now, or a Celery app created later would silently take over.
    get = getattr(celery, "_get_current_object", None)
    return get() if get is not None else celery  # type: ignore[no-any-return]
