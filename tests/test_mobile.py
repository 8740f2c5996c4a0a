"""Native mobile push: the devices' store and HTTP API."""

from __future__ import annotations

import json

import pytest
from flask import request
from sqlalchemy import inspect

from flask_notifications import Notifications
from flask_notifications._state import get_state
from flask_notifications.errors import ConfigurationError, InvalidQueryError
from flask_notifications.mobile import max_devices, parse_device

URL = "/notifications/devices"
ALICE, BOB = {"X-User": "alice"}, {"X-User": "bob"}
IOS = "a" * 64
ANDROID = "fcm-token:APA91b" + "x" * 140


@pytest.fixture
def mobile_app(make_app, tmp_path):
    """An app with an SQLite inbox database and X-User as identity."""
    app = make_app(NOTIFICATIONS_DATABASE_URI=f"sqlite:///{tmp_path / 'inbox.sqlite'}")
    notifications = Notifications(app)
    notifications.identity_loader(lambda: request.headers.get("X-User"))
    yield app, notifications
    with app.app_context():
        engine = get_state(app).engine
        if engine is not None:
            engine.dispose()


def test_post_get_and_delete_devices(mobile_app):
    app, notifications = mobile_app
    client = app.test_client()
    device = {"platform": "ios", "token": IOS}

    assert client.post(URL, json=device).status_code == 401
    assert client.get(URL).status_code == 401
    assert client.delete(URL, json={"token": IOS}).status_code == 401
    response = client.post(URL, data=json.dumps(device), headers=ALICE)  # not JSON
    assert response.status_code == 415
    response = client.post(URL, data="{", headers=ALICE, content_type="application/json")
    assert response.status_code == 400

    created = client.post(URL, json=device, headers=ALICE)
    assert created.status_code == 201
    assert created.json == {"id": created.json["id"], "platform": "ios", "token": IOS}
    again = client.post(URL, json=device, headers=ALICE)
    assert again.status_code == 200 and again.json["id"] == created.json["id"]
    other = client.post(URL, json={"platform": "android", "token": ANDROID}, headers=ALICE)
    assert other.status_code == 201
    assert client.get(URL, headers=ALICE).json == {
        "devices": [
            {"id": created.json["id"], "platform": "ios", "token": IOS},
            {"id": other.json["id"], "platform": "android", "token": ANDROID},
        ]
    }
    assert client.get(URL, headers=BOB).json == {"devices": []}
    with app.app_context():
        assert [d.token for d in notifications.devices.for_user("alice")] == [IOS, ANDROID]
        assert notifications.devices.for_user("bob") == []

    assert client.delete(URL, json={}, headers=ALICE).status_code == 400
    assert client.delete(URL, json={"token": IOS}, headers=BOB).status_code == 404
    response = client.delete(URL, json={"token": IOS}, headers=ALICE)
    assert response.status_code == 204 and response.data == b""
    assert client.delete(URL, json={"token": IOS}, headers=ALICE).status_code == 404
    with app.app_context():
        assert [d.token for d in notifications.devices.all()] == [ANDROID]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], "JSON object"),
        ({"token": IOS}, "platform"),
        ({"platform": "web", "token": IOS}, "platform"),
        ({"platform": "ios"}, "token"),
        ({"platform": "ios", "token": ""}, "token"),
        ({"platform": "ios", "token": 12}, "token"),
        ({"platform": "ios", "token": "a b"}, "token"),
        ({"platform": "ios", "token": "é" * 10}, "token"),
        ({"platform": "ios", "token": "a" * 2049}, "token"),
    ],
)
def test_post_rejects_a_bad_device_naming_the_field(mobile_app, body, field):
    app, notifications = mobile_app
    response = app.test_client().post(URL, json=body, headers=ALICE)
    assert response.status_code == 400 and field in response.json["error"]
    with pytest.raises(InvalidQueryError, match=field):
        parse_device(body)
    with app.app_context():
        assert notifications.devices.all() == []


