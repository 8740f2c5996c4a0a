"""The app the fault tests run under real ``celery worker`` subprocesses.

Settings from the environment: ``REDIS_URL``, ``LOG`` (one line per consumed
event), ``STARTED`` (written when a consume begins) and ``HOLD`` (while this
file exists, the consumer waits: the test kills the worker meanwhile).

Events of type ``test`` go to the hub ``Reliable`` (one consumer); events of
type ``several`` to the hub ``Several``, whose three consumers run in one
event task and write ``<name> <event id>`` lines to ``SEVERAL``; the second
waits on ``HOLD``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from flask import Flask

from flask_notifications import Notifications
from flask_notifications.filters import WithEventType
from flask_notifications.testing import FAST_REDELIVERY

app = Flask("reliability_app")
app.config.update(
    NOTIFICATIONS_REDIS_URL=os.environ["REDIS_URL"],
    broker_connection_retry_on_startup=True,
    # Unacknowledged tasks (a dead worker's, or one stranded by a Redis restart)
    # come back after 2 s, not 1 h, and kombu looks for them every second
    # instead of every 100 s (see docs/reliability.md).
    # A task the broker lost (see docs/reliability.md) is enqueued again after 3 s.
    NOTIFICATIONS_REDELIVER_AFTER=3,
    CELERY_BROKER_TRANSPORT_OPTIONS=FAST_REDELIVERY,
)
notifications = Notifications(app)
celery = app.extensions["notifications"].celery
hub = notifications.create_hub("Reliable").filter_by(WithEventType("test"))


@hub.register_consumer(celery_task_name="reliability_app.record")
def record(event, *args, **kwargs):
    Path(os.environ["STARTED"]).write_text(event["event_id"])
    hold = Path(os.environ["HOLD"])
    while hold.exists():
        time.sleep(0.05)
    with open(os.environ["LOG"], "a", encoding="utf-8") as log:
        log.write(event["event_id"] + "\n")


several = notifications.create_hub("Several").filter_by(WithEventType("several"))


def _note(name: str, event_id: str) -> None:
    with open(os.environ["SEVERAL"], "a", encoding="utf-8") as log:
        log.write(f"{name} {event_id}\n")


@several.register_consumer(celery_task_name="reliability_app.first")
def first(event, *args, **kwargs):
    _note("first", event["event_id"])


@several.register_consumer(celery_task_name="reliability_app.second")
def second(event, *args, **kwargs):
    Path(os.environ["STARTED"]).write_text(event["event_id"])
    hold = Path(os.environ["HOLD"])
    while hold.exists():
        time.sleep(0.05)
    _note("second", event["event_id"])


@several.register_consumer(celery_task_name="reliability_app.third")
def third(event, *args, **kwargs):
    _note("third", event["event_id"])
