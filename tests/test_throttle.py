"""Throttle per recipient (issue 16): at most ``limit`` deliveries per window
and recipient, the rest held and delivered as one summary when the window
ends; decisions idempotent; the inbox gets everything; durable across a
worker SIGKILL and a Redis restart (real worker subprocesses, SQLite)."""

from __future__ import annotations

import json
import os
import signal
import threading
from datetime import timedelta

import pytest
import sqlalchemy
from flask import Flask

from flask_notifications import Event, InvalidThrottleError, Notifications
from flask_notifications._state import get_state
from flask_notifications.consumers import StoreConsumer
from flask_notifications.consumers.consumer import FunctionConsumer
from flask_notifications.filters import WithEventType
from flask_notifications.inbox.database import get_engine
from flask_notifications.inbox.models import throttled
from flask_notifications.testing import RedisServer
from flask_notifications.workflows import throttle, timers

from .conftest import wait_for, worker_process


def follow(n, recipients, sender="bob"):
    return Event(f"follow-{n}", "follow", f"follow #{n}", "b", sender=sender, recipients=recipients)


@pytest.fixture
def throttled_app(make_app, database_uri):
    """A hub Follows (limit 2 per 2 s) with a StoreConsumer and a recording
    consumer, on SQLite and PostgreSQL; ``received`` lists what the recorder
    got, in order."""
    app = make_app(NOTIFICATIONS_DATABASE_URI=database_uri)
    notifications = Notifications(app)
    hub = notifications.create_hub("Follows").filter_by(WithEventType("follow"))
    hub.throttle(limit=2, per=timedelta(seconds=2))
    hub.register_consumer(StoreConsumer())
    received: list[Event] = []
    lock = threading.Lock()

    @hub.register_consumer(celery_task_name="tests.throttle.record")
    def record(event, *args, **kwargs):
        with lock:
            received.append(event)

    with app.app_context():
        notifications.inbox.create_tables()
    yield app, notifications, hub, received
    with app.app_context():
        get_state(app).engine.dispose()


def test_bad_arguments_are_value_errors(throttled_app):
    _, _, hub, _ = throttled_app
    for limit, per, message in [
        (0, timedelta(minutes=1), "limit must be an integer >= 1, not 0"),
        ("5", timedelta(minutes=1), "limit must be an integer >= 1, not '5'"),
        (True, timedelta(minutes=1), "limit must be an integer >= 1, not True"),
        (5, 60, "per must be a timedelta, not int"),
        (5, timedelta(milliseconds=500), "per must be at least 1 second"),
    ]:
        with pytest.raises(InvalidThrottleError, match=message) as caught:
            hub.throttle(limit=limit, per=per)
        assert isinstance(caught.value, ValueError)
    assert hub.throttling == throttle.Throttle(2, 2.0)  # unchanged by the bad calls
    assert hub.throttle(5) is hub and hub.throttling == throttle.Throttle(5, 60.0)


def test_beyond_the_limit_events_are_held_then_summarised(throttled_app, worker):
    app, notifications, hub, received = throttled_app
    with app.app_context(), worker(app):
        notifications.send(follow(1, ["alice", "bob", "carol"]))
        notifications.send(follow(2, ["alice"]))
        wait_for(lambda: len(received) == 2)
        # alice is at her limit: held for her, delivered to the other two.
        notifications.send(follow(3, ["alice", "bob", "carol"]))
        notifications.send(follow(4, ["alice"]))
        notifications.send(follow(5, ["alice"]))
        wait_for(lambda: len(received) == 3 and held_rows(app) == 3)
        assert [(e["event_id"], e["recipients"]) for e in received] == [
            ("follow-1", ["alice", "bob", "carol"]),
            ("follow-2", ["alice"]),
            ("follow-3", ["bob", "carol"]),
        ]
        # The inbox has every event.
        assert notifications.inbox.list("alice").total == 5
        # The window ends: one summary, for alice only (the worker sweeps the timers).
        wait_for(lambda: timers.sweep(app) is not None and len(received) == 4, 15)
        summary = received[3]
        assert summary["event_type"] == "summary"
        assert summary["recipients"] == ["alice"]
        assert summary["title"] == "3 more notifications"
        assert summary["count"] == 3
        assert [e["event_id"] for e in summary["events"]] == ["follow-3", "follow-4", "follow-5"]
        assert [e["title"] for e in summary["events"]] == ["follow #3", "follow #4", "follow #5"]
        assert summary["throttle"]["hub"] == "Follows"
        assert summary["body"] == "follow #3; follow #4; follow #5"
        assert held_rows(app) == 0
        assert notifications.inbox.list("alice").total == 5  # the summary is not stored
        # A new window: delivered again.
        notifications.send(follow(6, ["alice"]))
        wait_for(lambda: len(received) == 5)
        assert received[4]["event_id"] == "follow-6"
        assert timers.pending(throttle.KIND) == []


