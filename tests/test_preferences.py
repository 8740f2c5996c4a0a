"""Preferences by channel and category (issue 17): the event's ``category``, the
Python API, critical categories, the HTTP API, and the consumers honouring the
switches in a real worker (SQLite and PostgreSQL, real Redis and SMTP)."""

from __future__ import annotations

import json

import pytest
from flask import request

from flask_notifications import (
    ConfigurationError,
    CriticalCategoryError,
    Event,
    InvalidEventError,
    InvalidQueryError,
    Notifications,
)
from flask_notifications._state import get_state
from flask_notifications.consumers import FlaskEmailConsumer, PushConsumer, StoreConsumer
from flask_notifications.inbox import preferences as preferences_module

from .conftest import wait_for
from .test_pubsub import Listener

ADDRESSES = {"alice": "alice@example.org", "bob": "bob@example.org", "carol": "carol@example.org"}


@pytest.fixture
def prefs_app(make_app, database_uri):
    app = make_app(
        NOTIFICATIONS_DATABASE_URI=database_uri,
        NOTIFICATIONS_CRITICAL_CATEGORIES=["security"],
        NOTIFICATIONS_MAX_BODY_BYTES=2048,
    )
    notifications = Notifications(app)
    notifications.identity_loader(lambda: request.headers.get("X-User"))
    with app.app_context():
        yield app, notifications
        notifications.shutdown()
        engine = get_state(app).engine
        if engine is not None:
            engine.dispose()


def event(title, recipients, category=None, event_type="message"):
    fields = {} if category is None else {"category": category}
    return Event(None, event_type, title, "body", recipients=recipients, **fields)


# -- the event's category ----------------------------------------------------------------


@pytest.mark.parametrize("good", ["comments", "security", "a", "x.y-z_1", "9" * 64])
def test_a_category_is_an_identifier(good):
    assert Event(None, "t", "", "", category=good)["category"] == good
    assert Event.from_json(
        json.dumps({"event_type": "t", "title": "", "body": "", "category": good})
    )


@pytest.mark.parametrize("bad", ["", " x", "a b", "-x", "*", "é", "x" * 65, 3, ["a"], "a\nb"])
def test_a_bad_category_is_refused_naming_the_field(bad):
    with pytest.raises(InvalidEventError, match="category") as info:
        Event(None, "t", "", "", category=bad)
    assert info.value.field == "category"
    with pytest.raises(InvalidEventError, match="category"):
        Event.from_dict({"event_type": "t", "title": "", "body": "", "category": bad})
    edited = Event(None, "t", "", "")
    edited["category"] = bad
    with pytest.raises(InvalidEventError, match="category"):
        edited.validate()  # send() validates again


def test_an_event_without_category_has_no_such_field():
    assert "category" not in Event(None, "t", "", "")
    assert Event(None, "t", "", "", category=None)["category"] is None


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("NOTIFICATIONS_CRITICAL_CATEGORIES", "security"),
        ("NOTIFICATIONS_CRITICAL_CATEGORIES", ["bad name"]),
        ("NOTIFICATIONS_CATEGORIES", "comments"),
        ("NOTIFICATIONS_CATEGORIES", [1]),
    ],
)
def test_category_settings_are_checked(make_app, key, value):
    with pytest.raises(ConfigurationError, match=key):
        Notifications(make_app(**{key: value}))


# -- the Python API -------------------------------------------------------------------------


def test_set_and_get(prefs_app):
    _, notifications = prefs_app
    prefs = notifications.preferences
    prefs.set("alice", "email", "comments", enabled=False)
    prefs.set("alice", "email", "comments", enabled=False)  # twice: fine
    prefs.set("alice", "webpush", enabled=False)
    prefs.opt_out("alice", "newsletter", "inbox")
    got = prefs.get("alice")
    json.dumps(got)  # JSON-able
    assert got["categories"] == ["security", "comments"]
    assert got["critical_categories"] == ["security"]
    assert set(got["channels"]) == {"inbox", "stream", "email", "webpush", "mobile"}
    assert got["channels"]["email"] == {
        "enabled": True,
        "categories": {"security": True, "comments": False},
        "event_types": {},
        "digest": None,  # only the channels with digests have the key
    }
    assert got["channels"]["webpush"]["enabled"] is False
    assert got["channels"]["inbox"] == {
        "enabled": True,
        "categories": {"security": True, "comments": True},
        "event_types": {"newsletter": False},
    }
    # The channel switch is the event-type opt-out "*": one switch.
    assert ("*", "webpush") in prefs.opted_out("alice")
    prefs.opt_in("alice", "*", "webpush")
    assert prefs.get("alice")["channels"]["webpush"]["enabled"] is True
    prefs.set("alice", "email", "comments", enabled=True)
    # On again: no longer listed (without NOTIFICATIONS_CATEGORIES, the known
    # categories are the critical ones and those a user turned off).
    assert prefs.get("alice")["channels"]["email"]["categories"] == {"security": True}
    assert prefs.allowed(["alice"], "message", "email", "comments") == ["alice"]
    # Someone else's switches are their own.
    assert prefs.get("bob")["channels"]["email"]["categories"] == {"security": True}


