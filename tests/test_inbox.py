"""Stored notifications: the inbox API, the HTTP API, StoreConsumer, preferences
and model events, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import time

import pytest
import sqlalchemy
from flask import request
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from flask_notifications import Event, InvalidQueryError, Notifications, reliability
from flask_notifications._state import get_state
from flask_notifications.consumers import PushConsumer, StoreConsumer
from flask_notifications.inbox.models import notifications as table

from .conftest import wait_for
from .test_pubsub import Listener


@pytest.fixture
def inbox_app(make_app, database_uri):
    app = make_app(NOTIFICATIONS_DATABASE_URI=database_uri, CELERY_TASK_ALWAYS_EAGER=True)
    notifications = Notifications(app)
    notifications.identity_loader(lambda: request.headers.get("X-User"))
    hub = notifications.create_hub("Messages")
    hub.register_consumer(StoreConsumer())
    with app.app_context():
        yield app, notifications
        notifications.shutdown()
        engine = get_state(app).engine
        if engine is not None:
            engine.dispose()


def msg(title, recipients, event_type="message", **custom):
    return Event(None, event_type, title, "body", recipients=recipients, **custom)


def rows(app):
    with get_state(app).engine.connect() as conn:
        return conn.execute(sqlalchemy.select(table)).all()


# -- the Python API --------------------------------------------------------------------


def test_add_replaces_the_same_named_notification(inbox_app):
    app, notifications = inbox_app
    inbox = notifications.inbox
    first = inbox.add("alice", "unread_message_count", 1)
    second = inbox.add("alice", "unread_message_count", 2)
    inbox.add("alice", "other", {"x": 1})
    inbox.add("bob", "unread_message_count", 7)
    assert second != first
    items = inbox.since("alice", 0)
    assert [(i["name"], i["data"]) for i in items] == [
        ("unread_message_count", 2),
        ("other", {"x": 1}),
    ]
    assert [i["data"] for i in inbox.since("bob", 0)] == [7]


def test_store_and_read_per_user(inbox_app):
    app, notifications = inbox_app
    inbox = notifications.inbox
    event = msg("hello", ["alice", "bob", 7, "alice"], icon="/i.png", client_action="open", extra=1)
    assert inbox.store(event) == 3  # duplicates stored once
    alice = inbox.list("alice").items
    assert len(alice) == 1
    item = alice[0]
    assert item["event_id"] == event["event_id"] and item["event_type"] == "message"
    assert item["name"] == "message" and item["title"] == "hello" and item["body"] == "body"
    assert item["icon"] == "/i.png" and item["client_action"] == "open" and item["read"] is False
    assert Event.from_dict(item["data"]) == Event.from_dict(dict(event, recipients=["alice"]))
    assert inbox.unread_count("7") == inbox.unread_count(7) == 1
    assert inbox.unread_count("carol") == 0


def test_users_are_isolated(inbox_app):
    _, notifications = inbox_app
    inbox = notifications.inbox
    inbox.store(msg("for alice", ["alice"]))
    (bob_item,) = [inbox.store(msg("for bob", ["bob"]))] and inbox.list("bob").items
    assert [i["title"] for i in inbox.list("alice").items] == ["for alice"]
    assert inbox.mark_read("alice", bob_item["id"]) is False  # not hers
    assert inbox.unread_count("bob") == 1
    assert inbox.mark_all_read("alice") == 1
    assert inbox.unread_count("bob") == 1


def test_mark_read_and_all_read(inbox_app):
    _, notifications = inbox_app
    inbox = notifications.inbox
    for i in range(3):
        inbox.store(msg(f"n{i}", ["alice"]))
    newest = inbox.list("alice").items[0]
    assert inbox.mark_read("alice", newest["id"]) is True
    assert inbox.mark_read("alice", newest["id"]) is True  # again: still fine
    assert inbox.unread_count("alice") == 2
    assert [i["read"] for i in inbox.list("alice").items] == [True, False, False]
    assert [i["title"] for i in inbox.list("alice", unread_only=True).items] == ["n1", "n0"]
    assert inbox.mark_all_read("alice") == 2
    assert inbox.mark_all_read("alice") == 0
    assert inbox.unread_count("alice") == 0
    assert inbox.mark_read("alice", 10**9) is False


def test_pagination_edges(inbox_app):
    _, notifications = inbox_app
    inbox = notifications.inbox
    for i in range(45):
        inbox.store(msg(f"n{i}", ["alice"]))
    first = inbox.list("alice", page=1, per_page=20)
    assert (first.total, first.prev, first.next) == (45, None, 2)
    assert [i["title"] for i in first.items][:2] == ["n44", "n43"]
    last = inbox.list("alice", page=3, per_page=20)
    assert (len(last.items), last.prev, last.next) == (5, 2, None)
    assert last.items[-1]["title"] == "n0"
    beyond = inbox.list("alice", page=4, per_page=20)
    assert (beyond.items, beyond.total, beyond.next, beyond.prev) == ([], 45, None, 3)
    exact = inbox.list("alice", page=1, per_page=45)
    assert exact.next is None and len(exact.items) == 45
    seen = [i["id"] for p in (1, 2, 3) for i in inbox.list("alice", page=p, per_page=20).items]
    assert len(set(seen)) == 45


def test_since_is_strictly_newer_and_oldest_first(inbox_app):
    _, notifications = inbox_app
    inbox = notifications.inbox
    inbox.store(msg("first", ["alice"], timestamp=5000.0))
    (first,) = inbox.since("alice", 0)
    time.sleep(0.01)
    # Made earlier, stored later: a poller that saw "first" still gets it.
    inbox.store(msg("late", ["alice"], timestamp=10.0))
    inbox.store(msg("third", ["alice"]))
    items = inbox.since("alice", first["timestamp"])
    assert [i["data"]["title"] for i in items] == ["late", "third"]
    assert items[0]["timestamp"] > first["timestamp"] and items[0]["data"]["timestamp"] == 10.0
    assert (
        set(items[0])
        == {"id", "name", "data", "timestamp", "group", "count", "actors", "actor_count"}
        and items[0]["name"] == "message"
    )
    assert inbox.since("alice", items[-1]["timestamp"]) == []
    assert [i["data"]["title"] for i in inbox.since("alice", 0, limit=2)] == ["first", "late"]


@pytest.mark.parametrize(
    "call",
    [
        lambda i: i.add(None, "n", 1),
        lambda i: i.add("", "n", 1),
        lambda i: i.add("a", "", 1),
        lambda i: i.add("a", "n", object()),
        lambda i: i.list("a", page=0),
        lambda i: i.list("a", per_page=0),
        lambda i: i.list("a", per_page=101),
        lambda i: i.list("a", page="1"),
        lambda i: i.since("a", float("nan")),
        lambda i: i.since("a", "yesterday"),
        lambda i: i.mark_read("a", "1"),
        lambda i: i.unread_count(True),
    ],
)
def test_bad_arguments_raise_invalid_query_error(inbox_app, call):
    _, notifications = inbox_app
    with pytest.raises(InvalidQueryError) as info:
        call(notifications.inbox)
    assert isinstance(info.value, ValueError)


# -- StoreConsumer ---------------------------------------------------------------------


def test_store_consumer_stores_each_recipient_in_bulk(inbox_app):
    app, notifications = inbox_app
    app.config["NOTIFICATIONS_MAX_EVENT_BYTES"] = 256 * 1024  # 10,000 ids do not fit in 64 KiB
    engine = get_state(app).engine if get_state(app).engine else None
    notifications.inbox.unread_count("warm-up")  # creates the engine and the tables
    engine = get_state(app).engine
    statements = []
    sqlalchemy.event.listen(
        engine, "before_cursor_execute", lambda *a, **k: statements.append(a[2])
    )
    recipients = [f"user{i}" for i in range(10_000)]
    started = time.perf_counter()
    notifications.send(msg("to many", recipients))  # eager Celery: StoreConsumer runs inline
    elapsed = time.perf_counter() - started
    inserts = [s for s in statements if s.lstrip().upper().startswith("INSERT")]
    assert 1 <= len(inserts) <= 20, f"{len(inserts)} INSERT round trips"
    stored = rows(app)
    assert len(stored) == 10_000
    assert all(row.data["recipients"] == [row.recipient] for row in stored)
    assert notifications.inbox.unread_count("user9999") == 1
    assert elapsed < 30  # generous: the figure that matters is in docs/benchmarks.md


def test_broadcast_events_are_not_stored(inbox_app):
    app, notifications = inbox_app
    notifications.send(msg("everyone", []))
    assert notifications.inbox.unread_count("alice") == 0
    assert rows(app) == []


# -- preferences -----------------------------------------------------------------------


def test_preferences_api(inbox_app):
    _, notifications = inbox_app
    prefs = notifications.preferences
    prefs.opt_out("alice", "newsletter", "inbox")
    prefs.opt_out("alice", "newsletter", "inbox")  # twice: fine
    prefs.opt_out("bob", "*", "email")
    assert prefs.opted_out("alice") == [("newsletter", "inbox")]
    assert prefs.allowed(["alice", "bob", 3], "newsletter", "inbox") == ["bob", "3"]
    assert prefs.allowed(["alice", "bob"], "newsletter", "stream") == ["alice", "bob"]
    assert prefs.allowed(["alice", "bob"], "anything", "email") == ["alice"]
    prefs.opt_in("alice", "newsletter", "inbox")
    assert prefs.allowed(["alice"], "newsletter", "inbox") == ["alice"]
    with pytest.raises(InvalidQueryError, match="channel"):
        prefs.opt_out("alice", "x", "sms")
    with pytest.raises(InvalidQueryError, match="event_type"):
        prefs.opt_out("alice", "", "inbox")


def test_store_consumer_honours_opt_outs(inbox_app):
    _, notifications = inbox_app
    notifications.preferences.opt_out("alice", "newsletter", "inbox")
    notifications.send(msg("news", ["alice", "bob"], event_type="newsletter"))
    notifications.send(msg("direct", ["alice"]))
    assert [i["title"] for i in notifications.inbox.list("alice").items] == ["direct"]
    assert [i["title"] for i in notifications.inbox.list("bob").items] == ["news"]


def test_push_consumer_honours_stream_opt_outs(inbox_app, redis_client):
    app, notifications = inbox_app
    hub = notifications.create_hub("Live")
    hub.register_consumer(PushConsumer(redis_client, hub.hub_id))
    notifications.preferences.opt_out("alice", "promo", "stream")
    with Listener(notifications.create_backend(), hub.hub_id) as listener:
        notifications.send(msg("promo for both", ["alice", "bob"], event_type="promo"))
        notifications.send(msg("promo for alice", ["alice"], event_type="promo"))
        notifications.send(msg("news for alice", ["alice"]))
        first = Event.from_json(listener.get()["data"])
        second = Event.from_json(listener.get()["data"])
        assert listener.empty(0.3)
    assert (first["title"], first["recipients"]) == ("promo for both", ["bob"])
    assert (second["title"], second["recipients"]) == ("news for alice", ["alice"])


# -- live unread counts ------------------------------------------------------------------


def test_changes_publish_unread_counts_outside_the_history(inbox_app):
    app, notifications = inbox_app
    hub = notifications.create_hub("Messages")
    with Listener(notifications.create_backend(), hub.hub_id) as listener:
        notifications.send(msg("hi", ["alice", "bob"]))
        message = listener.get()
        assert message["id"] is None  # transient: not in the replay history

        assert json.loads(message["data"]) == {"unread_counts": {"alice": 1, "bob": 1}}
        item = notifications.inbox.list("alice").items[0]
        notifications.inbox.mark_read("alice", item["id"])
        assert json.loads(listener.get()["data"]) == {"unread_counts": {"alice": 0}}
        notifications.inbox.add("bob", "unread_message_count", 3)
        assert json.loads(listener.get()["data"]) == {"unread_counts": {"bob": 2}}
    assert notifications.create_backend().last_id(hub.hub_id) is None


# -- the HTTP API ----------------------------------------------------------------------------


@pytest.fixture
def http(inbox_app):
    app, notifications = inbox_app
    client = app.test_client()

    def call(method, path, user="alice", json_body=None, **kw):
        headers = {"X-User": user} if user else {}
        if method == "POST" and json_body is None and "data" not in kw:
            json_body = {}
        return client.open(path, method=method, headers=headers, json=json_body, **kw)

    return call, notifications


def test_http_requires_identity(http):
    call, _ = http
    for method, path in [
        ("GET", "/notifications"),
        ("GET", "/notifications/inbox"),
        ("GET", "/notifications/unread-count"),
        ("POST", "/notifications/1/read"),
        ("POST", "/notifications/read-all"),
    ]:
        response = call(method, path, user=None)
        assert response.status_code == 401, path
        assert response.get_json() == {"error": "authentication is required"}


def test_http_polling_inbox_and_counts(http):
    call, notifications = http
    notifications.send(msg("one", ["alice"]))
    notifications.send(msg("two", ["alice"]))
    notifications.send(msg("bob's", ["bob"]))
    everything = call("GET", "/notifications").get_json()
    assert [p["data"]["title"] for p in everything] == ["one", "two"]
    polled = call("GET", f"/notifications?since={everything[0]['timestamp']!r}").get_json()
    assert [p["data"]["title"] for p in polled] == ["two"]
    page = call("GET", "/notifications/inbox?page=1&per_page=1").get_json()
    assert (page["total"], page["next"], page["prev"], page["page"], page["per_page"]) == (
        2,
        2,
        None,
        1,
        1,
    )
    assert page["items"][0]["title"] == "two"
    expected = {"id", "event_id", "event_type", "name", "title", "body", "data", "icon"}
    assert set(page["items"][0]) >= expected | {"timestamp", "read"}
    assert call("GET", "/notifications/unread-count").get_json() == {"unread": 2}
    item_id = page["items"][0]["id"]
    response = call("POST", f"/notifications/{item_id}/read")
    assert response.status_code == 204 and response.data == b""
    assert call("GET", "/notifications/inbox?unread=1").get_json()["total"] == 1
    assert call("POST", "/notifications/read-all").get_json() == {"updated": 1}
    assert call("GET", "/notifications/unread-count").get_json() == {"unread": 0}
    assert call("GET", "/notifications/unread-count", user="bob").get_json() == {"unread": 1}


def test_http_other_users_notifications_are_404(http):
    call, notifications = http
    notifications.send(msg("alice's", ["alice"]))
    alice_id = notifications.inbox.list("alice").items[0]["id"]
    for item_id in (alice_id, alice_id + 1000):  # someone else's, or none: the same answer
        response = call("POST", f"/notifications/{item_id}/read", user="mallory")
        assert response.status_code == 404
        assert response.get_json() == {"error": "no such notification"}
    assert notifications.inbox.unread_count("alice") == 1


@pytest.mark.parametrize(
    ("method", "path", "fragment"),
    [
        ("GET", "/notifications?since=yesterday", "since"),
        ("GET", "/notifications?since=nan", "since"),
        ("GET", "/notifications?since=inf", "since"),
        ("GET", "/notifications/inbox?page=0", "page"),
        ("GET", "/notifications/inbox?page=-1", "page"),
        ("GET", "/notifications/inbox?page=abc", "page"),
        ("GET", "/notifications/inbox?per_page=101", "per_page"),
        ("GET", "/notifications/inbox?per_page=99999999999", "per_page"),
        ("GET", "/notifications/inbox?unread=maybe", "unread"),
        ("POST", "/notifications/abc/read", "id"),
        ("POST", "/notifications/-3/read", "id"),
        ("POST", "/notifications/99999999999999999999999/read", "id"),
    ],
)
def test_http_bad_input_is_a_400_with_a_message(http, method, path, fragment):
    call, _ = http
    response = call(method, path)
    assert response.status_code == 400
    assert fragment in response.get_json()["error"]


def test_http_posts_require_json(http):
    call, notifications = http
    notifications.send(msg("x", ["alice"]))
    item_id = notifications.inbox.list("alice").items[0]["id"]
    for path in (f"/notifications/{item_id}/read", "/notifications/read-all"):
        response = call("POST", path, data="a=1", content_type="application/x-www-form-urlencoded")
        assert response.status_code == 415
        assert "application/json" in response.get_json()["error"]
    assert notifications.inbox.unread_count("alice") == 1


# -- model events ------------------------------------------------------------------------------


@pytest.fixture
def blog(inbox_app, database_uri):
    class Base(DeclarativeBase):
        pass

    class Article(Base):
        __tablename__ = "articles"
        id: Mapped[int] = mapped_column(primary_key=True)
        title: Mapped[str]
        author: Mapped[str]
        followers: Mapped[str]

    class Comment(Base):
        __tablename__ = "comments"
        id: Mapped[int] = mapped_column(primary_key=True)
        text: Mapped[str]

    engine = sqlalchemy.create_engine(database_uri)
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    app, notifications = inbox_app
    # Create the inbox tables now: SQLite has one writer, and the tests read the
    # inbox while their session holds an uncommitted write.
    notifications.inbox.unread_count("nobody")
    notifications.on_insert(
        Article,
        lambda a: Event(None, "article", f"New article: {a.title}", "", sender=a.author,
                        recipients=a.followers.split(","), icon="/article.png", data={"id": a.id}),
    )  # fmt: skip
    notifications.on_update(
        Article,
        lambda a: Event(
            None, "article_changed", f"Changed: {a.title}", "", recipients=a.followers.split(",")
        ),
    )
    session = Session(engine)
    yield session, Article, Comment, notifications
    session.close()  # an open transaction would block the next test's DROP TABLE
    engine.dispose()


def test_model_inserts_send_events_only_after_commit(blog):
    session, Article, Comment, notifications = blog
    article = Article(title="Flask", author="alice", followers="bob,carol")
    session.add(article)
    session.add(Comment(text="not watched"))
    session.flush()
    assert notifications.inbox.unread_count("bob") == 0  # flushed, not committed: nothing yet
    session.commit()
    (item,) = notifications.inbox.list("bob").items
    assert item["title"] == "New article: Flask" and item["icon"] == "/article.png"
    assert item["data"]["data"] == {"id": article.id} and item["data"]["sender"] == "alice"
    assert notifications.inbox.unread_count("carol") == 1


def test_rollback_sends_nothing(blog):
    session, Article, _, notifications = blog
    session.add(Article(title="Draft", author="alice", followers="bob"))
    session.flush()
    session.rollback()
    session.add(Article(title="Kept", author="alice", followers="bob"))
    session.commit()
    assert [i["title"] for i in notifications.inbox.list("bob").items] == ["New article: Kept"]


def test_model_updates_send_events_after_commit(blog):
    session, Article, _, notifications = blog
    article = Article(title="v1", author="alice", followers="bob")
    session.add(article)
    session.commit()
    article.title = "v2"
    session.commit()
    session.commit()  # nothing changed: no event
    titles = [i["title"] for i in notifications.inbox.list("bob").items]
    assert titles == ["Changed: v2", "New article: v1"]


def test_on_insert_checks_its_arguments(inbox_app):
    _, notifications = inbox_app
    with pytest.raises(TypeError):
        notifications.on_insert("Article", lambda a: None)
    with pytest.raises(TypeError):
        notifications.on_insert(object, "not callable")


# -- which database --------------------------------------------------------------------------------


def test_database_defaults_to_flask_sqlalchemy_then_instance_folder(make_app, tmp_path):
    from flask_sqlalchemy import SQLAlchemy

    app = make_app(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'app.sqlite'}")
    db = SQLAlchemy(app)
    notifications = Notifications(app)
    with app.app_context():
        notifications.inbox.add("alice", "n", 1)
        assert get_state(app).engine is db.engine
        assert "flask_notifications" in sqlalchemy.inspect(db.engine).get_table_names()

    plain = make_app()
    plain.instance_path = str(tmp_path / "instance")
    notifications = Notifications(plain)
    with plain.app_context():
        notifications.inbox.add("alice", "n", 1)
        notifications.app_engine = get_state(plain).engine
    assert (tmp_path / "instance" / "notifications.sqlite").is_file()


def test_count_events_are_valid_events():
    from flask_notifications.stream.dispatcher import count_event_json

    first, second = (Event.from_json(count_event_json("alice", 3, 12.5)) for _ in range(2))
    assert first["event_type"] == "unread_count" and first["recipients"] == ["alice"]
    assert first["unread"] == 3 and first["timestamp"] == 12.5
    assert first["event_id"] != second["event_id"]


def test_polling_endpoint_is_capped(inbox_app):
    app, notifications = inbox_app
    app.config["NOTIFICATIONS_INBOX_MAX_PER_PAGE"] = 3
    for i in range(5):
        notifications.inbox.store(msg(f"n{i}", ["alice"]))
    client = app.test_client()
    first = client.get("/notifications", headers={"X-User": "alice"}).get_json()
    assert [p["data"]["title"] for p in first] == ["n0", "n1", "n2"]
    rest = client.get(
        f"/notifications?since={first[-1]['timestamp']!r}", headers={"X-User": "alice"}
    )
    assert [p["data"]["title"] for p in rest.get_json()] == ["n3", "n4"]


def test_a_rolled_back_savepoint_drops_only_its_own_events(blog):
    session, Article, _, notifications = blog
    session.add(Article(title="Outer", author="alice", followers="bob"))
    session.flush()
    savepoint = session.begin_nested()
    session.add(Article(title="Inner", author="alice", followers="bob"))
    session.flush()
    savepoint.rollback()
    session.commit()
    assert [i["title"] for i in notifications.inbox.list("bob").items] == ["New article: Outer"]


def test_a_failing_send_does_not_break_the_commit(blog, caplog):
    session, Article, _, notifications = blog
    notifications.create_hub("Broken").filter_by(_Explodes())
    session.add(Article(title="Saved", author="alice", followers="bob"))
    session.commit()  # does not raise: the data is committed
    assert session.query(Article).count() == 1  # and the session still works
    assert "committed but not sent" in caplog.text


class _Explodes(__import__("flask_notifications").EventFilter):
    def filter(self, event, *args, **kwargs):
        raise RuntimeError("filter bug")


def test_preferences_default_to_on_only_with_an_inbox_database(make_app, redis_client, tmp_path):
    from flask_notifications.consumers._recipients import preferences_on

    plain = make_app()
    Notifications(plain)
    assert plain.config["NOTIFICATIONS_PREFERENCES"] is None
    assert preferences_on(plain) is False  # no database: no lookup, no file created
    with_db = make_app(NOTIFICATIONS_DATABASE_URI=f"sqlite:///{tmp_path / 'x.sqlite'}")
    Notifications(with_db)
    assert preferences_on(with_db) is True
    off = make_app(
        NOTIFICATIONS_DATABASE_URI=f"sqlite:///{tmp_path / 'y.sqlite'}",
        NOTIFICATIONS_PREFERENCES=False,
    )
    Notifications(off)
    assert preferences_on(off) is False


def test_store_consumer_ignores_opt_outs_when_preferences_are_off(inbox_app):
    app, notifications = inbox_app
    notifications.preferences.opt_out("alice", "newsletter", "inbox")
    app.config["NOTIFICATIONS_PREFERENCES"] = False
    notifications.send(msg("news", ["alice"], event_type="newsletter"))
    assert notifications.inbox.unread_count("alice") == 1


# -- through a real Celery worker (no eager mode), on SQLite and PostgreSQL --------------------


@pytest.fixture
def worker_inbox(make_app, database_uri, worker):
    """The inbox app with a real Celery worker (in a thread) running its
    consumers: StoreConsumer and PushConsumer on one hub, one message per event."""
    app = make_app(NOTIFICATIONS_DATABASE_URI=database_uri)
    notifications = Notifications(app)
    notifications.identity_loader(lambda: request.headers.get("X-User"))
    hub = notifications.create_hub("Messages")
    hub.register_consumer(StoreConsumer())
    with app.app_context():
        hub.register_consumer(PushConsumer(notifications.redis, hub))
        notifications.inbox.unread_count("nobody")  # the tables, before the worker writes
        with worker(app):
            yield app, notifications, hub
        notifications.shutdown()
        get_state(app).engine.dispose()


def settled():
    """Wait until the worker finished every task sent so far."""
    wait_for(lambda: reliability.pending_count() == 0, 15)


def test_a_worker_stores_pushes_and_serves_each_event_once(worker_inbox):
    app, notifications, hub = worker_inbox
    notifications.preferences.opt_out("carol", "message", "inbox")
    client = app.test_client()
    with Listener(notifications.create_backend(), hub.hub_id) as listener:
        sent = notifications.send(msg("hello", ["alice", "bob", "carol", "alice"]))
        messages = [json.loads(listener.get(15)["data"]) for _ in range(2)]
        settled()
        assert listener.empty(0.3)
    counts = next(m for m in messages if "unread_counts" in m)
    assert counts == {"unread_counts": {"alice": 1, "bob": 1}}  # carol opted out
    (event,) = [m for m in messages if "unread_counts" not in m]
    assert event["event_id"] == sent["event_id"]
    assert len(rows(app)) == 2  # one row per recipient, stored once
    page = client.get("/notifications/inbox", headers={"X-User": "bob"}).get_json()
    assert [i["event_id"] for i in page["items"]] == [sent["event_id"]]
    assert client.get("/notifications/unread-count", headers={"X-User": "carol"}).get_json() == {
        "unread": 0
    }


def test_a_worker_stores_model_events_after_commit(worker_inbox, database_uri):
    app, notifications, _ = worker_inbox

    class Base(DeclarativeBase):
        pass

    class Post(Base):
        __tablename__ = "worker_posts"
        id: Mapped[int] = mapped_column(primary_key=True)
        title: Mapped[str]

    engine = sqlalchemy.create_engine(database_uri)
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    notifications.on_insert(Post, lambda p: Event(None, "post", p.title, "", recipients=["bob"]))
    try:
        with Session(engine) as session:
            session.add(Post(title="rolled back"))
            session.flush()
            session.rollback()
            session.add(Post(title="committed"))
            session.commit()
        wait_for(lambda: notifications.inbox.unread_count("bob") == 1, 15)
        settled()
        assert [i["title"] for i in notifications.inbox.list("bob").items] == ["committed"]
    finally:
        engine.dispose()


def test_a_worker_runs_many_events_once_each(worker_inbox):
    app, notifications, _ = worker_inbox
    sent = [notifications.send(msg(f"n{i}", ["alice", "bob"]))["event_id"] for i in range(30)]
    wait_for(lambda: notifications.inbox.unread_count("bob") == 30, 30)
    settled()
    stored = [r.event_id for r in rows(app)]
    assert sorted(stored) == sorted(sent * 2)  # each event once per recipient
