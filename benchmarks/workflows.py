"""The cost per event of the notification workflows (docs/workflows.rst).

One Flask app on a real Redis (a ``redis-server`` child) and an SQLite inbox
file, a real Celery worker (in a thread, solo pool) and the workers' timer
sweeper (in a thread, as ``celery worker`` runs it). Each case sends
``--events`` events with ``send()`` and waits until every one was delivered;
it prints events per second, send() plus delivery, for every case of the
same run (rounds interleaved, the median shown):

- ``plain``: a hub with a StoreConsumer and a consumer; ``send(event)``;
- ``scheduled``: the same hub; ``send(event, delay=1 ms)``: each event is a
  durable timer, run by the sweeper, then sent as above;
- ``group``: the ``plain`` hub's shape; every event has a ``group`` (one
  group, five senders): the StoreConsumer updates one unread item (an
  upsert, an actor insert, an update) instead of inserting a row;
- ``throttle``: the ``plain`` hub's shape with ``hub.throttle()`` and a limit
  never reached: each event is decided (one Redis script per recipient) and
  delivered;
- ``throttle-held``: a throttle of one delivery per hour: every event after
  the first is held (a row in the inbox database; a timer per window),
  counted as soon as it is held;
- ``escalation``: a hub with a StoreConsumer, a consumer and a consumer with
  ``if_unread_after=50 ms``: delivered once the escalated consumer ran for
  every (unread) event (a timer per event, an inbox query, one more task).

With the ``scheduled`` case, it also schedules ``--lateness`` sends due over
2 s (one at a time) and prints how late each reached its consumer.

Cases are entries of :data:`CASES` (setup, send, delivered count); add one
with :func:`case`. ``--case NAME`` (repeatable) runs only those.

Usage: python benchmarks/workflows.py [--events 500] [--rounds 3] [--case plain ...]
       [--lateness 200]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from celery.contrib.testing.worker import start_worker
from flask import Flask

from flask_notifications import Event, Notifications
from flask_notifications._state import get_state
from flask_notifications.consumers import StoreConsumer
from flask_notifications.delivery.sweeper import sweep_timers_forever
from flask_notifications.filters import WithEventType
from flask_notifications.testing import RedisServer


class Counter:
    """A consumer that counts the events it got (thread-safe), and how late
    it got those carrying a ``due_at`` (seconds after it)."""

    def __init__(self) -> None:
        self.count = 0
        self.late: list[float] = []
        self.lock = threading.Lock()

    def __call__(self, event: Event, *args: Any, **kwargs: Any) -> None:
        now = time.time()
        with self.lock:
            self.count += 1
            if "due_at" in event:
                self.late.append(now - event["due_at"])


@dataclass
class Case:
    """One benchmark case: ``setup(notifications, shared)`` registers its hubs
    once and returns its state (``shared``: a dict the cases of one run share,
    e.g. a hub); ``send(notifications, state, n)`` sends ``n`` events;
    ``delivered(state)`` counts what was delivered so far."""

    setup: Callable[[Notifications, dict[str, Any]], Any]
    send: Callable[[Notifications, Any, int], None]
    delivered: Callable[[Any], int]


#: The cases, by name, in the order they run.
CASES: dict[str, Case] = {}


def case(
    name: str, setup: Callable[..., Any], send: Callable[..., None], delivered: Callable[..., int]
) -> None:
    """Add the case ``name`` (see :class:`Case`)."""
    CASES[name] = Case(setup, send, delivered)


def _event(event_type: str, n: int) -> Event:
    return Event(None, event_type, f"Event {n}", "body", recipients=["u1"])


# -- plain and scheduled: one hub ------------------------------------------------------------


def _plain_hub(notifications: Notifications, shared: dict[str, Any]) -> Counter:
    if "plain" in shared:  # the plain and scheduled cases share it
        return shared["plain"]  # type: ignore[no-any-return]
    hub = notifications.create_hub("Plain").filter_by(WithEventType("plain"))
    hub.register_consumer(StoreConsumer())
    counter = shared["plain"] = Counter()
    hub.register_consumer(counter, celery_task_name="bench.plain")
    return counter


def _send_plain(notifications: Notifications, counter: Counter, n: int) -> None:
    for i in range(n):
        notifications.send(_event("plain", i))


def _send_scheduled(notifications: Notifications, counter: Counter, n: int) -> None:
    for i in range(n):
        notifications.send(_event("plain", i), delay=timedelta(milliseconds=1))


case("plain", _plain_hub, _send_plain, lambda counter: counter.count)
case("scheduled", _plain_hub, _send_scheduled, lambda counter: counter.count)


# -- escalation ------------------------------------------------------------------------------


def _escalating_hub(notifications: Notifications, shared: dict[str, Any]) -> Counter:
    hub = notifications.create_hub("Escalating").filter_by(WithEventType("escalating"))
    hub.register_consumer(StoreConsumer())
    hub.register_consumer(Counter(), celery_task_name="bench.escalating.now")
    later = Counter()
    hub.register_consumer(
        later, celery_task_name="bench.escalating.later", if_unread_after=timedelta(milliseconds=50)
    )
    return later


def _send_escalating(notifications: Notifications, later: Counter, n: int) -> None:
    for i in range(n):
        notifications.send(_event("escalating", i))


case("escalation", _escalating_hub, _send_escalating, lambda later: later.count)


# -- grouping --------------------------------------------------------------------------------


def _group_hub(notifications: Notifications, shared: dict[str, Any]) -> Counter:
    hub = notifications.create_hub("Grouped").filter_by(WithEventType("grouped"))
    hub.register_consumer(StoreConsumer())
    counter = Counter()
    hub.register_consumer(counter, celery_task_name="bench.grouped")
    return counter


def _send_grouped(notifications: Notifications, counter: Counter, n: int) -> None:
    # One group, five senders: every event after the first updates the same
    # unread item (count, latest fields, actors).
    for i in range(n):
        event = _event("grouped", i)
        event["sender"], event["group"] = f"s{i % 5}", "post:1:comments"
        notifications.send(event)


case("group", _group_hub, _send_grouped, lambda counter: counter.count)


# -- throttle --------------------------------------------------------------------------------


def _throttled_hub(limit: int, per: timedelta, event_type: str) -> Callable[..., Any]:
    def setup(notifications: Notifications, shared: dict[str, Any]) -> Any:
        hub = notifications.create_hub(event_type).filter_by(WithEventType(event_type))
        hub.throttle(limit=limit, per=per)
        hub.register_consumer(StoreConsumer())
        counter = Counter()
        hub.register_consumer(counter, celery_task_name=f"bench.{event_type}")
        return counter, hub.hub_id

    return setup


def _send_throttled(event_type: str) -> Callable[..., None]:
    def send(notifications: Notifications, state: Any, n: int) -> None:
        for i in range(n):
            notifications.send(_event(event_type, i))

    return send


def _held(state: Any) -> int:
    """Deliveries plus events held (rows in the throttle's table): every
    event the worker has decided on."""
    from sqlalchemy import func, select

    from flask_notifications.inbox.database import get_engine
    from flask_notifications.inbox.models import throttled

    counter, hub_id = state
    query = select(func.count()).select_from(throttled).where(throttled.c.hub_id == hub_id)
    with get_engine().connect() as conn:
        return counter.count + int(conn.execute(query).scalar_one())


# Under the limit: each event is decided (one Redis script) and delivered.
case(
    "throttle",
    _throttled_hub(10**9, timedelta(hours=1), "throttled"),
    _send_throttled("throttled"),
    lambda state: state[0].count,
)
# Over the limit: one delivery per hour, every other event held (a row in
# the inbox database and, once per window, a timer); counted when held.
case(
    "throttle-held",
    _throttled_hub(1, timedelta(hours=1), "held"),
    _send_throttled("held"),
    _held,
)


# -- the run ---------------------------------------------------------------------------------


def run(names: list[str], events: int, rounds: int, lateness: int) -> dict[str, list[float]]:
    """Run the cases ``names`` ``rounds`` times each, interleaved; return
    events per second per case and round (and, with the scheduled case, the
    lateness of ``lateness`` scheduled sends, under ``"lateness"``)."""
    with tempfile.TemporaryDirectory() as tmp, RedisServer(directory=Path(tmp) / "redis") as redis:
        app = Flask("bench_workflows", instance_path=str(Path(tmp) / "instance"))
        app.config.update(
            NOTIFICATIONS_REDIS_URL=redis.url,
            NOTIFICATIONS_DATABASE_URI=f"sqlite:///{Path(tmp) / 'inbox.sqlite'}",
            NOTIFICATIONS_DELIVERY_LOG=False,
            broker_connection_retry_on_startup=True,
        )
        notifications = Notifications(app)
        shared: dict[str, Any] = {}
        states = {name: CASES[name].setup(notifications, shared) for name in names}
        rates: dict[str, list[float]] = {name: [] for name in names}
        celery = get_state(app).celery
        stop = threading.Event()
        sweeper = threading.Thread(target=sweep_timers_forever, args=(celery, stop), daemon=True)
        with (
            app.app_context(),
            start_worker(
                celery, pool="solo", perform_ping_check=False, loglevel="ERROR", shutdown_timeout=30
            ),
        ):
            sweeper.start()
            try:
                for _ in range(rounds):
                    for name in names:
                        rates[name].append(
                            _measure(notifications, CASES[name], states[name], events)
                        )
                if "scheduled" in names and lateness:
                    rates["lateness"] = _lateness(notifications, states["scheduled"], lateness)
            finally:
                stop.set()
                sweeper.join(10)
        engine = get_state(app).engine
        if engine is not None:
            engine.dispose()
    return rates


def _lateness(notifications: Notifications, counter: Counter, count: int) -> list[float]:
    """Schedule ``count`` sends due over the next 1-3 s, one at a time as an
    application would; return how late each reached its consumer (seconds)."""
    counter.late.clear()
    start = time.time() + 1
    for i in range(count):
        due = start + 2 * i / count
        event = _event("plain", i)
        event["due_at"] = due
        notifications.send(event, at=datetime.fromtimestamp(due, UTC))
    deadline = time.monotonic() + 120
    while len(counter.late) < count:
        if time.monotonic() > deadline:
            raise RuntimeError("not every scheduled send was delivered within 120 s")
        time.sleep(0.01)
    return sorted(counter.late)


def _measure(notifications: Notifications, bench: Case, state: Any, events: int) -> float:
    start_count = bench.delivered(state)
    started = time.perf_counter()
    bench.send(notifications, state, events)
    deadline = time.monotonic() + 300
    while bench.delivered(state) < start_count + events:
        if time.monotonic() > deadline:
            raise RuntimeError("not every event was delivered within 300 s")
        time.sleep(0.005)
    return events / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=500, help="events per case and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (median shown)")
    parser.add_argument(
        "--case", action="append", choices=sorted(CASES), dest="cases", help="only this case"
    )
    parser.add_argument(
        "--lateness", type=int, default=200, help="scheduled sends timed for their lateness"
    )
    args = parser.parse_args()
    names = [name for name in CASES if name in (args.cases or CASES)]
    rates = run(names, args.events, args.rounds, args.lateness)
    late = rates.pop("lateness", None)
    baseline = statistics.median(rates["plain"]) if "plain" in rates else None
    print(f"{args.events} events per case and round, {args.rounds} rounds, median events/s")
    for name in names:
        median = statistics.median(rates[name])
        each = ", ".join(f"{r:.0f}" for r in rates[name])
        line = f"{name:12} {median:8.0f} events/s  (rounds: {each})"
        if baseline and name != "plain":
            extra = (1 / median - 1 / baseline) * 1e3
            line += f"  {median / baseline:.2f}x plain, {extra:+.2f} ms/event"
        print(line)
    if late:
        ms = [x * 1000 for x in late]
        print(
            f"scheduled-send lateness (delivered - due, {len(ms)} sends over 2 s, idle worker): "
            f"min {ms[0]:.0f} ms, median {statistics.median(ms):.0f} ms, "
            f"p99 {ms[int(len(ms) * 0.99) - 1]:.0f} ms, max {ms[-1]:.0f} ms"
        )


if __name__ == "__main__":
    main()
