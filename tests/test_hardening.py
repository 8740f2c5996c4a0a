"""Security and durability hardening: hub access, bounded replay, bad input
that once answered 500, control characters, links, and bounded lists."""

from __future__ import annotations

import json
import logging

import pytest
from flask import request

from flask_notifications import Event, InvalidEventError, Notifications, reliability
from flask_notifications._text import printable
from flask_notifications._urls import safe_link
from flask_notifications.stream import _replay


def frames(chunk: bytes) -> list[dict[str, str]]:
    """The SSE events of ``chunk`` (comments and heartbeats skipped)."""
    events = []
    for block in chunk.decode().split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            name, _, value = line.partition(": ")
            if name in ("id", "event", "data"):
                fields[name] = value
        if "event" in fields or "data" in fields:
            events.append(fields)
    return events


class Reader:
    """Reads one streaming test-client response frame by frame."""

    def __init__(self, response) -> None:  # type: ignore[no-untyped-def]
        self.response = response
        self.chunks = iter(response.response)
        self.pending: list[dict[str, str]] = []

    def next(self) -> dict[str, str]:
        while not self.pending:
            self.pending = frames(next(self.chunks))
        return self.pending.pop(0)

    def close(self) -> None:
        self.response.close()


@pytest.fixture
def hubs(make_app):
    apps = []

    def start(**config: object):
        app = make_app(**config)
        notifications = Notifications(app)
        notifications.identity_loader(lambda: request.headers.get("X-User"))
        apps.append((app, notifications))
        client = app.test_client()

        def open_stream(label: str, user: str | None = None, last_id: str | None = None):
            headers = {"X-User": user} if user else {}
            if last_id is not None:
                headers["Last-Event-ID"] = last_id
            response = client.get(f"/notifications/stream/{label}", headers=headers, buffered=False)
            return Reader(response) if response.status_code == 200 else response

        return app, notifications, open_stream

    yield start
    for app, notifications in apps:
        with app.app_context():
            notifications.shutdown()


def publish(app, notifications, hub, title: str, recipients=()) -> str:  # type: ignore[no-untyped-def]
    with app.app_context():
        event = Event(None, "news", title, "", recipients=list(recipients))
        return notifications.publisher.publish(hub.hub_id, event.to_json())


# -- hub access ---------------------------------------------------------------------------------


def test_a_private_hub_without_a_rule_sends_broadcasts_to_nobody(hubs, caplog):
    app, notifications, open_stream = hubs()
    hub = notifications.create_hub("Staff")
    with caplog.at_level(logging.WARNING, logger="flask_notifications"):
        alice = open_stream("Staff", "alice")
    assert alice.next()["event"] == "ready"
    assert any("'Staff' has no readers rule" in r.getMessage() for r in caplog.records)
    publish(app, notifications, hub, "for everybody")
    publish(app, notifications, hub, "for alice", ["alice"])
    assert json.loads(alice.next()["data"])["title"] == "for alice"  # the broadcast skipped
    alice.close()


def test_readers_decide_who_reads_the_broadcasts_of_a_private_hub(hubs):
    app, notifications, open_stream = hubs()
    hub = notifications.create_hub("Staff", readers=lambda user: user == "admin")
    admin, bob = open_stream("Staff", "admin"), open_stream("Staff", "bob")
    for reader in (admin, bob):
        assert reader.next()["event"] == "ready"
    first = publish(app, notifications, hub, "staff memo")
    publish(app, notifications, hub, "for bob", ["bob"])
    assert json.loads(admin.next()["data"])["title"] == "staff memo"
    assert json.loads(bob.next()["data"])["title"] == "for bob"  # targeted events still arrive
    admin.close()
    bob.close()
    # Replay follows the same rule.
    replayed = {user: open_stream("Staff", user, last_id="0-0") for user in ("bob", "admin")}
    for user in replayed:
        publish(app, notifications, hub, f"marker for {user}", [user])
    titles = {
        user: [json.loads(reader.next()["data"])["title"] for _ in range(2)]
        for user, reader in replayed.items()
    }
    assert titles == {
        "bob": ["for bob", "marker for bob"],
        "admin": ["staff memo", "marker for admin"],
    }
    for reader in replayed.values():
        reader.close()
    assert first


