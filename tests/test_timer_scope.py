"""Durable timers, digest holds, throttle holds and the model outbox are
scoped by the app's ``NOTIFICATIONS_REDIS_PREFIX``: two applications sharing
one inbox database (SQLite and PostgreSQL) and one Redis, each with its own
real Celery worker and timer sweeper, never run, cancel nor list each
other's work; a web app and a worker app with different Flask names and the
same prefix share theirs. A table created before the scope fails with a
clear ConfigurationError until migrated as documented."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy
from flask import Flask

from flask_notifications import ConfigurationError, Event, Notifications
from flask_notifications._state import get_state
from flask_notifications.consumers import _digest
from flask_notifications.inbox import model_outbox
from flask_notifications.inbox.models import digest_items
from flask_notifications.workflows import throttle, timers

from .conftest import wait_for

RUNS: list[tuple[str, dict]] = []
_lock = threading.Lock()


@timers.handler("tests.scope")
def _run(extension, payload):
    with _lock:
        RUNS.append((get_state().prefix, payload))


@pytest.fixture(autouse=True)
def _clear_runs():
    RUNS.clear()
    yield
    RUNS.clear()


class Recorder:
    """A consumer noting the (event id, title) of each event it gets."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def __call__(self, event, *args, **kwargs):
        with self.lock:
            self.seen.append((event["event_id"], event["title"]))

    def got(self) -> list[tuple[str, str]]:
        with self.lock:
            return sorted(self.seen)


def _app(name: str, prefix: str, uri: str, redis_url: str, tmp_path: Path) -> Flask:
    app = Flask(name, instance_path=str(tmp_path / f"instance-{name}"))
    app.config.update(
        TESTING=True,
        NOTIFICATIONS_REDIS_URL=redis_url,
        NOTIFICATIONS_REDIS_PREFIX=prefix,
        NOTIFICATIONS_DATABASE_URI=uri,
        NOTIFICATIONS_TIMER_POLL=0.2,
    )
    return app


@pytest.fixture
def two_apps(database_uri, redis_url, tmp_path):
    """Apps "shop" and "blog": one database, one Redis, each its own Celery
    app and queue; the same Flask name, hub label and consumer task name, so
    that only the prefix tells them apart."""
    made = {}
    base = redis_url.rsplit("/", 1)[0] if redis_url.count("/") > 2 else redis_url
    for number, prefix in enumerate(("shop", "blog"), start=1):
        app = _app("tests", prefix, database_uri, redis_url, tmp_path / prefix)
        # One Redis for both, but each its own Celery queue (a database of its own).
        app.config["CELERY_BROKER_URL"] = f"{base}/{number}"
        notifications = Notifications(app)  # a Celery app of its own
        recorder = Recorder()
        notifications.create_hub("Later").register_consumer(
            recorder, celery_task_name="tests.scope.record"
        )
        made[prefix] = (app, notifications, recorder)
    yield made
    for app, notifications, _ in made.values():
        with app.app_context():
            notifications.shutdown()
        engine = get_state(app).engine
        if engine is not None:
            engine.dispose()


def ev(event_id: str, title: str) -> Event:
    return Event(event_id, "reminder", title, "", recipients=["7"])


def test_each_app_runs_only_its_own_scheduled_sends(two_apps, worker, timer_sweeper):
    (shop, shop_ext, shop_rec), (blog, blog_ext, blog_rec) = two_apps["shop"], two_apps["blog"]
    # Both apps' timer sweepers run together on the shared database. Their
    # Celery workers run one after the other: two in-thread workers in one
    # process would share Celery's current app, which a real deployment's
    # worker processes do not.
    with timer_sweeper(shop), timer_sweeper(blog):
        with worker(shop):
            # The same event id in both apps: two timers (keys are unique per scope).
            with shop.app_context():
                shop_ext.send(ev("same-id", "shop's"), delay=timedelta(seconds=0.5))
                shop_ext.send(ev("shop-only", "shop's own"), delay=timedelta(seconds=0.5))
                shop_ext.send(ev("far", "shop's far"), delay=timedelta(hours=1))
            with blog.app_context():
                blog_ext.send(ev("same-id", "blog's"), delay=timedelta(seconds=0.5))
                blog_ext.send(ev("blog-only", "blog's own"), delay=timedelta(seconds=0.5))
            # Had blog's sweeper run shop's timers, their tasks would wait in
            # blog's queue and shop's consumer would never see them.
            wait_for(lambda: len(shop_rec.got()) >= 2, timeout=30)
            # Blog's timers ran too (by blog's sweeper: into blog's queue).
            wait_for(lambda: not _pending(blog), timeout=30)
        assert shop_rec.got() == [("same-id", "shop's"), ("shop-only", "shop's own")]
        assert blog_rec.got() == []
        with worker(blog):
            wait_for(lambda: len(blog_rec.got()) >= 2, timeout=30)
        assert [t["key"] for t in _pending(shop)] == [timers.make_key("send", "far")]
    assert shop_rec.got() == [("same-id", "shop's"), ("shop-only", "shop's own")]
    assert blog_rec.got() == [("blog-only", "blog's own"), ("same-id", "blog's")]


