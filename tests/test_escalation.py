"""Escalate when unread: ``hub.register_consumer(consumer, if_unread_after=...)``
with a real Redis, a real Celery worker, the workers' timer sweeper, an
SQLite inbox and a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from flask_notifications import ConfigurationError, Event, Notifications, reliability
from flask_notifications._state import get_state
from flask_notifications.consumers import FlaskEmailConsumer, StoreConsumer, WebPushConsumer
from flask_notifications.delivery import records
from flask_notifications.event_hub import register_consumer
from flask_notifications.webpush import generate_vapid_keys
from flask_notifications.workflows import escalation, timers

from . import test_webpush as webpush_tests
from .conftest import wait_for

ADDRESSES = {"alice": "alice@example.org", "bob": "bob@example.org", "carol": "carol@example.org"}
AFTER = timedelta(seconds=3)


class Escalated:
    """A custom consumer: notes the event ids and recipients it was run with."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, list[str]]] = []
        self.lock = threading.Lock()

    def __call__(self, event, *args, **kwargs):
        with self.lock:
            self.runs.append((event["event_id"], list(event["recipients"])))


@pytest.fixture
def setup(make_app, smtp_server, tmp_path):
    server = smtp_server()
    app = make_app(
        NOTIFICATIONS_DATABASE_URI=f"sqlite:///{tmp_path / 'inbox.sqlite'}",
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=server.port,
    )
    notifications = Notifications(app)
    notifications.email_resolver(ADDRESSES.get)
    hub = notifications.create_hub("Messages")
    hub.register_consumer(StoreConsumer())
    hub.register_consumer(
        FlaskEmailConsumer.from_app(app, sender="noreply@example.com"), if_unread_after=AFTER
    )
    custom = Escalated()
    hub.register_consumer(custom, celery_task_name="tests.escalation.custom", if_unread_after=AFTER)
    yield app, notifications, hub, server, custom
    engine = get_state(app).engine
    if engine is not None:
        engine.dispose()


@pytest.fixture
def running(setup, worker, timer_sweeper):
    app = setup[0]
    with app.app_context(), worker(app), timer_sweeper(app):
        yield setup


def message(recipients, event_id=None, title="Hello"):
    return Event(event_id, "message", title, "Body", recipients=recipients)


def stored(notifications, user, event_id):
    items = notifications.inbox.list(user).items
    return next((item for item in items if item["event_id"] == event_id), None)


def test_who_read_in_time_gets_nothing_who_did_not_gets_one_email(running):
    app, notifications, hub, server, custom = running
    sent = notifications.send(message(["alice", "bob"]))
    assert server.messages == [] and custom.runs == []  # not at once
    item = wait_for(lambda: stored(notifications, "alice", sent["event_id"]), 10)
    assert notifications.inbox.mark_read("alice", item["id"])
    wait_for(lambda: custom.runs and server.messages, 15)
    wait_for(lambda: timers.pending() == [], 5)
    assert [m["To"] for m in server.messages] == [ADDRESSES["bob"]]
    assert server.messages[0]["Subject"] == "Hello"
    assert custom.runs == [(sent["event_id"], ["bob"])]  # the event's own id, narrowed
    # Once: a marker escalated later arrives after anything a second run would send.
    marker = notifications.send(message(["carol"], title="Marker"))
    wait_for(
        lambda: (
            any(m["To"] == ADDRESSES["carol"] for m in server.messages) and len(custom.runs) >= 2
        ),
        15,
    )
    assert sorted(m["To"] for m in server.messages) == [ADDRESSES["bob"], ADDRESSES["carol"]]
    assert custom.runs == [(sent["event_id"], ["bob"]), (marker["event_id"], ["carol"])]


def test_nobody_unread_nothing_runs(running):
    app, notifications, hub, server, custom = running
    sent = notifications.send(message(["alice", "bob"]))
    for user in ("alice", "bob"):
        item = wait_for(lambda u=user: stored(notifications, u, sent["event_id"]), 10)
        notifications.inbox.mark_read(user, item["id"])
    marker = notifications.send(message(["carol"], title="Marker"))  # due after the first
    wait_for(lambda: custom.runs and server.messages, 15)
    assert custom.runs == [(marker["event_id"], ["carol"])]
    assert [m["To"] for m in server.messages] == [ADDRESSES["carol"]]


