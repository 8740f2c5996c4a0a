"""Preferences: which notifications a user gets on which channel.

Three kinds of switches, stored next to the inbox:

- a channel switch (``set(user, channel, enabled=False)``: nothing on that channel);
- a category switch (``set(user, channel, "comments", enabled=False)``);
- an event-type opt-out (``opt_out(user, "newsletter", channel)``).

:meth:`Preferences.allowed` is the one rule every consumer asks; an event of a
category listed in ``NOTIFICATIONS_CRITICAL_CATEGORIES`` passes every switch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from flask import current_app
from sqlalchemy import Connection, delete, func, select, union

from ..errors import CriticalCategoryError, InvalidEventError, InvalidQueryError
from ..event import category_of, check_category
from .database import get_engine, insert_ignore
from .models import category_preferences as categories_table
from .models import preferences as table
from .store import user_id

#: The channels the predefined consumers check.
CHANNELS = ("inbox", "stream", "email", "webpush", "mobile")
#: An ``event_type`` that stands for every type (the channel switch).
ANY_TYPE = "*"
#: The most category switches one user may have turned off (with
#: ``NOTIFICATIONS_CATEGORIES = None``, any name is accepted: this bounds the
#: rows one account can create through the HTTP API).
MAX_CATEGORY_SWITCHES = 200
_MAX_EVENT_TYPE = 128
_CHUNK = 1000


def check_channel(channel: object) -> str:
    """``channel`` if it is one of :data:`CHANNELS`.

    :param channel: the candidate.
    :raises InvalidQueryError: naming the valid channels.
    """
    if not isinstance(channel, str) or channel not in CHANNELS:
        raise InvalidQueryError(
            f"channel must be one of {', '.join(CHANNELS)}, not {repr(channel)[:60]}"
        )
    return channel


def _check(event_type: object, channel: object) -> None:
    if not isinstance(event_type, str) or not event_type:
        raise InvalidQueryError("event_type must be a non-empty string (or '*' for any type)")
    if len(event_type) > _MAX_EVENT_TYPE:
        raise InvalidQueryError(f"event_type must be at most {_MAX_EVENT_TYPE} characters")
    check_channel(channel)


def _category(category: object) -> str:
    try:
        return check_category(category)
    except InvalidEventError as exc:
        raise InvalidQueryError(str(exc).removeprefix("invalid event: ")) from None


def critical_categories() -> tuple[str, ...]:
    """``NOTIFICATIONS_CRITICAL_CATEGORIES`` of the current app."""
    return tuple(current_app.config.get("NOTIFICATIONS_CRITICAL_CATEGORIES", ("security",)))


def is_critical(category: str | None) -> bool:
    """Whether events of ``category`` pass every switch (and every digest).

    :param category: an event's category, or ``None``.
    """
    return category is not None and category in critical_categories()


class Preferences:
    """Per-user preferences, stored next to the inbox.

    Consumers ask :meth:`allowed` before delivering an event addressed to
    users: :class:`~flask_notifications.consumers.StoreConsumer` on the
    ``inbox`` channel, :class:`~flask_notifications.consumers.push_consumer.PushConsumer`
    on ``stream``, the e-mail consumers on ``email``, Web Push on ``webpush``,
    FCM and APNs on ``mobile``. Broadcast events (no recipients) reach the
    consumers that deliver them to every subscriber (Web Push, mobile push
    with ``broadcast=True``) minus the users whose switches refuse them.
    """

    # -- event types -------------------------------------------------------------------

    def opt_out(self, user: str | int, event_type: str, channel: str) -> None:
        """Stop delivering ``event_type`` (``"*"``: every type) to ``user`` on ``channel``.

        :param user: the user.
        :param event_type: an event type, or ``"*"``.
        :param channel: one of :data:`CHANNELS`.
        """
        _check(event_type, channel)
        with get_engine().begin() as conn:
            _set_type(conn, user_id(user), event_type, channel, False)

    def opt_in(self, user: str | int, event_type: str, channel: str) -> None:
        """Undo :meth:`opt_out`.

        :param user: the user.
        :param event_type: an event type, or ``"*"``.
        :param channel: a channel.
        """
        _check(event_type, channel)
        with get_engine().begin() as conn:
            _set_type(conn, user_id(user), event_type, channel, True)

    def opted_out(self, user: str | int) -> list[tuple[str, str]]:
        """The user's event-type opt-outs as ``(event_type, channel)`` pairs
        (``"*"`` for a channel turned off).

        :param user: the user.
        """
        query = select(table.c.event_type, table.c.channel).where(
            table.c.recipient == user_id(user)
        )
        with get_engine().connect() as conn:
            return sorted((r.event_type, r.channel) for r in conn.execute(query))

    # -- channels and categories -----------------------------------------------------

    def set(
        self, user: str | int, channel: str, category: str | None = None, *, enabled: bool
    ) -> None:
        """Turn a channel (``category=None``) or one category on a channel on or off.

        Turning a channel off is the event-type opt-out ``"*"``
        (``opt_out(user, "*", channel)``): both are one switch.

        :param user: the user.
        :param channel: one of :data:`CHANNELS`.
        :param category: a category name, or ``None`` for the whole channel.
        :param enabled: ``False`` to stop delivering, ``True`` to deliver again.
        :raises CriticalCategoryError: turning off a category of
            ``NOTIFICATIONS_CRITICAL_CATEGORIES``.
        :raises InvalidQueryError: an unknown channel, a bad category name, a
            category outside ``NOTIFICATIONS_CATEGORIES`` (when set), more
            than :data:`MAX_CATEGORY_SWITCHES` categories turned off.
        """
        self.update(user, {"channels": {channel: _switch(category, enabled)}})

    def get(self, user: str | int) -> dict[str, Any]:
        """The user's preferences as a JSON-able dictionary::

            {
              "channels": {
                "email": {
                  "enabled": true,                       # the channel switch
                  "categories": {"comments": false, "security": true},
                  "event_types": {"newsletter": false}   # opt-outs by event type
                },
                "inbox": {...}, "stream": {...}, "webpush": {...}, "mobile": {...}
              },
              "categories": ["comments", "security"],    # known categories
              "critical_categories": ["security"]        # always on
            }

        Every channel of :data:`CHANNELS` is present. ``categories`` (at the
        top and in each channel) lists ``NOTIFICATIONS_CATEGORIES`` (when
        set), the critical categories and any category the user turned off.

        :param user: the user.
        """
        uid = user_id(user)
        with get_engine().connect() as conn:
            types = conn.execute(
                select(table.c.event_type, table.c.channel).where(table.c.recipient == uid)
            ).all()
            off = conn.execute(
                select(categories_table.c.channel, categories_table.c.category).where(
                    categories_table.c.recipient == uid
                )
            ).all()
        critical = critical_categories()
        known = list(current_app.config.get("NOTIFICATIONS_CATEGORIES") or ())
        known += [c for c in critical if c not in known]
        known += sorted({r.category for r in off} - set(known))
        disabled = {(r.channel, r.category) for r in off}
        channels = {}
        for channel in CHANNELS:
            channels[channel] = {
                "enabled": (ANY_TYPE, channel) not in {(t, c) for t, c in types},
                "categories": {c: c in critical or (channel, c) not in disabled for c in known},
                "event_types": {
                    t: False for t, c in sorted(types) if c == channel and t != ANY_TYPE
                },
            }
        return {
            "channels": channels,
            "categories": known,
            "critical_categories": list(critical),
        }

    def update(self, user: str | int, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Apply a partial update (the body of ``PUT <prefix>/preferences``)
        in one transaction, after checking all of it; return :meth:`get`.

        ``changes`` has the shape of :meth:`get`'s result, every part
        optional: ``{"channels": {"email": {"enabled": false, "categories":
        {"comments": false}, "event_types": {"newsletter": true}}}}``. Only
        the switches it names change. The read-only ``categories`` and
        ``critical_categories`` keys are accepted and ignored, so a client
        may send back what it read.

        :param user: the user.
        :param changes: the switches to set.
        :raises InvalidQueryError: naming the first bad part (nothing is changed).
        :raises CriticalCategoryError: turning off a critical category.
        """
        uid = user_id(user)
        operations = _operations(changes)
        with get_engine().begin() as conn:
            for kind, channel, name, enabled in operations:
                if kind == "type":
                    _set_type(conn, uid, name, channel, enabled)
                else:
                    _set_category(conn, uid, name, channel, enabled)
        return self.get(uid)

    # -- the rule --------------------------------------------------------------------

    def allowed(
        self,
        users: Iterable[str | int],
        event_type: str,
        channel: str,
        category: str | None = None,
    ) -> list[str]:
        """The users (as strings, in order) who accept an event of
        ``event_type`` and ``category`` on ``channel``: every user when the
        category is critical; else those without the channel turned off, the
        event type opted out or the category turned off on that channel.

        :param users: the candidates.
        :param event_type: the event's type.
        :param channel: the delivery channel.
        :param category: the event's category, or ``None``.
        """
        _check(event_type, channel)
        wanted = [user_id(u) for u in users]
        if is_critical(category):
            return wanted
        refused: set[str] = set()
        unique = list(dict.fromkeys(wanted))
        with get_engine().connect() as conn:
            for i in range(0, len(unique), _CHUNK):
                chunk = unique[i : i + _CHUNK]
                query: Any = select(table.c.recipient).where(
                    table.c.recipient.in_(chunk),
                    table.c.event_type.in_((event_type, ANY_TYPE)),
                    table.c.channel == channel,
                )
                if category is not None:
                    query = union(
                        query,
                        select(categories_table.c.recipient).where(
                            categories_table.c.recipient.in_(chunk),
                            categories_table.c.channel == channel,
                            categories_table.c.category == category,
                        ),
                    )
                refused.update(conn.execute(query).scalars())
        return [u for u in wanted if u not in refused]

    def allowed_for(
        self, users: Iterable[str | int], event: Mapping[str, Any], channel: str
    ) -> list[str]:
        """:meth:`allowed` for ``event`` (its type and category).

        :param users: the candidates.
        :param event: the event.
        :param channel: the delivery channel.
        """
        return self.allowed(users, event["event_type"], channel, category_of(event))


