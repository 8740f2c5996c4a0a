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
from .models import GROUP_COLUMNS, GROUP_INDEX, SCOPE_COLUMN, SCOPED, metadata
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
                state.schema_errors = _schema_errors(engine)
                state.engine = engine
    return engine


def inbox_engine(state: State | None = None, table: Table = notifications_table) -> Engine:
    """:func:`get_engine`, for ``table``: raises when that table predates
    columns or an index added since (``create_all`` adds no column to an
    existing table): the inbox's grouping columns, the app scope of the
    tables the workers sweep.

    :param state: the app's state (looked up when omitted).
    :param table: the table about to be used (the inbox's notifications by default).
    :raises ConfigurationError: naming the missing columns and the migration.
    """
    state = state or get_state()
    engine = get_engine(state)
    error = state.schema_errors.get(table.name)
    if error is not None:
        raise ConfigurationError(error)
    return engine


# What a table created by an earlier version may lack: its name -> (the
# columns, the index, what they are for, where the migration is written).
_ADDED: dict[str, tuple[tuple[str, ...], str | None, str, str]] = {
    notifications_table.name: (
        GROUP_COLUMNS,
        GROUP_INDEX,
        "grouped notifications",
        "docs/inbox.rst, 'Upgrading an existing inbox'",
    ),
    **{
        name: (
            (SCOPE_COLUMN,),
            index,
            "applications sharing one database",
            "docs/workflows.rst, 'Upgrading: work scoped by application'",
        )
        for name, index in SCOPED.items()
    },
}


def schema_error(inspector: Any, name: str) -> str | None:
    """Why the table ``name`` cannot be used (columns or index missing), or
    ``None`` (also for a table that does not exist: it is created as it is).

    :param inspector: a SQLAlchemy inspector of the database.
    :param name: the table's name.
    """
    if name not in _ADDED or not inspector.has_table(name):
        return None
    columns, index, purpose, where = _ADDED[name]
    present = {c["name"] for c in inspector.get_columns(name)}
    missing = [c for c in columns if c not in present]
    no_index = index is not None and index not in {i["name"] for i in inspector.get_indexes(name)}
    if not missing and not no_index:
        return None
    parts = [f"the column{'s' if len(missing) > 1 else ''} {', '.join(missing)}"] if missing else []
    if no_index:
        parts.append(f"the index {index}")
    return (
        f"the table {name!r} lacks {' and '.join(parts)}, added for {purpose}: "
        "create_all() does not change an existing table. "
        f"Migrate it (an Alembic revision, or the SQL in the documentation: {where})"
    )


def _schema_errors(engine: Engine) -> dict[str, str]:
    """Why each table that cannot be used cannot (see :func:`schema_error`)."""
    inspector = inspect(engine)
    errors = {name: schema_error(inspector, name) for name in _ADDED}
    return {name: error for name, error in errors.items() if error is not None}


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
