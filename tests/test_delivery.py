"""End to end: send() -> hub filters -> Celery tasks (JSON) -> a real in-thread worker."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from celery import Celery
from flask import Flask, current_app, has_app_context

from flask_notifications import Event, EventTooLargeError, InvalidEventError, Notifications
from flask_notifications.consumers import Consumer, LogConsumer, PushConsumer
from flask_notifications.delivery.tasks import EVENT_TASK
from flask_notifications.event_filter import EventFilter
from flask_notifications.filters import BeforeDate, IncludesRecipient, Never, Not, WithEventType

from .conftest import wait_for
from .test_pubsub import Listener


def read_log(path):
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def queued(redis_client, queue="celery"):
    """The raw Celery messages waiting in the Redis broker queue."""
    return [json.loads(raw) for raw in redis_client.lrange(queue, 0, -1)]


def test_documented_example_end_to_end(app, notifications, worker, tmp_path, redis_client):
    log = tmp_path / "events.log"
    seen = []
    hub = notifications.create_hub("TestHub")
    hub.filter_by(WithEventType("test") & Not(BeforeDate(datetime.now() - timedelta(seconds=5))))

    @hub.register_consumer(celery_task_name="tests.delivery.write_to_file")
    def write_to_file(event, *args, **kwargs):
        seen.append((type(event).__name__, event["title"], has_app_context() and current_app.name))

    hub.register_consumer(LogConsumer(log))
    hub.register_consumer(PushConsumer(redis_client, hub.hub_id))

    with app.app_context(), Listener(notifications.create_backend(), hub.hub_id) as listener:
        passing = Event(None, "test", "This event will pass the filter", "body", sender="system")
        notifications.send(passing.to_json())
        notifications.send(Event(None, "system", "This event will not pass", "b", sender="system"))
        with worker(app):
            pushed = listener.get(timeout=10)
            wait_for(lambda: read_log(log) and seen)
            assert listener.empty(0.3)
    assert seen == [("Event", "This event will pass the filter", "tests")]
    assert [e["event_id"] for e in read_log(log)] == [passing["event_id"]]
    assert Event.from_json(pushed["data"]) == passing


def test_tasks_are_json_with_the_event_and_hub(app, notifications, redis_client):
    hub = notifications.create_hub("JsonHub")
    hub.register_consumer(lambda event: None, celery_task_name="tests.delivery.json_only")
    with app.app_context():
        event = notifications.send(Event("e-1", "t", "title", "body", custom={"a": 1}))
    (message,) = queued(redis_client)
    assert message["content-type"] == "application/json"
    assert message["headers"]["task"] == "tests.delivery.json_only"
    args, kwargs, _ = json.loads(base64.b64decode(message["body"]))
    assert args == [event.to_json(), hub.hub_id, "flask_notifications/tests"]  # prefix/name
    # What monitoring shows: the event id, not the event (it may be personal).
    assert event["event_id"] in message["headers"]["argsrepr"]
    assert "title" not in message["headers"]["argsrepr"]
    assert Event.from_json(args[0]) == event


def test_send_returns_the_validated_event_and_accepts_json_and_mappings(app, notifications):
    with app.app_context():
        event = notifications.send('{"event_type": "t", "title": "a", "body": "b", "sender": 5}')
        assert isinstance(event, Event) and event["sender"] == "5" and event["event_id"]
        assert notifications.send(dict(event)) == event


@pytest.mark.parametrize(
    "bad",
    [
        "{garbage",
        '{"event_type": "t"}',
        Event(None, "t", "a", "b", obj=object()),
        Event(None, "t", "a", "b", big="x" * 70_000),
    ],
)
def test_invalid_event_sends_nothing(app, notifications, redis_client, bad):
    hub = notifications.create_hub("Strict")
    hub.register_consumer(lambda e: None, celery_task_name="tests.delivery.strict")
    with app.app_context(), pytest.raises(InvalidEventError):
        notifications.send(bad)
    assert redis_client.llen("celery") == 0


def test_edited_event_is_revalidated(app, notifications, redis_client):
    notifications.create_hub("Edit").register_consumer(
        lambda e: None, celery_task_name="tests.delivery.edit"
    )
    event = Event(None, "t", "a", "b")
    event["recipients"] = "bob"
    with app.app_context(), pytest.raises(InvalidEventError, match="recipients"):
        notifications.send(event)
    assert redis_client.llen("celery") == 0


def test_size_limit_from_config(make_app, redis_client):
    app = make_app(NOTIFICATIONS_MAX_EVENT_BYTES=300)
    notifications = Notifications(app)
    notifications.create_hub("Small").register_consumer(
        lambda e: None, celery_task_name="tests.delivery.small"
    )
    with app.app_context():
        notifications.send(Event(None, "t", "a", "x" * 50))
        with pytest.raises(EventTooLargeError):
            notifications.send(Event(None, "t", "a", "x" * 400))
    assert redis_client.llen("celery") == 1


def test_failing_filter_sends_nothing_to_any_hub(app, notifications, redis_client):
    class Broken(EventFilter):
        def filter(self, event, *args, **kwargs):
            raise KeyError("boom")

    notifications.create_hub("First").register_consumer(
        lambda e: None, celery_task_name="tests.delivery.first"
    )
    notifications.create_hub("Second").filter_by(Broken())
    with app.app_context(), pytest.raises(KeyError):
        notifications.send(Event(None, "t", "a", "b"))
    assert redis_client.llen("celery") == 0


def test_hubs_filter_independently(app, notifications, worker, tmp_path):
    alice_log, all_log, never_log = tmp_path / "alice", tmp_path / "all", tmp_path / "never"
    notifications.create_hub("Alice").filter_by(IncludesRecipient("alice")).register_consumer(
        LogConsumer(alice_log)
    )
    notifications.create_hub("All").register_consumer(LogConsumer(all_log))
    notifications.create_hub("Paused").filter_by(Never()).register_consumer(LogConsumer(never_log))
    with app.app_context():
        to_alice = notifications.send(Event(None, "msg", "hi", "b", recipients=["alice"]))
        to_bob = notifications.send(Event(None, "msg", "hi", "b", recipients=["bob"]))
        with worker(app):
            wait_for(lambda: len(read_log(all_log)) == 2 and read_log(alice_log))
    assert [e["event_id"] for e in read_log(alice_log)] == [to_alice["event_id"]]
    assert {e["event_id"] for e in read_log(all_log)} == {to_alice["event_id"], to_bob["event_id"]}
    assert not never_log.exists()


def test_expired_event_is_never_enqueued(app, notifications, redis_client):
    notifications.create_hub("Exp").register_consumer(
        lambda e: None, celery_task_name="tests.delivery.exp"
    )
    with app.app_context():
        notifications.send(
            Event(None, "t", "a", "b", expiration_datetime=datetime.now() - timedelta(seconds=1))
        )
        notifications.send(
            Event(None, "t", "a", "b", expiration_datetime=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert redis_client.llen("celery") == 0


def test_event_expiring_in_the_queue_is_not_consumed(
    app, notifications, worker, tmp_path, redis_client
):
    expiring_log, sentinel_log = tmp_path / "expiring", tmp_path / "sentinel"
    hub = notifications.create_hub("Expiring")
    hub.filter_by(WithEventType("expiring")).register_consumer(LogConsumer(expiring_log))
    notifications.create_hub("Sentinel").filter_by(WithEventType("sentinel")).register_consumer(
        LogConsumer(sentinel_log)
    )
    with app.app_context():
        notifications.send(
            Event(
                None,
                "expiring",
                "a",
                "b",
                expiration_datetime=datetime.now() + timedelta(seconds=1),
            )
        )
        (message,) = queued(redis_client)
        assert message["headers"]["expires"]  # Celery knows the deadline too
        time.sleep(1.3)
        notifications.send(Event(None, "sentinel", "a", "b"))
        with worker(app):
            wait_for(lambda: read_log(sentinel_log))  # the worker got past the expired task
    assert not expiring_log.exists()


def test_deregister_really_stops_delivery(app, notifications, worker, tmp_path):
    hub = notifications.create_hub("Dereg")
    calls = []

    @hub.register_consumer(celery_task_name="tests.delivery.dereg")
    def counted(event):
        calls.append(event["title"])

    sentinel = tmp_path / "sentinel"
    hub.register_consumer(LogConsumer(sentinel))
    with app.app_context(), worker(app):
        notifications.send(Event(None, "t", "first", "b"))
        wait_for(lambda: calls == ["first"] and len(read_log(sentinel)) == 1)
        hub.deregister_consumer(counted)
        notifications.send(Event(None, "t", "second", "b"))
        wait_for(lambda: len(read_log(sentinel)) == 2)
    assert calls == ["first"]


def test_a_failing_consumer_does_not_stop_the_others(app, notifications, worker, tmp_path):
    hub = notifications.create_hub("Isolated")

    @hub.register_consumer(celery_task_name="tests.delivery.broken")
    def broken(event):
        raise RuntimeError("consumer bug")

    log = tmp_path / "ok"
    hub.register_consumer(LogConsumer(log))
    with app.app_context(), worker(app):
        sent = notifications.send(Event(None, "t", "a", "b"))
        wait_for(lambda: read_log(log))
    assert read_log(log)[0]["event_id"] == sent["event_id"]


def test_custom_fields_reach_the_consumer(app, notifications, worker):
    got = []
    notifications.create_hub("Custom").register_consumer(
        lambda event: got.append(event), celery_task_name="tests.delivery.custom"
    )
    with app.app_context(), worker(app):
        sent = notifications.send(
            Event(None, "t", "a", "b", recipients=[1], priority="high", data={"url": "/x"})
        )
        wait_for(lambda: got)
    assert got[0] == sent and got[0]["priority"] == "high" and got[0]["data"] == {"url": "/x"}


def test_apps_sharing_one_celery_app_run_their_own_consumers(redis_url, worker):
    shared = Celery("shared-celery", set_as_current=False)
    results: dict[str, list[str]] = {"one": [], "two": []}
    apps = {}
    for name in ("one", "two"):
        app = Flask(f"tests_{name}")
        app.config.update(
            NOTIFICATIONS_REDIS_URL=redis_url, broker_connection_retry_on_startup=True
        )
        shared.conf.broker_url = redis_url
        notifications = Notifications(app, celery=shared)

        # The same task name in both apps, bound to different functions:
        @notifications.create_hub("Same").register_consumer(
            celery_task_name="tests.delivery.shared"
        )
        def consumer(event, _name=name):
            results[_name].append(event["title"])

        apps[name] = (app, notifications)

    with worker(apps["two"][0]):
        for name, (app, notifications) in apps.items():
            with app.app_context():
                notifications.send(Event(None, "t", f"from {name}", "b"))
        wait_for(lambda: results["one"] and results["two"])
    assert results == {"one": ["from one"], "two": ["from two"]}


def test_eager_mode_runs_consumers_inline(make_app):
    app = make_app(CELERY_TASK_ALWAYS_EAGER=True)
    notifications = Notifications(app)
    got = []
    notifications.create_hub("Eager").register_consumer(
        lambda event: got.append(current_app.name), celery_task_name="tests.delivery.eager"
    )
    with app.app_context():
        notifications.send(Event(None, "t", "a", "b"))
    assert got == ["tests"]


def test_several_consumers_cost_the_request_one_message(
    app, notifications, worker, tmp_path, redis_client
):
    logs = [tmp_path / f"log{i}" for i in range(3)]
    notifications.create_hub("Two").register_consumer(LogConsumer(logs[0]))
    notifications.create_hub("Two").register_consumer(LogConsumer(logs[1]))
    notifications.create_hub("Other").register_consumer(LogConsumer(logs[2]))
    soon = datetime.now(UTC) + timedelta(minutes=5)
    with app.app_context():
        sent = notifications.send(Event(None, "t", "a", "b", expiration_datetime=soon))
        (message,) = queued(redis_client)  # one message, not three
        assert message["headers"]["task"] == EVENT_TASK
        assert message["headers"]["expires"]
        with worker(app):
            wait_for(lambda: all(read_log(log) for log in logs))
            time.sleep(0.3)
    assert [[e["event_id"] for e in read_log(log)] for log in logs] == [[sent["event_id"]]] * 3


class OwnTask(Consumer):
    """A consumer that asks for a task of its own."""

    own_task = True

    def __init__(self, calls):
        self.calls = calls

    def consume(self, event, *args, **kwargs):
        self.calls.append(("own", self.task_name()))


def test_the_event_task_runs_consumers_and_enqueues_own_tasks_with_the_expiry(
    app, notifications, redis_client
):
    calls = []
    notifications.create_hub("A").register_consumer(OwnTask(calls), celery_task_name="tests.fo.a")
    notifications.create_hub("B").register_consumer(
        lambda e: calls.append(("inline", OwnTask(None).task_name())), celery_task_name="tests.fo.b"
    )
    soon = datetime.now() + timedelta(minutes=5)
    with app.app_context():
        notifications.send(Event(None, "t", "a", "b", expiration_datetime=soon))
        (message,) = queued(redis_client)
        redis_client.delete("celery")
        body = json.loads(base64.b64decode(message["body"]))
        notifications.celery.tasks[EVENT_TASK].apply(body[0])  # as a worker
    # The inline consumer ran in the event task, under its own name.
    assert calls == [("inline", "tests.fo.b")]
    (own,) = queued(redis_client)
    assert own["headers"]["task"] == "tests.fo.a" and own["headers"]["expires"]


def test_consumer_own_task_defaults():
    from flask_notifications.consumers import (
        FlaskEmailConsumer,
        FlaskMailConsumer,
        FunctionConsumer,
        LogConsumer,
        PushConsumer,
        StoreConsumer,
        WebPushConsumer,
    )

    assert FlaskMailConsumer.own_task and FlaskEmailConsumer.own_task and WebPushConsumer.own_task
    local = (Consumer, FunctionConsumer, LogConsumer, PushConsumer, StoreConsumer)
    assert not any(cls.own_task for cls in local)


def test_the_documented_celery_and_broker_form_sends_runs_and_streams(
    make_app, redis_server, redis_url, worker, tmp_path
):
    """docs/usage.rst: init_app(app=app, celery=FlaskCeleryExt(app).celery,
    broker=StrictRedis(host=..., port=...)), end to end through a real worker
    and a stream."""
    from flask_celeryext import FlaskCeleryExt
    from redis import StrictRedis

    app = make_app(
        CELERY_BROKER_URL=redis_url,
        CELERY_ACCEPT_CONTENT=["json"],
        CELERY_TASK_SERIALIZER="json",
        CELERY_RESULT_SERIALIZER="json",
    )
    celery = FlaskCeleryExt(app).celery
    redis = StrictRedis(host="127.0.0.1", port=redis_server.port)
    notifications = Notifications()
    notifications.init_app(app=app, celery=celery, broker=redis)
    hub = notifications.create_hub("Docs", public=True)
    hub.register_consumer(PushConsumer(redis, hub.hub_id))
    log = tmp_path / "docs.log"
    hub.register_consumer(LogConsumer(log))
    stream = app.test_client().get("/notifications/stream/Docs", buffered=False)
    frames = iter(stream.response)
    assert b"event: ready" in next(frames)
    try:
        with worker(app):
            with app.app_context():
                sent = notifications.send(Event(None, "t", "hello from the docs", "b"))
            frame = next(frames)
            while b"hello from the docs" not in frame:
                frame = next(frames)
            wait_for(lambda: read_log(log))
    finally:
        stream.close()
        with app.app_context():
            notifications.shutdown()
    assert sent["event_id"].encode() in frame
    assert [e["event_id"] for e in read_log(log)] == [sent["event_id"]]