def test_a_critical_category_cannot_be_turned_off(prefs_app):
    _, notifications = prefs_app
    with pytest.raises(CriticalCategoryError, match="'security' is a critical category") as info:
        notifications.preferences.set("alice", "email", "security", enabled=False)
    assert isinstance(info.value, ValueError)
    notifications.preferences.set("alice", "email", "security", enabled=True)  # a no-op
    assert notifications.preferences.get("alice")["channels"]["email"]["categories"] == {
        "security": True
    }


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("alice", "sms"), {"enabled": False}, "channel must be one of inbox, stream, email"),
        (("alice", "email", "a b"), {"enabled": False}, "category"),
        (("alice", "email", "comments"), {"enabled": "no"}, "must be true or false"),
        (("alice", "email"), {"enabled": None}, "must be true or false"),
        (("", "email"), {"enabled": False}, "user id must be"),
    ],
)
def test_bad_arguments_are_clear_errors(prefs_app, args, kwargs, message):
    _, notifications = prefs_app
    with pytest.raises(InvalidQueryError, match=message):
        notifications.preferences.set(*args, **kwargs)


def test_configured_categories_limit_what_can_be_set(make_app, tmp_path):
    app = make_app(
        NOTIFICATIONS_DATABASE_URI=f"sqlite:///{tmp_path / 'db.sqlite'}",
        NOTIFICATIONS_CATEGORIES=["comments", "follows"],
    )
    notifications = Notifications(app)
    with app.app_context():
        prefs = notifications.preferences
        with pytest.raises(InvalidQueryError, match="unknown category 'likes'"):
            prefs.set("alice", "email", "likes", enabled=False)
        prefs.set("alice", "email", "follows", enabled=False)
        got = prefs.get("alice")
        assert got["categories"] == ["comments", "follows", "security"]
        assert got["channels"]["email"]["categories"] == {
            "comments": True,
            "follows": False,
            "security": True,
        }


def test_switches_per_user_are_capped(prefs_app, monkeypatch):
    _, notifications = prefs_app
    monkeypatch.setattr(preferences_module, "MAX_CATEGORY_SWITCHES", 3)
    for name in ("a", "b", "c"):
        notifications.preferences.set("alice", "email", name, enabled=False)
    with pytest.raises(InvalidQueryError, match="at most 3 categories"):
        notifications.preferences.set("alice", "inbox", "d", enabled=False)
    notifications.preferences.set("alice", "email", "a", enabled=False)  # already off: fine


def test_a_partial_update_is_all_or_nothing(prefs_app):
    _, notifications = prefs_app
    prefs = notifications.preferences
    with pytest.raises(CriticalCategoryError):
        prefs.update(
            "alice",
            {"channels": {"email": {"enabled": False, "categories": {"security": False}}}},
        )
    with pytest.raises(InvalidQueryError, match="channels.inbox: unknown key 'enable'"):
        prefs.update("alice", {"channels": {"email": {"enabled": False}, "inbox": {"enable": 1}}})
    assert prefs.opted_out("alice") == []
    got = prefs.update(
        "alice",
        {
            "channels": {
                "email": {"categories": {"comments": False}, "event_types": {"digest": False}},
                "stream": {"enabled": False},
            },
            "categories": ["ignored"],
        },
    )
    assert got == prefs.get("alice")
    assert got["channels"]["email"]["categories"]["comments"] is False
    assert got["channels"]["email"]["event_types"] == {"digest": False}
    assert got["channels"]["stream"]["enabled"] is False
    # Sending back what was read changes nothing.
    assert prefs.update("alice", got) == got


def test_allowed_is_the_one_rule(prefs_app):
    _, notifications = prefs_app
    prefs = notifications.preferences
    prefs.set("alice", "email", "comments", enabled=False)
    prefs.set("bob", "email", enabled=False)
    prefs.opt_out("carol", "message", "email")
    users = ["alice", "bob", "carol", "dave"]
    assert prefs.allowed(users, "message", "email", "comments") == ["dave"]
    assert prefs.allowed(users, "other", "email", "comments") == ["carol", "dave"]
    assert prefs.allowed(users, "other", "email", "likes") == ["alice", "carol", "dave"]
    assert prefs.allowed(users, "other", "email") == ["alice", "carol", "dave"]
    assert prefs.allowed(users, "other", "inbox", "comments") == users  # another channel
    # A critical category passes every switch: channel, event type, category.
    assert prefs.allowed(users, "message", "email", "security") == users
    assert prefs.allowed_for(users, event("x", [], "comments", "other"), "email") == [
        "carol",
        "dave",
    ]


# -- the consumers, in a real worker --------------------------------------------------------