def test_an_authorizer_is_a_rule_for_broadcasts(hubs):
    app, notifications, open_stream = hubs()
    hub = notifications.create_hub("Staff")
    notifications.stream_authorizer(lambda user, hub_id: user != "mallory")
    alice = open_stream("Staff", "alice")
    assert alice.next()["event"] == "ready"
    publish(app, notifications, hub, "memo")
    assert json.loads(alice.next()["data"])["title"] == "memo"
    alice.close()
    assert open_stream("Staff", "mallory").status_code == 403


def test_an_empty_identity_is_nobody(hubs):
    app, notifications, open_stream = hubs()
    notifications.create_hub("Staff", readers=lambda user: True)
    notifications.identity_loader(lambda: "")
    refused = open_stream("Staff")
    assert refused.status_code == 401


# -- bounded replay -------------------------------------------------------------------------------


def test_a_replay_pages_through_history_in_order(hubs, monkeypatch):
    monkeypatch.setattr(_replay, "PAGE", 7)
    app, notifications, open_stream = hubs(NOTIFICATIONS_REPLAY_MAX=40)
    hub = notifications.create_hub("News", public=True)
    start = publish(app, notifications, hub, "seen")
    ids = [publish(app, notifications, hub, f"missed {i}") for i in range(40)]
    reader = open_stream("News", last_id=start)
    got = [reader.next() for _ in range(40)]
    assert [f["id"] for f in got] == ids  # every page, in order, no reset
    live = publish(app, notifications, hub, "live")
    assert reader.next()["id"] == live
    reader.close()


def test_a_client_that_missed_more_than_the_cap_gets_a_reset(hubs, monkeypatch):
    monkeypatch.setattr(_replay, "PAGE", 7)
    app, notifications, open_stream = hubs(NOTIFICATIONS_REPLAY_MAX=20)
    hub = notifications.create_hub("News", public=True)
    start = publish(app, notifications, hub, "seen")
    ids = [publish(app, notifications, hub, f"missed {i}") for i in range(21)]
    reader = open_stream("News", last_id=start)
    seen = [reader.next() for _ in range(21)]
    assert [f["id"] for f in seen[:20]] == ids[:20]
    assert seen[20] == {"id": ids[-1], "event": "reset", "data": "{}"}
    live = publish(app, notifications, hub, "live")
    assert reader.next()["id"] == live
    reader.close()


def test_replay_reads_the_history_a_page_at_a_time(hubs, monkeypatch):
    app, notifications, open_stream = hubs(NOTIFICATIONS_REPLAY_MAX=1000)
    hub = notifications.create_hub("News", public=True)
    for i in range(30):
        publish(app, notifications, hub, f"e{i}")
    counts: list[int | None] = []
    with app.app_context():
        backend = notifications.dispatcher.backend
    original = type(backend).history

    def spy(self, channel, after, count=None):  # type: ignore[no-untyped-def]
        counts.append(count)
        return original(self, channel, after, count)

    monkeypatch.setattr(type(backend), "history", spy)
    monkeypatch.setattr(_replay, "PAGE", 10)
    reader = open_stream("News", last_id="0-0")
    assert [json.loads(reader.next()["data"])["title"] for _ in range(30)] == [
        f"e{i}" for i in range(30)
    ]
    assert counts and all(c is not None and c <= 10 for c in counts)
    reader.close()


@pytest.mark.parametrize(
    "last_id", ["1-99999999999999999999", "99999999999999999999-1", "1-0 ", "١-0"]
)
def test_an_out_of_range_last_event_id_is_a_reset_not_an_error(hubs, caplog, last_id):
    app, notifications, open_stream = hubs()
    hub = notifications.create_hub("News", public=True)
    newest = publish(app, notifications, hub, "x")
    with caplog.at_level(logging.WARNING):
        reader = open_stream("News", last_id=last_id)
        assert reader.next() == {"id": newest, "event": "reset", "data": "{}"}
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    reader.close()


