"""Which database the inbox uses, built once per application."""

from __future__ import annotations

import os
import sqlite3
import time
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app
from sqlalchemy import Connection, Engine, Table, create_engine, event, inspect
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from .._state import get_state
from ..errors import ConfigurationError
from .models import GROUP_COLUMNS, GROUP_INDEX, metadata
from .models import notifications as notifications_table

if TYPE_CHECKING:
    from .._state import State


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA busy_timeout=5000")
        # WAL lets readers (web processes) work while a worker writes. It is an
        # optimisation: if another connection holds the file, keep its mode.
        cursor.execute("PRAGMA journal_mode=WAL")
    except sqlite3.OperationalError:
        pass
    finally:
        cursor.close()


def _default_path(app: Flask) -> str:
    return os.path.join(app.instance_path, "notifications.sqlite")


def exists(app: Flask) -> bool:
    """Whether ``app``'s inbox database may hold data without being created
    now: one is configured (``NOTIFICATIONS_DATABASE_URI``, Flask-SQLAlchemy),
    or the default SQLite file exists. Workers' sweepers look at nothing else,
    so a worker never creates a database file for an app that uses none.

    :param app: the Flask app.
    """
    if app.config.get("NOTIFICATIONS_DATABASE_URI") or "sqlalchemy" in app.extensions:
        return True
    return os.path.exists(_default_path(app))


def _make_engine(app: Flask) -> Engine:
    uri = app.config.get("NOTIFICATIONS_DATABASE_URI")
    if not uri:
        db = app.extensions.get("sqlalchemy")
        if db is not None:  # the app's Flask-SQLAlchemy database
            return db.engine  # type: ignore[no-any-return]
        os.makedirs(app.instance_path, exist_ok=True)
        uri = "sqlite:///" + _default_path(app)
    engine = create_engine(uri, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _create_tables(engine: Engine) -> None:
    """Create the missing tables; another process creating them at the same
    moment (a worker's sweeper and a web process starting together) makes
    ``CREATE TABLE`` fail after the check: look again."""
    for attempt in range(10):
        try:
            metadata.create_all(engine, checkfirst=True)
            return
        except (OperationalError, ProgrammingError, IntegrityError):
            if attempt == 9:
                raise
            time.sleep(0.05 * (attempt + 1))  # let the other one finish its tables


def get_engine(state: State | None = None) -> Engine:
    """The current app's inbox engine; its tables are created on first use.

    :param state: the app's state (looked up when omitted).
    """
    state = state or get_state()
    engine = state.engine
    if engine is None:
        with state.lock:
            engine = state.engine
            if engine is None:
                engine = _make_engine(current_app._get_current_object())  # type: ignore[attr-defined]
                _create_tables(engine)
                state.inbox_schema_error = _schema_error(engine)
                state.engine = engine
    return engine


def inbox_engine(state: State | None = None) -> Engine:
    """:func:`get_engine`, for the inbox's notifications table: raises when
    that table predates the columns of grouping (``create_all`` adds no
    column to an existing table).

    :param state: the app's state (looked up when omitted).
    :raises ConfigurationError: naming the missing columns and the migration.
    """
    state = state or get_state()
    engine = get_engine(state)
    if state.inbox_schema_error is not None:
        raise ConfigurationError(state.inbox_schema_error)
    return engine


def _schema_error(engine: Engine) -> str | None:
    """Why the notifications table cannot be used (columns or index missing), or ``None``."""
    inspector = inspect(engine)
    name = notifications_table.name
    present = {c["name"] for c in inspector.get_columns(name)}
    missing = [c for c in GROUP_COLUMNS if c not in present]
    indexes = {i["name"] for i in inspector.get_indexes(name)}
    if not missing and GROUP_INDEX in indexes:
        return None
    what = f"the columns {', '.join(missing)}" if missing else f"the index {GROUP_INDEX}"
    if missing and GROUP_INDEX not in indexes:
        what += f" and the index {GROUP_INDEX}"
    return (
        f"the inbox table {name!r} lacks {what}, added for grouped notifications: "
        "create_all() does not change an existing table. "
        "Migrate it (an Alembic revision, or the SQL in the documentation: "
        "docs/inbox.rst, 'Upgrading an existing inbox')"
    )


def insert_ignore(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> int:
    """Insert ``rows`` into ``table``, skipping those whose unique key is
    already there (``ON CONFLICT DO NOTHING`` on SQLite and PostgreSQL; on
    other databases, one row at a time in a savepoint).

    A plain insert that fails on a duplicate would abort the whole
    transaction on PostgreSQL, and SQLite's driver mishandles savepoints.

    :param conn: a connection in a transaction.
    :param table: the table.
    :param rows: the rows.
    :returns: how many were inserted (where the driver tells).
    """
    if not rows:
        return 0
    name = conn.dialect.name
    if name in ("sqlite", "postgresql"):
        module = sqlite if name == "sqlite" else postgresql
        result = conn.execute(module.insert(table).on_conflict_do_nothing(), rows)
        return max(result.rowcount, 0)
    count = 0
    for row in rows:
        try:
            with conn.begin_nested():
                conn.execute(table.insert(), row)
            count += 1
        except IntegrityError:
            pass
    return count
