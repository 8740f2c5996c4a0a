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
from sqlalchemy import select, union

from ..errors import InvalidEventError, InvalidQueryError
from ..event import category_of, check_category
from . import digests
from ._switches import operations, set_category, set_type
from .database import get_engine
from .digests import DIGEST_CHANNELS, DigestSchedule
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
            set_type(conn, user_id(user), event_type, channel, False)

    def opt_in(self, user: str | int, event_type: str, channel: str) -> None:
        """Undo :meth:`opt_out`.

        :param user: the user.
        :param event_type: an event type, or ``"*"``.
        :param channel: a channel.
        """
        _check(event_type, channel)
        with get_engine().begin() as conn:
            set_type(conn, user_id(user), event_type, channel, True)

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
                  "event_types": {"newsletter": false},  # opt-outs by event type
                  "digest": {"frequency": "daily", "hour": 8, "weekday": 0,
                             "timezone": "Europe/Paris"}  # or null
                },
                "inbox": {...}, "stream": {...}, "webpush": {...}, "mobile": {...}
              },
              "categories": ["comments", "security"],    # known categories
              "critical_categories": ["security"]        # always on
            }

        Every channel of :data:`CHANNELS` is present. ``categories`` (at the
        top and in each channel) lists ``NOTIFICATIONS_CATEGORIES`` (when
        set), the critical categories and any category the user turned off.
        ``digest`` is only in the channels that have digests (``email``).

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
            schedules = {c: digests.load(conn, [uid], c).get(uid) for c in DIGEST_CHANNELS}
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
            if channel in schedules:
                schedule = schedules[channel]
                channels[channel]["digest"] = schedule.to_dict() if schedule else None
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
        {"comments": false}, "event_types": {"newsletter": true}}}}``; the
        ``email`` channel also takes ``"digest"`` (an object with
        ``frequency``, ``hour``, ``weekday``, ``timezone``, or ``null``: see
        :meth:`set_digest`). Only the switches it names change. The read-only ``categories`` and
        ``critical_categories`` keys are accepted and ignored, so a client
        may send back what it read.

        :param user: the user.
        :param changes: the switches to set.
        :raises InvalidQueryError: naming the first bad part (nothing is changed).
        :raises CriticalCategoryError: turning off a critical category.
        """
        uid = user_id(user)
        todo = operations(changes)
        changed = []
        with get_engine().begin() as conn:
            for kind, channel, name, value in todo:
                if kind == "type":
                    set_type(conn, uid, name, channel, value)
                elif kind == "category":
                    set_category(conn, uid, name, channel, value, MAX_CATEGORY_SWITCHES)
                elif digests.store(conn, uid, channel, value):
                    changed.append(channel)
        if changed:
            from ..consumers._digest import flush

            for channel in changed:
                flush(uid, channel)  # what was held goes out now
        return self.get(uid)

    # -- digests ---------------------------------------------------------------------

    def set_digest(
        self,
        user: str | int,
        channel: str,
        frequency: str | None,
        *,
        hour: int = 8,
        weekday: int = 0,
        timezone: str = "UTC",
    ) -> None:
        """Hold ``user``'s notifications of ``channel`` for a digest on the
        user's clock, or (``frequency=None``) send them at once again.

        While a digest is set, the channel's consumers hold the user's events
        (except those of a critical category) and send them in one message at
        the next due time (:func:`~flask_notifications.inbox.digests.next_digest_at`).
        Changing or removing the digest sends what was held at once.

        :param user: the user.
        :param channel: a channel of :data:`~flask_notifications.inbox.digests.DIGEST_CHANNELS`.
        :param frequency: ``"hourly"``, ``"daily"``, ``"weekly"`` or ``None``.
        :param hour: the local hour, 0-23 (daily and weekly).
        :param weekday: 0 (Monday) to 6 (Sunday) (weekly).
        :param timezone: an IANA time zone name, e.g. ``"Europe/Paris"``.
        :raises InvalidQueryError: a channel without digests, a bad frequency,
            hour, weekday or time zone.
        """
        check_channel(channel)
        if channel not in DIGEST_CHANNELS:
            raise InvalidQueryError(
                f"digests exist for the {', '.join(DIGEST_CHANNELS)} channel only, not {channel!r}"
            )
        digest = None
        if frequency is not None:
            digest = {"frequency": frequency, "hour": hour, "weekday": weekday}
            digest["timezone"] = timezone  # type: ignore[assignment]
        self.update(user, {"channels": {channel: {"digest": digest}}})

    def digests(self, users: Iterable[str | int], channel: str) -> dict[str, DigestSchedule]:
        """``{user: schedule}`` for those of ``users`` with a digest on ``channel``.

        :param users: the users.
        :param channel: the channel.
        """
        with get_engine().connect() as conn:
            return digests.load(conn, [user_id(u) for u in users], channel)

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
