"""``flask notifications send`` and ``flask notifications tail``, against a real
Redis and a real Celery worker; ``vapid-keys`` without the webpush extra."""

from __future__ import annotations

import base64
import json
import sys
import threading
import time

import pytest

from flask_notifications import Event
from flask_notifications.consumers import PushConsumer
from flask_notifications.filters import WithEventType
from flask_notifications.pubsub.redis_pubsub import RedisPubSub

from .conftest import wait_for


def queued_tasks(redis_client):
    """The Celery messages waiting in the default queue: (task name, args)."""
    tasks = []
    for raw in redis_client.lrange("celery", 0, -1):
        message = json.loads(raw)
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        tasks.append((message["headers"]["task"], args))
    return tasks


def test_send_enqueues_the_event_for_the_hubs_consumer(app, notifications, redis_client):
    hub = notifications.create_hub("Messages")
    hub.filter_by(WithEventType("message"))
    hub.register_consumer(lambda event: None, celery_task_name="tests.cli.record")
    result = app.test_cli_runner().invoke(
        args=["notifications", "send", "--hub", "Messages", "--type", "message",
              "--title", "Hi", "--body", "Lunch?", "--to", "bob", "--to", "carol",
              "--sender", "alice"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    event_id = result.output.strip()
    ((task, args),) = queued_tasks(redis_client)
    assert task == "tests.cli.record" and args[1] == hub.hub_id
    event = Event.from_json(args[0])
    assert event["event_id"] == event_id
    assert (event["event_type"], event["title"], event["body"]) == ("message", "Hi", "Lunch?")
    assert event["recipients"] == ["bob", "carol"] and event["sender"] == "alice"


def test_send_reaches_the_consumer_in_a_worker(app, notifications, worker):
    received = []
    hub = notifications.create_hub("Alerts")
    hub.register_consumer(received.append, celery_task_name="tests.cli.alerts")
    with worker(app):
        result = app.test_cli_runner().invoke(
            args=["notifications", "send", "--type", "alert", "--title", "Disk", "--to", "7"]
        )
        assert result.exit_code == 0, result.output
        wait_for(lambda: received, 15)
    (event,) = received
    assert event["event_id"] == result.output.strip()
    assert event["title"] == "Disk" and event["recipients"] == ["7"]


def test_send_to_an_unknown_hub_fails_and_sends_nothing(app, notifications, redis_client):
    notifications.create_hub("Messages").register_consumer(
        lambda event: None, celery_task_name="tests.cli.unknown"
    )
    result = app.test_cli_runner().invoke(
        args=["notifications", "send", "--hub", "Nope", "--type", "message", "--to", "bob"]
    )
    assert result.exit_code == 2
    assert "no hub labelled 'Nope'" in result.output and "'Messages'" in result.output
    assert "Traceback" not in result.output
    assert redis_client.llen("celery") == 0


def test_send_fails_when_the_hubs_filter_rejects_the_event(app, notifications, redis_client):
    hub = notifications.create_hub("Messages")
    hub.filter_by(WithEventType("message"))
    hub.register_consumer(lambda event: None, celery_task_name="tests.cli.filtered")
    result = app.test_cli_runner().invoke(
        args=["notifications", "send", "--hub", "Messages", "--type", "comment"]
    )
    assert result.exit_code == 2
    assert "does not pass the filter of hub 'Messages'" in result.output
    assert redis_client.llen("celery") == 0


def test_send_rejects_an_invalid_event_with_a_message(app, notifications, redis_client):
    notifications.create_hub("Any").register_consumer(
        lambda event: None, celery_task_name="tests.cli.invalid"
    )
    result = app.test_cli_runner().invoke(args=["notifications", "send", "--type", ""])
    assert result.exit_code == 2
    assert "invalid event" in result.output and "event_type" in result.output
    assert redis_client.llen("celery") == 0


def test_tail_prints_pushed_events_as_json_lines(app, notifications, redis_client):
    hub = notifications.create_hub("Messages")
    other = notifications.create_hub("Other")
    channel = RedisPubSub(redis_client).channel_name(hub.hub_id)
    pushed = [
        Event(None, "message", f"Hi {n}", "body\nwith a newline", recipients=["bob"])
        for n in range(2)
    ]
    errors = []

    def publish():
        try:
            deadline = time.monotonic() + 10
            # SUBSCRIBE travels on the tail's own connection: wait until Redis counts it.
            while redis_client.pubsub_numsub(channel)[0][1] < 1:
                assert time.monotonic() < deadline, "tail never subscribed"
                time.sleep(0.01)
            with app.app_context():
                PushConsumer(redis_client, other.hub_id)(Event(None, "message", "elsewhere", ""))
                # An unread-counts envelope, on the same channel: not an event.
                RedisPubSub(redis_client).publish_transient(
                    hub.hub_id, [json.dumps({"unread_counts": {"bob": 1}})]
                )
                for event in pushed:
                    PushConsumer(redis_client, hub.hub_id)(event)
                    PushConsumer(redis_client, hub.hub_id)(event)  # the third: never read
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    publisher = threading.Thread(target=publish, daemon=True)
    result = {}

    def run_tail():
        result["value"] = app.test_cli_runner().invoke(
            args=["notifications", "tail", "Messages", "--count", "3"]
        )

    tail = threading.Thread(target=run_tail, daemon=True)
    tail.start()
    publisher.start()
    publisher.join(15)
    tail.join(15)
    assert not errors, errors
    assert not tail.is_alive(), "tail did not stop after --count events"
    outcome = result["value"]
    assert outcome.exit_code == 0, outcome.output
    lines = outcome.stdout.splitlines()
    assert len(lines) == 3
    printed = [Event.from_json(line) for line in lines]
    assert printed == [pushed[0], pushed[0], pushed[1]]
    assert "listening to hub 'Messages'" in outcome.stderr


def test_tail_of_an_unknown_hub_fails(app, notifications):
    notifications.create_hub("Messages")
    result = app.test_cli_runner().invoke(args=["notifications", "tail", "Nope", "--count", "1"])
    assert result.exit_code == 2
    assert "no hub labelled 'Nope'" in result.output


def hide_distribution(monkeypatch, name):
    """Make ``import name`` fail, as if it were not installed: ``None`` in
    ``sys.modules`` for it and for each of its submodules already imported."""
    for module in [m for m in sys.modules if m.startswith(name + ".")] + [name]:
        monkeypatch.setitem(sys.modules, module, None)


@pytest.mark.parametrize("missing", ["py_vapid", "cryptography"])
def test_vapid_keys_without_the_webpush_extra_says_what_to_install(
    app, notifications, monkeypatch, missing
):
    hide_distribution(monkeypatch, missing)
    result = app.test_cli_runner().invoke(args=["notifications", "vapid-keys"])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)  # a message, not a traceback
    assert 'pip install "Flask-Notifications[webpush]"' in result.stderr
    assert f"{missing} is not installed" in result.stderr
    assert result.stdout == ""  # no half-printed key pair


def test_vapid_keys_prints_a_key_pair(app, notifications):
    result = app.test_cli_runner().invoke(args=["notifications", "vapid-keys"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line.split(" = ")[0] for line in lines] == [
        "NOTIFICATIONS_VAPID_PRIVATE_KEY",
        "NOTIFICATIONS_VAPID_PUBLIC_KEY",
    ]
    public_key = lines[1].split(" = ")[1].strip('"')
    point = base64.urlsafe_b64decode(public_key + "=" * (-len(public_key) % 4))
    assert len(point) == 65 and point[0] == 4  # an uncompressed P-256 point