def test_a_recipient_without_a_stored_row_counts_as_unread(setup):
    app, notifications, hub, server, custom = setup
    with app.app_context():
        notifications.inbox.create_tables()
        event = message(["alice", "bob", 7])
        assert escalation.unread_recipients(event) == ["alice", "bob", "7"]
        notifications.inbox.store(event, ["alice", "bob"])
        item = stored(notifications, "bob", event["event_id"])
        notifications.inbox.mark_read("bob", item["id"])
        assert escalation.unread_recipients(event) == ["alice", "7"]


def test_broadcasts_and_duplicates_add_no_escalation(setup):
    app, notifications, hub, server, custom = setup
    with app.app_context():
        notifications.send(Event(None, "message", "To all", "b"))
        assert timers.pending() == []
        sent = notifications.send(message(["alice"], event_id="dup"))
        notifications.send(message(["alice"], event_id="dup"))  # deduplicated
        pending = timers.pending()
        assert sorted(t["payload"]["consumer"] for t in pending) == sorted(hub.escalations)
        assert {t["payload"]["event_id"] for t in pending} == {sent["event_id"]}
        assert {t["payload"]["hub_id"] for t in pending} == {hub.hub_id}


def test_an_event_for_other_channels_is_not_escalated_to_email(setup):
    app, notifications, hub, server, custom = setup
    with app.app_context():
        notifications.send(Event(None, "message", "t", "b", recipients=["a"], channels=["inbox"]))
        consumers = [t["payload"]["consumer"] for t in timers.pending()]
    assert consumers == ["tests.escalation.custom"]  # no channel: every event is for it


def test_escalation_needs_a_hub_that_stores_to_the_inbox(make_app):
    notifications = Notifications(make_app())
    bare = notifications.create_hub("Bare")
    with pytest.raises(ConfigurationError, match="StoreConsumer on hub 'Bare'"):
        bare.register_consumer(lambda e: None, if_unread_after=AFTER)
    with pytest.raises(ConfigurationError, match="StoreConsumer"):

        @bare.register_consumer(celery_task_name="tests.escalation.deco", if_unread_after=AFTER)
        def deco(event): ...

    assert bare.consumers == {}
    hub = notifications.create_hub("Stored")
    store = StoreConsumer()
    hub.register_consumer(store)
    with pytest.raises(ConfigurationError, match="positive"):
        hub.register_consumer(lambda e: None, if_unread_after=timedelta(0))
    with pytest.raises(TypeError, match="timedelta"):
        hub.register_consumer(lambda e: None, if_unread_after=60)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="StoreConsumer cannot"):
        hub.register_consumer(StoreConsumer(), if_unread_after=AFTER)

    @hub.register_consumer(celery_task_name="tests.escalation.later", if_unread_after=AFTER)
    def later(event): ...

    register_consumer(hub, lambda e: None, celery_task_name="tests.escalation.module")
    assert hub.escalations == {"tests.escalation.later": AFTER}
    assert hub._names == (*[n for n in hub.consumers if n != "tests.escalation.later"],)
    # The store goes last: deregistering it first would leave escalations blind.
    with pytest.raises(ConfigurationError, match="tests.escalation.later"):
        hub.deregister_consumer(store)
    assert hub.is_registered(store)
    assert hub.deregister_consumer(later) is True
    assert hub.escalations == {}
    assert hub.deregister_consumer(store) is True


def test_the_hubs_command_shows_escalations(setup):
    app = setup[0]
    result = app.test_cli_runner().invoke(args=["notifications", "hubs"])
    assert result.exit_code == 0, result.output
    assert "consumer: tests.escalation.custom  (if unread after 0:00:03)" in result.output


@pytest.fixture
def push_receiver():
    """The Web Push tests' local push service (it decrypts what it receives)."""
    private_key, public_key = generate_vapid_keys()
    service = webpush_tests.PushService(webpush_tests.SUB, public_key)
    service.thread.start()
    yield service, private_key, public_key
    service.server.shutdown()
    service.server.server_close()
    assert service.errors == [], "the push service refused a request"