# -- helpers ---------------------------------------------------------------------------


def _switch(category: str | None, enabled: object) -> dict[str, Any]:
    if category is None:
        return {"enabled": enabled}
    return {"categories": {category: enabled}}


def _bool(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidQueryError(f"{where} must be true or false, not {repr(value)[:60]}")
    return value


def _mapping(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidQueryError(f"{where} must be a JSON object, not {type(value).__name__}")
    return value


def _only(value: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    unknown = [k for k in value if k not in allowed]
    if unknown:
        raise InvalidQueryError(
            f"{where}: unknown key {repr(unknown[0])[:60]} (expected {', '.join(allowed)})"
        )


def _operations(changes: object) -> list[tuple[str, str, str, bool]]:
    """Check a partial update; return ``(kind, channel, name, enabled)``
    operations, ``kind`` being ``"type"`` or ``"category"``."""
    changes = _mapping(changes, "the preferences")
    _only(changes, ("channels", "categories", "critical_categories"), "the preferences")
    known = current_app.config.get("NOTIFICATIONS_CATEGORIES")
    operations: list[tuple[str, str, str, bool]] = []
    for channel, parts in _mapping(changes.get("channels", {}), "channels").items():
        check_channel(channel)
        where = f"channels.{channel}"
        parts = _mapping(parts, where)
        _only(parts, ("enabled", "categories", "event_types"), where)
        if "enabled" in parts:
            enabled = _bool(parts["enabled"], f"{where}.enabled")
            operations.append(("type", channel, ANY_TYPE, enabled))
        for category, value in _mapping(parts.get("categories", {}), f"{where}.categories").items():
            category = _category(category)
            enabled = _bool(value, f"{where}.categories.{category}")
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
        types = _mapping(parts.get("event_types", {}), f"{where}.event_types")
        for event_type, value in types.items():
            _check(event_type, channel)
            enabled = _bool(value, f"{where}.event_types.{event_type[:40]}")
            operations.append(("type", channel, event_type, enabled))
    return operations


def _set_type(conn: Connection, uid: str, event_type: str, channel: str, enabled: bool) -> None:
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


def _set_category(conn: Connection, uid: str, category: str, channel: str, enabled: bool) -> None:
    t = categories_table
    condition = (t.c.recipient == uid, t.c.channel == channel, t.c.category == category)
    if enabled:
        conn.execute(delete(t).where(*condition))
        return
    if conn.execute(select(func.count()).select_from(t).where(*condition)).scalar():
        return
    count = conn.execute(select(func.count()).select_from(t).where(t.c.recipient == uid)).scalar()
    if (count or 0) >= MAX_CATEGORY_SWITCHES:
        raise InvalidQueryError(
            f"at most {MAX_CATEGORY_SWITCHES} categories can be turned off per user"
        )
    insert_ignore(conn, t, [{"recipient": uid, "channel": channel, "category": category}])
