"""What :class:`~flask_notifications.inbox.Preferences` writes, and the checks
of its partial updates' JSON (private helpers)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import current_app
from sqlalchemy import Connection, delete, func, select

from ..errors import CriticalCategoryError, InvalidQueryError
from .database import insert_ignore
from .digests import DIGEST_CHANNELS, DigestSchedule, check_schedule
from .models import category_preferences as categories_table
from .models import preferences as table


def boolean(value: object, where: str) -> bool:
    """``value`` if it is a boolean, else a clear error naming ``where``."""
    if not isinstance(value, bool):
        raise InvalidQueryError(f"{where} must be true or false, not {repr(value)[:60]}")
    return value


def mapping(value: object, where: str) -> Mapping[str, Any]:
    """``value`` if it is a mapping (a JSON object), else a clear error."""
    if not isinstance(value, Mapping):
        raise InvalidQueryError(f"{where} must be a JSON object, not {type(value).__name__}")
    return value


def only(value: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    """Refuse keys of ``value`` outside ``allowed``."""
    unknown = [k for k in value if k not in allowed]
    if unknown:
        raise InvalidQueryError(
            f"{where}: unknown key {repr(unknown[0])[:60]} (expected {', '.join(allowed)})"
        )


def set_type(conn: Connection, uid: str, event_type: str, channel: str, enabled: bool) -> None:
    """Opt ``uid`` in or out of ``event_type`` (``"*"``: the channel) on ``channel``."""
    condition = (
        table.c.recipient == uid,
        table.c.event_type == event_type,
        table.c.channel == channel,
    )
    if enabled:
        conn.execute(delete(table).where(*condition))
    else:
        insert_ignore(
            conn, table, [{"recipient": uid, "event_type": event_type, "channel": channel}]
        )


def set_category(
    conn: Connection, uid: str, category: str, channel: str, enabled: bool, limit: int
) -> None:
    """Turn ``category`` on or off for ``uid`` on ``channel``; at most
    ``limit`` categories off per user."""
    t = categories_table
    condition = (t.c.recipient == uid, t.c.channel == channel, t.c.category == category)
    if enabled:
        conn.execute(delete(t).where(*condition))
        return
    if conn.execute(select(func.count()).select_from(t).where(*condition)).scalar():
        return
    count = conn.execute(select(func.count()).select_from(t).where(t.c.recipient == uid)).scalar()
    if (count or 0) >= limit:
        raise InvalidQueryError(f"at most {limit} categories can be turned off per user")
    insert_ignore(conn, t, [{"recipient": uid, "channel": channel, "category": category}])


def operations(changes: object) -> list[tuple[str, str, Any, Any]]:
    """Check a partial update; return ``(kind, channel, name, value)``
    operations, ``kind`` being ``"type"``, ``"category"`` or ``"digest"``
    (the body of :meth:`Preferences.update
    <flask_notifications.inbox.Preferences.update>`)."""
    # Imported here: preferences imports this module.
    from .preferences import ANY_TYPE, _category, _check, check_channel, is_critical

    changes = mapping(changes, "the preferences")
    only(changes, ("channels", "categories", "critical_categories"), "the preferences")
    known = current_app.config.get("NOTIFICATIONS_CATEGORIES")
    operations: list[tuple[str, str, Any, Any]] = []
    for channel, parts in mapping(changes.get("channels", {}), "channels").items():
        check_channel(channel)
        where = f"channels.{channel}"
        parts = mapping(parts, where)
        keys = ("enabled", "categories", "event_types")
        only(parts, keys + ("digest",) if channel in DIGEST_CHANNELS else keys, where)
        if "digest" in parts:
            operations.append(("digest", channel, None, _digest(parts["digest"], where)))
        if "enabled" in parts:
            enabled = boolean(parts["enabled"], f"{where}.enabled")
            operations.append(("type", channel, ANY_TYPE, enabled))
        for category, value in mapping(parts.get("categories", {}), f"{where}.categories").items():
            category = _category(category)
            enabled = boolean(value, f"{where}.categories.{category}")
            if not enabled and is_critical(category):
                raise CriticalCategoryError(
                    f"{category!r} is a critical category (NOTIFICATIONS_CRITICAL_CATEGORIES): "
                    "it cannot be turned off"
                )
            if known is not None and category not in known and not is_critical(category):
                raise InvalidQueryError(
                    f"unknown category {category!r} (NOTIFICATIONS_CATEGORIES lists "
                    f"{', '.join(known) or 'none'})"
                )
            operations.append(("category", channel, category, enabled))
        types = mapping(parts.get("event_types", {}), f"{where}.event_types")
        for event_type, value in types.items():
            _check(event_type, channel)
            enabled = boolean(value, f"{where}.event_types.{event_type[:40]}")
            operations.append(("type", channel, event_type, enabled))
    return operations


def _digest(value: object, where: str) -> DigestSchedule | None:
    if value is None:
        return None
    value = mapping(value, f"{where}.digest")
    only(value, ("frequency", "hour", "weekday", "timezone"), f"{where}.digest")
    return check_schedule(
        value.get("frequency"),
        value.get("hour", 8),
        value.get("weekday", 0),
        value.get("timezone", "UTC"),
    )
