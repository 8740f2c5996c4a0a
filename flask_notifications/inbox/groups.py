"""Grouped notifications: one unread inbox item per (recipient, group).

An event with a ``group`` (see :class:`~flask_notifications.event.Event`)
does not add a row per recipient when that recipient already has an unread
item of the group: it updates it (``count`` + 1, the latest title, body,
data, event id and time, the sender first among ``actors``). Once read, the
item stays as it is and the group's next event starts a new one.

Concurrency: a unique partial index on ``(recipient, group_key) WHERE read_at
IS NULL AND group_key IS NOT NULL`` and one ``INSERT ... ON CONFLICT DO
UPDATE`` per recipient. The database decides, atomically, between inserting
and updating: two workers storing events of one group at once never make two
unread items (the index forbids it) and never lose a count (the update
reads the row it changes, locked; on PostgreSQL the second waits for the
first to commit). Row locking (``SELECT ... FOR UPDATE``, then insert or
update) would not cover the first event of a group, when there is no row to
lock yet, and SQLite has no ``FOR UPDATE``. The actors are updated in the
same transaction, after the upsert: the row is locked by then (PostgreSQL's
row lock; SQLite's single writer), so their read-modify-write is safe too.
"""

from __future__ import annotations

import json
from typing import Any

from flask import current_app
from sqlalchemy import Connection, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from ..errors import ConfigurationError
from ..event import Event
from .models import GROUP_WHERE, group_actors
from .models import notifications as table

__all__ = [
    "forget_actors",
    "group_fields", "item_event_json", "publish_group_items", "store_grouped", "unread_group_items",
]  # fmt: skip

_CHUNK = 1000  # users per IN (...)

_UPSERT = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}
# Refreshed from the newest event when an item is updated.
_LATEST = (
    "event_id", "event_type", "name", "title", "body", "data", "icon", "client_action", "timestamp",
)  # fmt: skip


def store_grouped(
    conn: Connection, event: Event, users: list[str], common: dict[str, Any], data: Any
) -> list[str]:
    """Add ``event`` to each user's unread item of its group, or start one.

    :param conn: a connection inside a transaction (committed by the caller).
    :param event: the event; its ``group`` is set.
    :param users: the recipients, each once.
    :param common: the row's columns shared by every recipient.
    :param data: the event's JSON form, parsed.
    :returns: the users whose unread count changed (a new item): an update
        leaves the count as it was. A redelivered event that is already the
        newest of its item is not counted again, and changes nothing.
    """
    make = _UPSERT.get(conn.dialect.name)
    if make is None:
        name = conn.dialect.name
        raise ConfigurationError(
            f"grouped notifications need SQLite or PostgreSQL for the inbox, not {name}"
        )
    group = event["group"]
    sender = event["sender"]
    shown = int(current_app.config["NOTIFICATIONS_GROUP_ACTORS"])
    created: list[str] = []
    # Sorted: two events locking the same items lock them in the same order
    # (no deadlock on PostgreSQL).
    for user in sorted(users):
        stmt = make(table).values(
            dict(
                common,
                recipient=user,
                data=dict(data, recipients=[user]),
                group_key=group,
                count=1,
                actors=[sender] if sender else [],
                actor_count=1 if sender else 0,
            )
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[table.c.recipient, table.c.group_key],
            index_where=GROUP_WHERE,
            set_={"count": table.c["count"] + 1, **{c: stmt.excluded[c] for c in _LATEST}},
            # A redelivery of the item's newest event (its store committed, the
            # worker died before recording it) counts once.
            where=table.c.event_id.is_distinct_from(stmt.excluded.event_id),
        ).returning(table.c.id, table.c["count"], table.c.actors)
        row = conn.execute(stmt).first()
        if row is None:  # already counted
            continue
        item_id, count, actors = row
        if count == 1:
            created.append(user)
        if not sender:
            continue
        added = (
            conn.execute(
                make(group_actors)
                .values(notification_id=item_id, actor=sender)
                .on_conflict_do_nothing()
                .returning(group_actors.c.actor)
            ).first()
            is not None
        )
        if count == 1:
            continue  # inserted with its actor
        actors = list(actors or [])
        newest = [sender, *(a for a in actors if a != sender)][:shown]
        if added or newest != actors:
            values: dict[str, Any] = {"actors": newest}
            if added:
                values["actor_count"] = table.c.actor_count + 1
            conn.execute(update(table).where(table.c.id == item_id).values(values))
    return created


def forget_actors(conn: Connection, ids: list[int]) -> None:
    """Delete the distinct-sender records of items just read: a read item is
    never updated again, so its ``actor_count`` no longer needs them.

    :param conn: a connection inside the transaction that marks them read.
    :param ids: the items' ids (any; ungrouped ones have none).
    """
    for i in range(0, len(ids), _CHUNK):
        conn.execute(
            delete(group_actors).where(group_actors.c.notification_id.in_(ids[i : i + _CHUNK]))
        )


def group_fields(row: Any) -> dict[str, Any]:
    """An inbox item's grouping fields, as the APIs show them: ``group``
    (``None`` without one), ``count``, ``actors`` and ``actor_count``.

    :param row: a row's mapping (``row._mapping``) of the notifications table.
    """
    return {
        "group": row["group_key"],
        "count": row["count"],
        "actors": row["actors"] or [],
        "actor_count": row["actor_count"],
    }


def unread_group_items(conn: Connection, users: list[str], group: str) -> dict[str, Any]:
    """Each user's unread item of ``group`` (a row), for those who have one.

    :param conn: a connection.
    :param users: the users.
    :param group: the group key.
    """
    found: dict[str, Any] = {}
    for i in range(0, len(users), _CHUNK):
        query = select(table).where(
            table.c.recipient.in_(users[i : i + _CHUNK]),
            table.c.group_key == group,
            table.c.read_at.is_(None),
        )
        found.update({row.recipient: row for row in conn.execute(query)})
    return found


def item_event_json(row: Any) -> str:
    """The stream's form of a grouped item: its newest event (the recipient's
    copy) with ``group``, ``count``, ``actors``, ``actor_count`` and
    ``notification_id`` (the inbox id) added.

    :param row: a row of the notifications table.
    """
    fields = row._mapping
    data = dict(fields["data"]) | group_fields(fields)
    data["notification_id"] = fields["id"]
    return json.dumps(data, separators=(",", ":"))


def publish_group_items(backend: Any, hub_id: str, event: Event, users: list[str]) -> list[str]:
    """Publish each user's unread item of the event's group on ``hub_id``
    (one message per user, in the hub's history), when that item took this
    event in; return the other users (the event not stored for them yet, or
    opted out, or a later event's item already: the caller publishes the
    event to them as it is, and the client counts it on top of the item it
    shows).

    :param backend: the backend to publish through.
    :param hub_id: the hub's channel.
    :param event: the event; its ``group`` is set.
    :param users: the recipients to publish to.
    """
    from .database import inbox_engine

    with inbox_engine().connect() as conn:
        items = unread_group_items(conn, users, event["group"])
    rest = []
    for user in users:
        row = items.get(user)
        if row is not None and row.event_id == event["event_id"]:
            backend.publish(hub_id, item_event_json(row))
        else:
            rest.append(user)
    return rest