def test_web_push_escalation_reaches_only_the_unread_recipient(
    make_app, tmp_path, push_receiver, worker, timer_sweeper
):
    push_service, *vapid_keys = push_receiver
    app = make_app(
        NOTIFICATIONS_DATABASE_URI=f"sqlite:///{tmp_path / 'push.sqlite'}",
        NOTIFICATIONS_VAPID_PRIVATE_KEY=vapid_keys[0],
        NOTIFICATIONS_VAPID_PUBLIC_KEY=vapid_keys[1],
        NOTIFICATIONS_VAPID_CLAIMS_SUB=webpush_tests.SUB,
        **webpush_tests.LOOPBACK,
    )
    notifications = Notifications(app)
    hub = notifications.create_hub("Alerts")
    hub.register_consumer(StoreConsumer())
    task = "tests.escalation.push"
    hub.register_consumer(
        WebPushConsumer(ttl=60, timeout=5), celery_task_name=task, if_unread_after=AFTER
    )
    alice, bob = push_service.browser(), push_service.browser()
    try:
        with app.app_context(), worker(app), timer_sweeper(app):
            for user, browser in (("alice", alice), ("bob", bob)):
                notifications.push_subscriptions.add(user, browser.subscription())
            sent = notifications.send(message(["alice", "bob"]))
            item = wait_for(lambda: stored(notifications, "alice", sent["event_id"]), 10)
            notifications.inbox.mark_read("alice", item["id"])
            wait_for(lambda: reliability.is_done(task, hub.hub_id, sent["event_id"]), 15)
            wait_for(lambda: timers.pending() == [], 5)
        (payload,) = push_service.payloads(bob)
        assert payload["title"] == "Hello" and payload["data"]["event_id"] == sent["event_id"]
        assert push_service.payloads(alice) == []
    finally:
        engine = get_state(app).engine
        if engine is not None:
            engine.dispose()


def test_a_lost_escalation_message_is_sent_again_narrowed(setup, redis_client, worker):
    app, notifications, hub, server, custom = setup
    with app.app_context():
        notifications.inbox.create_tables()
        event = message(["alice", "bob"])
        payload = event.to_json()
        timers.add(
            escalation.KIND,
            "escalate:lost",
            0,
            {
                "event_id": event["event_id"],
                "event": payload,
                "hub_id": hub.hub_id,
                "consumer": "tests.escalation.custom",
            },
        )
        notifications.inbox.store(event, ["alice", "bob"])
        item = stored(notifications, "alice", event["event_id"])
        notifications.inbox.mark_read("alice", item["id"])
        # The event as first sent, kept for the redelivery of its own tasks.
        redis_client.set(records.pending_event_key(event["event_id"]), payload)
    app.config["NOTIFICATIONS_REDELIVER_AFTER"] = 0.5
    timers.sweep(app)  # enqueues the custom consumer's run for bob...
    redis_client.delete("celery")  # ...which the broker loses
    with app.app_context():
        assert reliability.pending_count() == 1
        with worker(app):
            wait_for(lambda: reliability.redeliver_pending(60) == 1, 5)
            wait_for(lambda: custom.runs, 15)
        assert reliability.pending_count() == 0
    assert custom.runs == [(event["event_id"], ["bob"])]  # narrowed, not as first sent


def test_a_grouped_event_is_read_when_its_groups_item_is(setup):
    app, notifications, hub, server, custom = setup
    with app.app_context():
        notifications.inbox.create_tables()

        def grouped(title):
            return Event(None, "comment", title, "b", recipients=["alice", "bob"], group="post:1")

        first, second = grouped("first"), grouped("second")
        for event in (first, second):  # one unread item per recipient, with second's id
            notifications.inbox.store(event, ["alice", "bob"])
        assert escalation.unread_recipients(first) == ["alice", "bob"]
        item = stored(notifications, "alice", second["event_id"])
        assert item["count"] == 2 and stored(notifications, "alice", first["event_id"]) is None
        notifications.inbox.mark_read("alice", item["id"])
        assert escalation.unread_recipients(first) == ["bob"]  # its item was read
        assert escalation.unread_recipients(second) == ["bob"]
        other = Event(None, "comment", "t", "b", recipients=["alice"], group="post:2")
        assert escalation.unread_recipients(other) == ["alice"]  # not stored: unread