def _pending(app: Flask) -> list[dict]:
    with app.app_context():
        return timers.pending()


def test_cancel_and_pending_see_only_the_apps_own_timers(two_apps):
    (shop, shop_ext, _), (blog, blog_ext, _) = two_apps["shop"], two_apps["blog"]
    due = time.time() + 3600
    for app in (shop, blog):
        with app.app_context():
            assert timers.add("tests.scope", "k", due, {"app": get_state().prefix}) is True
            assert timers.add("tests.scope", "k", due, {"again": True}) is False  # dedup
    with shop.app_context():
        shop_ext.send(ev("shop-later", "t"), delay=timedelta(hours=1))
        assert {t["key"] for t in timers.pending()} == {"k", timers.make_key("send", "shop-later")}
    with blog.app_context():
        assert [(t["key"], t["payload"]) for t in timers.pending()] == [("k", {"app": "blog"})]
        assert blog_ext.cancel("shop-later") is False  # not blog's
        assert timers.cancel("k") is True  # blog's own "k" only
        assert timers.pending() == []
    with shop.app_context():
        assert [t["payload"] for t in timers.pending(kind="tests.scope")] == [{"app": "shop"}]
        assert shop_ext.cancel("shop-later") is True
    # A sweep of either app runs its own due timers only.
    for app in (shop, blog):
        with app.app_context():
            timers.add("tests.scope", "due", time.time() - 1, {"app": get_state().prefix})
    timers.sweep(blog)
    assert RUNS == [("blog", {"app": "blog"})]
    timers.sweep(shop)
    assert RUNS[1:] == [("shop", {"app": "shop"})]
    RUNS.clear()


def test_throttle_holds_and_model_outbox_rows_are_scoped(two_apps):
    (shop, _, _), (blog, _, _) = two_apps["shop"], two_apps["blog"]
    end = time.time() + 3600
    with shop.app_context():
        throttle._hold("hub", ev("held", "t"), {"7": end})
        assert throttle._held_rows("hub", "held", ["7"]) == {"7": end}
        engine = get_state().engine
        with engine.begin() as conn:
            model_outbox.record(conn, [ev("model-1", "t")], "shop")
    with blog.app_context():
        assert throttle._held_rows("hub", "held", ["7"]) == {}
        # blog's sweep of the model outbox sends nothing of shop's
        assert model_outbox.sweep(blog.extensions["notifications"], engine, "blog", 0) == 0
    assert [r["event_id"] for r in model_outbox.pending(engine, "shop")] == ["model-1"]
    assert model_outbox.pending(engine, "blog") == []


def test_digest_holds_are_scoped(two_apps):
    (shop, _, _), (blog, _, _) = two_apps["shop"], two_apps["blog"]
    row = {
        "consumer": "tests.mail", "address": "a@example.com", "recipient": "7",
        "channel": "email", "event_id": "held", "event": ev("held", "t").to_json(),
        "created_at": time.time(),
    }  # fmt: skip
    with shop.app_context():
        with _digest._engine().begin() as conn:
            conn.execute(digest_items.insert(), {**row, "scope": "shop"})
        assert _digest._oldest("tests.mail", "a@example.com") == row["created_at"]
    with blog.app_context():  # blog's digest of the same consumer and address: nothing held
        assert _digest._oldest("tests.mail", "a@example.com") is None
        assert _digest.flush("7", "email") == 0
        assert timers.pending() == []
    with shop.app_context():
        assert _digest.flush("7", "email") == 1  # a digest timer of shop's, due now
        assert [t["kind"] for t in timers.pending()] == [_digest.KIND]


