"""The Web Push HTTP API and the service worker, on the extension's blueprint.

- ``GET <prefix>/service-worker.js``: the service worker (shows the pushed
  notifications, opens their URL on click);
- ``GET <prefix>/push-subscriptions/key``: ``{"public_key": ...}``, the VAPID
  public key, or 404 when Web Push is not configured;
- ``POST <prefix>/push-subscriptions``: store the current user's browser
  subscription (``PushSubscription.toJSON()``): 201 new, 200 updated, 400
  for a bad field or a refused endpoint, 409 for another user's endpoint;
- ``DELETE <prefix>/push-subscriptions``: ``{"endpoint": ...}``: 204, or 404.
"""

from __future__ import annotations

import logging
import os

from flask import Blueprint, Response, current_app, jsonify, request, send_from_directory

from .._push_views import add_for_current_user, remove_for_current_user
from .._state import get_state
from ..blueprint import error
from ..errors import ConfigurationError
from .keys import public_key_from_config

logger = logging.getLogger("flask_notifications")

_STATIC = os.path.join(os.path.dirname(os.path.dirname(__file__)), "static")
#: The service worker's file, in the package's ``static`` folder.
SERVICE_WORKER = "flask_notifications_sw.js"


def service_worker() -> Response:
    """``GET <prefix>/service-worker.js``: the service worker script.

    Its default scope is ``<prefix>/`` (a worker's scope cannot be wider than
    its own directory); the ``Service-Worker-Allowed`` header lets a page
    register it for the whole application (``scope: "/"``).
    """
    response = send_from_directory(_STATIC, SERVICE_WORKER, mimetype="text/javascript")
    response.headers["Service-Worker-Allowed"] = (request.script_root or "") + "/"
    # Browsers check for a new worker at most daily; never serve a stale one.
    response.headers["Cache-Control"] = "no-cache"
    return response


def push_public_key() -> Response:
    """``GET <prefix>/push-subscriptions/key``: ``{"public_key": "<base64url>"}``,
    the ``applicationServerKey`` browsers subscribe with; 404 when no VAPID
    key is configured."""
    try:
        key = public_key_from_config(current_app.config)
    except ConfigurationError as exc:
        logger.error("Web Push is misconfigured: %s", exc)
        return error(500, "Web Push is misconfigured on the server")
    if key is None:
        return error(404, "Web Push is not configured (no VAPID key)")
    return jsonify(public_key=key)


def add_push_subscription() -> Response:
    """``POST <prefix>/push-subscriptions`` with the JSON of
    ``PushSubscription.toJSON()``: ``201 {"id", "endpoint"}`` for a new
    subscription, ``200`` when the endpoint was known (updated; it moves to
    the current user only with the same keys); 400 naming the bad field or
    why the endpoint is refused (not ``https``, not a public address, not an
    allowed push service); 409 when the endpoint is another user's with other
    keys."""
    return add_for_current_user(
        get_state().extension.push_subscriptions.add,
        "Web Push",
        lambda body: {"endpoint": body["endpoint"]},
    )


def remove_push_subscription() -> Response:
    """``DELETE <prefix>/push-subscriptions`` with ``{"endpoint": ...}``: 204,
    or 404 when the current user has no subscription with that endpoint."""
    return remove_for_current_user(
        "endpoint", get_state().extension.push_subscriptions.remove, "no such push subscription"
    )


def register(blueprint: Blueprint) -> None:
    """Add these routes to the extension's blueprint (by ``init_app``).

    :param blueprint: the blueprint being built.
    """
    blueprint.add_url_rule("/service-worker.js", view_func=service_worker, methods=["GET"])
    blueprint.add_url_rule("/push-subscriptions/key", view_func=push_public_key, methods=["GET"])
    blueprint.add_url_rule("/push-subscriptions", view_func=add_push_subscription, methods=["POST"])
    blueprint.add_url_rule(
        "/push-subscriptions", view_func=remove_push_subscription, methods=["DELETE"]
    )
