"""The app icon badge of native pushes: the recipient's unread count."""

from __future__ import annotations

from typing import Any

from flask import current_app
from sqlalchemy import select

from .._state import get_state
from ..event import Event
from ..inbox.database import inbox_engine as get_engine
from ..inbox.groups import unread_group_items
from ..inbox.models import notifications as table
from .store_consumer import StoreConsumer

_CHUNK = 1000


def stores_beside(consumer: Any) -> list[StoreConsumer]:
    """The :class:`StoreConsumer` objects of the hubs ``consumer`` is registered on.

    :param consumer: a registered consumer.
    """
    extension = get_state().extension
    return [
        store
        for hub in extension.hubs
        if any(c is consumer for c in hub._consumers.values())
        for store in hub._consumers.values()
        if isinstance(store, StoreConsumer)
    ]


def unread_badges(consumer: Any, event: Event, users: list[str]) -> dict[str, int]:
    """``{user: badge}`` for ``users``, or ``{}`` when no hub ``consumer`` is
    on stores to the inbox (no :class:`StoreConsumer` beside it).

    The badge is the user's unread count, plus one when the hub's
    :class:`StoreConsumer` will store this event for the user but has not
    yet (it runs in another task): the badge the user sees once it has. An
    event of a group the user has an unread item of adds nothing (it updates
    that item).

    :param consumer: the consumer sending the pushes.
    :param event: the event.
    :param users: the recipients the pushes go to.
    """
    if not users or not event["recipients"]:
        return {}
    extension = get_state().extension
    stores = stores_beside(consumer)
    if not stores or not any(s.wants(event) for s in stores):
        return {}
    wanted = list(dict.fromkeys(users))
    counts = extension.inbox.unread_counts(wanted)
    stored: set[str] = set()
    with get_engine().connect() as conn:
        for i in range(0, len(wanted), _CHUNK):
            query = select(table.c.recipient).where(
                table.c.event_id == event["event_id"],
                table.c.recipient.in_(wanted[i : i + _CHUNK]),
            )
            stored.update(conn.execute(query).scalars())
        if event.get("group") is not None:  # an unread item of the group takes it in
            stored.update(unread_group_items(conn, wanted, event["group"]))
    inboxed = set(str(r) for r in event["recipients"])
    if current_app.config.get("NOTIFICATIONS_PREFERENCES") is not False:
        inboxed = set(extension.preferences.allowed_for(list(inboxed), event, "inbox"))
    return {
        user: counts.get(user, 0) + (1 if user in inboxed and user not in stored else 0)
        for user in wanted
    }