def test_consumers_in_a_worker_honour_categories(prefs_app, redis_client, smtp_server, worker):
    app, notifications = prefs_app
    server = smtp_server()
    app.config.update(EMAIL_HOST="127.0.0.1", EMAIL_PORT=server.port)
    notifications.email_resolver(ADDRESSES.get)
    hub = notifications.create_hub("Messages")
    hub.register_consumer(StoreConsumer())
    hub.register_consumer(PushConsumer(redis_client, hub.hub_id))
    hub.register_consumer(FlaskEmailConsumer.from_app(app, sender="noreply@example.com"))
    prefs = notifications.preferences
    prefs.set("alice", "inbox", "comments", enabled=False)
    prefs.set("alice", "email", "comments", enabled=False)
    prefs.set("bob", "stream", "comments", enabled=False)
    prefs.set("bob", "email", enabled=False)  # the whole channel
    everyone = ["alice", "bob", "carol"]
    with Listener(notifications.create_backend(), hub.hub_id) as listener, worker(app):
        notifications.send(event("comment", everyone, "comments"))
        notifications.send(event("login from a new device", everyone, "security"))
        wait_for(lambda: len(server.messages) >= 4, 20)
        published = []
        while len(published) < 2:
            message = listener.get(10)
            if message["id"] is not None:  # not an unread count (those are transient)
                published.append(Event.from_json(message["data"]))
        wait_for(lambda: notifications.inbox.unread_count("carol") == 2, 10)
    by_title = {e["title"]: e["recipients"] for e in published}
    assert by_title == {"comment": ["alice", "carol"], "login from a new device": everyone}
    assert [i["title"] for i in notifications.inbox.list("alice").items] == [
        "login from a new device"
    ]
    assert len(notifications.inbox.list("bob").items) == 2
    mails = sorted((m["To"], m["Subject"]) for m in server.messages)
    assert mails == [
        ("alice@example.org", "login from a new device"),
        ("bob@example.org", "login from a new device"),  # channel off, but critical
        ("carol@example.org", "comment"),
        ("carol@example.org", "login from a new device"),
    ]


# -- HTTP ------------------------------------------------------------------------------------


def put(client, body, user="alice", content_type="application/json"):
    data = body if isinstance(body, bytes) else json.dumps(body)
    return client.put(
        "/notifications/preferences",
        data=data,
        headers={"X-User": user, "Content-Type": content_type} if user else {},
    )


def test_http_get_and_put_are_the_users_own(prefs_app):
    app, notifications = prefs_app
    client = app.test_client()
    assert client.get("/notifications/preferences").status_code == 401
    got = client.get("/notifications/preferences", headers={"X-User": "alice"})
    assert got.status_code == 200 and got.get_json() == notifications.preferences.get("alice")
    answer = put(client, {"channels": {"email": {"categories": {"comments": False}}}})
    assert answer.status_code == 200
    assert answer.get_json()["channels"]["email"]["categories"]["comments"] is False
    assert notifications.preferences.allowed(["alice"], "m", "email", "comments") == []
    # Partial: the next update leaves the first one alone.
    answer = put(client, {"channels": {"inbox": {"enabled": False}}})
    assert answer.get_json()["channels"]["email"]["categories"]["comments"] is False
    assert answer.get_json()["channels"]["inbox"]["enabled"] is False
    # Bob's are untouched: a user changes their own only.
    assert notifications.preferences.allowed(["bob"], "m", "email", "comments") == ["bob"]
    assert notifications.preferences.opted_out("bob") == []


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"channels": {"email": {"categories": {"security": False}}}}, 400, "critical category"),
        ({"channels": {"sms": {"enabled": False}}}, 400, "channel must be one of"),
        ({"channels": {"email": {"enabled": "off"}}}, 400, "channels.email.enabled must be true"),
        ({"channels": {"email": {"categories": {"a b": False}}}}, 400, "category"),
        ({"channels": []}, 400, "channels must be a JSON object"),
        ({"nope": 1}, 400, "unknown key 'nope'"),
        ([], 400, "the preferences must be a JSON object"),
        (b"{", 400, "not valid JSON"),
        (b'{"channels": "' + b"x" * 4096 + b'"}', 413, "larger than 2048 bytes"),
    ],
)
def test_http_bad_input_is_a_4xx_json_naming_it(prefs_app, body, status, message):
    app, notifications = prefs_app
    answer = put(app.test_client(), body)
    assert answer.status_code == status
    assert message in answer.get_json()["error"]
    assert notifications.preferences.opted_out("alice") == []


def test_http_put_needs_json_and_a_user(prefs_app):
    app, _ = prefs_app
    client = app.test_client()
    body = {"channels": {"email": {"enabled": False}}}
    assert put(client, body, user=None).status_code == 401
    answer = put(client, body, content_type="application/x-www-form-urlencoded")
    assert answer.status_code == 415 and "application/json" in answer.get_json()["error"]
