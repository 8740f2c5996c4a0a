"""Model events that survive the web process: an outbox table in the model's
own database.

:meth:`Notifications.on_insert <flask_notifications.Notifications.on_insert>`
events are written to the ``flask_notification_outbox`` table when the
session flushes, in the same transaction as the model change: they commit or
roll back with it. After the commit the web process sends them and deletes
their rows. If it dies in between (a deploy, the OOM killer, SIGKILL), the
rows stay, and every worker's sweeper sends the rows older than
``NOTIFICATIONS_MODEL_OUTBOX_AFTER`` seconds. ``send()``'s deduplication by
event id makes that exactly once, whoever sends first.

Each row carries its app's scope (``NOTIFICATIONS_REDIS_PREFIX``): a worker
sends only its own app's rows, never those of another app sharing the
database (which its hubs would deliver). The rows stay keyed by event id
alone: an app whose model events reuse another app's event ids in one
database cannot write them (a duplicate key), instead of sending the wrong
one.

Workers sweep the app's database: ``NOTIFICATIONS_DATABASE_URI``, else
Flask-SQLAlchemy's ``db.engine`` (see :func:`~flask_notifications.inbox.database.get_engine`):
keep the models whose events you send in that database.
"""

from __future__ import annotations

import logging
import time
import weakref
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, inspect, select
from sqlalchemy.exc import SQLAlchemyError

from ..errors import ConfigurationError
from ..event import Event
from .database import schema_error
from .models import model_outbox

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

    from ..extension import Notifications

logger = logging.getLogger("flask_notifications")

# Engines whose outbox table is known to exist (its creation committed).
_ready: weakref.WeakSet[Engine] = weakref.WeakSet()


def record(connection: Connection, events: list[Event], scope: str) -> None:
    """Write ``events`` in the transaction of ``connection`` (a flushing session's).

    :param connection: the session's connection.
    :param events: the validated events.
    :param scope: the app's ``NOTIFICATIONS_REDIS_PREFIX``.
    :raises ConfigurationError: if the table predates its ``scope`` column.
    """
    if connection.engine not in _ready:
        model_outbox.create(connection, checkfirst=True)  # in the same transaction
        error = schema_error(inspect(connection), model_outbox.name)
        if error is not None:
            raise ConfigurationError(error)
    now = time.time()
    connection.execute(
        model_outbox.insert(),
        [
            {"event_id": e["event_id"], "scope": scope, "event": e.to_json(), "created_at": now}
            for e in events
        ],
    )


def committed(engine: Engine) -> None:
    """Note that ``engine``'s outbox table exists (a transaction that wrote
    to it committed).

    :param engine: the session's engine.
    """
    _ready.add(engine)


def forget(engine: Engine, event_ids: list[str]) -> None:
    """Delete the rows of events that were sent.

    :param engine: the database they are in.
    :param event_ids: their ids.
    """
    if not event_ids:
        return
    try:
        with engine.begin() as conn:
            conn.execute(delete(model_outbox).where(model_outbox.c.event_id.in_(event_ids)))
    except SQLAlchemyError:  # the sweeper sends them again; deduplication drops them
        logger.warning("could not clear %d sent model event(s) from the outbox", len(event_ids))


def sweep(
    extension: Notifications, engine: Engine, scope: str, older_than: float, limit: int = 500
) -> int:
    """Send the app's outbox rows older than ``older_than`` seconds, then delete them.

    Runs in a worker's app context. Rows whose send fails stay for the next sweep.

    :param extension: the app's extension.
    :param engine: the app's database.
    :param scope: the app's ``NOTIFICATIONS_REDIS_PREFIX``: only its rows are sent.
    :param older_than: seconds a row is left to the web process that wrote it.
    :param limit: at most this many rows per call.
    :returns: how many were handed to ``send()`` (sent, or already sent).
    """
    if engine not in _ready:
        if not inspect(engine).has_table(model_outbox.name):
            return 0
        _ready.add(engine)
    cutoff = time.time() - older_than
    with engine.connect() as conn:
        rows = conn.execute(
            select(model_outbox.c.event_id, model_outbox.c.event)
            .where(model_outbox.c.scope == scope, model_outbox.c.created_at < cutoff)
            .order_by(model_outbox.c.created_at)
            .limit(limit)
        ).all()
    done = []
    for event_id, payload in rows:
        try:
            extension.send(Event.from_json(payload))
        except Exception:  # noqa: BLE001 - kept for the next sweep
            logger.warning("model event %s left in the outbox: not sent yet", event_id)
            continue
        done.append(event_id)
    forget(engine, done)
    if done:
        logger.warning("%d model event(s) a web process left unsent were sent", len(done))
    return len(done)


def pending(engine: Engine, scope: str | None = None) -> list[dict[str, Any]]:
    """The rows in the outbox (for operators and tests), oldest first.

    :param engine: the database.
    :param scope: only the rows of this app (its ``NOTIFICATIONS_REDIS_PREFIX``);
        ``None``: every app's.
    """
    if not inspect(engine).has_table(model_outbox.name):
        return []
    query = select(model_outbox).order_by(model_outbox.c.created_at)
    if scope is not None:
        query = query.where(model_outbox.c.scope == scope)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [dict(row._mapping) for row in rows]
