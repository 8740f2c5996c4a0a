"""The extension's blueprint: streams, the inbox API, Web Push and the JS client.

:func:`make_blueprint` builds a new blueprint for each app in
:meth:`Notifications.init_app <flask_notifications.Notifications.init_app>`,
registered at ``NOTIFICATIONS_URL_PREFIX`` (default ``/notifications``) unless
``NOTIFICATIONS_REGISTER_BLUEPRINT`` is false. Importing the package adds no
route anywhere.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify


def make_blueprint() -> Blueprint:
    """A new ``notifications`` blueprint with every route of the extension."""
    from .inbox import views as inbox_views
    from .stream import views as stream_views
    from .webpush import views as webpush_views

    blueprint = Blueprint(
        "notifications", __name__, static_folder="static", static_url_path="/static"
    )
    for views in (stream_views, inbox_views, webpush_views):
        views.register(blueprint)
    return blueprint


def error(status: int, message: str) -> Response:
    """A JSON error response: ``{"error": message}``.

    :param status: the HTTP status.
    :param message: what is wrong.
    """
    response = jsonify(error=message)
    response.status_code = status
    return response