class Flaky(FunctionConsumer):
    """A consumer that fails once (a transient error) on the events named in
    ``fail_once``, then records what it gets: retried by its own task."""

    retry_backoff = 1
    retry_jitter = False

    def __init__(self, fail_once):
        self.fail_once = set(fail_once)
        self.got = []
        super().__init__(self.run, "tests.throttle.flaky")

    def run(self, event, *args, **kwargs):
        if event["event_id"] in self.fail_once:
            self.fail_once.discard(event["event_id"])
            raise ConnectionError("the outside world is down for a moment")
        self.got.append((event["event_id"], event["recipients"]))


def test_a_retried_consumer_gets_the_same_decision(throttled_app, worker):
    """follow-3 fails once in one consumer and is retried by its own task.
    Its first run used bob's and carol's second delivery of the window: a
    fresh decision at the retry would hold it for them (they are at the
    limit); the recorded one delivers it to them."""
    app, notifications, hub, received = throttled_app
    flaky = Flaky({"follow-3"})
    hub.register_consumer(flaky)
    with app.app_context(), worker(app):
        notifications.send(follow(1, ["alice", "bob", "carol"]))
        notifications.send(follow(2, ["alice"]))
        notifications.send(follow(3, ["alice", "bob", "carol"]))
        notifications.send(follow(4, ["bob"]))  # bob's third: held
        wait_for(lambda: len(flaky.got) == 3 and held_rows(app) == 2, 20)
        assert sorted(flaky.got) == [
            ("follow-1", ["alice", "bob", "carol"]),
            ("follow-2", ["alice"]),
            ("follow-3", ["bob", "carol"]),  # the retry: the same answer
        ]
        wait_for(lambda: len(received) == 3)
        assert [(e["event_id"], e["recipients"]) for e in received] == [
            ("follow-1", ["alice", "bob", "carol"]),
            ("follow-2", ["alice"]),
            ("follow-3", ["bob", "carol"]),
        ]


def held_rows(app):
    with app.app_context(), get_engine().connect() as conn:
        return conn.execute(
            sqlalchemy.select(sqlalchemy.func.count()).select_from(throttled)
        ).scalar()


def test_decisions_are_idempotent_across_retries(throttled_app):
    """A retried event task asks again: same answer, nothing counted twice."""
    app, notifications, hub, _ = throttled_app
    recorder = hub.get_consumer("tests.throttle.record")
    store = hub.get_consumer("flask_notifications.consumers.store_consumer.StoreConsumer")
    with app.app_context():
        first, second, third = (follow(n, ["alice", "bob"]) for n in (1, 2, 3))
        for _ in range(3):  # the same events asked about again and again
            assert throttle.narrow(hub, recorder, first) is first
            assert throttle.narrow(hub, recorder, second) is second
        assert throttle.narrow(hub, store, third) is third  # the inbox is never throttled
        assert throttle.narrow(hub, recorder, third) is None  # both at their limit
        assert throttle.narrow(hub, recorder, third) is None
        assert throttle.narrow(hub, recorder, first) is first  # still delivered
        fourth = follow(4, ["alice"], sender="carol")
        assert throttle.narrow(hub, recorder, fourth) is None
        assert held_rows(app) == 3  # third for alice and bob, fourth for alice: once each
        keys = sorted(t["payload"]["user"] for t in timers.pending(throttle.KIND))
        assert keys == ["alice", "bob"]  # one timer per recipient and window
        broadcast = Event("b", "follow", "t", "b")
        assert throttle.narrow(hub, recorder, broadcast) is broadcast  # not throttled


def test_an_unthrottled_hub_and_summaries_pass_as_they_are(throttled_app):
    app, notifications, hub, _ = throttled_app
    other = notifications.create_hub("Other")
    other.register_consumer(lambda event: None, celery_task_name="tests.throttle.other")
    consumer = other.get_consumer("tests.throttle.other")
    recorder = hub.get_consumer("tests.throttle.record")
    with app.app_context():
        for n in range(5):
            event = follow(n, ["alice"])
            assert throttle.narrow(other, consumer, event) is event
        for n in range(2):
            throttle.narrow(hub, recorder, follow(10 + n, ["alice"]))
        rows = [
            type("Row", (), {"event_id": f"e{i}", "event_type": "follow", "title": "t",
                             "window_end": 1.0})()
            for i in range(3)
        ]  # fmt: skip
        summary = throttle.summary_event(hub, "alice", rows, listed=2)
        assert throttle.narrow(hub, recorder, summary) is summary  # never throttled
        assert summary["count"] == 3 and len(summary["events"]) == 2
        again = throttle.summary_event(hub, "alice", rows, listed=2)
        assert again["event_id"] == summary["event_id"]  # the same held events: the same id


# -- durability: real worker subprocesses -------------------------------------------------

APP = "tests.throttle_app:celery"


