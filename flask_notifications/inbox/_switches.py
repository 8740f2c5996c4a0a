"""What :class:`~flask_notifications.inbox.Preferences` writes, and the checks
of its partial updates' JSON (private helpers)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, delete, func, select

from ..errors import InvalidQueryError
from .database import insert_ignore
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
