"""Digests on the user's clock: the per-user schedule and when it is next due.

A :class:`DigestSchedule` says when a user's digest of a channel goes out:
every hour, every day at ``hour`` or every week on ``weekday`` at ``hour``,
on the wall clock of ``timezone`` (an IANA name, read with :mod:`zoneinfo`).
:func:`next_digest_at` is the pure function that turns it into the next
instant, across daylight-saving changes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Connection, delete, select

from ..errors import InvalidQueryError
from .database import insert_ignore
from .models import digest_settings as table

#: The frequencies of :meth:`Preferences.set_digest
#: <flask_notifications.inbox.Preferences.set_digest>`.
FREQUENCIES = ("hourly", "daily", "weekly")
#: The channels that have digests (the e-mail consumers hold events for them).
DIGEST_CHANNELS = ("email",)
_CHUNK = 1000


@dataclass(frozen=True)
class DigestSchedule:
    """When a user's digest goes out.

    :param frequency: ``"hourly"`` (at every full hour of the local clock),
        ``"daily"`` (at ``hour``) or ``"weekly"`` (on ``weekday`` at ``hour``).
    :param hour: the local hour, 0-23 (daily and weekly).
    :param weekday: 0 (Monday) to 6 (Sunday) (weekly).
    :param timezone: an IANA time zone name, e.g. ``"Europe/Paris"``.
    """

    frequency: str
    hour: int = 8
    weekday: int = 0
    timezone: str = "UTC"

    def to_dict(self) -> dict[str, Any]:
        """The schedule as JSON-able data (what ``preferences.get()`` shows)."""
        return asdict(self)

    def next_after(self, instant: float) -> float:
        """The first due time strictly after ``instant`` (epoch seconds).

        :param instant: epoch seconds.
        """
        return next_digest_at(self, datetime.fromtimestamp(instant, UTC)).timestamp()


def check_schedule(
    frequency: object, hour: object = 8, weekday: object = 0, timezone: object = "UTC"
) -> DigestSchedule:
    """A valid :class:`DigestSchedule`.

    :param frequency: one of :data:`FREQUENCIES`.
    :param hour: an integer 0-23.
    :param weekday: an integer 0-6.
    :param timezone: an IANA time zone name.
    :raises InvalidQueryError: naming the bad value.
    """
    if frequency not in FREQUENCIES:
        raise InvalidQueryError(
            f"digest frequency must be one of {', '.join(FREQUENCIES)} (or None to turn the "
            f"digest off), not {repr(frequency)[:60]}"
        )
    for name, value, top in (("hour", hour, 23), ("weekday", weekday, 6)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
            raise InvalidQueryError(
                f"digest {name} must be an integer from 0 to {top}, not {repr(value)[:60]}"
            )
    _zone(timezone)
    return DigestSchedule(str(frequency), int(hour), int(weekday), str(timezone))  # type: ignore[call-overload]


def _zone(name: object) -> ZoneInfo:
    if not isinstance(name, str) or not 0 < len(name) <= 64 or name.startswith(("/", ".")):
        raise InvalidQueryError(f"digest timezone must be an IANA name, not {repr(name)[:60]}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidQueryError(
            f"digest timezone {name!r} is not a known time zone (e.g. 'Europe/Paris', 'UTC')"
        ) from None


def next_digest_at(schedule: DigestSchedule, after: datetime) -> datetime:
    """The first instant strictly after ``after`` at which ``schedule`` is due,
    as an aware UTC datetime.

    Wall-clock times are read in the schedule's time zone with
    :mod:`zoneinfo`: a daily digest at 8 goes out at 08:00 local time on
    every day, whatever the UTC offset that day. On the day the clocks go
    forward, an hour that does not exist (02:30 in Paris on the last Sunday
    of March) is read with the offset before the change, so the digest goes
    out when the clock jumps (at 03:00 local time); on the day they go back,
    an hour that happens twice goes out at its first occurrence only. An
    hourly digest goes out at every full hour of the local clock (for a zone
    with a half-hour offset, at half past the hour in UTC).

    :param schedule: the schedule.
    :param after: an aware datetime (a naive one is read as UTC).
    """
    if after.tzinfo is None:
        after = after.replace(tzinfo=UTC)
    after = after.astimezone(UTC)
    zone = _zone(schedule.timezone)
    local = after.astimezone(zone)
    if schedule.frequency == "hourly":
        start = local.replace(minute=0, second=0, microsecond=0).astimezone(UTC)
        candidate = start + timedelta(hours=1)  # UTC arithmetic: real hours
        while candidate.astimezone(zone).minute != 0:  # offsets that are not whole hours
            candidate += timedelta(minutes=15)
        return candidate
    days = 1 if schedule.frequency == "daily" else 7
    first: date = local.date() - timedelta(days=1)
    candidates = []
    for offset in range(days + 2):
        day = first + timedelta(days=offset)
        if schedule.frequency == "weekly" and day.weekday() != schedule.weekday:
            continue
        # fold=0: a missing hour takes the offset before the change (the jump),
        # a repeated hour its first occurrence.
        wall = datetime.combine(day, time(schedule.hour), tzinfo=zone)
        instant = wall.astimezone(UTC)
        if instant > after:
            candidates.append(instant)
    return min(candidates)


# -- storage ----------------------------------------------------------------------------


def load(conn: Connection, users: Iterable[str], channel: str) -> dict[str, DigestSchedule]:
    """``{user: schedule}`` for the ``users`` who have a digest on ``channel``.

    :param conn: a connection.
    :param users: user ids (strings).
    :param channel: the channel.
    """
    unique = list(dict.fromkeys(users))
    found: dict[str, DigestSchedule] = {}
    for i in range(0, len(unique), _CHUNK):
        rows = conn.execute(
            select(table).where(
                table.c.recipient.in_(unique[i : i + _CHUNK]), table.c.channel == channel
            )
        )
        for row in rows:
            found[row.recipient] = DigestSchedule(
                row.frequency, row.hour, row.weekday, row.timezone
            )
    return found


def store(conn: Connection, uid: str, channel: str, schedule: DigestSchedule | None) -> bool:
    """Set (or, with ``None``, remove) the digest of ``uid`` on ``channel``.

    :param conn: a connection in a transaction.
    :param uid: the user id.
    :param channel: the channel.
    :param schedule: the new schedule.
    :returns: whether it changed.
    """
    before = load(conn, [uid], channel).get(uid)
    if before == schedule:
        return False
    conn.execute(delete(table).where(table.c.recipient == uid, table.c.channel == channel))
    if schedule is not None:
        insert_ignore(conn, table, [{"recipient": uid, "channel": channel, **schedule.to_dict()}])
    return True
