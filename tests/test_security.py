"""Two users on every route: nobody reads or changes another user's notifications."""

from __future__ import annotations

import pytest
from flask import request

from flask_notifications import Event, InvalidEventError, Notifications
from flask_notifications.consumers import StoreConsumer


@pytest.fixture
def two_users(make_app, tmp_path):
    app = make_app(
        NOTIFICATIONS_DATABASE_URI=f"sqlite:///{tmp_path / 'inbox.sqlite'}",
        CELERY_TASK_ALWAYS_EAGER=True,
    )
    notifications = Notifications(app)
    notifications.identity_loader(lambda: request.headers.get("X-User"))
    notifications.create_hub("Inbox").register_consumer(StoreConsumer())
    with app.app_context():
        for i in range(3):
            notifications.send(Event(None, "message", f"secret {i}", "b", recipients=["alice"]))
        yield app.test_client(), notifications
        notifications.shutdown()


def as_user(client, user, method, path):
    return client.open(
        path, method=method, headers={"X-User": user}, json={} if method == "POST" else None
    )


def test_bob_sees_none_of_alices_notifications(two_users):
    client, notifications = two_users
    assert as_user(client, "bob", "GET", "/notifications").get_json() == []
    page = as_user(client, "bob", "GET", "/notifications/inbox").get_json()
    assert page["items"] == [] and page["total"] == 0
    assert as_user(client, "bob", "GET", "/notifications/unread-count").get_json() == {"unread": 0}
    assert as_user(client, "alice", "GET", "/notifications/unread-count").get_json() == {
        "unread": 3
    }


def test_bob_changes_none_of_alices_notifications(two_users):
    client, notifications = two_users
    ids = [item["id"] for item in notifications.inbox.list("alice").items]
    for item_id in ids:
        assert as_user(client, "bob", "POST", f"/notifications/{item_id}/read").status_code == 404
    assert as_user(client, "bob", "POST", "/notifications/read-all").get_json() == {"updated": 0}
    assert notifications.inbox.unread_count("alice") == 3
    # The same answer for an id that exists elsewhere and one that exists nowhere:
    missing = as_user(client, "bob", "POST", f"/notifications/{max(ids) + 100}/read")
    assert missing.status_code == 404
    assert (
        missing.get_json()
        == as_user(client, "bob", "POST", f"/notifications/{ids[0]}/read").get_json()
    )


def test_no_route_answers_without_an_identity(two_users):
    client, _ = two_users
    for method, path in [
        ("GET", "/notifications"), ("GET", "/notifications/inbox"),
        ("GET", "/notifications/unread-count"), ("POST", "/notifications/1/read"),
        ("POST", "/notifications/read-all"), ("GET", "/notifications/stream/Inbox"),
    ]:  # fmt: skip
        response = client.open(path, method=method, json={} if method == "POST" else None)
        assert response.status_code == 401, path


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"recipients": "everyone"}, "recipients"),
        ({"expiration_datetime": "never"}, "expiration_datetime"),
        ({"event_id": ["x"]}, "event_id"),
    ],
)
def test_reserved_fields_are_validated_whatever_their_source(fields, field):
    base = {"event_type": "t", "title": "a", "body": "b"}
    with pytest.raises(InvalidEventError, match=field):
        Event.from_dict(dict(base, **fields))
    event = Event(None, "t", "a", "b")
    event.update(fields)  # edited after construction
    with pytest.raises(InvalidEventError, match=field):
        event.validate()
