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
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from ._state import get_state
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


def identified(view: Callable[..., Response]) -> Callable[..., Response]:
    """Run ``view(identity, ...)`` for the signed-in user: 401 JSON without
    one, 415 for a ``POST`` that is not JSON (a cross-site HTML form cannot
    send ``application/json``), 400 JSON naming the bad input when the view
    raises :class:`~flask_notifications.errors.InvalidQueryError`.

    :param view: the view, taking the identity first.
    """

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Response:
        identity = get_state().extension.current_identity()
        if identity is None:
            return error(401, "authentication is required")
        if request.method == "POST" and not request.is_json:
            return error(415, "POST requests must have Content-Type: application/json")
        try:
            return view(identity, *args, **kwargs)
        except InvalidQueryError as exc:
            return error(400, str(exc))

    return wrapper


def json_body() -> tuple[str | None, object, Response | None]:
    """The signed-in user and the request's JSON body (size-capped), or the
    error response to answer instead: 401 without a user, 415 for a body that
    is not ``application/json``, 413 too large, 400 not JSON."""
    identity = get_state().extension.current_identity()
    if identity is None:
        return None, None, error(401, "authentication is required")
    if not request.is_json:
        return None, None, error(415, "requests must have Content-Type: application/json")
    try:
        body = read_json()  # size-capped; deep nesting is a 400, not a RecursionError
    except BodyTooLarge as exc:
        return None, None, error(413, str(exc))
    except InvalidQueryError:
        return None, None, error(400, "the body is not valid JSON")
    return identity, body, None
