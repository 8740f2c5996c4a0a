"""Durable timers and scheduled sends under real worker subprocesses: the
workers' sweeper runs them, and they survive a worker killed with SIGKILL and
a Redis restart without persistence."""

from __future__ import annotations

import json
import os
import signal
import time
from datetime import timedelta

import pytest
from flask import Flask

from flask_notifications import Event, Notifications
from flask_notifications.consumers import StoreConsumer
from flask_notifications.filters import WithEventType
from flask_notifications.testing import RedisServer
from flask_notifications.workflows import timers

from .conftest import wait_for, worker_process

APP = "tests.workflows_app:celery"


@pytest.fixture
def env(redis_url, tmp_path, monkeypatch):
    """The environment of tests/workflows_app.py, and an app on the same
    database to add timers from (as a web process would)."""
    return _env(redis_url, tmp_path, monkeypatch)


def _env(redis_url, tmp_path, monkeypatch):
    values = {
        "REDIS_URL": redis_url,
        "DATABASE_URI": f"sqlite:///{tmp_path / 'inbox.sqlite'}",
        "LOG": str(tmp_path / "log.jsonl"),
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)  # worker_process passes os.environ on
    app = Flask("web", instance_path=str(tmp_path / "instance"))
    app.config.update(
        NOTIFICATIONS_REDIS_URL=redis_url, NOTIFICATIONS_DATABASE_URI=values["DATABASE_URI"]
    )
    notifications = Notifications(app)
    notifications.create_hub("Later")  # its consumer is in the worker's app
    # The escalating hub, as the worker's app has it (registered here so that
    # send() adds the escalation timers; the worker runs them).
    unread = notifications.create_hub("Unread").filter_by(WithEventType("unread"))
    unread.register_consumer(StoreConsumer())
    unread.register_consumer(
        lambda event: None,
        celery_task_name="workflows_app.escalated",
        if_unread_after=timedelta(seconds=5),
    )
    return app, values


def logged(values) -> list[dict]:  # type: ignore[type-arg]
    try:
        with open(values["LOG"], encoding="utf-8") as log:
            return [json.loads(line) for line in log]
    except FileNotFoundError:
        return []


def test_the_workers_sweeper_runs_a_timer_when_due(env):
    app, values = env
    with worker_process(APP, values["REDIS_URL"]):
        with app.app_context():
            due = time.time() + 1
            assert timers.add("tests.log", "one", due, {"n": 1})
        wait_for(lambda: logged(values), 10)
        ran_at = time.time()
        assert ran_at >= due
        with app.app_context():
            wait_for(lambda: timers.pending() == [], 5)
    assert logged(values) == [{"timer": {"n": 1}}]


def test_a_timer_survives_a_worker_killed_with_sigkill(env):
    app, values = env
    with worker_process(APP, values["REDIS_URL"]) as first:
        with app.app_context():
            assert timers.add("tests.log", "survivor", time.time() + 2, {"n": 2})
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
    assert logged(values) == []
    with worker_process(APP, values["REDIS_URL"]):
        wait_for(lambda: logged(values), 15)
        with app.app_context():
            wait_for(lambda: timers.pending() == [], 5)
    assert logged(values) == [{"timer": {"n": 2}}]


def later(event_id: str) -> Event:
    return Event(event_id, "later", "Reminder", "b", recipients=["1"])


def delivered(values) -> list[str]:  # type: ignore[no-untyped-def]
    return [line["event"] for line in logged(values) if "event" in line]


def test_a_scheduled_send_survives_a_worker_killed_with_sigkill(env):
    app, values = env
    with worker_process(APP, values["REDIS_URL"]) as first:
        with app.app_context():
            notifications = app.extensions["notifications"]
            notifications.send(later("kept"), delay=timedelta(seconds=2))
            notifications.send(later("marker"), delay=timedelta(seconds=3))
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
    assert delivered(values) == []
    with worker_process(APP, values["REDIS_URL"]):
        wait_for(lambda: "marker" in delivered(values), 20)
    assert delivered(values) == ["kept", "marker"]


def test_a_scheduled_send_survives_a_redis_restart_without_persistence(
    tmp_path, monkeypatch, celery_app
):
    with RedisServer(directory=tmp_path / "redis") as server:
        app, values = _env(server.url, tmp_path, monkeypatch)
        with worker_process(APP, server.url) as worker:
            with app.app_context():
                notifications = app.extensions["notifications"]
                notifications.send(later("across"), delay=timedelta(seconds=3))
                notifications.send(later("marker"), delay=timedelta(seconds=4))
            server.stop(keep_directory=True)  # no persistence: everything in Redis is gone
            server.start()
            assert server.client().dbsize() == 0
            try:
                wait_for(lambda: "marker" in delivered(values), 40)
            except AssertionError:
                raise AssertionError("".join(worker.output[-40:])) from None
    assert delivered(values) == ["across", "marker"]


def test_an_escalation_survives_a_worker_killed_with_sigkill_and_runs_once(env):
    app, values = env
    notifications = app.extensions["notifications"]

    def escalated() -> list[tuple[str, list[str]]]:
        return [(x["escalated"], x["recipients"]) for x in logged(values) if "escalated" in x]

    with worker_process(APP, values["REDIS_URL"]) as first:
        with app.app_context():
            sent = notifications.send(Event("esc", "unread", "t", "b", recipients=["a", "b"]))
            item = wait_for(lambda: notifications.inbox.list("a").items, 10)[0]
            assert item["event_id"] == sent["event_id"]
            notifications.inbox.mark_read("a", item["id"])
            notifications.send(Event("marker", "unread", "t", "b", recipients=["c"]))
        os.kill(first.pid, signal.SIGKILL)  # before the escalations are due
        first.wait(10)
    assert escalated() == []
    with worker_process(APP, values["REDIS_URL"]):
        wait_for(lambda: ("marker", ["c"]) in escalated(), 20)
    assert escalated() == [("esc", ["b"]), ("marker", ["c"])]


def test_an_escalation_survives_a_redis_restart_without_persistence_and_runs_once(
    tmp_path, monkeypatch, celery_app
):
    with RedisServer(directory=tmp_path / "redis") as server:
        app, values = _env(server.url, tmp_path, monkeypatch)
        notifications = app.extensions["notifications"]

        def escalated() -> list[tuple[str, list[str]]]:
            return [(x["escalated"], x["recipients"]) for x in logged(values) if "escalated" in x]

        with worker_process(APP, server.url) as worker:
            with app.app_context():
                sent = notifications.send(Event("esc", "unread", "t", "b", recipients=["a", "b"]))
                item = wait_for(lambda: notifications.inbox.list("a").items, 10)[0]
                assert item["event_id"] == sent["event_id"]
                notifications.inbox.mark_read("a", item["id"])
                wait_for(lambda: notifications.inbox.list("b").items, 10)  # stored, unread
                notifications.send(Event("marker", "unread", "t", "b", recipients=["c"]))
                wait_for(lambda: notifications.inbox.list("c").items, 10)
            server.stop(keep_directory=True)  # before the escalations are due
            server.start()
            assert server.client().dbsize() == 0  # no persistence: every claim and record is gone
            assert escalated() == []
            try:
                wait_for(lambda: ("marker", ["c"]) in escalated(), 40)
            except AssertionError:
                raise AssertionError("".join(worker.output[-40:])) from None
            with app.app_context():
                wait_for(lambda: timers.pending() == [], 5)
    assert escalated() == [("esc", ["b"]), ("marker", ["c"])]
