"""The inbox HTTP API, on the extension's blueprint."""

from __future__ import annotations

import math

from flask import Blueprint, Response, current_app, jsonify, request

from .._state import get_state
from ..blueprint import decimal, error, identified
from ..errors import InvalidQueryError


def _number(name: str, default: float) -> float:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise InvalidQueryError(f"{name} must be a number, not {raw[:40]!r}") from None
    if not math.isfinite(value):
        raise InvalidQueryError(f"{name} must be a finite number, not {raw[:40]!r}")
    return value


def _integer(name: str, default: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    value = decimal(raw, 9)
    if value is None:
        raise InvalidQueryError(f"{name} must be a positive integer, not {raw[:40]!r}")
    return value


def _inbox():  # type: ignore[no-untyped-def]
    return get_state().extension.inbox


@identified
def since(identity: str) -> Response:
    """``GET <prefix>?since=<epoch>``: the tutorial's polling endpoint (at most
    ``NOTIFICATIONS_INBOX_MAX_PER_PAGE`` items, oldest first)."""
    limit = current_app.config["NOTIFICATIONS_INBOX_MAX_PER_PAGE"]
    return jsonify(_inbox().since(identity, _number("since", 0.0), limit=limit))


@identified
def inbox(identity: str) -> Response:
    """``GET <prefix>/inbox?page=1&per_page=20&unread=1``: newest first."""
    unread = request.args.get("unread", "0")
    if unread not in ("0", "1", "true", "false"):
        raise InvalidQueryError(f"unread must be 0 or 1, not {unread[:40]!r}")
    default = min(20, current_app.config["NOTIFICATIONS_INBOX_MAX_PER_PAGE"])
    page = _inbox().list(
        identity,
        page=_integer("page", 1),
        per_page=_integer("per_page", default),
        unread_only=unread in ("1", "true"),
    )
    return jsonify(page.to_dict())


@identified
def unread_count(identity: str) -> Response:
    """``GET <prefix>/unread-count``: ``{"unread": N}``."""
    return jsonify(unread=_inbox().unread_count(identity))


@identified
def mark_read(identity: str, notification_id: str) -> Response:
    """``POST <prefix>/<id>/read``: 204, or 404 when it is not the caller's."""
    number = decimal(notification_id, 18)
    if number is None:
        return error(
            400, f"a notification id must be a positive integer, not {notification_id[:40]!r}"
        )
    if not _inbox().mark_read(identity, number):
        return error(404, "no such notification")
    return Response(status=204)


@identified
def mark_all_read(identity: str) -> Response:
    """``POST <prefix>/read-all``: ``{"updated": N}``."""
    return jsonify(updated=_inbox().mark_all_read(identity))


def register(blueprint: Blueprint) -> None:
    """Add these routes to the extension's blueprint (by ``init_app``).

    :param blueprint: the blueprint being built.
    """
    blueprint.add_url_rule("", view_func=since, methods=["GET"])
    blueprint.add_url_rule("/inbox", view_func=inbox, methods=["GET"])
    blueprint.add_url_rule("/unread-count", view_func=unread_count, methods=["GET"])
    blueprint.add_url_rule("/<notification_id>/read", view_func=mark_read, methods=["POST"])
    blueprint.add_url_rule("/read-all", view_func=mark_all_read, methods=["POST"])
