"""The extension's blueprint: streams, the inbox API and the JS client.

Registered by :meth:`Notifications.init_app <flask_notifications.Notifications.init_app>`
at ``NOTIFICATIONS_URL_PREFIX`` (default ``/notifications``) unless
``NOTIFICATIONS_REGISTER_BLUEPRINT`` is false.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

blueprint = Blueprint("notifications", __name__, static_folder="static", static_url_path="/static")


def error(status: int, message: str) -> Response:
    """A JSON error response: ``{"error": message}``.

    :param status: the HTTP status.
    :param message: what is wrong.
    """
    response = jsonify(error=message)
    response.status_code = status
    return response