# -- bad input that once answered 500 --------------------------------------------------------------


@pytest.fixture
def inbox_client(make_app, tmp_path):
    app = make_app(NOTIFICATIONS_DATABASE_URI=f"sqlite:///{tmp_path / 'inbox.sqlite'}")
    notifications = Notifications(app)
    notifications.identity_loader(lambda: request.headers.get("X-User"))
    return app.test_client()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/notifications/inbox?page=%C2%B2"),
        ("GET", "/notifications/inbox?per_page=%C2%B2"),
        ("GET", "/notifications/inbox?page=%D9%A3"),  # an Arabic-Indic digit
        ("POST", "/notifications/%C2%B2/read"),
    ],
)
def test_unicode_digits_are_a_400(inbox_client, method, path):
    response = inbox_client.open(path, method=method, headers={"X-User": "alice"}, json={})
    assert response.status_code == 400
    assert "positive integer" in response.get_json()["error"]


@pytest.mark.parametrize("field", ["event_id", "sender"])
@pytest.mark.parametrize("value", ["a\r\nBcc: x@example.com", "a\nb", "a\x00b", "a\x1bb"])
def test_control_characters_in_ids_are_refused(field, value):
    with pytest.raises(InvalidEventError, match=field):
        Event.from_dict({"event_type": "t", "title": "x", "body": "", field: value})


@pytest.mark.parametrize(
    ("url", "safe"),
    [
        ("https://example.com/a?b=c", True),
        ("http://example.com", True),
        ("/inbox/3", True),
        ("javascript:alert(1)", False),
        ("JaVaScRiPt:alert(1)", False),
        ("data:text/html,x", False),
        ("//evil.example", False),
        ("/\\evil.example", False),
        ("https:/\\evil.example", False),
        ("https://", False),
        ("/a b", False),
        ("/a\nb", False),
        ("", False),
        (None, False),
        (42, False),
    ],
)
def test_links_from_events_follow_one_rule(url, safe):
    assert safe_link(url) == (url if safe else None)


def test_control_characters_never_reach_logs_or_the_terminal():
    assert printable("ok\r\nFORGED 200\x1b[2J\u202eevil") == "ok FORGED 200 [2J evil"
    assert printable("x" * 600, 100) == "x" * 99 + "…"


def test_dead_letters_are_bounded_and_printable(make_app):
    app = make_app(NOTIFICATIONS_DEAD_LETTERS_MAX=3)
    Notifications(app)
    with app.app_context():
        for i in range(5):
            reliability.add_dead_letter("t", "h", "k", "{}", OSError(f"n{i}\r\nforged"))
        letters = reliability.dead_letters()
    assert [letter["error"] for letter in letters] == [
        "OSError: n4 forged",
        "OSError: n3 forged",
        "OSError: n2 forged",
    ]


def test_the_dead_letters_command_prints_no_control_characters(make_app):
    app = make_app()
    Notifications(app)
    with app.app_context():
        reliability.add_dead_letter("t\x1b[31m", "h", "k", '{"event_id": "e\\r\\nx"}', OSError("y"))
    result = app.test_cli_runner().invoke(args=["notifications", "dead-letters"])
    assert result.exit_code == 0
    assert "\x1b" not in result.output and "e x" in result.output


@pytest.mark.parametrize("url", ["javascript:alert(document.cookie)", "/\\evil.example"])
def test_unsafe_event_links_stay_out_of_emails(make_app, smtp_server, url):
    from flask_notifications.consumers import FlaskEmailConsumer

    server = smtp_server()
    app = make_app(EMAIL_HOST="127.0.0.1", EMAIL_PORT=server.port)
    Notifications(app)
    consumer = FlaskEmailConsumer.from_app(app, sender="n@example.com", recipients=["a@x.org"])
    with app.app_context():
        consumer(Event(None, "message", "Hi", "Body", url=url))
    (mail,) = server.messages
    html = mail.get_body(("html",)).get_content()
    text = mail.get_body(("plain",)).get_content()
    assert "href" not in html and "evil" not in html and "javascript" not in html
    assert "evil" not in text and "javascript" not in text
