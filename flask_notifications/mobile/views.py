"""The devices' HTTP API, on the extension's blueprint.

- ``POST <prefix>/devices``: ``{"platform": "ios" | "android", "token": ...}``
  registers the current user's device: 201 new, 200 known (updated, and moved
  to the current user if it was another's), 400 for a bad field;
- ``GET <prefix>/devices``: ``{"devices": [{"id", "platform", "token"}, ...]}``,
  the current user's devices;
- ``DELETE <prefix>/devices``: ``{"token": ...}``: 204, or 404.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from .._push_views import add_for_current_user, remove_for_current_user
from .._state import get_state
from ..blueprint import identified


def add_device() -> Response:
    """``POST <prefix>/devices`` with ``{"platform", "token"}``: ``201 {"id",
    "platform", "token"}`` for a new device, ``200`` for a known token
    (updated; a token registered by another user moves to the current one);
    400 naming the bad field."""
    return add_for_current_user(
        get_state().extension.devices.add,
        "mobile push",
        lambda body: {"platform": body["platform"], "token": body["token"]},
    )


@identified
def list_devices(identity: str) -> Response:
    """``GET <prefix>/devices``: the current user's devices, by id."""
    devices = get_state().extension.devices.for_user(identity)
    return jsonify(devices=[d.info() for d in devices])


def remove_device() -> Response:
    """``DELETE <prefix>/devices`` with ``{"token": ...}``: 204, or 404 when
    the current user has no device with that token."""
    return remove_for_current_user("token", get_state().extension.devices.remove, "no such device")


def register(blueprint: Blueprint) -> None:
    """Add these routes to the extension's blueprint (by ``init_app``).

    :param blueprint: the blueprint being built.
    """
    blueprint.add_url_rule("/devices", view_func=add_device, methods=["POST"])
    blueprint.add_url_rule("/devices", view_func=list_devices, methods=["GET"])
    blueprint.add_url_rule("/devices", view_func=remove_device, methods=["DELETE"])
