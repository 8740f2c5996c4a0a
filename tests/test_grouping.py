"""Grouped notifications (issue 16): the ``group`` field, one unread inbox
item per (recipient, group) with its count and actors, on SQLite and on
PostgreSQL, under concurrent writers; the HTTP API; an inbox table that
predates the columns."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy
from flask import request

from flask_notifications import Event, Notifications
from flask_notifications._state import get_state
from flask_notifications.consumers import StoreConsumer
from flask_notifications.errors import ConfigurationError, InvalidEventError
from flask_notifications.inbox.models import notifications as table


@pytest.fixture
def group_app(make_app, database_uri):
    app = make_app(NOTIFICATIONS_DATABASE_URI=database_uri, CELERY_TASK_ALWAYS_EAGER=True)
    notifications = Notifications(app)
    notifications.identity_loader(lambda: request.headers.get("X-User"))
    notifications.create_hub("Posts").register_consumer(StoreConsumer())
    with app.app_context():
        yield app, notifications
        notifications.shutdown()
        engine = get_state(app).engine
        if engine is not None:
            engine.dispose()


def comment(title, sender, recipients=("alice",), group="post:42:comments", **custom):
    return Event(
        None, "comment", title, "body", sender=sender, recipients=list(recipients), group=group,
        **custom,
    )  # fmt: skip


def unread_items(app, user="alice"):
    with get_state(app).engine.connect() as conn:
        return conn.execute(
            sqlalchemy.select(table).where(table.c.recipient == user, table.c.read_at.is_(None))
        ).all()


def actor_rows(app, item_id):
    from flask_notifications.inbox.models import group_actors

    with get_state(app).engine.connect() as conn:
        return conn.execute(
            sqlalchemy.select(sqlalchemy.func.count())
            .select_from(group_actors)
            .where(group_actors.c.notification_id == item_id)
        ).scalar()


# -- the field ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (42, "group: must be a string, not int"),
        ("", "group: must not be empty"),
        ("x" * 257, "group: must be at most 256 characters"),
        ("post:1\r\nX-Evil: 1", "group: must not contain control characters"),
        (["a"], "group: must be a string, not list"),
    ],
)
def test_group_is_validated(value, message):
    with pytest.raises(InvalidEventError, match=message) as caught:
        Event(None, "comment", "t", "b", group=value)
    assert caught.value.field == "group"
    event = Event(None, "comment", "t", "b")
    event["group"] = value  # edited after construction: send() validates again
    with pytest.raises(InvalidEventError, match=message):
        event.validate()


def test_group_stays_a_custom_field_for_the_mobile_consumers():
    event = Event(None, "comment", "t", "b", group="post:1", thread="t")
    assert event.custom_fields == {"group": "post:1", "thread": "t"}
    assert Event.from_json(event.to_json())["group"] == "post:1"
    assert "group" not in Event(None, "comment", "t", "b")  # absent unless given
    assert Event(None, "comment", "t", "b", group=None)["group"] is None  # None: no group


# -- the inbox --------------------------------------------------------------------------


def test_events_of_a_group_update_one_unread_item(group_app):
    app, notifications = group_app
    inbox = notifications.inbox
    first = comment("bob commented", "bob", ["alice", "carol"])
    inbox.store(first)
    inbox.store(comment("other post", "bob", group="post:7:comments"))
    inbox.store(comment("no group", "bob", group=None))
    second = comment("dave commented", "dave")
    inbox.store(second)
    inbox.store(comment("bob again", "bob"))
    assert inbox.unread_count("alice") == 3  # the group's item, the other post, no group
    page = inbox.list("alice")
    item = page.items[0]  # the newest first: updated items move up
    assert item["group"] == "post:42:comments"
    assert item["count"] == 3
    assert item["title"] == "bob again"
    assert item["actors"] == ["bob", "dave"]  # distinct, newest first
    assert item["actor_count"] == 2
    assert item["data"]["recipients"] == ["alice"] and item["data"]["title"] == "bob again"
    others = {i["title"]: i for i in page.items[1:]}
    assert others["other post"]["count"] == 1 and others["other post"]["group"] == "post:7:comments"
    assert others["no group"]["group"] is None and others["no group"]["count"] == 1
    assert others["no group"]["actors"] == [] and others["no group"]["actor_count"] == 0
    carol = inbox.list("carol").items
    assert [(i["count"], i["actors"], i["title"]) for i in carol] == [(1, ["bob"], "bob commented")]

    # Read: the next event of the group starts a new item; the read item's
    # distinct-sender records go (it is never updated again).
    assert actor_rows(app, item["id"]) == 2
    assert inbox.mark_read("alice", item["id"])
    assert actor_rows(app, item["id"]) == 0
    inbox.store(comment("erin commented", "erin"))
    items = inbox.list("alice").items
    fresh, old = items[0], next(i for i in items if i["id"] == item["id"])
    assert fresh["id"] != item["id"] and fresh["count"] == 1 and fresh["actors"] == ["erin"]
    assert old["read"] and old["count"] == 3 and old["actor_count"] == 2
    assert inbox.unread_count("alice") == 3
    assert actor_rows(app, fresh["id"]) == 1
    assert inbox.mark_all_read("alice") == 3
    assert actor_rows(app, fresh["id"]) == 0


def test_actors_are_capped_and_counted(group_app):
    app, notifications = group_app
    inbox = notifications.inbox
    for sender in ["u1", "u2", "u3", "u4", "u2", "u5", "u1", ""]:
        inbox.store(comment(f"{sender} commented", sender))
    (item,) = inbox.list("alice").items
    assert item["count"] == 8
    assert item["actors"] == ["u1", "u5", "u2"]  # the last three distinct senders
    assert item["actor_count"] == 5  # "u1 and 4 others"


def test_a_redelivered_event_counts_once(group_app):
    app, notifications = group_app
    event = comment("bob commented", "bob")
    notifications.inbox.store(comment("carol commented", "carol"))
    notifications.inbox.store(event)
    notifications.inbox.store(event)  # the worker died after the commit: delivered again
    (item,) = notifications.inbox.list("alice").items
    assert (item["count"], item["actors"], item["actor_count"]) == (2, ["bob", "carol"], 2)


def test_concurrent_writers_make_one_item_and_lose_no_count(group_app):
    """Eight threads, each with its own connection (as eight workers), store
    events of one group at once: one unread item, every event counted."""
    app, notifications = group_app
    threads_n, each = 8, 15
    barrier = threading.Barrier(threads_n)
    errors = []

    def writer(n):
        try:
            with app.app_context():
                barrier.wait()
                for i in range(each):
                    notifications.inbox.store(comment(f"w{n} #{i}", f"w{n}", ["alice", "bob"]))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    for user in ("alice", "bob"):
        (row,) = unread_items(app, user)
        assert row._mapping["count"] == threads_n * each
        assert row.actor_count == threads_n
        assert len(row.actors) == 3 and len(set(row.actors)) == 3


def test_http_api_items_carry_group_count_and_actors(group_app):
    app, notifications = group_app
    notifications.inbox.store(comment("bob commented", "bob"))
    notifications.inbox.store(comment("carol commented", "carol"))
    client = app.test_client()
    (item,) = client.get("/notifications/inbox", headers={"X-User": "alice"}).get_json()["items"]
    assert (item["group"], item["count"], item["actors"], item["actor_count"]) == (
        "post:42:comments", 2, ["carol", "bob"], 2,
    )  # fmt: skip
    (polled,) = client.get("/notifications?since=0", headers={"X-User": "alice"}).get_json()
    assert (polled["group"], polled["count"], polled["actors"]) == (
        "post:42:comments", 2, ["carol", "bob"],
    )  # fmt: skip
    assert polled["data"]["title"] == "carol commented"


# -- an inbox table older than grouping ---------------------------------------------------

OLD_TABLE = """
CREATE TABLE flask_notifications (
    id INTEGER PRIMARY KEY AUTOINCREMENT, recipient VARCHAR(256) NOT NULL,
    name VARCHAR(128) NOT NULL, event_id VARCHAR(256), event_type VARCHAR(128) NOT NULL,
    title TEXT NOT NULL, body TEXT NOT NULL, data JSON NOT NULL, icon VARCHAR(1024),
    client_action VARCHAR(256), timestamp FLOAT NOT NULL, read_at FLOAT
)
"""


def test_an_old_table_fails_with_a_clear_error(make_app, tmp_path):
    uri = f"sqlite:///{tmp_path / 'old.sqlite'}"
    engine = sqlalchemy.create_engine(uri)
    with engine.begin() as conn:
        conn.exec_driver_sql(OLD_TABLE)
    engine.dispose()
    app = make_app(NOTIFICATIONS_DATABASE_URI=uri)
    notifications = Notifications(app)
    notifications.identity_loader(lambda: request.headers.get("X-User"))
    with app.app_context():
        for call in (
            lambda: notifications.inbox.store(comment("t", "bob")),
            lambda: notifications.inbox.store(Event(None, "m", "t", "b", recipients=["a"])),
            lambda: notifications.inbox.list("alice"),
            lambda: notifications.inbox.unread_count("alice"),
        ):
            with pytest.raises(ConfigurationError) as caught:
                call()
            message = str(caught.value)
            assert "group_key, count, actors, actor_count" in message
            assert "ux_flask_notifications_unread_group" in message
            assert "docs/inbox.rst" in message
        # The documented migration makes it work.
        with get_state(app).engine.begin() as conn:
            for statement in MIGRATION:
                conn.exec_driver_sql(statement)
        notifications.shutdown()
    app = make_app(NOTIFICATIONS_DATABASE_URI=uri)
    notifications = Notifications(app)
    with app.app_context():
        notifications.inbox.store(comment("one", "bob"))
        notifications.inbox.store(comment("two", "carol"))
        (item,) = notifications.inbox.list("alice").items
        assert item["count"] == 2 and item["actors"] == ["carol", "bob"]
        notifications.shutdown()
        get_state(app).engine.dispose()


MIGRATION = [
    "ALTER TABLE flask_notifications ADD COLUMN group_key VARCHAR(256)",
    "ALTER TABLE flask_notifications ADD COLUMN count INTEGER NOT NULL DEFAULT 1",
    "ALTER TABLE flask_notifications ADD COLUMN actors JSON",
    "ALTER TABLE flask_notifications ADD COLUMN actor_count INTEGER NOT NULL DEFAULT 0",
    "CREATE UNIQUE INDEX ux_flask_notifications_unread_group ON flask_notifications "
    "(recipient, group_key) WHERE read_at IS NULL AND group_key IS NOT NULL",
]


def test_the_mobile_badge_counts_a_groups_item_once(group_app):
    from flask_notifications.consumers._badge import unread_badges

    app, notifications = group_app
    hub = notifications.get_hub("Posts")
    hub.register_consumer(lambda event: None, celery_task_name="tests.grouping.push")
    consumer = hub.get_consumer("tests.grouping.push")
    notifications.inbox.store(comment("bob commented", "bob"))
    # The group's item takes the next comment in: the badge stays at 1.
    assert unread_badges(consumer, comment("carol commented", "carol"), ["alice"]) == {"alice": 1}
    other = comment("on another post", "carol", group="post:7:comments")
    assert unread_badges(consumer, other, ["alice"]) == {"alice": 2}


def test_two_worker_processes_make_one_item_and_lose_no_count(tmp_path, redis_url, monkeypatch):
    """Two real ``celery worker`` subprocesses store events of one group at
    once (SQLite): one unread item, every event counted."""
    from flask import Flask

    from .conftest import wait_for, worker_process

    database = f"sqlite:///{tmp_path / 'inbox.sqlite'}"
    for key, value in {
        "REDIS_URL": redis_url, "DATABASE_URI": database, "LOG": str(tmp_path / "log.jsonl"),
    }.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    web = Flask("web", instance_path=str(tmp_path / "instance"))
    web.config.update(NOTIFICATIONS_REDIS_URL=redis_url, NOTIFICATIONS_DATABASE_URI=database)
    notifications = Notifications(web)
    notifications.create_hub("Comments").register_consumer(StoreConsumer())
    with web.app_context():
        notifications.inbox.create_tables()
    total = 60
    with (
        worker_process("tests.throttle_app:celery", redis_url) as first,
        worker_process("tests.throttle_app:celery", redis_url) as second,
        web.app_context(),
    ):
        for n in range(total):
            notifications.send(comment(f"#{n}", f"u{n % 4}", ["alice", "bob"]))

        def counted():
            items = [notifications.inbox.list(u, unread_only=True).items for u in ("alice", "bob")]
            return all(len(i) == 1 and i[0]["count"] == total for i in items)

        try:
            wait_for(counted, 60)
        except AssertionError:
            raise AssertionError("".join(first.output[-20:] + second.output[-20:])) from None
        ran = [sum("Task flask_notifications" in line and "succeeded" in line for line in w.output)
               for w in (first, second)]  # fmt: skip
    with web.app_context():
        for user in ("alice", "bob"):
            (item,) = notifications.inbox.list(user, unread_only=True).items
            assert item["actor_count"] == 4 and len(item["actors"]) == 3
    assert all(ran), ran  # both workers stored some of them
    get_state(web).engine.dispose()


def test_the_stream_gets_the_item_that_took_the_event_in_else_the_event(group_app, redis_client):
    """PushConsumer beside a StoreConsumer: the recipient's item when it took
    this event in; the event as it is when the store has not run for it."""
    import json

    from flask_notifications.consumers import PushConsumer
    from flask_notifications.pubsub.redis_pubsub import RedisPubSub

    app, notifications = group_app
    hub = notifications.get_hub("Posts")
    push = PushConsumer(notifications.redis, hub)
    hub.register_consumer(push)
    first, second = comment("bob commented", "bob"), comment("carol commented", "carol")
    notifications.inbox.store(first)
    push.consume(first)  # stored: the item
    push.consume(second)  # not stored yet: the event itself
    notifications.inbox.store(second)
    push.consume(second)  # stored now: the item with both
    published = [
        json.loads(data) for _, data in RedisPubSub(redis_client).history(hub.hub_id, None).entries
    ]
    assert [(p["event_id"], p.get("count")) for p in published] == [
        (first["event_id"], 1),
        (second["event_id"], None),
        (second["event_id"], 2),
    ]
    assert published[2]["actors"] == ["carol", "bob"] and published[2]["recipients"] == ["alice"]
    assert published[2]["notification_id"] == published[0]["notification_id"]


def test_the_stream_gets_the_item_whatever_the_registration_order(
    make_app, tmp_path, redis_client, worker
):
    """A PushConsumer registered before the StoreConsumer still publishes the
    updated items: the event task runs the inbox's consumers first."""
    import json

    from flask_notifications.consumers import PushConsumer
    from flask_notifications.pubsub.redis_pubsub import RedisPubSub

    from .conftest import wait_for

    app = make_app(NOTIFICATIONS_DATABASE_URI=f"sqlite:///{tmp_path / 'order.sqlite'}")
    notifications = Notifications(app)
    hub = notifications.create_hub("Ordered")
    with app.app_context():
        hub.register_consumer(PushConsumer(notifications.redis, hub))
    hub.register_consumer(StoreConsumer())
    history = RedisPubSub(redis_client)
    with worker(app), app.app_context():
        for title, sender in (("bob commented", "bob"), ("carol commented", "carol")):
            notifications.send(comment(title, sender))
        wait_for(lambda: len(history.history(hub.hub_id, None).entries) == 2, 20)
    published = [json.loads(data) for _, data in history.history(hub.hub_id, None).entries]
    assert [(p["title"], p.get("count")) for p in published] == [
        ("bob commented", 1),
        ("carol commented", 2),
    ]
    get_state(app).engine.dispose()
