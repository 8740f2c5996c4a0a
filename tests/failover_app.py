"""The app of the failover test (tests/test_failover.py): its Celery worker
runs in a subprocess; Redis is a Sentinel-managed master (``REDIS_URL``).

The Inbox hub (the same hub id as tests/stream_app.py's) pushes each event to
the open streams and records its id in ``LOG`` (one line per consumed event).
"""

from __future__ import annotations

import os

from flask import Flask

from flask_notifications import Notifications
from flask_notifications.consumers import PushConsumer

app = Flask("failover_app")
app.config.update(
    NOTIFICATIONS_REDIS_URL=os.environ["REDIS_URL"],
    # send() rides out the failover (about 2-3 s) instead of giving up.
    NOTIFICATIONS_SEND_TIMEOUT=20,
    # A task the broker lost with the old master is enqueued again after 3 s.
    NOTIFICATIONS_REDELIVER_AFTER=3,
    # A message whose acknowledgement was lost comes back after 5 s.
    CELERY_BROKER_TRANSPORT_OPTIONS={
        "visibility_timeout": 5,
        "unacked_restore_interval": 1,
        "unacked_restore_throttle": 1,
    },
    broker_connection_retry_on_startup=True,
)
notifications = Notifications(app)
celery = app.extensions["notifications"].celery
inbox = notifications.create_hub("Inbox")
inbox.register_consumer(PushConsumer(notifications.redis, inbox.hub_id))


@inbox.register_consumer(celery_task_name="failover_app.record")
def record(event, *args, **kwargs):
    with open(os.environ["LOG"], "a", encoding="utf-8") as log:
        log.write(event["event_id"] + "\n")
