"""The app the throttle's durability test and the grouping's two-worker test
run under real ``celery worker`` subprocesses.

Settings from the environment: ``REDIS_URL``, ``DATABASE_URI`` (the inbox
database: held events and timers) and ``LOG`` (one JSON line per event the
``record`` consumer gets); ``PER``: the throttle's window in seconds.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta

from flask import Flask

from flask_notifications import Notifications
from flask_notifications.consumers import StoreConsumer
from flask_notifications.filters import WithEventType

app = Flask("throttle_app")
app.config.update(
    NOTIFICATIONS_REDIS_URL=os.environ["REDIS_URL"],
    NOTIFICATIONS_DATABASE_URI=os.environ["DATABASE_URI"],
    NOTIFICATIONS_TIMER_POLL=0.2,
    broker_connection_retry_on_startup=True,
)
notifications = Notifications(app)
celery = app.extensions["notifications"].celery

follows = notifications.create_hub("Follows").filter_by(WithEventType("follow"))
follows.throttle(limit=2, per=timedelta(seconds=float(os.environ.get("PER", "5"))))
follows.register_consumer(StoreConsumer())


@follows.register_consumer(celery_task_name="throttle_app.record")
def record(event, *args, **kwargs):
    line = {
        "event": event["event_id"],
        "type": event["event_type"],
        "recipients": event["recipients"],
        "count": event.get("count"),
        "events": [e["event_id"] for e in event.get("events", [])],
    }
    with open(os.environ["LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps(line) + "\n")


# Grouped comments, stored only (tests/test_grouping.py: two workers at once).
comments = notifications.create_hub("Comments").filter_by(WithEventType("comment"))
comments.register_consumer(StoreConsumer())