def test_a_token_moves_only_when_another_user_registers_it(mobile_app):
    app, notifications = mobile_app
    client = app.test_client()
    first = client.post(URL, json={"platform": "android", "token": ANDROID}, headers=ALICE)
    # Bob cannot take it by deleting it, nor see it.
    assert client.delete(URL, json={"token": ANDROID}, headers=BOB).status_code == 404
    assert client.get(URL, headers=BOB).json == {"devices": []}
    # Bob signs in on the same phone: the app registers the token again.
    moved = client.post(URL, json={"platform": "android", "token": ANDROID}, headers=BOB)
    assert moved.status_code == 200 and moved.json["id"] == first.json["id"]
    with app.app_context():
        assert notifications.devices.for_user("alice") == []
        (device,) = notifications.devices.for_user("bob")
        assert (device.platform, device.token, device.recipient) == ("android", ANDROID, "bob")
        # Gone at the push service: deleted whoever has it.
        assert notifications.devices.delete_token(ANDROID) is True
        assert notifications.devices.delete_token(ANDROID) is False
        assert notifications.devices.all() == []


def test_a_user_keeps_at_most_the_cap_of_devices(make_app, tmp_path):
    app = make_app(
        NOTIFICATIONS_DATABASE_URI=f"sqlite:///{tmp_path / 'inbox.sqlite'}",
        NOTIFICATIONS_MOBILE_MAX_DEVICES=3,
    )
    notifications = Notifications(app)
    with app.app_context():
        devices = notifications.devices
        for i in range(4):
            devices.add("alice", {"platform": "ios", "token": f"t{i}"})
        devices.add("bob", {"platform": "ios", "token": "bob"})
        assert [d.token for d in devices.for_user("alice")] == ["t1", "t2", "t3"]
        devices.add("alice", {"platform": "ios", "token": "t1"})  # registered again: newest
        devices.add("alice", {"platform": "android", "token": "t4"})
        assert [d.token for d in devices.for_user("alice")] == ["t1", "t3", "t4"]
        assert [d.token for d in devices.for_users(["bob", "alice", "bob"])] == [
            "t1", "t3", "bob", "t4",
        ]  # fmt: skip
        with pytest.raises(InvalidQueryError):
            devices.add("", {"platform": "ios", "token": "x"})
        get_state(app).engine.dispose()


@pytest.mark.parametrize("value", [0, -1, True, "10", 2.5])
def test_a_bad_cap_is_a_configuration_error(value, make_app):
    with pytest.raises(ConfigurationError, match="NOTIFICATIONS_MOBILE_MAX_DEVICES"):
        max_devices({"NOTIFICATIONS_MOBILE_MAX_DEVICES": value})
    assert max_devices({}) == 10


def test_the_devices_table_lives_with_the_inbox(mobile_app):
    app, notifications = mobile_app
    with app.app_context():
        notifications.devices.add("alice", {"platform": "ios", "token": IOS})
        names = inspect(get_state(app).engine).get_table_names()
    assert "flask_notification_mobile_devices" in names


def test_an_events_channels_restrict_its_consumers():
    from flask_notifications import Event
    from flask_notifications.consumers import Consumer, PushConsumer, StoreConsumer, WebPushConsumer

    seen = []

    class Mobile(Consumer):
        channel = "mobile"

        def consume(self, event, *args, **kwargs):
            seen.append(event["event_id"])
            return "sent"

    class Anything(Consumer):
        def consume(self, event, *args, **kwargs):
            return "sent"

    def event(**custom):
        return Event(None, "comment", "t", "b", recipients=["alice"], **custom)

    mobile = Mobile()
    assert mobile(event()) == "sent"  # no channels: every consumer
    assert mobile(event(channels=["inbox", "mobile"])) == "sent"
    assert mobile(event(channels="mobile")) == "sent"
    assert mobile(event(channels=["inbox", "email"])) is None
    assert mobile(event(channels=[])) is None
    assert mobile(event(channels=42)) == "sent"  # not a list of names: no restriction
    assert len(seen) == 4
    assert Anything()(event(channels=["inbox"])) == "sent"  # a consumer without a channel
    only_inbox = event(channels=["inbox"])
    assert StoreConsumer.channel == "inbox" and PushConsumer.channel == "stream"
    assert WebPushConsumer.channel == "webpush"
    assert not WebPushConsumer().wants(only_inbox)
