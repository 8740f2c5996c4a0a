"""What the views adding and removing the current user's push targets share:
the devices' (``<prefix>/devices``) and the browsers' subscriptions'
(``<prefix>/push-subscriptions``)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Response, jsonify

from .blueprint import error, json_body
from .errors import ConfigurationError, InvalidQueryError, PushSubscriptionConflict

logger = logging.getLogger("flask_notifications")


def add_for_current_user(
    add: Callable[[str, Any], tuple[int, bool]],
    service: str,
    answer: Callable[[Any], dict[str, Any]],
) -> Response:
    """Store the request's JSON body for the current user: ``201`` with its id
    and ``answer(body)`` when new, ``200`` when known; 409 for a
    :class:`PushSubscriptionConflict`, 400 for another :class:`InvalidQueryError`,
    500 (logged) for a :class:`ConfigurationError`.

    :param add: the store's ``add``.
    :param service: the name of the feature in the misconfiguration messages.
    :param answer: the fields of the answer beside ``id``, from the body.
    """
    identity, body, failure = json_body()
    if failure is not None:
        return failure
    try:
        row_id, created = add(identity, body)  # type: ignore[arg-type]
    except PushSubscriptionConflict as exc:
        return error(409, str(exc))
    except ConfigurationError as exc:
        logger.error("%s is misconfigured: %s", service, exc)
        return error(500, f"{service} is misconfigured on the server")
    except InvalidQueryError as exc:
        return error(400, str(exc))
    response = jsonify(id=row_id, **answer(body))
    response.status_code = 201 if created else 200
    return response


def remove_for_current_user(
    field: str, remove: Callable[[str, Any], bool], missing: str
) -> Response:
    """Delete the current user's row whose key is the body's ``field``: 204,
    400 naming a bad value (the store's :class:`InvalidQueryError`), or 404
    ``missing``.

    :param field: the body's member holding the key.
    :param remove: the store's ``remove``.
    :param missing: the 404's message.
    """
    identity, body, failure = json_body()
    if failure is not None:
        return failure
    value = body.get(field) if isinstance(body, dict) else None
    try:
        removed = remove(identity, value)  # type: ignore[arg-type]
    except InvalidQueryError as exc:
        return error(400, str(exc))
    if not removed:
        return error(404, missing)
    return Response(status=204)
