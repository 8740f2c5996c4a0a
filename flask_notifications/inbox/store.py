"""The :class:`Inbox`: stored notifications per user."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flask import current_app
from sqlalchemy import and_, delete, func, insert, select, update

from ..delivery import log as delivery_log
from ..errors import InvalidQueryError
from ..event import Event
from .database import inbox_engine as get_engine
from .groups import forget_actors, group_fields, store_grouped
from .models import GROUP_COLUMNS
from .models import notifications as table

if TYPE_CHECKING:
    from ..extension import Notifications

_CHUNK = 1000  # ids per IN (...) clause
_ENVELOPE = 5000  # users per unread-counts message


@dataclass
class Page:
    """One page of a user's inbox, newest first."""

    items: list[dict[str, Any]]
    page: int
    per_page: int
    total: int

    @property
    def next(self) -> int | None:
        """The next page number, or ``None`` on the last page."""
        return self.page + 1 if self.page * self.per_page < self.total else None

    @property
    def prev(self) -> int | None:
        """The previous page number, or ``None`` on the first page."""
        return self.page - 1 if self.page > 1 else None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form the HTTP API returns."""
        return {
            "items": self.items,
            "page": self.page,
            "per_page": self.per_page,
            "total": self.total,
            "next": self.next,
            "prev": self.prev,
        }


def user_id(value: object) -> str:
    """Return a user id as the string the inbox stores.

    :param value: a string or an integer.
    :raises InvalidQueryError: for anything else.
    """
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        raise InvalidQueryError(
            f"a user id must be a non-empty string or an integer, not {value!r}"
        )
    return str(value)


def _item(row: Any) -> dict[str, Any]:
    row = row._mapping  # a Row is a tuple: row.count would be tuple.count
    return {
        "id": row["id"],
        "event_id": row["event_id"],
        "event_type": row["event_type"],
        "name": row["name"],
        "title": row["title"],
        "body": row["body"],
        "data": row["data"],
        "icon": row["icon"],
        "client_action": row["client_action"],
        "timestamp": row["timestamp"],
        "read": row["read_at"] is not None,
    } | group_fields(row)


class Inbox:
    """Stored notifications, one row per recipient, for the current app.

    Every change that alters a user's unread count also pushes an
    ``unread_count`` event (``{"unread": N}``) to that user's streams, so a
    badge follows without polling.

    :param extension: the extension it belongs to.
    """

    def __init__(self, extension: Notifications) -> None:
        self._extension = extension

    def create_tables(self) -> None:
        """Create the inbox tables now, if missing (otherwise done on first use).

        Worth calling at start-up on SQLite, which has a single writer: a first
        use inside another connection's write transaction would wait for it.
        """
        get_engine()

    # -- writing ---------------------------------------------------------------------

    def add(
        self,
        user: str | int,
        name: str,
        data: Any,
        *,
        title: str = "",
        body: str = "",
        icon: str | None = None,
        client_action: str | None = None,
    ) -> int:
        """Store a notification named ``name``, replacing the user's previous
        one of that name (the tutorial's ``unread_message_count`` pattern).

        :param user: the recipient.
        :param name: the notification's name (also its ``event_type``).
        :param data: any JSON-serialisable value.
        :param title: optional title.
        :param body: optional body.
        :param icon: optional icon URL.
        :param client_action: optional action for the client.
        :returns: the new notification's id.
        """
        recipient = user_id(user)
        if not isinstance(name, str) or not name:
            raise InvalidQueryError("a notification name must be a non-empty string")
        _check_json(data)
        with get_engine().begin() as conn:
            conn.execute(delete(table).where(table.c.recipient == recipient, table.c.name == name))
            result = conn.execute(
                insert(table).values(
                    recipient=recipient,
                    name=name,
                    event_id=None,
                    event_type=name,
                    title=title,
                    body=body,
                    data=data,
                    icon=icon,
                    client_action=client_action,
                    timestamp=time.time(),
                    read_at=None,
                )  # fmt: skip
            )
            new_id = int(result.inserted_primary_key[0])
        self.push_counts([recipient])
        return new_id

    def store(self, event: Event, recipients: Iterable[str | int] | None = None) -> int:
        """Store ``event`` once per recipient, in one bulk insert; an event
        with a ``group`` updates each recipient's unread item of that group
        instead, when there is one (see :doc:`/workflows`, Grouping).

        Its timestamp is the time it is stored. Its name is the event type and
        its data the event as that user's
        copy: ``recipients`` holds just that user, so an event for 10,000
        users does not store 10,000 lists of 10,000. ``icon`` and
        ``client_action`` come from the event's custom fields when set.

        :param event: the event.
        :param recipients: who gets it; the event's recipients by default.
        :returns: how many rows were stored or updated.
        """
        users = [user_id(r) for r in (event["recipients"] if recipients is None else recipients)]
        if not users:
            return 0
        data = json.loads(event.to_json())
        common = {
            "name": event["event_type"],
            "event_id": event["event_id"],
            "event_type": event["event_type"],
            "title": event["title"],
            "body": event["body"],
            "icon": _optional_str(event.get("icon")),
            "client_action": _optional_str(event.get("client_action")),
            # When it was stored, not when the event was made: a polling client
            # must not miss an event that waited in the queue (data keeps both).
            "timestamp": time.time(),
            "read_at": None,
        }
        unique = list(dict.fromkeys(users))
        engine = get_engine()
        if event.get("group") is not None:
            with engine.begin() as conn:
                changed = store_grouped(conn, event, unique, common, data)
            self.push_counts(changed)
            return len(unique)
        rows = [dict(common, recipient=u, data=dict(data, recipients=[u])) for u in unique]
        with engine.begin() as conn:
            conn.execute(insert(table), rows)  # executemany: batched by SQLAlchemy
        self.push_counts(unique)
        return len(rows)

    def mark_read(self, user: str | int, notification_id: int) -> bool:
        """Mark one of the user's notifications read.

        :param user: the user.
        :param notification_id: the notification's id.
        :returns: ``False`` when the user has no notification with that id.
        """
        recipient = user_id(user)
        if isinstance(notification_id, bool) or not isinstance(notification_id, int):
            raise InvalidQueryError(
                f"a notification id must be an integer, not {notification_id!r}"
            )
        with get_engine().begin() as conn:
            found = conn.execute(
                select(table.c.read_at, table.c.event_id).where(
                    table.c.id == notification_id, table.c.recipient == recipient
                )
            ).first()
            if found is None:
                return False
            if found.read_at is None:
                conn.execute(
                    update(table).where(table.c.id == notification_id).values(read_at=time.time())
                )
                forget_actors(conn, [notification_id])
        if found.read_at is None and found.event_id is not None:
            delivery_log.record(found.event_id, recipient, "inbox", "read")
        self.push_counts([recipient])
        return True

    def mark_all_read(self, user: str | int) -> int:
        """Mark every unread notification of the user read.

        :param user: the user.
        :returns: how many were marked.
        """
        recipient = user_id(user)
        with get_engine().begin() as conn:
            marked = conn.execute(
                update(table)
                .where(table.c.recipient == recipient, table.c.read_at.is_(None))
                .values(read_at=time.time())
                .returning(table.c.event_id, table.c.id, table.c.group_key)
            ).all()
            forget_actors(conn, [row.id for row in marked if row.group_key is not None])
        events = [row.event_id for row in marked]
        if delivery_log.enabled():  # one pipelined write for every event
            delivery_log.write(
                {e: [(recipient, "inbox", "read", None)] for e in events if e is not None}
            )
        self.push_counts([recipient])
        return len(events)

    # -- reading ---------------------------------------------------------------------

    def unread_count(self, user: str | int) -> int:
        """How many unread notifications the user has.

        :param user: the user.
        """
        recipient = user_id(user)
        query = (
            select(func.count())
            .select_from(table)
            .where(table.c.recipient == recipient, table.c.read_at.is_(None))
        )
        with get_engine().connect() as conn:
            return int(conn.execute(query).scalar_one())

    def unread_counts(self, users: Iterable[str | int]) -> dict[str, int]:
        """Unread counts of several users in few queries.

        :param users: the users.
        """
        wanted = list(dict.fromkeys(user_id(u) for u in users))
        counts = dict.fromkeys(wanted, 0)
        with get_engine().connect() as conn:
            for i in range(0, len(wanted), _CHUNK):
                chunk = wanted[i : i + _CHUNK]
                query = (
                    select(table.c.recipient, func.count())
                    .where(table.c.recipient.in_(chunk), table.c.read_at.is_(None))
                    .group_by(table.c.recipient)
                )
                counts.update({r: int(n) for r, n in conn.execute(query)})
        return counts

    def list(
        self, user: str | int, page: int = 1, per_page: int = 20, unread_only: bool = False
    ) -> Page:
        """One page of the user's notifications, newest first.

        :param user: the user.
        :param page: the page number, from 1.
        :param per_page: items per page, at most ``NOTIFICATIONS_INBOX_MAX_PER_PAGE``.
        :param unread_only: only unread notifications.
        """
        recipient = user_id(user)
        limit = current_app.config["NOTIFICATIONS_INBOX_MAX_PER_PAGE"]
        for label, value in (("page", page), ("per_page", per_page)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidQueryError(f"{label} must be an integer >= 1, not {value!r}")
        if per_page > limit:
            raise InvalidQueryError(f"per_page must be at most {limit}, not {per_page}")
        where = [table.c.recipient == recipient]
        if unread_only:
            where.append(table.c.read_at.is_(None))
        condition = and_(*where)
        with get_engine().connect() as conn:
            total = int(
                conn.execute(select(func.count()).select_from(table).where(condition)).scalar_one()
            )
            rows = conn.execute(
                select(table)
                .where(condition)
                .order_by(table.c.timestamp.desc(), table.c.id.desc())
                .limit(per_page)
                .offset((page - 1) * per_page)
            ).all()
        return Page([_item(r) for r in rows], page, per_page, total)

    def since(self, user: str | int, ts: float, limit: int | None = None) -> list[dict[str, Any]]:
        """The user's notifications stored (or, for a group's item, updated)
        strictly after ``ts``, oldest first, in the tutorial's form ``{id,
        name, data, timestamp}`` plus ``group``, ``count``, ``actors`` and
        ``actor_count``.

        :param user: the user.
        :param ts: epoch seconds.
        :param limit: at most this many (the oldest); poll again from the last
            timestamp for the rest.
        """
        recipient = user_id(user)
        if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts):
            raise InvalidQueryError(f"since must be a finite number, not {ts!r}")
        columns = ("id", "name", "data", "timestamp", *GROUP_COLUMNS)
        query = (
            select(*(table.c[c] for c in columns))
            .where(table.c.recipient == recipient, table.c.timestamp > ts)
            .order_by(table.c.timestamp, table.c.id)
            .limit(limit)
        )
        with get_engine().connect() as conn:
            return [
                {c: r._mapping[c] for c in ("id", "name", "data", "timestamp")}
                | group_fields(r._mapping)
                for r in conn.execute(query)
            ]

    # -- live counts -------------------------------------------------------------------

    def push_counts(self, users: Iterable[str]) -> None:
        """Push an ``unread_count`` event to each user's streams, on every hub
        with a :class:`~flask_notifications.consumers.StoreConsumer` (and the
        hub named by ``NOTIFICATIONS_INBOX_HUB``). Not kept in the history.

        One ``{"unread_counts": {user: n}}`` message carries the counts of up to
        5,000 users; the dispatchers frame events only for users online there.

        :param users: the users whose count changed.
        """
        hubs = self._extension.inbox_hubs()
        users = list(users)
        if not hubs or not users:
            return
        counts = self.unread_counts(users)
        # One envelope for all of them: each process's dispatcher turns it into
        # unread_count events for the users with a stream open there.
        items = list(counts.items())
        messages = [
            json.dumps({"unread_counts": dict(items[i : i + _ENVELOPE])}, separators=(",", ":"))
            for i in range(0, len(items), _ENVELOPE)
        ]
        backend = self._extension.publisher
        for hub in hubs:
            backend.publish_transient(hub.hub_id, messages)


def _check_json(data: Any) -> None:
    try:
        json.dumps(data, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidQueryError(f"data must be JSON-serialisable ({exc})") from None


def _optional_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None
