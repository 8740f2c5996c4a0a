"""The cost per event of the preference checks, with categories.

For each database (an SQLite file, and a throw-away PostgreSQL cluster when
Debian's ``postgresql`` is installed) the script sends ``--events`` events
through a :class:`~flask_notifications.consumers.push_consumer.PushConsumer`'s
``consume`` (the ``stream`` channel: the check, then one publish on a real
Redis), in the same run:

- ``off``: ``NOTIFICATIONS_PREFERENCES = False``, no check at all;
- ``on, none set``: preferences on, empty tables;
- ``on, set``: ``--users`` users with switches (each has two categories
  turned off on ``stream`` and ``email``, one event type opted out, and one in
  ten the ``webpush`` channel off), events with a category some recipients
  turned off.

Each event has ``--recipients`` recipients. It prints events per second and
the cost of the check per event (the difference with ``off``), and the time of
one ``preferences.allowed_for`` call alone.

Usage: python benchmarks/preferences.py [--events 2000] [--recipients 10] [--users 10000]
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
from flask_notifications.consumers import PushConsumer
from flask_notifications.inbox.models import category_preferences, preferences
from flask_notifications.testing import PostgresServer, RedisServer, find_postgres_bin

CATEGORIES = ["comments", "follows", "likes", "mentions"]


def fill(engine: sqlalchemy.Engine, users: int) -> int:
    """Switches for ``users`` users (setup, not measured); returns the row count."""
    rng = random.Random(7)
    category_rows, type_rows = [], []
    for i in range(users):
        user = f"user{i}"
        for category in rng.sample(CATEGORIES, 2):
            for channel in ("stream", "email"):
                category_rows.append({"recipient": user, "channel": channel, "category": category})
        type_rows.append({"recipient": user, "event_type": "newsletter", "channel": "stream"})
        if i % 10 == 0:
            type_rows.append({"recipient": user, "event_type": "*", "channel": "webpush"})
    with engine.begin() as conn:
        conn.execute(sqlalchemy.insert(category_preferences), category_rows)
        conn.execute(sqlalchemy.insert(preferences), type_rows)
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
    else:
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    return len(category_rows) + len(type_rows)


def events(count: int, recipients: int, users: int) -> list[Event]:
    rng = random.Random(11)
    return [
        Event(
            None,
            "comment",
            "New comment",
            "Nice post!",
            recipients=[f"user{rng.randrange(users)}" for _ in range(recipients)],
            category=rng.choice(CATEGORIES),
        )  # fmt: skip
        for _ in range(count)
    ]


def rate(app: Flask, consumer: PushConsumer, batch: list[Event]) -> float:
    with app.app_context():
        for event in batch[:50]:  # warm up: connections, statements
            consumer.consume(event)
        start = time.perf_counter()
        for event in batch:
            consumer.consume(event)
        return len(batch) / (time.perf_counter() - start)


def run(label: str, uri: str, redis_url: str, args: argparse.Namespace) -> dict[str, object]:
    results: dict[str, object] = {"database": label}
    batch = events(args.events, args.recipients, args.users)
    modes = ("off", "on, none set", "on, set")
    apps = {}
    for mode in modes:  # each mode its own app and database (same server)
        app = Flask("bench")
        db_uri = uri.replace("{mode}", str(modes.index(mode)))
        app.config.update(
            NOTIFICATIONS_REDIS_URL=redis_url,
            NOTIFICATIONS_DATABASE_URI=db_uri,
            NOTIFICATIONS_PREFERENCES=mode != "off",
        )
        notifications = Notifications(app)
        hub = notifications.create_hub("Bench")
        apps[mode] = (app, notifications, PushConsumer(notifications.redis, hub.hub_id))
        with app.app_context():
            notifications.inbox.create_tables()
            engine = get_state(app).engine
            with engine.begin() as conn:
                conn.execute(sqlalchemy.delete(category_preferences))
                conn.execute(sqlalchemy.delete(preferences))
            if mode == "on, set":
                results["rows"] = fill(engine, args.users)
    # Rounds interleave the modes, so a change in the machine's load hits all three.
    rates: dict[str, list[float]] = {mode: [] for mode in modes}
    for _ in range(args.rounds):
        for mode in modes:
            app, _, consumer = apps[mode]
            rates[mode].append(rate(app, consumer, batch))
    for mode in modes:
        results[mode] = statistics.median(rates[mode])
    app, notifications, _ = apps["on, set"]
    with app.app_context():
        times = []
        for event in batch:
            start = time.perf_counter()
            notifications.preferences.allowed_for(event["recipients"], event, "stream")
            times.append((time.perf_counter() - start) * 1e6)
        results["check_us"] = statistics.median(times)
    for app, notifications, _ in apps.values():
        notifications.shutdown()
        get_state(app).engine.dispose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--recipients", type=int, default=10)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results = []
    with RedisServer() as redis_server, tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{Path(tmp) / 'prefs-{mode}.sqlite'}"
        results.append(run("sqlite", uri, redis_server.url, args))
        if find_postgres_bin() is not None:
            with PostgresServer() as pg:  # a database per mode: their tables differ
                engine = sqlalchemy.create_engine(pg.url, isolation_level="AUTOCOMMIT")
                with engine.connect() as conn:
                    for i in range(3):
                        conn.exec_driver_sql(f"CREATE DATABASE prefs{i}")
                engine.dispose()
                uri = pg.url.rsplit("/", 1)[0] + "/prefs{mode}"
                results.append(run("postgresql", uri, redis_server.url, args))
        else:
            print("(no PostgreSQL server installed: SQLite only)")

    print(
        f"{args.events:,} events of {args.recipients} recipients through PushConsumer.consume "
        f"(median of {args.rounds} rounds); {args.users:,} users with switches "
        f"({results[0]['rows']:,} rows)"
    )
    print()
    print("| database | off: events/s | on, none set: events/s | on, set: events/s "
          "| check per event (set) | allowed_for alone (median) |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for r in results:
        off, empty, full = r["off"], r["on, none set"], r["on, set"]
        cost = (1 / full - 1 / off) * 1e6  # type: ignore[operator]
        print(
            f"| {r['database']} | {off:,.0f} | {empty:,.0f} | {full:,.0f} "
            f"| {cost:,.0f} us | {r['check_us']:,.0f} us |"
        )


if __name__ == "__main__":
    main()
