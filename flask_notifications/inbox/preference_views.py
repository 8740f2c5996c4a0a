"""The preferences' HTTP API, on the extension's blueprint.

- ``GET <prefix>/preferences``: the current user's preferences
  (:meth:`Preferences.get <flask_notifications.inbox.Preferences.get>`);
- ``PUT <prefix>/preferences``: a partial update of them
  (:meth:`Preferences.update <flask_notifications.inbox.Preferences.update>`),
  answered with the whole new document; 400 naming the bad part (nothing
  changed), 401 anonymous, 413 too large, 415 not JSON.

A user reads and changes their own preferences only: the user is the
extension's identity (``identity_loader`` or Flask-Login), never a field of
the request.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from .._state import get_state
from ..blueprint import error, identified, json_body
from ..errors import InvalidQueryError


@identified
def get_preferences(identity: str) -> Response:
    """``GET <prefix>/preferences``: the current user's preferences (400 for
    an identity that is no valid user id)."""
    return jsonify(get_state().extension.preferences.get(identity))


def put_preferences() -> Response:
    """``PUT <prefix>/preferences`` with a partial update: 200 with the new
    preferences; 400 naming what is wrong (a critical category turned off,
    an unknown channel, a value that is not a boolean...)."""
    identity, body, failure = json_body()
    if failure is not None:
        return failure
    try:
        return jsonify(get_state().extension.preferences.update(identity, body))  # type: ignore[arg-type]
    except InvalidQueryError as exc:
        return error(400, str(exc))


def register(blueprint: Blueprint) -> None:
    """Add these routes to the extension's blueprint (by ``init_app``).

    :param blueprint: the blueprint being built.
    """
    blueprint.add_url_rule("/preferences", view_func=get_preferences, methods=["GET"])
    blueprint.add_url_rule("/preferences", view_func=put_preferences, methods=["PUT"])
