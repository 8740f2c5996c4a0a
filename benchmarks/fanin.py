"""Fan-in: what one web process pays for each event of a hub it subscribes to.

Every web process subscribes to every hub, and routes each event to its own
streams: with many processes, each one receives every event, most of them
for users whose streams are elsewhere. This measures the dispatcher's cost
per event, in one process and without Redis (the backend is
:class:`~flask_notifications.pubsub.memory_pubsub.MemoryPubSub`): for an
event whose recipient has no stream here (the common case with many
processes), for one whose recipient has a stream here, and for a broadcast,
with ``--streams`` streams open.

Usage: python benchmarks/fanin.py [--streams 10000] [--events 20000]
"""

from __future__ import annotations

import argparse
import sys
import time

from flask import Flask

from flask_notifications import Event, Notifications


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()
    app = Flask("fanin")
    app.config.update(
        NOTIFICATIONS_BACKEND="flask_notifications.pubsub.memory_pubsub.MemoryPubSub",
        NOTIFICATIONS_MAX_STREAMS=args.streams + 1,
        NOTIFICATIONS_STREAM_QUEUE=args.events + 10,
        CELERY_BROKER_URL="memory://",
    )
    notifications = Notifications(app)
    hub = notifications.create_hub("Inbox", readers=lambda identity: True)
    with app.app_context():
        dispatcher = notifications.dispatcher
    streams = [dispatcher.open(hub.hub_id, f"here{i}")[0] for i in range(args.streams)]
    rows = []
    cases = {
        "recipient elsewhere": lambda i: Event(None, "m", "t", "b" * 100, recipients=[f"away{i}"]),
        "recipient here": lambda i: Event(
            None, "m", "t", "b" * 100, recipients=[f"here{i % args.streams}"]
        ),
    }
    for name, make in cases.items():
        payloads = [make(i).to_json() for i in range(args.events)]
        started = time.perf_counter()
        for number, data in enumerate(payloads, 1):
            dispatcher.dispatch(hub.hub_id, str(number), data)
        elapsed = time.perf_counter() - started
        rows.append((name, elapsed / args.events * 1e6, args.events / elapsed))
        for stream in streams:
            stream.queue.clear()
    broadcasts = min(200, args.events)
    payloads = [Event(None, "m", "t", "b" * 100).to_json() for _ in range(broadcasts)]
    started = time.perf_counter()
    for number, data in enumerate(payloads, 10**9):
        dispatcher.dispatch(hub.hub_id, str(number), data)
    elapsed = time.perf_counter() - started
    per_event = elapsed / broadcasts
    rows.append(
        (f"broadcast to {args.streams} streams", per_event * 1e6, 1 / per_event)
    )  # queued, not written: the streams' writes are the fan-out benchmark's
    dispatcher.stop()
    print(f"{args.streams} streams open, {args.events} events; python {sys.version.split()[0]}")
    print("| event | us per event | events/s |")
    print("|---|---|---|")
    for name, micros, rate in rows:
        print(f"| {name} | {micros:,.1f} | {rate:,.0f} |")


if __name__ == "__main__":
    main()
