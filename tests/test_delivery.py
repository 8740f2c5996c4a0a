"""End to end: send() -> hub filters -> Celery tasks -> a real in-thread worker."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from flask import current_app, has_app_context

from flask_notifications import Event, InvalidEventError
from flask_notifications.consumers import LogConsumer
from flask_notifications.filters import BeforeDate, Not, WithEventType

from .conftest import wait_for


def read_lines(path):
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_send_runs_consumers_in_worker_with_app_context(app, notifications, worker, tmp_path):
    log = tmp_path / "events.log"
    seen = []
    hub = notifications.create_hub("TestHub")
    hub.filter_by(WithEventType("test") & Not(BeforeDate(datetime.now() - timedelta(seconds=5))))

    @hub.register_consumer(celery_task_name="tests.delivery.record")
    def record(event, *args, **kwargs):
        seen.append((type(event).__name__, event["title"], has_app_context() and current_app.name))

    hub.register_consumer(LogConsumer(log))

    with app.app_context(), worker(app):
        passing = Event(None, "test", "This event will pass the filter", "body", sender="system")
        notifications.send(passing.to_json())
        notifications.send(Event(None, "system", "This event will not pass", "b", sender="system"))
        wait_for(lambda: len(read_lines(log)) >= 1 and seen)
    assert seen == [("Event", "This event will pass the filter", "tests")]
    assert [e["event_id"] for e in read_lines(log)] == [passing["event_id"]]