def test_a_web_app_and_its_worker_app_share_timers_whatever_their_names(
    database_uri, redis_url, tmp_path
):
    web = _app("web", "product", database_uri, redis_url, tmp_path)
    worker_app = _app("worker", "product", database_uri, redis_url, tmp_path)
    extensions = [Notifications(web), Notifications(worker_app)]
    try:
        with web.app_context():
            timers.add("tests.scope", "shared", time.time() - 1, {"from": "web"})
        with worker_app.app_context():
            assert [t["key"] for t in timers.pending()] == ["shared"]
        timers.sweep(worker_app)
        assert RUNS == [("product", {"from": "web"})]
        with web.app_context():
            assert timers.pending() == []
    finally:
        RUNS.clear()
        for app, extension in zip((web, worker_app), extensions, strict=True):
            with app.app_context():
                extension.shutdown()
            if get_state(app).engine is not None:
                get_state(app).engine.dispose()


# -- tables created before the scope ------------------------------------------------------

OLD_TIMERS = """
CREATE TABLE flask_notification_timers (
    id INTEGER PRIMARY KEY AUTOINCREMENT, key VARCHAR(256) NOT NULL,
    kind VARCHAR(32) NOT NULL, due_at FLOAT NOT NULL, payload TEXT NOT NULL,
    lease_until FLOAT, lease_token VARCHAR(32), attempts INTEGER DEFAULT 0 NOT NULL
);
CREATE UNIQUE INDEX ux_flask_notification_timers_key ON flask_notification_timers (key);
CREATE INDEX ix_flask_notification_timers_due_at ON flask_notification_timers (due_at)
"""

# The SQL of docs/workflows.rst, "Upgrading: work scoped by application".
MIGRATION = [
    "ALTER TABLE flask_notification_timers"
    " ADD COLUMN scope VARCHAR(64) NOT NULL DEFAULT 'flask_notifications'",
    "DROP INDEX ux_flask_notification_timers_key",
    "DROP INDEX ix_flask_notification_timers_due_at",
    "CREATE UNIQUE INDEX ux_flask_notification_timers_scope_key"
    " ON flask_notification_timers (scope, key)",
    "CREATE INDEX ix_flask_notification_timers_scope_due_at"
    " ON flask_notification_timers (scope, due_at)",
]


def test_a_timers_table_without_scope_fails_clearly_until_migrated(redis_url, tmp_path):
    uri = f"sqlite:///{tmp_path / 'old.sqlite'}"
    engine = sqlalchemy.create_engine(uri)
    with engine.begin() as conn:
        for statement in OLD_TIMERS.split(";"):
            conn.exec_driver_sql(statement)
        conn.exec_driver_sql(
            "INSERT INTO flask_notification_timers (key, kind, due_at, payload)"
            " VALUES ('old', 'tests.scope', 0, '{\"old\": true}')"
        )
    app = _app("old", "flask_notifications", uri, redis_url, tmp_path)
    notifications = Notifications(app)
    with app.app_context():
        for call in (
            lambda: timers.add("tests.scope", "k", time.time(), {}),
            lambda: timers.pending(),
            lambda: timers.cancel("k"),
            lambda: timers.sweep(app),
        ):
            with pytest.raises(ConfigurationError) as caught:
                call()
            message = str(caught.value)
            assert "flask_notification_timers" in message and "column scope" in message
            assert "ux_flask_notification_timers_scope_key" in message
            assert "docs/workflows.rst" in message
        notifications.inbox.unread_count("7")  # the rest of the inbox works
        notifications.shutdown()
    get_state(app).engine.dispose()
    with engine.begin() as conn:
        for statement in MIGRATION:
            conn.exec_driver_sql(statement)
    engine.dispose()
    app = _app("old", "flask_notifications", uri, redis_url, tmp_path)
    notifications = Notifications(app)
    try:
        with app.app_context():  # the old timer now belongs to the default prefix
            assert [t["key"] for t in timers.pending()] == ["old"]
        timers.sweep(app)
        assert RUNS == [("flask_notifications", {"old": True})]
    finally:
        RUNS.clear()
        with app.app_context():
            notifications.shutdown()
        get_state(app).engine.dispose()
