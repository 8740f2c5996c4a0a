"""Inbox speed on SQLite and PostgreSQL, in a table of 1,000,000 notifications.

For each database (an SQLite file, and a throw-away PostgreSQL cluster when
Debian's ``postgresql`` is installed) the script fills the inbox table with
``--rows`` notifications spread over ``--users`` users, one third of them
unread, and measures through the public ``notifications.inbox`` API:

- ``unread_count(user)`` and ``list(user, page=1, per_page=20)`` for one user
  (median and 95th percentile of ``--repeat`` calls);
- storing one event for 10,000 recipients with ``inbox.store`` (one bulk insert,
  plus the live ``unread_count`` pushes on a real Redis), next to the naive way:
  one INSERT round trip per recipient, as the tutorial's per-user
  ``add_notification`` does.

Usage: python benchmarks/inbox.py [--rows 1000000] [--users 10000] [--repeat 200]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

import sqlalchemy
from flask import Flask

from flask_notifications import Event, Notifications
from flask_notifications._state import get_state
from flask_notifications.consumers import StoreConsumer
from flask_notifications.inbox.models import notifications as table
from flask_notifications.testing import PostgresServer, RedisServer, find_postgres_bin


def fill(engine: sqlalchemy.Engine, rows: int, users: int) -> None:
    """Bulk-load the table (setup, not measured)."""
    rng = random.Random(42)
    now = time.time()
    batch = []
    with engine.begin() as conn:
        for i in range(rows):
            user = f"user{i % users}"
            ts = now - (rows - i)
            read_at = None if rng.random() < 1 / 3 else ts + 1
            batch.append(
                {
                    "recipient": user, "name": "message", "event_id": f"e{i}",
                    "event_type": "message", "title": f"Notification {i}",
                    "body": "Lorem ipsum dolor sit amet", "data": {"title": f"Notification {i}"},
                    "icon": None, "client_action": None, "timestamp": ts, "read_at": read_at,
                }
            )  # fmt: skip
            if len(batch) == 20_000:
                conn.execute(sqlalchemy.insert(table), batch)
                batch = []
        if batch:
            conn.execute(sqlalchemy.insert(table), batch)
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE flask_notifications")
    else:
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")


def timed(fn, repeat: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1]


def run(label: str, uri: str, redis_url: str, args: argparse.Namespace) -> dict[str, object]:
    app = Flask("bench")
    app.config.update(
        NOTIFICATIONS_REDIS_URL=redis_url,
        NOTIFICATIONS_DATABASE_URI=uri,
        NOTIFICATIONS_MAX_EVENT_BYTES=1024 * 1024,
    )
    notifications = Notifications(app)
    notifications.create_hub("Inbox").register_consumer(StoreConsumer())  # counts are pushed
    with app.app_context():
        inbox = notifications.inbox
        inbox.create_tables()
        engine = get_state(app).engine
        started = time.perf_counter()
        fill(engine, args.rows, args.users)
        fill_s = time.perf_counter() - started
        user = f"user{args.users // 2}"
        inbox.unread_count(user), inbox.list(user)  # warm up
        count_ms = timed(lambda: inbox.unread_count(user), args.repeat)
        page_ms = timed(lambda: inbox.list(user, page=1, per_page=20), args.repeat)

        recipients = [f"fanout{i}" for i in range(10_000)]
        event = Event(None, "message", "To many", "Body", recipients=recipients)
        start = time.perf_counter()
        stored = inbox.store(event)
        bulk_s = time.perf_counter() - start
        assert stored == 10_000

        naive_recipients = [f"naive{i}" for i in range(10_000)]
        row = {
            "name": "message", "event_id": "naive", "event_type": "message", "title": "To many",
            "body": "Body", "data": {}, "icon": None, "client_action": None,
            "timestamp": time.time(), "read_at": None,
        }  # fmt: skip
        start = time.perf_counter()
        with engine.begin() as conn:
            for recipient in naive_recipients:
                conn.execute(sqlalchemy.insert(table).values(dict(row, recipient=recipient)))
        naive_s = time.perf_counter() - start
        total = inbox.unread_count(user)
        notifications.shutdown()
        engine.dispose()
    return {
        "database": label,
        "rows": args.rows,
        "fill_s": fill_s,
        "unread_count_ms": count_ms,
        "first_page_ms": page_ms,
        "store_10k_s": bulk_s,
        "naive_10k_s": naive_s,
        "user_unread": total,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    results = []
    with RedisServer() as redis_server, tempfile.TemporaryDirectory() as tmp:
        results.append(
            run("sqlite", f"sqlite:///{Path(tmp) / 'inbox.sqlite'}", redis_server.url, args)
        )
        if find_postgres_bin() is not None:
            with PostgresServer() as pg:
                results.append(run("postgresql", pg.url, redis_server.url, args))
        else:
            print("(no PostgreSQL server installed: SQLite only)")

    print(
        f"{args.rows:,} rows over {args.users:,} users (1/3 unread); {args.repeat} calls per figure"
    )
    print()
    print("| database | unread_count ms (median / p95) | first page of 20 ms (median / p95) "
          "| store 1 event for 10,000 users (s) | naive: 10,000 INSERTs (s) |")  # fmt: skip
    print("|---|---|---|---|---|")
    for r in results:
        c, p = r["unread_count_ms"], r["first_page_ms"]
        print(
            f"| {r['database']} | {c[0]:.2f} / {c[1]:.2f} | {p[0]:.2f} / {p[1]:.2f} "  # type: ignore[index]
            f"| {r['store_10k_s']:.3f} | {r['naive_10k_s']:.3f} |"
        )


if __name__ == "__main__":
    main()
