"""``GET <prefix>/<event id>/deliveries``: the signed-in recipient's own
records of an event in the delivery log (see
:mod:`~flask_notifications.delivery.log`)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from ..blueprint import error, identified
from . import log as delivery_log


@identified
def deliveries(identity: str, event_id: str) -> Response:
    """``GET <prefix>/<event id>/deliveries``: ``{"deliveries": [...]}``, the
    caller's own records (see :func:`~flask_notifications.delivery.log.deliveries`
    for their shape). 404 when the caller has none, whether the event exists or
    not, so that event ids of others do not leak; a broadcast's ``"*"``
    records are no one's own."""
    mine = [r for r in delivery_log.deliveries(event_id) if r["recipient"] == identity]
    if not mine:
        return error(404, "no such event among your notifications")
    return jsonify(deliveries=mine)


def register(blueprint: Blueprint) -> None:
    """Add this route to the extension's blueprint (by ``init_app``).

    :param blueprint: the blueprint being built.
    """
    blueprint.add_url_rule("/<event_id>/deliveries", view_func=deliveries, methods=["GET"])
