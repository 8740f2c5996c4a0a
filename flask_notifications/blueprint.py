"""The extension's blueprint: streams, the inbox API, preferences, Web Push, mobile devices and
the JS client.

:func:`make_blueprint` builds a new blueprint for each app in
:meth:`Notifications.init_app <flask_notifications.Notifications.init_app>`,
registered at ``NOTIFICATIONS_URL_PREFIX`` (default ``/notifications``) unless
``NOTIFICATIONS_REGISTER_BLUEPRINT`` is false. Importing the package adds no
route anywhere.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from .errors import InvalidQueryError


def make_blueprint() -> Blueprint:
    """A new ``notifications`` blueprint with every route of the extension."""
    from .delivery import views as delivery_views
    from .inbox import preference_views
    from .inbox import views as inbox_views
    from .mobile import views as mobile_views
    from .stream import views as stream_views
    from .webpush import views as webpush_views

    blueprint = Blueprint(
        "notifications", __name__, static_folder="static", static_url_path="/static"
    )
    for views in (
        stream_views,
        inbox_views,
        preference_views,
        delivery_views,
        webpush_views,
        mobile_views,
    ):
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


class BodyTooLarge(InvalidQueryError):
    """A request body over ``NOTIFICATIONS_MAX_BODY_BYTES`` (answered 413)."""


def read_json() -> Any:
    """The request's JSON body, read with a size cap and without recursion
    limits turning into a 500.

    :raises BodyTooLarge: beyond ``NOTIFICATIONS_MAX_BODY_BYTES``.
    :raises InvalidQueryError: for a body that is not JSON (or nests too deep).
    """
    limit = current_app.config["NOTIFICATIONS_MAX_BODY_BYTES"]
    length = request.content_length
    if length is not None and length > limit:
        raise BodyTooLarge(f"the request body is larger than {limit} bytes")
    raw = request.stream.read(limit + 1)
    if len(raw) > limit:
        raise BodyTooLarge(f"the request body is larger than {limit} bytes")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: "[" * 100000
        raise InvalidQueryError("the request body must be a JSON document") from None


def decimal(text: str, digits: int) -> int | None:
    """``text`` as a non-negative integer of at most ``digits`` ASCII digits,
    else ``None`` (``"²".isdigit()`` is true, but ``int("²")`` fails).

    :param text: from a URL or query string.
    :param digits: the most digits accepted.
    """
    if text.isascii() and text.isdigit() and len(text) <= digits:
        return int(text)
    return None
