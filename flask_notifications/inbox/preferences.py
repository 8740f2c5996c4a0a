"""Opt-outs: a user can refuse an event type on a channel."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from ..errors import InvalidQueryError
from .database import get_engine
from .models import preferences as table
from .store import user_id

#: The channels the predefined consumers check.
CHANNELS = ("inbox", "stream", "email", "webpush", "mobile")
#: An ``event_type`` that stands for every type.
ANY_TYPE = "*"
_CHUNK = 1000


def _check(event_type: str, channel: str) -> None:
    if not isinstance(event_type, str) or not event_type:
        raise InvalidQueryError("event_type must be a non-empty string (or '*' for any type)")
    if channel not in CHANNELS:
        raise InvalidQueryError(f"channel must be one of {', '.join(CHANNELS)}, not {channel!r}")


class Preferences:
    """Per-user opt-outs, stored next to the inbox.

    Consumers ask :meth:`allowed` before delivering an event addressed to
    users: :class:`~flask_notifications.consumers.StoreConsumer` on the
    ``inbox`` channel, :class:`~flask_notifications.consumers.push_consumer.PushConsumer`
    on ``stream``. Broadcast events (no recipients) are not filtered.
    """

    def opt_out(self, user: str | int, event_type: str, channel: str) -> None:
        """Stop delivering ``event_type`` (``"*"``: every type) to ``user`` on ``channel``.

        :param user: the user.
        :param event_type: an event type, or ``"*"``.
        :param channel: ``"inbox"``, ``"stream"``, ``"email"`` or ``"webpush"``.
        """
        _check(event_type, channel)
        row = {"recipient": user_id(user), "event_type": event_type, "channel": channel}
        try:
            with get_engine().begin() as conn:
                conn.execute(table.insert(), row)
        except IntegrityError:
            pass  # already opted out

    def opt_in(self, user: str | int, event_type: str, channel: str) -> None:
        """Undo :meth:`opt_out`.

        :param user: the user.
        :param event_type: an event type, or ``"*"``.
        :param channel: a channel.
        """
        _check(event_type, channel)
        with get_engine().begin() as conn:
            conn.execute(
                delete(table).where(
                    table.c.recipient == user_id(user),
                    table.c.event_type == event_type,
                    table.c.channel == channel,
                )
            )

    def opted_out(self, user: str | int) -> list[tuple[str, str]]:
        """The user's opt-outs as ``(event_type, channel)`` pairs.

        :param user: the user.
        """
        query = select(table.c.event_type, table.c.channel).where(
            table.c.recipient == user_id(user)
        )
        with get_engine().connect() as conn:
            return sorted((r.event_type, r.channel) for r in conn.execute(query))

    def allowed(self, users: Iterable[str | int], event_type: str, channel: str) -> list[str]:
        """The users (as strings, in order) who did not opt out of ``event_type`` on ``channel``.

        :param users: the candidates.
        :param event_type: the event's type.
        :param channel: the delivery channel.
        """
        _check(event_type, channel)
        wanted = [user_id(u) for u in users]
        refused: set[str] = set()
        unique = list(dict.fromkeys(wanted))
        with get_engine().connect() as conn:
            for i in range(0, len(unique), _CHUNK):
                query = select(table.c.recipient).where(
                    table.c.recipient.in_(unique[i : i + _CHUNK]),
                    table.c.event_type.in_((event_type, ANY_TYPE)),
                    table.c.channel == channel,
                )
                refused.update(conn.execute(query).scalars())
        return [u for u in wanted if u not in refused]
