"""The app the workflow tests run under real ``celery worker`` subprocesses.

Settings from the environment: ``REDIS_URL``, ``DATABASE_URI`` (the inbox
database, where the durable timers live) and ``LOG`` (one JSON line per
event consumed or timer run).

The timer kind ``tests.log`` writes its payload to ``LOG``; events of type
``later`` go to the hub ``Later``, whose consumer writes their ids to ``LOG``;
events of type ``unread`` to the hub ``Unread`` (stored in the inbox), whose
consumer runs 5 s later for the recipients who have not read them and writes
their ids and those recipients to ``LOG``.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta

from flask import Flask

from flask_notifications import Notifications
from flask_notifications.consumers import StoreConsumer
from flask_notifications.filters import WithEventType
from flask_notifications.testing import FAST_REDELIVERY
from flask_notifications.workflows import timers

app = Flask("workflows_app")
app.config.update(
    NOTIFICATIONS_REDIS_URL=os.environ["REDIS_URL"],
    NOTIFICATIONS_DATABASE_URI=os.environ["DATABASE_URI"],
    broker_connection_retry_on_startup=True,
    CELERY_BROKER_TRANSPORT_OPTIONS=FAST_REDELIVERY,
)
notifications = Notifications(app)
celery = app.extensions["notifications"].celery


def _log(record: dict) -> None:
    with open(os.environ["LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps(record) + "\n")


@timers.handler("tests.log")
def log_timer(extension, payload):
    _log({"timer": payload})


later = notifications.create_hub("Later").filter_by(WithEventType("later"))


@later.register_consumer(celery_task_name="workflows_app.record")
def record(event, *args, **kwargs):
    _log({"event": event["event_id"]})


unread = notifications.create_hub("Unread").filter_by(WithEventType("unread"))
unread.register_consumer(StoreConsumer())


@unread.register_consumer(
    celery_task_name="workflows_app.escalated", if_unread_after=timedelta(seconds=5)
)
def escalated(event, *args, **kwargs):
    _log({"escalated": event["event_id"], "recipients": event["recipients"]})
