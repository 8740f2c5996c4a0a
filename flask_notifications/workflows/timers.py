"""Durable timers: work due at a given time, kept in the inbox database.

A timer is a row of the ``flask_notification_timers`` table (see
:data:`flask_notifications.inbox.models.timers`): a ``scope``, a ``key``
unique in its scope, a ``kind`` naming its handler, a due time and a JSON
payload. Timers live in
the inbox database (:func:`~flask_notifications.inbox.database.get_engine`:
``NOTIFICATIONS_DATABASE_URI``, Flask-SQLAlchemy's engine, or an SQLite file
in the instance folder), not in Redis: they survive a worker killed with
SIGKILL and a Redis restart without persistence, and they never rely on a
long Celery ETA (which Redis' visibility timeout would deliver again).

A timer belongs to the app that added it: its ``scope`` is the app's
``NOTIFICATIONS_REDIS_PREFIX`` (:attr:`State.prefix
<flask_notifications._state.State.prefix>`), which the web processes and
the workers of one application share whatever their Flask names, and which
applications sharing one Redis already keep apart. Every query of the table
is filtered by it: applications sharing one database neither run, cancel nor
list each other's timers, and their keys never collide.

Every worker's sweeper (see :mod:`flask_notifications.delivery.sweeper`)
calls :func:`sweep` every ``NOTIFICATIONS_TIMER_POLL`` seconds. A sweep
claims the due timers with a lease (one ``UPDATE ... WHERE`` the lease is
free, atomic on SQLite and PostgreSQL alike: two workers never run one
timer at the same time), runs each one's handler inside the app context,
then deletes the row. A handler that raises leaves the row for a retry
(after ``NOTIFICATIONS_TIMER_RETRY_BACKOFF`` seconds, doubled at each
failure); after ``NOTIFICATIONS_TIMER_MAX_ATTEMPTS`` failed runs the timer
becomes a dead letter (``flask notifications dead-letters``; ``replay``
runs its handler once more, in a worker). A handler that raises a
:class:`ConnectionError` (``NotificationsUnavailable``: Redis or the broker
is down) counts no attempt: the timer and the rest of the batch are due
again after the backoff, however long the outage.

At least once: a worker killed after a handler ran but before the row was
deleted leaves the row, which another sweep runs again once the lease
(``NOTIFICATIONS_TIMER_LEASE`` seconds) has passed. Handlers are therefore
idempotent (the ``send`` handler relies on ``send()``'s deduplication by
event id, for example): at least once plus idempotence makes once.

Handlers are registered per kind with :func:`handler`, a static table filled
when the modules that define them are imported (nothing else happens at
import).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app
from sqlalchemy import and_, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from .._state import get_state
from ..inbox.database import exists as database_exists
from ..inbox.database import inbox_engine
from ..inbox.models import timers as table

if TYPE_CHECKING:
    from ..extension import Notifications

__all__ = [
    "MAX_KEY_LENGTH",
    "TIMER_TASK",
    "Handler",
    "add",
    "cancel",
    "handler",
    "make_key",
    "pending",
    "sweep",
]

logger = logging.getLogger("flask_notifications")

#: The longest timer key (the column's size).
MAX_KEY_LENGTH = 256
#: The longest kind.
_MAX_KIND_LENGTH = 32
#: The task that runs a replayed dead-letter timer's handler (args: the
#: letter's JSON, the kind, the app key).
TIMER_TASK = "flask_notifications.timer"
#: Timers claimed per query.
_BATCH = 100

#: ``handler(extension, payload) -> None``: runs a due timer.
Handler = Callable[["Notifications", dict[str, Any]], None]

# kind -> handler: a static table, like Celery's task registry, filled by the
# @handler decorators of the modules that define timers.
_HANDLERS: dict[str, Handler] = {}


def handler(kind: str) -> Callable[[Handler], Handler]:
    """Register the function that runs the timers of ``kind``::

        @handler("send")
        def send_later(extension, payload): ...

    The function runs in a worker, inside the app context, with the app's
    extension and the timer's payload. It must be idempotent: a worker killed
    after it ran and before the timer was deleted runs it again.

    :param kind: the kind, at most 32 characters.
    :returns: a decorator that registers the function and returns it.
    :raises ValueError: if another function already handles ``kind``.
    """
    _check_kind(kind)

    def register(func: Handler) -> Handler:
        existing = _HANDLERS.get(kind)
        if existing is not None and existing is not func:
            raise ValueError(f"timer kind {kind!r} is already handled by {existing!r}")
        _HANDLERS[kind] = func
        return func

    return register


def make_key(*parts: str) -> str:
    """A timer key from ``parts``, joined with ``:``; keys longer than
    :data:`MAX_KEY_LENGTH` keep their first part and a hash of the rest.

    :param parts: e.g. ``("send", event_id)``.
    """
    key = ":".join(parts)
    if len(key) <= MAX_KEY_LENGTH:
        return key
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
    return f"{parts[0][:100]}:#{digest}"


def add(kind: str, key: str, due_at: float, payload: dict[str, Any]) -> bool:
    """Add a timer to the current app's database.

    :param kind: the handler's kind (see :func:`handler`).
    :param key: unique among the app's timers (see :func:`make_key`); the
        same key in another app (another ``NOTIFICATIONS_REDIS_PREFIX``) is
        another timer.
    :param due_at: when to run it (epoch seconds); a past time runs it at
        the next sweep.
    :param payload: handed to the handler; JSON-serialisable.
    :returns: ``True`` if added, ``False`` if a timer with ``key`` exists
        (deduplication: the existing one is kept as it is).
    :raises ValueError: for a bad kind, key, time or payload.
    """
    _check_kind(kind)
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"a timer key must be a string of 1-{MAX_KEY_LENGTH} characters")
    if isinstance(due_at, bool) or not isinstance(due_at, int | float) or due_at != due_at:
        raise ValueError(f"due_at must be a number of seconds since the epoch, not {due_at!r}")
    try:
        data = json.dumps(payload, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"a timer payload must be JSON-serialisable: {exc}") from None
    state = get_state()
    row = {
        "scope": state.prefix,
        "key": key,
        "kind": kind,
        "due_at": float(due_at),
        "payload": data,
        "attempts": 0,
    }
    try:
        with _engine(state).begin() as conn:
            conn.execute(insert(table), row)
    except IntegrityError:  # the unique key: this timer exists
        return False
    return True


def cancel(key: str) -> bool:
    """Remove a timer of the current app that no sweep holds.

    A timer a sweep has claimed (its handler is running, or about to) is not
    removed: ``cancel`` returns ``False``, as it does for a timer that ran
    already or never existed. A timer waiting for a retry after a failure is
    not held, and is removed. A sweep whose lease expired (a worker killed
    mid-run, or a handler slower than ``NOTIFICATIONS_TIMER_LEASE``) no longer
    holds its timer: ``cancel`` may then remove a timer whose handler did run.

    :param key: the timer's key.
    :returns: whether a timer was removed: it will not run.
    """
    now = time.time()
    state = get_state()
    with _engine(state).begin() as conn:
        result = conn.execute(
            delete(table).where(
                table.c.scope == state.prefix,
                table.c.key == key,
                or_(table.c.lease_until.is_(None), table.c.lease_until < now),
            )
        )
    return bool(result.rowcount)


def pending(kind: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
    """The current app's timers, soonest first (for the CLI and operators).

    :param kind: only timers of this kind; ``None``: every kind.
    :param limit: at most this many.
    :returns: dicts with ``key``, ``kind``, ``due_at``, ``payload`` (decoded),
        ``attempts`` and ``running`` (a sweep holds it now).
    """
    state = get_state()
    query = (
        select(table)
        .where(table.c.scope == state.prefix)
        .order_by(table.c.due_at, table.c.id)
        .limit(limit)
    )
    if kind is not None:
        query = query.where(table.c.kind == kind)
    now = time.time()
    with _engine(state).connect() as conn:
        rows = conn.execute(query).all()
    return [
        {
            "key": row.key,
            "kind": row.kind,
            "due_at": row.due_at,
            "payload": json.loads(row.payload),
            "attempts": row.attempts,
            "running": row.lease_until is not None and row.lease_until >= now,
        }
        for row in rows
    ]


def sweep(app: Flask) -> float:
    """Run the due timers of ``app`` (those of its scope, not those other
    apps sharing the database added); called by every worker's sweeper.

    When nothing is due this is one indexed query. An app whose inbox
    database does not exist yet (no database configured, no default SQLite
    file) has no timer: nothing is created for it.

    :param app: the Flask app whose timers to run.
    :returns: seconds until the next timer is due (or until a lease held by
        another sweep ends), at most ``NOTIFICATIONS_TIMER_POLL``: how long
        the sweeper may wait before calling again.
    """
    with app.app_context():
        config = app.config
        poll = float(config["NOTIFICATIONS_TIMER_POLL"])
        state = get_state()
        if state.engine is None and not database_exists(app):
            return poll  # no database yet, so no timer: create none
        engine = _engine(state)
        now = time.time()
        with engine.connect() as conn:
            rows = conn.execute(
                select(table.c.id, table.c.due_at, table.c.lease_until)
                .where(table.c.scope == state.prefix, table.c.due_at <= now + poll)
                .order_by(table.c.due_at)
                .limit(_BATCH)
            ).all()
        due = [r.id for r in rows if r.due_at <= now and (r.lease_until or 0) < now]
        later = [r.due_at if r.due_at > now else (r.lease_until or now) for r in rows]
        wait = min([t - now for t in later if t > now] or [poll])
        if due:
            lease = float(config["NOTIFICATIONS_TIMER_LEASE"])
            _run(app, engine, state.prefix, due, now, lease)
            if len(rows) >= _BATCH:
                wait = 0.0  # more may be due
        return max(0.0, min(wait, poll))


def _run(app: Flask, engine: Any, scope: str, ids: list[int], now: float, lease: float) -> None:
    """Claim the timers ``ids`` of ``scope`` (those still free), run them, delete them."""
    token = uuid.uuid4().hex
    with engine.begin() as conn:
        # The claim: only rows whose lease is free, in one statement; a
        # concurrent sweep's UPDATE waits for this one and then finds the
        # lease taken (PostgreSQL re-checks the WHERE; SQLite locks the file).
        conn.execute(
            update(table)
            .where(
                table.c.scope == scope,
                table.c.id.in_(ids),
                table.c.due_at <= now,
                or_(table.c.lease_until.is_(None), table.c.lease_until < now),
            )
            .values(lease_until=now + lease, lease_token=token)
        )
    with engine.connect() as conn:
        claimed = conn.execute(
            select(table.c.id, table.c.key, table.c.kind, table.c.payload, table.c.attempts)
            .where(table.c.id.in_(ids), table.c.lease_token == token)
            .order_by(table.c.due_at)
        ).all()
    extension = app.extensions["notifications"]
    done: list[int] = []
    try:
        for n, row in enumerate(claimed):
            func = _HANDLERS.get(row.kind)
            try:
                if func is None:
                    raise LookupError(f"no handler for timer kind {row.kind!r} in this process")
                func(extension, json.loads(row.payload))
            except ConnectionError as exc:  # Redis or the broker is down (NotificationsUnavailable)
                # Not the timer's fault: no attempt counted, and the rest of
                # the batch would wait for the same outage one by one.
                _postpone(engine, [r.id for r in claimed[n:]], token, exc)
                break
            except Exception as exc:  # noqa: BLE001 - retried, then a dead letter
                _failed(engine, row, token, exc)
                continue
            done.append(row.id)
    finally:
        # One transaction for the batch: a worker killed before it runs the
        # batch's handlers again after the lease; they are idempotent.
        if done:
            with engine.begin() as conn:
                conn.execute(
                    delete(table).where(table.c.id.in_(done), table.c.lease_token == token)
                )


def _postpone(engine: Any, ids: list[int], token: str, exc: Exception) -> None:
    """Redis or the broker is unavailable: give the timers ``ids`` back, due
    again after ``NOTIFICATIONS_TIMER_RETRY_BACKOFF`` seconds (0.1 at least),
    without counting an attempt: an outage never makes dead letters."""
    delay = max(float(current_app.config["NOTIFICATIONS_TIMER_RETRY_BACKOFF"]), 0.1)
    logger.warning(
        "%d timer(s) postponed by %.1fs: Redis or the broker is unavailable (%s)",
        len(ids), delay, exc,
    )  # fmt: skip
    with engine.begin() as conn:
        conn.execute(
            update(table)
            .where(table.c.id.in_(ids), table.c.lease_token == token)
            .values(due_at=time.time() + delay, lease_until=None, lease_token=None)
        )


def _failed(engine: Any, row: Any, token: str, exc: Exception) -> None:
    """A handler raised: retry later with backoff, or give up after the last attempt."""
    config = current_app.config
    attempts = row.attempts + 1
    mine = and_(table.c.id == row.id, table.c.lease_token == token)
    if attempts >= config["NOTIFICATIONS_TIMER_MAX_ATTEMPTS"]:
        logger.error(
            "timer %s (%s) failed %d times: %s; kept as a dead letter",
            row.key, row.kind, attempts, exc, exc_info=exc,
        )  # fmt: skip
        from ..delivery.dead_letters import add_dead_letter
        from .timer_replay import letter

        add_dead_letter(TIMER_TASK, row.kind, get_state().app_key, letter(row), exc)
        with engine.begin() as conn:
            conn.execute(delete(table).where(mine))
        return
    backoff = float(config["NOTIFICATIONS_TIMER_RETRY_BACKOFF"]) * 2 ** (attempts - 1)
    backoff = min(backoff, 3600.0)
    logger.warning(
        "timer %s (%s) failed (%s); retry %d/%d in %.1fs",
        row.key, row.kind, exc, attempts, config["NOTIFICATIONS_TIMER_MAX_ATTEMPTS"] - 1, backoff,
    )  # fmt: skip
    with engine.begin() as conn:
        conn.execute(
            update(table)
            .where(mine)
            .values(
                attempts=attempts, due_at=time.time() + backoff, lease_until=None, lease_token=None
            )
        )


def _engine(state: Any) -> Any:
    """The app's inbox engine, for the timers table (a clear
    :class:`~flask_notifications.errors.ConfigurationError` if the table
    predates its ``scope`` column)."""
    return inbox_engine(state, table)


def _check_kind(kind: object) -> None:
    if not isinstance(kind, str) or not kind or len(kind) > _MAX_KIND_LENGTH:
        raise ValueError(f"a timer kind must be a string of 1-{_MAX_KIND_LENGTH} characters")
