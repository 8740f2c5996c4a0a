"""What the stores of users' push targets share: the native apps' devices
(:class:`~flask_notifications.mobile.Devices`) and the browsers' Web Push
subscriptions (:class:`~flask_notifications.webpush.PushSubscriptions`).

Both keep rows of a table with a unique key column (the push token, the
endpoint), a ``recipient`` and a time column that orders a user's rows; a user
keeps at most a configured number of them. Each store keeps its own public
methods, docstrings and rules for a known key; this base runs the SQL.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

from sqlalchemy import Table, delete, insert, select, update
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import IntegrityError

from ..errors import ConfigurationError, InvalidQueryError
from .database import get_engine
from .store import user_id

logger = logging.getLogger("flask_notifications")

_CHUNK = 1000  # users per IN (...)


def positive_int_setting(config: Mapping[str, Any], name: str, default: int) -> int:
    """The setting ``name`` of ``config`` (``default`` when unset), an integer >= 1.

    :param config: the app's configuration.
    :param name: the setting's name.
    :param default: its default.
    :raises ConfigurationError: unless it is an integer >= 1.
    """
    value = config.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{name} must be an integer >= 1, not {value!r}")
    return value


class _UserDevices:
    """The shared SQL of a store of users' push targets (see the module)."""

    #: The table.
    _table: ClassVar[Table]
    #: The name of its unique key column (``token``, ``endpoint``).
    _key: ClassVar[str]
    #: The name of the column ordering a user's rows, newest kept (``registered_at``...).
    _order: ClassVar[str]
    #: The ``%s``-free tail of the eviction log line: ``"devices: deleted the least
    #: recently registered"``.
    _evicted: ClassVar[str]
    #: Makes the public dataclass of a row.
    _row: ClassVar[Callable[[Any], Any]]

    def _upsert(
        self,
        recipient: str,
        key: str,
        limit: int,
        columns: Iterable[str],
        known: Callable[[Row[Any]], dict[str, Any]],
        new: Callable[[], dict[str, Any]],
        failure: str,
    ) -> tuple[int, bool]:
        """Insert the row of ``key`` for ``recipient``, or update it when the key
        is known, then keep the user's newest ``limit`` rows.

        :param recipient: the normalised user id.
        :param key: the unique key's value.
        :param limit: rows kept per user.
        :param columns: the columns (beside ``id`` and ``recipient``) ``known`` reads.
        :param known: the values to update a found row with (it may raise to refuse).
        :param new: the values of a new row (beside the key and ``recipient``).
        :param failure: the :class:`InvalidQueryError` message when every try lost a race.
        :returns: ``(id, created)``.
        """
        table = self._table
        key_column = table.c[self._key]
        wanted = [table.c.id, table.c.recipient, *(table.c[n] for n in columns)]
        for _ in range(3):  # a concurrent insert of the same key: update it then
            with get_engine().begin() as conn:
                found = conn.execute(select(*wanted).where(key_column == key)).one_or_none()
                if found is not None:
                    values = known(found)
                    conn.execute(update(table).where(table.c.id == found.id).values(**values))
                    self._evict(conn, recipient, limit)
                    return int(found.id), False
                try:
                    result = conn.execute(
                        insert(table).values({self._key: key, "recipient": recipient, **new()})
                    )
                except IntegrityError:
                    continue
                self._evict(conn, recipient, limit)
                return int(result.inserted_primary_key[0]), True
        raise InvalidQueryError(failure)

    def _evict(self, conn: Connection, recipient: str, limit: int) -> None:
        """Delete the rows of ``recipient`` beyond the newest ``limit``."""
        table = self._table
        beyond = (
            conn.execute(
                select(table.c.id)
                .where(table.c.recipient == recipient)
                .order_by(table.c[self._order].desc(), table.c.id.desc())
                .offset(limit)
            )
            .scalars()
            .all()
        )
        if beyond:
            conn.execute(delete(table).where(table.c.id.in_(beyond)))
            logger.info(
                "user %s has more than %d " + self._evicted + " (%s)",
                recipient, limit, ", ".join(str(i) for i in beyond),
            )  # fmt: skip

    def _remove(self, recipient: str, key: str) -> bool:
        """Delete the row of ``key`` if it is ``recipient``'s; whether there was one."""
        table = self._table
        with get_engine().begin() as conn:
            result = conn.execute(
                delete(table).where(table.c[self._key] == key, table.c.recipient == recipient)
            )
        return bool(result.rowcount)

    def _delete(self, key: str) -> bool:
        """Delete the row of ``key``, whoever's; whether there was one."""
        table = self._table
        with get_engine().begin() as conn:
            result = conn.execute(delete(table).where(table.c[self._key] == key))
        return bool(result.rowcount)

    def _for_users(self, users: Iterable[str | int]) -> list[Any]:
        """The rows of ``users``, by id."""
        table = self._table
        wanted = list(dict.fromkeys(user_id(u) for u in users))
        found: list[Any] = []
        with get_engine().connect() as conn:
            for i in range(0, len(wanted), _CHUNK):
                query = select(table).where(table.c.recipient.in_(wanted[i : i + _CHUNK]))
                found.extend(self._row(r) for r in conn.execute(query))
        return sorted(found, key=lambda r: r.id)

    def _all(self) -> list[Any]:
        """Every row, by id."""
        table = self._table
        with get_engine().connect() as conn:
            return [self._row(r) for r in conn.execute(select(table).order_by(table.c.id))]
