"""The devices' HTTP API, on the extension's blueprint.

- ``POST <prefix>/devices``: ``{"platform": "ios" | "android", "token": ...}``
  registers the current user's device: 201 new, 200 known (updated, and moved
  to the current user if it was another's), 400 for a bad field;
- ``GET <prefix>/devices``: ``{"devices": [{"id", "platform", "token"}, ...]}``,
  the current user's devices;
- ``DELETE <prefix>/devices``: ``{"token": ...}``: 204, or 404.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify

from .._state import get_state
from ..blueprint import error, identified, json_body
from ..errors import ConfigurationError, InvalidQueryError

logger = logging.getLogger("flask_notifications")


def add_device() -> Response:
    """``POST <prefix>/devices`` with ``{"platform", "token"}``: ``201 {"id",
    "platform", "token"}`` for a new device, ``200`` for a known token
    (updated; a token registered by another user moves to the current one);
    400 naming the bad field."""
    identity, body, failure = json_body()
    if failure is not None:
        return failure
    devices = get_state().extension.devices
    try:
        device_id, created = devices.add(identity, body)  # type: ignore[arg-type]
    except ConfigurationError as exc:
        logger.error("mobile push is misconfigured: %s", exc)
        return error(500, "mobile push is misconfigured on the server")
    except InvalidQueryError as exc:
        return error(400, str(exc))
    response = jsonify(id=device_id, platform=body["platform"], token=body["token"])  # type: ignore[index]
    response.status_code = 201 if created else 200
    return response


@identified
def list_devices(identity: str) -> Response:
    """``GET <prefix>/devices``: the current user's devices, by id."""
    devices = get_state().extension.devices.for_user(identity)
    return jsonify(devices=[d.info() for d in devices])


def remove_device() -> Response:
    """``DELETE <prefix>/devices`` with ``{"token": ...}``: 204, or 404 when
    the current user has no device with that token."""
    identity, body, failure = json_body()
    if failure is not None:
        return failure
    token = body.get("token") if isinstance(body, dict) else None
    try:
        removed = get_state().extension.devices.remove(identity, token)  # type: ignore[arg-type]
    except InvalidQueryError as exc:
        return error(400, str(exc))
    if not removed:
        return error(404, "no such device")
    return Response(status=204)


def register(blueprint: Blueprint) -> None:
    """Add these routes to the extension's blueprint (by ``init_app``).

    :param blueprint: the blueprint being built.
    """
    blueprint.add_url_rule("/devices", view_func=add_device, methods=["POST"])
    blueprint.add_url_rule("/devices", view_func=list_devices, methods=["GET"])
    blueprint.add_url_rule("/devices", view_func=remove_device, methods=["DELETE"])
