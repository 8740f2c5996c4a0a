"""The app ``benchmarks/dispatch.py`` runs its end-to-end rounds on.

One Flask app and its Celery app, served by one solo worker
(``celery -A dispatch_app:celery worker --pool=solo``), with both workloads:

- ours: the hub ``Bench`` with 3 function consumers, reached by
  ``notifications.send(Event(...))``;
- bare Celery: 3 plain tasks ``bench.bare0..2`` on the same Celery app,
  with Celery's defaults, each calling the same function on the event.

Every consumer call counts in the worker's memory; when the count reaches
``BENCH_CALLS`` (one round: 3 calls per event), the worker pushes the time
onto the Redis list ``bench:rounds`` and starts counting again. That is the
only Redis command the consumers send, once per round.

Settings from the environment: ``REDIS_URL``, ``BENCH_CALLS``.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import redis
from celery import Celery
from flask import Flask

from flask_notifications import Notifications
from flask_notifications.filters import Expired, WithEventType

REDIS_URL = os.environ["REDIS_URL"]
CALLS = int(os.environ.get("BENCH_CALLS", "0"))
#: Names of the bare Celery tasks (one per consumer).
BARE_TASKS = [f"bench.bare{i}" for i in range(3)]

app = Flask("dispatch_app")
app.config.update(NOTIFICATIONS_REDIS_URL=REDIS_URL, broker_connection_retry_on_startup=True)
celery = Celery("dispatch_app", broker=REDIS_URL, set_as_current=False)
celery.conf.broker_connection_retry_on_startup = True
notifications = Notifications(app, celery=celery)
hub = notifications.create_hub("Bench")
hub.filter_by(WithEventType("test") & ~Expired())

_count = [0]
_client = redis.Redis.from_url(REDIS_URL)


def work(event: Any) -> None:
    """The consumers' work: count the call (and report a finished round)."""
    _count[0] += 1
    if CALLS and _count[0] == CALLS:
        _count[0] = 0
        _client.rpush("bench:rounds", time.time())


def _consumer(i: int) -> Any:
    def consumer(event: Any) -> None:
        work(event)

    consumer.__qualname__ = f"consumer{i}"
    return consumer


for i in range(3):  # three functions: the same one would register once
    hub.register_consumer(_consumer(i), celery_task_name=f"bench.consumer{i}")


def _bare(event_json: str, hub_id: str, app_key: str) -> None:
    work(json.loads(event_json))


for name in BARE_TASKS:
    celery.task(name=name, ignore_result=True)(_bare)