def logged(path) -> list[dict]:  # type: ignore[type-arg]
    try:
        with open(path, encoding="utf-8") as log:
            return [json.loads(line) for line in log]
    except FileNotFoundError:
        return []


def test_a_summary_survives_a_worker_sigkill_and_a_redis_restart(tmp_path, monkeypatch, celery_app):
    with RedisServer(directory=tmp_path / "redis") as server:
        values = {
            "REDIS_URL": server.url,
            "DATABASE_URI": f"sqlite:///{tmp_path / 'inbox.sqlite'}",
            "LOG": str(tmp_path / "log.jsonl"),
            "PER": "6",
        }
        for key, value in values.items():
            monkeypatch.setenv(key, value)
        web = Flask("web", instance_path=str(tmp_path / "instance"))
        web.config.update(
            NOTIFICATIONS_REDIS_URL=server.url, NOTIFICATIONS_DATABASE_URI=values["DATABASE_URI"]
        )
        notifications = Notifications(web)
        hub = notifications.create_hub("Follows").filter_by(WithEventType("follow"))
        hub.register_consumer(StoreConsumer())  # the same consumers as the worker's app
        hub.register_consumer(lambda event: None, celery_task_name="throttle_app.record")
        with worker_process(APP, server.url) as first:
            with web.app_context():
                for n in range(1, 6):
                    notifications.send(follow(n, ["alice"]))
            wait_for(lambda: len(logged(values["LOG"])) == 2 and held_rows(web) == 3, 20)
            os.kill(first.pid, signal.SIGKILL)  # before the window ends
            first.wait(10)
        server.stop(keep_directory=True)  # no persistence: every decision and window is gone
        server.start()
        assert server.client().dbsize() == 0
        with web.app_context():
            assert [t["payload"]["user"] for t in timers.pending(throttle.KIND)] == ["alice"]
        with worker_process(APP, server.url) as second:
            try:
                wait_for(lambda: len(logged(values["LOG"])) == 3, 40)
            except AssertionError:
                raise AssertionError("".join(second.output[-40:])) from None
            with web.app_context():
                wait_for(lambda: timers.pending() == [] and held_rows(web) == 0, 10)
                # Nothing is left to summarise; a new window delivers at once.
                notifications.send(follow(6, ["alice"]))
            wait_for(lambda: len(logged(values["LOG"])) == 4, 20)
    lines = logged(values["LOG"])
    assert [line["event"] for line in lines[:2]] == ["follow-1", "follow-2"]
    summary = lines[2]
    assert summary["type"] == "summary" and summary["recipients"] == ["alice"]
    assert summary["count"] == 3 and summary["events"] == ["follow-3", "follow-4", "follow-5"]
    assert lines[3]["event"] == "follow-6"  # one summary only


def test_held_recipients_are_logged_as_suppressed(throttled_app):
    """A consumer with a channel (the PushConsumer, "stream"): the delivery
    log says why a held recipient got nothing yet."""
    from flask_notifications.consumers import PushConsumer

    app, notifications, hub, _ = throttled_app
    push = PushConsumer(notifications.redis, hub)
    hub.register_consumer(push)
    with app.app_context():
        for n in (1, 2):
            assert throttle.narrow(hub, push, follow(n, ["alice"])) is not None
        narrowed = throttle.narrow(hub, push, follow(3, ["alice", "bob"]))
        assert narrowed["recipients"] == ["bob"]
        records = {
            (r["recipient"], r["channel"]): (r["status"], r["error"])
            for r in notifications.deliveries("follow-3")
        }
        assert records == {("alice", "stream"): ("suppressed", "throttled: held for the summary")}


def test_decisions_on_a_redis_cluster(make_app, cluster_url, redis_url, database_uri):
    """Each recipient's keys share one hash slot: the scripts run on a
    Redis Cluster, recipients spread over the shards, in one pipeline."""
    app = make_app(
        NOTIFICATIONS_REDIS_URL=cluster_url,
        CELERY_BROKER_URL=redis_url,
        NOTIFICATIONS_DATABASE_URI=database_uri,
    )
    notifications = Notifications(app)
    hub = notifications.create_hub("Follows").throttle(limit=1, per=timedelta(minutes=1))
    hub.register_consumer(lambda event: None, celery_task_name="tests.throttle.cluster")
    consumer = hub.get_consumer("tests.throttle.cluster")
    users = [f"user{i}" for i in range(20)]
    with app.app_context():
        client = notifications.redis
        state = get_state(app)
        nodes = {
            client.get_node_from_key(state.key("{t:" + hub.hub_id + ":" + u + "}", "window")).name
            for u in users
        }
        assert len(nodes) > 1  # the recipients' keys are on several shards
        first = follow(1, users)
        assert throttle.narrow(hub, consumer, first) is first
        assert throttle.narrow(hub, consumer, follow(2, users)) is None  # all at the limit
        assert throttle.narrow(hub, consumer, first) is first  # recorded: still delivered
        assert held_rows(app) == 20
        get_state(app).engine.dispose()
